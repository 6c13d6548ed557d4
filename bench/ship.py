"""The shipping benchmark: batches into SQLite per second, and bytes per record on the wire.

    python3 -m bench.ship [--packets 100000] [--seed 1] [--sensors 1,10,50] [--batches 1000]
                          [--keep] [--no-bytes] [--no-throughput]

Throughput: one collector (`python3 -m agent collect`, a subprocess) on 127.0.0.1 and N
sensors at once (agent.ship.Shipper, one thread each, in this process), each shipping its
share of --batches prepared batches (the window_s = 1 batches of the mix, under a stream of
its own). The spools are filled before the clock starts, so what is timed is sending,
checking, storing and acknowledging: wall seconds until every spool is empty, and the
collector's CPU seconds (user + system, /proc) over that time. A fresh collector and
database for each N.

Bytes: the mix replayed in-process through the pipeline and agent.summary.Summariser, as
`agent replay --ship` does; the framed batches' total size per record, with records and
with rollups only (`[ship] records = false`), against the JSON Lines of `--events`; then
where the bytes go, field by field. The tables go to stdout (Markdown).
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import msgpack
import orjson

from agent.capfile import CaptureSource, replay_batches
from agent.core import Pipeline
from agent.output import JsonLinesWriter
from agent.record import Record
from agent.ship import Shipper, Target
from agent.spool import Spool
from agent.summary import Summariser
from agent.wire import frame
from bench.run import OUT_DIR, capture
from tests.shipping_harness import Collector, ListLog, count_batches, cpu_seconds

GOAL_RATIO = 3.0  # batches with records: at least 3x smaller than JSON Lines


def _pack(value: Any) -> int:
    return len(msgpack.packb(value, use_bin_type=True))


def replay(
    pcap: Path, window_s: float | None = None, records: bool = True, compression: str = "zlib"
) -> tuple[list[Record], list[dict[str, Any]]]:
    """The records of a replay (final stats record included) and, with window_s, its batches."""
    pipeline = Pipeline()
    counts: Counter[str] = Counter()
    if window_s is not None:
        pipeline.summary = Summariser(
            sensor="bench",
            stream="bench",
            window_s=window_s,
            records=records,
            compression=compression,
            stats=lambda: dict(pipeline.stats_record(capture=dict(counts))),
        )
    out: list[Record] = []
    batches: list[dict[str, Any]] = []
    for batch in replay_batches([CaptureSource(str(pcap))], counts, lambda _done: None):
        out += pipeline.feed(batch)
        batches += pipeline.take_batches()
    out += pipeline.drain()
    batches += pipeline.take_batches()
    out.append(pipeline.stats_record(capture=dict(counts)))
    return out, batches


# --- bytes --------------------------------------------------------------------------------


def measure_bytes(pcap: Path, workdir: Path) -> dict[str, Any]:
    records, _ = replay(pcap)
    events = workdir / "events.jsonl"
    writer = JsonLinesWriter(str(events))
    writer.write(records)
    writer.close()
    shipped = [r for r in records if r["type"] != "stats"]
    jsonl_bytes = events.stat().st_size
    result: dict[str, Any] = {
        "records": len(shipped),
        "jsonl_bytes": jsonl_bytes,
        "jsonl_records_bytes": sum(len(orjson.dumps(r)) + 1 for r in shipped),
        "settings": {},
    }
    for window_s in (10.0, 1.0):
        for keep in (True, False):
            _, batches = replay(pcap, window_s, keep)  # as shipped: tables deflated
            _, plain = replay(pcap, window_s, keep, compression="none")
            assert sum(b["count"] for b in batches) == len(shipped)
            result["settings"][(window_s, keep)] = {
                "batches": len(batches),
                "bytes": sum(len(frame(b)) for b in batches),
                "plain_bytes": sum(len(frame(b)) for b in plain),
                "parts": parts(plain),
                "fields": field_bytes(plain) if keep else {},
            }
    result["json_fields"] = json_field_bytes(shipped)
    result["by_type"] = Counter(r["type"] for r in shipped)
    return result


def parts(batches: list[dict[str, Any]]) -> dict[str, int]:
    """Bytes of the batches by part: record tables, stats, rollups, the rest (keys, frame)."""
    out = {"tables": 0, "stats": 0, "rollups": 0, "envelope": 0}
    for b in batches:
        tables, stats, rollups = _pack(b["tables"]), _pack(b["stats"]), _pack(b["rollups"])
        out["tables"] += tables
        out["stats"] += stats
        out["rollups"] += rollups
        out["envelope"] += len(frame(b)) - tables - stats - rollups
    return out


def field_bytes(batches: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """msgpack bytes of each (record type, field) over the tables of the batches."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for b in batches:
        for kind, table in b["tables"].items():
            out[(kind, "(names, lists)")] += _pack(table) - sum(
                _pack(v) for row in table["rows"] for v in row
            )
            for row in table["rows"]:
                for name, value in zip(table["fields"], row, strict=True):
                    out[(kind, name)] += _pack(value)
    return dict(out)


