"""The wire format between sensors and the collector: frames, messages, compact batches.

Sans-IO: bytes in, messages out, and back. A frame is a 4-byte big-endian length and a
msgpack map (docs/wire-format.md). A batch carries its records column-wise, one table per
record type with the field names once, and packs addresses and Community IDs as bytes;
`decode_batch` turns it back into the records of agent/record.py, for every schema version
this reader knows (SCHEMA_VERSIONS).
"""

from __future__ import annotations

import base64
import socket
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

SCHEMA = 2  # written by this version
SCHEMA_VERSIONS = (1, 2)  # read by this version
MAX_FRAME = 16 << 20  # bytes; a larger length prefix is an error
MAX_INFLATED = 64 << 20  # bytes a compressed table map may inflate to (a zip bomb stops here)
COMPRESSIONS = ("zlib", "none")
_LENGTH = struct.Struct("!I")

ADDRESS_FIELDS = frozenset(("src", "dst"))
FLOW_ID_FIELD = "flow"


class WireError(Exception):
    """A frame or message that does not follow the format (the peer gets closed)."""


def frame(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body)} bytes exceeds {MAX_FRAME}")
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Cuts frames out of a byte stream; feed() what arrives, then take messages."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Every whole message now in the buffer; raises WireError on a bad frame."""
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (length,) = _LENGTH.unpack_from(self._buf)
            if length > self.max_frame:
                raise WireError(f"frame of {length} bytes exceeds {self.max_frame}")
            if len(self._buf) < 4 + length:
                break
            body = bytes(self._buf[4 : 4 + length])
            del self._buf[: 4 + length]
            out.append(parse_message(body))
        return out


# Object counts msgpack may build from one message: an empty list costs a byte on the wire
# and some 56 in memory, so these bound what a hostile frame can make the reader allocate.
UNPACK_LIMITS = {
    "max_str_len": 1 << 20,
    "max_bin_len": MAX_FRAME,
    "max_array_len": 1 << 20,
    "max_map_len": 1 << 16,
    "max_ext_len": 0,
}
MAX_ROWS = 1 << 20  # records in one batch
MAX_TS = float(1 << 40)  # seconds since the epoch: year 36812; anything later is no time
MAX_COUNT = 1 << 48  # packets, bytes, flows or queries in one rollup row


def _unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, **UNPACK_LIMITS)
    except (
        ValueError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        UnicodeDecodeError,
        TypeError,
    ) as exc:
        raise WireError(f"not msgpack: {exc}") from None


def parse_message(body: bytes) -> dict[str, Any]:
    message = _unpack(body)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise WireError("a message is a map with a string 'type'")
    return message


# --- batches ------------------------------------------------------------------------------


def _pack_address(text: str) -> bytes:
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_pton(family, text)


def _unpack_address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _pack_flow_id(text: str) -> bytes:
    return base64.b64decode(text[2:]) if text.startswith("1:") else text.encode()


def _unpack_flow_id(raw: bytes) -> str:
    return "1:" + base64.b64encode(raw).decode("ascii") if len(raw) == 20 else raw.decode()


