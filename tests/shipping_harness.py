"""Helpers for the shipping tests and benchmark: a collector process, a proxy, the store.

Everything runs on 127.0.0.1. `Collector` runs `python3 -m agent collect` as a subprocess
(started, killed with SIGKILL, restarted on the same port and database); `Proxy` forwards
TCP connections to it, at a limited rate, holding one direction on request, and can cut
every connection at once; `replay_command` builds the `agent replay --ship` command line;
the `stored_*` functions read what the collector's SQLite store holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.util import wait_for

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
RECORD_TABLES = ("dns", "tls", "quic", "flow")


# --- waiting ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_port(port: int, timeout_s: float = 10.0, host: str = HOST) -> None:
    """Waits until something accepts connections on host:port."""
    wait_for(lambda: port_open(port, host), timeout_s, f"{host}:{port} to listen")


# --- processes ----------------------------------------------------------------------------


def python_env() -> dict[str, str]:
    """The environment of the subprocesses: the repository importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after timeout_s; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def kill_process(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL (a crash) and reap."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15)


class Collector:
    """`python3 -m agent collect` on 127.0.0.1:port into db, its log (stderr) in log_path.

    tls: (cert, key, ca or None) for a TLS collector. Readiness is the `collect.started`
    log line, so no probe connection shows in the collector's counters or log.
    """

    def __init__(
        self,
        db: Path,
        log_path: Path,
        port: int | None = None,
        tls: tuple[Path, Path, Path | None] | None = None,
    ) -> None:
        self.db = db
        self.log_path = log_path
        self.port = port or free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "agent", "collect", "--listen", self.address]
        cmd += ["--db", str(self.db)]
        if self.tls is not None:
            cert, key, ca = self.tls
            cmd += ["--tls-cert", str(cert), "--tls-key", str(key)]
            if ca is not None:
                cmd += ["--tls-ca", str(ca)]
        return cmd

    def start(self, timeout_s: float = 15.0) -> Collector:
        """Starts the process (appending to its log) and waits until it listens."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        started_before = self.log().count('"collect.started"')
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop/kill)
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO,
            env=python_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"collector exited {self.proc.returncode}: {self.log()}")
            return self.log().count('"collect.started"') > started_before

        wait_for(ready, timeout_s, f"collector on {self.address}")
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, nothing finished or flushed."""
        if self.proc is not None:
            kill_process(self.proc)
        self._close_log()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (finish in-flight work); returns the exit code (None if never started)."""
        code = None if self.proc is None else stop_process(self.proc, timeout_s)
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The collector's JSON log lines with this event name."""
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("event") == event:
                    out.append(entry)
        return out

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- the proxy ----------------------------------------------------------------------------


