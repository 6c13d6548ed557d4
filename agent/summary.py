"""Windows of records: the batches a sensor ships, with their rollups.

Sans-IO. Records go into the open window as the pipeline emits them; `tick(now)` closes
every window whose end has passed (windows are aligned to multiples of `window_s` of the
pipeline's clock: packet time in a replay, wall-clock time live) and returns their batch
messages (agent/wire.py). A batch carries its records (or, with `records=False`, only the
rollups), the rollups of the window, and the sensor's stats at its end. A replay numbers
its batches from `first_seq` in order, so replaying the same input again gives the same
batches, which the collector stores once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.record import Record
from agent.wire import batch_message

NS = 1_000_000_000


def rollups(records: list[Record]) -> dict[str, Any]:
    """Per-window totals that need no record to be shipped.

    names: [name, flows, pkts_up, bytes_up, pkts_down, bytes_down] per flow name (null for
    flows without one); qnames: [qname, rcode, queries] per DNS name and answer code (rcode
    null: unanswered).
    """
    names: dict[str | None, list[Any]] = {}
    flows_of: dict[str | None, set[str]] = {}
    qnames: dict[tuple[str | None, int | None], int] = {}
    for r in records:
        kind = r["type"]
        if kind == "flow":
            name = r["name"]  # type: ignore[typeddict-item]
            row = names.get(name)
            if row is None:
                row = names[name] = [name, 0, 0, 0, 0, 0]
                flows_of[name] = set()
            flows_of[name].add(r["flow"])  # type: ignore[typeddict-item]
            row[2] += r["pkts_up"]  # type: ignore[typeddict-item]
            row[3] += r["bytes_up"]  # type: ignore[typeddict-item]
            row[4] += r["pkts_down"]  # type: ignore[typeddict-item]
            row[5] += r["bytes_down"]  # type: ignore[typeddict-item]
        elif kind == "dns" and r["status"] != "unsolicited":  # type: ignore[typeddict-item]
            key = (r["qname"], r["rcode"])  # type: ignore[typeddict-item]
            qnames[key] = qnames.get(key, 0) + 1
    for name, row in names.items():
        row[1] = len(flows_of[name])
    return {
        "names": list(names.values()),
        "qnames": [[q, rcode, n] for (q, rcode), n in qnames.items()],
    }


class Summariser:
    def __init__(
        self,
        *,
        sensor: str,
        stream: str,
        stats: Callable[[], dict[str, Any]],
        window_s: float = 10.0,
        records: bool = True,
        compression: str = "zlib",
        first_seq: int = 0,
        heartbeat: bool = False,
    ) -> None:
        """`stats()` gives the sensor's stats at a window's end; with `heartbeat`, a window
        without records still gives a batch (live sensors report their health)."""
        self.sensor = sensor
        self.stream = stream
        self.window_ns = int(window_s * NS)
        self.keep_records = records
        self.compression = compression
        self.next_seq = first_seq
        self.heartbeat = heartbeat
        self._stats = stats
        self._start: int | None = None
        self._records: list[Record] = []

    def add(self, records: list[Record]) -> None:
        self._records.extend(records)

    def tick(self, now_ns: int) -> list[dict[str, Any]]:
        """Closes the windows that ended by now; returns their batches."""
        if self._start is None:
            self._start = now_ns - now_ns % self.window_ns
            return []
        batches = []
        while now_ns >= self._start + self.window_ns:
            end = self._start + self.window_ns
            if self._records or self.heartbeat:
                batches.append(self._close(self._start, end))
            # skip the empty windows of a gap in one step
            self._start = end if self._records else max(end, now_ns - now_ns % self.window_ns)
        return batches

    def flush(self, now_ns: int) -> list[dict[str, Any]]:
        """The batch of the open window, ending now (end of input, shutdown)."""
        if self._start is None:
            self._start = now_ns - now_ns % self.window_ns
        batch = self._close(self._start, max(now_ns, self._start))
        self._start = None
        return [batch]

    def _close(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        records, self._records = self._records, []
        message = batch_message(
            sensor=self.sensor,
            stream=self.stream,
            seq=self.next_seq,
            window=(start_ns / NS, end_ns / NS),
            records=records if self.keep_records else None,
            count=len(records),
            rollups=rollups(records),
            stats=self._stats(),
            compression=self.compression,
        )
        self.next_seq += 1
        return message
