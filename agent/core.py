"""The sans-IO pipeline: frame batches in, records out.

    pipeline = Pipeline(config)
    records = pipeline.feed(batch)      # many frames per call; the loop is in Cython
    records = pipeline.tick(now_ns)     # time passes without packets (live capture)
    records = pipeline.drain()          # end of input: flush flows and pending DNS

No sockets, no files, no clock: time comes from the packets or from `tick`.
The same frames give the same records in the same order whatever the batch
size, because every timer runs on the engine's per-second ticks.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.dns import DnsTracker
from agent.engine import (
    END_NAMES,
    EV_FLOW,
    EV_PAYLOAD,
    INT_FOLLOW_UP,
    WHY_DNS,
    WHY_QUIC,
    WHY_TLS,
    Engine,
    FrameBatch,
)
from agent.enrich import EnrichData, Enricher
from agent.flow import flow_record
from agent.quic import QuicTracker
from agent.record import Record, StatsRecord
from agent.tls import TlsTracker

if TYPE_CHECKING:
    from agent.summary import Summariser  # set by a caller that ships; msgpack only then

_END_INTERIM = END_NAMES.index("interim")
_CAP_COUNTERS = {
    "flows_evicted": "flows_evicted",
    "payload_cap_hits": "tcp_payload_cap",
    "frag.evicted": "fragments_evicted",
    "dns.pending_evicted": "dns_pending_evicted",
    "dns.tcp_streams_cap": "dns_tcp_streams",
    "dns.tcp_reorder_cap": "dns_tcp_reorder",
    "tls.giveup.evicted": "tls_flows_evicted",
    "tls.giveup.reorder_cap": "tls_reorder",
    "quic_cap_hits": "quic_initials_per_flow",
    "quic.flows_evicted": "quic_flows_evicted",
    "quic.connections_evicted": "quic_connections_evicted",
    "quic.crypto_cap": "quic_crypto",
    "attribution.dns_cache_evicted": "dns_answers_evicted",
    "attribution.long_flows_evicted": "dns_named_flows_evicted",
    "intel.dedupe_evicted": "intel_dedupe_evicted",
}


class Counts(Counter[str]):
    """A Counter whose stores cost what a dict's do. Counter defines __delitem__ in Python,
    and __setitem__ shares its slot, so each `counts[key] += 1` went through a method lookup
    at twice the cost; the pipeline counts every record and DNS message. A missing key still
    reads 0; deleting one raises KeyError, as for a dict (nothing deletes counts)."""

    __delitem__ = dict.__delitem__  # type: ignore[assignment]


class Pipeline:
    def __init__(self, config: Config | None = None, enrich_data: EnrichData | None = None) -> None:
        """`enrich_data`: the services map and indicator lists, when already loaded."""
        self.config = config or Config()
        flow, frag, dns = self.config.flow, self.config.fragments, self.config.dns
        self.stats: Counter[str] = Counts()
        self.record_counts: Counter[str] = Counts()
        self.engine = Engine(
            max_flows=flow.max_flows,
            tcp_timeout_s=flow.tcp_timeout_s,
            tcp_closed_timeout_s=flow.tcp_closed_timeout_s,
            udp_timeout_s=flow.udp_timeout_s,
            other_timeout_s=flow.other_timeout_s,
            active_timeout_s=flow.active_timeout_s,
            frag_timeout_s=frag.timeout_s,
            frag_max_datagrams=frag.max_datagrams,
            key_vlan=flow.key_vlan,
            key_tunnel=flow.key_tunnel,
            tcp_payload_cap=dns.tcp_payload_cap,
        )
        self.dns = DnsTracker(
            self.stats,
            timeout_s=dns.timeout_s,
            max_pending=dns.max_pending,
            max_tcp_streams=dns.max_tcp_streams,
        )
        engine = self.engine
        self.tls = TlsTracker(
            self.stats,
            lambda handle, dirn: engine.clear_interest(handle, INT_FOLLOW_UP << dirn),
        )
        self.quic = QuicTracker(self.stats)
        self.enrich = Enricher(self.config, self.stats, enrich_data)
        self.summary: Summariser | None = None  # set by a caller that ships batches
        self.batches: list[dict[str, Any]] = []

    def feed(self, batch: FrameBatch) -> list[Record]:
        engine = self.engine
        if self.summary is None:
            return self._handle(engine.feed(batch.data, batch.descs, batch.count))
        # A window closes on a tick; stopping the engine there gives the window's stats as
        # they were at its end, not after the rest of this batch.
        records: list[Record] = []
        start = 0
        while True:
            records += self._handle(engine.feed(batch.data, batch.descs, batch.count, start, True))
            start = engine.consumed
            if start >= batch.count:
                return records

    def tick(self, now_ns: int) -> list[Record]:
        return self._handle(self.engine.tick(now_ns))

    def drain(self) -> list[Record]:
        records: list[Record] = [*self.dns.drain(), *self.tls.drain()]
        self._enriched(records, 0)
        self.quic.drain()
        records += self._handle(self.engine.flush(), summarise=False)
        if self.summary is not None:
            self.summary.add(records)
            self.batches += self.summary.flush(self.engine.now_ns)
        return records

    def take_batches(self) -> list[dict[str, Any]]:
        """The batches of the windows closed so far (with a summariser set)."""
        batches, self.batches = self.batches, []
        return batches

    def _handle(self, outputs: list[tuple[Any, ...]], summarise: bool = True) -> list[Record]:
        records: list[Record] = []
        summary = self.summary if summarise else None
        added = 0  # records already handed to the summariser
        for event in outputs:
            kind = event[0]
            if kind == EV_FLOW:
                handle = event[2]
                if event[3] == _END_INTERIM:
                    records.append(flow_record(event, self._name(handle, keep=True)))
                    continue
                records.extend(self.tls.on_flow_end(handle))
                records.append(flow_record(event, self._name(handle, keep=False)))
                self.dns.on_flow_end(handle)
                self.quic.on_flow_end(handle)
            elif kind == EV_PAYLOAD:
                why = event[4]
                if why & WHY_DNS:
                    records.extend(self.dns.on_payload(event))
                if why & WHY_TLS:
                    records.extend(self.tls.on_payload(event))
                if why & WHY_QUIC:
                    records.extend(self.quic.on_payload(event))
            else:
                records.extend(self.dns.on_tick(event[1]))
                records.extend(self.tls.on_tick(event[1]))
                fresh = self._enriched(records, added)
                added = len(records)
                self.enrich.tick(event[1] / 1e9)
                if summary is not None:  # windows close on ticks: the same whatever the batching
                    summary.add(fresh)
                    self.batches += summary.tick(event[1])
        fresh = self._enriched(records, added)
        if summary is not None:
            summary.add(fresh)
        return records

    def _enriched(self, records: list[Record], start: int) -> list[Record]:
        """Enriches records[start:] in place (intel hits join them); returns that part."""
        fresh = records[start:]
        if self.enrich.active:
            fresh = self.enrich(fresh)
            records[start:] = fresh
        self._count(fresh)
        return fresh

    def _name(self, handle: int, *, keep: bool) -> tuple[str, str] | None:
        """The name that identifies a flow's service, and its source (tls or quic)."""
        for source, names in (("tls", self.tls.names), ("quic", self.quic.names)):
            name = names.get(handle) if keep else names.pop(handle, None)
            if name:
                return name, source
        return None

    def _count(self, records: list[Record]) -> None:
        counts = self.record_counts
        for record in records:
            counts[record["type"]] += 1

    def stats_record(
        self,
        *,
        capture: dict[str, int] | None = None,
        kernel_drops: int = 0,
        shipping: dict[str, int] | None = None,
    ) -> StatsRecord:
        """The sensor's counters now; `capture` and `shipping` come from the I/O edges."""
        engine = self.engine.counters()
        merged = {**engine, **self.stats}
        return {
            "type": "stats",
            "ts": self.engine.now_ns / 1e9,
            "packets": engine["packets"],
            "bytes": engine["bytes"],
            "kernel_drops": kernel_drops,
            "flows_active": engine["flows_active"],
            "records": dict(self.record_counts),
            "decode_errors": {k[7:]: v for k, v in engine.items() if k.startswith("decode.")},
            "caps": {name: merged.get(key, 0) for key, name in _CAP_COUNTERS.items()},
            "capture": dict(capture or {}),
            "fragments": {k[5:]: v for k, v in engine.items() if k.startswith("frag.")},
            "dns": {k[4:]: v for k, v in self.stats.items() if k.startswith("dns.")},
            "tls": {k[4:]: v for k, v in self.stats.items() if k.startswith("tls.")},
            "quic": {k[5:]: v for k, v in self.stats.items() if k.startswith("quic.")},
            "attribution": {
                k[12:]: v for k, v in self.stats.items() if k.startswith("attribution.")
            },
            "intel": {k[6:]: v for k, v in self.stats.items() if k.startswith("intel.")},
            "shipping": dict(shipping or {}),
        }
