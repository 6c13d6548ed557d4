"""Corpus tests skip in a user's clone (variable unset) and fail when CI's corpus is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run_corpus_test(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TAPSENSE_CORPUS"}
    if env_value is not None:
        env["TAPSENSE_CORPUS"] = env_value
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_corpus_dns.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_corpus_fails(tmp_path: Path) -> None:
    run = _run_corpus_test(str(tmp_path / "no-such-corpus"))
    assert run.returncode == 1, run.stdout
    assert "has no truth/ folder" in run.stdout


def test_unset_corpus_skips() -> None:
    run = _run_corpus_test(None)
    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout
