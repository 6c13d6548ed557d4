"""agent._engine.Engine: flow orientation, counters, end reasons, fragments, determinism."""

from __future__ import annotations

import itertools
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from agent.config import Config, FlowConfig, FragmentConfig
from agent.engine import DESC_SIZE, END_NAMES, EV_FLOW, EV_TICK, Engine
from agent.flow import community_id
from tests.util import of_type, pcap_bytes, replay

C, S = "10.0.0.1", "10.0.0.2"
NS = 10**9


def eth() -> Ether:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def capture(tmp_path: Path, packets: list[tuple[float, Packet]], name: str = "t.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in packets]))
    return path


def run(
    tmp_path: Path, packets: list[tuple[float, Packet]], config: Config | None = None
) -> list[dict[str, Any]]:
    return replay([capture(tmp_path, packets)], config)  # type: ignore[return-value]


def flows(records: list[Any]) -> list[dict[str, Any]]:
    return of_type(records, "flow")  # type: ignore[return-value]


def tcp(ts: float, src: str, dst: str, sport: int, dport: int, flags: str, data: bytes = b""):
    packet = eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)
    return (ts, packet / Raw(data) if data else packet)


def udp(ts: float, src: str, dst: str, sport: int, dport: int, data: bytes = b"u"):
    return (ts, eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(data))


def config(**flow: Any) -> Config:
    return Config(flow=FlowConfig(**flow))


# -- orientation ----------------------------------------------------------------------------


def test_syn_sender_is_the_client(tmp_path: Path) -> None:
    # Ports give no hint here (both ephemeral, the server's the higher one).
    packets = [
        tcp(100.0, C, S, 6000, 7000, "S"),
        tcp(100.1, S, C, 7000, 6000, "SA"),
        tcp(100.2, C, S, 6000, 7000, "A"),
    ]
    (flow,) = flows(run(tmp_path, packets))
    assert (flow["src"], flow["sport"], flow["dst"], flow["dport"]) == (C, 6000, S, 7000)
    assert (flow["pkts_up"], flow["pkts_down"]) == (2, 1)
    assert flow["tcp_flags_up"] == "SA"
    assert flow["tcp_flags_down"] == "SA"


def test_first_packet_syn_ack_makes_its_receiver_the_client(tmp_path: Path) -> None:
    packets = [
        tcp(100.0, S, C, 7000, 6000, "SA"),  # the SYN was not captured
        tcp(100.1, C, S, 6000, 7000, "A"),
        tcp(100.2, C, S, 6000, 7000, "PA", b"hello"),
    ]
    (flow,) = flows(run(tmp_path, packets))
    assert (flow["src"], flow["sport"], flow["dst"], flow["dport"]) == (C, 6000, S, 7000)
    assert (flow["pkts_up"], flow["pkts_down"]) == (2, 1)


def test_mid_stream_tcp_uses_the_well_known_port(tmp_path: Path) -> None:
    packets = [tcp(100.0, S, C, 443, 50000, "PA", b"data"), tcp(100.1, C, S, 50000, 443, "A")]
    (flow,) = flows(run(tmp_path, packets))
    assert (flow["src"], flow["dport"]) == (C, 443)


def test_udp_response_seen_first_makes_the_querier_the_client(tmp_path: Path) -> None:
    packets = [udp(100.0, S, C, 53, 33333), udp(100.1, C, S, 33333, 53)]
    (flow,) = flows(run(tmp_path, packets))
    assert (flow["src"], flow["sport"], flow["dst"], flow["dport"]) == (C, 33333, S, 53)
    assert (flow["pkts_up"], flow["pkts_down"]) == (1, 1)


# -- counters -------------------------------------------------------------------------------


def test_packets_and_ip_bytes_per_direction(tmp_path: Path) -> None:
    up = [
        (
            100.0 + i,
            eth() / Dot1Q(vlan=3) / IP(src=C, dst=S) / UDP(sport=4000, dport=5000) / (b"u" * n),
        )
        for i, n in enumerate([10, 100, 1000])
    ]
    down = [
        (
            100.5 + i,
            eth() / Dot1Q(vlan=3) / IP(src=S, dst=C) / UDP(sport=5000, dport=4000) / (b"d" * n),
        )
        for i, n in enumerate([1, 2])
    ]
    # An Ethernet trailer (padding) on a short frame is not IP bytes.
    short = eth() / Dot1Q(vlan=3) / IP(src=S, dst=C) / UDP(sport=5000, dport=4000)
    down.append((103.0, Ether(bytes(short) + b"\0" * 20)))
    (flow,) = flows(run(tmp_path, up + down))
    assert (flow["pkts_up"], flow["pkts_down"]) == (3, 3)
    assert flow["bytes_up"] == sum(28 + n for n in (10, 100, 1000))
    assert flow["bytes_down"] == (28 + 1) + (28 + 2) + 28
    assert flow["vlan"] == 3
    assert flow["ts"] == pytest.approx(100.0)
    assert flow["ts_end"] == pytest.approx(103.0)