class Proxy:
    """A TCP proxy on 127.0.0.1 to 127.0.0.1:target_port, one thread per direction.

    rate_bps limits each direction of each connection (bytes per second; None: no limit),
    hold(direction) stops forwarding "up" (sensor to collector) or "down" until
    release(direction), cut() closes every open connection (a network failure), close()
    also stops listening. A connection whose upstream cannot be reached is closed at once.
    """

    CHUNK = 4096

    def __init__(self, target_port: int, rate_bps: float | None = None) -> None:
        self.target_port = target_port
        self.rate_bps = rate_bps
        self.bytes = {"up": 0, "down": 0}
        self.connections = 0
        self._release = {"up": threading.Event(), "down": threading.Event()}
        for event in self._release.values():
            event.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._thread.start()

    def hold(self, direction: str) -> None:
        self._release[direction].clear()

    def release(self, direction: str) -> None:
        self._release[direction].set()

    def cut(self) -> None:
        """Closes every connection open now (both sides see a reset or an end of stream)."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed.set()
        for event in self._release.values():
            event.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        self._thread.join(timeout=5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
                self.connections += 1
            for src, dst, direction in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, direction), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        release = self._release[direction]
        try:
            while True:
                data = src.recv(self.CHUNK)
                if not data:
                    break
                while not release.wait(0.05):
                    if self._closed.is_set():
                        return
                rate = self.rate_bps
                if rate:
                    time.sleep(len(data) / rate)
                dst.sendall(data)
                self.bytes[direction] += len(data)
        except OSError:
            pass
        finally:
            # one side ended: end both (a collector that died closes the sensor's side)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# --- the replay command -------------------------------------------------------------------


def write_config(
    path: Path,
    *,
    sensor: str = "s1",
    window_s: float = 1.0,
    records: bool = True,
    spool_max_mb: float | None = None,
    fsync: str | None = None,
    backoff_max_s: float = 1.0,
    compression: str | None = None,
) -> Path:
    """A TOML config with [sensor] and [ship] settings for `agent replay --ship`."""
    lines = [
        "[sensor]",
        f'id = "{sensor}"',
        "[ship]",
        f"window_s = {float(window_s)}",
        f"records = {'true' if records else 'false'}",
        f"backoff_max_s = {float(backoff_max_s)}",
    ]
    if spool_max_mb is not None:
        lines.append(f"spool_max_mb = {float(spool_max_mb)}")
    if fsync is not None:
        lines.append(f'fsync = "{fsync}"')
    if compression is not None:
        lines.append(f'compression = "{compression}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def replay_command(
    pcap: Path,
    *,
    url: str | None = None,
    spool: Path | None = None,
    config: Path | None = None,
    events: Path | None = None,
    stream: str | None = None,
    ship_timeout_s: float | None = None,
    tls: Mapping[str, Path] | None = None,
    quiet: bool = True,
) -> list[str]:
    """`python3 -m agent replay` with the given options; tls: {"ca", "cert", "key"} paths.

    Without `quiet` the replay prints its summary line ("tapsense: N packets ...") once it
    has read the whole capture and spooled every batch, before it waits for acknowledgments.
    """
    cmd = [sys.executable, "-m", "agent", "replay", str(pcap)]
    if quiet:
        cmd.append("-q")
    if events is not None:
        cmd += ["--events", str(events)]
    if url is not None:
        cmd += ["--ship", url]
    if spool is not None:
        cmd += ["--spool", str(spool)]
    if config is not None:
        cmd += ["--config", str(config)]
    if stream is not None:
        cmd += ["--stream", stream]
    if ship_timeout_s is not None:
        cmd += ["--ship-timeout", str(ship_timeout_s)]
    for option, path in (tls or {}).items():
        cmd += [f"--ship-{option}", str(path)]
    return cmd


def run(cmd: list[str], timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Runs a command of the repository to its end; output captured as text."""
    return subprocess.run(
        cmd,
        cwd=REPO,
        env=python_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def start(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Starts a command of the repository in the background, stdout and stderr to log_path."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd, cwd=REPO, env=python_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )


def gen_mix(out: Path, packets: int, seed: int) -> Path:
    """A capture of bench.gen_mix (about 4,400 packets a second of packet time)."""
    cmd = [sys.executable, "-m", "bench.gen_mix", "--packets", str(packets)]
    result = run([*cmd, "--seed", str(seed), "--out", str(out)])
    if result.returncode != 0:
        raise RuntimeError(f"gen_mix failed: {result.stderr}")
    return out


# --- records and the store ----------------------------------------------------------------


def canonical(record: Mapping[str, Any]) -> str:
    """A record as canonical JSON (sorted keys), for comparing records as multisets."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def events_records(path: Path, kinds: Iterable[str] = RECORD_TABLES) -> Counter[str]:
    """The records of a JSON Lines --events file of the given types, as a multiset."""
    wanted = set(kinds)
    out: Counter[str] = Counter()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["type"] in wanted:
                out[canonical(record)] += 1
    return out


def connect(db: Path) -> sqlite3.Connection:
    """A connection for reading while a collector may be writing (WAL)."""
    conn = sqlite3.connect(str(db), timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def stored_records(
    db: Path, sensor: str | None = None, seqs: Iterable[int] | None = None
) -> Counter[str]:
    """The `record` column of the dns, tls, quic and flow tables, as a multiset."""
    out: Counter[str] = Counter()
    wanted = None if seqs is None else set(seqs)
    with contextlib.closing(connect(db)) as conn:
        for table in RECORD_TABLES:
            sql = f'SELECT sensor, seq, record FROM "{table}"'
            for row_sensor, seq, text in conn.execute(sql):
                if sensor is not None and row_sensor != sensor:
                    continue
                if wanted is not None and seq not in wanted:
                    continue
                out[canonical(json.loads(text))] += 1
    return out


def stored_records_by_sensor(db: Path) -> dict[str, Counter[str]]:
    """The records of the dns, tls, quic and flow tables, a multiset per sensor."""
    out: dict[str, Counter[str]] = {}
    with contextlib.closing(connect(db)) as conn:
        for table in RECORD_TABLES:
            for sensor, text in conn.execute(f'SELECT sensor, record FROM "{table}"'):
                out.setdefault(sensor, Counter())[canonical(json.loads(text))] += 1
    return out


def stored_batches(db: Path) -> list[tuple[str, str, int, int]]:
    """(sensor, stream, seq, records) of every stored batch, in order."""
    if not db.exists():
        return []
    with contextlib.closing(connect(db)) as conn:
        try:
            rows = conn.execute(
                "SELECT sensor, stream, seq, records FROM batches ORDER BY sensor, stream, seq"
            ).fetchall()
        except sqlite3.OperationalError:  # the collector has not made its tables yet
            return []
    return [(str(a), str(b), int(c), int(d)) for a, b, c, d in rows]


def count_batches(db: Path) -> int:
    """How many batches the store holds (0 before it exists)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(connect(db)) as conn:
            return int(conn.execute("SELECT count(*) FROM batches").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def spool_files(spool: Path) -> list[Path]:
    """The batch files (and unfinished writes) in a spool directory."""
    if not spool.is_dir():
        return []
    return sorted([*spool.glob("*.batch"), *spool.glob("*.tmp")])


# --- batches made in-process ----------------------------------------------------------------


def make_batches(
    pcap: Path,
    *,
    sensor: str,
    stream: str,
    window_s: float = 1.0,
    records: bool = True,
) -> list[dict[str, Any]]:
    """The batches `agent replay --ship` makes of a capture (agent.summary.Summariser)."""
    from agent.capfile import CaptureSource, replay_batches
    from agent.core import Pipeline
    from agent.summary import Summariser

    pipeline = Pipeline()
    capture: Counter[str] = Counter()
    pipeline.summary = Summariser(
        sensor=sensor,
        stream=stream,
        window_s=window_s,
        records=records,
        stats=lambda: dict(pipeline.stats_record(capture=dict(capture))),
    )
    batches: list[dict[str, Any]] = []
    for batch in replay_batches([CaptureSource(str(pcap))], capture, lambda _done: None):
        pipeline.feed(batch)
        batches += pipeline.take_batches()
    pipeline.drain()
    batches += pipeline.take_batches()
    return batches


def batch_records(batch: Mapping[str, Any]) -> Counter[str]:
    """The records a batch carries, as a multiset of canonical JSON."""
    from agent.wire import decode_batch

    return Counter(canonical(r) for r in decode_batch(dict(batch))["records"])


class ListLog:
    """A logger for in-process Shippers: keeps (event, fields) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _add(self, event: str, **fields: Any) -> None:
        with self._lock:
            self.events.append((event, fields))

    info = warning = error = debug = _add

    def names(self) -> list[str]:
        with self._lock:
            return [event for event, _ in self.events]
