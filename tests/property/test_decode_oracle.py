"""The decoder, the engine and the DNS parser against oracles (STYLE.md section 8).

- parse_frame on frames built with scapy and struct (frames.py) agrees with dpkt's reading of
  the innermost packet: addresses, protocol, ports, IP length, payload, tunnels and VLANs.
- IPv4 and IPv6 datagrams cut into fragments, shuffled and partly duplicated, come out of
  Engine as one flow with the right packet and byte counts and, on port 53, a payload event
  with the original datagram payload, as a model of the reassembly predicts.
- Engine loses no packet or byte: over any batch of frames, the flow records add up to what
  parse_frame says each frame carries, whatever the evictions, timeouts and interim records.
- parse_dns on scapy-built messages agrees with dpkt.dns and with the values drawn.
"""

from __future__ import annotations

import itertools
import random
import struct
from dataclasses import dataclass

import dpkt
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from agent._decode import parse_frame
from agent._dns import parse_dns
from agent._engine import EV_FLOW, EV_PAYLOAD, Engine
from tests.property.budget import examples
from tests.property.frames import (
    addr4,
    addr6,
    decoded_fields,
    dpkt_decode,
    ephemeral,
    frames,
    ntop,
)
from tests.property.messages import dns_messages, dpkt_dns

OK = 0
DESC = struct.Struct("<QIIIHHII")
T0_NS = 1_700_000_000 * 10**9


@settings(max_examples=examples(300))
@given(frames())
def test_decode_agrees_with_dpkt(built):
    truth = built.truth.fields()
    oracle = dpkt_decode(built.frame, built.linktype)
    assert oracle == truth, "the oracle does not read back what the builder wrote"
    status, fields = parse_frame(built.frame, built.linktype)
    assert status == OK, fields
    got = decoded_fields(fields)
    if oracle["proto"] not in (6, 17) and built.truth.udp_tunnel:
        # Checked on its own by test_no_outer_udp_fields_in_tunnelled_packet (a known bug).
        for key in ("sport", "dport", "payload_wire"):
            del got[key], oracle[key]
    assert got == oracle
    assert fields["payload"] == built.truth.payload
    # Without VLAN and tunnel ids in the flow key, ctx is 0 and nothing else changes.
    status, plain = parse_frame(built.frame, built.linktype, key_vlan=False, key_tunnel=False)
    assert status == OK
    assert plain["ctx"] == 0
    assert {**plain, "ctx": fields["ctx"]} == fields


@settings(max_examples=examples(60))
@given(frames(linktypes=(1,)))
def test_stripped_vlan_tag_decodes_like_the_tag_in_the_frame(built):
    """A tag the kernel took out (vlan_tci, TPACKET aux data) counts as the tag in the frame."""
    frame = built.frame
    assume(frame[12:14] in (b"\x81\x00", b"\x88\xa8"))
    tci = int.from_bytes(frame[14:16], "big")
    assert parse_frame(frame[:12] + frame[16:], 1, vlan_tci=tci) == parse_frame(frame, 1)


@settings(max_examples=examples(150))
@given(frames())
def test_no_outer_udp_fields_in_tunnelled_packet(built):
    """BUG (see the two tests below): without a transport of its own, a packet inside a UDP
    tunnel keeps the outer UDP ports and payload length."""
    status, fields = parse_frame(built.frame, built.linktype)
    assert status == OK
    got = decoded_fields(fields)
    want = built.truth.fields()
    for key in ("sport", "dport", "payload_wire"):
        assert got[key] == want[key], (key, built.frame.hex(), built.linktype)


