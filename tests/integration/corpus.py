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


# --- TLS and QUIC ClientHellos -------------------------------------------------------------

HELLO_FIELDS = ("sni", "ja3", "ja4", "alpn", "version")


@dataclass
class HelloComparison:
    hellos: int = 0
    found: int = 0
    with_sni: int = 0
    sni_found: int = 0

    def __post_init__(self) -> None:
        self.differences: list[Difference] = []
        self.expectations_checked = 0


def hello_files(corpus: Path, kind: str) -> list[str]:
    return sorted(
        p.parent.name for p in (corpus / "truth").glob(f"*/{kind}.jsonl") if p.stat().st_size > 0
    )


def _alpn_of(truth: dict[str, Any]) -> list[str]:
    """The truth's ALPN values in tapsense's rendering (raw bytes where not UTF-8)."""
    if "alpn_hex" in truth:
        return [bytes.fromhex(h).decode("utf-8", "backslashreplace") for h in truth["alpn_hex"]]
    return list(truth["alpn"])


def compare_hellos(
    corpus: Path, name: str, kind: str, records: list[dict[str, Any]], result: HelloComparison
) -> None:
    """Matches tapsense's tls (or quic) records with the truth's hellos of one capture.

    Hellos match by endpoints, in order; then SNI, JA4, JA3 (where the truth has
    one), ALPN and version must agree. For QUIC, `version` is the QUIC version.
    """
    truth = [json.loads(line) for line in (corpus / "truth" / name / f"{kind}.jsonl").open()]
    ours: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["type"] == kind:
            ours[(r["src"], r["sport"], r["dst"], r["dport"])].append(r)
    for t in truth:
        result.hellos += 1
        if t["sni"]:
            result.with_sni += 1
        key = (t["src"], t["sport"], t["dst"], t["dport"])
        candidates = ours.get(key)
        if not candidates:
            result.differences.append(Difference(name, f"{kind}_missing", t["frame"], repr(key)))
            continue
        r = candidates.pop(0)
        result.found += 1
        if t["sni"] and r["sni"] == t["sni"]:
            result.sni_found += 1
        expected = {"sni": t["sni"], "ja4": t["ja4"], "alpn": _alpn_of(t), "version": t["version"]}
        if t.get("ja3"):
            expected["ja3"] = t["ja3"]
        for field_name, value in expected.items():
            if r.get(field_name) != value:
                result.differences.append(
                    Difference(
                        name,
                        f"{kind}_{field_name}",
                        t["frame"],
                        f"{r.get(field_name)!r} vs {value!r}",
                    )
                )
    for key, left in ours.items():
        for r in left:
            result.differences.append(
                Difference(
                    name, f"{kind}_extra", 0, f"{key} sni={r['sni']!r} version={r['version']}"
                )
            )


def expected_values(meta: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, field, value) for the TLS/QUIC values the source projects' own tests expect.

    FoxIO's JA4 outputs, suricata-verify checks (tls.sni, tls.ja3.hash, tls.ja4, quic.ja4,
    client ALPNs), Zeek's ssl.log and quic.log server names, Arkime's JA3/JA4. nDPI's
    values are left out: the corpus README explains where its choices differ.
    """
    out: list[tuple[str, str, str]] = []
    expectations = meta.get("expectations", {})
    fox = expectations.get("foxio_ja4", {})
    for snapshot in fox.values() if isinstance(fox, dict) else []:
        for entry in snapshot.get("entries", []):
            if entry.get("ja4"):
                out.append(("foxio_ja4", "ja4", entry["ja4"]))
            if entry.get("tls_server_name"):
                out.append(("foxio_ja4", "sni", entry["tls_server_name"]))
    for test in expectations.get("suricata_verify", []):
        for check in test.get("checks", []):
            for key, value in check.get("match", {}).items():
                field_name = {
                    "tls.sni": "sni",
                    "tls.ja3.hash": "ja3",
                    "tls.ja4": "ja4",
                    "quic.ja4": "ja4",
                    "tls.ja3.string": "ja3_full",
                }.get(key)
                if key.startswith("tls.client_alpns["):
                    field_name = "alpn"
                if field_name and isinstance(value, str):
                    out.append(("suricata_verify", field_name, value))
    for baseline in expectations.get("zeek_baselines", []):
        if baseline["baseline"].endswith(("ssl.log", "quic.log")):
            for row in baseline["rows"]:
                if row.get("server_name") not in (None, "-", ""):
                    out.append(("zeek", "sni", row["server_name"]))
    for test in expectations.get("arkime", []):
        for session in test.get("sessions", []):
            for field_name in ("ja3", "ja4"):
                for value in session.get("tls", {}).get(field_name, []):
                    out.append(("arkime", field_name, value))
    return out


def check_expectations(
    corpus: Path, name: str, records: list[dict[str, Any]], result: HelloComparison
) -> None:
    meta = json.loads((corpus / "truth" / name / "meta.json").read_text())
    seen: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r["type"] in ("tls", "quic"):
            for field_name in ("sni", "ja3", "ja4", "ja3_full"):
                if r.get(field_name):
                    seen[field_name].add(r[field_name])
            seen["alpn"].update(r["alpn"])
    for source, field_name, value in expected_values(meta):
        result.expectations_checked += 1
        if value not in seen[field_name]:
            result.differences.append(
                Difference(name, f"expectation_{source}_{field_name}", 0, value)
            )
