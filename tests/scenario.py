"""A day of a small network as a capture, with the answers an analyst's report must give.

    python3 -m tests.scenario --out DIR [--seed N] [--clients N]

writes DIR/scenario.pcap (classic pcap, Ethernet), DIR/intel.txt (an indicator list) and
DIR/truth.json, the same bytes for the same seed and client count.

The population: `--clients` IPv4 hosts in 10.20.0.0/24 (default 12) and two IPv6-only hosts
in 2001:db8:20::/64, a local resolver at 10.20.0.53 and 2001:db8:20::53, over one UTC day
(DATE). Each category of CATEGORIES has a daily routine: the hours it is used in, with the
share of its bytes each hour gets, so its peak hour is chosen in advance (social 07, email
08, search 10, news 12, audio 15, messaging 18, video 21, gaming 22). News includes Chinese
sites (Sina, People's Daily, NetEase, Xinhua, The Paper, China Daily, ifeng). Host names
are real names of the services in agent/data/services.toml.

Every session starts with a DNS lookup (A, or AAAA and A for IPv6 hosts) whose answer names
the server, then either TLS over TCP 443 (a browser's ClientHello with the SNI, the server's
flight, application data both ways, FIN close), or QUIC version 1 (client Initials sealed
with the RFC 9001 keys around a ClientHello with the SNI, then short-header packets), or,
for gaming, UDP to a game server port with no name in it at all: only the earlier DNS
answer names that flow. A session lasts seconds to five minutes and ends inside the hour
it starts in; a few lookups near the end of every hour (HEARTBEATS) keep packet time moving,
so that flows end, and are counted, in their hour.

Byte shares are exact by construction. The sensor counts a flow's IP bytes (the frame less
its Ethernet header) both ways; the lookups (DNS flows count as unattributed) and the
kill-switch connection below are built first, their bytes U fix the day's total T = U /
UNATTRIBUTED_SHARE, and each category then gets share * T bytes: its sessions' handshakes,
and bulk transfers sized to the byte to fill the rest, spread over its hours by the hour
weights and over an hour's sessions at random. truth.json records the resulting shares
(of IP bytes, as tapsense counts them, and of frame bytes), each category's bytes per hour
(of packet time) and peak hour, and the flows per category.

One IPv4 host resolves the WannaCry kill-switch domain (KILL_SWITCH) in the afternoon and
then connects to the answered address over HTTP; intel.txt lists that domain and decoys
(DECOYS: a domain, an address, a network) that nothing in the capture touches.

Frames come from bench/gen_mix.py's builders (struct only, valid checksums).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.gen_mix import (
    ACK,
    FIN,
    PCAP_HEADER,
    PCAP_RECORD,
    PSH,
    QUIC_V1,
    Dir,
    QuicInitialKeys,
    TcpFlow,
    UdpFlow,
    client_hello,
    crypto_frames,
    dns_query,
    dns_response,
    edns_opt,
    name_wire,
    quic_long,
    server_flight,
    server_hello,
)

DATE = "2026-11-02"
DAY_START_S = int(datetime.fromisoformat(DATE).replace(tzinfo=UTC).timestamp())
SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
RESOLVER_V4 = "10.20.0.53"
RESOLVER_V6 = "2001:db8:20::53"
IPV6_CLIENTS = 2
UNATTRIBUTED = "unattributed"  # flows no service name maps to: DNS, the kill-switch visit
UNATTRIBUTED_SHARE = 0.002  # of all bytes; sets the day's total from the lookups' bytes
ETHERNET_HEADER = 14
KILL_SWITCH = "iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com"  # WannaCry's (May 2017)
KILL_SWITCH_AT_US = 14 * HOUR_US + 23 * MINUTE_US + 7 * SECOND_US
DECOYS = ("login-verify-account.example", "198.51.100.23", "203.0.113.0/24")
# Lookups with no connection after them (device background), minutes into every hour from
# the first to the last hour with sessions: sessions end before :55, so every flow's idle
# timeout passes, and its record is made, inside its hour.
HEARTBEATS = ((56, 0), (58, 30), (59, 45))
HEARTBEAT_NAMES = ("connectivitycheck.gstatic.com", "time.apple.com", "ocsp.digicert.com")
SESSION_START_MINUTES = 48  # sessions start in the first 48 minutes of an hour
LAST_MINUTE = 54  # and their last packet is before this minute
GATEWAY_MAC = bytes.fromhex("00005e000101")
RESOLVER_MAC = bytes.fromhex("020000200053")
PUBLIC_V4 = (13, 23, 31, 34, 52, 54, 69, 104, 142, 151, 157, 172, 185, 199, 216)
QUIC_DATAGRAM = 1350  # UDP payload of a full QUIC packet (Chrome's size)
GAME_DATAGRAM = 1200
MIN_BULK = 3000  # bytes of a session's transfer at the least (the split checks it)

# TCP header sizes (RFC 9293 3.1; + NOP, NOP, timestamps of RFC 7323)
TCP_HEADER, TCP_HEADER_TS = 20, 32


@dataclass(frozen=True, slots=True)
class Category:
    share: float  # of all flow bytes of the day
    hours: dict[int, float]  # hour of day (UTC) -> share of the category's transfer bytes
    rate: float  # sessions of a user in the peak hour (expected), fewer in the others
    users: float  # share of the clients who use it at all
    up: float  # share of transfer bytes the client sends
    seconds: tuple[int, int]  # how long a session's transfer lasts
    # (host name, transport): "#" a digit, "?" a letter, "%" a hex digit; transport
    # "tls", "quic" or "udp:PORT" (a game server, no name on the wire)
    services: tuple[tuple[str, str], ...]

    @property
    def peak(self) -> int:
        return max(self.hours, key=self.hours.__getitem__)


CATEGORIES: dict[str, Category] = {
    "video": Category(
        0.40,
        {19: 0.12, 20: 0.20, 21: 0.38, 22: 0.18, 23: 0.12},
        1.2,
        0.9,
        0.03,
        (120, 290),
        (
            ("rr#---sn-?????n??.googlevideo.com", "quic"),
            ("www.youtube.com", "quic"),
            ("ipv4-c0##-fra00#-ix.1.oca.nflxvideo.net", "tls"),
            ("video-edge-%%%%%%.fra05.abs.hls.ttvnw.net", "tls"),
            ("vod-ak-eu-west-1.media.dssott.com", "tls"),
        ),
    ),
    "gaming": Category(
        0.25,
        {19: 0.08, 20: 0.14, 21: 0.22, 22: 0.40, 23: 0.16},
        1.5,
        0.6,
        0.30,
        (150, 290),
        (
            ("relay-fra#.steamserver.net", "udp:27015"),
            ("gs-euc1-##.epicgames.dev", "udp:7777"),
            ("euw1-game-#.riotgames.com", "udp:7100"),
            ("gs-weu-##.xboxlive.com", "udp:3074"),
        ),
    ),
    "social": Category(
        0.12,
        {7: 0.50, 8: 0.30, 9: 0.20},
        1.5,
        1.0,
        0.08,
        (40, 200),
        (
            ("scontent-fra5-1.xx.fbcdn.net", "quic"),
            ("www.facebook.com", "quic"),
            ("scontent-fra3-#.cdninstagram.com", "quic"),
            ("i.instagram.com", "tls"),
            ("pbs.twimg.com", "tls"),
            ("video.twimg.com", "tls"),
            ("www.reddit.com", "tls"),
            ("v.redd.it", "tls"),
            ("v16-webapp-prime.tiktok.com", "tls"),
        ),
    ),
    "news": Category(
        0.10,
        {9: 0.10, 10: 0.12, 11: 0.15, 12: 0.32, 13: 0.15, 14: 0.08, 16: 0.08},
        1.5,
        0.9,
        0.04,
        (20, 150),
        (
            ("news.sina.com.cn", "tls"),
            ("www.people.com.cn", "tls"),
            ("news.163.com", "tls"),
            ("www.news.cn", "tls"),
            ("www.thepaper.cn", "tls"),
            ("www.chinadaily.com.cn", "tls"),
            ("www.ifeng.com", "tls"),
            ("www.bbc.co.uk", "tls"),
            ("www.reuters.com", "tls"),
            ("www.theguardian.com", "tls"),
            ("www.lemonde.fr", "tls"),
        ),
    ),
    "email": Category(
        0.08,
        {7: 0.25, 8: 0.50, 9: 0.25},
        1.2,
        1.0,
        0.20,
        (20, 150),
        (
            ("mail.google.com", "quic"),
            ("outlook.office.com", "tls"),
            ("outlook.live.com", "tls"),
            ("mail.proton.me", "tls"),
            ("mail.yahoo.com", "tls"),
        ),
    ),
    "streaming_audio": Category(
        0.02,
        {10: 0.15, 14: 0.20, 15: 0.40, 16: 0.25},
        1.0,
        0.5,
        0.02,
        (120, 290),
        (
            ("audio4-fa.scdn.co", "tls"),
            ("spclient.wg.spotify.com", "tls"),
            ("www.deezer.com", "tls"),
        ),
    ),
    "search": Category(
        0.015,
        {8: 0.15, 9: 0.20, 10: 0.40, 11: 0.25},
        0.8,
        1.0,
        0.10,
        (10, 60),
        (
            ("www.google.com", "quic"),
            ("www.bing.com", "tls"),
            ("duckduckgo.com", "tls"),
        ),
    ),
    "messaging": Category(
        0.013,
        {12: 0.20, 17: 0.20, 18: 0.40, 20: 0.20},
        0.8,
        0.7,
        0.40,
        (20, 120),
        (
            ("web.whatsapp.com", "tls"),
            ("mmg.whatsapp.net", "tls"),
            ("web.telegram.org", "tls"),
            ("gateway.discord.gg", "tls"),
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class Client:
    address: str
    raw: bytes
    mac: bytes
    windows: bool  # no TCP timestamps, TTL 128

    @property
    def v6(self) -> bool:
        return len(self.raw) == 16


@dataclass(slots=True)
class Session:
    category: str
    client: Client
    start_us: int
    seconds: int
    name: str
    transport: str
    fixed: int = 0  # IP bytes of the handshake (and the close), known before the transfer
    finish: Callable[[int], None] | None = None  # writes the transfer and the close


@dataclass(slots=True)
class Summary:
    packets: int
    bytes: int
    ip_bytes: int
    sessions: int
    seconds: float

    def line(self) -> str:
        return (
            f"{self.packets:,} packets, {self.bytes:,} bytes of frames ({self.ip_bytes:,} IP), "
            f"{self.sessions:,} sessions, written in {self.seconds:.1f} s"
        )


def _pattern(rng: random.Random, text: str) -> str:
    """A host name from a pattern: "#" a digit, "?" a letter, "%" a hex digit."""
    pools = {"#": "0123456789", "?": "abcdefghijklmnopqrstuvwxyz", "%": "0123456789abcdef"}
    return "".join(rng.choice(pools[c]) if c in pools else c for c in text)


def split(total: int, weights: list[float]) -> list[int]:
    """total as integers in proportion to weights (largest remainders), summing to total."""
    scale = sum(weights)
    raw = [total * w / scale for w in weights]
    out = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: out[i] - raw[i])
    for i in by_remainder[: total - sum(out)]:
        out[i] += 1
    return out


def plan_transfer(
    budget: int,
    *,
    header: int,
    mss: int,
    least: int,
    up_share: float,
    exchanges: int,
    ack_every: int,
    ack_cost: int,
) -> list[list[tuple[int, list[int]]]]:
    """Payload sizes of a transfer of exactly `budget` IP bytes, acknowledgments included.

    Exchanges of a burst up (direction 0) then a burst down (1); every segment costs
    `header` plus its payload (`least` to `mss` bytes); with `ack_every`, the receiver of a
    burst acknowledges every that many segments and the last one, `ack_cost` bytes each.
    """
    per_segment = header + mss + (ack_cost / ack_every if ack_every else 0)
    n = max(2, math.ceil(budget / per_segment))
    for _ in range(1000):
        n_up = min(max(1, round(n * up_share)), n - 1)
        n_down = n - n_up
        k = max(1, min(exchanges, n_up, n_down))
        ups, downs = split(n_up, [1.0] * k), split(n_down, [1.0] * k)
        acks = sum(math.ceil(c / ack_every) for c in ups + downs) if ack_every else 0
        payload = budget - n * header - acks * ack_cost
        if payload > n * mss:
            n += 1
        elif payload < n * least:
            if n == 2:
                raise ValueError(f"a transfer of {budget} bytes is too small")
            n -= 1
        else:
            break
    else:
        raise ValueError(f"no segment count fits a transfer of {budget} bytes")
    sizes = [mss] * n
    deficit = n * mss - payload
    # requests shrink first, then the down segments from the last one
    for i in [*range(n_up), *range(n - 1, n_up - 1, -1)]:
        cut = min(deficit, sizes[i] - least)
        sizes[i] -= cut
        deficit -= cut
        if not deficit:
            break
    up_sizes, down_sizes = sizes[:n_up], sizes[n_up:]
    plan = []
    for i in range(k):
        a, b = sum(ups[:i]), sum(downs[:i])
        plan.append([(0, up_sizes[a : a + ups[i]]), (1, down_sizes[b : b + downs[i]])])
    return plan


class Scenario:
    """The day: clients, names, sessions, and the frames they make, with their tallies."""

    def __init__(self, seed: int, clients: int) -> None:
        if not 1 <= clients <= 150:
            raise ValueError("--clients must be 1 to 150")
        self.rng = rng = random.Random(seed)
        self.pool = rng.randbytes(1 << 20)
        self._pool_pos = 0
        self.clients = self._make_clients(clients)
        self.servers: dict[str, tuple[bytes, bytes]] = {}
        self._used: set[bytes] = set()
        self.frames: list[tuple[int, int, bytes]] = []
        self.ip_bytes: dict[str, int] = {}
        self.frame_bytes: dict[str, int] = {}
        self.flows: dict[str, int] = {}
        self.hour_bytes: dict[str, list[int]] = {}
        self.intel: dict[str, Any] = {}
        self.sessions: list[Session] = []
        self.variants = {
            pattern: [_pattern(rng, pattern) for _ in range(3)]
            for category in CATEGORIES.values()
            for pattern, _ in category.services
        }

    # --- the pieces -----------------------------------------------------------------------

    def _make_clients(self, count: int) -> list[Client]:
        rng = self.rng
        out = []
        for host in sorted(rng.sample(range(100, 251), count)):
            raw = bytes((10, 20, 0, host))
            out.append(Client(socket.inet_ntop(socket.AF_INET, raw), raw, self._mac(), False))
        for _ in range(IPV6_CLIENTS):  # privacy addresses (RFC 8981): random interface ids
            raw = socket.inet_pton(socket.AF_INET6, "2001:db8:20::")[:8] + rng.randbytes(8)
            out.append(Client(socket.inet_ntop(socket.AF_INET6, raw), raw, self._mac(), False))
        for i in rng.sample(range(len(out)), len(out) * 3 // 10):  # Windows: no timestamps
            c = out[i]
            out[i] = Client(c.address, c.raw, c.mac, True)
        return out

    def _mac(self) -> bytes:
        return bytes((0x02, 0x42)) + self.rng.randbytes(4)

    def blob(self, n: int) -> bytes:
        """n random-looking bytes (ciphertext), cut from the pool."""
        if n > len(self.pool):
            return b"".join(self.blob(min(n - k, 1 << 16)) for k in range(0, n, 1 << 16))
        pos = self._pool_pos
        if pos + n > len(self.pool):
            pos = 0
        self._pool_pos = pos + n + 7
        return self.pool[pos : pos + n]

    def tls_stream(self, n: int) -> bytes:
        """Exactly n bytes of TLS 1.3 application data records (RFC 8446 5.2)."""
        if n < 22:  # shorter than a record with a tag: raw bytes
            return self.blob(n)
        count = math.ceil(n / (5 + 16384 + 17))
        return b"".join(
            b"\x17\x03\x03" + struct.pack("!H", size - 5) + self.blob(size - 5)
            for size in split(n, [1.0] * count)
        )

    def server(self, name: str) -> tuple[bytes, bytes]:
        """The name's server addresses (IPv4, IPv6), one of each, used by no other name."""
        addresses = self.servers.get(name)
        if addresses is None:
            rng = self.rng
            while True:
                v4 = bytes((rng.choice(PUBLIC_V4), rng.randrange(256), rng.randrange(256)))
                v4 += bytes((rng.randint(1, 254),))
                v6 = bytes.fromhex("2a0014500000") + rng.randbytes(10)
                if v4 not in self._used and v6 not in self._used:
                    break
            self._used |= {v4, v6}
            addresses = self.servers[name] = (v4, v6)
        return addresses

    def emit(self, t_us: int, frame: bytes, key: str) -> None:
        """One frame of a flow of category `key` (UNATTRIBUTED for none), tallied."""
        self.frames.append((t_us, len(self.frames), frame))
        ip = len(frame) - ETHERNET_HEADER
        self.ip_bytes[key] = self.ip_bytes.get(key, 0) + ip
        self.frame_bytes[key] = self.frame_bytes.get(key, 0) + len(frame)
        hours = self.hour_bytes.setdefault(key, [0] * 24)
        hours[t_us // HOUR_US % 24] += ip

    def _dirs(self, client: Client, server: bytes, proto: int) -> tuple[Dir, Dir]:
        rng = self.rng
        local = server == self.resolver(client.v6)
        peer_mac = RESOLVER_MAC if local else GATEWAY_MAC
        ttl_up = 128 if client.windows else 64
        ttl_down = 64 if local else rng.choice((52, 54, 57, 116, 244))
        up = Dir(client.mac, peer_mac, 0, client.raw, server, proto, ttl_up, rng)
        down = Dir(peer_mac, client.mac, 0, server, client.raw, proto, ttl_down, rng)
        return up, down

    @staticmethod
    def resolver(v6: bool) -> bytes:
        if v6:
            return socket.inet_pton(socket.AF_INET6, RESOLVER_V6)
        return socket.inet_pton(socket.AF_INET, RESOLVER_V4)

    def _ephemeral(self, client: Client) -> int:
        return self.rng.randint(49152, 65535) if client.windows else self.rng.randint(32768, 60999)

    def udp(self, client: Client, server: bytes, port: int) -> UdpFlow:
        up, down = self._dirs(client, server, 17)
        return UdpFlow("udp", up, down, self._ephemeral(client), port, 0)

    def tcp(self, client: Client, server: bytes, port: int) -> TcpFlow:
        up, down = self._dirs(client, server, 6)
        cport = self._ephemeral(client)
        conn = TcpFlow("tcp", up, down, cport, port, 0, rng=self.rng, timestamps=not client.windows)
        conn.mss = 1500 - self._ip_header(client) - self._tcp_header(client)
        return conn

    @staticmethod
    def _ip_header(client: Client) -> int:
        return 40 if client.v6 else 20

    @staticmethod
    def _tcp_header(client: Client) -> int:
        return TCP_HEADER if client.windows else TCP_HEADER_TS

    def count_flow(self, key: str) -> None:
        self.flows[key] = self.flows.get(key, 0) + 1

    # --- DNS --------------------------------------------------------------------------------

    def lookup(self, t: int, client: Client, name: str) -> int:
        """The client's lookup of name (A, or AAAA then A from IPv6 hosts); returns the time
        its last answer arrives."""
        rng = self.rng
        flow = self.udp(client, self.resolver(client.v6), 53)
        self.count_flow(UNATTRIBUTED)
        v4, v6 = self.server(name)
        edns = edns_opt(rng.randbytes(8) if rng.random() < 0.5 else b"")
        qname = name_wire(name)
        for qtype, address in ((28, v6), (1, v4)) if client.v6 else ((1, v4),):
            ident = rng.getrandbits(16)
            self.emit(t, flow.dgram(0, dns_query(ident, qname, qtype, edns)), UNATTRIBUTED)
            t += rng.randint(300, 3000) if rng.random() < 0.7 else rng.randint(8000, 40000)
            answer = dns_response(ident, qname, qtype, edns, 0, (), (address,), 300)
            self.emit(t, flow.dgram(1, answer), UNATTRIBUTED)
            t += rng.randint(20, 200)
        return t

    # --- TCP and TLS ------------------------------------------------------------------------

    def _send(self, t: int, conn: TcpFlow, d: int, data: bytes, key: str) -> int:
        """data in MSS-sized segments, acknowledged every second one and the last."""
        mss = conn.mss
        n = (len(data) + mss - 1) // mss
        for i in range(n):
            last = i == n - 1
            flags = PSH | ACK if last else ACK
            self.emit(t, conn.seg(d, flags, t, data[i * mss : (i + 1) * mss]), key)
            if i & 1 or last:
                self.emit(t + 80, conn.seg(1 - d, ACK, t + 80), key)
            t += 120
        return t + 80

    def _handshake(self, t: int, conn: TcpFlow, rtt: int, key: str) -> int:
        self.emit(t, conn.syn(0, t), key)
        t += rtt
        self.emit(t, conn.syn(1, t), key)
        t += self.rng.randint(30, 300)
        self.emit(t, conn.seg(0, ACK, t), key)
        return t

    def _close(self, t: int, conn: TcpFlow, rtt: int, key: str) -> int:
        """FIN from the client, FIN from the server, the last ACK: three bare headers."""
        self.emit(t, conn.seg(0, FIN | ACK, t), key)
        t += rtt
        self.emit(t, conn.seg(1, FIN | ACK, t), key)
        t += self.rng.randint(50, 500)
        self.emit(t, conn.seg(0, ACK, t), key)
        return t

    def _transfer_tcp(self, t: int, conn: TcpFlow, client: Client, budget: int, s: Session) -> int:
        """Exactly `budget` IP bytes of TLS application data both ways, with the ACKs."""
        rng = self.rng
        cat = CATEGORIES[s.category]
        header = self._ip_header(client) + self._tcp_header(client)
        plan = plan_transfer(
            budget,
            header=header,
            mss=conn.mss,
            least=32,
            up_share=cat.up,
            exchanges=rng.randint(2, 6),
            ack_every=2,
            ack_cost=header,
        )
        span = s.seconds * SECOND_US
        rate_mbps = rng.uniform(20.0, 200.0)
        start = t
        for i, exchange in enumerate(plan):
            t = max(t, start + i * span // len(plan))
            for d, sizes in exchange:
                data = self.tls_stream(sum(sizes))
                pos = 0
                for j, size in enumerate(sizes):
                    last = j == len(sizes) - 1
                    flags = PSH | ACK if last else ACK
                    self.emit(t, conn.seg(d, flags, t, data[pos : pos + size]), s.category)
                    pos += size
                    gap = max(int(size * 8 / rate_mbps), 40)
                    if j & 1 or last:
                        when = t + gap // 2
                        self.emit(when, conn.seg(1 - d, ACK, when), s.category)
                    t += gap
                t += conn_rtt(rng)
        return t

    def open_tls(self, s: Session) -> None:
        rng = self.rng
        client = s.client
        key = s.category
        v4, v6 = self.server(s.name)
        conn = self.tcp(client, v6 if client.v6 else v4, 443)
        self.count_flow(key)
        rtt = conn_rtt(rng)
        t = self._handshake(s.start_us, conn, rtt, key)
        pq = rng.random() < 0.3
        t += rng.randint(50, 400)
        hello = client_hello(rng, s.name, (b"h2", b"http/1.1"), pq)
        t = self._send(t, conn, 0, hello, key)
        t += rtt
        t = self._send(t, conn, 1, server_flight(rng, pq, self.blob), key)
        t += rng.randint(200, 2000)
        finished = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35" + self.blob(53)
        self.emit(t, conn.seg(0, PSH | ACK, t, finished), key)
        ip_tcp = self._ip_header(client) + self._tcp_header(client)
        s.fixed = 3 * ip_tcp  # the close

        def finish(budget: int) -> None:
            end = self._transfer_tcp(t + rtt, conn, client, budget, s)
            self._close(end + rng.randint(100_000, 2_000_000), conn, rtt, key)

        s.finish = finish

    # --- QUIC (RFC 9000, 9001) --------------------------------------------------------------

    def open_quic(self, s: Session) -> None:
        rng = self.rng
        client = s.client
        key = s.category
        v4, v6 = self.server(s.name)
        flow = self.udp(client, v6 if client.v6 else v4, 443)
        self.count_flow(key)
        rtt = conn_rtt(rng)
        client_cid, server_cid = rng.randbytes(8), rng.randbytes(8)
        pq = rng.random() < 0.3  # a post-quantum ClientHello takes two Initials
        hello = client_hello(rng, s.name, (b"h3",), pq, quic=True)
        client_keys = QuicInitialKeys(client_cid, False)
        t = s.start_us
        for pn, frame in enumerate(crypto_frames(hello, 1150)):
            packet = client_keys.packet(client_cid, b"", pn, frame, 1250)
            self.emit(t, flow.dgram(0, packet), key)
            t += 30
        t += rtt
        server_keys = QuicInitialKeys(client_cid, True)
        ack = b"\x02\x00\x00\x00\x00"  # ACK of packet 0 (RFC 9000 19.3)
        for pn, frame in enumerate(crypto_frames(server_hello(rng, pq, self.blob, False), 1100)):
            initial = server_keys.packet(b"", server_cid, pn, ack + frame if pn == 0 else frame)
            room = max(1200 - len(initial) - 17, 40)  # coalesced with a Handshake packet
            handshake = quic_long(2, QUIC_V1, b"", server_cid, self.blob(room))
            self.emit(t, flow.dgram(1, initial + handshake), key)
            t += 40
        for _ in range(rng.randint(1, 3)):  # the rest of the server's handshake
            body = self.blob(rng.randint(1100, 1200))
            self.emit(t, flow.dgram(1, quic_long(2, QUIC_V1, b"", server_cid, body)), key)
            t += 40
        t += rng.randint(200, 1500)
        initial = client_keys.packet(server_cid, b"", 2, ack)
        handshake = quic_long(2, QUIC_V1, server_cid, b"", self.blob(rng.randint(60, 120)))
        padding = bytes(max(1200 - len(initial) - len(handshake), 0))  # RFC 9000 14.1
        self.emit(t, flow.dgram(0, initial + handshake + padding), key)
        prefixes = (b"\x40" + server_cid, b"\x41")  # short headers (RFC 9000 17.3)

        def finish(budget: int) -> None:
            self._transfer_udp(t + rtt, flow, s, budget, prefixes, QUIC_DATAGRAM, 4)

        s.finish = finish

    def _transfer_udp(
        self,
        t: int,
        flow: UdpFlow,
        s: Session,
        budget: int,
        prefixes: tuple[bytes, bytes],
        datagram: int,
        ack_every: int,
    ) -> None:
        """Exactly `budget` IP bytes of datagrams both ways; packets at most 20 s apart, so
        the flow never goes idle (60 s) before its end."""
        rng = self.rng
        header = self._ip_header(s.client) + 8
        ack_payload = 40
        exchanges = max(4, s.seconds // 5)
        plan = plan_transfer(
            budget,
            header=header,
            mss=datagram,
            least=ack_payload,
            up_share=CATEGORIES[s.category].up,
            exchanges=exchanges,
            ack_every=ack_every,
            ack_cost=header + ack_payload,
        )
        span = min(s.seconds * SECOND_US, len(plan) * 15 * SECOND_US)
        gap = rng.randint(150, 600)
        start = t
        for i, exchange in enumerate(plan):
            t = max(t, start + i * span // len(plan))
            for d, sizes in exchange:
                prefix = prefixes[d]
                for j, size in enumerate(sizes):
                    last = j == len(sizes) - 1
                    payload = prefix + self.blob(size - len(prefix))
                    self.emit(t, flow.dgram(d, payload), s.category)
                    if ack_every and ((j + 1) % ack_every == 0 or last):
                        ack = prefixes[1 - d]
                        when = t + gap // 2
                        packet = ack + self.blob(ack_payload - len(ack))
                        self.emit(when, flow.dgram(1 - d, packet), s.category)
                    t += gap
                t += conn_rtt(rng)

    # --- games: UDP with no name on the wire ----------------------------------------------

    def open_game(self, s: Session, port: int) -> None:
        rng = self.rng
        client = s.client
        key = s.category
        v4, v6 = self.server(s.name)
        flow = self.udp(client, v6 if client.v6 else v4, port)
        self.count_flow(key)
        token = rng.randbytes(8)
        t = s.start_us
        # a connect and its challenge: a game protocol's own header (first byte 0x0a, which
        # no QUIC long header starts with), a token; nothing that names the game
        self.emit(t, flow.dgram(0, b"\x0a\x00\x00\x01" + token + self.blob(100)), key)
        t += conn_rtt(rng)
        self.emit(t, flow.dgram(1, b"\x0a\x00\x00\x02" + token + self.blob(60)), key)
        prefixes = (b"\x0a\x01" + token[:2], b"\x0a\x02" + token[:2])

        def finish(budget: int) -> None:
            self._transfer_udp(t + 20_000, flow, s, budget, prefixes, GAME_DATAGRAM, 0)

        s.finish = finish

    # --- the kill switch --------------------------------------------------------------------

    def kill_switch(self) -> None:
        """A host resolves WannaCry's kill-switch domain and fetches it over HTTP."""
        rng = self.rng
        client = next(c for c in self.clients if not c.v6)
        self.intel = {
            "client": client.address,
            "domain": KILL_SWITCH,
            "ts": (DAY_START_S * SECOND_US + KILL_SWITCH_AT_US) / SECOND_US,
        }
        t = self.lookup(KILL_SWITCH_AT_US, client, KILL_SWITCH)
        server = self.server(KILL_SWITCH)[0]
        self.intel["server"] = socket.inet_ntop(socket.AF_INET, server)
        conn = self.tcp(client, server, 80)
        self.count_flow(UNATTRIBUTED)
        rtt = conn_rtt(rng)
        t = self._handshake(t + 500, conn, rtt, UNATTRIBUTED)
        request = (
            f"GET / HTTP/1.1\r\nHost: {KILL_SWITCH}\r\nCache-Control: no-cache\r\n\r\n"
        ).encode("ascii")
        t = self._send(t + 100, conn, 0, request, UNATTRIBUTED)
        body = b"<html><body>sinkhole</body></html>\n"
        response = (
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("ascii") + body
        t = self._send(t + rtt, conn, 1, response, UNATTRIBUTED)
        self._close(t + 1000, conn, rtt, UNATTRIBUTED)

    # --- the day ----------------------------------------------------------------------------

    def plan(self) -> None:
        """Every session of the day: who, when, which service; then the lookups and the
        handshakes (their bytes are known before the transfers are sized)."""
        rng = self.rng
        for category_name, cat in CATEGORIES.items():
            users = rng.sample(self.clients, max(1, round(len(self.clients) * cat.users)))
            top = max(cat.hours.values())
            for hour, weight in cat.hours.items():
                starts: list[Client] = []
                for client in users:
                    expected = cat.rate * weight / top
                    starts += [client] * (int(expected) + (rng.random() < expected % 1))
                if not starts:
                    starts.append(rng.choice(users))
                for client in starts:
                    pattern, transport = rng.choice(cat.services)
                    start = hour * HOUR_US + rng.randrange(SESSION_START_MINUTES * MINUTE_US)
                    session = Session(
                        category_name,
                        client,
                        start,
                        rng.randint(*cat.seconds),
                        rng.choice(self.variants[pattern]),
                        transport,
                    )
                    self.sessions.append(session)
        for s in self.sessions:
            t = self.lookup(s.start_us, s.client, s.name)
            s.start_us = t + rng.randint(100, 5000)
            before = self.ip_bytes.get(s.category, 0)
            if s.transport == "tls":
                self.open_tls(s)
            elif s.transport == "quic":
                self.open_quic(s)
            else:
                self.open_game(s, int(s.transport.partition(":")[2]))
            s.fixed += self.ip_bytes[s.category] - before
        self.kill_switch()
        hours = sorted({s.start_us // HOUR_US for s in self.sessions})
        for hour in range(hours[0], hours[-1] + 1):
            for minute, second in HEARTBEATS:
                at = hour * HOUR_US + minute * MINUTE_US + second * SECOND_US
                self.lookup(at, rng.choice(self.clients), rng.choice(HEARTBEAT_NAMES))

    def size(self) -> None:
        """Sizes every session's transfer so that each category has its share of the day."""
        rng = self.rng
        total = self.ip_bytes[UNATTRIBUTED] / UNATTRIBUTED_SHARE
        for name, cat in CATEGORIES.items():
            sessions = [s for s in self.sessions if s.category == name]
            target = round(cat.share * total)
            bulk = target - sum(s.fixed for s in sessions)
            hours = sorted(cat.hours)
            for hour, hour_bulk in zip(
                hours, split(bulk, [cat.hours[h] for h in hours]), strict=True
            ):
                in_hour = [s for s in sessions if s.start_us // HOUR_US == hour]
                spare = hour_bulk - MIN_BULK * len(in_hour)  # each gets MIN_BULK, then more
                if spare < 0:
                    raise ValueError(f"{name} at {hour}:00: too little traffic for its sessions")
                weights = [rng.lognormvariate(0.0, 0.5) for _ in in_hour]
                for s, budget in zip(in_hour, split(spare, weights), strict=True):
                    assert s.finish is not None
                    s.finish(MIN_BULK + budget)

    def write(self, out: Path) -> Summary:
        started = time.perf_counter()
        self.plan()
        self.size()
        self.frames.sort()
        base_us = DAY_START_S * SECOND_US
        parts = [PCAP_HEADER]
        pack = PCAP_RECORD.pack
        for t, _, frame in self.frames:
            sec, usec = divmod(base_us + t, SECOND_US)
            parts.append(pack(sec, usec, len(frame), len(frame)))
            parts.append(frame)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scenario.pcap").write_bytes(b"".join(parts))
        (out / "intel.txt").write_text(
            "# Indicators for the tests/scenario.py capture (one per line).\n"
            f"{KILL_SWITCH}  # WannaCry kill switch\n"
            + "".join(f"{d}  # decoy, not in the capture\n" for d in DECOYS)
        )
        truth = self.truth()
        (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
        return Summary(
            truth["packets"],
            truth["bytes"],
            truth["ip_bytes"],
            len(self.sessions),
            time.perf_counter() - started,
        )

    def truth(self) -> dict[str, Any]:
        ip_total = sum(self.ip_bytes.values())
        frame_total = sum(self.frame_bytes.values())
        shares = {k: v / ip_total for k, v in sorted(self.ip_bytes.items())}
        peak_hour = {name: cat.peak for name, cat in CATEGORIES.items()}
        for name, cat in CATEGORIES.items():
            chosen = cat.share
            if abs(shares[name] - chosen) > 0.0005:
                raise AssertionError(f"{name}: {shares[name]:.5f} of the bytes, not {chosen}")
            hours = self.hour_bytes[name]
            first, second = sorted(hours, reverse=True)[:2]
            if hours.index(first) != cat.peak or first < 1.25 * second:
                raise AssertionError(
                    f"{name}: bytes by hour {hours} peak elsewhere than {cat.peak}"
                )
        v4 = sum(1 for c in self.clients if not c.v6)
        return {
            "date": DATE,
            "clients": [c.address for c in self.clients],
            "clients_v4": v4,
            "resolvers": [RESOLVER_V4, RESOLVER_V6],
            "chosen_shares": {
                **{name: cat.share for name, cat in CATEGORIES.items()},
                UNATTRIBUTED: UNATTRIBUTED_SHARE,
            },
            "shares": shares,
            "frame_shares": {k: v / frame_total for k, v in sorted(self.frame_bytes.items())},
            "flow_shares": {k: v / sum(self.flows.values()) for k, v in sorted(self.flows.items())},
            "flows": dict(sorted(self.flows.items())),
            "bytes_by_category": dict(sorted(self.ip_bytes.items())),
            "hour_bytes": dict(sorted(self.hour_bytes.items())),
            "peak_hour": peak_hour,
            "game_servers": sorted(
                {
                    socket.inet_ntop(
                        socket.AF_INET6 if s.client.v6 else socket.AF_INET,
                        self.servers[s.name][1 if s.client.v6 else 0],
                    )
                    for s in self.sessions
                    if s.transport.startswith("udp:")
                }
            ),
            "intel": self.intel,
            "decoys": list(DECOYS),
            "sessions": len(self.sessions),
            "packets": len(self.frames),
            "bytes": frame_total,
            "ip_bytes": ip_total,
        }


def conn_rtt(rng: random.Random) -> int:
    """A round trip to a server, in microseconds: a few to a few tens of milliseconds."""
    return rng.randint(4_000, 40_000)


def generate(out: str | Path, seed: int = 1, clients: int = 12) -> Summary:
    """Writes scenario.pcap, intel.txt and truth.json to the folder `out`."""
    return Scenario(seed, clients).write(Path(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.scenario", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=12, help="IPv4 clients (1 to 150)")
    args = parser.parse_args(argv)
    try:
        summary = generate(args.out, args.seed, args.clients)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"scenario: {args.out}: {summary.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
