"""Network interfaces through netlink (pyroute2): resolve them, and watch them go down and up.

`describe` checks that an interface exists and tells its state and link type. A
`LinkWatcher` listens to RTM_NEWLINK/RTM_DELLINK in a thread of its own (pyroute2's
blocking reader) and hands state changes of the watched interfaces to the daemon's poll
loop through a pipe.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from agent.capture import LINKTYPE_OF_DEVICE

IFF_UP = 0x1


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    index: int
    up: bool
    device_type: int  # ARPHRD_*
    linktype: int | None  # the capture link type, None when tapsense cannot decode it


@dataclass(frozen=True, slots=True)
class LinkEvent:
    name: str
    index: int
    state: str  # "up", "down" or "gone"


def _is_up(flags: int, operstate: str | None) -> bool:
    # UNKNOWN is what loopback and tun devices report while they work
    return bool(flags & IFF_UP) and operstate in ("UP", "UNKNOWN", None)


def describe(name: str) -> Link:
    """The interface called name; ValueError when there is none."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise ValueError(f"{name}: no such interface")
        msg = ipr.get_links(found[0])[0]
    device_type = int(msg["ifi_type"])
    return Link(
        name,
        int(msg["index"]),
        _is_up(msg["flags"], msg.get("IFLA_OPERSTATE")),
        device_type,
        LINKTYPE_OF_DEVICE.get(device_type),
    )


class LinkWatcher:
    def __init__(self, names: list[str]) -> None:
        self.names = set(names)
        # the state at start, so that only changes are reported
        self._state: dict[str, str] = {}
        for name in names:
            try:
                self._state[name] = "up" if describe(name).up else "down"
            except ValueError:
                self._state[name] = "gone"
        self._events: queue.Queue[LinkEvent] = queue.Queue()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self._ipr: IPRoute | None = None
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tapsense-links", daemon=True)
        self._thread.start()
        self._bound.wait(5.0)

    def fileno(self) -> int:
        """Readable when events wait (for the daemon's poll)."""
        return self._read_fd

    def events(self) -> list[LinkEvent]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 4096)
        out = []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    def _run(self) -> None:
        # The netlink socket is made and bound in the thread that reads it: pyroute2 hands
        # a socket bound in one thread nothing when another thread reads it.
        try:
            self._ipr = IPRoute()
            self._ipr.bind(groups=RTMGRP_LINK)
        except Exception:
            self._bound.set()
            return
        self._bound.set()
        try:
            while True:
                for msg in self._ipr.get():
                    name = msg.get("ifname")
                    if name not in self.names:
                        continue
                    if msg["event"] == "RTM_DELLINK":
                        state = "gone"
                    else:
                        up = _is_up(msg["flags"], msg.get("IFLA_OPERSTATE"))
                        state = "up" if up else "down"
                    if self._state.get(name) == state:
                        continue
                    self._state[name] = state
                    self._events.put(LinkEvent(name, int(msg["index"]), state))
                    os.write(self._write_fd, b"!")
        except Exception:  # the socket was closed: the watcher is done
            return

    def close(self) -> None:
        try:
            if self._ipr is not None:
                self._ipr.close()
        finally:
            os.close(self._read_fd)
            os.close(self._write_fd)