# Ether / IPv4 1.1.1.1 -> 2.2.2.2 / UDP 40000 -> 4789 / VXLAN vni 1 / Ether / IPv4 10.0.0.1 ->
# 10.0.0.2, protocol 50 (ESP), no payload.
VXLAN_ESP = bytes.fromhex(
    "00000000000200000000000108004500004600010000401174a101010101020202029c4012b50032398c08000000"
    "0000010000000000000200000000000108004500001400010000403266b50a0000010a000002"
)
# The same with an ICMP echo request inside.
VXLAN_ICMP = bytes.fromhex(
    "00000000000200000000000108004500004e000100004011749901010101020202029c4012b5003a397c08000000"
    "0000010000000000000200000000000108004500001c00010000400166de0a0000010a0000020800f7ff00000000"
)


def test_portless_protocol_in_udp_tunnel_has_no_ports():
    """BUG: the outer UDP ports (40000, 4789) and length stay in the inner ESP packet's fields.

    An ESP packet has no ports (sport = dport = 0 outside a tunnel), but inside VXLAN, Geneve,
    GTP-U or Teredo do_ipproto leaves the outer UDP sport/dport and payload_wire in place, so
    the flow key of the inner packet carries the outer ports and one ESP association splits
    into as many flows as the encapsulating UDP source ports.
    """
    status, fields = parse_frame(VXLAN_ESP)
    assert status == OK
    assert fields["tunnels"] == 1 and fields["proto"] == 50
    assert (fields["sport"], fields["dport"], fields["payload_wire"]) == (0, 0, 0)


def test_icmp_in_udp_tunnel_has_no_payload_wire():
    """BUG: the outer UDP payload length stays in payload_wire of an ICMP packet in VXLAN."""
    status, fields = parse_frame(VXLAN_ICMP)
    assert status == OK
    assert (fields["proto"], fields["sport"], fields["dport"]) == (1, 8, 0)
    assert fields["payload_wire"] == 0


# --- fragments through the engine -------------------------------------------------------------


@dataclass
class FragmentRun:
    family: int
    proto: int
    src: bytes
    dst: bytes
    sport: int
    payload: bytes  # the datagram's L4 payload
    frames: list[bytes]  # Ethernet frames, one fragment each
    info: list[tuple[int, int, bool, int]]  # (offset, length, more, ip_len) per fragment
    order: list[int]  # the order of arrival: every fragment once, some again
    batches: list[int]  # where the arrival order is cut into feed() calls


def fragment_info(packet: bytes, family: int) -> tuple[int, int, bool, int]:
    """(offset, payload length, more fragments, IP length) of one fragment, read by dpkt."""
    if family == 4:
        ip = dpkt.ip.IP(packet)
        return (ip.off & 0x1FFF) * 8, ip.len - ip.hl * 4, bool(ip.off & 0x2000), ip.len
    ip6 = dpkt.ip6.IP6(packet)
    frag = ip6.extension_hdrs[44]
    return frag.frag_off * 8, ip6.plen - 8, bool(frag.m_flag), 40 + ip6.plen


