"""The job of `tapsense replay`, done with dpkt in pure Python: the benchmark's reference.

    python3 -m bench.dpkt_reference FILE --events PATH [--max-packets N]

It reads a classic pcap with dpkt.pcap.Reader, decodes Ethernet (802.1Q
tags included), IPv4/IPv6 and TCP/UDP with dpkt, keeps a bidirectional flow
table, pairs DNS queries over UDP with their responses (dpkt.dns), reads TLS
ClientHellos and ServerHellos over TCP (dpkt.ssl) and QUIC ClientHellos from
decrypted client Initials, and writes the records tapsense writes
(agent/record.py) as JSON Lines with orjson. The rules follow the engine
(ext/engine.pyx) and agent/dns.py, agent/tls.py, agent/quic.py, so the work
per packet and per record is the same job, done the usual Python way:

- flow key: protocol, the two (address, port) ends in canonical order, VLAN id;
- client: the sender of a SYN, the receiver of a SYN-ACK, else the side on an
  ephemeral port when the other is below 1024, else the first sender;
- timers run when packet time enters a new second: flows idle for 300 s (TCP),
  5 s (TCP after FIN both ways or RST), 60 s (UDP and other) end; a flow
  active for 120 s gives an interim record; queries unanswered after 10 s
  end, and so do ClientHellos whose ServerHello did not come;
- one LRU order per timeout class (OrderedDict), so expiry looks at the oldest only;
- TLS: the first 16 data segments of a TCP flow are looked at for a ClientHello
  record; from there both directions are put in order until the hellos parsed;
- QUIC: UDP datagrams that start with a long-header Initial (64 per flow) are
  opened with the Initial keys of their DCID (RFC 9001 section 5).

The record fields come from the same helpers as tapsense's (Community ID,
JA3/JA4 from the parsed hello fields); what is measured is the decoding,
parsing and bookkeeping. Not done (the benchmark mix has none of it): IP
fragments, tunnels, DNS over TCP, SSL 2.0 hellos, QUIC versions other than 1.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import socket
import struct
import sys
from collections import Counter, OrderedDict
from itertools import islice
from typing import Any

import dpkt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.dns import FLAG_BITS, PORT_PROTOCOL, RCODE_NAMES
from agent.fingerprint import ja3, ja3s, ja4
from agent.flow import PROTO_NAMES, community_id, tcp_flags_text
from agent.output import JsonLinesWriter
from agent.tls import hello_fields, hex16

TCP_TIMEOUT_S = 300.0
TCP_CLOSED_TIMEOUT_S = 5.0
UDP_TIMEOUT_S = 60.0
OTHER_TIMEOUT_S = 60.0
ACTIVE_TIMEOUT_S = 120.0
DNS_TIMEOUT_S = 10.0
SERVER_HELLO_TIMEOUT_S = 10.0
TLS_PROBE_SEGMENTS = 16
TLS_MAX_BUFFER = 16384 + 1024  # a ClientHello of at most 16 KiB, and record headers
QUIC_MAX_INITIALS = 64
QUIC_MAX_HELLO = 16384
DNS_PORTS = frozenset((53, 5353, 5355))  # DNS (RFC 1035), mDNS (RFC 6762), LLMNR (RFC 4795)
QUIC_V1 = 0x00000001
QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")  # RFC 9001 5.2

# Timeout classes, as in ext/_flowtable.pxd
TCP, TCP_CLOSED, UDP, OTHER = range(4)
TIMEOUTS = (TCP_TIMEOUT_S, TCP_CLOSED_TIMEOUT_S, UDP_TIMEOUT_S, OTHER_TIMEOUT_S)
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10  # TCP flags (RFC 9293 section 3.1)
ST_FIN_UP, ST_FIN_DOWN, ST_RST = 1, 2, 4  # Flow.state bits
SEQ_MASK = 0xFFFFFFFF

_IP4 = dpkt.ip.IP
_IP6 = dpkt.ip6.IP6
_TCP = dpkt.tcp.TCP
_UDP = dpkt.udp.UDP
_ERRORS = (dpkt.UnpackError, dpkt.NeedData, struct.error, IndexError, ValueError)
_TLS_ERRORS = (*_ERRORS, dpkt.ssl.SSL3Exception)
_AF = {4: socket.AF_INET, 16: socket.AF_INET6}
_ntop = socket.inet_ntop
_U16 = struct.Struct("!H")
_OPTION_HEADER = struct.Struct("!HH")


def _addr(raw: bytes) -> str:
    return _ntop(_AF[len(raw)], raw)


class Flow:
    __slots__ = (
        "bytes", "client", "cls", "cport", "dns", "first", "flags", "key", "last", "name",
        "pkts", "probes", "proto", "quic", "quic_left", "seen", "server", "sport", "state",
        "tls", "vlan",
    )  # fmt: skip

    def __init__(self, key: tuple[Any, ...], proto: int, ends: tuple[bytes, int, bytes, int],
                 vlan: int, ts: float, cls: int) -> None:  # fmt: skip
        self.key = key
        self.proto = proto
        self.client, self.cport, self.server, self.sport = ends
        self.vlan = vlan
        self.first = self.last = self.seen = ts
        self.pkts = [0, 0]
        self.bytes = [0, 0]
        self.flags = [0, 0]
        self.state = 0
        self.cls = cls
        self.dns = proto in (6, 17) and (self.cport in DNS_PORTS or self.sport in DNS_PORTS)
        self.probes = TLS_PROBE_SEGMENTS if proto == 6 else 0
        self.quic_left = QUIC_MAX_INITIALS if proto == 17 and not self.dns else 0
        self.tls: _TlsState | None = None
        self.quic: list[_QuicConn] = []
        self.name: tuple[str, str] | None = None


# --- DNS (RFC 1035) ------------------------------------------------------------------------


class _Query:
    __slots__ = ("dns", "qport", "querier", "responder", "rport", "ts")

    def __init__(self, ts: float, querier: bytes, qport: int, responder: bytes, rport: int,
                 dns: Any) -> None:  # fmt: skip
        self.ts, self.dns = ts, dns
        self.querier, self.qport, self.responder, self.rport = querier, qport, responder, rport


def _answer_text(rr: Any) -> str:
    kind = rr.type
    if kind == dpkt.dns.DNS_A:
        return _ntop(socket.AF_INET, rr.ip)
    if kind == dpkt.dns.DNS_AAAA:
        return _ntop(socket.AF_INET6, rr.ip6)
    if kind == dpkt.dns.DNS_CNAME:
        return str(rr.cname)
    if kind == dpkt.dns.DNS_NS:
        return str(rr.nsname)
    if kind == dpkt.dns.DNS_PTR:
        return str(rr.ptrname)
    if kind == dpkt.dns.DNS_MX:
        return f"{rr.preference[0]} {rr.mxname}"
    if kind == dpkt.dns.DNS_SOA:
        return (f"{rr.mname} {rr.rname} {rr.serial} {rr.refresh} {rr.retry} {rr.expire} "
                f"{rr.minimum}")  # fmt: skip
    if kind == dpkt.dns.DNS_TXT:
        return " ".join(rr.text)
    return f"\\# {len(rr.rdata)}"


def _edns(message: Any) -> dict[str, Any] | None:
    """The OPT pseudo-RR (RFC 6891 section 6.1) of a message, as tapsense reports it."""
    for rr in message.ar:
        if rr.type != dpkt.dns.DNS_OPT:
            continue
        options = []
        data = rr.rdata
        pos = 0
        while len(data) - pos >= 4:
            code, length = _OPTION_HEADER.unpack_from(data, pos)
            pos += 4 + length
            if pos > len(data):
                break
            options.append(code)
        ttl = rr.ttl
        return {
            "udp_size": rr.cls,
            "rcode_high": ttl >> 24,
            "version": (ttl >> 16) & 0xFF,
            "do": bool(ttl & 0x8000),
            "options": options,
            "ecs": None,
        }
    return None


# --- TLS hellos (RFC 8446 section 4.1) ------------------------------------------------------


def _u16s(data: bytes, start: int = 2) -> list[int]:
    """A list of 16-bit values after a length prefix of `start` bytes."""
    return list(struct.unpack_from(f"!{(len(data) - start) // 2}H", data, start))


def _alpn(data: bytes) -> list[bytes]:
    out = []
    pos = 2
    while pos < len(data):
        out.append(data[pos + 1 : pos + 1 + data[pos]])
        pos += 1 + data[pos]
    return out


def client_hello(ch: Any) -> dict[str, Any]:
    """The fields of a dpkt TLSClientHello, as agent._tls.parse_client_hello gives them."""
    hello: dict[str, Any] = {
        "version": ch.version,
        "ciphers": [suite.code for suite in ch.ciphersuites],
        "extensions": [],
        "sni": None,
        "has_sni": False,
        "alpn": [],
        "supported_versions": [],
        "groups": [],
        "point_formats": [],
        "signature_algorithms": [],
        "key_share_groups": [],
        "ech": False,
    }
    kinds = hello["extensions"]
    for kind, data in getattr(ch, "extensions", ()):
        kinds.append(kind)
        if kind == 0x0000 and len(data) >= 5:  # server_name (RFC 6066 section 3)
            hello["has_sni"] = True
            hello["sni"] = data[5 : 5 + _U16.unpack_from(data, 3)[0]]
        elif kind == 0x0010:
            hello["alpn"] = _alpn(data)
        elif kind == 0x000A:
            hello["groups"] = _u16s(data)
        elif kind == 0x000B and data:
            hello["point_formats"] = list(data[1 : 1 + data[0]])
        elif kind == 0x000D:
            hello["signature_algorithms"] = _u16s(data)
        elif kind == 0x002B and data:
            hello["supported_versions"] = _u16s(data, 1)
        elif kind == 0x0033:  # key_share: (group, length, key) entries
            pos = 2
            shares = hello["key_share_groups"]
            while pos + 4 <= len(data):
                group, length = _OPTION_HEADER.unpack_from(data, pos)
                shares.append(group)
                pos += 4 + length
        elif kind == 0xFE0D:
            hello["ech"] = True
    return hello


def server_hello(sh: Any) -> dict[str, Any]:
    """The fields of a dpkt TLSServerHello, as agent._tls.parse_server_hello gives them."""
    server: dict[str, Any] = {
        "version": sh.version,
        "cipher": sh.ciphersuite.code,
        "extensions": [],
        "selected_version": 0,
        "alpn": None,
    }
    for kind, data in getattr(sh, "extensions", ()):
        server["extensions"].append(kind)
        if kind == 0x002B and len(data) >= 2:
            server["selected_version"] = _U16.unpack_from(data)[0]
        elif kind == 0x0010 and len(data) >= 3:
            server["alpn"] = data[3 : 3 + data[2]]
    return server


def _messages(hs: bytearray) -> list[tuple[int, bytes]]:
    """Whole handshake messages at the front of hs, removed from it."""
    out = []
    while len(hs) >= 4:
        length = hs[1] << 16 | hs[2] << 8 | hs[3]
        if len(hs) < 4 + length:
            break
        out.append((hs[0], bytes(hs[4 : 4 + length])))
        del hs[: 4 + length]
    return out


class _TlsSide:
    __slots__ = ("buf", "done", "held", "hs", "next_seq")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.hs = bytearray()
        self.next_seq: int | None = None
        self.held: dict[int, bytes] = {}
        self.done = False

    def add(self, seq: int, payload: bytes) -> None:
        """Puts a segment in order; bytes ahead of a gap wait, bounded."""
        if self.next_seq is None:
            self.next_seq = seq
        ahead = (seq - self.next_seq) & SEQ_MASK
        if ahead and ahead < 1 << 31:
            if sum(map(len, self.held.values())) + len(payload) <= TLS_MAX_BUFFER:
                self.held[seq] = payload
            return
        if ahead:  # behind: a retransmission, maybe with new bytes at its end
            payload = payload[(self.next_seq - seq) & SEQ_MASK :]
        self.buf += payload
        self.next_seq = (self.next_seq + len(payload)) & SEQ_MASK
        while self.next_seq in self.held:
            payload = self.held.pop(self.next_seq)
            self.buf += payload
            self.next_seq = (self.next_seq + len(payload)) & SEQ_MASK


class _TlsState:
    __slots__ = ("hello_dir", "pending", "pending_ts", "sides")

    def __init__(self, hello_dir: int) -> None:
        self.hello_dir = hello_dir
        self.sides = (_TlsSide(), _TlsSide())
        self.pending: dict[str, Any] | None = None
        self.pending_ts = 0.0


def _looks_like_client_hello(payload: bytes) -> bool:
    return len(payload) >= 6 and payload[0] == 22 and payload[1] == 3 and payload[5] == 1


# --- QUIC Initials (RFC 9000 section 17.2.2, RFC 9001 section 5) ------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A QUIC variable-length integer (RFC 9000 section 16) at pos: (value, next pos)."""
    first = data[pos]
    size = 1 << (first >> 6)
    value = first & 0x3F
    for i in range(1, size):
        value = value << 8 | data[pos + i]
    return value, pos + size


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label of TLS 1.3 (RFC 8446 section 7.1) for at most 32 bytes."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


