"""Flow identity and flow records: Community ID, address text, EV_FLOW to FlowRecord."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
from typing import Any

from agent.engine import END_NAMES
from agent.record import FlowRecord

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmp6", 132: "sctp"}
_PORTED = frozenset((1, 6, 17, 58, 132))
_TCP_FLAG_LETTERS = "FSRPAUEC"  # bit 0 (FIN) to bit 7 (CWR), RFC 9293 section 3.1
_TCP_FLAGS_TEXT = tuple(
    "".join(letter for i, letter in enumerate(_TCP_FLAG_LETTERS) if bits >> i & 1)
    for bits in range(256)
)
_AF = {4: socket.AF_INET, 16: socket.AF_INET6}
_ntop = socket.inet_ntop
_sha1 = hashlib.sha1
_b64 = base64.b64encode
_pack_seed = struct.Struct("!H").pack
_pack_ported = struct.Struct("!BBHH").pack
_pack_portless = struct.Struct("!BB").pack


# Community ID v1: ICMP request/reply type pairs; the other types are one-way
_ICMP_PAIRS = {
    1: ((8, 0), (13, 14), (15, 16), (10, 9), (17, 18)),
    58: ((128, 129), (133, 134), (135, 136), (130, 131), (139, 140), (144, 145)),
}
_ICMP_TWO_WAY = {
    proto: frozenset(p for a, b in pairs for p in ((a, b), (b, a)))
    for proto, pairs in _ICMP_PAIRS.items()
}


def icmp_one_way(proto: int, sport: int, dport: int) -> bool:
    """Whether an ICMP flow's (type, counterpart-or-code) ports are of a one-way type."""
    two_way = _ICMP_TWO_WAY.get(proto)
    return two_way is not None and (sport, dport) not in two_way


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(proto, str(proto))


def addr_text(raw: bytes) -> str:
    return _ntop(_AF[len(raw)], raw)


def tcp_flags_text(bits: int) -> str:
    return _TCP_FLAGS_TEXT[bits & 0xFF]


def community_id(
    proto: int,
    saddr: bytes,
    daddr: bytes,
    sport: int,
    dport: int,
    *,
    one_way: bool = False,
    seed: int = 0,
) -> str:
    """Community ID v1 (github.com/corelight/community-id-spec) of a flow.

    For ICMP the ports are already the type and its counterpart type (or the
    code, for types without one, which are `one_way` and keep their order).
    """
    if not one_way and (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    tail = _pack_ported(proto, 0, sport, dport) if proto in _PORTED else _pack_portless(proto, 0)
    digest = _sha1(_pack_seed(seed) + saddr + daddr + tail).digest()
    return "1:" + _b64(digest).decode("ascii")


def flow_record(event: tuple[Any, ...], name: tuple[str, str] | None = None) -> FlowRecord:
    """Builds the record of an EV_FLOW output of the engine."""
    (
        _kind,
        _end_ns,
        _handle,
        reason,
        proto,
        _family,
        _caddr,
        cport,
        _saddr,
        sport,
        first_ns,
        last_ns,
        pkts_up,
        bytes_up,
        pkts_down,
        bytes_down,
        flags_up,
        flags_down,
        vlan,
        _one_way,
        client,
        server,
        flow_id,
    ) = event
    tcp = proto == 6
    return {
        "type": "flow",
        "ts": first_ns / 1e9,
        "src": client,
        "sport": cport,
        "dst": server,
        "dport": sport,
        "proto": PROTO_NAMES.get(proto) or str(proto),
        "flow": flow_id,
        "ts_end": last_ns / 1e9,
        "pkts_up": pkts_up,
        "bytes_up": bytes_up,
        "pkts_down": pkts_down,
        "bytes_down": bytes_down,
        "end": END_NAMES[reason],
        "tcp_flags_up": _TCP_FLAGS_TEXT[flags_up] if tcp else None,
        "tcp_flags_down": _TCP_FLAGS_TEXT[flags_down] if tcp else None,
        "vlan": vlan or None,
        "name": name[0] if name else None,
        "name_source": name[1] if name else None,
    }
