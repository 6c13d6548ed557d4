"""The daemon: live capture on a tap's interfaces (`tapsense run`), as systemd runs it.

A supervisor process forks `capture.workers` workers. Each worker opens its own TPACKET_V3
socket per interface (in one PACKET_FANOUT group per interface when there are several
workers), drops to an unprivileged user with no capability left, and runs its own
pipeline, summariser and shipper. The supervisor tells systemd READY once every worker
is capturing, relays SIGHUP (after checking the new config: a bad one is rejected and the
old one keeps running) and SIGTERM, watches the interfaces over netlink, pings the
watchdog, and exits when a worker dies so that systemd restarts the service.

Signal handlers only set flags; the loops look at them at least every 200 ms.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from agent import __version__
from agent.answer_share import AnswerShare, answer_shares
from agent.bpf import compile_filter, filter_problems
from agent.capture import RingCapture, RingConfig
from agent.config import Config, ConfigError, load_config
from agent.core import Pipeline
from agent.enrich import EnrichData, Enricher, EnrichError
from agent.links import Link, LinkWatcher, describe
from agent.log import configure, get_logger
from agent.notify import Notifier
from agent.output import JsonLinesWriter
from agent.privilege import drop
from agent.record import Record
from agent.ship import ship_problems

POLL_MS = 200
NS = 1_000_000_000


class DaemonError(Exception):
    """A daemon that cannot start (one line, exit code 2)."""


class _Flags:
    """What the signal handlers ask for; a byte on a pipe wakes the loop up."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, _signum: int, _frame: Any) -> None:
        self.stop = True

    def _on_reload(self, _signum: int, _frame: Any) -> None:
        self.reload = True

    def fileno(self) -> int:
        return self._r

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)


def _events_path(path: str, worker: int, workers: int) -> str:
    if not path or path == "-" or workers == 1:
        return path
    stem, dot, ext = path.rpartition(".")
    return f"{stem}.{worker}.{ext}" if dot and "/" not in ext else f"{path}.{worker}"


def resolve(config: Config) -> list[Link]:
    """The configured interfaces, checked; DaemonError when one cannot be captured."""
    names = list(config.capture.interfaces)
    if not names:
        raise DaemonError("no interface to capture on: give --interface or capture.interfaces")
    links = []
    for name in names:
        try:
            link = describe(name)
        except ValueError as exc:
            raise DaemonError(str(exc)) from None
        if link.linktype is None:
            raise DaemonError(f"{name}: device type {link.device_type} is not supported")
        links.append(link)
    return links


# config sections a running worker takes up on SIGHUP; a change to any other waits for a
# restart
LIVE_SECTIONS = ("intel", "log", "ship")
RESTART_SECTIONS = tuple(f.name for f in fields(Config) if f.name not in LIVE_SECTIONS)


# [ship] settings a running worker takes up; the others (url, certificates, spool) wait
LIVE_SHIP_SETTINGS = ("records", "window_s", "compression")

Overrides = Callable[[Config], Config] | None


def _with(overrides: Overrides, config: Config) -> Config:
    return overrides(config) if overrides is not None else config


