"""Frame builders for the property tests, and dpkt as the oracle that reads them back.

`frames()` draws a frame from the inside out: an innermost IPv4/IPv6 packet (random IPv4
options, 0-4 IPv6 extension headers) carrying TCP (random options), UDP or ICMP; 0-2 tunnels
around it (GRE with or without checksum/key/sequence, GRE-TEB, VXLAN, Geneve with options,
IP-in-IP, 6in4, 4in6, 6in6); and a link layer (Ethernet with 0-2 VLAN tags, an MPLS stack or a
PPPoE session, or one of the other capture link types). Every draw carries the truth it was
built from, so the oracle is checked against the builder before the decoder is checked
against the oracle.

`dpkt_decode()` walks a frame with dpkt's header classes; where dpkt does not walk on by
itself (VXLAN, Geneve, FDDI, an MPLS stack over an IPv4 header with options) the walk steps
over that header by hand and hands the rest back to dpkt.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import dpkt
from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, TCP, UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import GRE, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

# UDP ports the decoder looks into (ext/_decode.pxd udp_tunnel); plain UDP avoids them.
TUNNEL_PORTS = frozenset({4789, 8472, 6081, 3544, 2152})
ETH_IPV4, ETH_IPV6, ETH_TEB = 0x0800, 0x86DD, 0x6558
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057

# ICMP types with a request/reply counterpart, as the decoder maps them (Community ID v1).
ICMP_PEER = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PEER = {
    128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
    130: 131, 131: 130, 139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip

LINKTYPES = (0, 1, 9, 10, 12, 14, 50, 51, 101, 108, 113, 228, 229, 276)


@dataclass
class Truth:
    """What the builder put in the frame: the innermost IP packet and the walk to it."""

    family: int = 0
    src: bytes = b""
    dst: bytes = b""
    proto: int = 0
    sport: int = 0
    dport: int = 0
    ip_len: int = 0
    payload_len: int = 0  # TCP/UDP payload; the decoder hands out no other payload
    payload: bytes = b""
    seq: int = 0
    tcp_flags: int = 0
    tunnels: int = 0
    vlan_ids: list[int] = field(default_factory=list)  # outermost first
    udp_tunnel: bool = False  # VXLAN or Geneve somewhere on the way

    def fields(self) -> dict[str, Any]:
        """The truth in the decoder's vocabulary (vlan_id: first non-zero id, outermost first)."""
        return {
            "family": self.family,
            "src": self.src,
            "dst": self.dst,
            "proto": self.proto,
            "sport": self.sport,
            "dport": self.dport,
            "ip_len": self.ip_len,
            "payload_len": self.payload_len,
            "payload_wire": self.payload_len,
            "seq": self.seq,
            "tcp_flags": self.tcp_flags,
            "tunnels": self.tunnels,
            "vlans": len(self.vlan_ids),
            "vlan_id": next((v for v in self.vlan_ids if v), 0),
        }


@dataclass
class Built:
    frame: bytes
    linktype: int
    truth: Truth
    trailer: int  # bytes after the outermost IP packet (padding, FCS): never needed

    @property
    def core_len(self) -> int:
        return len(self.frame) - self.trailer


def decoded_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """parse_frame's fields in the vocabulary of Truth.fields()."""
    out = {k: fields[k] for k in ("family", "src", "dst", "proto", "sport", "dport", "ip_len")}
    out.update(seq=fields["seq"], tcp_flags=fields["tcp_flags"], tunnels=fields["tunnels"])
    out.update(vlans=fields["vlans"], vlan_id=fields["vlan_id"])
    out.update(payload_len=len(fields["payload"]), payload_wire=fields["payload_wire"])
    return out


# --- building blocks --------------------------------------------------------------------------


def ip_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_packet(
    src: bytes, dst: bytes, proto: int, payload: bytes, options: bytes = b"", ident: int = 0
) -> bytes:
    """IPv4 header by hand (RFC 791), so IHL and options are exactly what was drawn."""
    assert len(options) % 4 == 0 and len(options) <= 40
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ident, 0, 64, proto, 0, src, dst)
    hdr += options
    csum = ip_checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def ntop(family: int, addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if family == 4 else socket.AF_INET6, addr)


