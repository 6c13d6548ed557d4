"""Writes a large, realistic mixed capture for the replay benchmark, deterministic for a seed.

    python3 -m bench.gen_mix --packets 1000000 --seed 1 --out mix.pcap

Sessions start as a Poisson process at a fixed rate (plus a few bulk
sessions already running when the capture starts) and run concurrently; a
heap merges their packets in time order. The mix, by sessions: DNS lookups
over UDP (A/AAAA, CNAME chains, NXDOMAIN, NODATA, unanswered), TLS over TCP
443 (ClientHellos with real structure, a fifth of them post-quantum and two
segments long), QUIC (Initials protected with the RFC 9001 keys and holding
a real ClientHello, then Handshake and short-header packets), HTTP on port
80, RTP media over UDP and failed TCP connections. Bulk flows carry most
packets, DNS most flows. A tenth of the sessions use IPv6, a twentieth carry
an 802.1Q tag both ways.

The arrival rate does not depend on `--packets`, so with one seed a smaller
file is a prefix of a larger one. Frames are built with `struct` only and
carry valid IPv4, TCP and UDP checksums: 2**16 = 1 (mod 0xFFFF), so the
ones' complement sum of a run of 16-bit words is the number they spell
modulo 0xFFFF, and a 32-bit field adds as a whole (see `TcpFlow.seg`). A sum
of 0 gives the checksum 0x0000, or 0xFFFF for UDP, where 0 means none.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import hmac
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

LINKTYPE_ETHERNET = 1  # tcpdump.org link-layer header types
SNAPLEN = 262144
CAPTURE_START_US = 1_717_236_000 * 1_000_000  # 2024-06-01 10:00 UTC
SESSIONS_PER_S = 60.0  # session arrival rate: about 4,000 packets per second
MIDSTREAM_SESSIONS = 40  # bulk sessions already running when the capture starts
SESSION_WEIGHTS = {  # share of arriving sessions by kind
    "dns": 0.60,
    "tls": 0.22,
    "quic": 0.085,
    "http": 0.04,
    "media": 0.001,
    "tcp_fail": 0.054,
}
IPV6_SHARE = 0.10
VLAN_SHARE = 0.05
VLAN_IDS = (10, 20, 101, 300)
POOL_SIZE = 1 << 20  # random bytes that encrypted payloads are cut from
TLS_RECORD_MAX = 16384 + 17  # a full record: plaintext, content type, AEAD tag (RFC 8446 5.2)

# TCP header flags (RFC 9293 section 3.1)
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
PCAP_RECORD = struct.Struct("<IIII")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIHHHH")
_TCP_TS = struct.Struct("!HHIIHHHHBBBBII")  # + NOP, NOP, timestamps (RFC 7323 section 3)
_UDP = struct.Struct("!HHHH")
_DNS_HEADER = struct.Struct("!HHHHHH")
_DNS_RR = struct.Struct("!HHHIH")  # compressed owner name, type, class, TTL, rdlength
_U16 = struct.Struct("!H")
_RTP = struct.Struct("!BBHII")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


Item = tuple[int, Any, bytes]  # (time in microseconds, flow, frame)
Session = Generator[Item, None, int]


# --- Frames ------------------------------------------------------------------------------


class Dir:
    """One direction of one flow up to the IP header; the L4 part adds its own."""

    __slots__ = ("dst", "eth", "flow_label", "ident", "ip_sum", "proto", "pseudo", "src", "ttl")

    def __init__(
        self,
        src_mac: bytes,
        dst_mac: bytes,
        vlan: int,
        src: bytes,
        dst: bytes,
        proto: int,
        ttl: int,
        rng: random.Random,
    ) -> None:
        tag = struct.pack("!HH", 0x8100, vlan) if vlan else b""
        self.eth = dst_mac + src_mac + tag + (b"\x86\xdd" if len(src) == 16 else b"\x08\x00")
        self.src, self.dst, self.proto, self.ttl = src, dst, proto, ttl
        self.ident = rng.randrange(65536)
        self.flow_label = rng.randrange(1 << 20) if len(src) == 16 else -1
        addr_sum = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
        # IPv4 header words but length and id: version/IHL 0x45, DF 0x4000, TTL/protocol
        self.ip_sum = (0x4500 + 0x4000 + (ttl << 8 | proto) + addr_sum) % 0xFFFF
        # The pseudo-header (RFC 9293 3.1, RFC 8200 8.1) but the L4 length
        self.pseudo = (addr_sum + proto) % 0xFFFF

    def ip(self, l4_len: int) -> bytes:
        """Ethernet and IP headers for an L4 segment of l4_len bytes."""
        if self.flow_label >= 0:
            return self.eth + _IP6.pack(
                0x60000000 | self.flow_label, l4_len, self.proto, self.ttl, self.src, self.dst
            )
        total = 20 + l4_len
        ident = self.ident = (self.ident + 1) & 0xFFFF
        csum = (0xFFFF - (self.ip_sum + total + ident) % 0xFFFF) % 0xFFFF
        return self.eth + _IP4.pack(
            0x45, 0, total, ident, 0x4000, self.ttl, self.proto, csum, self.src, self.dst
        )


def _word_sum(data: bytes) -> int:
    """The 16-bit words of data (zero-padded) as one number, congruent to their sum."""
    value = int.from_bytes(data, "big")
    return value << 8 if len(data) & 1 else value


class Flow:
    __slots__ = ("counted", "dirs", "kind", "ports", "v6", "vlan")

    def __init__(self, kind: str, up: Dir, down: Dir, cport: int, sport: int, vlan: int):
        self.kind = kind
        self.dirs = (up, down)
        self.ports = ((cport, sport), (sport, cport))
        self.v6 = up.flow_label >= 0
        self.vlan = vlan
        self.counted = False


class UdpFlow(Flow):
    __slots__ = ()

    def dgram(self, d: int, payload: bytes) -> bytes:
        """A datagram in direction d (0 client to server, 1 back)."""
        dr = self.dirs[d]
        sport, dport = self.ports[d]
        ulen = 8 + len(payload)
        csum = 0xFFFF - (dr.pseudo + 2 * ulen + sport + dport + _word_sum(payload)) % 0xFFFF
        return dr.ip(ulen) + _UDP.pack(sport, dport, ulen, csum) + payload


class TcpFlow(Flow):
    __slots__ = ("last_ts", "mss", "seq", "ts_base", "win")

    def __init__(self, *args: Any, rng: random.Random, timestamps: bool) -> None:
        super().__init__(*args)
        self.seq = [rng.getrandbits(32), rng.getrandbits(32)]
        self.win = (rng.choice((502, 501, 2052, 8212)), rng.choice((83, 287, 501, 1024)))
        self.ts_base = (rng.getrandbits(32), rng.getrandbits(32)) if timestamps else None
        self.last_ts = [0, 0]
        self.mss = 1448 if timestamps else 1460

    def syn(self, d: int, t_us: int) -> bytes:
        """SYN (d=0) or SYN-ACK (d=1) with MSS, SACK-permitted, timestamps, window scale."""
        dr = self.dirs[d]
        sport, dport = self.ports[d]
        seq = self.seq[d]
        ack = self.seq[0] if d else 0
        flags = SYN | ACK if d else SYN
        if self.ts_base is not None:
            tsval = self.last_ts[d] = (self.ts_base[d] + t_us // 1000) & 0xFFFFFFFF
            opts = (
                b"\x02\x04\x05\xb4\x04\x02\x08\x0a"
                + struct.pack("!II", tsval, self.last_ts[0] if d else 0)
                + b"\x01\x03\x03\x07"
            )
        else:
            opts = b"\x02\x04\x05\xb4\x01\x03\x03\x08\x01\x01\x04\x02"
        hlen = 20 + len(opts)
        off_flags = (hlen // 4) << 12 | flags
        total = dr.pseudo + hlen + sport + dport + seq + ack + off_flags + 64240 + _word_sum(opts)
        self.seq[d] = (seq + 1) & 0xFFFFFFFF
        header = _TCP.pack(
            sport, dport, seq, ack, off_flags, 64240, (0xFFFF - total % 0xFFFF) % 0xFFFF, 0
        )
        return dr.ip(hlen) + header + opts

    def seg(self, d: int, flags: int, t_us: int, payload: bytes = b"") -> bytes:
        """A segment after the handshake; the sequence numbers follow the bytes sent."""
        dr = self.dirs[d]
        sport, dport = self.ports[d]
        seq = self.seq[d]
        ack = self.seq[1 - d]
        win = self.win[d]
        n = len(payload)
        self.seq[d] = (seq + n + (flags & FIN)) & 0xFFFFFFFF
        if self.ts_base is None:
            off_flags = 0x5000 | flags
            total = dr.pseudo + 20 + n + sport + dport + seq + ack + off_flags + win
            csum = (0xFFFF - (total + _word_sum(payload)) % 0xFFFF) % 0xFFFF
            return (
                dr.ip(20 + n) + _TCP.pack(sport, dport, seq, ack, off_flags, win, csum, 0) + payload
            )
        tsval = self.last_ts[d] = (self.ts_base[d] + t_us // 1000) & 0xFFFFFFFF
        tsecr = self.last_ts[1 - d]
        off_flags = 0x8000 | flags
        total = dr.pseudo + 32 + n + sport + dport + seq + ack + off_flags + win
        total += 0x0101 + 0x080A + tsval + tsecr
        csum = (0xFFFF - (total + _word_sum(payload)) % 0xFFFF) % 0xFFFF
        header = _TCP_TS.pack(
            sport, dport, seq, ack, off_flags, win, csum, 0, 1, 1, 8, 10, tsval, tsecr
        )
        return dr.ip(32 + n) + header + payload


# --- DNS (RFC 1035 section 4) -------------------------------------------------------------


def name_wire(name: str) -> bytes:
    labels = [label.encode("ascii") for label in name.split(".")]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def _zone_offset(wire: bytes) -> int:
    """Offset in a name's wire form of its last two labels (the zone of an SOA)."""
    starts = []
    pos = 0
    while wire[pos]:
        starts.append(pos)
        pos += 1 + wire[pos]
    return starts[-2] if len(starts) >= 2 else 0


