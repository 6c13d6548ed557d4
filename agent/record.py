"""The records tapsense emits: one schema, whose field names are a contract.

Records are plain dicts typed as TypedDicts, so building one costs a dict
literal and encoding it (orjson for JSON Lines, msgpack on the wire) needs
no conversion. Every record has `type` and `ts` (epoch seconds); all but
`stats` carry the flow's endpoints oriented client to server (`src`,
`sport`, `dst`, `dport`), `proto` and `flow` (the Community ID).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class FlowEndpoints(TypedDict):
    type: str
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    proto: str
    flow: str


class Attributed(TypedDict):
    """What attribution adds to a named record (agent/attribution.py), when it is on."""

    service: NotRequired[str | None]  # the service id of agent/data/services.toml
    category: NotRequired[str | None]
    domain: NotRequired[str | None]  # the registrable domain (Public Suffix List)


class DnsRecord(FlowEndpoints, Attributed):
    """One DNS transaction: a query and its response, or a lone query or response."""

    transport: str  # "udp" or "tcp"
    protocol: str  # "dns", "mdns" or "llmnr", by the server port
    status: str  # "answered", "unanswered" (no response), "unsolicited" (no query seen)
    id: int
    opcode: int
    qname: str | None
    qtype: int | None
    qclass: int | None
    rcode: int | None
    rcode_name: str | None
    answers: list[str]
    answer_types: list[int]
    ttls: list[int]
    rtt: float | None
    flags: list[str]
    questions: list[list[Any]] | None
    edns: dict[str, Any] | None
    problem: str | None


class FlowRecord(FlowEndpoints, Attributed):
    """A flow, or one period of a long flow when `end` is "interim" (counters per period)."""

    ts_end: float
    pkts_up: int
    bytes_up: int
    pkts_down: int
    bytes_down: int
    end: str  # idle, fin, rst, interim, evicted, shutdown
    tcp_flags_up: str | None
    tcp_flags_down: str | None
    vlan: int | None
    name: str | None
    name_source: str | None  # "tls", "quic" (the SNI) or "dns" (an answer for dst)


class _HelloFields(TypedDict):
    """What a ClientHello tells, over TCP or inside QUIC (see agent/tls.py hello_fields)."""

    sni: str | None
    alpn: list[str]
    supported_versions: list[str]
    ciphers: list[int]
    extensions: list[int]  # types in wire order, GREASE included
    groups: list[int]
    key_share_groups: list[int]
    signature_algorithms: list[int]
    pq: bool  # a key share uses a post-quantum hybrid group (e.g. X25519MLKEM768)
    ech: bool  # encrypted_client_hello offered: sni is then the outer (public) name
    ja4: str


class TlsRecord(FlowEndpoints, _HelloFields, Attributed):
    """A TLS ClientHello over TCP, with the ServerHello's answer when it was seen."""

    version: str  # the ClientHello's legacy_version, "0x0303"
    ja3: str | None
    ja3_full: str | None
    server_version: str | None  # from supported_versions when present
    cipher: str | None
    ja3s: str | None
    ja3s_full: str | None
    server_alpn: str | None
    problem: str | None  # the ClientHello broke off: "malformed", "truncated", ...


class QuicRecord(FlowEndpoints, _HelloFields, Attributed):
    """A QUIC connection attempt: the ClientHello decrypted from the client's Initial packets."""

    version: str  # the QUIC version, "0x00000001"
    tls_version: str  # the ClientHello's legacy_version
    dcid: str  # the Destination Connection ID the client's Initial keys come from, hex
    repeat: bool  # the same ClientHello was reported before on this 5-tuple (after a Retry)
    ja3: str | None  # None when the hello broke off
    ja3_full: str | None
    problem: str | None  # the ClientHello broke off


class IntelRecord(FlowEndpoints):
    """A record that touched a listed indicator (agent/intel.py)."""

    client: str  # the client side of the flow (pseudonymised like src)
    indicator: str  # the listed domain, address or network
    indicator_type: str  # "domain", "ip" or "cidr"
    matched: str  # dns.qname, dns.cname, dns.answer, tls.sni, quic.sni, flow.dst, flow.src
    value: str  # what matched: the name or address seen
    source: str  # the list's file name
    tag: str | None  # the list's tag or description for it (CSV)


class StatsRecord(TypedDict):
    """The sensor's counters: what it saw, what it emitted, what its caps dropped."""

    type: str
    ts: float
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
    tls: dict[str, int]
    quic: dict[str, int]
    attribution: dict[str, int]
    intel: dict[str, int]
    shipping: dict[str, int]


Record = DnsRecord | FlowRecord | TlsRecord | QuicRecord | IntelRecord | StatsRecord
