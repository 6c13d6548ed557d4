"""The speed benchmark of the core replay: tapsense against the dpkt reference, same run.

    python3 -m bench.run [--packets 1000000] [--repeat 3] [--keep]

Generates the mix (bench/gen_mix.py) into bench/out/ unless it is there,
checks once that both programs emit the same records on the same packets,
then runs as subprocesses, alternating: `python3 -m agent replay` on the
whole capture and `python3 -m bench.dpkt_reference` on its first
--dpkt-packets packets (dpkt is slow; the rates per CPU second are
compared), plus tapsense on a --small-packets capture of the same seed (a
prefix of the large one) to compare peak memory. CPU seconds (user + system)
and peak RSS come from os.wait4 for each child; the best of --repeat runs
counts. Both programs run from compiled bytecode (.pyc), as installed
packages do. Machines are shared and noisy, so only ratios measured in the same
run mean anything. The tables go to stdout and to bench/results.md.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import platform
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import orjson

from bench.gen_mix import generate

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results.md"
GOAL_RATIO = 20.0
AIM_RATIO = 50.0
TS_TOLERANCE_S = 2e-6  # pcap timestamps are microseconds; floats differ in the last digits


@dataclass(slots=True)
class Run:
    cpu_s: float
    wall_s: float
    max_rss_kib: int


@dataclass(slots=True)
class Measure:
    """Every run of one command; the best CPU time counts."""

    label: str
    packets: int
    command: list[str]
    runs: list[Run] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return min(r.cpu_s for r in self.runs)

    @property
    def wall_s(self) -> float:
        return min(r.wall_s for r in self.runs)

    @property
    def rss_mib(self) -> float:
        return max(r.max_rss_kib for r in self.runs) / 1024

    @property
    def rate(self) -> float:
        return self.packets / self.cpu_s


# Measures one command from a small interpreter, so the peak RSS is the command's own:
# Linux carries the high-water RSS of the memory a process had before exec (the parent's,
# after fork or vfork) into ru_maxrss, and this runner grows large.
_LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
print(usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_child(command: list[str]) -> Run:
    """Runs command from the repository root; its CPU time and peak RSS via os.wait4."""
    launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, *command]
    done = subprocess.run(launcher, cwd=ROOT, capture_output=True, text=True)
    try:
        cpu, wall, rss, code = done.stdout.split()
    except ValueError:
        code = "?"
    if done.returncode or code != "0":
        raise SystemExit(f"bench.run: {' '.join(command)} failed:\n{done.stderr.strip()}")
    return Run(float(cpu), float(wall), int(rss))


def compile_bytecode() -> None:
    """Writes the .pyc files of agent/ and bench/ as an install would, so that neither
    program compiles its sources at every start (PYTHONDONTWRITEBYTECODE, or a read-only
    tree, would otherwise leave the timed runs doing it; dpkt is compiled at install)."""
    for folder in ("agent", "bench"):
        if not compileall.compile_dir(ROOT / folder, quiet=1):
            raise SystemExit(f"bench.run: {folder}/ does not compile")


def capture(packets: int, seed: int) -> Path:
    """The capture of the mix for (packets, seed), generated if it is not there yet."""
    path = OUT_DIR / f"mix-{packets}-s{seed}.pcap"
    if not path.exists():
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        started = time.perf_counter()
        summary = generate(partial, packets, seed)
        partial.rename(path)
        print(f"generated {path.name} in {time.perf_counter() - started:.1f} s: {summary.line()}")
    return path


# The reference does the job of the core and TLS/QUIC issues: decode, flows, DNS, hellos.
# Service attribution is a further job (bench/enrich.py measures it), so it is off here.
SAME_JOB_CONFIG = OUT_DIR / "same-job.toml"


def tapsense(path: Path, events: str = "/dev/null") -> list[str]:
    SAME_JOB_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    SAME_JOB_CONFIG.write_text("[attribution]\nenabled = false\n")
    return [
        *(sys.executable, "-m", "agent", "replay", str(path), "--events", events, "-q"),
        *("--config", str(SAME_JOB_CONFIG)),
    ]


def reference(path: Path, packets: int, events: str = "/dev/null") -> list[str]:
    command = [sys.executable, "-m", "bench.dpkt_reference", str(path), "--events", events]
    return [*command, "--max-packets", str(packets), "-q"]


def _records(path: Path) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(path, "rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            if record["type"] != "stats":
                by_type[record["type"]].append(record)
    for records in by_type.values():
        records.sort(key=lambda r: (r["flow"], round(r["ts"], 5), r.get("end", ""), r.get("id", 0)))
    return by_type


def _same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields where two records differ (timestamps within TS_TOLERANCE_S are equal)."""
    fields = []
    for key in a.keys() | b.keys():
        x, y = a.get(key, KeyError), b.get(key, KeyError)
        if isinstance(x, float) and isinstance(y, float) and abs(x - y) <= TS_TOLERANCE_S:
            continue
        if x != y:
            fields.append(key)
    return fields