class _QuicConn:
    __slots__ = ("aead", "chunks", "dcid", "done", "hp", "iv")

    def __init__(self, dcid: bytes) -> None:
        initial = hmac.new(QUIC_V1_SALT, dcid, hashlib.sha256).digest()
        secret = _expand_label(initial, b"client in", 32)
        self.aead = AESGCM(_expand_label(secret, b"quic key", 16))
        self.iv = int.from_bytes(_expand_label(secret, b"quic iv", 12), "big")
        self.hp = Cipher(algorithms.AES(_expand_label(secret, b"quic hp", 16)), modes.ECB())
        self.dcid = dcid
        self.chunks: dict[int, bytes] = {}
        self.done = False

    def open(self, packet: bytes, pn_offset: int) -> bytes | None:
        """Removes header protection and decrypts an Initial; the payload or None."""
        sample = packet[pn_offset + 4 : pn_offset + 20]
        if len(sample) < 16:
            return None
        mask = self.hp.encryptor().update(sample)
        first = packet[0] ^ (mask[0] & 0x0F)
        pn_len = (first & 0x03) + 1
        number = bytes(
            b ^ m
            for b, m in zip(
                packet[pn_offset : pn_offset + pn_len], mask[1 : 1 + pn_len], strict=True
            )
        )
        header = bytes((first,)) + packet[1:pn_offset] + number
        nonce = (self.iv ^ int.from_bytes(number, "big")).to_bytes(12, "big")
        try:
            return self.aead.decrypt(nonce, packet[pn_offset + pn_len :], header)
        except InvalidTag:
            return None

    def stream(self, want: int) -> bytes | None:
        """The first `want` bytes of the CRYPTO stream once they have all arrived."""
        out = b""
        for offset in sorted(self.chunks):
            if offset > len(out):
                return None
            out += self.chunks[offset][len(out) - offset :]
            if len(out) >= want:
                return out[:want]
        return None


