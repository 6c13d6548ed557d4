# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""TLS ClientHello and ServerHello parsers (RFC 8446 section 4.1) over untrusted bytes.

Input is one handshake message body (after its 4-byte handshake header):
the caller reassembles records and segments (agent/tls.py) or QUIC CRYPTO
frames (agent/quic.py). The walk fills a C struct through the bounds-checked
cursor; Python lists are built once, in the def wrapper. Lists longer than
their cap are cut and the status is LIMIT, with what was read still returned.
"""

import hashlib

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t

from _fingerprint cimport (DEC_CHARS, HEX_CHARS, Text, ja3_text, ja4_a, kept, put_char, put_dec,
                           put_dec_item, put_hex_list, sort_u16)
from _wire cimport (LIMIT, MALFORMED, OK, TRUNCATED, UNSUPPORTED, Cursor, cursor_init, read_u8,
                    read_u16, read_u24, skip, take)

# Extension types (IANA TLS ExtensionType registry)
cdef enum:
    EXT_SERVER_NAME = 0x0000
    EXT_SUPPORTED_GROUPS = 0x000A
    EXT_EC_POINT_FORMATS = 0x000B
    EXT_SIGNATURE_ALGORITHMS = 0x000D
    EXT_ALPN = 0x0010
    EXT_SUPPORTED_VERSIONS = 0x002B
    EXT_KEY_SHARE = 0x0033
    EXT_QUIC_TRANSPORT_PARAMETERS = 0x0039
    EXT_ENCRYPTED_CLIENT_HELLO = 0xFE0D     # draft-ietf-tls-esni

cdef enum:
    MAX_CIPHERS = 2048
    MAX_EXTENSIONS = 512
    MAX_LIST = 512
    MAX_SMALL = 64

ctypedef struct Hello:
    uint16_t version
    int n_ciphers
    int n_exts
    int n_versions
    int n_groups
    int n_formats
    int n_sigalgs
    int n_shares
    bint has_sni
    bint ech
    bint limited
    uint16_t sni_len
    uint16_t alpn_len
    const uint8_t* sni
    const uint8_t* alpn         # the ALPN protocol_name_list, parsed in the wrapper
    uint16_t ciphers[MAX_CIPHERS]
    uint16_t exts[MAX_EXTENSIONS]
    uint16_t versions[MAX_SMALL]
    uint16_t groups[MAX_LIST]
    uint8_t formats[MAX_SMALL]
    uint16_t sigalgs[MAX_LIST]
    uint16_t shares[MAX_SMALL]


cdef int u16_list(Cursor* c, size_t length, uint16_t* out, int cap, int* n,
                  bint* limited) noexcept nogil:
    cdef uint16_t v = 0
    if length % 2 or length > c.n:
        return MALFORMED
    while length:
        read_u16(c, &v)
        length -= 2
        if n[0] < cap:
            out[n[0]] = v
            n[0] += 1
        else:
            limited[0] = True
    return OK


cdef int client_extension(uint16_t etype, Cursor* body, Hello* h) noexcept nogil:
    """Reads the extensions whose content feeds the record or a fingerprint."""
    cdef uint16_t n16, name_len
    cdef uint8_t n8 = 0
    cdef uint8_t name_type = 0
    cdef uint8_t v8 = 0
    cdef const uint8_t* data
    cdef Cursor shares
    cdef uint16_t group, klen
    if etype == EXT_SERVER_NAME:
        h.has_sni = True
        # server_name_list: the first host_name entry (RFC 6066 section 3)
        if body.n == 0:
            return OK
        if not read_u16(body, &n16) or n16 > body.n:
            return MALFORMED
        while body.n >= 3:
            read_u8(body, &name_type)
            read_u16(body, &name_len)
            if not take(body, name_len, &data):
                return MALFORMED
            if name_type == 0 and h.sni == NULL:
                h.sni = data
                h.sni_len = name_len
        return OK
    if etype == EXT_ALPN:
        if not read_u16(body, &n16) or n16 > body.n:
            return MALFORMED
        h.alpn = body.p
        h.alpn_len = n16
        return OK
    if etype == EXT_SUPPORTED_VERSIONS:
        if not read_u8(body, &n8):
            return MALFORMED
        return u16_list(body, n8, h.versions, MAX_SMALL, &h.n_versions, &h.limited)
    if etype == EXT_SUPPORTED_GROUPS:
        if not read_u16(body, &n16):
            return MALFORMED
        return u16_list(body, n16, h.groups, MAX_LIST, &h.n_groups, &h.limited)
    if etype == EXT_SIGNATURE_ALGORITHMS:
        if not read_u16(body, &n16):
            return MALFORMED
        return u16_list(body, n16, h.sigalgs, MAX_LIST, &h.n_sigalgs, &h.limited)
    if etype == EXT_EC_POINT_FORMATS:
        if not read_u8(body, &n8) or n8 > body.n:
            return MALFORMED
        while n8:
            read_u8(body, &v8)
            n8 -= 1
            if h.n_formats < MAX_SMALL:
                h.formats[h.n_formats] = v8
                h.n_formats += 1
            else:
                h.limited = True
        return OK
    if etype == EXT_KEY_SHARE:
        if not read_u16(body, &n16) or n16 > body.n:
            return MALFORMED
        cursor_init(&shares, body.p, n16)
        while shares.n >= 4:
            read_u16(&shares, &group)
            read_u16(&shares, &klen)
            if not skip(&shares, klen):
                return MALFORMED
            if h.n_shares < MAX_SMALL:
                h.shares[h.n_shares] = group
                h.n_shares += 1
            else:
                h.limited = True
        return OK
    if etype == EXT_ENCRYPTED_CLIENT_HELLO:
        h.ech = True
    return OK


cdef int client_hello(const uint8_t* p, size_t n, Hello* h) noexcept nogil:
    cdef Cursor c, exts, body
    cdef uint8_t sid_len, comp_len
    cdef uint16_t clen, elen, etype, blen
    cdef int st
    cursor_init(&c, p, n)
    if not read_u16(&c, &h.version) or not skip(&c, 32):        # legacy_version, random
        return TRUNCATED
    if not read_u8(&c, &sid_len) or not skip(&c, sid_len):
        return TRUNCATED
    if not read_u16(&c, &clen):
        return TRUNCATED
    if clen > c.n:
        return TRUNCATED
    st = u16_list(&c, clen, h.ciphers, MAX_CIPHERS, &h.n_ciphers, &h.limited)
    if st != OK:
        return st
    if not read_u8(&c, &comp_len) or not skip(&c, comp_len):
        return TRUNCATED
    if c.n == 0:                # no extensions at all (TLS 1.0 era clients)
        return OK
    if not read_u16(&c, &elen):
        return TRUNCATED
    if elen > c.n:
        return TRUNCATED
    cursor_init(&exts, c.p, elen)
    while exts.n:
        if not read_u16(&exts, &etype) or not read_u16(&exts, &blen) or blen > exts.n:
            return MALFORMED
        cursor_init(&body, exts.p, blen)
        skip(&exts, blen)
        if h.n_exts < MAX_EXTENSIONS:
            h.exts[h.n_exts] = etype
            h.n_exts += 1
        else:
            h.limited = True
        st = client_extension(etype, &body, h)
        if st != OK:
            return st
    return OK


_md5 = hashlib.md5
_sha256 = hashlib.sha256
EMPTY_HASH = "000000000000"  # JA4: a part with no values


cdef tuple md5_of(Text* t):
    """(md5 hex, text) of a JA3 or JA3S string."""
    full = PyBytes_FromStringAndSize(t.p, t.n)
    return _md5(full, usedforsecurity=False).hexdigest(), full.decode("ascii")


cdef str hash12(Text* t):
    """JA4's truncated sha256 of a hex list, or the empty hash of no values."""
    if t.n == 0:
        return EMPTY_HASH
    return _sha256(PyBytes_FromStringAndSize(t.p, t.n)).hexdigest()[:12]


