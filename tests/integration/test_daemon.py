"""The live daemon (`tapsense run`) in network namespaces: real clients, replays, signals, links.

Two hosts, a and b, share a veth link (tests.netns.veth_pair); the daemon captures on a's
end, as root, and becomes `nobody`. Real DNS and TLS clients run in a against servers in b;
`tcpreplay` sends generated captures from b, whose records must equal those of
`tapsense replay` on the same file. The daemon's log (JSON lines on stderr) tells when it is
ready and what it did; its records are read from --events once it has stopped.
"""

from __future__ import annotations

import itertools
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import pytest

from tests.certs import self_signed
from tests.daemon_harness import (
    REPO,
    TEST_CONFIG,
    Daemon,
    NotifyListener,
    comparable,
    describe_difference,
    gen_mix,
    last_stats,
    link_counters,
    of_type,
    offline_records,
    quiet_link,
    read_records,
    resolver,
    running_daemon,
    status_of,
    tcpreplay,
    wait_for,
    worker_events,
    write_config,
)
from tests.netns import Host, requires_netns, start_tls_server, veth_pair, wait_port

PEERS = REPO / "tests" / "peers"
MIX_PACKETS, MIX_SEED = 5000, 5
TLS_PORT = 4433
pytestmark = [pytest.mark.netns, requires_netns]


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="module")
def served(certificate: tuple[Path, Path]) -> Iterator[tuple[Host, Host]]:
    """Hosts a and b, with a DNS server (port 53) and a TLS server (openssl, 4433) in b."""
    with veth_pair("td") as (a, b):
        servers = [
            b.start(
                sys.executable,
                str(PEERS / "dns_server.py"),
                b.addr,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            start_tls_server(b, TLS_PORT, certificate),
        ]
        try:
            wait_port(b, 53, "udp", timeout=20)
            wait_port(b, TLS_PORT)
            yield a, b
        finally:
            for proc in servers:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def quiet() -> Iterator[tuple[Host, Host]]:
    """Hosts a and b on a link without IPv6 (no kernel chatter) and room for the mix's frames."""
    with veth_pair("tq") as (a, b):
        quiet_link(a, b)
        yield a, b


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, Any]]]:
    """The generated mix, the test config, and what `tapsense replay` makes of the mix with it."""
    folder = tmp_path_factory.mktemp("mix")
    pcap = gen_mix(folder / "mix.pcap", MIX_PACKETS, MIX_SEED)
    config = write_config(folder / "tapsense.toml", TEST_CONFIG)
    return pcap, config, offline_records(pcap, folder / "offline.jsonl", config)


