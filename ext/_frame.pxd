# cython: language_level=3
"""The frame descriptor: the contract between capture sources and the engine.

A capture source (a pcap/pcapng walker, a TPACKET_V3 block walker) fills an
array of these over one large buffer; the engine walks the array. Nothing in
between creates a Python object per frame.
"""

from libc.stdint cimport uint16_t, uint32_t, uint64_t

# flags
cdef enum:
    FRAME_VLAN_STRIPPED = 1     # vlan_tci holds a tag the kernel took out of the frame

ctypedef struct FrameDesc:
    uint64_t ts_ns
    uint32_t offset             # into the batch buffer
    uint32_t caplen             # bytes present in the buffer
    uint32_t wirelen            # bytes the frame had on the wire
    uint16_t linktype           # LINKTYPE_* of the tcpdump.org registry
    uint16_t vlan_tci
    uint32_t flags
    uint32_t iface              # interface index within the source

# LINKTYPE_* values (https://www.tcpdump.org/linktypes.html)
cdef enum:
    LINKTYPE_NULL = 0
    LINKTYPE_ETHERNET = 1
    LINKTYPE_PPP = 9
    LINKTYPE_FDDI = 10
    LINKTYPE_RAW_BSD_12 = 12    # DLT_RAW on some BSDs
    LINKTYPE_RAW_BSD_14 = 14    # DLT_RAW on OpenBSD
    LINKTYPE_PPP_HDLC = 50
    LINKTYPE_PPP_ETHER = 51
    LINKTYPE_RAW = 101
    LINKTYPE_LOOP = 108
    LINKTYPE_LINUX_SLL = 113
    LINKTYPE_IPV4 = 228
    LINKTYPE_IPV6 = 229
    LINKTYPE_LINUX_SLL2 = 276
