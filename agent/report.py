"""The report: what the collector's store says, as terminal tables or JSON.

Reads the tables of agent/store.py. Names and DNS names come from the rollups, so sensors
that ship rollups only are counted too; record counts come from the record tables.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RECORD_TYPES = ("dns", "tls", "quic", "flow", "intel")
NAME_COLUMNS = ("name", "flows", "bytes", "packets")
TOP = 10
TOP_SERVICES = 25
TOP_CLIENTS = 5
INTEL_LIMIT = 1000
UNATTRIBUTED = "unattributed"  # the category of traffic no name maps to, in hours and clients
QUARTER_S = 900  # hours of day are summed from quarter hours: every time zone offset fits


class ReportError(Exception):
    """A report that cannot be made (one line for the user)."""


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds from "1700000000", an ISO 8601 time, or an age such as "2h" or "7d"."""
    now = time.time() if now is None else now
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if age:
        return now - float(age.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[age.group(2)]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ReportError(f"--since {text!r}: not a time")
        return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"--since {text!r}: expected epoch seconds, ISO 8601 or an age like 2h"
        ) from None
    if moment.tzinfo is None:
        raise ReportError(f"--since {text!r}: give a time zone (Z or +hh:mm)")
    return moment.timestamp()


def open_store(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ReportError(f"{path}: no such database")
    # a URI, for read-only; quote() keeps '#', '?' and '%' in the path from being URI syntax
    db = sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro", uri=True)
    try:
        db.execute("SELECT 1 FROM batches LIMIT 1")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise ReportError(f"{path}: not a tapsense database ({exc})") from None
    return db


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"--tz {name!r}: not a time zone (e.g. UTC, Europe/Paris)") from None


def build(
    db: sqlite3.Connection,
    since: float | None = None,
    now: float | None = None,
    tz: str = "UTC",
    intel_limit: int = INTEL_LIMIT,
) -> dict[str, Any]:
    """The report as a dict (what --json prints)."""
    now = time.time() if now is None else now
    since = since if since is not None else float("-inf")
    where = zone(tz)
    records = {
        kind: db.execute(f'SELECT count(*) FROM "{kind}" WHERE ts >= ?', (since,)).fetchone()[0]
        for kind in RECORD_TYPES
    }
    names_by_bytes = _top_names(db, since, by_bytes=True)
    names_by_flows = _top_names(db, since, by_bytes=False)
    qnames = _top_qnames(db, since, nxdomain_only=False)
    nxdomain = _top_qnames(db, since, nxdomain_only=True)
    sensors = []
    streams: dict[str, list[dict[str, Any]]] = {}
    for sensor, stats_json in db.execute("SELECT sensor, stats FROM streams ORDER BY stream"):
        streams.setdefault(sensor, []).append(_json_map(stats_json))
    for sensor, last_seen, window_end, peer, batches, count, stats_json in db.execute(
        "SELECT sensor, last_seen, last_window_end, peer, batches, records, stats "
        "FROM sensors ORDER BY sensor"
    ):
        # a sensor's workers ship streams of their own: their latest counters add up
        latest = streams.get(sensor) or [_json_map(stats_json)]
        sensors.append(
            {
                "sensor": sensor,
                "peer": peer,
                "last_seen": last_seen,
                "seen_ago_s": round(now - last_seen, 1),
                "streams": len(latest),
                "batches": batches,
                "records": count,
                "packets": _total(latest, "packets"),
                "kernel_drops": _total(latest, "kernel_drops"),
                "cap_drops": sum(
                    _number(v) for stats in latest for v in _map(stats.get("caps")).values()
                ),
                "spool_batches": sum(
                    _number(_map(stats.get("shipping")).get("spool_batches")) for stats in latest
                ),
                "spool_dropped_batches": sum(
                    _number(_map(stats.get("shipping")).get("dropped_batches")) for stats in latest
                ),
                "lag_s": round(last_seen - (window_end or last_seen), 1),
            }
        )
    return {
        "since": None if since == float("-inf") else since,
        "records": records,
        "categories": _shares(
            db,
            "SELECT category, sum(flows), sum(bytes_up + bytes_down) FROM rollup_categories "
            "WHERE window_end >= ? GROUP BY category",
            since,
            ("category",),
        ),
        "services": _shares(
            db,
            "SELECT service, category, sum(flows), sum(bytes_up + bytes_down) "
            "FROM rollup_services WHERE window_end >= ? GROUP BY service, category",
            since,
            ("service", "category"),
        )[:TOP_SERVICES],
        "hours": _hours(db, since, where, tz),
        "top_clients": _top_clients(db, since),
        "intel_total": records["intel"],
        "intel": _intel(db, since, intel_limit),
        "top_names_by_bytes": names_by_bytes,
        "top_names_by_flows": names_by_flows,
        "top_qnames": qnames,
        "top_nxdomain": nxdomain,
        "sensors": sensors,
    }


