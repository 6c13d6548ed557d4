"""QUIC: decrypts client Initial packets and emits one quic record per ClientHello.

Sans-IO. The engine forwards UDP datagrams that start with a long-header
Initial packet (ext/engine.pyx). Here each Initial of a datagram (several may
be coalesced) is opened with the client Initial keys, which anyone can
derive from the Destination Connection ID the client chose (RFC 9001
section 5.2; RFC 9369 for v2, older salts for drafts, mvfst and Google's
T050/T051): header protection removed (section 5.4), the payload decrypted
with AES-128-GCM (section 5.3), its CRYPTO frames put back in order
(bounded), and the ClientHello given to the same Cython parser as TLS over
TCP. A connection is the client's original DCID; a later Initial with
another DCID that the existing keys open belongs to it too, and a fresh DCID
on the same 5-tuple starts a new connection.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent._quic import crypto_frames, parse_long_header
from agent._tls import parse_client_hello
from agent.engine import STATUS_NAMES
from agent.record import QuicRecord
from agent.tls import LIMIT, OK, hello_fields, hex16

# Initial salts by version (RFC 9001 section 5.2, RFC 9369 section 3.3.1, and the drafts)
SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
SALT_V2_DRAFT = bytes.fromhex("a707c203a59b47184a1d62ca570406ea7ae3e5d3")
SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")  # drafts 29-32
SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")  # drafts 23-28
SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")  # drafts up to 22
SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")
V1 = 0x00000001
V2 = 0x6B3343CF
V2_DRAFT = 0x709A50C4
T050 = 0x54303530
T051 = 0x54303531

MAX_CRYPTO = 65536  # CRYPTO stream bytes kept per connection
MAX_HELLO = 16384
MAX_CONNECTIONS_PER_FLOW = 8
HANDSHAKE_CLIENT_HELLO = 1


def draft_number(version: int) -> int | None:
    """The IETF draft a version follows, as Wireshark maps them; None for others."""
    if version >> 8 == 0xFF0000:
        return version & 0xFF
    if version == 0xFACEB001:  # Facebook mvfst, draft-22 based
        return 22
    if version in (0xFACEB002, 0xFACEB00E, T050, T051):
        return 27
    if version & 0x0F0F0F0F == 0x0A0A0A0A:  # reserved versions used to force negotiation
        return 29
    return None


def initial_salt(version: int) -> bytes | None:
    if version == V1:
        return SALT_V1
    if version == V2:
        return SALT_V2
    if version == V2_DRAFT:
        return SALT_V2_DRAFT
    if version == T050:
        return SALT_T050
    if version == T051:
        return SALT_T051
    draft = draft_number(version)
    if draft is None:
        return None
    if draft <= 22:
        return SALT_DRAFT_22
    if draft <= 28:
        return SALT_DRAFT_23
    if draft <= 32:
        return SALT_DRAFT_29
    return SALT_V1


def hkdf_expand_label(secret: bytes, label: str, length: int) -> bytes:
    """HKDF-Expand-Label with an empty context (RFC 8446 section 7.1), SHA-256."""
    out = b""
    block = b""
    info = _expand_label_info(label, length)
    counter = 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes((counter,)), "sha256")
        out += block
        counter += 1
    return out[:length]


@functools.lru_cache(maxsize=64)
def _expand_label_info(label: str, length: int) -> bytes:
    """The HkdfLabel of RFC 8446 section 7.1: the same few labels serve every connection."""
    full = b"tls13 " + label.encode()
    return length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"


@dataclass(slots=True)
class InitialKeys:
    """Client Initial packet protection: AEAD key, IV, and the header protection cipher."""

    aead: AESGCM
    iv: bytes
    hp: Any  # an AES-ECB encryptor

    @classmethod
    def derive(cls, version: int, dcid: bytes) -> InitialKeys | None:
        salt = initial_salt(version)
        if salt is None:
            return None
        initial = hmac.digest(salt, dcid, "sha256")  # HKDF-Extract
        client = hkdf_expand_label(initial, "client in", 32)
        prefix = "quicv2 " if version in (V2, V2_DRAFT) else "quic "
        key = hkdf_expand_label(client, prefix + "key", 16)
        iv = hkdf_expand_label(client, prefix + "iv", 12)
        hp = hkdf_expand_label(client, prefix + "hp", 16)
        return cls(AESGCM(key), iv, Cipher(algorithms.AES(hp), modes.ECB()).encryptor())

    def open(
        self, datagram: bytes, pn_offset: int, end: int, largest_pn: int
    ) -> tuple[int, bytes] | None:
        """Removes header protection and decrypts; (packet number, payload) or None."""
        sample = datagram[pn_offset + 4 : pn_offset + 20]
        if len(sample) < 16 or end > len(datagram):
            return None
        mask = self.hp.update(sample)
        first = datagram[0] ^ (mask[0] & 0x0F)  # long header: low four bits (section 5.4.1)
        pn_length = (first & 0x03) + 1
        truncated = int.from_bytes(datagram[pn_offset : pn_offset + pn_length], "big") ^ (
            int.from_bytes(mask[1 : 1 + pn_length], "big")
        )
        pn = decode_packet_number(largest_pn, truncated, pn_length * 8)
        header = bytes((first,)) + datagram[1:pn_offset] + truncated.to_bytes(pn_length, "big")
        nonce = (int.from_bytes(self.iv, "big") ^ pn).to_bytes(12, "big")
        try:
            return pn, self.aead.decrypt(nonce, datagram[pn_offset + pn_length : end], header)
        except InvalidTag:
            return None


def decode_packet_number(largest: int, truncated: int, bits: int) -> int:
    """RFC 9000 appendix A.3."""
    expected = largest + 1
    window = 1 << bits
    half = window // 2
    candidate = (expected & ~(window - 1)) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


@dataclass(slots=True)
class _Connection:
    """One QUIC connection's Initial keys and the CRYPTO data of its ClientHello so far."""

    version: int
    dcid: bytes  # the DCID the keys come from
    keys: InitialKeys
    dcids: set[bytes]  # every DCID the client used for it
    largest_pn: int = -1
    chunks: dict[int, bytes] = field(default_factory=dict)  # CRYPTO offset -> data
    size: int = 0
    done: bool = False

    def add(self, offset: int, data: bytes) -> bool:
        """Keeps a CRYPTO chunk; False when it would pass MAX_CRYPTO (in the stream, or held:
        overlapping chunks at many offsets)."""
        if offset in self.chunks:
            return True  # a retransmission
        if offset + len(data) > MAX_CRYPTO or self.size + len(data) > MAX_CRYPTO:
            return False
        self.chunks[offset] = data
        self.size += len(data)
        return True

    def contiguous(self, want: int) -> bytes | None:
        """The first `want` bytes of the CRYPTO stream when they have all arrived."""
        out = bytearray(want)
        covered = 0
        for offset in sorted(self.chunks):
            if offset > covered:
                return None
            data = self.chunks[offset]
            end = min(offset + len(data), want)
            if end > covered:
                out[covered:end] = data[covered - offset : end - offset]
                covered = end
            if covered >= want:
                return bytes(out)
        return None