def edns_opt(cookie: bytes) -> bytes:
    """An OPT pseudo-RR (RFC 6891 6.1.2), UDP size 1232, with a DNS cookie (RFC 7873) or not."""
    opt = struct.pack("!HH", 10, len(cookie)) + cookie if cookie else b""
    return b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(opt)) + opt


def dns_query(ident: int, qname: bytes, qtype: int, edns: bytes) -> bytes:
    header = _DNS_HEADER.pack(ident, 0x0100, 1, 0, 0, 1 if edns else 0)
    return header + qname + struct.pack("!HH", qtype, 1) + edns


def dns_response(
    ident: int,
    qname: bytes,
    qtype: int,
    edns: bytes,
    rcode: int,
    chain: tuple[bytes, ...],
    addrs: tuple[bytes, ...],
    ttl: int,
) -> bytes:
    """A recursive resolver's answer: CNAMEs, then addresses, or an SOA when there are none."""
    body = [qname, struct.pack("!HH", qtype, 1)]
    pos = 12 + len(qname) + 4
    owner = 12
    for target in chain:
        body.append(_DNS_RR.pack(0xC000 | owner, 5, 1, ttl, len(target)) + target)
        owner = pos + 12
        pos += 12 + len(target)
    for addr in addrs:
        body.append(_DNS_RR.pack(0xC000 | owner, qtype, 1, ttl, len(addr)) + addr)
    authority = 0
    if not addrs:
        zone = 0xC000 | (12 + _zone_offset(qname))
        rdata = (
            b"\x03ns1"
            + _U16.pack(zone)
            + b"\x0ahostmaster"
            + _U16.pack(zone)
            + struct.pack("!IIIII", 2024060101, 7200, 3600, 1209600, 300)
        )
        body.append(_DNS_RR.pack(zone, 6, 1, 300, len(rdata)) + rdata)
        authority = 1
    body.append(edns)
    header = _DNS_HEADER.pack(
        ident, 0x8180 | rcode, 1, len(chain) + len(addrs), authority, 1 if edns else 0
    )
    return header + b"".join(body)


