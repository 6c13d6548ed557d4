"""agent/intel.py: indicator lists, their matching, intel records and background reloads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import agent.intel
from agent.intel import Indicators, IntelError, IntelMatcher, Origin, load_indicators

FLOW_DNS = "1:dnsdnsdnsdnsdnsdnsdnsdnsdns="
FLOW_TLS = "1:tlstlstlstlstlstlstlstlstls="
FLOW_UDP = "1:udpudpudpudpudpudpudpudpudp="


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load(tmp_path: Path, name: str, text: str) -> Indicators:
    return load_indicators((write(tmp_path, name, text),))


# --- hand-made records (the fields the pipeline gives them) -------------------------------


def dns(
    qname: str | None,
    answers: Sequence[tuple[int, str]] = (),
    *,
    flow: str = FLOW_DNS,
    src: str = "10.1.0.2",
    rcode: int | None = 0,
) -> dict[str, Any]:
    return {"type": "dns", "ts": 1000.0, "src": src, "sport": 33333, "dst": "10.0.0.53",
            "dport": 53, "proto": "udp", "flow": flow, "status": "answered", "qname": qname,
            "qtype": 1, "rcode": rcode, "answers": [a for _t, a in answers],
            "answer_types": [t for t, _a in answers]}  # fmt: skip


def hello(kind: str, sni: str | None, *, flow: str = FLOW_TLS) -> dict[str, Any]:
    return {"type": kind, "ts": 1001.0, "src": "10.1.0.2", "sport": 40000, "dst": "192.0.2.80",
            "dport": 443, "proto": "tcp" if kind == "tls" else "udp", "flow": flow,
            "sni": sni}  # fmt: skip


def flow_record(
    src: str = "10.1.0.2",
    dst: str = "192.0.2.80",
    *,
    flow: str = FLOW_UDP,
    end: str = "idle",
    ts: float = 1002.0,
) -> dict[str, Any]:
    return {"type": "flow", "ts": ts, "src": src, "sport": 50000, "dst": dst, "dport": 4444,
            "proto": "udp", "flow": flow, "ts_end": ts + 1, "pkts_up": 3, "bytes_up": 300,
            "pkts_down": 2, "bytes_down": 200, "end": end, "tcp_flags_up": None,
            "tcp_flags_down": None, "vlan": None, "name": None, "name_source": None}  # fmt: skip


def scan(matcher: IntelMatcher, record: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    matcher.scan(record, out)
    return out


class FakeLog:
    """Records every call as (level, event, fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str) -> Any:
        return lambda event, **kw: self.calls.append((level, event, kw))

    def __getattr__(self, level: str) -> Any:
        if level in ("debug", "info", "warning", "error"):
            return self._record(level)
        raise AttributeError(level)

    def events(self) -> list[str]:
        return [event for _level, event, _kw in self.calls]


# --- parsing: text files ------------------------------------------------------------------


def test_text_comments_blank_lines_and_spaces_are_skipped(tmp_path: Path) -> None:
    lists = load(
        tmp_path,
        "list.txt",
        "# a feed\n\n   \nbad.example\n  spaced.example  \t\nworse.example # why: phishing\n"
        "#commented.example\n\t# indented comment\n",
    )
    assert set(lists.suffix_domains) == {"bad.example", "spaced.example", "worse.example"}
    assert lists.rejected == 0
    assert len(lists) == 3
    assert lists.files == {str(tmp_path / "list.txt"): 3}


def test_hosts_file_lines_give_every_name_and_not_the_sink(tmp_path: Path) -> None:
    lists = load(
        tmp_path,
        "hosts",
        "0.0.0.0 ads.example tracker.example  pixel.example\n"
        "127.0.0.1\tone.example\n"
        ":: six.example\n"
        "::1 loop.example other.example # trailing comment\n",
    )
    assert set(lists.suffix_domains) == {
        "ads.example",
        "tracker.example",
        "pixel.example",
        "one.example",
        "six.example",
        "loop.example",
        "other.example",
    }
    assert lists.addresses == {}  # the sink addresses are not indicators
    assert lists.rejected == 0


def test_upper_case_and_trailing_dots_are_normalised(tmp_path: Path) -> None:
    lists = load(tmp_path, "list.txt", "BAD.Example.\n2001:DB8::AB\nAnother.EXAMPLE\n")
    assert set(lists.suffix_domains) == {"bad.example", "another.example"}
    assert lists.match_name("WWW.Bad.EXAMPLE") == (
        "bad.example",
        "domain",
        Origin("list.txt", None),
    )
    assert lists.match_address("2001:db8::ab") is not None


