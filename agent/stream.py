"""One direction of a TCP byte stream, put back in order with a bounded buffer.

Sans-IO: segments (sequence number, SYN flag, payload) go in, the newly
contiguous bytes come out. Retransmitted bytes are trimmed; segments that
arrive ahead of a gap wait in a buffer capped at `max_pending` bytes, and
what the cap refuses is counted in `dropped_bytes`. Sequence numbers compare
modulo 2**32 (RFC 9293 section 3.4).
"""

from __future__ import annotations

SEQ_MOD = 1 << 32
_HALF = 1 << 31


def seq_delta(a: int, b: int) -> int:
    """a - b as a signed distance in sequence space."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= _HALF else d


class TcpStream:
    __slots__ = (
        "_pending",
        "_pending_bytes",
        "dropped_bytes",
        "max_pending",
        "next_seq",
        "started",
    )

    def __init__(self, max_pending: int = 65536) -> None:
        self.max_pending = max_pending
        self.next_seq: int | None = None
        self.started = False  # bytes were delivered
        self._pending: dict[int, bytes] = {}
        self._pending_bytes = 0
        self.dropped_bytes = 0

    @property
    def has_gap(self) -> bool:
        return bool(self._pending)

    def add(self, seq: int, syn: bool, payload: bytes) -> bytes:
        """Takes one segment; returns the bytes it makes contiguous (maybe none)."""
        if syn:
            # The SYN consumes one sequence number; data on a SYN (TFO) follows it.
            if self.next_seq is None or not self.started:
                self.next_seq = (seq + 1) % SEQ_MOD
            seq = (seq + 1) % SEQ_MOD
        if not payload:
            return b""
        if self.next_seq is None:
            self.next_seq = seq  # joined mid-stream: start at the first byte seen
        offset = seq_delta(seq, self.next_seq)
        if offset > 0:
            self._hold(seq, payload)
            return b""
        if offset < 0:
            if -offset >= len(payload):
                return b""  # a retransmission of bytes already delivered
            payload = payload[-offset:]
        out = [payload]
        self.next_seq = (self.next_seq + len(payload)) % SEQ_MOD
        self.started = True
        self._drain(out)
        return b"".join(out)

    def _hold(self, seq: int, payload: bytes) -> None:
        held = len(self._pending.get(seq, b""))
        if held >= len(payload):
            return
        extra = len(payload) - held  # a longer copy of a held segment costs only its extra bytes
        if self._pending_bytes + extra > self.max_pending:
            self.dropped_bytes += extra
            return
        self._pending_bytes += extra
        self._pending[seq] = payload

    def _drain(self, out: list[bytes]) -> None:
        while self._pending:
            assert self.next_seq is not None
            progressed = False
            for seq in list(self._pending):
                offset = seq_delta(seq, self.next_seq)
                if offset > 0:
                    continue
                payload = self._pending.pop(seq)
                self._pending_bytes -= len(payload)
                if -offset < len(payload):
                    payload = payload[-offset:]
                    out.append(payload)
                    self.next_seq = (self.next_seq + len(payload)) % SEQ_MOD
                progressed = True
            if not progressed:
                return
