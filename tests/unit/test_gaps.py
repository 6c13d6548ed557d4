"""Across a gap in the traffic, flows end when they expired, not when the next packet came:
their records, and the windows that carry them, keep the hour they belong to."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from agent.capfile import CaptureSource, replay_batches
from agent.config import parse_config
from agent.core import Pipeline
from agent.summary import Summariser
from agent.wire import decode_batch
from tests.builders import udp_frames
from tests.util import pcap_bytes

NOON = 1_762_084_800.0  # 2025-11-02 12:00:00 UTC
UDP_TIMEOUT_S = 60.0


def test_flows_idle_before_a_gap_land_in_the_window_they_expired_in(tmp_path: Path) -> None:
    frames = [
        *udp_frames([b"x" * 100] * 5, client="10.0.0.1", server="192.0.2.1", ts=NOON),
        *udp_frames([b"y" * 100] * 5, client="10.0.0.2", server="192.0.2.2", ts=NOON + 9),
        # two hours of silence, then one packet of another flow
        *udp_frames([b"z"], client="10.0.0.3", server="192.0.2.3", ts=NOON + 7200),
    ]
    pcap = tmp_path / "gap.pcap"
    pcap.write_bytes(pcap_bytes(frames))
    config = parse_config(f"[ship]\nwindow_s = 60.0\n[flow]\nudp_timeout_s = {UDP_TIMEOUT_S}\n")
    pipeline = Pipeline(config)
    counts: Counter[str] = Counter()
    pipeline.summary = Summariser.from_config(
        config, sensor="s", stream="gap", stats=lambda: dict(pipeline.stats_record())
    )
    records = []
    for batch in replay_batches([CaptureSource(str(pcap))], counts, lambda _done: None):
        records += pipeline.feed(batch)
    records += pipeline.drain()
    batches = [decode_batch(b) for b in pipeline.take_batches()]

    ends = {
        r["src"]: r for r in records if r["type"] == "flow" and r["src"] in ("10.0.0.1", "10.0.0.2")
    }
    assert set(ends) == {"10.0.0.1", "10.0.0.2"} and all(r["end"] == "idle" for r in ends.values())
    window_of = {
        r["src"]: b["window"] for b in batches for r in b["records"] if r["type"] == "flow"
    }
    for client, flow in ends.items():
        start, end = window_of[client]
        expired = flow["ts_end"] + UDP_TIMEOUT_S
        assert start <= expired < end + 1, (client, window_of[client], expired)
        assert end < NOON + 3600  # not in the window of the packet two hours later
    # the hour of day of the traffic, from the category rollups as the report reads them
    hours = Counter()
    for b in batches:
        for row in b["rollups"]["categories"]:
            hours[int(b["window"][0] // 3600 % 24)] += row[3] + row[5]
    assert set(hours) == {12, 14} and hours[12] > hours[14]
