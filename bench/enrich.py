"""The attribution and intel benchmark: loading a million indicators, and what enrichment
costs the replay.

    python3 -m bench.enrich [--packets 250000] [--seed 1] [--indicators 1000000]
                            [--repeat 7] [--keep] [--no-reload]

Loading: a generated list of --indicators indicators (70% domains, 20% IPv4 and IPv6
addresses, 10% CIDR networks; the random ones miss the mix, and ten taken from a first
replay of it hit its names and servers: see `planted`), written as a text file and as a CSV
(indicator, type, tag). Each is loaded with agent.intel.load_indicators in a fresh
interpreter, which reports the seconds of the load, its VmRSS (/proc/self/status) before and
after and its peak (VmHWM), so the memory the lists hold is measured without this process's
own, and how long one full gc.collect() takes before and after. Text and CSV alternate,
min(--repeat, 3) times each.

Replay: the benchmark mix (bench/gen_mix.py, the capture bench/run.py makes) replayed in
this process through agent.core.Pipeline, as `tapsense replay` does without writing records,
in four modes that alternate, --repeat times each: enrichment off (`[attribution] enabled =
false`, no intel), attribution on (the default), attribution and the planted indicators
alone, attribution and the whole list (the CSV's, loaded once before the runs and handed to
each pipeline). CPU seconds of the process (time.process_time) over feed + drain; building
the pipeline (the services file) is timed apart, and full garbage collections during the
runs are counted. Medians and spreads; ratios to the off run of the same round. Then
IntelMatcher.scan alone over the records of one replay, and, unless --no-reload, replays
while the list reloads on its background thread (IntelMatcher.reload) against replays
without, in wall seconds.

Machines are shared and noisy: only the ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.capfile import CaptureSource, replay_batches
from agent.config import Config, parse_config
from agent.core import Pipeline
from agent.intel import Indicators, IntelMatcher, load_indicators
from bench.run import OUT_DIR, ROOT, capture, cpu_model

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_TLDS = ("com", "net", "org", "info", "ru", "cn", "xyz", "top", "io", "de", "co.uk", "biz",
         "online", "site", "club", "com.br", "in", "su", "pw", "tk")  # fmt: skip
# First octets and 16-bit prefixes the mix never uses for its servers (gen_mix._PUBLIC_V4,
# _PUBLIC_V6) or clients (10/8, 2001:db8::/32): random indicators miss the mix, and only the
# planted ones below hit it.
_V4_FIRST = (45, 46, 62, 77, 78, 79, 80, 81, 91, 94, 95, 176, 178, 193, 194, 195, 212, 213, 217)
_V6_FIRST = (0x2A01, 0x2A02, 0x2A05, 0x2A06, 0x2C0F, 0x2402, 0x2403, 0x2804)
_V4_PREFIXES = (12, 16, 20, 22, 24, 24, 24, 24, 26, 28, 29, 30)
_V6_PREFIXES = (29, 32, 32, 36, 40, 44, 48, 48, 56, 64)

_LOADER = """
import gc, json, sys, time
def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                yield line.split()[0][:-1], int(line.split()[1])
from agent.intel import load_indicators
def full_gc_s():
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started
gc_before = full_gc_s()
before = dict(rss_kib())
started = time.perf_counter()
cpu = time.process_time()
lists = load_indicators((sys.argv[1],))
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
after = dict(rss_kib())
gc_after = min(full_gc_s() for _ in range(3))
print(json.dumps({"seconds": seconds, "cpu_s": cpu, "indicators": len(lists),
                  "rejected": lists.rejected, "rss_before_kib": before["VmRSS"],
                  "rss_after_kib": after["VmRSS"], "hwm_kib": after["VmHWM"],
                  "gc_before_s": gc_before, "gc_after_s": gc_after,
                  "gc_objects": len(gc.get_objects())}))
