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

from collections import Counter
from collections.abc import Callable
from typing import Any

from agent.config import Config
from agent.record import Record
from agent.wire import batch_message

NS = 1_000_000_000
MAX_BATCH_RECORDS = 20_000  # about 5 MB before deflate: far below the wire's 16 MiB frames


def rollups(
    records: list[Record], clients: bool = False, merged: Counter[str] | None = None
) -> dict[str, Any]:
    """Per-window totals that need no record to be shipped.

    Traffic rollups have rows [key..., flows, pkts_up, bytes_up, pkts_down, bytes_down]:
    bytes and packets of the window's flow records (a long flow's interim records give its
    traffic per period), flows the number that ended in the window (each flow counts once).
    Keys: names [name] (null: flows without one), categories [category], services
    [service, category] (null: not attributed), and with `clients` [client, category].
    qnames: [qname, rcode, queries] per DNS name and answer code (rcode null: unanswered).
    Each rollup keeps at most MAX_ROLLUP_ROWS rows (see _capped).
    """
    tables: dict[str, dict[tuple[Any, ...], list[Any]]] = {
        "names": {},
        "categories": {},
        "services": {},
    }
    if clients:
        tables["clients"] = {}
    qnames: dict[tuple[str | None, int | None], int] = {}
    for record in records:
        r: dict[str, Any] = record  # type: ignore[assignment]
        kind = r["type"]
        if kind == "flow":
            category = r.get("category")
            keys = {
                "names": (r["name"],),
                "categories": (category,),
                "services": (r.get("service"), category),
            }
            if clients:
                keys["clients"] = (r["src"], category)
            ended = r["end"] != "interim"
            for table, key in keys.items():
                row = tables[table].get(key)
                if row is None:
                    row = tables[table][key] = [*key, 0, 0, 0, 0, 0]
                row[-5] += ended
                row[-4] += r["pkts_up"]
                row[-3] += r["bytes_up"]
                row[-2] += r["pkts_down"]
                row[-1] += r["bytes_down"]
        elif kind == "dns" and r["status"] != "unsolicited":
            key = (r["qname"], r["rcode"])
            qnames[key] = qnames.get(key, 0) + 1
    out: dict[str, Any] = {
        name: _capped(list(rows.values()), KEY_WIDTH[name], merged) for name, rows in tables.items()
    }
    out["qnames"] = _capped([[q, rcode, n] for (q, rcode), n in qnames.items()], 2, merged)
    return out


KEY_WIDTH = {"names": 1, "categories": 1, "services": 2, "clients": 2}


MAX_ROLLUP_ROWS = 10_000  # per rollup and window; the rest is summed into one OTHER row
OTHER = "(other)"


def _capped(rows: list[list[Any]], key_width: int, merged: Counter[str] | None) -> list[list[Any]]:
    """At most MAX_ROLLUP_ROWS rows: the largest (by bytes, or queries), and one row named
    OTHER (its other key fields null) that sums the rest, so that totals stay right however
    many names a flood of random subdomains makes. `merged` counts the rows summed."""
    if len(rows) <= MAX_ROLLUP_ROWS:
        return rows
    traffic = key_width + 5 == len(rows[0])
    rows.sort(key=lambda row: row[-1] + row[-3] if traffic else row[-1], reverse=True)
    kept, rest = rows[: MAX_ROLLUP_ROWS - 1], rows[MAX_ROLLUP_ROWS - 1 :]
    totals = [sum(column) for column in zip(*(row[key_width:] for row in rest), strict=True)]
    if merged is not None:
        merged["rollup_rows_merged"] += len(rest)
    return [*kept, [OTHER, *[None] * (key_width - 1), *totals]]


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
        client_rollups: bool = False,
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
        self.client_rollups = client_rollups
        self.next_seq = first_seq
        self.heartbeat = heartbeat
        self._stats = stats
        self._start: int | None = None
        self._records: list[Record] = []
        self.counters: Counter[str] = Counter()  # what the caps of windows did (stats.caps)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        sensor: str,
        stream: str,
        stats: Callable[[], dict[str, Any]],
        first_seq: int = 0,
        heartbeat: bool = False,
    ) -> Summariser:
        return cls(
            sensor=sensor,
            stream=stream,
            stats=stats,
            window_s=config.ship.window_s,
            records=config.ship.records,
            compression=config.ship.compression,
            client_rollups=config.rollups.clients,
            first_seq=first_seq,
            heartbeat=heartbeat,
        )

    def add(self, records: list[Record]) -> None:
        self._records.extend(records)

    def tick(self, now_ns: int) -> list[dict[str, Any]]:
        """Closes the windows that ended by now; returns their batches."""
        if self._start is None:
            self._start = now_ns - now_ns % self.window_ns
            return []
        end = self._start + self.window_ns
        if now_ns < end:
            return []
        batches = self._close(self._start, end) if self._records or self.heartbeat else []
        # the empty windows of a gap are skipped in one step
        self._start = max(end, now_ns - now_ns % self.window_ns)
        return batches

    def flush(self, now_ns: int) -> list[dict[str, Any]]:
        """The batch of the open window, ending now (end of input, shutdown)."""
        if self._start is None:
            self._start = now_ns - now_ns % self.window_ns
        batches = self._close(self._start, max(now_ns, self._start))
        self._start = None
        return batches

    def _close(self, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """The batches of a window: one, or several of at most MAX_BATCH_RECORDS records
        each (a busy window must not make a frame past the wire's limit); the first carries
        the rollups of the whole window, every one the stats."""
        records, self._records = self._records, []
        shipped = records if self.keep_records else [r for r in records if r["type"] == "intel"]
        window_rollups = rollups(records, self.client_rollups, self.counters)
        chunks = [
            shipped[i : i + MAX_BATCH_RECORDS] for i in range(0, len(shipped), MAX_BATCH_RECORDS)
        ] or [[]]
        if len(chunks) > 1:
            self.counters["windows_split"] += 1
        stats = self._stats()
        if self.counters:
            stats["caps"] = {**stats.get("caps", {}), **self.counters}
        batches = []
        for index, chunk in enumerate(chunks):
            batches.append(
                batch_message(
                    sensor=self.sensor,
                    stream=self.stream,
                    seq=self.next_seq,
                    window=(start_ns / NS, end_ns / NS),
                    # intel hits are few and are the point: they travel even without records
                    records=chunk,
                    # the records each batch stands for: its own, and with the first the
                    # window's records that were not shipped (rollups only)
                    count=len(chunk) + (len(records) - len(shipped) if index == 0 else 0),
                    rollups=window_rollups if index == 0 else {},
                    stats=stats,
                    compression=self.compression,
                )
            )
            self.next_seq += 1
        return batches
