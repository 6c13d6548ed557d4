"""TLS and QUIC ClientHellos over the public corpus agree with tshark and the source projects."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.integration.corpus import (
    HelloComparison,
    check_expectations,
    compare_hellos,
    hello_files,
)
from tests.util import replay

KNOWN = Path(__file__).with_name("corpus_known_differences.toml")


def _known(section: str) -> dict[tuple[str, str, int | str], str]:
    entries = tomllib.loads(KNOWN.read_text()).get(section, [])
    return {(d["file"], d["kind"], d.get("frame") or d["detail"]): d["reason"] for d in entries}


def _check(result: HelloComparison, section: str) -> None:
    known = _known(section)
    found = {d.key: d for d in result.differences}
    unexplained = [found[k] for k in found if k not in known]
    stale = [k for k in known if k not in found]
    assert not unexplained, "differences not in corpus_known_differences.toml:\n" + "\n".join(
        f"  {d.file} frame {d.frame} {d.kind}: {d.detail}" for d in unexplained
    )
    assert not stale, f"listed differences that no longer occur: {stale}"


def test_tls_hellos_agree(corpus_dir: Path) -> None:
    files = hello_files(corpus_dir, "tls")
    assert len(files) >= 100
    result = HelloComparison()
    for name in files:
        records = replay([corpus_dir / name])
        compare_hellos(corpus_dir, name, "tls", records, result)
        check_expectations(corpus_dir, name, records, result)
    _check(result, "tls")
    assert result.sni_found / result.with_sni >= 0.995, result
    assert result.expectations_checked > 50


def test_quic_hellos_agree(corpus_dir: Path) -> None:
    files = hello_files(corpus_dir, "quic")
    assert len(files) >= 20
    result = HelloComparison()
    for name in files:
        records = replay([corpus_dir / name])
        compare_hellos(corpus_dir, name, "quic", records, result)
        check_expectations(corpus_dir, name, records, result)
    _check(result, "quic")
    assert result.sni_found / result.with_sni >= 0.99, result
