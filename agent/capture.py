"""Live capture: an AF_PACKET socket with a TPACKET_V3 ring per interface and worker.

ETH_P_ALL, so both directions are seen. The kernel fills blocks of `block_size` bytes
(`block_count` of them) and hands a block over when it is full or `block_timeout_ms` after
its first packet; the engine walks each block in place (ext/ring.pyx) and the block goes
back to the kernel. With several workers, every socket of an interface joins one
PACKET_FANOUT group in hash mode with defragmentation, so the kernel sends both directions
of a flow (and all fragments of a datagram) to the same worker. An optional BPF filter
(agent/bpf.py) is attached before the socket is bound. Promiscuous mode is a socket
membership (PACKET_MR_PROMISC): the kernel drops it when the socket closes.
PACKET_STATISTICS gives, per read, the packets and the kernel drops since the last read.

Opening these sockets needs CAP_NET_RAW, and nothing else; the daemon drops it right after.
"""

from __future__ import annotations

import mmap
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from agent._ring import DESC_SIZE, block_ready, release_block, walk_block
from agent.bpf import AttachableFilter
from agent.engine import FrameBatch

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
TPACKET_V3 = 2
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
SO_ATTACH_FILTER = 26
FRAME_SIZE = 2048  # TPACKET_V3 ignores it for placement; the ring only checks it divides

# ARPHRD_* device types (linux/if_arp.h) to capture link types
LINKTYPE_OF_DEVICE = {1: 1, 772: 1, 65534: 101, 512: 101, 768: 101, 776: 101, 778: 101}


@dataclass(frozen=True, slots=True)
class RingConfig:
    block_size: int = 1 << 20
    block_count: int = 64
    block_timeout_ms: int = 100


class RingCapture:
    def __init__(
        self,
        ifname: str,
        linktype: int,
        ring: RingConfig,
        *,
        promisc: bool = False,
        fanout_group: int | None = None,
        bpf: list[tuple[int, int, int, int]] | None = None,
    ) -> None:
        self.ifname = ifname
        self.linktype = linktype
        self.ring = ring
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            if bpf:
                self._filter = AttachableFilter(bpf)
                self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, self._filter.fprog)
            size = ring.block_size * ring.block_count
            req = struct.pack(
                "IIIIIII",
                ring.block_size,
                ring.block_count,
                FRAME_SIZE,
                size // FRAME_SIZE,
                ring.block_timeout_ms,
                0,
                0,
            )
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self._map = mmap.mmap(
                self.sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
            self.view = memoryview(self._map)
            self.sock.bind((ifname, ETH_P_ALL))
            self.ifindex = socket.if_nametoindex(ifname)
            if promisc:
                mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            if fanout_group is not None:
                mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
                # packed unsigned: with the DEFRAG flag the value is past a C int's range
                fanout = (fanout_group & 0xFFFF) | (mode << 16)
                self.sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", fanout))
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self._next = 0
        self._descs = bytearray(DESC_SIZE * 1024)
        self.corrupt = 0
        self.vlan_stripped = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def take_error(self) -> int:
        """Reads and clears the socket's pending error (ENETDOWN after the link went down):
        until it is read, poll() reports POLLERR at once, forever."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def batches(self) -> Iterator[FrameBatch]:
        """Every block the kernel has handed over, in ring order, as a frame batch.

        The block goes back to the kernel when the consumer asks for the next one, so a
        batch is valid until then (the pipeline has copied what it keeps).
        """
        size = self.ring.block_size
        while True:
            offset = self._next * size
            if not block_ready(self.view, offset):
                return
            count, corrupt, vlans = walk_block(self.view, offset, size, self.linktype, self._descs)
            self.corrupt += corrupt
            self.vlan_stripped += vlans
            try:
                if count:
                    yield FrameBatch(self.view, self._descs, count)
            finally:
                release_block(self.view, offset)
                self._next = (self._next + 1) % self.ring.block_count

    def statistics(self) -> tuple[int, int, int]:
        """(packets, drops, queue freezes) since the last call (tpacket_stats_v3).

        The kernel's packets include the drops; they are taken out here, so packets are
        what reached the ring.
        """
        packets, drops, freezes = struct.unpack(
            "III", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        )
        return packets - drops, drops, freezes

    def close(self) -> None:
        self.view.release()
        self._map.close()
        self.sock.close()
