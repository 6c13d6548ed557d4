"""Shipping end to end: `agent replay --ship` to `agent collect` on 127.0.0.1, real sockets.

What the collector stores is compared with what `agent replay --events` writes for the
same capture: the dns, tls, quic and flow records as multisets of canonical JSON, so every
record must arrive, unchanged, exactly once, whatever fails on the way: the collector
killed and restarted, the sensor killed and run again, no collector at first, a collector
that stalls, a spool that overflows (what it drops is counted exactly), TLS without a
trusted client certificate, fifty sensors at once. Helpers (the collector process, the
throttling proxy, the store readers) are in tests/shipping_harness.py.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.ship import Shipper, Target
from agent.spool import Spool
from agent.wire import SCHEMA, FrameReader, frame
from tests.certs import Pki, make_pki
from tests.shipping_harness import (
    HOST,
    Collector,
    ListLog,
    Proxy,
    batch_records,
    count_batches,
    events_records,
    free_port,
    gen_mix,
    kill_process,
    make_batches,
    replay_command,
    run,
    spool_files,
    start,
    stored_batches,
    stored_records,
    stored_records_by_sensor,
    wait_for,
    write_config,
)

MIX_PACKETS = 40_000  # about 9 s of packet time: 10 batches of window_s = 1
SLOW_BPS = 100_000  # the throttled link: shipping the mix takes 3 to 4 s


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen_mix(tmp_path_factory.mktemp("mix") / "mix.pcap", MIX_PACKETS, seed=11)


@pytest.fixture(scope="module")
def expected(mix: Path, tmp_path_factory: pytest.TempPathFactory) -> Counter[str]:
    """The dns, tls, quic and flow records of `replay --events` of the mix."""
    events = tmp_path_factory.mktemp("events") / "events.jsonl"
    result = run(replay_command(mix, events=events))
    assert result.returncode == 0, result.stderr
    records = events_records(events)
    assert {json.loads(r)["type"] for r in records} == {"dns", "tls", "quic", "flow"}
    return records


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Makes collectors (not started) on the test's database; stops every one at the end."""
    made: list[Collector] = []

    def make(
        port: int | None = None,
        tls: tuple[Path, Path, Path | None] | None = None,
        db: Path | None = None,
        name: str = "collector",
    ) -> Collector:
        collector = Collector(db or tmp_path / "store.db", tmp_path / f"{name}.log", port, tls)
        made.append(collector)
        return collector

    try:
        yield make
    finally:
        for collector in made:
            collector.stop(timeout_s=15)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Background processes of a test: whatever still runs at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            kill_process(proc)


