"""Threat intelligence: indicator lists, and the records that touched them.

Lists are files the site provides (`intel.files`), read in full at start and on SIGHUP:

- plain text: one indicator per line (`#` starts a comment), hosts-file lines
  (`0.0.0.0 bad.example`) too;
- CSV (`.csv`): a header row naming the indicator column (`indicator`, `value`, `ioc`,
  `domain`, `host`, `ip` or `address`), optionally `type` and `tag` (or `threat`,
  `description`).

An indicator is an IP address, a CIDR network, or a domain. A domain matches itself and
every name below it (`bad.example` matches `cdn.bad.example`), unless its CSV type is
`hostname` or `fqdn`, which match only the name itself. The match is on DNS qnames, CNAME
targets and address answers, TLS and QUIC SNIs, and flow addresses (both ends).

A hit becomes an `intel` record with the flow's endpoints and id, `client` (the client
side of the flow), `indicator`, `indicator_type`, `matched` (where: dns.qname, dns.cname,
dns.answer, tls.sni, quic.sni, flow.dst, flow.src), `value` (what matched) and the list's
`source` and `tag`. One record per flow, indicator and place, however many packets or
interim records the flow has.

Loading runs on a thread of its own (`IntelMatcher.reload`); the new lists replace the old
in one assignment when they are complete, so capture never waits and never sees half a
list. A list that cannot be read keeps the old lists and says why.
"""

from __future__ import annotations

import csv
import gc
import io
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.dns import ADDRESS_TYPES, TYPE_CNAME
from agent.flow import addr_text
from agent.services import longest_suffix

CSV_INDICATOR_COLUMNS = ("indicator", "value", "ioc", "domain", "host", "ip", "address")
CSV_TAG_COLUMNS = ("tag", "threat", "description")
EXACT_TYPES = frozenset(("hostname", "fqdn"))
HOSTS_SINKS = frozenset(("0.0.0.0", "127.0.0.1", "::", "::1"))
HOSTS_HEADER_ADDRESSES = frozenset(("255.255.255.255", "fe80::1%lo0", "ff00::0", "ff02::1"))
HOSTS_HEADER_NAMES = frozenset((
    "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost",
    "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters",
    "ip6-allhosts",
))  # fmt: skip
PAUSE_EVERY = 20_000
MAX_NAME = 254  # RFC 1035 section 2.3.4: 253 characters, and a trailing dot
MAX_ORIGINS = 1 << 16
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
DEDUPE_FLOWS = 1 << 16  # flows whose hits are remembered to report each once
RELOAD_PAUSE_S = 0.002  # a reload yields the GIL this long every PAUSE_EVERY indicators


class IntelError(Exception):
    """An indicator file that cannot be read (one line for the user)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an indicator came from: its list, and the tag the list gave it."""

    source: str  # the file's name
    tag: str | None


@dataclass
class Indicators:
    """Indicator lookups: names by suffix or exactly, addresses, networks by prefix length."""

    suffix_domains: dict[str, Origin] = field(default_factory=dict)
    exact_domains: dict[str, Origin] = field(default_factory=dict)
    addresses: dict[bytes, tuple[str, Origin]] = field(default_factory=dict)
    # (family width, prefix length) -> network as an int -> (text, origin)
    networks: dict[tuple[int, int], dict[int, tuple[str, Origin]]] = field(default_factory=dict)
    rejected: int = 0  # lines that were neither an address, a network nor a domain
    # address width -> (mask, table) longest prefix first: what finish() makes of networks
    _probes: dict[int, list[tuple[int, dict[int, tuple[str, Origin]]]]] = field(
        default_factory=dict
    )
    files: dict[str, int] = field(default_factory=dict)  # file -> indicators it gave

    def __len__(self) -> int:
        return (
            len(self.suffix_domains)
            + len(self.exact_domains)
            + len(self.addresses)
            + sum(len(t) for t in self.networks.values())
        )

    def add(self, text: str, origin: Origin, kind: str | None = None) -> bool:
        """Adds one indicator; False if it is not one."""
        text = text.strip().lower()
        if not text:
            return False
        if "/" in text:
            return self._add_network(text, origin)
        raw = address_bytes(text)
        if raw is not None:  # stored in its one text form, as records write addresses
            self.addresses[raw] = (addr_text(raw), origin)
            return True
        name = text.rstrip(".")
        if name.startswith("*."):
            name = name[2:]
        elif name.startswith("."):  # ".bad.example": dnsmasq's and squid's "and below"
            name = name[1:]
        if not name or not _DOMAIN_CHARS.issuperset(name) or ".." in name:
            return False
        if kind in EXACT_TYPES:
            self.exact_domains[name] = origin
        else:
            self.suffix_domains[name] = origin
        return True

    def _add_network(self, text: str, origin: Origin) -> bool:
        address, _, length_text = text.partition("/")
        raw = address_bytes(address)
        if raw is None or not length_text.isdigit():
            return False
        width = len(raw) * 8
        length = int(length_text)
        if length > width:
            return False
        if length == width:
            self.addresses[raw] = (addr_text(raw), origin)
            return True
        mask = ((1 << length) - 1) << (width - length)
        network = int.from_bytes(raw, "big") & mask
        canonical = f"{addr_text(network.to_bytes(len(raw), 'big'))}/{length}"
        self.networks.setdefault((width, length), {})[network] = (canonical, origin)
        return True

    def match_name(self, name: str) -> tuple[str, str, Origin] | None:
        """(indicator, indicator_type, origin) of a host name, exact before suffix."""
        if len(name) > MAX_NAME:  # no DNS name is longer; walking it would only cost time
            return None
        name = name.lower().rstrip(".")  # an absolute name is the same name
        origin = self.exact_domains.get(name)
        if origin is not None:
            return name, "domain", origin
        if not self.suffix_domains:
            return None
        found = longest_suffix(self.suffix_domains, name)
        return (found[0], "domain", found[1]) if found is not None else None

    def match_address(self, text: str) -> tuple[str, str, Origin] | None:
        raw = address_bytes(text)
        if raw is None:
            return None
        hit = self.addresses.get(raw)
        if hit is not None:
            return hit[0], "ip", hit[1]
        probes = self._probes.get(len(raw) * 8)
        if not probes:
            return None
        value = int.from_bytes(raw, "big")
        for mask, table in probes:  # longest prefix first
            net = table.get(value & mask)
            if net is not None:
                return net[0], "cidr", net[1]
        return None

    def finish(self) -> None:
        """Orders the networks of each family longest prefix first (the most specific one is
        reported), each table with its mask, so a lookup only probes its own family."""
        self.networks = dict(sorted(self.networks.items(), key=lambda item: -item[0][1]))
        self._probes = {}
        for (width, length), table in self.networks.items():
            mask = ((1 << length) - 1) << (width - length)
            self._probes.setdefault(width, []).append((mask, table))


