"""agent/report.py and `tapsense report`: what the collector stored, as tables or JSON."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import store as store_module
from agent.report import ReportError, build, open_store, parse_since, render
from agent.store import Store
from agent.wire import batch_message, decode_batch

ROOT = Path(__file__).resolve().parents[2]
NOW = 10_000.0


FOUR = ("dns", "tls", "quic", "flow")


def record(kind: str, ts: float) -> dict[str, Any]:
    base = {"type": kind, "ts": ts, "src": "10.0.0.1", "sport": 40000, "dst": "10.0.0.2",
            "dport": 443, "proto": "tcp" if kind != "quic" else "udp"}  # fmt: skip
    if kind == "flow":
        base |= {"ts_end": ts + 1, "pkts_up": 2, "bytes_up": 200, "pkts_down": 3,
                 "bytes_down": 3000, "end": "fin", "name": None}  # fmt: skip
    return base


def four(counts: dict[str, int]) -> dict[str, int]:
    """The counts of the four record types every report has (others may follow)."""
    assert set(counts) >= set(FOUR)
    return {kind: counts[kind] for kind in FOUR}


def write(store: Store, sensor: str, seq: int, window: tuple[float, float], *,
          records: list[dict[str, Any]] | None, count: int, names: list[list[Any]],
          qnames: list[list[Any]], stats: dict[str, Any], peer: str) -> None:  # fmt: skip
    message = batch_message(
        sensor=sensor,
        stream="live",
        seq=seq,
        window=window,
        records=records,
        count=count,
        rollups={"names": names, "qnames": qnames},
        stats=stats,
    )
    assert store.write_batch(decode_batch(message), peer)


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two sensors: tap-01 ships records in two windows, tap-02 ships rollups only."""
    path = tmp_path / "tapsense.db"
    store = Store(path)
    received = iter([1012.0, 2011.0, 2015.0])
    monkeypatch.setattr(store_module.time, "time", lambda: next(received))
    write(
        store,
        "tap-01",
        0,
        (1000.0, 1010.0),
        records=[
            record("dns", 1001),
            record("dns", 1002),
            record("tls", 1003),
            record("flow", 1004),
            record("flow", 1005),
        ],
        count=5,
        names=[
            ["a.test", 2, 10, 1000, 10, 9000],
            ["b.test", 5, 5, 500, 5, 500],
            [None, 3, 1, 1, 1, 1],
        ],
        qnames=[
            ["a.test", 0, 3],
            ["nx.test", 3, 2],
            ["b.test", 0, 1],
            ["lost.test", None, 4],
            [None, None, 9],
        ],
        stats={"type": "stats", "ts": 1009.0, "packets": 100},
        peer="10.0.0.7:4000",
    )
    write(
        store,
        "tap-01",
        1,
        (2000.0, 2010.0),
        records=[record("quic", 2001), record("flow", 2002), record("dns", 2003)],
        count=3,
        names=[["a.test", 1, 1, 100, 1, 100], ["c.test", 1, 1, 50_000, 1, 50_000]],
        qnames=[["nx.test", 3, 5], ["c.test", 0, 1]],
        stats={
            "type": "stats",
            "ts": 2009.0,
            "packets": 500,
            "kernel_drops": 7,
            "caps": {"flows_evicted": 1, "dns_tcp_streams": 2, "note": "x"},
            "shipping": {"spool_batches": 3, "dropped_batches": 4},
        },
        peer="10.0.0.7:4001",
    )
    write(store, "tap-02", 0, (2000.0, 2010.0), records=None, count=10,
          names=[["b.test", 10, 1, 1, 1, 1]], qnames=[["b.test", 0, 7]], stats={},
          peer="10.0.0.8:5000")  # fmt: skip
    store.close()
    return path