def _json_map(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> int | float:
    """A counter from a sensor's stats, 0 when it is not a number (another sensor version)."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _total(stats: list[dict[str, Any]], key: str) -> int | float:
    return sum(_number(s.get(key)) for s in stats)


def _shares(
    db: sqlite3.Connection, sql: str, since: float, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of (key..., flows, bytes) with each one's share of all bytes and of all flows."""
    rows = db.execute(sql, (since,)).fetchall()
    total_flows = sum(r[-2] for r in rows) or 1
    total_bytes = sum(r[-1] for r in rows) or 1
    out = [
        {
            **dict(zip(keys, r[:-2], strict=True)),
            "bytes": r[-1],
            "bytes_share": r[-1] / total_bytes,
            "flows": r[-2],
            "flows_share": r[-2] / total_flows,
        }
        for r in rows
    ]
    out.sort(key=lambda row: (-row["bytes"], str(row[keys[0]])))
    return out


def _hours(db: sqlite3.Connection, since: float, where: ZoneInfo, tz: str) -> dict[str, Any]:
    """Bytes per category and hour of the day (in `tz`), and each category's peak hour."""
    by_category: dict[str, list[int]] = {}
    for category, quarter, octets in db.execute(
        f"""SELECT category, CAST(window_start / {QUARTER_S} AS INTEGER),
                   sum(bytes_up + bytes_down)
            FROM rollup_categories WHERE window_end >= ? GROUP BY 1, 2""",
        (since,),
    ):
        hour = datetime.fromtimestamp(quarter * QUARTER_S, where).hour
        hours = by_category.setdefault(category or UNATTRIBUTED, [0] * 24)
        hours[hour] += octets
    ordered = dict(sorted(by_category.items(), key=lambda item: -sum(item[1])))
    return {
        "tz": tz,
        "bytes": ordered,
        "peak_hour": {c: max(range(24), key=h.__getitem__) for c, h in ordered.items() if any(h)},
    }


def _top_clients(db: sqlite3.Connection, since: float) -> dict[str, list[dict[str, Any]]]:
    """The clients with the most bytes in each category: from the client rollups of the
    sensors that make them, and from the flow records of the others."""
    totals: dict[tuple[Any, Any], list[int | float]] = {}
    rows = db.execute(
        """SELECT category, client, sum(bytes_up + bytes_down), sum(flows)
           FROM rollup_clients WHERE window_end >= ? GROUP BY category, client""",
        (since,),
    ).fetchall()
    # records may lack counts (another sensor version): they count as 0, not NULL
    rows += db.execute(
        """SELECT category, src,
                  coalesce(sum(coalesce(bytes_up, 0) + coalesce(bytes_down, 0)), 0),
                  coalesce(sum("end" IS NOT 'interim'), 0)
           FROM flow WHERE ts >= ? AND sensor NOT IN (SELECT DISTINCT sensor FROM rollup_clients)
           GROUP BY category, src""",
        (since,),
    ).fetchall()
    for category, client, octets, flows in rows:
        total = totals.setdefault((category, client), [0, 0])
        total[0] += octets or 0
        total[1] += flows or 0
    ranked = sorted(totals.items(), key=lambda item: (-item[1][0], str(item[0][1])))
    out: dict[str, list[dict[str, Any]]] = {}
    for (category, client), (octets, flows) in ranked:
        clients = out.setdefault(category or UNATTRIBUTED, [])
        if len(clients) < TOP_CLIENTS:
            clients.append({"client": client, "bytes": octets, "flows": flows})
    return out


INTEL_KEYS = (
    "ts", "sensor", "client", "indicator", "indicator_type", "matched", "value", "source", "tag",
    "flow",
)  # fmt: skip


def _intel(db: sqlite3.Connection, since: float, limit: int) -> list[dict[str, Any]]:
    keys = INTEL_KEYS
    return [
        dict(zip(keys, row, strict=True))
        for row in db.execute(
            f"SELECT {', '.join(keys)} FROM intel WHERE ts >= ? ORDER BY ts, rowid LIMIT ?",
            (since, limit),
        )
    ]


def _rows(
    db: sqlite3.Connection, sql: str, since: float, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    return [dict(zip(keys, row, strict=True)) for row in db.execute(sql, (since, TOP))]


def render(report: dict[str, Any]) -> str:
    """The report as terminal tables."""
    out = ["records: " + ", ".join(f"{k} {v:,}" for k, v in report["records"].items())]
    sections = (
        ("categories (share of bytes and of flows)", "categories", CATEGORY_COLUMNS),
        ("top services", "services", ("service", *CATEGORY_COLUMNS)),
        ("top names by bytes", "top_names_by_bytes", ("name", "bytes", "flows")),
        ("top names by flows", "top_names_by_flows", ("name", "flows", "bytes")),
        ("top DNS names", "top_qnames", ("qname", "queries")),
        ("top NXDOMAIN names", "top_nxdomain", ("qname", "queries")),
        ("sensors", "sensors", SENSOR_COLUMNS),
    )
    for title, key, columns in sections:
        out.append("")
        out.append(title)
        out.extend(_table(_percent(report[key]), columns))
    out += ["", f"activity by hour of day ({report['hours']['tz']}; darker is more bytes)"]
    out += _heatmap(report["hours"])
    out += ["", "top clients per category"]
    for category, clients in report["top_clients"].items():
        out.append(f"  {category}")
        out.extend("  " + line for line in _table(clients, ("client", "bytes", "flows")))
    shown = len(report["intel"])
    more = report["intel_total"] - shown
    out += [
        "",
        f"threat intel hits ({report['intel_total']:,}{f', {more:,} not shown' if more else ''})",
    ]
    out.extend(
        _table(
            [{**hit, "time": utc_time(hit["ts"])} for hit in report["intel"]],
            ("time", "client", "indicator", "matched", "value", "source", "sensor"),
        )
    )
    return "\n".join(out) + "\n"


CATEGORY_COLUMNS = ("category", "bytes", "bytes %", "flows", "flows %")
SENSOR_COLUMNS = (
    "sensor",
    "seen_ago_s",
    "streams",
    "batches",
    "records",
    "packets",
    "kernel_drops",
    "cap_drops",
    "spool_batches",
    "lag_s",
)
_SHADES = " .:-=+*#%@"


def _percent(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shares as percentages, and traffic no name maps to called what it is."""
    return [
        {
            **r,
            "category": r["category"] or UNATTRIBUTED,
            "bytes %": f"{100 * r['bytes_share']:.1f}",
            "flows %": f"{100 * r['flows_share']:.1f}",
        }
        if "bytes_share" in r
        else r
        for r in rows
    ]


def _heatmap(hours: dict[str, Any]) -> list[str]:
    if not hours["bytes"]:
        return ["  (none)"]
    width = max(len(c) for c in hours["bytes"])
    lines = [
        "  " + " " * width + "  " + "".join(f"{h:<3d}" if h % 3 == 0 else "   " for h in range(24))
    ]
    for category, row in hours["bytes"].items():
        top = max(row) or 1
        cells = "".join(_SHADES[min(len(_SHADES) - 1, -(-9 * v // top))] * 3 for v in row)
        lines.append(
            f"  {category:<{width}}  {cells}  peak {hours['peak_hour'].get(category, '-')}"
        )
    return lines


def _top_names(db: sqlite3.Connection, since: float, *, by_bytes: bool) -> list[dict[str, Any]]:
    """The names of the most bytes (or flows) in the name rollups since `since`."""
    order = 3 if by_bytes else 2  # the column of bytes, or of flows
    return _rows(
        db,
        f"""
        SELECT name, sum(flows), sum(bytes_up + bytes_down), sum(pkts_up + pkts_down)
        FROM rollup_names WHERE window_end >= ? AND name IS NOT NULL
        GROUP BY name ORDER BY {order} DESC, name LIMIT ?""",
        since,
        NAME_COLUMNS,
    )


def _top_qnames(
    db: sqlite3.Connection, since: float, *, nxdomain_only: bool
) -> list[dict[str, Any]]:
    """The names queried most (or answered NXDOMAIN most, RCODE 3) since `since`."""
    rcode = " AND rcode = 3" if nxdomain_only else ""
    return _rows(
        db,
        f"""
        SELECT qname, sum(queries) FROM rollup_qnames
        WHERE window_end >= ? AND qname IS NOT NULL{rcode}
        GROUP BY qname ORDER BY 2 DESC, qname LIMIT ?""",
        since,
        ("qname", "queries"),
    )


def utc_time(ts: float) -> str:
    """A record time as the report shows it: 2026-11-02 14:23:07Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[str]:
    if not rows:
        return ["  (none)"]
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [
        "  "
        + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        )
    ]
    for row in cells:
        lines.append(
            "  "
            + "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return "-" if value is None else str(value)
