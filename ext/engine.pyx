# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The per-packet loop: decode, reassemble fragments, update flows, pick events.

`Engine.feed` walks a whole batch of frame descriptors in C. A bulk packet
costs a decode, a hash lookup and a few additions; only three things become
Python objects, appended to the output list in packet order:

- (EV_TICK, now_ns) when the packet clock enters a new second; flow expiry
  runs right after, so Python timers that run on ticks see the same order of
  events whatever the batch size.
- (EV_PAYLOAD, ...) for a packet Python must see: DNS on a DNS port; for TCP,
  a data segment that starts like a TLS ClientHello (or arrives out of order)
  among the first segments of a flow, then both directions of a flow whose
  hello started; for UDP, a QUIC long-header Initial. Python clears an
  interest when it has what it needs; every forwarding is capped per flow.
- (EV_FLOW, ...) when a flow ends: idle, FIN, RST, evicted, interim, shutdown.

Both flow-carrying outputs end with the client's and the server's address as
text and the flow's Community ID, computed here once per flow.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcmp, memcpy, memset

from _addrtext cimport address_text
from _communityid cimport COMMUNITY_ID_LEN, community_id
from _decode cimport (FRAGMENT, IPPROTO_TCP, IPPROTO_UDP, LAYER_FRAG, N_LAYERS, OPT_KEY_TUNNEL,
                      OPT_KEY_VLAN, Packet, decode_frame, decode_reassembled)
from _flowtable cimport (CLASS_OTHER, CLASS_TCP, CLASS_TCP_CLOSED, CLASS_UDP, N_CLASSES,
                         ST_FIN_DOWN, ST_FIN_UP, ST_RST, Flow, FlowKey, FlowTable, ft_find, ft_free,
                         ft_hash, ft_init, ft_insert, ft_oldest, ft_remove, lru_touch)
from _frame cimport FRAME_VLAN_STRIPPED, FrameDesc
from _reasm cimport (N_FR, Datagram, FragKey, Reasm, rs_add, rs_drop_all, rs_expire, rs_free,
                     rs_init, rs_release)
from _wire cimport LIMIT, N_STATUS, OK, load_u32

# Output kinds
EV_TICK = 0
EV_PAYLOAD = 1
EV_FLOW = 2

# Why a flow ended (index into END_NAMES)
END_NAMES = ("idle", "fin", "rst", "interim", "evicted", "shutdown")
cdef enum:
    END_IDLE = 0
    END_FIN = 1
    END_RST = 2
    END_INTERIM = 3
    END_EVICTED = 4
    END_SHUTDOWN = 5

# What the engine forwards to Python for a flow (Flow.interest bits)
INT_DNS = 1
INT_TLS_PROBE = 2
INT_FOLLOW_UP = 4           # TLS: forward the client-to-server direction
INT_FOLLOW_DOWN = 8         # TLS: forward the server-to-client direction
INT_QUIC = 16
cdef enum:
    I_DNS = 1
    I_TLS_PROBE = 2
    I_FOLLOW_UP = 4
    I_FOLLOW_DOWN = 8
    I_QUIC = 16

# Why a payload was forwarded (a bit set in EV_PAYLOAD's `why`)
WHY_DNS = 1
WHY_TLS = 2
WHY_QUIC = 4
cdef enum:
    W_DNS = 1
    W_TLS = 2
    W_QUIC = 4

cdef enum:
    QUIC_V2 = 0x6B3343CF

# Ports whose payload is DNS: DNS (RFC 1035), mDNS (RFC 6762), LLMNR (RFC 4795)
cdef enum:
    PORT_DNS = 53
    PORT_MDNS = 5353
    PORT_LLMNR = 5355

cdef enum:
    TCP_FIN = 0x01
    TCP_SYN = 0x02
    TCP_RST = 0x04
    TCP_ACK = 0x10

cdef enum:
    MAX_FRAG_NESTING = 2

