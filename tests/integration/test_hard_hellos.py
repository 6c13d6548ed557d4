"""The hard ClientHellos, built byte by byte: split, reordered, spread over records and packets."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from tests.builders import (
    X25519MLKEM768,
    TcpSession,
    client_hello,
    crypto_frame,
    seal_initial,
    seal_initial_keys,
    server_hello,
    tls_records,
    udp_frames,
)
from tests.util import of_type, pcap_bytes, replay


def _replay(tmp_path: Path, frames: list[tuple[float, bytes]], name: str = "t.pcap") -> list:
    path = tmp_path / name
    path.write_bytes(pcap_bytes(frames))
    return replay([path])


def _stats(records: list) -> dict:
    return of_type(records, "stats")[0]


def test_pq_hello_split_over_two_segments_second_first(tmp_path: Path) -> None:
    hello = client_hello("split.example", ("h2",), pq=True, padding_to=1800)
    assert 1700 < len(hello) < 2000  # the size browsers send with X25519MLKEM768
    wire = tls_records(hello)
    s = TcpSession()
    frames = s.handshake()
    first, second = wire[:1200], wire[1200:]
    seq0 = s.seq[0]
    late = s._frame(0, "PA", first, seq=seq0)
    early = s._frame(0, "PA", second, seq=seq0 + len(first))
    s.seq[0] += len(wire)
    frames += [early, late]  # the second segment arrives first
    frames += s.send(1, tls_records(server_hello()))
    frames += s.close()
    records = _replay(tmp_path, frames)
    [tls] = of_type(records, "tls")
    assert tls["sni"] == "split.example"
    assert tls["alpn"] == ["h2"]
    assert tls["pq"] is True
    assert X25519MLKEM768 in tls["groups"] and X25519MLKEM768 in tls["key_share_groups"]
    assert tls["server_version"] == "0x0304" and tls["cipher"] == "0x1301"
    assert tls["ja4"].startswith("t13d")
    [flow] = of_type(records, "flow")
    assert flow["name"] == "split.example" and flow["name_source"] == "tls"


def test_hello_spread_over_several_records_and_segments(tmp_path: Path) -> None:
    hello = client_hello("records.example", ("http/1.1",), pq=True)
    wire = tls_records(hello, max_fragment=300)  # seven records
    s = TcpSession(sport=8443)
    frames = s.handshake() + s.send(0, wire, segment=700) + s.close()
    [tls] = of_type(_replay(tmp_path, frames), "tls")
    assert tls["sni"] == "records.example"
    assert tls["alpn"] == ["http/1.1"]


def test_starttls_style_hello_after_plaintext(tmp_path: Path) -> None:
    s = TcpSession(sport=25)
    frames = s.handshake()
    frames += s.send(1, b"220 mail.example ESMTP\r\n")
    frames += s.send(0, b"EHLO client\r\n")
    frames += s.send(1, b"250-mail.example\r\n250 STARTTLS\r\n")
    frames += s.send(0, b"STARTTLS\r\n")
    frames += s.send(1, b"220 Go ahead\r\n")
    frames += s.send(0, tls_records(client_hello("smtp.example", ())))
    frames += s.send(1, tls_records(server_hello(0x1302)))
    frames += s.close()
    [tls] = of_type(_replay(tmp_path, frames), "tls")
    assert tls["sni"] == "smtp.example" and tls["alpn"] == []
    assert tls["cipher"] == "0x1302"


def test_truncated_and_corrupt_hellos_are_counted(tmp_path: Path) -> None:
    hello = tls_records(client_hello("cut.example", pq=True))
    cut = TcpSession(cport=40001)
    frames = cut.handshake() + cut.send(0, hello[:900]) + cut.close()  # the rest never comes
    bad = TcpSession(cport=40002)
    corrupt = bytearray(tls_records(client_hello("bad.example")))
    corrupt[5 + 4 + 34] = 0xFF  # session id length 255: runs past the hello
    frames += bad.handshake() + bad.send(0, bytes(corrupt)) + bad.close()
    records = _replay(tmp_path, frames)
    tls_stats = _stats(records)["tls"]
    assert tls_stats["giveup.incomplete"] == 1  # the cut hello, counted when its flow ended
    [broken] = of_type(records, "tls")  # the corrupt one: recorded with its problem, no JA3
    assert broken["problem"] == "truncated" and broken["ja3"] is None
    assert tls_stats["malformed_hello.truncated"] == 1
    assert len(of_type(records, "flow")) == 2


def test_a_handshake_message_too_big_for_a_hello_ends_the_side(tmp_path: Path) -> None:
    """What follows the oversized message in the same segment is not read as a hello."""
    too_big = b"\x01\x00\x4e\x20"  # a ClientHello header claiming 20,000 bytes
    s = TcpSession()
    frames = s.handshake()
    frames += s.send(0, tls_records(too_big) + tls_records(client_hello("after.example")), 4000)
    frames += s.send(0, tls_records(client_hello("later.example")))
    frames += s.close()
    records = _replay(tmp_path, frames)
    assert of_type(records, "tls") == []
    assert _stats(records)["tls"]["giveup.too_big"] == 1
    assert of_type(records, "flow")[0]["name"] is None


def test_a_hello_without_server_hello_is_counted_incomplete_once(tmp_path: Path) -> None:
    """The ServerHello timeout emits the hello; the flow's end counts its leftover once."""
    s = TcpSession()
    frames = s.handshake()
    frames += s.send(0, tls_records(client_hello("alone.example")) + b"\x16\x03\x03")
    s.ts += 30  # past the ServerHello timeout (10 s)
    frames += s.close()
    records = _replay(tmp_path, frames)
    [tls] = of_type(records, "tls")
    assert tls["sni"] == "alone.example" and tls["cipher"] is None
    assert _stats(records)["tls"]["giveup.incomplete"] == 1