def json_field_bytes(records: list[Record]) -> dict[tuple[str, str], int]:
    """JSON Lines bytes of each (record type, field): `"name":value,` as orjson writes it."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        for name, value in r.items():
            out[(r["type"], name)] += len(orjson.dumps(name)) + 1 + len(orjson.dumps(value)) + 1
    return dict(out)


# --- throughput ---------------------------------------------------------------------------


def measure_throughput(
    template: list[dict[str, Any]], sensors: int, total_batches: int, workdir: Path
) -> dict[str, Any]:
    """N shippers at once into one collector; wall and collector CPU seconds until drained."""
    folder = Path(tempfile.mkdtemp(prefix=f"ship-{sensors}-", dir=workdir))
    collector = Collector(folder / "store.db", folder / "collector.log").start()
    try:
        target = Target.parse(f"tcp://{collector.address}")
        spools = [Spool(folder / f"sensor-{i:03d}", 1 << 40, fsync="never") for i in range(sensors)]
        records = 0
        for k in range(total_batches):  # the same batches whatever the number of sensors
            b = template[k % len(template)]
            stream = f"bench-{k // len(template)}"  # round r of the template: stream bench-r
            spool = spools[k % sensors]
            message = {**b, "sensor": spool.directory.name, "stream": stream}
            spool.put(stream, b["seq"], frame(message), b["count"])
            records += b["count"]
        shippers = [
            Shipper(target, spool, sensor=spool.directory.name, log=ListLog()) for spool in spools
        ]
        cpu_before = cpu_seconds(collector.pid)
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        for shipper in shippers:
            shipper.start()
        for shipper in shippers:
            if not shipper.wait_drained(600):
                raise SystemExit(f"bench.ship: {shipper.sensor} not drained: {shipper.stats()}")
        wall = time.perf_counter() - started
        cpu = cpu_seconds(collector.pid) - cpu_before
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        for shipper in shippers:
            shipper.close()
        stored = count_batches(collector.db)
        if stored != total_batches:
            raise SystemExit(f"bench.ship: {stored} batches stored of {total_batches}")
        db_bytes = sum(p.stat().st_size for p in folder.glob("store.db*"))
    finally:
        code = collector.stop()
    if code != 0:
        raise SystemExit(f"bench.ship: the collector exited {code}: {collector.log()[-2000:]}")
    sender_cpu = (self_after.ru_utime - self_before.ru_utime) + (
        self_after.ru_stime - self_before.ru_stime
    )
    return {
        "sensors": sensors,
        "batches": total_batches,
        "records": records,
        "wall_s": wall,
        "collector_cpu_s": cpu,
        "sender_cpu_s": sender_cpu,
        "db_bytes": db_bytes,
    }


# --- report -------------------------------------------------------------------------------


def report_bytes(b: dict[str, Any]) -> list[str]:
    n = b["records"]
    jsonl = b["jsonl_bytes"] / n
    out = [
        f"### Bytes per record ({n:,} records: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(b["by_type"].items()))
        + ")",
        "",
        f"JSON Lines (`--events`): {b['jsonl_bytes']:,} bytes, **{jsonl:.0f} bytes per record**"
        f" ({b['jsonl_records_bytes'] / n:.0f} without the final stats line).",
        "",
        "| batches | window_s | batches | bytes | bytes per record | JSON Lines / batches |"
        ' `compression = "none"`: bytes per record | ratio |',
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (window_s, keep), s in b["settings"].items():
        per = s["bytes"] / n
        plain = s["plain_bytes"] / n
        out.append(
            f"| {'records' if keep else 'rollups only'} | {window_s:g} | {s['batches']:,} | "
            f"{s['bytes']:,} | {per:.1f} | **{jsonl / per:.1f}x** | {plain:.1f} |"
            f" {jsonl / plain:.1f}x |"
        )
    records_10 = b["settings"][(10.0, True)]
    ratio = jsonl / (records_10["bytes"] / n)
    verdict = "met" if ratio >= GOAL_RATIO else "missed"
    out += [
        "",
        f"Goal: batches with records at least {GOAL_RATIO:g}x smaller than JSON Lines: "
        f"**{verdict}** ({ratio:.2f}x at the default window_s = 10).",
        "",
        "Where the bytes of the batches go before deflate"
        ' (`compression = "none"`, bytes per record):',
        "",
        "| batches | window_s | record tables | stats | rollups | keys and frame |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (window_s, keep), s in b["settings"].items():
        p = s["parts"]
        out.append(
            f"| {'records' if keep else 'rollups only'} | {window_s:g} | "
            f"{p['tables'] / n:.1f} | {p['stats'] / n:.1f} | {p['rollups'] / n:.1f} | "
            f"{p['envelope'] / n:.1f} |"
        )
    fields = records_10["fields"]
    json_fields = b["json_fields"]
    out += [
        "",
        "The largest fields in the record tables (window_s = 10), against the same fields"
        " in JSON Lines (bytes per record of that type):",
        "",
        "| type | field | msgpack | JSON | share of the tables |",
        "|---|---|---:|---:|---:|",
    ]
    total = sum(fields.values())
    for (kind, name), size in sorted(fields.items(), key=lambda kv: -kv[1])[:20]:
        count = b["by_type"][kind]
        json_size = json_fields.get((kind, name))
        json_text = f"{json_size / count:.1f}" if json_size else "-"
        out.append(f"| {kind} | {name} | {size / count:.1f} | {json_text} | {size / total:.1%} |")
    by_type: dict[str, int] = defaultdict(int)
    for (kind, _name), size in fields.items():
        by_type[kind] += size
    json_by_type: dict[str, int] = defaultdict(int)
    for (kind, _name), size in json_fields.items():
        json_by_type[kind] += size + 1  # the braces and the newline
    out += [
        "",
        "| type | records | msgpack bytes per record | JSON bytes per record | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, count in sorted(b["by_type"].items()):
        m, j = by_type[kind] / count, json_by_type[kind] / count
        out.append(f"| {kind} | {count:,} | {m:.1f} | {j:.1f} | {j / m:.1f}x |")
    return out


def report_throughput(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "### Into SQLite",
        "",
        "| sensors | batches | records | wall s | batches/s | records/s | collector CPU s |"
        " records per collector CPU s | sender CPU s | SQLite bytes per record |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['sensors']} | {r['batches']:,} | {r['records']:,} | {r['wall_s']:.2f} | "
            f"{r['batches'] / r['wall_s']:,.0f} | {r['records'] / r['wall_s']:,.0f} | "
            f"{r['collector_cpu_s']:.2f} | {r['records'] / r['collector_cpu_s']:,.0f} | "
            f"{r['sender_cpu_s']:.2f} | {r['db_bytes'] / r['records']:.0f} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.ship", description=__doc__)
    parser.add_argument("--packets", type=int, default=100_000, help="packets of the mix")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sensors", default="1,10,50", help="sensor counts, comma-separated")
    parser.add_argument(
        "--batches", type=int, default=1000, help="batches per run, shared out among the sensors"
    )
    parser.add_argument("--keep", action="store_true", help="keep the capture in bench/out/")
    parser.add_argument("--no-bytes", action="store_true", help="skip the bytes measurement")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput")
    args = parser.parse_args(argv)
    existed = (OUT_DIR / f"mix-{args.packets}-s{args.seed}.pcap").exists()
    pcap = capture(args.packets, args.seed)
    command = " ".join(["python3 -m bench.ship", *(argv if argv is not None else sys.argv[1:])])
    when = time.strftime("%Y-%m-%d")
    lines = [f"`{command}`: Python {platform.python_version()}, {when}", ""]
    with tempfile.TemporaryDirectory(prefix="bench-ship-") as tmp:
        workdir = Path(tmp)
        if not args.no_throughput:
            _, template = replay(pcap, window_s=1.0)
            rows = []
            for sensors in (int(s) for s in args.sensors.split(",")):
                rows.append(measure_throughput(template, sensors, args.batches, workdir))
                print(f"bench.ship: {sensors} sensors done", file=sys.stderr)
            per_batch = sum(b["count"] for b in template) / len(template)
            lines += report_throughput(rows)
            lines += [
                "",
                f"Batches of window_s = 1 of the mix: {len(template)} distinct, "
                f"{per_batch:.0f} records each on average.",
                "",
            ]
        if not args.no_bytes:
            lines += report_bytes(measure_bytes(pcap, workdir))
    if not existed and not args.keep:
        pcap.unlink()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
