"""Compares tapsense's records with the tshark truth of the public capture corpus.

The corpus README (TAPSENSE_CORPUS/README.md) describes the truth files. Both
sides are reduced to DNS messages keyed by (client, client port, server,
server port, transaction id, qname, qtype); a record of tapsense stands for a
query when its status is answered or unanswered, and for a response when it
is answered or unsolicited. Names are compared in tshark's rendering.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.util import replay

# tshark's stand-ins for names it could not read: tapsense gives null there.
TSHARK_PLACEHOLDERS = {"<Unknown extended label>", "<Name contains a pointer that loops>"}
ANSWER_TYPES = {1, 5, 28}  # A, CNAME, AAAA: the answer data the truth carries
_HIGH_OCTAL = re.compile(r"\\([23][0-7]{2})")


def tshark_name(name: str | None) -> str | None:
    """tapsense's rendering of a name turned into tshark's (see ext/dns.pyx)."""
    if name is None:
        return None
    if name == ".":
        return "<Root>"
    out = []
    i = 0
    while i < len(name):
        if name[i] == "\\" and name[i + 1 : i + 2] in (".", "\\"):
            out.append(name[i + 1])
            i += 2
        elif name[i] == "\\" and _HIGH_OCTAL.match(name, i):
            out.append("\ufffd")  # tshark shows bytes from 0x80 as U+FFFD
            i += 4
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Difference:
    file: str
    kind: str  # missing_query, missing_response, answer_mismatch, extra_message
    frame: int  # of the truth message; 0 for an extra message of tapsense's
    detail: str

    @property
    def key(self) -> tuple[str, str, int | str]:
        return (self.file, self.kind, self.frame or self.detail)


@dataclass
class DnsComparison:
    queries: int = 0
    queries_found: int = 0
    responses: int = 0
    responses_found: int = 0

    def __post_init__(self) -> None:
        self.differences: list[Difference] = []


def dns_files(corpus: Path) -> list[str]:
    """Names of the captures that have DNS truth."""
    return sorted(
        p.parent.name for p in (corpus / "truth").glob("*/dns.jsonl") if p.stat().st_size > 0
    )


def compare_dns(corpus: Path, name: str, result: DnsComparison) -> None:
    """Adds the messages of one capture, and its differences, to result."""
    truth = [json.loads(line) for line in (corpus / "truth" / name / "dns.jsonl").open()]
    records = replay([corpus / name])
    ours: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["type"] != "dns":
            continue
        key = (
            r["src"],
            r["sport"],
            r["dst"],
            r["dport"],
            r["id"],
            tshark_name(r["qname"]),
            r["qtype"],
        )
        if r["status"] in ("answered", "unanswered"):
            ours[("q", *key)].append(r)
        if r["status"] in ("answered", "unsolicited"):
            ours[("r", *key)].append(r)
    for t in truth:
        qname = None if t["qname"] in TSHARK_PLACEHOLDERS else t["qname"]
        if t["response"]:
            result.responses += 1
            key = ("r", t["dst"], t["dport"], t["src"], t["sport"], t["id"], qname, t["qtype"])
        else:
            result.queries += 1
            key = ("q", t["src"], t["sport"], t["dst"], t["dport"], t["id"], qname, t["qtype"])
        candidates = ours.get(key)
        if not candidates:
            kind = "missing_response" if t["response"] else "missing_query"
            result.differences.append(Difference(name, kind, t["frame"], repr(key[1:])))
            continue
        if not t["response"]:
            result.queries_found += 1
            candidates.pop(0)
            continue
        result.responses_found += 1

        def agrees(r: dict[str, Any], t: dict[str, Any] = t) -> bool:
            answers = [
                a
                for a, ty in zip(r["answers"], r["answer_types"], strict=True)
                if ty in ANSWER_TYPES
            ]
            return bool(r["rcode"] == t["rcode"] and answers == t["answers"])

        agreeing = [r for r in candidates if agrees(r)]
        chosen = (agreeing or candidates)[0]
        candidates.remove(chosen)
        if not agreeing:
            result.differences.append(
                Difference(
                    name,
                    "answer_mismatch",
                    t["frame"],
                    f"rcode {chosen['rcode']} vs {t['rcode']}, answers {chosen['answers']} vs "
                    f"{t['answers']}",
                )
            )
    # DNS messages tapsense saw that tshark did not (mDNS and LLMNR are outside the truth)
    for key, left in ours.items():
        for r in left:
            if r["protocol"] == "dns":
                result.differences.append(Difference(name, "extra_message", 0, repr(key)))
