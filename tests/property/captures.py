"""pcap and pcapng streams for the property tests, with the descriptors a walker should give.

Each builder returns a Capture: the bytes, the offsets where a record (or block) ends, and the
expected descriptors (ts_ns, caplen, wirelen, linktype, iface, frame bytes). pcapng streams have
one or two sections of either byte order, several interfaces with if_tsresol/if_tsoffset,
Enhanced, Simple and obsolete Packet Blocks, and blocks the walker skips (Name Resolution,
Interface Statistics, Decryption Secrets, custom).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hypothesis import strategies as st

DESC = struct.Struct("<QIIIHHII")
PCAP_MAGIC_US, PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
SKIPPED_BLOCK_TYPES = (0x00000004, 0x00000005, 0x0000000A, 0x00000BAD, 0x40000BAD)


@dataclass
class Capture:
    data: bytes
    boundaries: set[int]  # every offset where a header, record or block ends
    expected: list[tuple[int, int, int, int, int, bytes]] = field(default_factory=list)
    packet_ends: list[int] = field(default_factory=list)  # where each packet record ends


def descriptors(buf: bytes | bytearray, descs: bytes | bytearray, count: int) -> list[tuple]:
    """(ts_ns, caplen, wirelen, linktype, iface, frame) for each of count descriptors."""
    out = []
    for i in range(count):
        ts, off, cap, wire, lt, _tci, _flags, iface = DESC.unpack_from(descs, i * DESC.size)
        out.append((ts, cap, wire, lt, iface, bytes(buf[off : off + cap])))
    return out


frame_bytes = st.binary(min_size=0, max_size=120)


@st.composite
def pcap_files(draw: st.DrawFn) -> Capture:
    """Classic pcap: either byte order, micro- or nanosecond stamps, snapped records."""
    order = draw(st.sampled_from("<>"))
    nanos = draw(st.booleans())
    linktype = draw(st.sampled_from([1, 101, 113, 276, 0, 9]))
    magic = PCAP_MAGIC_NS if nanos else PCAP_MAGIC_US
    data = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    cap = Capture(data, {len(data)})
    for _ in range(draw(st.integers(0, 5))):
        frame = draw(frame_bytes)
        sec = draw(st.integers(0, 2**32 - 1))
        frac = draw(st.integers(0, 999_999_999 if nanos else 999_999))
        wire = len(frame) + draw(st.sampled_from([0, 0, 1, 1000]))
        cap.data += struct.pack(order + "IIII", sec, frac, len(frame), wire) + frame
        cap.boundaries.add(len(cap.data))
        cap.packet_ends.append(len(cap.data))
        ts = sec * 10**9 + (frac if nanos else frac * 1000)
        cap.expected.append((ts, len(frame), wire, linktype, 0, frame))
    return cap


def _block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


@dataclass
class _Iface:
    linktype: int
    pow2: bool
    exp: int
    offset_s: int

    def ts_ns(self, units: int) -> int:
        base = self.offset_s * 10**9
        if self.pow2:
            return base + ((units * 10**9) >> self.exp)
        if self.exp <= 9:
            return base + units * 10 ** (9 - self.exp)
        return base + units // 10 ** (self.exp - 9)


@st.composite
def pcapng_files(draw: st.DrawFn, skipped_blocks: bool = True) -> Capture:
    cap = Capture(b"", set())
    last_ts = 0
    for _ in range(draw(st.integers(1, 2))):  # sections
        order = draw(st.sampled_from("<>"))
        shb_opts = b""
        if draw(st.booleans()):
            shb_opts = _option(order, 4, b"tapsense-test") + _option(order, 0, b"")
        cap.data += _block(
            order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts
        )
        cap.boundaries.add(len(cap.data))
        ifaces: list[_Iface] = []
        for _ in range(draw(st.integers(0, 10))):
            kind = draw(st.sampled_from(["idb", "idb", "epb", "epb", "epb", "spb", "pb", "skip"]))
            if kind == "idb" or (kind != "skip" and not ifaces):
                itf = _Iface(
                    draw(st.sampled_from([1, 101, 113, 276, 228, 229])),
                    draw(st.booleans()),
                    0,
                    draw(st.sampled_from([0, 0, 1_600_000_000])),
                )
                itf.exp = draw(st.sampled_from([10, 20, 30] if itf.pow2 else [3, 6, 6, 9]))
                opts = b""
                if itf.pow2 or itf.exp != 6 or draw(st.booleans()):
                    opts += _option(order, 9, bytes([(0x80 if itf.pow2 else 0) | itf.exp]))
                if itf.offset_s:
                    opts += _option(order, 14, struct.pack(order + "q", itf.offset_s))
                if opts:
                    opts += _option(order, 2, b"eth0") + _option(order, 0, b"")
                body = struct.pack(order + "HHI", itf.linktype, 0, 262144) + opts
                cap.data += _block(order, 1, body)
                ifaces.append(itf)
            elif kind == "skip":
                if not skipped_blocks:
                    continue
                btype = draw(st.sampled_from(SKIPPED_BLOCK_TYPES))
                cap.data += _block(order, btype, draw(st.binary(max_size=40)))
            else:
                frame = draw(frame_bytes)
                iface = draw(st.integers(0, len(ifaces) - 1)) if kind != "spb" else 0
                itf = ifaces[iface]
                if kind == "spb":
                    body = struct.pack(order + "I", len(frame)) + frame
                    wire, ts = len(frame), last_ts
                else:
                    wire = len(frame) + draw(st.sampled_from([0, 0, 4, 1000]))
                    units = draw(st.integers(0, 2**40))
                    ts = last_ts = itf.ts_ns(units)
                    head = (
                        struct.pack(order + "I", iface)
                        if kind == "epb"
                        else struct.pack(order + "HH", iface, 0)
                    )
                    head += struct.pack(order + "II", units >> 32, units & 0xFFFFFFFF)
                    body = head + struct.pack(order + "II", len(frame), wire) + frame
                    body += b"\x00" * (-len(body) % 4)
                    if draw(st.booleans()):
                        body += _option(order, 1, b"comment") + _option(order, 0, b"")
                btype = {"epb": 6, "spb": 3, "pb": 2}[kind]
                cap.data += _block(order, btype, body)
                cap.packet_ends.append(len(cap.data))
                cap.expected.append((ts, len(frame), wire, itf.linktype, iface, frame))
            cap.boundaries.add(len(cap.data))
    return cap
