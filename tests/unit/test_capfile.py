"""agent/capfile.py and the pcap/pcapng walker (ext/capfile.pyx): every format, every damage."""

from __future__ import annotations

import bz2
import functools
import gzip
import json
import lzma
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from agent._capfile import DESC_SIZE
from agent.capfile import CaptureError, CaptureSource, open_sources
from tests.util import of_type, pcap_bytes, replay

ROOT = Path(__file__).resolve().parents[2]
DESC = struct.Struct("=QIIIHHII")  # ext/_frame.pxd FrameDesc

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
BT_SHB = 0x0A0D0D0A
BT_IDB = 1
BT_PB = 2
BT_SPB = 3
BT_NRB = 4
BT_ISB = 5
BT_EPB = 6
SEC = 1_700_000_000  # a timestamp in the range real captures have


class Frame(NamedTuple):
    ts_ns: int
    linktype: int
    iface: int
    wirelen: int
    data: bytes


def read_frames(path: Path, chunk_size: int = 4 << 20) -> tuple[list[Frame], dict[str, int]]:
    """Every frame the walker describes, read through CaptureSource, and its counters."""
    source = CaptureSource(str(path), chunk_size=chunk_size)
    frames = []
    for batch in source.batches():
        data = bytes(batch.data)
        for i in range(batch.count):
            ts, off, caplen, wirelen, linktype, _tci, _flags, iface = DESC.unpack_from(
                batch.descs, i * DESC.size
            )
            frames.append(Frame(ts, linktype, iface, wirelen, data[off : off + caplen]))
    return frames, source.walker.counters()


