# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""DNS message parser (RFC 1035 section 4) over untrusted bytes.

`parse_dns(msg)` returns (status, message). A message whose header and
question section parse is returned even when a later section is broken;
its `problem` names the first failure, so the caller can count it and still
report the transaction, as analysers of record do.

Names are rendered as text with the bytes that are not printable escaped:
control bytes as C escapes or three octal digits (\\a, \\r, \\000, \\177, as
Wireshark renders them), bytes from 0x80 as octal too, and "." or "\\"
inside a label escaped with a backslash so the rendering stays lossless.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t

from _addrtext cimport ipv4_text, ipv6_text
from _wire cimport LIMIT, MALFORMED, OK, TRUNCATED, UNSUPPORTED, load_u16, load_u32

import base64
import socket

cdef enum:
    MAX_NAME_WIRE = 255         # RFC 1035 section 3.1
    MAX_POINTER_HOPS = 128
    MAX_NAME_TEXT = 255 * 4 + 8  # every byte escaped to at most 4 characters
    MAX_RRS = 512               # per section; more is counted as LIMIT
    HEADER_LEN = 12

cdef enum:
    T_A = 1
    T_NS = 2
    T_MD = 3
    T_MF = 4
    T_CNAME = 5
    T_SOA = 6
    T_MB = 7
    T_MG = 8
    T_MR = 9
    T_PTR = 12
    T_HINFO = 13
    T_MX = 15
    T_TXT = 16
    T_AAAA = 28
    T_SRV = 33
    T_DNAME = 39
    T_OPT = 41
    T_SPF = 99
    T_SVCB = 64
    T_HTTPS = 65
    T_CAA = 257

# SvcParamKeys (RFC 9460 section 14.3.2)
SVC_KEY_NAMES = {0: "mandatory", 1: "alpn", 2: "no-default-alpn", 3: "port", 4: "ipv4hint",
                 5: "ech", 6: "ipv6hint", 7: "dohpath", 8: "ohttp"}

cdef const char* C_ESCAPES = b"\x07a\x08b\x09t\x0an\x0bv\x0cf\x0dr"


cdef inline int escape_byte(uint8_t b, char* out) noexcept nogil:
    """Writes the text form of one label byte; returns how many characters."""
    cdef int k
    if 0x20 <= b < 0x7F:
        if b == 0x2E or b == 0x5C:      # "." and "\" inside a label
            out[0] = 0x5C
            out[1] = b
            return 2
        out[0] = b
        return 1
    for k in range(0, 14, 2):
        if <uint8_t>C_ESCAPES[k] == b:
            out[0] = 0x5C
            out[1] = C_ESCAPES[k + 1]
            return 2
    out[0] = 0x5C
    out[1] = 0x30 + (b >> 6)
    out[2] = 0x30 + ((b >> 3) & 7)
    out[3] = 0x30 + (b & 7)
    return 4


cdef int read_name(const uint8_t* msg, size_t msglen, size_t* pos, char* out,
                   size_t* outlen, bint* end_known) noexcept nogil:
    """Reads a possibly compressed name at pos into out as text.

    On success pos moves past the name as it sits in the record. Compression
    pointers (RFC 1035 section 4.1.4) may point anywhere in the message, as
    Suricata and Wireshark accept; at most MAX_POINTER_HOPS are followed, so a
    loop ends as LIMIT. A name over 255 octets in wire form is LIMIT too.
    When a failure still tells where the name ends in the record (a pointer
    loop, an extended label type, an overlong name), end_known is set and pos
    moves past it, so the fields after the name stay readable; a name cut by
    the end of the message leaves nothing known.
    """
    cdef size_t p = pos[0]
    cdef size_t wire = 0
    cdef size_t o = 0
    cdef int hops = 0
    cdef bint jumped = False
    cdef int status = OK
    cdef uint8_t ln
    cdef size_t k
    end_known[0] = False
    while True:
        if p >= msglen:
            end_known[0] = False
            return TRUNCATED
        ln = msg[p]
        if ln == 0:
            if not jumped:
                pos[0] = p + 1
            end_known[0] = True
            break
        if (ln & 0xC0) == 0xC0:
            if p + 1 >= msglen:
                end_known[0] = False
                return TRUNCATED
            if not jumped:
                pos[0] = p + 2
                jumped = True
                end_known[0] = True
            if status != OK:
                return status       # too long already, and the end is known: stop here
            hops += 1
            if hops > MAX_POINTER_HOPS:
                return LIMIT
            p = ((ln & 0x3F) << 8) | msg[p + 1]
            continue
        if ln & 0xC0:
            # Extended label types (RFC 6891 section 5, 0x40) have no length we
            # know: after at least one label the name is taken to end here (as
            # Wireshark does); as the first label nothing is known, nor for the
            # reserved type 0x80.
            if (ln & 0xC0) != 0x40 or wire == 0:
                end_known[0] = False
                return MALFORMED if (ln & 0xC0) != 0x40 else UNSUPPORTED
            if not jumped:
                pos[0] = p + 1
                end_known[0] = True
            return UNSUPPORTED
        if p + 1 + ln > msglen:
            end_known[0] = False
            return TRUNCATED
        wire += ln + 1
        if wire + 1 > MAX_NAME_WIRE:
            if jumped:
                return LIMIT        # the end in the record is known: no need to walk on
            status = LIMIT          # walk on to the end in the record, write no more text
        if status == OK:
            if o > 0:
                out[o] = 0x2E
                o += 1
            for k in range(ln):
                o += escape_byte(msg[p + 1 + k], out + o)
        p += 1 + ln
    outlen[0] = o
    return status