# -- end reasons ----------------------------------------------------------------------------


def handshake(t: float, sport: int = 40000) -> list[tuple[float, Packet]]:
    return [
        tcp(t, C, S, sport, 80, "S"),
        tcp(t + 0.01, S, C, 80, sport, "SA"),
        tcp(t + 0.02, C, S, sport, 80, "A"),
    ]


def closing(t: float, sport: int = 40000) -> list[tuple[float, Packet]]:
    return [
        tcp(t, C, S, sport, 80, "FA"),
        tcp(t + 0.01, S, C, 80, sport, "FA"),
        tcp(t + 0.02, C, S, sport, 80, "A"),
    ]


def test_end_fin_after_the_closed_timeout(tmp_path: Path) -> None:
    later = udp(106.0, "10.9.9.9", "10.8.8.8", 1, 2)  # moves the clock past 5 s
    records = run(tmp_path, handshake(100.0) + closing(100.5) + [later])
    tcp_flow = next(f for f in flows(records) if f["proto"] == "tcp")
    assert tcp_flow["end"] == "fin"
    assert tcp_flow["pkts_up"] == 4
    assert tcp_flow["pkts_down"] == 2
    assert tcp_flow["ts_end"] == pytest.approx(100.52)
    # It ended before the later packet's flow was reported (at the end of input).
    assert [f["proto"] for f in flows(records)] == ["tcp", "udp"]


def test_closed_flow_waits_for_the_closed_timeout(tmp_path: Path) -> None:
    # 3 s after the close the flow is still open (late ACKs stay in it).
    packets = handshake(100.0) + closing(100.5) + [tcp(103.0, C, S, 40000, 80, "A")]
    packets.append(udp(103.5, "10.9.9.9", "10.8.8.8", 1, 2))
    (tcp_flow,) = [f for f in flows(run(tmp_path, packets)) if f["proto"] == "tcp"]
    assert tcp_flow["pkts_up"] == 5


def test_end_rst(tmp_path: Path) -> None:
    packets = [*handshake(100.0), tcp(100.5, S, C, 80, 40000, "R")]
    packets.append(udp(110.0, "10.9.9.9", "10.8.8.8", 1, 2))
    tcp_flow = next(f for f in flows(run(tmp_path, packets)) if f["proto"] == "tcp")
    assert tcp_flow["end"] == "rst"
    assert tcp_flow["tcp_flags_down"] == "SRA"


@pytest.mark.parametrize("last", ["FA", "R"])
def test_closed_flow_at_end_of_input_keeps_its_reason(tmp_path: Path, last: str) -> None:
    # Input ends within the closed timeout: the connection still ended by FIN or RST.
    packets = handshake(100.0)
    packets += closing(100.5) if last == "FA" else [tcp(100.5, S, C, 80, 40000, "R")]
    (flow,) = flows(run(tmp_path, packets))
    assert flow["end"] == ("fin" if last == "FA" else "rst")


def test_end_idle_default_udp_timeout(tmp_path: Path) -> None:
    packets = [udp(100.0, C, S, 4000, 5000), udp(161.0, "10.9.9.9", "10.8.8.8", 1, 2)]
    first, _second = flows(run(tmp_path, packets))
    assert (first["sport"], first["end"]) == (4000, "idle")
    packets = [udp(100.0, C, S, 4000, 5000), udp(159.0, "10.9.9.9", "10.8.8.8", 1, 2)]
    assert {f["end"] for f in flows(run(tmp_path, packets))} == {"shutdown"}


