# cython: language_level=3
"""Bounds-checked reads over untrusted bytes.

Every parser in ext/ reads through a Cursor: a read that would pass the end
returns False and leaves the cursor where it was, so the caller can report
TRUNCATED instead of reading out of bounds.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

# The closed set of parser statuses (their names: STATUS_NAMES in ext/engine.pyx).
cdef enum:
    OK = 0
    TRUNCATED = 1
    UNSUPPORTED = 2
    MALFORMED = 3
    LIMIT = 4
    N_STATUS = 5

ctypedef struct Cursor:
    const uint8_t* p
    size_t n


cdef inline void cursor_init(Cursor* c, const uint8_t* p, size_t n) noexcept nogil:
    c.p = p
    c.n = n


cdef inline bint skip(Cursor* c, size_t k) noexcept nogil:
    if c.n < k:
        return False
    c.p += k
    c.n -= k
    return True


cdef inline bint take(Cursor* c, size_t k, const uint8_t** out) noexcept nogil:
    """Hands out a pointer to the next k bytes and moves past them."""
    if c.n < k:
        return False
    out[0] = c.p
    c.p += k
    c.n -= k
    return True


cdef inline bint read_u8(Cursor* c, uint8_t* out) noexcept nogil:
    if c.n < 1:
        return False
    out[0] = c.p[0]
    c.p += 1
    c.n -= 1
    return True


cdef inline bint read_u16(Cursor* c, uint16_t* out) noexcept nogil:
    if c.n < 2:
        return False
    out[0] = (<uint16_t>c.p[0] << 8) | c.p[1]
    c.p += 2
    c.n -= 2
    return True


cdef inline bint read_u24(Cursor* c, uint32_t* out) noexcept nogil:
    if c.n < 3:
        return False
    out[0] = (<uint32_t>c.p[0] << 16) | (<uint32_t>c.p[1] << 8) | c.p[2]
    c.p += 3
    c.n -= 3
    return True


cdef inline bint read_u32(Cursor* c, uint32_t* out) noexcept nogil:
    if c.n < 4:
        return False
    out[0] = ((<uint32_t>c.p[0] << 24) | (<uint32_t>c.p[1] << 16)
              | (<uint32_t>c.p[2] << 8) | c.p[3])
    c.p += 4
    c.n -= 4
    return True


cdef inline uint16_t load_u16(const uint8_t* p) noexcept nogil:
    """Big-endian load; the caller has checked that two bytes are there."""
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t load_u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint16_t load_u16_order(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return (<uint16_t>p[0] << 8) | p[1]
    return (<uint16_t>p[1] << 8) | p[0]


cdef inline uint32_t load_u32_order(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return load_u32(p)
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef inline uint64_t load_u64_order(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return (<uint64_t>load_u32(p) << 32) | load_u32(p + 4)
    return (<uint64_t>load_u32_order(p + 4, False) << 32) | load_u32_order(p, False)
