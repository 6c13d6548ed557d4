"""agent.flow: Community ID v1, TCP flag text, address and protocol names.

The Community ID vectors are the spec's published ones (github.com/corelight/
community-id-spec) or, where marked, what tshark 4.0's communityid post-dissector
gives for the very frame built here (`tshark -r F --enable-protocol communityid
-T fields -e communityid`).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Packet, Raw

from agent._decode import parse_frame
from agent.flow import addr_text, community_id, proto_name, tcp_flags_text
from tests.util import of_type, pcap_bytes, replay


def eth() -> Ether:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def addr(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


# (frame, Community ID): the first four are in the spec's baseline, the rest from tshark.
VECTORS = [
    (
        IP(src="128.232.110.120", dst="66.35.250.204") / TCP(sport=34855, dport=80, flags="S"),
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
    ),
    (IP(src="192.168.0.89", dst="192.168.0.1") / ICMP(type=8), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (
        IPv6(src="fe80::200:86ff:fe05:80da", dst="fe80::260:97ff:fe07:69ea")
        / ICMPv6ND_NS(tgt="fe80::260:97ff:fe07:69ea"),
        "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
    ),
    (
        IPv6(src="2001:470:e5bf:dead:4957:2174:e82c:4887", dst="2607:f8b0:400c:c03::1a")
        / TCP(sport=63943, dport=25, flags="S"),
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (IP(src="192.168.0.1", dst="192.168.0.89") / ICMP(type=0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (
        IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoRequest(id=1),
        "1:YDcnf7YthUKAbDNo6Cs3rX4jq4w=",
    ),
    (
        IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=5353, dport=53),
        "1:tajKKCYPX5Fr60+44RSdKtpFb4s=",
    ),
    (IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=3, code=3), "1:LhjXG72oBqb/FpYqPl9LboG4/B4="),
    (
        IPv6(src="fe80::1", dst="fe80::2")
        / ICMPv6DestUnreach(code=4)
        / IPv6(src="fe80::2", dst="fe80::1")
        / UDP(sport=1, dport=2),
        "1:PQpOWBr5/ICePGOnTMaFJZeK2us=",
    ),
    (
        IP(src="192.0.2.9", dst="192.0.2.2") / SCTP(sport=3868, dport=3868),
        "1:K5m6+xYRM6K0TuSQPCVbjyGvux0=",
    ),
    (
        IP(src="192.0.2.9", dst="192.0.2.2", proto=50) / Raw(b"\0\0\1\0\0\0\0\1" + b"x" * 20),
        "1:AQcrDjEqbAy5GItbvhovusrsDEQ=",
    ),
]
# ICMP types with a request/reply counterpart in Community ID v1; the rest are one-way.
PAIRED_ICMP_TYPES = {
    1: {0, 8, 9, 10, 13, 14, 15, 16, 17, 18},
    58: {128, 129, 130, 131, 133, 134, 135, 136, 139, 140, 144, 145},
}
IDS = [
    "tcp4-spec",
    "icmp-echo-spec",
    "icmp6-nd-spec",
    "tcp6-spec",
    "icmp-echo-reply",
    "icmp6-echo",
    "udp6",
    "icmp-unreachable-one-way",
    "icmp6-unreachable-one-way",
    "sctp",
    "esp-portless",
]


def test_published_tcp_vector_both_ways() -> None:
    a, b = addr("128.232.110.120"), addr("66.35.250.204")
    assert community_id(6, a, b, 34855, 80) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert community_id(6, b, a, 80, 34855) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_published_icmp_and_ipv6_vectors() -> None:
    assert (
        community_id(1, addr("192.168.0.89"), addr("192.168.0.1"), 8, 0)
        == "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
    )
    assert (
        community_id(
            58, addr("fe80::200:86ff:fe05:80da"), addr("fe80::260:97ff:fe07:69ea"), 135, 136
        )
        == "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="
    )
    assert (
        community_id(
            6,
            addr("2001:470:e5bf:dead:4957:2174:e82c:4887"),
            addr("2607:f8b0:400c:c03::1a"),
            63943,
            25,
        )
        == "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="
    )


def test_one_way_keeps_the_order() -> None:
    a, b = addr("10.0.0.2"), addr("10.0.0.1")
    one_way = community_id(1, a, b, 3, 3, one_way=True)
    assert one_way == "1:LhjXG72oBqb/FpYqPl9LboG4/B4="
    assert community_id(1, b, a, 3, 3, one_way=True) != one_way
    assert community_id(1, a, b, 3, 3) != one_way  # two-way ordering swaps the endpoints


def test_seed_changes_the_id() -> None:
    a, b = addr("128.232.110.120"), addr("66.35.250.204")
    assert community_id(6, a, b, 34855, 80, seed=1) != community_id(6, a, b, 34855, 80)
    assert community_id(6, a, b, 34855, 80, seed=1) == community_id(6, b, a, 80, 34855, seed=1)


def test_ports_are_ignored_for_portless_protocols() -> None:
    a, b = addr("192.0.2.9"), addr("192.0.2.2")
    assert community_id(50, a, b, 0, 0) == community_id(50, a, b, 7, 9)
    assert community_id(50, a, b, 0, 0) == "1:AQcrDjEqbAy5GItbvhovusrsDEQ="


@pytest.mark.parametrize(("packet", "expected"), VECTORS, ids=IDS)
def test_community_id_of_decoded_frames(packet: Packet, expected: str) -> None:
    # The endpoints as the decoder takes them from the frame, as the engine does.
    status, fields = parse_frame(bytes(eth() / packet))
    assert status == 0
    proto = fields["proto"]
    one_way = proto in (1, 58) and fields["sport"] not in PAIRED_ICMP_TYPES[proto]
    got = community_id(
        proto, fields["src"], fields["dst"], fields["sport"], fields["dport"], one_way=one_way
    )
    assert got == expected


@pytest.mark.parametrize(("packet", "expected"), VECTORS, ids=IDS)
def test_community_id_of_replayed_flows(tmp_path: Path, packet: Packet, expected: str) -> None:
    path = tmp_path / "one.pcap"
    path.write_bytes(pcap_bytes([(100.0, bytes(eth() / packet))]))
    (flow,) = of_type(replay([path]), "flow")
    assert flow["flow"] == expected


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (0x00, ""),
        (0x02, "S"),
        (0x12, "SA"),
        (0x11, "FA"),
        (0x04, "R"),
        (0x18, "PA"),
        (0x20, "U"),
        (0xC2, "SEC"),
        (0xFF, "FSRPAUEC"),
        (0x112, "SA"),  # the NS bit sits outside the byte
    ],
)
def test_tcp_flags_text(bits: int, text: str) -> None:
    assert tcp_flags_text(bits) == text


def test_tcp_flags_text_in_a_replayed_flow(tmp_path: Path) -> None:
    frames = [
        (100.0, eth() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5, dport=80, flags="SEC")),
        (100.1, eth() / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=5, flags="SAE")),
        (100.2, eth() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5, dport=80, flags="PAU")),
    ]
    path = tmp_path / "flags.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in frames]))
    (flow,) = of_type(replay([path]), "flow")
    assert flow["tcp_flags_up"] == "SPAUEC"
    assert flow["tcp_flags_down"] == "SAE"


def test_names() -> None:
    assert [proto_name(p) for p in (1, 6, 17, 58, 132, 47, 50, 99)] == [
        "icmp",
        "tcp",
        "udp",
        "icmp6",
        "sctp",
        "gre",
        "esp",
        "99",
    ]
    assert addr_text(addr("192.0.2.1")) == "192.0.2.1"
    assert addr_text(addr("2001:db8::1")) == "2001:db8::1"
    assert addr_text(addr("::ffff:192.0.2.1")) == "::ffff:192.0.2.1"