# --- TLS (RFC 8446) and QUIC (RFC 9000) -------------------------------------------------------

_GREASE = tuple(0x0A0A + 0x1010 * i for i in range(16))
_CIPHER_SUITES = tuple(
    int(x, 16) for x in _words("1301 1302 1303 C02B C02F C02C C030 CCA9 CCA8 C013 C014 009C 009D")
)
_SIG_ALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
X25519, SECP256R1, SECP384R1, X25519MLKEM768 = 0x001D, 0x0017, 0x0018, 0x11EC
MLKEM768_SHARE = 1216  # client key share: ML-KEM-768 encapsulation key + X25519
MLKEM768_REPLY = 1120  # server key share: ML-KEM-768 ciphertext + X25519


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def _u16_list(values: tuple[int, ...] | list[int]) -> bytes:
    return struct.pack(f"!H{len(values)}H", 2 * len(values), *values)


def client_hello(
    rng: random.Random, sni: str, alpn: tuple[bytes, ...], pq: bool, quic: bool = False
) -> bytes:
    """A TLS 1.3 ClientHello record as a browser sends it; pq adds an X25519MLKEM768 share.

    For QUIC (RFC 9001 sections 4 and 8.4) it is the bare handshake message, with
    transport parameters, an empty session id and none of the TCP-only extensions.
    """
    grease = rng.choice(_GREASE)
    host = sni.encode("ascii")
    groups = [grease, X25519, SECP256R1, SECP384R1]
    if pq:
        groups.insert(1, X25519MLKEM768)
    shares = struct.pack("!HH", grease, 1) + b"\x00"
    if pq:
        shares += struct.pack("!HH", X25519MLKEM768, MLKEM768_SHARE) + rng.randbytes(MLKEM768_SHARE)
    shares += struct.pack("!HH", X25519, 32) + rng.randbytes(32)
    payload = rng.choice((144, 176, 208, 240))
    ech = b"".join((b"\x00\x00\x01\x00\x01", rng.randbytes(1), b"\x00\x20", rng.randbytes(32)))
    ech += _U16.pack(payload) + rng.randbytes(payload)
    alpn_list = b"".join(bytes((len(p),)) + p for p in alpn)
    extensions = [
        _ext(grease, b""),
        _ext(0x0000, struct.pack("!HBH", len(host) + 3, 0, len(host)) + host),  # server_name
        _ext(0x0017, b""),  # extended_master_secret
        _ext(0xFF01, b"\x00"),  # renegotiation_info
        _ext(0x000A, _u16_list(groups)),  # supported_groups
        _ext(0x000B, b"\x01\x00"),  # ec_point_formats
        _ext(0x0023, b""),  # session_ticket
        _ext(0x0010, _U16.pack(len(alpn_list)) + alpn_list),  # ALPN
        _ext(0x0005, b"\x01\x00\x00\x00\x00"),  # status_request
        _ext(0x000D, _u16_list(_SIG_ALGS)),  # signature_algorithms
        _ext(0x0012, b""),  # signed_certificate_timestamp
        _ext(0x0033, _U16.pack(len(shares)) + shares),  # key_share
        _ext(0x002D, b"\x01\x01"),  # psk_key_exchange_modes
        _ext(0x002B, b"\x06" + struct.pack("!HHH", rng.choice(_GREASE), 0x0304, 0x0303)),
        _ext(0x001B, b"\x02\x00\x02"),  # compress_certificate: brotli
        _ext(0x44CD, b"\x00\x03" + alpn_list[:3]),  # application_settings (ALPS)
        _ext(0xFE0D, ech),  # encrypted_client_hello, GREASE (draft-ietf-tls-esni 6.2)
        _ext(rng.choice(_GREASE), b"\x00"),
    ]
    session_id = b"\x20" + rng.randbytes(32)
    if quic:
        extensions = [e for e in extensions if _U16.unpack_from(e)[0] not in _TCP_ONLY]
        extensions.append(_ext(0x0039, _QUIC_TRANSPORT_PARAMETERS + rng.randbytes(8)))
        session_id = b"\x00"
    rng.shuffle(extensions)  # as Chrome does since version 110
    exts = b"".join(extensions)
    body = b"".join((b"\x03\x03", rng.randbytes(32), session_id))
    body += _u16_list([grease, *_CIPHER_SUITES]) + b"\x01\x00" + _U16.pack(len(exts)) + exts
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    if quic:
        return handshake
    return b"\x16\x03\x01" + _U16.pack(len(handshake)) + handshake


def server_hello(rng: random.Random, pq: bool, blob: Callable[[int], bytes], sid: bool) -> bytes:
    """A TLS 1.3 ServerHello message; sid echoes a session id, as over TCP."""
    if pq:
        share = struct.pack("!HH", X25519MLKEM768, MLKEM768_REPLY) + blob(MLKEM768_REPLY)
    else:
        share = struct.pack("!HH", X25519, 32) + blob(32)
    exts = _ext(0x002B, b"\x03\x04") + _ext(0x0033, share)
    session_id = b"\x20" + rng.randbytes(32) if sid else b"\x00"
    body = b"".join((b"\x03\x03", rng.randbytes(32), session_id, b"\x13\x01\x00"))
    body += _U16.pack(len(exts)) + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def server_flight(rng: random.Random, pq: bool, blob: Callable[[int], bytes]) -> bytes:
    """ServerHello, ChangeCipherSpec, then the encrypted rest of the server's handshake."""
    hello = server_hello(rng, pq, blob, True)
    encrypted = rng.randint(2500, 5500)  # EncryptedExtensions, Certificate, CertificateVerify
    return b"".join((
        b"\x16\x03\x03", _U16.pack(len(hello)), hello,
        b"\x14\x03\x03\x00\x01\x01",  # ChangeCipherSpec
        b"\x17\x03\x03", _U16.pack(encrypted), blob(encrypted),
    ))  # fmt: skip


