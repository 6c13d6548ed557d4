"""Client pseudonyms made at the sensor, before anything leaves it.

Three modes, per site (`privacy.clients`):

- "cryptopan": prefix-preserving pseudonymisation with a secret key (Crypto-PAn: J. Fan,
  J. Xu, M. Ammar, S. Moon, "Prefix-preserving IP address anonymization", Computer Networks
  46(2), 2004). Two addresses that share their first k bits map to two pseudonyms that
  share their first k bits, and no more, so subnets stay subnets while the addresses are
  hidden. The key (32 bytes: an AES-128 key and the block that makes the pad) lives in a
  file on the sensor, made on first use with mode 0600; it is never shipped.
- "truncate": the address cut to a prefix (`privacy.truncate_v4`, `privacy.truncate_v6`
  bits), host bits zero.
- "keep": addresses as they are.

IPv4 follows the reference implementation bit for bit (its published sample trace is a
test vector); IPv6 runs the same construction over 128 bits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.dns import ADDRESS_TYPES
from agent.flow import PROTO_NAMES, addr_text, community_id, icmp_one_way
from agent.intel import address_bytes

KEY_BYTES = 32
MODES = ("cryptopan", "truncate", "keep")


class CryptoPan:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a Crypto-PAn key is {KEY_BYTES} bytes, not {len(key)}")
        self._aes = Cipher(algorithms.AES(key[:16]), modes.ECB()).encryptor()
        self._pad = int.from_bytes(self._aes.update(key[16:]), "big")
        self.anonymize = lru_cache(maxsize=1 << 16)(self._anonymize)

    def _anonymize(self, address: int, bits: int) -> int:
        """The pseudonym of an address of `bits` bits (32 or 128), as an integer."""
        shift = 128 - bits
        left = address << shift  # the address in the first bits of a 128-bit block
        blocks = []
        for pos in range(bits):
            high = ((1 << pos) - 1) << (128 - pos) if pos else 0  # the first pos bits
            blocks.append(
                ((left & high) | (self._pad & ~high & ((1 << 128) - 1))).to_bytes(16, "big")
            )
        out = self._aes.update(b"".join(blocks))  # one ECB call for every bit
        flips = 0
        for pos in range(bits):
            flips = (flips << 1) | (out[16 * pos] >> 7)
        return address ^ flips

    def text(self, address: str) -> str:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        raw = socket.inet_pton(family, address)
        value = self.anonymize(int.from_bytes(raw, "big"), len(raw) * 8)
        return socket.inet_ntop(family, value.to_bytes(len(raw), "big"))


def load_key(path: Path) -> bytes:
    """The site key; made (random, mode 0600) when the file does not exist yet. Made in a
    temporary file and linked into place, so that processes starting together agree on one
    key and a crash never leaves a short one."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(os.urandom(KEY_BYTES))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: its key wins
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: a Crypto-PAn key file holds {KEY_BYTES} bytes")
    if path.stat().st_mode & 0o007:
        raise ValueError(f"{path}: the key is readable by other users (chmod 600 it)")
    return key


def truncate(address: str, bits_v4: int, bits_v6: int) -> str:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    raw = socket.inet_pton(family, address)
    width = len(raw) * 8
    keep = bits_v6 if family == socket.AF_INET6 else bits_v4
    mask = ((1 << keep) - 1) << (width - keep)
    value = int.from_bytes(raw, "big") & mask
    return socket.inet_ntop(family, value.to_bytes(len(raw), "big"))


class Pseudonymiser:
    """Turns a client address into what the site allows to leave the sensor."""

    def __init__(
        self, mode: str, key_file: Path | None = None, truncate_v4: int = 24, truncate_v6: int = 48
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"privacy.clients must be one of {', '.join(MODES)}")
        self.mode = mode
        self.bits = (truncate_v4, truncate_v6)
        self._pan = CryptoPan(load_key(key_file)) if mode == "cryptopan" and key_file else None
        if mode == "cryptopan" and self._pan is None:
            raise ValueError("privacy.clients = cryptopan needs privacy.key_file")
        self._cache: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.mode != "keep"

    def __call__(self, address: str) -> str:
        hit = self._cache.get(address)
        if hit is not None:
            return hit
        if self._pan is not None:
            out = self._pan.text(address)
        elif self.mode == "truncate":
            out = truncate(address, *self.bits)
        else:
            out = address
        if len(self._cache) >= 1 << 16:
            self._cache.clear()
        self._cache[address] = out
        return out


