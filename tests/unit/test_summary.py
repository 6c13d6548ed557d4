"""agent/summary.py: windows of records, their batches and rollups."""

from __future__ import annotations

import base64
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from agent.capfile import CaptureSource, replay_batches
from agent.core import Pipeline
from agent.summary import NS, Summariser, rollups
from agent.wire import decode_batch
from tests.util import pcap_bytes

FLOW_A, FLOW_B, FLOW_C = ("1:" + base64.b64encode(bytes([i]) * 20).decode() for i in (1, 2, 3))


def s(seconds: float) -> int:
    """Nanoseconds of the pipeline clock."""
    return round(seconds * NS)


def flow(name: str | None, flow_id: str, up: tuple[int, int], down: tuple[int, int],
         end: str = "fin", ts: float = 1000.0) -> dict[str, Any]:  # fmt: skip
    return {"type": "flow", "ts": ts, "src": "10.0.0.1", "sport": 40000, "dst": "10.0.0.2",
            "dport": 443, "proto": "tcp", "flow": flow_id, "ts_end": ts + 1, "pkts_up": up[0],
            "bytes_up": up[1], "pkts_down": down[0], "bytes_down": down[1], "end": end,
            "name": name, "name_source": "tls" if name else None}  # fmt: skip


def dns(qname: str | None, rcode: int | None, status: str = "answered") -> dict[str, Any]:
    return {"type": "dns", "ts": 1000.0, "src": "10.0.0.1", "sport": 5353, "dst": "10.0.0.53",
            "dport": 53, "proto": "udp", "flow": FLOW_C, "status": status, "qname": qname,
            "rcode": rcode}  # fmt: skip


