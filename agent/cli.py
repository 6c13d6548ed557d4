"""The `tapsense` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from agent import __version__
from agent.capfile import CaptureError, CaptureSource, open_sources, replay_batches
from agent.config import Config, ConfigError, load_config
from agent.core import Pipeline
from agent.enrich import EnrichError
from agent.output import JsonLinesWriter
from agent.record import Record

EXIT_USAGE = 2
EXIT_NOT_SHIPPED = 3  # replay --ship: batches left in the spool, unacknowledged
CAPTURE_PROBLEMS = ("truncated_record", "corrupt_header", "bad_block", "unknown_interface")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """Bad arguments or configuration: one line, exit code 2."""


def _fail(message: str) -> int:
    print(f"tapsense: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _config_from(path: str | None) -> Config:
    if not path:
        return Config()
    try:
        return load_config(Path(path))
    except ConfigError as exc:
        raise UsageError(f"{path}: invalid config: {'; '.join(exc.problems)}") from None


def _logger(config: Config, command: str) -> Any:
    from agent.log import configure, get_logger  # structlog only for commands that log

    configure(config.log.level)
    return get_logger(command=command)


def sensor_id(config: Config) -> str:
    return config.sensor.id or socket.gethostname()


_NOT_SHAPING = frozenset({"ship", "collect", "log", "daemon", "capture"})


def _batch_shaping(config: Config) -> tuple[object, ...]:
    """The settings that change what a batch holds (not where or how it is sent)."""
    sections = [
        getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _NOT_SHAPING
    ]
    return (*sections, config.ship.window_s, config.ship.records)


def replay_stream(sources: list[CaptureSource], config: Config) -> str:
    """A name for the batches of a replay, the same for the same input files and settings: a
    replay that is killed and run again ships the same (stream, seq) pairs, which the collector
    stores once. Settings that change what a batch holds change the name, so a rerun with
    another window never reuses sequence numbers for different contents."""
    digest = hashlib.sha1()
    digest.update(repr(_batch_shaping(config)).encode())
    for source in sources:
        if source.path == "-":
            digest.update(f"stdin:{time.time_ns()}".encode())
            continue
        info = os.stat(source.path)
        digest.update(f"{os.path.abspath(source.path)}:{info.st_size}:{info.st_mtime_ns}".encode())
    return "replay-" + digest.hexdigest()[:16]


class _Progress:
    """A one-line progress bar on stderr, at most five updates a second."""

    def __init__(self, total_bytes: int, enabled: bool) -> None:
        self.total = total_bytes
        self.enabled = enabled and total_bytes > 0
        self._next = 0.0

    def update(self, done_bytes: int, packets: Callable[[], int]) -> None:
        """`packets` is asked only when the bar is drawn: the engine builds its counters."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 0.2
        share = min(done_bytes / self.total, 1.0)
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r[{bar:<30}] {share:4.0%} {packets():,} packets")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 60 + "\r")


def _shipper(args: argparse.Namespace, config: Config, log: Any) -> Any:
    """The shipper of `replay --ship` (the daemon builds its own the same way)."""
    from agent.ship import Shipper, Target
    from agent.spool import Spool

    ship = config.ship

    def path_of(arg: str | None, setting: str) -> Path | None:
        value = arg or setting
        return Path(value) if value else None

    try:
        target = Target.parse(
            args.ship,
            path_of(args.ship_ca, ship.ca),
            path_of(args.ship_cert, ship.cert),
            path_of(args.ship_key, ship.key),
        )
        spool = Spool(
            Path(args.spool or ship.spool_dir), int(ship.spool_max_mb * (1 << 20)), ship.fsync
        )
        return Shipper(
            target, spool, sensor=sensor_id(config), log=log, backoff_max_s=ship.backoff_max_s
        )
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None