def agreement(ours: Path, theirs: Path) -> list[str]:
    """Markdown rows: records per type of each program, and how many differ in content."""
    a, b = _records(ours), _records(theirs)
    rows = []
    for kind in sorted(a.keys() | b.keys()):
        differing: Counter[str] = Counter()
        unequal = 0
        for x, y in zip(a[kind], b[kind], strict=False):
            fields = _same(x, y)
            unequal += bool(fields)
            differing.update(fields)
        unequal += abs(len(a[kind]) - len(b[kind]))
        which = ", ".join(f"{k} {v}" for k, v in differing.most_common(4)) or "-"
        rows.append(f"| {kind} | {len(a[kind]):,} | {len(b[kind]):,} | {unequal:,} | {which} |")
    return rows


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, for the figures' context."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _environment() -> list[str]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = (
        " (with uncommitted changes)" if git("status", "--porcelain", "--", "agent", "ext") else ""
    )
    model = cpu_model()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"tapsense commit {git('rev-parse', '--short', 'HEAD')}{dirty}",
        f"- machine: {model}, {os.cpu_count()} CPUs, load average before the runs {load}",
        f"- Python {platform.python_version()}, dpkt {dpkt.__version__}",
    ]


def _row(m: Measure) -> str:
    rate = f"{m.rate:,.0f}" if m.packets else "-"
    return (
        f"| {m.label} | {m.packets:,} | {m.cpu_s:.2f} | {rate} | {m.wall_s:.2f} | {m.rss_mib:.0f} |"
    )