def quic_long(kind: int, version: int, dcid: bytes, scid: bytes, body: bytes) -> bytes:
    """A long-header packet (RFC 9000 17.2); body is packet number plus protected payload."""
    first = 0xC0 | kind << 4 | (body[0] & 0x0F)  # low bits are header-protected
    token = b"\x00" if kind == 0 else b""
    return b"".join((
        bytes((first,)), version.to_bytes(4, "big"), bytes((len(dcid),)), dcid,
        bytes((len(scid),)), scid, token, _U16.pack(0x4000 | len(body)), body,
    ))  # fmt: skip


QUIC_V1 = 0x00000001
QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")  # RFC 9001 5.2
_QUIC_TRANSPORT_PARAMETERS = bytes.fromhex(  # RFC 9000 18.2: idle timeout, payload size, ...
    "01048000ea60 030245c0 040480f00000 050480600000 060480600000 070480600000 080110 090110 0f08"
)
_TCP_ONLY = frozenset((0x0017, 0xFF01, 0x000B, 0x0023, 0x0005, 0x0012))


def _varint(value: int) -> bytes:
    """A QUIC variable-length integer (RFC 9000 section 16), 1, 2 or 4 bytes."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return _U16.pack(0x4000 | value)
    return struct.pack("!I", 0x80000000 | value)


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label of TLS 1.3 (RFC 8446 section 7.1), one SHA-256 block."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


class QuicInitialKeys:
    """Initial packet protection of one side (RFC 9001 section 5.2), from the client's DCID."""

    def __init__(self, dcid: bytes, server: bool) -> None:
        initial = hmac.new(QUIC_V1_SALT, dcid, hashlib.sha256).digest()
        secret = _expand_label(initial, b"server in" if server else b"client in", 32)
        self.aead = AESGCM(_expand_label(secret, b"quic key", 16))
        self.iv = int.from_bytes(_expand_label(secret, b"quic iv", 12), "big")
        self.hp = Cipher(algorithms.AES(_expand_label(secret, b"quic hp", 16)), modes.ECB())

    def packet(self, dcid: bytes, scid: bytes, pn: int, frames: bytes, size: int = 0) -> bytes:
        """A protected Initial (2-byte packet number) of frames, PADDING frames up to size."""
        head = b"\xc1" + QUIC_V1.to_bytes(4, "big") + bytes((len(dcid),)) + dcid
        head += bytes((len(scid),)) + scid + b"\x00"  # no token
        room = size - (len(head) + 2 + 2 + 16) - len(frames)  # length, number, AEAD tag
        if room > 0:
            frames += bytes(room)
        header = head + _U16.pack(0x4000 | (2 + len(frames) + 16)) + _U16.pack(pn)
        sealed = self.aead.encrypt((self.iv ^ pn).to_bytes(12, "big"), frames, header)
        mask = self.hp.encryptor().update(sealed[2:18])  # sample: 4 bytes past the number
        first = bytes((header[0] ^ (mask[0] & 0x0F),))
        number = bytes((header[-2] ^ mask[1], header[-1] ^ mask[2]))
        return first + header[1:-2] + number + sealed


def crypto_frames(data: bytes, chunk: int) -> list[bytes]:
    """CRYPTO frames (RFC 9000 section 19.6) carrying data in pieces of at most chunk bytes."""
    return [
        b"\x06" + _varint(off) + _varint(len(data[off : off + chunk])) + data[off : off + chunk]
        for off in range(0, len(data), chunk)
    ]


# --- Names and hosts ----------------------------------------------------------------------

_SITES = _words(
    """
    google.com youtube.com googlevideo.com gstatic.com googleapis.com facebook.com fbcdn.net
    instagram.com whatsapp.net microsoft.com windowsupdate.com office.com office365.com live.com
    sharepoint.com apple.com icloud.com mzstatic.com amazon.com amazonaws.com cloudfront.net
    github.com githubusercontent.com gitlab.com slack.com zoom.us netflix.com nflxvideo.net
    spotify.com scdn.co x.com twimg.com linkedin.com licdn.com wikipedia.org wikimedia.org
    reddit.com redd.it stackoverflow.com cloudflare.com doubleclick.net mozilla.org mozilla.net
    ubuntu.com debian.org pypi.org pythonhosted.org npmjs.org docker.io tiktokcdn.com bing.com
    yahoo.com salesforce.com atlassian.net dropbox.com adobe.com jsdelivr.net unpkg.com
    bbc.co.uk lemonde.fr spiegel.de booking.com paypal.com ebay.com shopify.com digicert.com
    letsencrypt.org sentry.io datadoghq.com newrelic.com okta.com
    """
)
_PREFIXES = _words(
    """
    www api cdn static img login accounts update telemetry assets media edge video play auth
    ocsp push mail graph events clients4 fonts s3 download analytics gateway app m i content
    """
)
_CDNS = (  # CNAME targets: a CDN's name for the site, then its edge host
    ("edgekey.net", "akamaiedge.net"),
    ("cdn.cloudflare.net", ""),
    ("fastly.net", "map.fastly.net"),
    ("cloudfront.net", ""),
    ("azureedge.net", "afd.azureedge.net"),
    ("trafficmanager.net", "cloudapp.azure.com"),
    ("akamaized.net", ""),
)
_SEARCH_SUFFIX = ("corp.example.net", "lan", "home.arpa", "office.example.com")
_PUBLIC_V4 = (13, 18, 20, 23, 31, 34, 35, 40, 52, 54, 64, 69, 104, 140, 142, 151, 157, 185, 199)
_PUBLIC_V6 = (0x2600, 0x2606, 0x2607, 0x2620, 0x2A00, 0x2A03, 0x2A04, 0x2001)
_ALPHANUM = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(slots=True)
class _Name:
    text: str
    wire: bytes
    chain: tuple[bytes, ...]
    v4: tuple[bytes, ...]
    v6: tuple[bytes, ...]
    ttl: int


