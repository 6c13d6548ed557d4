"""The collector's store: batches in SQLite (WAL), in tables a person can query.

One table per record type, with the fields people filter on as columns and the whole
record as JSON in `record`; the rollups of each window; one row per batch, whose primary
key (sensor, stream, seq) makes storage exactly-once: a batch sent again after a lost
acknowledgment is recognised and skipped as a whole, in the same transaction.
Used from one thread at a time (the collector's writer thread, or a report).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

# column of the table <- field of the record, for the fields people filter on
COLUMNS: dict[str, tuple[str, ...]] = {
    "dns": (
        "ts",
        "src",
        "sport",
        "dst",
        "dport",
        "proto",
        "flow",
        "transport",
        "protocol",
        "status",
        "id",
        "qname",
        "qtype",
        "rcode",
        "rcode_name",
        "rtt",
        "service",
        "category",
    ),
    "tls": (
        "ts",
        "src",
        "sport",
        "dst",
        "dport",
        "proto",
        "flow",
        "sni",
        "version",
        "server_version",
        "cipher",
        "ja3",
        "ja4",
        "ech",
        "pq",
        "service",
        "category",
    ),
    "quic": (
        "ts",
        "src",
        "sport",
        "dst",
        "dport",
        "proto",
        "flow",
        "sni",
        "version",
        "ja4",
        "dcid",
        "service",
        "category",
    ),
    "flow": (
        "ts",
        "ts_end",
        "src",
        "sport",
        "dst",
        "dport",
        "proto",
        "flow",
        "pkts_up",
        "bytes_up",
        "pkts_down",
        "bytes_down",
        "end",
        "name",
        "name_source",
        "service",
        "category",
    ),
    "intel": (
        "ts",
        "src",
        "sport",
        "dst",
        "dport",
        "proto",
        "flow",
        "client",
        "indicator",
        "indicator_type",
        "matched",
        "value",
        "source",
        "tag",
    ),
    "stats": ("ts", "packets", "bytes", "kernel_drops", "flows_active"),
}
# fields kept as JSON text in their own column, because people look at them
JSON_COLUMNS = {"dns": ("answers",), "tls": ("alpn",), "quic": ("alpn",)}
BATCH_KEY = "sensor TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL"

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS batches (
    {BATCH_KEY}, schema INTEGER, window_start REAL, window_end REAL, received REAL,
    records INTEGER, peer TEXT, PRIMARY KEY (sensor, stream, seq));
CREATE TABLE IF NOT EXISTS sensors (
    sensor TEXT PRIMARY KEY, first_seen REAL, last_seen REAL, last_window_end REAL,
    peer TEXT, batches INTEGER, records INTEGER, stats TEXT);
CREATE TABLE IF NOT EXISTS streams (
    sensor TEXT NOT NULL, stream TEXT NOT NULL, last_window_end REAL, stats TEXT,
    PRIMARY KEY (sensor, stream));
CREATE TABLE IF NOT EXISTS rollup_qnames (
    {BATCH_KEY}, window_start REAL, window_end REAL, qname TEXT, rcode INTEGER,
    queries INTEGER);
CREATE TABLE IF NOT EXISTS records (
    {BATCH_KEY}, type TEXT, ts REAL, record TEXT);
"""


# traffic rollups: table <- rollup, with the columns of its key
TRAFFIC_ROLLUPS: dict[str, tuple[str, ...]] = {
    "names": ("name",),
    "categories": ("category",),
    "services": ("service", "category"),
    "clients": ("client", "category"),
}
TRAFFIC_COLUMNS = ("flows", "pkts_up", "bytes_up", "pkts_down", "bytes_down")


def _rollup_sql(rollup: str, key: tuple[str, ...]) -> str:
    columns = (
        ", ".join(f"{c} TEXT" for c in key)
        + ", "
        + ", ".join(f"{c} INTEGER" for c in TRAFFIC_COLUMNS)
    )
    return (
        f"CREATE TABLE IF NOT EXISTS rollup_{rollup} ("
        f"{BATCH_KEY}, window_start REAL, window_end REAL, {columns});\n"
        f"CREATE INDEX IF NOT EXISTS rollup_{rollup}_window ON rollup_{rollup} (window_start);\n"
    )


