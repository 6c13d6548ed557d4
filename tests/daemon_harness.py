"""Helpers for the live-capture tests and benchmark: the daemon in a namespace, tcpreplay, records.

`Daemon` runs `python3 -m agent run` inside a namespace made by tests.netns.veth_pair, reads
its JSON log from stderr in a thread, waits for its events, and stops it (SIGTERM, then
SIGKILL for anything left over). `tcpreplay` sends a capture onto a veth end and returns the
packets it sent; `comparable` strips what differs between a live capture and a replay of the
same packets (timestamps, round-trip times), so records can be compared as multisets.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.netns import Host
from tests.util import wait_for

REPO = Path(__file__).resolve().parents[1]
RECORD_TYPES = ("dns", "tls", "quic", "flow")
TIME_FIELDS = ("ts", "ts_end", "rtt")  # differ between packet time on the wire and in a file
MTU = 2000  # the mix holds frames of up to 1,530 bytes besides a VLAN tag
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The settings of a test daemon: packets reach the agent within 10 ms, stats every second,
# timers long enough that no flow or DNS query expires during a test.
TEST_CONFIG: dict[str, dict[str, Any]] = {
    "capture": {"block_timeout_ms": 10},
    "log": {"stats_interval_s": 1},
    "flow": {"tcp_closed_timeout_s": 600.0, "udp_timeout_s": 600.0},
}


# --- config -------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def merge(*configs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Section by section, later values win."""
    out: dict[str, dict[str, Any]] = {}
    for config in configs:
        for section, values in config.items():
            out.setdefault(section, {}).update(values)
    return out


def write_config(path: Path, *configs: Mapping[str, Mapping[str, Any]]) -> Path:
    """A TOML file of the merged sections (TEST_CONFIG is not added: pass it)."""
    lines = []
    for section, values in merge(*configs).items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- namespaces -------------------------------------------------------------------------


def quiet_link(*hosts: Host, mtu: int = MTU) -> None:
    """Room for the mix's largest frames, and no IPv6 on the veth: no router or neighbour
    solicitations, no MLD reports, so only what a test sends crosses the link."""
    for host in hosts:
        for command in (
            ("ip", "link", "set", "dev", host.ifname, "mtu", str(mtu)),
            ("sysctl", "-qw", f"net.ipv6.conf.{host.ifname}.disable_ipv6=1"),
        ):
            result = host.run(*command)
            assert result.returncode == 0, result.stderr


def link_counters(host: Host) -> dict[str, int]:
    """The kernel's counters of the host's veth end (`ip -s link`: rx, tx)."""
    out = host.run("ip", "-j", "-s", "link", "show", "dev", host.ifname)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)[0]["stats64"]
    return {
        "rx_packets": stats["rx"]["packets"],
        "rx_dropped": stats["rx"]["dropped"],
        "tx_packets": stats["tx"]["packets"],
        "tx_dropped": stats["tx"]["dropped"],
    }


def softnet_dropped() -> int:
    """Packets every CPU's backlog queue dropped (/proc/net/softnet_stat, column 2)."""
    total = 0
    with open("/proc/net/softnet_stat") as stat:
        for line in stat:
            total += int(line.split()[1], 16)
    return total


# --- the daemon ---------------------------------------------------------------------------


class Daemon:
    """`tapsense run` in host's namespace, its log on stderr parsed line by line."""

    def __init__(
        self,
        host: Host,
        events: Path | None,
        *,
        config: Path | None = None,
        workers: int | None = None,
        interfaces: Iterable[str] | None = None,
        extra: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.events = events
        self.workers = workers or 1
        args = [sys.executable, "-m", "agent", "run"]
        for name in [host.ifname] if interfaces is None else interfaces:
            args += ["--interface", name]
        if events is not None:
            args += ["--events", str(events)]
        if config is not None:
            args += ["--config", str(config)]
        if workers is not None:
            args += ["--workers", str(workers)]
        args += list(extra)
        self.lines: list[str] = []
        self.log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.proc = host.start(
            *args,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env} if env else None,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._known_pids: set[int] = {self.proc.pid}
        # workers are forks: they keep the supervisor's command line
        self._cmdline = b"\0".join(a.encode() for a in args) + b"\0"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict):
                        entry["_mono"] = time.monotonic()
                        self.log.append(entry)

    # the log

    def entries(self, event: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Log entries (of one event), from index `since` of the log on."""
        with self._lock:
            return [e for e in self.log[since:] if event is None or e.get("event") == event]

    def mark(self) -> int:
        """A position in the log, for `entries(since=...)` and `wait_event(since=...)`."""
        with self._lock:
            return len(self.log)

    def wait_event(
        self, event: str, timeout_s: float = 15.0, since: int = 0, count: int = 1
    ) -> dict[str, Any]:
        """The `count`-th entry of `event` from `since` on; fails if the daemon exits first."""

        def seen() -> dict[str, Any] | None:
            found = self.entries(event, since)
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                self._reader.join(2)
                found = self.entries(event, since)
                if len(found) >= count:
                    return found[count - 1]
                raise AssertionError(
                    f"the daemon exited ({self.proc.returncode}) before {event}:\n{self.text()}"
                )
            return None

        try:
            return wait_for(seen, timeout_s, event)  # type: ignore[no-any-return]
        except TimeoutError:
            raise AssertionError(f"no {event} within {timeout_s} s:\n{self.text()}") from None

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines[-60:])

    # the processes

    def pids(self) -> list[int]:
        """The supervisor and its workers (children of the supervisor)."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        pids = [self.proc.pid, *map(int, found)]
        self._known_pids.update(pids)
        return pids

    def worker_pids(self) -> list[int]:
        return self.pids()[1:]

    def cpu_seconds(self, pids: Iterable[int] | None = None) -> float:
        """User and system CPU seconds of the supervisor and workers so far (from /proc)."""
        total = 0.0
        for pid in self.pids() if pids is None else pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 25.0) -> int:
        """SIGTERM; the exit code (AssertionError when it does not exit in timeout_s)."""
        if self.proc.poll() is None:
            self.pids()
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no exit {timeout_s} s after SIGTERM:\n{self.text()}") from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL to the supervisor and every worker it had that is still there."""
        with contextlib.suppress(Exception):
            if self.proc.poll() is None:
                self.pids()
        if self.proc.poll() is None:  # not reaped yet, so still ours (perhaps still `ip`)
            self.proc.kill()
        for pid in sorted(self._known_pids - {self.proc.pid}):
            try:  # only a process of this daemon: a pid that ended may have been reused
                if Path(f"/proc/{pid}/cmdline").read_bytes() != self._cmdline:
                    continue
                os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._reader.join(5)

    # the records

    def event_files(self) -> list[Path]:
        assert self.events is not None
        if self.workers == 1:
            return [self.events]
        return [worker_events(self.events, i) for i in range(self.workers)]

    def records(self) -> list[dict[str, Any]]:
        """Every record of every worker (read after the daemon stopped)."""
        out: list[dict[str, Any]] = []
        for path in self.event_files():
            out += read_records(path)
        return out


