"""Seed inputs for the fuzz targets, built with scapy and struct (deterministic).

Each seed is already in its target's input format (see fuzz_targets.py): a selector byte or
two, then the bytes under test.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from scapy.contrib.mpls import MPLS
from scapy.layers.dns import (
    DNS,
    DNSQR,
    DNSRR,
    DNSRRMX,
    DNSRROPT,
    DNSRRSOA,
    DNSRRSRV,
    EDNS0ClientSubnet,
)
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import GRE, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

LINKTYPES = (0, 1, 9, 10, 12, 14, 50, 51, 101, 108, 113, 228, 229, 276)
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def _dns_query() -> bytes:
    return bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="www.example.com", qtype="A")))


def _dns_response() -> bytes:
    return bytes(
        DNS(
            id=0x1234,
            qr=1,
            rd=1,
            ra=1,
            qd=DNSQR(qname="www.example.com", qtype="A"),
            an=[
                DNSRR(rrname="www.example.com", type="CNAME", ttl=60, rdata="cdn.example.net"),
                DNSRR(rrname="cdn.example.net", type="A", ttl=60, rdata="192.0.2.7"),
                DNSRR(rrname="cdn.example.net", type="AAAA", ttl=60, rdata="2001:db8::7"),
                DNSRRMX(rrname="example.com", ttl=5, preference=10, exchange="mx.example.com"),
                DNSRRSRV(rrname="_x._tcp.example.com", priority=1, weight=2, port=53, target="a"),
                DNSRR(rrname="example.com", type="TXT", ttl=7, rdata=[b"v=spf1 -all", b'\x00"']),
            ],
            ns=[DNSRRSOA(rrname="example.com", mname="ns.example.com", rname="h.example.com")],
            ar=[
                DNSRROPT(rclass=1232, rdata=[EDNS0ClientSubnet(source_plen=24, address="10.1.2.0")])
            ],
        ).compress()
    )


def _rr(name: bytes, rtype: int, rdata: bytes, ttl: int = 300) -> bytes:
    return name + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def dns_messages() -> Iterator[bytes]:
    """Queries and responses, and the record types parse_dns renders by hand."""
    yield _dns_query()
    yield _dns_response()
    header = struct.pack("!6H", 7, 0x8180, 1, 4, 0, 0)
    question = b"\x03www\x07example\x03com\x00" + struct.pack("!HH", 65, 1)
    svcb = struct.pack("!H", 1) + b"\x00"  # priority 1, target "."
    svcb += struct.pack("!HH", 1, 6) + b"\x02h2\x02h3"  # alpn
    svcb += struct.pack("!HHH", 3, 2, 443)  # port
    svcb += struct.pack("!HH", 4, 4) + bytes([192, 0, 2, 1])  # ipv4hint
    svcb += struct.pack("!HH", 5, 3) + b"ech"
    svcb += struct.pack("!HH", 6, 16) + bytes(15) + b"\x01"  # ipv6hint
    caa = b"\x00\x05issue" + b"letsencrypt.org"
    hinfo = b"\x03x86\x05Linux"
    other = b"\x01\x02\x03"
    answers = _rr(b"\xc0\x0c", 65, svcb) + _rr(b"\xc0\x0c", 257, caa)
    answers += _rr(b"\xc0\x0c", 13, hinfo) + _rr(b"\xc0\x0c", 99, other)
    yield header + question + answers
    # Labels with bytes to escape, an extended label type, a pointer loop.
    yield (
        struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\x04a.b\\\x03\x00\x7f\xff\x00\x00\x01\x00\x01"
    )
    yield struct.pack("!6H", 1, 0x0100, 2, 0, 0, 0) + b"\x01a\x41\x00\x00\x01\x00\x01"
    yield struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"


def _link(linktype: int, packet: bytes, family: int) -> bytes:
    """The same IP packet framed for another capture link type."""
    et = 0x0800 if family == 4 else 0x86DD
    ppp = 0x0021 if family == 4 else 0x0057
    if linktype in (12, 14, 101, 228, 229):
        return packet
    if linktype == 0:
        return struct.pack("<I", 2 if family == 4 else 24) + packet
    if linktype == 108:
        return struct.pack(">I", 2 if family == 4 else 24) + packet
    if linktype == 113:
        return struct.pack("!HHH8sH", 0, 1, 6, bytes(8), et) + packet
    if linktype == 276:
        return struct.pack("!HHiHBB8s", et, 0, 2, 1, 0, 6, bytes(8)) + packet
    if linktype in (9, 50):
        return struct.pack("!BBH", 0xFF, 0x03, ppp) + packet
    if linktype == 51:
        return bytes(PPPoE(sessionid=1) / PPP(proto=ppp) / Raw(packet))
    if linktype == 10:
        return b"\x50" + bytes(12) + b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", et) + packet
    return bytes(Ether(**MACS, type=et) / Raw(packet))


def ethernet_frames() -> Iterator[bytes]:
    """Frames of linktype 1: every encapsulation the decoder walks through."""
    v4 = IP(src="192.0.2.1", dst="198.51.100.2")
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    dns_udp = UDP(sport=40000, dport=53) / Raw(_dns_query())
    eth = Ether(**MACS)
    yield bytes(eth / v4 / TCP(sport=40000, dport=443, flags="S", options=[("MSS", 1460)]))
    yield bytes(eth / Dot1AD(vlan=10) / Dot1Q(vlan=20) / v4 / dns_udp)
    yield bytes(eth / IP(src="192.0.2.1", dst="198.51.100.2", options=b"\x94\x04\x00\x00") / ICMP())
    ext = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["2001:db8::9"]) / IPv6ExtHdrDestOpt()
    yield bytes(eth / v6 / ext / dns_udp)
    yield bytes(eth / MPLS(label=100, s=0) / MPLS(label=200, s=1) / v4 / dns_udp)
    yield bytes(eth / PPPoE(sessionid=7) / PPP(proto=0x0057) / v6 / dns_udp)
    gre = GRE(key_present=1, key=5, seqnum_present=1, sequence_number=9, chksum_present=1)
    yield bytes(eth / v4 / gre / v6 / dns_udp)
    yield bytes(eth / v4 / GRE(proto=0x6558) / Ether(**MACS) / v4 / dns_udp)
    vxlan = UDP(sport=50000, dport=4789) / VXLAN(vni=42, flags=0x08)
    yield bytes(eth / v4 / vxlan / Ether(**MACS) / Dot1Q(vlan=5) / v4 / dns_udp)
    geneve = (
        struct.pack("!BBHI", 2, 0, 0x0800, 42 << 8) + struct.pack("!HBB", 0x0102, 3, 1) + bytes(4)
    )
    yield bytes(eth / v6 / UDP(sport=50000, dport=6081) / Raw(geneve + bytes(v4 / dns_udp)))
    yield bytes(eth / v4 / IP(src="10.0.0.1", dst="10.0.0.2") / dns_udp)  # IP-in-IP
    yield bytes(eth / v6 / IP(src="10.0.0.1", dst="10.0.0.2") / dns_udp)  # 4in6
    yield bytes(eth / v4 / v6 / dns_udp)  # 6in4
    teredo = bytes(IPv6(src="2001::1", dst="2001::2") / dns_udp)
    yield bytes(eth / v4 / UDP(sport=3544, dport=40001) / Raw(teredo))
    gtp = struct.pack("!BBHIHBB", 0x34, 0xFF, 0, 1, 0, 0, 0x85) + b"\x01\x00\x00\x00"
    yield bytes(eth / v4 / UDP(sport=2152, dport=2152) / Raw(gtp + bytes(v4 / dns_udp)))
    erspan2 = struct.pack("!HHI", 0x1000, 0x0001, 0)
    yield bytes(
        eth / v4 / GRE(seqnum_present=1, proto=0x88BE) / Raw(erspan2 + bytes(eth / v4 / dns_udp))
    )
    erspan3 = struct.pack("!IIHH", 0x20000001, 0, 0, 0)
    yield bytes(eth / v4 / GRE(proto=0x22EB) / Raw(erspan3 + bytes(eth / v4 / dns_udp)))
    pptp = struct.pack("!HHHHI", 0x3001, 0x880B, 4, 1, 1) + b"\xff\x03\x00\x21"  # RFC 2637
    gre_v1 = IP(src="192.0.2.1", dst="198.51.100.2", proto=47)
    yield bytes(eth / gre_v1 / Raw(pptp + bytes(v4 / dns_udp)))
    big = v4 / UDP(sport=53, dport=40000) / Raw(_dns_response())
    for piece in fragment(big, fragsize=64)[:2]:
        yield bytes(eth / piece)
    frag6 = v6 / IPv6ExtHdrFragment(id=1, m=1) / UDP(sport=53, dport=40000) / Raw(b"x" * 16)
    yield bytes(eth / frag6)


def frame_inputs() -> Iterator[bytes]:
    """Target "frame": [linktype index, options] + frame."""
    for frame in ethernet_frames():
        yield bytes([LINKTYPES.index(1), 0]) + frame
    packets = [
        (4, bytes(IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=40000, dport=53) / b"q")),
        (6, bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=2))),
    ]
    for index, linktype in enumerate(LINKTYPES):
        for family, packet in packets:
            if (linktype == 228 and family == 6) or (linktype == 229 and family == 4):
                continue
            yield bytes([index, 0]) + _link(linktype, packet, family)
    yield bytes([LINKTYPES.index(1), 0x03]) + next(ethernet_frames())  # vlan_tci given


def dns_inputs() -> Iterator[bytes]:
    yield from dns_messages()


def _pcap(
    frames: list[bytes], linktype: int = 1, order: str = "<", magic: int = 0xA1B2C3D4
) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack(order + "IIII", 1_700_000_000 + i, i, len(frame), len(frame)) + frame
    return out


def _block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return (
        struct.pack(order + "II", btype, len(body) + 12)
        + body
        + struct.pack(order + "I", len(body) + 12)
    )


def _pcapng(frames: list[bytes], order: str = "<") -> bytes:
    out = _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)
    tsresol = struct.pack(order + "HH", 9, 1) + b"\x09\x00\x00\x00"
    tsoffset = struct.pack(order + "HH", 14, 8) + struct.pack(order + "q", 1_600_000_000)
    end = struct.pack(order + "HH", 0, 0)
    out += _block(1, struct.pack(order + "HHI", 1, 0, 65535) + tsresol + tsoffset + end, order)
    out += _block(1, struct.pack(order + "HHI", 101, 0, 65535), order)
    out += _block(
        4, struct.pack(order + "HH", 1, 8) + bytes([192, 0, 2, 1]) + b"a\x00\x00\x00", order
    )
    for i, frame in enumerate(frames):
        ts = 1_000_000_000 * i
        body = (
            struct.pack(order + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
            + frame
        )
        out += _block(6, body, order)
    out += _block(3, struct.pack(order + "I", len(frames[0])) + frames[0], order)
    out += _block(2, struct.pack(order + "HHIIII", 0, 0, 0, 0, 4, 4) + b"\x45\x00\x00\x04", order)
    out += _block(5, struct.pack(order + "IIII", 0, 0, 0, 0), order)
    return out


def capfile_inputs() -> Iterator[bytes]:
    """Target "capfile": [chunk selector] + stream."""
    frames = list(ethernet_frames())[:4]
    for selector in (0, 7, 255):
        yield bytes([selector]) + _pcap(frames)
        yield bytes([selector]) + _pcapng(frames)
    yield b"\x03" + _pcap(frames, order=">", magic=0xA1B23C4D)
    yield b"\x03" + _pcap(frames, magic=0xA1B2CD34)[:24]
    yield b"\x05" + _pcapng(frames, order=">") + _pcapng(frames[1:])


def engine_input(frames: list[tuple[bytes, int]], step_ms: int = 1) -> bytes:
    """Target "engine": count, 10-byte descriptors, then the frames' bytes."""
    head, data = bytes([len(frames)]), b""
    for frame, linktype in frames:
        head += struct.pack(
            "<HHBBhH", len(data), len(frame), LINKTYPES.index(linktype), 0, step_ms, 0
        )
        data += frame
    return head + data