def _crypto_frames(payload: bytes) -> list[tuple[int, bytes]]:
    """The CRYPTO frames of an Initial's payload (RFC 9000 section 19): (offset, data)."""
    out = []
    pos = 0
    n = len(payload)
    while pos < n:
        kind = payload[pos]
        if kind == 0x00:  # PADDING, usually a long run
            pos = n - len(payload[pos:].lstrip(b"\x00"))
        elif kind == 0x01:  # PING
            pos += 1
        elif kind in (0x02, 0x03):  # ACK: largest, delay, range count, first range, ranges
            _largest, pos = _varint(payload, pos + 1)
            _delay, pos = _varint(payload, pos)
            count, pos = _varint(payload, pos)
            _first, pos = _varint(payload, pos)
            for _ in range(2 * count + (3 if kind == 0x03 else 0)):
                _value, pos = _varint(payload, pos)
        elif kind == 0x06:
            offset, pos = _varint(payload, pos + 1)
            length, pos = _varint(payload, pos)
            out.append((offset, payload[pos : pos + length]))
            pos += length
        else:  # CONNECTION_CLOSE or a frame an Initial may not carry
            break
    return out


# --- The pipeline -------------------------------------------------------------------------


class Reference:
    """Flows, DNS, TLS and QUIC state; `packet` per frame, `finish` at the end."""

    def __init__(self) -> None:
        self.flows: dict[tuple[Any, ...], Flow] = {}
        self.lru: tuple[OrderedDict[tuple[Any, ...], Flow], ...] = tuple(
            OrderedDict() for _ in TIMEOUTS
        )
        self.pending: OrderedDict[tuple[Any, ...], _Query] = OrderedDict()
        self.tls_waiting: OrderedDict[tuple[Any, ...], Flow] = OrderedDict()
        self.records: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.record_counts: Counter[str] = Counter()
        self.now = 0.0
        self.tick_sec = 0

    def packet(self, ts: float, buf: bytes) -> None:
        counts = self.counts
        if ts > self.now:
            self.now = ts
        sec = int(self.now)
        if sec != self.tick_sec:
            self.tick_sec = sec
            self._tick()
        counts["packets"] += 1
        counts["bytes"] += len(buf)
        try:
            eth = dpkt.ethernet.Ethernet(buf)
        except _ERRORS:
            counts["decode.ether"] += 1
            return
        ip = eth.data
        if isinstance(ip, _IP4):
            ip_len, proto = ip.len, ip.p
        elif isinstance(ip, _IP6):
            ip_len, proto = ip.plen + 40, ip.nxt
        else:
            counts["decode.l3"] += 1
            return
        l4 = ip.data
        if isinstance(l4, _TCP | _UDP):
            sport, dport = l4.sport, l4.dport
        elif proto in (6, 17):
            counts["decode.l4"] += 1
            return
        else:
            sport = dport = 0
        vlan = eth.vlanid if hasattr(eth, "vlanid") else 0
        self._flow_packet(ts, ip.src, sport, ip.dst, dport, proto, ip_len, vlan, l4)

    def _flow_packet(self, ts: float, src: bytes, sport: int, dst: bytes, dport: int,
                     proto: int, ip_len: int, vlan: int, l4: Any) -> None:  # fmt: skip
        if (src, sport) <= (dst, dport):
            key = (proto, src, sport, dst, dport, vlan)
        else:
            key = (proto, dst, dport, src, sport, vlan)
        tcp_flags = l4.flags if proto == 6 else 0
        flow = self.flows.get(key)
        if flow is not None and tcp_flags & (SYN | ACK) == SYN and flow.cls == TCP_CLOSED:
            self._end(flow, "rst" if flow.state & ST_RST else "fin")  # a new connection
            flow = None
        if flow is None:
            flow = self._new_flow(key, ts, src, sport, dst, dport, proto, tcp_flags, vlan)
        dirn = 0 if sport == flow.cport and src == flow.client else 1
        pkts = flow.pkts
        if not pkts[0] and not pkts[1]:
            flow.first = ts  # first packet of a report period
        pkts[dirn] += 1
        flow.bytes[dirn] += ip_len
        if ts > flow.last:
            flow.last = ts
        flow.seen = now = self.now
        cls = flow.cls
        if proto == 6:
            flow.flags[dirn] |= tcp_flags
            if tcp_flags & RST:
                flow.state |= ST_RST
            if tcp_flags & FIN:
                flow.state |= ST_FIN_UP if dirn == 0 else ST_FIN_DOWN
            if flow.state & ST_RST or flow.state & 3 == ST_FIN_UP | ST_FIN_DOWN:
                cls = TCP_CLOSED
        if cls != flow.cls:
            del self.lru[flow.cls][key]
            flow.cls = cls
        lru = self.lru[cls]
        lru[key] = flow
        lru.move_to_end(key)
        if proto == 6 or proto == 17:
            payload = l4.data
            if payload:
                if flow.dns:
                    if proto == 17:
                        self._dns(ts, src, sport, dst, dport, payload)
                elif proto == 6:
                    if flow.tls is not None:
                        self._tls_segment(flow, dirn, l4.seq, payload, ts)
                    elif flow.probes:
                        flow.probes -= 1
                        if _looks_like_client_hello(payload):
                            flow.tls = _TlsState(dirn)
                            self._tls_segment(flow, dirn, l4.seq, payload, ts)
                elif flow.quic_left and payload[0] & 0xF0 == 0xC0 and len(payload) > 6:
                    flow.quic_left -= 1
                    self._quic(flow, dirn, payload, ts)
        if now >= flow.first + ACTIVE_TIMEOUT_S:
            self.counts["interim_records"] += 1
            self._emit_flow(flow, "interim")
            flow.pkts = [0, 0]
            flow.bytes = [0, 0]
            flow.first = flow.last

    def _new_flow(self, key: tuple[Any, ...], ts: float, src: bytes, sport: int, dst: bytes,
                  dport: int, proto: int, tcp_flags: int, vlan: int) -> Flow:  # fmt: skip
        if proto == 6:
            if tcp_flags & (SYN | ACK) == SYN | ACK:
                sender_is_client = False
            elif tcp_flags & SYN:
                sender_is_client = True
            else:
                sender_is_client = not (sport < 1024 and dport >= 1024)
            cls = TCP
        elif proto == 17:
            sender_is_client = not (sport < 1024 and dport >= 1024)
            cls = UDP
        else:
            sender_is_client = True
            cls = OTHER
        ends = (src, sport, dst, dport) if sender_is_client else (dst, dport, src, sport)
        flow = self.flows[key] = Flow(key, proto, ends, vlan, ts, cls)
        self.counts["flows_created"] += 1
        return flow

    def _tick(self) -> None:
        now = self.now
        pending = self.pending
        while pending:
            key, query = next(iter(pending.items()))
            if query.ts + DNS_TIMEOUT_S > now:
                break
            del pending[key]
            self._dns_record(query, None)
        waiting = self.tls_waiting
        while waiting:
            flow = next(iter(waiting.values()))
            assert flow.tls is not None
            if flow.tls.pending_ts + SERVER_HELLO_TIMEOUT_S > now:
                break
            self._tls_emit(flow)
        for cls, timeout in enumerate(TIMEOUTS):
            lru = self.lru[cls]
            while lru:
                flow = next(iter(lru.values()))
                if flow.seen + timeout > now:
                    break
                if cls == TCP_CLOSED:
                    self._end(flow, "rst" if flow.state & ST_RST else "fin")
                else:
                    self._end(flow, "idle")

    def _end(self, flow: Flow, reason: str) -> None:
        if flow.tls is not None and flow.tls.pending is not None:
            self._tls_emit(flow)
        self._emit_flow(flow, reason)
        self.counts["flows_ended"] += 1
        del self.flows[flow.key]
        del self.lru[flow.cls][flow.key]

    def _emit_flow(self, flow: Flow, end: str) -> None:
        proto = flow.proto
        tcp = proto == 6
        name = flow.name
        self.records.append({
            "type": "flow",
            "ts": flow.first,
            "src": _addr(flow.client),
            "sport": flow.cport,
            "dst": _addr(flow.server),
            "dport": flow.sport,
            "proto": PROTO_NAMES.get(proto) or str(proto),
            "flow": community_id(proto, flow.client, flow.server, flow.cport, flow.sport),
            "ts_end": flow.last,
            "pkts_up": flow.pkts[0],
            "bytes_up": flow.bytes[0],
            "pkts_down": flow.pkts[1],
            "bytes_down": flow.bytes[1],
            "end": end,
            "tcp_flags_up": tcp_flags_text(flow.flags[0]) if tcp else None,
            "tcp_flags_down": tcp_flags_text(flow.flags[1]) if tcp else None,
            "vlan": flow.vlan or None,
            "name": name[0] if name else None,
            "name_source": name[1] if name else None,
        })  # fmt: skip
        self.record_counts["flow"] += 1

    # -- DNS

    def _dns(self, ts: float, src: bytes, sport: int, dst: bytes, dport: int, data: bytes) -> None:
        try:
            message = dpkt.dns.DNS(data)
        except _ERRORS:
            self.counts["dns.not_dns"] += 1
            return
        self.counts["dns.messages"] += 1
        is_response = message.qr == dpkt.dns.DNS_R
        if is_response:
            side = _Query(ts, dst, dport, src, sport, message)
        else:
            side = _Query(ts, src, sport, dst, dport, message)
        question = (message.qd[0].name, message.qd[0].type) if message.qd else None
        key = (side.querier, side.qport, side.responder, side.rport, message.id, question)
        pending = self.pending
        if not is_response:
            earlier = pending.pop(key, None)
            if earlier is not None:
                self.counts["dns.retransmitted_query"] += 1
                self._dns_record(earlier, None)
            pending[key] = side
            return
        query = pending.pop(key, None)
        if query is None:
            self._dns_record(None, side)
        else:
            self._dns_record(query, side)

    def _dns_record(self, query: _Query | None, response: _Query | None) -> None:
        first = query or response
        assert first is not None
        message = first.dns
        if message.qd:
            q = message.qd[0]
            qname, qtype, qclass = q.name, q.type, q.cls
        else:
            qname = qtype = qclass = None
        answers: list[str] = []
        answer_types: list[int] = []
        ttls: list[int] = []
        rcode = rcode_name = rtt = None
        edns = None
        if response is not None:
            reply = response.dns
            for rr in reply.an:
                answers.append(_answer_text(rr))
                answer_types.append(rr.type)
                ttls.append(rr.ttl)
            edns = _edns(reply)
            rcode = reply.op & 0x000F
            if edns is not None:  # the 12-bit extended RCODE, RFC 6891 section 6.1.3
                rcode |= edns["rcode_high"] << 4
            rcode_name = RCODE_NAMES.get(rcode, str(rcode))
            if query is not None:
                rtt = response.ts - query.ts
        if edns is None and query is not None:
            edns = _edns(query.dns)
        flags_word = (response or first).dns.op
        rport = first.rport
        if query is None:
            status = "unsolicited"
        else:
            status = "unanswered" if response is None else "answered"
        self.records.append({
            "type": "dns",
            "ts": first.ts,
            "src": _addr(first.querier),
            "sport": first.qport,
            "dst": _addr(first.responder),
            "dport": rport,
            "proto": "udp",
            "flow": community_id(17, first.querier, first.responder, first.qport, rport),
            "transport": "udp",
            "protocol": PORT_PROTOCOL.get(rport, "dns"),
            "status": status,
            "id": message.id,
            "opcode": (message.op >> 11) & 0xF,
            "qname": qname,
            "qtype": qtype,
            "qclass": qclass & 0x7FFF if qclass is not None and rport == 5353 else qclass,
            "rcode": rcode,
            "rcode_name": rcode_name,
            "answers": answers,
            "answer_types": answer_types,
            "ttls": ttls,
            "rtt": rtt,
            "flags": [name for name, bit in FLAG_BITS if flags_word & bit],
            "questions": [[q.name, q.type] for q in message.qd] if len(message.qd) > 1 else None,
            "edns": edns,
            "problem": None,
        })  # fmt: skip
        self.record_counts["dns"] += 1

    # -- TLS over TCP

    def _tls_segment(self, flow: Flow, dirn: int, seq: int, payload: bytes, ts: float) -> None:
        state = flow.tls
        assert state is not None
        side = state.sides[dirn]
        if side.done:
            return
        side.add(seq, payload)
        try:
            records, used = dpkt.ssl.tls_multi_factory(bytes(side.buf))
        except _TLS_ERRORS:
            side.done = True  # not TLS
            return
        del side.buf[:used]
        client = dirn == state.hello_dir
        for record in records:
            if record.type == 20 and client:  # ChangeCipherSpec (middlebox compatibility)
                continue
            if record.type != 22:  # application data or an alert: the hellos are over
                side.done = True
                return
            side.hs += record.data
            for kind, body in _messages(side.hs):
                try:
                    if client and kind == 1:
                        hello = client_hello(dpkt.ssl.TLSClientHello(body))
                        if state.pending is not None:  # a second hello (HelloRetryRequest)
                            self._tls_emit(flow)
                        self._tls_pending(flow, state, hello, ts)
                    elif not client and kind == 2:
                        server = server_hello(dpkt.ssl.TLSServerHello(body))
                        side.done = True
                        self.counts["tls.server_hello"] += 1
                        if state.pending is not None:
                            self._tls_answer(state.pending, server)
                            self._tls_emit(flow)
                        return
                except _TLS_ERRORS:
                    self.counts["tls.giveup.malformed"] += 1
                    side.done = True
                    return
        if len(side.buf) + len(side.hs) > TLS_MAX_BUFFER:
            self.counts["tls.giveup.too_big"] += 1
            side.done = True

    def _tls_pending(self, flow: Flow, state: _TlsState, hello: dict[str, Any], ts: float) -> None:
        if state.hello_dir == 0:
            caddr, cport, saddr, sport = flow.client, flow.cport, flow.server, flow.sport
        else:
            caddr, cport, saddr, sport = flow.server, flow.sport, flow.client, flow.cport
        ja3_hash, ja3_full = ja3(hello)
        hello["ja4"] = ja4(hello, "t")
        state.pending = {
            "type": "tls",
            "ts": ts,
            "src": _addr(caddr),
            "sport": cport,
            "dst": _addr(saddr),
            "dport": sport,
            "proto": "tcp",
            "flow": community_id(6, caddr, saddr, cport, sport),
            **hello_fields(hello),
            "version": hex16(hello["version"]),
            "ja3": ja3_hash,
            "ja3_full": ja3_full,
            "server_version": None,
            "cipher": None,
            "ja3s": None,
            "ja3s_full": None,
            "server_alpn": None,
            "problem": None,
        }
        state.pending_ts = ts
        self.tls_waiting[flow.key] = flow
        self.tls_waiting.move_to_end(flow.key)
        if state.pending["sni"]:
            flow.name = (state.pending["sni"], "tls")
        self.counts["tls.client_hello"] += 1

    @staticmethod
    def _tls_answer(record: dict[str, Any], server: dict[str, Any]) -> None:
        selected = server["selected_version"]
        record["server_version"] = hex16(selected if selected else server["version"])
        record["cipher"] = hex16(server["cipher"])
        record["ja3s"], record["ja3s_full"] = ja3s(server)
        alpn = server["alpn"]
        record["server_alpn"] = alpn.decode("utf-8", "backslashreplace") if alpn else None

    def _tls_emit(self, flow: Flow) -> None:
        state = flow.tls
        assert state is not None and state.pending is not None
        self.records.append(state.pending)
        self.record_counts["tls"] += 1
        state.pending = None
        self.tls_waiting.pop(flow.key, None)

    # -- QUIC

    def _quic(self, flow: Flow, dirn: int, datagram: bytes, ts: float) -> None:
        """The long-header packets of a datagram (coalesced, RFC 9000 section 12.2)."""
        pos = 0
        n = len(datagram)
        try:
            while pos + 7 <= n and datagram[pos] & 0x80:
                version = int.from_bytes(datagram[pos + 1 : pos + 5], "big")
                at = pos + 5
                dcid = datagram[at + 1 : at + 1 + datagram[at]]
                at += 1 + datagram[at]
                at += 1 + datagram[at]  # source connection id
                kind = (datagram[pos] >> 4) & 0x03
                if kind == 0:
                    token_length, at = _varint(datagram, at)
                    at += token_length
                length, at = _varint(datagram, at)
                end = at + length
                if end > n or version != QUIC_V1:
                    self.counts["quic.header.truncated" if end > n else "quic.unsupported"] += 1
                    return
                if kind == 0:
                    packet = datagram[pos:end]
                    self._quic_initial(flow, dirn, packet, at - pos, dcid, ts)
                pos = end
        except IndexError:
            self.counts["quic.header.truncated"] += 1

    def _quic_initial(self, flow: Flow, dirn: int, packet: bytes, pn_offset: int, dcid: bytes,
                      ts: float) -> None:  # fmt: skip
        conn = next((c for c in flow.quic if c.dcid == dcid), None)
        payload = conn.open(packet, pn_offset) if conn is not None else None
        if conn is None:
            for known in flow.quic:  # a later DCID of a connection known by its first one
                if not known.done:
                    payload = known.open(packet, pn_offset)
                    if payload is not None:
                        conn = known
                        break
            if conn is None:
                conn = _QuicConn(dcid)
                payload = conn.open(packet, pn_offset)
                if payload is not None:
                    flow.quic.append(conn)
        if payload is None:
            self.counts["quic.undecryptable"] += 1  # a server Initial, or not QUIC
            return
        self.counts["quic.initials_decrypted"] += 1
        if conn.done:
            return
        try:
            for offset, data in _crypto_frames(payload):
                conn.chunks.setdefault(offset, data)
        except IndexError:
            self.counts["quic.frames.truncated"] += 1
        head = conn.stream(4)
        if head is None:
            return
        length = int.from_bytes(head[1:4], "big")
        if head[0] != 1 or length > QUIC_MAX_HELLO:
            conn.done = True
            return
        message = conn.stream(4 + length)
        if message is None:
            return
        conn.done = True
        conn.chunks.clear()
        try:
            hello = client_hello(dpkt.ssl.TLSClientHello(message[4:]))
        except _TLS_ERRORS:
            self.counts["quic.giveup.malformed"] += 1
            return
        self.counts["quic.client_hello"] += 1
        self._quic_record(flow, dirn, conn, hello, ts)

    def _quic_record(self, flow: Flow, dirn: int, conn: _QuicConn, hello: dict[str, Any],
                     ts: float) -> None:  # fmt: skip
        if dirn == 0:
            caddr, cport, saddr, sport = flow.client, flow.cport, flow.server, flow.sport
        else:
            caddr, cport, saddr, sport = flow.server, flow.sport, flow.client, flow.cport
        ja3_hash, ja3_full = ja3(hello)
        hello["ja4"] = ja4(hello, "q")
        record = {
            "type": "quic",
            "ts": ts,
            "src": _addr(caddr),
            "sport": cport,
            "dst": _addr(saddr),
            "dport": sport,
            "proto": "udp",
            "flow": community_id(17, caddr, saddr, cport, sport),
            **hello_fields(hello),
            "version": f"0x{QUIC_V1:08x}",
            "tls_version": hex16(hello["version"]),
            "dcid": conn.dcid.hex(),
            "repeat": False,
            "ja3": ja3_hash,
            "ja3_full": ja3_full,
            "problem": None,
        }
        if record["sni"] and flow.name is None:
            flow.name = (record["sni"], "quic")
        self.records.append(record)
        self.record_counts["quic"] += 1

    # -- End of input

    def finish(self) -> None:
        """End of input: every waiting query and hello is reported, every flow ends."""
        for query in self.pending.values():
            self._dns_record(query, None)
        self.pending.clear()
        while self.tls_waiting:
            self._tls_emit(next(iter(self.tls_waiting.values())))
        for cls, lru in enumerate(self.lru):
            while lru:
                flow = next(iter(lru.values()))
                if cls == TCP_CLOSED:  # already closed: it keeps its reason
                    self._end(flow, "rst" if flow.state & ST_RST else "fin")
                else:
                    self._end(flow, "shutdown")

    def take(self) -> list[dict[str, Any]]:
        records = self.records
        self.records = []
        return records

    def stats_record(self) -> dict[str, Any]:
        counts = self.counts
        prefixed = ("dns.", "tls.", "quic.")
        return {
            "type": "stats",
            "ts": self.now,
            "packets": counts["packets"],
            "bytes": counts["bytes"],
            "kernel_drops": 0,
            "flows_active": len(self.flows),
            "records": dict(self.record_counts),
            "decode_errors": {k[7:]: v for k, v in counts.items() if k.startswith("decode.")},
            "caps": {},
            "capture": {"frames": counts["packets"]},
            "fragments": {},
            "dns": {k: v for k, v in counts.items() if k.startswith(prefixed)},
            "shipping": {},
        }