"""


# --- the indicator list -------------------------------------------------------------------


def planted(pcap: Path) -> list[tuple[str, str, str]]:
    """A few indicators that the mix hits, taken from a replay of it: registrable domains and
    names its clients resolve, addresses and a /24 of the servers its flows reach."""
    pipeline = Pipeline(parse_config("[attribution]\nenabled = false\n"))
    qnames: Counter[str] = Counter()
    servers: Counter[str] = Counter()
    for batch in replay_batches([CaptureSource(str(pcap))], Counter(), lambda _done: None):
        for record in pipeline.feed(batch):
            if record["type"] == "dns" and record["rcode"] == 0 and record["qname"]:
                qnames[record["qname"].lower()] += 1
            elif record["type"] == "flow" and record["dport"] in (80, 443):
                servers[record["dst"]] += 1
    ranked = [name for name, _n in sorted(qnames.items(), key=lambda kv: (-kv[1], kv[0]))]
    sites: Counter[str] = Counter()
    for name, n in qnames.items():
        sites[".".join(name.split(".")[-2:])] += n
    ranked_sites = [site for site, _n in sorted(sites.items(), key=lambda kv: (-kv[1], kv[0]))]
    by_rank = [ip for ip, _n in sorted(servers.items(), key=lambda kv: (-kv[1], kv[0]))]
    v4 = [ip for ip in by_rank if ":" not in ip and not ip.startswith("10.")]
    v6 = [ip for ip in by_rank if ":" in ip]
    suffixes = [ranked_sites[i] for i in (10, 20, 40) if i < len(ranked_sites)]
    exact = [
        name
        for name in ranked[30::30]
        if not any(name == s or name.endswith("." + s) for s in suffixes)
    ][:2]
    rows = [(site, "domain", "planted-suffix") for site in suffixes]
    rows += [(name, "hostname", "planted-exact") for name in exact]
    rows += [(v4[i], "ip", "planted-ip") for i in (5, 50, 150) if i < len(v4)]
    rows += [(ip, "ip", "planted-ip6") for ip in v6[3:4]]
    if len(v4) > 25:
        net = v4[25].rsplit(".", 1)[0]
        rows.append((f"{net}.0/24", "cidr", "planted-cidr"))
    return rows


def _v4_text(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def _v6_text(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


def generate_indicators(
    count: int, seed: int, hits: list[tuple[str, str, str]]
) -> list[tuple[str, str, str]]:
    """count rows (indicator, type, tag), `hits` among them: 70% domains, 20% addresses,
    10% networks."""
    rng = random.Random(seed)
    rows = list(hits)
    kinds = Counter(k for _i, k, _t in hits)
    n_domains = int(count * 0.70) - kinds["domain"] - kinds["hostname"]
    n_addresses = int(count * 0.20) - kinds["ip"]
    n_networks = count - len(rows) - n_domains - n_addresses
    tags = ("phishing", "malware", "c2", "spam", "scanner", None)
    seen: set[str] = set()
    while len(seen) < n_domains:
        label = "".join(rng.choices(_ALNUM, k=rng.randint(5, 14)))
        name = f"{label}.{rng.choice(_TLDS)}"
        if rng.random() < 0.3:
            name = f"{rng.choice(('www', 'login', 'cdn', 'secure', 'mail', 'app'))}.{name}"
        if name not in seen:
            seen.add(name)
            rows.append((name, "hostname" if rng.random() < 0.1 else "domain", rng.choice(tags)))
    seen.clear()
    while len(seen) < n_addresses:
        if rng.random() < 0.75:
            text = f"{rng.choice(_V4_FIRST)}.{rng.randrange(256)}.{rng.randrange(256)}."
            text += str(rng.randrange(1, 255))
        else:
            raw = rng.choice(_V6_FIRST).to_bytes(2, "big") + rng.randbytes(14)
            text = _v6_text(raw)
        if text not in seen:
            seen.add(text)
            rows.append((text, "ip", rng.choice(tags)))
    seen.clear()
    while len(seen) < n_networks:
        if rng.random() < 0.8:
            length = rng.choice(_V4_PREFIXES)
            value = rng.choice(_V4_FIRST) << 24 | rng.getrandbits(24)
            value &= ((1 << length) - 1) << (32 - length)
            text = f"{_v4_text(value.to_bytes(4, 'big'))}/{length}"
        else:
            length = rng.choice(_V6_PREFIXES)
            value = rng.choice(_V6_FIRST) << 112 | rng.getrandbits(112)
            value &= ((1 << length) - 1) << (128 - length)
            text = f"{_v6_text(value.to_bytes(16, 'big'))}/{length}"
        if text not in seen:
            seen.add(text)
            rows.append((text, "cidr", rng.choice(tags)))
    rng.shuffle(rows)
    return rows


def write_lists(rows: list[tuple[str, str, str]], folder: Path) -> tuple[Path, Path]:
    """The same indicators as a text file (one a line) and as a CSV with type and tag."""
    text, csv = folder / "indicators.txt", folder / "indicators.csv"
    with open(text, "w", encoding="utf-8") as out:
        out.write("# generated by bench/enrich.py\n")
        out.writelines(f"{indicator}\n" for indicator, _kind, _tag in rows)
    with open(csv, "w", encoding="utf-8") as out:
        out.write("indicator,type,tag\n")
        out.writelines(f"{i},{k},{t or ''}\n" for i, k, t in rows)
    return text, csv


def load_in_child(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _LOADER, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- replays ------------------------------------------------------------------------------


@dataclass
class Pass:
    cpu_s: float
    wall_s: float
    setup_s: float
    packets: int
    records: Counter[str]
    stats: dict[str, Any]
    intel: list[dict[str, Any]]
    full_gcs: int
    full_gc_s: float


class _FullCollections:
    """Counts the collections of the oldest generation while it is installed, and their time."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> _FullCollections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self)


