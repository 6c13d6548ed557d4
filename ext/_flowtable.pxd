# cython: language_level=3
"""The flow table: C structs in a fixed pool, a hash index, and LRU lists.

Flows live in a pool of `capacity` structs allocated once; the hash index maps
a keyed hash of the canonical 5-tuple (plus VLAN/tunnel context) to a pool
position. Each flow sits on one least-recently-seen list per timeout class,
so expiry only looks at list heads, and eviction at a full table takes the
flow seen longest ago. A handle (generation << 32 | position) names a flow
to Python and goes stale when the position is reused.
"""

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memset

from _hashindex cimport HashIndex, hash_words, hx_free, hx_home, hx_init, hx_insert, hx_remove

# Timeout classes, one LRU list each.
cdef enum:
    CLASS_TCP = 0               # TCP, open
    CLASS_TCP_CLOSED = 1        # TCP after RST or FIN both ways
    CLASS_UDP = 2
    CLASS_OTHER = 3             # ICMP, SCTP, ESP, ...
    N_CLASSES = 4

# state bits
cdef enum:
    ST_FIN_UP = 1
    ST_FIN_DOWN = 2
    ST_RST = 4

ctypedef struct FlowKey:        # canonical: (a, port_a) <= (b, port_b); 48 bytes
    uint8_t a[16]
    uint8_t b[16]
    uint16_t port_a
    uint16_t port_b
    uint8_t family
    uint8_t proto
    uint16_t reserved
    uint32_t ctx
    uint32_t reserved2

ctypedef struct Flow:
    FlowKey key
    uint64_t hash
    uint64_t first_ns           # first packet of the current report period
    uint64_t last_ns            # latest packet time
    uint64_t seen_ns            # engine clock at the latest packet: orders the LRU lists
    uint64_t pkts[2]            # [0] client to server (up), [1] server to client (down)
    uint64_t bytes[2]
    uint32_t fwd_bytes[2]       # payload bytes forwarded to Python per direction
    uint32_t next_seq[2]        # TCP: the sequence number expected next per direction
    uint32_t follow_end[2]      # TLS: where following a direction may stop by itself
    char cid[30]                # the Community ID, "1:" + 28 base64 characters
    uint32_t gen
    int32_t prev
    int32_t next
    uint16_t vlan_id
    uint8_t a_is_client
    uint8_t tcp_flags[2]
    uint8_t cls
    uint8_t state
    uint8_t interest            # what the engine forwards to Python (engine.pyx INT_*)
    uint8_t icmp_one_way
    uint8_t probes_left         # TCP: segments inspected for a hello; UDP: Initials left
    uint8_t seq_known           # bit per direction: next_seq is valid
    uint8_t end_known           # bit per direction: follow_end is valid

ctypedef struct FlowTable:
    Flow* pool
    HashIndex hx
    int32_t capacity
    int32_t count
    int32_t free_head           # positions freed by ft_remove, linked through Flow.next
    int32_t unused              # positions from here on were never handed out
    int32_t head[N_CLASSES]
    int32_t tail[N_CLASSES]
    uint64_t seed


cdef inline bint ft_init(FlowTable* ft, int32_t capacity, uint64_t seed) noexcept nogil:
    cdef int32_t i
    ft.pool = <Flow*>calloc(capacity, sizeof(Flow))
    if ft.pool == NULL or not hx_init(&ft.hx, <uint32_t>capacity):
        return False
    ft.capacity = capacity
    ft.count = 0
    ft.seed = seed
    # No free list threaded through the pool here: that would touch every page of it
    # (29 MB for the default 131,072 flows) at start-up; positions are handed out in
    # order and only reused from the free list.
    ft.free_head = -1
    ft.unused = 0
    for i in range(N_CLASSES):
        ft.head[i] = -1
        ft.tail[i] = -1
    return True


cdef inline void ft_free(FlowTable* ft) noexcept nogil:
    free(ft.pool)
    ft.pool = NULL
    hx_free(&ft.hx)


cdef inline uint64_t ft_hash(FlowTable* ft, FlowKey* key) noexcept nogil:
    return hash_words(<const uint64_t*>key, 6, ft.seed)


cdef inline int32_t ft_find(FlowTable* ft, FlowKey* key, uint64_t h) noexcept nogil:
    cdef uint32_t slot = hx_home(&ft.hx, h)
    cdef int32_t pos
    while True:
        pos = ft.hx.pos[slot]
        if pos == -1:
            return -1
        if ft.hx.hashes[slot] == h and memcmp(&ft.pool[pos].key, key, sizeof(FlowKey)) == 0:
            return pos
        slot = (slot + 1) & ft.hx.mask


cdef inline void lru_unlink(FlowTable* ft, int32_t i) noexcept nogil:
    cdef Flow* f = &ft.pool[i]
    if f.prev != -1:
        ft.pool[f.prev].next = f.next
    else:
        ft.head[f.cls] = f.next
    if f.next != -1:
        ft.pool[f.next].prev = f.prev
    else:
        ft.tail[f.cls] = f.prev


cdef inline void lru_append(FlowTable* ft, int32_t i, uint8_t cls) noexcept nogil:
    cdef Flow* f = &ft.pool[i]
    f.cls = cls
    f.next = -1
    f.prev = ft.tail[cls]
    if ft.tail[cls] != -1:
        ft.pool[ft.tail[cls]].next = i
    else:
        ft.head[cls] = i
    ft.tail[cls] = i


cdef inline void lru_touch(FlowTable* ft, int32_t i, uint8_t cls) noexcept nogil:
    """Moves flow i to the tail of list cls (most recently seen)."""
    if ft.tail[cls] == i and ft.pool[i].cls == cls:
        return
    lru_unlink(ft, i)
    lru_append(ft, i, cls)


cdef inline int32_t ft_insert(FlowTable* ft, FlowKey* key, uint64_t h, uint8_t cls) noexcept nogil:
    """Takes a free pool position for key; the caller made room first."""
    cdef int32_t i = ft.free_head
    cdef uint32_t gen
    cdef Flow* f
    if i != -1:
        ft.free_head = ft.pool[i].next
    elif ft.unused < ft.capacity:
        i = ft.unused
        ft.unused += 1
    else:
        return -1
    f = &ft.pool[i]
    gen = f.gen
    memset(f, 0, sizeof(Flow))
    f.key = key[0]
    f.hash = h
    f.gen = gen
    hx_insert(&ft.hx, h, i)
    lru_append(ft, i, cls)
    ft.count += 1
    return i


cdef inline void ft_remove(FlowTable* ft, int32_t i) noexcept nogil:
    cdef Flow* f = &ft.pool[i]
    hx_remove(&ft.hx, f.hash, i)
    lru_unlink(ft, i)
    f.gen += 1
    f.next = ft.free_head
    ft.free_head = i
    ft.count -= 1


cdef inline int32_t ft_oldest(FlowTable* ft) noexcept nogil:
    """The flow seen longest ago across all classes, or -1 when empty."""
    cdef int32_t best = -1
    cdef int c
    for c in range(N_CLASSES):
        if ft.head[c] != -1 and (best == -1 or ft.pool[ft.head[c]].seen_ns < ft.pool[best].seen_ns):
            best = ft.head[c]
    return best
