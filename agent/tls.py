"""TLS over TCP: finds handshakes by content on any port and emits one tls record per ClientHello.

Sans-IO. The engine forwards, for a TCP flow, the client segments that start
like a TLS ClientHello record (RFC 8446 section 5.1) or arrive out of order
during the first segments, and once a hello has started, both directions
until Python stops it. Here each direction is anchored at its first hello
record, put back in order (agent/stream.py, bounded), cut into records and
handshake messages; the ClientHello and ServerHello bodies go to the Cython
parsers (ext/tls.pyx). A ClientHello larger than MAX_HELLO, a stream that is
not TLS, a gap that never fills or a timeout ends the attempt, counted by
reason in stats as tls.giveup.<reason>.
"""

from __future__ import annotations

import functools
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent._tls import parse_client_hello, parse_server_hello, parse_sslv2_client_hello
from agent.engine import STATUS_NAMES
from agent.fingerprint import ja4
from agent.record import TlsRecord
from agent.stream import TcpStream, seq_delta

OK, LIMIT = 0, 4  # parser statuses (ext/_wire.pxd)
MAX_HELLO = 16384  # a ClientHello body larger than this is given up (STYLE: <= 16 KiB)
MAX_BUFFER = MAX_HELLO + 1024  # record headers and a few records of slack
MAX_EARLY = 4  # segments kept from before a direction's hello starts

# TLS content types and handshake types (RFC 8446 sections 5.1 and 4)
CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2

# Key exchange groups that carry a post-quantum KEM (IANA TLS Supported Groups)
PQ_GROUPS = frozenset((0x11EB, 0x11EC, 0x11ED, 0x6399, 0x639A))


@functools.lru_cache(maxsize=4096)  # versions and ciphers: a few hundred values in use
def hex16(value: int) -> str:
    return f"0x{value:04x}"


