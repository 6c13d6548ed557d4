"""agent/wire.py: frames, messages, column-wise batches, and the collector's checks on them."""

from __future__ import annotations

import contextlib
import copy
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from agent.wire import (
    MAX_FRAME,
    MAX_INFLATED,
    SCHEMA,
    SCHEMA_VERSIONS,
    FrameReader,
    WireError,
    batch_message,
    decode_batch,
    decode_records,
    encode_records,
    frame,
    parse_message,
)
from tests.util import pcap_bytes, replay

DATA = Path(__file__).resolve().parents[1] / "data"
MESSAGES = [
    {"type": "hello", "sensor": "tap-01", "schema": 1, "agent": "tapsense 0.1.0"},
    {"type": "welcome", "schema": 1},
    {"type": "ack", "stream": "live", "seq": 42, "stored": True},
    {"type": "batch", "blob": b"\x00\x01" * 300, "text": "é" * 100, "n": [1, 2.5, None]},
]


def plain(value: Any) -> Any:
    """What survives JSON: tuples become lists."""
    return json.loads(json.dumps(value))


# --- frames ----------------------------------------------------------------------------------


def test_a_frame_is_a_big_endian_length_and_a_msgpack_map() -> None:
    data = frame({"type": "ack", "seq": 1})
    body = msgpack.packb({"type": "ack", "seq": 1}, use_bin_type=True)
    assert data == struct.pack("!I", len(body)) + body


def test_frames_split_at_every_byte_come_back_whole() -> None:
    data = b"".join(frame(m) for m in MESSAGES)
    for cut in range(len(data) + 1):
        reader = FrameReader()
        got = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert got == MESSAGES, cut
        assert reader.buffered == 0


def test_frames_fed_one_byte_at_a_time() -> None:
    data = b"".join(frame(m) for m in MESSAGES)
    reader = FrameReader()
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
        if i < len(frame(MESSAGES[0])) - 1:
            assert reader.buffered == i + 1  # a partial frame waits in the buffer
    assert got == MESSAGES
    assert reader.buffered == 0


def test_a_frame_of_exactly_max_frame_is_read() -> None:
    [message] = [
        {"type": "x", "pad": "p" * n}
        for n in range(250)
        if len(frame({"type": "x", "pad": "p" * n})) == 204
    ]
    assert FrameReader(max_frame=200).feed(frame(message)) == [message]


def test_a_length_over_max_frame_is_refused_before_the_body_arrives() -> None:
    reader = FrameReader(max_frame=200)
    with pytest.raises(WireError, match="exceeds"):
        reader.feed(struct.pack("!I", 201))
    with pytest.raises(WireError, match="exceeds"):
        FrameReader().feed(struct.pack("!I", MAX_FRAME + 1))
    with pytest.raises(WireError, match="exceeds"):
        FrameReader().feed(b"\xff\xff\xff\xff")


def test_frame_refuses_a_message_over_max_frame() -> None:
    frame({"type": "x", "blob": b"\x00" * (MAX_FRAME - 64)})
    with pytest.raises(WireError, match="exceeds"):
        frame({"type": "x", "blob": b"\x00" * MAX_FRAME})


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="reserved byte"),
        pytest.param(b"\x81\xa4type", id="truncated map"),
        pytest.param(msgpack.packb({"type": "x"}) + b"\xc0", id="extra data"),
        pytest.param(b"\x81\xa4type\xa2\xff\xfe", id="bad utf-8"),
        pytest.param(msgpack.packb({1: 2, "type": "x"}), id="int key"),
        pytest.param(b"\x91" * 100_000 + b"\xc0", id="nested too deep"),
        pytest.param(b"\xdf\xff\xff\xff\xff", id="map of 2**32-1 items, no data"),
        pytest.param(msgpack.packb(["type", "x"]), id="array"),
        pytest.param(msgpack.packb("batch"), id="string"),
        pytest.param(msgpack.packb(None), id="nil"),
        pytest.param(msgpack.packb({"kind": "batch"}), id="map without type"),
        pytest.param(msgpack.packb({"type": 1}), id="type not a string"),
        pytest.param(msgpack.packb({"type": b"batch"}, use_bin_type=True), id="type binary"),
    ],
)
def test_a_body_that_is_not_a_message_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(WireError):
        parse_message(body)
    with pytest.raises(WireError):
        FrameReader().feed(struct.pack("!I", len(body)) + body)


