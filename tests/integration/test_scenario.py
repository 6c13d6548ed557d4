"""End to end: an analyst's questions answered from metadata alone.

A day of a small network (tests/scenario.py: fourteen hosts' routines, DNS before every
session, TLS, QUIC and game traffic with chosen byte shares and peak hours, one host
resolving WannaCry's kill switch) goes through `agent replay --ship` with client
pseudonyms and an indicator list, over a real socket on 127.0.0.1, into `agent collect`.
`agent report` must then tell what share of the bytes each kind of use takes, when each
peaks, and which (pseudonymous) client touched the indicator, while no client address is
left in clear anywhere the data went: report, database, events. The game flows carry no
name on the wire, so gaming's share is right only if the DNS answers named them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.privacy import CryptoPan
from tests.shipping_harness import Collector, replay_command, run

SEED = 1
SHARE_TOLERANCE = 0.01  # of all bytes, between the report and the scenario's truth
DB_SHARE_TOLERANCE = 0.002  # what the generator guarantees, checked on the stored rollups
UNATTRIBUTED = "unattributed"


@dataclass(frozen=True)
class Scenario:
    pcap: Path
    intel: Path
    truth: dict[str, Any]


@dataclass(frozen=True)
class Run:
    db: Path
    events: Path
    key: Path
    report: dict[str, Any]
    report_json: str
    report_text: str


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    out = tmp_path_factory.mktemp("scenario")
    result = run([sys.executable, "-m", "tests.scenario", "--out", str(out), "--seed", str(SEED)])
    assert result.returncode == 0, result.stderr
    truth = json.loads((out / "truth.json").read_text())
    return Scenario(out / "scenario.pcap", out / "intel.txt", truth)


def replay_and_report(scenario: Scenario, tmp: Path, *, privacy: bool) -> Run:
    """Collector on 127.0.0.1, the scenario replayed and shipped to it, then the report."""
    db, events, key, spool = tmp / "db.sqlite", tmp / "events.jsonl", tmp / "key", tmp / "spool"
    lines = [
        "[sensor]",
        'id = "scenario"',
        "[ship]",
        "window_s = 60.0",
        'fsync = "never"',  # a batch a minute of packet time: hundreds; no fsync each
        "[intel]",
        f"files = [{json.dumps(str(scenario.intel))}]",
        "[rollups]",
        "clients = true",
    ]
    if privacy:
        lines += ["[privacy]", 'clients = "cryptopan"', f"key_file = {json.dumps(str(key))}"]
    config = tmp / "tapsense.toml"
    config.write_text("\n".join(lines) + "\n")
    with Collector(db, tmp / "collect.log") as collector:
        cmd = replay_command(
            scenario.pcap,
            url=f"tcp://{collector.address}",
            spool=spool,
            config=config,
            events=events,
            ship_timeout_s=30.0,
        )
        result = run(cmd)
        assert result.returncode == 0, result.stderr
    report_cmd = [sys.executable, "-m", "agent", "report", "--db", str(db), "--tz", "UTC"]
    as_json = run([*report_cmd, "--json"])
    assert as_json.returncode == 0, as_json.stderr
    as_text = run(report_cmd)
    assert as_text.returncode == 0, as_text.stderr
    return Run(db, events, key, json.loads(as_json.stdout), as_json.stdout, as_text.stdout)


@pytest.fixture(scope="module")
def private_run(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return replay_and_report(scenario, tmp_path_factory.mktemp("private"), privacy=True)


# --- where client addresses could hide ----------------------------------------------------

_V4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_V6 = re.compile(r"[0-9A-Fa-f]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:]*")


def addresses_in(text: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every IP address written in text, in any spelling (expanded, upper case...)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for token in _V4.findall(text):
        with contextlib.suppress(ValueError):
            found.add(ipaddress.ip_address(token))
    for token in _V6.findall(text):  # "a:b::c", or glued to a colon: "client:a:b::c"
        for candidate in {token, token.strip(":"), token.partition(":")[2]}:
            with contextlib.suppress(ValueError):
                found.add(ipaddress.ip_address(candidate))
    return found


def leaks(text: str, clients: list[str]) -> set[str]:
    """The client addresses that appear in clear in text: as addresses in any spelling, or
    their usual text with no address character either side."""
    wanted = {ipaddress.ip_address(c): c for c in clients}
    found = {wanted[a] for a in addresses_in(text) if a in wanted}
    found |= {
        c for c in clients if re.search(rf"(?<![0-9A-Fa-f:.]){re.escape(c)}(?![0-9A-Fa-f:.])", text)
    }
    return found


def db_text(db: Path) -> dict[str, str]:
    """Every text cell of every table of the store, joined per table."""
    out: dict[str, str] = {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cells = []
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("latin-1")
                    if isinstance(value, str):
                        cells.append(value)
            out[table] = "\n".join(cells)
    return out


def events_of(path: Path, kind: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        records = (json.loads(line) for line in lines)
        return [r for r in records if r["type"] == kind]


# --- the analyst's questions --------------------------------------------------------------


def test_shares_of_bytes_by_category(scenario: Scenario, private_run: Run) -> None:
    truth = scenario.truth["shares"]
    stored = stored_category_bytes(private_run.db)
    total = sum(stored.values())
    for category, share in truth.items():  # the rollups as stored, before any report
        assert stored.get(category, 0) / total == pytest.approx(share, abs=DB_SHARE_TOLERANCE)
    reported = {
        row["category"] or UNATTRIBUTED: row["bytes_share"]
        for row in private_run.report["categories"]
    }
    assert set(reported) == set(truth)
    for category, share in truth.items():
        assert reported[category] == pytest.approx(share, abs=SHARE_TOLERANCE), category
    shares = [row["bytes_share"] for row in private_run.report["categories"]]
    assert shares == sorted(shares, reverse=True)
    flows = {r["category"] or UNATTRIBUTED: r["flows"] for r in private_run.report["categories"]}
    assert flows == scenario.truth["flows"]


def stored_category_bytes(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT category, sum(bytes_up + bytes_down) FROM rollup_categories GROUP BY 1"
        ).fetchall()
    return {category or UNATTRIBUTED: int(octets) for category, octets in rows}


def test_peak_hour_of_each_category(scenario: Scenario, private_run: Run) -> None:
    hours = private_run.report["hours"]
    assert hours["tz"] == "UTC"
    for category, peak in scenario.truth["peak_hour"].items():
        assert hours["peak_hour"][category] == peak, category
        # and the whole day's profile: every hour's bytes where the scenario put them
        expected = scenario.truth["hour_bytes"][category]
        total = sum(expected)
        for hour, (got, want) in enumerate(zip(hours["bytes"][category], expected, strict=True)):
            assert abs(got - want) <= 0.01 * total, (category, hour)


def test_intel_hit_names_the_pseudonym_not_the_client(scenario: Scenario, private_run: Run) -> None:
    intel = scenario.truth["intel"]
    pseudonym = CryptoPan(private_run.key.read_bytes()).text(intel["client"])
    assert pseudonym != intel["client"]
    hits = private_run.report["intel"]
    assert [h["indicator"] for h in hits] == [intel["domain"]]  # no decoy matched
    hit = hits[0]
    assert hit["matched"] == "dns.qname"
    assert hit["value"] == intel["domain"]
    assert hit["indicator_type"] == "domain"
    assert hit["client"] == pseudonym
    assert hit["ts"] == pytest.approx(intel["ts"], abs=1.0)
    with contextlib.closing(sqlite3.connect(f"file:{private_run.db}?mode=ro", uri=True)) as conn:
        stored = conn.execute("SELECT client, indicator, matched FROM intel").fetchall()
    assert stored == [(pseudonym, intel["domain"], "dns.qname")]


def test_game_flows_are_named_by_dns(scenario: Scenario, private_run: Run) -> None:
    flows = events_of(private_run.events, "flow")
    games = [f for f in flows if f["category"] == "gaming"]
    assert games
    for flow in games:  # no name on the wire: only the earlier DNS answer names them
        assert (flow["proto"], flow["name_source"]) == ("udp", "dns")
        assert flow["dst"] in scenario.truth["game_servers"]
    ended = [f for f in games if f["end"] != "interim"]
    assert len(ended) == scenario.truth["flows"]["gaming"]
    for flow in flows:
        if flow["category"] not in (None, "gaming"):
            assert flow["name_source"] in ("tls", "quic")
    with contextlib.closing(sqlite3.connect(f"file:{private_run.db}?mode=ro", uri=True)) as conn:
        sources = conn.execute(
            "SELECT DISTINCT proto, name_source FROM flow WHERE category = 'gaming'"
        ).fetchall()
    assert sources == [("udp", "dns")]


def test_top_clients_are_pseudonyms_of_the_clients(scenario: Scenario, private_run: Run) -> None:
    pan = CryptoPan(private_run.key.read_bytes())
    pseudonyms = {pan.text(c) for c in scenario.truth["clients"]}
    top = private_run.report["top_clients"]
    assert {"video", "gaming"} <= set(top)
    for rows in top.values():
        assert rows
        assert {row["client"] for row in rows} <= pseudonyms


def test_no_client_address_in_clear_anywhere(scenario: Scenario, private_run: Run) -> None:
    clients = scenario.truth["clients"]
    assert {ipaddress.ip_address(c).version for c in clients} == {4, 6}
    assert leaks(private_run.report_json, clients) == set()
    assert leaks(private_run.report_text, clients) == set()
    assert leaks(private_run.events.read_text(), clients) == set()
    tables = db_text(private_run.db)
    assert {"flow", "dns", "intel", "rollup_clients", "records", "sensors"} <= set(tables)
    for table, text in tables.items():
        assert leaks(text, clients) == set(), table


def test_without_privacy_the_intel_hit_shows_the_client(scenario: Scenario, tmp_path: Path) -> None:
    """The same replay, addresses kept: the checks above would see the clear address."""
    clear = replay_and_report(scenario, tmp_path, privacy=False)
    intel = scenario.truth["intel"]
    assert [(h["client"], h["indicator"]) for h in clear.report["intel"]] == [
        (intel["client"], intel["domain"])
    ]
    clients = scenario.truth["clients"]
    assert intel["client"] in leaks(clear.report_json, clients)
    assert intel["client"] in leaks(db_text(clear.db)["intel"], clients)
    assert set(clients) == leaks(clear.events.read_text(), clients)
