"""A small authoritative DNS responder over UDP, for tests that capture real DNS transactions.

python3 dns_server.py HOST [PORT]

It answers A and AAAA queries for the names in ZONE (a NOERROR response without answers,
NODATA, for a type a name lacks) and NXDOMAIN for any other name; a query it cannot parse
gets no response. Answers are built with scapy's DNS classes. It serves until killed.
"""

from __future__ import annotations

import socket
import sys

from scapy.layers.dns import DNS, DNSQR, DNSRR

TTL = 300
QTYPE_A, QTYPE_AAAA = 1, 28
RCODE_NXDOMAIN = 3  # RFC 1035 section 4.1.1
ZONE: dict[str, dict[int, list[str]]] = {
    "www.tapsense.test": {QTYPE_A: ["10.77.0.2"], QTYPE_AAAA: ["fd77::2"]},
    "api.tapsense.test": {QTYPE_A: ["192.0.2.10", "192.0.2.11"]},
    "v6only.tapsense.test": {QTYPE_AAAA: ["2001:db8::53"]},
}


def answer(query: bytes) -> bytes | None:
    """The response to one query message; None when it is not a query tapsense can answer."""
    try:
        msg = DNS(query)
    except Exception:
        return None
    if msg.qr or not msg.qd:
        return None
    question = msg.qd[0] if isinstance(msg.qd, list) else msg.qd
    if not isinstance(question, DNSQR):
        return None
    name = question.qname.decode("ascii", "replace").rstrip(".").lower()
    records = ZONE.get(name)
    rrs = [
        DNSRR(rrname=question.qname, type=question.qtype, ttl=TTL, rdata=rdata)
        for rdata in (records or {}).get(question.qtype, [])
    ]
    response = DNS(
        id=msg.id,
        qr=1,
        opcode=msg.opcode,
        aa=1,
        rd=msg.rd,
        ra=0,
        rcode=0 if records is not None else RCODE_NXDOMAIN,
        qd=[question],
        an=rrs or None,
    )
    return bytes(response)


def main() -> None:
    host = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 53
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        while True:
            query, peer = sock.recvfrom(4096)
            response = answer(query)
            if response is not None:
                sock.sendto(response, peer)


if __name__ == "__main__":
    main()