def report(
    args: argparse.Namespace, measures: dict[str, Measure], check: list[str], env: list[str]
) -> str:
    big, same, ref = measures["tapsense"], measures["tapsense_small"], measures["dpkt"]
    ratio_big = big.rate / ref.rate
    ratio_same = same.rate / ref.rate
    ours_start, their_start = measures["tapsense_startup"], measures["dpkt_startup"]
    net_ours = big.packets / max(big.cpu_s - ours_start.cpu_s, 1e-3)
    net_theirs = ref.packets / max(ref.cpu_s - their_start.cpu_s, 1e-3)
    verdict = "meets" if ratio_big >= GOAL_RATIO else "misses"
    lines = [
        "# Replay benchmark: tapsense against the dpkt reference",
        "",
        f"Mix of bench/gen_mix.py, seed {args.seed}; best of {args.repeat} runs each, "
        "alternating; CPU = user + system seconds of the child process (os.wait4), "
        "interpreter start-up and imports included.",
        "",
        *env,
        "",
        "| program | packets | CPU s | packets per CPU s | wall s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
        _row(big),
        _row(same),
        _row(ref),
        _row(measures["tapsense_startup"]),
        _row(measures["dpkt_startup"]),
        "",
        f"The dpkt reference reads only the first {ref.packets:,} packets of the "
        f"{big.packets:,}-packet file (the {same.packets:,}-packet file of the same seed holds "
        "exactly those packets); rates per CPU second are compared.",
        "",
        f"**tapsense / dpkt: {ratio_big:.1f}x** packets per CPU second "
        f"({big.packets:,} packets against {ref.packets:,}); {ratio_same:.1f}x on the same "
        f"{same.packets:,} packets. The goal is at least {GOAL_RATIO:.0f}x (aim "
        f"{AIM_RATIO:.0f}x): this run {verdict} it. Without start-up (the start-up-only "
        f"CPU subtracted): {net_ours:,.0f} against {net_theirs:,.0f} packets per CPU second, "
        f"{net_ours / net_theirs:.1f}x.",
        "",
        f"Peak RSS of tapsense: {same.rss_mib:.0f} MiB for {same.packets:,} packets, "
        f"{big.rss_mib:.0f} MiB for {big.packets:,} ({big.rss_mib / same.rss_mib:.2f}x for "
        f"{big.packets / same.packets:.0f}x the packets).",
    ]
    if check:
        lines += [
            "",
            f"Same records? tapsense on the {same.packets:,}-packet file against the reference "
            "on the same packets (stats records left out; timestamps equal within 2 us):",
            "",
            "| record type | tapsense | dpkt reference | differing | fields that differ |",
            "|---|---:|---:|---:|---|",
            *check,
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--packets", type=int, default=1_000_000, help="tapsense's capture")
    parser.add_argument(
        "--small-packets",
        type=int,
        default=250_000,
        help="a smaller capture of the same seed, for memory",
    )
    parser.add_argument(
        "--dpkt-packets",
        type=int,
        default=None,
        help="packets the dpkt reference reads (default: --small-packets)",
    )
    parser.add_argument("--seed", type=int, default=1, help="of the mix")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; the best counts")
    parser.add_argument("--no-check", action="store_true", help="skip the same-records check")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the captures and event files in bench/out/ for the next run",
    )
    args = parser.parse_args(argv)
    small = min(args.small_packets, args.packets)
    ref_packets = min(args.dpkt_packets or small, args.packets)
    if args.repeat < 1 or small < 1:
        parser.error("--repeat and the packet counts must be at least 1")
    made_before = set(OUT_DIR.glob("*")) if OUT_DIR.exists() else set()
    env = _environment()
    check: list[str] = []
    compile_bytecode()
    try:
        big_path, small_path = capture(args.packets, args.seed), capture(small, args.seed)
        if not args.no_check:
            ours, theirs = OUT_DIR / "tapsense-small.jsonl", OUT_DIR / "dpkt-small.jsonl"
            run_child(tapsense(small_path, str(ours)))
            run_child(reference(big_path, small, str(theirs)))
            check = agreement(ours, theirs)
        startup = [sys.executable, "-c", "import agent.cli, agent.core"]
        measures = {
            "tapsense": Measure("tapsense replay", args.packets, tapsense(big_path)),
            "dpkt": Measure("dpkt reference", ref_packets, reference(big_path, ref_packets)),
            "tapsense_small": Measure("tapsense replay (small file)", small, tapsense(small_path)),
            "tapsense_startup": Measure("tapsense start-up only", 0, startup),
            "dpkt_startup": Measure("dpkt reference start-up only", 0, reference(big_path, 0)),
        }
        for i in range(args.repeat):
            for m in measures.values():
                m.runs.append(run_child(m.command))
            print(
                f"run {i + 1}/{args.repeat}: "
                + ", ".join(f"{m.label} {m.runs[-1].cpu_s:.2f} s" for m in measures.values())
            )
    finally:
        if not args.keep:
            for path in set(OUT_DIR.glob("*")) - made_before:
                path.unlink()
    text = report(args, measures, check, env)
    RESULTS.write_text(text)
    print()
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
