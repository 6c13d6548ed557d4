"""systemd/tapsense.service passes `systemd-analyze verify` and rates 2.0 or better."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "tapsense.service"
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this machine's tapsense (verify checks it exists)."""
    tapsense = shutil.which("tapsense")
    assert tapsense, "tapsense is not installed (pip install -e .)"
    copy = tmp_path / "tapsense.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/tapsense", tapsense))
    return copy


def test_verify_prints_nothing(tmp_path: Path) -> None:
    run = subprocess.run(
        ["systemd-analyze", "verify", str(_installed_copy(tmp_path))],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0
    assert run.stdout == "" and run.stderr == ""


def test_security_exposure_at_most_2(tmp_path: Path) -> None:
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_installed_copy(tmp_path))],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", run.stdout)
    assert found, run.stdout[-500:]
    assert float(found.group(1)) <= 2.0
