"""The on-disk spool: every batch not yet acknowledged by the collector, bounded in size.

One file per batch (the framed message, ready to send) in one directory, written to a
temporary name and renamed into place, so a crash (`kill -9`) leaves whole batches or
none. Durability (`fsync`): "batch" syncs each file and the directory before the batch
counts as spooled, so it survives a power loss too; "never" leaves that to the kernel,
which is enough to survive the death of the process but not of the machine. When the
spool would exceed `max_bytes`, the oldest batches are dropped, and what is dropped is
counted. A restarted sensor finds its unacknowledged batches and sends them again; the
collector keeps one copy of each (sensor, stream, seq).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from agent.wire import FrameReader, WireError

SUFFIX = ".batch"
STATE = "state.json"
EVICTED_REMEMBERED = 4096  # evicted keys whose late acks are still recognised


@dataclass(slots=True)
class Entry:
    path: Path
    size: int
    records: int


class Dropped(NamedTuple):
    """What one Spool.put dropped: older batches to make room, or the batch itself."""

    batches: int = 0
    records: int = 0
    error: str | None = None  # why the batch could not be written (disk full, I/O error)


class Spool:
    def __init__(self, directory: Path, max_bytes: int, fsync: str = "batch") -> None:
        if fsync not in ("batch", "never"):
            raise ValueError(f"fsync must be 'batch' or 'never', not {fsync!r}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], Entry] = OrderedDict()
        self._bytes = 0
        self._order = 0
        self._evicted: OrderedDict[tuple[str, int], int] = OrderedDict()
        self.counters = {
            "spooled": 0,
            "acked": 0,
            "dropped_batches": 0,
            "dropped_records": 0,
            "recovered": 0,
            "unreadable": 0,
            "seq_reused": 0,
            "rejected_batches": 0,
            "rejected_records": 0,
            "write_failed": 0,
        }
        self._recover()

    def _recover(self) -> None:
        """Indexes the batches a previous run left, oldest first."""
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # a write the crash interrupted
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                data = path.read_bytes()
                [message] = FrameReader().feed(data)
                key = (str(message["stream"]), int(message["seq"]))
                count = int(message.get("count", 0))
            except (OSError, WireError, ValueError, KeyError, TypeError):
                self.counters["unreadable"] += 1
                path.unlink(missing_ok=True)
                continue
            self._entries[key] = Entry(path, len(data), count)
            self._bytes += len(data)
            order = path.stem.split("-")[0]
            if order.isdigit():  # a file renamed by hand still counts, in name order
                self._order = max(self._order, int(order) + 1)
            self.counters["recovered"] += 1

    @property
    def size(self) -> int:
        """Bytes of the batches in the spool."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, stream: str, seq: int, framed: bytes, records: int) -> Dropped:
        """Stores a batch (its frame) until it is acknowledged; drops the oldest to fit.

        Returns what it dropped; every drop is also in the counters."""
        with self._lock:
            key = (stream, seq)
            if key in self._entries:  # a number used twice: the second batch cannot go
                self.counters["seq_reused"] += 1
                return self._count_dropped(records)
            if len(framed) > self.max_bytes:  # could never fit: keep what is there
                return self._count_dropped(records)
            evicted = Dropped()
            while self._entries and self._bytes + len(framed) > self.max_bytes:
                old_key, old = self._entries.popitem(last=False)
                self._discard(old)
                self._count_dropped(old.records)
                evicted = Dropped(evicted.batches + 1, evicted.records + old.records)
                self._remember_evicted(old_key, old.records)
            path = self.directory / f"{self._order:016d}-{seq}{SUFFIX}"
            self._order += 1
            try:
                self._write_atomically(path, framed)
            except OSError as exc:  # disk full, I/O error: the batch is lost, counted
                path.with_suffix(".tmp").unlink(missing_ok=True)
                self.counters["write_failed"] += 1
                this = self._count_dropped(records)
                return Dropped(evicted.batches + 1, evicted.records + this.records, str(exc))
            self._entries[key] = Entry(path, len(framed), records)
            self._bytes += len(framed)
            self.counters["spooled"] += 1
            return evicted

    def drop(self, records: int) -> Dropped:
        """Counts a batch that never reached the spool (too large to frame)."""
        with self._lock:
            return self._count_dropped(records)

    def _count_dropped(self, records: int) -> Dropped:
        self.counters["dropped_batches"] += 1
        self.counters["dropped_records"] += records
        return Dropped(1, records)

    def keys(self) -> list[tuple[str, int]]:
        """The (stream, seq) of the batches waiting, oldest first."""
        with self._lock:
            return list(self._entries)

    def read(self, key: tuple[str, int]) -> bytes | None:
        """A waiting batch's frame; None once it is dropped or acknowledged."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            return entry.path.read_bytes()
        except FileNotFoundError:
            return None  # dropped or acknowledged meanwhile

    def pending(self) -> list[tuple[tuple[str, int], bytes]]:
        """The batches waiting, oldest first, with their frames (all in memory: for tests)."""
        return [(key, framed) for key in self.keys() if (framed := self.read(key)) is not None]

    def _remember_evicted(self, key: tuple[str, int], records: int) -> None:
        # A batch may be on the wire when it is evicted; if its ack comes, it was delivered
        # after all and must not stay counted as dropped.
        self._evicted[key] = records
        while len(self._evicted) > EVICTED_REMEMBERED:
            self._evicted.popitem(last=False)

    def reject(self, stream: str, seq: int) -> None:
        """The collector refused the batch for good: it leaves the spool, counted."""
        with self._lock:
            entry = self._entries.pop((stream, seq), None)
            if entry is None:
                return
            self._discard(entry)
            self.counters["rejected_batches"] += 1
            self.counters["rejected_records"] += entry.records

    def ack(self, stream: str, seq: int) -> None:
        with self._lock:
            entry = self._entries.pop((stream, seq), None)
            if entry is None:
                records = self._evicted.pop((stream, seq), None)
                if records is not None:
                    self.counters["dropped_batches"] -= 1
                    self.counters["dropped_records"] -= records
                    self.counters["acked"] += 1
                return
            self._discard(entry)
            self.counters["acked"] += 1

    def _discard(self, entry: Entry) -> None:
        """A batch leaves the spool (acknowledged, refused or evicted); under the lock."""
        entry.path.unlink(missing_ok=True)
        self._bytes -= entry.size

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- the sequence numbers of a live stream survive restarts ----------------------------
    #
    # A (stream, seq) pair names one batch for ever: the collector stores it once. So a
    # restart must never number a new batch with a seq already used. The next seq is the
    # larger of what state.json says and what the spool still holds; and a spool whose
    # state.json is gone (a new disk, a wiped directory) starts a stream of a new name
    # rather than seq 0 of an old one, whose numbers the collector has already stored.

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.directory / STATE).read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self._write_atomically(self.directory / STATE, json.dumps(state).encode())

    def _write_atomically(self, path: Path, data: bytes) -> None:
        """Readers see the old file or the new one, never a part (rename is atomic)."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            if self.fsync == "batch":
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
        if self.fsync == "batch":
            self._sync_directory()

    def stream_name(self, base: str) -> str:
        """The name of this spool's stream `base`: `base.<8 hex digits>`, made once and kept
        in state.json."""
        state = self._state()
        name = state.get(f"name:{base}")
        if isinstance(name, str) and name.startswith(f"{base}."):
            return name
        name = f"{base}.{secrets.token_hex(4)}"
        state[f"name:{base}"] = name
        self._save_state(state)
        return name

    def next_seq(self, stream: str) -> int:
        """The first seq a new batch of `stream` may take."""
        try:
            saved = max(int(self._state().get(stream, 0)), 0)
        except (ValueError, TypeError):
            saved = 0
        with self._lock:
            spooled = [seq for name, seq in self._entries if name == stream]
        return max(saved, max(spooled) + 1 if spooled else 0)

    def save_next_seq(self, stream: str, seq: int) -> None:
        state = self._state()
        state[stream] = seq
        self._save_state(state)
