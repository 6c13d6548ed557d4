"""agent/store.py: decoded batches into SQLite, once each, all or nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from agent import store as store_module
from agent.store import COLUMNS, JSON_COLUMNS, Store
from agent.wire import batch_message, decode_batch
from tests.util import pcap_bytes, replay

DATA = Path(__file__).resolve().parents[1] / "data"
TABLES = ("batches", "sensors", "rollup_names", "rollup_qnames", "records", *COLUMNS)


@pytest.fixture(scope="module")
def real_records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """One record of each type from real captures (DNS, TLS, QUIC, flow, stats)."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    q = DNSQR(qname="example.org")
    frames = [
        (100.0, eth / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=1111, dport=53)
         / DNS(id=1, rd=1, qd=q)),
        (100.1, eth / IP(src="10.0.0.53", dst="10.0.0.1") / UDP(sport=53, dport=1111)
         / DNS(id=1, qr=1, qd=q, an=DNSRR(rrname="example.org", rdata="192.0.2.7"))),
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("store") / "dns.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in frames]))
    records: list[dict[str, Any]] = []
    for capture in (path, DATA / "tls13_curl_ipv6.pcap", DATA / "quic_aioquic_h3.pcap"):
        records += [dict(r) for r in replay([capture]) if r["type"] != "stats"]
    return records


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "tapsense.db")
    yield opened
    opened.close()


def decoded(
    seq: int,
    records: list[dict[str, Any]],
    *,
    sensor: str = "tap-01",
    stream: str = "live",
    window: tuple[float, float] = (100.0, 110.0),
    stats: dict[str, Any] | None = None,
    rollups: dict[str, Any] | None = None,
    count: int | None = None,
) -> dict[str, Any]:
    """A batch as the collector has it after decode_batch."""
    message = batch_message(
        sensor=sensor,
        stream=stream,
        seq=seq,
        window=window,
        records=records,
        count=len(records) if count is None else count,
        rollups=rollups if rollups is not None else {"names": [], "qnames": []},
        stats=stats if stats is not None else {"type": "stats", "ts": window[1], "packets": 9},
    )
    return decode_batch(message)


def rows(store: Store, table: str) -> list[dict[str, Any]]:
    cursor = store.db.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def counts(store: Store) -> dict[str, int]:
    return {t: store.db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in TABLES}


def test_the_store_uses_wal_and_creates_every_table(store: Store) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert set(counts(store)) == set(TABLES)
    assert all(n == 0 for n in counts(store).values())


def test_each_table_gets_its_columns_and_the_json_record(
    store: Store, real_records: list[dict[str, Any]]
) -> None:
    batch = decoded(0, real_records)
    assert {r["type"] for r in batch["records"]} == {"dns", "tls", "quic", "flow"}
    assert store.write_batch(batch, "10.0.0.9:5000") is True
    for kind in ("dns", "tls", "quic", "flow"):
        want = [r for r in batch["records"] if r["type"] == kind]
        got = rows(store, kind)
        assert len(got) == len(want), kind
        for row, record in zip(got, want, strict=True):
            assert (row["sensor"], row["stream"], row["seq"]) == ("tap-01", "live", 0)
            assert json.loads(row["record"]) == record
            for column in COLUMNS[kind]:
                value = record.get(column)
                expected = json.dumps(value) if isinstance(value, list | dict) else value
                assert row[column] == expected, (kind, column)
            for column in JSON_COLUMNS.get(kind, ()):
                assert json.loads(row[column]) == record.get(column), (kind, column)
    dns = rows(store, "dns")[0]
    assert (dns["qname"], dns["rcode"], dns["src"]) == ("example.org", 0, "10.0.0.1")
    assert json.loads(dns["answers"]) == ["192.0.2.7"]
    assert "fd77::1" in {row["src"] for row in rows(store, "flow")}


def test_the_batch_row_stats_and_rollups(
    store: Store, monkeypatch: pytest.MonkeyPatch, real_records: list[dict[str, Any]]
) -> None:
    monkeypatch.setattr(store_module.time, "time", lambda: 5000.0)
    stats = {"type": "stats", "ts": 109.5, "packets": 12, "bytes": 3400, "kernel_drops": 2,
             "flows_active": 3, "caps": {"flows_evicted": 1}}  # fmt: skip
    rollups = {"names": [["a.test", 2, 3, 400, 5, 6000], [None, 1, 1, 60, 1, 70]],
               "qnames": [["a.test", 0, 4], ["nx.test", 3, 1], ["lost.test", None, 2]]}  # fmt: skip
    store.write_batch(decoded(3, real_records, stats=stats, rollups=rollups, count=99), "peer:1")
    [batch] = rows(store, "batches")
    assert batch == {"sensor": "tap-01", "stream": "live", "seq": 3, "schema": 2,
                     "window_start": 100.0, "window_end": 110.0, "received": 5000.0,
                     "records": 99, "peer": "peer:1"}  # fmt: skip
    [row] = rows(store, "stats")
    assert (row["ts"], row["packets"], row["bytes"], row["kernel_drops"], row["flows_active"]) == (
        109.5,
        12,
        3400,
        2,
        3,
    )
    assert json.loads(row["record"]) == stats
    names = [[r[c] for c in ("name", "flows", "pkts_up", "bytes_up", "pkts_down", "bytes_down")]
             for r in rows(store, "rollup_names")]  # fmt: skip
    assert names == rollups["names"]
    qnames = [[r["qname"], r["rcode"], r["queries"]] for r in rows(store, "rollup_qnames")]
    assert qnames == rollups["qnames"]
    assert {(r["window_start"], r["window_end"]) for r in rows(store, "rollup_qnames")} == {
        (100.0, 110.0)
    }