def encode_records(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Records as tables: {type: {"fields": [...], "rows": [[...], ...]}}."""
    tables: dict[str, dict[str, Any]] = {}
    shapes: dict[str, set[tuple[str, ...]]] = {}  # key orders seen per type
    for record in records:
        kind = record["type"]
        table = tables.get(kind)
        keys = tuple(record)
        if table is None:
            fields = [f for f in keys if f != "type"]
            table = tables[kind] = {"fields": fields, "rows": []}
            shapes[kind] = {keys}
        fields = table["fields"]
        if keys not in shapes[kind]:  # a record with other fields: widen the table
            shapes[kind].add(keys)
            for f in keys:
                if f != "type" and f not in fields:
                    fields.append(f)
        row = []
        for f in fields:
            value = record.get(f)
            if f in ADDRESS_FIELDS and isinstance(value, str):
                value = _pack_address(value)
            elif f == FLOW_ID_FIELD and isinstance(value, str):
                value = _pack_flow_id(value)
            row.append(value)
        table["rows"].append(row)
    for table in tables.values():  # rows made before a table widened get the missing None
        width = len(table["fields"])
        for row in table["rows"]:
            row.extend([None] * (width - len(row)))
    return tables


def decode_records(tables: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of encode_records' tables, as agent/record.py describes them."""
    if not isinstance(tables, dict):
        raise WireError("tables must be a map")
    records = []
    for kind, table in tables.items():
        if not isinstance(kind, str) or not isinstance(table, dict):
            raise WireError("a table is a map under its record type")
        fields, rows = table.get("fields"), table.get("rows")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise WireError(f"{kind}: fields must be a list of names")
        if "type" in fields:  # the table's name is the records' type; a field cannot change it
            raise WireError(f"{kind}: a field named type")
        if not isinstance(rows, list):
            raise WireError(f"{kind}: rows must be a list")
        for row in rows:
            if not isinstance(row, list) or len(row) != len(fields):
                raise WireError(f"{kind}: a row must have one value per field")
            record: dict[str, Any] = {"type": kind}
            for f, value in zip(fields, row, strict=True):
                try:
                    if f in ADDRESS_FIELDS and isinstance(value, bytes):
                        value = _unpack_address(value)
                    elif f == FLOW_ID_FIELD and isinstance(value, bytes):
                        value = _unpack_flow_id(value)
                except (ValueError, UnicodeDecodeError):
                    raise WireError(f"{kind}.{f}: bad packed value") from None
                if not _plain(value):
                    raise WireError(f"{kind}.{f}: not a plain value")
                record[f] = value
            if not _time(record.get("ts")):
                raise WireError(f"{kind}: ts must be a time (seconds since the epoch)")
            records.append(record)
    return records


_INT64 = (-(1 << 63), 1 << 63)  # what SQLite stores; msgpack also carries up to 2**64 - 1


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON-like: None, bool, number (integers in 64-bit signed range), text, and lists or
    string-keyed maps of them."""
    if value is None or isinstance(value, bool | float | str):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value < _INT64[1]
    if depth >= 8:
        return False
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def batch_message(
    *,
    sensor: str,
    stream: str,
    seq: int,
    window: tuple[float, float],
    records: Sequence[Mapping[str, Any]] | None,
    count: int,
    rollups: dict[str, Any],
    stats: dict[str, Any],
    compression: str = "zlib",
) -> dict[str, Any]:
    """A batch (schema version SCHEMA); records None ships rollups only. With compression
    "zlib" the tables travel deflated (schema 2): records repeat names, fingerprints and
    addresses across rows, which deflate removes several times better than columns alone."""
    tables: dict[str, Any] | bytes = encode_records(records) if records is not None else {}
    if compression == "zlib" and tables:
        tables = zlib.compress(msgpack.packb(tables, use_bin_type=True), 6)
    return {
        "type": "batch",
        "schema": SCHEMA,
        "sensor": sensor,
        "stream": stream,
        "seq": seq,
        "window": [window[0], window[1]],
        "tables": tables,
        "rollups": rollups,
        "stats": stats,
        "count": count,
    }


_BATCH_TYPES: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "sensor": str,
    "stream": str,
    "seq": int,
    "window": list,
    "tables": (dict, bytes),
    "rollups": dict,
    "stats": dict,
    "count": int,
}


def decode_batch(message: dict[str, Any]) -> dict[str, Any]:
    """Checks a batch message and returns it with its records decoded under "records".

    Accepts every schema version in SCHEMA_VERSIONS; raises WireError on anything else.
    """
    for key, kind in _BATCH_TYPES.items():
        if not isinstance(message.get(key), kind) or isinstance(message.get(key), bool):
            raise WireError(f"batch: {key} missing or not {getattr(kind, '__name__', kind)}")
    if message["schema"] not in SCHEMA_VERSIONS:
        raise WireError(f"batch: schema version {message['schema']} is not supported")
    if not 0 <= message["seq"] < 1 << 63:
        raise WireError("batch: seq out of range")
    if not 0 <= message["count"] < 1 << 63:
        raise WireError("batch: count out of range")
    window = message["window"]
    if len(window) != 2 or not all(_time(w) for w in window) or window[0] > window[1]:
        raise WireError("batch: window must be [start, end], times in order")
    if not message["sensor"] or len(message["sensor"]) > 200 or len(message["stream"]) > 200:
        raise WireError("batch: sensor and stream must be 1 to 200 characters")
    rollups = message["rollups"]
    for name, shape in _ROLLUP_SHAPES.items():
        rows = rollups.get(name, [])
        if not isinstance(rows, list) or not all(_row_fits(row, shape) for row in rows):
            raise WireError(f"batch: rollups.{name} rows do not fit {name}")
    if not _plain(message["stats"]):
        raise WireError("batch: stats must be plain values")
    tables = message["tables"]
    if isinstance(tables, bytes):
        if message["schema"] < 2:
            raise WireError("batch: compressed tables need schema 2")
        tables = _inflate_tables(tables)
    out = dict(message)
    out["tables"] = tables
    out["records"] = decode_records(tables)
    return out


def _time(value: Any) -> bool:
    """A number of seconds since the epoch that SQLite and datetime can take."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < MAX_TS
    )  # NaN fails both comparisons


