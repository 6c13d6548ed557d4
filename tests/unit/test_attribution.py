"""agent/attribution.py: the DNS answer cache, and services, categories and DNS names on
records (with the real built-in services file, agent/data/services.toml)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.attribution import AnswerCache, Attributor
from agent.services import ServiceMap

A, CNAME, AAAA, MX, TXT = 1, 5, 28, 15, 16
CLIENT, OTHER_CLIENT = "10.1.0.2", "10.1.0.3"


@pytest.fixture(scope="module")
def services() -> ServiceMap:
    return ServiceMap()


def cache(max_entries: int = 100, max_age_s: float = 100.0) -> AnswerCache:
    return AnswerCache(Counter(), max_entries, max_age_s)


def attributor(
    services: ServiceMap,
    dns_cache_s: float = 3600.0,
    dns_cache_entries: int = 1000,
    grace_s: float = 0.0,
) -> Attributor:
    return Attributor(
        services,
        Counter(),
        dns_cache_s=dns_cache_s,
        dns_cache_entries=dns_cache_entries,
        grace_s=grace_s,
    )


def dns(
    qname: str | None,
    answers: Sequence[tuple[int, str]] = (),
    *,
    ts: float = 1000.0,
    src: str = CLIENT,
    rcode: int | None = 0,
) -> dict[str, Any]:
    return {"type": "dns", "ts": ts, "src": src, "sport": 33333, "dst": "10.0.0.53",
            "dport": 53, "proto": "udp", "flow": f"1:dns-{src}-{ts}=", "status": "answered",
            "qname": qname, "qtype": 1, "rcode": rcode, "answers": [a for _t, a in answers],
            "answer_types": [t for t, _a in answers], "ttls": [60] * len(answers)}  # fmt: skip


def flow(
    dst: str,
    *,
    ts: float = 1001.0,
    src: str = CLIENT,
    end: str = "idle",
    name: tuple[str, str] | None = None,
    flow_id: str = "1:flow=",
) -> dict[str, Any]:
    return {"type": "flow", "ts": ts, "src": src, "sport": 50000, "dst": dst, "dport": 443,
            "proto": "udp", "flow": flow_id, "ts_end": ts + 1, "pkts_up": 3, "bytes_up": 300,
            "pkts_down": 2, "bytes_down": 200, "end": end, "tcp_flags_up": None,
            "tcp_flags_down": None, "vlan": None, "name": name[0] if name else None,
            "name_source": name[1] if name else None}  # fmt: skip


def hello(kind: str, sni: str | None) -> dict[str, Any]:
    return {"type": kind, "ts": 1001.0, "src": CLIENT, "sport": 40000, "dst": "192.0.2.80",
            "dport": 443, "proto": "tcp" if kind == "tls" else "udp", "flow": "1:hello=",
            "sni": sni}  # fmt: skip


def attributed(record: dict[str, Any]) -> tuple[Any, ...]:
    return record["name"], record["name_source"], record["service"], record["category"]


# --- AnswerCache --------------------------------------------------------------------------


def test_the_clients_own_answer_is_preferred_over_anyones() -> None:
    c = cache()
    c.learn(CLIENT, "a.example", ["192.0.2.1"], [A], 10.0)
    c.learn(OTHER_CLIENT, "b.example", ["192.0.2.1"], [A], 20.0)  # the latest for the address
    assert c.name(CLIENT, "192.0.2.1", 30.0) == "a.example"
    assert c.name(OTHER_CLIENT, "192.0.2.1", 30.0) == "b.example"
    assert c.name("10.9.9.9", "192.0.2.1", 30.0) == "b.example"  # no answer of its own
    assert c.name(CLIENT, "192.0.2.2", 30.0) is None


def test_only_address_answers_are_learned() -> None:
    c = cache()
    c.learn(
        CLIENT,
        "www.example",
        ["edge.example.net", "192.0.2.1", "2001:db8::1", "10 mx.example", '"v=spf1"'],
        [CNAME, A, AAAA, MX, TXT],
        0.0,
    )
    assert c.stats["attribution.dns_answers_cached"] == 2
    assert len(c) == 4  # two pairs, two addresses
    assert c.name(CLIENT, "2001:db8::1", 1.0) == "www.example"
    assert c.name(CLIENT, "edge.example.net", 1.0) is None


def test_age_is_measured_against_the_flow_start() -> None:
    c = cache(max_age_s=100.0)
    c.learn(CLIENT, "a.example", ["192.0.2.1"], [A], 1000.0)
    assert c.name(CLIENT, "192.0.2.1", 1100.0) == "a.example"  # exactly max_age_s old
    assert c.name(CLIENT, "192.0.2.1", 1100.001) is None
    assert c.name(OTHER_CLIENT, "192.0.2.1", 1100.001) is None


def test_a_too_old_own_answer_falls_back_to_a_recent_answer_of_anyone() -> None:
    c = cache(max_age_s=100.0)
    c.learn(CLIENT, "old.example", ["192.0.2.1"], [A], 1000.0)
    c.learn(OTHER_CLIENT, "new.example", ["192.0.2.1"], [A], 1110.0)
    assert c.name(CLIENT, "192.0.2.1", 1120.0) == "new.example"
    assert c.name(CLIENT, "192.0.2.1", 1090.0) == "old.example"


def test_an_answer_seen_after_the_flow_began_did_not_lead_to_it() -> None:
    c = cache(max_age_s=100.0)
    c.learn(CLIENT, "later.example", ["192.0.2.1"], [A], 1050.0)
    assert c.name(CLIENT, "192.0.2.1", 1049.5) == "later.example"  # a second of clock slack
    assert c.name(CLIENT, "192.0.2.1", 1040.0) is None


def test_a_later_answer_replaces_the_name() -> None:
    c = cache()
    c.learn(CLIENT, "first.example", ["192.0.2.1"], [A], 0.0)
    c.learn(CLIENT, "second.example", ["192.0.2.1"], [A], 5.0)
    assert c.name(CLIENT, "192.0.2.1", 6.0) == "second.example"
    assert len(c) == 2


def test_eviction_takes_the_oldest_entry_first_and_counts() -> None:
    c = cache(max_entries=3)
    for i in (1, 2, 3):
        c.learn(CLIENT, f"n{i}.example", [f"192.0.2.{i}"], [A], float(i))
    c.learn(CLIENT, "n1.example", ["192.0.2.1"], [A], 4.0)  # learned again: now the newest
    assert c.stats["attribution.dns_cache_evicted"] == 0
    c.learn(CLIENT, "n4.example", ["192.0.2.4"], [A], 5.0)
    # 192.0.2.2 was the oldest in both tables: one eviction from each
    assert c.stats["attribution.dns_cache_evicted"] == 2
    assert len(c) == 6
    assert c.name(CLIENT, "192.0.2.2", 6.0) is None
    assert [c.name(CLIENT, f"192.0.2.{i}", 6.0) for i in (1, 3, 4)] == [
        "n1.example",
        "n3.example",
        "n4.example",
    ]


def test_eviction_of_a_clients_pair_keeps_the_address_name() -> None:
    c = cache(max_entries=3)
    for i in range(4):  # four clients, one address: only the per-client table overflows
        c.learn(f"10.1.0.{i}", f"c{i}.example", ["192.0.2.1"], [A], float(i))
    assert c.stats["attribution.dns_cache_evicted"] == 1
    assert len(c) == 4
    assert c.name("10.1.0.0", "192.0.2.1", 5.0) == "c3.example"  # its own pair is gone
    assert c.name("10.1.0.1", "192.0.2.1", 5.0) == "c1.example"


def test_expire_forgets_what_is_too_old_for_a_flow_starting_now() -> None:
    c = cache(max_age_s=100.0)
    for i, ts in enumerate((0.0, 50.0, 100.0)):
        c.learn(CLIENT, f"n{i}.example", [f"192.0.2.{i}"], [A], ts)
    c.expire(150.0)
    assert len(c) == 4  # the first is gone; 150 - 50 = 100: the second is still young enough
    assert c.name(CLIENT, "192.0.2.0", 60.0) is None
    assert c.name(CLIENT, "192.0.2.1", 150.0) == "n1.example"
    c.expire(150.001)
    assert len(c) == 2
    assert c.name(CLIENT, "192.0.2.1", 150.0) is None
    assert c.name(CLIENT, "192.0.2.2", 150.0) == "n2.example"
    c.expire(10_000.0)
    assert len(c) == 0
    assert c.stats["attribution.dns_cache_evicted"] == 0  # expiry is not eviction


# --- Attributor ---------------------------------------------------------------------------


def test_a_flow_without_sni_takes_the_qname_not_the_cname_target(services: ServiceMap) -> None:
    at = attributor(services)
    answer = dns(
        "www.youtube.com",
        [(CNAME, "youtube-ui.l.google.com"), (A, "142.250.1.1"), (AAAA, "2a00:1450::1")],
        ts=1000.0,
    )
    at.annotate(answer)
    assert (answer["service"], answer["category"], answer["domain"]) == (
        "youtube",
        "video",
        "youtube.com",
    )
    for server in ("142.250.1.1", "2a00:1450::1"):
        record = flow(server, ts=1000.5)
        at.annotate(record)
        assert attributed(record) == ("www.youtube.com", "dns", "youtube", "video")
        assert record["domain"] == "youtube.com"
    assert at.stats["attribution.flows_named_by_dns"] == 2


def test_tls_and_quic_names_win_over_dns(services: ServiceMap) -> None:
    at = attributor(services)
    at.annotate(dns("www.youtube.com", [(A, "142.250.1.1")]))
    record = flow("142.250.1.1", name=("www.netflix.com", "tls"))
    at.annotate(record)
    assert attributed(record) == ("www.netflix.com", "tls", "netflix", "video")
    record = flow("142.250.1.1", name=("mail.google.com", "quic"))
    at.annotate(record)
    assert attributed(record) == ("mail.google.com", "quic", "gmail", "email")
    assert at.stats["attribution.flows_named_by_dns"] == 0


@pytest.mark.parametrize(
    ("name", "service", "category", "domain"),
    [
        ("www.youtube.com", "youtube", "video", "youtube.com"),
        ("rr3---sn-abc.googlevideo.com", "youtube", "video", "googlevideo.com"),
        ("music.youtube.com", "youtube_music", "streaming_audio", "youtube.com"),
        ("mail.google.com", "gmail", "email", "google.com"),  # the longer match wins
        ("inbox.mail.google.com", "gmail", "email", "google.com"),
        ("www.google.com", "google_search", "search", "google.com"),
        ("google.com", "google_search", "search", "google.com"),
        ("WWW.NETFLIX.COM", "netflix", "video", "netflix.com"),
        ("x.notyoutube.com", None, None, "notyoutube.com"),  # not at a label boundary
        ("unknown.example.org", None, None, "example.org"),
    ],
)
def test_service_category_and_domain_of_named_records(
    services: ServiceMap, name: str, service: str | None, category: str | None, domain: str
) -> None:
    at = attributor(services)
    for record in (
        hello("tls", name),
        hello("quic", name),
        dns(name),
        flow("192.0.2.80", name=(name, "tls")),
    ):
        at.annotate(record)
        got = (record["service"], record["category"], record["domain"])
        assert got == (service, category, domain), record["type"]


def test_a_site_file_overrides_a_builtin_domain(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        'version = "2026.12.01-site"\n'
        "[categories]\n"
        'internal = "Internal services"\n'
        "[services.corp_video]\n"
        'name = "Corporate video"\n'
        'category = "internal"\n'
        'domains = ["youtube.com", "intranet.example.com"]\n',
        encoding="utf-8",
    )
    at = attributor(ServiceMap((site,)))
    for name, service, category in [
        ("www.youtube.com", "corp_video", "internal"),  # the site's entry for the same domain
        ("music.youtube.com", "youtube_music", "streaming_audio"),  # a longer builtin still wins
        ("wiki.intranet.example.com", "corp_video", "internal"),
        ("rr1.googlevideo.com", "youtube", "video"),  # other builtin domains stay
    ]:
        record = hello("tls", name)
        at.annotate(record)
        assert (record["service"], record["category"]) == (service, category), name


def test_unanswered_or_failed_lookups_do_not_teach(services: ServiceMap) -> None:
    at = attributor(services)
    for rcode in (3, 2, 5, None):  # NXDOMAIN, SERVFAIL, REFUSED, no response
        at.annotate(dns(f"rcode{rcode}.example", [(A, "192.0.2.1")], rcode=rcode))
    at.annotate(dns(None, [(A, "192.0.2.1")]))  # a question that could not be read
    at.annotate(dns("cname-only.example", [(CNAME, "target.example")]))
    assert len(at.answers) == 0
    record = flow("192.0.2.1")
    at.annotate(record)
    assert attributed(record) == (None, None, None, None)
    assert record["domain"] is None
    assert at.stats["attribution.flows_unnamed"] == 1


def test_another_clients_answer_names_a_flow_when_the_client_has_none(
    services: ServiceMap,
) -> None:
    at = attributor(services)
    at.annotate(dns("www.netflix.com", [(A, "198.51.100.5")], src=OTHER_CLIENT))
    record = flow("198.51.100.5", src=CLIENT)
    at.annotate(record)
    assert attributed(record) == ("www.netflix.com", "dns", "netflix", "video")


def test_an_answer_older_than_dns_cache_s_names_nothing(services: ServiceMap) -> None:
    at = attributor(services, dns_cache_s=60.0)
    at.annotate(dns("www.netflix.com", [(A, "198.51.100.5")], ts=1000.0))
    late = flow("198.51.100.5", ts=1060.5, flow_id="1:late=")
    at.annotate(late)
    assert late["name"] is None
    early = flow("198.51.100.5", ts=1059.5, flow_id="1:early=")
    at.annotate(early)
    assert early["name"] == "www.netflix.com"


def test_interim_records_keep_the_dns_name_after_the_cache_expired(services: ServiceMap) -> None:
    at = attributor(services, dns_cache_s=60.0)
    at.annotate(dns("www.youtube.com", [(A, "142.250.1.1")], ts=1000.0))
    first = flow("142.250.1.1", ts=1001.0, end="interim", flow_id="1:long=")
    at.annotate(first)
    assert attributed(first) == ("www.youtube.com", "dns", "youtube", "video")
    at.tick(5000.0)  # the answer is forgotten
    assert len(at.answers) == 0
    second = flow("142.250.1.1", ts=1121.0, end="interim", flow_id="1:long=")
    at.annotate(second)
    assert attributed(second) == ("www.youtube.com", "dns", "youtube", "video")
    final = flow("142.250.1.1", ts=1241.0, end="fin", flow_id="1:long=")
    at.annotate(final)
    assert attributed(final) == ("www.youtube.com", "dns", "youtube", "video")
    # the final record forgets the flow: the same 5-tuple later is a new flow without a name
    again = flow("142.250.1.1", ts=5001.0, end="interim", flow_id="1:long=")
    at.annotate(again)
    assert again["name"] is None


def test_long_flows_remembered_are_bounded_and_counted(services: ServiceMap) -> None:
    at = attributor(services, dns_cache_entries=2)
    at.annotate(dns("www.youtube.com", [(A, "142.250.1.1")], ts=1000.0))
    for i in range(3):
        at.annotate(flow("142.250.1.1", ts=1001.0, end="interim", flow_id=f"1:f{i}="))
    assert at.stats["attribution.long_flows_evicted"] == 1


def test_counters(services: ServiceMap) -> None:
    at = attributor(services)
    at.annotate(dns("www.youtube.com", [(A, "142.250.1.1")]))
    at.annotate(dns("unlisted.example.org", [(A, "192.0.2.9")]))
    records = [
        flow("142.250.1.1", flow_id="1:a="),  # named by DNS, attributed
        flow("192.0.2.9", flow_id="1:b="),  # named by DNS, no service
        flow("203.0.113.1", flow_id="1:c="),  # no name at all
        flow("203.0.113.2", flow_id="1:d="),  # no name at all
        flow("203.0.113.3", name=("unlisted.example.net", "tls"), flow_id="1:e="),
        flow("203.0.113.4", name=("www.netflix.com", "tls"), flow_id="1:f="),
        hello("tls", "not-a-flow.example"),  # only flows count
    ]
    for record in records:
        at.annotate(record)
    assert at.stats["attribution.flows_named_by_dns"] == 2
    assert at.stats["attribution.flows_unnamed"] == 2
    assert at.stats["attribution.flows_without_service"] == 2
    assert at.stats["attribution.dns_answers_cached"] == 2
    at.tick(1500.0)
    assert at.stats["attribution.dns_cache_entries"] == 4


def test_records_of_other_types_are_left_alone(services: ServiceMap) -> None:
    at = attributor(services)
    for record in ({"type": "stats", "ts": 1.0}, {"type": "intel", "ts": 1.0, "value": "x"}):
        before = dict(record)
        at.annotate(record)
        assert record == before


def test_a_flow_started_within_the_window_keeps_its_name_when_reported_later(
    services: ServiceMap,
) -> None:
    at = attributor(services, dns_cache_s=3600.0, grace_s=300.0)  # the longest idle timeout
    at.annotate(dns("www.youtube.com", [(A, "142.250.1.1")], ts=1000.0))
    at.tick(4500.0)  # the answer is 3,500 s old: still valid for flows starting now
    at.tick(4650.0)  # the pipeline ticks on; the UDP flow below ends by idle timeout
    record = flow("142.250.1.1", ts=4550.0, end="idle")  # started 3,550 s after the answer
    at.annotate(record)
    assert record["name"] == "www.youtube.com"


def test_a_long_flow_counts_once(services: ServiceMap) -> None:
    at = attributor(services)
    at.annotate(dns("www.youtube.com", [(A, "142.250.1.1")]))
    for end in ("interim", "interim", "fin"):
        at.annotate(flow("142.250.1.1", end=end, flow_id="1:long="))
        at.annotate(flow("203.0.113.1", end=end, flow_id="1:unnamed="))
    assert at.stats["attribution.flows_named_by_dns"] == 1
    assert at.stats["attribution.flows_unnamed"] == 1
