"""The records tapsense emits, and their one schema (field names are a contract).

Every record has `type`, `ts` (epoch seconds) and, except `stats`, the flow's
endpoints oriented client to server (`src`, `sport`, `dst`, `dport`), `proto`
and `flow` (the Community ID). Records are plain slotted dataclasses;
`as_dict()` gives the JSON/msgpack form.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(slots=True, kw_only=True)
class Record:
    type: ClassVar[str] = "record"
    _names: ClassVar[tuple[str, ...]] = ()

    ts: float

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for name in self._names:
            out[name] = getattr(self, name)
        return out


def _seal(cls: type[Record]) -> type[Record]:
    """Caches the field order of a record class for as_dict()."""
    cls._names = tuple(f.name for f in fields(cls))
    return cls


@dataclass(slots=True, kw_only=True)
class FlowEndpoints(Record):
    src: str
    sport: int
    dst: str
    dport: int
    proto: str
    flow: str


@_seal
@dataclass(slots=True, kw_only=True)
class DnsRecord(FlowEndpoints):
    """One DNS transaction: a query and its response, or a lone query or response."""

    type: ClassVar[str] = "dns"
    transport: str
    protocol: str  # "dns", "mdns" or "llmnr", by port
    status: str  # "answered", "unanswered" (no response) or "unsolicited" (no query seen)
    id: int
    opcode: int
    qname: str | None
    qtype: int | None
    qclass: int | None
    rcode: int | None
    rcode_name: str | None
    answers: list[str] = field(default_factory=list)
    answer_types: list[int] = field(default_factory=list)
    ttls: list[int] = field(default_factory=list)
    rtt: float | None = None
    flags: list[str] = field(default_factory=list)
    questions: list[list[Any]] | None = None
    edns: dict[str, Any] | None = None
    problem: str | None = None


@_seal
@dataclass(slots=True, kw_only=True)
class FlowRecord(FlowEndpoints):
    """A flow, or one period of a long flow when `end` is "interim" (counters are per period)."""

    type: ClassVar[str] = "flow"
    ts_end: float
    pkts_up: int
    bytes_up: int
    pkts_down: int
    bytes_down: int
    end: str
    tcp_flags_up: str | None
    tcp_flags_down: str | None
    vlan: int | None
    name: str | None = None
    name_source: str | None = None


@_seal
@dataclass(slots=True, kw_only=True)
class StatsRecord(Record):
    """The sensor's counters: what it saw, what it emitted and what its caps dropped."""

    type: ClassVar[str] = "stats"
    packets: int
    bytes: int
    kernel_drops: int
    flows_active: int
    records: dict[str, int]
    decode_errors: dict[str, int]
    caps: dict[str, int]
    capture: dict[str, int]
    fragments: dict[str, int]
    dns: dict[str, int]
    shipping: dict[str, int]