def raw(pkt: Packet) -> bytes:
    return bytes(pkt)


ports = st.integers(0, 65535)
udp_ports = ports.filter(lambda p: p not in TUNNEL_PORTS)
ephemeral = st.integers(1024, 65535).filter(lambda p: p not in TUNNEL_PORTS)
addr4 = st.binary(min_size=4, max_size=4)
addr6 = st.binary(min_size=16, max_size=16)
vlan_ids = st.one_of(st.just(0), st.integers(1, 4094))


@st.composite
def ipv4_options(draw: st.DrawFn) -> bytes:
    """0-40 bytes of options (IHL 5..15): NOPs, TLVs of assorted types, EOL and padding."""
    budget = draw(st.integers(0, 10)) * 4
    opts = b""
    while len(opts) < budget:
        room = budget - len(opts)
        kind = draw(st.sampled_from(["nop", "tlv", "tlv", "eol"]))
        if kind == "eol":
            opts += b"\x00" * room
        elif kind == "nop" or room < 2:
            opts += b"\x01"
        else:
            length = draw(st.integers(2, min(room, 12)))
            otype = draw(st.sampled_from([0x07, 0x44, 0x82, 0x86, 0x88, 0x94, 0x19]))
            opts += bytes([otype, length]) + draw(
                st.binary(min_size=length - 2, max_size=length - 2)
            )
    return opts


@st.composite
def ipv6_ext_header(draw: st.DrawFn, kind: str, nh: int) -> Packet:
    if kind == "routing":
        n = draw(st.integers(0, 3))
        addrs = [ntop(6, draw(addr6)) for _ in range(n)]
        return IPv6ExtHdrRouting(nh=nh, addresses=addrs, segleft=0)
    options = [
        HBHOptUnknown(otype=draw(st.integers(0x02, 0x3F)), optdata=draw(st.binary(max_size=20)))
        for _ in range(draw(st.integers(0, 3)))
    ]
    cls = IPv6ExtHdrHopByHop if kind == "hbh" else IPv6ExtHdrDestOpt
    return cls(nh=nh, options=options)


EXT_CODES = {"hbh": 0, "routing": 43, "dest": 60}


@st.composite
def ipv6_packet(draw: st.DrawFn, src: bytes, dst: bytes, nh: int, payload: bytes) -> bytes:
    """IPv6 (RFC 8200) with a chain of 0-4 hop-by-hop, routing and destination options headers."""
    kinds = draw(st.lists(st.sampled_from(sorted(EXT_CODES)), max_size=4))
    codes = [EXT_CODES[k] for k in kinds] + [nh]
    pkt = IPv6(src=ntop(6, src), dst=ntop(6, dst), nh=codes[0], hlim=draw(st.integers(1, 255)))
    for i, kind in enumerate(kinds):
        pkt = pkt / draw(ipv6_ext_header(kind, codes[i + 1]))
    return raw(pkt / Raw(payload))


@st.composite
def ip_packet(
    draw: st.DrawFn, family: int, proto: int, payload: bytes
) -> tuple[bytes, bytes, bytes]:
    """(packet, src, dst) of an IP packet of either family with random options/extensions."""
    if family == 4:
        src, dst = draw(addr4), draw(addr4)
        opts = draw(ipv4_options())
        return ipv4_packet(src, dst, proto, payload, opts, draw(ports)), src, dst
    src, dst = draw(addr6), draw(addr6)
    return draw(ipv6_packet(src, dst, proto, payload)), src, dst


tcp_option = st.one_of(
    st.just(("NOP", None)),
    st.tuples(st.just("MSS"), st.integers(0, 65535)),
    st.tuples(st.just("WScale"), st.integers(0, 14)),
    st.just(("SAckOK", b"")),
    st.tuples(
        st.just("Timestamp"), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    ),
    st.tuples(st.just("SAck"), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))),
)


