"""Builders of real wire bytes for tests: TLS ClientHellos, TCP sessions, sealed QUIC Initials.

Everything here follows the RFCs closely enough that tshark dissects it the same way,
so a test can check tapsense against what the bytes were built to say.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from agent.quic import hkdf_expand_label, initial_salt

GREASE = 0x3A3A
X25519 = 0x001D
X25519MLKEM768 = 0x11EC  # 1216-byte client share (draft-kwiatkowski-tls-ecdhe-mlkem)
DEFAULT_CIPHERS = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8)
DEFAULT_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
# explicit, locally administered MACs: an Ether() without dst makes scapy ARP on the host
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


def _vec16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def client_hello(
    sni: str | None = "example.com",
    alpn: Sequence[str] = ("h2", "http/1.1"),
    *,
    pq: bool = False,
    grease: bool = True,
    ech: bool = False,
    ciphers: Sequence[int] = DEFAULT_CIPHERS,
    quic_params: bool = False,
    padding_to: int = 0,
) -> bytes:
    """A TLS 1.3 ClientHello handshake message (type, length, body).

    With pq, the key share carries X25519MLKEM768 (1216 bytes) beside X25519, which
    makes the hello about 1.8 KB, as browsers send it since 2024.
    """
    exts = []
    if grease:
        exts.append(_ext(0x0A0A, b""))
    if sni is not None:
        name = sni.encode()
        exts.append(_ext(0x0000, _vec16(b"\x00" + _vec16(name))))
    groups = ([GREASE] if grease else []) + ([X25519MLKEM768] if pq else []) + [X25519, 0x0017]
    exts.append(_ext(0x000A, _vec16(b"".join(struct.pack("!H", g) for g in groups))))
    exts.append(_ext(0x000B, b"\x01\x00"))
    exts.append(_ext(0x000D, _vec16(b"".join(struct.pack("!H", s) for s in DEFAULT_SIGALGS))))
    if alpn:
        ids = b"".join(bytes((len(a),)) + a.encode() for a in alpn)
        exts.append(_ext(0x0010, _vec16(ids)))
    versions = ([GREASE] if grease else []) + [0x0304, 0x0303]
    exts.append(
        _ext(0x002B, bytes((2 * len(versions),)) + b"".join(struct.pack("!H", v) for v in versions))
    )
    shares = b""
    if grease:
        shares += struct.pack("!HH", GREASE, 1) + b"\x00"
    if pq:
        shares += struct.pack("!HH", X25519MLKEM768, 1216) + os.urandom(1216)
    shares += struct.pack("!HH", X25519, 32) + os.urandom(32)
    exts.append(_ext(0x0033, _vec16(shares)))
    if ech:
        exts.append(
            _ext(
                0xFE0D,
                b"\x00\x00\x01\x00\x01"
                + os.urandom(1)
                + _vec16(os.urandom(32))
                + _vec16(os.urandom(144)),
            )
        )
    if quic_params:
        exts.append(_ext(0x0039, b"\x01\x04\x80\x00\xea\x60"))
    ext_bytes = b"".join(exts)
    cipher_list = ([GREASE] if grease else []) + list(ciphers)
    body = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x20"
        + os.urandom(32)
        + _vec16(b"".join(struct.pack("!H", c) for c in cipher_list))
        + b"\x01\x00"
    )
    if padding_to and len(body) + 2 + len(ext_bytes) + 4 < padding_to:
        pad = padding_to - (len(body) + 2 + len(ext_bytes) + 4) - 4
        ext_bytes += _ext(0x0015, bytes(max(pad, 0)))
    body += _vec16(ext_bytes)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def server_hello(cipher: int = 0x1301, version: int = 0x0304) -> bytes:
    exts = _ext(0x002B, struct.pack("!H", version)) + _ext(
        0x0033, struct.pack("!HH", X25519, 32) + os.urandom(32)
    )
    body = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x20"
        + os.urandom(32)
        + struct.pack("!HB", cipher, 0)
        + _vec16(exts)
    )
    return b"\x02" + len(body).to_bytes(3, "big") + body


def tls_records(handshake: bytes, max_fragment: int = 16384, content_type: int = 22) -> bytes:
    """The handshake bytes cut into TLS records of at most max_fragment bytes each."""
    out = b""
    for i in range(0, len(handshake), max_fragment):
        chunk = handshake[i : i + max_fragment]
        out += struct.pack("!BHH", content_type, 0x0301, len(chunk)) + chunk
    return out


class TcpSession:
    """Frames of one TCP connection with consistent sequence numbers (Ethernet/IPv4)."""

    def __init__(
        self,
        client: str = "10.1.0.2",
        server: str = "10.2.0.3",
        cport: int = 40000,
        sport: int = 443,
        ts: float = 1_700_000_000.0,
    ) -> None:
        self.client, self.server, self.cport, self.sport = client, server, cport, sport
        self.seq = {0: 1000, 1: 50000}
        self.ts = ts

    def _frame(
        self, direction: int, flags: str, payload: bytes = b"", seq: int | None = None
    ) -> tuple[float, bytes]:
        self.ts += 0.001
        src, dst = (self.client, self.server) if direction == 0 else (self.server, self.client)
        sp, dp = (self.cport, self.sport) if direction == 0 else (self.sport, self.cport)
        s = self.seq[direction] if seq is None else seq
        frame = bytes(
            Ether(**MACS)
            / IP(src=src, dst=dst)
            / TCP(sport=sp, dport=dp, flags=flags, seq=s, ack=self.seq[1 - direction])
            / payload
        )
        return self.ts, frame

    def handshake(self) -> list[tuple[float, bytes]]:
        frames = [self._frame(0, "S")]
        self.seq[0] += 1
        frames.append(self._frame(1, "SA"))
        self.seq[1] += 1
        frames.append(self._frame(0, "A"))
        return frames

    def send(self, direction: int, data: bytes, segment: int = 1460) -> list[tuple[float, bytes]]:
        frames = []
        for i in range(0, len(data), segment):
            chunk = data[i : i + segment]
            frames.append(self._frame(direction, "PA", chunk))
            self.seq[direction] += len(chunk)
        return frames

    def close(self) -> list[tuple[float, bytes]]:
        frames = [self._frame(0, "FA")]
        self.seq[0] += 1
        frames.append(self._frame(1, "FA"))
        self.seq[1] += 1
        frames.append(self._frame(0, "A"))
        return frames


# --- QUIC -------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """RFC 9000 section 16."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return struct.pack("!H", 0x4000 | value)
    if value < 0x40000000:
        return struct.pack("!I", 0x80000000 | value)
    return struct.pack("!Q", 0xC000000000000000 | value)


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def seal_initial(
    version: int,
    dcid: bytes,
    scid: bytes,
    pn: int,
    frames: bytes,
    token: bytes = b"",
    pad_to: int = 1200,
) -> bytes:
    """A client Initial packet protected as RFC 9001 section 5 says (the inverse of opening)."""
    return seal_initial_keys(version, dcid, dcid, scid, pn, frames, token, pad_to)


