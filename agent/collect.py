"""The collector: serves many sensors at once, checks every frame, stores each batch once.

asyncio, one task per connection. A connection must say hello within `hello_timeout_s`;
every frame must arrive whole within `frame_timeout_s` of its first byte (a slow sender
is cut off), and a connection with nothing to say for `idle_timeout_s` is closed. A frame
that is too large, not msgpack, of an unknown schema or with wrong field types gets a log
line and a closed connection; nothing of it is stored, and the other sensors carry on.
With TLS, the handshake needs a client certificate signed by the configured CA; a sensor
without one is refused and logged. Batches are written by one thread (agent/store.py) and
acknowledged after their transaction commits. Stopping finishes what is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.store import Store
from agent.wire import MAX_FRAME, SCHEMA_VERSIONS, FrameReader, WireError, decode_batch, frame

HELLO_MAX = 1 << 16  # bytes a hello frame may have
MAX_CONNECTIONS = 1024  # at once; more are closed at once, counted and logged
CLOSE_WAIT_S = 2.0  # a peer that does not finish closing is not waited for longer


def server_context(cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    """TLS for the collector; with `ca`, sensors must present a certificate it signed."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if ca is not None:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Collector:
    def __init__(
        self,
        store: Store,
        *,
        log: Any,
        tls: ssl.SSLContext | None = None,
        max_frame: int = MAX_FRAME,
        hello_timeout_s: float = 10.0,
        frame_timeout_s: float = 30.0,
        idle_timeout_s: float = 600.0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.store = store
        self.max_connections = max_connections
        self.log = log
        self.tls = tls
        self.max_frame = max_frame
        self.hello_timeout_s = hello_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.counters = {
            "connections": 0,
            "batches": 0,
            "duplicates": 0,
            "records": 0,
            "rejected": 0,
            "tls_refused": 0,
            "busy_refused": 0,
            "store_failures": 0,
        }
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tapsense-store")
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._handle, host, port, limit=1 << 20)
        address = self._server.sockets[0].getsockname()
        self.log.info(
            "collect.started",
            listen=f"{address[0]}:{address[1]}",
            tls=self.tls is not None,
            db=str(self.store.path),
        )
        return address[0], address[1]

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stops accepting, lets each connection finish the batch it is on, closes the store."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
        self._writer.shutdown(wait=True)
        self.store.close()
        self.log.info("collect.stopped", **self.counters)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self.max_connections:
            self.counters["busy_refused"] += 1
            self.log.warning("collect.busy", peer=_peer(writer), connections=len(self._tasks))
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:  # stop() waits for the connections in flight
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.counters["connections"] += 1
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        frames = FrameReader(self.max_frame)
        queue: list[dict[str, Any]] = []
        aborted = False
        try:
            if self.tls is not None:
                try:
                    # Awaited directly, not through wait_for: a task would start the switch one
                    # loop step late, and bytes of the ClientHello already read would be lost.
                    await writer.start_tls(self.tls, ssl_handshake_timeout=self.hello_timeout_s)
                except (ssl.SSLError, OSError, TimeoutError) as exc:
                    self.counters["tls_refused"] += 1
                    self.log.warning("collect.tls_refused", peer=peer, error=str(exc))
                    # after a failed switch a graceful close would wait on a handshake that
                    # never finishes: drop the connection outright, and do not wait for it
                    writer.transport.abort()
                    aborted = True
                    return
            # the whole hello within hello_timeout_s, however slowly its bytes come, and
            # small: a peer that is nobody yet holds no more than HELLO_MAX of memory
            frames.max_frame = min(self.max_frame, HELLO_MAX)
            hello = await self._next(
                reader, frames, queue, self.hello_timeout_s, time.monotonic() + self.hello_timeout_s
            )
            if hello is None:
                return
            sensor = hello.get("sensor")
            if (
                hello.get("type") != "hello"
                or not isinstance(sensor, str)
                or not sensor
                or type(hello.get("schema")) is not int  # True == 1 and 1.0 == 1 in Python
                or hello.get("schema") not in SCHEMA_VERSIONS
            ):
                await self._refuse(writer, peer, f"bad hello: {_brief(hello)}")
                return
            frames.max_frame = self.max_frame
            writer.write(frame({"type": "welcome", "schema": max(SCHEMA_VERSIONS)}))
            await writer.drain()
            self.log.info("collect.sensor_connected", sensor=sensor, peer=peer)
            while not self._stopping:
                message = await self._next(reader, frames, queue, self.idle_timeout_s)
                if message is None:
                    return
                if message.get("type") != "batch":
                    await self._refuse(writer, peer, f"unexpected {_brief(message)}")
                    return
                loop = asyncio.get_running_loop()
                try:
                    # off the event loop (inflating and checking a large batch takes a
                    # while), in the writer's one thread, as one job: one batch in memory
                    # at a time, whatever the peers
                    batch, stored = await loop.run_in_executor(
                        self._writer, self._decode_and_store, message, sensor, peer
                    )
                except (
                    sqlite3.IntegrityError,
                    sqlite3.DataError,
                    sqlite3.InterfaceError,
                    OverflowError,
                    TypeError,
                    ValueError,
                ) as exc:
                    # the batch: the transaction rolled back, nothing of it is stored
                    await self._refuse(writer, peer, f"batch not storable: {exc}")
                    return
                except sqlite3.Error as exc:
                    # the database, not the batch (locked, disk full, corrupt): no ack, so
                    # the sensor keeps the batch in its spool and sends it again later
                    self.counters["store_failures"] += 1
                    self.log.error("collect.store_failed", peer=peer, error=str(exc))
                    return
                self.counters["batches" if stored else "duplicates"] += 1
                if stored:
                    self.counters["records"] += len(batch["records"])
                writer.write(
                    frame(
                        {
                            "type": "ack",
                            "stream": batch["stream"],
                            "seq": batch["seq"],
                            "stored": stored,
                        }
                    )
                )
                await writer.drain()
        except WireError as exc:
            await self._refuse(writer, peer, str(exc))
        except TimeoutError:
            self.counters["rejected"] += 1
            self.log.warning("collect.timeout", peer=peer, buffered=frames.buffered)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            self.log.info("collect.disconnected", peer=peer, error=str(exc))
        finally:
            if not aborted:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT_S)

    def _decode_and_store(
        self, message: dict[str, Any], sensor: str, peer: str
    ) -> tuple[dict[str, Any], bool]:
        """Checks a batch frame and stores it; (batch, False) for a duplicate."""
        batch = decode_batch(message)
        if batch["sensor"] != sensor:
            raise WireError(f"batch of {batch['sensor']!r} on {sensor!r}")
        return batch, self.store.write_batch(batch, peer)

    async def _next(
        self,
        reader: asyncio.StreamReader,
        frames: FrameReader,
        queue: list[dict[str, Any]],
        idle_s: float,
        overall: float | None = None,
    ) -> dict[str, Any] | None:
        """The next message; None at the end of the stream. Deadlines: `idle_s` for the
        first byte of a frame, frame_timeout_s for the rest of it, and `overall` (a
        monotonic time) for all of it. One wait_for per read, never nested: an outer
        wait_for's cancellation can be lost when the inner read completes at that moment."""
        deadline = None
        while not queue:
            if frames.buffered:
                deadline = deadline or time.monotonic() + self.frame_timeout_s
                timeout = deadline - time.monotonic()
            else:
                deadline = None
                timeout = idle_s
            if overall is not None:
                timeout = min(timeout, overall - time.monotonic())
                if timeout <= 0:
                    raise TimeoutError
            data = await asyncio.wait_for(reader.read(1 << 16), max(timeout, 0.001))
            if not data:
                return None
            queue.extend(frames.feed(data))
        return queue.pop(0)

    async def _refuse(self, writer: asyncio.StreamWriter, peer: str, reason: str) -> None:
        self.counters["rejected"] += 1
        self.log.warning("collect.rejected", peer=peer, reason=reason)
        with contextlib.suppress(Exception):
            writer.write(frame({"type": "error", "reason": reason[:200]}))
            await writer.drain()


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


def _brief(message: dict[str, Any]) -> str:
    return repr({k: message[k] for k in list(message)[:4]})[:120]