def test_end_idle_short_timeouts(tmp_path: Path) -> None:
    cfg = config(udp_timeout_s=2, tcp_timeout_s=3, other_timeout_s=4)
    packets = [
        udp(100.0, C, S, 4000, 5000),
        tcp(100.0, C, S, 40000, 80, "S"),
        (100.0, eth() / IP(src=C, dst=S) / ICMP(type=8)),
        udp(102.5, "10.9.9.9", "10.8.8.8", 1, 2),  # UDP flow ends here
        udp(103.5, "10.9.9.9", "10.8.8.8", 1, 2),  # TCP flow ends here
        udp(104.5, "10.9.9.9", "10.8.8.8", 1, 2),  # ICMP flow ends here
    ]
    records = flows(run(tmp_path, packets, cfg))
    assert [(f["proto"], f["end"]) for f in records] == [
        ("udp", "idle"),
        ("tcp", "idle"),
        ("icmp", "idle"),
        ("udp", "shutdown"),
    ]


def test_end_interim_counters_sum_to_the_totals(tmp_path: Path) -> None:
    packets = []
    for i in range(50):
        packets.append(udp(100.0 + i, C, S, 4000, 5000, b"u" * i))
        if i % 3 == 0:
            packets.append(udp(100.5 + i, S, C, 5000, 4000, b"d" * (2 * i)))
    records = flows(run(tmp_path, packets, config(active_timeout_s=10)))
    assert len(records) >= 4
    assert {f["end"] for f in records[:-1]} == {"interim"}
    assert records[-1]["end"] == "shutdown"
    assert len({f["flow"] for f in records}) == 1
    assert sum(f["pkts_up"] for f in records) == 50
    assert sum(f["pkts_down"] for f in records) == 17
    assert sum(f["bytes_up"] for f in records) == sum(28 + i for i in range(50))
    assert sum(f["bytes_down"] for f in records) == sum(28 + 2 * i for i in range(0, 50, 3))
    # Periods follow one another without overlap.
    for earlier, later in itertools.pairwise(records):
        assert earlier["ts_end"] <= later["ts"]
    stats = run(tmp_path, packets, config(active_timeout_s=10))[-1]
    assert stats["records"]["flow"] == len(records)


def test_interim_off_with_zero(tmp_path: Path) -> None:
    packets = [udp(100.0 + i * 30, C, S, 4000, 5000) for i in range(10)]
    records = flows(run(tmp_path, packets, config(active_timeout_s=0)))
    assert [f["end"] for f in records] == ["shutdown"]


def test_end_evicted_at_the_flow_cap(tmp_path: Path) -> None:
    packets = [
        udp(100.0, C, S, 1001, 53),
        udp(100.1, C, S, 1002, 53),
        udp(100.2, C, S, 1001, 53),  # flow 1 is now the more recently seen
        udp(100.3, C, S, 1003, 53),
    ]
    records = run(tmp_path, packets, config(max_flows=2))
    ended = flows(records)
    assert (ended[0]["sport"], ended[0]["end"]) == (1002, "evicted")
    assert sorted((f["sport"], f["end"]) for f in ended[1:]) == [
        (1001, "shutdown"),
        (1003, "shutdown"),
    ]
    assert records[-1]["caps"]["flows_evicted"] == 1


def test_new_syn_on_a_closed_tuple_starts_a_new_flow(tmp_path: Path) -> None:
    packets = handshake(100.0) + closing(100.5) + handshake(101.0) + closing(101.5)
    records = flows(run(tmp_path, packets))
    assert len(records) == 2
    assert records[0]["end"] == "fin"
    assert records[0]["ts"] == pytest.approx(100.0)
    assert records[1]["ts"] == pytest.approx(101.0)
    assert [f["pkts_up"] + f["pkts_down"] for f in records] == [6, 6]
    assert records[0]["flow"] == records[1]["flow"]


def test_syn_retransmission_stays_in_its_flow(tmp_path: Path) -> None:
    packets = [tcp(100.0, C, S, 40000, 80, "S"), tcp(101.0, C, S, 40000, 80, "S")]
    (flow,) = flows(run(tmp_path, packets))
    assert flow["pkts_up"] == 2


@pytest.mark.parametrize(("key_vlan", "count"), [(True, 2), (False, 1)])
def test_vlan_ids_separate_flows(tmp_path: Path, key_vlan: bool, count: int) -> None:
    base = IP(src=C, dst=S) / UDP(sport=4000, dport=5000)
    packets = [
        (100.0, eth() / Dot1Q(vlan=10) / base),
        (100.1, eth() / Dot1Q(vlan=20) / base),
        (100.2, eth() / Dot1Q(vlan=10) / base),
    ]
    records = flows(run(tmp_path, packets, config(key_vlan=key_vlan)))
    assert len(records) == count
    assert sum(f["pkts_up"] for f in records) == 3
    if key_vlan:
        assert sorted((f["vlan"], f["pkts_up"]) for f in records) == [(10, 2), (20, 1)]


