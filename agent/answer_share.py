"""DNS answers shared between the daemon's workers.

PACKET_FANOUT hashes each flow to a worker, so a client's lookup and the connection it
makes next usually land on different workers, and the worker that sees the connection
would not know the name behind its server address. Every worker therefore tells the
others each answer it learns (client, qname, addresses, time), over AF_UNIX datagram
socket pairs made before the fork, and feeds what it hears into its own answer cache.

Sending never blocks capture: a full socket buffer drops the message, counted in
`attribution.shared_answers_dropped`; a message that does not unpack is counted and skipped.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import msgpack

MAX_MESSAGE = 1 << 16
READ_BURST = 1024  # messages taken per call, so a flood cannot starve capture


class AnswerShare:
    """One worker's end: a socket it reads, and the sockets of the others it writes to."""

    def __init__(self, inbox: socket.socket, peers: list[socket.socket]) -> None:
        self.inbox = inbox
        self.peers = peers
        self.inbox.setblocking(False)
        for peer in peers:
            peer.setblocking(False)

    def fileno(self) -> int:
        return self.inbox.fileno()

    def publish(
        self,
        stats: Counter[str],
        client: str,
        qname: str,
        answers: list[str],
        types: list[int],
        ts: float,
    ) -> None:
        message = msgpack.packb([client, qname, answers, types, ts])
        if len(message) > MAX_MESSAGE:
            stats["attribution.shared_answers_dropped"] += 1
            return
        for peer in self.peers:
            try:
                peer.send(message)
                stats["attribution.shared_answers_sent"] += 1
            except (BlockingIOError, ConnectionError, OSError):
                stats["attribution.shared_answers_dropped"] += 1

    def receive(self, stats: Counter[str]) -> list[tuple[str, str, list[str], list[int], float]]:
        out = []
        for _ in range(READ_BURST):
            try:
                data = self.inbox.recv(MAX_MESSAGE)
            except BlockingIOError:
                break
            try:
                client, qname, answers, types, ts = msgpack.unpackb(data)
                if not (
                    isinstance(client, str)
                    and isinstance(qname, str)
                    and _strings(answers)
                    and _ints(types)
                    and isinstance(ts, float | int)
                ):
                    raise ValueError("bad shapes")
            except (ValueError, TypeError, msgpack.UnpackException):
                stats["attribution.shared_answers_bad"] += 1
                continue
            stats["attribution.shared_answers_received"] += 1
            out.append((client, qname, answers, types, float(ts)))
        return out

    def close(self) -> None:
        for sock in (self.inbox, *self.peers):
            sock.close()


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) for v in value)


def answer_shares(workers: int) -> list[AnswerShare]:
    """One AnswerShare per worker, connected to every other (none for a single worker)."""
    if workers < 2:
        return []
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(workers)]
    # pairs[i][0] is worker i's inbox; the others write into pairs[i][1]
    return [
        AnswerShare(pairs[i][0], [pairs[j][1] for j in range(workers) if j != i])
        for i in range(workers)
    ]