# --- records as tables -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dns_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DNS over IPv4 and IPv6: answered, NXDOMAIN, and a query nobody answered."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    c4, s4, c6, s6 = "10.0.0.1", "10.0.0.53", "2001:db8::1", "2001:db8::53"
    q = DNSQR(qname="example.org")
    frames = [
        (100.0, eth / IP(src=c4, dst=s4) / UDP(sport=1111, dport=53) / DNS(id=1, rd=1, qd=q)),
        (100.1, eth / IP(src=s4, dst=c4) / UDP(sport=53, dport=1111)
         / DNS(id=1, qr=1, qd=q, an=DNSRR(rrname="example.org", rdata="192.0.2.7", ttl=60))),
        (101.0, eth / IPv6(src=c6, dst=s6) / UDP(sport=2222, dport=53)
         / DNS(id=2, rd=1, qd=DNSQR(qname="nope.example", qtype="AAAA"))),
        (101.1, eth / IPv6(src=s6, dst=c6) / UDP(sport=53, dport=2222)
         / DNS(id=2, qr=1, rcode=3, qd=DNSQR(qname="nope.example", qtype="AAAA"))),
        (102.0, eth / IP(src=c4, dst=s4) / UDP(sport=3333, dport=53)
         / DNS(id=3, rd=1, qd=DNSQR(qname="lost.example"))),
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("wire") / "dns.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in frames]))
    return path


@pytest.fixture(scope="module")
def real_records(dns_pcap: Path) -> list[dict[str, Any]]:
    """Records of real captures: DNS, TLS over IPv4 and IPv6, QUIC, flows, stats."""
    records: list[dict[str, Any]] = []
    for path in (dns_pcap, DATA / "tls13_curl_ipv6.pcap", DATA / "quic_aioquic_h3.pcap",
                 DATA / "tls12_python.pcap"):  # fmt: skip
        records += [dict(r) for r in replay([path])]
    return records


def test_the_real_records_cover_what_the_wire_packs(real_records: list[dict[str, Any]]) -> None:
    kinds = {r["type"] for r in real_records}
    assert kinds == {"dns", "tls", "quic", "flow", "stats"}
    sources = {r["src"] for r in real_records if "src" in r}
    assert any(":" in s for s in sources) and any("." in s for s in sources)  # IPv6 and IPv4
    assert all(r["flow"].startswith("1:") for r in real_records if "flow" in r)


def test_records_round_trip_through_a_framed_batch(real_records: list[dict[str, Any]]) -> None:
    message = batch_message(
        sensor="tap-01",
        stream="live",
        seq=3,
        window=(100.0, 110.0),
        records=real_records,
        count=len(real_records),
        rollups={},
        stats={},
    )
    assert isinstance(message["tables"], bytes)  # deflated by default
    [received] = FrameReader().feed(frame(message))
    decoded = decode_batch(received)
    key = [(r["type"], r["ts"], r.get("flow")) for r in real_records]
    got = sorted(decoded["records"], key=lambda r: key.index((r["type"], r["ts"], r.get("flow"))))
    assert got == plain(real_records)


def test_tables_carry_field_names_once_and_pack_addresses_and_flow_ids(
    real_records: list[dict[str, Any]],
) -> None:
    tables = encode_records(real_records)
    assert set(tables) == {"dns", "tls", "quic", "flow", "stats"}
    for kind, table in tables.items():
        of_kind = [r for r in real_records if r["type"] == kind]
        assert table["fields"] == [f for f in of_kind[0] if f != "type"]
        assert len(table["rows"]) == len(of_kind)
        assert all(len(row) == len(table["fields"]) for row in table["rows"])
        for field in ("src", "dst"):
            if field in table["fields"]:
                i = table["fields"].index(field)
                assert {len(row[i]) for row in table["rows"]} <= {4, 16}
        if "flow" in table["fields"]:
            i = table["fields"].index("flow")
            assert {len(row[i]) for row in table["rows"]} == {20}
    flows = tables["flow"]
    src = flows["fields"].index("src")
    assert 16 in {len(row[src]) for row in flows["rows"]}  # the IPv6 capture


def test_decode_records_unpacks_addresses_and_community_ids(
    real_records: list[dict[str, Any]],
) -> None:
    decoded = decode_records(encode_records(real_records))
    assert {r["src"] for r in decoded if "src" in r} == {
        r["src"] for r in real_records if "src" in r
    }
    assert {r["flow"] for r in decoded if "flow" in r} == {
        r["flow"] for r in real_records if "flow" in r
    }
    assert "fd77::1" in {r["src"] for r in decoded if "src" in r}


def test_a_table_widens_for_a_record_with_more_fields() -> None:
    tables = encode_records(
        [
            {"type": "x", "ts": 1.0, "a": 1},
            {"type": "x", "ts": 2.0, "a": 2, "b": "two"},
            {"type": "x", "ts": 3.0},
        ]
    )
    assert tables == {
        "x": {
            "fields": ["ts", "a", "b"],
            "rows": [[1.0, 1, None], [2.0, 2, "two"], [3.0, None, None]],
        }
    }


def test_a_record_with_other_fields_of_the_same_number_keeps_them() -> None:
    """Records of one type with as many fields as the table, but other ones: none is lost."""
    records = [{"type": "x", "ts": 1.0, "a": 1}, {"type": "x", "ts": 2.0, "b": 2}]
    decoded = decode_records(encode_records(records))
    assert [{k: v for k, v in r.items() if v is not None} for r in decoded] == records


def test_decode_records_gives_one_record_per_row_with_its_type() -> None:
    tables = {"dns": {"fields": ["ts", "qname"], "rows": [[1.0, "a"], [2, "b"]]}, "x": {
        "fields": ["ts"], "rows": []}}  # fmt: skip
    assert decode_records(tables) == [
        {"type": "dns", "ts": 1.0, "qname": "a"},
        {"type": "dns", "ts": 2, "qname": "b"},
    ]


@pytest.mark.parametrize("value", ["flow", {"k": 1}, ["dns"], None, 5], ids=repr)
def test_a_field_named_type_cannot_change_a_records_type(value: Any) -> None:
    """The table's name is the record type: a row cannot say otherwise (the store files
    records by type, and an unhashable one breaks it)."""
    tables = {"dns": {"fields": ["ts", "type"], "rows": [[1.0, value]]}}
    try:
        decoded = decode_records(tables)
    except WireError:
        return
    assert [r["type"] for r in decoded] == ["dns"]


# --- batches and the collector's checks (docs/wire-format.md, "Checks on the collector") ---


def records() -> list[dict[str, Any]]:
    return [
        {"type": "dns", "ts": 100.5, "src": "10.0.0.1", "sport": 1111, "dst": "2001:db8::53",
         "dport": 53, "flow": "1:" + "AAECAwQFBgcICQoLDA0ODxAREhM=", "qname": "a.test",
         "answers": ["192.0.2.1"], "edns": {"udp_size": 1232, "options": [[10, "cookie"]]}},
        {"type": "flow", "ts": 100.0, "src": "10.0.0.1", "dst": "10.0.0.53", "pkts_up": 1,
         "name": None},
    ]  # fmt: skip


def valid() -> dict[str, Any]:
    message = batch_message(
        sensor="tap-01",
        stream="live",
        seq=42,
        window=(100.0, 110.0),
        records=records(),
        rollups={"names": [["a.test", 1, 1, 60, 1, 90], [None, 2, 3, 4, 5, 6]],
                 "qnames": [["a.test", 0, 3], ["b.test", None, 1], [None, 3, 1]]},
        count=2,
        stats={"type": "stats", "ts": 109.9, "packets": 10, "caps": {"flows_evicted": 0}},
        compression="none",  # tables as a map, so the tests can break them
    )  # fmt: skip
    return message


def changed(path: tuple[Any, ...], value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    message = copy.deepcopy(valid())
    parent: Any = message
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return message


def through_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    """What the collector decodes from a framed message."""
    [received] = FrameReader().feed(frame(message))
    return decode_batch(received)


def test_the_valid_batch_decodes() -> None:
    decoded = through_the_wire(valid())
    assert decoded["records"] == plain(records())
    assert decoded["seq"] == 42 and decoded["count"] == 2


def test_batch_message_has_every_documented_key() -> None:
    message = valid()
    assert set(message) == {"type", "schema", "sensor", "stream", "seq", "window", "tables",
                            "rollups", "stats", "count"}  # fmt: skip
    assert message["type"] == "batch" and message["schema"] == SCHEMA
    assert max(SCHEMA_VERSIONS) == SCHEMA


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_a_batch_without_records_ships_no_tables(compression: str) -> None:
    message = batch_message(sensor="s", stream="live", seq=0, window=(0, 1), records=None,
                            count=5, rollups={}, stats={}, compression=compression)  # fmt: skip
    assert message["tables"] == {}
    decoded = through_the_wire(message)
    assert (decoded["records"], decoded["count"]) == ([], 5)


def test_every_schema_version_the_reader_knows_is_read() -> None:
    """Older sensors keep being read: schema 1 (uncompressed tables) among them."""
    assert 1 in SCHEMA_VERSIONS
    for schema in SCHEMA_VERSIONS:
        decoded = through_the_wire(changed(("schema",), schema))
        assert decoded["schema"] == schema
        assert decoded["records"] == plain(records())


@pytest.mark.parametrize("schema", [0, -1, max(SCHEMA_VERSIONS) + 1, 1 << 40])
def test_other_schema_versions_are_refused(schema: int) -> None:
    with pytest.raises(WireError, match="schema version"):
        through_the_wire(changed(("schema",), schema))


@pytest.mark.parametrize("schema", ["1", 1.0, True, None, [1]], ids=repr)
def test_a_schema_that_is_not_an_integer_is_refused(schema: Any) -> None:
    with pytest.raises(WireError, match="schema"):
        through_the_wire(changed(("schema",), schema))


# --- deflated tables (schema 2) ----------------------------------------------------------------


def deflated(tables: Any) -> bytes:
    return zlib.compress(msgpack.packb(tables, use_bin_type=True))


def test_deflated_tables_decode_to_the_same_records() -> None:
    message = batch_message(sensor="tap-01", stream="live", seq=1, window=(100.0, 110.0),
                            records=records(), count=2, rollups={}, stats={})  # fmt: skip
    assert isinstance(message["tables"], bytes) and message["schema"] >= 2
    decoded = through_the_wire(message)
    assert decoded["records"] == plain(records())
    assert decoded["tables"] == msgpack.unpackb(zlib.decompress(message["tables"]))


def test_deflated_tables_need_schema_2() -> None:
    with pytest.raises(WireError, match="schema 2"):
        through_the_wire(changed(("tables",), deflated(valid()["tables"])) | {"schema": 1})


@pytest.mark.parametrize(
    "tables",
    [
        pytest.param(b"not zlib at all", id="not zlib"),
        pytest.param(b"", id="empty"),
        pytest.param(zlib.compress(msgpack.packb({"dns": {"fields": [], "rows": []}}))[:-6],
                     id="cut short"),
        pytest.param(zlib.compress(b"\x00" * (MAX_INFLATED + 1)), id="zip bomb"),
        pytest.param(deflated(valid()["tables"]) + b"trailing", id="trailing bytes"),
        pytest.param(zlib.compress(b"\xc1"), id="inflates to non-msgpack"),
        pytest.param(deflated([["ts"], [[1.0]]]), id="inflates to a list"),
        pytest.param(deflated({"dns": {"fields": ["ts"], "rows": [[1.0, 2]]}}), id="bad row"),
        pytest.param(deflated({"dns": {"fields": ["ts", "src"], "rows": [[1.0, b"12345"]]}}),
                     id="bad address"),
        pytest.param(zlib.compress(deflated({"x": 1})), id="deflated twice"),
    ],
)  # fmt: skip
def test_deflated_tables_that_do_not_check_are_refused(tables: bytes) -> None:
    with pytest.raises(WireError):
        through_the_wire(changed(("tables",), tables))


KEYS = ("schema", "sensor", "stream", "seq", "window", "tables", "rollups", "stats", "count")
WRONG = {
    "schema": ["1", 1.5, None, [1], True],
    "sensor": [7, None, b"tap-01", ["tap-01"]],
    "stream": [7, None, b"live", {}],
    "seq": ["42", 42.0, None, [42], True],
    "window": [None, "100-110", {"start": 100}, 100.0],
    "tables": [None, [], "dns", 1, True],
    "rollups": [None, [], "names"],
    "stats": [None, [], "stats", 1],
    "count": [None, "2", 2.0, [2], {}, True],
}


@pytest.mark.parametrize("key", KEYS)
def test_every_key_must_be_present(key: str) -> None:
    with pytest.raises(WireError):
        through_the_wire(changed((key,), delete=True))


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key in KEYS for value in WRONG[key]], ids=repr
)
def test_every_key_must_have_its_type(key: str, value: Any) -> None:
    with pytest.raises(WireError):
        through_the_wire(changed((key,), value))


