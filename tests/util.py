"""Helpers shared by the tests: replay captures through the pipeline, write pcaps."""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.capfile import CaptureSource, replay_batches
from agent.config import Config
from agent.core import Pipeline
from agent.record import Record


def replay(
    paths: Iterable[str | Path], config: Config | None = None, chunk_size: int = 4 << 20
) -> list[Record]:
    """Every record a replay of the files gives, the final stats record included."""
    pipeline = Pipeline(config)
    capture: Counter[str] = Counter()
    sources = [CaptureSource(str(p), chunk_size=chunk_size) for p in paths]
    records: list[Record] = []
    for batch in replay_batches(sources, capture, lambda _done: None):
        records += pipeline.feed(batch)
    records += pipeline.drain()
    records.append(pipeline.stats_record(capture=dict(capture)))
    return records


def of_type(records: list[Record], kind: str) -> list[Record]:
    return [r for r in records if r["type"] == kind]


def pcap_bytes(frames: Iterable[tuple[float, bytes]], linktype: int = 1) -> bytes:
    """A classic little-endian microsecond pcap of (timestamp, frame) pairs."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for ts, frame in frames:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return b"".join(out)


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05
) -> Any:
    """Polls `condition` until it returns something true; TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(interval_s)
