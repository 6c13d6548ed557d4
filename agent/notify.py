"""systemd notifications (sd_notify(3)) for a Type=notify service: READY, RELOADING,
STOPPING, WATCHDOG and STATUS lines over the datagram socket in $NOTIFY_SOCKET."""

from __future__ import annotations

import contextlib
import os
import socket
import time


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        # ping twice per interval, as sd_watchdog_enabled(3) advises
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() else 0.0
        self._next_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        if not self._address:
            return
        # systemd gone away means nothing to tell
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto("\n".join(lines).encode(), self._address)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        self.send(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        """Pings the watchdog when it is due (call it from the main loop)."""
        if self.watchdog_interval_s and time.monotonic() >= self._next_ping:
            self.send("WATCHDOG=1")
            self._next_ping = time.monotonic() + self.watchdog_interval_s
