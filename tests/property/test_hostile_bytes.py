"""Hostile bytes at every entry point (STYLE.md sections 4 and 8).

For parse_frame, parse_dns, CaptureWalker and Engine.feed: arbitrary bytes and valid inputs
with bytes changed give a status and never raise; every truncation of a valid input is
reported (a failure status, a problem, a payload shorter than its headers say, or a truncated
record); what a parser hands out always lies inside its input.
"""

from __future__ import annotations

import io
import struct
import time

import dpkt
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent._capfile import CaptureWalker
from agent._decode import parse_frame
from agent._dns import parse_dns
from agent._engine import EV_FLOW, EV_PAYLOAD, EV_TICK, Engine
from agent._quic import crypto_frames, parse_long_header
from agent._tls import parse_client_hello, parse_server_hello, parse_sslv2_client_hello
from tests.property.budget import examples
from tests.property.captures import DESC, descriptors, pcap_files, pcapng_files
from tests.property.frames import LINKTYPES, decoded_fields, frames
from tests.property.invariants import (
    check_dns_result,
    check_frame_result,
    check_walk,
    check_walker_counters,
)
from tests.property.messages import dns_messages

OK = 0

linktypes = st.one_of(st.sampled_from(LINKTYPES), st.integers(0, 0xFFFF))


# --- parse_frame --------------------------------------------------------------------------------


@settings(max_examples=examples(1500))
@given(st.binary(max_size=256), linktypes, st.integers(-1, 0xFFFF), st.booleans(), st.booleans())
def test_parse_frame_arbitrary_bytes(frame, linktype, vlan_tci, key_vlan, key_tunnel):
    status, fields = parse_frame(frame, linktype, vlan_tci, key_vlan, key_tunnel)
    check_frame_result(frame, status, fields)


@st.composite
def mutated_frames(draw: st.DrawFn) -> tuple[bytes, int]:
    """A valid frame with a few bytes overwritten: gets past the first headers, unlike noise."""
    built = draw(frames())
    frame = bytearray(built.frame)
    for _ in range(draw(st.integers(1, 4))):
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    return bytes(frame), built.linktype


@settings(max_examples=examples(300))
@given(mutated_frames(), st.booleans())
def test_parse_frame_mutated_frames(mutated, as_memoryview):
    frame, linktype = mutated
    status, fields = parse_frame(memoryview(frame) if as_memoryview else frame, linktype)
    check_frame_result(frame, status, fields)


@settings(max_examples=examples(250))
@given(frames())
def test_parse_frame_every_truncation_is_reported(built):
    """Cut inside the headers: a failure status. Cut inside a TCP/UDP payload: OK with fewer
    payload bytes than payload_wire. Cut in the trailer after the IP packet: the full result.

    Only frames whose innermost packet is TCP or UDP are held to the middle rule: for other
    protocols the decoder reads only the first bytes and reports no payload length."""
    full = parse_frame(built.frame, built.linktype)
    for cut in range(len(built.frame) + 1):
        frame = built.frame[:cut]
        status, fields = parse_frame(frame, built.linktype)
        check_frame_result(frame, status, fields)
        if cut >= built.core_len:
            assert (status, fields) == full
        elif status == OK and fields["tunnels"] < built.truth.tunnels:
            # Stopped at a UDP tunnel whose header is cut: an ordinary UDP packet, cut short.
            assert fields["proto"] == 17, (cut, built.frame.hex())
            assert len(fields["payload"]) < fields["payload_wire"], (cut, built.frame.hex())
        elif status == OK:
            assert decoded_fields(fields)["proto"] == built.truth.proto, (cut, built.frame.hex())
            if built.truth.proto in (6, 17):
                assert len(fields["payload"]) < fields["payload_wire"], (cut, built.frame.hex())


# --- parse_dns ----------------------------------------------------------------------------------


@settings(max_examples=examples(1500))
@given(st.binary(max_size=512))
def test_parse_dns_arbitrary_bytes(msg):
    check_dns_result(msg, *parse_dns(msg))


@st.composite
def mutated_dns(draw: st.DrawFn) -> bytes:
    msg = bytearray(draw(dns_messages()).wire)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(msg) - 1))
        # Favour the bytes that steer a parser: lengths, pointers, counts.
        msg[at] = draw(
            st.one_of(st.sampled_from([0x00, 0x3F, 0x40, 0x80, 0xC0, 0xFF]), st.integers(0, 255))
        )
    return bytes(msg)


