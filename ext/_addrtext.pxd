# cython: language_level=3
"""IP addresses as text, written here in the form glibc's inet_ntop gives (RFC 5952 for
IPv6), without its sprintf: that was 5,000 instructions an IPv6 address, 2% of a replay's."""

from libc.stdint cimport uint8_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object text)


cdef inline int put_octet(char* out, uint8_t v) noexcept nogil:
    """Writes v in decimal; returns how many characters."""
    if v >= 100:
        out[0] = <char>(48 + v // 100)
        out[1] = <char>(48 + (v // 10) % 10)
        out[2] = <char>(48 + v % 10)
        return 3
    if v >= 10:
        out[0] = <char>(48 + v // 10)
        out[1] = <char>(48 + v % 10)
        return 2
    out[0] = <char>(48 + v)
    return 1


cdef inline str ascii_str(const char* text, Py_ssize_t n):
    """A str of n ASCII characters, copied in: what decode("ascii") makes, without its checks."""
    cdef object out = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(out), text, n)
    return out


cdef inline int put_dotted(char* out, const uint8_t* a) noexcept nogil:
    """Writes a dotted quad; returns how many characters (at most 15)."""
    cdef int n = 0
    cdef int k
    for k in range(4):
        if k:
            out[n] = b"."
            n += 1
        n += put_octet(out + n, a[k])
    return n


cdef inline int put_hex_group(char* out, unsigned int v) noexcept nogil:
    """Writes a 16-bit group in lowercase hex without leading zeros; returns how many."""
    cdef const char* digits = b"0123456789abcdef"
    cdef int n = 0
    cdef int shift
    for shift in range(12, -1, -4):
        if n or (v >> shift) & 0xF or shift == 0:
            out[n] = digits[(v >> shift) & 0xF]
            n += 1
    return n


cdef inline str ipv4_text(const uint8_t* a):
    cdef char buf[16]
    return ascii_str(buf, put_dotted(buf, a))


cdef inline str ipv6_text(const uint8_t* a):
    # RFC 5952 section 4.2: the longest run of two or more zero groups (the first of equal
    # ones) becomes "::". As glibc does, an address whose first 96 bits are zero, or that
    # is IPv4-mapped (::ffff:0:0/96), ends in a dotted quad (RFC 5952 section 5).
    cdef char buf[48]
    cdef unsigned int groups[8]
    cdef int best_base = -1
    cdef int best_len = 0
    cdef int cur_base = -1
    cdef int cur_len = 0
    cdef int i
    cdef int n = 0
    for i in range(8):
        groups[i] = (<unsigned int>a[2 * i] << 8) | a[2 * i + 1]
        if groups[i] == 0:
            if cur_base == -1:
                cur_base = i
                cur_len = 0
            cur_len += 1
            if cur_len > best_len:
                best_base = cur_base
                best_len = cur_len
        else:
            cur_base = -1
    if best_len < 2:
        best_base = -1
    for i in range(8):
        if best_base != -1 and best_base <= i < best_base + best_len:
            if i == best_base:
                buf[n] = b":"
                n += 1
            continue
        if i:
            buf[n] = b":"
            n += 1
        if i == 6 and best_base == 0 and (best_len == 6 or (best_len == 5 and groups[5] == 0xFFFF)):
            n += put_dotted(buf + n, a + 12)
            break
        n += put_hex_group(buf + n, groups[i])
    if best_base != -1 and best_base + best_len == 8:
        buf[n] = b":"
        n += 1
    return ascii_str(buf, n)


cdef inline str address_text(int family, const uint8_t* a):
    """family: 4 or 6."""
    return ipv4_text(a) if family == 4 else ipv6_text(a)