@pytest.mark.parametrize("seq", [0, 1, 2**63 - 1])
def test_seq_in_range_is_accepted(seq: int) -> None:
    assert through_the_wire(changed(("seq",), seq))["seq"] == seq


@pytest.mark.parametrize("seq", [-1, -(2**63), 2**63, 2**64 - 1])
def test_seq_out_of_range_is_refused(seq: int) -> None:
    with pytest.raises(WireError, match="seq"):
        through_the_wire(changed(("seq",), seq))


@pytest.mark.parametrize("window", [[100, 110], [100.5, 110], [0.0, 0.0]])
def test_a_window_of_two_numbers_is_accepted(window: list[Any]) -> None:
    assert through_the_wire(changed(("window",), window))["window"] == window


@pytest.mark.parametrize(
    "window",
    [[], [100.0], [100.0, 110.0, 120.0], ["100", "110"], [None, 110.0], [[100.0], 110.0],
     [True, False]],
    ids=repr,
)  # fmt: skip
def test_a_window_that_is_not_two_numbers_is_refused(window: list[Any]) -> None:
    with pytest.raises(WireError, match="window"):
        through_the_wire(changed(("window",), window))


def test_sensor_and_stream_lengths() -> None:
    assert through_the_wire(changed(("sensor",), "s" * 200))["sensor"] == "s" * 200
    for sensor in ("", "s" * 201):
        with pytest.raises(WireError, match="sensor"):
            through_the_wire(changed(("sensor",), sensor))
    with pytest.raises(WireError, match="stream"):
        through_the_wire(changed(("stream",), "s" * 201))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("tables", "dns", "fields"), "ts"),
        (("tables", "dns", "fields"), None),
        (("tables", "dns", "fields", 0), 1),
        (("tables", "dns", "fields", 1), None),
        (("tables", "dns", "rows"), {"0": []}),
        (("tables", "dns", "rows"), None),
        (("tables", "dns", "rows", 0), {"ts": 1.0}),
        (("tables", "dns", "rows", 0), []),
        (("tables", "dns"), [["ts"], [[1.0]]]),
        (("tables",), {"dns": None}),
    ],
    ids=repr,
)
def test_a_table_must_have_names_and_lists(path: tuple[Any, ...], value: Any) -> None:
    with pytest.raises(WireError):
        through_the_wire(changed(path, value))


