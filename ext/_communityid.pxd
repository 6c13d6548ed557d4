# cython: language_level=3
"""Community ID v1 of a flow (github.com/corelight/community-id-spec), computed in C.

"1:" + base64(SHA-1(seed, saddr, daddr, proto, 0, sport, dport)), with the endpoints
ordered so both directions give the same id. SHA-1 (FIPS 180-4) is here for this
one fixed-size use: the input is at most 2 + 16 + 16 + 2 + 4 = 40 bytes, one block.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

cdef enum:
    COMMUNITY_ID_LEN = 30       # "1:" and 28 base64 characters


cdef inline uint32_t rotl(uint32_t x, int n) noexcept nogil:
    return (x << n) | (x >> (32 - n))


cdef inline void sha1_one_block(const uint8_t* msg, size_t n, uint8_t* digest) noexcept nogil:
    """SHA-1 of n <= 55 bytes (a single padded block)."""
    cdef uint8_t block[64]
    cdef uint32_t w[80]
    cdef uint32_t h0 = 0x67452301, h1 = 0xEFCDAB89, h2 = 0x98BADCFE
    cdef uint32_t h3 = 0x10325476, h4 = 0xC3D2E1F0
    cdef uint32_t a, b, c, d, e, f, k, t
    cdef uint64_t bits = <uint64_t>n * 8
    cdef uint32_t h[5]
    cdef int i
    memset(block, 0, 64)
    memcpy(block, msg, n)
    block[n] = 0x80
    for i in range(8):
        block[63 - i] = <uint8_t>(bits >> (8 * i))
    for i in range(16):
        w[i] = ((<uint32_t>block[4 * i] << 24) | (<uint32_t>block[4 * i + 1] << 16)
                | (<uint32_t>block[4 * i + 2] << 8) | block[4 * i + 3])
    for i in range(16, 80):
        w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
    a, b, c, d, e = h0, h1, h2, h3, h4
    for i in range(80):
        if i < 20:
            f = (b & c) | (~b & d)
            k = 0x5A827999
        elif i < 40:
            f = b ^ c ^ d
            k = 0x6ED9EBA1
        elif i < 60:
            f = (b & c) | (b & d) | (c & d)
            k = 0x8F1BBCDC
        else:
            f = b ^ c ^ d
            k = 0xCA62C1D6
        t = rotl(a, 5) + f + e + k + w[i]
        e = d
        d = c
        c = rotl(b, 30)
        b = a
        a = t
    h[0] = h0 + a
    h[1] = h1 + b
    h[2] = h2 + c
    h[3] = h3 + d
    h[4] = h4 + e
    for i in range(5):
        digest[4 * i] = <uint8_t>(h[i] >> 24)
        digest[4 * i + 1] = <uint8_t>(h[i] >> 16)
        digest[4 * i + 2] = <uint8_t>(h[i] >> 8)
        digest[4 * i + 3] = <uint8_t>h[i]


cdef inline void base64_20(const uint8_t* src, char* out) noexcept nogil:
    """Standard base64 (RFC 4648 section 4) of 20 bytes: 28 characters, one '=' pad."""
    cdef const char* alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    cdef int i, o = 0
    cdef uint32_t v
    for i in range(0, 18, 3):
        v = (<uint32_t>src[i] << 16) | (<uint32_t>src[i + 1] << 8) | src[i + 2]
        out[o] = alphabet[(v >> 18) & 63]
        out[o + 1] = alphabet[(v >> 12) & 63]
        out[o + 2] = alphabet[(v >> 6) & 63]
        out[o + 3] = alphabet[v & 63]
        o += 4
    v = (<uint32_t>src[18] << 16) | (<uint32_t>src[19] << 8)
    out[o] = alphabet[(v >> 18) & 63]
    out[o + 1] = alphabet[(v >> 12) & 63]
    out[o + 2] = alphabet[(v >> 6) & 63]
    out[o + 3] = 61     # '='


cdef inline void community_id(uint8_t family, uint8_t proto, const uint8_t* saddr,
                              uint16_t sport, const uint8_t* daddr, uint16_t dport,
                              bint one_way, uint16_t seed, char* out) noexcept nogil:
    """Writes the COMMUNITY_ID_LEN characters of the flow's id to out.

    For ICMP, sport and dport are already the type and its counterpart (or code).
    """
    cdef uint8_t buf[40]
    cdef uint8_t digest[20]
    cdef int alen = 4 if family == 4 else 16
    cdef int cmp = memcmp(saddr, daddr, alen)
    cdef const uint8_t* tmp
    cdef uint16_t tport
    cdef size_t n
    if not one_way and (cmp > 0 or (cmp == 0 and sport > dport)):
        tmp = saddr
        saddr = daddr
        daddr = tmp
        tport = sport
        sport = dport
        dport = tport
    buf[0] = <uint8_t>(seed >> 8)
    buf[1] = <uint8_t>seed
    memcpy(buf + 2, saddr, alen)
    memcpy(buf + 2 + alen, daddr, alen)
    n = 2 + 2 * alen
    buf[n] = proto
    buf[n + 1] = 0
    n += 2
    if proto == 1 or proto == 6 or proto == 17 or proto == 58 or proto == 132:
        buf[n] = <uint8_t>(sport >> 8)
        buf[n + 1] = <uint8_t>sport
        buf[n + 2] = <uint8_t>(dport >> 8)
        buf[n + 3] = <uint8_t>dport
        n += 4
    sha1_one_block(buf, n, digest)
    out[0] = 49     # '1'
    out[1] = 58     # ':'
    base64_20(digest, out + 2)
