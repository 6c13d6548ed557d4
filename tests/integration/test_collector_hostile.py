"""Hostile peers against the collector: it keeps serving the others and stores nothing bad.

Each test runs a collector on 127.0.0.1 (in-process in an asyncio thread, or as
`python3 -m agent collect` where signals and the [collect] settings matter), lets a peer
misbehave while a well-behaved sensor ships batches, then checks three things: the good
sensor was served (each ack came promptly), the store holds exactly the good batches and
no row of the hostile peer in any table, and the collector logged the refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import itertools
import json
import math
import random
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import msgpack
import pytest

from agent.collect import Collector, server_context
from agent.ship import Shipper, Target
from agent.spool import Spool
from agent.store import Store
from agent.wire import SCHEMA_VERSIONS, FrameReader, batch_message, decode_batch, frame
from tests.certs import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
GOOD = "good-sensor"
HOSTILE = "hostile-sensor"
FLOW_ID = "1:" + "A" * 27 + "="  # 20 bytes, as a Community ID packs
PROMPT_S = 1.0  # an ack slower than this means the good sensor was held up
MAX_FRAME_TEST = 256 << 10  # the in-process collector's max_frame (room for a zip bomb)


# --- batches ------------------------------------------------------------------------------


def records(seq: int) -> list[dict[str, Any]]:
    """One DNS and one flow record of window `seq`."""
    ts = 1_700_000_000.0 + 10 * seq
    ends = {"src": "10.0.0.1", "sport": 40000 + seq, "dst": "10.0.0.53", "dport": 53}
    return [
        {"type": "dns", "ts": ts + 1, **ends, "proto": "udp", "flow": FLOW_ID, "qname": "a.test",
         "rcode": 0, "status": "answered", "answers": ["192.0.2.1"]},
        {"type": "flow", "ts": ts + 2, **ends, "proto": "udp", "flow": FLOW_ID, "pkts_up": 1,
         "bytes_up": 70, "pkts_down": 1, "bytes_down": 90, "end": "idle", "name": "a.test"},
    ]  # fmt: skip


def batch(
    seq: int, *, sensor: str = GOOD, stream: str = "live", compression: str = "zlib"
) -> dict[str, Any]:
    ts = 1_700_000_000.0 + 10 * seq
    return batch_message(
        sensor=sensor,
        stream=stream,
        seq=seq,
        window=(ts, ts + 10),
        records=records(seq),
        count=2,
        rollups={"names": [["a.test", 1, 1, 70, 1, 90]], "qnames": [["a.test", 0, 1]]},
        stats={"type": "stats", "ts": ts + 9.9, "packets": 2, "bytes": 160},
        compression=compression,
    )


def hello(sensor: str = GOOD, schema: Any = 1) -> dict[str, Any]:
    return {"type": "hello", "sensor": sensor, "schema": schema, "agent": "tapsense test"}


def body(message: Any) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def raw_frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


# --- peers ------------------------------------------------------------------------------


class Peer:
    """A raw connection that speaks (or breaks) the frame protocol."""

    def __init__(
        self, port: int, *, context: ssl.SSLContext | None = None, timeout_s: float = 5.0
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.reader = FrameReader()
        self.queue: list[dict[str, Any]] = []

    def send(self, data: bytes | dict[str, Any]) -> None:
        self.sock.sendall(frame(data) if isinstance(data, dict) else data)

    def recv(self) -> dict[str, Any] | None:
        """The next message; None when the collector closed the connection."""
        while not self.queue:
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                return None
            if not data:
                return None
            self.queue.extend(self.reader.feed(data))
        return self.queue.pop(0)

    def replies_until_closed(self) -> tuple[list[dict[str, Any]], bool]:
        """Every message until the collector closes; False: still open at the socket timeout."""
        out = []
        try:
            while (message := self.recv()) is not None:
                out.append(message)
        except TimeoutError:
            return out, False
        return out, True

    def say_hello(self, sensor: str = GOOD) -> None:
        self.send(hello(sensor))
        reply = self.recv()
        assert reply is not None and reply["type"] == "welcome", reply

    def ship(self, message: dict[str, Any]) -> dict[str, Any]:
        """Sends a batch and returns its ack, which must come promptly."""
        started = time.monotonic()
        self.send(message)
        ack = self.recv()
        elapsed = time.monotonic() - started
        assert ack is not None, "the collector closed the good sensor's connection"
        assert ack["type"] == "ack" and (ack["stream"], ack["seq"]) == (
            message["stream"],
            message["seq"],
        ), ack
        assert elapsed < PROMPT_S, f"the good sensor waited {elapsed:.2f} s for an ack"
        return ack

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class LogRecorder:
    """Stands in for the structlog logger: records (level, event, fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _add(self, level: str, event: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((level, event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self._add("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._add("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._add("error", event, fields)

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [fields for _level, event, fields in self.calls if event == name]

    def wait_for(self, name: str, count: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.events(name)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.events(name)


class RunningCollector:
    """agent.collect.Collector on 127.0.0.1, in an asyncio loop of its own thread."""

    def __init__(self, db: Path, *, tls: ssl.SSLContext | None = None, **settings: Any) -> None:
        self.db = db
        self.log = LogRecorder()
        self.loop_errors: list[dict[str, Any]] = []  # exceptions nothing in the collector caught
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = {"hello_timeout_s": 2.0, "frame_timeout_s": 2.0, "idle_timeout_s": 30.0} | (
            settings
        )
        self.collector = Collector(Store(db), log=self.log, tls=tls, **settings)
        _host, self.port = self._call(self.collector.start("127.0.0.1", 0))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self, timeout_s: float = 2.0) -> float:
        """Stops the collector; returns how long its stop() took."""
        started = time.monotonic()
        self._call(self.collector.stop(timeout_s=timeout_s))
        elapsed = time.monotonic() - started
        self._call(self._cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        gc.collect()  # finalise what the loop left now, not while pytest formats a failure
        return elapsed

    @staticmethod
    async def _cancel_the_rest() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def uncaught(self) -> list[str]:
        return [f"{c.get('message')}: {c.get('exception')!r}" for c in self.loop_errors]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    running = RunningCollector(tmp_path / "collector.db", max_frame=MAX_FRAME_TEST)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- what the store holds -------------------------------------------------------------------


def keys_in(db: Path, table: str) -> Counter[tuple[str, str, int]]:
    with contextlib.closing(sqlite3.connect(str(db))) as conn:
        return Counter(conn.execute(f'SELECT sensor, stream, seq FROM "{table}"').fetchall())


def batch_keyed_tables(db: Path) -> list[str]:
    """Every table whose rows belong to a batch (sensor, stream, seq), whatever their number."""
    with contextlib.closing(sqlite3.connect(str(db))) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [
            name
            for name in names
            if {"sensor", "stream", "seq"}
            <= {row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')}
        ]


def assert_only_good(db: Path, good: list[tuple[str, int]]) -> None:
    """The store holds exactly the good batches, each once, and nothing of anyone else."""
    expected = Counter((GOOD, stream, seq) for stream, seq in good)
    assert keys_in(db, "batches") == expected
    per_batch = {"dns": 1, "flow": 1, "stats": 1, "rollup_names": 1, "rollup_qnames": 1}
    tables = batch_keyed_tables(db)
    assert set(per_batch) | {"batches", "tls", "quic", "records"} <= set(tables)
    for table in (t for t in tables if t != "batches"):
        want = Counter({key: per_batch.get(table, 0) for key in expected})
        assert keys_in(db, table) == +want, table  # + drops the zero counts
    with contextlib.closing(sqlite3.connect(str(db))) as conn:
        sensors = conn.execute("SELECT sensor, batches, records FROM sensors").fetchall()
    assert sensors == ([(GOOD, len(good), 2 * len(good))] if good else [])


# --- fuzzed frames after a valid hello ------------------------------------------------------


_SEQS = itertools.count(1)


def _base() -> dict[str, Any]:
    """A valid batch of the hostile sensor, with a seq of its own: a case wrongly stored
    cannot turn a later case into a duplicate, which would hide how that one is handled."""
    return batch(next(_SEQS), sensor=HOSTILE, stream="fuzz", compression="none")


class Mutated(dict[str, Any]):
    """A batch with one change, which it remembers so that random_mix can combine changes."""

    change: tuple[tuple[Any, ...], Any]


def _apply(message: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    parent: Any = message
    for step in path[:-1]:
        parent = parent[step]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def _with(path: tuple[Any, ...], value: Any) -> Mutated:
    """The base batch with the item at `path` replaced (or deleted, for the value DELETE)."""
    message = Mutated(_base())
    _apply(message, path, value)
    message.change = (path, value)
    return message


DELETE = object()
DNS_ROW = ("tables", "dns", "rows", 0)
DNS_FIELDS = ("ts", "src", "sport", "dst", "dport", "proto", "flow", "qname", "rcode", "status",
              "answers")  # fmt: skip
BIG = 2**64 - 1  # msgpack's largest integer; SQLite's is 2**63 - 1


def _field(name: str) -> tuple[Any, ...]:
    return (*DNS_ROW, DNS_FIELDS.index(name))


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _msgpack_bomb(message: dict[str, Any], levels: int) -> bytes:
    """The message with stats.deep nested `levels` arrays deep, beyond what packb would pack."""
    marker = "@@deep@@"
    message["stats"]["deep"] = marker
    return body(message).replace(body(marker), b"\x91" * levels + b"\x01")


WRONG_TYPES: dict[str, list[Any]] = {
    "schema": [None, 1.5, "1", b"\x01", [1], {}],
    "sensor": [None, 7, 1.5, b"hostile", [], {}, "", "s" * 201],
    "stream": [None, 7, 1.5, b"fuzz", [], {}, "s" * 201],
    "seq": [None, 1.5, "1", b"\x01", [], {}],
    "window": [None, 7, "w", b"w", {}, [], [1.0], [1.0, 2.0, 3.0], ["a", "b"], [None, 1.0]],
    "tables": [None, 7, "t", b"t", [], [[]]],
    "rollups": [None, 7, "r", b"r", []],
    "stats": [None, 7, "s", b"s", []],
    "count": [None, 1.5, "2", b"\x02", [2], {}],
}


def fuzz_cases(category: str, encode: bool = True) -> list[tuple[str, Any]]:
    """(label, frame body) pairs, each of which the collector must refuse."""
    rnd = random.Random(f"tapsense-{category}")
    cases: list[tuple[str, Any]] = []
    add = cases.append
    if category == "random_bytes":
        for i in range(80):
            add((f"random {i}", rnd.randbytes(rnd.randrange(0, 300))))
    elif category == "truncated":
        whole = body(_base())
        for cut in sorted(rnd.sample(range(len(whole)), 40)):
            add((f"cut at {cut}", whole[:cut]))
    elif category == "not_a_batch":
        for label, value in (
            ("list", ["batch"]),
            ("int", 5),
            ("str", "batch"),
            ("nil", None),
            ("type int", {"type": 5}),
            ("no type", {"kind": "batch"}),
            ("second hello", hello(HOSTILE)),
            ("ack", {"type": "ack", "stream": "fuzz", "seq": 1, "stored": True}),
            ("empty batch", {"type": "batch"}),
            ("ext", msgpack.ExtType(7, b"batch")),
        ):
            add((label, body(value)))
        add(("extra data", body(_base()) + b"\xc0"))
        add(("bad utf-8", b"\x81\xa4type\xa2\xff\xfe"))
        add(("int key", body({"type": "batch", 1: 2})))
        add(("reserved byte", b"\xc1"))
        for i in range(30):  # random msgpack values under batch keys; no schema: never valid
            message = {k: _random_value(rnd) for k in _base() if rnd.random() < 0.7}
            message["type"] = rnd.choice(["batch", "hello", "", "BATCH", "error"])
            message.pop("schema", None)
            add((f"random shape {i}", body(message)))
    elif category == "wrong_types":
        for key, values in WRONG_TYPES.items():
            add((f"{key} missing", _with((key,), DELETE)))
            for value in values:
                add((f"{key}={value!r:.20}", _with((key,), value)))
    elif category == "rows":
        table = ("tables", "dns")
        add(("row short", _with(DNS_ROW, [1.0])))
        add(("row long", _with(DNS_ROW, [*_base()["tables"]["dns"]["rows"][0], "extra"])))
        add(("row not a list", _with(DNS_ROW, {"ts": 1.0})))
        add(("rows not a list", _with((*table, "rows"), {"0": []})))
        add(("fields not a list", _with((*table, "fields"), "ts")))
        add(("field not a name", _with((*table, "fields", 0), 0)))
        add(("fields missing", _with((*table, "fields"), DELETE)))
        add(("table not a map", _with(table, [["ts"], [[1.0]]])))
        add(("ts missing", _with((*table, "fields", 0), "time")))
        add(("ts text", _with(_field("ts"), "1700000000")))
        add(("ts null", _with(_field("ts"), None)))
        add(("table under bytes", body(_base()).replace(b"\xa3dns", b"\xc4\x03dns")))
        add(("names row short", _with(("rollups", "names", 0), ["a.test", 1, 1])))
        add(("names row text", _with(("rollups", "names", 0, 3), "70")))
        add(("names not a list", _with(("rollups", "names"), {"a.test": 1})))
        add(("qnames rcode text", _with(("rollups", "qnames", 0, 1), "NOERROR")))
        add(("qnames row long", _with(("rollups", "qnames", 0), ["a.test", 0, 1, 1])))
        add(("qname int", _with(("rollups", "qnames", 0, 0), 5)))
    elif category == "addresses":
        for name in ("src", "dst"):
            for size in (0, 1, 3, 5, 8, 15, 17, 20, 32):
                add((f"{name} of {size} bytes", _with(_field(name), bytes(range(size)))))
    elif category == "nesting":
        add(("record value 9 deep", _with(_field("answers"), _deep(9))))
        add(("stats 9 deep", _with(("stats", "deep"), _deep(9))))
        add(
            (
                "map in record 9 deep",
                _with(_field("answers"), json.loads('{"a":' * 9 + "1" + "}" * 9)),
            )
        )
        add(("stats 3000 deep", _msgpack_bomb(_base(), 3000)))
        add(("stats 100000 deep", _msgpack_bomb(_base(), 100_000)))
    elif category == "bools":
        add(("seq true", _with(("seq",), True)))
        add(("seq false", _with(("seq",), False)))
        add(("schema true", _with(("schema",), True)))
        add(("ts true", _with(_field("ts"), True)))
        add(("names flows true", _with(("rollups", "names", 0, 1), True)))
        add(("qnames rcode true", _with(("rollups", "qnames", 0, 1), True)))
        add(("qnames queries false", _with(("rollups", "qnames", 0, 2), False)))
        add(("count true", _with(("count",), True)))
        add(("window bools", _with(("window",), [True, False])))
    elif category == "out_of_range":
        for value in (-1, -(2**63), 2**63, BIG):
            add((f"seq {value}", _with(("seq",), value)))
        for value in (0, max(SCHEMA_VERSIONS) + 1, -1, 2**32):
            add((f"schema {value}", _with(("schema",), value)))
        add(("sport 2**64-1", _with(_field("sport"), BIG)))
        add(("ts 2**64-1", _with(_field("ts"), BIG)))
        add(("stats packets 2**64-1", _with(("stats", "packets"), BIG)))
        add(("names bytes 2**64-1", _with(("rollups", "names", 0, 3), BIG)))
        add(("qnames queries 2**64-1", _with(("rollups", "qnames", 0, 2), BIG)))
        add(("count 2**64-1", _with(("count",), BIG)))
    elif category == "odd_records":
        odd = {"bytes": b"\x00\xff", "ext": msgpack.ExtType(42, b"x"),
               "timestamp": msgpack.Timestamp(1, 0), "deep": _deep(12),
               "bytes key": {b"k": 1}}  # fmt: skip
        for label, value in odd.items():
            table = {"fields": ["ts", "weird"], "rows": [[1_700_000_001.0, value]]}
            add((f"unknown type, {label}", _with(("tables", "x-unknown"), table)))
        for label, value in (("map", {"k": 1}), ("list", ["dns"]), ("bytes", b"dns")):
            table = {"fields": ["ts", "type"], "rows": [[1_700_000_001.0, value]]}
            add((f"type field {label}", _with(("tables", "x-unknown"), table)))
        for label, value in (("ts missing", {"fields": ["x"], "rows": [[1]]}),
                             ("ts text", {"fields": ["ts"], "rows": [["now"]]})):  # fmt: skip
            add((f"unknown type, {label}", _with(("tables", "x-unknown"), value)))
    elif category == "deflated":
        tables = _base()["tables"]

        def deflated(value: Any) -> bytes:
            return zlib.compress(body(value))

        for label, value in (
            ("not zlib", b"tables"),
            ("empty", b""),
            ("cut short", deflated(tables)[:-5]),
            ("zip bomb", zlib.compress(b"\x00" * ((64 << 20) + 1), 9)),
            ("trailing bytes", deflated(tables) + b"\x00"),
            ("inflates to non-msgpack", zlib.compress(b"\xc1")),
            ("inflates to a list", deflated([["ts"], [[1.0]]])),
            ("deflated twice", zlib.compress(deflated(tables))),
            ("row short", deflated({"dns": {"fields": ["ts", "src"], "rows": [[1.0]]}})),
            ("address of 5 bytes", deflated({"dns": {"fields": ["ts", "src"],
                                                     "rows": [[1.0, b"12345"]]}})),
            ("value 2**64-1", deflated({"dns": {"fields": ["ts", "sport"], "rows": [[1.0, BIG]]}})),
            ("type field", deflated({"dns": {"fields": ["ts", "type"], "rows": [[1.0, {}]]}})),
        ):  # fmt: skip
            add((label, _with(("tables",), value)))
        add(("deflated under schema 1", _with(("tables",), deflated(tables)) | {"schema": 1}))
    elif category == "random_mix":
        singles = [c for cat in MUTATING for c in _changes(cat)]
        for i in range(60):
            message, labels = _base(), []
            for label, (path, value) in rnd.sample(singles, rnd.randint(2, 3)):
                with contextlib.suppress(LookupError, TypeError):  # an earlier change took the path
                    _apply(message, path, value if value is DELETE else copy.deepcopy(value))
                    labels.append(label)
            add((f"mix {i}: " + " + ".join(labels), message))
    else:
        raise AssertionError(category)
    if not encode:
        return cases
    return [(label, value if isinstance(value, bytes) else body(value)) for label, value in cases]


MUTATING = ("wrong_types", "rows", "addresses", "nesting", "bools", "out_of_range", "odd_records")
CATEGORIES = ("random_bytes", "truncated", "not_a_batch", *MUTATING, "deflated", "random_mix")


def _changes(category: str) -> list[tuple[str, tuple[tuple[Any, ...], Any]]]:
    """The single changes of a category, as (label, (path, value))."""
    cases = fuzz_cases(category, encode=False)
    return [(label, case.change) for label, case in cases if isinstance(case, Mutated)]


def _random_value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randrange(10 if depth < 4 else 7)
    return [
        lambda: None,
        lambda: rnd.random() < 0.5,
        lambda: rnd.randint(-(2**63), 2**64 - 1),
        lambda: rnd.choice([0, 1, -1, 2**31, math.inf, math.nan, rnd.uniform(-1e9, 1e9)]),
        lambda: "".join(rnd.choice("ab\u00e9\u4e2d\x00 ") for _ in range(rnd.randrange(8))),
        lambda: rnd.randbytes(rnd.randrange(24)),
        lambda: msgpack.ExtType(rnd.randrange(128), rnd.randbytes(3)),
        lambda: [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(4))],
        lambda: {
            rnd.choice(["ts", "src", "rows", "fields", "x"]): _random_value(rnd, depth + 1)
            for _ in range(rnd.randrange(4))
        },
        lambda: {"fields": ["ts", "src"], "rows": [[_random_value(rnd, depth + 1)] * 2]},
    ][kind]()


def test_the_fuzz_base_batch_is_valid() -> None:
    """Every fuzz case is the base batch plus a change, so the change is what gets refused."""
    assert decode_batch(_base())["records"]
    assert _base()["tables"]["dns"]["fields"] == list(DNS_FIELDS)
    for category in CATEGORIES:
        assert fuzz_cases(category)


@pytest.mark.parametrize("category", CATEGORIES)
def test_fuzzed_frames_after_hello_are_refused(collector: RunningCollector, category: str) -> None:
    cases = fuzz_cases(category)
    good = Peer(collector.port)
    good.say_hello()
    shipped: list[tuple[str, int]] = []
    not_refused = []
    for i, (label, data) in enumerate(cases):
        hostile = Peer(collector.port, timeout_s=1.0)
        hostile.say_hello(HOSTILE)
        hostile.send(raw_frame(data))
        replies, closed = hostile.replies_until_closed()
        hostile.close()
        if [r["type"] for r in replies] != ["error"] or not closed:
            answer = [r["type"] for r in replies] + ([] if closed else ["(left open)"])
            not_refused.append(f"{label}: {answer}")
        if i % 8 == 0:  # the good sensor is served all along
            assert good.ship(batch(len(shipped)))["stored"] is True
            shipped.append(("live", len(shipped)))
    good.close()
    assert not not_refused, f"{len(not_refused)} of {len(cases)} not answered with error: " + (
        "; ".join(not_refused[:12])
    )
    assert not collector.uncaught(), collector.uncaught()[:5]
    assert len(collector.log.wait_for("collect.rejected", len(cases))) == len(cases)
    assert_only_good(collector.db, shipped)


# --- frames too large, garbage, protocol violations ----------------------------------------


def _oversized_prefix(peer: Peer) -> None:
    peer.say_hello(HOSTILE)
    peer.send(b"\xff\xff\xff\xff" + b"\x00" * 100)


def _oversized_frame(peer: Peer) -> None:
    peer.say_hello(HOSTILE)
    big = batch(1, sensor=HOSTILE)
    big["stats"]["padding"] = "x" * MAX_FRAME_TEST
    with contextlib.suppress(ConnectionError):
        peer.send(frame(big))


def _oversized_hello(peer: Peer) -> None:
    message = hello(HOSTILE)
    message["agent"] = "x" * MAX_FRAME_TEST
    with contextlib.suppress(ConnectionError):
        peer.send(frame(message))


def _garbage_after_hello(peer: Peer) -> None:
    peer.say_hello(HOSTILE)
    peer.send(b"GET / HTTP/1.1\r\nHost: collector\r\n\r\n")


def _short_garbage_after_hello(peer: Peer) -> None:
    peer.say_hello(HOSTILE)
    peer.send(raw_frame(b"\x00garbage\xff"))


def _batch_before_hello(peer: Peer) -> None:
    peer.send(batch(1, sensor=HOSTILE))


def _hello_schema(schema: Any) -> Callable[[Peer], None]:
    def misbehave(peer: Peer) -> None:
        peer.send(hello(HOSTILE, schema))

    return misbehave


def _hello_without_sensor(peer: Peer) -> None:
    peer.send({"type": "hello", "schema": 1, "agent": "x"})


def _batch_of_another_sensor(peer: Peer) -> None:
    peer.say_hello(HOSTILE)
    peer.send(batch(1, sensor=GOOD, stream="hijack"))


def _two_frames_second_bad(peer: Peer) -> None:
    """A good batch and garbage in one write: the first is stored, then the peer is cut off."""
    peer.say_hello(HOSTILE)
    peer.send(frame(batch(1, sensor=HOSTILE)) + raw_frame(b"\xc1"))


@pytest.mark.parametrize(
    "misbehave",
    [
        pytest.param(_oversized_prefix, id="length prefix over max_frame"),
        pytest.param(_oversized_frame, id="frame over max_frame"),
        pytest.param(_oversized_hello, id="hello over max_frame"),
        pytest.param(_garbage_after_hello, id="http after hello"),
        pytest.param(_short_garbage_after_hello, id="garbage frame after hello"),
        pytest.param(_batch_before_hello, id="batch before hello"),
        pytest.param(_hello_schema(max(SCHEMA_VERSIONS) + 1), id="hello schema unknown"),
        pytest.param(_hello_schema(0), id="hello schema 0"),
        pytest.param(_hello_schema("1"), id="hello schema text"),
        pytest.param(_hello_schema(True), id="hello schema true"),
        pytest.param(_hello_without_sensor, id="hello without sensor"),
        pytest.param(_batch_of_another_sensor, id="batch of another sensor"),
    ],
)
def test_protocol_violations_are_refused(
    collector: RunningCollector, misbehave: Callable[[Peer], None]
) -> None:
    good = Peer(collector.port)
    good.say_hello()
    assert good.ship(batch(0))["stored"] is True
    hostile = Peer(collector.port, timeout_s=1.5)
    misbehave(hostile)
    assert good.ship(batch(1))["stored"] is True  # while the hostile connection is open
    replies, closed = hostile.replies_until_closed()
    hostile.close()
    assert closed, f"the collector answered {replies} and kept the connection"
    assert [r["type"] for r in replies] in (["error"], [])
    assert good.ship(batch(2))["stored"] is True
    good.close()
    rejected = collector.log.wait_for("collect.rejected")
    assert len(rejected) == 1, collector.log.calls
    assert rejected[0]["reason"]
    assert not collector.uncaught()
    assert_only_good(collector.db, [("live", 0), ("live", 1), ("live", 2)])


def test_a_bad_frame_right_after_a_good_one(collector: RunningCollector) -> None:
    """Both frames in one write: the good batch is acknowledged if and only if it is stored."""
    hostile = Peer(collector.port)
    _two_frames_second_bad(hostile)
    replies, closed = hostile.replies_until_closed()
    assert closed
    kinds = [r["type"] for r in replies]
    assert kinds in (["ack", "error"], ["error"])
    stored = Counter({(HOSTILE, "live", 1): 1}) if "ack" in kinds else Counter()
    assert keys_in(collector.db, "batches") == stored
    assert len(collector.log.wait_for("collect.rejected")) == 1


def test_the_same_batch_twice_is_stored_once(collector: RunningCollector) -> None:
    sensor = Peer(collector.port)
    sensor.say_hello()
    assert sensor.ship(batch(7))["stored"] is True
    assert sensor.ship(batch(7))["stored"] is False
    sensor.close()
    again = Peer(collector.port)  # after a reconnect, as after a lost ack
    again.say_hello()
    assert again.ship(batch(7))["stored"] is False
    assert again.ship(batch(8))["stored"] is True
    again.close()
    assert_only_good(collector.db, [("live", 7), ("live", 8)])
    assert collector.collector.counters["duplicates"] == 2
    assert not collector.log.events("collect.rejected")


@pytest.mark.parametrize(
    "fault",
    [
        sqlite3.OperationalError("database is locked"),
        sqlite3.DatabaseError("database disk image is malformed"),
    ],
    ids=["locked", "corrupt"],
)
def test_a_database_fault_is_not_the_batch_s_no_ack_and_no_refusal(
    collector: RunningCollector, monkeypatch: pytest.MonkeyPatch, fault: sqlite3.Error
) -> None:
    """A refusal makes the sensor drop the batch from its spool; when the database is at
    fault, the collector closes without an ack, so the batch is sent again later."""

    def failing(*_args: Any) -> bool:
        raise fault

    monkeypatch.setattr(collector.collector.store, "write_batch", failing)
    sensor = Peer(collector.port)
    sensor.say_hello()
    sensor.send(batch(3))
    replies, closed = sensor.replies_until_closed()
    assert closed and replies == []
    assert collector.collector.counters["store_failures"] == 1
    assert len(collector.log.wait_for("collect.store_failed")) == 1
    assert not collector.log.events("collect.rejected")


# --- mutual TLS ------------------------------------------------------------------------------


def _client_context(pki: Pki, pair: Any = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if pair is not None:
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
    return ctx


def _tls_attempt(port: int, context: ssl.SSLContext | None) -> list[dict[str, Any]]:
    """Connects, says hello and returns what came back; a refused handshake gives []."""
    try:
        peer = Peer(port, context=context)
        peer.send(hello(HOSTILE))
        peer.send(batch(1, sensor=HOSTILE))
        replies, _closed = peer.replies_until_closed()
    except (ssl.SSLError, ConnectionError):
        return []
    peer.close()
    return replies


def _tls_sensor(port: int, pki: Pki) -> Peer:
    """A good sensor's connection, handshake retried (test_mutual_tls_welcomes... says why)."""
    for attempt in range(40):
        try:
            peer = Peer(port, context=_client_context(pki, pki.client), timeout_s=0.5)
            peer.say_hello()
        except (OSError, AssertionError):
            time.sleep(0.05 * (attempt % 3))
            continue
        peer.sock.settimeout(5.0)
        return peer
    raise AssertionError("the good sensor never got through the TLS handshake")


@pytest.mark.parametrize("who", ["no certificate", "stranger's certificate", "plain TCP"])
def test_mutual_tls_refuses_strangers(tmp_path: Path, pki: Pki, who: str) -> None:
    tls = server_context(pki.server.cert, pki.server.key, pki.ca)
    running = RunningCollector(tmp_path / "tls.db", tls=tls, hello_timeout_s=0.4)
    try:
        good = _tls_sensor(running.port, pki)
        assert good.ship(batch(0))["stored"] is True
        context = {
            "no certificate": _client_context(pki),
            "stranger's certificate": _client_context(pki, pki.stranger),
            "plain TCP": None,
        }[who]
        replies = _tls_attempt(running.port, context)
        assert [r for r in replies if r["type"] in ("welcome", "ack")] == []
        assert good.ship(batch(1))["stored"] is True
        good.close()
        refused = running.log.wait_for("collect.tls_refused")
        assert any(entry["peer"] for entry in refused)
        assert not running.log.events("collect.rejected")
        sensors = running.log.events("collect.sensor_connected")
        assert {entry["sensor"] for entry in sensors} == {GOOD}
        assert_only_good(running.db, [("live", 0), ("live", 1)])
    finally:
        running.stop()


def test_a_tls_sensor_ships_through_the_shipper(tmp_path: Path, pki: Pki) -> None:
    """agent.ship.Shipper with the sensor certificate: every batch stored."""
    tls = server_context(pki.server.cert, pki.server.key, pki.ca)
    running = RunningCollector(tmp_path / "tls.db", tls=tls, hello_timeout_s=3.0)
    target = Target.parse(
        f"tls://127.0.0.1:{running.port}", pki.ca, pki.client.cert, pki.client.key
    )
    spool = Spool(tmp_path / "spool", 1 << 20, "never")
    shipper = Shipper(target, spool, sensor=GOOD, log=LogRecorder())
    shipper.start()
    try:
        for seq in range(5):
            shipper.submit(batch(seq))
        assert shipper.wait_drained(10), shipper.stats()
        assert shipper.stats()["connect_failures"] == 0, shipper.log.calls
        assert_only_good(running.db, [("live", seq) for seq in range(5)])
    finally:
        shipper.close()
        running.stop()


def test_mutual_tls_welcomes_a_good_sensor_at_once_every_time(tmp_path: Path, pki: Pki) -> None:
    """Each handshake of a sensor with a good certificate succeeds at once, not on a retry."""
    tls = server_context(pki.server.cert, pki.server.key, pki.ca)
    running = RunningCollector(tmp_path / "tls.db", tls=tls, hello_timeout_s=3.0)
    outcomes = []
    try:
        for seq in range(10):
            started = time.monotonic()
            try:
                peer = Peer(running.port, context=_client_context(pki, pki.client), timeout_s=1.0)
                peer.say_hello()
                peer.ship(batch(seq))
                peer.close()
                outcomes.append("ok")
            except (OSError, AssertionError) as exc:
                outcomes.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s")
        assert outcomes == ["ok"] * 10, outcomes
        assert not running.log.events("collect.tls_refused")
    finally:
        running.stop()


def test_a_tls_handshake_that_times_out_leaves_nothing_behind(tmp_path: Path, pki: Pki) -> None:
    """A peer that opens the TLS port and says nothing is cut off at hello_timeout_s, and its
    connection is finished with: stopping the collector afterwards does not wait for it."""
    tls = server_context(pki.server.cert, pki.server.key, pki.ca)
    running = RunningCollector(tmp_path / "tls.db", tls=tls, hello_timeout_s=0.5)
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b""
        assert time.monotonic() - started < 0.5 + 1.0
    assert len(running.log.wait_for("collect.tls_refused")) == 1
    time.sleep(0.2)
    elapsed = running.stop(timeout_s=5.0)  # a connection still in flight makes it wait 5 s
    assert elapsed < 1.0, f"stop() waited {elapsed:.1f} s for a connection already refused"
    assert not running.uncaught(), running.uncaught()


# --- a collector subprocess: slow peers, silent peers, SIGTERM -------------------------------


class CollectorProcess:
    """`python3 -m agent collect` on 127.0.0.1 (a free port), logging JSON to a file."""

    def __init__(self, folder: Path, settings: str) -> None:
        config = folder / "collect.toml"
        config.write_text(f"[collect]\n{settings}\n")
        self.db = folder / "collector.db"
        self.log_path = folder / "collect.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "collect", "--listen", "127.0.0.1:0",
                 "--db", str(self.db), "--config", str(config)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        started = self.wait_for("collect.started", timeout_s=20)
        self.port = int(started[0]["listen"].rpartition(":")[2])

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("event") == name:
                    out.append(entry)
        return out

    def wait_for(self, name: str, count: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.events(name)) < count and time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            time.sleep(0.02)
        return self.events(name)

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[Callable[[str], CollectorProcess]]:
    started: list[CollectorProcess] = []

    def start(settings: str) -> CollectorProcess:
        started.append(CollectorProcess(tmp_path, settings))
        return started[-1]

    yield start
    for process in started:
        process.terminate()


def _silent(port: int, out: dict[str, float]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            assert sock.recv(1) == b""
        out["silent"] = time.monotonic() - started


def _dribble(port: int, out: dict[str, float], name: str, after_hello: bool) -> None:
    """Sends a frame one byte a second; records how long after the first byte it was cut off."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        if after_hello:
            sock.sendall(frame(hello(HOSTILE)))
            assert FrameReader().feed(sock.recv(65536))[0]["type"] == "welcome"
        data = frame(batch(1, sensor=HOSTILE)) if after_hello else frame(hello(HOSTILE))
        sock.settimeout(1.0)
        started = time.monotonic()
        for i in range(len(data)):
            try:
                sock.sendall(data[i : i + 1])
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue  # still open: the next byte
            except ConnectionError:
                break
        out[name] = time.monotonic() - started


def test_slow_and_silent_peers_are_cut_off(
    tmp_path: Path, collector_process: Callable[[str], CollectorProcess]
) -> None:
    process = collector_process(
        "hello_timeout_s = 1.5\nframe_timeout_s = 2.5\nidle_timeout_s = 30\nmax_frame_mb = 1"
    )
    cut: dict[str, float] = {}
    hostile = [
        threading.Thread(target=_silent, args=(process.port, cut)),
        threading.Thread(target=_dribble, args=(process.port, cut, "slow batch", True)),
    ]
    for thread in hostile:
        thread.start()
    log = LogRecorder()
    target = Target.parse(f"tcp://127.0.0.1:{process.port}")
    shipper = Shipper(target, Spool(tmp_path / "spool", 1 << 20, "never"), sensor=GOOD, log=log)
    shipper.start()
    shipped = []
    try:
        for seq in range(12):  # about 3.6 s, while the hostile peers hang on
            started = time.monotonic()
            shipper.submit(batch(seq))
            assert shipper.wait_drained(PROMPT_S), f"batch {seq} waited"
            shipped.append(("live", seq))
            time.sleep(max(0.0, 0.3 - (time.monotonic() - started)))
    finally:
        shipper.close()
    for thread in hostile:
        thread.join(15)
    assert 1.5 - 0.1 <= cut["silent"] <= 1.5 + 1.0, cut
    assert 2.5 - 0.1 <= cut["slow batch"] <= 2.5 + 1.5, cut
    timeouts = process.wait_for("collect.timeout", 2)
    assert len(timeouts) == 2
    assert process.terminate() == 0
    assert_only_good(process.db, shipped)


def test_a_hello_dribbled_byte_by_byte_is_cut_off_at_the_hello_timeout(
    collector_process: Callable[[str], CollectorProcess],
) -> None:
    """docs/wire-format.md: "A hello must arrive within collect.hello_timeout_s"."""
    process = collector_process("hello_timeout_s = 1.0\nframe_timeout_s = 4.0\nidle_timeout_s = 30")
    cut: dict[str, float] = {}
    _dribble(process.port, cut, "slow hello", after_hello=False)
    assert cut["slow hello"] <= 1.0 + 1.0, cut
    assert len(process.wait_for("collect.timeout")) == 1
    assert process.terminate() == 0


def test_sigterm_mid_stream_exits_0_with_every_acknowledged_batch_stored(
    collector_process: Callable[[str], CollectorProcess],
) -> None:
    process = collector_process("hello_timeout_s = 2\nframe_timeout_s = 2\nidle_timeout_s = 30")
    acked: list[int] = []
    sent: list[int] = []
    twenty = threading.Event()

    def stream() -> None:
        peer = Peer(process.port)
        peer.say_hello()
        for seq in range(100_000):
            try:
                peer.send(batch(seq))
                sent.append(seq)
                ack = peer.recv()
            except (ConnectionError, TimeoutError):
                break
            if ack is None:
                break
            assert ack["type"] == "ack" and ack["seq"] == seq and ack["stored"] is True
            acked.append(seq)
            if len(acked) == 20:
                twenty.set()
        peer.close()
        twenty.set()

    sensor = threading.Thread(target=stream)
    sensor.start()
    assert twenty.wait(20)
    assert process.terminate() == 0, process.log_path.read_text()[-2000:]
    sensor.join(10)
    assert not sensor.is_alive()
    assert len(acked) >= 20
    stored = keys_in(process.db, "batches")
    assert set(stored) >= {(GOOD, "live", seq) for seq in acked}
    assert set(stored) <= {(GOOD, "live", seq) for seq in sent}
    assert max(stored.values()) == 1
    assert process.events("collect.stopped")


def test_the_subprocess_logs_refusals_as_json(
    collector_process: Callable[[str], CollectorProcess],
) -> None:
    process = collector_process("max_frame_mb = 0.05")
    peer = Peer(process.port)
    peer.say_hello(HOSTILE)
    peer.send(b"\x00\x01\x00\x00")  # 65536 bytes: over 0.05 MiB
    assert peer.replies_until_closed() == ([{"type": "error", "reason": ANY}], True)
    peer.close()
    [rejected] = process.wait_for("collect.rejected")
    assert "exceeds" in rejected["reason"] and rejected["level"] == "warning"
    assert process.terminate() == 0
    assert keys_in(process.db, "batches") == Counter()


# --- limits on peers that have not said who they are ------------------------------------------


def test_a_hello_larger_than_a_hello_is_refused(tmp_path: Path) -> None:
    """Before its hello a peer is nobody: a frame header announcing 16 MB is refused at once."""
    running = RunningCollector(tmp_path / "big-hello.db")
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as peer:
            peer.sendall(struct.pack("!I", (1 << 16) + 1))
            reply = b""
            with contextlib.suppress(ConnectionError):
                while chunk := peer.recv(65536):  # an error frame, then the close
                    reply += chunk
        [rejected] = running.log.wait_for("collect.rejected")
        assert str(1 << 16) in rejected["reason"]
        assert FrameReader().feed(reply)[0]["type"] == "error"
    finally:
        running.stop()


def test_connections_past_the_cap_are_closed_counted_and_logged(tmp_path: Path) -> None:
    running = RunningCollector(tmp_path / "busy.db", max_connections=3)
    peers = []
    try:
        for _ in range(3):
            peers.append(socket.create_connection(("127.0.0.1", running.port), timeout=5))
        time.sleep(0.3)  # the three are being served
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as extra:
            extra.settimeout(5)
            with contextlib.suppress(ConnectionError):
                assert extra.recv(1) == b""
        assert len(running.log.wait_for("collect.busy")) == 1
        assert running.collector.counters["busy_refused"] == 1
    finally:
        for peer in peers:
            peer.close()
        running.stop()


def test_a_batch_the_collector_refuses_is_dropped_counted_and_the_rest_goes(
    tmp_path: Path,
) -> None:
    """A batch too large for this collector would otherwise be sent again for ever, and
    every batch behind it would wait."""
    running = RunningCollector(tmp_path / "refuse.db", max_frame=64 << 10)
    log = LogRecorder()
    spool = Spool(tmp_path / "spool", 16 << 20, "never")
    shipper = Shipper(
        Target.parse(f"tcp://127.0.0.1:{running.port}"), spool, sensor=GOOD, log=log,
        backoff_max_s=1,
    )  # fmt: skip
    big = batch(1, compression="none")
    big["stats"] = {"padding": "x" * (100 << 10)}  # past the collector's 64 KiB frames
    try:
        for message in (batch(0), big, batch(2)):
            shipper.submit(message)
        shipper.start()
        assert shipper.wait_drained(20), shipper.stats()
        stats = shipper.stats()
        assert (stats["rejected_batches"], stats["acked"]) == (1, 2)
        assert stats["rejected_records"] == big["count"]
        [event] = [c for c in log.calls if c[1] == "ship.batch_rejected"]
        assert event[2]["seq"] == 1
    finally:
        shipper.close()
        running.stop()
    assert_only_good(running.db, [("live", 0), ("live", 2)])