cdef str name_at(const uint8_t* msg, size_t msglen, size_t* pos, int* status,
                 bint* end_known=NULL):
    """The name at pos as text, or None with status set (see read_name)."""
    cdef char buf[MAX_NAME_TEXT]
    cdef size_t n = 0
    cdef bint known = False
    status[0] = read_name(msg, msglen, pos, buf, &n, &known)
    if end_known != NULL:
        end_known[0] = known
    if status[0] != OK:
        return None
    if n == 0:
        return "."
    return buf[:n].decode("ascii")


cdef str within(str name, size_t pos, size_t end, int* status):
    """A name read inside rdata must end inside it."""
    if name is not None and pos > end:
        status[0] = MALFORMED
        return None
    return name


cdef str char_string_text(const uint8_t* p, size_t n):
    """Text of a character-string (at most 255 octets by RFC 1035; longer input is cut)."""
    cdef char buf[1024]
    cdef size_t o = 0
    cdef size_t k
    for k in range(n if n <= 255 else 255):
        if p[k] == 0x22:        # quotes inside character-strings
            buf[o] = 0x5C
            buf[o + 1] = 0x22
            o += 2
        elif p[k] == 0x2E:
            buf[o] = 0x2E
            o += 1
        else:
            o += escape_byte(p[k], buf + o)
    return buf[:o].decode("ascii")


cdef object svcb_text(const uint8_t* msg, size_t msglen, size_t start, size_t end,
                      int* status):
    """SVCB/HTTPS rdata (RFC 9460): "priority target key=value ..."."""
    cdef size_t pos = start
    cdef uint16_t prio, key, vlen
    cdef str target
    cdef size_t q
    if end - pos < 2:
        status[0] = TRUNCATED
        return None
    prio = load_u16(msg + pos)
    pos += 2
    target = within(name_at(msg, msglen, &pos, status), pos, end, status)
    if target is None:
        return None
    parts = [str(prio), target]
    while pos < end:
        if end - pos < 4:
            status[0] = TRUNCATED
            return None
        key = load_u16(msg + pos)
        vlen = load_u16(msg + pos + 2)
        pos += 4
        if end - pos < vlen:
            status[0] = TRUNCATED
            return None
        name = SVC_KEY_NAMES.get(key, f"key{key}")
        if key == 1:            # alpn: length-prefixed protocol ids
            ids = []
            q = pos
            while q < pos + vlen:
                if q + 1 + msg[q] > pos + vlen:
                    status[0] = MALFORMED
                    return None
                ids.append(char_string_text(msg + q + 1, msg[q]).replace(",", "\\,"))
                q += 1 + msg[q]
            parts.append(f"alpn={','.join(ids)}")
        elif key == 3 and vlen == 2:
            parts.append(f"port={load_u16(msg + pos)}")
        elif (key == 4 and vlen % 4 == 0) or (key == 6 and vlen % 16 == 0):
            hints = []
            step = 4 if key == 4 else 16
            for q in range(pos, pos + vlen, step):
                hints.append(ipv4_text(msg + q) if key == 4 else ipv6_text(msg + q))
            parts.append(f"{name}={','.join(hints)}")
        elif key == 5:
            raw = PyBytes_FromStringAndSize(<const char*>(msg + pos), vlen)
            parts.append("ech=" + base64.b64encode(raw).decode("ascii"))
        elif vlen == 0:
            parts.append(name)
        else:
            parts.append(f"{name}=<{vlen} bytes>")
        pos += vlen
    status[0] = OK
    return " ".join(parts)


