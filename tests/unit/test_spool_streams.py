"""A (stream, seq) pair names one batch for ever: restarts and lost state never reuse one."""

from __future__ import annotations

from pathlib import Path

from agent.spool import STATE, Spool
from agent.wire import frame


def batch(stream: str, seq: int) -> bytes:
    return frame({"type": "batch", "stream": stream, "seq": seq, "count": 1})


def test_a_crash_between_spooling_and_saving_the_seq_does_not_reuse_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, "never")
    stream = spool.stream_name("live")
    for seq in range(3):
        spool.put(stream, seq, batch(stream, seq), 1)
        spool.save_next_seq(stream, seq + 1)
    spool.put(stream, 3, batch(stream, 3), 1)  # then kill -9, before save_next_seq
    again = Spool(tmp_path, 1 << 20, "never")
    assert again.stream_name("live") == stream
    assert again.next_seq(stream) == 4


def test_a_lost_state_file_starts_a_stream_of_another_name(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, "batch")
    first = spool.stream_name("live")
    assert first.startswith("live.") and len(first) == len("live.") + 8
    spool.save_next_seq(first, 42)
    (tmp_path / STATE).unlink()  # a wiped or new disk: seq 0 of `first` is already stored
    second = Spool(tmp_path, 1 << 20, "batch").stream_name("live")
    assert second != first
    assert Spool(tmp_path, 1 << 20, "batch").next_seq(second) == 0


def test_a_number_used_twice_is_counted_as_a_drop(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, "never")
    spool.put("s", 0, batch("s", 0), 5)
    spool.put("s", 0, batch("s", 0), 7)
    assert len(spool) == 1
    assert (spool.counters["seq_reused"], spool.counters["dropped_records"]) == (1, 7)
