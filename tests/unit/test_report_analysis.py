"""The analyst's part of the report: shares per category and service, hours of the day,
top clients per category, intel hits; in JSON, terminal tables and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.report import build, open_store, render
from agent.store import Store
from agent.wire import batch_message, decode_batch

ROOT = Path(__file__).resolve().parents[2]
DAY = 1_762_041_600.0  # 2025-11-02 00:00:00 UTC
HOUR = 3600.0


def traffic(key: tuple[Any, ...], flows: int, up: int, down: int) -> list[Any]:
    return [*key, flows, 1, up, 1, down]


def intel(ts: float, client: str, value: str) -> dict[str, Any]:
    return {"type": "intel", "ts": ts, "src": client, "sport": 5000, "dst": "10.0.0.53",
            "dport": 53, "proto": "udp", "flow": "1:" + "A" * 27 + "=", "client": client,
            "indicator": "bad.example", "indicator_type": "domain", "matched": "dns.qname",
            "value": value, "source": "list.txt", "tag": "c2"}  # fmt: skip


def flow(ts: float, client: str, category: str | None, octets: int) -> dict[str, Any]:
    return {"type": "flow", "ts": ts, "src": client, "sport": 40000, "dst": "192.0.2.1",
            "dport": 443, "proto": "tcp", "flow": "1:" + "B" * 27 + "=", "ts_end": ts + 1,
            "pkts_up": 1, "bytes_up": octets, "pkts_down": 1, "bytes_down": 0, "end": "fin",
            "name": None, "name_source": None, "service": None, "category": category}  # fmt: skip


def store_windows(path: Path, windows: list[dict[str, Any]]) -> None:
    store = Store(path)
    try:
        for seq, w in enumerate(windows):
            message = batch_message(
                sensor=w.get("sensor", "tap-01"),
                stream="live",
                seq=seq,
                window=(w["start"], w["start"] + 10),
                records=w.get("records"),
                count=len(w.get("records") or []),
                rollups=w["rollups"],
                stats={},
            )
            assert store.write_batch(decode_batch(message))
    finally:
        store.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Video at 21h (600 bytes), email at 08h (300), unattributed at 08h (100); a client
    rollup; two intel hits."""
    path = tmp_path / "t.db"
    store_windows(
        path,
        [
            {
                "start": DAY + 8 * HOUR,
                "rollups": {
                    "categories": [traffic(("email",), 3, 200, 100), traffic((None,), 1, 50, 50)],
                    "services": [
                        traffic(("gmail", "email"), 3, 200, 100),
                        traffic((None, None), 1, 50, 50),
                    ],
                    "clients": [
                        traffic(("10.9.0.1", "email"), 2, 150, 50),
                        traffic(("10.9.0.2", "email"), 1, 50, 50),
                    ],
                },
                "records": [intel(DAY + 8 * HOUR + 1, "10.9.0.2", "x.bad.example")],
            },
            {
                "start": DAY + 21 * HOUR + 30 * 60,
                "rollups": {
                    "categories": [traffic(("video",), 1, 100, 500)],
                    "services": [traffic(("youtube", "video"), 1, 100, 500)],
                    "clients": [traffic(("10.9.0.2", "video"), 1, 100, 500)],
                },
                "records": [intel(DAY + 21 * HOUR + 1800, "10.9.0.1", "bad.example")],
            },
        ],
    )
    return path


def report_of(path: Path, **kwargs: Any) -> dict[str, Any]:
    db = open_store(path)
    try:
        return build(db, **kwargs)
    finally:
        db.close()


def test_shares_of_bytes_and_flows_per_category(db_path: Path) -> None:
    categories = report_of(db_path)["categories"]
    assert [c["category"] for c in categories] == ["video", "email", None]
    video, email, unattributed = categories
    assert (video["bytes"], email["bytes"], unattributed["bytes"]) == (600, 300, 100)
    assert video["bytes_share"] == pytest.approx(0.6)
    assert email["flows_share"] == pytest.approx(3 / 5)
    assert sum(c["bytes_share"] for c in categories) == pytest.approx(1.0)


def test_services_carry_their_category(db_path: Path) -> None:
    services = report_of(db_path)["services"]
    assert [(s["service"], s["category"], s["bytes"]) for s in services] == [
        ("youtube", "video", 600),
        ("gmail", "email", 300),
        (None, None, 100),
    ]


def test_hours_of_day_and_peaks_in_utc(db_path: Path) -> None:
    hours = report_of(db_path)["hours"]
    assert hours["tz"] == "UTC"
    assert hours["bytes"]["video"][21] == 600 and sum(hours["bytes"]["video"]) == 600
    assert hours["bytes"]["email"][8] == 300
    assert hours["bytes"]["unattributed"][8] == 100
    assert hours["peak_hour"] == {"video": 21, "email": 8, "unattributed": 8}


