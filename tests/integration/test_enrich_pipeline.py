"""Attribution and intel over real bytes: DNS answers naming flows, services from SNIs,
intel records per flow and place, rollups by category, and the same records whatever the
chunk size the capture is read in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from agent.config import Config, parse_config
from agent.summary import rollups
from tests.builders import (
    MACS,
    TcpSession,
    client_hello,
    crypto_frame,
    seal_initial,
    server_hello,
    tls_records,
    udp_frames,
)
from tests.util import of_type, pcap_bytes, replay

T0 = 1_700_000_000.0
CLIENT, NEIGHBOUR = "10.1.0.2", "10.1.0.3"
RESOLVER = "10.0.0.53"
VIDEO_SERVER = "142.250.1.1"  # www.youtube.com's address in the DNS answer
VIDEO_SERVER_V6 = "2a00:1450:4001::66"
TLS_SERVER = "151.101.1.1"
QUIC_SERVER = "35.186.224.25"
QNAME = "www.youtube.com"
CNAME_TARGET = "youtube-ui.l.google.com"

Frames = list[tuple[float, bytes]]


def dns_frame(ts: float, src: str, dst: str, sport: int, dport: int, message: DNS) -> Any:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return ts, bytes(Ether(**MACS) / ip / UDP(sport=sport, dport=dport) / message)


def lookup(
    ts: float, ident: int, qtype: str, answer: str | None, *, client: str = CLIENT, rcode: int = 0
) -> Frames:
    """A query for QNAME and its response: the CNAME, then the address (none for NXDOMAIN)."""
    query = DNS(id=ident, rd=1, qd=DNSQR(qname=QNAME, qtype=qtype))
    records = [DNSRR(rrname=QNAME, type="CNAME", ttl=300, rdata=CNAME_TARGET)]
    if answer is not None:
        records.append(DNSRR(rrname=CNAME_TARGET, type=qtype, ttl=300, rdata=answer))
    response = DNS(
        id=ident, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=QNAME, qtype=qtype), an=records
    )
    return [
        dns_frame(ts, client, RESOLVER, 33333, 53, query),
        dns_frame(ts + 0.02, RESOLVER, client, 53, 33333, response),
    ]


def udp_flow(client: str, server: str, cport: int, start: float, seconds: int) -> Frames:
    """A UDP conversation on a port no analyser reads: no name of its own. One datagram each
    way every 10 s, so the flow stays active and gets interim records when it is long."""
    frames: Frames = []
    for i in range(0, seconds + 1, 10):
        up = os.urandom(100 + i % 50)
        frames += udp_frames([up], client, server, cport, 4000, start + i)
        down = bytes(Ether(**MACS) / IP(src=server, dst=client) / UDP(sport=4000, dport=cport))
        frames.append((start + i + 0.01, down + os.urandom(300)))
    return frames


def tls_flow(sni: str, start: float) -> Frames:
    session = TcpSession(CLIENT, TLS_SERVER, 40001, 443, ts=start)
    frames = session.handshake()
    frames += session.send(0, tls_records(client_hello(sni)))
    frames += session.send(1, tls_records(server_hello()))
    frames += session.send(1, os.urandom(5000))
    frames += session.close()
    return frames


def quic_flow(sni: str, start: float) -> Frames:
    hello = client_hello(sni, ("h3",), quic_params=True)
    initial = seal_initial(1, bytes(range(8)), b"\x01\x02\x03\x04", 0, crypto_frame(0, hello))
    return udp_frames([initial], CLIENT, QUIC_SERVER, 50443, 443, start)


def capture(tmp_path: Path) -> Path:
    frames: Frames = []
    frames += lookup(T0, 0x1111, "A", VIDEO_SERVER)
    frames += lookup(T0 + 0.05, 0x2222, "AAAA", VIDEO_SERVER_V6)  # same socket: same DNS flow
    frames += lookup(T0 + 0.5, 0x3333, "A", VIDEO_SERVER)  # asked again on the same flow
    frames += udp_flow(CLIENT, VIDEO_SERVER, 50000, T0 + 1, 150)  # long: interim records
    frames += udp_flow(NEIGHBOUR, VIDEO_SERVER, 50001, T0 + 2, 20)  # no lookup of its own
    frames += udp_flow(CLIENT, "203.0.113.9", 50002, T0 + 3, 20)  # never resolved
    frames += tls_flow("www.netflix.com", T0 + 4)
    frames += quic_flow("open.spotify.com", T0 + 5)
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "enrich.pcap"
    path.write_bytes(pcap_bytes(frames))
    return path


def config(tmp_path: Path, intel: str = "", name: str = "intel.txt", extra: str = "") -> Config:
    text = extra
    if intel:
        path = tmp_path / name
        path.write_text(intel, encoding="utf-8")
        text += f'[intel]\nfiles = ["{path}"]\n'
    return parse_config(text)


def flows_to(records: list[Any], src: str, dst: str) -> list[dict[str, Any]]:
    return [r for r in of_type(records, "flow") if r["src"] == src and r["dst"] == dst]


def dns_flow_id(records: list[Any]) -> str:
    ids = {r["flow"] for r in of_type(records, "dns")}
    assert len(ids) == 1
    return ids.pop()


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    return capture(tmp_path)


def test_a_flow_without_sni_is_named_by_the_dns_answer(tmp_path: Path, pcap: Path) -> None:
    records = replay([pcap], config(tmp_path))
    dns = of_type(records, "dns")
    assert [(r["qname"], r["qtype"], r["rcode"]) for r in dns] == [
        (QNAME, 1, 0),
        (QNAME, 28, 0),
        (QNAME, 1, 0),
    ]
    assert dns[0]["answers"] == [CNAME_TARGET, VIDEO_SERVER]
    assert {(r["service"], r["category"], r["domain"]) for r in dns} == {
        ("youtube", "video", "youtube.com")
    }

    long_flow = flows_to(records, CLIENT, VIDEO_SERVER)
    assert [r["end"] for r in long_flow] == ["interim", "shutdown"]
    for record in long_flow:  # the interim record and the final one
        assert record["name"] == QNAME  # the qname, not the CNAME target
        assert record["name_source"] == "dns"
        assert (record["service"], record["category"], record["domain"]) == (
            "youtube",
            "video",
            "youtube.com",
        )
    # another client's flow to the answered address takes the name anyone resolved
    [neighbour] = flows_to(records, NEIGHBOUR, VIDEO_SERVER)
    assert (neighbour["name"], neighbour["name_source"]) == (QNAME, "dns")
    [unresolved] = flows_to(records, CLIENT, "203.0.113.9")
    assert unresolved["name"] is None
    assert unresolved["service"] is None and unresolved["category"] is None

    stats = records[-1]
    assert stats["attribution"]["flows_named_by_dns"] == 2  # flows, not their records
    assert stats["attribution"]["dns_answers_cached"] == 3


def test_tls_and_quic_flows_get_their_service_from_the_sni(tmp_path: Path, pcap: Path) -> None:
    records = replay([pcap], config(tmp_path))
    [tls] = of_type(records, "tls")
    assert (tls["sni"], tls["service"], tls["category"]) == ("www.netflix.com", "netflix", "video")
    [flow] = flows_to(records, CLIENT, TLS_SERVER)
    assert (flow["name"], flow["name_source"]) == ("www.netflix.com", "tls")
    assert (flow["service"], flow["category"], flow["domain"]) == (
        "netflix",
        "video",
        "netflix.com",
    )
    [quic] = of_type(records, "quic")
    assert (quic["service"], quic["category"]) == ("spotify", "streaming_audio")
    [flow] = flows_to(records, CLIENT, QUIC_SERVER)
    assert (flow["name"], flow["name_source"], flow["service"]) == (
        "open.spotify.com",
        "quic",
        "spotify",
    )


def test_attribution_off_leaves_records_as_they_were(tmp_path: Path, pcap: Path) -> None:
    records = replay([pcap], config(tmp_path, extra="[attribution]\nenabled = false\n"))
    for record in of_type(records, "flow"):
        assert "service" not in record and "category" not in record
        assert record["name_source"] in (None, "tls", "quic")
    assert of_type(records, "intel") == []


def test_a_listed_qname_gives_one_intel_record(tmp_path: Path, pcap: Path) -> None:
    records = replay([pcap], config(tmp_path, "# test list\nyoutube.com\n"))
    dns_flow = dns_flow_id(records)
    intel = of_type(records, "intel")
    assert len(intel) == 1  # three lookups of the name over one flow: one record
    [hit] = intel
    assert hit == {
        "type": "intel",
        "ts": T0,
        "src": CLIENT,
        "sport": 33333,
        "dst": RESOLVER,
        "dport": 53,
        "proto": "udp",
        "flow": dns_flow,
        "client": CLIENT,
        "indicator": "youtube.com",
        "indicator_type": "domain",
        "matched": "dns.qname",
        "value": QNAME,
        "source": "intel.txt",
        "tag": None,
    }
    # each hit follows the record it came from
    position = records.index(hit)
    assert records[position - 1]["type"] == "dns" and records[position - 1]["flow"] == dns_flow
    stats = records[-1]
    assert stats["records"]["intel"] == 1
    assert stats["intel"]["hits"] == 1
    assert stats["intel"]["repeats"] == 2


def test_a_listed_server_address_matches_the_answer_and_the_flows(
    tmp_path: Path, pcap: Path
) -> None:
    listed = f"ip,threat\n{VIDEO_SERVER},c2\n{QUIC_SERVER}/32,c2-quic\n"
    records = replay([pcap], config(tmp_path, listed, "feed.csv"))
    dns_flow = dns_flow_id(records)
    long_flow = flows_to(records, CLIENT, VIDEO_SERVER)[0]["flow"]
    neighbour = flows_to(records, NEIGHBOUR, VIDEO_SERVER)[0]["flow"]
    quic = flows_to(records, CLIENT, QUIC_SERVER)[0]["flow"]
    intel = of_type(records, "intel")
    places = Counter((r["flow"], r["matched"]) for r in intel)
    assert places == {
        (dns_flow, "dns.answer"): 1,  # two A responses over one flow: one record
        (long_flow, "flow.dst"): 1,  # an interim and a final record: one
        (neighbour, "flow.dst"): 1,
        (quic, "flow.dst"): 1,
    }
    by_flow = {r["flow"]: r for r in intel}
    assert by_flow[dns_flow]["value"] == VIDEO_SERVER
    assert by_flow[dns_flow]["client"] == CLIENT
    assert by_flow[neighbour]["client"] == NEIGHBOUR
    assert by_flow[long_flow]["ts"] == T0 + 1  # from the first (interim) record
    assert {r["source"] for r in intel} == {"feed.csv"}
    assert by_flow[quic]["tag"] == "c2-quic" and by_flow[quic]["indicator_type"] == "ip"
    assert by_flow[long_flow]["tag"] == "c2"


def test_rollups_by_category_add_up_to_the_flow_records(tmp_path: Path, pcap: Path) -> None:
    records = replay([pcap], config(tmp_path, "youtube.com\n"))[:-1]
    tables = rollups(records, clients=True)
    expected: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in of_type(records, "flow"):
        row = expected[r["category"]]
        row[0] += r["end"] != "interim"
        row[1] += r["pkts_up"]
        row[2] += r["bytes_up"]
        row[3] += r["pkts_down"]
        row[4] += r["bytes_down"]
    got = {row[0]: row[1:] for row in tables["categories"]}
    assert got == dict(expected)
    assert set(got) == {"video", "streaming_audio", None}
    assert got["video"][0] == 3  # the long flow once, its neighbour, the TLS flow
    services = {(row[0], row[1]): row[2] for row in tables["services"]}
    assert services[("youtube", "video")] == 2
    assert services[("netflix", "video")] == 1
    names = {row[0]: row[1] for row in tables["names"]}
    assert names[QNAME] == 2
    clients = {(row[0], row[1]): row[2] for row in tables["clients"]}
    assert clients[(NEIGHBOUR, "video")] == 1
    assert clients[(CLIENT, "video")] == 2


@pytest.mark.parametrize("chunk_size", [64, 1000, 9000])
def test_chunk_size_does_not_change_the_enriched_records(
    tmp_path: Path, pcap: Path, chunk_size: int
) -> None:
    listed = f"indicator,tag\nyoutube.com,video\n{VIDEO_SERVER},x\n151.101.0.0/16,cdn\n"
    cfg = config(tmp_path, listed, "feed.csv")
    reference = replay([pcap], cfg)
    # qname and answer of the DNS flow, the two flows to the answer, the TLS flow's network
    assert len(of_type(reference, "intel")) == 5
    assert replay([pcap], cfg, chunk_size=chunk_size) == reference


def test_chunk_size_does_not_change_which_answers_expired(tmp_path: Path) -> None:
    """Flows after the answer, some too late, with the DNS cache expiring on ticks."""
    frames: Frames = []
    frames += lookup(T0, 0x1111, "A", VIDEO_SERVER)
    # one datagram each way; reported at the 60 s UDP idle timeout: the first two before the
    # answer expires (100 s), the last two started after it
    for i, start in enumerate((10.0, 30.0, 200.0, 400.0)):
        frames += udp_flow(CLIENT, VIDEO_SERVER, 51000 + i, T0 + start, 0)
    # a datagram every second elsewhere keeps the clock ticking each second
    for second in range(1, 460):
        frames += udp_frames([b"tick"], "10.9.9.9", "198.51.100.100", 52000, 4000, T0 + second)
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "late.pcap"
    path.write_bytes(pcap_bytes(frames))
    cfg = config(tmp_path, extra="[attribution]\ndns_cache_s = 100.0\n")
    reference = replay([path], cfg)
    flows = sorted(
        (r["ts"] - T0, r["name"]) for r in of_type(reference, "flow") if r["dst"] == VIDEO_SERVER
    )
    assert flows == [(10.0, QNAME), (30.0, QNAME), (200.0, None), (400.0, None)]
    for chunk_size in (64, 1500):
        assert replay([path], cfg, chunk_size=chunk_size) == reference


def test_a_flow_started_in_the_window_and_reported_after_it_is_named(tmp_path: Path) -> None:
    frames: Frames = []
    frames += lookup(T0, 0x1111, "A", VIDEO_SERVER)
    frames += udp_flow(CLIENT, VIDEO_SERVER, 50000, T0 + 90, 5)  # starts 90 s after the answer
    frames += udp_flow(CLIENT, "203.0.113.9", 50001, T0 + 200, 0)  # the clock runs on
    path = tmp_path / "window.pcap"
    path.write_bytes(pcap_bytes(sorted(frames, key=lambda f: f[0])))
    cfg = config(tmp_path, extra="[attribution]\ndns_cache_s = 100.0\n")
    [flow] = flows_to(replay([path], cfg), CLIENT, VIDEO_SERVER)
    assert flow["end"] == "idle"
    assert flow["name"] == QNAME


BROKEN_CSV = 'indicator,tag\n"bad.example,x\n' + "".join(f"h{i}.example,t\n" for i in range(20000))


@pytest.mark.parametrize(
    "intel",
    [
        pytest.param(None, id="missing-file"),
        pytest.param("url,tag\nbad.example,x\n", id="csv-without-indicator-column"),
        pytest.param(BROKEN_CSV, id="csv-with-a-stray-quote"),
    ],
)
def test_replay_with_an_unusable_intel_list_is_a_one_line_error(
    tmp_path: Path, pcap: Path, intel: str | None
) -> None:
    listed = tmp_path / "list.csv"
    if intel is not None:
        listed.write_text(intel, encoding="utf-8")
    conf = tmp_path / "tapsense.toml"
    conf.write_text(f'[intel]\nfiles = ["{listed}"]\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "replay", str(pcap), "--config", str(conf), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert done.stderr.startswith("tapsense: error:") and "list.csv" in done.stderr
    assert done.stderr.count("\n") == 1
