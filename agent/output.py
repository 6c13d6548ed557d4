"""Writes records as JSON Lines (the human-readable form of the record schema)."""

from __future__ import annotations

import json
import sys
from typing import IO

from agent.record import Record


class JsonLinesWriter:
    """Writes one JSON object per line to a path, or to stdout for "-"."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = (
            sys.stdout if path == "-" else open(path, "w", encoding="utf-8", buffering=1 << 20)  # noqa: SIM115
        )
        self._encode = json.JSONEncoder(separators=(",", ":")).encode

    def write(self, records: list[Record]) -> None:
        if records:
            encode = self._encode
            self._file.write("".join(encode(r.as_dict()) + "\n" for r in records))

    def close(self) -> None:
        if self._file is sys.stdout:
            self._file.flush()
        else:
            self._file.close()