class RecordPrivacy:
    """Rewrites the client addresses of records before they leave the sensor.

    Without `local_nets`, the client side of every record is pseudonymised: `src`, and for
    intel records `client` and a `value` or `indicator` that is that same address. mDNS and
    LLMNR (ports 5353, 5355) only ever run between local hosts, so there both ends and the
    addresses they answer with are rewritten, whichever side a record calls the client.
    With `local_nets` (the site's own networks, CIDR text), every address inside them is
    rewritten wherever it appears (either end of a flow, DNS answers, intel values), and
    outside addresses (the services people use) stay as they are.

    The flow id is then the Community ID of the rewritten endpoints, so it still links the
    records of one flow but no longer confirms a guessed clear address. A record whose
    endpoints did not change keeps its id.
    """

    def __init__(self, pseudonymise: Pseudonymiser, local_nets: tuple[str, ...] = ()) -> None:
        self.pseudonymise = pseudonymise
        self.local = [ipaddress.ip_network(n, strict=False) for n in local_nets]
        self._flow_ids: dict[tuple[str, str, str], str] = {}
        # the same few addresses come again in every record and hit: parsed once
        self._is_local = lru_cache(maxsize=1 << 16)(self._is_local)  # type: ignore[method-assign]

    def _is_local(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.local if net.version == ip.version)

    def apply(self, record: dict[str, Any]) -> None:
        if "src" not in record:
            return  # stats
        src, dst = record["src"], record["dst"]
        hidden = self._hidden_addresses(record)
        hide = self.pseudonymise
        for key in ("src", "dst", "client"):
            value = record.get(key)
            if value in hidden:
                record[key] = hide(value)
        kind = record["type"]
        if kind == "dns":
            self._hide_client_subnet(record)
        if kind == "dns" and record["answers"]:
            answers = record["answers"]
            rewrite = self._is_local if self.local else lambda _a: self._link_local(record)
            rewritten = [
                hide(a) if t in ADDRESS_TYPES and rewrite(a) else a
                for a, t in zip(answers, record["answer_types"], strict=False)
            ]
            if rewritten != answers:
                record["answers"] = rewritten
        elif kind == "intel":
            link_local = not self.local and self._link_local(record)
            for key in ("value", "indicator"):
                value = record.get(key)
                address = _canonical(value) if value is not None else None
                if address is None:
                    continue
                if (
                    address in hidden
                    or (self.local and self._is_local(address))
                    or (link_local and not ipaddress.ip_address(address).is_multicast)
                ):
                    record[key] = hide(address)
        if record["src"] != src or record["dst"] != dst:
            record["flow"] = self._flow_id(record, src, dst)

    def _hide_client_subnet(self, record: dict[str, Any]) -> None:
        """EDNS Client Subnet (RFC 7871) carries the client's own network: it is rewritten
        like the client (the pseudonym of its prefix, cut to the prefix length)."""
        edns = record.get("edns")
        if not isinstance(edns, dict) or not edns.get("ecs"):
            return
        subnet = edns["ecs"]
        address, _, length_text = subnet.partition("/")
        if self.local and not self._is_local(address):
            return
        try:
            length = int(length_text)
            network = ipaddress.ip_network(f"{self.pseudonymise(address)}/{length}", strict=False)
        except ValueError:
            record["edns"] = {**edns, "ecs": None}  # not an address: nothing of it leaves
            return
        record["edns"] = {**edns, "ecs": str(network)}

    def _hidden_addresses(self, record: dict[str, Any]) -> set[str]:
        """The endpoint addresses of a record that must not leave in clear."""
        src, dst = record["src"], record["dst"]
        if self.local:
            return {a for a in (src, dst) if self._is_local(a)}
        if self._link_local(record):  # both ends are hosts of the site (not the group address)
            return {a for a in (src, dst) if not ipaddress.ip_address(a).is_multicast}
        return {src}

    @staticmethod
    def _link_local(record: dict[str, Any]) -> bool:
        return bool(LINK_LOCAL_PORTS.intersection((record["sport"], record["dport"])))

    def _flow_id(self, record: dict[str, Any], src: str, dst: str) -> str:
        key = (record["flow"], src, dst)
        flow_id = self._flow_ids.get(key)
        if flow_id is None:
            if len(self._flow_ids) >= 1 << 16:
                self._flow_ids.clear()
            proto = record["proto"]
            number = int(proto) if proto.isdigit() else PROTO_NUMBERS.get(proto, 0)
            sport, dport = record["sport"] or 0, record["dport"] or 0
            flow_id = self._flow_ids[key] = community_id(
                number,
                _packed(record["src"]),
                _packed(record["dst"]),
                sport,
                dport,
                one_way=icmp_one_way(number, sport, dport),
            )
        return flow_id


def _canonical(text: str) -> str | None:
    """The address as records write it (inet_ntop; an IPv6 address can be written many ways,
    and `ipaddress` writes ::ffff:10.1.2.3 as ::ffff:a01:203), or None."""
    raw = address_bytes(text)
    return None if raw is None else addr_text(raw)


LINK_LOCAL_PORTS = frozenset((5353, 5355))  # mDNS (RFC 6762), LLMNR (RFC 4795)
PROTO_NUMBERS = {name: number for number, name in PROTO_NAMES.items()}


def _packed(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