def test_wildcard_prefix_lists_the_domain_and_everything_below(tmp_path: Path) -> None:
    lists = load(tmp_path, "list.txt", "*.wild.example\n")
    assert set(lists.suffix_domains) == {"wild.example"}
    assert lists.match_name("a.b.wild.example") is not None
    assert lists.match_name("wild.example") is not None
    assert lists.match_name("notwild.example") is None


def test_junk_lines_are_counted_in_rejected(tmp_path: Path) -> None:
    junk = [
        "bad!.example",  # a character no host name has
        "a..example",  # an empty label
        "http://bad.example/path",  # a URL
        "bad.example:443",  # a port
        "10.0.0.0/33",  # prefix longer than the address
        "2001:db8::/129",
        "10.0.0.0/x",
        "999.1.2.3/8",  # not an address
        "2001:db8::g",
        "*.",
        ".",
    ]
    lists = load(tmp_path, "list.txt", "\n".join(["good.example", *junk, "192.0.2.1"]) + "\n")
    assert lists.rejected == len(junk)
    assert len(lists) == 2
    assert lists.files[str(tmp_path / "list.txt")] == 2


def test_rejected_adds_up_over_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.txt", "x!.example\nok.example\n")
    second = write(tmp_path, "b.csv", "indicator\ny!.example\nz!.example\n10.0.0.1\n")
    lists = load_indicators((first, second))
    assert lists.rejected == 3
    assert lists.files == {first: 1, second: 1}


# --- parsing: CSV -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column", ["indicator", "value", "ioc", "domain", "host", "ip", "address", " IOC "]
)
def test_csv_indicator_column_names(tmp_path: Path, column: str) -> None:
    lists = load(
        tmp_path,
        "feed.csv",
        f"first_seen,{column},comment\n"
        "2024-01-01,bad.example,phish\n"
        "2024-01-02,192.0.2.9,c2\n"
        "2024-01-03,198.51.100.0/24,scanner\n",
    )
    assert set(lists.suffix_domains) == {"bad.example"}
    assert lists.match_address("192.0.2.9") == ("192.0.2.9", "ip", Origin("feed.csv", None))
    assert lists.match_address("198.51.100.7") == (
        "198.51.100.0/24",
        "cidr",
        Origin("feed.csv", None),
    )
    assert lists.rejected == 0


@pytest.mark.parametrize("kind", ["hostname", "fqdn", "HostName", " FQDN "])
def test_csv_type_hostname_or_fqdn_matches_the_name_only(tmp_path: Path, kind: str) -> None:
    lists = load(
        tmp_path,
        "feed.csv",
        f"indicator,type\nexact.example,{kind}\nsuffix.example,domain\nplain.example,\n",
    )
    assert set(lists.exact_domains) == {"exact.example"}
    assert set(lists.suffix_domains) == {"suffix.example", "plain.example"}
    assert lists.match_name("exact.example") is not None
    assert lists.match_name("www.exact.example") is None
    assert lists.match_name("www.suffix.example") is not None
    assert lists.match_name("www.plain.example") is not None


@pytest.mark.parametrize("column", ["tag", "threat", "description", "Threat"])
def test_csv_tag_columns(tmp_path: Path, column: str) -> None:
    lists = load(
        tmp_path,
        "feed.csv",
        f"indicator,{column}\nbad.example,botnet C2\nuntagged.example,\n192.0.2.5,  scanner \n",
    )
    assert lists.match_name("bad.example") == (
        "bad.example",
        "domain",
        Origin("feed.csv", "botnet C2"),
    )
    assert lists.match_name("untagged.example") == (
        "untagged.example",
        "domain",
        Origin("feed.csv", None),
    )
    assert lists.match_address("192.0.2.5") == ("192.0.2.5", "ip", Origin("feed.csv", "scanner"))


def test_csv_quoted_fields_short_rows_and_comment_rows(tmp_path: Path) -> None:
    lists = load(
        tmp_path,
        "feed.csv",
        'id,indicator,tag\n1,"quoted.example","a, b"\n\n2\n# a comment row\n3,"#hash.example",x\n'
        "4,,empty\n",
    )
    assert lists.match_name("quoted.example") == (
        "quoted.example",
        "domain",
        Origin("feed.csv", "a, b"),
    )
    assert len(lists) == 1
    # the short row "2", the blank line and the comment rows are skipped; the empty cell is junk
    assert lists.rejected == 1