def cmd_replay(args: argparse.Namespace) -> int:
    config = _config_from(args.config)
    try:
        sources = open_sources(args.files)
    except CaptureError as exc:
        return _fail(str(exc))
    url = args.ship or config.ship.url
    log = _logger(config, "replay") if url else None
    shipper = None
    if url:
        args.ship = url
        shipper = _shipper(args, config, log)
    try:
        writer = JsonLinesWriter(args.events) if args.events else None
    except OSError as exc:
        return _fail(f"{args.events}: {exc.strerror or exc}")
    try:
        pipeline = Pipeline(config)
    except EnrichError as exc:
        return _fail(str(exc))
    # What lives now (modules, config, tables) lives for the whole run: the cyclic
    # collector need not walk it again and again (0.7% of replay's instructions).
    gc.freeze()
    capture: Counter[str] = Counter()
    if shipper is not None:
        from agent.summary import Summariser

        pipeline.summary = Summariser.from_config(
            config,
            sensor=sensor_id(config),
            stream=args.stream or replay_stream(sources, config),
            stats=lambda: dict(
                pipeline.stats_record(capture=dict(capture), shipping=shipper.stats())
            ),
        )
        shipper.start()
    progress = _Progress(sum(s.size for s in sources), sys.stderr.isatty() and not args.quiet)
    started = time.perf_counter()
    records_total = 0
    batches = 0

    def emit(records: list[Record]) -> None:
        nonlocal records_total, batches
        records_total += len(records)
        if writer is not None:
            writer.write(records)
        if shipper is not None:
            for batch in pipeline.take_batches():
                shipper.submit(batch)
                batches += 1

    def on_progress(done: int) -> None:
        progress.update(done, lambda: pipeline.engine.counters()["packets"])

    try:
        for batch in replay_batches(sources, capture, on_progress):
            emit(pipeline.feed(batch))
        emit(pipeline.drain())
        emit(
            [
                pipeline.stats_record(
                    capture=dict(capture), shipping=shipper.stats() if shipper else None
                )
            ]
        )
    except BrokenPipeError:
        return 0
    finally:
        progress.done()
        if writer is not None:
            with contextlib.suppress(BrokenPipeError):
                writer.close()
    elapsed = time.perf_counter() - started
    packets = pipeline.engine.counters()["packets"]
    problems = {p: capture[p] for p in CAPTURE_PROBLEMS if capture[p]}
    if problems:
        log = log or _logger(config, "replay")
        for problem, count in problems.items():
            log.warning(f"capture.{problem}", count=count)
    if not args.quiet:
        by_type = ", ".join(
            f"{k} {v:,}" for k, v in sorted({**pipeline.record_counts, "stats": 1}.items())
        )
        print(
            f"tapsense: {packets:,} packets, {records_total:,} records ({by_type}) "
            f"in {elapsed:.2f} s, {packets / elapsed if elapsed else 0:,.0f} packets/s",
            file=sys.stderr,
        )
    if shipper is None:
        return 0
    acked = shipper.wait_drained(
        args.ship_timeout if args.ship_timeout is not None else config.ship.timeout_s
    )
    shipper.close()
    if acked:
        print(f"tapsense: shipped {batches:,} batches to {url}: all acknowledged", file=sys.stderr)
        return 0
    print(
        f"tapsense: the collector at {url} did not acknowledge in time: "
        f"{len(shipper.spool):,} batches wait in {shipper.spool.directory}",
        file=sys.stderr,
    )
    return EXIT_NOT_SHIPPED


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from agent.daemon import main_run

    def overrides(config: Config) -> Config:
        """The command line's changes, made again to a config reloaded on SIGHUP."""
        if args.interface:
            capture = replace(config.capture, interfaces=tuple(args.interface))
            config = replace(config, capture=capture)
        if args.events:
            config = replace(config, daemon=replace(config.daemon, events=args.events))
        if args.workers:
            config = replace(config, capture=replace(config.capture, workers=args.workers))
        return config

    config = overrides(_config_from(args.config))
    return main_run(config, Path(args.config) if args.config else None, overrides)