def seal_initial_keys(
    version: int,
    key_dcid: bytes,
    dcid: bytes,
    scid: bytes,
    pn: int,
    frames: bytes,
    token: bytes = b"",
    pad_to: int = 1200,
) -> bytes:
    """seal_initial with keys from key_dcid and dcid in the header, as after the client
    moved to the server's connection ID (RFC 9000 section 7.2)."""
    salt = initial_salt(version)
    assert salt is not None
    initial = hmac.new(salt, key_dcid, hashlib.sha256).digest()
    client = hkdf_expand_label(initial, "client in", 32)
    prefix = "quicv2 " if version in (0x6B3343CF, 0x709A50C4) else "quic "
    key = hkdf_expand_label(client, prefix + "key", 16)
    iv = hkdf_expand_label(client, prefix + "iv", 12)
    hp = hkdf_expand_label(client, prefix + "hp", 16)
    pn_bytes = pn.to_bytes(2, "big")
    initial_type = 0x10 if version == 0x6B3343CF else 0x00
    first = 0xC0 | initial_type | (len(pn_bytes) - 1)
    head = (
        bytes((first,))
        + struct.pack("!I", version)
        + bytes((len(dcid),))
        + dcid
        + bytes((len(scid),))
        + scid
        + varint(len(token))
        + token
    )
    overhead = len(head) + 4 + len(pn_bytes) + 16
    if pad_to and overhead + len(frames) < pad_to:
        frames += bytes(pad_to - overhead - len(frames))  # PADDING frames
    length = len(pn_bytes) + len(frames) + 16
    header = head + struct.pack("!H", 0x4000 | length) + pn_bytes
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    sealed = AESGCM(key).encrypt(nonce, frames, header)
    pn_offset = len(header) - len(pn_bytes)
    sample = sealed[4 - len(pn_bytes) : 20 - len(pn_bytes)]
    mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)
    packet = bytearray(header + sealed)
    packet[0] ^= mask[0] & 0x0F
    for i in range(len(pn_bytes)):
        packet[pn_offset + i] ^= mask[1 + i]
    return bytes(packet)


def udp_frames(
    datagrams: Iterable[bytes],
    client: str = "10.1.0.2",
    server: str = "10.2.0.3",
    cport: int = 50000,
    sport: int = 443,
    ts: float = 1_700_000_000.0,
) -> list[tuple[float, bytes]]:
    return [
        (
            ts + i * 0.001,
            bytes(Ether(**MACS) / IP(src=client, dst=server) / UDP(sport=cport, dport=sport) / d),
        )
        for i, d in enumerate(datagrams)
    ]