@st.composite
def innermost(draw: st.DrawFn) -> tuple[bytes, int, Truth]:
    """(IP packet, family, truth) of the innermost packet: TCP, UDP or ICMP over IPv4/IPv6."""
    family = draw(st.sampled_from([4, 6]))
    kind = draw(st.sampled_from(["tcp", "tcp", "udp", "udp", "icmp", "sctp", "other"]))
    payload = draw(st.binary(max_size=80))
    truth = Truth(family=family)
    if kind == "tcp":
        sport, dport = draw(ports), draw(ports)
        seq, flags = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 255))
        opts = draw(st.lists(tcp_option, max_size=4))
        l4 = raw(TCP(sport=sport, dport=dport, seq=seq, flags=flags, options=opts) / Raw(payload))
        truth.proto, truth.sport, truth.dport = 6, sport, dport
        truth.seq, truth.tcp_flags, truth.payload_len = seq, flags, len(payload)
        truth.payload = payload
    elif kind == "udp":
        sport, dport = draw(udp_ports), draw(udp_ports)
        l4 = raw(UDP(sport=sport, dport=dport) / Raw(payload))
        truth.proto, truth.sport, truth.dport, truth.payload_len = 17, sport, dport, len(payload)
        truth.payload = payload
    elif kind == "sctp":
        sport, dport = draw(ports), draw(ports)
        l4 = raw(SCTP(sport=sport, dport=dport, tag=draw(ports)) / SCTPChunkData(data=payload))
        truth.proto, truth.sport, truth.dport = 132, sport, dport
    elif kind == "other":
        # No ports: ESP (IPv4 only: dpkt takes 50 for an IPv6 extension), OSPF, PIM.
        truth.proto = draw(st.sampled_from([89, 103] if family == 6 else [50, 89, 103]))
        # Not empty: the decoder reads an IPv6 payload length of 0 as "what is there" (TSO,
        # jumbograms), which takes in the link's padding (see docs/fuzzing.md).
        l4 = payload or b"\x00"
    else:
        code = draw(st.integers(0, 15))
        if family == 4:
            itype = draw(st.sampled_from([0, 8, 13, 3, 11]))
            l4 = raw(ICMP(type=itype, code=code) / Raw(payload))
            truth.proto, peer = 1, ICMP_PEER.get(itype)
        else:
            layer = draw(st.sampled_from([ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6TimeExceeded]))
            l4 = raw(layer(code=code) / Raw(payload))
            itype = l4[0]
            truth.proto, peer = 58, ICMP6_PEER.get(itype)
        truth.sport, truth.dport = itype, code if peer is None else peer
    packet, truth.src, truth.dst = draw(ip_packet(family, truth.proto, l4))
    truth.ip_len = len(packet)
    return packet, family, truth


@st.composite
def ether_frame(
    draw: st.DrawFn, ethertype: int, payload: bytes, truth: Truth, max_vlans: int
) -> bytes:
    """Ethernet II with 0..max_vlans tags (802.1ad outer and 802.1Q inner, or 802.1Q twice)."""
    macs = [draw(st.binary(min_size=6, max_size=6)) for _ in range(2)]
    tags = draw(st.lists(vlan_ids, max_size=max_vlans))
    outer_tpid = draw(st.sampled_from([0x8100, 0x88A8])) if len(tags) == 2 else 0x8100
    pkt: Packet = Ether(
        dst=":".join(f"{b:02x}" for b in macs[0]),
        src=":".join(f"{b:02x}" for b in macs[1]),
        type=(outer_tpid if tags else ethertype),
    )
    for i, vid in enumerate(tags):
        nxt = 0x8100 if i + 1 < len(tags) else ethertype
        tag_cls = Dot1AD if (i == 0 and outer_tpid == 0x88A8) else Dot1Q
        pkt = pkt / tag_cls(vlan=vid, prio=draw(st.integers(0, 7)), type=nxt)
    truth.vlan_ids.extend(tags)
    return raw(pkt / Raw(payload))


def ip_ethertype(family: int) -> int:
    return ETH_IPV4 if family == 4 else ETH_IPV6


