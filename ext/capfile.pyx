# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Walks the records of a classic pcap or pcapng stream into frame descriptors.

The walker is a state machine fed with successive chunks of one stream: it
consumes every complete record in a chunk, fills one FrameDesc per packet,
and reports how many bytes it consumed so the caller keeps the incomplete
tail for the next chunk. It never reads past the chunk and never raises on
bad bytes: a corrupt header stops the stream and is counted, a truncated
last record is counted at the end.

Formats: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-03.html
(classic pcap) and draft-ietf-opsawg-pcapng-02 (pcapng).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memset

from _frame cimport FrameDesc
from _wire cimport load_u16_order, load_u32_order, load_u64_order

cdef enum:
    FMT_UNKNOWN = 0
    FMT_PCAP = 1
    FMT_PCAPNG = 2

# pcap magic numbers as read little-endian
cdef enum:
    PCAP_MAGIC_US = 0xA1B2C3D4
    PCAP_MAGIC_NS = 0xA1B23C4D
    PCAP_MAGIC_KUZNETSOV = 0xA1B2CD34   # "modified" pcap: 8 more bytes per record header

# pcapng block types (draft-ietf-opsawg-pcapng section 4, 11.1)
cdef enum:
    BT_SHB = 0x0A0D0D0A
    BT_IDB = 0x00000001
    BT_PB = 0x00000002          # obsolete Packet Block
    BT_SPB = 0x00000003
    BT_EPB = 0x00000006
    BYTE_ORDER_MAGIC = 0x1A2B3C4D

cdef enum:
    OPT_IF_TSRESOL = 9
    OPT_IF_TSOFFSET = 14

# libpcap's own bounds: a frame longer than this is a corrupt header, a block
# longer than 16 MiB is too (pcap-common.h MAXIMUM_SNAPLEN, sf-pcapng.c).
cdef enum:
    MAX_FRAME = 262144
    MAX_BLOCK = 16 * 1024 * 1024
    MAX_INTERFACES = 1024

ctypedef struct Interface:
    uint16_t linktype
    bint resol_pow2             # resolution is 2^-exp rather than 10^-exp
    uint8_t resol_exp
    uint64_t offset_s

# Counter names, in the order of the counters array.
COUNTER_NAMES = (
    "frames", "truncated_record", "corrupt_header", "skipped_blocks",
    "unknown_interface", "too_many_interfaces", "bad_block", "not_a_capture",
)
cdef enum:
    C_FRAMES = 0
    C_TRUNCATED = 1
    C_CORRUPT = 2
    C_SKIPPED = 3
    C_UNKNOWN_IFACE = 4
    C_TOO_MANY_IFACES = 5
    C_BAD_BLOCK = 6
    C_NOT_CAPTURE = 7
    N_COUNTERS = 8

DESC_SIZE = sizeof(FrameDesc)


cdef inline bint is_pcap_magic(uint32_t magic) noexcept nogil:
    return magic == PCAP_MAGIC_US or magic == PCAP_MAGIC_NS or magic == PCAP_MAGIC_KUZNETSOV


cdef inline uint64_t scale_ts(uint64_t ts, Interface* itf) noexcept nogil:
    """Turns a pcapng timestamp in interface units into nanoseconds."""
    cdef uint64_t mul = 1
    cdef uint64_t div = 1
    cdef int _
    cdef uint64_t sec
    if itf.resol_pow2:
        if itf.resol_exp >= 64:
            return itf.offset_s * 1000000000
        sec = ts >> itf.resol_exp
        return ((sec + itf.offset_s) * 1000000000
                + (((ts - (sec << itf.resol_exp)) * 1000000000) >> itf.resol_exp))
    if itf.resol_exp <= 9:
        for _ in range(9 - itf.resol_exp):
            mul *= 10
        return ts * mul + itf.offset_s * 1000000000
    for _ in range(min(itf.resol_exp, 19) - 9):
        div *= 10
    return ts // div + itf.offset_s * 1000000000