@pytest.fixture
def confdir() -> Iterator[Path]:
    """A folder the daemon can read after it became `nobody` (for SIGHUP): pytest's own
    temporary folders are root's alone."""
    folder = Path(tempfile.mkdtemp(prefix="tapsense-daemon-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _config(folder: Path, *extra: dict[str, dict[str, Any]], name: str = "t.toml") -> Path:
    path = write_config(folder / name, TEST_CONFIG, *extra)
    path.chmod(0o644)
    return path


def _dig(host: Host, name: str, qtype: str = "A") -> str:
    result = host.run("dig", "@10.77.0.2", "+tries=1", "+time=2", name, qtype, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _settle(seconds: float = 0.4) -> None:
    """Lets the last packets reach the agent (block_timeout_ms is 10 in TEST_CONFIG)."""
    time.sleep(seconds)


# --- 1. real clients ------------------------------------------------------------------------


def test_real_dns_and_tls_clients_end_to_end(served: tuple[Host, Host], tmp_path: Path) -> None:
    a, b = served
    events = tmp_path / "events.jsonl"
    with running_daemon(a, events, config=_config(tmp_path)) as daemon:
        assert "10.77.0.2" in _dig(a, "www.tapsense.test", "A")
        assert "fd77::2" in _dig(a, "www.tapsense.test", "AAAA")
        assert "192.0.2.11" in _dig(a, "api.tapsense.test", "A")
        assert "NXDOMAIN" in _dig(a, "nope.tapsense.test", "A")
        result = a.run(
            "openssl",
            "s_client",
            "-connect",
            f"{b.addr}:{TLS_PORT}",
            "-servername",
            "openssl.tapsense.test",
            "-alpn",
            "h2,http/1.1",
            input="",
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        with resolver(a, b.addr):  # curl looks its name up in the DNS server in b
            result = a.run(
                "curl",
                "-sk",
                "--http1.1",
                "-m",
                "10",
                "-o",
                "/dev/null",
                f"https://www.tapsense.test:{TLS_PORT}/",
                timeout=20,
            )
        assert result.returncode == 0, result.stderr
        result = a.run(
            sys.executable,
            str(PEERS / "tls_client.py"),
            b.addr,
            str(TLS_PORT),
            "python.tapsense.test",
            "--alpn",
            "h2",
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        _settle()
        assert daemon.stop() == 0
    records = daemon.records()

    dns = of_type(records, "dns")
    by_question: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in dns:
        by_question.setdefault((record["qname"], record["qtype"]), []).append(record)
        assert record["status"] == "answered", record
        assert record["dst"] == b.addr and record["dport"] == 53
        assert record["rtt"] is not None and record["rtt"] > 0
    expected = {
        ("www.tapsense.test", 1): (0, ["10.77.0.2"]),
        ("www.tapsense.test", 28): (0, ["fd77::2"]),
        ("api.tapsense.test", 1): (0, ["192.0.2.10", "192.0.2.11"]),
        ("nope.tapsense.test", 1): (3, []),
    }
    for question, (rcode, answers) in expected.items():
        assert question in by_question, sorted(by_question)
        for record in by_question[question]:
            assert (record["rcode"], record["answers"]) == (rcode, answers), record
    assert by_question[("nope.tapsense.test", 1)][0]["rcode_name"] == "NXDOMAIN"
    # dig asked for www once per type; curl's resolver asked again
    assert len(by_question[("www.tapsense.test", 1)]) >= 2

    tls = {r["sni"]: r for r in of_type(records, "tls")}
    assert set(tls) == {"openssl.tapsense.test", "www.tapsense.test", "python.tapsense.test"}
    assert tls["openssl.tapsense.test"]["alpn"] == ["h2", "http/1.1"]
    assert tls["python.tapsense.test"]["alpn"] == ["h2"]
    assert tls["www.tapsense.test"]["alpn"] == ["http/1.1"]
    for record in tls.values():
        assert record["dport"] == TLS_PORT
        assert record["server_version"] == "0x0304"  # the ServerHello was seen
        assert record["ja3"] and record["ja4"].startswith("t13")
    # curl connected to an address the DNS server gave for its name
    www_answers = {
        answer
        for q in (1, 28)
        for r in by_question[("www.tapsense.test", q)]
        for answer in r["answers"]
    }
    assert tls["www.tapsense.test"]["dst"] in www_answers

    flows = {r["flow"]: r for r in of_type(records, "flow")}
    for sni, record in tls.items():
        flow = flows[record["flow"]]
        assert (flow["name"], flow["name_source"]) == (sni, "tls")
        assert flow["pkts_up"] > 0 and flow["pkts_down"] > 0
        assert flow["end"] in ("fin", "rst")  # closed (s_server may reset)
    for record in dns:
        flow = flows[record["flow"]]
        assert flow["proto"] == "udp" and flow["dport"] == 53 and flow["pkts_down"] > 0


# --- 2 and 3. live equals offline -----------------------------------------------------------


def _replay_live(
    a: Host, b: Host, pcap: Path, config: Path, events: Path, workers: int | None = None
) -> tuple[Daemon, int]:
    with running_daemon(a, events, config=config, workers=workers) as daemon:
        before = link_counters(a)
        sent, output = tcpreplay(b, pcap)
        after = link_counters(a)
        assert sent == MIX_PACKETS, output
        assert after["rx_packets"] - before["rx_packets"] == sent
        _settle(0.6)
        assert daemon.stop() == 0
    return daemon, sent


def _is_local(record: dict[str, Any]) -> bool:
    """Traffic of the test link itself (10.77.0.0/24, fd77::/64, link-local), not the mix's."""
    return all(
        str(record.get(key, "")).startswith(("10.77.0.", "fd77:", "fe80:"))
        for key in ("src", "dst")
    )


def _check_equal(live: list[dict[str, Any]], offline: list[dict[str, Any]]) -> None:
    offline_flows = {r["flow"] for r in offline if "flow" in r}
    chatter = [r for r in live if "flow" in r and r["flow"] not in offline_flows]
    assert all(_is_local(r) for r in chatter), chatter[:5]
    live = [r for r in live if r not in chatter]
    got, want = comparable(live), comparable(offline)
    assert got == want, describe_difference(got, want)
    # the same flows, keyed the same, VLAN tags put back from the ring's metadata
    key = ("flow", "vlan", "src", "sport", "dst", "dport", "proto")
    flows = {tuple(r[k] for k in key) for r in of_type(live, "flow")}
    assert flows == {tuple(r[k] for k in key) for r in of_type(offline, "flow")}


def test_live_capture_equals_offline_replay(
    quiet: tuple[Host, Host], mix: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    a, b = quiet
    pcap, config, offline = mix
    vlans = Counter(r["vlan"] for r in of_type(offline, "flow") if r["vlan"])
    assert len(vlans) >= 2, "the mix should hold VLAN-tagged flows"
    assert {r["type"] for r in offline} >= {"dns", "tls", "quic", "flow"}
    daemon, sent = _replay_live(a, b, pcap, config, tmp_path / "live.jsonl")
    live = daemon.records()
    stats = last_stats(live)
    assert stats["kernel_drops"] == 0 and stats["capture"]["kernel_drops"] == 0, stats
    assert stats["capture"]["kernel_packets"] == sent
    assert stats["packets"] == sent
    # veth hands 802.1Q tags over in the ring's metadata: each one was put back
    with open(pcap, "rb") as capture:
        tagged = sum(frame[12:14] == b"\x81\x00" for _ts, frame in dpkt.pcap.Reader(capture))
    assert stats["capture"]["vlan_tags_restored"] == tagged > 0
    _check_equal(live, offline)


def test_fanout_two_workers_split_by_flow(
    quiet: tuple[Host, Host], mix: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    a, b = quiet
    pcap, config, offline = mix
    events = tmp_path / "live.jsonl"
    _, sent = _replay_live(a, b, pcap, config, events, workers=2)
    per_worker = [read_records(worker_events(events, i)) for i in range(2)]
    assert not events.exists()
    owner: dict[str, set[int]] = {}
    for index, records in enumerate(per_worker):
        for record in records:
            if "flow" in record:
                owner.setdefault(record["flow"], set()).add(index)
    split = {flow: workers for flow, workers in owner.items() if len(workers) > 1}
    assert not split, f"{len(split)} flows have records in both workers' files"
    assert all(of_type(records, "flow") for records in per_worker), "one worker saw nothing"
    stats = [last_stats(records) for records in per_worker]
    assert sum(s["capture"]["kernel_packets"] for s in stats) == sent
    assert sum(s["kernel_drops"] for s in stats) == 0
    _check_equal(per_worker[0] + per_worker[1], offline)


# --- 4. loss is counted ---------------------------------------------------------------------


def test_kernel_drops_are_counted(
    quiet: tuple[Host, Host], mix: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A ring of two 4 KiB blocks against a flood: what the kernel dropped is what is reported.

    The filter keeps what the mix holds (TCP and UDP; veth hands VLAN tags over as metadata,
    so the filter sees the frames untagged) and nothing the kernel might send on the link.
    """
    a, b = quiet
    pcap, _, _ = mix
    config = _config(
        tmp_path,
        {
            "capture": {
                "block_size_kb": 4,
                "block_count": 2,
                "block_timeout_ms": 1000,
                "bpf": "udp or tcp",
            }
        },
    )
    events = tmp_path / "live.jsonl"
    with running_daemon(a, events, config=config) as daemon:
        before = link_counters(a)
        sent, output = tcpreplay(b, pcap, loop=4)
        after = link_counters(a)
        assert sent == 4 * MIX_PACKETS, output
        # the kernel's own count: every frame tcpreplay sent arrived on a's end
        assert after["rx_packets"] - before["rx_packets"] == sent
        assert after["rx_dropped"] == before["rx_dropped"]
        _settle(1.5)  # longer than block_timeout_ms: every block the kernel filled is handed over
        assert daemon.stop() == 0
    records = daemon.records()
    stats = last_stats(records)
    capture = stats["capture"]
    assert capture["kernel_drops"] > 0, capture
    assert capture["kernel_packets"] + capture["kernel_drops"] == sent, capture
    assert stats["kernel_drops"] == capture["kernel_drops"]
    assert stats["packets"] == capture["kernel_packets"]  # every packet that reached the ring
    logged = sum(e["kernel_drops"] for e in daemon.entries("stats.interval"))
    warned = sum(e["drops"] for e in daemon.entries("capture.kernel_drops"))
    stopped = daemon.wait_event("capture.stopped")
    assert stopped["kernel_drops"] == capture["kernel_drops"]
    assert logged <= capture["kernel_drops"] and warned == logged


# --- 5. signals and privileges --------------------------------------------------------------


def _stats_times(daemon: Daemon, since: int) -> list[float]:
    return [e["_mono"] for e in daemon.entries("stats.interval", since)]


def test_sighup_with_a_broken_config_keeps_the_old_one(
    served: tuple[Host, Host], tmp_path: Path, confdir: Path
) -> None:
    a, _ = served
    config = _config(confdir)
    events = tmp_path / "events.jsonl"
    with running_daemon(a, events, config=config) as daemon:
        _dig(a, "www.tapsense.test")
        # every value wrong, and the stats interval changed: none of it may apply
        write_config(
            config,
            TEST_CONFIG,
            {"log": {"stats_interval_s": 30, "level": "loud"}, "capture": {"block_size_kb": 6}},
        )
        mark = daemon.mark()
        daemon.signal(signal.SIGHUP)
        rejected = daemon.wait_event("config.rejected", since=mark)
        assert any("block_size_kb" in p for p in rejected["problems"]), rejected
        assert any("log.level" in p for p in rejected["problems"]), rejected
        _dig(a, "api.tapsense.test")
        time.sleep(2.5)
        assert len(_stats_times(daemon, mark)) >= 2, "the old stats interval (1 s) went on"
        assert not daemon.entries("config.reloaded", mark)
        assert not daemon.entries("config.accepted", mark)
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
    qnames = {r["qname"] for r in of_type(daemon.records(), "dns")}
    assert {"www.tapsense.test", "api.tapsense.test"} <= qnames


def test_sighup_with_a_good_config_reloads(
    served: tuple[Host, Host], tmp_path: Path, confdir: Path
) -> None:
    a, _ = served
    config = _config(confdir)
    with running_daemon(a, tmp_path / "events.jsonl", config=config) as daemon:
        write_config(config, TEST_CONFIG, {"log": {"stats_interval_s": 3}})
        mark = daemon.mark()
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("config.accepted", since=mark)
        reloaded = daemon.wait_event("config.reloaded", since=mark)
        assert "log" in reloaded["applied"]
        time.sleep(0.3)
        mark = daemon.mark()
        _dig(a, "www.tapsense.test")
        time.sleep(6.5)
        times = _stats_times(daemon, mark)
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert 1 <= len(times) <= 3 and all(gap > 2 for gap in gaps), times  # every 3 s now
        assert daemon.stop() == 0
    assert "www.tapsense.test" in {r["qname"] for r in of_type(daemon.records(), "dns")}


def test_sighup_reload_of_the_log_section_needs_no_restart(
    served: tuple[Host, Host], tmp_path: Path, confdir: Path
) -> None:
    """Only [log] changed in the file: nothing needs a restart, even though --interface and
    --events (not in the file) override capture.interfaces and daemon.events."""
    a, _ = served
    config = _config(confdir)
    with running_daemon(a, tmp_path / "events.jsonl", config=config) as daemon:
        write_config(config, TEST_CONFIG, {"log": {"stats_interval_s": 2}})
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_event("config.reloaded")
        assert daemon.stop() == 0
    assert reloaded["restart_needed"] == [], reloaded


def test_sighup_lists_the_ship_settings_that_wait_for_a_restart(
    served: tuple[Host, Host], tmp_path: Path, confdir: Path
) -> None:
    """A collector named on reload is not connected to by the running workers: said so."""
    a, _ = served
    config = _config(confdir)
    with running_daemon(a, tmp_path / "events.jsonl", config=config) as daemon:
        write_config(config, TEST_CONFIG, {"ship": {"url": "tcp://127.0.0.1:9", "window_s": 5.0}})
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_event("config.reloaded")
        assert daemon.stop() == 0
    assert reloaded["restart_needed"] == ["ship.url"], reloaded
    assert "ship" in reloaded["applied"]


def test_sighup_applies_a_new_log_level(
    served: tuple[Host, Host], tmp_path: Path, confdir: Path
) -> None:
    """config.reloaded says [log] applies without a restart: at level warning, the info lines
    (stats.interval) stop."""
    a, _ = served
    config = _config(confdir)
    with running_daemon(a, tmp_path / "events.jsonl", config=config) as daemon:
        write_config(config, TEST_CONFIG, {"log": {"level": "warning"}})
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("config.accepted")
        time.sleep(1.0)  # the worker takes it within 200 ms
        mark = daemon.mark()
        time.sleep(2.5)
        still = daemon.entries("stats.interval", mark)
        assert daemon.stop() == 0
    assert not still, f"{len(still)} info lines after the switch to level warning"


def test_sigterm_exits_0_and_flushes_flows_in_flight(
    served: tuple[Host, Host], tmp_path: Path
) -> None:
    a, b = served
    stop_timeout_s = 5
    config = _config(tmp_path, {"daemon": {"stop_timeout_s": stop_timeout_s}})
    events = tmp_path / "events.jsonl"
    with running_daemon(a, events, config=config, workers=1) as daemon:
        _dig(a, "www.tapsense.test")
        # a TLS session left open while the daemon stops
        client = a.start(
            "openssl",
            "s_client",
            "-connect",
            f"{b.addr}:{TLS_PORT}",
            "-servername",
            "open.tapsense.test",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert client.stdout is not None
            wait_for(lambda: b"CONNECTED" in client.stdout.readline(), 10, "s_client")
            _settle(1.0)
            started = time.monotonic()
            code = daemon.stop(timeout_s=stop_timeout_s + 5)
            took = time.monotonic() - started
        finally:
            client.kill()
            client.wait(timeout=5)
    assert code == 0
    assert took < stop_timeout_s, took
    assert daemon.entries("capture.stopped") and daemon.entries("daemon.stopped")
    records = daemon.records()
    [tls] = [r for r in of_type(records, "tls") if r["sni"] == "open.tapsense.test"]
    flows = {r["flow"]: r for r in of_type(records, "flow")}
    assert flows[tls["flow"]]["end"] == "shutdown"
    assert flows[tls["flow"]]["name"] == "open.tapsense.test"
    [dns] = [r for r in of_type(records, "dns") if r["qname"] == "www.tapsense.test"]
    assert dns["answers"] == ["10.77.0.2"]
    assert flows[dns["flow"]]["end"] == "shutdown"  # UDP flows are still active
    assert records[-1]["type"] == "stats"  # the final counters, written at the end


def test_sigterm_flushes_packets_still_in_the_ring(
    quiet: tuple[Host, Host], tmp_path: Path
) -> None:
    """Packets the kernel has put in a ring block that is not handed over yet (block_timeout_ms
    after its first packet) are part of what is in flight: SIGTERM must not lose them. (A quiet
    link, so that nothing else arrives while the daemon stops.)"""
    a, b = quiet
    config = _config(tmp_path, {"capture": {"block_timeout_ms": 1500}})
    with running_daemon(a, tmp_path / "events.jsonl", config=config) as daemon:
        # nothing listens on b: the query gets an ICMP port unreachable, and no answer
        a.run("dig", f"@{b.addr}", "+tries=1", "+time=1", "api.tapsense.test", timeout=20)
        time.sleep(0.2)
        assert daemon.stop() == 0
    records = daemon.records()
    stats = last_stats(records)
    assert stats["capture"]["kernel_packets"] > 0
    assert stats["packets"] == stats["capture"]["kernel_packets"], stats["capture"]
    assert "api.tapsense.test" in {r["qname"] for r in of_type(records, "dns")}


def test_an_idle_daemon_sleeps(served: tuple[Host, Host], tmp_path: Path) -> None:
    """No traffic: the supervisor and the worker wait in poll (<= 200 ms per turn), they do not
    spin."""
    a, _ = served
    with running_daemon(a, tmp_path / "events.jsonl", config=_config(tmp_path)) as daemon:
        pids = daemon.pids()
        time.sleep(0.5)
        before = {pid: daemon.cpu_seconds([pid]) for pid in pids}
        time.sleep(3.0)
        used = {pid: round(daemon.cpu_seconds([pid]) - before[pid], 2) for pid in pids}
        assert daemon.stop() == 0
    supervisor, worker = pids
    assert used[supervisor] < 0.3, f"the supervisor used {used[supervisor]} CPU s of 3 s idle"
    assert used[worker] < 0.3, f"the worker used {used[worker]} CPU s of 3 s idle"


def test_sd_notify_ready_watchdog_reloading_stopping(
    served: tuple[Host, Host], tmp_path: Path, confdir: Path
) -> None:
    """The daemon speaks to systemd: READY=1 with a status once capturing, WATCHDOG=1 twice
    per WatchdogSec, RELOADING=1 (with MONOTONIC_USEC) then READY=1 on SIGHUP, STOPPING=1."""
    a, _ = served
    config = _config(confdir)
    listener = NotifyListener(confdir / "notify.sock")
    env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000"}
    try:
        with running_daemon(a, tmp_path / "events.jsonl", config=config, env=env) as daemon:
            wait_for(lambda: "READY=1" in listener.lines(), 5, "READY=1")
            assert f"STATUS=capturing on {a.ifname}" in listener.lines()
            assert daemon.entries("capture.started")
            time.sleep(2.2)
            assert listener.lines().count("WATCHDOG=1") >= 3, listener.lines()
            write_config(config, TEST_CONFIG, {"log": {"stats_interval_s": 2}})
            seen = len(listener.messages)
            daemon.signal(signal.SIGHUP)
            daemon.wait_event("config.accepted")

            def reload_done() -> bool:
                after = [line for _, lines in listener.messages[seen:] for line in lines]
                return "RELOADING=1" in after and "READY=1" in after[after.index("RELOADING=1") :]

            wait_for(reload_done, 5, "RELOADING=1 then READY=1")
            reloading = next(m for _, m in listener.messages[seen:] if "RELOADING=1" in m)
            assert any(line.startswith("MONOTONIC_USEC=") for line in reloading), reloading
            assert daemon.stop() == 0
        assert "STOPPING=1" in listener.lines()
    finally:
        listener.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_runs_unprivileged_after_start(
    served: tuple[Host, Host], tmp_path: Path, workers: int
) -> None:
    a, _ = served
    nobody = pwd.getpwnam("nobody")
    with running_daemon(a, tmp_path / "e.jsonl", config=_config(tmp_path), workers=workers) as d:
        pids = d.pids()
        assert len(pids) == 1 + workers, pids
        for pid in pids:
            status = status_of(pid)
            for cap in ("CapEff", "CapPrm", "CapAmb", "CapInh"):
                assert int(status[cap], 16) == 0, (pid, cap, status[cap])
            assert status["Uid"].split() == [str(nobody.pw_uid)] * 4, (pid, status["Uid"])
            assert status["Gid"].split() == [str(nobody.pw_gid)] * 4, (pid, status["Gid"])
            assert status["NoNewPrivs"] == "1"
        assert d.stop() == 0


# --- 6. link down and up --------------------------------------------------------------------


def _flap(a: Host) -> None:
    for state in ("down", "up"):
        result = a.run("ip", "link", "set", "dev", a.ifname, state)
        assert result.returncode == 0, result.stderr
        time.sleep(0.5)


def _carrier(a: Host) -> bool:
    return "LOWER_UP" in a.run("ip", "link", "show", "dev", a.ifname).stdout


def test_link_down_and_up_is_logged_and_capture_resumes(
    served: tuple[Host, Host], tmp_path: Path
) -> None:
    a, _ = served
    with running_daemon(a, tmp_path / "events.jsonl", config=_config(tmp_path)) as daemon:
        time.sleep(0.3)
        mark = daemon.mark()
        _flap(a)
        wait_for(lambda: _carrier(a), 10, "the link to come back")
        down = daemon.wait_event("link.down", timeout_s=5, since=mark)
        up = daemon.wait_event("link.up", timeout_s=5, since=daemon.log.index(down))
        assert down["interface"] == up["interface"] == a.ifname
        _dig(a, "www.tapsense.test")
        _settle()
        assert daemon.stop() == 0
    dns = [r for r in of_type(daemon.records(), "dns") if r["qname"] == "www.tapsense.test"]
    assert dns and dns[0]["answers"] == ["10.77.0.2"]


def test_link_flap_leaves_the_worker_idle(served: tuple[Host, Host], tmp_path: Path) -> None:
    """After the link went down and up, a worker with no traffic should not use the CPU."""
    a, _ = served
    with running_daemon(a, tmp_path / "events.jsonl", config=_config(tmp_path)) as daemon:
        workers = daemon.worker_pids()
        _flap(a)
        wait_for(lambda: _carrier(a), 10, "the link to come back")
        time.sleep(0.5)
        before = daemon.cpu_seconds(workers)
        time.sleep(2.0)
        busy = daemon.cpu_seconds(workers) - before
        _dig(a, "www.tapsense.test")
        _settle()
        assert daemon.stop() == 0
    assert busy < 0.5, f"the worker used {busy:.2f} CPU s of 2 s with no traffic"
    assert "www.tapsense.test" in {r["qname"] for r in of_type(daemon.records(), "dns")}


def test_interface_removed_makes_the_daemon_exit_1(tmp_path: Path) -> None:
    """The interface went away: the daemon says so and exits 1, so that systemd restarts it."""
    with veth_pair("tg") as (a, b):
        with running_daemon(a, tmp_path / "events.jsonl", config=_config(tmp_path)) as daemon:
            result = b.run("ip", "link", "del", "dev", b.ifname)  # takes a's end along
            assert result.returncode == 0, result.stderr
            try:
                code = daemon.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                busy = daemon.cpu_seconds()
                raise AssertionError(
                    f"still running 10 s after the interface went ({busy:.1f} CPU s used)"
                ) from None
        gone = daemon.wait_event("daemon.interface_gone", timeout_s=1)
    assert gone["interface"] == a.ifname
    assert code == 1
    assert daemon.entries("capture.stopped")


# --- 7. bad invocations ---------------------------------------------------------------------


def _agent(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    return host.run(sys.executable, "-m", "agent", *args, cwd=REPO, timeout=30)


def test_unknown_interface_is_one_line_and_exit_2(
    served: tuple[Host, Host], tmp_path: Path
) -> None:
    a, _ = served
    result = _agent(a, "run", "--interface", "nosuch0", "--events", str(tmp_path / "e.jsonl"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tapsense: error:"), result.stderr
    assert "nosuch0" in lines[0]


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"capture": {"bpf": "udp and ("}}, "capture.bpf"),
        ({"ship": {"url": "tls://127.0.0.1:7443", "ca": "/nonexistent/ca.pem"}}, "ca.pem"),
    ],
    ids=["bpf", "ship-ca"],
)
def test_a_bad_filter_or_collector_is_one_line_and_exit_2(
    served: tuple[Host, Host], tmp_path: Path, setting: dict[str, Any], said: str
) -> None:
    """Before the workers start, not in each of them (systemd would restart it in a loop)."""
    a, _ = served
    config = _config(tmp_path, setting)
    result = _agent(a, "run", "--interface", a.ifname, "--config", str(config))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tapsense: error:"), result.stderr
    assert said in lines[0]


def test_unwritable_events_path_is_one_line_and_exit_2(served: tuple[Host, Host]) -> None:
    """Like `tapsense replay --events` with such a path: the daemon cannot start."""
    a, _ = served
    result = _agent(a, "run", "--interface", a.ifname, "--events", "/nonexistent/dir/e.jsonl")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tapsense: error:"), result.stderr
    assert "/nonexistent/dir/e.jsonl" in lines[0]


def test_check_config_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        "[capture]\nworkers = 0\nblock_size_kb = 6\npromisc = 1\n"
        '[log]\nlevel = "loud"\n[nosuch]\nx = 1\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "agent", "check-config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    for needle in ("capture.workers", "capture.block_size_kb", "capture.promisc", "log.level"):
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    assert any("nosuch" in line for line in lines), lines
    assert len(lines) == 5, lines
    assert all(line.startswith(str(path)) for line in lines)
