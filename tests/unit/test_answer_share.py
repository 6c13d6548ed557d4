"""DNS answers shared between daemon workers (agent/answer_share.py)."""

from __future__ import annotations

import socket
from collections import Counter

from agent.answer_share import READ_BURST, AnswerShare, answer_shares


def test_each_worker_hears_every_other_and_not_itself() -> None:
    shares = answer_shares(3)
    stats: Counter[str] = Counter()
    try:
        shares[0].publish(stats, "10.0.0.1", "www.example", ["192.0.2.1"], [1], 5.0)
        assert shares[0].receive(stats) == []
        for other in shares[1:]:
            assert other.receive(stats) == [("10.0.0.1", "www.example", ["192.0.2.1"], [1], 5.0)]
        assert stats["attribution.shared_answers_sent"] == 2
        assert stats["attribution.shared_answers_received"] == 2
    finally:
        for share in shares:
            share.close()


def test_one_worker_shares_nothing() -> None:
    assert answer_shares(1) == []


def test_garbage_is_counted_and_skipped() -> None:
    inbox, outside = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    share = AnswerShare(inbox, [])
    stats: Counter[str] = Counter()
    try:
        for junk in (b"\xc1", b"\x93\x01\x02\x03", b"\x95\xa1a\xa1b\x90\x91\xa1x\xcb" + bytes(8)):
            outside.send(junk)
        assert share.receive(stats) == []
        assert stats["attribution.shared_answers_bad"] == 3
    finally:
        share.close()
        outside.close()


def test_a_full_peer_drops_and_counts_without_blocking() -> None:
    inbox, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    share = AnswerShare(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), [writer])
    stats: Counter[str] = Counter()
    try:
        for i in range(100_000):  # nobody reads the inbox
            share.publish(stats, "10.0.0.1", f"n{i}.example", ["192.0.2.1"], [1], 1.0)
            if stats["attribution.shared_answers_dropped"]:
                break
        assert stats["attribution.shared_answers_dropped"] >= 1
        taken = AnswerShare(inbox, []).receive(Counter())
        assert 0 < len(taken) <= READ_BURST  # a burst at a time
    finally:
        share.close()
        inbox.close()
