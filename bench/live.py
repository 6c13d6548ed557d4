"""The live capture benchmark: packets per second against kernel drops, 1 and 2 workers.

    python3 -m bench.live [--packets 200000] [--seed 1] [--rates 25000,...,top] [--workers 1,2]

Needs root (network namespaces). Two namespaces joined by a veth pair
(tests.netns.veth_pair, MTU raised for the mix's largest frames, IPv6 off so that
the kernel sends nothing of its own); `tapsense run` captures on one end with its
default ring (64 blocks of 1 MiB, block_timeout_ms 100) and writes its records to a
JSON Lines file; tcpreplay, pinned to CPU 0, sends the mix (bench/gen_mix.py, kept in
bench/out/ like bench.run's) from the other end at each --pps rate and then at
--topspeed. For each run: packets sent (tcpreplay's "Actual"), the rate it reached,
what reached the ring (PACKET_STATISTICS), what the kernel dropped, what the engine
counted, and the daemon's CPU seconds (supervisor and workers, user + system, from
/proc) from the start of the replay until the daemon is idle again. A fresh daemon for
every run. The kernel's own work of handing packets to the socket runs in the
sender's context and is not in the daemon's CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.run import OUT_DIR, capture
from tests.daemon_harness import (
    Daemon,
    last_stats,
    link_counters,
    quiet_link,
    read_records,
    tcpreplay,
    worker_events,
    write_config,
)
from tests.netns import Host, can_make_namespaces, veth_pair

DEFAULT_RATES = "25000,50000,100000,200000,400000,top"
_RATED = re.compile(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps")
_SECONDS = re.compile(r"sent in ([\d.]+) seconds")


@dataclass(slots=True)
class Run:
    workers: int
    asked_pps: int | None  # None: --topspeed
    sent: int = 0
    seconds: float = 0.0
    pps: float = 0.0  # what tcpreplay reached
    ring: int = 0  # reached the ring (kernel_packets)
    drops: int = 0  # kernel_drops
    captured: int = 0  # packets the engine counted
    link_dropped: int = 0  # rx_dropped of the capturing end (before any socket)
    cpu_s: float = 0.0  # supervisor and workers
    supervisor_cpu_s: float = 0.0
    records: int = 0
    error: str = ""

    @property
    def drop_free(self) -> bool:
        return not self.error and self.drops == 0 and self.captured == self.sent

    @property
    def cpu_per_mpkt(self) -> float:
        """Supervisor and workers, CPU seconds per million packets captured."""
        return self.cpu_s / (self.captured / 1e6) if self.captured else 0.0

    @property
    def workers_cpu_per_mpkt(self) -> float:
        workers = self.cpu_s - self.supervisor_cpu_s
        return workers / (self.captured / 1e6) if self.captured else 0.0


def _wait_idle(daemon: Daemon, workers: list[int], timeout_s: float = 60.0) -> None:
    """Until the workers use no CPU for a while: every block that was ready is processed."""
    deadline = time.monotonic() + timeout_s
    last = daemon.cpu_seconds(workers)
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        time.sleep(0.2)
        now = daemon.cpu_seconds(workers)
        quiet = quiet + 1 if now - last < 0.02 else 0
        last = now


def one_run(
    a: Host,
    b: Host,
    pcap: Path,
    workers: int,
    pps: int | None,
    folder: Path,
    config: Path,
    preload: bool,
) -> Run:
    run = Run(workers, pps)
    events = folder / f"live-w{workers}-{pps or 'top'}.jsonl"
    daemon = Daemon(a, events, workers=workers, config=config)
    try:
        try:
            daemon.wait_event("daemon.ready", 30)
        except AssertionError as exc:
            failed = [e.get("error", "") for e in daemon.entries("worker.failed")]
            run.error = failed[0] if failed else str(exc).splitlines()[0]
            return run
        time.sleep(0.5)
        supervisor, *workers_pids = daemon.pids()
        before_cpu = daemon.cpu_seconds([supervisor, *workers_pids])
        before_supervisor = daemon.cpu_seconds([supervisor])
        before_link = link_counters(a)
        run.sent, output = tcpreplay(b, pcap, pps=pps, timeout_s=600, preload=preload)
        _wait_idle(daemon, workers_pids)
        run.cpu_s = daemon.cpu_seconds([supervisor, *workers_pids]) - before_cpu
        run.supervisor_cpu_s = daemon.cpu_seconds([supervisor]) - before_supervisor
        run.link_dropped = link_counters(a)["rx_dropped"] - before_link["rx_dropped"]
        if found := _RATED.search(output):
            run.pps = float(found.group(1))
        if found := _SECONDS.search(output):
            run.seconds = float(found.group(1))
        code = daemon.stop(timeout_s=60)
        if code != 0:
            run.error = f"exit code {code}"
        paths = [events] if workers == 1 else [worker_events(events, i) for i in range(workers)]
        for path in paths:
            records = read_records(path)
            stats = last_stats(records)
            run.ring += stats["capture"]["kernel_packets"]
            run.drops += stats["capture"]["kernel_drops"]
            run.captured += stats["packets"]
            run.records += sum(1 for r in records if r["type"] != "stats")
            path.unlink()
    finally:
        daemon.kill()
    return run


def _rate(text: str) -> int | None:
    return None if text == "top" else int(text)


def table(runs: list[Run]) -> str:
    lines = [
        "| workers | asked pps | sent | reached pps | to the ring | kernel drops "
        "| captured | drop-free | CPU s: workers | supervisor | CPU s per M packets: all "
        "| workers |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        asked = f"{r.asked_pps:,}" if r.asked_pps else "top speed"
        if r.error:
            lines.append(f"| {r.workers} | {asked} | failed: {r.error} |||||||||")
            continue
        lines.append(
            f"| {r.workers} | {asked} | {r.sent:,} | {r.pps:,.0f} | {r.ring:,} | {r.drops:,} "
            f"| {r.captured:,} | {'yes' if r.drop_free else 'no'} "
            f"| {r.cpu_s - r.supervisor_cpu_s:.2f} | {r.supervisor_cpu_s:.2f} "
            f"| {r.cpu_per_mpkt:.2f} | {r.workers_cpu_per_mpkt:.2f} |"
        )
    return "\n".join(lines)


def summary(runs: list[Run]) -> str:
    out = []
    for workers in sorted({r.workers for r in runs}):
        mine = [r for r in runs if r.workers == workers]
        if all(r.error for r in mine):
            out.append(f"- {workers} worker(s): no run: {mine[0].error}")
            continue
        free = [r for r in mine if r.drop_free]
        best = max(free, key=lambda r: r.pps, default=None)
        done = [r for r in mine if not r.error and r.captured]
        cpu = sorted(r.cpu_per_mpkt for r in done)
        median = cpu[len(cpu) // 2] if cpu else 0.0
        cpu_workers = sorted(r.workers_cpu_per_mpkt for r in done)
        median_workers = cpu_workers[len(cpu_workers) // 2] if cpu_workers else 0.0
        lost = [r for r in mine if not r.error and not r.drop_free]
        first_loss = min(lost, key=lambda r: r.pps, default=None)
        fastest = max((r for r in mine if not r.error), key=lambda r: r.pps)
        if not lost:
            text = f"- {workers} worker(s): no drop at any rate, up to {fastest.pps:,.0f} pps"
            text += " (the most the sender reached)"
        else:
            text = f"- {workers} worker(s): highest drop-free rate "
            text += f"{best.pps:,.0f} pps" if best else "none"
            assert first_loss is not None
            text += f"; drops from {first_loss.pps:,.0f} pps"
            text += f" ({first_loss.drops:,} packets dropped of {first_loss.sent:,})"
        text += (
            f"; CPU s per million packets (median over runs): {median:.2f}, "
            f"of which the workers {median_workers:.2f}"
        )
        out.append(text)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.live", description=__doc__)
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rates", default=DEFAULT_RATES, help="pps list; top = --topspeed")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument(
        "--ring",
        default="1024x64",
        metavar="KBxN",
        help="the ring: block_size_kb x block_count (default 1024x64, the daemon's default)",
    )
    parser.add_argument(
        "--preload", action="store_true", help="tcpreplay --preload-pcap (a faster sender)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the runs as JSON too")
    parser.add_argument("--keep", action="store_true", help="keep the capture in bench/out/")
    args = parser.parse_args(argv)
    if not can_make_namespaces() or not shutil.which("tcpreplay"):
        print("bench.live needs root (network namespaces) and tcpreplay", file=sys.stderr)
        return 2
    rates = [_rate(r.strip()) for r in args.rates.split(",") if r.strip()]
    block_kb, _, blocks = args.ring.partition("x")
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    existed = set(OUT_DIR.glob("*.pcap"))
    pcap = capture(args.packets, args.seed)
    load_before = os.getloadavg()
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
        f"{pcap.name}: {args.packets:,} packets; ring {block_kb} KiB x {blocks} blocks"
        + (", tcpreplay --preload-pcap" if args.preload else "")
    )
    runs: list[Run] = []
    folder = Path(tempfile.mkdtemp(prefix="tapsense-live-"))
    started = time.monotonic()
    config = write_config(
        folder / "live.toml",
        {"capture": {"block_size_kb": int(block_kb), "block_count": int(blocks)}},
    )
    try:
        with veth_pair("bl") as (a, b):
            quiet_link(a, b)
            for workers in worker_counts:
                for pps in rates:
                    run = one_run(a, b, pcap, workers, pps, folder, config, args.preload)
                    runs.append(run)
                    print(table([run]).splitlines()[-1], flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if not args.keep and pcap not in existed:
            pcap.unlink(missing_ok=True)
    load_after = os.getloadavg()
    print()
    print(table(runs))
    print()
    print(summary(runs))
    print(
        f"\n{time.monotonic() - started:.0f} s; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f} (1 min)"
    )
    if args.json:
        payload: dict[str, Any] = {
            "packets": args.packets,
            "seed": args.seed,
            "ring": args.ring,
            "preload": args.preload,
            "load": [load_before, load_after],
            "runs": [
                {
                    **asdict(r),
                    "drop_free": r.drop_free,
                    "cpu_per_mpkt": r.cpu_per_mpkt,
                    "workers_cpu_per_mpkt": r.workers_cpu_per_mpkt,
                }
                for r in runs
            ],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
