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
