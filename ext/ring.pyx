# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Walks the blocks of an AF_PACKET TPACKET_V3 receive ring into frame descriptors.

The kernel fills a block with packets and hands it over by setting
TP_STATUS_USER in its header; `walk_block` describes its packets (offsets
relative to the start of the whole ring mapping, so the engine reads them in
place), and `release_block` gives the block back. Layouts: linux/if_packet.h
(struct tpacket_block_desc, struct tpacket3_hdr). A block or packet header
that points outside the block is counted as corrupt and the rest of the block
is skipped.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from _frame cimport FRAME_VLAN_STRIPPED, FrameDesc

cdef extern from *:
    """
    static inline void ring_barrier(void) { __sync_synchronize(); }
    """
    void ring_barrier() nogil

cdef enum:
    TP_STATUS_KERNEL = 0
    TP_STATUS_USER = 1
    TP_STATUS_VLAN_VALID = 1 << 4
    # struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1
    BLOCK_STATUS = 8
    BLOCK_NUM_PKTS = 12
    BLOCK_FIRST = 16
    BLOCK_LEN = 20
    # struct tpacket3_hdr
    PKT_NEXT = 0
    PKT_SEC = 4
    PKT_NSEC = 8
    PKT_SNAPLEN = 12
    PKT_LEN = 16
    PKT_STATUS = 20
    PKT_MAC = 24
    PKT_VLAN_TCI = 32
    PKT_HEADER = 48

DESC_SIZE = sizeof(FrameDesc)


cdef inline uint32_t u32(const uint8_t* p) noexcept nogil:
    return (<const uint32_t*>p)[0]      # host byte order, aligned by the kernel


cdef inline uint16_t u16(const uint8_t* p) noexcept nogil:
    return (<const uint16_t*>p)[0]


def block_ready(unsigned char[::1] ring, Py_ssize_t block_offset):
    """True when the kernel has handed the block at block_offset to user space."""
    if block_offset < 0 or block_offset + 48 > ring.shape[0]:
        return False
    ready = (u32(&ring[block_offset + BLOCK_STATUS]) & TP_STATUS_USER) != 0
    ring_barrier()                      # read the packets only after the status
    return ready


def release_block(unsigned char[::1] ring, Py_ssize_t block_offset):
    """Gives the block back to the kernel."""
    if block_offset < 0 or block_offset + 48 > ring.shape[0]:
        return
    ring_barrier()                      # done reading before the kernel may write
    (<uint32_t*>&ring[block_offset + BLOCK_STATUS])[0] = TP_STATUS_KERNEL


def walk_block(unsigned char[::1] ring, Py_ssize_t block_offset, Py_ssize_t block_size,
               int linktype, bytearray descs):
    """Describes the packets of one ready block; returns (frames, corrupt, vlans).

    descs must hold one FrameDesc (DESC_SIZE bytes) per packet of the block.
    """
    cdef const uint8_t* block
    cdef const uint8_t* pkt
    cdef uint32_t num, first, next_off, snaplen, wirelen, status, mac
    cdef uint64_t pos
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t corrupt = 0
    cdef Py_ssize_t vlans = 0
    cdef FrameDesc* d
    cdef unsigned char[:] dview
    if block_offset < 0 or block_size < 48 or block_offset + block_size > ring.shape[0]:
        return 0, 1, 0
    block = &ring[block_offset]
    num = u32(block + BLOCK_NUM_PKTS)
    first = u32(block + BLOCK_FIRST)
    if len(descs) < <Py_ssize_t>num * <Py_ssize_t>sizeof(FrameDesc):
        descs.extend(bytes(num * sizeof(FrameDesc) - len(descs)))
    dview = descs
    pos = first
    for _ in range(num):
        if pos < 48 or pos + PKT_HEADER > <uint64_t>block_size:
            corrupt += 1
            break
        pkt = block + pos
        next_off = u32(pkt + PKT_NEXT)
        snaplen = u32(pkt + PKT_SNAPLEN)
        wirelen = u32(pkt + PKT_LEN)
        status = u32(pkt + PKT_STATUS)
        mac = u16(pkt + PKT_MAC)
        if pos + mac + snaplen > <uint64_t>block_size:
            corrupt += 1
            break
        d = (<FrameDesc*>&dview[0]) + count
        d.ts_ns = <uint64_t>u32(pkt + PKT_SEC) * 1000000000 + u32(pkt + PKT_NSEC)
        d.offset = <uint32_t>(block_offset + pos + mac)
        d.caplen = snaplen
        d.wirelen = wirelen if wirelen >= snaplen else snaplen
        d.linktype = <uint16_t>linktype
        d.iface = 0
        if status & TP_STATUS_VLAN_VALID:
            d.vlan_tci = <uint16_t>u32(pkt + PKT_VLAN_TCI)
            d.flags = FRAME_VLAN_STRIPPED
            vlans += 1
        else:
            d.vlan_tci = 0
            d.flags = 0
        count += 1
        if next_off == 0:
            break
        pos += next_off
    return count, corrupt, vlans