def engine_inputs() -> Iterator[bytes]:
    eth = Ether(**MACS)
    client, server = (
        IP(src="192.0.2.1", dst="198.51.100.2"),
        IP(src="198.51.100.2", dst="192.0.2.1"),
    )
    query = bytes(eth / client / UDP(sport=40000, dport=53) / Raw(_dns_query()))
    answer = bytes(eth / server / UDP(sport=53, dport=40000) / Raw(_dns_response()))
    yield engine_input([(query, 1), (answer, 1)])
    msg = _dns_query()
    tcp = [
        eth / client / TCP(sport=40001, dport=53, flags="S", seq=1),
        eth / server / TCP(sport=53, dport=40001, flags="SA", seq=9, ack=2),
        eth
        / client
        / TCP(sport=40001, dport=53, flags="PA", seq=2)
        / Raw(struct.pack("!H", len(msg)) + msg),
        eth / client / TCP(sport=40001, dport=53, flags="FA", seq=3),
        eth / server / TCP(sport=53, dport=40001, flags="R", seq=10),
    ]
    yield engine_input([(bytes(p), 1) for p in tcp])
    big = server / UDP(sport=53, dport=40000) / Raw(_dns_response())
    pieces = [bytes(eth / p) for p in fragment(big, fragsize=96)]
    yield engine_input([(p, 1) for p in reversed(pieces)] + [(pieces[0], 1)])
    v6 = (
        IPv6(src="2001:db8::2", dst="2001:db8::1")
        / IPv6ExtHdrFragment(id=7)
        / UDP(sport=53, dport=5353)
    )
    pieces6 = [bytes(eth / p) for p in fragment6(v6 / Raw(_dns_response()), 200)]
    yield engine_input([(p, 1) for p in pieces6])
    yield engine_input(
        [(bytes(eth / client / ICMP()), 1), (bytes(eth / server / ICMP(type=0)), 1)], 30000
    )