def _inflate_tables(deflated: bytes) -> Any:
    inflater = zlib.decompressobj()
    try:
        packed = inflater.decompress(deflated, MAX_INFLATED)
    except zlib.error as exc:
        raise WireError(f"batch: tables do not inflate: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise WireError(f"batch: tables inflate past {MAX_INFLATED} bytes or are cut short")
    if inflater.unused_data:
        raise WireError("batch: bytes after the deflated tables")
    return _unpack_tables(packed)


def _unpack_tables(packed: bytes) -> dict[str, Any]:
    """Inflated tables, unpacked row by row: a row that does not fit its table stops the
    read at once, so a small deflated frame of millions of empty rows cannot make the
    reader build them all (deflate shrinks repeats a thousandfold)."""
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=True, max_buffer_size=len(packed) + 1, **UNPACK_LIMITS
    )
    unpacker.feed(packed)
    tables: dict[str, Any] = {}
    rows_left = MAX_ROWS
    try:
        for _ in range(unpacker.read_map_header()):
            kind = unpacker.unpack()
            if not isinstance(kind, str) or unpacker.read_map_header() != 2:
                raise WireError("batch: a table is a map of fields and rows")
            if unpacker.unpack() != "fields":
                raise WireError("batch: a table's fields come first")
            fields = unpacker.unpack()
            if not isinstance(fields, list) or unpacker.unpack() != "rows":
                raise WireError("batch: a table is a map of fields and rows")
            count = unpacker.read_array_header()
            rows_left -= count
            if rows_left < 0:
                raise WireError(f"batch: more than {MAX_ROWS} records")
            rows = []
            for _ in range(count):
                row = unpacker.unpack()
                if not isinstance(row, list) or len(row) != len(fields):
                    raise WireError(f"{kind}: a row must have one value per field")
                rows.append(row)
            tables[kind] = {"fields": fields, "rows": rows}
        if unpacker.tell() != len(packed):
            raise WireError("batch: bytes after the tables")
    except (ValueError, msgpack.UnpackException, msgpack.ExtraData, TypeError) as exc:
        raise WireError(f"batch: inflated tables are not msgpack tables: {exc}") from None
    return tables


_NUMBER = (int, float)
_TEXT_OR_NULL = (str, type(None))
_TRAFFIC = ((int,),) * 5  # flows, pkts_up, bytes_up, pkts_down, bytes_down
_ROLLUP_SHAPES: dict[str, tuple[tuple[type, ...], ...]] = {
    "names": (_TEXT_OR_NULL, *_TRAFFIC),  # name
    "categories": (_TEXT_OR_NULL, *_TRAFFIC),  # category
    "services": (_TEXT_OR_NULL, _TEXT_OR_NULL, *_TRAFFIC),  # service, category
    "clients": (_TEXT_OR_NULL, _TEXT_OR_NULL, *_TRAFFIC),  # client, category
    # qname, rcode, queries
    "qnames": ((str, type(None)), (int, type(None)), (int,)),
}


def _row_fits(row: Any, shape: tuple[tuple[type, ...], ...]) -> bool:
    return (
        isinstance(row, list)
        and len(row) == len(shape)
        and all(
            isinstance(v, kinds)
            and not (isinstance(v, bool) and bool not in kinds)
            and (not isinstance(v, int) or 0 <= v < MAX_COUNT)
            for v, kinds in zip(row, shape, strict=True)
        )
    )