@contextlib.contextmanager
def running_daemon(
    host: Host, events: Path | None, *, ready_timeout_s: float = 20.0, **kwargs: Any
) -> Iterator[Daemon]:
    """A Daemon that has logged daemon.ready; killed with its workers on the way out."""
    daemon = Daemon(host, events, **kwargs)
    try:
        daemon.wait_event("daemon.ready", ready_timeout_s)
        yield daemon
    finally:
        daemon.kill()


def worker_events(events: Path, worker: int) -> Path:
    """The events file of a worker when there are several: PATH with .N before the extension."""
    return events.with_name(f"{events.stem}.{worker}{events.suffix}")


def read_records(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def of_type(records: Iterable[Mapping[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [dict(r) for r in records if r["type"] in kinds]


def last_stats(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    stats = of_type(records, "stats")
    assert stats, "no stats record"
    return stats[-1]


def comparable(records: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """dns, tls, quic and flow records without their timestamps and RTTs, as a multiset."""
    out: Counter[str] = Counter()
    for record in records:
        if record["type"] in RECORD_TYPES:
            kept = {k: v for k, v in record.items() if k not in TIME_FIELDS}
            out[json.dumps(kept, sort_keys=True)] += 1
    return out


def describe_difference(live: Counter[str], offline: Counter[str], limit: int = 6) -> str:
    missing = list((offline - live).elements())
    extra = list((live - offline).elements())
    return (
        f"{len(missing)} records only offline, {len(extra)} only live\n"
        + "".join(f"  offline only: {m}\n" for m in missing[:limit])
        + "".join(f"  live only:    {e}\n" for e in extra[:limit])
    )


# --- traffic ------------------------------------------------------------------------------

_ACTUAL = re.compile(r"Actual: (\d+) packets")


def tcpreplay(
    host: Host,
    pcap: Path,
    *,
    pps: int | None = None,
    loop: int = 1,
    cpu: int | None = 0,
    preload: bool = False,
    timeout_s: float = 120.0,
) -> tuple[int, str]:
    """Sends the capture out of host's veth end; (packets sent, tcpreplay's output).

    At --topspeed unless pps is given. Pinned to one CPU by default: frames injected from
    two CPUs may reach the receiving end out of order. `preload` reads the file into memory
    first (--preload-pcap), so that disk reads do not slow the sender down.
    """
    args = ["tcpreplay", "-i", host.ifname, "--loop", str(loop)]
    if preload:
        args.append("--preload-pcap")
    args += [f"--pps={pps}"] if pps else ["--topspeed"]
    args.append(str(pcap))
    if cpu is not None:
        args = ["taskset", "-c", str(cpu), *args]
    result = host.run(*args, timeout=timeout_s)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = _ACTUAL.search(output)
    assert found, output
    return int(found.group(1)), output


def gen_mix(out: Path, packets: int, seed: int) -> Path:
    """bench.gen_mix's capture (kept when it exists: the same arguments give the same file)."""
    if not out.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.gen_mix",
                "--packets",
                str(packets),
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    return out


def offline_records(pcap: Path, events: Path, config: Path | None = None) -> list[dict[str, Any]]:
    """What `tapsense replay` writes for the file."""
    args = [sys.executable, "-m", "agent", "replay", str(pcap), "--events", str(events), "-q"]
    if config is not None:
        args += ["--config", str(config)]
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, timeout=120)
    return read_records(events)


def status_of(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict of its lines."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


class NotifyListener:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET (sd_notify(3)): every message
    it receives, with the time it came. A path, not an abstract address: those belong to a
    network namespace."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[tuple[float, list[str]]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        path.chmod(0o777)  # the daemon sends as `nobody` once it dropped root
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def lines(self) -> list[str]:
        return [line for _, lines in list(self.messages) for line in lines]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


@contextlib.contextmanager
def resolver(host: Host, nameserver: str) -> Iterator[None]:
    """Programs run with host.cmd resolve names through `nameserver` (`ip netns exec` mounts
    /etc/netns/NS/resolv.conf over /etc/resolv.conf); the file is removed afterwards."""
    top = Path("/etc/netns")
    made_top = not top.exists()
    folder = top / host.ns
    folder.mkdir(parents=True, exist_ok=True)
    try:
        (folder / "resolv.conf").write_text(f"nameserver {nameserver}\noptions attempts:1\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            (folder / "resolv.conf").unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
        if made_top:
            with contextlib.suppress(OSError):
                top.rmdir()
