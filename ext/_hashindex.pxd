# cython: language_level=3
"""An open-addressing index from 64-bit hashes to pool positions.

Linear probing at a load factor of at most one half, with backward-shift
deletion (no tombstones), so lookups stay short under churn. The index only
stores (hash, position); the owner compares keys, which keeps one index
serving both the flow table and the fragment table.
"""

from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

ctypedef struct HashIndex:
    int32_t* pos                # pool position per slot, -1 when empty
    uint64_t* hashes
    uint32_t mask


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    # splitmix64 finalizer: every input bit affects every output bit
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9u
    x ^= x >> 27
    x *= 0x94D049BB133111EBu
    x ^= x >> 31
    return x


cdef inline uint64_t hash_words(const uint64_t* words, int n, uint64_t seed) noexcept nogil:
    """Keyed hash of n 64-bit words; the seed is secret so peers cannot aim collisions."""
    cdef uint64_t h = seed
    cdef int i
    for i in range(n):
        h = mix64(h ^ words[i]) + <uint64_t>i
    return h


cdef inline bint hx_init(HashIndex* hx, uint32_t entries) noexcept nogil:
    cdef uint32_t size = 16
    cdef uint32_t i
    while size < entries * 2:
        size <<= 1
    hx.pos = <int32_t*>malloc(size * sizeof(int32_t))
    hx.hashes = <uint64_t*>malloc(size * sizeof(uint64_t))
    if hx.pos == NULL or hx.hashes == NULL:
        return False
    for i in range(size):
        hx.pos[i] = -1
    hx.mask = size - 1
    return True


cdef inline void hx_free(HashIndex* hx) noexcept nogil:
    free(hx.pos)
    free(hx.hashes)
    hx.pos = NULL
    hx.hashes = NULL


cdef inline uint32_t hx_home(HashIndex* hx, uint64_t h) noexcept nogil:
    return <uint32_t>(h ^ (h >> 32)) & hx.mask


cdef inline void hx_insert(HashIndex* hx, uint64_t h, int32_t position) noexcept nogil:
    """The caller keeps at most half the slots used, so a free slot exists."""
    cdef uint32_t slot = hx_home(hx, h)
    while hx.pos[slot] != -1:
        slot = (slot + 1) & hx.mask
    hx.pos[slot] = position
    hx.hashes[slot] = h


cdef inline void hx_remove(HashIndex* hx, uint64_t h, int32_t position) noexcept nogil:
    """Removes `position`, then shifts later entries of the cluster back into the gap."""
    cdef uint32_t i = hx_home(hx, h)
    cdef uint32_t j, k
    while hx.pos[i] != position:
        if hx.pos[i] == -1:
            return
        i = (i + 1) & hx.mask
    j = i
    while True:
        j = (j + 1) & hx.mask
        if hx.pos[j] == -1:
            break
        k = hx_home(hx, hx.hashes[j])
        # The entry at j may fill the gap at i unless its home lies cyclically in (i, j].
        if (i <= j and i < k and k <= j) or (i > j and (i < k or k <= j)):
            continue
        hx.pos[i] = hx.pos[j]
        hx.hashes[i] = hx.hashes[j]
        i = j
    hx.pos[i] = -1