def replay(pcap: Path, config: Config, indicators: Indicators | None = None) -> Pass:
    started = time.perf_counter()
    pipeline = Pipeline(config)
    if indicators is not None:
        pipeline.enrich.intel = IntelMatcher(pipeline.stats, indicators)
    setup_s = time.perf_counter() - started
    capture_stats: Counter[str] = Counter()
    sources = [CaptureSource(str(pcap))]
    records: Counter[str] = Counter()
    intel: list[dict[str, Any]] = []
    with _FullCollections() as full:
        wall = time.perf_counter()
        cpu = time.process_time()
        for batch in replay_batches(sources, capture_stats, lambda _done: None):
            out = pipeline.feed(batch)
            for record in out:
                records[record["type"]] += 1
            if indicators is not None:
                intel += [r for r in out if r["type"] == "intel"]
        out = pipeline.drain()
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
    for record in out:
        records[record["type"]] += 1
    intel += [r for r in out if r["type"] == "intel"]
    stats = pipeline.stats_record(capture=dict(capture_stats))
    return Pass(
        cpu, wall, setup_s, stats["packets"], records, stats, intel, full.count, full.seconds
    )


MODES = {
    "off": "enrichment off",
    "attribution": "attribution on",
    "small": "attribution + the planted indicators alone",
    "intel": "attribution + the whole list",
}


def _median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def scan_only(pcap: Path, indicators: Indicators) -> list[str]:
    """IntelMatcher.scan alone over the records of one replay (best of 5): the matching cost
    without the noise of the rest of the pipeline."""
    pipeline = Pipeline(parse_config(""))
    records: list[Any] = []
    for batch in replay_batches([CaptureSource(str(pcap))], Counter(), lambda _done: None):
        records += pipeline.feed(batch)
    records += pipeline.drain()
    flows = [r for r in records if r["type"] == "flow"]
    names = [r["qname"] for r in records if r["type"] == "dns" and r["qname"]]
    best = {"scan": 1e9, "address": 1e9, "name": 1e9}
    for _ in range(5):
        matcher = IntelMatcher(Counter(), indicators)
        out: list[dict[str, Any]] = []
        cpu = time.process_time()
        for record in records:
            matcher.scan(record, out)
        best["scan"] = min(best["scan"], time.process_time() - cpu)
        cpu = time.process_time()
        for record in flows:
            indicators.match_address(record["dst"])
        best["address"] = min(best["address"], time.process_time() - cpu)
        cpu = time.process_time()
        for name in names:
            indicators.match_name(name)
        best["name"] = min(best["name"], time.process_time() - cpu)
    tables = Counter(width for width, _length in indicators.networks)
    return [
        f"IntelMatcher.scan alone over those {len(records):,} records (best of 5): "
        f"{best['scan'] / len(records) * 1e6:.2f} µs per record; one address lookup "
        f"{best['address'] / len(flows) * 1e6:.2f} µs ({tables[32]} IPv4 and {tables[128]} "
        f"IPv6 prefix-length tables to probe), one name lookup "
        f"{best['name'] / len(names) * 1e6:.2f} µs."
    ]