@pytest.fixture
def db(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_store(db_path)
    yield conn
    conn.close()


def test_record_counts_come_from_the_record_tables(db: sqlite3.Connection) -> None:
    report = build(db, now=NOW)
    assert four(report["records"]) == {"dns": 3, "tls": 1, "quic": 1, "flow": 3}
    assert report["since"] is None


def test_top_names_by_bytes_and_by_flows(db: sqlite3.Connection) -> None:
    report = build(db, now=NOW)
    assert report["top_names_by_bytes"] == [
        {"name": "c.test", "flows": 1, "bytes": 100_000, "packets": 2},
        {"name": "a.test", "flows": 3, "bytes": 10_200, "packets": 22},
        {"name": "b.test", "flows": 15, "bytes": 1_002, "packets": 12},
    ]
    assert [(r["name"], r["flows"]) for r in report["top_names_by_flows"]] == [
        ("b.test", 15),
        ("a.test", 3),
        ("c.test", 1),
    ]


def test_top_qnames_and_nxdomain(db: sqlite3.Connection) -> None:
    report = build(db, now=NOW)
    assert report["top_qnames"] == [
        {"qname": "b.test", "queries": 8},
        {"qname": "nx.test", "queries": 7},
        {"qname": "lost.test", "queries": 4},
        {"qname": "a.test", "queries": 3},
        {"qname": "c.test", "queries": 1},
    ]
    assert report["top_nxdomain"] == [{"qname": "nx.test", "queries": 7}]


def test_per_sensor_health(db: sqlite3.Connection) -> None:
    one, two = build(db, now=NOW)["sensors"]
    assert one == {
        "sensor": "tap-01",
        "peer": "10.0.0.7:4001",
        "last_seen": 2011.0,
        "seen_ago_s": NOW - 2011.0,
        "streams": 1,
        "batches": 2,
        "records": 8,
        "packets": 500,
        "kernel_drops": 7,
        "cap_drops": 3,
        "spool_batches": 3,
        "spool_dropped_batches": 4,
        "lag_s": 1.0,
    }
    assert two["sensor"] == "tap-02" and two["batches"] == 1
    assert (two["packets"], two["kernel_drops"], two["cap_drops"], two["spool_batches"]) == (
        0,
        0,
        0,
        0,
    )
    assert (two["lag_s"], two["seen_ago_s"]) == (5.0, NOW - 2015.0)


def test_the_workers_of_a_sensor_add_up(tmp_path: Path) -> None:
    """Each worker ships a stream of its own: its drops must not hide behind another's."""
    store = Store(tmp_path / "w.db")
    for seq, (stream, packets, drops) in enumerate(
        [("live-0.aa", 1000, 50), ("live-1.bb", 900, 0), ("live-0.aa", 1100, 60)]
    ):
        message = batch_message(
            sensor="tap", stream=stream, seq=seq, window=(100.0 + seq, 110.0 + seq),
            records=[], count=0, rollups={},
            stats={"packets": packets, "kernel_drops": drops, "caps": {"flows_evicted": 1}},
        )  # fmt: skip
        assert store.write_batch(decode_batch(message), "p")
    store.close()
    conn = open_store(tmp_path / "w.db")
    try:
        [sensor] = build(conn, now=NOW)["sensors"]
    finally:
        conn.close()
    assert (sensor["streams"], sensor["packets"], sensor["kernel_drops"]) == (2, 2000, 60)
    assert sensor["cap_drops"] == 2


def test_since_keeps_what_is_recent(db: sqlite3.Connection) -> None:
    report = build(db, since=1500.0, now=NOW)
    assert report["since"] == 1500.0
    assert four(report["records"]) == {"dns": 1, "tls": 0, "quic": 1, "flow": 1}
    assert [(r["name"], r["bytes"]) for r in report["top_names_by_bytes"]] == [
        ("c.test", 100_000),
        ("a.test", 200),
        ("b.test", 2),
    ]
    assert report["top_qnames"] == [
        {"qname": "b.test", "queries": 7},
        {"qname": "nx.test", "queries": 5},
        {"qname": "c.test", "queries": 1},
    ]
    assert report["top_nxdomain"] == [{"qname": "nx.test", "queries": 5}]
    assert len(report["sensors"]) == 2


def test_since_after_everything_leaves_empty_tables(db: sqlite3.Connection) -> None:
    report = build(db, since=5000.0, now=NOW)
    assert four(report["records"]) == {"dns": 0, "tls": 0, "quic": 0, "flow": 0}
    assert report["top_names_by_bytes"] == report["top_qnames"] == report["top_nxdomain"] == []


def test_the_top_lists_stop_at_ten(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    names = [[f"n{i:02d}.test", i, 1, i * 100, 1, 0] for i in range(15)]
    write(store, "tap", 0, (0.0, 10.0), records=[], count=0, names=names,
          qnames=[[f"q{i:02d}.test", 3, i + 1] for i in range(15)], stats={}, peer="p")  # fmt: skip
    store.close()
    conn = open_store(tmp_path / "t.db")
    report = build(conn, now=NOW)
    conn.close()
    assert [r["name"] for r in report["top_names_by_bytes"]] == [
        f"n{i:02d}.test" for i in range(14, 4, -1)
    ]
    assert len(report["top_qnames"]) == len(report["top_nxdomain"]) == 10


def test_records_with_missing_counts_do_not_break_the_report(tmp_path: Path) -> None:
    """The collector stores any plain record: a flow without byte counts (another sensor
    version, a hostile one) must not make every later report fail."""
    store = Store(tmp_path / "t.db")
    bare = {"type": "flow", "ts": 5.0, "src": "10.0.0.9", "name": "x.test", "bytes_up": None}
    write(store, "tap", 0, (0.0, 10.0), records=[bare, record("dns", 6.0)], count=2,
          names=[], qnames=[], stats={}, peer="p")  # fmt: skip
    store.close()
    conn = open_store(tmp_path / "t.db")
    try:
        report = build(conn, now=NOW)
    finally:
        conn.close()
    assert four(report["records"]) == {"dns": 1, "tls": 0, "quic": 0, "flow": 1}
    render(report)


# --- parse_since ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2h", NOW - 7200),
        ("1.5h", NOW - 5400),
        ("30m", NOW - 1800),
        ("45s", NOW - 45),
        ("7d", NOW - 7 * 86400),
        (" 2h ", NOW - 7200),
        ("2024-06-01T00:00:00Z", 1_717_200_000.0),
        ("2024-06-01T02:00:00+02:00", 1_717_200_000.0),
        ("2024-06-01 00:00:00+00:00", 1_717_200_000.0),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2 hours", "2w", "-", "2024-06-01T00:00:00"])
def test_parse_since_refuses_with_one_line(text: str) -> None:
    with pytest.raises(ReportError) as caught:
        parse_since(text, now=NOW)
    assert "--since" in str(caught.value) and "\n" not in str(caught.value)


def test_parse_since_wants_a_time_zone() -> None:
    with pytest.raises(ReportError, match="time zone"):
        parse_since("2024-06-01T00:00:00", now=NOW)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_parse_since_refuses_what_is_no_time(text: str) -> None:
    with pytest.raises(ReportError):
        parse_since(text, now=NOW)


# --- render ------------------------------------------------------------------------------------


def test_render_shows_every_section(db: sqlite3.Connection) -> None:
    text = render(build(db, now=NOW))
    lines = text.splitlines()
    assert lines[0].startswith("records: dns 3, tls 1, quic 1, flow 3")
    for title in ("top names by bytes", "top names by flows", "top DNS names",
                  "top NXDOMAIN names", "sensors"):  # fmt: skip
        assert title in lines
    section = lines[lines.index("top names by bytes") + 1 :]
    assert section[0].split() == ["name", "bytes", "flows"]
    assert section[1].split() == ["c.test", "100,000", "1"]
    sensors = lines[lines.index("sensors") + 1 :]
    assert sensors[0].split()[:3] == ["sensor", "seen_ago_s", "streams"]
    assert sensors[1].split()[0] == "tap-01"
    assert text.endswith("\n")


def test_render_of_an_empty_store(tmp_path: Path) -> None:
    Store(tmp_path / "empty.db").close()
    conn = open_store(tmp_path / "empty.db")
    text = render(build(conn, now=NOW))
    conn.close()
    assert text.splitlines()[0].startswith("records: dns 0, tls 0, quic 0, flow 0")
    assert text.count("(none)") >= 5


# --- open_store and the command line ----------------------------------------------------------


def tapsense(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tapsense: error:"), done.stderr
    for needle in needles:
        assert needle in lines[0]


def test_cli_report_json(db_path: Path) -> None:
    done = tapsense("report", "--db", str(db_path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert four(report["records"]) == {"dns": 3, "tls": 1, "quic": 1, "flow": 3}
    assert set(report) >= {"since", "top_names_by_bytes", "top_qnames", "top_nxdomain", "sensors"}
    assert [s["sensor"] for s in report["sensors"]] == ["tap-01", "tap-02"]


def test_cli_report_tables_and_since(db_path: Path) -> None:
    done = tapsense("report", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("records: dns 3, tls 1, quic 1, flow 3")
    done = tapsense("report", "--db", str(db_path), "--json", "--since", "1500")
    assert four(json.loads(done.stdout)["records"]) == {"dns": 1, "tls": 0, "quic": 1, "flow": 1}


def test_cli_report_of_a_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    assert_one_line_error(tapsense("report", "--db", str(missing), "--json"), str(missing))
    assert not missing.exists()  # a report creates nothing


@pytest.mark.parametrize("kind", ["empty sqlite", "other sqlite", "text", "empty file", "folder"])
def test_cli_report_of_something_else_than_a_tapsense_database(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "other.db"
    if kind == "empty sqlite":
        sqlite3.connect(str(path)).close()
    elif kind == "other sqlite":
        with sqlite3.connect(str(path)) as conn:
            conn.execute("CREATE TABLE people (name TEXT)")
    elif kind == "text":
        path.write_text("name,age\nada,36\n" * 50)
    elif kind == "empty file":
        path.write_bytes(b"")
    else:
        path.mkdir()
    assert_one_line_error(tapsense("report", "--db", str(path), "--json"), str(path))


def test_cli_report_with_a_bad_since(db_path: Path) -> None:
    assert_one_line_error(
        tapsense("report", "--db", str(db_path), "--since", "last tuesday"), "--since"
    )


@pytest.mark.parametrize("folder", ["with#hash", "with?question", "with%25percent"])
def test_a_database_whose_path_has_uri_characters(
    db_path: Path, tmp_path: Path, folder: str
) -> None:
    """open_store builds a file: URI; the path's own characters must not become URI syntax."""
    other = tmp_path / folder
    other.mkdir()
    target = other / "tapsense.db"
    target.write_bytes(db_path.read_bytes())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    conn = open_store(target)
    try:
        assert build(conn, now=NOW)["records"]["dns"] == 3
    finally:
        conn.close()
    wal = {f"{target.name}-wal", f"{target.name}-shm"}  # SQLite's own, beside the database
    after = sorted(p.name for p in tmp_path.rglob("*") if p.name not in wal)
    assert after == before  # nothing created on the side (such as an empty "with" file)