def test_each_row_has_one_value_per_field() -> None:
    message = valid()
    row = message["tables"]["dns"]["rows"][0]
    for broken in (row[:-1], [*row, "extra"], row[:1]):
        with pytest.raises(WireError, match="one value per field"):
            through_the_wire(changed(("tables", "dns", "rows", 0), broken))


def test_a_table_under_a_binary_name_is_refused() -> None:
    body = msgpack.packb(valid(), use_bin_type=True).replace(b"\xa3dns", b"\xc4\x03dns")
    [received] = FrameReader().feed(struct.pack("!I", len(body)) + body)
    with pytest.raises(WireError, match="record type"):
        decode_batch(received)


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


FLOW_NAME = ("tables", "flow", "rows", 0, 4)  # the flow record's "name"


def test_values_nest_eight_levels_at_most() -> None:
    assert valid()["tables"]["flow"]["fields"][FLOW_NAME[-1]] == "name"
    assert through_the_wire(changed(FLOW_NAME, nested(8)))["records"][1]["name"] == nested(8)
    with pytest.raises(WireError, match="plain"):
        through_the_wire(changed(FLOW_NAME, nested(9)))


def test_stats_nest_eight_levels_at_most_counting_its_own_map() -> None:
    assert through_the_wire(changed(("stats", "deep"), nested(7)))
    with pytest.raises(WireError, match="stats"):
        through_the_wire(changed(("stats", "deep"), nested(8)))


