"""DNS transactions: frames DNS over TCP, pairs queries with responses, emits DnsRecords.

Sans-IO. A query waits (bounded, `max_pending`) for the response with the same
endpoints, transaction id and question; the pair becomes one record with its
round-trip time. A query still waiting after `timeout_s` becomes an
"unanswered" record, a response with no waiting query an "unsolicited" one,
so every message seen is in exactly one record. A second query with the same
key ends the first as unanswered (a retransmission).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent._dns import parse_dns
from agent.engine import STATUS_NAMES
from agent.record import DnsRecord
from agent.stream import TcpStream

if TYPE_CHECKING:
    from agent._dns import DnsMessage


# RFC 6895 section 2.3 (and RFC 6891 for values above 15)
RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    11: "DSOTYPENI",
    16: "BADVERS",
    17: "BADKEY",
    18: "BADTIME",
    19: "BADMODE",
    20: "BADNAME",
    21: "BADALG",
    22: "BADTRUNC",
    23: "BADCOOKIE",
}
# Header flag bits (RFC 1035 section 4.1.1, RFC 4035 section 3.2 for AD and CD)
FLAG_BITS = (
    ("aa", 0x0400),
    ("tc", 0x0200),
    ("rd", 0x0100),
    ("ra", 0x0080),
    ("ad", 0x0020),
    ("cd", 0x0010),
)
# The names of the flags set in each value of header bits 4 to 10, which hold them all
_FLAG_NAMES = tuple(tuple(name for name, bit in FLAG_BITS if bit & (i << 4)) for i in range(128))
PORT_PROTOCOL = {5353: "mdns", 5355: "llmnr"}
_NO_QUESTION = (None, None, None)
# answer types: RFC 1035 section 3.2.2 (A, CNAME) and RFC 3596 section 2.1 (AAAA)
TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28
ADDRESS_TYPES = frozenset((TYPE_A, TYPE_AAAA))
TCP_MAX_MESSAGE = 2 + 65535  # RFC 1035 section 4.2.2: a two-octet length prefix


# One side of a transaction: (ts_ns, querier, querier port, responder, responder port,
# transport, flow id, parsed message). A tuple: one is made per message, and a slotted
# dataclass took 290 ns to build against a tuple's 8.
_Message = tuple[int, str, int, str, int, str, str, "DnsMessage"]


@dataclass(slots=True)
class _TcpFramer:
    """One direction of DNS over TCP: the stream, and bytes not yet a whole message."""

    stream: TcpStream
    buffer: bytearray


class DnsTracker:
    def __init__(
        self,
        stats: Counter[str],
        *,
        timeout_s: float = 10.0,
        max_pending: int = 65536,
        max_tcp_streams: int = 4096,
    ) -> None:
        self.stats = stats
        self.timeout_ns = int(timeout_s * 1e9)
        self.max_pending = max_pending
        self.max_tcp_streams = max_tcp_streams
        self._pending: OrderedDict[tuple[Any, ...], _Message] = OrderedDict()
        self._tcp: dict[tuple[int, int], _TcpFramer] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def on_payload(self, event: tuple[Any, ...]) -> list[DnsRecord]:
        """Takes an EV_PAYLOAD output of a DNS flow; returns the records it completes."""
        (
            _k,
            ts_ns,
            handle,
            dirn,
            _why,
            proto,
            _fam,
            _caddr,
            cport,
            _saddr,
            sport,
            seq,
            tcp_flags,
            payload,
            wire_len,
            client,
            server,
            flow_id,
        ) = event
        sender, sender_port, receiver, receiver_port = (
            (client, cport, server, sport) if dirn == 0 else (server, sport, client, cport)
        )
        if proto == 17:
            if wire_len > len(payload):
                self.stats["dns.snaplen_cut"] += 1
            return self._message(
                payload,
                ts_ns,
                handle,
                sender,
                sender_port,
                receiver,
                receiver_port,
                "udp",
                flow_id,
            )
        records: list[DnsRecord] = []
        for message in self._tcp_messages(handle, dirn, seq, tcp_flags, payload):
            records += self._message(
                message,
                ts_ns,
                handle,
                sender,
                sender_port,
                receiver,
                receiver_port,
                "tcp",
                flow_id,
            )
        return records

    def on_flow_end(self, handle: int) -> None:
        if not self._tcp:  # DNS over TCP is rare; every flow ends here
            return
        for dirn in (0, 1):
            framer = self._tcp.pop((handle, dirn), None)
            if framer is not None and (framer.buffer or framer.stream.has_gap):
                self.stats["dns.tcp_incomplete"] += 1

    def on_tick(self, now_ns: int) -> list[DnsRecord]:
        """Ends the queries that waited longer than the timeout."""
        records = []
        while self._pending:
            key, query = next(iter(self._pending.items()))
            if query[0] + self.timeout_ns > now_ns:
                break
            del self._pending[key]
            records.append(self._record(query, None))
        return records

    def drain(self) -> list[DnsRecord]:
        """At the end of input every waiting query is unanswered."""
        records = [self._record(query, None) for query in self._pending.values()]
        self._pending.clear()
        for handle, _dirn in list(self._tcp):
            self.on_flow_end(handle)
        return records

    def _tcp_messages(
        self, handle: int, dirn: int, seq: int, tcp_flags: int, payload: bytes
    ) -> list[bytes]:
        framer = self._tcp.get((handle, dirn))
        if framer is None:
            if len(self._tcp) >= self.max_tcp_streams:
                self.stats["dns.tcp_streams_cap"] += 1
                return []
            framer = _TcpFramer(TcpStream(max_pending=TCP_MAX_MESSAGE), bytearray())
            self._tcp[(handle, dirn)] = framer
        dropped = framer.stream.dropped_bytes
        framer.buffer += framer.stream.add(seq, bool(tcp_flags & 0x02), payload)
        if framer.stream.dropped_bytes != dropped:
            self.stats["dns.tcp_reorder_cap"] += 1
        messages = []
        buf = framer.buffer
        while len(buf) >= 2:
            length = buf[0] << 8 | buf[1]
            if len(buf) < 2 + length:
                break
            messages.append(bytes(buf[2 : 2 + length]))
            del buf[: 2 + length]
        return messages

    def _message(
        self,
        data: bytes,
        ts_ns: int,
        handle: int,
        sender: str,
        sender_port: int,
        receiver: str,
        receiver_port: int,
        transport: str,
        flow_id: str,
    ) -> list[DnsRecord]:
        status, message = parse_dns(data)
        if message is None:
            self.stats[f"dns.not_dns.{STATUS_NAMES[status]}"] += 1
            return []
        self.stats["dns.messages"] += 1
        if message[6] is not None:
            self.stats[f"dns.malformed.{message[6]}"] += 1
        qname, qtype, _qclass = message[3][0] if message[3] else _NO_QUESTION
        if not message[1] & 0x8000:  # a query
            side = (
                ts_ns,
                sender,
                sender_port,
                receiver,
                receiver_port,
                transport,
                flow_id,
                message,
            )
            # The flow handle keeps apart what the flow key keeps apart (VLANs, VNIs).
            key = (handle, sender, sender_port, message[0], qname, qtype)
            records = []
            earlier = self._pending.pop(key, None)
            if earlier is not None:
                self.stats["dns.retransmitted_query"] += 1
                records.append(self._record(earlier, None))
            if len(self._pending) >= self.max_pending:
                self.stats["dns.pending_evicted"] += 1
                records.append(self._record(self._pending.popitem(last=False)[1], None))
            self._pending[key] = side
            return records
        side = (ts_ns, receiver, receiver_port, sender, sender_port, transport, flow_id, message)
        query = self._pending.pop((handle, receiver, receiver_port, message[0], qname, qtype), None)
        return [self._record(query, side)]

    def _record(self, query: _Message | None, response: _Message | None) -> DnsRecord:
        first = query or response
        assert first is not None
        ts_ns, querier, qport, responder, rport, transport, flow_id, message = first
        ident, header_flags, counts, questions, _answers, edns, problem = message
        qname, qtype, qclass = questions[0] if questions else _NO_QUESTION
        answers: list[str] = []
        answer_types: list[int] = []
        ttls: list[int] = []
        rcode = rcode_name = rtt = None
        flags = header_flags
        if response is not None:
            _i, flags, _c, _q, rr, redns, rproblem = response[7]
            for _name, rtype, ttl, text in rr:
                answers.append(text)
                answer_types.append(rtype)
                ttls.append(ttl)
            rcode = flags & 0x000F
            if redns is not None:  # the 12-bit extended RCODE, RFC 6891 section 6.1.3
                rcode |= redns["rcode_high"] << 4
            rcode_name = RCODE_NAMES.get(rcode) or str(rcode)
            if query is not None:
                rtt = (response[0] - ts_ns) / 1e9
                edns = redns or edns
                problem = problem or rproblem
        status = "answered" if query and response else ("unanswered" if query else "unsolicited")
        return {
            "type": "dns",
            "ts": ts_ns / 1e9,
            "src": querier,
            "sport": qport,
            "dst": responder,
            "dport": rport,
            "proto": transport,
            "flow": flow_id,
            "transport": transport,
            "protocol": PORT_PROTOCOL.get(rport, "dns"),
            "status": status,
            "id": ident,
            "opcode": (header_flags >> 11) & 0xF,
            "qname": qname,
            "qtype": qtype,
            # mDNS uses the top bit of the class as the unicast-response bit (RFC 6762 5.4)
            "qclass": qclass & 0x7FFF if qclass is not None and rport == 5353 else qclass,
            "rcode": rcode,
            "rcode_name": rcode_name,
            "answers": answers,
            "answer_types": answer_types,
            "ttls": ttls,
            "rtt": rtt,
            "flags": list(_FLAG_NAMES[(flags >> 4) & 0x7F]),
            "questions": [[q[0], q[1]] for q in questions] if counts[0] > 1 else None,
            "edns": edns,
            "problem": problem,
        }