def test_a_batch_without_stats_writes_no_stats_row(store: Store) -> None:
    store.write_batch(decoded(0, [], stats={}))
    assert counts(store)["stats"] == 0
    assert counts(store)["batches"] == 1


def test_a_batch_is_stored_once(store: Store, real_records: list[dict[str, Any]]) -> None:
    assert store.write_batch(decoded(0, real_records), "first:1") is True
    before = counts(store)
    sensors = rows(store, "sensors")
    assert store.write_batch(decoded(0, real_records), "second:2") is False
    assert store.write_batch(decoded(0, real_records[:1], window=(200.0, 210.0))) is False
    assert counts(store) == before
    assert rows(store, "sensors") == sensors
    assert rows(store, "batches")[0]["peer"] == "first:1"
    assert store.write_batch(decoded(0, real_records, stream="other")) is True
    assert store.write_batch(decoded(0, real_records, sensor="tap-02")) is True
    assert counts(store)["batches"] == 3


def test_a_batch_sqlite_cannot_store_leaves_nothing(
    store: Store, real_records: list[dict[str, Any]]
) -> None:
    store.write_batch(decoded(0, real_records[:2]))
    before = counts(store)
    sensors = rows(store, "sensors")
    # beyond SQLite's int: decode_batch refuses it, so put it in after decoding, as a
    # decoder bug would (the store must still leave nothing behind)
    poisoned = decoded(1, real_records)
    poisoned["records"] = [*poisoned["records"], {**real_records[-1], "sport": 2**64 - 1}]
    with pytest.raises((OverflowError, sqlite3.Error)):
        store.write_batch(poisoned)
    assert counts(store) == before
    assert rows(store, "sensors") == sensors
    assert not store.db.in_transaction
    assert store.write_batch(decoded(1, real_records)) is True  # the same key, now good
    assert counts(store)["batches"] == 2


@pytest.mark.parametrize(
    ("where", "value"),
    [("stats", {"packets": 2**63}), ("rollup", 2**64 - 1), ("record", 2**63), ("count", 2**63)],
)
def test_values_out_of_sqlite_range_anywhere_leave_nothing(
    store: Store, real_records: list[dict[str, Any]], where: str, value: Any
) -> None:
    batch = decoded(0, real_records)
    if where == "stats":
        batch["stats"] = {"type": "stats", "ts": 1.0, **value}
    elif where == "rollup":
        batch["rollups"] = {"names": [["a.test", 1, 1, value, 1, 1]]}
    elif where == "record":
        batch["records"] = [*batch["records"], {"type": "x-unknown", "ts": value}]
    else:
        batch["count"] = value
    with pytest.raises((OverflowError, sqlite3.Error)):
        store.write_batch(batch)
    assert all(n == 0 for n in counts(store).values())


def test_the_sensors_table_follows_each_sensor(
    store: Store, monkeypatch: pytest.MonkeyPatch, real_records: list[dict[str, Any]]
) -> None:
    clock = iter([1000.0, 2000.0, 3000.0, 4000.0])
    monkeypatch.setattr(store_module.time, "time", lambda: next(clock))
    new = {"type": "stats", "ts": 119.0, "packets": 20}
    old = {"type": "stats", "ts": 99.0, "packets": 10}
    store.write_batch(decoded(1, real_records[:3], window=(110.0, 120.0), stats=new), "a:1")
    store.write_batch(decoded(0, real_records[:2], window=(90.0, 100.0), stats=old), "a:2")
    store.write_batch(decoded(0, real_records[:1], sensor="tap-02"), "b:1")
    store.write_batch(decoded(0, real_records[:1], window=(90.0, 100.0)), "a:3")  # duplicate
    by_sensor = {row["sensor"]: row for row in rows(store, "sensors")}
    assert set(by_sensor) == {"tap-01", "tap-02"}
    one = by_sensor["tap-01"]
    assert (one["first_seen"], one["last_seen"], one["last_window_end"]) == (1000.0, 2000.0, 120.0)
    assert (one["peer"], one["batches"], one["records"]) == ("a:2", 2, 5)
    assert json.loads(one["stats"]) == new  # the newest window's stats, not the last to arrive
    two = by_sensor["tap-02"]
    assert (two["first_seen"], two["batches"], two["records"]) == (3000.0, 1, 1)


def test_unknown_record_types_go_to_the_records_table(store: Store) -> None:
    odd = [
        {"type": "smb", "ts": 100.5, "share": "\\\\srv\\c$", "nested": {"a": [1, None]}},
        {"type": "smb", "ts": 101.0, "share": None, "nested": None},
        {"type": "ssh", "ts": 102, "banner": "SSH-2.0-OpenSSH_9.6"},
    ]
    known = [{"type": "dns", "ts": 100.0, "qname": "a.test"}]
    store.write_batch(decoded(0, odd + known))
    got = rows(store, "records")
    assert [(r["type"], r["ts"]) for r in got] == [("smb", 100.5), ("smb", 101.0), ("ssh", 102)]
    assert [json.loads(r["record"]) for r in got] == odd
    assert {(r["sensor"], r["stream"], r["seq"]) for r in got} == {("tap-01", "live", 0)}
    assert counts(store)["dns"] == 1


def test_a_store_reopened_keeps_what_it_had(
    tmp_path: Path, real_records: list[dict[str, Any]]
) -> None:
    first = Store(tmp_path / "t.db")
    first.write_batch(decoded(0, real_records))
    first.close()
    again = Store(tmp_path / "t.db")
    try:
        assert counts(again)["batches"] == 1
        assert again.write_batch(decoded(0, real_records)) is False
    finally:
        again.close()
