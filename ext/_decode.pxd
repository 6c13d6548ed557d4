# cython: language_level=3
"""Frame decoding from the link layer to the innermost L4 header.

One loop walks the layers (link, VLAN, MPLS, PPPoE, PPP, IPv4/IPv6 with
options and extension headers, GRE/ERSPAN, VXLAN, Geneve, Teredo, GTP-U,
IP-in-IP) to a bounded depth and fills a Packet. Tunnels overwrite the
addresses, so the Packet always describes the innermost IP packet; VLAN ids
and tunnel ids are mixed into `ctx`, which the flow key includes.

All functions are header-only (inline) so the engine and the test wrapper
compile the same code without a cross-module call per packet.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from _frame cimport (LINKTYPE_ETHERNET, LINKTYPE_FDDI, LINKTYPE_IPV4, LINKTYPE_IPV6,
                     LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL,
                     LINKTYPE_PPP, LINKTYPE_PPP_ETHER, LINKTYPE_PPP_HDLC, LINKTYPE_RAW,
                     LINKTYPE_RAW_BSD_12, LINKTYPE_RAW_BSD_14)
from _wire cimport LIMIT, MALFORMED, OK, TRUNCATED, UNSUPPORTED, load_u16, load_u32

# Layers, for counting what failed where (names in ext/decode.pyx LAYER_NAMES).
cdef enum:
    LAYER_LINK = 0
    LAYER_ETHER = 1
    LAYER_VLAN = 2
    LAYER_MPLS = 3
    LAYER_PPPOE = 4
    LAYER_PPP = 5
    LAYER_GRE = 6
    LAYER_ERSPAN = 7
    LAYER_VXLAN = 8
    LAYER_GENEVE = 9
    LAYER_TEREDO = 10
    LAYER_GTP = 11
    LAYER_IPV4 = 12
    LAYER_IPV6 = 13
    LAYER_IPV6_EXT = 14
    LAYER_FRAG = 15
    LAYER_TCP = 16
    LAYER_UDP = 17
    LAYER_ICMP = 18
    LAYER_SCTP = 19
    LAYER_TUNNEL = 20
    N_LAYERS = 21

# A status beside the closed set: the innermost IP packet is a fragment and
# its payload waits for reassembly (not an error).
cdef enum:
    FRAGMENT = 10

# Decoder options
cdef enum:
    OPT_KEY_VLAN = 1            # VLAN ids separate flows
    # Virtual network ids (VXLAN, Geneve VNI) separate flows: they name address
    # spaces and are the same both ways. Ids that differ by direction (GTP TEIDs,
    # PPTP call ids, ERSPAN sessions of rx and tx mirrors) would split a
    # connection in two, so they stay out of the key.
    OPT_KEY_TUNNEL = 2

# Bounds on the walk
cdef enum:
    MAX_STEPS = 64
    MAX_VLANS = 8
    MAX_MPLS_LABELS = 16
    MAX_TUNNELS = 8
    MAX_IPV6_EXT = 8
    MAX_GTP_EXT = 8

# What comes next in the walk
cdef enum:
    NX_DONE = 0
    NX_ETHER = 1
    NX_IP = 2                   # IPv4 or IPv6 by the version nibble
    NX_IPV4 = 3
    NX_IPV6 = 4
    NX_VLAN = 5
    NX_MPLS = 6
    NX_PPPOE = 7
    NX_PPP = 8
    NX_GRE = 9
    NX_IPPROTO = 10             # an IP payload of protocol pk.proto
    NX_ERSPAN2 = 11
    NX_ERSPAN3 = 12

# IP protocol numbers (IANA)
cdef enum:
    IPPROTO_ICMP = 1
    IPPROTO_IPIP = 4
    IPPROTO_TCP = 6
    IPPROTO_UDP = 17
    IPPROTO_IPV6 = 41
    IPPROTO_GRE = 47
    IPPROTO_ICMPV6 = 58
    IPPROTO_SCTP = 132
    IPPROTO_UDPLITE = 136

# UDP ports of tunnels decoded through
cdef enum:
    PORT_VXLAN = 4789
    PORT_VXLAN_LINUX = 8472
    PORT_GENEVE = 6081
    PORT_TEREDO = 3544
    PORT_GTP_U = 2152

ctypedef struct Packet:
    uint8_t family              # 4 or 6; 0 when no IP header was reached
    uint8_t proto               # IP protocol of the innermost packet
    uint8_t tcp_flags
    uint8_t tunnels             # encapsulations passed through
    uint8_t vlans
    uint8_t err_layer           # where a non-OK status arose
    uint8_t frag_more
    uint8_t icmp_one_way        # ICMP type without a request/reply counterpart
    uint16_t sport              # ICMP: type; dport: counterpart type or code
    uint16_t dport
    uint16_t vlan_id            # outermost VLAN id, 0 when untagged
    uint16_t frag_offset        # bytes
    uint32_t ctx                # VLAN and tunnel context for the flow key
    uint32_t ip_len             # innermost IP datagram length per its header
    uint32_t l4_wire            # IP payload length per the headers
    uint32_t seq
    uint32_t ack
    uint32_t frag_id
    uint32_t payload_len        # L4 payload bytes present in the frame
    uint32_t payload_wire       # L4 payload bytes per the headers
    const uint8_t* payload
    uint8_t src[16]
    uint8_t dst[16]


cdef inline void mix_ctx(Packet* pk, uint32_t value) noexcept nogil:
    # FNV-1a style step: order-sensitive, so (vlan 1, vlan 2) != (vlan 2, vlan 1)
    pk.ctx = (pk.ctx ^ (value + 0x9E3779B9u)) * 0x01000193u


cdef inline void clear_l4(Packet* pk) noexcept nogil:
    """A new (inner) IP header: nothing of an outer transport header may leak into it."""
    pk.sport = 0
    pk.dport = 0
    pk.tcp_flags = 0
    pk.seq = 0
    pk.ack = 0
    pk.icmp_one_way = 0
    pk.payload = NULL
    pk.payload_len = 0
    pk.payload_wire = 0


cdef inline int fail(Packet* pk, int layer, int status) noexcept nogil:
    pk.err_layer = layer
    return status


cdef inline int ethertype_next(uint16_t et, Packet* pk, int* nx) noexcept nogil:
    if et == 0x0800:
        nx[0] = NX_IPV4
    elif et == 0x86DD:
        nx[0] = NX_IPV6
    elif et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x9200 or et == 0x9300:
        nx[0] = NX_VLAN
    elif et == 0x8847 or et == 0x8848:
        nx[0] = NX_MPLS
    elif et == 0x8864:
        nx[0] = NX_PPPOE
    elif et == 0x6558:          # transparent Ethernet bridging
        nx[0] = NX_ETHER
    elif et == 0x880B:
        nx[0] = NX_PPP
    else:
        return fail(pk, LAYER_ETHER, UNSUPPORTED)
    return OK


cdef inline int llc_snap(const uint8_t** p, size_t* n, uint16_t* et) noexcept nogil:
    """802.2 LLC with a SNAP header (AA AA 03 + OUI) carries an ethertype."""
    if n[0] < 8:
        return TRUNCATED
    if p[0][0] != 0xAA or p[0][1] != 0xAA or p[0][2] != 0x03:
        return UNSUPPORTED
    et[0] = load_u16(p[0] + 6)
    p[0] += 8
    n[0] -= 8
    return OK


cdef inline int do_ether(const uint8_t** p, size_t* n, Packet* pk, int* nx) noexcept nogil:
    cdef uint16_t et
    cdef int st
    if n[0] < 14:
        return fail(pk, LAYER_ETHER, TRUNCATED)
    et = load_u16(p[0] + 12)
    p[0] += 14
    n[0] -= 14
    if et < 0x0600:             # 802.3 length field: LLC follows
        st = llc_snap(p, n, &et)
        if st != OK:
            return fail(pk, LAYER_ETHER, st)
    return ethertype_next(et, pk, nx)


cdef inline int do_vlan(const uint8_t** p, size_t* n, Packet* pk, int opts,
                        int* nx) noexcept nogil:
    cdef uint16_t tci, et
    if n[0] < 4:
        return fail(pk, LAYER_VLAN, TRUNCATED)
    pk.vlans += 1
    if pk.vlans > MAX_VLANS:
        return fail(pk, LAYER_VLAN, LIMIT)
    tci = load_u16(p[0]) & 0x0FFF
    if pk.vlan_id == 0:
        pk.vlan_id = tci
    if opts & OPT_KEY_VLAN:
        mix_ctx(pk, tci)
    et = load_u16(p[0] + 2)
    p[0] += 4
    n[0] -= 4
    return ethertype_next(et, pk, nx)


cdef inline int do_mpls(const uint8_t** p, size_t* n, Packet* pk, int* nx) noexcept nogil:
    cdef int labels = 0
    cdef bint bottom = False
    while not bottom:
        if n[0] < 4:
            return fail(pk, LAYER_MPLS, TRUNCATED)
        labels += 1
        if labels > MAX_MPLS_LABELS:
            return fail(pk, LAYER_MPLS, LIMIT)
        bottom = (p[0][2] & 0x01) != 0
        p[0] += 4
        n[0] -= 4
    if n[0] < 1:
        return fail(pk, LAYER_MPLS, TRUNCATED)
    # No protocol field: guess by the first nibble (RFC 4385 control word = 0).
    if p[0][0] >> 4 == 4:
        nx[0] = NX_IPV4
    elif p[0][0] >> 4 == 6:
        nx[0] = NX_IPV6
    elif p[0][0] >> 4 == 0:     # pseudowire control word, then Ethernet
        if n[0] < 4:
            return fail(pk, LAYER_MPLS, TRUNCATED)
        p[0] += 4
        n[0] -= 4
        nx[0] = NX_ETHER
    else:
        return fail(pk, LAYER_MPLS, UNSUPPORTED)
    return OK


cdef inline int ppp_proto_next(uint16_t proto, Packet* pk, int* nx) noexcept nogil:
    if proto == 0x0021:
        nx[0] = NX_IPV4
    elif proto == 0x0057:
        nx[0] = NX_IPV6
    elif proto == 0x0281 or proto == 0x0283:
        nx[0] = NX_MPLS
    else:
        return fail(pk, LAYER_PPP, UNSUPPORTED)
    return OK


cdef inline int do_ppp(const uint8_t** p, size_t* n, Packet* pk, int* nx) noexcept nogil:
    """PPP (RFC 1661), with or without HDLC address/control, protocol field compression."""
    cdef uint16_t proto
    if n[0] >= 2 and p[0][0] == 0xFF and p[0][1] == 0x03:
        p[0] += 2
        n[0] -= 2
    if n[0] < 1:
        return fail(pk, LAYER_PPP, TRUNCATED)
    if p[0][0] & 0x01:          # compressed one-byte protocol (RFC 1661 section 6.5)
        proto = p[0][0]
        p[0] += 1
        n[0] -= 1
    else:
        if n[0] < 2:
            return fail(pk, LAYER_PPP, TRUNCATED)
        proto = load_u16(p[0])
        p[0] += 2
        n[0] -= 2
    return ppp_proto_next(proto, pk, nx)


cdef inline int do_pppoe(const uint8_t** p, size_t* n, Packet* pk, int* nx) noexcept nogil:
    """PPPoE session stage (RFC 2516): 6-byte header, then a PPP protocol field."""
    cdef uint16_t proto
    if n[0] < 8:
        return fail(pk, LAYER_PPPOE, TRUNCATED)
    if p[0][0] != 0x11 or p[0][1] != 0x00:
        return fail(pk, LAYER_PPPOE, UNSUPPORTED)
    proto = load_u16(p[0] + 6)
    p[0] += 8
    n[0] -= 8
    return ppp_proto_next(proto, pk, nx)


cdef inline int enter_tunnel(Packet* pk) noexcept nogil:
    pk.tunnels += 1
    if pk.tunnels > MAX_TUNNELS:
        return fail(pk, LAYER_TUNNEL, LIMIT)
    return OK


cdef inline int do_gre(const uint8_t** p, size_t* n, Packet* pk, int* nx) noexcept nogil:
    """GRE (RFC 2784/2890) and the enhanced GRE of PPTP (RFC 2637)."""
    cdef uint16_t flags, proto
    cdef size_t hdr = 4
    cdef int version
    if n[0] < 4:
        return fail(pk, LAYER_GRE, TRUNCATED)
    flags = load_u16(p[0])
    proto = load_u16(p[0] + 2)
    version = flags & 0x7
    if version == 0:
        if flags & 0x4000:      # source routing (RFC 1701) is deprecated
            return fail(pk, LAYER_GRE, UNSUPPORTED)
        if flags & 0x8000:
            hdr += 4
        if flags & 0x2000:
            hdr += 4
        if flags & 0x1000:
            hdr += 4
    elif version == 1:
        if proto != 0x880B or not (flags & 0x2000):
            return fail(pk, LAYER_GRE, MALFORMED)
        hdr = 8
        if flags & 0x1000:
            hdr += 4
        if flags & 0x0080:      # acknowledgment number present
            hdr += 4
    else:
        return fail(pk, LAYER_GRE, UNSUPPORTED)
    if n[0] < hdr:
        return fail(pk, LAYER_GRE, TRUNCATED)
    p[0] += hdr
    n[0] -= hdr
    if proto == 0x88BE:
        # ERSPAN type II has a sequence number; type I has neither it nor a header.
        nx[0] = NX_ERSPAN2 if flags & 0x1000 else NX_ETHER
        return OK
    if proto == 0x22EB:
        nx[0] = NX_ERSPAN3
        return OK
    if version == 1:
        if n[0] == 0:           # PPTP acknowledgment without payload
            nx[0] = NX_DONE
            return fail(pk, LAYER_GRE, UNSUPPORTED)
        nx[0] = NX_PPP
        return OK
    if proto == 0x880B:
        nx[0] = NX_PPP
        return OK
    return ethertype_next(proto, pk, nx)


cdef inline int do_erspan(const uint8_t** p, size_t* n, Packet* pk, bint type3,
                          int* nx) noexcept nogil:
    cdef size_t hdr
    cdef uint16_t w
    cdef int ft
    if n[0] < (12 if type3 else 8):
        return fail(pk, LAYER_ERSPAN, TRUNCATED)
    if not type3:
        p[0] += 8
        n[0] -= 8
        nx[0] = NX_ETHER
        return OK
    # ERSPAN III: the word at byte 10 is P(1) FT(5) HwID(6) D(1) Gra(2) O(1).
    w = load_u16(p[0] + 10)
    ft = (w >> 10) & 0x1F
    hdr = 12 + (8 if w & 0x1 else 0)    # O: platform-specific subheader follows
    if n[0] < hdr:
        return fail(pk, LAYER_ERSPAN, TRUNCATED)
    p[0] += hdr
    n[0] -= hdr
    if ft == 0:
        nx[0] = NX_ETHER
    elif ft == 2:
        nx[0] = NX_IP
    else:
        return fail(pk, LAYER_ERSPAN, UNSUPPORTED)
    return OK


cdef inline int do_ipv4(const uint8_t** p, size_t* n, Packet* pk, int* nx) noexcept nogil:
    """IPv4 (RFC 791): options skipped by IHL, link padding trimmed by total length."""
    cdef const uint8_t* h = p[0]
    cdef size_t ihl
    cdef uint32_t total
    cdef uint16_t frag
    if n[0] < 20:
        return fail(pk, LAYER_IPV4, TRUNCATED)
    if h[0] >> 4 != 4:
        return fail(pk, LAYER_IPV4, MALFORMED)
    ihl = (h[0] & 0x0F) * 4
    if ihl < 20:
        return fail(pk, LAYER_IPV4, MALFORMED)
    if ihl > n[0]:
        return fail(pk, LAYER_IPV4, TRUNCATED)
    total = load_u16(h + 2)
    if total == 0:              # TSO/GRO super-packets leave it zero: use what is there
        total = <uint32_t>n[0]
    elif total < ihl:
        return fail(pk, LAYER_IPV4, MALFORMED)
    clear_l4(pk)
    pk.family = 4
    memset(pk.src, 0, 32)
    memcpy(pk.src, h + 12, 4)
    memcpy(pk.dst, h + 16, 4)
    pk.proto = h[9]
    pk.ip_len = total
    pk.l4_wire = total - <uint32_t>ihl
    if n[0] > total:
        n[0] = total
    p[0] += ihl
    n[0] -= ihl
    frag = load_u16(h + 6)
    if frag & 0x3FFF:           # MF set or a non-zero offset
        pk.frag_more = (frag & 0x2000) != 0
        pk.frag_offset = (frag & 0x1FFF) * 8
        pk.frag_id = load_u16(h + 4)
        pk.payload = p[0]
        pk.payload_len = <uint32_t>n[0]
        return FRAGMENT
    nx[0] = NX_IPPROTO
    return OK


cdef inline int ipv6_extensions(const uint8_t** p, size_t* n, Packet* pk, uint8_t* next_header,
                                uint32_t* payload_len, bint fragments) noexcept nogil:
    """Walks IPv6 extension headers (RFC 8200 section 4), at most MAX_IPV6_EXT of them.

    Stops at the first header that is not an extension header; returns FRAGMENT
    at a (non-atomic) Fragment header when `fragments`, with its fields in pk.
    """
    cdef uint8_t nh = next_header[0]
    cdef uint32_t plen = payload_len[0]
    cdef size_t hlen
    cdef int walked = 0
    cdef uint16_t offm
    while True:
        if nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140 or nh == 51:
            walked += 1
            if walked > MAX_IPV6_EXT:
                return fail(pk, LAYER_IPV6_EXT, LIMIT)
            if n[0] < 2:
                return fail(pk, LAYER_IPV6_EXT, TRUNCATED)
            # AH counts 4-octet units minus 2 (RFC 4302); the rest 8-octet units minus 1.
            hlen = (p[0][1] + 2) * 4 if nh == 51 else (p[0][1] + 1) * 8
            if n[0] < hlen or plen < hlen:
                return fail(pk, LAYER_IPV6_EXT, TRUNCATED)
            nh = p[0][0]
            p[0] += hlen
            n[0] -= hlen
            plen -= <uint32_t>hlen
        elif nh == 44 and fragments:          # Fragment header (section 4.5)
            walked += 1
            if walked > MAX_IPV6_EXT:
                return fail(pk, LAYER_IPV6_EXT, LIMIT)
            if n[0] < 8 or plen < 8:
                return fail(pk, LAYER_FRAG, TRUNCATED)
            offm = load_u16(p[0] + 2)
            pk.frag_id = load_u32(p[0] + 4)
            nh = p[0][0]
            p[0] += 8
            n[0] -= 8
            plen -= 8
            if offm & 0xFFF9:   # not an atomic fragment (RFC 6946)
                pk.proto = nh
                pk.frag_offset = offm & 0xFFF8
                pk.frag_more = offm & 0x1
                pk.l4_wire = plen
                pk.payload = p[0]
                pk.payload_len = <uint32_t>n[0]
                next_header[0] = nh
                payload_len[0] = plen
                return FRAGMENT
        else:
            break
    next_header[0] = nh
    payload_len[0] = plen
    return OK


cdef inline int do_ipv6(const uint8_t** p, size_t* n, Packet* pk, int* nx) noexcept nogil:
    """IPv6 (RFC 8200) with a bounded walk over extension headers (section 4)."""
    cdef const uint8_t* h = p[0]
    cdef uint32_t plen
    cdef uint8_t nh
    cdef int st
    if n[0] < 40:
        return fail(pk, LAYER_IPV6, TRUNCATED)
    if h[0] >> 4 != 6:
        return fail(pk, LAYER_IPV6, MALFORMED)
    plen = load_u16(h + 4)
    nh = h[6]
    clear_l4(pk)
    pk.family = 6
    memcpy(pk.src, h + 8, 16)
    memcpy(pk.dst, h + 24, 16)
    p[0] += 40
    n[0] -= 40
    if plen == 0 and nh == 0:   # a jumbogram (RFC 2675) or an offloaded super-packet
        plen = <uint32_t>n[0]
    pk.ip_len = plen + 40
    if n[0] > plen:
        n[0] = plen
    st = ipv6_extensions(p, n, pk, &nh, &plen, True)
    if st != OK:
        return st
    pk.proto = nh
    pk.l4_wire = plen
    nx[0] = NX_IPPROTO
    return OK


cdef inline int icmp_peer(uint8_t proto, uint8_t itype) noexcept nogil:
    """The request/reply counterpart of an ICMP type, or -1 (Community ID v1 pairs)."""
    cdef const uint8_t* pairs
    cdef int n, i
    # (request, reply) pairs: ICMPv4 echo, timestamp, information, router, mask;
    # ICMPv6 echo, router, neighbor, multicast listener, node information, home agent
    cdef uint8_t v4[10]
    cdef uint8_t v6[12]
    v4[:] = [8, 0, 13, 14, 15, 16, 10, 9, 17, 18]
    v6[:] = [128, 129, 133, 134, 135, 136, 130, 131, 139, 140, 144, 145]
    if proto == IPPROTO_ICMP:
        pairs = v4
        n = 10
    else:
        pairs = v6
        n = 12
    for i in range(0, n, 2):
        if itype == pairs[i]:
            return pairs[i + 1]
        if itype == pairs[i + 1]:
            return pairs[i]
    return -1


cdef inline void icmp_ports(Packet* pk, uint8_t itype, uint8_t code) noexcept nogil:
    """Type/code as ports, request/reply pairs mapped as Community ID v1 does."""
    cdef int peer = icmp_peer(pk.proto, itype)
    pk.sport = itype
    if peer >= 0:
        pk.dport = <uint16_t>peer
        pk.icmp_one_way = 0
    else:
        pk.dport = code
        pk.icmp_one_way = 1


cdef inline bint udp_tunnel(const uint8_t** p, size_t* n, Packet* pk, int opts,
                            int* nx) noexcept nogil:
    """Enters VXLAN, Geneve, Teredo or GTP-U when the payload has their shape.

    Returns False (and leaves the cursor) when the payload is not one of them,
    so a UDP flow on such a port that is not a tunnel stays an ordinary flow.
    """
    cdef const uint8_t* q = p[0]
    cdef size_t m = n[0]
    cdef size_t hdr
    cdef uint16_t proto
    cdef uint8_t flags, nxt
    cdef int i
    if pk.dport == PORT_VXLAN or pk.dport == PORT_VXLAN_LINUX:
        # RFC 7348: the I flag set, the reserved byte after the VNI zero, an Ethernet header
        if m < 8 + 14 or not (q[0] & 0x08) or q[7] != 0:
            return False
        if opts & OPT_KEY_TUNNEL:
            mix_ctx(pk, (load_u32(q + 4) >> 8) | 0x1000000u)
        p[0] += 8
        n[0] -= 8
        nx[0] = NX_ETHER
        return True
    if pk.dport == PORT_GENEVE:
        if m < 8 or q[0] >> 6 != 0:        # RFC 8926: version 0
            return False
        hdr = 8 + (q[0] & 0x3F) * 4
        if m < hdr:
            return False
        proto = load_u16(q + 2)
        if proto == 0x6558:
            nx[0] = NX_ETHER
        elif proto == 0x0800:
            nx[0] = NX_IPV4
        elif proto == 0x86DD:
            nx[0] = NX_IPV6
        else:
            return False
        if opts & OPT_KEY_TUNNEL:
            mix_ctx(pk, (load_u32(q + 4) >> 8) | 0x2000000u)
        p[0] += hdr
        n[0] -= hdr
        return True
    if pk.sport == PORT_TEREDO or pk.dport == PORT_TEREDO:
        # RFC 4380 section 5.1.1: optional authentication and origin indication.
        hdr = 0
        if m >= 4 and q[0] == 0 and q[1] == 1:
            hdr = 4 + q[2] + q[3] + 9
        if m >= hdr + 8 and q[hdr] == 0 and q[hdr + 1] == 0:
            hdr += 8
        if m < hdr + 40 or q[hdr] >> 4 != 6 or <size_t>load_u16(q + hdr + 4) + 40 != m - hdr:
            return False
        p[0] += hdr
        n[0] -= hdr
        nx[0] = NX_IPV6
        return True
    if pk.sport == PORT_GTP_U or pk.dport == PORT_GTP_U:
        # 3GPP TS 29.281: version 1, protocol type GTP, message G-PDU (255).
        if m < 8:
            return False
        flags = q[0]
        if flags >> 5 != 1 or not (flags & 0x10) or q[1] != 0xFF:
            return False
        hdr = 8
        if flags & 0x07:
            if m < 12:
                return False
            hdr = 12
            nxt = q[11] if flags & 0x04 else 0
            i = 0
            while nxt != 0:
                i += 1
                if i > MAX_GTP_EXT or m < hdr + 1 or q[hdr] == 0 or m < hdr + q[hdr] * 4:
                    return False
                nxt = q[hdr + q[hdr] * 4 - 1]
                hdr += q[hdr] * 4
        if m <= hdr or (q[hdr] >> 4 != 4 and q[hdr] >> 4 != 6):
            return False
        p[0] += hdr
        n[0] -= hdr
        nx[0] = NX_IP
        return True
    return False


cdef inline int do_ipproto(const uint8_t** p, size_t* n, Packet* pk, int opts,
                           int* nx) noexcept nogil:
    """The IP payload: L4 header, or a tunnel to walk into."""
    cdef const uint8_t* q = p[0]
    cdef size_t m = n[0]
    cdef size_t doff
    cdef uint32_t ulen
    cdef int st
    cdef uint8_t proto = pk.proto
    nx[0] = NX_DONE
    if proto == IPPROTO_TCP:
        if m < 20:
            return fail(pk, LAYER_TCP, TRUNCATED)
        doff = (q[12] >> 4) * 4
        if doff < 20:
            return fail(pk, LAYER_TCP, MALFORMED)
        if doff > m:
            return fail(pk, LAYER_TCP, TRUNCATED)
        pk.sport = load_u16(q)
        pk.dport = load_u16(q + 2)
        pk.seq = load_u32(q + 4)
        pk.ack = load_u32(q + 8)
        pk.tcp_flags = q[13]
        pk.payload = q + doff
        pk.payload_len = <uint32_t>(m - doff)
        pk.payload_wire = pk.l4_wire - <uint32_t>doff if pk.l4_wire > doff else 0
        return OK
    if proto == IPPROTO_UDP or proto == IPPROTO_UDPLITE:
        if m < 8:
            return fail(pk, LAYER_UDP, TRUNCATED)
        pk.sport = load_u16(q)
        pk.dport = load_u16(q + 2)
        ulen = load_u16(q + 4)
        if proto == IPPROTO_UDP and 8 <= ulen <= pk.l4_wire:
            pk.payload_wire = ulen - 8
        else:
            pk.payload_wire = pk.l4_wire - 8 if pk.l4_wire > 8 else 0
        p[0] += 8
        n[0] -= 8
        if n[0] > pk.payload_wire:
            n[0] = pk.payload_wire
        if udp_tunnel(p, n, pk, opts, nx):
            st = enter_tunnel(pk)
            if st != OK:
                nx[0] = NX_DONE
            return st
        pk.payload = p[0]
        pk.payload_len = <uint32_t>n[0]
        return OK
    if proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
        if m < 2:
            return fail(pk, LAYER_ICMP, TRUNCATED)
        icmp_ports(pk, q[0], q[1])
        return OK
    if proto == IPPROTO_SCTP:
        if m < 4:
            return fail(pk, LAYER_SCTP, TRUNCATED)
        pk.sport = load_u16(q)
        pk.dport = load_u16(q + 2)
        return OK
    if proto == IPPROTO_IPIP or proto == IPPROTO_IPV6 or proto == IPPROTO_GRE:
        st = enter_tunnel(pk)
        if st != OK:
            return st
        if proto == IPPROTO_IPIP:
            nx[0] = NX_IPV4
        elif proto == IPPROTO_IPV6:
            nx[0] = NX_IPV6
        else:
            nx[0] = NX_GRE
        return OK
    return OK                   # another protocol: a flow keyed without ports


cdef inline int walk(int nx, const uint8_t* p, size_t n, Packet* pk, int opts) noexcept nogil:
    """Runs the layer walk from `nx` over n bytes at p."""
    cdef int steps = 0
    cdef int st = OK
    while nx != NX_DONE:
        steps += 1
        if steps > MAX_STEPS:
            return fail(pk, LAYER_TUNNEL, LIMIT)
        if nx == NX_ETHER:
            st = do_ether(&p, &n, pk, &nx)
        elif nx == NX_IPV4:
            st = do_ipv4(&p, &n, pk, &nx)
        elif nx == NX_IPV6:
            st = do_ipv6(&p, &n, pk, &nx)
        elif nx == NX_IPPROTO:
            st = do_ipproto(&p, &n, pk, opts, &nx)
        elif nx == NX_IP:
            if n < 1:
                return fail(pk, LAYER_LINK, TRUNCATED)
            if p[0] >> 4 == 4:
                nx = NX_IPV4
            elif p[0] >> 4 == 6:
                nx = NX_IPV6
            else:
                return fail(pk, LAYER_LINK, UNSUPPORTED)
            continue
        elif nx == NX_VLAN:
            st = do_vlan(&p, &n, pk, opts, &nx)
        elif nx == NX_MPLS:
            st = do_mpls(&p, &n, pk, &nx)
        elif nx == NX_PPPOE:
            st = do_pppoe(&p, &n, pk, &nx)
        elif nx == NX_PPP:
            st = do_ppp(&p, &n, pk, &nx)
        elif nx == NX_GRE:
            st = do_gre(&p, &n, pk, &nx)
        elif nx == NX_ERSPAN2 or nx == NX_ERSPAN3:
            st = do_erspan(&p, &n, pk, nx == NX_ERSPAN3, &nx)
        else:
            return fail(pk, LAYER_LINK, MALFORMED)
        if st != OK:
            return st
    return OK


cdef inline int link_next(const uint8_t** p, size_t* n, uint16_t linktype, Packet* pk,
                          int* nx) noexcept nogil:
    """Reads the link-layer header of a capture link type."""
    cdef uint32_t af
    cdef uint16_t et
    cdef int st
    if linktype == LINKTYPE_ETHERNET:
        nx[0] = NX_ETHER
        return OK
    if (linktype == LINKTYPE_RAW or linktype == LINKTYPE_RAW_BSD_12
            or linktype == LINKTYPE_RAW_BSD_14):
        nx[0] = NX_IP
        return OK
    if linktype == LINKTYPE_IPV4:
        nx[0] = NX_IPV4
        return OK
    if linktype == LINKTYPE_IPV6:
        nx[0] = NX_IPV6
        return OK
    if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        # A 4-byte address family, in the capturing host's byte order for NULL.
        if n[0] < 4:
            return fail(pk, LAYER_LINK, TRUNCATED)
        af = load_u32(p[0])
        if linktype == LINKTYPE_NULL and af > 0xFFFF:
            af = (p[0][3] << 24) | (p[0][2] << 16) | (p[0][1] << 8) | p[0][0]
        p[0] += 4
        n[0] -= 4
        if af == 2:
            nx[0] = NX_IPV4
        elif af == 10 or af == 24 or af == 28 or af == 30:     # Linux, BSDs, Darwin
            nx[0] = NX_IPV6
        else:
            return fail(pk, LAYER_LINK, UNSUPPORTED)
        return OK
    if linktype == LINKTYPE_LINUX_SLL or linktype == LINKTYPE_LINUX_SLL2:
        if linktype == LINKTYPE_LINUX_SLL:
            if n[0] < 16:
                return fail(pk, LAYER_LINK, TRUNCATED)
            et = load_u16(p[0] + 14)
            af = load_u16(p[0] + 2)     # ARPHRD type
            p[0] += 16
            n[0] -= 16
        else:
            if n[0] < 20:
                return fail(pk, LAYER_LINK, TRUNCATED)
            et = load_u16(p[0])
            af = load_u16(p[0] + 8)
            p[0] += 20
            n[0] -= 20
        if et == 0x0004:        # 802.2 LLC frames
            st = llc_snap(p, n, &et)
            if st != OK:
                return fail(pk, LAYER_LINK, st)
        return ethertype_next(et, pk, nx)
    if linktype == LINKTYPE_PPP or linktype == LINKTYPE_PPP_HDLC:
        nx[0] = NX_PPP
        return OK
    if linktype == LINKTYPE_PPP_ETHER:
        nx[0] = NX_PPPOE
        return OK
    if linktype == LINKTYPE_FDDI:
        # frame control, destination, source, then 802.2 LLC/SNAP
        if n[0] < 13:
            return fail(pk, LAYER_LINK, TRUNCATED)
        p[0] += 13
        n[0] -= 13
        st = llc_snap(p, n, &et)
        if st != OK:
            return fail(pk, LAYER_LINK, st)
        return ethertype_next(et, pk, nx)
    return fail(pk, LAYER_LINK, UNSUPPORTED)


cdef inline int decode_frame(const uint8_t* p, size_t n, uint16_t linktype, uint16_t vlan_tci,
                             bint vlan_stripped, int opts, Packet* pk) noexcept nogil:
    """Decodes one frame into pk; returns OK, FRAGMENT or a failure status."""
    cdef int nx = NX_DONE
    cdef int st
    memset(pk, 0, sizeof(Packet))
    if vlan_stripped:           # put back the tag the kernel took out (TPACKET aux data)
        pk.vlans = 1
        pk.vlan_id = vlan_tci & 0x0FFF
        if opts & OPT_KEY_VLAN:
            mix_ctx(pk, pk.vlan_id)
    st = link_next(&p, &n, linktype, pk, &nx)
    if st != OK:
        return st
    return walk(nx, p, n, pk, opts)


cdef inline int decode_reassembled(const uint8_t* p, size_t n, Packet* pk,
                                   int opts) noexcept nogil:
    """Continues the walk over a reassembled IP payload of protocol pk.proto."""
    cdef uint8_t nh = pk.proto
    cdef uint32_t plen = <uint32_t>n
    cdef int st
    pk.frag_more = 0
    pk.frag_offset = 0
    if pk.family == 6:
        # The fragmentable part may begin with extension headers (RFC 8200 section 4.5);
        # a second Fragment header there is not reassembled again.
        st = ipv6_extensions(&p, &n, pk, &nh, &plen, False)
        if st != OK:
            return st
        pk.proto = nh
    pk.l4_wire = plen
    return walk(NX_IPPROTO, p, n, pk, opts)