cdef tuple client_ja3(Hello* h):
    # every list at its cap, each value at its widest
    cdef char buf[DEC_CHARS * (1 + MAX_CIPHERS + MAX_EXTENSIONS + MAX_LIST + MAX_SMALL) + 4]
    cdef Text t
    t.p, t.n, t.cap = buf, 0, sizeof(buf)
    ja3_text(&t, h.version, h.ciphers, h.n_ciphers, h.exts, h.n_exts, h.groups, h.n_groups,
             h.formats, h.n_formats)
    return md5_of(&t)


cdef str client_ja4(Hello* h, char transport):
    """JA4 (technical_details/JA4.md): readable part, sorted ciphers, sorted extensions
    without SNI and ALPN followed by the signature algorithms in wire order."""
    cdef uint16_t values[MAX_CIPHERS]
    cdef char cipher_buf[HEX_CHARS * MAX_CIPHERS + 1]
    cdef char ext_buf[HEX_CHARS * (MAX_EXTENSIONS + MAX_LIST) + 1]
    cdef char head[16]
    cdef Text a, c, e
    cdef int n_ciphers, n_exts, n_listed, n_sigalgs
    cdef const uint8_t* alpn = NULL
    cdef int alpn_len = 0
    cdef uint8_t first_len
    n_exts = kept(h.exts, h.n_exts, values, False)
    n_ciphers = kept(h.ciphers, h.n_ciphers, values, False)
    if h.alpn != NULL and h.alpn_len >= 1:  # the first protocol id of the list
        first_len = h.alpn[0]
        if 1 + <int>first_len <= h.alpn_len:
            alpn = h.alpn + 1
            alpn_len = first_len
    a.p, a.n, a.cap = head, 0, sizeof(head)
    ja4_a(&a, transport, h.versions, h.n_versions, h.version, h.has_sni, n_ciphers, n_exts,
          alpn, alpn_len)
    c.p, c.n, c.cap = cipher_buf, 0, sizeof(cipher_buf)
    sort_u16(values, n_ciphers)
    put_hex_list(&c, values, n_ciphers)
    e.p, e.n, e.cap = ext_buf, 0, sizeof(ext_buf)
    n_listed = kept(h.exts, h.n_exts, values, True)
    sort_u16(values, n_listed)
    if n_listed:
        put_hex_list(&e, values, n_listed)
        n_sigalgs = kept(h.sigalgs, h.n_sigalgs, values, False)
        if n_sigalgs:
            put_char(&e, b"_")
            put_hex_list(&e, values, n_sigalgs)
    return f"{head[:a.n].decode('ascii')}_{hash12(&c)}_{hash12(&e)}"


