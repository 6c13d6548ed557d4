"""agent.stream.TcpStream: one direction of a TCP byte stream put back in order.

The segments are cut from real TCP packets (scapy) so sequence numbers and
payloads are what a capture would hand over.
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from agent.stream import SEQ_MOD, TcpStream, seq_delta


def seg(seq: int, data: bytes = b"", flags: str = "PA") -> tuple[int, bool, bytes]:
    """(seq, syn, payload) of a TCP segment as a capture decodes it."""
    packet = IP(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(seq=seq, flags=flags) / Raw(data)))
    tcp = packet[TCP]
    return tcp.seq, bool(tcp.flags & 0x02), bytes(tcp.payload)


def feed(stream: TcpStream, *segments: tuple[int, bool, bytes]) -> bytes:
    return b"".join(stream.add(*s) for s in segments)


def test_seq_delta_is_signed_modulo_2_32() -> None:
    assert seq_delta(5, 3) == 2
    assert seq_delta(3, 5) == -2
    assert seq_delta(2, SEQ_MOD - 2) == 4
    assert seq_delta(SEQ_MOD - 2, 2) == -4


def test_syn_then_data_in_order() -> None:
    stream = TcpStream()
    assert stream.add(*seg(1000, flags="S")) == b""
    assert stream.next_seq == 1001
    assert not stream.started
    assert stream.add(*seg(1001, b"abc")) == b"abc"
    assert stream.add(*seg(1004, b"defg")) == b"defg"
    assert stream.next_seq == 1008
    assert stream.started
    assert not stream.has_gap


def test_data_on_the_syn() -> None:
    stream = TcpStream()
    assert stream.add(*seg(1000, b"fast", flags="S")) == b"fast"
    assert stream.add(*seg(1005, b"open")) == b"open"


def test_joined_mid_stream_starts_at_the_first_byte_seen() -> None:
    stream = TcpStream()
    assert stream.add(*seg(5000, b"middle")) == b"middle"
    assert stream.add(*seg(4990, b"before")) == b""  # earlier bytes count as old
    assert stream.add(*seg(5006, b"!")) == b"!"


def test_out_of_order_segments_wait_for_the_gap() -> None:
    stream = TcpStream()
    stream.add(*seg(99, flags="S"))
    assert stream.add(*seg(106, b"ghi")) == b""
    assert stream.add(*seg(103, b"def")) == b""
    assert stream.has_gap
    assert stream.add(*seg(100, b"abc")) == b"abcdefghi"
    assert not stream.has_gap
    assert stream.next_seq == 109


def test_retransmission_and_overlap_are_trimmed() -> None:
    stream = TcpStream()
    stream.add(*seg(99, flags="S"))
    out = feed(
        stream,
        seg(100, b"abcd"),
        seg(100, b"abcd"),  # an exact retransmission
        seg(102, b"cdef"),  # overlaps two delivered bytes
        seg(100, b"ab"),  # old bytes only
        seg(103, b"defgh"),  # overlaps, then new
    )
    assert out == b"abcdefgh"
    assert stream.dropped_bytes == 0


def test_overlapping_held_segments() -> None:
    stream = TcpStream()
    stream.add(*seg(99, flags="S"))
    assert stream.add(*seg(110, b"klmno")) == b""
    assert stream.add(*seg(105, b"fghijklm")) == b""
    assert stream.add(*seg(110, b"klmnopq")) == b""  # a longer copy of a held segment
    assert stream.add(*seg(100, b"abcde")) == b"abcdefghijklmnopq"
    assert not stream.has_gap


def test_sequence_wraparound() -> None:
    stream = TcpStream()
    stream.add(*seg(SEQ_MOD - 3, flags="S"))
    assert stream.next_seq == SEQ_MOD - 2
    assert stream.add(*seg(SEQ_MOD - 2, b"ab")) == b"ab"
    assert stream.next_seq == 0
    assert stream.add(*seg(0, b"cd")) == b"cd"
    assert stream.add(*seg(SEQ_MOD - 2, b"abcdef")) == b"ef"  # a retransmission across the wrap


def test_out_of_order_across_the_wrap() -> None:
    stream = TcpStream()
    stream.add(*seg(SEQ_MOD - 1, flags="S"))
    assert stream.next_seq == 0
    assert stream.add(*seg(3, b"def")) == b""
    assert stream.add(*seg(0, b"abc")) == b"abcdef"
    stream = TcpStream()
    stream.add(*seg(SEQ_MOD - 10, flags="S"))
    assert stream.add(*seg(1, b"xyz")) == b""
    assert stream.add(*seg(SEQ_MOD - 9, b"0123456789")) == b"0123456789xyz"


def test_pending_cap_counts_dropped_bytes() -> None:
    stream = TcpStream(max_pending=10)
    stream.add(*seg(0, flags="S"))
    assert stream.add(*seg(11, b"12345678")) == b""
    assert stream.add(*seg(21, b"ABCDEFGH")) == b""  # would hold 16 > 10 bytes
    assert stream.dropped_bytes == 8
    assert stream.add(*seg(1, b"0123456789")) == b"012345678912345678"
    assert stream.add(*seg(21, b"ABCDEFGH")) == b""  # still a gap at 19..20
    assert stream.add(*seg(19, b"xy")) == b"xyABCDEFGH"
    assert stream.dropped_bytes == 8


def test_pending_cap_counts_only_new_bytes_of_a_longer_copy() -> None:
    # A held segment sent again with more data (a coalesced retransmission) needs only
    # room for the extra bytes.
    stream = TcpStream(max_pending=10)
    stream.add(*seg(0, flags="S"))
    assert stream.add(*seg(11, b"123456")) == b""
    assert stream.add(*seg(11, b"12345678")) == b""  # 8 bytes held in all: within the cap
    assert stream.dropped_bytes == 0
    assert stream.add(*seg(1, b"0123456789")) == b"012345678912345678"


def test_retransmitted_syn_after_data_does_not_rewind() -> None:
    stream = TcpStream()
    stream.add(*seg(500, flags="S"))
    assert stream.add(*seg(501, b"hello")) == b"hello"
    assert stream.add(*seg(500, flags="S")) == b""
    assert stream.add(*seg(506, b"world")) == b"world"


def test_empty_segments_change_nothing() -> None:
    stream = TcpStream()
    assert stream.add(*seg(7, flags="A")) == b""
    assert stream.next_seq is None
    assert stream.add(*seg(7, b"x")) == b"x"