@pytest.mark.parametrize(
    "value",
    [b"\x00bytes", msgpack.ExtType(5, b"x"), msgpack.Timestamp(1, 0), {b"k": 1}, [b"x"],
     {"k": {"j": b"x"}}],
    ids=repr,
)  # fmt: skip
@pytest.mark.parametrize("where", ["record", "stats"])
def test_every_value_must_be_plain(where: str, value: Any) -> None:
    path = FLOW_NAME if where == "record" else ("stats", "odd")
    # msgpack extension types are refused when unpacked, the rest when checked
    with pytest.raises(WireError, match=r"plain|max_ext_len"):
        through_the_wire(changed(path, value))


def test_plain_values_of_every_kind_are_accepted() -> None:
    value = [None, True, 0, -5, 2.5, "t", {"a": [1, {"b": None}]}]
    decoded = through_the_wire(changed(FLOW_NAME, value))
    assert decoded["records"][1]["name"] == value


@pytest.mark.parametrize("size", [0, 1, 3, 5, 8, 15, 17, 20])
@pytest.mark.parametrize("field", ["src", "dst"])
def test_addresses_must_be_4_or_16_bytes(field: str, size: int) -> None:
    i = valid()["tables"]["dns"]["fields"].index(field)
    with pytest.raises(WireError, match=f"dns.{field}"):
        through_the_wire(changed(("tables", "dns", "rows", 0, i), bytes(size)))