class Worker:
    def __init__(
        self,
        index: int,
        config: Config,
        config_path: Path | None,
        links: list[Link],
        bpf: dict[int, list[tuple[int, int, int, int]]],
        groups: dict[str, int],
        log: Any,
        overrides: Overrides = None,
        share: AnswerShare | None = None,
        enrich_data: EnrichData | None = None,
    ) -> None:
        self.index = index
        self.share = share
        self.config = config
        self.config_path = config_path
        self.overrides = overrides
        self.log = log.bind(worker=index)
        workers = config.capture.workers
        ring = RingConfig(
            config.capture.block_size_kb * 1024,
            config.capture.block_count,
            config.capture.block_timeout_ms,
        )
        self.rings = [
            RingCapture(
                link.name,
                link.linktype or 1,
                ring,
                promisc=config.capture.promisc,
                fanout_group=groups[link.name] if workers > 1 else None,
                bpf=bpf.get(link.linktype or 1),
            )
            for link in links
        ]
        events = _events_path(config.daemon.events, index, workers)
        self.writer = JsonLinesWriter(events) if events else None
        self.pipeline = Pipeline(config, enrich_data)
        attributor = self.pipeline.enrich.attributor
        if share is not None and attributor is not None:
            stats = self.pipeline.stats
            attributor.on_learn = lambda *answer: share.publish(stats, *answer)
        self.capture: Counter[str] = Counter()
        self.shipper = self._shipper() if config.ship.url else None

    def _shipper(self) -> Any:
        from agent.cli import sensor_id
        from agent.ship import Shipper, config_target
        from agent.spool import Spool
        from agent.summary import Summariser

        ship = self.config.ship
        base = "live" if self.config.capture.workers == 1 else f"live-{self.index}"
        directory = Path(ship.spool_dir) / base
        spool = Spool(directory, int(ship.spool_max_mb * (1 << 20)), ship.fsync)
        stream = spool.stream_name(base)  # base.<id>: kept across restarts in the spool
        if os.geteuid() == 0 and self.config.daemon.user:
            import pwd

            entry = pwd.getpwnam(self.config.daemon.user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
            for path in directory.iterdir():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        shipper = Shipper(
            config_target(ship),
            spool,
            sensor=sensor_id(self.config),
            log=self.log,
            backoff_max_s=ship.backoff_max_s,
        )
        self.pipeline.summary = Summariser.from_config(
            self.config,
            sensor=sensor_id(self.config),
            stream=stream,
            stats=lambda: dict(self._stats_record()),
            first_seq=spool.next_seq(stream),
            heartbeat=True,
        )
        self.stream = stream
        return shipper

    def _stats_record(self) -> Record:
        return self.pipeline.stats_record(
            capture={
                **self.capture,
                "corrupt_blocks": sum(r.corrupt for r in self.rings),
                "vlan_tags_restored": sum(r.vlan_stripped for r in self.rings),
            },
            kernel_drops=self.capture["kernel_drops"],
            shipping=self.shipper.stats() if self.shipper else None,
        )

    def _emit(self, records: list[Record]) -> None:
        if self.writer is not None and records:
            self.writer.write(records)
        if self.shipper is not None:
            for batch in self.pipeline.take_batches():
                self.shipper.submit(batch)
                self.shipper.spool.save_next_seq(self.stream, batch["seq"] + 1)

    def run(self, flags: _Flags, ready_fd: int) -> int:
        drop(self.config.daemon.user)
        if self.shipper is not None:
            self.shipper.start()
        os.write(ready_fd, b"r")
        os.close(ready_fd)
        self.log.info("capture.started", interfaces=[r.ifname for r in self.rings], pid=os.getpid())
        poller = select.poll()
        for ring in self.rings:
            poller.register(ring.fileno(), select.POLLIN)
        poller.register(flags.fileno(), select.POLLIN)
        if self.share is not None:
            poller.register(self.share.fileno(), select.POLLIN)
        next_tick = next_stats = time.monotonic()
        last_packets = last_bytes = 0
        last_stats = time.monotonic()
        by_fd = {ring.fileno(): ring for ring in self.rings}
        while not flags.stop:
            events: list[tuple[int, int]] = []
            with contextlib.suppress(InterruptedError):
                events = poller.poll(POLL_MS)
            for fd, mask in events:
                if mask & select.POLLERR and fd in by_fd:
                    error = by_fd[fd].take_error()
                    if error:
                        self.log.info(
                            "capture.socket_error",
                            interface=by_fd[fd].ifname,
                            error=os.strerror(error),
                        )
            flags.clear()
            self._take_shared_answers()
            for ring in self.rings:
                for batch in ring.batches():
                    self._emit(self.pipeline.feed(batch))
            now = time.monotonic()
            if now >= next_tick:
                self._emit(self.pipeline.tick(time.time_ns()))
                next_tick = now + 1.0
            if now >= next_stats:
                last_packets, last_bytes = self._interval(
                    now - last_stats, last_packets, last_bytes
                )
                last_stats = now
                next_stats = now + self.config.log.stats_interval_s
            if flags.reload:
                flags.reload = False
                self._reload()
        return self._shutdown()

    def _take_shared_answers(self) -> None:
        """The DNS answers other workers learned, into this worker's answer cache."""
        attributor = self.pipeline.enrich.attributor
        if self.share is None or attributor is None:
            return
        for answer in self.share.receive(self.pipeline.stats):
            attributor.answers.learn(*answer)

    def _read_kernel_stats(self) -> None:
        for ring in self.rings:
            packets, drops, freezes = ring.statistics()
            self.capture["kernel_packets"] += packets
            self.capture["kernel_drops"] += drops
            self.capture["queue_freezes"] += freezes

    def _interval(self, seconds: float, last_packets: int, last_bytes: int) -> tuple[int, int]:
        """One stats line and one stats record per interval."""
        drops_before = self.capture["kernel_drops"]
        self._read_kernel_stats()
        counters = self.pipeline.engine.counters()
        packets, octets = counters["packets"], counters["bytes"]
        seconds = max(seconds, 1e-6)
        shipping = self.shipper.stats() if self.shipper else {}
        self.log.info(
            "stats.interval",
            packets_per_s=round((packets - last_packets) / seconds, 1),
            bytes_per_s=round((octets - last_bytes) / seconds, 1),
            kernel_drops=self.capture["kernel_drops"] - drops_before,
            kernel_drops_total=self.capture["kernel_drops"],
            flows_active=counters["flows_active"],
            records=dict(self.pipeline.record_counts),
            ship_queue=shipping.get("spool_batches", 0),
            spool_bytes=shipping.get("spool_bytes", 0),
            spool_dropped=shipping.get("dropped_batches", 0),
        )
        if self.capture["kernel_drops"] > drops_before:
            self.log.warning(
                "capture.kernel_drops", drops=self.capture["kernel_drops"] - drops_before
            )
        if self.writer is not None:
            self.writer.write([self._stats_record()])
        return packets, octets

    def _reload(self) -> None:
        intel = self.pipeline.enrich.intel
        if self.config_path is None:  # no config to read again; the lists may have changed
            intel.reload(self.config.intel.files, self.log)
            return
        try:
            new = _with(self.overrides, load_config(self.config_path))
        except ConfigError as exc:
            self.log.warning("config.rejected", problems=exc.problems)
            return
        changed = [f for f in RESTART_SECTIONS if getattr(new, f) != getattr(self.config, f)]
        old_ship = self.config.ship
        changed += [
            f"ship.{f.name}"
            for f in fields(old_ship)
            if f.name not in LIVE_SHIP_SETTINGS
            and getattr(new.ship, f.name) != getattr(old_ship, f.name)
        ]
        ship = replace(old_ship, **{name: getattr(new.ship, name) for name in LIVE_SHIP_SETTINGS})
        summary = self.pipeline.summary
        if summary is not None:
            summary.keep_records = ship.records
            summary.window_ns = int(ship.window_s * NS)
            summary.compression = ship.compression
        self.config = replace(self.config, log=new.log, ship=ship, intel=new.intel)
        # said at the old level: a new level of "warning" would hide the line itself
        self.log.info("config.reloaded", applied=list(LIVE_SECTIONS), restart_needed=changed)
        configure(new.log.level)
        # indicator lists load on a thread and replace the old ones when complete
        intel.reload(new.intel.files, self.log)

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.config.daemon.stop_timeout_s
        # The kernel hands a block over block_timeout_ms after its first packet: wait that
        # long and read once more, so the last packets before SIGTERM are not lost.
        time.sleep(self.config.capture.block_timeout_ms / 1000 + 0.02)
        for ring in self.rings:
            for batch in ring.batches():
                self._emit(self.pipeline.feed(batch))
        self._read_kernel_stats()
        self._emit(self.pipeline.drain())
        if self.writer is not None:
            self.writer.write([self._stats_record()])
            self.writer.close()
        for ring in self.rings:
            with contextlib.suppress(Exception):
                ring.close()
        shipped = True
        if self.shipper is not None:
            shipped = self.shipper.wait_drained(max(deadline - time.monotonic() - 1, 0))
            self.shipper.close()
        self.log.info(
            "capture.stopped",
            packets=self.pipeline.engine.counters()["packets"],
            kernel_drops=self.capture["kernel_drops"],
            all_shipped=shipped,
        )
        return 0


def run(config: Config, config_path: Path | None, overrides: Overrides = None) -> int:
    configure(config.log.level)
    log = get_logger(component="daemon")
    links = resolve(config)
    bpf: dict[int, list[tuple[int, int, int, int]]] = {}
    if config.capture.bpf:
        try:
            for linktype in {link.linktype or 1 for link in links}:
                bpf[linktype] = compile_filter(config.capture.bpf, linktype)
        except ValueError as exc:
            raise DaemonError(f"capture.bpf: {exc}") from None
    for problem in ship_problems(config.ship):  # one line here, not a worker that dies
        raise DaemonError(problem)
    base = config.capture.fanout_group or (os.getpid() % 0x7FFF + 1)
    groups = {link.name: (base + i) & 0xFFFF for i, link in enumerate(links)}
    workers = config.capture.workers
    for index in range(config.capture.workers):  # one line here, not a worker that dies
        path = _events_path(config.daemon.events, index, config.capture.workers)
        if path and path != "-":
            try:
                with open(path, "a"):
                    pass
            except OSError as exc:
                raise DaemonError(f"--events {path}: {exc.strerror or exc}") from None
    try:  # the data files enrichment needs: one line here rather than a failure per worker,
        # and loaded once: the workers share the tables
        enrich_data = Enricher(config, Counter()).data
    except EnrichError as exc:
        raise DaemonError(str(exc)) from None
    try:  # fail here, with one line, rather than in every worker
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError as exc:
        raise DaemonError(f"capture needs CAP_NET_RAW: {exc}") from None
    for link in links:
        if not link.up:
            log.warning("link.down", interface=link.name, at="start")
    shares = answer_shares(workers)
    # What lives now lives as long as the workers: the collector need not walk it, and
    # the workers' collections do not write to the pages they share with this process.
    gc.freeze()
    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(ready_r)
            code = 1
            try:
                flags = _Flags()
                share = shares[index] if shares else None
                worker = Worker(
                    index, config, config_path, links, bpf, groups, log, overrides, share,
                    enrich_data,
                )  # fmt: skip
                code = worker.run(flags, ready_w)
            except Exception as exc:
                log.error("worker.failed", worker=index, error=f"{type(exc).__name__}: {exc}")
            finally:
                os._exit(code)
        children[pid] = index
    os.close(ready_w)
    for share in shares:  # the workers hold them now
        share.close()
    return _supervise(config, config_path, links, children, ready_r, log)


def _supervise(
    config: Config,
    config_path: Path | None,
    links: list[Link],
    children: dict[int, int],
    ready_r: int,
    log: Any,
) -> int:
    flags = _Flags()
    notifier = Notifier()
    log.info(
        "daemon.started",
        version=__version__,
        interfaces=[link.name for link in links],
        workers=len(children),
        pid=os.getpid(),
    )
    ready = 0
    watcher: LinkWatcher | None = None
    poller = select.poll()
    os.set_blocking(ready_r, False)  # a slow worker must not hold up SIGTERM
    poller.register(ready_r, select.POLLIN)
    waiting_ready = True
    poller.register(flags.fileno(), select.POLLIN)
    code = 0
    while True:
        poller.poll(POLL_MS)
        flags.clear()
        if waiting_ready:
            try:
                got = os.read(ready_r, 64)
            except BlockingIOError:
                got = None
            if got is not None:
                ready += len(got)
                if not got or ready >= len(children):
                    # every worker is ready (or gone): a pipe whose writers closed would
                    # wake poll() at once, forever
                    poller.unregister(ready_r)
                    os.close(ready_r)
                    waiting_ready = False
            if ready >= len(children) and watcher is None:
                watcher = LinkWatcher([link.name for link in links])
                poller.register(watcher.fileno(), select.POLLIN)
                drop(config.daemon.user)
                notifier.ready(f"capturing on {', '.join(link.name for link in links)}")
                log.info("daemon.ready", workers=len(children))
        if watcher is not None:
            for event in watcher.events():
                log.warning(f"link.{event.state}", interface=event.name, index=event.index)
                if event.state == "gone":
                    log.error(
                        "daemon.interface_gone",
                        interface=event.name,
                        action="exiting so that the service manager restarts it",
                    )
                    flags.stop = True
                    code = 1
        exited = _reap(children)
        if exited and not flags.stop:
            log.error("daemon.worker_exited", workers=exited)
            flags.stop = True
            code = 1
        if flags.reload:
            flags.reload = False
            _reload(config_path, children, notifier, log)
        notifier.watchdog()
        if flags.stop:
            break
    notifier.stopping()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + config.daemon.stop_timeout_s + 2
    while children and time.monotonic() < deadline:
        codes: dict[int, int] = {}
        _reap(children, codes)
        if any(codes.values()):
            code = 1
        time.sleep(0.05)
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        code = 1
    if watcher is not None:
        watcher.close()
    log.info("daemon.stopped", code=code)
    return code


def _reap(children: dict[int, int], codes: dict[int, int] | None = None) -> list[int]:
    """Collects the workers that exited; returns their indexes."""
    exited = []
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            index = children.pop(pid)
            exited.append(index)
            if codes is not None:
                codes[index] = os.waitstatus_to_exitcode(status)
    return exited


def _reload(
    config_path: Path | None, children: dict[int, int], notifier: Notifier, log: Any
) -> None:
    if config_path is None:
        log.info("config.reload_ignored", reason="started without --config; lists reload")
        _signal_workers(children, signal.SIGHUP)  # the indicator lists may have changed
        return
    notifier.reloading()
    try:
        new = load_config(config_path)
        problems = filter_problems(new.capture.bpf) + ship_problems(new.ship)
    except ConfigError as exc:
        problems = exc.problems
    if problems:
        log.warning("config.rejected", path=str(config_path), problems=problems)
        notifier.ready("config rejected; the previous one keeps running")
        return
    _signal_workers(children, signal.SIGHUP)
    log.info("config.accepted", path=str(config_path))
    configure(new.log.level)
    notifier.ready()


def _signal_workers(children: dict[int, int], signum: int) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def main_run(config: Config, config_path: Path | None, overrides: Overrides = None) -> int:
    """`tapsense run`: DaemonError is a one-line error with exit code 2. `overrides` are the
    command line's changes to the file's config, made again to every reloaded file."""
    try:
        return run(config, config_path, overrides)
    except DaemonError as exc:
        print(f"tapsense: error: {exc}", file=sys.stderr)
        return 2