def test_tcp_flags_text_per_direction(tmp_path: Path) -> None:
    packets = [*handshake(100.0), tcp(100.1, C, S, 40000, 80, "PA", b"x"), *closing(100.2)]
    (flow,) = flows(run(tmp_path, packets))
    assert flow["tcp_flags_up"] == "FSPA"
    assert flow["tcp_flags_down"] == "FSA"


# -- determinism ----------------------------------------------------------------------------


def busy_capture() -> list[tuple[float, Packet]]:
    """Several seconds of mixed traffic with flows ending for every reason and DNS."""
    packets: list[tuple[float, Packet]] = []
    for i in range(30):
        t = 100.0 + i * 0.7
        packets += handshake(t, 41000 + i) + closing(t + 0.3, 41000 + i)
        query = DNS(id=i, rd=1, qd=DNSQR(qname=f"h{i}.example"))
        packets.append((t, eth() / IP(src=C, dst=S) / UDP(sport=30000 + i, dport=53) / query))
        if i % 4:
            answer = DNS(
                id=i, qr=1, qd=DNSQR(qname=f"h{i}.example"), an=DNSRR(rrname=f"h{i}.example")
            )
            packets.append(
                (t + 0.05, eth() / IP(src=S, dst=C) / UDP(sport=53, dport=30000 + i) / answer)
            )
        packets.append(udp(t + 0.1, C, "10.7.7.7", 5000 + i % 3, 6000, b"z" * i))
    packets.sort(key=lambda item: item[0])
    return packets


@pytest.mark.parametrize("chunk_size", [64, 1000, 4096])
def test_records_do_not_depend_on_the_chunk_size(tmp_path: Path, chunk_size: int) -> None:
    path = capture(tmp_path, busy_capture())
    cfg = Config(flow=FlowConfig(udp_timeout_s=3, active_timeout_s=5, tcp_closed_timeout_s=1))
    expected = replay([path], cfg)
    assert len(of_type(expected, "dns")) == 30
    assert {f["end"] for f in flows(expected)} >= {"fin", "idle", "interim"}  # type: ignore[arg-type]
    assert replay([path], cfg, chunk_size=chunk_size) == expected


# -- fragments ------------------------------------------------------------------------------


def duplicated_fragments() -> list[tuple[float, Packet]]:
    """A UDP datagram in four fragments, out of order, the second one twice."""
    datagram = IP(src=C, dst=S, id=77) / UDP(sport=1111, dport=2222) / (b"x" * 3000)
    parts = fragment(datagram, fragsize=1000)
    assert len(parts) == 4
    order = [parts[3], parts[1], parts[1], parts[0], parts[2]]
    return [(100.0 + i * 0.01, eth() / p) for i, p in enumerate(order)]


def test_ipv4_fragments_out_of_order_and_duplicated(tmp_path: Path) -> None:
    records = run(tmp_path, duplicated_fragments())
    (flow,) = flows(records)
    assert (flow["src"], flow["sport"], flow["dst"], flow["dport"]) == (C, 1111, S, 2222)
    frags = records[-1]["fragments"]
    assert frags["reassembled"] == 1
    assert frags["fragments"] == 5
    assert frags["overlap"] > 0
    assert frags["timeout"] == frags["malformed"] == 0


def test_fragment_overlap_counts_fragments(tmp_path: Path) -> None:
    # Like its neighbours (fragments, reassembled, timeout, evicted) the counter counts
    # fragments: one fragment seen twice is one overlap, not one per 8-octet unit.
    records = run(tmp_path, duplicated_fragments())
    assert records[-1]["fragments"]["overlap"] == 1