class Stats:
    """The stats callable: counts its calls, so each batch's stats are told apart."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"type": "stats", "ts": 0.0, "call": self.calls}


def summariser(**kwargs: Any) -> Summariser:
    options: dict[str, Any] = {"sensor": "tap-01", "stream": "live", "stats": Stats(),
                               "window_s": 10.0, "compression": "none"} | kwargs  # fmt: skip
    return Summariser(**options)


def windows(batches: list[dict[str, Any]]) -> list[list[float]]:
    return [b["window"] for b in batches]


# --- windows -----------------------------------------------------------------------------------


def test_windows_are_aligned_to_multiples_of_window_s() -> None:
    summary = summariser()
    assert summary.tick(s(1003.7)) == []  # the first tick opens the window [1000, 1010)
    summary.add([dns("a.test", 0)])
    assert summary.tick(s(1009.999)) == []
    [batch] = summary.tick(s(1010.0))
    assert batch["window"] == [1000.0, 1010.0]
    assert (batch["sensor"], batch["stream"], batch["seq"], batch["count"]) == (
        "tap-01",
        "live",
        0,
        1,
    )


def test_consecutive_windows_follow_each_other() -> None:
    summary = summariser(window_s=5.0)
    summary.tick(s(12.0))
    out = []
    for second in range(13, 31):
        summary.add([dns(f"n{second}.test", 0)])
        out += summary.tick(s(second))
    assert windows(out) == [[10.0, 15.0], [15.0, 20.0], [20.0, 25.0], [25.0, 30.0]]
    assert [b["count"] for b in out] == [3, 5, 5, 5]
    assert [b["seq"] for b in out] == [0, 1, 2, 3]


def test_a_gap_of_empty_windows_is_skipped_in_one_step() -> None:
    summary = summariser(window_s=1.0)
    summary.tick(s(1000.0))
    summary.add([dns("before.test", 0)])
    far = 1000.0 + 10**9 + 0.25  # a billion empty windows later
    started = time.perf_counter()
    [before] = summary.tick(s(far))
    assert time.perf_counter() - started < 0.5
    assert before["window"] == [1000.0, 1001.0]
    summary.add([dns("after.test", 0)])
    [after] = summary.tick(s(far + 1))
    assert after["window"] == [far - 0.25, far + 0.75]
    assert [before["seq"], after["seq"]] == [0, 1]


def test_empty_windows_give_no_batch_without_heartbeat() -> None:
    summary = summariser()
    for second in range(1000, 1100):
        assert summary.tick(s(second)) == []


def test_heartbeat_gives_a_batch_for_every_window_even_empty() -> None:
    stats = Stats()
    summary = summariser(heartbeat=True, stats=stats)
    out = []
    for second in range(1000, 1031):
        out += summary.tick(s(second))
    assert windows(out) == [[1000.0, 1010.0], [1010.0, 1020.0], [1020.0, 1030.0]]
    for seq, batch in enumerate(out):
        assert (batch["seq"], batch["count"], batch["tables"]) == (seq, 0, {})
        assert batch["rollups"]["names"] == batch["rollups"]["qnames"] == []
        assert all(rows == [] for rows in batch["rollups"].values())
        assert batch["stats"] == {"type": "stats", "ts": 0.0, "call": seq + 1}


def test_flush_closes_the_open_window_at_now() -> None:
    summary = summariser()
    summary.tick(s(1000.0))
    summary.add([dns("a.test", 0), dns("b.test", 3)])
    [batch] = summary.flush(s(1004.5))
    assert batch["window"] == [1000.0, 1004.5]
    assert batch["count"] == 2
    summary.add([dns("c.test", 0)])  # after a flush, the next tick opens a new window
    assert summary.tick(s(1020.0)) == []
    [again] = summary.tick(s(1030.0))
    assert again["window"] == [1020.0, 1030.0] and again["seq"] == 1


def test_flush_without_a_tick_and_without_records() -> None:
    summary = summariser()
    [batch] = summary.flush(s(1234.5))
    assert batch["window"] == [1230.0, 1234.5]
    assert (batch["count"], batch["tables"], batch["seq"]) == (0, {}, 0)


def test_seq_numbers_start_at_first_seq_and_count_every_batch() -> None:
    summary = summariser(first_seq=41, heartbeat=True)
    summary.tick(s(1000.0))
    out = summary.tick(s(1010.0)) + summary.tick(s(1020.0)) + summary.flush(s(1025.0))
    assert [b["seq"] for b in out] == [41, 42, 43]
    assert summary.next_seq == 44


def test_stats_are_taken_when_each_window_closes() -> None:
    stats = Stats()
    summary = summariser(stats=stats)
    summary.tick(s(1000.0))
    assert stats.calls == 0
    summary.add([dns("a.test", 0)])
    [batch] = summary.tick(s(1010.0))
    assert stats.calls == 1 and batch["stats"]["call"] == 1


# --- what a batch carries -----------------------------------------------------------------------


def sample() -> list[dict[str, Any]]:
    return [
        flow("a.test", FLOW_A, (3, 300), (4, 4000), end="interim"),
        flow("a.test", FLOW_A, (1, 100), (2, 2000)),  # the same flow's last period
        flow("a.test", FLOW_B, (5, 500), (6, 6000)),
        flow(None, FLOW_C, (7, 700), (8, 8000)),
        flow(None, FLOW_A, (1, 1), (1, 1)),
        dns("a.test", 0),
        dns("a.test", 0),
        dns("nx.test", 3),
        dns("lost.test", None, status="unanswered"),
        dns("stray.test", 0, status="unsolicited"),
        {"type": "tls", "ts": 1000.0, "flow": FLOW_A, "sni": "a.test"},
    ]


def test_rollups_count_distinct_flows_and_sum_per_name() -> None:
    result = rollups(sample())  # type: ignore[arg-type]
    assert sorted(result["names"], key=repr) == sorted(
        [["a.test", 2, 9, 900, 12, 12000], [None, 2, 8, 701, 9, 8001]], key=repr
    )


def test_rollups_count_queries_per_name_and_rcode_null_when_unanswered() -> None:
    result = rollups(sample())  # type: ignore[arg-type]
    assert sorted(result["qnames"], key=repr) == sorted(
        [["a.test", 0, 2], ["nx.test", 3, 1], ["lost.test", None, 1]], key=repr
    )


def test_rollups_of_nothing() -> None:
    empty = rollups([])
    assert empty["names"] == empty["qnames"] == []
    assert all(rows == [] for rows in empty.values())


def test_a_batch_carries_its_records_and_their_rollups() -> None:
    summary = summariser()
    summary.tick(s(1000.0))
    summary.add(sample())  # type: ignore[arg-type]
    [batch] = summary.tick(s(1010.0))
    assert batch["count"] == len(sample())
    assert batch["rollups"] == rollups(sample())  # type: ignore[arg-type]
    assert decode_batch(batch)["records"] == sample()


def test_records_false_ships_no_tables_but_the_same_rollups_and_count() -> None:
    batches = {}
    for keep in (True, False):
        summary = summariser(records=keep)
        summary.tick(s(1000.0))
        summary.add(sample())  # type: ignore[arg-type]
        [batches[keep]] = summary.tick(s(1010.0))
    assert batches[False]["tables"] == {}
    assert batches[True]["tables"] != {}
    assert decode_batch(batches[False])["records"] == []
    for key in ("rollups", "count", "window", "seq", "stats"):
        assert batches[False][key] == batches[True][key], key


def test_tables_are_deflated_by_default_and_decode_to_the_records() -> None:
    summary = summariser(compression="zlib")
    summary.tick(s(1000.0))
    summary.add(sample())  # type: ignore[arg-type]
    [batch] = summary.tick(s(1010.0))
    assert isinstance(batch["tables"], bytes)
    assert decode_batch(batch)["records"] == sample()


# --- through the pipeline: the same batches whatever the chunk size -----------------------------


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minute of DNS (answered, NXDOMAIN, unanswered) and short TCP connections."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    server = "10.0.0.53"
    frames = []
    for k in range(40):
        t = 1_700_000_000.0 + k * 1.7
        client = f"10.0.1.{k % 7 + 1}"
        qd = DNSQR(qname=f"n{k % 5}.example.org")
        frames.append((t, eth / IP(src=client, dst=server) / UDP(sport=20000 + k, dport=53)
                       / DNS(id=k, rd=1, qd=qd)))  # fmt: skip
        if k % 4:
            rcode = 3 if k % 4 == 3 else 0
            an = DNSRR(rrname=qd.qname, rdata="192.0.2.1") if rcode == 0 else None
            frames.append((t + 0.01, eth / IP(src=server, dst=client)
                           / UDP(sport=53, dport=20000 + k)
                           / DNS(id=k, qr=1, rcode=rcode, qd=qd, an=an)))  # fmt: skip
        if k % 3 == 0:
            web = "192.0.2.80"
            for dt, src, dst, sport, dport, flags in (
                (0.2, client, web, 30000 + k, 80, "S"),
                (0.21, web, client, 80, 30000 + k, "SA"),
                (0.22, client, web, 30000 + k, 80, "A"),
                (0.5, client, web, 30000 + k, 80, "FA"),
                (0.51, web, client, 80, 30000 + k, "FA"),
            ):
                frames.append((t + dt, eth / IP(src=src, dst=dst)
                               / TCP(sport=sport, dport=dport, flags=flags)))  # fmt: skip
    path = tmp_path_factory.mktemp("summary") / "minute.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in sorted(frames, key=lambda f: f[0])]))
    return path


def replay_batches_of(path: Path, chunk_size: int) -> tuple[list[dict[str, Any]], int]:
    """The batches a replay ships, and how many records the pipeline emitted."""
    pipeline = Pipeline()
    pipeline.summary = Summariser(
        sensor="tap-01",
        stream="replay-test",
        window_s=10.0,
        stats=lambda: dict(pipeline.stats_record()),
    )
    batches: list[dict[str, Any]] = []
    emitted = 0
    capture: Counter[str] = Counter()
    for chunk in replay_batches([CaptureSource(str(path), chunk_size)], capture, lambda _: None):
        emitted += len(pipeline.feed(chunk))
        batches += pipeline.take_batches()
    emitted += len(pipeline.drain())
    batches += pipeline.take_batches()
    return batches, emitted


CHUNK_SIZES = (4 << 20, 4096, 300)


def test_a_replay_ships_windows_of_packet_time_numbered_in_order(capture: Path) -> None:
    batches, emitted = replay_batches_of(capture, 4 << 20)
    assert len(batches) >= 6
    assert [b["seq"] for b in batches] == list(range(len(batches)))
    assert sum(b["count"] for b in batches) == emitted
    for batch in batches[:-1]:
        start, end = batch["window"]
        assert start % 10 == 0 and end == start + 10
    for earlier, later in itertools.pairwise(batches):
        assert earlier["window"][1] <= later["window"][0]
    records = [r for b in batches for r in decode_batch(b)["records"]]
    assert {r["type"] for r in records} == {"dns", "flow"}
    assert {r["rcode"] for r in records if r["type"] == "dns"} == {0, 3, None}


def _without_stats(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.items() if k != "stats"} for b in batches]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES[1:])
def test_the_same_windows_records_and_rollups_whatever_the_chunk_size(
    capture: Path, chunk_size: int
) -> None:
    reference, _ = replay_batches_of(capture, CHUNK_SIZES[0])
    batches, _ = replay_batches_of(capture, chunk_size)
    assert _without_stats(batches) == _without_stats(reference)


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES[1:])
def test_the_same_batches_whatever_the_chunk_size(capture: Path, chunk_size: int) -> None:
    """Stats included: a batch's stats are the sensor's at its window's end, so a rerun of
    the same replay sends the same (stream, seq) with the same contents."""
    reference, _ = replay_batches_of(capture, CHUNK_SIZES[0])
    batches, _ = replay_batches_of(capture, chunk_size)
    for got, want in zip(batches, reference, strict=True):
        assert got["stats"] == want["stats"], f"batch {got['seq']} {got['window']}"


def test_stats_of_a_window_are_taken_before_the_next_window_closes(capture: Path) -> None:
    batches, _ = replay_batches_of(capture, 4 << 20)
    for batch, after in itertools.pairwise(batches):
        assert batch["stats"]["ts"] < after["window"][1], batch["window"]