@dataclass(slots=True)
class _QuicFlow:
    """The QUIC connections seen on one UDP flow."""

    connections: list[_Connection] = field(default_factory=list)
    hellos: set[bytes] = field(default_factory=set)  # digests of ClientHellos already reported


class QuicTracker:
    def __init__(self, stats: Counter[str], *, max_flows: int = 65536) -> None:
        self.stats = stats
        self.max_flows = max_flows
        self._flows: OrderedDict[int, _QuicFlow] = OrderedDict()
        self.names: dict[int, str] = {}  # flow handle -> SNI, for the flow record

    def on_payload(self, event: tuple[Any, ...]) -> list[QuicRecord]:
        (
            _k,
            ts_ns,
            handle,
            _dirn,
            _why,
            _proto,
            _fam,
            _caddr,
            cport,
            _saddr,
            sport,
            _seq,
            _flags,
            datagram,
            _wire,
            client,
            server,
            flow_id,
        ) = event
        flow = self._flows.get(handle)
        if flow is None:
            if len(self._flows) >= self.max_flows:
                self.stats["quic.flows_evicted"] += 1
                self._flows.popitem(last=False)
            flow = self._flows[handle] = _QuicFlow()
        else:
            self._flows.move_to_end(handle)
        sender = (client, cport, server, sport, flow_id)  # the engine forwards client Initials
        records: list[QuicRecord] = []
        start = 0
        while start < len(datagram):  # coalesced packets (RFC 9000 section 12.2)
            status, header = parse_long_header(datagram, start)
            if header is None or "end" not in header:
                if status != 2:  # a short header ends the datagram's long packets
                    self.stats[f"quic.header.{STATUS_NAMES[status]}"] += 1
                break
            if header["type"] == 0:
                records += self._initial(handle, flow, datagram, start, header, ts_ns, sender)
            start = header["end"]
        return records

    def _initial(
        self,
        handle: int,
        flow: _QuicFlow,
        datagram: bytes,
        start: int,
        header: dict[str, Any],
        ts_ns: int,
        sender: tuple[str, int, str, int, str],
    ) -> list[QuicRecord]:
        packet = datagram[start : header["end"]]
        pn_offset = header["pn_offset"] - start
        end = header["end"] - start
        version, dcid = header["version"], header["dcid"]
        conn = next((c for c in flow.connections if dcid in c.dcids and c.version == version), None)
        if conn is not None and conn.done:
            self.stats["quic.initials_after_hello"] += 1  # ACKs and retransmissions
            return []
        opened = None
        if conn is not None:
            opened = conn.keys.open(packet, pn_offset, end, conn.largest_pn)
        else:
            # Another DCID on this 5-tuple: the client moved to the server's connection
            # ID (the keys stay those of its first DCID), or a new connection.
            for known in flow.connections:
                if known.version == version:
                    opened = known.keys.open(packet, pn_offset, end, known.largest_pn)
                    if opened is not None:
                        conn = known
                        conn.dcids.add(dcid)
                        break
            if conn is not None and conn.done:
                self.stats["quic.initials_after_hello"] += 1
                return []
            if conn is None:
                keys = InitialKeys.derive(version, dcid)
                if keys is None:
                    self.stats["quic.unsupported_version"] += 1
                    return []
                self.stats["quic.keys_derived"] += 1
                conn = _Connection(version, dcid, keys, {dcid})
                opened = keys.open(packet, pn_offset, end, -1)
                if opened is not None:
                    if len(flow.connections) >= MAX_CONNECTIONS_PER_FLOW:
                        flow.connections.pop(0)
                        self.stats["quic.connections_evicted"] += 1
                    flow.connections.append(conn)
        if opened is None:
            self.stats["quic.undecryptable"] += 1  # not a client Initial of ours, or not QUIC
            return []
        pn, payload = opened
        self.stats["quic.initials_decrypted"] += 1
        conn.largest_pn = max(conn.largest_pn, pn)
        if conn.done:
            return []
        status, frames = crypto_frames(payload, conn.version in (T050, T051))
        if status:
            self.stats[f"quic.frames.{STATUS_NAMES[status]}"] += 1
        for offset, data in frames:
            if not conn.add(offset, data):
                self.stats["quic.crypto_cap"] += 1
        head = conn.contiguous(4)
        if head is None:
            return []
        if head[0] != HANDSHAKE_CLIENT_HELLO:
            conn.done = True
            self.stats["quic.not_client_hello"] += 1
            return []
        length = int.from_bytes(head[1:4], "big")
        if length > MAX_HELLO:
            conn.done = True
            self.stats["quic.giveup.too_big"] += 1
            return []
        message = conn.contiguous(4 + length)
        if message is None:
            return []
        conn.done = True
        conn.chunks.clear()
        digest = hashlib.sha256(message).digest()
        repeat = digest in flow.hellos  # the same hello under new keys, after a Retry
        flow.hellos.add(digest)
        status, hello = parse_client_hello(message[4:], quic=True)
        if hello is None:
            self.stats["quic.giveup.malformed"] += 1
            return []
        self.stats["quic.client_hello"] += 1
        record = self._record(handle, conn, hello, status, ts_ns, sender)
        record["repeat"] = repeat
        return [record]

    def _record(
        self,
        handle: int,
        conn: _Connection,
        hello: dict[str, Any],
        status: int,
        ts_ns: int,
        sender: tuple[str, int, str, int, str],
    ) -> QuicRecord:
        client, cport, server, sport, flow_id = sender
        record: QuicRecord = {
            "type": "quic",
            "ts": ts_ns / 1e9,
            "src": client,
            "sport": cport,
            "dst": server,
            "dport": sport,
            "proto": "udp",
            "flow": flow_id,
            **hello_fields(hello),  # type: ignore[typeddict-item]
            "version": f"0x{conn.version:08x}",
            "tls_version": hex16(hello["version"]),
            "dcid": conn.dcid.hex(),
            "ja3": hello["ja3"],
            "ja3_full": hello["ja3_full"],
            "problem": None,
        }
        if status not in (OK, LIMIT):
            # as over TCP: what the hello said so far, no JA3 of a broken list
            self.stats[f"quic.malformed_hello.{STATUS_NAMES[status]}"] += 1
            record["ja3"] = record["ja3_full"] = None
            record["problem"] = STATUS_NAMES[status]
        if record["sni"]:
            self.names[handle] = record["sni"]
        return record

    def on_flow_end(self, handle: int) -> None:
        self._flows.pop(handle, None)

    def drain(self) -> None:
        self._flows.clear()
