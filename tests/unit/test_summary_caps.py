"""A busy window stays shippable: batches split by records, rollups capped with their totals."""

from __future__ import annotations

from typing import Any

import agent.summary as summary
from agent.summary import OTHER, Summariser, rollups
from agent.wire import decode_batch, frame, parse_message

NS = 1_000_000_000


def dns(i: int) -> dict[str, Any]:
    return {"type": "dns", "ts": 100.0 + i * 1e-6, "src": "10.0.0.1", "sport": 1024 + i % 60000,
            "dst": "10.0.0.53", "dport": 53, "proto": "udp", "flow": f"f{i}",
            "status": "unanswered", "qname": f"r{i}.example.com", "rcode": None}  # fmt: skip


def flow(i: int, octets: int) -> dict[str, Any]:
    return {"type": "flow", "ts": 100.0, "src": "10.0.0.1", "sport": 1024 + i % 60000,
            "dst": "192.0.2.1", "dport": 443, "proto": "tcp", "flow": f"g{i}", "end": "fin",
            "pkts_up": 1, "bytes_up": octets, "pkts_down": 1, "bytes_down": 0,
            "name": f"n{i}.example", "service": None, "category": None}  # fmt: skip


def test_a_window_of_many_records_becomes_several_batches(monkeypatch: Any) -> None:
    monkeypatch.setattr(summary, "MAX_BATCH_RECORDS", 1000)
    s = Summariser(sensor="s", stream="t", stats=lambda: {"caps": {"flows_evicted": 2}})
    s.tick(100 * NS)
    s.add([dns(i) for i in range(2500)])  # type: ignore[misc]
    batches = s.tick(111 * NS)
    assert [b["seq"] for b in batches] == [0, 1, 2]
    decoded = [decode_batch(parse_message(frame(b)[4:])) for b in batches]
    assert [len(b["records"]) for b in decoded] == [1000, 1000, 500]
    assert sum(b["count"] for b in decoded) == 2500
    assert {tuple(b["window"]) for b in decoded} == {(100.0, 110.0)}
    assert decoded[0]["rollups"]["qnames"] and decoded[1]["rollups"] == {}
    assert decoded[2]["stats"]["caps"] == {"flows_evicted": 2, "windows_split": 1}


def test_rollups_keep_the_largest_rows_and_sum_the_rest(monkeypatch: Any) -> None:
    monkeypatch.setattr(summary, "MAX_ROLLUP_ROWS", 10)
    records = [flow(i, 1000 + i) for i in range(25)] + [dns(i) for i in range(30)]
    merged: Any = summary.Counter()
    out = rollups(records, merged=merged)  # type: ignore[arg-type]
    names = out["names"]
    assert len(names) == 10 and names[-1][0] == OTHER
    assert [row[0] for row in names[:9]] == [f"n{i}.example" for i in range(24, 15, -1)]
    assert sum(row[3] for row in names) == sum(1000 + i for i in range(25))  # bytes kept
    assert sum(row[1] for row in names) == 25  # flows kept
    assert len(out["qnames"]) == 10 and sum(row[2] for row in out["qnames"]) == 30
    assert merged["rollup_rows_merged"] == 16 + 21
