"""TLS client and server fingerprints: JA3, JA3S and JA4 (the BSD-licensed JA4 only).

JA3/JA3S: github.com/salesforce/ja3 (decimal values, GREASE dropped, md5).
JA4: github.com/FoxIO-LLC/ja4, technical_details/JA4.md.
Inputs are dicts shaped as agent._tls.parse_client_hello / parse_server_hello give them.
The agent takes its fingerprints from those parsers, which write them in C
(ext/_fingerprint.pxd); this module is their definition in Python, which the
bench's dpkt reference, the SSL 2.0 hello and the tests use.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
EMPTY_HASH = "000000000000"
_EXT_SNI = 0x0000
_EXT_ALPN = 0x0010
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))  # RFC 8701 section 2


def _dash(values: list[int]) -> str:
    return "-".join([str(v) for v in values if v not in GREASE])


def _hex_list(values: list[int]) -> str:
    """ "0a0b,1301,..." : four lower-case hex digits per value, comma separated."""
    return struct.pack(f">{len(values)}H", *values).hex(",", 2)


def ja3(hello: dict[str, Any]) -> tuple[str, str]:
    """(md5 hex, full string) of a ClientHello: version,ciphers,extensions,groups,formats."""
    full = ",".join(
        (
            str(hello["version"]),
            _dash(hello["ciphers"]),
            _dash(hello["extensions"]),
            _dash(hello["groups"]),
            "-".join(str(v) for v in hello["point_formats"]),
        )
    )
    return hashlib.md5(full.encode(), usedforsecurity=False).hexdigest(), full


def ja3s(server: dict[str, Any]) -> tuple[str, str]:
    """(md5 hex, full string) of a ServerHello: version,cipher,extensions."""
    full = f"{server['version']},{server['cipher']},{_dash(server['extensions'])}"
    return hashlib.md5(full.encode(), usedforsecurity=False).hexdigest(), full


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _alpn_chars(alpn: list[bytes]) -> str:
    """First and last characters of the first ALPN value, or of its hex form."""
    if not alpn or not alpn[0]:
        return "00"
    first = alpn[0]
    if first[0] in _ALNUM and first[-1] in _ALNUM:
        return chr(first[0]) + chr(first[-1])
    text = first.hex()
    return text[0] + text[-1]


def ja4_version(hello: dict[str, Any]) -> int:
    """The version JA4 reports: the highest supported_versions entry, else the legacy one."""
    offered = [v for v in hello["supported_versions"] if v not in GREASE]
    return max(offered) if offered else int(hello["version"])


def ja4(hello: dict[str, Any], transport: str = "t") -> str:
    """JA4 of a ClientHello; transport is "t" (TLS over TCP) or "q" (QUIC)."""
    ciphers = [c for c in hello["ciphers"] if c not in GREASE]
    extensions = [e for e in hello["extensions"] if e not in GREASE]
    head = (
        f"{transport}{JA4_VERSIONS.get(ja4_version(hello), '00')}"
        f"{'d' if hello['has_sni'] else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{_alpn_chars(hello['alpn'])}"
    )
    cipher_hash = _hash12(_hex_list(sorted(ciphers))) if ciphers else EMPTY_HASH
    listed = sorted(e for e in extensions if e != _EXT_SNI and e != _EXT_ALPN)
    if listed:
        text = _hex_list(listed)
        sigalgs = [s for s in hello["signature_algorithms"] if s not in GREASE]
        if sigalgs:
            text += "_" + _hex_list(sigalgs)
        ext_hash = _hash12(text)
    else:
        ext_hash = EMPTY_HASH
    return f"{head}_{cipher_hash}_{ext_hash}"