cdef list u16_py(const uint16_t* values, int n):
    return [values[i] for i in range(n)]


cdef list alpn_py(const uint8_t* p, uint16_t n):
    """The protocol ids of an ALPN protocol_name_list (RFC 7301 section 3.1), as bytes."""
    cdef Cursor c
    cdef uint8_t ln
    cdef const uint8_t* data
    ids = []
    if p == NULL:
        return ids
    cursor_init(&c, p, n)
    while c.n:
        if not read_u8(&c, &ln) or not take(&c, ln, &data):
            break
        ids.append(PyBytes_FromStringAndSize(<const char*>data, ln))
    return ids


def parse_client_hello(const unsigned char[::1] body, bint quic=False):
    """Parses a ClientHello body; returns (status, fields dict or None).

    fields: version, ciphers, extensions (types in wire order), sni (bytes or
    None), has_sni, alpn (list of bytes), supported_versions, groups,
    point_formats, signature_algorithms, key_share_groups, ech, and the
    fingerprints ja3 (md5 hex), ja3_full and ja4 ("q" first for a hello
    carried by QUIC). GREASE values are kept in the lists; the fingerprints
    drop them. A hello that breaks off (status other than OK and LIMIT) still
    gives the fields read before the break; only a body without a version
    gives None.
    """
    cdef Hello h
    cdef int st
    if body.shape[0] == 0:
        return TRUNCATED, None
    h.n_ciphers = h.n_exts = h.n_versions = h.n_groups = 0
    h.n_formats = h.n_sigalgs = h.n_shares = 0
    h.has_sni = h.ech = h.limited = False
    h.sni = h.alpn = NULL
    h.sni_len = h.alpn_len = 0
    h.version = 0
    st = client_hello(&body[0], body.shape[0], &h)
    if st == TRUNCATED and body.shape[0] < 2:
        return st, None
    if st == OK and h.limited:
        st = LIMIT
    ja3, ja3_full = client_ja3(&h)
    return st, {
        "version": h.version,
        "ciphers": u16_py(h.ciphers, h.n_ciphers),
        "extensions": u16_py(h.exts, h.n_exts),
        "sni": (PyBytes_FromStringAndSize(<const char*>h.sni, h.sni_len)
                if h.sni != NULL else None),
        "has_sni": h.has_sni,
        "alpn": alpn_py(h.alpn, h.alpn_len),
        "supported_versions": u16_py(h.versions, h.n_versions),
        "groups": u16_py(h.groups, h.n_groups),
        "point_formats": [h.formats[i] for i in range(h.n_formats)],
        "signature_algorithms": u16_py(h.sigalgs, h.n_sigalgs),
        "key_share_groups": u16_py(h.shares, h.n_shares),
        "ech": h.ech,
        "ja3": ja3,
        "ja3_full": ja3_full,
        "ja4": client_ja4(&h, b"q" if quic else b"t"),
    }