def replay(path: str, events: str | None, max_packets: int | None = None) -> Reference:
    """Runs the reference over the first max_packets frames (all when None) of path."""
    ref = Reference()
    writer = JsonLinesWriter(events) if events else None
    with open(path, "rb") as capture:
        reader = dpkt.pcap.Reader(capture)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise SystemExit(f"{path}: only Ethernet captures are supported")
        packet = ref.packet
        for done, (ts, buf) in enumerate(islice(reader, max_packets), 1):
            packet(ts, buf)
            if done & 0x3FFF == 0 and writer is not None:
                writer.write(ref.take())  # type: ignore[arg-type]
    ref.finish()
    if writer is not None:
        writer.write(ref.take())  # type: ignore[arg-type]
        writer.write([ref.stats_record()])  # type: ignore[list-item]
        writer.close()
    return ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.dpkt_reference", description=__doc__.split("\n")[0]
    )
    parser.add_argument("file", metavar="FILE", help="classic pcap, Ethernet")
    parser.add_argument(
        "--events", metavar="PATH", help="write records as JSON Lines (- for stdout)"
    )
    parser.add_argument("--max-packets", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    args = parser.parse_args(argv)
    ref = replay(args.file, args.events, args.max_packets)
    if not args.quiet:
        by_type = ", ".join(f"{k} {v:,}" for k, v in sorted(ref.record_counts.items()))
        print(f"dpkt_reference: {ref.counts['packets']:,} packets, {by_type}, stats 1",
              file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
