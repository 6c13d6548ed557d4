# cython: language_level=3
"""IP addresses as text: dotted quads written here, IPv6 by inet_ntop (RFC 5952 form)."""

from libc.stdint cimport uint8_t
from libc.string cimport memcpy, strlen

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object text)

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


cdef inline str ascii_str(const char* text, Py_ssize_t n):
    """A str of n ASCII characters, copied in: what decode("ascii") makes, without its checks."""
    cdef object out = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(out), text, n)
    return out


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
    return ascii_str(buf, n)


cdef inline str ipv6_text(const uint8_t* a):
    cdef char buf[48]
    inet_ntop(AF_INET6, a, buf, sizeof(buf))
    return ascii_str(buf, <Py_ssize_t>strlen(buf))


cdef inline str address_text(int family, const uint8_t* a):
    """family: 4 or 6."""
    return ipv4_text(a) if family == 4 else ipv6_text(a)
