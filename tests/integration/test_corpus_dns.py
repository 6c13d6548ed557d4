"""DNS records over the public corpus agree with tshark's truth (see corpus.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.integration.corpus import DnsComparison, compare_dns, dns_files

KNOWN = Path(__file__).with_name("corpus_known_differences.toml")
MIN_RECALL = 0.995


def test_dns_agrees_with_tshark(corpus_dir: Path) -> None:
    files = dns_files(corpus_dir)
    assert len(files) >= 100, f"only {len(files)} captures with DNS truth in {corpus_dir}"
    result = DnsComparison()
    for name in files:
        compare_dns(corpus_dir, name, result)

    known = {
        (d["file"], d["kind"], d.get("frame") or d["detail"]): d["reason"]
        for d in tomllib.loads(KNOWN.read_text())["dns"]
    }
    found = {d.key: d for d in result.differences}
    unexplained = [found[k] for k in found if k not in known]
    stale = [k for k in known if k not in found]
    assert not unexplained, "differences not in corpus_known_differences.toml:\n" + "\n".join(
        f"  {d.file} frame {d.frame} {d.kind}: {d.detail}" for d in unexplained
    )
    assert not stale, f"listed differences that no longer occur: {stale}"

    query_recall = result.queries_found / result.queries
    response_recall = result.responses_found / result.responses
    assert query_recall >= MIN_RECALL, f"query recall {query_recall:.4f}"
    assert response_recall >= MIN_RECALL, f"response recall {response_recall:.4f}"
