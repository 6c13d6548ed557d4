"""agent/spool.py: batches on disk until acknowledged, recovery after a crash, the size cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import spool as spool_module
from agent.spool import STATE, SUFFIX, Spool
from agent.wire import frame


def framed(seq: int, records: int = 1, *, stream: str = "live", pad: int = 100) -> bytes:
    """A framed batch as the spool stores it (only stream, seq and count matter to it)."""
    message = {"type": "batch", "stream": stream, "seq": seq, "count": records}
    return frame({**message, "pad": b"p" * pad})


def keys(spool: Spool) -> list[tuple[str, int]]:
    return [key for key, _data in spool.pending()]


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def test_fsync_must_be_batch_or_never(directory: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        Spool(directory, 1 << 20, fsync="always")


def test_put_pending_ack(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    frames = {seq: framed(seq, records=seq) for seq in range(3)}
    for seq, data in frames.items():
        spool.put("live", seq, data, seq)
    assert spool.pending() == [(("live", seq), data) for seq, data in frames.items()]
    assert len(spool) == 3
    assert spool.size == sum(map(len, frames.values()))
    assert len([p for p in directory.iterdir() if p.suffix == SUFFIX]) == 3
    spool.ack("live", 1)
    assert keys(spool) == [("live", 0), ("live", 2)]
    assert spool.size == len(frames[0]) + len(frames[2])
    spool.ack("live", 1)  # twice, or an ack of something never spooled: nothing happens
    spool.ack("other", 0)
    assert len(spool) == 2
    assert spool.counters["spooled"] == 3 and spool.counters["acked"] == 1
    spool.ack("live", 0)
    spool.ack("live", 2)
    assert (len(spool), spool.size, spool.pending()) == (0, 0, [])
    assert [p for p in directory.iterdir() if p.suffix == SUFFIX] == []


def test_pending_keeps_the_order_of_put_across_streams(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    order = [("b", 5), ("a", 1), ("b", 6), ("a", 0), ("c", 100)]
    for stream, seq in order:
        spool.put(stream, seq, framed(seq, stream=stream), 1)
    assert keys(spool) == order


def test_a_duplicate_put_is_ignored(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    first = framed(7, pad=10)
    spool.put("live", 7, first, 1)
    spool.put("live", 7, framed(7, pad=500), 1)
    assert spool.pending() == [(("live", 7), first)]
    assert (len(spool), spool.size, spool.counters["spooled"]) == (1, len(first), 1)
    spool.put("replay-x", 7, framed(7, stream="replay-x"), 1)  # another stream: another batch
    assert len(spool) == 2


def test_a_batch_acked_can_be_spooled_again(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    spool.put("live", 1, framed(1), 1)
    spool.ack("live", 1)
    spool.put("live", 1, framed(1), 1)
    assert keys(spool) == [("live", 1)]


def test_pending_skips_a_file_that_vanished(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    for seq in range(3):
        spool.put("live", seq, framed(seq), 1)
    next(p for p in directory.iterdir() if p.name.endswith(f"-1{SUFFIX}")).unlink()
    assert keys(spool) == [("live", 0), ("live", 2)]


# --- recovery --------------------------------------------------------------------------------


def test_a_new_spool_finds_the_batches_in_order_after_a_crash(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    streams = ["other" if seq % 3 == 0 else "live" for seq in range(12)]
    frames = [(stream, seq, framed(seq, seq, stream=stream)) for seq, stream in enumerate(streams)]
    for stream, seq, data in frames:
        spool.put(stream, seq, data, seq)
    spool.ack("live", 4)
    left = [((stream, seq), data) for stream, seq, data in frames if seq != 4]
    del spool  # killed: nothing is closed or flushed
    again = Spool(directory, 1 << 20)
    assert again.pending() == left
    assert again.counters["recovered"] == 11
    assert again.size == sum(len(data) for _key, data in left)
    again.put("live", 100, framed(100), 1)  # a new batch goes after the recovered ones
    assert keys(again)[-1] == ("live", 100)
    assert keys(Spool(directory, 1 << 20)) == [key for key, _data in left] + [("live", 100)]


def test_recovered_batches_keep_their_record_counts(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    spool.put("live", 0, framed(0, records=7), 7)
    spool.put("live", 1, framed(1, records=9), 9)
    again = Spool(directory, len(framed(0, records=7)) + len(framed(1, records=9)))
    again.put("live", 2, framed(2, records=1), 1)  # pushes out the oldest
    assert again.counters["dropped_batches"] == 1
    assert again.counters["dropped_records"] == 7


def test_a_leftover_temporary_file_is_removed(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    spool.put("live", 0, framed(0), 1)
    data = framed(1)
    (directory / f"{1:016d}-1.tmp").write_bytes(data[: len(data) // 2])  # a write cut short
    again = Spool(directory, 1 << 20)
    assert keys(again) == [("live", 0)]
    assert not list(directory.glob("*.tmp"))
    assert again.counters["unreadable"] == 0


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage that is no frame", id="garbage"),
        pytest.param(framed(3)[:-10], id="cut short"),
        pytest.param(framed(3) + framed(4), id="two frames"),
        pytest.param(b"\x00\x00\x00\x01\xc1", id="not msgpack"),
        pytest.param(frame({"type": "batch", "seq": 3}), id="no stream"),
        pytest.param(frame({"type": "batch", "stream": "live", "seq": "three"}), id="seq text"),
        pytest.param(frame({"type": "batch", "stream": "live", "seq": 3, "count": []}),
                     id="count a list"),
    ],
)  # fmt: skip
def test_an_unreadable_batch_file_is_counted_and_removed(directory: Path, content: bytes) -> None:
    spool = Spool(directory, 1 << 20)
    spool.put("live", 0, framed(0), 1)
    spool.put("live", 1, framed(1), 1)
    bad = directory / f"{5:016d}-3{SUFFIX}"
    bad.write_bytes(content)
    again = Spool(directory, 1 << 20)
    assert keys(again) == [("live", 0), ("live", 1)]
    assert (again.counters["unreadable"], again.counters["recovered"]) == (1, 2)
    assert not bad.exists()
    assert again.size == len(framed(0)) + len(framed(1))


def test_a_file_named_otherwise_does_not_stop_the_spool(directory: Path) -> None:
    """A stray *.batch file (an operator's copy, another version's naming) must not make
    the sensor fail to start."""
    directory.mkdir(parents=True)
    (directory / f"copy-of-0{SUFFIX}").write_bytes(framed(0))
    spool = Spool(directory, 1 << 20)
    assert spool.counters["recovered"] + spool.counters["unreadable"] == 1


# --- the size cap ------------------------------------------------------------------------------


def test_the_cap_drops_the_oldest_and_counts_batches_and_records(directory: Path) -> None:
    size = len(framed(0, pad=1000))
    spool = Spool(directory, 5 * size, fsync="never")
    for seq in range(5):
        spool.put("live", seq, framed(seq, pad=1000), 10 + seq)
    assert spool.counters["dropped_batches"] == 0 and spool.size == 5 * size
    spool.put("live", 5, framed(5, pad=1000), 15)
    assert keys(spool) == [("live", seq) for seq in range(1, 6)]
    assert (spool.counters["dropped_batches"], spool.counters["dropped_records"]) == (1, 10)
    bigger = framed(6, pad=2500)  # needs the room of three batches
    spool.put("live", 6, bigger, 100)
    assert keys(spool) == [("live", 4), ("live", 5), ("live", 6)]
    assert (spool.counters["dropped_batches"], spool.counters["dropped_records"]) == (
        4,
        10 + 11 + 12 + 13,
    )
    assert spool.size == 2 * size + len(bigger) <= 5 * size
    assert spool.size == sum(p.stat().st_size for p in directory.glob(f"*{SUFFIX}"))
    assert len(list(directory.glob(f"*{SUFFIX}"))) == 3


def test_a_batch_larger_than_the_cap_is_dropped_alone(directory: Path) -> None:
    size = len(framed(0))
    spool = Spool(directory, 4 * size, fsync="never")
    for seq in range(3):
        spool.put("live", seq, framed(seq), 5)
    spool.put("live", 3, framed(3, pad=10 * size), 77)
    assert keys(spool) == [("live", 0), ("live", 1), ("live", 2)]
    assert (spool.counters["dropped_batches"], spool.counters["dropped_records"]) == (1, 77)
    assert spool.counters["spooled"] == 3
    assert len(list(directory.glob(f"*{SUFFIX}"))) == 3


def test_a_late_ack_of_a_dropped_batch_is_not_counted_as_dropped(directory: Path) -> None:
    """The shipper may be sending the oldest batch when the cap drops it; its ack proves it
    was delivered."""
    size = len(framed(0))
    spool = Spool(directory, 2 * size, fsync="never")
    for seq in range(3):
        spool.put("live", seq, framed(seq), 4)
    assert spool.counters["dropped_batches"] == 1
    spool.ack("live", 0)
    assert (spool.counters["dropped_batches"], spool.counters["dropped_records"]) == (0, 0)
    assert spool.counters["acked"] == 1
    spool.ack("live", 0)  # once only
    assert (spool.counters["dropped_batches"], spool.counters["acked"]) == (0, 1)


# --- durability --------------------------------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = spool_module.os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(spool_module.os, "fsync", counting)
    return calls


def test_fsync_batch_syncs_the_file_and_the_directory(directory: Path, fsyncs: list[int]) -> None:
    spool = Spool(directory, 1 << 20, fsync="batch")
    spool.put("live", 0, framed(0), 1)
    assert len(fsyncs) == 2
    spool.put("live", 1, framed(1), 1)
    assert len(fsyncs) == 4
    spool.put("live", 1, framed(1), 1)  # a duplicate writes nothing
    assert len(fsyncs) == 4


def test_fsync_never_leaves_it_to_the_kernel(directory: Path, fsyncs: list[int]) -> None:
    spool = Spool(directory, 1 << 20, fsync="never")
    for seq in range(5):
        spool.put("live", seq, framed(seq), 1)
    assert fsyncs == []
    assert keys(Spool(directory, 1 << 20, fsync="never")) == [("live", s) for s in range(5)]


# --- sequence numbers of a live stream ----------------------------------------------------------


def test_next_seq_starts_at_0_and_survives_a_restart(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    assert spool.next_seq("live") == 0
    spool.save_next_seq("live", 42)
    spool.save_next_seq("replay-x", 7)
    spool.save_next_seq("live", 43)
    again = Spool(directory, 1 << 20)
    assert (again.next_seq("live"), again.next_seq("replay-x"), again.next_seq("new")) == (43, 7, 0)
    assert json.loads((directory / STATE).read_text()) == {"live": 43, "replay-x": 7}
    assert not list(directory.glob("*.tmp"))


@pytest.mark.parametrize(
    "content", ["", "not json", "[1, 2]", '{"live": "x"}', '{"live": [3]}', "null"]
)
def test_a_damaged_state_file_means_0_and_is_rewritten(directory: Path, content: str) -> None:
    spool = Spool(directory, 1 << 20)
    (directory / STATE).write_text(content)
    assert spool.next_seq("live") == 0
    spool.save_next_seq("live", 5)
    assert Spool(directory, 1 << 20).next_seq("live") == 5


def test_the_state_file_is_not_taken_for_a_batch(directory: Path) -> None:
    spool = Spool(directory, 1 << 20)
    spool.save_next_seq("live", 3)
    spool.put("live", 3, framed(3), 1)
    again = Spool(directory, 1 << 20)
    assert keys(again) == [("live", 3)]
    assert again.counters["unreadable"] == 0
    assert STATE in files(directory)


def test_a_batch_is_read_one_at_a_time_until_it_goes(directory: Path) -> None:
    """The shipper lists the keys, then reads each batch just before sending it: one that
    was acknowledged, refused or evicted meanwhile reads as None and is not sent."""
    spool = Spool(directory, len(framed(0)) * 2)
    for seq in range(2):
        spool.put("live", seq, framed(seq), 1)
    listed = spool.keys()
    assert listed == [("live", 0), ("live", 1)]
    assert spool.read(("live", 1)) == framed(1)
    spool.put("live", 2, framed(2), 1)  # the spool is full: batch 0 goes
    spool.ack("live", 1)
    assert [spool.read(key) for key in listed] == [None, None]
    assert spool.read(("live", 2)) == framed(2)