LAYER_NAMES = ("link", "ether", "vlan", "mpls", "pppoe", "ppp", "gre", "erspan", "vxlan",
               "geneve", "teredo", "gtp", "ipv4", "ipv6", "ipv6_ext", "frag", "tcp", "udp",
               "icmp", "sctp", "tunnel")
STATUS_NAMES = ("ok", "truncated", "unsupported", "malformed", "limit")
FRAG_COUNTER_NAMES = ("fragments", "reassembled", "timeout", "evicted", "overlap", "malformed",
                      "too_big", "truncated", "no_memory")
COUNTER_NAMES = ("packets", "bytes", "flows_created", "flows_ended", "flows_evicted",
                 "interim_records", "payload_events", "payload_cap_hits", "time_backwards",
                 "bad_descriptor", "tls_events", "quic_events", "quic_cap_hits", "time_clamped")
cdef enum:
    C_PACKETS = 0
    C_BYTES = 1
    C_FLOWS_CREATED = 2
    C_FLOWS_ENDED = 3
    C_FLOWS_EVICTED = 4
    C_INTERIM = 5
    C_PAYLOAD_EVENTS = 6
    C_PAYLOAD_CAP = 7
    C_TIME_BACKWARDS = 8
    C_BAD_DESC = 9
    C_TLS_EVENTS = 10
    C_QUIC_EVENTS = 11
    C_QUIC_CAP = 12
    C_TIME_CLAMPED = 13
    N_COUNTERS = 14

DESC_SIZE = sizeof(FrameDesc)

cdef uint64_t NS = 1000000000
# The latest time the engine keeps (2262): a pcapng timestamp can be any 64-bit value, and a
# later one is taken as this, and counted, so that a time plus any timeout still fits.
cdef uint64_t MAX_TIME_NS = (<uint64_t>1 << 63) - 1


cdef inline uint64_t kept_time(uint64_t ts) noexcept nogil:
    return ts if ts <= MAX_TIME_NS else MAX_TIME_NS

cdef inline bint looks_like_server(uint16_t sport, uint16_t dport) noexcept nogil:
    """A packet from a well-known port to an ephemeral one comes from a server."""
    return sport < 1024 and dport >= 1024


cdef inline bint is_dns_port(uint16_t port) noexcept nogil:
    return port == PORT_DNS or port == PORT_MDNS or port == PORT_LLMNR


cdef inline int tls_hello_at(const uint8_t* p, uint32_t n) noexcept nogil:
    """Where a ClientHello record starts in a segment, or -1.

    A TLS handshake record holding a ClientHello (RFC 8446 section 5.1), or an
    SSL 2.0 CLIENT-HELLO (two-byte header with the high bit set), at the start;
    or right after a ChangeCipherSpec record, as the second hello after a
    HelloRetryRequest comes in middlebox-compatibility mode (RFC 8446 D.4).
    """
    cdef uint32_t at = 0
    if n >= 6 and p[0] == 0x14 and p[1] == 0x03 and p[3] == 0x00 and p[4] == 0x01:
        at = 6
    if n >= at + 6 and p[at] == 0x16 and p[at + 1] == 0x03 and p[at + 2] <= 0x04:
        return at if p[at + 5] == 0x01 else -1
    if (at == 0 and n >= 5 and (p[0] & 0x80) != 0 and p[2] == 0x01
            and (p[3] == 0x00 or p[3] == 0x03)):
        return 0
    return -1


