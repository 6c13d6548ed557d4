# cython: language_level=3
"""IP addresses as text: dotted quads written here, IPv6 by inet_ntop (RFC 5952 form)."""

from libc.stdint cimport uint8_t

cdef extern from "arpa/inet.h" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)

cdef extern from "sys/socket.h":
    int AF_INET6


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


cdef inline str ipv4_text(const uint8_t* a):
    # glibc's inet_ntop formats IPv4 with sprintf, the larger part of its cost
    cdef char buf[16]
    cdef int n = 0
    cdef int k
    for k in range(4):
        if k:
            buf[n] = b"."
            n += 1
        n += put_octet(buf + n, a[k])
    return buf[:n].decode("ascii")


cdef inline str ipv6_text(const uint8_t* a):
    cdef char buf[48]
    inet_ntop(AF_INET6, a, buf, sizeof(buf))
    return buf.decode("ascii")


cdef inline str address_text(int family, const uint8_t* a):
    """family: 4 or 6."""
    return ipv4_text(a) if family == 4 else ipv6_text(a)