def address_bytes(text: str) -> bytes | None:
    """The packed form of an IPv4 or IPv6 address in text, or None if it is not one."""
    if ":" in text:
        try:
            return socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            return None
    if text[-1:].isdigit():
        try:
            return socket.inet_pton(socket.AF_INET, text)
        except OSError:
            return None
    return None


def load_indicators(paths: tuple[str, ...], pause: Callable[[], None] | None = None) -> Indicators:
    """Every indicator of every file; IntelError names a file that cannot be read. `pause`
    runs every PAUSE_EVERY indicators (a reload on a thread lets capture have the GIL)."""
    out = Indicators()
    for path_text in paths:
        path = Path(path_text)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntelError(f"{path}: cannot read: {exc.strerror or exc}") from None
        text = data.decode("utf-8-sig", errors="replace")  # spreadsheets write a BOM
        before = len(out)
        rows = _csv_rows(text, path) if path.suffix.lower() == ".csv" else _text_rows(text)
        try:
            for line, (indicator, kind, tag) in enumerate(rows, 1):
                if not out.add(indicator, _origin(path.name, tag), kind):
                    out.rejected += 1
                if pause is not None and line % PAUSE_EVERY == 0:
                    pause()
        except csv.Error as exc:
            raise IntelError(f"{path}: not CSV that can be read: {exc}") from None
        out.files[str(path)] = len(out) - before
    out.finish()
    return out


_ORIGINS: dict[tuple[str, str | None], Origin] = {}


def _origin(source: str, tag: str | None) -> Origin:
    # one shared Origin per file and tag: a million indicators must not mean a million objects
    key = (source, tag)
    origin = _ORIGINS.get(key)
    if origin is None:
        if len(_ORIGINS) >= MAX_ORIGINS:
            _ORIGINS.clear()
        origin = _ORIGINS[key] = Origin(source, tag)
    return origin


def _text_rows(text: str) -> Iterator[tuple[str, None, None]]:
    for line in text.splitlines():
        line = line.partition("#")[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) >= 2 and (parts[0] in HOSTS_SINKS or parts[0] in HOSTS_HEADER_ADDRESSES):
            for host in parts[1:]:
                # the header every hosts file starts with names the machine, not a threat
                if host.lower() not in HOSTS_HEADER_NAMES and address_bytes(host) is None:
                    yield host, None, None
        else:
            yield parts[0], None, None


def _csv_rows(text: str, path: Path) -> Iterator[tuple[str, str | None, str | None]]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    column = next((header.index(c) for c in CSV_INDICATOR_COLUMNS if c in header), None)
    if column is None:
        raise IntelError(
            f"{path}: the CSV header names no indicator column ({', '.join(CSV_INDICATOR_COLUMNS)})"
        )
    type_column = header.index("type") if "type" in header else None
    tag_column = next((header.index(c) for c in CSV_TAG_COLUMNS if c in header), None)
    for row in reader:
        if len(row) <= column or row[column].lstrip().startswith("#"):
            continue
        kind = (
            row[type_column].strip().lower()
            if type_column is not None and len(row) > type_column
            else None
        )
        tag = (
            row[tag_column].strip() or None
            if tag_column is not None and len(row) > tag_column
            else None
        )
        yield row[column], kind, tag


