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
from datetime import datetime
from pathlib import Path
from typing import Any

RECORD_TYPES = ("dns", "tls", "quic", "flow")
NAME_COLUMNS = ("name", "flows", "bytes", "packets")
TOP = 10


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


def build(
    db: sqlite3.Connection, since: float | None = None, now: float | None = None
) -> dict[str, Any]:
    """The report as a dict (what --json prints)."""
    now = time.time() if now is None else now
    since = since if since is not None else float("-inf")
    records = {
        kind: db.execute(f'SELECT count(*) FROM "{kind}" WHERE ts >= ?', (since,)).fetchone()[0]
        for kind in RECORD_TYPES
    }
    names_by_bytes = _rows(
        db,
        """
        SELECT name, sum(flows), sum(bytes_up + bytes_down), sum(pkts_up + pkts_down)
        FROM rollup_names WHERE window_end >= ? AND name IS NOT NULL
        GROUP BY name ORDER BY 3 DESC, name LIMIT ?""",
        since,
        NAME_COLUMNS,
    )
    names_by_flows = _rows(
        db,
        """
        SELECT name, sum(flows), sum(bytes_up + bytes_down), sum(pkts_up + pkts_down)
        FROM rollup_names WHERE window_end >= ? AND name IS NOT NULL
        GROUP BY name ORDER BY 2 DESC, name LIMIT ?""",
        since,
        NAME_COLUMNS,
    )
    qnames = _rows(
        db,
        """
        SELECT qname, sum(queries) FROM rollup_qnames WHERE window_end >= ? AND qname IS NOT NULL
        GROUP BY qname ORDER BY 2 DESC, qname LIMIT ?""",
        since,
        ("qname", "queries"),
    )
    nxdomain = _rows(
        db,
        """
        SELECT qname, sum(queries) FROM rollup_qnames
        WHERE window_end >= ? AND qname IS NOT NULL AND rcode = 3
        GROUP BY qname ORDER BY 2 DESC, qname LIMIT ?""",
        since,
        ("qname", "queries"),
    )
    sensors = []
    for sensor, last_seen, window_end, peer, batches, count, stats_json in db.execute(
        "SELECT sensor, last_seen, last_window_end, peer, batches, records, stats "
        "FROM sensors ORDER BY sensor"
    ):
        stats = json.loads(stats_json or "{}")
        shipping = stats.get("shipping", {})
        caps = stats.get("caps", {})
        sensors.append(
            {
                "sensor": sensor,
                "peer": peer,
                "last_seen": last_seen,
                "seen_ago_s": round(now - last_seen, 1),
                "batches": batches,
                "records": count,
                "packets": stats.get("packets", 0),
                "kernel_drops": stats.get("kernel_drops", 0),
                "cap_drops": sum(v for v in caps.values() if isinstance(v, int)),
                "spool_batches": shipping.get("spool_batches", 0),
                "spool_dropped_batches": shipping.get("dropped_batches", 0),
                "lag_s": round(last_seen - window_end, 1),
            }
        )
    return {
        "since": None if since == float("-inf") else since,
        "records": records,
        "top_names_by_bytes": names_by_bytes,
        "top_names_by_flows": names_by_flows,
        "top_qnames": qnames,
        "top_nxdomain": nxdomain,
        "sensors": sensors,
    }


def _rows(
    db: sqlite3.Connection, sql: str, since: float, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    return [dict(zip(keys, row, strict=True)) for row in db.execute(sql, (since, TOP))]


def render(report: dict[str, Any]) -> str:
    """The report as terminal tables."""
    out = ["records: " + ", ".join(f"{k} {v:,}" for k, v in report["records"].items())]
    sections = (
        ("top names by bytes", "top_names_by_bytes", ("name", "bytes", "flows")),
        ("top names by flows", "top_names_by_flows", ("name", "flows", "bytes")),
        ("top DNS names", "top_qnames", ("qname", "queries")),
        ("top NXDOMAIN names", "top_nxdomain", ("qname", "queries")),
        (
            "sensors",
            "sensors",
            (
                "sensor",
                "seen_ago_s",
                "batches",
                "records",
                "packets",
                "kernel_drops",
                "cap_drops",
                "spool_batches",
                "lag_s",
            ),
        ),
    )
    for title, key, columns in sections:
        out.append("")
        out.append(title)
        out.extend(_table(report[key], columns))
    return "\n".join(out) + "\n"


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