def reload_impact(
    pcap: Path, config: Config, indicators: Indicators, list_path: Path, rounds: int
) -> dict[str, Any]:
    """Wall seconds of replays during a background reload of the list, against without."""
    quiet: list[float] = []
    during: list[float] = []
    reload_s: list[float] = []
    for _ in range(rounds):
        quiet.append(replay(pcap, config, indicators).wall_s)
        matcher = IntelMatcher(Counter(), indicators)
        done = threading.Event()

        class Log:
            def info(self, _event: str, **fields: Any) -> None:
                reload_s.append(fields["seconds"])

            def warning(self, event: str, **fields: Any) -> None:
                raise SystemExit(f"bench.enrich: {event} {fields}")

        matcher.reload((str(list_path),), Log(), done.set)
        while not done.is_set():  # replays that start and end while the list loads
            one = replay(pcap, config, indicators)
            if not done.is_set():
                during.append(one.wall_s)
        matcher.wait_loaded(600)
    return {"quiet": quiet, "during": during, "reload_s": reload_s}


# --- report -------------------------------------------------------------------------------


def _environment() -> str:
    model = cpu_model()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.enrich", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--packets", type=int, default=250_000, help="of the mix's capture")
    parser.add_argument("--seed", type=int, default=1, help="of the mix and of the list")
    parser.add_argument("--indicators", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="replays of each mode")
    parser.add_argument("--keep", action="store_true", help="keep a capture this run made")
    parser.add_argument("--no-reload", action="store_true", help="skip the reload replays")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.indicators < 100:
        parser.error("--repeat must be at least 1 and --indicators at least 100")
    made_before = set(OUT_DIR.glob("*")) if OUT_DIR.exists() else set()
    lines = [f"machine: {_environment()}", ""]
    try:
        pcap = capture(args.packets, args.seed)
        with tempfile.TemporaryDirectory(prefix="bench-enrich-") as tmp:
            started = time.perf_counter()
            hits = planted(pcap)
            rows = generate_indicators(args.indicators, args.seed, hits)
            text_path, csv_path = write_lists(rows, Path(tmp))
            print(
                f"generated {len(rows):,} indicators in {time.perf_counter() - started:.1f} s "
                f"(text {text_path.stat().st_size / 2**20:.1f} MiB, "
                f"CSV {csv_path.stat().st_size / 2**20:.1f} MiB)"
            )
            del rows
            (Path(tmp) / "small").mkdir()
            _text, small_path = write_lists(hits, Path(tmp) / "small")
            lines += load_section(text_path, csv_path, min(args.repeat, 3))
            lines += replay_section(args, pcap, csv_path, small_path)
    finally:
        if not args.keep:
            for path in set(OUT_DIR.glob("*")) - made_before:
                path.unlink()
    print()
    print("\n".join(lines))
    return 0


