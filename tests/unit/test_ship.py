"""agent/ship.py: collector URLs, and the shipper against a small fake collector."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.ship import Shipper, Target
from agent.spool import Spool
from agent.wire import SCHEMA, FrameReader, batch_message, frame
from tests.certs import make_pki


class Log:
    """Stands in for the structlog logger."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.calls.append((event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.calls.append((event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.calls.append((event, fields))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.calls if event == name]


class FakeCollector:
    """A collector on 127.0.0.1 that serves one connection at a time, as told.

    behaviour: "ack" (every batch), "refuse" (an error for the hello), "drop" (the first
    connection closes after `after` acks, without acking the next batch), "lose_ack" (the
    first connection stores the next batch, then closes before its ack), "wrong_ack" (the
    first connection acks another seq), "mute" (reads the hello, never answers).
    """

    def __init__(self, behaviour: str = "ack", after: int = 0, port: int = 0) -> None:
        self.behaviour = behaviour
        self.after = after
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.hellos: list[dict[str, Any]] = []
        self.received: list[list[tuple[str, int]]] = []  # batch keys, per connection
        self.stored: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _address = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.2)
                with contextlib.suppress(OSError):
                    self._session(conn, len(self.received))

    def _messages(self, conn: socket.socket) -> Iterator[dict[str, Any]]:
        reader = FrameReader()
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            yield from reader.feed(data)

    def _session(self, conn: socket.socket, index: int) -> None:
        got: list[tuple[str, int]] = []
        self.received.append(got)
        messages = self._messages(conn)
        hello = next(messages)
        self.hellos.append(hello)
        if self.behaviour == "refuse":
            conn.sendall(frame({"type": "error", "reason": "not you"}))
            return
        if self.behaviour == "mute":
            for _ in messages:
                pass
            return
        conn.sendall(frame({"type": "welcome", "schema": SCHEMA}))
        first = index == 0
        for message in messages:
            key = (message["stream"], message["seq"])
            got.append(key)
            if first and self.behaviour == "drop" and len(got) > self.after:
                return
            stored = key not in self.stored
            if stored:
                self.stored.append(key)
            if first and self.behaviour == "lose_ack" and len(got) > self.after:
                return
            seq = key[1] + 1000 if first and self.behaviour == "wrong_ack" else key[1]
            ack = {"type": "ack", "stream": key[0], "seq": seq, "stored": stored}
            conn.sendall(frame(ack))


def batch(seq: int, stream: str = "live") -> dict[str, Any]:
    return batch_message(
        sensor="tap-01",
        stream=stream,
        seq=seq,
        window=(100.0 + 10 * seq, 110.0 + 10 * seq),
        records=[{"type": "dns", "ts": 101.0 + 10 * seq, "qname": "a.test"}],
        count=1,
        rollups={"names": [], "qnames": [["a.test", 0, 1]]},
        stats={},
    )


@pytest.fixture
def collectors() -> Iterator[list[FakeCollector]]:
    started: list[FakeCollector] = []
    yield started
    for collector in started:
        collector.close()


@pytest.fixture
def shippers() -> Iterator[list[Shipper]]:
    started: list[Shipper] = []
    yield started
    for shipper in started:
        shipper.close()


def make_shipper(
    port: int, spool_dir: Path, shippers: list[Shipper], **kwargs: Any
) -> tuple[Shipper, Log]:
    log = Log()
    spool = Spool(spool_dir, 1 << 20, fsync="never")
    options = {"ack_timeout_s": 5.0, "connect_timeout_s": 2.0} | kwargs
    shipper = Shipper(
        Target.parse(f"tcp://127.0.0.1:{port}"), spool, sensor="tap-01", log=log, **options
    )
    shippers.append(shipper)
    return shipper, log


def keys(*seqs: int) -> list[tuple[str, int]]:
    return [("live", seq) for seq in seqs]


# --- Target ----------------------------------------------------------------------------------


