"""agent._decode.parse_frame: every link type and encapsulation, down to the innermost ports."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import dpkt
import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import GRE, GRE_PPTP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from agent._decode import LAYER_NAMES, STATUS_FRAGMENT, parse_frame

OK, TRUNCATED, UNSUPPORTED, MALFORMED, LIMIT = range(5)

ETH = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
OUTER = {"src": "192.0.2.1", "dst": "192.0.2.2"}


def eth(**kw: Any) -> Ether:
    return Ether(**ETH, **kw)


def inner4() -> Packet:
    return IP(src="10.1.1.1", dst="10.2.2.2") / TCP(sport=1234, dport=80, flags="S")


def inner6() -> Packet:
    return IPv6(src="2001:db8::a", dst="2001:db8::b") / UDP(sport=5000, dport=53) / Raw(b"hi")


def decode(frame: Packet | bytes, linktype: int = 1, **kw: Any) -> tuple[int, dict[str, Any]]:
    return parse_frame(bytes(frame), linktype, **kw)


def ok(frame: Packet | bytes, linktype: int = 1, **kw: Any) -> dict[str, Any]:
    status, fields = decode(frame, linktype, **kw)
    assert status == OK, fields
    return fields


def endpoints(fields: dict[str, Any]) -> tuple[str, str, int, int, int]:
    return (
        str(ipaddress.ip_address(fields["src"])),
        str(ipaddress.ip_address(fields["dst"])),
        fields["proto"],
        fields["sport"],
        fields["dport"],
    )


TCP4 = ("10.1.1.1", "10.2.2.2", 6, 1234, 80)
UDP6 = ("2001:db8::a", "2001:db8::b", 17, 5000, 53)


def assert_inner4(fields: dict[str, Any], tunnels: int = 0) -> None:
    assert endpoints(fields) == TCP4
    assert fields["family"] == 4
    assert fields["tunnels"] == tunnels
    assert fields["tcp_flags"] == 0x02


def assert_inner6(fields: dict[str, Any], tunnels: int = 0) -> None:
    assert endpoints(fields) == UDP6
    assert fields["family"] == 6
    assert fields["tunnels"] == tunnels
    assert fields["payload"] == b"hi"


# -- Ethernet and what rides on it ----------------------------------------------------------


def test_ethernet_ipv4_tcp() -> None:
    fields = ok(eth() / IP(src="10.1.1.1", dst="10.2.2.2") / TCP(sport=1234, dport=80, seq=77))
    assert endpoints(fields) == TCP4
    assert fields["seq"] == 77
    assert fields["ip_len"] == 40
    assert fields["vlans"] == fields["tunnels"] == fields["ctx"] == 0


def test_ethernet_ipv6_udp() -> None:
    fields = ok(eth() / inner6())
    assert_inner6(fields)
    assert fields["ip_len"] == 40 + 8 + 2


def test_ethernet_padding_is_not_payload() -> None:
    frame = bytes(eth() / IP(src="10.1.1.1", dst="10.2.2.2") / UDP(sport=1, dport=2) / b"ab")
    frame += b"\0" * (60 - len(frame))  # the minimum Ethernet frame
    fields = ok(frame)
    assert fields["payload"] == b"ab"
    assert fields["payload_wire"] == 2


@pytest.mark.parametrize(
    "packet",
    [
        IP(src="10.1.1.1", dst="10.2.2.2") / TCP(sport=1234, dport=80),
        IP(src="10.1.1.1", dst="10.2.2.2") / UDP(sport=4000, dport=53) / (b"x" * 30),
        IPv6(src="2001:db8::a", dst="2001:db8::b") / TCP(sport=9, dport=443),
        IP(src="10.1.1.1", dst="10.2.2.2", options=[IPOption_NOP()] * 4) / UDP(sport=7, dport=8),
    ],
    ids=["tcp4", "udp4", "tcp6", "ipv4-options"],
)
def test_dpkt_agrees_on_plain_ethernet(packet: Packet) -> None:
    frame = bytes(eth() / packet)
    fields = ok(frame)
    ip = dpkt.ethernet.Ethernet(frame).data
    assert fields["src"] == ip.src
    assert fields["dst"] == ip.dst
    assert fields["proto"] == ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt
    assert (fields["sport"], fields["dport"]) == (ip.data.sport, ip.data.dport)


def test_vlan_802_1q() -> None:
    fields = ok(eth() / Dot1Q(vlan=100, prio=5) / inner4())
    assert_inner4(fields)
    assert (fields["vlans"], fields["vlan_id"]) == (1, 100)
    assert fields["ctx"] != 0


def test_qinq_802_1ad_and_802_1q() -> None:
    fields = ok(eth() / Dot1AD(vlan=100) / Dot1Q(vlan=200) / inner4())
    assert_inner4(fields)
    assert (fields["vlans"], fields["vlan_id"]) == (2, 100)
    swapped = ok(eth() / Dot1AD(vlan=200) / Dot1Q(vlan=100) / inner4())
    single = ok(eth() / Dot1Q(vlan=100) / inner4())
    assert len({fields["ctx"], swapped["ctx"], single["ctx"]}) == 3


def test_vlan_not_in_key_when_key_vlan_is_off() -> None:
    fields = ok(eth() / Dot1Q(vlan=100) / inner4(), key_vlan=False)
    assert (fields["vlan_id"], fields["ctx"]) == (100, 0)


def test_vlan_stripped_by_the_kernel() -> None:
    tagged = ok(eth() / inner4(), vlan_tci=0x2000 | 42)
    assert (tagged["vlans"], tagged["vlan_id"]) == (1, 42)
    assert tagged["ctx"] == ok(eth() / Dot1Q(vlan=42) / inner4())["ctx"]


@pytest.mark.parametrize("labels", [1, 3])
def test_mpls_labels(labels: int) -> None:
    stack = MPLS(label=100, s=int(labels == 1), ttl=64)
    for i in range(1, labels):
        stack = stack / MPLS(label=100 + i, s=int(i == labels - 1), ttl=64)
    assert_inner4(ok(eth(type=0x8847) / stack / inner4()))


def test_mpls_ipv6() -> None:
    assert_inner6(ok(eth(type=0x8847) / MPLS(label=7, s=1) / inner6()))


def test_mpls_pseudowire_control_word_then_ethernet() -> None:
    frame = eth(type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1)
    frame = frame / Raw(b"\x00\x00\x00\x2a") / eth() / inner4()
    assert_inner4(ok(frame))


def test_pppoe_session() -> None:
    frame = eth(type=0x8864) / PPPoE(sessionid=0x1234) / PPP(proto=0x0021) / inner4()
    assert_inner4(ok(frame))
    frame6 = eth(type=0x8864) / PPPoE(sessionid=0x1234) / PPP(proto=0x0057) / inner6()
    assert_inner6(ok(frame6))


# -- GRE and ERSPAN -------------------------------------------------------------------------


def test_gre_plain() -> None:
    assert_inner4(ok(eth() / IP(**OUTER) / GRE() / inner4()), tunnels=1)


def test_gre_with_checksum_key_and_sequence() -> None:
    gre = GRE(chksum_present=1, key_present=1, seqnum_present=1, key=0xABCD, sequence_number=9)
    assert len(gre) == 16
    assert_inner4(ok(eth() / IP(**OUTER) / gre / inner4()), tunnels=1)


def test_gre_ipv6_payload() -> None:
    assert_inner6(ok(eth() / IP(**OUTER) / GRE(proto=0x86DD) / inner6()), tunnels=1)


def test_gre_transparent_ethernet_bridging() -> None:
    frame = eth() / IP(**OUTER) / GRE(proto=0x6558) / eth() / Dot1Q(vlan=5) / inner4()
    fields = ok(frame)
    assert_inner4(fields, tunnels=1)
    assert fields["vlan_id"] == 5


def test_erspan_type_1() -> None:
    # Type I: GRE protocol 0x88BE without a sequence number, and no ERSPAN header.
    frame = eth() / IP(**OUTER) / GRE(proto=0x88BE) / eth() / inner4()
    assert_inner4(ok(frame), tunnels=1)


def test_erspan_type_2() -> None:
    frame = eth() / IP(**OUTER) / GRE(seqnum_present=1, proto=0x88BE, sequence_number=3)
    frame = frame / ERSPAN_II(session_id=12, vlan=0) / eth() / inner4()
    assert_inner4(ok(frame), tunnels=1)


def test_erspan_type_3() -> None:
    frame = eth() / IP(**OUTER) / GRE(proto=0x22EB) / ERSPAN_III(session_id=12) / eth() / inner4()
    assert_inner4(ok(frame), tunnels=1)


def test_erspan_type_3_with_platform_subheader() -> None:
    erspan = ERSPAN_III(session_id=12, o=1) / ERSPAN_PlatformSpecific(platf_id=3)
    assert len(erspan) == 20
    frame = eth() / IP(**OUTER) / GRE(proto=0x22EB) / erspan / eth() / inner4()
    assert_inner4(ok(frame), tunnels=1)


def test_pptp_enhanced_gre_with_ppp() -> None:
    gre = GRE_PPTP(call_id=7, seqnum_present=1, sequence_number=1)
    frame = eth() / IP(**OUTER) / gre / PPP(proto=0x0021) / inner4()
    assert_inner4(ok(frame), tunnels=1)


def test_pptp_with_ack_and_compressed_ppp() -> None:
    gre = GRE_PPTP(call_id=7, seqnum_present=1, acknum_present=1, sequence_number=1, ack_number=2)
    assert len(gre) == 16
    # No address/control field and a one-byte protocol (RFC 1661 section 6.5, 6.6)
    frame = eth() / IP(**OUTER) / gre / Raw(b"\x21") / inner4()
    assert_inner4(ok(frame), tunnels=1)


# -- UDP tunnels ----------------------------------------------------------------------------


def vxlan(vni: int, packet: Packet) -> Packet:
    return eth() / IP(**OUTER) / UDP(sport=49152, dport=4789) / VXLAN(vni=vni) / eth() / packet


def test_vxlan() -> None:
    fields = ok(vxlan(42, inner4()))
    assert_inner4(fields, tunnels=1)
    assert fields["ctx"] != 0
    assert ok(vxlan(43, inner4()))["ctx"] != fields["ctx"]
    assert ok(vxlan(42, inner4()), key_tunnel=False)["ctx"] == 0


def test_geneve_with_options() -> None:
    options = [GeneveOptions(classid=0x0102, type=0x80, data=b"\x01\x02\x03\x04")]
    geneve = GENEVE(vni=7, proto=0x6558, options=options)
    assert bytes(geneve)[0] & 0x3F == 2  # two 4-byte words of options
    frame = eth() / IP(**OUTER) / UDP(sport=1000, dport=6081) / geneve / eth() / inner4()
    fields = ok(frame)
    assert_inner4(fields, tunnels=1)
    assert fields["ctx"] != 0


def test_geneve_ip_payload() -> None:
    frame = eth() / IP(**OUTER) / UDP(sport=1000, dport=6081) / GENEVE(vni=7, proto=0x86DD)
    assert_inner6(ok(frame / inner6()), tunnels=1)


def test_geneve_port_with_unknown_protocol_stays_an_ordinary_flow() -> None:
    # Not a tunnel we decode: the UDP flow must be keyed like any other, whatever its bytes.
    base = eth() / IP(**OUTER) / UDP(sport=1000, dport=6081)
    one = ok(base / GENEVE(vni=1, proto=0x1234) / b"data")
    two = ok(base / GENEVE(vni=2, proto=0x1234) / b"data")
    assert endpoints(one) == ("192.0.2.1", "192.0.2.2", 17, 1000, 6081)
    assert one["tunnels"] == 0
    assert one["ctx"] == two["ctx"] == 0


def teredo(prefix: bytes) -> Packet:
    return eth() / IP(**OUTER) / UDP(sport=3544, dport=40000) / Raw(prefix) / inner6()


def test_teredo() -> None:
    assert_inner6(ok(teredo(b"")), tunnels=1)


def test_teredo_with_origin_indication() -> None:
    origin = (
        b"\x00\x00"
        + struct.pack("!H", 40000 ^ 0xFFFF)
        + bytes(b ^ 0xFF for b in b"\xc0\x00\x02\x01")
    )
    assert_inner6(ok(teredo(origin)), tunnels=1)


def test_teredo_with_authentication_and_origin() -> None:
    # RFC 4380 5.1.1: 0x0001, id length, auth length, id, auth, nonce (8), confirmation (1)
    auth = b"\x00\x01\x02\x03" + b"id" + b"abc" + b"N" * 8 + b"\x00"
    origin = b"\x00\x00" + b"\x11\x22" + b"\x33\x44\x55\x66"
    assert_inner6(ok(teredo(auth + origin)), tunnels=1)


def gtp_frame(header: Packet, packet: Packet) -> Packet:
    return eth() / IP(**OUTER) / UDP(sport=2152, dport=2152) / header / packet


def test_gtp_u() -> None:
    fields = ok(gtp_frame(GTP_U_Header(teid=0x1234), inner4()))
    assert_inner4(fields, tunnels=1)
    assert fields["ctx"] == 0  # TEIDs differ by direction: never in the key


def test_gtp_u_with_extension_headers() -> None:
    header = GTP_U_Header(teid=9, E=1, next_ex=0x85) / GTPPDUSessionContainer(type=0, QFI=5)
    assert_inner6(ok(gtp_frame(header, inner6())), tunnels=1)


def test_gtp_u_with_two_extension_headers() -> None:
    # flags E+S, seq, N-PDU, next 0x40 (UDP port ext, 1 word) then 0x85 (1 word), then 0
    raw = struct.pack("!BBHIHBB", 0x36, 0xFF, 0, 5, 1, 0, 0x40)
    raw += b"\x01\x08\x68\x85" + b"\x01\x00\x05\x00"
    assert_inner4(ok(gtp_frame(Raw(raw), inner4())), tunnels=1)


# -- IP in IP and IP details ----------------------------------------------------------------


def test_ip_in_ip() -> None:
    assert_inner4(ok(eth() / IP(**OUTER) / inner4()), tunnels=1)


def test_6in4() -> None:
    assert_inner6(ok(eth() / IP(**OUTER) / inner6()), tunnels=1)


def test_4in6() -> None:
    outer = IPv6(src="2001:db8:1::1", dst="2001:db8:1::2")
    assert_inner4(ok(eth() / outer / inner4()), tunnels=1)


def test_ipv4_options() -> None:
    packet = IP(
        src="10.1.1.1", dst="10.2.2.2", options=[IPOption_RR(routers=["1.2.3.4"]), IPOption_NOP()]
    )
    assert bytes(packet)[0] & 0x0F > 5
    assert_inner4(ok(eth() / packet / TCP(sport=1234, dport=80, flags="S")))


def test_ipv6_extension_header_chain_with_atomic_fragment() -> None:
    chain = (
        IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::99"])
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(offset=0, m=0, id=0xDEAD)  # atomic (RFC 6946)
    )
    packet = IPv6(src="2001:db8::a", dst="2001:db8::b") / chain / UDP(sport=5000, dport=53) / b"hi"
    fields = ok(eth() / packet)
    assert_inner6(fields)


def test_ipv6_authentication_header() -> None:
    # AH (RFC 4302): length in 4-octet units minus 2; a 12-byte ICV makes 24 bytes.
    ah = struct.pack("!BBHII", 17, 4, 0, 0x100, 1) + b"\xaa" * 12
    packet = IPv6(src="2001:db8::a", dst="2001:db8::b", nh=51) / Raw(ah)
    packet = packet / UDP(sport=5000, dport=53) / b"hi"
    assert_inner6(ok(eth() / packet))


def test_icmp_echo_ports() -> None:
    request = ok(eth() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=1))
    reply = ok(eth() / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=1))
    assert (request["sport"], request["dport"]) == (8, 0)
    assert (reply["sport"], reply["dport"]) == (0, 8)


# -- capture link types ---------------------------------------------------------------------


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip(linktype: int) -> None:
    assert_inner4(ok(inner4(), linktype))
    assert_inner6(ok(inner6(), linktype))


def test_linktype_ipv4_and_ipv6() -> None:
    assert_inner4(ok(inner4(), 228))
    assert_inner6(ok(inner6(), 229))


@pytest.mark.parametrize("order", ["<", ">"], ids=["little", "big"])
@pytest.mark.parametrize("af", [2, 24, 28, 30])
def test_bsd_null(order: str, af: int) -> None:
    packet = inner4() if af == 2 else inner6()
    fields = ok(struct.pack(order + "I", af) + bytes(packet), 0)
    (assert_inner4 if af == 2 else assert_inner6)(fields)


@pytest.mark.parametrize("af", [2, 24])
def test_loop(af: int) -> None:
    packet = inner4() if af == 2 else inner6()
    fields = ok(struct.pack(">I", af) + bytes(packet), 108)
    (assert_inner4 if af == 2 else assert_inner6)(fields)


def test_null_unknown_family() -> None:
    status, fields = decode(struct.pack("<I", 7) + bytes(inner4()), 0)
    assert status == UNSUPPORTED
    assert fields == {"layer": "link"}


def test_linux_sll() -> None:
    assert_inner4(ok(CookedLinux(pkttype=0, proto=0x0800) / inner4(), 113))
    assert_inner6(ok(CookedLinux(pkttype=4, proto=0x86DD) / inner6(), 113))


def test_linux_sll2() -> None:
    assert_inner4(ok(CookedLinuxV2(proto=0x0800) / inner4(), 276))
    assert_inner6(ok(CookedLinuxV2(proto=0x86DD) / inner6(), 276))


def test_linux_sll_vlan() -> None:
    frame = CookedLinux(proto=0x8100) / Dot1Q(vlan=9) / inner4()
    fields = ok(frame, 113)
    assert_inner4(fields)
    assert fields["vlan_id"] == 9


@pytest.mark.parametrize(
    "header",
    [b"\xff\x03\x00\x21", b"\x00\x21", b"\xff\x03\x21", b"\x21"],
    ids=["hdlc", "no-address-control", "hdlc-compressed-protocol", "compressed-protocol"],
)
def test_ppp(header: bytes) -> None:
    assert_inner4(ok(header + bytes(inner4()), 9))


def test_ppp_ipv6() -> None:
    assert_inner6(ok(b"\xff\x03\x00\x57" + bytes(inner6()), 9))


def test_fddi_llc_snap() -> None:
    fddi = b"\x50" + b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb"
    snap = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
    assert_inner4(ok(fddi + snap + bytes(inner4()), 10))
    snap6 = b"\xaa\xaa\x03\x00\x00\x00\x86\xdd"
    assert_inner6(ok(fddi + snap6 + bytes(inner6()), 10))


def test_unknown_linktype() -> None:
    status, fields = decode(bytes(inner4()), 147)
    assert status == UNSUPPORTED
    assert fields == {"layer": "link"}


# -- bounds ---------------------------------------------------------------------------------


def vlan_stack(count: int) -> Packet:
    frame = eth()
    for i in range(count):
        frame = frame / Dot1Q(vlan=10 + i)
    return frame / inner4()


def test_eight_vlan_tags_decode() -> None:
    fields = ok(vlan_stack(8))
    assert_inner4(fields)
    assert fields["vlans"] == 8


def test_nine_vlan_tags_are_limit() -> None:
    assert decode(vlan_stack(9)) == (LIMIT, {"layer": "vlan"})


def mpls_stack(count: int) -> Packet:
    frame = eth(type=0x8847)
    for i in range(count):
        frame = frame / MPLS(label=100 + i, s=int(i == count - 1))
    return frame / inner4()


def test_sixteen_mpls_labels_decode() -> None:
    assert_inner4(ok(mpls_stack(16)))


def test_seventeen_mpls_labels_are_limit() -> None:
    assert decode(mpls_stack(17)) == (LIMIT, {"layer": "mpls"})


def ipip_nest(depth: int) -> Packet:
    packet = inner4()
    for i in range(depth):
        packet = IP(src=f"192.0.2.{i + 1}", dst=f"198.51.100.{i + 1}") / packet
    return eth() / packet


def test_eight_nested_tunnels_decode() -> None:
    assert_inner4(ok(ipip_nest(8)), tunnels=8)


def test_nine_nested_tunnels_are_limit() -> None:
    assert decode(ipip_nest(9)) == (LIMIT, {"layer": "tunnel"})


def test_nine_nested_mixed_tunnels_are_limit() -> None:
    packet: Packet = inner4()
    for i in range(9):
        packet = (
            IP(**OUTER) / GRE() / packet
            if i % 2
            else IP(**OUTER) / UDP(sport=1, dport=4789) / VXLAN(vni=i) / eth() / packet
        )
    assert decode(eth() / packet) == (LIMIT, {"layer": "tunnel"})


def ipv6_ext_chain(count: int) -> Packet:
    packet = IPv6(src="2001:db8::a", dst="2001:db8::b")
    for _ in range(count):
        packet = packet / IPv6ExtHdrDestOpt()
    return eth() / packet / UDP(sport=5000, dport=53) / b"hi"


def test_eight_ipv6_extension_headers_decode() -> None:
    assert_inner6(ok(ipv6_ext_chain(8)))


def test_nine_ipv6_extension_headers_are_limit() -> None:
    assert decode(ipv6_ext_chain(9)) == (LIMIT, {"layer": "ipv6_ext"})


# -- fragments ------------------------------------------------------------------------------


def test_ipv4_fragments() -> None:
    first = IP(src="10.1.1.1", dst="10.2.2.2", id=0x4242, flags="MF", frag=0, proto=17)
    status, fields = decode(eth() / first / Raw(b"a" * 64))
    assert status == STATUS_FRAGMENT == 10
    assert (fields["frag_offset"], fields["frag_more"], fields["frag_id"]) == (0, True, 0x4242)
    assert fields["proto"] == 17
    last = IP(src="10.1.1.1", dst="10.2.2.2", id=0x4242, frag=8, proto=17)
    status, fields = decode(eth() / last / Raw(b"b" * 10))
    assert status == STATUS_FRAGMENT
    assert (fields["frag_offset"], fields["frag_more"], fields["frag_id"]) == (64, False, 0x4242)
    assert fields["payload"] == b"b" * 10


def test_ipv4_dont_fragment_is_not_a_fragment() -> None:
    assert_inner4(
        ok(
            eth()
            / IP(src="10.1.1.1", dst="10.2.2.2", flags="DF")
            / TCP(sport=1234, dport=80, flags="S")
        )
    )


def test_ipv6_fragment() -> None:
    packet = IPv6(src="2001:db8::a", dst="2001:db8::b") / IPv6ExtHdrFragment(
        offset=100, m=1, id=0x12345678, nh=17
    )
    status, fields = decode(eth() / packet / Raw(b"c" * 16))
    assert status == STATUS_FRAGMENT
    assert (fields["frag_offset"], fields["frag_more"], fields["frag_id"]) == (
        800,
        True,
        0x12345678,
    )
    assert fields["proto"] == 17
    assert fields["payload"] == b"c" * 16


# -- truncation and hostile input -----------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        eth() / Dot1Q(vlan=3) / inner4(),
        eth(type=0x8847) / MPLS(label=1, s=0) / MPLS(label=2, s=1) / inner4(),
        eth(type=0x8864) / PPPoE(sessionid=1) / PPP(proto=0x0021) / inner4(),
        eth() / IP(**OUTER) / GRE(key_present=1, key=1) / inner4(),
        eth()
        / IP(**OUTER)
        / GRE(proto=0x22EB)
        / ERSPAN_III(o=1)
        / ERSPAN_PlatformSpecific()
        / eth()
        / inner4(),
        eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / inner4(),
    ],
    ids=["vlan", "mpls", "pppoe", "gre", "erspan3", "ipv6-ext-4in6"],
)
def test_every_truncation_is_reported(frame: Packet) -> None:
    data = bytes(frame)
    assert_inner4(ok(data), tunnels=ok(data)["tunnels"])
    for cut in range(len(data)):
        status, fields = decode(data[:cut])
        assert status == TRUNCATED, (cut, status, fields)
        assert fields["layer"] in LAYER_NAMES


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",
        b"\xff" * 14,
        bytes(eth(type=0x0800)) + b"\x4f" + b"\x00" * 19,  # IHL 15 and nothing behind
        bytes(eth(type=0x0800)) + b"\x44" + b"\x00" * 30,  # IHL below 5
        bytes(eth(type=0x8847)) + b"\x00\x00\x00\x00" * 40,  # no bottom of stack
        bytes(eth() / IP(**OUTER, proto=47)) + b"\x40\x00\x08\x00",  # GRE source routing
    ],
)
def test_hostile_frames_give_a_status(data: bytes) -> None:
    status, fields = decode(data)
    assert status in (TRUNCATED, UNSUPPORTED, MALFORMED, LIMIT)
    assert set(fields) == {"layer"}
