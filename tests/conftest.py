"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS_ENV = "TAPSENSE_CORPUS"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The public capture corpus: skipped when TAPSENSE_CORPUS is unset (a user's clone),
    a failure when it is set and the folder is missing (CI must have it)."""
    value = os.environ.get(CORPUS_ENV)
    if not value:
        pytest.skip(f"{CORPUS_ENV} is not set")
    path = Path(value)
    if not (path / "truth").is_dir():
        pytest.fail(f"{CORPUS_ENV}={value} has no truth/ folder")
    return path
