"""Deflated record tables (schema 2): same records as plain tables, and bombs refused."""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
import pytest

from agent.wire import MAX_INFLATED, WireError, batch_message, decode_batch, frame, parse_message

RECORDS: list[dict[str, Any]] = [
    {
        "type": "dns",
        "ts": 1.5 + i,
        "src": "10.0.0.1",
        "dst": "2001:db8::1",
        "qname": f"n{i}.example",
    }
    for i in range(50)
] + [{"type": "flow", "ts": 3.0, "src": "10.0.0.2", "flow": "1:" + "A" * 27 + "=", "pkts_up": 3}]


def _batch(compression: str, records: list[dict[str, Any]] | None = RECORDS) -> dict[str, Any]:
    return batch_message(
        sensor="s",
        stream="t",
        seq=0,
        window=(0.0, 10.0),
        records=records,
        count=len(RECORDS),
        rollups={},
        stats={},
        compression=compression,
    )


def _over_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    return parse_message(frame(message)[4:])


def test_deflated_tables_decode_to_the_same_records_as_plain_ones() -> None:
    deflated, plain = _batch("zlib"), _batch("none")
    assert isinstance(deflated["tables"], bytes) and isinstance(plain["tables"], dict)
    assert len(frame(deflated)) < len(frame(plain)) / 2
    got = decode_batch(_over_the_wire(deflated))["records"]
    assert got == decode_batch(_over_the_wire(plain))["records"]
    assert [r["qname"] for r in got if r["type"] == "dns"] == [f"n{i}.example" for i in range(50)]


def test_rollups_only_sends_an_empty_map() -> None:
    assert _batch("zlib", records=None)["tables"] == {}


def _with_tables(tables: bytes, schema: int = 2) -> dict[str, Any]:
    message = _batch("none")
    message["tables"], message["schema"] = tables, schema
    return _over_the_wire(message)


@pytest.mark.parametrize(
    "tables",
    [
        b"",
        b"not deflate at all",
        zlib.compress(msgpack.packb({"dns": 1}))[:-3],  # cut short
        zlib.compress(b"\xc1"),  # inflates to bytes that are not msgpack
        zlib.compress(msgpack.packb([1, 2, 3])),  # msgpack, but not a map of tables
    ],
    ids=["empty", "garbage", "truncated", "not-msgpack", "not-a-map"],
)
def test_bad_deflated_tables_are_a_wire_error(tables: bytes) -> None:
    with pytest.raises(WireError):
        decode_batch(_with_tables(tables))


def test_a_deflate_bomb_stops_at_the_inflate_cap() -> None:
    bomb = zlib.compress(b"\x00" * (MAX_INFLATED + 1), 9)
    assert len(bomb) < MAX_INFLATED // 500
    with pytest.raises(WireError, match="inflate past"):
        decode_batch(_with_tables(bomb))


def test_schema_1_batches_cannot_carry_deflated_tables() -> None:
    with pytest.raises(WireError, match="schema 2"):
        decode_batch(_with_tables(zlib.compress(msgpack.packb({})), schema=1))


def test_a_schema_1_batch_is_still_read() -> None:
    message = _batch("none")
    message["schema"] = 1
    assert len(decode_batch(_over_the_wire(message))["records"]) == len(RECORDS)


def test_millions_of_empty_rows_are_refused_before_they_are_built() -> None:
    """40M one-byte rows deflate to 39 KB; the reader stops at the row cap, not at 3 GB."""
    import resource
    import time

    rows = b"\xdd" + (40_000_000).to_bytes(4, "big") + b"\x90" * 40_000_000
    packed = (
        b"\x81" + msgpack.packb("dns") + b"\x82" + msgpack.packb("fields")
        + msgpack.packb(["ts"]) + msgpack.packb("rows") + rows
    )  # fmt: skip
    bomb = zlib.compress(packed, 9)
    assert len(bomb) < 64_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(WireError, match="more than"):
        decode_batch(_with_tables(bomb))
    assert time.perf_counter() - started < 5
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300  # the inflated bytes, not a list per row


def test_a_row_that_does_not_fit_stops_the_read() -> None:
    packed = (
        b"\x81" + msgpack.packb("dns") + b"\x82" + msgpack.packb("fields")
        + msgpack.packb(["ts", "qname"]) + msgpack.packb("rows") + b"\xdc\x00\x03"
        + msgpack.packb([1.0, "a"]) + b"\x90" + msgpack.packb([2.0, "b"])
    )  # fmt: skip
    with pytest.raises(WireError, match="one value per field"):
        decode_batch(_with_tables(zlib.compress(packed)))


@pytest.mark.parametrize(
    "window",
    [[float("nan"), 1.0], [0.0, float("inf")], [0.0, 1e300], [-1.0, 1.0], [10.0, 5.0]],
    ids=["nan", "inf", "huge", "negative", "reversed"],
)
def test_a_window_must_be_two_times_in_order(window: list[float]) -> None:
    message = _batch("none")
    message["window"] = window
    with pytest.raises(WireError, match="window"):
        decode_batch(_over_the_wire(message))


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), 1e300, -5.0], ids=repr)
def test_a_record_time_must_be_a_time(ts: float) -> None:
    records = [{**RECORDS[0], "ts": ts}]
    message = _batch("zlib", records)
    with pytest.raises(WireError, match="ts must be a time"):
        decode_batch(_over_the_wire(message))


def test_rollup_counts_past_2_to_the_48_are_refused() -> None:
    message = _batch("none")
    message["rollups"] = {"categories": [["video", 1, 1, 1 << 48, 1, 1]]}
    with pytest.raises(WireError, match="categories"):
        decode_batch(_over_the_wire(message))
    message["rollups"] = {"categories": [["video", 1, 1, (1 << 48) - 1, 1, 1]]}
    assert decode_batch(_over_the_wire(message))["rollups"]["categories"]