@st.composite
def tunnelled(draw: st.DrawFn) -> tuple[bytes, int, Truth]:
    """The innermost packet inside 0-2 tunnels; truth.vlan_ids lists inner VLANs too."""
    packet, family, truth = draw(innermost())
    inner_vlans: list[int] = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["ipip", "gre", "gre_teb", "vxlan", "geneve"]))
        outer_family = draw(st.sampled_from([4, 6]))
        if kind == "ipip":  # 4in4, 6in4, 4in6, 6in6
            proto, body = (4 if family == 4 else 41), packet
        elif kind in ("gre", "gre_teb"):
            gre_kw: dict[str, Any] = {}
            if draw(st.booleans()):
                gre_kw.update(chksum_present=1)
            if draw(st.booleans()):
                gre_kw.update(key_present=1, key=draw(st.integers(0, 2**32 - 1)))
            if draw(st.booleans()):
                gre_kw.update(seqnum_present=1, sequence_number=draw(st.integers(0, 2**32 - 1)))
            if kind == "gre":
                body = raw(GRE(proto=ip_ethertype(family), **gre_kw) / Raw(packet))
            else:
                sub = Truth()
                frame = draw(ether_frame(ip_ethertype(family), packet, sub, 1))
                inner_vlans = sub.vlan_ids + inner_vlans
                body = raw(GRE(proto=ETH_TEB, **gre_kw) / Raw(frame))
            proto = 47
        else:
            if kind == "vxlan":
                sub = Truth()
                frame = draw(ether_frame(ip_ethertype(family), packet, sub, 1))
                inner_vlans = sub.vlan_ids + inner_vlans
                header = raw(VXLAN(flags=0x08, vni=draw(st.integers(0, 2**24 - 1))))
                dport, body = draw(st.sampled_from([4789, 8472])), header + frame
            else:
                dport, body = 6081, draw(geneve(family, packet, inner_vlans))
            sport = draw(ephemeral)
            body, proto = raw(UDP(sport=sport, dport=dport) / Raw(body)), 17
            truth.udp_tunnel = True
        packet, _, _ = draw(ip_packet(outer_family, proto, body))
        family = outer_family
        truth.tunnels += 1
    truth.vlan_ids = inner_vlans
    return packet, family, truth


@st.composite
def geneve(draw: st.DrawFn, family: int, packet: bytes, inner_vlans: list[int]) -> bytes:
    """Geneve (RFC 8926) by hand: version 0, 0-4 TLV options, an IP or Ethernet payload."""
    opts = b""
    for _ in range(draw(st.integers(0, 4))):
        words = draw(st.integers(0, 3))
        opts += struct.pack("!HBB", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 255)), words)
        opts += draw(st.binary(min_size=4 * words, max_size=4 * words))
    flags = draw(st.sampled_from([0x00, 0x80, 0x40]))
    vni = draw(st.integers(0, 2**24 - 1))
    if draw(st.booleans()):
        sub = Truth()
        body, proto = draw(ether_frame(ip_ethertype(family), packet, sub, 1)), ETH_TEB
        inner_vlans[:0] = sub.vlan_ids
    else:
        body, proto = packet, ip_ethertype(family)
    return struct.pack("!BBHI", len(opts) // 4, flags, proto, vni << 8) + opts + body


@st.composite
def frames(draw: st.DrawFn, linktypes: tuple[int, ...] = LINKTYPES) -> Built:
    """A whole frame of some capture link type, with the truth it was built from."""
    packet, family, truth = draw(tunnelled())
    inner_vlans = truth.vlan_ids
    truth.vlan_ids = []
    # Ethernet half the time: it has the most variety (VLANs, MPLS, PPPoE).
    linktype = draw(st.sampled_from(linktypes))
    if 1 in linktypes and draw(st.booleans()):
        linktype = 1
    et = ip_ethertype(family)
    ppp_proto = PPP_IPV4 if family == 4 else PPP_IPV6
    trailer = draw(st.binary(max_size=8))
    if linktype == 1:
        shim = draw(st.sampled_from(["none", "none", "mpls", "pppoe"]))
        if shim == "mpls":
            labels = draw(st.lists(st.integers(16, 2**20 - 1), min_size=1, max_size=3))
            stack: Packet = MPLS(label=labels[0], s=int(len(labels) == 1), ttl=64)
            for i, label in enumerate(labels[1:], 2):
                stack = stack / MPLS(label=label, s=int(i == len(labels)), ttl=64)
            body, et = raw(stack / Raw(packet)), 0x8847
        elif shim == "pppoe":
            session = PPPoE(sessionid=draw(st.integers(0, 0xFFFF)))
            body, et = raw(session / PPP(proto=ppp_proto) / Raw(packet)), 0x8864
        else:
            body = packet
        frame = draw(ether_frame(et, body, truth, 2))
    elif linktype in (101, 12, 14):
        frame = packet
    elif linktype in (228, 229):
        linktype = 228 if family == 4 else 229
        frame = packet
    elif linktype == 0:  # BSD null: address family in the capturing host's byte order
        af = 2 if family == 4 else draw(st.sampled_from([24, 28, 30]))
        frame = struct.pack(draw(st.sampled_from(["<I", ">I"])), af) + packet
    elif linktype == 108:  # OpenBSD loop: network byte order
        frame = struct.pack(">I", 2 if family == 4 else 24) + packet
    elif linktype == 113:  # Linux cooked v1
        frame = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), et) + packet
    elif linktype == 276:  # Linux cooked v2
        frame = struct.pack("!HHiHBB8s", et, 0, 2, 1, 0, 6, bytes(8)) + packet
    elif linktype in (9, 50):
        frame = struct.pack("!BBH", 0xFF, 0x03, ppp_proto) + packet
    elif linktype == 51:
        frame = raw(
            PPPoE(sessionid=draw(st.integers(0, 0xFFFF))) / PPP(proto=ppp_proto) / Raw(packet)
        )
    else:  # 10, FDDI: frame control, two MACs, then LLC/SNAP
        frame = (
            bytes([0x50]) + bytes(12) + b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", et) + packet
        )
    truth.vlan_ids += inner_vlans
    return Built(frame + trailer, linktype, truth, len(trailer))