def eth() -> Ether:
    """An Ethernet header with both addresses set (scapy would look the destination up)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def udp_frame(n: int) -> bytes:
    """A distinct Ethernet/IPv4/UDP frame per n (the source port tells them apart)."""
    return bytes(
        eth()
        / IP(src="192.0.2.1", dst="198.51.100.1")
        / UDP(sport=10000 + n, dport=9999)
        / Raw(b"p" * (n % 7))
    )


def raw_ip_frame(n: int) -> bytes:
    return bytes(IP(src="203.0.113.5", dst="203.0.113.6") / UDP(sport=20000 + n, dport=7))


# -- classic pcap ---------------------------------------------------------------------------


def classic_pcap(
    records: list[tuple[int, int, bytes]],
    *,
    big: bool = False,
    nanos: bool = False,
    kuznetsov: bool = False,
    linktype: int = LINKTYPE_ETHERNET,
) -> bytes:
    """A classic pcap of (seconds, fraction, frame) records."""
    bo = ">" if big else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2CD34 if kuznetsov else 0xA1B2C3D4
    out = [struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for sec, frac, frame in records:
        out.append(struct.pack(bo + "IIII", sec, frac, len(frame), len(frame) + 4))
        if kuznetsov:  # ifindex, protocol, packet type, padding
            out.append(struct.pack(bo + "IHBB", 3, 0x0800, 0, 0))
        out.append(frame)
    return b"".join(out)


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_classic_pcap_microseconds(tmp_path: Path, big: bool) -> None:
    records = [(SEC + i, 123456 + i, udp_frame(i)) for i in range(3)]
    path = tmp_path / "us.pcap"
    path.write_bytes(classic_pcap(records, big=big))
    frames, counters = read_frames(path)
    assert [f.ts_ns for f in frames] == [(SEC + i) * 10**9 + (123456 + i) * 1000 for i in range(3)]
    assert [f.data for f in frames] == [r[2] for r in records]
    assert [f.wirelen for f in frames] == [len(r[2]) + 4 for r in records]
    assert {f.linktype for f in frames} == {LINKTYPE_ETHERNET}
    assert counters["frames"] == 3
    assert counters["truncated_record"] == counters["corrupt_header"] == 0


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_classic_pcap_nanoseconds_exact(tmp_path: Path, big: bool) -> None:
    records = [(SEC, 123456789, udp_frame(0)), (SEC + 1, 999999999, udp_frame(1))]
    path = tmp_path / "ns.pcap"
    path.write_bytes(classic_pcap(records, big=big, nanos=True))
    frames, _ = read_frames(path)
    assert [f.ts_ns for f in frames] == [SEC * 10**9 + 123456789, (SEC + 1) * 10**9 + 999999999]
    assert [f.data for f in frames] == [udp_frame(0), udp_frame(1)]


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_classic_pcap_modified_kuznetsov(tmp_path: Path, big: bool) -> None:
    records = [(SEC, 500000, udp_frame(i)) for i in range(4)]
    path = tmp_path / "kuz.pcap"
    path.write_bytes(classic_pcap(records, big=big, kuznetsov=True))
    frames, counters = read_frames(path)
    assert [f.data for f in frames] == [r[2] for r in records]
    assert frames[0].ts_ns == SEC * 10**9 + 500_000_000
    assert counters["frames"] == 4


def test_classic_pcap_linktype_ignores_fcs_bits(tmp_path: Path) -> None:
    path = tmp_path / "fcs.pcap"
    path.write_bytes(classic_pcap([(SEC, 0, raw_ip_frame(1))], linktype=LINKTYPE_RAW | 0x1000_0000))
    frames, _ = read_frames(path)
    assert [f.linktype for f in frames] == [LINKTYPE_RAW]


def test_classic_pcap_replays_to_flows(tmp_path: Path) -> None:
    path = tmp_path / "flows.pcap"
    path.write_bytes(classic_pcap([(SEC, 0, udp_frame(i)) for i in range(3)], big=True))
    flows = of_type(replay([path]), "flow")
    assert sorted(f["sport"] for f in flows) == [10000, 10001, 10002]
    assert {(f["src"], f["dst"], f["dport"]) for f in flows} == {
        ("192.0.2.1", "198.51.100.1", 9999)
    }


# -- pcapng ---------------------------------------------------------------------------------


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def block(btype: int, body: bytes, bo: str = "<") -> bytes:
    body = _pad4(body)
    total = 12 + len(body)
    return struct.pack(bo + "II", btype, total) + body + struct.pack(bo + "I", total)


def shb(bo: str = "<") -> bytes:
    return block(BT_SHB, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1), bo)


def option(code: int, value: bytes, bo: str = "<") -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + _pad4(value)


def idb(
    linktype: int, *, tsresol: int | None = None, tsoffset: int | None = None, bo: str = "<"
) -> bytes:
    opts = option(2, b"eth-test", bo)  # if_name, to check that options are walked
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), bo)
    if tsoffset is not None:
        opts += option(14, struct.pack(bo + "q", tsoffset), bo)
    opts += option(0, b"", bo)
    return block(BT_IDB, struct.pack(bo + "HHI", linktype, 0, 262144) + opts, bo)


def epb(iface: int, ts: int, frame: bytes, bo: str = "<") -> bytes:
    head = struct.pack(bo + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
    return block(BT_EPB, head + _pad4(frame) + option(0, b"", bo), bo)


def spb(frame: bytes, bo: str = "<") -> bytes:
    return block(BT_SPB, struct.pack(bo + "I", len(frame)) + frame, bo)


def obsolete_pb(iface: int, ts: int, frame: bytes, bo: str = "<") -> bytes:
    head = struct.pack(bo + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
    return block(BT_PB, head + frame, bo)


def test_pcapng_interfaces_with_resolutions_and_offset(tmp_path: Path) -> None:
    data = b"".join(
        [
            shb(),
            idb(LINKTYPE_ETHERNET),  # 0: microseconds by default
            idb(LINKTYPE_RAW, tsresol=9),  # 1: nanoseconds
            idb(LINKTYPE_ETHERNET, tsresol=0x80 | 20),  # 2: 2^-20 s
            idb(LINKTYPE_RAW, tsoffset=1000),  # 3: microseconds from 1000 s after the epoch
            epb(0, SEC * 10**6 + 123456, udp_frame(0)),
            epb(1, SEC * 10**9 + 123456789, raw_ip_frame(1)),
            epb(2, (SEC << 20) | (1 << 19), udp_frame(2)),  # exactly half a second
            epb(3, 5, raw_ip_frame(3)),
        ]
    )
    path = tmp_path / "ifaces.pcapng"
    path.write_bytes(data)
    frames, counters = read_frames(path)
    assert [(f.iface, f.linktype) for f in frames] == [
        (0, LINKTYPE_ETHERNET),
        (1, LINKTYPE_RAW),
        (2, LINKTYPE_ETHERNET),
        (3, LINKTYPE_RAW),
    ]
    assert [f.ts_ns for f in frames] == [
        SEC * 10**9 + 123_456_000,
        SEC * 10**9 + 123_456_789,
        SEC * 10**9 + 500_000_000,
        1000 * 10**9 + 5000,
    ]
    assert [f.data for f in frames] == [
        udp_frame(0),
        raw_ip_frame(1),
        udp_frame(2),
        raw_ip_frame(3),
    ]
    assert counters["frames"] == 4
    assert counters["unknown_interface"] == counters["bad_block"] == 0


def test_pcapng_mixed_link_types_replay(tmp_path: Path) -> None:
    data = shb() + idb(LINKTYPE_ETHERNET) + idb(LINKTYPE_RAW)
    data += epb(0, SEC * 10**6, udp_frame(0)) + epb(1, SEC * 10**6 + 1, raw_ip_frame(1))
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(data)
    flows = of_type(replay([path]), "flow")
    assert sorted((f["src"], f["sport"], f["dst"], f["dport"]) for f in flows) == [
        ("192.0.2.1", 10000, "198.51.100.1", 9999),
        ("203.0.113.5", 20001, "203.0.113.6", 7),
    ]


def test_pcapng_several_sections_and_big_endian(tmp_path: Path) -> None:
    data = b"".join(
        [
            shb("<"),
            idb(LINKTYPE_ETHERNET),
            idb(LINKTYPE_ETHERNET),
            epb(1, SEC * 10**6 + 1, udp_frame(0)),
            # A second section, big-endian: its interface ids start again from 0.
            shb(">"),
            idb(LINKTYPE_RAW, tsresol=9, bo=">"),
            epb(0, SEC * 10**9 + 7, raw_ip_frame(1), bo=">"),
            epb(1, SEC * 10**9 + 8, raw_ip_frame(2), bo=">"),  # no interface 1 here
            # A third, little-endian again.
            shb("<"),
            idb(LINKTYPE_ETHERNET),
            epb(0, SEC * 10**6 + 3, udp_frame(3)),
        ]
    )
    path = tmp_path / "sections.pcapng"
    path.write_bytes(data)
    frames, counters = read_frames(path)
    assert [(f.linktype, f.ts_ns, f.data) for f in frames] == [
        (LINKTYPE_ETHERNET, SEC * 10**9 + 1000, udp_frame(0)),
        (LINKTYPE_RAW, SEC * 10**9 + 7, raw_ip_frame(1)),
        (LINKTYPE_ETHERNET, SEC * 10**9 + 3000, udp_frame(3)),
    ]
    assert counters["unknown_interface"] == 1


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    data = b"".join(
        [
            shb(),
            idb(LINKTYPE_ETHERNET),
            epb(0, SEC * 10**6 + 10, udp_frame(0)),
            spb(udp_frame(1)),  # no timestamp, interface 0
            obsolete_pb(0, SEC * 10**6 + 30, udp_frame(2)),
            spb(udp_frame(3)),
        ]
    )
    path = tmp_path / "blocks.pcapng"
    path.write_bytes(data)
    frames, counters = read_frames(path)
    assert [f.data for f in frames] == [udp_frame(i) for i in range(4)]
    assert {f.linktype for f in frames} == {LINKTYPE_ETHERNET}
    assert frames[2].ts_ns == SEC * 10**9 + 30_000
    # A Simple Packet Block has no time: it must not move the clock backwards.
    assert [f.ts_ns for f in frames] == sorted(f.ts_ns for f in frames)
    assert counters["bad_block"] == 0


def test_pcapng_unknown_blocks_are_skipped_and_counted(tmp_path: Path) -> None:
    nrb = block(BT_NRB, struct.pack("<HH", 0, 0))
    isb = block(BT_ISB, struct.pack("<III", 0, 0, 0))
    custom = block(0x40000BAD, b"\x00\x00\x7e\xd9" + b"z" * 5000)  # longer than a small chunk
    data = b"".join(
        [
            shb(),
            nrb,
            idb(LINKTYPE_ETHERNET),
            epb(0, SEC * 10**6, udp_frame(0)),
            custom,
            epb(0, SEC * 10**6 + 1, udp_frame(1)),
            isb,
        ]
    )
    path = tmp_path / "unknown.pcapng"
    path.write_bytes(data)
    for chunk_size in (64, 1000, 4 << 20):
        frames, counters = read_frames(path, chunk_size)
        assert [f.data for f in frames] == [udp_frame(0), udp_frame(1)], chunk_size
        assert counters["skipped_blocks"] == 3, chunk_size


def test_pcapng_truncated_last_block(tmp_path: Path) -> None:
    data = shb() + idb(LINKTYPE_ETHERNET)
    data += b"".join(epb(0, SEC * 10**6 + i, udp_frame(i)) for i in range(3))
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-10])
    frames, counters = read_frames(path)
    assert [f.data for f in frames] == [udp_frame(0), udp_frame(1)]
    assert counters["truncated_record"] == 1


# -- compression, several files, stdin ------------------------------------------------------


@functools.cache
def mixed_capture() -> bytes:
    """A capture with TCP, UDP and DNS in both directions over a few seconds."""
    frames: list[tuple[float, bytes]] = []
    for i in range(20):
        ts = 100.0 + i * 0.37
        client = f"10.0.{i % 3}.1"
        frames.append(
            (
                ts,
                bytes(
                    eth()
                    / IP(src=client, dst="10.9.9.9")
                    / UDP(sport=40000 + i, dport=53)
                    / DNS(id=i, rd=1, qd=DNSQR(qname=f"host{i}.example.org"))
                ),
            )
        )
        frames.append(
            (
                ts + 0.01,
                bytes(
                    eth()
                    / IP(src="10.9.9.9", dst=client)
                    / UDP(sport=53, dport=40000 + i)
                    / DNS(id=i, qr=1, qd=DNSQR(qname=f"host{i}.example.org"))
                ),
            )
        )
        frames.append(
            (
                ts + 0.02,
                bytes(
                    eth()
                    / IPv6(src="2001:db8::1", dst="2001:db8::2")
                    / TCP(sport=50000 + i % 4, dport=443, flags="PA")
                    / Raw(b"t" * (i * 53 % 1400))
                ),
            )
        )
    return pcap_bytes(frames)


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, lzma.compress, bz2.compress],
    ids=["gzip", "xz", "bzip2"],
)
def test_compressed_files_give_the_plain_records(tmp_path: Path, compress: Any) -> None:
    plain = tmp_path / "plain.pcap"
    plain.write_bytes(mixed_capture())
    packed = tmp_path / "packed.pcap.z"
    packed.write_bytes(compress(plain.read_bytes()))
    expected = replay([plain])
    assert replay([packed])[:-1] == expected[:-1]
    assert replay([packed], chunk_size=1000)[:-1] == expected[:-1]
    stats = replay([packed])[-1]
    assert stats["packets"] == 60
    assert stats["capture"]["truncated_record"] == 0


def test_damaged_gzip_keeps_the_records_before_the_damage(tmp_path: Path) -> None:
    plain = mixed_capture()
    packed = gzip.compress(plain)
    cut = packed[: len(packed) // 2]
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(cut)
    # What a decompressor gives of the cut file, and the complete records in it.
    prefix = zlib.decompressobj(wbits=31).decompress(cut)
    complete, pos = 0, 24
    while pos + 16 <= len(prefix):
        (caplen,) = struct.unpack_from("<I", prefix, pos + 8)
        if pos + 16 + caplen > len(prefix):
            break
        complete, pos = complete + 1, pos + 16 + caplen
    assert 0 < complete < 60
    stats = replay([path])[-1]
    assert stats["packets"] == complete
    assert stats["capture"]["truncated_record"] == 1


def test_several_files_are_one_capture(tmp_path: Path) -> None:
    query = eth() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=33333, dport=53)
    query /= DNS(id=5, rd=1, qd=DNSQR(qname="example.org"))
    response = eth() / IP(src="10.0.0.53", dst="10.0.0.1") / UDP(sport=53, dport=33333)
    response /= DNS(id=5, qr=1, qd=DNSQR(qname="example.org"))
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcapng"
    first.write_bytes(pcap_bytes([(100.0, bytes(query))]))
    second.write_bytes(shb() + idb(LINKTYPE_ETHERNET) + epb(0, 100_250_000, bytes(response)))
    records = replay([first, second])
    (flow,) = of_type(records, "flow")
    assert (flow["pkts_up"], flow["pkts_down"]) == (1, 1)
    (dns,) = of_type(records, "dns")
    assert dns["status"] == "answered"
    assert dns["rtt"] == pytest.approx(0.25)
    capture = records[-1]["capture"]
    assert capture["files"] == 2
    assert capture["frames"] == 2
    assert capture["format.pcap"] == capture["format.pcapng"] == 1


def _records_of_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_stdin_dash_reads_the_capture(tmp_path: Path) -> None:
    path = tmp_path / "in.pcap"
    path.write_bytes(gzip.compress(mixed_capture()))
    out = tmp_path / "out.jsonl"
    with path.open("rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "agent", "replay", "-", "--events", str(out), "-q"],
            stdin=stdin,
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    records = _records_of_lines(out.read_text())
    expected = json.loads(json.dumps(replay([path])))
    assert records[:-1] == expected[:-1]
    assert records[-1]["packets"] == 60


def test_a_named_pipe_reads_like_the_file(tmp_path: Path) -> None:
    """A path that cannot seek (a FIFO, bash's <(...)) is read through its buffer: the bytes
    peeked for the magic number are not lost."""
    path = tmp_path / "mixed.pcap"
    path.write_bytes(mixed_capture())
    fifo = tmp_path / "pipe.pcap"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()))
    writer.start()
    try:
        records = replay([fifo])
    finally:
        writer.join(10)
    assert records[:-1] == replay([path])[:-1]
    assert records[-1]["packets"] == 60


def test_stdin_only_once() -> None:
    with pytest.raises(CaptureError):
        open_sources(["-", "-"])


# -- damage ---------------------------------------------------------------------------------


def test_truncated_last_record_is_counted_and_the_rest_processed(tmp_path: Path) -> None:
    frames = [(100.0 + i, udp_frame(i)) for i in range(5)]
    data = pcap_bytes(frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-7])  # inside the last frame
    for chunk_size in (64, 4 << 20):
        records = replay([path], chunk_size=chunk_size)
        flows = of_type(records, "flow")
        assert sorted(f["sport"] for f in flows) == [10000, 10001, 10002, 10003], chunk_size
        assert records[-1]["capture"]["truncated_record"] == 1
        assert records[-1]["capture"]["frames"] == 4


def test_truncated_record_header_is_counted(tmp_path: Path) -> None:
    data = pcap_bytes([(100.0, udp_frame(0)), (101.0, udp_frame(1))])
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) - len(udp_frame(1)) - 9])  # 7 bytes of a 16-byte header
    frames, counters = read_frames(path)
    assert [f.data for f in frames] == [udp_frame(0)]
    assert counters["truncated_record"] == 1


def test_corrupt_record_header_stops_the_file(tmp_path: Path) -> None:
    good = pcap_bytes([(100.0 + i, udp_frame(i)) for i in range(3)])
    bad = struct.pack("<IIII", 103, 0, 262145, 262145) + b"\0" * 64
    after = pcap_bytes([(104.0, udp_frame(9))])[24:]  # a valid record after the damage
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(good + bad + after)
    records = replay([path])
    assert sorted(f["sport"] for f in of_type(records, "flow")) == [10000, 10001, 10002]
    capture = records[-1]["capture"]
    assert capture["corrupt_header"] == 1
    assert capture["frames"] == 3
    assert capture["truncated_record"] == 0


def test_caplen_at_the_libpcap_bound_is_not_corrupt(tmp_path: Path) -> None:
    frame = udp_frame(0) + b"\0" * (262144 - len(udp_frame(0)))
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_bytes([(100.0, frame)]))
    frames, counters = read_frames(path)
    assert len(frames) == 1
    assert len(frames[0].data) == 262144
    assert counters["corrupt_header"] == 0


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is a text file, not a capture\n", b"\xd4\xc3", bytes(range(256)) * 4],
    ids=["empty", "text", "short", "binary"],
)
def test_not_a_capture_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match="not a pcap or pcapng"):
        CaptureSource(str(path))
    with pytest.raises(CaptureError):
        replay([path])


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"missing\.pcap"):
        CaptureSource(str(tmp_path / "missing.pcap"))
    with pytest.raises(CaptureError):
        CaptureSource(str(tmp_path))


def test_open_sources_fails_before_any_work(tmp_path: Path) -> None:
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_bytes([(100.0, udp_frame(0))]))
    with pytest.raises(CaptureError, match="nope"):
        open_sources([str(good), str(tmp_path / "nope.pcap")])


# -- chunk boundaries -----------------------------------------------------------------------


def test_descriptor_layout_matches_the_extension() -> None:
    assert DESC.size == DESC_SIZE


@pytest.mark.parametrize("chunk_size", [64, 1000, 4096])
def test_chunk_size_does_not_change_records_pcap(tmp_path: Path, chunk_size: int) -> None:
    path = tmp_path / "mixed.pcap"
    path.write_bytes(mixed_capture())
    assert replay([path], chunk_size=chunk_size) == replay([path])


@pytest.mark.parametrize("chunk_size", [64, 1000, 4096])
def test_chunk_size_does_not_change_frames_pcapng(tmp_path: Path, chunk_size: int) -> None:
    bo = "<"
    blocks = [shb(bo), idb(LINKTYPE_ETHERNET), idb(LINKTYPE_RAW, tsresol=9)]
    for i in range(40):
        frame = udp_frame(i) + b"q" * (i * 37 % 900)
        blocks.append(epb(0, SEC * 10**6 + i, frame, bo))
        blocks.append(epb(1, SEC * 10**9 + i, raw_ip_frame(i), bo))
        if i % 9 == 0:
            blocks.append(block(0x00000BAD, b"r" * (i * 11), bo))
        if i == 20:  # a big-endian section from here on
            bo = ">"
            blocks += [shb(bo), idb(LINKTYPE_ETHERNET, bo=bo), idb(LINKTYPE_RAW, tsresol=9, bo=bo)]
            blocks.append(spb(udp_frame(99), bo))
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(b"".join(blocks))
    expected = read_frames(path)
    assert len(expected[0]) == 81
    assert read_frames(path, chunk_size) == expected
    assert replay([path], chunk_size=chunk_size) == replay([path])