def cmd_collect(args: argparse.Namespace) -> int:
    import asyncio  # here, not at the top: replay and run do without it (40 ms to import)

    from agent.collect import Collector, server_context
    from agent.store import Store

    config = _config_from(args.config)
    settings = config.collect
    listen = args.listen or settings.listen
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise UsageError(f"--listen {listen}: expected HOST:PORT")
    cert = args.tls_cert or settings.tls_cert
    key = args.tls_key or settings.tls_key
    ca = args.tls_ca or settings.tls_ca
    if bool(cert) != bool(key) or (ca and not cert):
        raise UsageError("TLS needs --tls-cert and --tls-key (and --tls-ca for mutual TLS)")
    try:
        tls = server_context(Path(cert), Path(key), Path(ca) if ca else None) if cert else None
        store = Store(Path(args.db or settings.db))
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # ssl.SSLError, sqlite3.Error: a bad certificate or database
        raise UsageError(f"{type(exc).__name__}: {exc}") from None
    log = _logger(config, "collect")
    collector = Collector(
        store,
        log=log,
        tls=tls,
        max_frame=int(settings.max_frame_mb * (1 << 20)),
        hello_timeout_s=settings.hello_timeout_s,
        frame_timeout_s=settings.frame_timeout_s,
        idle_timeout_s=settings.idle_timeout_s,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await collector.start(host.strip("[]"), int(port_text))
        except OSError as exc:
            store.close()
            raise UsageError(f"--listen {listen}: {exc.strerror or exc}") from None
        await stop.wait()
        await collector.stop()

    asyncio.run(serve())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from agent.report import ReportError, build, open_store, parse_since, render, zone

    config = _config_from(args.config)
    try:
        since = parse_since(args.since) if args.since else None
        zone(args.tz)
        db = open_store(Path(args.db or config.collect.db))
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    try:
        report = build(db, since, tz=args.tz)
    finally:
        db.close()
    if args.html:
        from agent.report_html import render_html

        try:
            Path(args.html).write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            return _fail(f"--html {args.html}: {exc.strerror or exc}")
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.html:
        sys.stdout.write(render(report))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.path))
        problems = _data_problems(config)
    except ConfigError as exc:
        problems = exc.problems
    for problem in problems:
        print(f"{args.path}: {problem}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    print(f"{args.path}: ok")
    return 0


def _data_problems(config: Config) -> list[str]:
    """What the options name but the TOML cannot show: the capture filter compiles, the
    collector's URL and certificate files are usable, the services and indicator files read."""
    from agent.bpf import filter_problems
    from agent.intel import IntelError, load_indicators
    from agent.services import ServiceMap
    from agent.ship import ship_problems

    problems = filter_problems(config.capture.bpf) + ship_problems(config.ship)
    try:
        ServiceMap(tuple(Path(p) for p in config.attribution.services_files))
    except ValueError as exc:
        problems.append(f"attribution.services_files: {exc}")
    try:
        load_indicators(config.intel.files)
    except IntelError as exc:
        problems.append(f"intel.files: {exc}")
    return problems


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tapsense", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tapsense {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    replay = sub.add_parser("replay", help="read pcap/pcapng files and emit records")
    replay.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="pcap or pcapng, plain or gzip/xz/bzip2; - for stdin",
    )
    add = replay.add_argument
    add("--events", metavar="PATH", help="write records as JSON Lines (- for stdout)")
    add("--config", metavar="PATH", help="TOML config (see config/tapsense.toml)")
    add("--ship", metavar="URL", help="ship batches to tcp://HOST:PORT or tls://HOST:PORT")
    add("--ship-ca", metavar="PATH", help="CA of the collector's certificate")
    add("--ship-cert", metavar="PATH", help="this sensor's certificate (mutual TLS)")
    add("--ship-key", metavar="PATH", help="this sensor's private key")
    add("--spool", metavar="DIR", help="spool directory (default: ship.spool_dir)")
    add("--stream", metavar="NAME", help="batch stream name (default: from the files)")
    replay.add_argument(
        "--ship-timeout",
        metavar="S",
        type=float,
        help="seconds to wait for the last acknowledgments (ship.timeout_s)",
    )
    replay.add_argument("-q", "--quiet", action="store_true", help="no summary, no progress bar")
    replay.set_defaults(func=cmd_replay)

    run = sub.add_parser("run", help="capture live on interfaces (the daemon)")
    run.add_argument("--config", metavar="PATH", help="TOML config (SIGHUP reloads it)")
    run.add_argument(
        "--interface",
        metavar="NAME",
        action="append",
        help="capture on NAME (repeatable; overrides capture.interfaces)",
    )
    run.add_argument("--events", metavar="PATH", help="records as JSON Lines (- for stdout)")
    run.add_argument(
        "--workers",
        metavar="N",
        type=int,
        choices=range(1, 65),
        help="worker processes (overrides capture.workers)",
    )
    run.set_defaults(func=cmd_run)

    collect = sub.add_parser("collect", help="receive batches from sensors into SQLite")
    collect.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:7443")
    collect.add_argument("--db", metavar="PATH", help="SQLite database (default tapsense.db)")
    collect.add_argument("--tls-cert", metavar="PATH", help="the collector's certificate")
    collect.add_argument("--tls-key", metavar="PATH", help="the collector's private key")
    collect.add_argument("--tls-ca", metavar="PATH", help="CA of sensor certificates (mutual TLS)")
    collect.add_argument("--config", metavar="PATH", help="TOML config ([collect])")
    collect.set_defaults(func=cmd_collect)

    report = sub.add_parser("report", help="what the collector stored")
    report.add_argument("--db", metavar="PATH", help="SQLite database (default tapsense.db)")
    report.add_argument("--since", metavar="T", help="epoch seconds, ISO 8601, or an age: 2h, 7d")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.add_argument(
        "--html", metavar="PATH", help="write a self-contained HTML report with charts"
    )
    report.add_argument(
        "--tz", default="UTC", metavar="ZONE", help="time zone of the hours of day (default UTC)"
    )
    report.add_argument("--config", metavar="PATH", help="TOML config ([collect] db)")
    report.set_defaults(func=cmd_report)

    check = sub.add_parser("check-config", help="list every problem in a config file")
    check.add_argument("path", metavar="PATH")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except UsageError as exc:
        return _fail(str(exc))
    return result