cdef object rdata_text(const uint8_t* msg, size_t msglen, uint16_t rtype, size_t start,
                       uint16_t rdlen, int* status):
    """Presentation text of the rdata of common types; RFC 3597 length form for others."""
    cdef size_t pos = start
    cdef size_t end = start + rdlen
    cdef str a, b
    cdef size_t q
    status[0] = OK
    if rtype == T_A:
        if rdlen != 4:
            status[0] = MALFORMED
            return None
        return ipv4_text(msg + start)
    if rtype == T_AAAA:
        if rdlen != 16:
            status[0] = MALFORMED
            return None
        return ipv6_text(msg + start)
    if rtype in (T_CNAME, T_NS, T_PTR, T_DNAME, T_MB, T_MG, T_MR, T_MD, T_MF):
        a = name_at(msg, msglen, &pos, status)
        return within(a, pos, end, status)
    if rtype == T_MX:
        if rdlen < 3:
            status[0] = TRUNCATED
            return None
        pos += 2
        a = within(name_at(msg, msglen, &pos, status), pos, end, status)
        return None if a is None else f"{load_u16(msg + start)} {a}"
    if rtype == T_SRV:
        if rdlen < 7:
            status[0] = TRUNCATED
            return None
        pos += 6
        a = within(name_at(msg, msglen, &pos, status), pos, end, status)
        if a is None:
            return None
        return (f"{load_u16(msg + start)} {load_u16(msg + start + 2)} "
                f"{load_u16(msg + start + 4)} {a}")
    if rtype == T_SOA:
        a = within(name_at(msg, msglen, &pos, status), pos, end, status)
        if a is None:
            return None
        b = within(name_at(msg, msglen, &pos, status), pos, end, status)
        if b is None:
            return None
        if end - pos < 20:
            status[0] = TRUNCATED
            return None
        return (f"{a} {b} {load_u32(msg + pos)} {load_u32(msg + pos + 4)} "
                f"{load_u32(msg + pos + 8)} {load_u32(msg + pos + 12)} {load_u32(msg + pos + 16)}")
    if rtype == T_TXT or rtype == T_SPF or rtype == T_HINFO:
        # each character-string quoted, as in master files (RFC 1035 section 5.1)
        strings = []
        q = start
        while q < end:
            if q + 1 + msg[q] > end:
                status[0] = MALFORMED
                return None
            strings.append(f'"{char_string_text(msg + q + 1, msg[q])}"')
            q += 1 + msg[q]
        return " ".join(strings)
    if rtype == T_SVCB or rtype == T_HTTPS:
        return svcb_text(msg, msglen, start, end, status)
    if rtype == T_CAA:
        if rdlen < 2 or 2 + msg[start + 1] > rdlen:
            status[0] = MALFORMED
            return None
        q = 2 + msg[start + 1]     # CAA: flags, tag length, tag, value (RFC 8659)
        return (f"{msg[start]} {char_string_text(msg + start + 2, msg[start + 1])} "
                f"\"{char_string_text(msg + start + q, rdlen - q)}\"")
    return f"\\# {rdlen}"


cdef object edns_info(const uint8_t* msg, size_t start, uint16_t rdlen, uint16_t rclass,
                      uint32_t ttl):
    """OPT pseudo-RR (RFC 6891 section 6.1): payload size, version, DO, option codes."""
    cdef size_t q = start
    cdef size_t end = start + rdlen
    cdef uint16_t code, olen, family
    cdef uint8_t source_prefix
    options = []
    ecs = None
    while end - q >= 4:
        code = load_u16(msg + q)
        olen = load_u16(msg + q + 2)
        q += 4
        if end - q < olen:
            break
        options.append(code)
        if code == 8 and olen >= 4:     # Client Subnet (RFC 7871 section 6)
            family = load_u16(msg + q)
            source_prefix = msg[q + 2]
            raw = bytearray(16 if family == 2 else 4)
            addr_len = min(olen - 4, len(raw))
            raw[:addr_len] = PyBytes_FromStringAndSize(<const char*>(msg + q + 4), addr_len)
            if family == 1:
                ecs = f"{socket.inet_ntop(socket.AF_INET, bytes(raw))}/{source_prefix}"
            elif family == 2:
                ecs = f"{socket.inet_ntop(socket.AF_INET6, bytes(raw))}/{source_prefix}"
        q += olen
    return {
        "udp_size": rclass,
        "rcode_high": ttl >> 24,
        "version": (ttl >> 16) & 0xFF,
        "do": bool(ttl & 0x8000),
        "options": options,
        "ecs": ecs,
    }


