"""The ClientHello parser (ext/tls.pyx): a list longer than the parser keeps says so (LIMIT)."""

from __future__ import annotations

import struct

from agent._tls import parse_client_hello
from tests.builders import _ext, _vec16

OK, TRUNCATED, UNSUPPORTED, MALFORMED, LIMIT = range(5)
MAX_SMALL = 64  # ext/tls.pyx: point formats, key shares and versions kept per hello


def hello_body(*extensions: bytes) -> bytes:
    """A ClientHello body (after the 4-byte handshake header) with these extensions."""
    return (
        b"\x03\x03"
        + bytes(32)  # random
        + b"\x00"  # session id
        + _vec16(struct.pack("!H", 0x1301))
        + b"\x01\x00"  # compression: null
        + _vec16(b"".join(extensions))
    )


def test_a_short_point_format_list_is_ok() -> None:
    status, hello = parse_client_hello(hello_body(_ext(0x000B, b"\x02\x00\x01")))
    assert status == OK and hello["point_formats"] == [0, 1]


def test_too_many_point_formats_are_cut_and_said() -> None:
    formats = bytes(range(MAX_SMALL + 6))
    status, hello = parse_client_hello(hello_body(_ext(0x000B, bytes((len(formats),)) + formats)))
    assert status == LIMIT
    assert hello["point_formats"] == list(range(MAX_SMALL))


def test_too_many_key_shares_are_cut_and_said() -> None:
    shares = b"".join(struct.pack("!HH", group, 1) + b"\x00" for group in range(MAX_SMALL + 3))
    status, hello = parse_client_hello(hello_body(_ext(0x0033, _vec16(shares))))
    assert status == LIMIT
    assert hello["key_share_groups"] == list(range(MAX_SMALL))