cdef class CaptureWalker:
    """Feeds on successive chunks of one capture stream; see the module docstring."""

    cdef int fmt
    cdef bint big                   # byte order of the file / current section
    cdef bint nanos                 # classic pcap: fractions are nanoseconds
    cdef int rec_hdr                # classic pcap record header size
    cdef uint16_t pcap_linktype
    cdef Interface* ifaces
    cdef int n_ifaces
    cdef uint64_t skip_remaining    # bytes of an oversized skipped block still to pass
    cdef uint64_t last_ts_ns        # for Simple Packet Blocks, which carry no time
    cdef public bint stopped        # a corrupt header ended the stream
    cdef bint saw_magic             # the first four bytes are a capture magic number
    cdef public Py_ssize_t need     # bytes the next record needs in one chunk
    cdef uint64_t _counts[N_COUNTERS]
    cdef bytearray _descs
    cdef Py_ssize_t _cap

    def __cinit__(self):
        self.ifaces = NULL

    def __init__(self):
        self.ifaces = <Interface*>PyMem_Malloc(MAX_INTERFACES * sizeof(Interface))
        if self.ifaces == NULL:
            raise MemoryError()
        self.fmt = FMT_UNKNOWN
        self.n_ifaces = 0
        self.skip_remaining = 0
        self.last_ts_ns = 0
        self.stopped = False
        self.saw_magic = False
        self.need = 0
        memset(self._counts, 0, sizeof(self._counts))
        self._cap = 4096
        self._descs = bytearray(self._cap * sizeof(FrameDesc))

    def __dealloc__(self):
        if self.ifaces != NULL:
            PyMem_Free(self.ifaces)

    @property
    def descriptors(self):
        """The descriptor array of the last walk (FrameDesc records, see ext/_frame.pxd)."""
        return self._descs

    @property
    def format(self):
        return ("unknown", "pcap", "pcapng")[self.fmt]

    def counters(self):
        return {name: self._counts[i] for i, name in enumerate(COUNTER_NAMES)}

    def finish(self, Py_ssize_t leftover):
        """Ends the stream: a block still being skipped, or leftover unconsumed bytes,
        are a truncated record (or not a capture, when not even a magic number came)."""
        if self.stopped:
            return
        if self.skip_remaining:
            self._counts[C_TRUNCATED] += 1
        elif leftover > 0:
            if self.fmt == FMT_UNKNOWN and not self.saw_magic:
                self._counts[C_NOT_CAPTURE] += 1
            else:
                self._counts[C_TRUNCATED] += 1

    def walk(self, const unsigned char[::1] buf):
        """Consumes complete records of buf; returns (bytes consumed, frames described)."""
        cdef Py_ssize_t n = buf.shape[0]
        if n == 0 or self.stopped:
            return 0, 0
        # A record is at least 16 bytes, so n // 16 descriptors always suffice.
        cdef Py_ssize_t want = n // 16 + 1
        if want > self._cap:
            self._cap = want
            self._descs = bytearray(self._cap * sizeof(FrameDesc))
        cdef unsigned char[:] dview = self._descs
        cdef FrameDesc* descs = <FrameDesc*>&dview[0]
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t used = 0
        self.need = 0
        if self.fmt == FMT_UNKNOWN:
            used = self._start(&buf[0], n)
            if self.fmt == FMT_UNKNOWN:
                return used, 0
        if self.fmt == FMT_PCAP:
            used += self._walk_pcap(&buf[0], used, n, descs, &count)
        else:
            used += self._walk_pcapng(&buf[0], used, n, descs, &count)
        self._counts[C_FRAMES] += count
        return used, count

    cdef Py_ssize_t _start(self, const uint8_t* p, Py_ssize_t n) noexcept:
        """Recognises the file header; returns the bytes it consumed."""
        cdef uint32_t magic
        if n < 4:
            return 0
        magic = load_u32_order(p, False)
        self.saw_magic = magic == BT_SHB or is_pcap_magic(magic) or is_pcap_magic(
            load_u32_order(p, True))
        if magic == BT_SHB:
            self.fmt = FMT_PCAPNG       # the SHB is read as a block by the pcapng walk
            return 0
        if n < 24:
            return 0
        if is_pcap_magic(magic):
            self.big = False
        elif is_pcap_magic(load_u32_order(p, True)):
            self.big = True
        else:
            self.stopped = True
            self._counts[C_NOT_CAPTURE] += 1
            return 0
        magic = load_u32_order(p, self.big)
        self.nanos = magic == PCAP_MAGIC_NS
        self.rec_hdr = 24 if magic == PCAP_MAGIC_KUZNETSOV else 16
        # The link-layer header type is the low 16 bits; the upper bits
        # carry the FCS length (draft-ietf-opsawg-pcap section 4).
        self.pcap_linktype = load_u32_order(p + 20, self.big) & 0xFFFF
        self.fmt = FMT_PCAP
        return 24

    cdef Py_ssize_t _walk_pcap(self, const uint8_t* base, Py_ssize_t start, Py_ssize_t n,
                               FrameDesc* descs, Py_ssize_t* count) noexcept:
        cdef Py_ssize_t pos = start
        cdef const uint8_t* p
        cdef uint32_t sec, frac, caplen, wirelen
        cdef FrameDesc* d
        while n - pos >= self.rec_hdr:
            p = base + pos
            sec = load_u32_order(p, self.big)
            frac = load_u32_order(p + 4, self.big)
            caplen = load_u32_order(p + 8, self.big)
            wirelen = load_u32_order(p + 12, self.big)
            if caplen > MAX_FRAME:
                self._counts[C_CORRUPT] += 1
                self.stopped = True
                break
            if n - pos - self.rec_hdr < caplen:
                self.need = self.rec_hdr + caplen
                break
            d = &descs[count[0]]
            d.ts_ns = <uint64_t>sec * 1000000000 + (frac if self.nanos else <uint64_t>frac * 1000)
            d.offset = <uint32_t>(pos + self.rec_hdr)
            d.caplen = caplen
            d.wirelen = wirelen if wirelen >= caplen else caplen
            d.linktype = self.pcap_linktype
            d.vlan_tci = 0
            d.flags = 0
            d.iface = 0
            count[0] += 1
            pos += self.rec_hdr + caplen
        return pos - start

    cdef Py_ssize_t _walk_pcapng(self, const uint8_t* base, Py_ssize_t start, Py_ssize_t n,
                                 FrameDesc* descs, Py_ssize_t* count) noexcept:
        cdef Py_ssize_t pos = start
        cdef Py_ssize_t avail
        cdef const uint8_t* p
        cdef uint32_t btype, blen
        while pos < n:
            avail = n - pos
            if self.skip_remaining:
                if <uint64_t>avail <= self.skip_remaining:
                    self.skip_remaining -= avail
                    return n - start
                pos += self.skip_remaining
                self.skip_remaining = 0
                continue
            if avail < 12:
                break
            p = base + pos
            btype = load_u32_order(p, self.big)
            if btype == BT_SHB:
                # The byte-order magic tells how to read this section, length included.
                if load_u32_order(p + 8, False) == BYTE_ORDER_MAGIC:
                    self.big = False
                elif load_u32_order(p + 8, True) == BYTE_ORDER_MAGIC:
                    self.big = True
                else:
                    self._counts[C_CORRUPT] += 1
                    self.stopped = True
                    break
            blen = load_u32_order(p + 4, self.big)
            if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
                self._counts[C_CORRUPT] += 1
                self.stopped = True
                break
            if btype not in (BT_SHB, BT_IDB, BT_EPB, BT_SPB, BT_PB):
                self._counts[C_SKIPPED] += 1
                if <uint64_t>avail < blen:
                    self.skip_remaining = blen - avail
                    return n - start
                pos += blen
                continue
            if avail < blen:
                self.need = blen
                break
            if load_u32_order(p + blen - 4, self.big) != blen:
                self._counts[C_CORRUPT] += 1
                self.stopped = True
                break
            if btype == BT_SHB:
                self.n_ifaces = 0       # interface ids are per section
            elif btype == BT_IDB:
                self._interface(p, blen)
            else:
                self._packet(btype, p, blen, descs, count, <uint32_t>pos)
            pos += blen
        return pos - start

    cdef void _interface(self, const uint8_t* p, uint32_t blen) noexcept:
        """Interface Description Block: link type, if_tsresol, if_tsoffset."""
        cdef Interface* itf
        cdef uint32_t off = 16          # type, length, linktype+reserved, snaplen
        cdef uint16_t code, olen
        cdef uint8_t r
        if blen < 20:
            self._counts[C_BAD_BLOCK] += 1
            return
        if self.n_ifaces >= MAX_INTERFACES:
            self._counts[C_TOO_MANY_IFACES] += 1
            return
        itf = &self.ifaces[self.n_ifaces]
        itf.linktype = load_u16_order(p + 8, self.big)
        itf.resol_pow2 = False
        itf.resol_exp = 6               # microseconds unless if_tsresol says otherwise
        itf.offset_s = 0
        self.n_ifaces += 1
        while off + 4 <= blen - 4:
            code = load_u16_order(p + off, self.big)
            olen = load_u16_order(p + off + 2, self.big)
            off += 4
            if code == 0 or off + olen > blen - 4:
                break
            if code == OPT_IF_TSRESOL and olen >= 1:
                r = p[off]
                itf.resol_pow2 = (r & 0x80) != 0
                itf.resol_exp = r & 0x7F
            elif code == OPT_IF_TSOFFSET and olen >= 8:
                itf.offset_s = load_u64_order(p + off, self.big)
            off += (olen + 3) & ~3u

    cdef void _packet(self, uint32_t btype, const uint8_t* p, uint32_t blen,
                      FrameDesc* descs, Py_ssize_t* count, uint32_t pos) noexcept:
        cdef uint32_t iface, caplen, wirelen, data_off
        cdef uint64_t ts
        cdef FrameDesc* d
        if btype == BT_EPB:
            if blen < 32:
                self._counts[C_BAD_BLOCK] += 1
                return
            iface = load_u32_order(p + 8, self.big)
            ts = ((<uint64_t>load_u32_order(p + 12, self.big) << 32)
                  | load_u32_order(p + 16, self.big))
            caplen = load_u32_order(p + 20, self.big)
            wirelen = load_u32_order(p + 24, self.big)
            data_off = 28
        elif btype == BT_PB:
            if blen < 32:
                self._counts[C_BAD_BLOCK] += 1
                return
            iface = load_u16_order(p + 8, self.big)
            ts = ((<uint64_t>load_u32_order(p + 12, self.big) << 32)
                  | load_u32_order(p + 16, self.big))
            caplen = load_u32_order(p + 20, self.big)
            wirelen = load_u32_order(p + 24, self.big)
            data_off = 28
        else:   # Simple Packet Block: interface 0, no timestamp, data fills the block
            if blen < 16:
                self._counts[C_BAD_BLOCK] += 1
                return
            iface = 0
            wirelen = load_u32_order(p + 8, self.big)
            caplen = min(wirelen, blen - 16)
            data_off = 12
            ts = 0
        if caplen > blen - data_off - 4 or caplen > MAX_FRAME:
            self._counts[C_BAD_BLOCK] += 1
            return
        if iface >= <uint32_t>self.n_ifaces:
            self._counts[C_UNKNOWN_IFACE] += 1
            return
        d = &descs[count[0]]
        if btype == BT_SPB:
            d.ts_ns = self.last_ts_ns
        else:
            d.ts_ns = scale_ts(ts, &self.ifaces[iface])
            self.last_ts_ns = d.ts_ns
        d.offset = pos + data_off
        d.caplen = caplen
        d.wirelen = wirelen if wirelen >= caplen else caplen
        d.linktype = self.ifaces[iface].linktype
        d.vlan_tci = 0
        d.flags = 0
        d.iface = iface
        count[0] += 1