@settings(max_examples=examples(300))
@given(mutated_dns())
def test_parse_dns_mutated_messages(msg):
    check_dns_result(msg, *parse_dns(msg))


@settings(max_examples=examples(120))
@given(dns_messages())
def test_parse_dns_every_truncation_is_reported(message):
    """A message cut anywhere names a problem, and what it did parse is what the whole gave."""
    _, full = parse_dns(message.wire)
    assert full[-1] is None
    for cut in range(len(message.wire)):
        msg = message.wire[:cut]
        status, parsed = parse_dns(msg)
        check_dns_result(msg, status, parsed)
        if cut < 4:
            continue
        assert parsed[-1] is not None, cut
        if cut < 12:
            assert parsed[-1] == "header.truncated"
            continue
        questions, answers = parsed[3], parsed[4]
        assert questions == full[3][: len(questions)]
        assert answers == full[4][: len(answers)]


def pointer_chain_message(chain_labels: int = 15_000, records: int = 64) -> bytes:
    """A question whose name is a 15 000-label chain that loops back on itself, then 3 x 64
    records whose owner names all point at that chain (32 KiB)."""
    chain = b"\x01a" * chain_labels + b"\xc0\x0c"  # ... and back to offset 12
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 0)
    header = struct.pack("!6H", 0, 0x8180, 1, records, records, records)
    return header + chain + b"\x00\x01\x00\x01" + rr * (3 * records)


def test_parse_dns_bounded_work_on_pointer_chains():
    """BUG: a name that passes 255 octets is LIMIT, yet read_name walks on through up to 128
    pointer hops over the whole chain, for every record that points at it: ~5 ms per name,
    ~1 s of CPU for this 32 KiB message and ~7.5 s with 3 x 512 records (49 KiB, one DNS/TCP
    message). A parse that stops at 255 octets takes well under a millisecond."""
    msg = pointer_chain_message()
    start = time.process_time()
    status, parsed = parse_dns(msg)
    elapsed = time.process_time() - start
    assert status == OK and parsed[-1] is not None
    assert elapsed < 0.1, f"{elapsed:.2f} s of CPU for one {len(msg)}-byte message"


# --- CaptureWalker ------------------------------------------------------------------------------


def walk_whole(data: bytes) -> tuple[list[tuple], dict[str, int], int]:
    walker = CaptureWalker()
    used, count = walker.walk(data)
    check_walk(data, used, count, walker.descriptors)
    got = descriptors(data, walker.descriptors, count)
    walker.finish(len(data) - used)
    counters = walker.counters()
    check_walker_counters(counters, count)
    return got, counters, used


def walk_in_chunks(data: bytes, sizes: list[int]) -> tuple[list[tuple], dict[str, int]]:
    """Walks the stream as agent/capfile.py does: the unconsumed tail goes before the next chunk."""
    walker = CaptureWalker()
    got: list[tuple] = []
    pending, pos, i = b"", 0, 0
    while pos < len(data) and not walker.stopped:
        size = sizes[i % len(sizes)]
        i += 1
        buf = pending + data[pos : pos + size]
        pos += size
        used, count = walker.walk(buf)
        got += descriptors(buf, walker.descriptors, count)
        pending = buf[used:]
    walker.finish(len(pending) + len(data) - min(pos, len(data)))
    return got, walker.counters()


PCAP_HEADERS = [
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1),
    struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101),
    struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1),  # Kuznetsov: 24-byte records
    struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28),
    b"",
]


@settings(max_examples=examples(1000))
@given(st.sampled_from(PCAP_HEADERS), st.binary(max_size=400))
def test_walker_arbitrary_bytes(header, body):
    data = header + body
    walk_whole(data)