def test_a_broken_server_hello_is_counted_by_its_status_name(tmp_path: Path) -> None:
    s = TcpSession()
    frames = s.handshake() + s.send(0, tls_records(client_hello("one.example")))
    broken = bytearray(server_hello())
    broken[4 + 34] = 0xFF  # session id length 255: runs past the message
    frames += s.send(1, tls_records(bytes(broken)))
    frames += s.close()
    records = _replay(tmp_path, frames)
    [tls] = of_type(records, "tls")
    assert tls["sni"] == "one.example" and tls["cipher"] is None
    assert _stats(records)["tls"]["server_hello_malformed.truncated"] == 1


def _quic_datagrams(hello: bytes, dcid: bytes, order: list[int], version: int = 1) -> list[bytes]:
    third = -(-len(hello) // 3)
    chunks = [(i * third, hello[i * third : (i + 1) * third]) for i in range(3)]
    return [
        seal_initial(version, dcid, b"\x01\x02\x03\x04", pn, crypto_frame(*chunks[index]))
        for pn, index in enumerate(order)
    ]


def test_quic_hello_over_three_initials_crypto_out_of_order(tmp_path: Path) -> None:
    hello = client_hello("quic.example", ("h3",), pq=True, quic_params=True)
    dcid = os.urandom(8)
    datagrams = _quic_datagrams(hello, dcid, order=[2, 0, 1])
    records = _replay(tmp_path, udp_frames(datagrams))
    [quic] = of_type(records, "quic")
    assert quic["sni"] == "quic.example"
    assert quic["alpn"] == ["h3"]
    assert quic["version"] == "0x00000001"
    assert quic["dcid"] == dcid.hex()
    assert quic["ja4"].startswith("q13d")
    assert quic["pq"] is True
    [flow] = of_type(records, "flow")
    assert flow["name"] == "quic.example" and flow["name_source"] == "quic"


def test_quic_v2_and_a_new_connection_on_the_same_five_tuple(tmp_path: Path) -> None:
    first = _quic_datagrams(
        client_hello("one.example", ("h3",), quic_params=True),
        os.urandom(8),
        order=[0, 1, 2],
        version=0x6B3343CF,
    )
    second = _quic_datagrams(
        client_hello("two.example", ("h3",), quic_params=True),
        os.urandom(8),
        order=[1, 2, 0],
        version=0x6B3343CF,
    )
    records = _replay(tmp_path, udp_frames(first + second))
    quic = of_type(records, "quic")
    assert [q["sni"] for q in quic] == ["one.example", "two.example"]
    assert {q["version"] for q in quic} == {"0x6b3343cf"}
    assert quic[0]["dcid"] != quic[1]["dcid"]


def test_quic_crypto_data_held_per_connection_is_capped(tmp_path: Path) -> None:
    """Overlapping CRYPTO chunks at ever new offsets, never from offset 0: what the
    connection holds stops at MAX_CRYPTO (64 KiB), and the chunks refused are counted."""
    dcid = os.urandom(8)
    datagrams = [
        seal_initial(1, dcid, b"\x01", pn, crypto_frame(100 + 10 * pn, os.urandom(1100)))
        for pn in range(62)
    ]
    records = _replay(tmp_path, udp_frames(datagrams))
    assert of_type(records, "quic") == []
    quic_stats = _stats(records)["quic"]
    assert quic_stats["initials_decrypted"] == 62
    assert quic_stats["crypto_cap"] == 62 - 65536 // 1100
    assert _stats(records)["caps"]["quic_crypto"] == quic_stats["crypto_cap"]


def test_a_quic_hello_that_breaks_off_is_recorded_like_a_tls_one(tmp_path: Path) -> None:
    """Its problem said, what it held so far kept, no JA3 of a broken list; counted."""
    hello = bytearray(client_hello("broken.example", ("h3",), quic_params=True))
    hello[4 + 34] = 0xFF  # session id length 255: runs past the hello
    datagrams = [seal_initial(1, os.urandom(8), b"\x01", 0, crypto_frame(0, bytes(hello)))]
    records = _replay(tmp_path, udp_frames(datagrams))
    [quic] = of_type(records, "quic")
    assert quic["problem"] == "truncated"
    assert quic["ja3"] is None and quic["ja3_full"] is None
    assert _stats(records)["quic"]["malformed_hello.truncated"] == 1


def test_quic_corrupt_initial_is_counted(tmp_path: Path) -> None:
    packet = bytearray(
        seal_initial(
            1, os.urandom(8), b"", 0, crypto_frame(0, client_hello("x.example", quic_params=True))
        )
    )
    packet[60] ^= 0xFF  # breaks the AEAD tag check
    records = _replay(tmp_path, udp_frames([bytes(packet)]))
    assert of_type(records, "quic") == []
    assert _stats(records)["quic"]["undecryptable"] == 1


def test_hello_retry_request_gives_two_records(tmp_path: Path) -> None:
    s = TcpSession()
    frames = s.handshake()
    frames += s.send(0, tls_records(client_hello("retry.example", ("h2",))))
    frames += s.send(1, tls_records(server_hello(0x1301)))  # the HelloRetryRequest
    ccs = tls_records(b"\x01", content_type=20)
    frames += s.send(0, ccs + tls_records(client_hello("retry.example", ("h2",), pq=True)))
    frames += s.send(1, tls_records(server_hello(0x1302)))
    frames += s.close()
    hellos = of_type(_replay(tmp_path, frames), "tls")
    assert [h["sni"] for h in hellos] == ["retry.example", "retry.example"]
    assert [h["cipher"] for h in hellos] == ["0x1301", "0x1302"]
    assert [h["pq"] for h in hellos] == [False, True]


def test_following_stops_after_the_hellos(tmp_path: Path) -> None:
    """A bulk download after the handshake stays in the engine, whatever the batch size."""
    from agent.capfile import CaptureSource, replay_batches
    from agent.core import Pipeline

    s = TcpSession()
    frames = s.handshake() + s.send(0, tls_records(client_hello("bulk.example")))
    frames += s.send(1, tls_records(server_hello()) + os.urandom(1460 * 200))
    frames += s.close()
    path = tmp_path / "bulk.pcap"
    path.write_bytes(pcap_bytes(frames))
    pipeline = Pipeline()
    records = []
    for batch in replay_batches([CaptureSource(str(path))], Counter(), lambda _: None):
        records += pipeline.feed(batch)
    records += pipeline.drain()
    assert of_type(records, "tls")[0]["cipher"] == "0x1301"
    counters = pipeline.engine.counters()
    assert counters["tls_events"] <= 3  # the hello, the server's first segment
    assert counters["payload_cap_hits"] == 0


def test_quic_keys_derived_once_per_connection(tmp_path: Path) -> None:
    dcid = os.urandom(8)
    hello = client_hello("once.example", ("h3",), quic_params=True)
    datagrams = [seal_initial(1, dcid, b"\x05\x06", 0, crypto_frame(0, hello))]
    # later client Initials (ACKs) under the server's connection ID, same keys
    server_cid = os.urandom(8)
    for pn in (1, 2):
        datagrams.append(seal_initial_with_keys_of(dcid, server_cid, pn))
    records = _replay(tmp_path, udp_frames(datagrams))
    assert [q["sni"] for q in of_type(records, "quic")] == ["once.example"]
    quic_stats = _stats(records)["quic"]
    assert quic_stats["keys_derived"] == 1
    assert quic_stats["initials_after_hello"] == 2
    assert "undecryptable" not in quic_stats


def seal_initial_with_keys_of(key_dcid: bytes, header_dcid: bytes, pn: int) -> bytes:
    """A client Initial (an ACK) naming header_dcid, with keys that come from key_dcid."""
    return seal_initial_keys(1, key_dcid, header_dcid, b"\x05\x06", pn, b"\x02\x00\x00\x00\x00")