def test_csv_without_an_indicator_column_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "nocolumn.csv", "url,tag\nbad.example,x\n")
    with pytest.raises(IntelError, match=r"nocolumn\.csv.*indicator column"):
        load_indicators((path,))


def test_a_txt_file_with_a_csv_header_is_text(tmp_path: Path) -> None:
    # the format follows the file name: a .txt file is never read as CSV
    lists = load(tmp_path, "feed.txt", "url,tag\nbad.example\n")
    assert set(lists.suffix_domains) == {"bad.example"}
    assert lists.rejected == 1


def test_unreadable_files_raise_intel_error_naming_the_file(tmp_path: Path) -> None:
    good = write(tmp_path, "good.txt", "bad.example\n")
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(IntelError, match=r"missing\.txt: cannot read"):
        load_indicators((good, missing))
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    with pytest.raises(IntelError, match=r"folder\.txt: cannot read"):
        load_indicators((str(folder),))


def test_bytes_that_are_not_utf8_do_not_stop_the_load(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9.example\nbad.example\n")
    lists = load_indicators((str(path),))
    assert set(lists.suffix_domains) == {"bad.example"}
    assert lists.rejected == 1


# --- matching -----------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Indicators:
    return load(
        tmp_path,
        "feed.csv",
        "indicator,type,tag\n"
        "bad.example,,suffix\n"
        "deep.bad.example,,deeper\n"
        "exact.example,fqdn,exact\n"
        "www.bad.example,hostname,exact-www\n"
        "192.0.2.1,ip,v4\n"
        "2001:DB8:0:0::1,ip,v6\n"
        "10.1.2.0/24,cidr,24\n"
        "10.0.0.0/8,cidr,8\n"
        "10.1.0.0/16,cidr,16\n"
        "2001:db8:1::/48,cidr,48\n"
        "2001:db8::/32,cidr,32\n"
        "203.0.113.77/32,cidr,host32\n"
        "2001:db8:ffff::9/128,cidr,host128\n",
    )


@pytest.mark.parametrize(
    ("name", "indicator", "tag"),
    [
        ("bad.example", "bad.example", "suffix"),
        ("cdn.bad.example", "bad.example", "suffix"),
        ("a.b.c.bad.example", "bad.example", "suffix"),
        ("x.deep.bad.example", "deep.bad.example", "deeper"),  # the longest listed suffix
        ("deep.bad.example", "deep.bad.example", "deeper"),
        ("www.bad.example", "www.bad.example", "exact-www"),  # exact before suffix
        ("img.www.bad.example", "bad.example", "suffix"),  # exact entries match no child
        ("exact.example", "exact.example", "exact"),
        ("BAD.EXAMPLE", "bad.example", "suffix"),
    ],
)
def test_names_that_match(mixed: Indicators, name: str, indicator: str, tag: str) -> None:
    assert mixed.match_name(name) == (indicator, "domain", Origin("feed.csv", tag))


@pytest.mark.parametrize(
    "name",
    [
        "notbad.example",  # ends with the same characters, not at a label boundary
        "xbad.example",
        "bad.example.org",
        "bad.examplex",
        "example",
        "www.exact.example",  # exact only
        "inexact.example",
        "",
        ".",
    ],
)
def test_names_that_do_not_match(mixed: Indicators, name: str) -> None:
    assert mixed.match_name(name) is None


@pytest.mark.parametrize(
    ("address", "indicator", "kind", "tag"),
    [
        ("192.0.2.1", "192.0.2.1", "ip", "v4"),
        # any spelling of the address; reported in its one text form, as records write it
        ("2001:db8::1", "2001:db8::1", "ip", "v6"),
        ("2001:0db8:0000::0001", "2001:db8::1", "ip", "v6"),
        ("10.1.2.3", "10.1.2.0/24", "cidr", "24"),  # the longest prefix is reported
        ("10.1.3.3", "10.1.0.0/16", "cidr", "16"),
        ("10.200.0.1", "10.0.0.0/8", "cidr", "8"),
        ("2001:db8:1:2::5", "2001:db8:1::/48", "cidr", "48"),
        ("2001:db8:2::5", "2001:db8::/32", "cidr", "32"),
        ("203.0.113.77", "203.0.113.77", "ip", "host32"),  # /32 is an address
        ("2001:db8:ffff::9", "2001:db8:ffff::9", "ip", "host128"),
    ],
)
def test_addresses_that_match(
    mixed: Indicators, address: str, indicator: str, kind: str, tag: str
) -> None:
    assert mixed.match_address(address) == (indicator, kind, Origin("feed.csv", tag))


@pytest.mark.parametrize(
    "address",
    ["192.0.2.2", "11.0.0.1", "203.0.113.76", "2001:db9::1", "2001:db9:ffff::9", "x", ""],
)
def test_addresses_that_do_not_match(mixed: Indicators, address: str) -> None:
    assert mixed.match_address(address) is None


def test_host_prefixes_become_addresses(mixed: Indicators) -> None:
    assert {text for text, _origin in mixed.addresses.values()} >= {
        "203.0.113.77",
        "2001:db8:ffff::9",
    }
    assert all(length not in (32, 128) or width != length for width, length in mixed.networks)


def test_networks_are_ordered_longest_prefix_first(mixed: Indicators) -> None:
    lengths = [length for _width, length in mixed.networks]
    assert lengths == sorted(lengths, reverse=True)


def test_v4_networks_never_match_v6_addresses_and_back(tmp_path: Path) -> None:
    # all-zero networks: only the family check keeps ::/0 from matching 0.0.0.0 and back
    v4 = load(tmp_path, "v4.txt", "0.0.0.0/0\n")
    assert v4.match_address("203.0.113.1") == ("0.0.0.0/0", "cidr", Origin("v4.txt", None))
    for address in ("::", "::1", "::ffff:203.0.113.1", "2001:db8::1"):
        assert v4.match_address(address) is None, address
    v6 = load(tmp_path, "v6.txt", "::/0\n::/96\n")
    assert v6.match_address("::5") == ("::/96", "cidr", Origin("v6.txt", None))
    for address in ("0.0.0.0", "0.0.0.5", "10.0.0.1"):
        assert v6.match_address(address) is None, address


def test_network_with_host_bits_set_still_matches_its_network(tmp_path: Path) -> None:
    lists = load(tmp_path, "list.txt", "10.9.8.7/16\n")
    assert lists.match_address("10.9.0.1") == ("10.9.0.0/16", "cidr", Origin("list.txt", None))
    assert lists.match_address("10.10.0.1") is None


# --- IntelMatcher.scan --------------------------------------------------------------------


@pytest.fixture
def matcher(tmp_path: Path) -> IntelMatcher:
    path = write(
        tmp_path,
        "intel.csv",
        "indicator,tag\n"
        "bad.example,phish\n"
        "evil-cdn.example,c2\n"
        "192.0.2.66,c2\n"
        "2001:db8::66,c2\n"
        "198.51.100.0/24,scanner\n",
    )
    m = IntelMatcher(Counter())
    assert not m.armed
    m.load((path,))
    assert m.armed
    return m


def expected_hit(
    record: dict[str, Any], indicator: str, kind: str, matched: str, value: str, tag: str
) -> dict[str, Any]:
    return {
        "type": "intel",
        "ts": record["ts"],
        "src": record["src"],
        "sport": record["sport"],
        "dst": record["dst"],
        "dport": record["dport"],
        "proto": record["proto"],
        "flow": record["flow"],
        "client": record["src"],
        "indicator": indicator,
        "indicator_type": kind,
        "matched": matched,
        "value": value,
        "source": "intel.csv",
        "tag": tag,
    }


@pytest.mark.parametrize(
    ("record", "indicator", "kind", "matched", "value", "tag"),
    [
        (dns("www.bad.example"), "bad.example", "domain", "dns.qname", "www.bad.example", "phish"),
        (
            dns("innocent.example", [(5, "x.evil-cdn.example"), (1, "203.0.113.1")]),
            "evil-cdn.example",
            "domain",
            "dns.cname",
            "x.evil-cdn.example",
            "c2",
        ),
        (
            dns("innocent.example", [(5, "edge.example.net"), (1, "192.0.2.66")]),
            "192.0.2.66",
            "ip",
            "dns.answer",
            "192.0.2.66",
            "c2",
        ),
        (
            dns("innocent.example", [(28, "2001:db8::66")]),
            "2001:db8::66",
            "ip",
            "dns.answer",
            "2001:db8::66",
            "c2",
        ),
        (
            dns("innocent.example", [(1, "198.51.100.200")]),
            "198.51.100.0/24",
            "cidr",
            "dns.answer",
            "198.51.100.200",
            "scanner",
        ),
        (
            hello("tls", "login.bad.example"),
            "bad.example",
            "domain",
            "tls.sni",
            "login.bad.example",
            "phish",
        ),
        (hello("quic", "BAD.example"), "bad.example", "domain", "quic.sni", "BAD.example", "phish"),
        (flow_record(dst="192.0.2.66"), "192.0.2.66", "ip", "flow.dst", "192.0.2.66", "c2"),
        (
            flow_record(src="198.51.100.9", dst="10.1.0.2"),
            "198.51.100.0/24",
            "cidr",
            "flow.src",
            "198.51.100.9",
            "scanner",
        ),
    ],
    ids=["qname", "cname", "answer-a", "answer-aaaa", "answer-cidr", "tls", "quic", "dst", "src"],
)
def test_each_place_gives_one_intel_record(
    matcher: IntelMatcher,
    record: dict[str, Any],
    indicator: str,
    kind: str,
    matched: str,
    value: str,
    tag: str,
) -> None:
    before = dict(record)
    hits = scan(matcher, record)
    assert hits == [expected_hit(record, indicator, kind, matched, value, tag)]
    assert record == before  # the scanned record is left as it was
    assert matcher.stats["intel.hits"] == 1


def test_records_that_touch_no_indicator_give_nothing(matcher: IntelMatcher) -> None:
    quiet = [
        dns("notbad.example", [(5, "bad.example.org"), (1, "192.0.2.67")]),
        # only CNAME targets and addresses are matched among answers
        dns(
            "txt.example", [(16, '"bad.example"'), (15, "10 mx.bad.example"), (2, "ns.bad.example")]
        ),
        dns(None),
        dns("unanswered.example", [], rcode=None),
        hello("tls", None),
        hello("tls", "xbad.example"),
        hello("quic", ""),
        flow_record(src="192.0.2.65", dst="198.51.101.1"),
        flow_record(src="2001:db8::67", dst="2001:db8::65"),
        {"type": "stats", "ts": 1.0, "packets": 3},
    ]
    for record in quiet:
        assert scan(matcher, record) == [], record
    assert matcher.stats["intel.hits"] == 0


def test_one_record_can_hit_several_places_and_indicators(matcher: IntelMatcher) -> None:
    record = dns(
        "www.bad.example",
        [(5, "a.evil-cdn.example"), (1, "192.0.2.66"), (1, "198.51.100.1"), (1, "198.51.100.2")],
    )
    hits = scan(matcher, record)
    # two answers in one listed network are one hit: one record per indicator and place
    assert [(h["matched"], h["indicator"], h["value"]) for h in hits] == [
        ("dns.qname", "bad.example", "www.bad.example"),
        ("dns.cname", "evil-cdn.example", "a.evil-cdn.example"),
        ("dns.answer", "192.0.2.66", "192.0.2.66"),
        ("dns.answer", "198.51.100.0/24", "198.51.100.1"),
    ]
    assert matcher.stats["intel.repeats"] == 1


def test_hits_are_reported_once_per_flow_indicator_and_place(matcher: IntelMatcher) -> None:
    assert len(scan(matcher, dns("www.bad.example"))) == 1
    # the same client asks again over the same flow (socket): no new record
    assert scan(matcher, dns("www.bad.example")) == []
    assert scan(matcher, dns("mail.bad.example")) == []  # same indicator, same place
    # another flow reports it again
    assert len(scan(matcher, dns("www.bad.example", flow="1:other-dns-flow="))) == 1
    # the same indicator in another place of the first flow is a new hit
    assert len(scan(matcher, dns("x.example", [(5, "bad.example")]))) == 1
    assert matcher.stats["intel.hits"] == 3
    assert matcher.stats["intel.repeats"] == 2


def test_dedupe_lasts_for_the_interim_records_and_resets_after_the_final_one(
    matcher: IntelMatcher,
) -> None:
    listed = "192.0.2.66"
    assert len(scan(matcher, flow_record(dst=listed, end="interim", ts=1000))) == 1
    assert scan(matcher, flow_record(dst=listed, end="interim", ts=1120)) == []
    assert scan(matcher, flow_record(dst=listed, end="idle", ts=1240)) == []
    # the same 5-tuple again later is a new flow: reported again
    assert len(scan(matcher, flow_record(dst=listed, end="interim", ts=5000))) == 1
    assert scan(matcher, flow_record(dst=listed, end="fin", ts=5120)) == []
    assert matcher.stats["intel.hits"] == 2
    assert matcher.stats["intel.repeats"] == 3


def test_a_final_record_without_hits_also_forgets_the_flow(matcher: IntelMatcher) -> None:
    # the TLS hello hit is remembered under the flow id; the flow's final record resets it
    assert len(scan(matcher, hello("tls", "bad.example", flow=FLOW_TLS))) == 1
    assert scan(matcher, hello("tls", "bad.example", flow=FLOW_TLS)) == []
    assert scan(matcher, flow_record(dst="203.0.113.5", flow=FLOW_TLS, end="fin")) == []
    assert len(scan(matcher, hello("tls", "bad.example", flow=FLOW_TLS))) == 1


def test_dedupe_cap_evicts_the_oldest_flow_and_counts(
    matcher: IntelMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.intel, "DEDUPE_FLOWS", 2)
    for flow in ("1:a=", "1:b=", "1:c="):
        assert len(scan(matcher, hello("tls", "bad.example", flow=flow))) == 1
    assert matcher.stats["intel.dedupe_evicted"] == 1
    # "1:a=" was forgotten (reported again), "1:c=" was not
    assert len(scan(matcher, hello("tls", "bad.example", flow="1:a="))) == 1
    assert scan(matcher, hello("tls", "bad.example", flow="1:c=")) == []
    assert matcher.stats["intel.dedupe_evicted"] == 2
    assert matcher.stats["intel.hits"] == 4
    # flows without hits take no room
    for i in range(10):
        scan(matcher, hello("tls", "fine.example", flow=f"1:quiet{i}="))
    assert matcher.stats["intel.dedupe_evicted"] == 2


# --- loading and reloading ----------------------------------------------------------------


def test_load_sets_the_counters_and_an_empty_list_disarms(tmp_path: Path) -> None:
    stats: Counter[str] = Counter()
    m = IntelMatcher(stats)
    seconds = m.load((write(tmp_path, "a.txt", "a.example\nb.example\njunk!\n"),))
    assert seconds >= 0
    assert m.armed
    assert stats["intel.loads"] == 1
    assert stats["intel.indicators"] == 2
    assert stats["intel.rejected"] == 1
    m.load((write(tmp_path, "empty.txt", "# nothing yet\n"),))
    assert not m.armed
    assert stats["intel.loads"] == 2
    assert stats["intel.indicators"] == 0
    assert scan(m, dns("a.example")) == []


def test_load_failure_at_start_raises(tmp_path: Path) -> None:
    m = IntelMatcher(Counter())
    with pytest.raises(IntelError):
        m.load((str(tmp_path / "absent.txt"),))
    assert not m.armed


def test_good_reload_swaps_the_lists(tmp_path: Path) -> None:
    stats: Counter[str] = Counter()
    m = IntelMatcher(stats)
    m.load((write(tmp_path, "old.txt", "old.example\n"),))
    log = FakeLog()
    done = threading.Event()
    m.reload((write(tmp_path, "new.txt", "new.example\n192.0.2.1\nbad!line\n"),), log, done.set)
    assert m.wait_loaded(30)
    assert done.is_set()
    assert scan(m, hello("tls", "www.old.example")) == []
    assert [h["indicator"] for h in scan(m, hello("tls", "www.new.example"))] == ["new.example"]
    assert stats["intel.loads"] == 2
    assert stats["intel.indicators"] == 2
    assert stats["intel.rejected"] == 1
    assert stats["intel.load_failures"] == 0
    assert log.events() == ["intel.loaded"]
    _level, _event, fields = log.calls[0]
    assert fields["indicators"] == 2
    assert fields["rejected"] == 1
    assert fields["files"] == {str(tmp_path / "new.txt"): 2}


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda tmp: str(tmp / "absent.txt"), id="missing"),
        pytest.param(lambda tmp: write(tmp, "nocol.csv", "url\nx.example\n"), id="no-column"),
    ],
)
def test_failing_reload_keeps_the_old_lists(tmp_path: Path, bad: Any) -> None:
    stats: Counter[str] = Counter()
    m = IntelMatcher(stats)
    m.load((write(tmp_path, "old.txt", "old.example\n"),))
    old = m.indicators
    log = FakeLog()
    done = threading.Event()
    good = write(tmp_path, "new.txt", "new.example\n")
    m.reload((good, bad(tmp_path)), log, done.set)  # one bad file fails the whole reload
    assert m.wait_loaded(30)
    assert done.is_set()
    assert m.indicators is old
    assert m.armed
    assert len(scan(m, hello("tls", "old.example"))) == 1
    assert scan(m, hello("tls", "new.example", flow="1:other=")) == []
    assert stats["intel.load_failures"] == 1
    assert stats["intel.loads"] == 1
    assert log.events() == ["intel.load_failed"]
    level, _event, fields = log.calls[0]
    assert level == "warning"
    assert fields["kept"] == 1
    assert bad(tmp_path).rpartition("/")[2] in fields["error"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_reload_of_a_csv_the_csv_module_refuses_keeps_the_old_lists(tmp_path: Path) -> None:
    stats: Counter[str] = Counter()
    m = IntelMatcher(stats)
    m.load((write(tmp_path, "old.txt", "old.example\n"),))
    rows = "".join(f"h{i}.example,t\n" for i in range(20000))
    broken = write(tmp_path, "broken.csv", 'indicator,tag\n"bad.example,x\n' + rows)
    log = FakeLog()
    done = threading.Event()
    m.reload((broken,), log, done.set)
    m.wait_loaded(30)
    assert stats["intel.load_failures"] == 1
    assert log.events() == ["intel.load_failed"]
    assert done.is_set()


def test_reload_while_one_is_running_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    started = threading.Event()
    loads: list[tuple[str, ...]] = []
    real = agent.intel.load_indicators

    def slow(paths: tuple[str, ...], pause: Any = None) -> Indicators:
        loads.append(paths)
        started.set()
        assert release.wait(30)
        return real(paths, pause)

    monkeypatch.setattr(agent.intel, "load_indicators", slow)
    stats: Counter[str] = Counter()
    m = IntelMatcher(stats)
    log = FakeLog()
    first = write(tmp_path, "first.txt", "first.example\n")
    second = write(tmp_path, "second.txt", "second.example\n")
    m.reload((first,), log)
    assert started.wait(30)
    m.reload((second,), log)  # refused: the first load is still running
    assert log.calls == [
        ("warning", "intel.reload_busy", {"reason": "the previous load is still running"})
    ]
    assert not m.wait_loaded(0.05)
    release.set()
    assert m.wait_loaded(30)
    assert loads == [(first,)]
    assert log.events() == ["intel.reload_busy", "intel.loaded"]
    assert scan(m, hello("tls", "first.example"))
    # once it is done, the next reload runs
    m.reload((second,), log)
    assert m.wait_loaded(30)
    assert loads == [(first,), (second,)]
    assert scan(m, hello("tls", "second.example"))


def test_scans_during_a_reload_see_the_old_or_the_new_lists_whole(tmp_path: Path) -> None:
    """A thread scans without pause while a 200,000-indicator list loads; each result must
    be what the old lists give or what the new ones give, never a mix or a partial list."""
    old = write(
        tmp_path,
        "old.csv",
        "indicator,tag\nalpha.example,old\n192.0.2.0/24,old\n2001:db8::/32,old\n",
    )
    big = ["indicator,tag", "beta.example,new", "192.0.2.0/24,new", "198.51.100.7,new"]
    big += [f"filler{i}.example{i % 97},new" for i in range(140_000)]
    big += [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255},new" for i in range(40_000)]
    big += [
        f"172.{16 + (i >> 12) % 16}.{(i >> 4) & 255}.{(i & 15) << 4}/28,new" for i in range(20_000)
    ]
    new = write(tmp_path, "new.csv", "\n".join(big) + "\n")

    probe = dns(
        "www.alpha.example",
        [(5, "www.beta.example"), (1, "192.0.2.5"), (1, "198.51.100.7"), (28, "2001:db8::5")],
    )
    old_view = {
        ("dns.qname", "alpha.example", "old"),
        ("dns.answer", "192.0.2.0/24", "old"),
        ("dns.answer", "2001:db8::/32", "old"),
    }
    new_view = {
        ("dns.cname", "beta.example", "new"),
        ("dns.answer", "192.0.2.0/24", "new"),
        ("dns.answer", "198.51.100.7", "new"),
    }
    m = IntelMatcher(Counter())
    m.load((old,))
    views: Counter[str] = Counter()
    bad: list[Any] = []
    stop = threading.Event()
    during = [0, 0]  # scans before the reload started, before it ended

    def hammer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            record = dict(probe, flow=f"1:probe{n}=")  # a new flow each time: no dedupe
            got = {(h["matched"], h["indicator"], h["tag"]) for h in scan(m, record)}
            if got == old_view:
                views["old"] += 1
            elif got == new_view:
                views["new"] += 1
            else:
                bad.append(got)
            views["scans"] += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        while views["scans"] < 100:
            time.sleep(0.001)
        during[0] = views["scans"]
        log = FakeLog()
        m.reload((new,), log, lambda: during.__setitem__(1, views["scans"]))
        assert m.wait_loaded(120)
        settled = views["scans"]
        while views["scans"] < settled + 100:
            time.sleep(0.001)
    finally:
        stop.set()
        thread.join(30)
    assert log.events() == ["intel.loaded"]
    assert bad == []
    assert views["old"] >= 100
    assert views["new"] >= 100
    assert during[1] > during[0]  # the scanner ran while the list was being built


# --- known problems (agent/ is another engineer's; these pass once they are fixed) --------


def test_a_csv_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfindicator,tag\r\nbad.example,phish\r\n")
    lists = load_indicators((str(path),))
    assert lists.match_name("bad.example") is not None


def test_a_text_file_with_a_byte_order_mark_keeps_its_first_indicator(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbfbad.example\nworse.example\n")
    lists = load_indicators((str(path),))
    assert lists.rejected == 0
    assert lists.match_name("bad.example") is not None


def test_a_leading_dot_lists_the_domain_or_is_rejected(tmp_path: Path) -> None:
    lists = load(tmp_path, "list.txt", ".bad.example\n")
    assert lists.match_name("www.bad.example") is not None or lists.rejected == 1


def test_an_absolute_name_matches(tmp_path: Path) -> None:
    lists = load(tmp_path, "list.txt", "bad.example\n")
    assert lists.match_name("www.bad.example.") is not None


def test_a_hosts_blocklist_header_lists_nothing(tmp_path: Path) -> None:
    lists = load(
        tmp_path,
        "hosts",
        "127.0.0.1 localhost\n127.0.0.1 localhost.localdomain\n127.0.0.1 local\n"
        "255.255.255.255 broadcasthost\n::1 localhost\n::1 ip6-localhost ip6-loopback\n"
        "fe80::1%lo0 localhost\nff00::0 ip6-localnet\n0.0.0.0 0.0.0.0\n"
        "0.0.0.0 ads.example\n",
    )
    assert lists.match_name("printer.local") is None
    assert lists.match_name("localhost") is None
    assert lists.match_address("0.0.0.0") is None
    assert lists.match_address("255.255.255.255") is None
    assert lists.match_name("ads.example") is not None


def test_a_name_longer_than_dns_allows_is_not_walked(tmp_path: Path) -> None:
    lists = load(tmp_path, "list.txt", "a\n")
    assert lists.match_name("a." * 8000 + "a") is None  # a valid suffix, but no DNS name
    assert lists.match_name("x.a") is not None


def test_a_reload_pauses_per_line_read_not_per_indicator_kept(tmp_path: Path) -> None:
    path = tmp_path / "mostly-junk.txt"
    path.write_text("http://not/an/indicator\n" * 50_000 + "good.example\n")
    pauses: list[int] = []
    indicators = agent.intel.load_indicators((str(path),), pause=lambda: pauses.append(1))
    assert len(indicators) == 1 and indicators.rejected == 50_000
    assert len(pauses) == 50_001 // agent.intel.PAUSE_EVERY


def test_pipelines_given_loaded_tables_share_them_and_match_alike(tmp_path: Path) -> None:
    """The daemon loads the lists once before its workers fork; each worker's pipeline
    matches against those tables instead of loading its own."""
    from agent.config import parse_config
    from agent.core import Pipeline
    from agent.enrich import EnrichData

    listed = tmp_path / "intel.txt"
    listed.write_text("bad.example\n")
    config = parse_config(f'[intel]\nfiles = ["{listed}"]\n')
    data = EnrichData.load(config)
    workers = [Pipeline(config, data) for _ in range(2)]
    for pipeline in workers:
        assert pipeline.enrich.intel.indicators is data.indicators
        assert pipeline.enrich.attributor is not None
        assert pipeline.enrich.attributor.services is data.services
        assert pipeline.enrich.intel.armed and pipeline.stats["intel.indicators"] == 1
    alone = Pipeline(config)  # loads its own
    assert alone.enrich.intel.indicators is not data.indicators
    assert alone.enrich.intel.indicators.match_name("www.bad.example") == (
        data.indicators.match_name("www.bad.example")
    )