@pytest.fixture
def proxies() -> Iterator[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(target_port: int, rate_bps: float | None = None) -> Proxy:
        proxy = Proxy(target_port, rate_bps)
        made.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in made:
            proxy.close()


@pytest.fixture
def shippers() -> Iterator[list[Shipper]]:
    made: list[Shipper] = []
    try:
        yield made
    finally:
        for shipper in made:
            shipper.close()


def _tcp(port: int) -> str:
    return f"tcp://{HOST}:{port}"


def _diff(got: Counter[str], want: Counter[str]) -> str:
    """What differs between two record multisets, briefly (for assertion messages)."""
    missing, extra = want - got, got - want
    lines = [f"{sum(got.values())} stored, {sum(want.values())} expected"]
    lines += [f"missing x{n}: {r[:300]}" for r, n in list(missing.items())[:3]]
    lines += [f"extra x{n}: {r[:300]}" for r, n in list(extra.items())[:3]]
    return "\n".join(lines)


def _assert_stored_once(db: Path, want: Counter[str]) -> list[tuple[str, str, int, int]]:
    """The store holds exactly `want`, and batches numbered 0..n-1 of one stream."""
    got = stored_records(db)
    assert got == want, _diff(got, want)
    batches = stored_batches(db)
    assert [seq for _s, _t, seq, _n in batches] == list(range(len(batches)))
    assert len({(s, t) for s, t, _q, _n in batches}) == 1
    assert sum(n for *_k, n in batches) == sum(want.values())
    return batches


# --- 1. baseline --------------------------------------------------------------------------


def test_shipped_records_equal_the_events_records(
    mix: Path, expected: Counter[str], tmp_path: Path, collectors: Callable[..., Collector]
) -> None:
    collector = collectors().start()
    result = run(
        replay_command(
            mix,
            url=_tcp(collector.port),
            spool=tmp_path / "spool",
            config=write_config(tmp_path / "ship.toml"),
            ship_timeout_s=60,
        )
    )
    assert result.returncode == 0, result.stderr
    assert "all acknowledged" in result.stderr
    batches = _assert_stored_once(collector.db, expected)
    assert len(batches) >= 8  # window_s = 1 over about 9 s of packets
    assert spool_files(tmp_path / "spool") == []
    report = run([sys.executable, "-m", "agent", "report", "--db", str(collector.db), "--json"])
    assert report.returncode == 0, report.stderr
    by_type = Counter(json.loads(r)["type"] for r in expected.elements())
    assert json.loads(report.stdout)["records"] == {
        k: by_type[k] for k in ("dns", "tls", "quic", "flow", "intel")
    }
    assert collector.stop() == 0  # SIGTERM: a clean exit


# --- 2. the collector dies --------------------------------------------------------------------


def test_collector_killed_and_restarted_mid_stream(
    mix: Path,
    expected: Counter[str],
    tmp_path: Path,
    collectors: Callable[..., Collector],
    proxies: Callable[..., Proxy],
    procs: list[subprocess.Popen[bytes]],
) -> None:
    collector = collectors().start()
    proxy = proxies(collector.port, rate_bps=SLOW_BPS)
    log = tmp_path / "replay.log"
    cmd = replay_command(
        mix,
        url=_tcp(proxy.port),
        spool=tmp_path / "spool",
        config=write_config(tmp_path / "ship.toml"),
        ship_timeout_s=60,
    )
    agent = start(cmd, log)
    procs.append(agent)
    stored_at_kill = wait_for(
        lambda: count_batches(collector.db) >= 3 and count_batches(collector.db), 30, "3 batches"
    )
    collector.kill()  # SIGKILL, between two batches or in the middle of one
    time.sleep(0.5)
    assert agent.poll() is None, "the replay must still be shipping when the collector dies"
    collector.start()  # the same database and port
    assert agent.wait(60) == 0, log.read_text()
    text = log.read_text()
    assert "all acknowledged" in text
    assert "ship.failed" in text or "ship.connect_failed" in text  # it did notice
    batches = _assert_stored_once(collector.db, expected)
    assert stored_at_kill < len(batches)  # the kill was mid-stream
    assert spool_files(tmp_path / "spool") == []


# --- 3. the sensor dies ---------------------------------------------------------------------


def test_agent_killed_mid_stream_and_run_again(
    mix: Path,
    expected: Counter[str],
    tmp_path: Path,
    collectors: Callable[..., Collector],
    proxies: Callable[..., Proxy],
    procs: list[subprocess.Popen[bytes]],
) -> None:
    collector = collectors().start()
    proxy = proxies(collector.port, rate_bps=SLOW_BPS)
    spool = tmp_path / "spool"
    cmd = replay_command(
        mix,
        url=_tcp(proxy.port),
        spool=spool,
        config=write_config(tmp_path / "ship.toml"),
        ship_timeout_s=60,
        quiet=False,
    )
    agent = start(cmd, tmp_path / "replay-1.log")
    procs.append(agent)
    wait_for(lambda: count_batches(collector.db) >= 2, 30, "2 batches stored")
    # every window is spooled (the replay itself takes well under a second), not all shipped
    log = tmp_path / "replay-1.log"
    wait_for(lambda: " packets, " in log.read_text(), 30, "the replay's summary line")
    kill_process(agent)  # SIGKILL
    stored_at_kill = count_batches(collector.db)
    waiting = spool_files(spool)
    assert waiting, "the kill must leave unacknowledged batches in the spool"
    assert all(p.suffix == ".batch" for p in waiting)

    proxy.rate_bps = None  # the same command again, on a faster link
    second = run(cmd)
    assert second.returncode == 0, second.stderr
    assert "all acknowledged" in second.stderr
    batches = _assert_stored_once(collector.db, expected)
    assert stored_at_kill < len(batches)
    assert spool_files(spool) == []


# --- 4. no collector at first -----------------------------------------------------------------


def test_collector_absent_then_started(
    mix: Path, expected: Counter[str], tmp_path: Path, collectors: Callable[..., Collector]
) -> None:
    port = free_port()
    spool = tmp_path / "spool"
    config = write_config(tmp_path / "ship.toml")
    first = run(replay_command(mix, url=_tcp(port), spool=spool, config=config, ship_timeout_s=1))
    assert first.returncode == 3, first.stderr
    waiting = spool_files(spool)
    assert len(waiting) >= 8
    assert f"{len(waiting)} batches wait in {spool}" in first.stderr

    collector = collectors(port=port).start()
    second = run(replay_command(mix, url=_tcp(port), spool=spool, config=config, ship_timeout_s=60))
    assert second.returncode == 0, second.stderr
    batches = _assert_stored_once(collector.db, expected)
    assert len(batches) == len(waiting)
    assert spool_files(spool) == []


def test_ship_timeout_holds_when_the_collector_stalls(
    mix: Path,
    tmp_path: Path,
    collectors: Callable[..., Collector],
    proxies: Callable[..., Proxy],
) -> None:
    """A collector that accepts and then never answers (its replies held in the proxy): the
    replay gives up after --ship-timeout and exits 3, not after the 30 s ack timeout."""
    collector = collectors().start()
    proxy = proxies(collector.port)
    proxy.hold("down")
    cmd = replay_command(
        mix,
        url=_tcp(proxy.port),
        spool=tmp_path / "spool",
        config=write_config(tmp_path / "ship.toml"),
        ship_timeout_s=2,
    )
    started = time.monotonic()
    try:
        result = run(cmd, timeout_s=15)
    except subprocess.TimeoutExpired:
        pytest.fail("replay --ship-timeout 2 still running after 15 s (a stalled collector)")
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 10
    assert "wait in" in result.stderr


# --- 5. the spool overflows -----------------------------------------------------------------


def _framed(seq: int, size: int, records: int, stream: str = "s") -> bytes:
    """A framed batch of about `size` bytes, as the spool sees it."""
    message = {"type": "batch", "stream": stream, "seq": seq, "count": records}
    return frame({**message, "pad": b"x" * size})


def _spooled(spool: Spool) -> list[int]:
    return [seq for (_stream, seq), _framed_batch in spool.pending()]


def test_spool_overflow_counts_exactly_what_it_dropped(tmp_path: Path) -> None:
    import random

    rng = random.Random(5)
    max_bytes = 50_000
    spool = Spool(tmp_path / "spool", max_bytes, fsync="never")
    records_of: dict[int, int] = {}
    acked: set[int] = set()
    for seq in range(300):
        records_of[seq] = rng.randint(0, 400)
        spool.put(
            "s", seq, _framed(seq, rng.randint(300, 14_000), records_of[seq]), records_of[seq]
        )
        if rng.random() < 0.15:  # now and then the collector acknowledges the oldest
            oldest = _spooled(spool)[0]
            spool.ack("s", oldest)
            acked.add(oldest)
        present = _spooled(spool)
        gone = set(records_of) - set(present) - acked
        assert spool.size <= max_bytes
        assert spool.size == sum(p.stat().st_size for p in (tmp_path / "spool").glob("*.batch"))
        assert not gone or max(gone) < min(present)  # the oldest go first
        assert spool.counters["dropped_batches"] == len(gone)
        assert spool.counters["dropped_records"] == sum(records_of[s] for s in gone)
    assert spool.counters["dropped_batches"] > 100
    again = Spool(tmp_path / "spool", max_bytes)  # a restart finds exactly what was left
    assert _spooled(again) == present
    assert again.counters["recovered"] == len(present)


def test_spool_batch_larger_than_the_spool_drops_only_itself(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10_000, fsync="never")
    for seq in range(3):
        spool.put("s", seq, _framed(seq, 2_000, 10), 10)
    spool.put("s", 3, _framed(3, 20_000, 99), 99)  # can never fit
    assert _spooled(spool) == [0, 1, 2], "the batches that fit must not be dropped for it"
    assert spool.counters["dropped_batches"] == 1
    assert spool.counters["dropped_records"] == 99


def test_shipper_spool_overflow_without_collector(
    mix: Path,
    tmp_path: Path,
    collectors: Callable[..., Collector],
    shippers: list[Shipper],
) -> None:
    batches = make_batches(mix, sensor="s-over", stream="over")
    port = free_port()  # nothing listens yet
    spool = Spool(tmp_path / "spool", sum(len(frame(b)) for b in batches) // 2)
    log = ListLog()
    shipper = Shipper(Target.parse(_tcp(port)), spool, sensor="s-over", log=log, backoff_max_s=1)
    shippers.append(shipper)
    shipper.start()
    for batch in batches:
        shipper.submit(batch)
    waiting = set(_spooled(spool))
    lost = [b for b in batches if b["seq"] not in waiting]
    assert lost and waiting

    def check_counts() -> None:
        stats = shipper.stats()
        assert stats["dropped_batches"] == len(lost)
        assert stats["dropped_records"] == sum(b["count"] for b in lost)

    check_counts()
    # the loss is logged as it happens, and the log adds up to the counters
    drops = [fields for event, fields in log.events if event == "ship.spool_dropped"]
    assert sum(d["batches"] for d in drops) == len(lost)
    assert sum(d["records"] for d in drops) == sum(b["count"] for b in lost)
    assert shipper.counters["sent"] == 0
    collector = collectors(port=port).start()
    assert shipper.wait_drained(30), shipper.stats()
    assert {seq for _s, _t, seq, _n in stored_batches(collector.db)} == waiting
    want = sum((batch_records(b) for b in batches if b["seq"] in waiting), Counter())
    got = stored_records(collector.db)
    assert got == want, _diff(got, want)
    check_counts()


def test_batch_evicted_while_in_flight_is_not_counted_as_dropped(
    mix: Path,
    tmp_path: Path,
    collectors: Callable[..., Collector],
    proxies: Callable[..., Proxy],
    shippers: list[Shipper],
) -> None:
    """A batch sent and stored, evicted from the spool while its ack was on the way, was not
    lost: dropped_batches and dropped_records count only what the collector never got."""
    collector = collectors().start()
    proxy = proxies(collector.port)
    batches = make_batches(mix, sensor="s-race", stream="race")[:3]
    sizes = [len(frame(b)) for b in batches]
    spool = Spool(tmp_path / "spool", sizes[1] + sizes[2])  # room for two of the three
    shipper = Shipper(Target.parse(_tcp(proxy.port)), spool, sensor="s-race", log=ListLog())
    shippers.append(shipper)
    shipper.start()
    wait_for(lambda: shipper.counters["connects"] == 1, 10, "the shipper to connect")
    proxy.hold("down")  # the collector's acknowledgments wait in the proxy
    shipper.submit(batches[0])
    wait_for(lambda: count_batches(collector.db) == 1, 10, "batch 0 to be stored")
    shipper.submit(batches[1])
    shipper.submit(batches[2])  # the spool overflows: batch 0, stored but unacknowledged, goes
    proxy.release("down")
    assert shipper.wait_drained(20), shipper.stats()
    stored = {seq for _s, _t, seq, _n in stored_batches(collector.db)}
    lost = [b for b in batches if b["seq"] not in stored]
    stats = shipper.stats()
    assert (stats["dropped_batches"], stats["dropped_records"]) == (
        len(lost),
        sum(b["count"] for b in lost),
    ), f"stored {sorted(stored)} of 0..2, yet counted as dropped: {stats}"


@pytest.fixture(scope="module")
def big_mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 34 s of packets: more than 1 MiB of batches (the smallest spool_max_mb)."""
    return gen_mix(tmp_path_factory.mktemp("big") / "big.pcap", 150_000, seed=13)


def test_replay_spool_overflow_counts_what_it_dropped(
    big_mix: Path,
    tmp_path: Path,
    collectors: Callable[..., Collector],
    shippers: list[Shipper],
) -> None:
    # every batch of the capture, with its records, from a run that ships them all
    everything = collectors(db=tmp_path / "all.db", name="all").start()
    full = run(
        replay_command(
            big_mix,
            url=_tcp(everything.port),
            spool=tmp_path / "spool-all",
            config=write_config(tmp_path / "all.toml", compression="none"),
            stream="overflow",
            ship_timeout_s=60,
        )
    )
    assert full.returncode == 0, full.stderr
    records_of = {seq: n for _s, _t, seq, n in stored_batches(everything.db)}

    # the same replay with no collector and a 1 MiB spool (plain tables: deflated, the
    # batches of this capture would all fit)
    port = free_port()
    spool = tmp_path / "spool"
    events = tmp_path / "events.jsonl"
    result = run(
        replay_command(
            big_mix,
            url=_tcp(port),
            spool=spool,
            config=write_config(tmp_path / "small.toml", spool_max_mb=1, compression="none"),
            events=events,
            stream="overflow",
            ship_timeout_s=0,
        )
    )
    assert result.returncode == 3, result.stderr
    waiting = {FrameReader().feed(p.read_bytes())[0]["seq"] for p in spool_files(spool)}
    lost = set(records_of) - waiting
    assert lost and waiting
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["type"] == "stats"
    shipping = last["shipping"]
    assert shipping["dropped_batches"] == len(lost)
    assert shipping["dropped_records"] == sum(records_of[s] for s in lost)
    assert shipping["spool_batches"] == len(waiting)
    assert shipping["spool_bytes"] <= 1 << 20

    # what waits is delivered: exactly the batches not dropped
    rest = collectors(port=port, db=tmp_path / "rest.db", name="rest").start()
    shipper = Shipper(Target.parse(_tcp(port)), Spool(spool, 1 << 20), sensor="s1", log=ListLog())
    shippers.append(shipper)
    shipper.start()
    assert shipper.wait_drained(30), shipper.stats()
    assert {seq for _s, _t, seq, _n in stored_batches(rest.db)} == waiting
    got, want = stored_records(rest.db), stored_records(everything.db, seqs=waiting)
    assert got == want, _diff(got, want)


# --- 6. mutual TLS ----------------------------------------------------------------------------


def _tls_collector(collectors: Callable[..., Collector], pki: Pki) -> Collector:
    return collectors(tls=(pki.server.cert, pki.server.key, pki.ca)).start()


def test_mutual_tls_end_to_end(
    mix: Path,
    expected: Counter[str],
    pki: Pki,
    tmp_path: Path,
    collectors: Callable[..., Collector],
) -> None:
    collector = _tls_collector(collectors, pki)
    url = f"tls://{collector.address}"
    # A sensor sends its ClientHello right after connecting: every such handshake completes
    # (the replay's shipper thread, slowed by the replay holding the GIL, sometimes starts
    # later; these attempts do not wait).
    context = Target.parse(url, pki.ca, pki.client.cert, pki.client.key).context()
    for attempt in range(5):
        with socket.create_connection((HOST, collector.port), timeout=3) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=HOST) as tls:
                    tls.sendall(frame({"type": "hello", "sensor": "probe", "schema": SCHEMA}))
                    reply = FrameReader().feed(tls.recv(65536))
            except (OSError, ssl.SSLError) as exc:
                pytest.fail(f"TLS attempt {attempt}: {exc!r}; collector log: {collector.log()}")
        assert reply and reply[0]["type"] == "welcome"
    result = run(
        replay_command(
            mix,
            url=url,
            spool=tmp_path / "spool",
            config=write_config(tmp_path / "ship.toml"),
            ship_timeout_s=8,  # a working handshake takes milliseconds
            tls={"ca": pki.ca, "cert": pki.client.cert, "key": pki.client.key},
        )
    )
    assert result.returncode == 0, result.stderr[-3000:] + collector.log()[-3000:]
    _assert_stored_once(collector.db, expected)
    assert collector.log_events("collect.tls_refused") == []


@pytest.mark.parametrize("client", ["none", "stranger"])
def test_tls_without_a_trusted_client_certificate_is_refused(
    client: str,
    mix: Path,
    pki: Pki,
    tmp_path: Path,
    collectors: Callable[..., Collector],
) -> None:
    collector = _tls_collector(collectors, pki)
    tls = {"ca": pki.ca}
    if client == "stranger":  # a certificate of another CA
        tls |= {"cert": pki.stranger.cert, "key": pki.stranger.key}
    result = run(
        replay_command(
            mix,
            url=f"tls://{collector.address}",
            spool=tmp_path / "spool",
            config=write_config(tmp_path / "ship.toml"),
            ship_timeout_s=2,
            tls=tls,
        )
    )
    assert result.returncode == 3, result.stderr
    assert "wait in" in result.stderr
    wait_for(lambda: collector.log_events("collect.tls_refused"), 15, "collect.tls_refused")
    assert count_batches(collector.db) == 0
    assert stored_records(collector.db) == Counter()


# --- 7. many sensors at once ------------------------------------------------------------------

SENSORS = 50


def test_fifty_sensors_at_once(
    mix: Path,
    tmp_path: Path,
    collectors: Callable[..., Collector],
    shippers: list[Shipper],
) -> None:
    collector = collectors().start()
    template = make_batches(mix, sensor="template", stream="template")
    assert len(template) >= 8
    target = Target.parse(_tcp(collector.port))
    plans: dict[str, list[dict[str, Any]]] = {}
    for i in range(SENSORS):
        sensor = f"sensor-{i:02d}"
        # each sensor its own stream and its own number of batches: 3 to 8 (about 2,000 records)
        mine = template[: 3 + i % 6]
        plans[sensor] = [{**b, "sensor": sensor, "stream": f"load-{i}"} for b in mine]
        shipper = Shipper(target, Spool(tmp_path / sensor, 64 << 20), sensor=sensor, log=ListLog())
        shippers.append(shipper)
    started = time.monotonic()
    for shipper in shippers:
        shipper.start()

    def submit(shipper: Shipper) -> None:
        for batch in plans[shipper.sensor]:
            shipper.submit(batch)

    threads = [threading.Thread(target=submit, args=(s,)) for s in shippers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for shipper in shippers:
        assert shipper.wait_drained(max(1.0, 50 - (time.monotonic() - started))), shipper.stats()

    stored = stored_batches(collector.db)
    want_keys = {(s, b["stream"], b["seq"]) for s, plan in plans.items() for b in plan}
    assert len(stored) == len(want_keys)
    assert {(s, t, q) for s, t, q, _n in stored} == want_keys
    by_sensor = stored_records_by_sensor(collector.db)
    for sensor, plan in plans.items():
        want = sum((batch_records(b) for b in plan), Counter())
        assert by_sensor.get(sensor, Counter()) == want, sensor
    for shipper in shippers:
        stats = shipper.stats()
        assert stats["acked"] == len(plans[shipper.sensor]) and stats["dropped_batches"] == 0
    assert collector.proc is not None and collector.proc.poll() is None
    connected = {e["sensor"] for e in collector.log_events("collect.sensor_connected")}
    assert connected == set(plans)
