# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""QUIC long headers and Initial payload frames (RFC 9000 sections 16, 17.2, 19).

`parse_long_header` reads the unprotected part of a long-header packet and
where it ends inside a datagram (coalesced packets, section 12.2);
`crypto_frames` walks a decrypted Initial payload and returns its CRYPTO
frames. Decryption itself (RFC 9001 section 5) is in agent/quic.py, with the
cryptography package.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from _wire cimport (MALFORMED, OK, TRUNCATED, UNSUPPORTED, Cursor, cursor_init, load_u32,
                    read_u8, skip, take)

cdef enum:
    MAX_CID = 20                # RFC 9000 section 17.2
    MAX_ACK_RANGES = 256

# Frame types allowed in Initial packets (RFC 9000 section 12.4, table 3)
cdef enum:
    F_PADDING = 0x00
    F_PING = 0x01
    F_ACK = 0x02
    F_ACK_ECN = 0x03
    F_CRYPTO = 0x06
    F_CONNECTION_CLOSE = 0x1C
    F_CONNECTION_CLOSE_APP = 0x1D
    F_CRYPTO_GOOGLE = 0x08

cdef enum:
    QUIC_V2 = 0x6B3343CF
    QUIC_V2_DRAFT = 0x709A50C4


cdef inline bint read_varint(Cursor* c, uint64_t* out) noexcept nogil:
    """Variable-length integer (RFC 9000 section 16): the top two bits give its size."""
    cdef int n, i
    cdef uint64_t v
    if c.n < 1:
        return False
    n = 1 << (c.p[0] >> 6)
    if c.n < <size_t>n:
        return False
    v = c.p[0] & 0x3F
    for i in range(1, n):
        v = (v << 8) | c.p[i]
    c.p += n
    c.n -= n
    out[0] = v
    return True


cdef inline unsigned int packet_type(unsigned int first_byte, unsigned int version) noexcept:
    """The long-header packet type: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry.

    QUIC v2 rotates the codes (RFC 9369 section 3.2).
    """
    cdef unsigned int bits = (first_byte >> 4) & 0x3
    if version == QUIC_V2 or version == QUIC_V2_DRAFT:
        return (bits + 3) & 0x3
    return bits


def parse_long_header(const unsigned char[::1] data, Py_ssize_t start=0):
    """Reads the long header of the packet at `start` of a datagram.

    Returns (status, fields): first_byte, version, dcid, scid (bytes), type,
    and for Initial packets token_length, pn_offset (from the datagram start)
    and end (where the packet ends: the next coalesced packet starts there).
    """
    cdef Cursor c
    cdef uint8_t b0, dlen, slen
    cdef uint32_t version
    cdef const uint8_t* dcid
    cdef const uint8_t* scid
    cdef uint64_t token_len, length
    cdef Py_ssize_t pn_offset
    if start < 0 or start >= data.shape[0]:
        return TRUNCATED, None
    cursor_init(&c, &data[start], data.shape[0] - start)
    if c.n < 7:
        return TRUNCATED, None
    read_u8(&c, &b0)
    if not (b0 & 0x80):
        return UNSUPPORTED, None                # a short header
    version = load_u32(c.p)
    skip(&c, 4)
    read_u8(&c, &dlen)
    if dlen > MAX_CID or not take(&c, dlen, &dcid):
        return MALFORMED if dlen > MAX_CID else TRUNCATED, None
    if not read_u8(&c, &slen) or slen > MAX_CID or not take(&c, slen, &scid):
        return MALFORMED, None
    ptype = packet_type(b0, version)
    fields = {
        "first_byte": b0,
        "version": version,
        "dcid": PyBytes_FromStringAndSize(<const char*>dcid, dlen),
        "scid": PyBytes_FromStringAndSize(<const char*>scid, slen),
        "type": ptype,
    }
    if version == 0 or ptype == 3:
        return OK, fields                       # version negotiation, Retry: no length
    if ptype == 0:
        if not read_varint(&c, &token_len) or token_len > c.n:
            return TRUNCATED, None
        skip(&c, token_len)
        fields["token_length"] = token_len
    if not read_varint(&c, &length):
        return TRUNCATED, None
    pn_offset = data.shape[0] - <Py_ssize_t>c.n
    if length > c.n:
        return TRUNCATED, None
    fields["pn_offset"] = pn_offset
    fields["end"] = pn_offset + <Py_ssize_t>length
    return OK, fields


def crypto_frames(const unsigned char[::1] payload, bint google=False):
    """The CRYPTO frames of a decrypted Initial payload: (status, [(offset, data)]).

    Walks PADDING, PING, ACK and CONNECTION_CLOSE; any other frame type is not
    allowed in an Initial packet, so the walk stops there with MALFORMED and
    the frames read so far. Google's T050/T051 (`google`) number the CRYPTO
    frame 0x08, with the same layout.
    """
    cdef Cursor c
    cdef uint64_t ftype, offset, length, v, ranges, _
    cdef const uint8_t* data
    frames = []
    if payload.shape[0] == 0:
        return TRUNCATED, frames
    cursor_init(&c, &payload[0], payload.shape[0])
    while c.n:
        if not read_varint(&c, &ftype):
            return TRUNCATED, frames
        if ftype == F_PADDING or ftype == F_PING:
            continue
        if ftype == F_CRYPTO or (google and ftype == F_CRYPTO_GOOGLE):
            if not read_varint(&c, &offset) or not read_varint(&c, &length):
                return TRUNCATED, frames
            if not take(&c, length, &data):
                return TRUNCATED, frames
            frames.append((offset, PyBytes_FromStringAndSize(<const char*>data, length)))
        elif ftype == F_ACK or ftype == F_ACK_ECN:
            # largest, delay, range count, first range, then (gap, length) pairs
            if (not read_varint(&c, &v) or not read_varint(&c, &v)
                    or not read_varint(&c, &ranges) or not read_varint(&c, &v)):
                return TRUNCATED, frames
            if ranges > MAX_ACK_RANGES:
                return MALFORMED, frames
            for _ in range(ranges * 2 + (3 if ftype == F_ACK_ECN else 0)):
                if not read_varint(&c, &v):
                    return TRUNCATED, frames
        elif ftype == F_CONNECTION_CLOSE or ftype == F_CONNECTION_CLOSE_APP:
            if not read_varint(&c, &v):
                return TRUNCATED, frames
            if ftype == F_CONNECTION_CLOSE and not read_varint(&c, &v):
                return TRUNCATED, frames
            if not read_varint(&c, &length) or not skip(&c, length):
                return TRUNCATED, frames
        else:
            return MALFORMED, frames
    return OK, frames
