"""Network namespaces for tests: two hosts joined by a veth pair, always removed afterwards.

Made with pyroute2 (netlink). Traffic stays inside the namespaces; the host's own
interfaces are never touched. Needs CAP_NET_ADMIN (root in CI).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute, NetNS, netns

from tests.util import wait_for


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and Path("/proc/self/ns/net").exists()


requires_netns = pytest.mark.skipif(not can_make_namespaces(), reason="needs root for netns")


@dataclass(frozen=True)
class Host:
    ns: str
    ifname: str
    addr: str
    addr6: str

    def cmd(self, *args: str) -> list[str]:
        """A command line that runs inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, *args: str, timeout: float = 30, **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.cmd(*args), timeout=timeout, capture_output=True, text=True, **kwargs
        )  # type: ignore[call-overload]

    def start(self, *args: str, **kwargs: object) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(*args), **kwargs)  # type: ignore[call-overload]


@contextlib.contextmanager
def veth_pair(prefix: str = "ts") -> Iterator[tuple[Host, Host]]:
    """Two namespaces, a (10.77.0.1, fd77::1) and b (10.77.0.2, fd77::2), on one veth link."""
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"{prefix}a{tag}", f"{prefix}b{tag}"
    if_a, if_b = f"v{tag}a", f"v{tag}b"
    made: list[str] = []
    try:
        for name in (ns_a, ns_b):
            netns.create(name)
            made.append(name)
        with IPRoute() as ipr:
            ipr.link("add", ifname=if_a, kind="veth", peer=if_b)
            ipr.link("set", index=ipr.link_lookup(ifname=if_a)[0], net_ns_fd=ns_a)
            ipr.link("set", index=ipr.link_lookup(ifname=if_b)[0], net_ns_fd=ns_b)
        hosts = []
        for name, ifname, last in ((ns_a, if_a, 1), (ns_b, if_b, 2)):
            with NetNS(name) as ns:
                lo = ns.link_lookup(ifname="lo")[0]
                ns.link("set", index=lo, state="up")
                index = ns.link_lookup(ifname=ifname)[0]
                ns.addr("add", index=index, address=f"10.77.0.{last}", prefixlen=24)
                ns.addr("add", index=index, address=f"fd77::{last}", prefixlen=64)
                ns.link("set", index=index, state="up")
            hosts.append(Host(name, ifname, f"10.77.0.{last}", f"fd77::{last}"))
        # IPv6 duplicate address detection would delay the first packets
        for host in hosts:
            host.run("sysctl", "-qw", f"net.ipv6.conf.{host.ifname}.accept_dad=0")
        _wait_ipv6(hosts)
        yield hosts[0], hosts[1]
    finally:
        for name in made:
            with contextlib.suppress(Exception):
                netns.remove(name)


def _wait_ipv6(hosts: list[Host], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = "".join(h.run("ip", "-6", "addr", "show", "tentative").stdout for h in hosts)
        if "tentative" not in out:
            return
        time.sleep(0.1)


@contextlib.contextmanager
def capture(host: Host, path: Path, bpf: str = "") -> Iterator[None]:
    """tcpdump on the host's veth end for the duration of the block."""
    # immediate mode: with TPACKET_V3 a packet otherwise waits in a ring block that
    # SIGINT may discard before it is written
    args = ["tcpdump", "-i", host.ifname, "--immediate-mode", "-U", "-s", "0", "-w", str(path)]
    if bpf:
        args += bpf.split()
    proc = host.start(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: path.exists() and path.stat().st_size >= 24, 5.0, "tcpdump's pcap header")
        time.sleep(0.2)
        yield
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(
    host: Host, port: int, proto: str = "tcp", timeout: float = 10.0, sockets: int = 1
) -> None:
    """Waits until `sockets` sockets listen on port inside the host's namespace."""
    flag = "-ltn" if proto == "tcp" else "-lun"

    def listening() -> bool:
        return host.run("ss", flag).stdout.count(f":{port} ") >= sockets

    wait_for(listening, timeout, f"{proto} port {port} in {host.ns}")


def start_tls_server(host: Host, port: int, certificate: tuple[Path, Path]) -> subprocess.Popen:
    """openssl s_server offering h2 and http/1.1 (a dual-stack socket: IPv4 and IPv6)."""
    return host.start(
        "openssl",
        "s_server",
        "-accept",
        str(port),
        "-cert",
        str(certificate[0]),
        "-key",
        str(certificate[1]),
        "-alpn",
        "h2,http/1.1",
        "-www",
        "-quiet",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
