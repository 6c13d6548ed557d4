# cython: language_level=3
"""IPv4 and IPv6 fragment reassembly with bounded memory.

At most `capacity` datagrams are in reassembly at once, each with one 64 KiB
buffer and a bitmap of 8-octet units (RFC 791 fragment offsets count 8-octet
units; RFC 8200 section 4.5 does the same). The first copy of a unit wins;
overlaps are counted, not applied. A datagram that does not complete within
the timeout is dropped and counted; so is the oldest one when the table is
full.
"""

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from _hashindex cimport HashIndex, hash_words, hx_free, hx_home, hx_init, hx_insert, hx_remove

cdef enum:
    MAX_DATAGRAM = 65535
    UNITS = 8192                # 65536 / 8

# Counter positions in Reasm.counts (names in ext/engine.pyx FRAG_COUNTER_NAMES).
cdef enum:
    FR_FRAGMENTS = 0
    FR_REASSEMBLED = 1
    FR_TIMEOUT = 2
    FR_EVICTED = 3
    FR_OVERLAP = 4
    FR_MALFORMED = 5
    FR_TOO_BIG = 6
    FR_TRUNCATED = 7
    FR_NO_MEMORY = 8
    N_FR = 9

ctypedef struct FragKey:        # 48 bytes, padding zeroed
    uint8_t src[16]
    uint8_t dst[16]
    uint32_t ident
    uint32_t ctx
    uint8_t family
    uint8_t proto
    uint8_t reserved[6]

ctypedef struct Datagram:
    FragKey key
    uint64_t hash
    uint64_t first_ns
    uint64_t ip_bytes           # sum of the fragments' IP lengths
    uint8_t* data
    uint8_t* filled             # one bit per 8-octet unit
    uint32_t total              # payload length once the last fragment is seen, else 0
    uint32_t units              # units filled
    uint32_t max_end            # furthest payload byte any fragment reached
    uint32_t frames
    int32_t prev
    int32_t next
    bint used

ctypedef struct Reasm:
    Datagram* pool
    HashIndex hx
    int32_t capacity
    int32_t count
    int32_t head                # oldest datagram
    int32_t tail
    uint64_t timeout_ns
    uint64_t seed
    uint64_t counts[N_FR]


cdef inline bint rs_init(Reasm* rs, int32_t capacity, uint64_t timeout_ns,
                         uint64_t seed) noexcept nogil:
    memset(rs, 0, sizeof(Reasm))
    rs.pool = <Datagram*>calloc(capacity if capacity > 0 else 1, sizeof(Datagram))
    if rs.pool == NULL or not hx_init(&rs.hx, <uint32_t>(capacity if capacity > 0 else 1)):
        return False
    rs.capacity = capacity
    rs.head = -1
    rs.tail = -1
    rs.timeout_ns = timeout_ns
    rs.seed = seed
    return True


cdef inline void rs_release(Reasm* rs, int32_t i) noexcept nogil:
    cdef Datagram* d = &rs.pool[i]
    hx_remove(&rs.hx, d.hash, i)
    if d.prev != -1:
        rs.pool[d.prev].next = d.next
    else:
        rs.head = d.next
    if d.next != -1:
        rs.pool[d.next].prev = d.prev
    else:
        rs.tail = d.prev
    free(d.data)
    free(d.filled)
    d.data = NULL
    d.filled = NULL
    d.used = False
    rs.count -= 1


cdef inline void rs_free(Reasm* rs) noexcept nogil:
    cdef int32_t i
    if rs.pool != NULL:
        for i in range(rs.capacity):
            if rs.pool[i].used:
                free(rs.pool[i].data)
                free(rs.pool[i].filled)
        free(rs.pool)
        rs.pool = NULL
    hx_free(&rs.hx)


cdef inline void rs_expire(Reasm* rs, uint64_t now_ns) noexcept nogil:
    """Drops datagrams older than the timeout (the list is in arrival order)."""
    while rs.head != -1 and rs.pool[rs.head].first_ns + rs.timeout_ns <= now_ns:
        rs.counts[FR_TIMEOUT] += 1
        rs_release(rs, rs.head)