def test_hours_of_day_follow_the_time_zone_to_the_quarter_hour(db_path: Path) -> None:
    # India is UTC+05:30: 21:30 UTC is 03:00 there, 08:00 UTC is 13:30
    hours = report_of(db_path, tz="Asia/Kolkata")["hours"]
    assert hours["tz"] == "Asia/Kolkata"
    assert hours["peak_hour"]["video"] == 3
    assert hours["peak_hour"]["email"] == 13


def test_top_clients_per_category_from_client_rollups(db_path: Path) -> None:
    top = report_of(db_path)["top_clients"]
    assert [c["client"] for c in top["email"]] == ["10.9.0.1", "10.9.0.2"]
    assert top["email"][0] == {"client": "10.9.0.1", "bytes": 200, "flows": 2}
    assert top["video"] == [{"client": "10.9.0.2", "bytes": 600, "flows": 1}]


def test_top_clients_from_flow_records_without_client_rollups(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    records = [
        flow(DAY + 1, "10.9.0.7", "gaming", 900),
        flow(DAY + 2, "10.9.0.8", "gaming", 100),
        flow(DAY + 3, "10.9.0.8", None, 5),
    ]
    store_windows(path, [{"start": DAY, "rollups": {}, "records": records}])
    top = report_of(path)["top_clients"]
    assert top["gaming"] == [
        {"client": "10.9.0.7", "bytes": 900, "flows": 1},
        {"client": "10.9.0.8", "bytes": 100, "flows": 1},
    ]
    assert top["unattributed"] == [{"client": "10.9.0.8", "bytes": 5, "flows": 1}]


def test_every_intel_hit_in_time_order_up_to_the_limit(db_path: Path) -> None:
    report = report_of(db_path)
    assert report["intel_total"] == 2
    assert [(h["client"], h["value"], h["sensor"]) for h in report["intel"]] == [
        ("10.9.0.2", "x.bad.example", "tap-01"),
        ("10.9.0.1", "bad.example", "tap-01"),
    ]
    limited = report_of(db_path, intel_limit=1)
    assert limited["intel_total"] == 2 and len(limited["intel"]) == 1


def test_since_cuts_rollups_and_hits(db_path: Path) -> None:
    report = report_of(db_path, since=DAY + 12 * HOUR)
    assert [c["category"] for c in report["categories"]] == ["video"]
    assert report["intel_total"] == 1


def test_terminal_report_has_the_analyst_sections(db_path: Path) -> None:
    text = render(report_of(db_path))
    assert "categories (share of bytes and of flows)" in text
    assert "unattributed" in text and "60.0" in text  # video's share of bytes in percent
    heatmap = text.split("activity by hour of day (UTC")[1].split("\n\n")[0]
    video_row = next(line for line in heatmap.splitlines() if line.strip().startswith("video"))
    assert video_row.rstrip().endswith("peak 21")
    assert "top clients per category" in text and "10.9.0.1" in text
    assert "threat intel hits (2)" in text and "x.bad.example" in text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "report", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_cli_json_html_and_time_zone(db_path: Path, tmp_path: Path) -> None:
    done = run_cli("--db", str(db_path), "--json", "--tz", "Asia/Tokyo")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["hours"]["tz"] == "Asia/Tokyo" and report["hours"]["peak_hour"]["email"] == 17
    page = tmp_path / "r.html"
    done = run_cli("--db", str(db_path), "--html", str(page))
    assert done.returncode == 0 and done.stdout == "", done.stderr
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "x.bad.example" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tz", "Mars/Olympus"), "--tz 'Mars/Olympus': not a time zone"),
        (("--html", "/nonexistent/dir/r.html"), "--html /nonexistent/dir/r.html"),
    ],
)
def test_cli_bad_options_get_one_line_and_exit_2(
    db_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_cli("--db", str(db_path), *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_top_clients_merge_sensors_with_and_without_client_rollups(tmp_path: Path) -> None:
    path = tmp_path / "mixed.db"
    store_windows(
        path,
        [
            {"start": DAY, "sensor": "with-rollups", "rollups": {
                "clients": [traffic(("10.9.0.1", "gaming"), 1, 100, 100)]}},
            {"start": DAY + 10, "sensor": "records-only", "rollups": {},
             "records": [flow(DAY + 11, "10.9.0.2", "gaming", 500)]},
        ],
    )  # fmt: skip
    top = report_of(path)["top_clients"]
    assert [c["client"] for c in top["gaming"]] == ["10.9.0.2", "10.9.0.1"]
