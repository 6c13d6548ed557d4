"""Address text (ext/_addrtext.pxd) against the C library's inet_ntop, the oracle.

The engine and the DNS parser write addresses themselves. The text must stay what inet_ntop
gives (and what records held before): RFC 5952's "::" for the first longest run of two or
more zero groups, lowercase hex, and a dotted quad after ::ffff:0:0/96 and ::/96.
Addresses are drawn with many zero and 0xffff groups, so that runs, ties and the embedded
IPv4 forms come up often.
"""

from __future__ import annotations

import socket
import struct

from hypothesis import event, given, settings
from hypothesis import strategies as st

from agent._dns import parse_dns
from agent._engine import EV_FLOW, Engine
from tests.property.budget import examples

DESC = struct.Struct("<QIIIHHII")
T0_NS = 1_700_000_000 * 10**9
TYPE_AAAA = 28

groups = st.one_of(
    st.just(0), st.just(0), st.just(0xFFFF), st.integers(1, 0xF), st.integers(0, 0xFFFF)
)


@st.composite
def ipv6_addresses(draw: st.DrawFn) -> bytes:
    form = draw(st.sampled_from(["groups", "mapped", "compatible", "edges"]))
    if form == "mapped":
        return bytes(10) + b"\xff\xff" + draw(st.binary(min_size=4, max_size=4))
    if form == "compatible":
        return bytes(12) + draw(st.binary(min_size=4, max_size=4))
    if form == "edges":
        return draw(st.sampled_from([bytes(16), bytes(15) + b"\x01", b"\x00\x01" + bytes(14)]))
    return struct.pack("!8H", *draw(st.lists(groups, min_size=8, max_size=8)))


def ntop(address: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, address)


def udp6_frame(src: bytes, dst: bytes) -> bytes:
    payload = b"x"
    udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
    ipv6 = struct.pack("!IHBB", 0x60000000, len(udp), 17, 64) + src + dst
    return bytes(12) + b"\x86\xdd" + ipv6 + udp


@settings(max_examples=examples(300))
@given(ipv6_addresses(), ipv6_addresses())
def test_engine_writes_ipv6_addresses_as_inet_ntop(src, dst):
    text = ntop(src)
    event("compressed" if "::" in text else "no run")
    event("dotted quad" if "." in text else "hex only")
    frame = udp6_frame(src, dst)
    engine = Engine()
    out = engine.feed(frame, DESC.pack(T0_NS, 0, len(frame), len(frame), 1, 0, 0, 0), 1)
    out += engine.flush()
    flows = [o for o in out if o[0] == EV_FLOW]
    assert len(flows) == 1
    client_bytes, server_bytes = flows[0][6], flows[0][8]
    assert {client_bytes, server_bytes} == {src, dst} or src == dst
    assert (flows[0][20], flows[0][21]) == (ntop(client_bytes), ntop(server_bytes))


def aaaa_response(addresses: list[bytes]) -> bytes:
    header = struct.pack("!6H", 0x1234, 0x8180, 1, len(addresses), 0, 0)
    question = b"\x01a\x07example\x00" + struct.pack("!HH", TYPE_AAAA, 1)
    answers = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_AAAA, 1, 60, 16) + address for address in addresses
    )
    return header + question + answers


@settings(max_examples=examples(200))
@given(st.lists(ipv6_addresses(), min_size=1, max_size=6))
def test_dns_writes_aaaa_answers_as_inet_ntop(addresses):
    status, message = parse_dns(aaaa_response(addresses))
    assert status == 0 and message is not None
    assert [text for _name, _type, _ttl, text in message[4]] == [ntop(a) for a in addresses]