class IntelMatcher:
    """Emits the intel records of a stream of records (sans-IO, in record order)."""

    def __init__(self, stats: Counter[str], indicators: Indicators | None = None) -> None:
        self.stats = stats
        self.indicators = indicators or Indicators()
        self.armed = len(self.indicators) > 0  # false: scanning would find nothing
        self._seen: OrderedDict[str, set[tuple[str, str]]] = OrderedDict()  # flow -> hits
        self._loader: threading.Thread | None = None

    def scan(self, record: dict[str, Any], out: list[dict[str, Any]]) -> None:
        """Appends to `out` an intel record for each new hit in `record`."""
        lists = self.indicators  # one snapshot per record: a reload swaps the whole object
        kind = record["type"]
        if kind == "dns":
            qname = record["qname"]
            if qname:
                self._hit(lists.match_name(qname), record, "dns.qname", qname, out)
            for answer, rtype in zip(record["answers"], record["answer_types"], strict=False):
                if rtype in ADDRESS_TYPES:
                    self._hit(lists.match_address(answer), record, "dns.answer", answer, out)
                elif rtype == TYPE_CNAME:
                    self._hit(lists.match_name(answer), record, "dns.cname", answer, out)
        elif kind == "tls" or kind == "quic":
            sni = record["sni"]
            if sni:
                self._hit(lists.match_name(sni), record, f"{kind}.sni", sni, out)
        elif kind == "flow":
            self._hit(lists.match_address(record["dst"]), record, "flow.dst", record["dst"], out)
            self._hit(lists.match_address(record["src"]), record, "flow.src", record["src"], out)
            if record["end"] != "interim":
                self._seen.pop(record["flow"], None)

    def _hit(
        self,
        hit: tuple[str, str, Origin] | None,
        record: dict[str, Any],
        matched: str,
        value: str,
        out: list[dict[str, Any]],
    ) -> None:
        if hit is None:
            return
        indicator, indicator_type, origin = hit
        flow = record["flow"]
        seen = self._seen.get(flow)
        if seen is None:
            seen = self._seen[flow] = set()
            if len(self._seen) > DEDUPE_FLOWS:
                self._seen.popitem(last=False)
                self.stats["intel.dedupe_evicted"] += 1
        if (indicator, matched) in seen:
            self.stats["intel.repeats"] += 1
            return
        seen.add((indicator, matched))
        self.stats["intel.hits"] += 1
        out.append(
            {
                "type": "intel",
                "ts": record["ts"],
                "src": record["src"],
                "sport": record["sport"],
                "dst": record["dst"],
                "dport": record["dport"],
                "proto": record["proto"],
                "flow": flow,
                "client": record["src"],
                "indicator": indicator,
                "indicator_type": indicator_type,
                "matched": matched,
                "value": value,
                "source": origin.source,
                "tag": origin.tag,
            }
        )

    # --- loading ------------------------------------------------------------------------

    def load(self, paths: tuple[str, ...]) -> float:
        """Loads the lists now (start-up); returns the seconds it took. Raises IntelError."""
        started = time.perf_counter()
        self.install(load_indicators(paths))
        return time.perf_counter() - started

    def reload(
        self, paths: tuple[str, ...], log: Any, done: Callable[[], None] | None = None
    ) -> None:
        """Loads the lists on a thread; the old ones serve until the new ones are complete."""
        if self._loader is not None and self._loader.is_alive():
            log.warning("intel.reload_busy", reason="the previous load is still running")
            return

        def work() -> None:
            started = time.perf_counter()
            try:
                fresh = load_indicators(paths, pause=lambda: time.sleep(RELOAD_PAUSE_S))
            except Exception as exc:  # anything: the old lists stay, and it is said why
                self.stats["intel.load_failures"] += 1
                error = str(exc) if isinstance(exc, IntelError) else f"{type(exc).__name__}: {exc}"
                log.warning("intel.load_failed", error=error, kept=len(self.indicators))
            else:
                self.install(fresh)
                log.info(
                    "intel.loaded",
                    indicators=len(fresh),
                    rejected=fresh.rejected,
                    files=fresh.files,
                    seconds=round(time.perf_counter() - started, 3),
                )
            if done is not None:
                done()

        self._loader = threading.Thread(target=work, name="intel-load", daemon=True)
        self._loader.start()

    def wait_loaded(self, timeout_s: float) -> bool:
        loader = self._loader
        if loader is not None:
            loader.join(timeout_s)
            return not loader.is_alive()
        return True

    def install(self, indicators: Indicators) -> None:
        """Matches against these lists from now on (loaded here, or once for all workers)."""
        self.indicators = indicators
        self.armed = len(indicators) > 0
        # long-lived lists make every full collection walk them: set what lives now aside
        gc.freeze()
        self.stats["intel.loads"] += 1
        self.stats["intel.indicators"] = len(self.indicators)
        self.stats["intel.rejected"] = self.indicators.rejected
