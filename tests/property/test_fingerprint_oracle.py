"""The fingerprints the hello parsers write in C (ext/_fingerprint.pxd) against their
definition in Python (agent/fingerprint.py), over generated and damaged hellos."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from agent._tls import parse_client_hello, parse_server_hello
from agent.fingerprint import ja3, ja3s, ja4
from tests.builders import _ext, _vec16

GREASES = [0x0A0A + 0x1010 * i for i in range(16)]
# GREASE, values next to it that are not GREASE, and the ordinary range
u16 = st.one_of(
    st.sampled_from(GREASES), st.sampled_from([0x0A1A, 0x1A0A, 0xFAFA, 0]), st.integers(0, 0xFFFF)
)
# every version JA4 names, and its neighbours (ext/_fingerprint.pxd ja4_version_code)
VERSIONS = [0x0002, 0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x0305, 0xFEFF, 0xFEFE, 0xFEFD, 0xFEFC]
version = st.one_of(st.sampled_from(VERSIONS), u16)
MAX_CIPHERS = 2048  # ext/tls.pyx: a longer list is cut (LIMIT)


def _u16s(values: list[int]) -> bytes:
    return struct.pack(f"!{len(values)}H", *values)


@st.composite
def client_hellos(draw: st.DrawFn) -> bytes:
    """ClientHello bodies whose lists and extensions vary in content, order and size."""
    exts = []
    if draw(st.booleans()):
        name = draw(st.binary(max_size=40))
        exts.append(_ext(0x0000, _vec16(b"\x00" + _vec16(name))))
    if draw(st.booleans()):
        ids = draw(st.lists(st.binary(max_size=12), max_size=4))
        exts.append(_ext(0x0010, _vec16(b"".join(bytes((len(i),)) + i for i in ids))))
    if draw(st.booleans()):
        versions = draw(st.lists(version, max_size=6))
        exts.append(_ext(0x002B, bytes((2 * len(versions),)) + _u16s(versions)))
    if draw(st.booleans()):
        exts.append(_ext(0x000A, _vec16(_u16s(draw(st.lists(u16, max_size=12))))))
    if draw(st.booleans()):
        formats = draw(st.binary(max_size=5))
        exts.append(_ext(0x000B, bytes((len(formats),)) + formats))
    if draw(st.booleans()):
        exts.append(_ext(0x000D, _vec16(_u16s(draw(st.lists(u16, max_size=12))))))
    for etype in draw(st.lists(u16, max_size=10)):
        exts.append(_ext(etype, draw(st.binary(max_size=6))))
    exts = draw(st.permutations(exts))
    ciphers = draw(st.lists(u16, max_size=40))
    if draw(st.integers(0, 20)) == 0:  # past the parser's cap
        ciphers = ciphers + list(range(0x2000, 0x2000 + MAX_CIPHERS))
    body = struct.pack("!H", draw(u16)) + bytes(32) + b"\x00" + _vec16(_u16s(ciphers)) + b"\x01\x00"
    if exts or draw(st.booleans()):
        body += _vec16(b"".join(exts))
    cut = draw(st.one_of(st.none(), st.integers(2, max(2, len(body)))))
    return body if cut is None else body[:cut]


def check_client(body: bytes) -> None:
    _status, hello = parse_client_hello(body)
    if hello is None:
        return
    assert (hello["ja3"], hello["ja3_full"]) == ja3(hello)
    assert hello["ja4"] == ja4(hello, "t")
    _status, over_quic = parse_client_hello(body, quic=True)
    assert over_quic is not None and over_quic["ja4"] == ja4(hello, "q")


@settings(max_examples=400)
@given(client_hellos())
def test_client_fingerprints_match_their_python_definition(body: bytes) -> None:
    check_client(body)


@given(st.binary(max_size=300))
def test_client_fingerprints_of_arbitrary_bytes(body: bytes) -> None:
    check_client(body)


@st.composite
def server_hellos(draw: st.DrawFn) -> bytes:
    exts = b"".join(
        _ext(etype, draw(st.binary(max_size=4))) for etype in draw(st.lists(u16, max_size=12))
    )
    body = struct.pack("!H", draw(u16)) + bytes(32) + b"\x00" + struct.pack("!HB", draw(u16), 0)
    if exts or draw(st.booleans()):
        body += _vec16(exts)
    cut = draw(st.one_of(st.none(), st.integers(0, len(body))))
    return body if cut is None else body[:cut]


@settings(max_examples=300)
@given(st.one_of(server_hellos(), st.binary(max_size=200)))
def test_server_fingerprints_match_their_python_definition(body: bytes) -> None:
    _status, server = parse_server_hello(body)
    if server is not None:
        assert (server["ja3s"], server["ja3s_full"]) == ja3s(server)
