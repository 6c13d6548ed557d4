"""Which service a record belongs to: names to services and categories, and names for
flows that carry none, from the DNS answers seen before them.

Sans-IO, in record order. A DNS record with addresses among its answers teaches the
answer cache that those addresses were reached under its qname (the name the client asked
for, not the CNAME target: `www.youtube.com`, not `youtube-ui.l.google.com`). A flow with
no TLS or QUIC name then takes the name its client resolved for its server address, or,
failing that, the name anyone resolved for it, with `name_source` "dns". Every record with
a name gets `service`, `category` and `domain` (the registrable domain, Public Suffix List).

The cache is bounded (oldest entries go first, counted) and time-limited (`dns_cache_s`
after the answer, measured against the flow's start). DNS TTLs are not used as the limit:
clients and stub resolvers keep using answers long past TTLs of 20 to 300 s, and a flow
often outlives its answer's TTL, so the TTL would lose most CDN-hosted flows.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from agent.dns import ADDRESS_TYPES
from agent.intel import MAX_NAME
from agent.services import ServiceMap

NAMED_TYPES = ("dns", "tls", "quic", "flow")


class AnswerCache:
    """(client, server address) -> qname, and server address -> qname, bounded and aged."""

    def __init__(
        self, stats: Counter[str], max_entries: int, max_age_s: float, grace_s: float = 0.0
    ) -> None:
        """`grace_s`: how long after a flow's start its first record can come (the longest
        idle or active timeout); answers are kept that much longer than `max_age_s`."""
        self.stats = stats
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.grace_s = grace_s
        self._by_pair: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._by_address: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_pair) + len(self._by_address)

    def learn(
        self, client: str, qname: str, answers: list[str], types: list[int], ts: float
    ) -> None:
        for answer, rtype in zip(answers, types, strict=False):
            if rtype not in ADDRESS_TYPES:
                continue
            self._put(self._by_pair, (client, answer), (qname, ts))
            self._put(self._by_address, answer, (qname, ts))
            self.stats["attribution.dns_answers_cached"] += 1

    def _put(
        self, table: OrderedDict[Any, tuple[str, float]], key: Any, value: tuple[str, float]
    ) -> None:
        if key in table:
            table.move_to_end(key)
        table[key] = value
        if len(table) > self.max_entries:
            table.popitem(last=False)
            self.stats["attribution.dns_cache_evicted"] += 1

    def name(self, client: str, server: str, ts: float) -> str | None:
        """The qname that led to `server`, as recent as `max_age_s` before `ts`."""
        for hit in (self._by_pair.get((client, server)), self._by_address.get(server)):
            # an answer seen after the flow began did not lead to it (a second of slack for
            # the clocks of a capture's interfaces)
            if hit is not None and -1.0 <= ts - hit[1] <= self.max_age_s:
                return hit[0]
        return None

    def expire(self, now: float) -> None:
        """Forgets answers too old to name any flow whose record can still come."""
        horizon = self.max_age_s + self.grace_s
        for table in (self._by_pair, self._by_address):
            while table:
                _key, (_name, seen) = next(iter(table.items()))
                if now - seen <= horizon:
                    break
                table.popitem(last=False)


class Attributor:
    def __init__(
        self,
        services: ServiceMap,
        stats: Counter[str],
        *,
        dns_cache_s: float,
        dns_cache_entries: int,
        grace_s: float = 0.0,
    ) -> None:
        self.services = services
        self.stats = stats
        self.answers = AnswerCache(stats, dns_cache_entries, dns_cache_s, grace_s)
        # told of every answer learned from a DNS record here (the daemon's workers share
        # them: fanout may send a lookup and the connection after it to different workers)
        self.on_learn: Callable[[str, str, list[str], list[int], float], None] | None = None
        self._long_flows: OrderedDict[str, str] = OrderedDict()  # flow id -> name from DNS

    def annotate(self, record: dict[str, Any]) -> None:
        """Adds service, category and domain to a named record; names flows from DNS."""
        kind = record["type"]
        if kind == "dns":
            name = record["qname"]
            answers = record["answers"]
            if name and answers and record["rcode"] == 0:
                types = record["answer_types"]
                self.answers.learn(record["src"], name, answers, types, record["ts"])
                if self.on_learn is not None:
                    self.on_learn(record["src"], name, answers, types, record["ts"])
        elif kind == "flow":
            name = record["name"]
            if name is None:
                name = self._dns_name(record)
                ended = record["end"] != "interim"  # count flows, not their records
                if name is not None:
                    record["name"], record["name_source"] = name, "dns"
                    self.stats["attribution.flows_named_by_dns"] += ended
                else:
                    self.stats["attribution.flows_unnamed"] += ended
        elif kind in ("tls", "quic"):
            name = record["sni"]
        else:
            return
        if name and len(name) > MAX_NAME:  # no DNS name is longer: not worth a lookup
            name = None
        service = self.services.lookup(name) if name else None
        if service is not None:
            record["service"], record["category"] = service.id, service.category
        else:
            record["service"] = record["category"] = None
            if kind == "flow" and name and record["end"] != "interim":
                self.stats["attribution.flows_without_service"] += 1
        record["domain"] = self.services.domain(name) if name else None

    def _dns_name(self, flow: dict[str, Any]) -> str | None:
        # A long flow's interim records keep the name its first one found: by its final
        # record the answer may be older than the cache keeps.
        flow_id = flow["flow"]
        interim = flow["end"] == "interim"
        name = self._long_flows.get(flow_id) if interim else self._long_flows.pop(flow_id, None)
        if name is None:
            name = self.answers.name(flow["src"], flow["dst"], flow["ts"])
            if name is not None and interim:
                self._long_flows[flow_id] = name
                if len(self._long_flows) > self.answers.max_entries:
                    self._long_flows.popitem(last=False)
                    self.stats["attribution.long_flows_evicted"] += 1
        return name

    def tick(self, now: float) -> None:
        self.answers.expire(now)
        self.stats["attribution.dns_cache_entries"] = len(self.answers)