def test_parse_tcp_and_tls_urls(tmp_path: Path) -> None:
    assert Target.parse("tcp://127.0.0.1:7443") == Target("tcp", "127.0.0.1", 7443)
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "s.pem", tmp_path / "s.key"
    assert Target.parse("tls://collector.example:443", ca, cert, key) == Target(
        "tls", "collector.example", 443, ca, cert, key
    )
    assert Target.parse("tls://[::1]:7443", ca).host == "::1"
    assert Target.parse("tls://collector.example:7443").ca is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:7443",
        "127.0.0.1:7443",
        "tcp://127.0.0.1",
        "tcp://:7443",
        "tcp://127.0.0.1:99999",
        "tcp://127.0.0.1:port",
        "tls://",
        "",
    ],
)
def test_parse_refuses_bad_urls_with_one_line(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        Target.parse(url)
    assert str(caught.value) and "\n" not in str(caught.value)


def test_certificate_options_need_tls_and_come_in_pairs(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    with pytest.raises(ValueError, match="tls://"):
        Target.parse("tcp://127.0.0.1:7443", ca=pem)
    with pytest.raises(ValueError, match="both"):
        Target.parse("tls://127.0.0.1:7443", cert=pem)
    with pytest.raises(ValueError, match="both"):
        Target.parse("tls://127.0.0.1:7443", key=pem)


def test_the_tls_context_verifies_the_collector_and_presents_the_sensor(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    target = Target.parse("tls://127.0.0.1:7443", pki.ca, pki.client.cert, pki.client.key)
    ctx = target.context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(ctx.get_ca_certs()) == 1


# --- the shipper -----------------------------------------------------------------------------


def test_batches_are_sent_in_order_and_dropped_once_acknowledged(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    collectors.append(collector := FakeCollector())
    shipper, log = make_shipper(collector.port, tmp_path / "spool", shippers)
    shipper.start()
    for seq in range(5):
        shipper.submit(batch(seq))
    assert shipper.wait_drained(5)
    assert collector.received == [keys(0, 1, 2, 3, 4)]
    [hello] = collector.hellos
    assert (hello["type"], hello["sensor"], hello["schema"]) == ("hello", "tap-01", SCHEMA)
    assert hello["agent"].startswith("tapsense ")
    stats = shipper.stats()
    assert {k: stats[k] for k in ("sent", "acked", "duplicates", "connects", "failures")} == {
        "sent": 5,
        "acked": 5,
        "duplicates": 0,
        "connects": 1,
        "failures": 0,
    }
    assert (stats["spooled"], stats["spool_batches"], stats["spool_bytes"]) == (5, 0, 0)
    assert len(shipper.spool) == 0
    assert log.events("ship.connected") == [{"collector": f"tcp://127.0.0.1:{collector.port}"}]


def test_a_connection_dropped_mid_stream_resends_what_was_not_acknowledged(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    collectors.append(collector := FakeCollector("drop", after=2))
    shipper, log = make_shipper(collector.port, tmp_path / "spool", shippers)
    for seq in range(5):
        shipper.submit(batch(seq))  # spooled before the shipper starts
    shipper.start()
    assert shipper.wait_drained(10)
    assert collector.received == [keys(0, 1, 2), keys(2, 3, 4)]
    assert collector.stored == keys(0, 1, 2, 3, 4)  # nothing lost, nothing twice
    stats = shipper.stats()
    assert (stats["connects"], stats["failures"], stats["sent"], stats["acked"]) == (2, 1, 6, 5)
    assert stats["duplicates"] == 0
    assert len(log.events("ship.failed")) == 1


def test_a_lost_ack_is_resent_and_counted_as_a_duplicate(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    collectors.append(collector := FakeCollector("lose_ack", after=1))
    shipper, _log = make_shipper(collector.port, tmp_path / "spool", shippers)
    shipper.start()
    for seq in range(3):
        shipper.submit(batch(seq))
    assert shipper.wait_drained(10)
    assert collector.stored == keys(0, 1, 2)
    assert collector.received[1][0] == ("live", 1)  # stored, but its ack was lost
    stats = shipper.stats()
    assert (stats["acked"], stats["duplicates"]) == (3, 1)


def test_an_ack_of_another_batch_keeps_the_batch_spooled(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    collectors.append(collector := FakeCollector("wrong_ack"))
    shipper, log = make_shipper(collector.port, tmp_path / "spool", shippers)
    shipper.submit(batch(0))
    shipper.start()
    assert shipper.wait_drained(10)
    assert collector.received == [keys(0), keys(0)]
    assert shipper.stats()["acked"] == 1
    assert "expected the ack" in log.events("ship.failed")[0]["error"]


def test_a_refused_hello_keeps_everything_spooled(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    collectors.append(collector := FakeCollector("refuse"))
    shipper, log = make_shipper(collector.port, tmp_path / "spool", shippers)
    shipper.submit(batch(0))
    shipper.submit(batch(1))
    shipper.start()
    assert not shipper.wait_drained(1.0)
    started = time.monotonic()
    shipper.close()
    assert time.monotonic() - started < 2.0
    stats = shipper.stats()
    assert (stats["connects"], stats["sent"], stats["acked"]) == (0, 0, 0)
    assert stats["connect_failures"] >= 1 and stats["spool_batches"] == 2
    assert collector.received[0] == []  # no batch after a refused hello
    failed = log.events("ship.connect_failed")
    assert "not you" in failed[0]["error"] and failed[0]["backoff_s"] > 0
    again = Spool(tmp_path / "spool", 1 << 20)  # the batches wait on disk for the next run
    assert [key for key, _data in again.pending()] == keys(0, 1)


def test_the_shipper_waits_for_a_collector_that_is_not_there_yet(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    shipper, log = make_shipper(port, tmp_path / "spool", shippers)
    shipper.start()
    shipper.submit(batch(0))
    time.sleep(0.3)
    assert shipper.stats()["connect_failures"] >= 1
    collectors.append(collector := FakeCollector(port=port))
    assert shipper.wait_drained(10)
    assert collector.received == [keys(0)]
    assert log.events("ship.connect_failed")


def test_batches_left_by_a_previous_run_are_sent_first(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    earlier = Spool(tmp_path / "spool", 1 << 20)
    for seq in (7, 8):
        earlier.put("live", seq, frame(batch(seq)), 1)
    collectors.append(collector := FakeCollector())
    shipper, _log = make_shipper(collector.port, tmp_path / "spool", shippers)
    shipper.start()
    shipper.submit(batch(9))
    assert shipper.wait_drained(5)
    assert collector.received == [keys(7, 8, 9)]


def test_close_interrupts_a_collector_that_never_answers(
    tmp_path: Path, collectors: list[FakeCollector], shippers: list[Shipper]
) -> None:
    collectors.append(collector := FakeCollector("mute"))
    shipper, _log = make_shipper(collector.port, tmp_path / "spool", shippers, ack_timeout_s=30.0)
    shipper.submit(batch(0))
    shipper.start()
    deadline = time.monotonic() + 5
    while not collector.hellos and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collector.hellos
    started = time.monotonic()
    shipper.close()
    assert time.monotonic() - started < 2.0
    assert len(shipper.spool) == 1


def test_stats_count_spool_drops(tmp_path: Path, shippers: list[Shipper]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    log = Log()
    sizes = [len(frame(batch(seq))) for seq in range(5)]
    spool = Spool(tmp_path / "spool", sizes[3] + sizes[4], fsync="never")
    shipper = Shipper(Target.parse(f"tcp://127.0.0.1:{port}"), spool, sensor="tap-01", log=log)
    shippers.append(shipper)
    for seq in range(5):
        shipper.submit(batch(seq))  # never started: everything stays in the spool
    stats = shipper.stats()
    assert (stats["spooled"], stats["spool_batches"], stats["spool_bytes"]) == (
        5,
        2,
        sizes[3] + sizes[4],
    )
    assert (stats["dropped_batches"], stats["dropped_records"]) == (3, 3)
    assert set(stats) >= {"sent", "acked", "duplicates", "connects", "connect_failures",
                          "failures"}  # fmt: skip


def test_a_batch_the_disk_refuses_is_dropped_counted_and_logged(
    tmp_path: Path, shippers: list[Shipper], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full: the capture loop goes on, and the loss shows in stats and in the log."""
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    shipper, log = make_shipper(port, tmp_path / "spool", shippers)
    shipper.submit(batch(0))
    real_open = open

    def full_disk(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    shipper.submit(batch(1))
    monkeypatch.undo()
    shipper.submit(batch(2))
    stats = shipper.stats()
    assert (stats["spooled"], stats["spool_batches"], stats["spool_write_failed"]) == (2, 2, 1)
    assert (stats["dropped_batches"], stats["dropped_records"]) == (1, 1)
    assert [key for key, _ in shipper.spool.pending()] == keys(0, 2)
    [failed] = log.events("ship.spool_write_failed")
    assert failed["seq"] == 1 and "No space left" in failed["error"]
    [dropped] = log.events("ship.spool_dropped")
    assert (dropped["batches"], dropped["records"]) == (1, 1)
    assert not list((tmp_path / "spool").glob("*.tmp"))