@dataclass(slots=True)
class _Host:
    mac: bytes
    v4: bytes
    v6: bytes
    windows: bool  # no TCP timestamps, TTL 128


def _make_names(rng: random.Random, count: int) -> list[_Name]:
    names: list[_Name] = []
    seen: set[str] = set()
    while len(names) < count:
        site = _SITES[min(int(rng.paretovariate(0.9)) - 1, len(_SITES) - 1)]
        roll = rng.random()
        if roll < 0.15:
            text = site
        elif roll < 0.85:
            text = f"{rng.choice(_PREFIXES)}.{site}"
        else:  # a machine-made label, as CDNs and trackers use
            label = "".join(rng.choices(_ALPHANUM, k=rng.randint(6, 16)))
            text = f"{label}.{rng.choice(_PREFIXES)}.{site}"
        if text in seen:
            continue
        seen.add(text)
        chain: list[bytes] = []
        if rng.random() < 0.35:
            first, second = rng.choice(_CDNS)
            chain.append(name_wire(f"{text}.{first}"))
            if second:
                label = "".join(rng.choices(_ALPHANUM, k=rng.randint(4, 8)))
                chain.append(name_wire(f"{label}.{second}"))
        v4 = tuple(
            bytes(
                (
                    rng.choice(_PUBLIC_V4),
                    rng.randrange(256),
                    rng.randrange(256),
                    rng.randint(1, 254),
                )
            )
            for _ in range(rng.choice((1, 1, 1, 2, 4)))
        )
        v6 = ()
        if rng.random() < 0.7:
            v6 = tuple(
                struct.pack("!H", rng.choice(_PUBLIC_V6)) + rng.randbytes(14)
                for _ in range(rng.choice((1, 1, 2)))
            )
        ttl = rng.choice((20, 60, 60, 300, 300, 300, 3600, 86400))
        names.append(_Name(text, name_wire(text), tuple(chain), v4, v6, ttl))
    return names