def _table_sql(kind: str) -> str:
    columns = ", ".join(f'"{c}"' for c in (*COLUMNS[kind], *JSON_COLUMNS.get(kind, ())))
    return (
        f'CREATE TABLE IF NOT EXISTS "{kind}" ({BATCH_KEY}, {columns}, record TEXT);\n'
        f'CREATE INDEX IF NOT EXISTS "{kind}_ts" ON "{kind}" (ts);\n'
    )


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, consistent
        self.db.executescript(
            SCHEMA_SQL
            + "".join(_table_sql(k) for k in COLUMNS)
            + "".join(_rollup_sql(r, key) for r, key in TRAFFIC_ROLLUPS.items())
        )
        self._add_new_columns()
        self._insert = {}
        for kind in COLUMNS:
            width = 3 + len(COLUMNS[kind]) + len(JSON_COLUMNS.get(kind, ())) + 1
            self._insert[kind] = f'INSERT INTO "{kind}" VALUES ({", ".join("?" * width)})'
        # rollup -> (values per row, its INSERT); a row follows the batch key and the window
        self._rollups = {
            rollup: (width, f"INSERT INTO rollup_{rollup} VALUES ({', '.join('?' * (5 + width))})")
            for rollup, width in (
                *((r, len(key) + len(TRAFFIC_COLUMNS)) for r, key in TRAFFIC_ROLLUPS.items()),
                ("qnames", 3),  # qname, rcode, queries
            )
        }

    def _add_new_columns(self) -> None:
        """A database made by an older collector gets the columns added since (as NULL)."""
        for kind in COLUMNS:
            have = {row[1] for row in self.db.execute(f'PRAGMA table_info("{kind}")')}
            for column in (*COLUMNS[kind], *JSON_COLUMNS.get(kind, ())):
                if column not in have:
                    self.db.execute(f'ALTER TABLE "{kind}" ADD COLUMN "{column}"')

    def close(self) -> None:
        self.db.close()

    def write_batch(self, batch: dict[str, Any], peer: str = "") -> bool:
        """Stores a decoded batch (agent/wire.py decode_batch) once; False if it was stored
        before. All of it or nothing: one transaction."""
        key = (batch["sensor"], batch["stream"], batch["seq"])
        now = time.time()
        records = batch["records"]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            try:
                db.execute(
                    "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        *key,
                        batch["schema"],
                        batch["window"][0],
                        batch["window"][1],
                        now,
                        batch.get("count", len(records)),
                        peer,
                    ),
                )
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                return False
            by_kind: dict[str, list[tuple[Any, ...]]] = {}
            generic = []
            for record in records:
                kind = record["type"]
                if kind in COLUMNS:
                    row = (
                        *key,
                        *(_cell(record.get(c)) for c in COLUMNS[kind]),
                        *(json.dumps(record.get(c)) for c in JSON_COLUMNS.get(kind, ())),
                        json.dumps(record),
                    )
                    by_kind.setdefault(kind, []).append(row)
                else:
                    generic.append((*key, kind, record.get("ts"), json.dumps(record)))
            for kind, rows in by_kind.items():
                db.executemany(self._insert[kind], rows)
            if generic:
                db.executemany("INSERT INTO records VALUES (?,?,?,?,?,?)", generic)
            stats = batch["stats"]
            if stats:
                db.execute(
                    self._insert["stats"],
                    (*key, *(_cell(stats.get(c)) for c in COLUMNS["stats"]), json.dumps(stats)),
                )
            window = (batch["window"][0], batch["window"][1])
            rollups = batch["rollups"]
            for rollup, (width, insert) in self._rollups.items():
                rows = [(*key, *window, *row[:width]) for row in _rows(rollups, rollup, width)]
                if rows:
                    db.executemany(insert, rows)
            db.execute(
                """INSERT INTO sensors VALUES (?,?,?,?,?,1,?,?)
                   ON CONFLICT(sensor) DO UPDATE SET last_seen=excluded.last_seen,
                   last_window_end=max(last_window_end, excluded.last_window_end),
                   peer=excluded.peer, batches=batches+1, records=records+excluded.records,
                   stats=CASE WHEN excluded.last_window_end >= last_window_end
                              THEN excluded.stats ELSE stats END""",
                (batch["sensor"], now, now, window[1], peer, len(records), json.dumps(stats)),
            )
            # each worker of a sensor ships a stream of its own: its latest stats, kept apart
            db.execute(
                """INSERT INTO streams VALUES (?,?,?,?)
                   ON CONFLICT(sensor, stream) DO UPDATE SET
                   stats=CASE WHEN excluded.last_window_end >= last_window_end
                              THEN excluded.stats ELSE stats END,
                   last_window_end=max(last_window_end, excluded.last_window_end)""",
                (batch["sensor"], batch["stream"], window[1], json.dumps(stats)),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return True


def _cell(value: Any) -> Any:
    """A value SQLite stores as is; lists and maps as JSON text."""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _rows(rollups: dict[str, Any], name: str, width: int) -> list[list[Any]]:
    rows = rollups.get(name, [])
    if not isinstance(rows, list):
        return []
    return [row for row in rows if isinstance(row, list) and len(row) >= width]
