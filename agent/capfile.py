"""Capture files: open pcap/pcapng (plain, gzip, xz, bzip2, or stdin) and read frame batches.

The file is read in large chunks into one buffer; the Cython walker
(ext/capfile.pyx) describes every complete record of a chunk, and the
incomplete tail moves to the front for the next read. Memory is one buffer,
whatever the file size.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import BinaryIO

from agent._capfile import CaptureWalker
from agent.engine import FrameBatch

# A chunk is read, walked and decoded while it is still in the core's L2 cache: with
# 4 MiB chunks the walk and the engine missed it, and replay took 1.5x the CPU (bench/).
CHUNK_SIZE = 512 << 10
_PCAP_MAGICS = {
    bytes.fromhex(m)
    for m in ("d4c3b2a1", "a1b2c3d4", "4d3cb2a1", "a1b23c4d", "34cdb2a1", "a1b2cd34")
}
_PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")


class CaptureError(Exception):
    """A capture source that cannot be read at all (one line, for the user)."""


def _decompressed(raw: BinaryIO) -> BinaryIO:
    head = raw.peek(6)[:6] if isinstance(raw, io.BufferedReader) else b""
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if head[:3] == b"BZh":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    return raw


class CaptureSource:
    """One capture stream (a path, or "-" for stdin), opened and checked."""

    def __init__(self, path: str, chunk_size: int = CHUNK_SIZE) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.walker = CaptureWalker()
        self.damaged = False
        try:
            if path == "-":
                raw: BinaryIO = sys.stdin.buffer  # a BufferedReader: it can peek
                self.size = 0
            else:
                raw = open(path, "rb", buffering=CHUNK_SIZE)  # noqa: SIM115 - closed in close()
                self.size = os.fstat(raw.fileno()).st_size
            self._raw = raw
            self._stream = _decompressed(raw)
            head = self._peek(4)
        except OSError as exc:
            raise CaptureError(f"{path}: {exc.strerror or exc}") from None
        except (EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise CaptureError(f"{path}: damaged compressed data: {exc}") from None
        if head not in _PCAP_MAGICS and head != _PCAPNG_MAGIC:
            self.close()
            raise CaptureError(f"{path}: not a pcap or pcapng file")
        self._plain = self._stream is raw
        if self._plain and path != "-" and raw.seekable():
            # Read the file itself: BufferedReader.readinto of less than its buffer copies
            # every byte twice (file to its buffer, buffer to ours), a fifth of replay's CPU.
            self._raw = self._stream = raw.detach()  # type: ignore[attr-defined]
            self._raw.seek(0)  # the peek read ahead

    def _peek(self, n: int) -> bytes:
        if isinstance(self._stream, io.BufferedReader):
            return self._stream.peek(n)[:n]
        data = self._stream.read(n)
        self._head = data  # replayed by batches()
        return data

    @property
    def position(self) -> int:
        """Bytes of the (possibly compressed) file read so far, for progress."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        if self.path != "-":
            self._raw.close()

    def _read_into(self, view: memoryview) -> int:
        """Fills view as far as the stream allows; returns bytes read (0 at the end).

        A compressed stream that is cut short or damaged ends here: what was
        decompressed before the damage is returned and walked, and `damaged`
        is set so the rest counts as a truncated record.
        """
        got = 0
        plain = self._plain
        while got < len(view) and not self.damaged:
            try:
                if plain:
                    n = self._stream.readinto(view[got:])  # type: ignore[attr-defined]
                else:
                    # read1 hands over what one step decompressed, so damage further
                    # on cannot take back bytes already produced
                    data = self._stream.read1(min(len(view) - got, 1 << 20))  # type: ignore[attr-defined]
                    n = len(data)
                    view[got : got + n] = data
            except (EOFError, OSError, lzma.LZMAError, gzip.BadGzipFile):
                self.damaged = True
                break
            if not n:
                break
            got += n
        return got

    def batches(self) -> Iterator[FrameBatch]:
        """Yields the frames of the stream, one batch per chunk read."""
        buf = bytearray(self.chunk_size)
        filled = 0
        head = getattr(self, "_head", b"")
        buf[: len(head)] = head
        filled = len(head)
        try:
            while True:
                got = self._read_into(memoryview(buf)[filled:])
                eof = got == 0
                filled += got
                view = memoryview(buf)[:filled]
                used, count = self.walker.walk(view)
                if count:
                    yield FrameBatch(view, self.walker.descriptors, count)
                rest = filled - used
                if self.walker.stopped or (eof and (used == 0 or rest == 0 or not count)):
                    self.walker.finish(rest or int(self.damaged))
                    return
                tail = bytes(buf[used:filled])
                if self.walker.need > len(buf):
                    buf = bytearray(max(self.walker.need, 2 * len(buf)))
                buf[: len(tail)] = tail
                filled = len(tail)
        finally:
            self.close()


def open_sources(paths: list[str]) -> list[CaptureSource]:
    """Opens every path first, so a bad one fails before any work is done."""
    if paths.count("-") > 1:
        raise CaptureError("-: standard input can be read only once")
    sources: list[CaptureSource] = []
    try:
        for path in paths:
            sources.append(CaptureSource(path))
    except CaptureError:
        for source in sources:
            source.close()
        raise
    return sources


def replay_batches(
    sources: list[CaptureSource], counters: Counter[str], on_progress: Callable[[int], None]
) -> Iterator[FrameBatch]:
    """Chains the batches of several sources as one capture; sums their counters."""
    done = 0
    for source in sources:
        counters["files"] += 1
        for batch in source.batches():
            yield batch
            on_progress(done + source.position)
        done += source.size
        for name, value in source.walker.counters().items():
            counters[name] += value
        counters[f"format.{source.walker.format}"] += 1