def parse_dns(data):
    """Parses one DNS message; returns (status, message tuple or None).

    message = (id, flags, counts, questions, answers, edns, problem) where
    counts = (qd, an, ns, ar), questions = [(name, qtype, qclass)],
    answers = [(name, rtype, ttl, text)] for the answer section,
    edns = dict or None, problem = None or "<section>.<status>" for the first
    thing that did not parse. Only a message shorter than 4 bytes (id and
    flags) gives no message; a name that does not parse is None, and parsing goes
    on after it when its end in the record is known. A message cut inside its
    header (an IP length shorter than the packet, say) still has an id and
    flags: it is returned with problem "header.truncated".
    """
    cdef const unsigned char[::1] view
    cdef const uint8_t* raw
    if type(data) is bytes:  # what the trackers pass: read in place, no buffer to acquire
        raw = <const uint8_t*>PyBytes_AS_STRING(data)
        return parse_message(raw, <size_t>PyBytes_GET_SIZE(data))
    view = data
    return parse_message(&view[0] if view.shape[0] else NULL, <size_t>view.shape[0])


cdef tuple parse_message(const uint8_t* msg, size_t n):
    cdef size_t pos = HEADER_LEN
    cdef uint16_t counts[4]
    cdef uint16_t rtype, rclass, rdlen
    cdef uint32_t ttl
    cdef int status = OK
    cdef int section, k
    cdef bint end_known = False
    if n < 4:
        return TRUNCATED, None
    if n < HEADER_LEN:
        return OK, (load_u16(msg), load_u16(msg + 2), (0, 0, 0, 0), [], [], None,
                    "header.truncated")
    for k in range(4):
        counts[k] = load_u16(msg + 4 + 2 * k)
    questions = []
    answers = []
    edns = None
    problem = None
    stop = False
    for k in range(counts[0]):
        if k >= MAX_RRS:
            problem = "question.limit"
            stop = True
            break
        qname = name_at(msg, n, &pos, &status, &end_known)
        if qname is None:
            problem = problem or "question." + STATUS_TEXT[status]
            if not end_known:
                stop = True
                break
        if n - pos < 4:
            problem = problem or "question.truncated"
            stop = True
            break
        questions.append((qname, load_u16(msg + pos), load_u16(msg + pos + 2)))
        pos += 4
    for section in range(1, 4):
        if stop:
            break
        for k in range(counts[section]):
            if k >= MAX_RRS:
                problem = problem or SECTION_TEXT[section] + ".limit"
                stop = True
                break
            rname = name_at(msg, n, &pos, &status, &end_known)
            if rname is None:
                problem = problem or SECTION_TEXT[section] + "." + STATUS_TEXT[status]
                if not end_known:
                    stop = True
                    break
            if n - pos < 10:
                problem = problem or SECTION_TEXT[section] + ".truncated"
                stop = True
                break
            rtype = load_u16(msg + pos)
            rclass = load_u16(msg + pos + 2)
            ttl = load_u32(msg + pos + 4)
            rdlen = load_u16(msg + pos + 8)
            pos += 10
            if n - pos < rdlen:
                problem = problem or SECTION_TEXT[section] + ".truncated"
                stop = True
                break
            if section == 1:
                text = rdata_text(msg, n, rtype, pos, rdlen, &status)
                if text is None:
                    problem = problem or "answer." + STATUS_TEXT[status]
                    text = f"\\# {rdlen}"
                answers.append((rname, rtype, ttl, text))
            elif rtype == T_OPT and section == 3 and edns is None:
                edns = edns_info(msg, pos, rdlen, rclass, ttl)
            pos += rdlen
    return OK, (load_u16(msg), load_u16(msg + 2), (counts[0], counts[1], counts[2], counts[3]),
                questions, answers, edns, problem)


STATUS_TEXT = ("ok", "truncated", "unsupported", "malformed", "limit")
SECTION_TEXT = ("question", "answer", "authority", "additional")