# --- the oracle ------------------------------------------------------------------------------


class OracleError(AssertionError):
    """dpkt could not read back what the builder wrote."""


class DpktWalk:
    """Walks one frame with dpkt header classes, recording the innermost IP packet."""

    def __init__(self) -> None:
        self.out: dict[str, Any] = {"tunnels": 0, "vlans": 0, "vlan_id": 0, "seq": 0}
        self.out["tcp_flags"] = 0

    def link(self, frame: bytes, linktype: int) -> None:
        if linktype == 1:
            self.ether(frame)
        elif linktype in (101, 12, 14):
            self.ip(frame)
        elif linktype == 228:
            self.ipv4(frame)
        elif linktype == 229:
            self.ipv6(frame)
        elif linktype in (0, 108):
            lo = dpkt.loopback.Loopback(frame)
            if not isinstance(lo.data, dpkt.ip.IP | dpkt.ip6.IP6):
                raise OracleError(f"loopback family {lo.family}")
            self.ip(frame[4:])
        elif linktype == 113:
            self.ethertype(dpkt.sll.SLL(frame).ethtype, frame[16:])
        elif linktype == 276:
            self.ethertype(dpkt.sll2.SLL2(frame).ethtype, frame[20:])
        elif linktype in (9, 50):
            self.ppp(dpkt.ppp.PPP(frame).p, frame[4:])
        elif linktype == 51:
            self.pppoe(frame)
        elif linktype == 10:  # dpkt has no FDDI: skip its 13 bytes by hand
            snap = dpkt.llc.LLC(frame[13:])
            self.ethertype(snap.type, frame[13 + 8 :])
        else:
            raise OracleError(f"linktype {linktype}")

    def ether(self, buf: bytes) -> None:
        self.ethertype(dpkt.ethernet.Ethernet(buf).type, buf[14:])

    def ethertype(self, et: int, buf: bytes) -> None:
        if et == ETH_IPV4:
            self.ipv4(buf)
        elif et == ETH_IPV6:
            self.ipv6(buf)
        elif et in (0x8100, 0x88A8):
            tag = dpkt.ethernet.VLANtag8021Q(buf)
            self.out["vlans"] += 1
            if not self.out["vlan_id"]:
                self.out["vlan_id"] = tag.id
            self.ethertype(tag.type, buf[4:])
        elif et == 0x8847:
            # dpkt's own MPLS walk guesses IPv4 only from 0x45: step over the labels here.
            while True:
                label = dpkt.ethernet.MPLSlabel(buf)
                buf = buf[4:]
                if label.s:
                    break
            self.ip(buf)
        elif et == 0x8864:
            self.pppoe(buf)
        elif et == ETH_TEB:
            self.ether(buf)
        else:
            raise OracleError(f"ethertype {et:#x}")

    def pppoe(self, buf: bytes) -> None:
        session = dpkt.pppoe.PPPoE(buf)
        if session.code != 0:
            raise OracleError("PPPoE discovery")
        self.ppp(session.data.p, buf[8:])

    def ppp(self, proto: int, buf: bytes) -> None:
        if proto == PPP_IPV4:
            self.ipv4(buf)
        elif proto == PPP_IPV6:
            self.ipv6(buf)
        else:
            raise OracleError(f"PPP protocol {proto:#x}")

    def ip(self, buf: bytes) -> None:
        if buf[0] >> 4 == 4:
            self.ipv4(buf)
        elif buf[0] >> 4 == 6:
            self.ipv6(buf)
        else:
            raise OracleError("IP version")

    def ipv4(self, buf: bytes) -> None:
        ip = dpkt.ip.IP(buf)
        self.out.update(family=4, src=ip.src, dst=ip.dst, proto=ip.p, ip_len=ip.len)
        self.proto(ip.p, buf[ip.hl * 4 : ip.len])

    def ipv6(self, buf: bytes) -> None:
        ip = dpkt.ip6.IP6(buf)
        ext = sum(h.length for h in ip.all_extension_headers)
        self.out.update(family=6, src=ip.src, dst=ip.dst, proto=ip.p, ip_len=40 + ip.plen)
        self.proto(ip.p, buf[40 + ext : 40 + ip.plen])

    def proto(self, proto: int, buf: bytes) -> None:
        self.out.update(sport=0, dport=0, payload_len=0, payload_wire=0)
        if proto == 6:
            tcp = dpkt.tcp.TCP(buf)
            self.out.update(sport=tcp.sport, dport=tcp.dport, seq=tcp.seq, tcp_flags=tcp.flags)
            self.out["payload_len"] = self.out["payload_wire"] = len(buf) - tcp.off * 4
        elif proto == 17:
            udp = dpkt.udp.UDP(buf)
            self.out.update(sport=udp.sport, dport=udp.dport)
            self.out["payload_len"] = self.out["payload_wire"] = udp.ulen - 8
            body = buf[8 : udp.ulen]
            if udp.dport in (4789, 8472) and body[0] & 0x08:  # VXLAN (RFC 7348) by hand
                self.out["tunnels"] += 1
                self.ether(body[8:])
            elif udp.dport == 6081 and body[0] >> 6 == 0:  # Geneve (RFC 8926) by hand
                self.out["tunnels"] += 1
                self.ethertype(struct.unpack("!H", body[2:4])[0], body[8 + (body[0] & 0x3F) * 4 :])
        elif proto in (1, 58):
            icmp = dpkt.icmp.ICMP(buf) if proto == 1 else dpkt.icmp6.ICMP6(buf)
            peer = (ICMP_PEER if proto == 1 else ICMP6_PEER).get(icmp.type)
            self.out.update(sport=icmp.type, dport=icmp.code if peer is None else peer)
        elif proto == 132:
            sctp = dpkt.sctp.SCTP(buf)
            self.out.update(sport=sctp.sport, dport=sctp.dport)
        elif proto in (50, 89, 103):
            pass  # no ports
        elif proto in (4, 41):
            self.out["tunnels"] += 1
            self.ipv4(buf) if proto == 4 else self.ipv6(buf)
        elif proto == 47:
            gre = dpkt.gre.GRE(buf)
            hdr = gre.__hdr_len__ + struct.calcsize("!" + "".join(gre.opt_fields_fmts()[1]))
            self.out["tunnels"] += 1
            self.ethertype(gre.p, buf[hdr:])
        else:
            raise OracleError(f"IP protocol {proto}")


def dpkt_decode(frame: bytes, linktype: int) -> dict[str, Any]:
    """The oracle's reading of a frame, in the vocabulary of Truth.fields()."""
    walk = DpktWalk()
    try:
        walk.link(frame, linktype)
    except (dpkt.UnpackError, struct.error, IndexError) as exc:
        raise OracleError(f"dpkt: {exc!r}") from exc
    return walk.out