def _make_hosts(rng: random.Random, count: int) -> list[_Host]:
    hosts = []
    for i in range(count):
        mac = bytes((0x02, 0x42)) + rng.randbytes(4)
        v4 = bytes((10, 20 + i // 250, i % 250 + 1, rng.randint(2, 250)))
        v6 = bytes.fromhex("20010db8002000000000000000000000")[:8] + rng.randbytes(8)
        hosts.append(_Host(mac, v4, v6, rng.random() < 0.3))
    return hosts


# --- Sessions -----------------------------------------------------------------------------


class _Mix:
    """The traffic model: one generator of (time, flow, frame) per session."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.pool = rng.randbytes(POOL_SIZE)
        self._pool_pos = 0
        self.hosts = _make_hosts(rng, 600)
        self.names = _make_names(rng, 3000)
        self._name_cum = list(
            _accumulate([1.0 / (rank + 1) ** 0.9 for rank in range(len(self.names))])
        )
        self.gateway_mac = bytes.fromhex("00005e000101")
        self.resolvers = (
            (bytes((10, 0, 0, 53)), bytes((10, 0, 1, 53))),
            (bytes.fromhex("20010db8000000530000000000000053"),),
        )
        self.makers: dict[str, Callable[[int, bool], Session]] = {
            "dns": self.dns,
            "tls": self.tls,
            "quic": self.quic,
            "http": self.http,
            "media": self.media,
            "tcp_fail": self.tcp_fail,
        }
        self.kinds = list(SESSION_WEIGHTS)
        self._kind_cum = list(_accumulate(SESSION_WEIGHTS.values()))

    def blob(self, n: int) -> bytes:
        """n random-looking bytes (encrypted payload)."""
        pos = self._pool_pos
        if pos + n > POOL_SIZE:
            pos = 0
        self._pool_pos = pos + n + 7
        return self.pool[pos : pos + n]

    def pick_kind(self) -> str:
        return self.rng.choices(self.kinds, cum_weights=self._kind_cum)[0]

    def pick_name(self) -> _Name:
        return self.rng.choices(self.names, cum_weights=self._name_cum)[0]

    def rtt_us(self) -> int:
        return int(min(max(self.rng.lognormvariate(10.1, 0.8), 1000), 300_000))

    def _endpoints(self) -> tuple[_Host, bool, int]:
        rng = self.rng
        host = rng.choice(self.hosts)
        vlan = rng.choice(VLAN_IDS) if rng.random() < VLAN_SHARE else 0
        return host, rng.random() < IPV6_SHARE, vlan

    def _dirs(self, host: _Host, server: bytes, vlan: int, proto: int) -> tuple[Dir, Dir]:
        client = host.v6 if len(server) == 16 else host.v4
        rng = self.rng
        ttl_up, ttl_down = 128 if host.windows else 64, rng.choice((52, 54, 57, 116, 244))
        up = Dir(host.mac, self.gateway_mac, vlan, client, server, proto, ttl_up, rng)
        down = Dir(self.gateway_mac, host.mac, vlan, server, client, proto, ttl_down, rng)
        return up, down

    def tcp(self, kind: str, host: _Host, server: bytes, port: int, vlan: int) -> TcpFlow:
        up, down = self._dirs(host, server, vlan, 6)
        cport = self.rng.randint(49152, 65535) if host.windows else self.rng.randint(32768, 60999)
        return TcpFlow(kind, up, down, cport, port, vlan, rng=self.rng, timestamps=not host.windows)

    def udp(
        self, kind: str, host: _Host, server: bytes, cport: int, port: int, vlan: int
    ) -> UdpFlow:
        up, down = self._dirs(host, server, vlan, 17)
        return UdpFlow(kind, up, down, cport, port, vlan)

    # -- DNS

    def lookup(self, t: int, host: _Host, v6: bool, vlan: int, name: _Name | None) -> Session:
        """A stub resolver's lookup: A (and AAAA) from one socket; returns the last time."""
        rng = self.rng
        resolver = rng.choice(self.resolvers[1 if v6 else 0])
        flow = self.udp("dns", host, resolver, rng.randint(32768, 60999), 53, vlan)
        rcode, chain, ttl = 0, (), 300
        if name is None:  # a name that does not exist: a search-list suffix or a typo
            base = rng.choice(self.names).text
            if rng.random() < 0.6:
                text = f"{base}.{rng.choice(_SEARCH_SUFFIX)}"
            else:
                text = "".join(rng.choices(_ALPHANUM, k=rng.randint(5, 12))) + "." + base
            qname, addrs4, addrs6, rcode = name_wire(text), (), (), 3
        else:
            qname, chain, addrs4, addrs6 = name.wire, name.chain, name.v4, name.v6
            ttl = rng.randint(1, name.ttl)
        edns = b""
        if rng.random() < 0.7:
            edns = edns_opt(rng.randbytes(8) if rng.random() < 0.4 else b"")
        qtypes = (1, 28) if v6 or rng.random() < 0.6 else (1,)
        answered = rng.random() >= 0.02
        cached = rng.random() < 0.6
        packets: list[tuple[int, int, bytes]] = []
        for i, qtype in enumerate(qtypes):
            ident = rng.getrandbits(16)
            sent = t + i * rng.randint(20, 200)
            packets.append((sent, 0, dns_query(ident, qname, qtype, edns)))
            if not answered:
                continue
            delay = rng.randint(200, 2000) if cached else int(rng.lognormvariate(10.3, 0.9))
            addrs = addrs4 if qtype == 1 else addrs6
            answer_chain = chain if rcode == 0 else ()
            reply = dns_response(ident, qname, qtype, edns, rcode, answer_chain, addrs, ttl)
            packets.append((sent + delay, 1, reply))
        packets.sort(key=lambda p: p[0])
        for when, d, payload in packets:
            yield when, flow, flow.dgram(d, payload)
        return packets[-1][0]

    def dns(self, t: int, midstream: bool) -> Session:
        host, v6, vlan = self._endpoints()
        name = None if self.rng.random() < 0.065 else self.pick_name()
        return (yield from self.lookup(t, host, v6, vlan, name))

    def _resolve(self, t: int, host: _Host, v6: bool, vlan: int, name: _Name) -> Session:
        """Half the connections follow a lookup in the capture (the rest hit a cache)."""
        if self.rng.random() < 0.5:
            t = yield from self.lookup(t, host, v6, vlan, name)
            t += self.rng.randint(100, 5000)
        return t

    def _server(self, name: _Name, v6: bool) -> bytes:
        addrs = name.v6 if v6 and name.v6 else name.v4
        return self.rng.choice(addrs)

    # -- TCP

    def _handshake(self, t: int, conn: TcpFlow, rtt: int) -> Session:
        yield t, conn, conn.syn(0, t)
        t += rtt
        yield t, conn, conn.syn(1, t)
        t += self.rng.randint(30, 300)
        yield t, conn, conn.seg(0, ACK, t)
        return t

    def _send(
        self, t: int, conn: TcpFlow, d: int, data: bytes, gap_us: int, rtt: int = 0
    ) -> Session:
        """Sends data in MSS-sized segments, the receiver acknowledging every second one;
        with an rtt, in bursts of a congestion window with half an rtt between them."""
        mss = conn.mss
        n = (len(data) + mss - 1) // mss
        ack_delay = min(gap_us // 2, 150)
        burst = self.rng.randint(10, 64) if rtt else n
        for i in range(n):
            last = i == n - 1
            yield t, conn, conn.seg(d, PSH | ACK if last else ACK, t, data[i * mss : (i + 1) * mss])
            if i & 1 or last:
                yield t + ack_delay, conn, conn.seg(1 - d, ACK, t + ack_delay)
            t += gap_us
            if i % burst == burst - 1:
                t += rtt // 2
        return t

    def _close(self, t: int, conn: TcpFlow, rtt: int) -> Session:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            yield t, conn, conn.seg(0, RST | ACK, t)
        elif roll < 0.08:
            return t  # left open: the capture or an idle timeout ends it
        else:
            first = 0 if roll < 0.7 else 1
            yield t, conn, conn.seg(first, FIN | ACK, t)
            t += rtt if first == 0 else rng.randint(50, 500)
            yield t, conn, conn.seg(1 - first, FIN | ACK, t)
            t += rng.randint(50, 500) if first == 0 else rtt
            yield t, conn, conn.seg(first, ACK, t)
        return t

    def _response_bytes(self, mss: int) -> int:
        """Bytes of one response: heavy-tailed, tens to thousands of segments."""
        segments = min(int(self.rng.lognormvariate(2.4, 1.6)) + 1, 20000)
        return segments * mss - self.rng.randint(0, mss - 200)

    def random_bytes(self, n: int) -> bytes:
        """n random-looking bytes, more than the pool holds if need be."""
        return b"".join(self.blob(min(n - k, 1 << 16)) for k in range(0, n, 1 << 16))

    def tls_records(self, n: int) -> bytes:
        """About n bytes of TLS 1.3 application data records (RFC 8446 5.2), full-sized."""
        records = []
        while n > 5:
            size = min(n - 5, TLS_RECORD_MAX)
            records.append(b"\x17\x03\x03" + _U16.pack(size) + self.blob(size))
            n -= 5 + size
        return b"".join(records)

    def _gap_us(self, mss: int) -> int:
        """Time between segments at a rate of a few to a few hundred Mbit/s."""
        mbps = min(max(self.rng.lognormvariate(3.0, 1.0), 1.0), 500.0)
        return max(int(mss * 8 / mbps), 24)

    def tls(self, t: int, midstream: bool) -> Session:
        rng = self.rng
        host, v6, vlan = self._endpoints()
        name = self.pick_name()
        if not midstream:
            t = yield from self._resolve(t, host, v6, vlan, name)
        conn = self.tcp("tls", host, self._server(name, v6), 443, vlan)
        rtt = self.rtt_us()
        gap = self._gap_us(conn.mss)
        if not midstream:
            t = yield from self._handshake(t, conn, rtt)
            alpn = (b"h2", b"http/1.1") if rng.random() < 0.9 else (b"http/1.1",)
            pq = rng.random() < 0.2
            t += rng.randint(50, 400)
            t = yield from self._send(t, conn, 0, client_hello(rng, name.text, alpn, pq), 20)
            t += rtt
            t = yield from self._send(t, conn, 1, server_flight(rng, pq, self.blob), gap)
            t += rng.randint(200, 2000)
            finished = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35" + self.blob(53)
            yield t, conn, conn.seg(0, PSH | ACK, t, finished)
        exchanges = 1 + int(rng.expovariate(0.5))
        for _ in range(exchanges):
            t += rng.randint(100, 3000)
            size = rng.randint(90, 900)
            request = b"\x17\x03\x03" + _U16.pack(size) + self.blob(size)  # application data
            yield t, conn, conn.seg(0, PSH | ACK, t, request)
            t += rtt
            upload = rng.random() < 0.05
            response = self.tls_records(self._response_bytes(conn.mss))
            t = yield from self._send(t, conn, 0 if upload else 1, response, gap, rtt)
            t += int(min(rng.expovariate(0.7), 30.0) * 1e6)
        return (yield from self._close(t, conn, rtt))

    def http(self, t: int, midstream: bool) -> Session:
        rng = self.rng
        host, v6, vlan = self._endpoints()
        name = self.pick_name()
        if not midstream:
            t = yield from self._resolve(t, host, v6, vlan, name)
        conn = self.tcp("http", host, self._server(name, v6), 80, vlan)
        rtt = self.rtt_us()
        gap = self._gap_us(conn.mss)
        if not midstream:
            t = yield from self._handshake(t, conn, rtt)
        for _ in range(1 + int(rng.expovariate(0.8))):
            t += rng.randint(100, 2000)
            path = "/" + "/".join(rng.choices(_PREFIXES, k=rng.randint(1, 4)))
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {name.text}\r\n"
                "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 "
                "Firefox/126.0\r\n"
                "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n"
            ).encode("ascii")
            yield t, conn, conn.seg(0, PSH | ACK, t, request)
            t += rtt
            body = self._response_bytes(conn.mss)
            header = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {body}\r\nServer: nginx\r\n\r\n"
            ).encode("ascii")
            t = yield from self._send(t, conn, 1, header + self.random_bytes(body), gap, rtt)
            t += int(min(rng.expovariate(1.0), 10.0) * 1e6)
        return (yield from self._close(t, conn, rtt))

    def tcp_fail(self, t: int, midstream: bool) -> Session:
        """A connection nobody answers (SYN retransmitted) or one refused with RST."""
        rng = self.rng
        host, v6, vlan = self._endpoints()
        server = self._server(self.pick_name(), v6)
        conn = self.tcp("tcp_fail", host, server, rng.choice((443, 443, 80, 22, 8443, 3389)), vlan)
        if rng.random() < 0.4:
            yield t, conn, conn.syn(0, t)
            t += self.rtt_us()
            yield t, conn, conn.seg(1, RST | ACK, t)
            return t
        seq = conn.seq[0]
        for backoff_s in (0, 1, 2, 4):
            t += backoff_s * 1_000_000
            conn.seq[0] = seq
            yield t, conn, conn.syn(0, t)
        return t

    # -- UDP

    def quic(self, t: int, midstream: bool) -> Session:
        rng = self.rng
        host, v6, vlan = self._endpoints()
        name = self.pick_name()
        if not midstream:
            t = yield from self._resolve(t, host, v6, vlan, name)
        flow = self.udp("quic", host, self._server(name, v6), rng.randint(32768, 60999), 443, vlan)
        rtt = self.rtt_us()
        gap = self._gap_us(1252)
        server_cid = rng.randbytes(8)
        blob = self.blob
        if not midstream:
            client_cid = rng.randbytes(8)
            pq = rng.random() < 0.2  # a post-quantum ClientHello takes two Initials
            hello = client_hello(rng, name.text, (b"h3",), pq, quic=True)
            client_keys = QuicInitialKeys(client_cid, False)
            for pn, frame in enumerate(crypto_frames(hello, 1150)):
                yield t, flow, flow.dgram(0, client_keys.packet(client_cid, b"", pn, frame, 1250))
                t += 30
            t += rtt
            server_keys = QuicInitialKeys(client_cid, True)
            ack = b"\x02\x00\x00\x00\x00"  # ACK of packet 0 (RFC 9000 section 19.3)
            crypto = crypto_frames(server_hello(rng, pq, blob, False), 1100)
            for pn, frame in enumerate(crypto):
                initial = server_keys.packet(b"", server_cid, pn, ack + frame if pn == 0 else frame)
                room = max(1200 - len(initial) - 17, 40)  # coalesced with a Handshake packet
                handshake = quic_long(2, QUIC_V1, b"", server_cid, blob(room))
                yield t, flow, flow.dgram(1, initial + handshake)
                t += 40
            for _ in range(rng.randint(1, 3)):  # the rest of the server's handshake
                body = blob(rng.randint(1100, 1200))
                yield t, flow, flow.dgram(1, quic_long(2, QUIC_V1, b"", server_cid, body))
                t += 40
            t += rng.randint(200, 1500)
            initial = client_keys.packet(server_cid, b"", 2, ack)
            handshake = quic_long(2, QUIC_V1, server_cid, b"", blob(rng.randint(60, 120)))
            # a datagram with an Initial is padded to 1200 bytes (RFC 9000 section 14.1)
            padding = bytes(max(1200 - len(initial) - len(handshake), 0))
            yield t, flow, flow.dgram(0, initial + handshake + padding)
        to_server = b"\x40" + server_cid
        for _ in range(1 + int(rng.expovariate(0.4))):
            t += rng.randint(200, 3000)
            yield t, flow, flow.dgram(0, to_server + blob(rng.randint(60, 600)))
            t += rtt
            segments = (self._response_bytes(1251) + 1250) // 1251
            ack_delay = min(gap // 2, 150)
            for i in range(segments):
                yield t, flow, flow.dgram(1, b"\x41" + blob(1251 if i < segments - 1 else 300))
                if i & 1:
                    when = t + ack_delay
                    yield when, flow, flow.dgram(0, to_server + blob(rng.randint(24, 40)))
                t += gap
            t += int(min(rng.expovariate(0.5), 20.0) * 1e6)
        return t

    def media(self, t: int, midstream: bool) -> Session:
        """An RTP call (RFC 3550): audio both ways every 20 ms, video down in a third of them."""
        rng = self.rng
        host, v6, vlan = self._endpoints()
        server = self._server(self.pick_name(), v6)
        flow = self.udp("media", host, server, 2 * rng.randint(8192, 16383), 3480, vlan)
        duration_us = int(min(rng.lognormvariate(4.3, 0.8), 900) * 1e6)
        video = rng.random() < 0.33
        ssrc = [rng.getrandbits(32) for _ in range(3)]
        seq = [rng.getrandbits(16) for _ in range(3)]
        stamp = [rng.getrandbits(32) for _ in range(3)]
        skew = rng.randint(1000, 9000)
        blob = self.blob
        for tick in range(duration_us // 20_000):
            base = t + tick * 20_000
            for d in (0, 1):
                size = rng.randint(60, 140)
                header = _RTP.pack(0x80, 111, seq[d], stamp[d], ssrc[d])
                seq[d] = (seq[d] + 1) & 0xFFFF
                stamp[d] = (stamp[d] + 960) & 0xFFFFFFFF
                yield base + d * skew, flow, flow.dgram(d, header + blob(size))
            if video and tick % 2 == 0:
                when = base + skew + 100
                packets = rng.randint(2, 7)
                for i in range(packets):
                    marker = 0x80 if i == packets - 1 else 0
                    header = _RTP.pack(0x80, marker | 96, seq[2], stamp[2], ssrc[2])
                    seq[2] = (seq[2] + 1) & 0xFFFF
                    yield when + i * 150, flow, flow.dgram(1, header + blob(rng.randint(900, 1180)))
                stamp[2] = (stamp[2] + 3600) & 0xFFFFFFFF
        return t + duration_us


def _accumulate(values: Any) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


# --- The merge -----------------------------------------------------------------------------


@dataclass(slots=True)
class Summary:
    """What generate() wrote: counts by session kind, IPv6 and VLAN shares."""

    packets: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    flows: Counter[str] = field(default_factory=Counter)
    packets_by_kind: Counter[str] = field(default_factory=Counter)
    ipv6_packets: int = 0
    vlan_packets: int = 0

    def line(self) -> str:
        total = self.packets
        flows = ", ".join(f"{k} {v:,}" for k, v in self.flows.most_common())
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in self.packets_by_kind.most_common())
        return (
            f"{total:,} packets, {self.bytes:,} bytes of frames over {self.duration_s:.0f} s; "
            f"flows {sum(self.flows.values()):,} ({flows}); packets by kind: {shares}; "
            f"IPv6 {self.ipv6_packets / total:.1%}, VLAN {self.vlan_packets / total:.1%}"
        )


def _sessions(mix: _Mix) -> Iterator[Item]:
    """Every packet of the mix in time order, endlessly."""
    rng = mix.rng
    heap: list[tuple[int, int, Item, Session]] = []
    serial = 0

    def start(kind: str, at: int, midstream: bool) -> None:
        nonlocal serial
        session = mix.makers[kind](at, midstream)
        first = next(session, None)
        if first is not None:
            serial += 1
            heapq.heappush(heap, (first[0], serial, first, session))

    for i in range(MIDSTREAM_SESSIONS):
        start(
            rng.choice(("tls", "tls", "tls", "quic", "quic", "http")) if i % 8 else "media",
            rng.randrange(2_000_000),
            True,
        )
    mean_gap_us = 1e6 / SESSIONS_PER_S
    arrival = int(rng.expovariate(1.0) * mean_gap_us)
    while True:
        while not heap or arrival <= heap[0][0]:
            start(mix.pick_kind(), arrival, False)
            arrival += int(rng.expovariate(1.0) * mean_gap_us) + 1
        _, order, item, session = heap[0]
        yield item
        following = next(session, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following[0], order, following, session))


def generate(path: str | Path, packets: int, seed: int) -> Summary:
    """Writes `packets` frames of the mix for `seed` to a classic pcap at path."""
    mix = _Mix(seed)
    summary = Summary()
    pack_record = PCAP_RECORD.pack
    flows, by_kind = summary.flows, summary.packets_by_kind
    written = size = ipv6 = vlan = 0
    first_us = last_us = 0
    with open(path, "wb") as out:
        out.write(PCAP_HEADER)
        parts: list[bytes] = []
        for t, flow, frame in _sessions(mix):
            if written == packets:
                break
            sec, usec = divmod(CAPTURE_START_US + t, 1_000_000)
            n = len(frame)
            parts.append(pack_record(sec, usec, n, n))
            parts.append(frame)
            written += 1
            size += n
            kind = flow.kind
            by_kind[kind] += 1
            if not flow.counted:
                flow.counted = True
                flows[kind] += 1
            if flow.v6:
                ipv6 += 1
            if flow.vlan:
                vlan += 1
            if written == 1:
                first_us = t
            last_us = t
            if len(parts) >= 32768:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))
    summary.packets, summary.bytes = written, size
    summary.ipv6_packets, summary.vlan_packets = ipv6, vlan
    summary.duration_s = (last_us - first_us) / 1e6
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.gen_mix", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, metavar="PATH")
    args = parser.parse_args(argv)
    if args.packets < 1:
        parser.error("--packets must be at least 1")
    started = time.perf_counter()
    summary = generate(args.out, args.packets, args.seed)
    elapsed = time.perf_counter() - started
    print(f"gen_mix: {args.out}: {summary.line()} (written in {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