def test_addresses_of_4_and_16_bytes_are_accepted() -> None:
    i = valid()["tables"]["dns"]["fields"].index("src")
    assert (
        through_the_wire(changed(("tables", "dns", "rows", 0, i), bytes(16)))["records"][0]["src"]
        == "::"
    )
    assert (
        through_the_wire(changed(("tables", "dns", "rows", 0, i), bytes(4)))["records"][0]["src"]
        == "0.0.0.0"
    )


@pytest.mark.parametrize("ts", ["100.5", None, True, [100.5], {"s": 1}], ids=repr)
def test_every_record_needs_a_numeric_ts(ts: Any) -> None:
    with pytest.raises(WireError, match="ts must be a time"):
        through_the_wire(changed(("tables", "dns", "rows", 0, 0), ts))


def test_a_record_without_ts_is_refused() -> None:
    with pytest.raises(WireError, match="ts must be a time"):
        through_the_wire(changed(("tables", "x"), {"fields": ["a"], "rows": [[1]]}))


def test_an_integer_ts_is_a_number() -> None:
    assert (
        through_the_wire(changed(("tables", "dns", "rows", 0, 0), 100))["records"][0]["ts"] == 100
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("rollups", "names"), {"a.test": 1}),
        (("rollups", "names", 0), ["a.test", 1, 1, 60, 1]),
        (("rollups", "names", 0), ["a.test", 1, 1, 60, 1, 90, 0]),
        (("rollups", "names", 0, 0), 5),
        (("rollups", "names", 0, 1), "1"),
        (("rollups", "names", 0, 3), 60.5),
        (("rollups", "names", 0, 1), True),
        (("rollups", "names", 0, 5), None),
        (("rollups", "qnames"), "a.test"),
        (("rollups", "qnames", 0), ["a.test", 0]),
        (("rollups", "qnames", 0, 0), b"a.test"),
        (("rollups", "qnames", 0, 1), "NOERROR"),
        (("rollups", "qnames", 0, 1), False),
        (("rollups", "qnames", 0, 2), None),
        (("rollups", "qnames", 0, 2), True),
        (("rollups", "qnames", 0), {"qname": "a.test"}),
    ],
    ids=repr,
)
def test_rollup_rows_must_fit_their_shape(path: tuple[Any, ...], value: Any) -> None:
    with pytest.raises(WireError, match="rollups"):
        through_the_wire(changed(path, value))


