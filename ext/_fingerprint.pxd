# cython: language_level=3
"""JA3, JA3S and JA4 text of a parsed hello, written in C into a bounded buffer.

JA3/JA3S: github.com/salesforce/ja3 (decimal values, GREASE dropped).
JA4: github.com/FoxIO-LLC/ja4, technical_details/JA4.md.
agent/fingerprint.py says the same in Python; the bench's dpkt reference and
the tests use it to check this code. The hashes (md5, sha256) are taken by
the caller, from the text written here.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport qsort

ctypedef struct Text:
    char* p
    size_t n
    size_t cap

# Most characters a list of n values takes: "65535-" per value for JA3, "abcd," for JA4.
cdef enum:
    DEC_CHARS = 6
    HEX_CHARS = 5
    EXT_SNI = 0x0000
    EXT_ALPN = 0x0010


cdef inline char hex_digit(uint32_t v) noexcept nogil:
    """A nibble as a lower-case hex digit."""
    return <char>(48 + v if v < 10 else 87 + v)


cdef inline bint is_grease(uint32_t v) noexcept nogil:
    """GREASE values (RFC 8701): 0x?A?A with both bytes equal."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


cdef inline void put_char(Text* t, char c) noexcept nogil:
    if t.n < t.cap:
        t.p[t.n] = c
        t.n += 1


cdef inline void put_dec(Text* t, uint32_t v) noexcept nogil:
    cdef char digits[10]
    cdef int k = 0
    while True:
        digits[k] = <char>(48 + v % 10)
        k += 1
        v //= 10
        if v == 0:
            break
    while k:
        k -= 1
        put_char(t, digits[k])


cdef inline void put_hex4(Text* t, uint16_t v) noexcept nogil:
    put_char(t, hex_digit(v >> 12))
    put_char(t, hex_digit((v >> 8) & 0xF))
    put_char(t, hex_digit((v >> 4) & 0xF))
    put_char(t, hex_digit(v & 0xF))


cdef inline void put_dec_item(Text* t, uint16_t v, bint* listed) noexcept nogil:
    """One value of a JA3 list: decimal, after a "-" if one came before, GREASE left out."""
    if is_grease(v):
        return
    if listed[0]:
        put_char(t, b"-")
    put_dec(t, v)
    listed[0] = True


cdef inline void put_dec_list(Text* t, const uint16_t* values, int n) noexcept nogil:
    """JA3 lists: decimal values joined by "-", GREASE left out."""
    cdef bint listed = False
    cdef int i
    for i in range(n):
        put_dec_item(t, values[i], &listed)


cdef inline void put_hex_list(Text* t, const uint16_t* values, int n) noexcept nogil:
    """JA4 lists: four lower-case hex digits per value, joined by ","."""
    cdef int i
    for i in range(n):
        if i:
            put_char(t, b",")
        put_hex4(t, values[i])


cdef inline void ja3_text(Text* t, uint16_t version, const uint16_t* ciphers, int n_ciphers,
                          const uint16_t* exts, int n_exts, const uint16_t* groups,
                          int n_groups, const uint8_t* formats, int n_formats) noexcept nogil:
    """version,ciphers,extensions,groups,formats."""
    cdef int i
    put_dec(t, version)
    put_char(t, b",")
    put_dec_list(t, ciphers, n_ciphers)
    put_char(t, b",")
    put_dec_list(t, exts, n_exts)
    put_char(t, b",")
    put_dec_list(t, groups, n_groups)
    put_char(t, b",")
    for i in range(n_formats):
        if i:
            put_char(t, b"-")
        put_dec(t, formats[i])


cdef inline const char* ja4_version_code(uint16_t v) noexcept nogil:
    """JA4's two characters for a version (NUL-separated literals indexed by version)."""
    cdef const char* tls = b"10\x0011\x0012\x0013"
    cdef const char* dtls = b"d1\x00d2\x00d3"
    if 0x0301 <= v <= 0x0304:  # TLS 1.0 to 1.3
        return tls + 3 * (v - 0x0301)
    if v == 0x0300 or v == 0x0002:  # SSL 3.0, SSL 2.0
        return b"s3" if v == 0x0300 else b"s2"
    if v == 0xFEFF or v == 0xFEFD or v == 0xFEFC:  # DTLS 1.0, 1.2, 1.3
        return dtls + 3 * (0 if v == 0xFEFF else 0xFEFE - v)
    return b"00"


cdef inline bint is_alnum(uint8_t c) noexcept nogil:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)


cdef inline int compare_u16(const void* a, const void* b) noexcept nogil:
    return (<const uint16_t*>a)[0] - (<const uint16_t*>b)[0]


cdef inline int kept(const uint16_t* values, int n, uint16_t* out,
                     bint drop_sni_alpn) noexcept nogil:
    """Copies the values that are not GREASE (nor SNI or ALPN, if asked); returns how many."""
    cdef int i
    cdef int k = 0
    for i in range(n):
        if is_grease(values[i]):
            continue
        if drop_sni_alpn and (values[i] == EXT_SNI or values[i] == EXT_ALPN):
            continue
        out[k] = values[i]
        k += 1
    return k


cdef inline void ja4_a(Text* t, char transport, const uint16_t* versions, int n_versions,
                       uint16_t legacy_version, bint has_sni, int n_ciphers, int n_exts,
                       const uint8_t* alpn, int alpn_len) noexcept nogil:
    """The readable part: transport, version, d/i, counts, ALPN characters.

    n_ciphers and n_exts are the counts without GREASE; alpn is the first ALPN
    value (NULL or empty: "00")."""
    cdef uint16_t version = 0
    cdef bint offered = False
    cdef int i
    cdef const char* code
    for i in range(n_versions):  # the highest supported_versions entry, else the legacy one
        if not is_grease(versions[i]) and (not offered or versions[i] > version):
            version = versions[i]
            offered = True
    if not offered:
        version = legacy_version
    code = ja4_version_code(version)
    put_char(t, transport)
    put_char(t, code[0])
    put_char(t, code[1])
    put_char(t, b"d" if has_sni else b"i")
    n_ciphers = 99 if n_ciphers > 99 else n_ciphers
    n_exts = 99 if n_exts > 99 else n_exts
    put_char(t, <char>(48 + n_ciphers // 10))
    put_char(t, <char>(48 + n_ciphers % 10))
    put_char(t, <char>(48 + n_exts // 10))
    put_char(t, <char>(48 + n_exts % 10))
    if alpn == NULL or alpn_len == 0:
        put_char(t, b"0")
        put_char(t, b"0")
    elif is_alnum(alpn[0]) and is_alnum(alpn[alpn_len - 1]):
        put_char(t, <char>alpn[0])
        put_char(t, <char>alpn[alpn_len - 1])
    else:  # the first and last characters of the value's hex form
        put_char(t, hex_digit(alpn[0] >> 4))
        put_char(t, hex_digit(alpn[alpn_len - 1] & 0xF))


cdef inline void sort_u16(uint16_t* values, int n) noexcept nogil:
    qsort(values, n, sizeof(uint16_t), compare_u16)