def text_of(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def looks_like_client_hello(payload: bytes) -> bool:
    """A TLS handshake record holding a ClientHello, or an SSL 2.0 CLIENT-HELLO; the
    record may follow a ChangeCipherSpec (the second hello after a HelloRetryRequest)."""
    if payload[:2] == b"\x14\x03" and payload[3:6] == b"\x00\x01\x01":
        payload = payload[6:]
    if len(payload) >= 6 and payload[0] == CT_HANDSHAKE and payload[1] == 3 and payload[2] <= 4:
        return payload[5] == HS_CLIENT_HELLO
    return len(payload) >= 5 and payload[0] & 0x80 != 0 and payload[2] == 1 and payload[3] in (0, 3)


def looks_like_server_hello(payload: bytes) -> bool:
    return (
        len(payload) >= 6
        and payload[0] == CT_HANDSHAKE
        and payload[1] == 3
        and payload[5] == HS_SERVER_HELLO
    )


def hello_fields(hello: dict[str, Any]) -> dict[str, Any]:
    """The record fields that come from a parsed ClientHello (TLS or QUIC), its JA4 included."""
    sni = hello["sni"]
    return {
        "sni": text_of(sni) if sni is not None else None,
        "alpn": [text_of(a) for a in hello["alpn"]],
        "supported_versions": [hex16(v) for v in hello["supported_versions"]],
        "ciphers": hello["ciphers"],
        "extensions": hello["extensions"],
        "groups": hello["groups"],
        "key_share_groups": hello["key_share_groups"],
        "signature_algorithms": hello["signature_algorithms"],
        "pq": any(g in PQ_GROUPS for g in hello["key_share_groups"]),
        "ech": hello["ech"],
        "ja4": hello["ja4"],
    }


@dataclass(slots=True)
class _Side:
    """One direction of a TLS flow, from its first hello record on."""

    stream: TcpStream | None = None
    early: list[tuple[int, bytes]] = field(default_factory=list)
    records: bytearray = field(default_factory=bytearray)  # contiguous, not yet cut into records
    handshake: bytearray = field(default_factory=bytearray)  # handshake layer across records
    done: bool = False


@dataclass(slots=True)
class _TlsFlow:
    """A flow whose hellos are being read: both sides, and the hello waiting for its answer."""

    endpoints: tuple[str, int, str, int, str]  # client, port, server, port, flow id
    touched_ns: int
    sides: tuple[_Side, _Side] = field(default_factory=lambda: (_Side(), _Side()))
    hello_dir: int | None = None
    hellos: int = 0
    pending: TlsRecord | None = None


class TlsTracker:
    def __init__(
        self,
        stats: Counter[str],
        stop: Callable[[int, int], None],
        *,
        server_hello_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
        max_flows: int = 65536,
    ) -> None:
        """`stop(handle, direction)` tells the engine to stop forwarding a direction."""
        self.stats = stats
        self._stop = stop
        self.server_hello_timeout_ns = int(server_hello_timeout_s * 1e9)
        self.idle_timeout_ns = int(idle_timeout_s * 1e9)
        self.max_flows = max_flows
        self._flows: OrderedDict[int, _TlsFlow] = OrderedDict()  # by last packet
        self._waiting: OrderedDict[int, int] = OrderedDict()  # hellos without a ServerHello
        self.names: dict[int, str] = {}  # flow handle -> SNI, for the flow record

    def on_payload(self, event: tuple[Any, ...]) -> list[TlsRecord]:
        (
            _k,
            ts_ns,
            handle,
            dirn,
            _why,
            _proto,
            _fam,
            _caddr,
            cport,
            _saddr,
            sport,
            seq,
            tcp_flags,
            payload,
            _wire,
            client,
            server,
            flow_id,
        ) = event
        records: list[TlsRecord] = []
        if tcp_flags & 0x02:  # data on a SYN (TCP Fast Open) starts after it
            seq = (seq + 1) & 0xFFFFFFFF
        flow = self._flows.get(handle)
        if flow is None:
            if not payload:
                return records
            if len(self._flows) >= self.max_flows:
                self.stats["tls.giveup.evicted"] += 1
                records += self._finish(*self._flows.popitem(last=False))
            flow = self._flows[handle] = _TlsFlow((client, cport, server, sport, flow_id), ts_ns)
        else:
            self._flows.move_to_end(handle)
        flow.touched_ns = ts_ns
        side = flow.sides[dirn]
        if side.done or not payload:
            return records
        if side.stream is None:
            starts = (
                looks_like_client_hello(payload)
                if flow.hello_dir in (None, dirn)
                else looks_like_server_hello(payload)
            )
            if not starts:
                if len(side.early) < MAX_EARLY:
                    side.early.append((seq, payload))
                return records
            if flow.hello_dir is None:
                flow.hello_dir = dirn
            side.stream = TcpStream(max_pending=MAX_BUFFER)
            side.records += side.stream.add(seq, False, payload)
            for early_seq, early in side.early:
                side.records += side.stream.add(early_seq, False, early)
            side.early.clear()
        elif (
            dirn == flow.hello_dir
            and side.stream.next_seq is not None
            and seq_delta(seq, side.stream.next_seq) > 0
            and looks_like_client_hello(payload)
        ):
            # A new hello after bytes the engine did not forward (the second hello
            # after a HelloRetryRequest): start again from it.
            side.stream = TcpStream(max_pending=MAX_BUFFER)
            side.records.clear()
            side.handshake.clear()
            side.records += side.stream.add(seq, False, payload)
        else:
            side.records += side.stream.add(seq, False, payload)
        if side.stream.dropped_bytes:
            return records + self._give_up(handle, flow, dirn, "reorder_cap")
        if dirn == flow.hello_dir:
            records += self._client_records(handle, flow, side, ts_ns)
        else:
            records += self._server_records(handle, flow, side)
        return records

    def _client_records(
        self, handle: int, flow: _TlsFlow, side: _Side, ts_ns: int
    ) -> list[TlsRecord]:
        records: list[TlsRecord] = []
        buf = side.records
        if buf and buf[0] & 0x80 and not side.handshake:
            return self._sslv2_hello(handle, flow, side, ts_ns)
        for ctype, body in self._cut_records(side):
            if ctype == CT_HANDSHAKE:
                side.handshake += body
                for mtype, message in self._cut_messages(handle, flow, flow.hello_dir, side):
                    if mtype != HS_CLIENT_HELLO:
                        continue
                    status, hello = parse_client_hello(message)
                    if hello is None:
                        self.stats["tls.giveup.malformed"] += 1
                        return records + self._give_up(handle, flow, flow.hello_dir, None)
                    if flow.pending is not None:  # a second hello (after HelloRetryRequest)
                        records.append(self._take_pending(handle, flow))
                    if flow.hellos:  # the server answers a second hello with a new ServerHello
                        flow.sides = (
                            (flow.sides[0], _Side())
                            if flow.hello_dir == 0
                            else (_Side(), flow.sides[1])
                        )
                    flow.hellos += 1
                    record = self._record(flow, hello, ts_ns)
                    if status not in (OK, LIMIT):
                        # A hello that breaks off: what it said so far, no JA3 of a broken list.
                        self.stats[f"tls.malformed_hello.{STATUS_NAMES[status]}"] += 1
                        record["ja3"] = record["ja3_full"] = None
                        record["problem"] = STATUS_NAMES[status]
                    self._set_pending(handle, flow, record, ts_ns)
                if side.done:  # a message too big to be a hello: the rest is not read
                    return records
            elif ctype != CT_CHANGE_CIPHER_SPEC:
                # application data, an alert, or not TLS: the client's hellos are over
                self._stop_side(handle, flow, flow.hello_dir)
                return records
        if len(side.records) + len(side.handshake) > MAX_BUFFER:
            records += self._give_up(handle, flow, flow.hello_dir, "too_big")
        return records

    def _sslv2_hello(self, handle: int, flow: _TlsFlow, side: _Side, ts_ns: int) -> list[TlsRecord]:
        """SSL 2.0 CLIENT-HELLO: two-byte record header with the high bit set."""
        buf = side.records
        if len(buf) < 2:
            return []
        length = ((buf[0] & 0x7F) << 8 | buf[1]) + 2
        if len(buf) < length:
            return []
        status, hello = parse_sslv2_client_hello(bytes(buf[:length]))
        self._stop_side(handle, flow, flow.hello_dir)
        if hello is None:
            self.stats[f"tls.giveup.malformed.{STATUS_NAMES[status]}"] += 1
            return []
        fields = {
            "version": hello["version"],
            "ciphers": [],
            "extensions": [],
            "sni": None,
            "has_sni": False,
            "alpn": [],
            "supported_versions": [],
            "groups": [],
            "point_formats": [],
            "signature_algorithms": [],
            "key_share_groups": [],
            "ech": False,
            "ja3": None,  # JA3 is defined for SSL 3.0 and later
            "ja3_full": None,
        }
        fields["ja4"] = ja4(fields)
        record = self._record(flow, fields, ts_ns)
        self._set_pending(handle, flow, record, ts_ns)
        return []

    def _set_pending(self, handle: int, flow: _TlsFlow, record: TlsRecord, ts_ns: int) -> None:
        """A parsed ClientHello waits for the ServerHello (or a timeout) to become a record."""
        flow.pending = record
        self._waiting[handle] = ts_ns
        self._waiting.move_to_end(handle)
        if record["sni"]:
            self.names[handle] = record["sni"]
        self.stats["tls.client_hello"] += 1

    def _server_records(self, handle: int, flow: _TlsFlow, side: _Side) -> list[TlsRecord]:
        for ctype, body in self._cut_records(side):
            if ctype != CT_HANDSHAKE:
                break
            side.handshake += body
            server_dir = 1 - (flow.hello_dir or 0)
            for mtype, message in self._cut_messages(handle, flow, server_dir, side):
                if mtype != HS_SERVER_HELLO:
                    continue
                status, server = parse_server_hello(message)
                self._stop_side(handle, flow, server_dir)
                if server is None:
                    self.stats[f"tls.server_hello_malformed.{STATUS_NAMES[status]}"] += 1
                    return []
                self.stats["tls.server_hello"] += 1
                if flow.pending is None:
                    return []
                record = self._take_pending(handle, flow)
                selected = server["selected_version"]
                record["server_version"] = hex16(selected if selected else server["version"])
                record["cipher"] = hex16(server["cipher"])
                record["ja3s"], record["ja3s_full"] = server["ja3s"], server["ja3s_full"]
                record["server_alpn"] = text_of(server["alpn"]) if server["alpn"] else None
                return [record]
            if side.done:
                break
        if len(side.records) + len(side.handshake) > MAX_BUFFER:
            self._stop_side(handle, flow, 1 - (flow.hello_dir or 0))
        return []

    def _cut_records(self, side: _Side) -> list[tuple[int, bytes]]:
        """Whole TLS records at the front of side.records (RFC 8446 section 5.1)."""
        out = []
        buf = side.records
        while len(buf) >= 5:
            if buf[1] != 3:
                out.append((-1, b""))  # not TLS any more
                del buf[:]
                break
            length = buf[3] << 8 | buf[4]
            if len(buf) < 5 + length:
                break
            out.append((buf[0], bytes(buf[5 : 5 + length])))
            del buf[: 5 + length]
        return out

    def _cut_messages(
        self, handle: int, flow: _TlsFlow, dirn: int | None, side: _Side
    ) -> list[tuple[int, bytes]]:
        """Whole handshake messages at the front of side.handshake (RFC 8446 section 4).

        A message longer than MAX_HELLO ends the side (the engine stops forwarding it)."""
        out = []
        hs = side.handshake
        while len(hs) >= 4:
            length = hs[1] << 16 | hs[2] << 8 | hs[3]
            if length > MAX_HELLO:
                self._give_up(handle, flow, dirn, "too_big")
                break
            if len(hs) < 4 + length:
                break
            out.append((hs[0], bytes(hs[4 : 4 + length])))
            del hs[: 4 + length]
        return out

    def _record(self, flow: _TlsFlow, hello: dict[str, Any], ts_ns: int) -> TlsRecord:
        client, cport, server, sport, flow_id = flow.endpoints
        record: TlsRecord = {
            "type": "tls",
            "ts": ts_ns / 1e9,
            "src": client,
            "sport": cport,
            "dst": server,
            "dport": sport,
            "proto": "tcp",
            "flow": flow_id,
            **hello_fields(hello),  # type: ignore[typeddict-item]
            "version": hex16(hello["version"]),
            "ja3": hello["ja3"],
            "ja3_full": hello["ja3_full"],
            "server_version": None,
            "cipher": None,
            "ja3s": None,
            "ja3s_full": None,
            "server_alpn": None,
            "problem": None,
        }
        if flow.hello_dir == 1:  # the hello came from the side the flow took for its server
            record["src"], record["dst"] = record["dst"], record["src"]
            record["sport"], record["dport"] = record["dport"], record["sport"]
        return record

    def _stop_side(self, handle: int, flow: _TlsFlow, dirn: int | None) -> None:
        if dirn is None:
            return
        side = flow.sides[dirn]
        if not side.done:
            side.done = True
            side.records.clear()
            side.handshake.clear()
            self._stop(handle, dirn)

    def _give_up(
        self, handle: int, flow: _TlsFlow, dirn: int | None, reason: str | None
    ) -> list[TlsRecord]:
        if reason is not None:
            self.stats[f"tls.giveup.{reason}"] += 1
        self._stop_side(handle, flow, dirn)
        return []

    def _take_pending(self, handle: int, flow: _TlsFlow) -> TlsRecord:
        record = flow.pending
        assert record is not None
        flow.pending = None
        self._waiting.pop(handle, None)
        return record

    def _finish(self, handle: int, flow: _TlsFlow) -> list[TlsRecord]:
        """Ends a flow's tracking: a hello waiting for its ServerHello is emitted as it is."""
        side = flow.sides[flow.hello_dir] if flow.hello_dir is not None else None
        if side is not None and not side.done and (side.records or side.handshake):
            self.stats["tls.giveup.incomplete"] += 1
        if flow.pending is None:
            return []
        return [self._take_pending(handle, flow)]

    def on_flow_end(self, handle: int) -> list[TlsRecord]:
        """The flow ended: emits what waits; the caller takes names[handle] for the flow record."""
        flow = self._flows.pop(handle, None)
        return self._finish(handle, flow) if flow is not None else []

    def on_tick(self, now_ns: int) -> list[TlsRecord]:
        """Hellos whose ServerHello did not come in time; flows idle for too long."""
        records: list[TlsRecord] = []
        while self._waiting:
            handle, since_ns = next(iter(self._waiting.items()))
            if since_ns + self.server_hello_timeout_ns > now_ns:
                break
            # the flow stays tracked: its end is counted by _finish, once
            records.append(self._take_pending(handle, self._flows[handle]))
        while self._flows:
            handle, flow = next(iter(self._flows.items()))
            if flow.touched_ns + self.idle_timeout_ns > now_ns:
                break
            del self._flows[handle]
            records += self._finish(handle, flow)
        return records

    def drain(self) -> list[TlsRecord]:
        records: list[TlsRecord] = []
        for handle, flow in list(self._flows.items()):
            records += self._finish(handle, flow)
        self._flows.clear()
        return records
