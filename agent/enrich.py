"""What the pipeline adds to its records before they leave: service attribution, intel
hits, and client pseudonyms, in that order and in record order.

Attribution and intel see the clear addresses (a DNS answer names the flows of its own
client; a listed address must match as listed); pseudonymisation comes last, so nothing
after it ever holds a clear client address.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.attribution import Attributor
from agent.config import Config
from agent.intel import Indicators, IntelError, IntelMatcher, load_indicators
from agent.privacy import Pseudonymiser, RecordPrivacy
from agent.record import Record
from agent.services import ServiceMap


class EnrichError(Exception):
    """A data file the enrichment needs cannot be used (one line for the user)."""


def _longest_wait(config: Config) -> float:
    """The longest a flow can go on before its first record: an idle or active timeout."""
    flow = config.flow
    idle = max(flow.tcp_timeout_s, flow.udp_timeout_s, flow.other_timeout_s)
    return max(idle, flow.active_timeout_s) if flow.active_timeout_s else idle


@dataclass(frozen=True, slots=True)
class EnrichData:
    """The tables enrichment reads and never changes. The daemon loads them once, before
    the workers fork, and the workers share them (a 1M-indicator list takes seconds to load
    and about 150 MiB)."""

    services: ServiceMap | None  # None: attribution is off
    indicators: Indicators

    @classmethod
    def load(cls, config: Config) -> EnrichData:
        services = None
        if config.attribution.enabled:
            try:
                services = ServiceMap(tuple(Path(p) for p in config.attribution.services_files))
            except ValueError as exc:
                raise EnrichError(str(exc)) from None
        try:
            indicators = load_indicators(config.intel.files) if config.intel.files else None
        except IntelError as exc:
            raise EnrichError(str(exc)) from None
        return cls(services, indicators or Indicators())


class Enricher:
    def __init__(self, config: Config, stats: Counter[str], data: EnrichData | None = None) -> None:
        self.config = config
        self.data = data if data is not None else EnrichData.load(config)
        self.attributor: Attributor | None = None
        if self.data.services is not None:
            self.attributor = Attributor(
                self.data.services,
                stats,
                dns_cache_s=config.attribution.dns_cache_s,
                dns_cache_entries=config.attribution.dns_cache_entries,
                # a flow's first record comes at most this long after its start
                grace_s=_longest_wait(config) + 2.0,
            )
        self.intel = IntelMatcher(stats)
        if config.intel.files:
            self.intel.install(self.data.indicators)
        self.privacy: RecordPrivacy | None = None
        privacy = config.privacy
        if privacy.clients != "keep":
            try:
                pseudonymise = Pseudonymiser(
                    privacy.clients,
                    Path(privacy.key_file),
                    privacy.truncate_v4,
                    privacy.truncate_v6,
                )
            except ValueError as exc:
                raise EnrichError(f"privacy: {exc}") from None
            except OSError as exc:
                raise EnrichError(
                    f"privacy.key_file {privacy.key_file}: {exc.strerror or exc}"
                ) from None
            self.privacy = RecordPrivacy(pseudonymise, privacy.local_nets)

    @property
    def active(self) -> bool:
        return self.attributor is not None or self.privacy is not None or self.intel.armed

    def __call__(self, records: list[Record]) -> list[Record]:
        """The records, annotated and rewritten in place, each followed by its intel hits."""
        attributor, intel, privacy = self.attributor, self.intel, self.privacy
        out: list[Any] = []
        for record in records:
            r: dict[str, Any] = record  # type: ignore[assignment]
            if attributor is not None:
                attributor.annotate(r)
            out.append(r)
            if intel.armed:
                start = len(out)
                intel.scan(r, out)
                if privacy is not None:
                    for hit in out[start:]:
                        privacy.apply(hit)
            if privacy is not None:
                privacy.apply(r)
        return out

    def tick(self, now: float) -> None:
        if self.attributor is not None:
            self.attributor.tick(now)
