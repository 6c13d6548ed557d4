"""Captures recorded from real clients (tests/data/README.md), replayed without root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.util import of_type, replay

DATA = Path(__file__).resolve().parents[1] / "data"

# capture: (record type, sni, alpn, version field, server_version, JA4 prefix)
RECORDED = {
    "tls13_openssl_sni_alpn.pcap": (
        "tls",
        "openssl13.tapsense.test",
        ["h2", "http/1.1"],
        "0x0303",
        "0x0304",
        "t13d",
    ),
    "tls12_openssl_no_sni.pcap": ("tls", None, [], "0x0303", "0x0303", "t12i"),
    "tls13_curl_ipv6.pcap": ("tls", "curl.tapsense.test", ["http/1.1"], "0x0303", "0x0304", "t13d"),
    "tls13_python.pcap": ("tls", "python.tapsense.test", ["h2"], "0x0303", "0x0304", "t13d"),
    "tls12_python.pcap": ("tls", "python.tapsense.test", [], "0x0303", "0x0303", "t12d"),
    "quic_aioquic_h3.pcap": ("quic", "quic.tapsense.test", ["h3"], "0x00000001", None, "q13d"),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_client(name: str) -> None:
    kind, sni, alpn, version, server_version, ja4_prefix = RECORDED[name]
    records = replay([DATA / name])
    [hello] = of_type(records, kind)
    assert hello["sni"] == sni
    assert hello["alpn"] == alpn
    assert hello["version"] == version
    assert hello.get("server_version") == server_version
    assert hello["ja4"].startswith(ja4_prefix)
    [flow] = [f for f in of_type(records, "flow") if f["dport"] == hello["dport"]]
    assert flow["name"] == sni
    if shutil.which("tshark"):  # the JA3 tshark computes from the same bytes
        out = subprocess.run(
            [
                "tshark",
                "-r",
                str(DATA / name),
                "-T",
                "fields",
                "-e",
                "tls.handshake.ja3",
                "-Y",
                "tls.handshake.type == 1",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert hello["ja3"] in out
