"""The `tapsense` command line (`python3 -m agent`), run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from agent.record import DnsRecord, FlowRecord, StatsRecord
from tests.util import pcap_bytes

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "dns": set(get_type_hints(DnsRecord)),
    "flow": set(get_type_hints(FlowRecord)),
    "stats": set(get_type_hints(StatsRecord)),
}


def tapsense(*args: str, stdin: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def eth() -> Ether:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


@pytest.fixture
def sample_pcap(tmp_path: Path) -> Path:
    """A DNS transaction and a short TCP connection."""
    c, s = "10.0.0.1", "10.0.0.53"
    frames = [
        (
            100.0,
            eth()
            / IP(src=c, dst=s)
            / UDP(sport=33333, dport=53)
            / DNS(id=1, rd=1, qd=DNSQR(qname="example.org")),
        ),
        (
            100.1,
            eth()
            / IP(src=s, dst=c)
            / UDP(sport=53, dport=33333)
            / DNS(id=1, qr=1, qd=DNSQR(qname="example.org"), an=DNSRR(rrname="example.org")),
        ),
        (100.2, eth() / IP(src=c, dst="192.0.2.80") / TCP(sport=40000, dport=80, flags="S")),
        (100.3, eth() / IP(src="192.0.2.80", dst=c) / TCP(sport=80, dport=40000, flags="SA")),
    ]
    path = tmp_path / "sample.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in frames]))
    return path


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tapsense")
    assert "error" in lines[0]
    for needle in needles:
        assert needle in lines[0]
    assert done.stdout == ""


def test_replay_writes_json_lines_with_the_record_fields(tmp_path: Path, sample_pcap: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = tapsense("replay", str(sample_pcap), "--events", str(out))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["type"] for r in records] == ["dns", "flow", "flow", "stats"]
    for record in records:
        assert set(record) == FIELDS[record["type"]], record["type"]
    dns = records[0]
    assert (dns["qname"], dns["status"], dns["src"], dns["dport"]) == (
        "example.org",
        "answered",
        "10.0.0.1",
        53,
    )
    assert isinstance(dns["ts"], float)
    assert records[-1]["packets"] == 4
    assert records[-1]["records"] == {"dns": 1, "flow": 2}


def test_replay_prints_a_summary_on_stderr(sample_pcap: Path) -> None:
    done = tapsense("replay", str(sample_pcap))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    (summary,) = [line for line in done.stderr.splitlines() if "packets/s" in line]
    assert summary.startswith("tapsense: 4 packets, 4 records")
    assert "packets/s" in summary
    assert "dns 1" in summary and "flow 2" in summary and "stats 1" in summary


def test_quiet_prints_nothing(sample_pcap: Path) -> None:
    done = tapsense("replay", "-q", str(sample_pcap))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_summary_of_a_capture_without_packets(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(pcap_bytes([]))
    done = tapsense("replay", str(path))
    assert done.returncode == 0
    (summary,) = done.stderr.splitlines()
    assert summary.startswith("tapsense: 0 packets, 1 records (stats 1)")


def test_events_dash_writes_to_stdout(sample_pcap: Path) -> None:
    done = tapsense("replay", str(sample_pcap), "--events", "-")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["type"] for r in records] == ["dns", "flow", "flow", "stats"]
    assert "packets/s" in done.stderr
    assert "{" not in done.stderr


def test_several_files_and_stdin(tmp_path: Path, sample_pcap: Path) -> None:
    with sample_pcap.open("rb") as stdin:
        done = tapsense("replay", str(sample_pcap), "-", "--events", "-", "-q", stdin=stdin)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.splitlines()[-1])
    assert stats["packets"] == 8
    assert stats["capture"]["files"] == 2


def test_damaged_capture_warns_and_succeeds(tmp_path: Path, sample_pcap: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(sample_pcap.read_bytes()[:-5])
    done = tapsense("replay", str(cut), "--events", "-")
    assert done.returncode == 0, done.stderr
    assert "truncated_record" in done.stderr
    stats = json.loads(done.stdout.splitlines()[-1])
    assert (stats["packets"], stats["capture"]["truncated_record"]) == (3, 1)


def test_no_arguments() -> None:
    assert_one_line_error(tapsense(), "command")


def test_replay_without_files() -> None:
    assert_one_line_error(tapsense("replay"), "FILE")


def test_missing_file(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = tapsense("replay", str(tmp_path / "nope.pcap"), "--events", str(out))
    assert_one_line_error(done, "nope.pcap")
    assert not out.exists()


def test_missing_file_among_good_ones(tmp_path: Path, sample_pcap: Path) -> None:
    done = tapsense("replay", str(sample_pcap), str(tmp_path / "nope.pcap"), "--events", "-")
    assert_one_line_error(done, "nope.pcap")


def test_directory(tmp_path: Path) -> None:
    assert_one_line_error(tapsense("replay", str(tmp_path)), str(tmp_path))


def test_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a capture\n" * 10)
    assert_one_line_error(tapsense("replay", str(path)), "notes.txt", "not a pcap")


def test_unreadable_config(tmp_path: Path, sample_pcap: Path) -> None:
    done = tapsense("replay", str(sample_pcap), "--config", str(tmp_path / "none.toml"))
    assert_one_line_error(done, "none.toml")
    done = tapsense("replay", str(sample_pcap), "--config", str(tmp_path))
    assert_one_line_error(done)


def test_invalid_config(tmp_path: Path, sample_pcap: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[flow]\nmax_flows = 0\nbogus = 1\n[nope]\n")
    done = tapsense("replay", str(sample_pcap), "--config", str(config))
    assert_one_line_error(done, "bad.toml", "flow.max_flows", "flow.bogus", "nope")


def test_unwritable_events_path(tmp_path: Path, sample_pcap: Path) -> None:
    done = tapsense("replay", str(sample_pcap), "--events", str(tmp_path / "no" / "x.jsonl"))
    assert_one_line_error(done, "x.jsonl")


def test_valid_config_is_used(tmp_path: Path, sample_pcap: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text("[flow]\nmax_flows = 1\n")
    done = tapsense("replay", str(sample_pcap), "--config", str(config), "--events", "-", "-q")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["end"] for r in records if r["type"] == "flow"] == ["evicted", "shutdown"]
    assert records[-1]["caps"]["flows_evicted"] == 1


def test_check_config_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[flow]\nmax_flows = "x"\nudp_timeout_s = 0\n[dns]\nfoo = 1\n[log]\nlevel = "loud"\n'
    )
    done = tapsense("check-config", str(config))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 4, lines
    for key in ("flow.max_flows", "flow.udp_timeout_s", "dns.foo", "log.level"):
        assert any(line.startswith(f"{config}: {key}: ") for line in lines), key


def test_check_config_ok(tmp_path: Path) -> None:
    config = tmp_path / "good.toml"
    config.write_text('[sensor]\nid = "edge-1"\n[flow]\nudp_timeout_s = 30\n')
    done = tapsense("check-config", str(config))
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, f"{config}: ok", "")


@pytest.mark.parametrize(
    ("ship", "said"),
    [
        ('url = "http://collector:80"', "ship: http://collector:80: the scheme must be tcp://"),
        ('url = "tcp://collector"', "ship: tcp://collector: expected tcp://HOST:PORT"),
        ('url = "tls://c:7443"\nca = "{missing}"', "ship: {missing}: No such file or directory"),
    ],
    ids=["scheme", "port", "ca"],
)
def test_check_config_refuses_a_collector_the_sensor_cannot_use(
    tmp_path: Path, ship: str, said: str
) -> None:
    """Caught here with one line, not later in every capture worker."""
    missing = tmp_path / "no-ca.pem"
    config = tmp_path / "ship.toml"
    config.write_text("[ship]\n" + ship.format(missing=missing) + "\n")
    done = tapsense("check-config", str(config))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{config}: " + said.format(missing=missing)), line


def test_check_config_unreadable(tmp_path: Path) -> None:
    done = tapsense("check-config", str(tmp_path / "none.toml"))
    assert done.returncode == 2
    assert "none.toml" in done.stderr


def test_version() -> None:
    done = tapsense("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("tapsense ")
