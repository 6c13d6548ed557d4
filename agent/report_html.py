"""The report as one self-contained HTML file: inline CSS and SVG charts, no script, no
request to anywhere (a Content-Security-Policy forbids them), so it opens offline.

Names in a report come from untrusted traffic (an SNI can hold any bytes a client sends),
so every value goes through html.escape, in text and in attributes alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from agent.report import SENSOR_COLUMNS, UNATTRIBUTED, utc_time

# one hue per category, in the order of the categories' bytes; then grey
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a",
)  # fmt: skip
OTHER = "#c8c8c8"
INTEL_COLUMNS = (
    "time", "client", "indicator", "indicator_type", "matched", "value", "source", "tag", "sensor",
)  # fmt: skip

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}td,th{padding:2px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}th{font-weight:600;border-bottom:1px solid #ccc}
.intel td{background:#fde8e8}.note{color:#666}svg text{font:11px system-ui,sans-serif}
"""


def _e(value: Any) -> str:
    return escape("-" if value is None else str(value), quote=True)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            break
        n /= 1000
    return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"


def category_colours(report: dict[str, Any]) -> dict[str, str]:
    """A colour per category, the same in every chart (grey for unattributed traffic)."""
    names = [c["category"] or UNATTRIBUTED for c in report["categories"]]
    return {
        name: PALETTE[i] if i < len(PALETTE) and name != UNATTRIBUTED else OTHER
        for i, name in enumerate(names)
    }


def _share_bars(rows: list[dict[str, Any]], label: str, colours: dict[str, str]) -> str:
    """Horizontal bars: each row's share of bytes, and its share of flows as a thin bar."""
    if not rows:
        return '<p class="note">No traffic in this period.</p>'
    row_h, left, width = 26, 170, 520
    height = row_h * len(rows) + 24
    # the longest bar fills the width: shares of a few percent stay readable
    scale = width / max(
        max(r["bytes_share"] for r in rows), max(r["flows_share"] for r in rows), 1e-9
    )
    parts = [
        f'<svg role="img" aria-label="share of bytes per {_e(label)}" width="{left + width + 170}"'
        f' height="{height}" viewBox="0 0 {left + width + 170} {height}">'
    ]
    for i, row in enumerate(rows):
        name = row.get(label) or UNATTRIBUTED
        colour = colours.get(row.get("category") or UNATTRIBUTED, OTHER)
        y = 12 + i * row_h
        bytes_w = max(row["bytes_share"] * scale, 0.5)
        flows_w = max(row["flows_share"] * scale, 0.5)
        parts.append(
            f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{_e(name)}</text>'
            f'<rect class="bar" x="{left}" y="{y}" width="{bytes_w:.1f}" height="14"'
            f' fill="{colour}"><title>{_e(name)}: {100 * row["bytes_share"]:.1f}% of bytes'
            f"</title></rect>"
            f'<rect x="{left}" y="{y + 16}" width="{flows_w:.1f}" height="4" fill="#888">'
            f"<title>{_e(name)}: {100 * row['flows_share']:.1f}% of flows</title></rect>"
            f'<text x="{left + bytes_w + 6:.1f}" y="{y + 12}">'
            f"{100 * row['bytes_share']:.1f}% · {_size(row['bytes'])} · "
            f"{100 * row['flows_share']:.1f}% of flows</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _heatmap(hours: dict[str, Any], colours: dict[str, str]) -> str:
    """Category × hour of day; a cell's opacity is its bytes against the category's peak."""
    rows = hours["bytes"]
    if not rows:
        return '<p class="note">No traffic in this period.</p>'
    cell, left, top = 26, 170, 22
    width, height = left + 24 * cell + 80, top + cell * len(rows) + 8
    parts = [
        f'<svg role="img" aria-label="activity by hour of day" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for hour in range(24):
        parts.append(
            f'<text x="{left + hour * cell + cell / 2}" y="14" text-anchor="middle">{hour}</text>'
        )
    for i, (category, values) in enumerate(rows.items()):
        y = top + i * cell
        peak = max(values) or 1
        colour = colours.get(category, OTHER)
        parts.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{_e(category)}</text>')
        for hour, value in enumerate(values):
            opacity = 0.06 + 0.94 * value / peak if value else 0.03
            parts.append(
                f'<rect class="cell" x="{left + hour * cell}" y="{y}" width="{cell - 2}"'
                f' height="{cell - 2}" fill="{colour}" fill-opacity="{opacity:.2f}">'
                f"<title>{_e(category)}, {hour}:00–{hour}:59: {_size(value)}</title></rect>"
            )
        peak_hour = hours["peak_hour"].get(category)
        parts.append(f'<text x="{left + 24 * cell + 6}" y="{y + 17}">peak {_e(peak_hour)}h</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...], css: str = "") -> str:
    if not rows:
        return '<p class="note">None.</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return _e(value)


def render_html(report: dict[str, Any], title: str = "tapsense report") -> str:
    colours = category_colours(report)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    since = report.get("since")
    period = (
        "since " + datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if since
        else "everything stored"
    )
    records = ", ".join(f"{k} {v:,}" for k, v in report["records"].items())
    clients = "".join(
        f"<h3>{_e(category)}</h3>" + _table(rows, ("client", "bytes", "flows"))
        for category, rows in report["top_clients"].items()
    )
    intel = [
        {
            **hit,
            "time": utc_time(hit["ts"]),
        }
        for hit in report["intel"]
    ]
    shown = len(intel)
    intel_note = (
        f'<p class="note">{report["intel_total"] - shown:,} more hits not shown.</p>'
        if report["intel_total"] > shown
        else ""
    )
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Generated {generated}; {period}. Records: {_e(records)}.</p>',
        f"<h2>Threat intelligence hits ({report['intel_total']:,})</h2>",
        _table(intel, INTEL_COLUMNS, css="intel"),
        intel_note,
        "<h2>Categories: share of bytes (bar) and of flows (thin bar)</h2>",
        _share_bars(report["categories"], "category", colours),
        f"<h2>Activity by hour of day ({_e(report['hours']['tz'])})</h2>",
        _heatmap(report["hours"], colours),
        "<h2>Top services</h2>",
        _share_bars(report["services"], "service", colours),
        "<h2>Top clients per category</h2>",
        clients or '<p class="note">None.</p>',
        "<h2>Top names by bytes</h2>",
        _table(report["top_names_by_bytes"], ("name", "bytes", "flows", "packets")),
        "<h2>Top DNS names</h2>",
        _table(report["top_qnames"], ("qname", "queries")),
        "<h2>Top NXDOMAIN names</h2>",
        _table(report["top_nxdomain"], ("qname", "queries")),
        "<h2>Sensors</h2>",
        _table(report["sensors"], SENSOR_COLUMNS),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
        " style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
