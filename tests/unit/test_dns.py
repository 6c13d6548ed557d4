"""agent._dns.parse_dns (rdata text, names, limits) and agent.dns.DnsTracker through replay."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from agent._dns import parse_dns
from agent.config import Config, DnsConfig
from agent.record import DnsRecord
from tests.util import of_type, pcap_bytes, replay

OK, TRUNCATED, UNSUPPORTED, MALFORMED, LIMIT = range(5)
T_A, T_CNAME, T_NS, T_SOA, T_PTR, T_MX, T_TXT, T_AAAA, T_SRV = 1, 5, 2, 6, 12, 15, 16, 28, 33
T_OPT = 41
T_SVCB, T_HTTPS, T_CAA = 64, 65, 257


# -- wire builders --------------------------------------------------------------------------


def name(text: str) -> bytes:
    out = b""
    for label in text.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def question(qname: bytes | str, qtype: int = T_A, qclass: int = 1) -> bytes:
    wire = name(qname) if isinstance(qname, str) else qname
    return wire + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes | str, rtype: int, rdata: bytes, ttl: int = 300, rclass: int = 1) -> bytes:
    wire = name(owner) if isinstance(owner, str) else owner
    return wire + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def message(
    ident: int,
    flags: int,
    qd: list[bytes],
    an: list[bytes] = (),  # type: ignore[assignment]
    ns: list[bytes] = (),  # type: ignore[assignment]
    ar: list[bytes] = (),  # type: ignore[assignment]
) -> bytes:
    head = struct.pack("!HHHHHH", ident, flags, len(qd), len(an), len(ns), len(ar))
    return head + b"".join([*qd, *an, *ns, *ar])


def opt(udp_size: int = 1232, rcode_high: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (rcode_high << 24) | (0x8000 if do else 0)
    return rr(b"\0", T_OPT, options, ttl=ttl, rclass=udp_size)


def answers_of(data: bytes) -> list[tuple[str, int, int, str]]:
    status, msg = parse_dns(data)
    assert status == OK
    assert msg is not None
    assert msg[6] is None, msg[6]
    return msg[4]


def one_answer(rtype: int, rdata: bytes) -> str:
    data = message(1, 0x8180, [question("example.com", rtype)], [rr("example.com", rtype, rdata)])
    ((owner, got_type, ttl, text),) = answers_of(data)
    assert (owner, got_type, ttl) == ("example.com", rtype, 300)
    return text


# -- rdata text -----------------------------------------------------------------------------


def test_a_and_aaaa() -> None:
    assert one_answer(T_A, bytes([192, 0, 2, 33])) == "192.0.2.33"
    assert one_answer(T_AAAA, bytes.fromhex("20010db8000000000000000000000001")) == "2001:db8::1"


@pytest.mark.parametrize("rtype", [T_CNAME, T_NS, T_PTR])
def test_name_rdata(rtype: int) -> None:
    assert one_answer(rtype, name("target.example.net")) == "target.example.net"


def test_mx() -> None:
    assert (
        one_answer(T_MX, struct.pack("!H", 10) + name("mail.example.com")) == "10 mail.example.com"
    )


def test_srv() -> None:
    rdata = struct.pack("!HHH", 1, 2, 5060) + name("sip.example.com")
    assert one_answer(T_SRV, rdata) == "1 2 5060 sip.example.com"


def test_soa() -> None:
    rdata = name("ns1.example.com") + name("hostmaster.example.com")
    rdata += struct.pack("!IIIII", 2024010101, 3600, 600, 86400, 300)
    text = one_answer(T_SOA, rdata)
    assert text == "ns1.example.com hostmaster.example.com 2024010101 3600 600 86400 300"


def test_txt_several_strings() -> None:
    text = one_answer(T_TXT, b"\x05hello\x0bv=spf1 -all")
    assert "hello" in text
    assert "v=spf1 -all" in text
    assert text.index("hello") < text.index("v=spf1")


def test_txt_string_boundaries_survive_the_text() -> None:
    # ["hello world"] and ["hello", "world"] are different records: their text must differ.
    one = one_answer(T_TXT, b"\x0bhello world")
    two = one_answer(T_TXT, b"\x05hello\x05world")
    assert one != two


def test_https_svcb_params() -> None:
    params = struct.pack("!HH", 1, 6) + b"\x02h2\x02h3"  # alpn
    params += struct.pack("!HH", 3, 2) + struct.pack("!H", 8443)  # port
    params += struct.pack("!HH", 4, 8) + bytes([192, 0, 2, 1, 192, 0, 2, 2])  # ipv4hint
    params += struct.pack("!HH", 5, 3) + b"ech"  # ech (base64 in text)
    rdata = struct.pack("!H", 1) + b"\0" + params
    text = one_answer(T_HTTPS, rdata)
    assert text == "1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.1,192.0.2.2 ech=ZWNo"
    svcb = one_answer(T_SVCB, struct.pack("!H", 0) + name("svc.example.net"))
    assert svcb == "0 svc.example.net"


def test_caa() -> None:
    assert one_answer(T_CAA, b"\x00\x05issue" + b"letsencrypt.org") == '0 issue "letsencrypt.org"'
    assert one_answer(T_CAA, b"\x80\x03tbs" + b"x") == '128 tbs "x"'


def test_unknown_type_uses_the_generic_form() -> None:
    assert one_answer(4242, b"\x01\x02\x03") == "\\# 3"
    assert one_answer(4242, b"") == "\\# 0"


def test_edns_opt_with_client_subnet() -> None:
    ecs = struct.pack("!HHHBB", 8, 7, 1, 24, 0) + bytes([198, 51, 100])
    cookie = struct.pack("!HH", 10, 8) + b"c" * 8
    data = message(
        9, 0x0100, [question("example.com")], ar=[opt(4096, do=True, options=ecs + cookie)]
    )
    status, msg = parse_dns(data)
    assert status == OK and msg is not None
    edns = msg[5]
    assert edns == {
        "udp_size": 4096,
        "rcode_high": 0,
        "version": 0,
        "do": True,
        "options": [8, 10],
        "ecs": "198.51.100.0/24",
    }


def test_edns_ecs_ipv6() -> None:
    ecs = struct.pack("!HHHBB", 8, 10, 2, 48, 0) + bytes.fromhex("20010db80001")
    data = message(9, 0x0100, [question("example.com")], ar=[opt(options=ecs)])
    _status, msg = parse_dns(data)
    assert msg is not None and msg[5] is not None
    assert msg[5]["ecs"] == "2001:db8:1::/48"
    assert msg[5]["do"] is False


# -- names ----------------------------------------------------------------------------------


def qname_of(data: bytes) -> tuple[str | None, str | None]:
    status, msg = parse_dns(data)
    assert status == OK and msg is not None
    return (msg[3][0][0] if msg[3] else None), msg[6]


def test_name_escaping() -> None:
    label = b"a.b\\c\x07\x0d\x00\x7f\xff\t"
    wire = bytes([len(label)]) + label + b"\x03com\x00"
    qname, problem = qname_of(message(1, 0x0100, [question(wire)]))
    assert qname == "a\\.b\\\\c\\a\\r\\000\\177\\377\\t.com"
    assert problem is None


def test_root_name() -> None:
    assert qname_of(message(1, 0x0100, [question(b"\0", T_NS)])) == (".", None)


def test_forward_compression_pointer_is_accepted() -> None:
    # The question's name points forward, into the answer's owner name.
    head_len = 12
    question_wire = b"\xc0" + bytes([head_len + 6]) + struct.pack("!HH", T_A, 1)
    answer = rr("www.example.com", T_A, bytes([192, 0, 2, 1]))
    data = struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0) + question_wire + answer
    status, msg = parse_dns(data)
    assert status == OK and msg is not None
    assert msg[3] == [("www.example.com", T_A, 1)]
    assert msg[4] == [("www.example.com", T_A, 300, "192.0.2.1")]
    assert msg[6] is None


def test_backward_compression_pointer_in_rdata() -> None:
    data = message(
        1,
        0x8180,
        [question("example.com", T_CNAME)],
        [rr(b"\xc0\x0c", T_CNAME, b"\x03www\xc0\x0c")],
    )
    assert answers_of(data) == [("example.com", T_CNAME, 300, "www.example.com")]


def test_pointer_loop_is_a_limit() -> None:
    loop = b"\xc0\x0c"  # the name at offset 12 points to itself
    data = message(1, 0x0100, [question(loop)], [rr("example.com", T_A, b"\x01\x02\x03\x04")])
    status, msg = parse_dns(data)
    assert status == OK and msg is not None
    assert msg[3] == [(None, T_A, 1)]
    assert msg[6] == "question.limit"
    # The pointer's end in the record is known, so the answer after it is still read.
    assert msg[4] == [("example.com", T_A, 300, "1.2.3.4")]


def pointer_chain(hops: int) -> bytes:
    """A query whose name takes `hops` pointers to reach "example.com".

    The chain and the name sit after the question, where no section walks them.
    """
    start = 12 + 2 + 4  # after the header and the question (a pointer, type, class)

    def pointer(offset: int) -> bytes:
        return struct.pack("!H", 0xC000 | offset)

    chain = b"".join(pointer(start + 2 * i) for i in range(1, hops))
    head = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    return head + pointer(start) + struct.pack("!HH", T_A, 1) + chain + name("example.com")


def test_pointer_chain_of_128_hops_is_followed() -> None:
    assert qname_of(pointer_chain(128)) == ("example.com", None)


def test_pointer_chain_of_129_hops_is_a_limit() -> None:
    assert qname_of(pointer_chain(129)) == (None, "question.limit")


def long_name(octets: int) -> bytes:
    """A name of exactly `octets` octets in wire form (labels of up to 63)."""
    wire, left = b"", octets - 1
    while left:
        size = min(63, left - 1)
        wire += bytes([size]) + b"a" * size
        left -= size + 1
    return wire + b"\0"


def test_name_of_255_octets_is_fine() -> None:
    wire = long_name(255)
    assert len(wire) == 255
    qname, problem = qname_of(message(1, 0x0100, [question(wire)]))
    assert problem is None
    assert qname is not None and len(qname) == 255 - 2


def test_name_over_255_octets_is_a_limit() -> None:
    wire = long_name(256)
    assert len(wire) == 256
    assert qname_of(message(1, 0x0100, [question(wire)])) == (None, "question.limit")
    huge = long_name(320)
    data = message(1, 0x0100, [question(huge)], [rr("example.com", T_A, b"\x01\x02\x03\x04")])
    _status, msg = parse_dns(data)
    assert msg is not None
    assert msg[3][0][0] is None
    assert msg[4] == [("example.com", T_A, 300, "1.2.3.4")]


# -- damaged and hostile messages -----------------------------------------------------------


def test_message_shorter_than_id_and_flags() -> None:
    for cut in range(4):
        assert parse_dns(b"\x12\x34\x01\x00"[:cut]) == (TRUNCATED, None)


def test_message_cut_inside_its_header() -> None:
    full = message(0x1234, 0x0100, [question("example.com")])
    for cut in range(4, 12):
        status, msg = parse_dns(full[:cut])
        assert status == OK
        assert msg == (0x1234, 0x0100, (0, 0, 0, 0), [], [], None, "header.truncated")


def test_truncated_answer_keeps_the_question() -> None:
    full = message(
        7, 0x8180, [question("example.com")], [rr("example.com", T_A, b"\x01\x02\x03\x04")]
    )
    status, msg = parse_dns(full[:-2])
    assert status == OK and msg is not None
    assert msg[3] == [("example.com", T_A, 1)]
    assert msg[4] == []
    assert msg[6] == "answer.truncated"


def test_bad_rdata_is_reported_and_kept_generic() -> None:
    data = message(1, 0x8180, [question("example.com")], [rr("example.com", T_A, b"\x01\x02")])
    status, msg = parse_dns(data)
    assert status == OK and msg is not None
    assert msg[4] == [("example.com", T_A, 300, "\\# 2")]
    assert msg[6] == "answer.malformed"


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",  # huge counts, no body
        b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x3f" + b"a" * 10,  # label past end
        b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0",  # half a pointer
        b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\xff\x00\x01\x00\x01",  # outside
        b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x80\x00\x01\x00\x01",  # label 0x80
        b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x41\x00\x00\x01\x00\x01",  # 0x40
        message(1, 0x8180, [question("a")], [rr("a", T_HTTPS, b"\x00\x01\x00\x00\x01\x00\x09")]),
        message(1, 0x8180, [question("a")], [rr("a", T_TXT, b"\x09ab")]),
        message(1, 0x8180, [question("a")], [rr("a", T_SOA, b"\x00\x00")]),
        message(1, 0x8180, [question("a")], [rr("a", T_CAA, b"\x00\xff")]),
        message(1, 0x8180, [question("a")], [rr("a", T_MX, b"\x00\x01\xc0\x0c")]),
        message(1, 0x8180, [question("a")], [rr("a", T_CNAME, b"\x05ab")]),
        message(1, 0, [question("a")], ar=[rr(b"\0", T_OPT, b"\x00\x08\x00\x02\x00\x01")]),
        bytes(range(256)),
        b"\xff" * 600,
    ],
)
def test_parse_dns_never_raises_on_hostile_input(data: bytes) -> None:
    status, msg = parse_dns(data)
    assert status in (OK, TRUNCATED, UNSUPPORTED, MALFORMED, LIMIT)
    assert (status == OK) == (msg is not None)
    for view in (bytearray(data), memoryview(data)):
        assert parse_dns(view) == (status, msg)


# -- pairing through replay -----------------------------------------------------------------

C, S = "10.0.0.1", "10.0.0.53"


def eth() -> Ether:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def udp_dns(ts: float, src: str, dst: str, sport: int, dport: int, payload: bytes | Packet):
    return (ts, eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def query(ts: float, ident: int = 1, qname: str = "example.com", sport: int = 33333, **kw: Any):
    dport = kw.pop("dport", 53)
    return udp_dns(ts, C, S, sport, dport, DNS(id=ident, rd=1, qd=DNSQR(qname=qname), **kw))


def response(ts: float, ident: int = 1, qname: str = "example.com", dport: int = 33333, **kw: Any):
    sport = kw.pop("sport", 53)
    msg = DNS(id=ident, qr=1, rd=1, ra=1, qd=DNSQR(qname=qname), **kw)
    return udp_dns(ts, S, C, sport, dport, msg)


def later(ts: float):
    return udp_dns(ts, "10.9.9.9", "10.8.8.8", 1000, 2000, b"tick")


def dns_records(
    tmp_path: Path, packets: list[tuple[float, Any]], config: Config | None = None
) -> list[dict[str, Any]]:
    path = tmp_path / "dns.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in packets]))
    return of_type(replay([path], config), "dns")  # type: ignore[return-value]


def test_query_and_response_are_one_answered_record(tmp_path: Path) -> None:
    answer = DNSRR(rrname="example.com", type="A", rdata="192.0.2.7", ttl=42)
    (record,) = dns_records(tmp_path, [query(100.0), response(100.125, an=answer)])
    assert set(record) == set(get_type_hints(DnsRecord))  # the common fields included
    assert record["status"] == "answered"
    assert (record["src"], record["sport"], record["dst"], record["dport"]) == (C, 33333, S, 53)
    assert (record["proto"], record["transport"], record["protocol"]) == ("udp", "udp", "dns")
    assert (record["id"], record["qname"]) == (1, "example.com")
    assert (record["qtype"], record["qclass"]) == (1, 1)
    assert (record["rcode"], record["rcode_name"]) == (0, "NOERROR")
    assert (record["answers"], record["answer_types"], record["ttls"]) == (["192.0.2.7"], [1], [42])
    assert record["rtt"] == pytest.approx(0.125)
    assert record["ts"] == pytest.approx(100.0)
    assert record["flags"] == ["rd", "ra"]
    assert record["problem"] is None


def test_dns_record_shares_the_flow_id(tmp_path: Path) -> None:
    path = tmp_path / "dns.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in [query(100.0), response(100.1)]]))
    records = replay([path])
    (dns,) = of_type(records, "dns")
    (flow,) = of_type(records, "flow")
    assert dns["flow"] == flow["flow"]


def test_lone_query_is_unanswered_after_the_timeout(tmp_path: Path) -> None:
    packets = [query(100.0), later(109.5), later(110.5), response(110.7)]
    first, second = dns_records(tmp_path, packets)
    assert (first["status"], first["rcode"], first["rtt"], first["answers"]) == (
        "unanswered",
        None,
        None,
        [],
    )
    assert first["flags"] == ["rd"]
    assert second["status"] == "unsolicited"


def test_response_within_the_timeout_pairs(tmp_path: Path) -> None:
    (record,) = dns_records(tmp_path, [query(100.0), later(105.0), response(109.5)])
    assert record["status"] == "answered"
    assert record["rtt"] == pytest.approx(9.5)


def test_configured_dns_timeout(tmp_path: Path) -> None:
    config = Config(dns=DnsConfig(timeout_s=2.0))
    packets = [query(100.0), later(102.5), response(102.6)]
    assert [r["status"] for r in dns_records(tmp_path, packets, config)] == [
        "unanswered",
        "unsolicited",
    ]


def test_lone_query_at_end_of_input_is_unanswered(tmp_path: Path) -> None:
    (record,) = dns_records(tmp_path, [query(100.0)])
    assert record["status"] == "unanswered"


def test_lone_response_is_unsolicited(tmp_path: Path) -> None:
    (record,) = dns_records(tmp_path, [response(100.0, ident=9)])
    assert record["status"] == "unsolicited"
    assert (record["src"], record["sport"], record["dst"], record["dport"]) == (C, 33333, S, 53)
    assert record["rtt"] is None
    assert record["rcode"] == 0


def test_retransmitted_query(tmp_path: Path) -> None:
    packets = [query(100.0, ident=4), query(101.0, ident=4), response(101.2, ident=4)]
    first, second = dns_records(tmp_path, packets)
    assert (first["status"], first["ts"]) == ("unanswered", pytest.approx(100.0))
    assert (second["status"], second["ts"]) == ("answered", pytest.approx(101.0))
    assert second["rtt"] == pytest.approx(0.2)


def test_pairing_needs_the_same_id_and_question(tmp_path: Path) -> None:
    packets = [query(100.0, ident=1), response(100.1, ident=2), response(100.2, qname="other.org")]
    statuses = sorted(r["status"] for r in dns_records(tmp_path, packets))
    assert statuses == ["unanswered", "unsolicited", "unsolicited"]


def test_pending_query_cap(tmp_path: Path) -> None:
    path = tmp_path / "dns.pcap"
    packets = [query(100.0, ident=1), query(100.1, ident=2), response(100.2, ident=1)]
    packets.append(response(100.3, ident=2))
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in packets]))
    records = replay([path], Config(dns=DnsConfig(max_pending=1)))
    assert [(r["id"], r["status"]) for r in of_type(records, "dns")] == [
        (1, "unanswered"),
        (1, "unsolicited"),
        (2, "answered"),
    ]
    assert records[-1]["caps"]["dns_pending_evicted"] == 1


def test_mdns_and_llmnr_are_marked(tmp_path: Path) -> None:
    mdns = udp_dns(
        100.0,
        "192.168.1.5",
        "224.0.0.251",
        5353,
        5353,
        DNS(id=0, qd=DNSQR(qname="printer.local", qclass=0x8001)),
    )
    llmnr_q = query(100.1, ident=7, qname="fileserver", dport=5355)
    llmnr_r = response(100.2, ident=7, qname="fileserver", sport=5355)
    records = dns_records(tmp_path, [mdns, llmnr_q, llmnr_r])
    by_protocol = {r["protocol"]: r for r in records}
    assert set(by_protocol) == {"mdns", "llmnr"}
    assert by_protocol["mdns"]["qname"] == "printer.local"
    assert by_protocol["mdns"]["qclass"] == 1  # the unicast-response bit is not the class
    assert by_protocol["llmnr"]["status"] == "answered"
    assert by_protocol["llmnr"]["dport"] == 5355


def test_extended_rcode_from_opt(tmp_path: Path) -> None:
    q = message(3, 0x0100, [question("example.com")], ar=[opt()])
    r = message(3, 0x8180 | 0x0, [question("example.com")], ar=[opt(rcode_high=1)])
    packets = [udp_dns(100.0, C, S, 4444, 53, q), udp_dns(100.1, S, C, 53, 4444, r)]
    (record,) = dns_records(tmp_path, packets)
    assert (record["rcode"], record["rcode_name"]) == (16, "BADVERS")
    assert record["edns"]["rcode_high"] == 1
    r2 = message(3, 0x8183, [question("example.com")], ar=[opt(rcode_high=1)])
    packets = [udp_dns(100.0, C, S, 4444, 53, q), udp_dns(100.1, S, C, 53, 4444, r2)]
    (record,) = dns_records(tmp_path, packets)
    assert record["rcode"] == (1 << 4) | 3


def test_nxdomain_without_opt(tmp_path: Path) -> None:
    (record,) = dns_records(tmp_path, [query(100.0), response(100.1, rcode=3)])
    assert (record["rcode"], record["rcode_name"]) == (3, "NXDOMAIN")


def test_message_cut_inside_its_header_gives_a_record(tmp_path: Path) -> None:
    packets = [udp_dns(100.0, C, S, 4444, 53, b"\xab\xcd\x01\x00\x00\x01")]
    (record,) = dns_records(tmp_path, packets)
    assert record["problem"] == "header.truncated"
    assert record["id"] == 0xABCD
    assert record["qname"] is None


def test_ipv6_dns(tmp_path: Path) -> None:
    packets = [
        (
            100.0,
            eth()
            / IPv6(src="2001:db8::1", dst="2001:db8::53")
            / UDP(sport=5000, dport=53)
            / DNS(id=2, qd=DNSQR(qname="v6.example")),
        ),
        (
            100.1,
            eth()
            / IPv6(src="2001:db8::53", dst="2001:db8::1")
            / UDP(sport=53, dport=5000)
            / DNS(id=2, qr=1, qd=DNSQR(qname="v6.example")),
        ),
    ]
    (record,) = dns_records(tmp_path, packets)
    assert (record["src"], record["dst"], record["status"]) == (
        "2001:db8::1",
        "2001:db8::53",
        "answered",
    )


# -- DNS over TCP ---------------------------------------------------------------------------

CLIENT_ISN, SERVER_ISN = 1000, 700000


def framed(ident: int, is_response: bool, qname: str = "example.com") -> bytes:
    if is_response:
        msg = DNS(id=ident, qr=1, qd=DNSQR(qname=qname), an=DNSRR(rrname=qname, rdata="192.0.2.9"))
    else:
        msg = DNS(id=ident, rd=1, qd=DNSQR(qname=qname))
    wire = bytes(msg)
    return struct.pack("!H", len(wire)) + wire


def segment(ts: float, up: bool, offset: int, data: bytes = b"", flags: str = "PA"):
    if up:
        ip = IP(src=C, dst=S) / TCP(sport=40000, dport=53, seq=CLIENT_ISN + 1 + offset, flags=flags)
    else:
        ip = IP(src=S, dst=C) / TCP(sport=53, dport=40000, seq=SERVER_ISN + 1 + offset, flags=flags)
    return (ts, eth() / ip / Raw(data) if data else eth() / ip)


def tcp_handshake(ts: float) -> list[tuple[float, Packet]]:
    return [
        (ts, eth() / IP(src=C, dst=S) / TCP(sport=40000, dport=53, seq=CLIENT_ISN, flags="S")),
        (
            ts + 0.01,
            eth()
            / IP(src=S, dst=C)
            / TCP(sport=53, dport=40000, seq=SERVER_ISN, ack=CLIENT_ISN + 1, flags="SA"),
        ),
        segment(ts + 0.02, True, 0, flags="A"),
    ]


def test_tcp_two_messages_in_one_segment(tmp_path: Path) -> None:
    queries = framed(1, False) + framed(2, False, "two.example")
    replies = framed(1, True) + framed(2, True, "two.example")
    packets = tcp_handshake(100.0)
    packets += [segment(100.1, True, 0, queries), segment(100.2, False, 0, replies)]
    records = dns_records(tmp_path, packets)
    assert [(r["id"], r["status"], r["transport"]) for r in records] == [
        (1, "answered", "tcp"),
        (2, "answered", "tcp"),
    ]
    assert records[1]["qname"] == "two.example"
    assert records[0]["answers"] == ["192.0.2.9"]


def test_tcp_message_over_three_segments_out_of_order_and_retransmitted(tmp_path: Path) -> None:
    q = framed(5, False)
    r = framed(5, True)
    a, b, c = r[:1], r[1:20], r[20:]  # the first piece splits the length prefix
    packets = [*tcp_handshake(100.0), segment(100.1, True, 0, q)]
    packets += [
        segment(100.20, False, 0, a),
        segment(100.21, False, len(a) + len(b), c),  # ahead of a gap
        segment(100.22, False, 0, a),  # retransmission
        segment(100.23, False, len(a), b),  # fills the gap
        segment(100.24, False, len(a), b),  # retransmission after delivery
    ]
    (record,) = dns_records(tmp_path, packets)
    assert record["status"] == "answered"
    assert record["rtt"] == pytest.approx(0.13)
    assert record["answers"] == ["192.0.2.9"]


def test_tcp_overlapping_retransmission(tmp_path: Path) -> None:
    q = framed(6, False) + framed(7, False)
    half = len(q) // 2
    packets = tcp_handshake(100.0)
    packets += [segment(100.1, True, 0, q[: half + 3]), segment(100.2, True, 0, q)]
    records = dns_records(tmp_path, packets)
    assert sorted((r["id"], r["status"]) for r in records) == [(6, "unanswered"), (7, "unanswered")]


def test_tcp_without_handshake(tmp_path: Path) -> None:
    packets = [segment(100.0, True, 0, framed(8, False)), segment(100.1, False, 0, framed(8, True))]
    (record,) = dns_records(tmp_path, packets)
    assert record["status"] == "answered"


def test_tcp_stream_cap(tmp_path: Path) -> None:
    def connection(port: int, ident: int, t: float) -> list[tuple[float, Packet]]:
        up = IP(src=C, dst=S) / TCP(sport=port, dport=53, seq=CLIENT_ISN + 1, flags="PA")
        down = IP(src=S, dst=C) / TCP(sport=53, dport=port, seq=SERVER_ISN + 1, flags="PA")
        return [
            (t, eth() / up / Raw(framed(ident, False))),
            (t + 0.1, eth() / down / Raw(framed(ident, True))),
        ]

    path = tmp_path / "dns.pcap"
    packets = connection(40001, 1, 100.0) + connection(40002, 2, 100.5)
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in packets]))
    # Two directions of one connection fill the cap of two streams.
    records = replay([path], Config(dns=DnsConfig(max_tcp_streams=2)))
    assert [(r["id"], r["status"]) for r in of_type(records, "dns")] == [(1, "answered")]
    assert records[-1]["caps"]["dns_tcp_streams"] >= 1


def test_tcp_payload_cap(tmp_path: Path) -> None:
    big = DNS(
        id=3,
        qr=1,
        qd=DNSQR(qname="example.com"),
        an=DNSRR(rrname="example.com", type="TXT", rdata=["t" * 200] * 4),
    )
    wire = bytes(big)
    packets = [
        segment(100.0, True, 0, framed(3, False)),
        segment(100.1, False, 0, struct.pack("!H", len(wire)) + wire),
    ]
    path = tmp_path / "dns.pcap"
    path.write_bytes(pcap_bytes([(ts, bytes(p)) for ts, p in packets]))
    records = replay([path], Config(dns=DnsConfig(tcp_payload_cap=512)))
    assert [r["status"] for r in of_type(records, "dns")] == ["unanswered"]
    assert records[-1]["caps"]["tcp_payload_cap"] == 1


def test_vlans_keep_transactions_apart(tmp_path: Path) -> None:
    """A query on VLAN 10 and a response on VLAN 20 are two flows, so no transaction."""
    from scapy.layers.l2 import Dot1Q

    q = (
        eth()
        / Dot1Q(vlan=10)
        / IP(src="10.0.0.1", dst="10.0.0.53")
        / UDP(sport=5000, dport=53)
        / DNS(id=1, rd=1, qd=DNSQR(qname="a.example"))
    )
    r = (
        eth()
        / Dot1Q(vlan=20)
        / IP(src="10.0.0.53", dst="10.0.0.1")
        / UDP(sport=53, dport=5000)
        / DNS(
            id=1, qr=1, qd=DNSQR(qname="a.example"), an=DNSRR(rrname="a.example", rdata="192.0.2.1")
        )
    )
    path = tmp_path / "vlans.pcap"
    path.write_bytes(pcap_bytes([(1.0, bytes(q)), (1.01, bytes(r))]))
    records = replay([path])
    assert sorted(d["status"] for d in of_type(records, "dns")) == ["unanswered", "unsolicited"]
    assert sorted(f["vlan"] for f in of_type(records, "flow")) == [10, 20]