def test_rollup_rows_may_have_null_names_and_rcodes_and_other_rollups_are_kept() -> None:
    message = changed(("rollups", "future"), [["anything", 1.5]])
    decoded = through_the_wire(message)
    assert decoded["rollups"]["qnames"][1] == ["b.test", None, 1]
    assert decoded["rollups"]["names"][1][0] is None
    assert through_the_wire(changed(("rollups",), {}))["rollups"] == {}


def test_stats_must_be_plain() -> None:
    with pytest.raises(WireError, match="stats"):
        through_the_wire(changed(("stats", "blob"), b"\x00"))
    with pytest.raises(WireError, match="stats"):
        through_the_wire(changed(("stats", "deep"), nested(9)))


def test_decode_batch_keeps_the_message_and_adds_records() -> None:
    message = valid()
    decoded = decode_batch(message)
    assert {k: v for k, v in decoded.items() if k != "records"} == message
    assert "records" not in message


# --- properties: bad input gives WireError, never another exception ---------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=6),
    st.binary(max_size=20),
)
KEYS_OF_MAPS = st.one_of(
    st.text(max_size=4), st.sampled_from(["ts", "src", "flow", "rows", "type"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS_OF_MAPS, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_messages_or_a_wire_error(data: bytes) -> None:
    try:
        messages = FrameReader(max_frame=1 << 16).feed(data)
    except WireError:
        return
    assert all(isinstance(m, dict) and isinstance(m["type"], str) for m in messages)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), VALUES, st.sampled_from(["dns", "flow", "x"]), VALUES)
def test_decode_batch_of_arbitrary_values_gives_a_batch_or_a_wire_error(
    key: str, value: Any, kind: str, table: Any
) -> None:
    for message in (changed((key,), value), changed(("tables", kind), table)):
        body = msgpack.packb(message, use_bin_type=True)
        with contextlib.suppress(WireError):
            decode_batch(parse_message(body))
