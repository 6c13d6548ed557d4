"""`tapsense report --html` in a real headless browser (Chromium from the distribution).

A capture goes through the pipeline and the summariser into a collector store, as it
would over the wire; the report is rendered to one HTML file and opened from disk by
Chromium with every network path closed. The test reads back the DOM Chromium built and
a screenshot it took: the charts are there, drawn in their colours, and a name from the
traffic that tries to inject markup stays text. The screenshot is kept for people to look
at: $TAPSENSE_ARTIFACTS/report.png (default build/test-artifacts/).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from agent.capfile import CaptureSource, replay_batches
from agent.config import parse_config
from agent.core import Pipeline
from agent.report import build, open_store
from agent.report_html import OTHER, category_colours, render_html
from agent.store import Store
from agent.summary import Summariser
from agent.wire import decode_batch, frame, parse_message
from tests.shipping_harness import gen_mix

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_NAME = '<script>document.title="owned"</script><img src=x onerror=alert(1)>.example'


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("TAPSENSE_CI"):
        pytest.fail("Chromium is not installed (.ci/run installs the chromium package)")
    pytest.skip("Chromium is not installed")


def _store(pcap: Path, db: Path) -> None:
    """The batches `replay --ship` would send, decoded and stored as the collector does."""
    config = parse_config("[ship]\nwindow_s = 5.0\n[rollups]\nclients = true\n")
    pipeline = Pipeline(config)
    counts: Counter[str] = Counter()
    pipeline.summary = Summariser.from_config(
        config,
        sensor="tap-01",
        stream="html",
        stats=lambda: dict(pipeline.stats_record(capture=dict(counts))),
    )
    batches = []
    for batch in replay_batches([CaptureSource(str(pcap))], counts, lambda _done: None):
        pipeline.feed(batch)
        batches += pipeline.take_batches()
    pipeline.drain()
    batches += pipeline.take_batches()
    # a name from the traffic that tries to inject markup (an SNI carries any bytes)
    batches[0]["rollups"]["names"].append([HOSTILE_NAME, 1, 1, 10**12, 1, 100])
    store = Store(db)
    try:
        for batch in batches:
            assert store.write_batch(decode_batch(parse_message(frame(batch)[4:])))
    finally:
        store.close()


def _chromium(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    offline = [
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--proxy-server=127.0.0.1:9",  # nothing listens there: any request would fail
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    return subprocess.run(
        [browser, *offline, *args], capture_output=True, text=True, timeout=120, check=False
    )


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):  # PNG filters (RFC 2083 section 6)
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line) if channels == 3 else bytes(
            b for j in range(0, stride, 4) for b in line[j : j + 3]
        ))  # fmt: skip
        previous = line
    return width, height, rows


def test_html_report_in_a_headless_browser(tmp_path: Path) -> None:
    browser = _browser()
    pcap = gen_mix(tmp_path / "mix.pcap", 30_000, seed=3)
    db = tmp_path / "store.db"
    _store(pcap, db)
    conn = open_store(db)
    try:
        report = build(conn)
    finally:
        conn.close()
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    html = page.read_text()
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html)  # nothing to fetch
    assert "<script" not in html.lower()

    dom = _chromium(browser, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>tapsense report</title>" in dom.stdout  # the injected script did not run
    bars = len(re.findall(r'<rect class="bar"', dom.stdout))
    cells = len(re.findall(r'<rect class="cell"', dom.stdout))
    assert bars == len(report["categories"]) + len(report["services"]) > 10
    assert cells == 24 * len(report["hours"]["bytes"]) > 24
    assert report["top_names_by_bytes"][0]["name"] == HOSTILE_NAME
    assert "<script>" not in dom.stdout.split("</style>", 1)[1]
    assert "<img" not in dom.stdout
    assert "&lt;script&gt;document.title" in dom.stdout  # shown as text

    artifacts = Path(os.environ.get("TAPSENSE_ARTIFACTS", ROOT / "build" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report.png"
    shot.unlink(missing_ok=True)
    done = _chromium(browser, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    colours = Counter(row[i : i + 3] for row in rows[::2] for i in range(0, len(row), 6))
    # the biggest named category's bar and heatmap peak, in its own colour
    named = next(c["category"] for c in report["categories"] if c["category"])
    top = bytes.fromhex(category_colours(report)[named][1:])
    assert top != bytes.fromhex(OTHER[1:])
    assert colours[top] > 200, colours.most_common(5)
    assert len(colours) > 50  # text, bars, cells: not a blank or error page