@st.composite
def fragment_runs(draw: st.DrawFn) -> FragmentRun:
    family = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from([17, 6]))
    message = draw(dns_messages(max_answers=16)).wire
    src, dst = (draw(addr4), draw(addr4)) if family == 4 else (draw(addr6), draw(addr6))
    sport = draw(ephemeral)
    if proto == 17:
        payload = message
        l4 = UDP(sport=sport, dport=53) / Raw(payload)
    else:  # DNS over TCP: a two-byte length, then the message
        payload = struct.pack("!H", len(message)) + message
        l4 = TCP(sport=sport, dport=53, flags="PA", seq=draw(st.integers(0, 2**32 - 1)))
        l4 = l4 / Raw(payload)
    l4_len = len(bytes(l4))
    unit = 8 * draw(st.integers(1, max(1, (l4_len - 1) // 8)))
    ident = draw(st.integers(0, 0xFFFF))
    if family == 4:
        packets = fragment(IP(src=ntop(4, src), dst=ntop(4, dst), id=ident) / l4, fragsize=unit)
    else:
        datagram = IPv6(src=ntop(6, src), dst=ntop(6, dst)) / IPv6ExtHdrFragment(id=ident) / l4
        state = random.getstate()  # fragment6 draws an id it then drops for ours
        packets = fragment6(datagram, 40 + 8 + unit)
        random.setstate(state)
    raw_packets = [bytes(p) for p in packets]
    assume(len(raw_packets) >= 2)
    vlan = draw(st.one_of(st.none(), st.integers(1, 4094)))
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    link = ether / Dot1Q(vlan=vlan) if vlan is not None else ether
    frames_ = [bytes(link / Raw(p)) for p in raw_packets]
    for i, p in enumerate(raw_packets):  # Raw leaves the ethertype to us
        et = b"\x08\x00" if family == 4 else b"\x86\xdd"
        at = 16 if vlan is not None else 12
        frames_[i] = frames_[i][:at] + et + frames_[i][at + 2 :]
        assert frames_[i].endswith(p)
    order = list(draw(st.permutations(range(len(frames_)))))
    for index, pos in draw(
        st.lists(st.tuples(st.integers(0, len(frames_) - 1), st.integers(0, 10**6)), max_size=4)
    ):
        order.insert(pos % (len(order) + 1), index)
    batches = sorted(draw(st.sets(st.integers(1, len(order) - 1), max_size=3)))
    info = [fragment_info(p, family) for p in raw_packets]
    return FragmentRun(family, proto, src, dst, sport, payload, frames_, info, order, batches)


def reassembly_model(run: FragmentRun) -> tuple[list[tuple[int, int]], int, bool]:
    """(frames, IP bytes) per completed datagram, overlapping fragments, whether one is left.

    The engine's rules (ext/_reasm.pxd): 8-octet units, the first copy of a unit wins (a
    fragment that finds any of its units filled counts one overlap), a datagram completes when
    every unit up to the last fragment's end is filled; a fragment arriving after that starts a
    new datagram.
    """
    done: list[tuple[int, int]] = []
    overlap = 0
    units: set[int] | None = None
    total = frames_ = ip_bytes = 0
    for i in run.order:
        offset, length, more, ip_len = run.info[i]
        if units is None:
            units, total, frames_, ip_bytes = set(), 0, 0, 0
        frames_ += 1
        ip_bytes += ip_len
        if not more:
            total = offset + length
        span = set(range(offset // 8, (offset + length + 7) // 8))
        overlap += bool(span & units)
        units |= span
        if total and len(units) == (total + 7) // 8:
            done.append((frames_, ip_bytes))
            units = None
    return done, overlap, units is not None


@settings(max_examples=examples(80))
@given(fragment_runs())
def test_engine_reassembles_shuffled_duplicated_fragments(run):
    engine = Engine()
    out = []
    cuts = [0, *run.batches, len(run.order)]
    for a, b in itertools.pairwise(cuts):
        data, descs = b"", b""
        for k in range(a, b):
            frame = run.frames[run.order[k]]
            descs += DESC.pack(T0_NS + k * 1000, len(data), len(frame), len(frame), 1, 0, 0, 0)
            data += frame
        out += engine.feed(data, descs, b - a)
    out += engine.flush()
    done, overlap, left_over = reassembly_model(run)
    event(f"IPv{run.family} {'UDP' if run.proto == 17 else 'TCP'}")
    n = len(run.frames)
    event(f"fragments: {'2-3' if n < 4 else '4-15' if n < 16 else '16+'}")
    event(f"datagrams reassembled: {len(done)}")
    event(f"left over: {left_over}")
    counters = engine.counters()
    assert counters["frag.fragments"] == len(run.order)
    assert counters["frag.reassembled"] == len(done)
    assert counters["frag.overlap"] == overlap
    assert counters["frag.timeout"] == int(left_over)
    assert counters["packets"] == len(run.order)

    payloads = [o for o in out if o[0] == EV_PAYLOAD]
    assert len(payloads) == len(done)
    for ev in payloads:
        _, _, _, dirn, _, proto, family, caddr, cport, saddr, sport, *_rest = ev
        payload, payload_wire = ev[13], ev[14]
        assert (proto, family, dirn) == (run.proto, run.family, 0)
        assert (caddr, cport, saddr, sport) == (run.src, run.sport, run.dst, 53)
        assert payload == run.payload
        assert payload_wire == len(run.payload)
    message = run.payload if run.proto == 17 else run.payload[2:]
    status, parsed = parse_dns(message)
    assert status == OK and parsed[-1] is None

    flows = [o for o in out if o[0] == EV_FLOW]
    assert len(flows) == 1
    pkts_up, bytes_up, pkts_down, bytes_down = flows[0][12:16]
    assert (pkts_up, pkts_down, bytes_down) == (sum(f for f, _ in done), 0, 0)
    assert bytes_up == sum(b for _, b in done)


# --- conservation through the flow table ----------------------------------------------------


@settings(max_examples=examples(60))
@given(
    st.lists(frames(), min_size=1, max_size=6),
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.one_of(st.integers(0, 2 * 10**9), st.integers(-(10**9), 0), st.just(40 * 10**9)),
        ),
        min_size=1,
        max_size=24,
    ),
    st.integers(1, 6),
    st.sampled_from([0.0, 1.0, 30.0]),
)
def test_engine_conserves_packets_and_bytes(pool, arrivals, max_flows, active_s):
    """Every packet and byte that decodes lands in exactly one flow record, evictions,
    idle timeouts (some steps jump 40 s), clock steps backwards and interim records included.
    Frames come from a small pool, so flows see several packets."""
    engine = Engine(
        max_flows=max_flows,
        tcp_timeout_s=20,
        udp_timeout_s=20,
        other_timeout_s=20,
        active_timeout_s=active_s,
    )
    builts = [pool[i % len(pool)] for i, _ in arrivals]
    steps = [step for _, step in arrivals]
    data, descs = b"", b""
    ts = T0_NS
    want_pkts = want_bytes = 0
    for i, built in enumerate(builts):
        ts = max(0, ts + steps[i])
        descs += DESC.pack(
            ts, len(data), len(built.frame), len(built.frame), built.linktype, 0, 0, 0
        )
        data += built.frame
        status, fields = parse_frame(built.frame, built.linktype)
        if status == OK:
            want_pkts += 1
            want_bytes += fields["ip_len"]
    out = engine.feed(data, descs, len(builts)) + engine.flush()
    flows = [o for o in out if o[0] == EV_FLOW]
    assert sum(f[12] + f[14] for f in flows) == want_pkts
    assert sum(f[13] + f[15] for f in flows) == want_bytes
    counters = engine.counters()
    for name in ("flows_evicted", "interim_records", "time_backwards"):
        event(f"{name}: {'yes' if counters[name] else 'no'}")
    event(f"idle flows: {'yes' if any(f[3] == 0 for f in flows) else 'no'}")
    assert counters["packets"] == len(builts)
    assert counters["bytes"] == len(data)
    assert counters["flows_created"] == counters["flows_ended"]
    assert len(flows) == counters["flows_ended"] + counters["interim_records"]
    assert engine.active_flows == 0


# --- DNS ------------------------------------------------------------------------------------


@settings(max_examples=examples(200))
@given(dns_messages())
def test_parse_dns_agrees_with_dpkt(message):
    assert dpkt_dns(message.wire) == (message.questions, message.answers)
    status, parsed = parse_dns(message.wire)
    assert status == OK
    ident, _flags, counts, questions, answers, edns, problem = parsed
    assert problem is None
    assert ident == message.ident
    assert counts[:2] == (len(message.questions), len(message.answers))
    assert (questions, answers) == (message.questions, message.answers)
    assert (edns or {}).get("ecs") == message.ecs