def load_section(text_path: Path, csv_path: Path, rounds: int) -> list[str]:
    loads: dict[str, list[dict[str, Any]]] = {"text": [], "CSV": []}
    for i in range(rounds):
        for kind, path in (("text", text_path), ("CSV", csv_path)):
            loads[kind].append(load_in_child(path))
            last = loads[kind][-1]
            print(f"load {i + 1}/{rounds} {kind}: {last['seconds']:.2f} s")
    out = [
        "| list | indicators | rejected | load s (median, min-max) | indicators/s "
        "| RSS added MiB | peak RSS MiB | bytes per indicator | full gc.collect() s, "
        "before / after the load |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for kind, runs in loads.items():
        seconds = _median_spread([r["seconds"] for r in runs])
        added = statistics.median(r["rss_after_kib"] - r["rss_before_kib"] for r in runs)
        n = runs[0]["indicators"]
        peak = max(r["hwm_kib"] for r in runs)
        gc_before = statistics.median(r["gc_before_s"] for r in runs)
        gc_after = statistics.median(r["gc_after_s"] for r in runs)
        out.append(
            f"| {kind} | {n:,} | {runs[0]['rejected']:,} | {seconds[0]:.2f} "
            f"({seconds[1]:.2f}-{seconds[2]:.2f}) | {n / seconds[0]:,.0f} | {added / 1024:.0f} "
            f"| {peak / 1024:.0f} | {added * 1024 / n:.0f} | {gc_before:.3f} / {gc_after:.3f} |"
        )
    return [*out, ""]


def replay_section(
    args: argparse.Namespace, pcap: Path, csv_path: Path, small_path: Path
) -> list[str]:
    configs = {
        "off": parse_config("[attribution]\nenabled = false\n"),
        "attribution": parse_config(""),
        "small": parse_config(""),
        "intel": parse_config(""),
    }
    started = time.perf_counter()
    indicators = load_indicators((str(csv_path),))
    print(f"list loaded in this process: {time.perf_counter() - started:.1f} s")
    lists = {"small": load_indicators((str(small_path),)), "intel": indicators}
    runs: dict[str, list[Pass]] = {mode: [] for mode in MODES}
    for i in range(args.repeat):
        for mode, config in configs.items():
            one = replay(pcap, config, lists.get(mode))
            runs[mode].append(one)
        print(
            f"round {i + 1}/{args.repeat}: "
            + ", ".join(f"{m} {runs[m][-1].cpu_s:.3f} s" for m in MODES)
        )
    first = runs["off"][0]
    for mode in MODES:  # enrichment adds intel records only
        for one in runs[mode]:
            plain = {k: v for k, v in one.records.items() if k != "intel"}
            assert plain == dict(first.records), (mode, one.records, first.records)
    packets = first.packets
    records = sum(first.records.values())
    off_cpu = statistics.median(r.cpu_s for r in runs["off"])
    out = [
        f"Replay of {pcap.name}: {packets:,} packets, {records:,} records ("
        + ", ".join(f"{k} {v:,}" for k, v in sorted(first.records.items()))
        + f"); {args.repeat} rounds, modes alternating; CPU seconds of feed + drain.",
        "",
        "| mode | CPU s (median, min-max) | packets/s (median, min-max) | ratio to off "
        "(median of rounds, min-max) | added µs per record | added µs per packet "
        "| pipeline set-up s |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for mode, label in MODES.items():
        cpu = _median_spread([r.cpu_s for r in runs[mode]])
        rates = _median_spread([packets / r.cpu_s for r in runs[mode]])
        ratios = _median_spread(
            [o.cpu_s / r.cpu_s for r, o in zip(runs[mode], runs["off"], strict=True)]
        )
        extra = cpu[0] - off_cpu
        setup = statistics.median(r.setup_s for r in runs[mode])
        per_record = "-" if mode == "off" else f"{extra / records * 1e6:.2f}"
        per_packet = "-" if mode == "off" else f"{extra / packets * 1e6:.3f}"
        out.append(
            f"| {label} | {cpu[0]:.3f} ({cpu[1]:.3f}-{cpu[2]:.3f}) | {rates[0]:,.0f} "
            f"({rates[1]:,.0f}-{rates[2]:,.0f}) | {ratios[0]:.3f} ({ratios[1]:.3f}-"
            f"{ratios[2]:.3f}) | {per_record} | {per_packet} | {setup:.3f} |"
        )
    hits = runs["intel"][0].intel
    assert len(hits) == len(runs["small"][0].intel)  # random indicators miss the mix
    by_place = Counter(h["matched"] for h in hits)
    by_tag = Counter(h["tag"] for h in hits)
    stats = runs["intel"][0].stats
    attribution = runs["attribution"][0].stats["attribution"]
    flows = first.records["flow"]
    out += [
        "",
        f"Intel hits with the list: {len(hits):,} records ("
        + ", ".join(f"{k} {v:,}" for k, v in sorted(by_place.items()))
        + "; by tag: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(by_tag.items(), key=str))
        + f"); repeats suppressed {stats['intel'].get('repeats', 0):,}.",
        f"Attribution: {attribution.get('flows_named_by_dns', 0):,} of {flows:,} flow records "
        f"named from DNS, {attribution.get('flows_unnamed', 0):,} unnamed, "
        f"{attribution.get('flows_without_service', 0):,} named without a service; "
        f"{attribution.get('dns_answers_cached', 0):,} answers cached.",
        "Full (generation 2) garbage collections during the timed runs: "
        + ", ".join(
            f"{MODES[m]} {sum(r.full_gcs for r in runs[m])} "
            f"({sum(r.full_gc_s for r in runs[m]):.2f} s)"
            for m in MODES
        )
        + ".",
        *scan_only(pcap, indicators),
        "",
    ]
    if not args.no_reload:
        impact = reload_impact(pcap, configs["intel"], indicators, csv_path, 2)
        quiet = statistics.median(impact["quiet"])
        if impact["during"]:
            during = statistics.median(impact["during"])
            out.append(
                f"Replays while the list reloads on its thread ({len(impact['during'])} "
                f"replays inside {len(impact['reload_s'])} reloads of "
                f"{statistics.median(impact['reload_s']):.1f} s): median wall {during:.3f} s "
                f"against {quiet:.3f} s without a reload: {quiet / during:.2f}x the rate."
            )
        else:
            out.append("The reloads ended before a replay did: no replay inside a reload.")
    return out


if __name__ == "__main__":
    sys.exit(main())