cdef inline void rs_drop_all(Reasm* rs) noexcept nogil:
    """At the end of input: what is still incomplete never will be."""
    while rs.head != -1:
        rs.counts[FR_TIMEOUT] += 1
        rs_release(rs, rs.head)


cdef inline int32_t rs_find_or_add(Reasm* rs, FragKey* key, uint64_t now_ns) noexcept nogil:
    cdef uint64_t h = hash_words(<const uint64_t*>key, 6, rs.seed)
    cdef uint32_t slot = hx_home(&rs.hx, h)
    cdef int32_t i
    cdef Datagram* d
    while rs.hx.pos[slot] != -1:
        i = rs.hx.pos[slot]
        if rs.hx.hashes[slot] == h and memcmp(&rs.pool[i].key, key, sizeof(FragKey)) == 0:
            return i
        slot = (slot + 1) & rs.hx.mask
    if rs.capacity <= 0:
        rs.counts[FR_EVICTED] += 1
        return -1
    if rs.count >= rs.capacity:
        rs.counts[FR_EVICTED] += 1
        rs_release(rs, rs.head)
    i = 0
    while rs.pool[i].used:      # count < capacity, so an unused one exists
        i += 1
    d = &rs.pool[i]
    memset(d, 0, sizeof(Datagram))
    d.data = <uint8_t*>malloc(MAX_DATAGRAM + 1)
    d.filled = <uint8_t*>calloc(UNITS // 8, 1)
    if d.data == NULL or d.filled == NULL:
        free(d.data)
        free(d.filled)
        rs.counts[FR_NO_MEMORY] += 1
        return -1
    d.key = key[0]
    d.hash = h
    d.first_ns = now_ns
    d.used = True
    d.prev = rs.tail
    d.next = -1
    if rs.tail != -1:
        rs.pool[rs.tail].next = i
    else:
        rs.head = i
    rs.tail = i
    hx_insert(&rs.hx, h, i)
    rs.count += 1
    return i


cdef inline int32_t rs_add(Reasm* rs, FragKey* key, uint64_t now_ns, uint32_t offset,
                           bint more, const uint8_t* data, uint32_t length, uint32_t wire_length,
                           uint32_t ip_len) noexcept nogil:
    """Adds one fragment; returns the datagram position when it is complete, else -1.

    `length` bytes are present of the fragment's `wire_length`; a fragment cut by
    the snap length can never complete its datagram and is counted as such.
    """
    cdef int32_t i
    cdef Datagram* d
    cdef uint32_t u, first, last, end, take
    cdef bint overlapped
    rs.counts[FR_FRAGMENTS] += 1
    if length < wire_length:
        rs.counts[FR_TRUNCATED] += 1
        return -1
    if (more and (wire_length == 0 or wire_length % 8 != 0)):
        rs.counts[FR_MALFORMED] += 1
        return -1
    end = offset + wire_length
    if end > MAX_DATAGRAM:
        rs.counts[FR_TOO_BIG] += 1
        return -1
    i = rs_find_or_add(rs, key, now_ns)
    if i < 0:
        return -1
    d = &rs.pool[i]
    if not more:
        if (d.total != 0 and d.total != end) or end < d.max_end:
            rs.counts[FR_MALFORMED] += 1
            rs_release(rs, i)
            return -1
        d.total = end
    elif d.total != 0 and end > d.total:
        rs.counts[FR_MALFORMED] += 1
        rs_release(rs, i)
        return -1
    if end > d.max_end:
        d.max_end = end
    d.frames += 1
    d.ip_bytes += ip_len
    first = offset // 8
    last = (end + 7) // 8
    overlapped = False
    for u in range(first, last):
        if d.filled[u >> 3] & (1 << (u & 7)):
            overlapped = True
            continue
        take = end - u * 8 if end - u * 8 < 8 else 8
        memcpy(d.data + u * 8, data + (u * 8 - offset), take)
        d.filled[u >> 3] |= <uint8_t>(1 << (u & 7))
        d.units += 1
    if overlapped:                  # counted per fragment, like the other counters
        rs.counts[FR_OVERLAP] += 1
    if d.total != 0 and d.units == (d.total + 7) // 8:
        rs.counts[FR_REASSEMBLED] += 1
        return i
    return -1
