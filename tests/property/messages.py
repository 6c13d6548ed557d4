"""DNS messages for the property tests: built with scapy, with the fields parse_dns should give.

`dns_messages()` draws a response with questions, answers of common types (A, AAAA, CNAME,
NS, PTR, MX, SRV, TXT), an SOA in the authority section and an OPT record with Client Subnet,
compressed or not. The expected parse is built from the drawn values; `dpkt_dns()` is the
oracle that reads the same message with dpkt.dns.
"""

from __future__ import annotations

import socket
import string
from dataclasses import dataclass
from typing import Any

import dpkt
from hypothesis import strategies as st
from scapy.layers.dns import (
    DNS,
    DNSQR,
    DNSRR,
    DNSRRMX,
    DNSRROPT,
    DNSRRSOA,
    DNSRRSRV,
    EDNS0ClientSubnet,
)

LDH = string.ascii_lowercase + string.digits
labels = st.text(alphabet=LDH, min_size=1, max_size=20)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}


@dataclass
class Message:
    wire: bytes
    ident: int
    questions: list[tuple[str, int, int]]
    answers: list[tuple[str, int, int, str]]
    ecs: str | None


@st.composite
def answer(draw: st.DrawFn, pool: list[str]) -> tuple[Any, tuple[str, int, int, str]]:
    """One answer RR as a scapy layer and as the (name, type, ttl, text) parse_dns gives."""
    name = draw(st.sampled_from(pool))
    ttl = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(sorted(TYPES)))
    target = draw(st.one_of(st.sampled_from(pool), names))
    if kind == "A":
        addr = draw(st.binary(min_size=4, max_size=4))
        text = socket.inet_ntop(socket.AF_INET, addr)
        rr = DNSRR(rrname=name, type="A", ttl=ttl, rdata=text)
    elif kind == "AAAA":
        addr = draw(st.binary(min_size=16, max_size=16))
        text = socket.inet_ntop(socket.AF_INET6, addr)
        rr = DNSRR(rrname=name, type="AAAA", ttl=ttl, rdata=text)
    elif kind in ("CNAME", "NS", "PTR"):
        text = target
        rr = DNSRR(rrname=name, type=kind, ttl=ttl, rdata=target)
    elif kind == "MX":
        pref = draw(st.integers(0, 65535))
        text = f"{pref} {target}"
        rr = DNSRRMX(rrname=name, ttl=ttl, preference=pref, exchange=target)
    elif kind == "SRV":
        prio, weight, port = (draw(st.integers(0, 65535)) for _ in range(3))
        text = f"{prio} {weight} {port} {target}"
        rr = DNSRRSRV(rrname=name, ttl=ttl, priority=prio, weight=weight, port=port, target=target)
    else:
        strings = draw(st.lists(st.text(alphabet=LDH, max_size=60), min_size=1, max_size=4))
        text = " ".join(f'"{s}"' for s in strings)  # quoted, as in master files
        rr = DNSRR(rrname=name, type="TXT", ttl=ttl, rdata=[s.encode() for s in strings])
    return rr, (name, TYPES[kind], ttl, text)


@st.composite
def dns_messages(draw: st.DrawFn, max_answers: int = 8) -> Message:
    pool = draw(st.lists(names, min_size=1, max_size=4))
    ident = draw(st.integers(0, 65535))
    qs = [
        (draw(st.sampled_from(pool)), draw(st.sampled_from(sorted(TYPES.values()))), 1)
        for _ in range(draw(st.integers(1, 2)))
    ]
    drawn = [draw(answer(pool)) for _ in range(draw(st.integers(0, max_answers)))]
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        zone = draw(st.sampled_from(pool))
        kw["ns"] = [DNSRRSOA(rrname=zone, mname=f"ns.{zone}", rname=f"host.{zone}", serial=1)]
    ecs = None
    if draw(st.booleans()):
        subnet = draw(st.binary(min_size=3, max_size=3)) + b"\x00"
        ecs = f"{socket.inet_ntop(socket.AF_INET, subnet)}/24"
        opt = EDNS0ClientSubnet(source_plen=24, address=socket.inet_ntop(socket.AF_INET, subnet))
        kw["ar"] = [DNSRROPT(rclass=1232, rdata=[opt])]
    msg = DNS(
        id=ident,
        qr=1,
        rd=1,
        qd=[DNSQR(qname=n, qtype=t) for n, t, _ in qs],
        an=[rr for rr, _ in drawn] or None,
        **kw,
    )
    # scapy's compressor may point a name into TXT rdata (a character-string is no name).
    if draw(st.booleans()) and all(a[1] != TYPES["TXT"] for _, a in drawn):
        msg = msg.compress()
    return Message(bytes(msg), ident, qs, [a for _, a in drawn], ecs)


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name


def dpkt_dns(wire: bytes) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int, str]]]:
    """dpkt.dns's reading of questions and answers, rendered as parse_dns renders them."""
    msg = dpkt.dns.DNS(wire)
    questions = [(q.name, q.type, q.cls) for q in msg.qd]
    answers = []
    for rr in msg.an:
        if rr.type == 1:
            text = socket.inet_ntop(socket.AF_INET, rr.ip)
        elif rr.type == 28:
            text = socket.inet_ntop(socket.AF_INET6, rr.ip6)
        elif rr.type == 5:
            text = rr.cname
        elif rr.type == 2:
            text = rr.nsname
        elif rr.type == 12:
            text = rr.ptrname
        elif rr.type == 15:  # dpkt 1.9.8 leaves the preference as a 1-tuple
            pref = rr.preference[0] if isinstance(rr.preference, tuple) else rr.preference
            text = f"{pref} {rr.mxname}"
        elif rr.type == 33:
            text = f"{rr.priority} {rr.weight} {rr.port} {rr.srvname}"
        elif rr.type == 16:
            text = " ".join(f'"{_text(s)}"' for s in rr.text)
        else:
            text = f"\\# {len(rr.rdata)}"
        answers.append((rr.name, rr.type, rr.ttl, text))
    return questions, answers
