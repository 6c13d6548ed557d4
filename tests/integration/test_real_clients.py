"""Real TLS and QUIC clients and servers in network namespaces, captured with tcpdump, replayed.

Each test runs a real server in one namespace and a real client in the other, captures
the veth traffic, replays the capture through tapsense and checks the records against
what the client was told to send; tshark, where installed, cross-checks the JA3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import self_signed
from tests.netns import Host, capture, requires_netns, start_tls_server, veth_pair, wait_port
from tests.util import of_type, replay

PEERS = Path(__file__).resolve().parents[1] / "peers"
DATA = Path(__file__).resolve().parents[1] / "data"
pytestmark = [pytest.mark.netns, requires_netns]


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Host, Host]]:
    with veth_pair("tc") as pair:
        yield pair


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="module")
def tls_server(hosts: tuple[Host, Host], certificate: tuple[Path, Path]) -> Iterator[int]:
    """openssl s_server on port 4433 (a dual-stack socket: IPv4 and IPv6)."""
    _, server = hosts
    port = 4433
    proc = start_tls_server(server, port, certificate)
    try:
        wait_port(server, port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def _tls_record(records: list) -> dict:
    hellos = of_type(records, "tls")
    assert len(hellos) == 1, hellos
    return hellos[0]


def _tshark_ja3(path: Path) -> list[str]:
    if shutil.which("tshark") is None:
        return []
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-e",
            "tls.handshake.ja3",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.split() if line]


def _capture_run(client: Host, path: Path, *command: str, stdin: str = "") -> None:
    with capture(client, path):
        result = client.run(*command, input=stdin, timeout=20)
    assert result.returncode == 0, result.stderr
    if os.environ.get("TAPSENSE_RECORD_DATA"):  # refresh tests/data (see tests/data/README.md)
        shutil.copy(path, DATA / path.name)


def test_openssl_tls13_with_sni_and_alpn(
    hosts: tuple[Host, Host], tls_server: int, tmp_path: Path
) -> None:
    client, server = hosts
    path = tmp_path / "tls13_openssl_sni_alpn.pcap"
    _capture_run(
        client,
        path,
        "openssl",
        "s_client",
        "-connect",
        f"{server.addr}:{tls_server}",
        "-servername",
        "openssl13.tapsense.test",
        "-alpn",
        "h2,http/1.1",
        "-tls1_3",
        stdin="",
    )
    records = replay([path])
    tls = _tls_record(records)
    assert tls["sni"] == "openssl13.tapsense.test"
    assert tls["alpn"] == ["h2", "http/1.1"]
    assert "0x0304" in tls["supported_versions"]
    assert tls["server_version"] == "0x0304"
    assert tls["server_alpn"] is None  # TLS 1.3 sends it in EncryptedExtensions
    assert tls["ja4"].startswith("t13d")
    assert tls["ja3"] in _tshark_ja3(path) or not shutil.which("tshark")
    [flow] = [f for f in of_type(records, "flow") if f["dport"] == tls_server]
    assert flow["name"] == "openssl13.tapsense.test"
    assert flow["pkts_up"] > 0 and flow["pkts_down"] > 0


def test_openssl_tls12_without_sni_or_alpn(
    hosts: tuple[Host, Host], tls_server: int, tmp_path: Path
) -> None:
    client, server = hosts
    path = tmp_path / "tls12_openssl_no_sni.pcap"
    _capture_run(
        client,
        path,
        "openssl",
        "s_client",
        "-connect",
        f"{server.addr}:{tls_server}",
        "-noservername",
        "-tls1_2",
        stdin="",
    )
    tls = _tls_record(replay([path]))
    assert tls["sni"] is None
    assert tls["alpn"] == []
    assert tls["server_version"] == "0x0303"
    assert tls["ja4"][3] == "i" and tls["ja4"][1:3] == "12"
    assert tls["ja3"] in _tshark_ja3(path) or not shutil.which("tshark")


def test_curl_over_ipv6(hosts: tuple[Host, Host], tls_server: int, tmp_path: Path) -> None:
    client, server = hosts
    path = tmp_path / "tls13_curl_ipv6.pcap"
    _capture_run(
        client,
        path,
        "curl",
        "-sk",
        "--http1.1",
        "-m",
        "10",
        "-o",
        "/dev/null",
        "--resolve",
        f"curl.tapsense.test:{tls_server}:[{server.addr6}]",
        f"https://curl.tapsense.test:{tls_server}/",
    )
    tls = _tls_record(replay([path]))
    assert tls["sni"] == "curl.tapsense.test"
    assert tls["alpn"] == ["http/1.1"]
    assert tls["dst"] == server.addr6
    assert tls["ja3"] in _tshark_ja3(path) or not shutil.which("tshark")


@pytest.mark.parametrize(("max_version", "alpn"), [("1.3", "h2"), ("1.2", "")])
def test_python_ssl_client(
    hosts: tuple[Host, Host], tls_server: int, tmp_path: Path, max_version: str, alpn: str
) -> None:
    client, server = hosts
    path = tmp_path / f"tls{max_version.replace('.', '')}_python.pcap"
    _capture_run(
        client,
        path,
        sys.executable,
        str(PEERS / "tls_client.py"),
        server.addr,
        str(tls_server),
        "python.tapsense.test",
        "--alpn",
        alpn,
        "--max-version",
        max_version,
    )
    tls = _tls_record(replay([path]))
    assert tls["sni"] == "python.tapsense.test"
    assert tls["alpn"] == ([alpn] if alpn else [])
    assert tls["server_version"] == ("0x0304" if max_version == "1.3" else "0x0303")
    assert tls["ja3"] in _tshark_ja3(path) or not shutil.which("tshark")


def test_aioquic_client_and_server(
    hosts: tuple[Host, Host], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("aioquic")
    client, server = hosts
    port = 4443
    proc = server.start(
        sys.executable,
        str(PEERS / "quic_peer.py"),
        "server",
        server.addr,
        str(port),
        str(certificate[0]),
        str(certificate[1]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(server, port, "udp")
        path = tmp_path / "quic_aioquic_h3.pcap"
        _capture_run(
            client,
            path,
            sys.executable,
            str(PEERS / "quic_peer.py"),
            "client",
            server.addr,
            str(port),
            "quic.tapsense.test",
            "h3",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    records = replay([path])
    quic = of_type(records, "quic")
    assert len(quic) == 1, quic
    assert quic[0]["sni"] == "quic.tapsense.test"
    assert quic[0]["alpn"] == ["h3"]
    assert quic[0]["version"] == "0x00000001"
    assert quic[0]["ja4"].startswith("q13d")
    [flow] = [f for f in of_type(records, "flow") if f["dport"] == port]
    assert flow["name"] == "quic.tapsense.test" and flow["name_source"] == "quic"
