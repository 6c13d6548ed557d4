"""The `tapsense` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NoReturn

from agent import __version__
from agent.capfile import CaptureError, open_sources, replay_batches
from agent.config import Config, ConfigError, load_config
from agent.core import Pipeline
from agent.output import JsonLinesWriter
from agent.record import Record

EXIT_USAGE = 2
CAPTURE_PROBLEMS = ("truncated_record", "corrupt_header", "bad_block", "unknown_interface")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _fail(message: str) -> int:
    print(f"tapsense: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _config_from(path: str | None) -> Config:
    return load_config(Path(path)) if path else Config()


class _Progress:
    """A one-line progress bar on stderr, at most five updates a second."""

    def __init__(self, total_bytes: int, enabled: bool) -> None:
        self.total = total_bytes
        self.enabled = enabled and total_bytes > 0
        self._next = 0.0

    def update(self, done_bytes: int, packets: int) -> None:
        now = time.monotonic()
        if not self.enabled or now < self._next:
            return
        self._next = now + 0.2
        share = min(done_bytes / self.total, 1.0)
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r[{bar:<30}] {share:4.0%} {packets:,} packets")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 60 + "\r")


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        config = _config_from(args.config)
    except ConfigError as exc:
        return _fail(f"{args.config}: invalid config: {'; '.join(exc.problems)}")
    try:
        sources = open_sources(args.files)
    except CaptureError as exc:
        return _fail(str(exc))
    try:
        writer = JsonLinesWriter(args.events) if args.events else None
    except OSError as exc:
        return _fail(f"{args.events}: {exc.strerror or exc}")
    pipeline = Pipeline(config)
    capture: Counter[str] = Counter()
    progress = _Progress(sum(s.size for s in sources), sys.stderr.isatty() and not args.quiet)
    started = time.perf_counter()
    records_total = 0

    def emit(records: list[Record]) -> None:
        nonlocal records_total
        records_total += len(records)
        if writer is not None:
            writer.write(records)

    def on_progress(done: int) -> None:
        progress.update(done, pipeline.engine.counters()["packets"])

    try:
        for batch in replay_batches(sources, capture, on_progress):
            emit(pipeline.feed(batch))
        emit(pipeline.drain())
        emit([pipeline.stats_record(capture=dict(capture))])
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
        from agent.log import configure, get_logger  # structlog only when there is a warning

        configure(config.log.level)
        log = get_logger(command="replay")
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
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        load_config(Path(args.path))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.path}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.path}: ok")
    return 0


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
    replay.add_argument(
        "--events", metavar="PATH", help="write records as JSON Lines (- for stdout)"
    )
    replay.add_argument("--config", metavar="PATH", help="TOML config (see config/tapsense.toml)")
    replay.add_argument("-q", "--quiet", action="store_true", help="no summary, no progress bar")
    replay.set_defaults(func=cmd_replay)

    check = sub.add_parser("check-config", help="list every problem in a config file")
    check.add_argument("path", metavar="PATH")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