def test_ipv6_fragments_out_of_order(tmp_path: Path) -> None:
    payload = UDP(sport=1111, dport=2222) / (b"y" * 2500)
    chunk = bytes(payload)
    header = IPv6(src="2001:db8::1", dst="2001:db8::2")
    parts = []
    for offset in range(0, len(chunk), 1000):
        more = int(offset + 1000 < len(chunk))
        frag = IPv6ExtHdrFragment(nh=17, id=0xBEEF, offset=offset // 8, m=more)
        parts.append(header / frag / Raw(chunk[offset : offset + 1000]))
    packets = [(100.0 + i * 0.01, eth() / p) for i, p in enumerate(reversed(parts))]
    records = run(tmp_path, packets)
    (flow,) = flows(records)
    assert (flow["src"], flow["sport"], flow["dst"], flow["dport"]) == (
        "2001:db8::1",
        1111,
        "2001:db8::2",
        2222,
    )
    assert flow["pkts_up"] == 3
    assert records[-1]["fragments"]["reassembled"] == 1


def test_ipv6_fragments_with_destination_options_in_the_fragmentable_part(
    tmp_path: Path,
) -> None:
    # RFC 8200 4.5: the fragmentable part may start with a Destination Options header;
    # after reassembly it is walked like any extension header, then UDP.
    body = bytes(IPv6ExtHdrDestOpt(nh=17) / UDP(sport=1111, dport=2222) / (b"y" * 2000))
    header = IPv6(src="2001:db8::1", dst="2001:db8::2")
    packets = []
    for offset in range(0, len(body), 1000):
        more = int(offset + 1000 < len(body))
        frag = IPv6ExtHdrFragment(nh=60, id=5, offset=offset // 8, m=more)
        packets.append(
            (100.0 + offset / 1e5, eth() / header / frag / Raw(body[offset : offset + 1000]))
        )
    records = run(tmp_path, packets)
    assert records[-1]["fragments"]["reassembled"] == 1
    (flow,) = flows(records)
    assert (flow["proto"], flow["sport"], flow["dport"]) == ("udp", 1111, 2222)


def test_missing_fragment_times_out_without_a_flow(tmp_path: Path) -> None:
    datagram = IP(src=C, dst=S, id=78) / UDP(sport=1111, dport=2222) / (b"x" * 3000)
    parts = fragment(datagram, fragsize=1000)
    packets = [(100.0, eth() / parts[0]), (100.1, eth() / parts[2]), (100.2, eth() / parts[3])]
    packets.append(udp(140.0, "10.9.9.9", "10.8.8.8", 1, 2))  # past the 30 s timeout
    records = run(tmp_path, packets)
    assert [f["sport"] for f in flows(records)] == [1]
    assert records[-1]["fragments"]["timeout"] == 1
    assert records[-1]["fragments"]["reassembled"] == 0


def test_fragment_table_cap_evicts_the_oldest(tmp_path: Path) -> None:
    a = fragment(IP(src=C, dst=S, id=1) / UDP(sport=1, dport=2) / (b"a" * 2000), fragsize=1000)
    b = fragment(IP(src=C, dst=S, id=2) / UDP(sport=3, dport=4) / (b"b" * 2000), fragsize=1000)
    order = [a[0], b[0], a[1], a[2], b[1], b[2]]
    packets = [(100.0 + i * 0.01, eth() / p) for i, p in enumerate(order)]
    cfg = Config(fragments=FragmentConfig(max_datagrams=1))
    records = run(tmp_path, packets, cfg)
    frags = records[-1]["fragments"]
    assert frags["evicted"] >= 1
    assert records[-1]["caps"]["fragments_evicted"] == frags["evicted"]
    assert frags["reassembled"] < 2
    assert len(flows(records)) == frags["reassembled"]


# -- identity -------------------------------------------------------------------------------


def test_community_id_published_vector() -> None:
    saddr = socket.inet_aton("128.232.110.120")
    daddr = socket.inet_aton("66.35.250.204")
    assert community_id(6, saddr, daddr, 34855, 80) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert community_id(6, daddr, saddr, 80, 34855) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_community_id_of_a_replayed_flow(tmp_path: Path) -> None:
    packets = [
        tcp(100.0, "128.232.110.120", "66.35.250.204", 34855, 80, "S"),
        tcp(100.1, "66.35.250.204", "128.232.110.120", 80, 34855, "SA"),
    ]
    (flow,) = flows(run(tmp_path, packets))
    assert flow["flow"] == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_icmp_echo_request_and_reply_are_one_flow(tmp_path: Path) -> None:
    packets = [
        (100.0, eth() / IP(src="192.168.0.89", dst="192.168.0.1") / ICMP(type=8, id=5, seq=1)),
        (100.1, eth() / IP(src="192.168.0.1", dst="192.168.0.89") / ICMP(type=0, id=5, seq=1)),
        (101.0, eth() / IP(src="192.168.0.89", dst="192.168.0.1") / ICMP(type=8, id=5, seq=2)),
    ]
    (flow,) = flows(run(tmp_path, packets))
    assert flow["proto"] == "icmp"
    assert (flow["src"], flow["dst"]) == ("192.168.0.89", "192.168.0.1")
    assert (flow["pkts_up"], flow["pkts_down"]) == (2, 1)
    assert flow["flow"] == "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="  # tshark's communityid
    assert flow["tcp_flags_up"] is None


def test_icmpv6_echo_is_one_flow(tmp_path: Path) -> None:
    a, b = "2001:db8::1", "2001:db8::2"
    packets = [
        (100.0, eth() / IPv6(src=b, dst=a) / ICMPv6EchoRequest(id=1)),
        (100.1, eth() / IPv6(src=a, dst=b) / ICMPv6EchoReply(id=1)),
    ]
    (flow,) = flows(run(tmp_path, packets))
    assert (flow["proto"], flow["src"], flow["pkts_up"], flow["pkts_down"]) == ("icmp6", b, 1, 1)
    assert flow["flow"] == "1:YDcnf7YthUKAbDNo6Cs3rX4jq4w="  # tshark's communityid


# -- the engine without the pipeline --------------------------------------------------------


DESC = struct.Struct("=QIIIHHII")


def batch(frames: list[tuple[int, bytes]]) -> tuple[bytes, bytes, int]:
    data, descs = b"", b""
    for ts_ns, frame in frames:
        descs += DESC.pack(ts_ns, len(data), len(frame), len(frame), 1, 0, 0, 0)
        data += frame
    return data, descs, len(frames)


def test_tick_expires_flows_without_packets() -> None:
    assert DESC.size == DESC_SIZE
    engine = Engine(udp_timeout_s=2.0)
    frame = bytes(eth() / IP(src=C, dst=S) / UDP(sport=4000, dport=5000) / b"x")
    out = engine.feed(*batch([(100 * NS, frame)]))
    assert [e[0] for e in out] == [EV_TICK]
    assert engine.active_flows == 1
    assert [e for e in engine.tick(101 * NS) if e[0] == EV_FLOW] == []
    ended = [e for e in engine.tick(103 * NS) if e[0] == EV_FLOW]
    assert len(ended) == 1
    assert END_NAMES[ended[0][3]] == "idle"
    assert engine.active_flows == 0
    assert engine.counters()["flows_ended"] == 1


def test_decode_errors_are_counted_by_layer_and_status(tmp_path: Path) -> None:
    good = bytes(eth() / IP(src=C, dst=S) / TCP(sport=1, dport=2))
    packets: list[tuple[float, Any]] = [(100.0, good), (100.1, good[:40]), (100.2, good[:20])]
    path = tmp_path / "bad.pcap"
    path.write_bytes(pcap_bytes(packets))
    stats = replay([path])[-1]
    assert stats["packets"] == 3
    assert stats["decode_errors"] == {"tcp.truncated": 1, "ipv4.truncated": 1}


def test_timestamps_past_2262_are_taken_as_the_latest_time_and_counted() -> None:
    """A pcapng timestamp can be any 64-bit value. Past 2^63 - 1 ns (2262) the engine takes
    that time instead, so that a time plus a timeout still fits: the flow stays one flow, not
    one interim record per packet, and its second ticks once."""
    engine = Engine()
    frame = bytes(eth() / IP(src=C, dst=S) / UDP(sport=4000, dport=5000) / b"x")
    times = [2**63 - 2, 2**63 + 5, 2**64 - 10**8, 2**64 - 1]
    out = engine.feed(*batch([(t, frame) for t in times]))
    out += engine.tick(2**64 - 1)
    assert [e[0] for e in out] == [EV_TICK]
    assert engine.now_ns == 2**63 - 1
    counters = engine.counters()
    assert (counters["time_clamped"], counters["interim_records"]) == (3, 0)
    (flow,) = [e for e in engine.flush() if e[0] == EV_FLOW]
    assert flow[12] == len(times)
    assert (flow[10], flow[11]) == (2**63 - 2, 2**63 - 1)  # first and last seen


def test_time_going_backwards_is_counted() -> None:
    engine = Engine()
    frame = bytes(eth() / IP(src=C, dst=S) / UDP(sport=4000, dport=5000) / b"x")
    engine.feed(*batch([(100 * NS, frame), (99 * NS, frame), (101 * NS, frame)]))
    assert engine.counters()["time_backwards"] == 1
    assert engine.now_ns == 101 * NS
    (flow,) = [e for e in engine.flush() if e[0] == EV_FLOW]
    assert flow[12] == 3  # pkts_up