@settings(max_examples=examples(300))
@given(
    st.one_of(pcap_files(), pcapng_files()),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_walker_mutated_captures(cap, changes):
    data = bytearray(cap.data)
    for at, value in changes:
        data[at % len(data)] = value
    walk_whole(bytes(data))


@settings(max_examples=examples(120))
@given(pcap_files())
def test_walker_pcap_matches_dpkt_and_counts_every_cut(cap):
    got, counters, used = walk_whole(cap.data)
    assert used == len(cap.data)
    assert got == cap.expected
    assert counters == {**{k: 0 for k in counters}, "frames": len(cap.expected)}
    reader = dpkt.pcap.Reader(io.BytesIO(cap.data))
    assert [bytes(buf) for _, buf in reader] == [e[-1] for e in cap.expected]
    for cut in range(24, len(cap.data)):
        _, counters, _ = walk_whole(cap.data[:cut])
        want_frames = sum(1 for end in cap.packet_ends if end <= cut)
        assert counters["frames"] == want_frames, cut
        assert counters["truncated_record"] == (0 if cut in cap.boundaries else 1), cut
        assert counters["corrupt_header"] == counters["not_a_capture"] == 0


def test_walker_pcap_cut_inside_file_header_is_a_truncated_record():
    """BUG: a classic pcap cut inside its 24-byte file header, magic included, counts as
    not_a_capture; a pcapng cut the same way counts truncated_record."""
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for cut in range(4, 24):
        _, counters, _ = walk_whole(data[:cut])
        assert (counters["truncated_record"], counters["not_a_capture"]) == (1, 0), cut


def test_walker_cut_before_the_magic_is_not_a_capture():
    for data in (PCAP_HEADERS[0], PCAP_HEADERS[3]):
        for cut in range(1, 4):
            _, counters, _ = walk_whole(data[:cut])
            assert (counters["truncated_record"], counters["not_a_capture"]) == (0, 1)


@settings(max_examples=examples(120))
@given(pcapng_files(skipped_blocks=False))
def test_walker_pcapng_counts_every_cut(cap):
    check_pcapng_cuts(cap)


@settings(max_examples=examples(60))
@given(pcapng_files())
def test_walker_pcapng_with_skipped_blocks_counts_every_cut(cap):
    """BUG: cut inside a block the walker skips (Name Resolution, Interface Statistics, ...)
    once its 12-byte header is in, the stream ends with no truncated record: walk() consumes
    the partial block into skip_remaining and finish() returns early when skip_remaining > 0."""
    check_pcapng_cuts(cap)


def check_pcapng_cuts(cap) -> None:
    got, counters, used = walk_whole(cap.data)
    assert used == len(cap.data)
    assert got == cap.expected
    skipped = counters["skipped_blocks"]
    assert counters == {
        **{k: 0 for k in counters},
        "frames": len(cap.expected),
        "skipped_blocks": skipped,
    }
    for cut in range(4, len(cap.data)):
        _, counters, _ = walk_whole(cap.data[:cut])
        want_frames = sum(1 for end in cap.packet_ends if end <= cut)
        assert counters["frames"] == want_frames, cut
        assert counters["truncated_record"] == (0 if cut in cap.boundaries else 1), (
            cut,
            cap.data.hex(),
        )
        assert counters["corrupt_header"] == counters["not_a_capture"] == 0


# A pcapng with a Section Header, an Interface Description, an Enhanced Packet and an
# Interface Statistics Block (type 5, 24 bytes) cut after its first 12 bytes.
PCAPNG_CUT_IN_ISB = bytes.fromhex(
    "0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000"  # SHB, 28 bytes
    "01000000140000000100000000000400" + "14000000"  # IDB, 20 bytes
    "06000000240000000000000000000000000000000400000004000000" + "00010203" + "24000000"  # EPB
    "050000001800000000000000"  # ISB: type, length 24, interface id; 12 bytes missing
)


def test_walker_pcapng_cut_inside_skipped_block_is_a_truncated_record():
    """BUG: see test_walker_pcapng_with_skipped_blocks_counts_every_cut."""
    _, counters, _ = walk_whole(PCAPNG_CUT_IN_ISB)
    assert counters["frames"] == 1 and counters["skipped_blocks"] == 1
    assert counters["truncated_record"] == 1


@settings(max_examples=examples(150))
@given(
    st.one_of(pcap_files(), pcapng_files(skipped_blocks=False)),
    st.lists(st.integers(1, 200), min_size=1, max_size=8),
)
def test_walker_chunks_give_what_the_whole_gives(cap, sizes):
    whole, whole_counters, _ = walk_whole(cap.data)
    assert walk_in_chunks(cap.data, sizes) == (whole, whole_counters)


@settings(max_examples=examples(100))
@given(pcapng_files(), st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_walker_chunks_over_skipped_blocks(cap, sizes):
    """Skipped blocks straddling chunks: the same descriptors and counters as one chunk."""
    whole, whole_counters, _ = walk_whole(cap.data)
    assert walk_in_chunks(cap.data, sizes) == (whole, whole_counters)


# --- Engine.feed ----------------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)


@st.composite
def feeds(draw: st.DrawFn) -> tuple[bytes, list[tuple]]:
    """Valid frames and noise in one buffer; descriptors in range, past the end, huge."""
    parts = draw(
        st.lists(st.one_of(frames().map(lambda b: b.frame), st.binary(max_size=64)), max_size=6)
    )
    data = b"".join(parts)
    size = len(data)
    offsets = st.one_of(st.integers(0, size), st.integers(size, size + 100), u32)
    caplens = st.one_of(st.integers(0, max(size, 1)), u32)
    descs = draw(
        st.lists(
            st.tuples(
                st.integers(0, 2**64 - 1),
                offsets,
                caplens,
                u32,
                linktypes,
                st.integers(0, 0xFFFF),
                st.sampled_from([0, 1, 2**32 - 1]),
                u32,
            ),
            max_size=20,
        )
    )
    return data, descs


@settings(max_examples=examples(200))
@given(feeds(), st.integers(1, 8), st.integers(0, 2**64 - 1))
def test_engine_feed_hostile_descriptors(feed, max_flows, tick_ns):
    data, descs = feed
    engine = Engine(max_flows=max_flows, frag_max_datagrams=2)
    packed = b"".join(DESC.pack(*d) for d in descs)
    out = engine.feed(data, packed, len(descs))
    out += engine.tick(tick_ns)
    for handle in {o[2] for o in out if o[0] in (EV_PAYLOAD, EV_FLOW)}:
        engine.set_interest(handle, 0)
    engine.set_interest(2**64 - 1, 1)
    out += engine.flush()
    bad = len(descs) if not data else sum(1 for d in descs if d[1] + d[2] > len(data))
    counters = engine.counters()
    assert counters["bad_descriptor"] == bad
    assert counters["packets"] == len(descs) - bad
    assert all(o[0] in (EV_TICK, EV_PAYLOAD, EV_FLOW) for o in out)
    assert counters["flows_active"] == engine.active_flows == 0


def test_engine_feed_rejects_a_short_descriptor_buffer():
    engine = Engine()
    descs = DESC.pack(0, 0, 0, 0, 1, 0, 0, 0)
    try:
        engine.feed(b"\x00" * 64, descs, 2)
    except ValueError:
        pass
    else:
        raise AssertionError("count beyond the descriptor buffer was accepted")
    assert engine.feed(b"", b"", 0) == [] and engine.feed(b"x", descs, -1) == []


@settings(max_examples=examples(200))
@given(st.binary(max_size=2048), st.integers(0, 40), linktypes)
def test_engine_feed_noise_as_frames(noise, n, linktype):
    """Noise cut into frames at fixed steps, every link type: decode failures are counted."""
    assume(noise)
    step = max(1, len(noise) // max(n, 1))
    descs = [
        (10**9 + i, o, min(step, len(noise) - o), step, linktype, 0, 0, 0)
        for i, o in enumerate(range(0, len(noise), step))
    ]
    engine = Engine(max_flows=4)
    engine.feed(noise, b"".join(DESC.pack(*d) for d in descs), len(descs))
    engine.flush()
    counters = engine.counters()
    failures = sum(v for k, v in counters.items() if k.startswith("decode."))
    assert counters["packets"] == len(descs)
    assert failures + counters["frag.fragments"] <= len(descs)


# --- buffers the C code cannot read in place ----------------------------------------------------


def test_strided_buffers_are_refused_at_every_entry_point():
    """Every entry point reads its buffer as contiguous memory: a strided view (every other
    byte, or reversed) is refused at the call, instead of read past its end."""
    data = bytes(range(256)) * 4
    descs = DESC.pack(0, 0, 64, 64, 1, 0, 0, 0)
    calls = {
        "parse_frame": lambda view: parse_frame(view, 1),
        "parse_dns": parse_dns,
        "parse_client_hello": parse_client_hello,
        "parse_server_hello": parse_server_hello,
        "parse_sslv2_client_hello": parse_sslv2_client_hello,
        "parse_long_header": parse_long_header,
        "crypto_frames": crypto_frames,
        "CaptureWalker.walk": lambda view: CaptureWalker().walk(view),
        "Engine.feed data": lambda view: Engine().feed(view, descs, 1),
        "Engine.feed descriptors": lambda view: Engine().feed(data, view[: len(descs)], 1),
    }
    for name, call in calls.items():
        for strided in (memoryview(data)[::-1], memoryview(data)[::2]):
            try:
                call(strided)
            except (BufferError, ValueError):
                continue
            raise AssertionError(f"{name} read a strided buffer")
        call(memoryview(data))  # a contiguous view is read as before
