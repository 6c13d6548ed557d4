"""What every entry point promises on any input: shared by the property tests and the fuzz targets.

Each check raises AssertionError when a result breaks the contract of its parser (STYLE.md
section 4): a closed set of statuses, the shape of the fields, and nothing handed out that
does not lie inside the input.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from agent._decode import LAYER_NAMES

OK, TRUNCATED, FRAGMENT = 0, 1, 10
FRAME_STATUSES = frozenset({0, 1, 2, 3, 4, FRAGMENT})
DNS_PROBLEM = re.compile(
    r"(header|question|answer|authority|additional)\.(truncated|unsupported|malformed|limit)"
)
DESC = struct.Struct("<QIIIHHII")
MAX_FRAME = 262144
WALKER_COUNTERS = frozenset(
    {
        "frames",
        "truncated_record",
        "corrupt_header",
        "skipped_blocks",
        "unknown_interface",
        "too_many_interfaces",
        "bad_block",
        "not_a_capture",
    }
)


def check_frame_result(frame: bytes, status: int, fields: dict[str, Any]) -> None:
    """parse_frame's result for `frame`."""
    assert status in FRAME_STATUSES, status
    if status not in (OK, FRAGMENT):
        assert set(fields) == {"layer"} and fields["layer"] in LAYER_NAMES, fields
        return
    family = fields["family"]
    assert family in (4, 6), fields
    assert len(fields["src"]) == len(fields["dst"]) == (4 if family == 4 else 16)
    payload = fields["payload"]
    assert len(payload) <= len(frame)
    assert not payload or payload in frame, "payload bytes that are not in the frame"
    assert 0 <= fields["sport"] <= 0xFFFF and 0 <= fields["dport"] <= 0xFFFF
    assert fields["tunnels"] <= 8 and fields["vlans"] <= 9, fields
    if status == OK and fields["proto"] in (6, 17):
        assert len(payload) <= fields["payload_wire"], fields


def check_dns_result(msg: bytes, status: int, parsed: Any) -> None:
    """parse_dns's result for `msg`."""
    if len(msg) < 4:
        assert (status, parsed) == (TRUNCATED, None)
        return
    assert status == OK and parsed is not None
    ident, flags, counts, questions, answers, edns, problem = parsed
    assert ident == int.from_bytes(msg[:2], "big") and flags == int.from_bytes(msg[2:4], "big")
    assert len(counts) == 4
    assert len(questions) <= counts[0] and len(answers) <= counts[1]
    assert problem is None or DNS_PROBLEM.fullmatch(problem), problem
    for name, qtype, qclass in questions:
        assert name is None or (isinstance(name, str) and name.isascii())
        assert 0 <= qtype <= 0xFFFF and 0 <= qclass <= 0xFFFF
    for name, rtype, ttl, text in answers:
        assert name is None or (isinstance(name, str) and name.isascii())
        assert 0 <= rtype <= 0xFFFF and 0 <= ttl < 2**32 and isinstance(text, str)
    assert edns is None or isinstance(edns, dict)


def check_walk(buf: Any, used: int, count: int, descs: bytearray) -> list[tuple[int, ...]]:
    """Checks one walk over buf; returns (ts_ns, offset, caplen, wirelen, linktype, iface)s."""
    assert 0 <= used <= len(buf) and count >= 0
    assert len(descs) >= count * DESC.size
    out = []
    for i in range(count):
        ts, off, cap, wire, linktype, _tci, _flags, iface = DESC.unpack_from(descs, i * DESC.size)
        assert off + cap <= used, "a descriptor past the bytes consumed"
        assert cap <= wire and cap <= MAX_FRAME
        out.append((ts, off, cap, wire, linktype, iface))
    return out


def check_walker_counters(counters: dict[str, int], frames: int) -> None:
    assert set(counters) == WALKER_COUNTERS
    assert all(v >= 0 for v in counters.values())
    assert counters["frames"] == frames