def parse_server_hello(const unsigned char[::1] body):
    """Parses a ServerHello body; returns (status, fields dict or None).

    fields: version (legacy), cipher, extensions (types in wire order),
    selected_version (from supported_versions, RFC 8446 section 4.2.1, or
    None), alpn (the protocol the server chose, bytes, or None), ja3s (md5
    hex) and ja3s_full.
    """
    cdef Cursor c
    cdef Text t
    if body.shape[0] == 0:
        return TRUNCATED, None
    cursor_init(&c, &body[0], body.shape[0])
    # each extension takes at least 4 bytes of the body and at most DEC_CHARS of the text
    t.cap = DEC_CHARS * (3 + body.shape[0] // 4)
    t.n = 0
    t.p = <char*>PyMem_Malloc(t.cap)
    if t.p == NULL:
        raise MemoryError()
    try:
        return server_hello(&c, &t)
    finally:
        PyMem_Free(t.p)


cdef tuple server_hello(Cursor* c, Text* t):
    """The ServerHello walk; t receives the JA3S text (version,cipher,extensions)."""
    cdef Cursor exts, body_c
    cdef uint16_t version, cipher, elen, etype, blen, sel
    cdef uint8_t sid_len, comp
    cdef const uint8_t* data
    cdef uint16_t alen
    cdef uint8_t plen
    cdef bint listed = False
    if not read_u16(c, &version) or not skip(c, 32):
        return TRUNCATED, None
    if not read_u8(c, &sid_len) or not skip(c, sid_len):
        return TRUNCATED, None
    if not read_u16(c, &cipher) or not read_u8(c, &comp):
        return TRUNCATED, None
    put_dec(t, version)
    put_char(t, b",")
    put_dec(t, cipher)
    put_char(t, b",")
    extensions = []
    selected = None
    alpn = None
    if c.n >= 2:
        read_u16(c, &elen)
        if elen > c.n:
            return TRUNCATED, None
        cursor_init(&exts, c.p, elen)
        while exts.n:
            if not read_u16(&exts, &etype) or not read_u16(&exts, &blen) or blen > exts.n:
                return MALFORMED, None
            cursor_init(&body_c, exts.p, blen)
            skip(&exts, blen)
            extensions.append(etype)
            put_dec_item(t, etype, &listed)
            if etype == EXT_SUPPORTED_VERSIONS and read_u16(&body_c, &sel):
                selected = sel
            elif etype == EXT_ALPN and read_u16(&body_c, &alen) and read_u8(&body_c, &plen):
                if take(&body_c, plen, &data):
                    alpn = PyBytes_FromStringAndSize(<const char*>data, plen)
    ja3s, ja3s_full = md5_of(t)
    return OK, {"version": version, "cipher": cipher, "extensions": extensions,
                "selected_version": selected, "alpn": alpn, "ja3s": ja3s,
                "ja3s_full": ja3s_full}


def parse_sslv2_client_hello(const unsigned char[::1] record):
    """An SSL 2.0 CLIENT-HELLO record (two-byte header with the high bit set).

    Returns (status, {"version", "cipher_specs"}); cipher specs are 3-byte values.
    """
    cdef Cursor c
    cdef uint8_t b0, b1, mtype
    cdef uint16_t version, spec_len, sid_len, chal_len
    cdef uint32_t spec = 0
    if record.shape[0] == 0:
        return TRUNCATED, None
    cursor_init(&c, &record[0], record.shape[0])
    read_u8(&c, &b0)
    if not (b0 & 0x80) or not read_u8(&c, &b1) or not read_u8(&c, &mtype):
        return MALFORMED if not (b0 & 0x80) else TRUNCATED, None
    if mtype != 1:
        return UNSUPPORTED, None
    if (not read_u16(&c, &version) or not read_u16(&c, &spec_len)
            or not read_u16(&c, &sid_len) or not read_u16(&c, &chal_len)):
        return TRUNCATED, None
    if spec_len % 3 or spec_len > c.n:
        return MALFORMED, None
    specs = []
    while spec_len:
        read_u24(&c, &spec)
        specs.append(spec)
        spec_len -= 3
    return OK, {"version": version, "cipher_specs": specs}