cdef inline uint32_t hello_span(const uint8_t* p, uint32_t n) noexcept nogil:
    """Stream bytes a ClientHello that starts at p takes, TLS record headers included.

    One record holds the whole hello (the usual case): its record length. A hello
    spread over several records: the message plus five bytes per 256 of it, an
    allowance for record headers (records that small are rare; Python asks for
    more by keeping the interest when they are smaller).
    """
    cdef uint32_t record_len, message_len
    if p[0] & 0x80:                     # SSL 2.0: two-byte header, 15-bit length
        return 2 + (((p[0] & 0x7F) << 8) | p[1])
    record_len = (p[3] << 8) | p[4]
    if n < 9:
        return 5 + record_len
    message_len = 4 + ((<uint32_t>p[6] << 16) | (p[7] << 8) | p[8])
    if record_len >= message_len:
        return 5 + record_len
    return message_len + 5 * (message_len // 256 + 2)


cdef inline uint32_t first_record_span(const uint8_t* p, uint32_t n) noexcept nogil:
    """Stream bytes of the TLS record at p; just this segment when it is not a record."""
    if n >= 5 and 20 <= p[0] <= 23 and p[1] == 0x03:
        return 5 + ((p[3] << 8) | p[4])
    return n


cdef inline bint quic_initial(const uint8_t* p, uint32_t n) noexcept nogil:
    """A QUIC long-header Initial packet (RFC 9000 section 17.2.2; RFC 9369 for v2)."""
    cdef uint32_t version
    if n < 7 or (p[0] & 0xC0) != 0xC0 or p[5] > 20:
        return False
    version = load_u32(p + 1)
    if version == 0:                # version negotiation
        return False
    if version == QUIC_V2:
        return (p[0] & 0x30) == 0x10
    return (p[0] & 0x30) == 0x00


cdef inline bint seq_after(uint32_t a, uint32_t b) noexcept nogil:
    """a is later than b in TCP sequence space (RFC 9293 section 3.4)."""
    return <int32_t>(a - b) > 0


cdef class Engine:
    cdef FlowTable ft
    cdef Reasm rs
    cdef bint ready
    cdef int opts
    cdef uint64_t now
    cdef uint64_t tick_sec
    cdef uint64_t sec_end_ns  # the last nanosecond of second tick_sec
    cdef uint64_t timeout_ns[N_CLASSES]
    cdef uint64_t active_ns
    cdef uint32_t tcp_payload_cap
    cdef uint32_t tls_payload_cap
    cdef uint8_t tls_probe_segments
    cdef uint8_t quic_max_initials
    cdef uint64_t counts[N_COUNTERS]
    cdef uint64_t errors[N_LAYERS][N_STATUS]
    cdef list out
    cdef readonly Py_ssize_t consumed  # frames the last feed() took (see stop_at_tick)

    def __cinit__(self):
        self.ready = False

    def __init__(self, *, int max_flows=131072, double tcp_timeout_s=300.0,
                 double tcp_closed_timeout_s=5.0, double udp_timeout_s=60.0,
                 double other_timeout_s=60.0, double active_timeout_s=120.0,
                 double frag_timeout_s=30.0, int frag_max_datagrams=256,
                 bint key_vlan=True, bint key_tunnel=True, int tcp_payload_cap=262144,
                 bint tls=True, int tls_probe_segments=16, int tls_payload_cap=65536,
                 bint quic=True, int quic_max_initials=64,
                 unsigned long long seed=0x5EED5EED5EED5EED):
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        if frag_max_datagrams < 0:
            raise ValueError("frag_max_datagrams must not be negative")
        if not ft_init(&self.ft, max_flows, seed):
            raise MemoryError("flow table")
        if not rs_init(&self.rs, frag_max_datagrams, <uint64_t>(frag_timeout_s * NS), seed ^ 1):
            ft_free(&self.ft)
            raise MemoryError("fragment table")
        self.ready = True
        self.opts = (OPT_KEY_VLAN if key_vlan else 0) | (OPT_KEY_TUNNEL if key_tunnel else 0)
        self.timeout_ns[CLASS_TCP] = <uint64_t>(tcp_timeout_s * NS)
        self.timeout_ns[CLASS_TCP_CLOSED] = <uint64_t>(tcp_closed_timeout_s * NS)
        self.timeout_ns[CLASS_UDP] = <uint64_t>(udp_timeout_s * NS)
        self.timeout_ns[CLASS_OTHER] = <uint64_t>(other_timeout_s * NS)
        self.active_ns = <uint64_t>(active_timeout_s * NS)
        self.tcp_payload_cap = tcp_payload_cap
        self.tls_probe_segments = min(max(tls_probe_segments, 0), 255) if tls else 0
        self.tls_payload_cap = tls_payload_cap
        self.quic_max_initials = min(max(quic_max_initials, 0), 255) if quic else 0
        self.now = 0
        self._tick_to(0)
        memset(self.counts, 0, sizeof(self.counts))
        memset(self.errors, 0, sizeof(self.errors))
        self.out = []

    def __dealloc__(self):
        if self.ready:
            ft_free(&self.ft)
            rs_free(&self.rs)

    @property
    def now_ns(self):
        return self.now

    @property
    def active_flows(self):
        return self.ft.count

    def feed(self, const unsigned char[::1] data, const unsigned char[::1] descs, Py_ssize_t count,
             Py_ssize_t start=0, bint stop_at_tick=False):
        """Processes frames start..count-1 described in descs over data; returns the outputs.

        With stop_at_tick, returns right after a frame's time starts a new second: the tick
        (and the expiries it brings) ends the outputs, that frame is not counted yet, and
        `consumed` says where to start the next call. A caller that snapshots counters at
        ticks then sees the same counters whatever the batch size.
        """
        cdef const FrameDesc* d
        cdef Packet pk
        cdef Py_ssize_t i
        cdef Py_ssize_t size = data.shape[0]
        cdef const uint8_t* base
        cdef int st
        cdef uint64_t sec_before, ts
        self.consumed = count
        if count <= start:
            return self._take()
        if start < 0 or descs.shape[0] < count * <Py_ssize_t>sizeof(FrameDesc):
            raise ValueError("descriptor buffer shorter than count")
        if size == 0:
            self.counts[C_BAD_DESC] += count - start
            return self._take()
        base = &data[0]
        for i in range(start, count):
            d = (<const FrameDesc*>&descs[0]) + i
            if <Py_ssize_t>d.offset + <Py_ssize_t>d.caplen > size:
                self.counts[C_BAD_DESC] += 1
                continue
            ts = kept_time(d.ts_ns)
            sec_before = self.tick_sec
            self._advance(ts)
            if stop_at_tick and self.tick_sec != sec_before:
                self.consumed = i  # the next call takes this frame up (its second is ticked)
                return self._take()
            self.counts[C_PACKETS] += 1
            self.counts[C_BYTES] += d.wirelen
            if ts != d.ts_ns:
                self.counts[C_TIME_CLAMPED] += 1
            st = decode_frame(base + d.offset, d.caplen, d.linktype, d.vlan_tci,
                              (d.flags & FRAME_VLAN_STRIPPED) != 0, self.opts, &pk)
            if st == OK:
                self._process(&pk, ts, 1, pk.ip_len)
            elif st == FRAGMENT:
                self._fragment(&pk, ts, 0)
            else:
                self.errors[pk.err_layer][st] += 1
        return self._take()

    def tick(self, unsigned long long now_ns):
        """Advances the clock without a packet (live capture on a quiet link)."""
        self._advance(kept_time(now_ns))
        return self._take()

    def flush(self):
        """Ends every flow (end of input or shutdown) and drops unfinished fragments."""
        cdef int c
        cdef int32_t i
        for c in range(N_CLASSES):
            while self.ft.head[c] != -1:
                i = self.ft.head[c]
                if c == CLASS_TCP_CLOSED:   # already closed: it keeps its reason
                    self._end(i, END_RST if self.ft.pool[i].state & ST_RST else END_FIN)
                else:
                    self._end(i, END_SHUTDOWN)
        rs_drop_all(&self.rs)
        return self._take()

    def set_interest(self, unsigned long long handle, int bits):
        """Sets what the engine forwards for a flow; a stale handle is ignored."""
        cdef uint32_t i = handle & 0xFFFFFFFF
        if i < <uint32_t>self.ft.capacity and self.ft.pool[i].gen == (handle >> 32):
            self.ft.pool[i].interest = <uint8_t>bits

    def clear_interest(self, unsigned long long handle, int bits):
        """Stops forwarding what `bits` names for a flow; a stale handle is ignored."""
        cdef uint32_t i = handle & 0xFFFFFFFF
        if i < <uint32_t>self.ft.capacity and self.ft.pool[i].gen == (handle >> 32):
            self.ft.pool[i].interest &= <uint8_t>~bits

    def counters(self):
        """All counters as a flat dict: engine, decode failures by layer.status, fragments."""
        cdef int layer, s
        result = {name: self.counts[i] for i, name in enumerate(COUNTER_NAMES)}
        result["flows_active"] = self.ft.count
        for layer in range(N_LAYERS):
            for s in range(1, N_STATUS):
                if self.errors[layer][s]:
                    result[f"decode.{LAYER_NAMES[layer]}.{STATUS_NAMES[s]}"] = self.errors[layer][s]
        for s in range(N_FR):
            result[f"frag.{FRAG_COUNTER_NAMES[s]}"] = self.rs.counts[s]
        return result

    cdef list _take(self):
        cdef list taken = self.out
        self.out = []
        return taken

    cdef void _advance(self, uint64_t ts) noexcept:
        cdef uint64_t due
        if ts > self.now:
            # Across a gap in the traffic, stop at each second a flow falls due: it ends,
            # and lands in a window, when it expired rather than when the next packet came.
            # Within the current second no flow can fall due in a later one: most packets
            # stop at the first test.
            if ts > self.sec_end_ns:
                due = self._next_due()
                while due < ts and due // NS > self.tick_sec:
                    self.now = due
                    self._tick_to(due // NS)
                    self.out.append((EV_TICK, self.now))
                    self._expire()
                    due = self._next_due()
            self.now = ts
        elif ts < self.now:
            self.counts[C_TIME_BACKWARDS] += 1
        if self.now > self.sec_end_ns:  # (now only grows, so never below tick_sec's)
            self._tick_to(self.now // NS)
            self.out.append((EV_TICK, self.now))
            self._expire()

    cdef inline void _tick_to(self, uint64_t sec) noexcept:
        self.tick_sec = sec
        self.sec_end_ns = sec * NS + (NS - 1)

    cdef uint64_t _next_due(self) noexcept:
        """The earliest time an idle flow expires (each class's list is oldest first)."""
        cdef int c
        cdef uint64_t due = 0xFFFFFFFFFFFFFFFF
        cdef uint64_t t
        for c in range(N_CLASSES):
            if self.ft.head[c] != -1:
                t = self.ft.pool[self.ft.head[c]].seen_ns + self.timeout_ns[c]
                if t < due:
                    due = t
        return due

    cdef void _expire(self) noexcept:
        cdef int c
        cdef int32_t i
        cdef Flow* f
        for c in range(N_CLASSES):
            while self.ft.head[c] != -1:
                i = self.ft.head[c]
                f = &self.ft.pool[i]
                if f.seen_ns + self.timeout_ns[c] > self.now:
                    break
                if c == CLASS_TCP_CLOSED:
                    self._end(i, END_RST if f.state & ST_RST else END_FIN)
                else:
                    self._end(i, END_IDLE)
        rs_expire(&self.rs, self.now)

    cdef void _fragment(self, Packet* pk, uint64_t ts, int depth) noexcept:
        cdef FragKey key
        cdef int32_t j
        cdef Datagram* dg
        cdef uint8_t* buf
        cdef uint32_t total, frames
        cdef uint64_t ip_bytes
        cdef Packet inner
        cdef int st
        cdef uint8_t tunnels_before
        memset(&key, 0, sizeof(FragKey))
        memcpy(key.src, pk.src, 16)
        memcpy(key.dst, pk.dst, 16)
        key.ident = pk.frag_id
        key.ctx = pk.ctx
        key.family = pk.family
        key.proto = pk.proto
        j = rs_add(&self.rs, &key, self.now, pk.frag_offset, pk.frag_more, pk.payload,
                   pk.payload_len, pk.l4_wire, pk.ip_len)
        if j < 0:
            return
        # Take the buffer out of the table before decoding into it: a nested
        # fragment may reuse the table slot.
        dg = &self.rs.pool[j]
        buf = dg.data
        total = dg.total
        frames = dg.frames
        ip_bytes = dg.ip_bytes
        dg.data = NULL
        rs_release(&self.rs, j)
        inner = pk[0]
        tunnels_before = inner.tunnels
        st = decode_reassembled(buf, total, &inner, self.opts)
        if st == OK:
            if inner.tunnels != tunnels_before:     # the datagram carried another IP packet
                ip_bytes = inner.ip_len
                frames = 1
            self._process(&inner, ts, frames, ip_bytes)
        elif st == FRAGMENT:
            if depth < MAX_FRAG_NESTING:
                self._fragment(&inner, ts, depth + 1)
            else:
                self.errors[LAYER_FRAG][LIMIT] += 1
        else:
            self.errors[inner.err_layer][st] += 1
        free(buf)

    cdef void _process(self, Packet* pk, uint64_t ts, uint32_t frames,
                       uint64_t ip_bytes) noexcept:
        cdef FlowKey key
        cdef bint a_is_src, sender_is_client
        cdef int cmp, dirn
        cdef uint64_t h
        cdef int32_t i
        cdef Flow* f
        cdef uint8_t cls
        memset(&key, 0, sizeof(FlowKey))
        cmp = memcmp(pk.src, pk.dst, 16)
        a_is_src = cmp < 0 or (cmp == 0 and pk.sport <= pk.dport)
        if a_is_src:
            memcpy(key.a, pk.src, 16)
            memcpy(key.b, pk.dst, 16)
            key.port_a = pk.sport
            key.port_b = pk.dport
        else:
            memcpy(key.a, pk.dst, 16)
            memcpy(key.b, pk.src, 16)
            key.port_a = pk.dport
            key.port_b = pk.sport
        key.family = pk.family
        key.proto = pk.proto
        key.ctx = pk.ctx
        if pk.proto == IPPROTO_TCP:
            cls = CLASS_TCP
        elif pk.proto == IPPROTO_UDP:
            cls = CLASS_UDP
        else:
            cls = CLASS_OTHER
        h = ft_hash(&self.ft, &key)
        i = ft_find(&self.ft, &key, h)
        if (i >= 0 and pk.proto == IPPROTO_TCP
                and (pk.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN
                and self.ft.pool[i].cls == CLASS_TCP_CLOSED):
            # A new connection reuses the 5-tuple of a closed one.
            self._end(i, END_RST if self.ft.pool[i].state & ST_RST else END_FIN)
            i = -1
        if i < 0:
            if self.ft.count >= self.ft.capacity:
                self.counts[C_FLOWS_EVICTED] += 1
                self._end(ft_oldest(&self.ft), END_EVICTED)
            i = ft_insert(&self.ft, &key, h, cls)
            f = &self.ft.pool[i]
            if pk.proto == IPPROTO_TCP:
                if (pk.tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK):
                    sender_is_client = False
                elif pk.tcp_flags & TCP_SYN:
                    sender_is_client = True
                else:
                    sender_is_client = not looks_like_server(pk.sport, pk.dport)
            elif pk.proto == IPPROTO_UDP:
                sender_is_client = not looks_like_server(pk.sport, pk.dport)
            else:
                sender_is_client = True
            f.a_is_client = a_is_src == sender_is_client
            if f.a_is_client:
                community_id(key.family, key.proto, key.a, key.port_a, key.b, key.port_b,
                             pk.icmp_one_way, 0, f.cid)
            else:
                community_id(key.family, key.proto, key.b, key.port_b, key.a, key.port_a,
                             pk.icmp_one_way, 0, f.cid)
            f.first_ns = ts
            f.vlan_id = pk.vlan_id
            f.icmp_one_way = pk.icmp_one_way
            if ((pk.proto == IPPROTO_UDP or pk.proto == IPPROTO_TCP)
                    and (is_dns_port(pk.sport) or is_dns_port(pk.dport))):
                f.interest = I_DNS
            if pk.proto == IPPROTO_TCP and self.tls_probe_segments:
                f.interest |= I_TLS_PROBE
                f.probes_left = self.tls_probe_segments
            elif pk.proto == IPPROTO_UDP and not f.interest and self.quic_max_initials:
                f.interest = I_QUIC
                f.probes_left = self.quic_max_initials
            self.counts[C_FLOWS_CREATED] += 1
        f = &self.ft.pool[i]
        dirn = 0 if a_is_src == f.a_is_client else 1
        if f.pkts[0] == 0 and f.pkts[1] == 0:
            f.first_ns = ts                         # first packet of a report period
        f.pkts[dirn] += frames
        f.bytes[dirn] += ip_bytes
        if ts > f.last_ns:
            f.last_ns = ts
        f.seen_ns = self.now
        if pk.proto == IPPROTO_TCP:
            f.tcp_flags[dirn] |= pk.tcp_flags
            if pk.tcp_flags & TCP_RST:
                f.state |= ST_RST
            if pk.tcp_flags & TCP_FIN:
                f.state |= ST_FIN_UP if dirn == 0 else ST_FIN_DOWN
            if f.state & ST_RST or (f.state & (ST_FIN_UP | ST_FIN_DOWN)) == ST_FIN_UP | ST_FIN_DOWN:
                cls = CLASS_TCP_CLOSED
        lru_touch(&self.ft, i, cls)
        if f.interest:
            self._forward(f, i, pk, dirn, ts)
        if self.active_ns and self.now >= f.first_ns + self.active_ns:
            self.counts[C_INTERIM] += 1
            self._emit_flow(i, END_INTERIM)
            f.pkts[0] = f.pkts[1] = 0
            f.bytes[0] = f.bytes[1] = 0
            f.first_ns = f.last_ns

    cdef void _forward(self, Flow* f, int32_t i, Packet* pk, int dirn, uint64_t ts) noexcept:
        cdef int why = 0
        if pk.proto == IPPROTO_UDP:
            if pk.payload_len == 0:
                return
            if f.interest & I_DNS:
                why = W_DNS
            elif f.interest & I_QUIC and dirn == 0 and quic_initial(pk.payload, pk.payload_len):
                # Client Initials only: the server's need other keys and carry no hello.
                why = W_QUIC
                self.counts[C_QUIC_EVENTS] += 1
                f.probes_left -= 1
                if f.probes_left == 0:
                    f.interest &= ~I_QUIC
                    self.counts[C_QUIC_CAP] += 1
        elif pk.proto == IPPROTO_TCP:
            why = self._tcp_why(f, pk, dirn)
            if why and pk.payload_len:
                if f.fwd_bytes[dirn] + pk.payload_len > self._cap_of(f):
                    self.counts[C_PAYLOAD_CAP] += 1
                    f.interest &= ~(I_DNS | I_TLS_PROBE | (I_FOLLOW_UP << dirn))
                    return
                f.fwd_bytes[dirn] += pk.payload_len
        if not why:
            return
        self.counts[C_PAYLOAD_EVENTS] += 1
        self.out.append((
            EV_PAYLOAD, ts, self._handle(i), dirn, why, pk.proto, f.key.family,
            self._addr(f, True), self._port(f, True), self._addr(f, False), self._port(f, False),
            pk.seq, pk.tcp_flags,
            PyBytes_FromStringAndSize(<const char*>pk.payload, pk.payload_len),
            pk.payload_wire, self._text(f, True), self._text(f, False), self._cid(f),
        ))

    cdef inline uint32_t _cap_of(self, Flow* f) noexcept:
        return self.tcp_payload_cap if f.interest & I_DNS else self.tls_payload_cap

    cdef int _tcp_why(self, Flow* f, Packet* pk, int dirn) noexcept:
        """Which analysers want this TCP segment; tracks the next sequence number."""
        cdef int why = 0
        cdef int at
        cdef bint gap = False
        cdef uint8_t bit = 1 << dirn
        cdef uint32_t end
        if f.interest & I_DNS and (pk.payload_len or pk.tcp_flags & TCP_SYN):
            why = W_DNS
        if pk.tcp_flags & TCP_SYN:
            # The SYN takes one sequence number; data on it (TCP Fast Open) follows.
            f.next_seq[dirn] = pk.seq + 1 + pk.payload_len
            f.seq_known |= bit
            if pk.payload_len == 0:
                return why
        if pk.payload_len == 0 or not (f.interest & (I_TLS_PROBE | I_FOLLOW_UP | I_FOLLOW_DOWN)):
            return why
        end = pk.seq + pk.payload_len
        if pk.tcp_flags & TCP_SYN:
            pass
        elif f.seq_known & bit:
            gap = seq_after(pk.seq, f.next_seq[dirn])
            if seq_after(end, f.next_seq[dirn]):
                f.next_seq[dirn] = end
        else:
            f.next_seq[dirn] = end
            f.seq_known |= bit
        if f.interest & (I_FOLLOW_UP << dirn):
            self.counts[C_TLS_EVENTS] += 1
            if not (f.end_known & bit):
                # The first segment the other side sends after the hello: its first
                # record (the ServerHello's) is all Python needs from that side.
                f.follow_end[dirn] = pk.seq + first_record_span(pk.payload, pk.payload_len)
                f.end_known |= bit
            if not seq_after(f.follow_end[dirn], end):
                f.interest &= ~(I_FOLLOW_UP << dirn)     # that part has been forwarded
            return why | W_TLS
        if not (f.interest & I_TLS_PROBE):
            return why
        f.probes_left -= 1
        if f.probes_left == 0:
            f.interest &= ~I_TLS_PROBE
        at = tls_hello_at(pk.payload, pk.payload_len)
        if at >= 0:
            # Follow both ways from here: the rest of the hello, then the ServerHello.
            # Each direction stops by itself after what it has to deliver, so a
            # bulk transfer in the same batch stays out of Python.
            f.interest |= I_FOLLOW_UP | I_FOLLOW_DOWN
            f.follow_end[dirn] = (pk.seq + <uint32_t>at
                                  + hello_span(pk.payload + at, pk.payload_len - at))
            f.end_known = bit
            if not seq_after(f.follow_end[dirn], end):
                f.interest &= ~(I_FOLLOW_UP << dirn)
            self.counts[C_TLS_EVENTS] += 1
            return why | W_TLS
        if gap:
            # Out of order: it may be the tail of a hello whose head comes later.
            self.counts[C_TLS_EVENTS] += 1
            return why | W_TLS
        return why

    cdef inline uint64_t _handle(self, int32_t i) noexcept:
        return (<uint64_t>self.ft.pool[i].gen << 32) | <uint32_t>i

    cdef bytes _addr(self, Flow* f, bint client):
        cdef const uint8_t* a
        if f.a_is_client == client:
            a = &f.key.a[0]
        else:
            a = &f.key.b[0]
        return PyBytes_FromStringAndSize(<const char*>a, 4 if f.key.family == 4 else 16)

    cdef str _text(self, Flow* f, bint client):
        return address_text(f.key.family, &f.key.a[0] if f.a_is_client == client else &f.key.b[0])

    cdef inline str _cid(self, Flow* f):
        return PyUnicode_DecodeASCII(f.cid, COMMUNITY_ID_LEN, NULL)

    cdef inline uint16_t _port(self, Flow* f, bint client) noexcept:
        return f.key.port_a if (f.a_is_client == client) else f.key.port_b

    cdef void _emit_flow(self, int32_t i, int reason) noexcept:
        cdef Flow* f = &self.ft.pool[i]
        self.out.append((
            EV_FLOW, f.last_ns, self._handle(i), reason, f.key.proto, f.key.family,
            self._addr(f, True), self._port(f, True), self._addr(f, False), self._port(f, False),
            f.first_ns, f.last_ns, f.pkts[0], f.bytes[0], f.pkts[1], f.bytes[1],
            f.tcp_flags[0], f.tcp_flags[1], f.vlan_id, f.icmp_one_way,
            self._text(f, True), self._text(f, False), self._cid(f),
        ))

    cdef void _end(self, int32_t i, int reason) noexcept:
        self._emit_flow(i, reason)
        self.counts[C_FLOWS_ENDED] += 1
        ft_remove(&self.ft, i)
