"""The shipper: sends spooled batches to the collector, and removes them once acknowledged.

Every batch goes to the spool first (agent/spool.py), from the capture loop, which only
ever waits for the disk; a thread of its own connects (TCP, or TLS with server
verification and a client certificate), says hello, then sends the spooled batches in
order and drops each one when the collector acknowledges its (stream, seq). A failure
closes the connection and the thread reconnects with exponential backoff; nothing leaves
the spool before its acknowledgment.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent import __version__
from agent.config import ShipConfig
from agent.spool import Spool
from agent.wire import SCHEMA, FrameReader, WireError, frame

SCHEMES = ("tcp", "tls")


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def parse(
        cls, url: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
    ) -> Target:
        """tcp://HOST:PORT or tls://HOST:PORT; raises ValueError with a one-line reason."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"{url}: the scheme must be tcp:// or tls://")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"{url}: expected {parts.scheme}://HOST:PORT")
        if parts.scheme == "tcp" and (ca or cert or key):
            raise ValueError("certificate options need a tls:// URL")
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs both --ship-cert and --ship-key")
        return cls(parts.scheme, parts.hostname, port, ca, cert, key)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert and self.key:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def config_target(ship: ShipConfig) -> Target:
    """The collector of a [ship] section; ValueError or OSError when it cannot be used."""
    target = Target.parse(
        ship.url,
        Path(ship.ca) if ship.ca else None,
        Path(ship.cert) if ship.cert else None,
        Path(ship.key) if ship.key else None,
    )
    if target.scheme == "tls":
        target.context()  # reads the CA and certificate files now
    return target


def ship_problems(ship: ShipConfig) -> list[str]:
    """What makes [ship] unusable, as config problems (empty: none, or no collector)."""
    if not ship.url:
        return []
    try:
        config_target(ship)
    except ValueError as exc:
        return [f"ship: {exc}"]
    except OSError as exc:  # ssl does not say which file
        files = ", ".join(name for name in (ship.ca, ship.cert, ship.key) if name)
        return [f"ship: {files}: {exc.strerror or exc}"]
    return []


class Shipper:
    def __init__(
        self,
        target: Target,
        spool: Spool,
        *,
        sensor: str,
        log: Any,
        connect_timeout_s: float = 5.0,
        ack_timeout_s: float = 30.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.target = target
        self.spool = spool
        self.sensor = sensor
        self.log = log
        self.connect_timeout_s = connect_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.backoff_max_s = backoff_max_s
        self.counters = {
            "sent": 0,
            "acked": 0,
            "duplicates": 0,
            "connects": 0,
            "connect_failures": 0,
            "failures": 0,
        }
        self._context = target.context() if target.scheme == "tls" else None
        self._live: socket.socket | None = None  # the connection close() must interrupt
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tapsense-ship", daemon=True)

    def start(self) -> None:
        spool = self.spool.counters
        if spool["recovered"] or spool["unreadable"]:
            log = self.log.warning if spool["unreadable"] else self.log.info
            log(
                "ship.spool_recovered",
                batches=spool["recovered"],
                unreadable=spool["unreadable"],  # removed: what a crash cut short
                directory=str(self.spool.directory),
            )
        self._thread.start()

    def submit(self, batch: dict[str, Any]) -> None:
        """Spools a batch for sending (disk only: the caller never waits on the network)."""
        records = int(batch.get("count", 0))
        try:
            framed = frame(batch)
        except WireError as exc:  # past the wire's limit: the capture loop must go on
            self.spool.drop(records)
            self.log.error("ship.batch_too_large", seq=batch["seq"], error=str(exc))
            return
        dropped = self.spool.put(batch["stream"], batch["seq"], framed, records)
        if dropped.error is not None:
            self.log.error(
                "ship.spool_write_failed", seq=batch["seq"], records=records, error=dropped.error
            )
        if dropped.batches:
            self.log.warning(
                "ship.spool_dropped",
                batches=dropped.batches,
                records=dropped.records,
                dropped_batches_total=self.spool.counters["dropped_batches"],
                spool_bytes=self.spool.size,
                spool_max_bytes=self.spool.max_bytes,
            )
        with self._wake:
            self._wake.notify()

    def stats(self) -> dict[str, int]:
        """Counters for the stats record: what was sent, acknowledged, spooled and dropped."""
        spool = self.spool.counters
        return {
            **self.counters,
            "spooled": spool["spooled"],
            "spool_batches": len(self.spool),
            "spool_bytes": self.spool.size,
            "dropped_batches": spool["dropped_batches"],
            "dropped_records": spool["dropped_records"],
            "recovered": spool["recovered"],
            "unreadable": spool["unreadable"],  # spool files a crash left that did not read
            "seq_reused": spool["seq_reused"],
            "rejected_batches": spool["rejected_batches"],
            "rejected_records": spool["rejected_records"],
            "spool_write_failed": spool["write_failed"],
        }

    def wait_drained(self, timeout_s: float) -> bool:
        """Waits until the spool is empty (every batch acknowledged); False at the timeout."""
        deadline = time.monotonic() + timeout_s
        while len(self.spool):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify()
        live = self._live
        if live is not None:  # a collector that accepted but never answers holds recv()
            with contextlib.suppress(OSError):
                live.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout=self.ack_timeout_s + 5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                sock = self._connect()
            except (OSError, WireError) as exc:
                self.counters["connect_failures"] += 1
                self.log.warning(
                    "ship.connect_failed",
                    collector=self._address(),
                    error=str(exc),
                    backoff_s=backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self._live = sock
            acked = self.counters["acked"]
            try:
                self._session(sock)
            except Exception as exc:  # anything: the shipper must outlive one bad session
                self.counters["failures"] += 1
                # a session that got nothing through backs off like a failed connect: a
                # collector that takes the hello and then fails must not be hammered
                if self.counters["acked"] > acked:
                    backoff = 0.5
                self.log.warning(
                    "ship.failed", collector=self._address(), error=str(exc), backoff_s=backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
            else:
                backoff = 0.5
            finally:
                self._live = None
                with contextlib.suppress(OSError):
                    sock.close()

    def _address(self) -> str:
        return f"{self.target.scheme}://{self.target.host}:{self.target.port}"

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(
            (self.target.host, self.target.port), timeout=self.connect_timeout_s
        )
        self._live = sock
        try:
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self.target.host)
                self._live = sock
            sock.settimeout(self.ack_timeout_s)
            sock.sendall(
                frame(
                    {
                        "type": "hello",
                        "sensor": self.sensor,
                        "schema": SCHEMA,
                        "agent": f"tapsense {__version__}",
                    }
                )
            )
            reply = self._read(sock, FrameReader())
            if reply.get("type") != "welcome":
                raise WireError(f"collector refused the hello: {reply.get('reason', reply)}")
        except BaseException:
            self._live = None
            sock.close()
            raise
        self.counters["connects"] += 1
        self.log.info("ship.connected", collector=self._address())
        return sock

    def _read(self, sock: socket.socket, reader: FrameReader) -> dict[str, Any]:
        while True:
            data = sock.recv(65536)
            if not data:
                raise WireError("the collector closed the connection")
            messages = reader.feed(data)
            if messages:
                if len(messages) > 1:
                    raise WireError("the collector sent more than it was asked")
                return messages[0]

    def _session(self, sock: socket.socket) -> None:
        reader = FrameReader()
        while not self._stop.is_set():
            waiting = self.spool.keys()
            if not waiting:
                with self._wake:
                    self._wake.wait(0.5)
                continue
            for stream, seq in waiting:
                if self._stop.is_set():
                    return
                framed = self.spool.read((stream, seq))  # one batch in memory at a time
                if framed is None:
                    continue  # dropped (spool full) since the list was taken
                sock.sendall(framed)
                self.counters["sent"] += 1
                ack = self._read(sock, reader)
                if ack.get("type") == "error":
                    # The collector refused this batch itself (too large for it, not storable):
                    # sending it again would block every batch behind it for ever. It goes,
                    # counted and logged, and the next batch gets its turn.
                    self.spool.reject(stream, seq)
                    self.log.error(
                        "ship.batch_rejected",
                        collector=self._address(),
                        stream=stream,
                        seq=seq,
                        reason=str(ack.get("reason", ""))[:200],
                    )
                    raise WireError(f"the collector refused {stream}/{seq}")
                if ack.get("type") != "ack" or ack.get("stream") != stream or ack.get("seq") != seq:
                    raise WireError(f"expected the ack of {stream}/{seq}, got {ack}")
                # counted before the spool lets go: once the spool is empty, the counters
                # (read by another thread, e.g. after wait_drained) are complete
                self.counters["acked"] += 1
                if not ack.get("stored", True):
                    self.counters["duplicates"] += 1
                self.spool.ack(stream, seq)
