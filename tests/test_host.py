"""Host: demultiplexing, listeners and their queues, RSTs for orphans, ICMP, ports, fuzz.

Packets are built with the wire layer and fed to one Host at 10.77.0.2 from a peer at
10.77.0.1 with a fake clock; ISS is pinned so every expected segment is exact. The last
tests (netns) check ping and UDP against the Linux kernel over a real TUN.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from stack.api import Stack
from stack.host import EPHEMERAL_MAX, EPHEMERAL_MIN, Host, PortAllocator
from stack.tcp.clock import MS, SECOND
from stack.tcp.connection import Connection
from stack.tcp.errors import InvalidStateError
from stack.tcp.events import ConnectionFailed
from stack.tcp.isn import SynCookies, cookie_options, cookie_tsval
from stack.tcp.state import State
from stack.trace import DROP, SEGMENT_OUT, TraceLog
from stack.wire import (
    PROTO_ICMP,
    PROTO_TCP,
    Flags,
    Ipv4Header,
    TcpSegment,
    internet_checksum,
    pseudo_header_sum,
)
from stack.wire.icmp import (
    CODE_HOST_UNREACHABLE,
    TYPE_DEST_UNREACHABLE,
    TYPE_ECHO_REQUEST,
    IcmpEcho,
    IcmpError,
    Icmpv6Error,
    build_unreachable,
)
from stack.wire.icmp import parse as parse_icmp
from stack.wire.ipv6 import PROTO_ICMPV6, Ipv6Header
from stack.wire.packet import Packet
from tests.conftest import Netns
from tests.integration.harness import BOUND, StackThread

LOCAL = IPv4Address("10.77.0.2")
PEER = IPv4Address("10.77.0.1")
OTHER = IPv4Address("10.77.0.3")
LOCAL_ISS = 10_000
PEER_ISS = 50_000
LISTEN_PORT = 5000
PEER_PORT = 40_000

S, A, R, F, P = Flags.SYN, Flags.ACK, Flags.RST, Flags.FIN, Flags.PSH


def make_host(**kw: object) -> tuple[Host, TraceLog]:
    log = TraceLog()
    host = Host(
        address=LOCAL,
        isn_secret=b"test secret",
        rng=random.Random(1),
        tracer=log,
        isn=lambda local, remote, now: LOCAL_ISS,
        **kw,  # type: ignore[arg-type]
    )
    return host, log


def packet(seg: TcpSegment, src: IPv4Address = PEER, dst: IPv4Address = LOCAL) -> bytes:
    return Ipv4Header(src, dst, PROTO_TCP).build(seg.build(src, dst))


def segments(packets: Sequence[bytes | Packet]) -> list[TcpSegment]:
    """The TCP segments of packets the host sent, checking their IP headers."""
    out = []
    for data in packets:
        ip, payload = Ipv4Header.parse(bytes(data))
        assert (ip.protocol, ip.ttl, ip.dont_fragment) == (PROTO_TCP, 64, True)
        out.append(TcpSegment.parse(payload, ip.src, ip.dst))
    return out


def only(host: Host, now: int) -> TcpSegment:
    [seg] = segments(host.packets_to_send(now))
    return seg


def bare(seg: TcpSegment) -> tuple[int, int, int, int, int, int]:
    """The header fields that matter to these tests, options left out."""
    return (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, len(seg.payload))


def syn(port: int = PEER_PORT, iss: int = PEER_ISS) -> TcpSegment:
    return TcpSegment(port, LISTEN_PORT, iss, 0, S, 65535, mss=1460)


def ack(port: int = PEER_PORT, iss: int = PEER_ISS) -> TcpSegment:
    return TcpSegment(port, LISTEN_PORT, iss + 1, LOCAL_ISS + 1, A, 65535)


# ------------------------------------------------------------------ RST for orphans


def test_rst_for_orphan_without_ack_is_rst_ack_of_seq_plus_len() -> None:
    host, log = make_host()
    host.receive_packet(packet(syn()), 0)
    # RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    assert only(host, 0) == TcpSegment(LISTEN_PORT, PEER_PORT, 0, PEER_ISS + 1, R | A, 0)
    assert host.counters["rst_sent"] == 1
    assert host.counters["drops"] == {"no-connection": 1}
    assert [e.fields["reason"] for e in log.of_kind(DROP)] == ["no-connection"]
    [out] = log.of_kind(SEGMENT_OUT)
    assert (out.conn, out.fields["src"], out.fields["dst"]) == (None, LOCAL, PEER)
    assert out.fields["segment"] == TcpSegment(LISTEN_PORT, PEER_PORT, 0, PEER_ISS + 1, R | A, 0)


def test_rst_for_orphan_with_ack_takes_seq_from_seg_ack() -> None:
    host, _ = make_host()
    data = TcpSegment(PEER_PORT, 80, 7, 123_456, A | P, 1000, payload=b"hello")
    host.receive_packet(packet(data), 0)
    # <SEQ=SEG.ACK><CTL=RST>
    assert only(host, 0) == TcpSegment(80, PEER_PORT, 123_456, 0, R, 0)


def test_rst_for_orphan_counts_fin_and_payload_and_wraps() -> None:
    host, _ = make_host()
    seg = TcpSegment(PEER_PORT, 80, 2**32 - 3, 0, F, 1000, payload=b"abcdef")
    host.receive_packet(packet(seg), 0)
    assert only(host, 0) == TcpSegment(80, PEER_PORT, 0, 4, R | A, 0)  # -3 + 6 + 1


@pytest.mark.parametrize("flags", [R, R | A, R | S, R | F | A])
def test_never_a_rst_in_reply_to_a_rst(flags: Flags) -> None:
    host, _ = make_host()
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(TcpSegment(PEER_PORT, 81, 1, 2, flags, 0)), 0)
    host.receive_packet(packet(TcpSegment(PEER_PORT, LISTEN_PORT, 1, 2, flags, 0)), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["rst_sent"] == 0
    assert host.counters["drops"] == {"rst-no-connection": 1, "rst-to-listener": 1}


def test_ack_to_listener_draws_rst() -> None:
    host, _ = make_host()
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(ack()), 0)
    # RFC 9293 §3.10.7.2 "second, check for an ACK": <SEQ=SEG.ACK><CTL=RST>
    assert only(host, 0) == TcpSegment(LISTEN_PORT, PEER_PORT, LOCAL_ISS + 1, 0, R, 0)
    assert host.connections() == []


def test_segment_without_syn_ack_or_rst_to_listener_is_dropped() -> None:
    host, _ = make_host()
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(TcpSegment(PEER_PORT, LISTEN_PORT, 1, 0, P, 9, payload=b"x")), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"no-syn-to-listener": 1}


def test_listener_on_a_specific_address_matches_it() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, address=LOCAL)
    host.receive_packet(packet(syn()), 0)
    assert lst.embryonic == 1
    with pytest.raises(OSError) as info:
        host.listen(LISTEN_PORT + 1, address=OTHER)
    assert info.value.errno == errno.EADDRNOTAVAIL


# ------------------------------------------------------------------ drops


def test_bad_packets_are_counted_drops() -> None:
    host, log = make_host()
    good = packet(syn())
    host.receive_packet(good[:10], 0)  # truncated IP header
    host.receive_packet(good[:-1] + bytes([good[-1] ^ 1]), 0)  # TCP checksum
    bad_ip = bytearray(good)
    bad_ip[8] ^= 1  # TTL: IP header checksum
    host.receive_packet(bad_ip, 0)
    host.receive_packet(packet(syn(), dst=OTHER), 0)
    host.receive_packet(b"", 0)
    host.receive_packet(packet(syn(), src=IPv4Address("224.0.0.1")), 0)
    host.receive_packet(packet(syn(), src=LOCAL), 0)  # our own address from outside
    host.receive_packet(b"\x60" + bytes(47), 0)  # IPv6 (a router solicitation, say)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {
        "truncated": 2,
        "bad-checksum": 1,
        "bad-header-checksum": 1,
        "not-for-us": 1,
        "bad-source": 2,
        "ipv6-unsupported": 1,
    }
    assert host.counters["packets_in"] == 8
    assert len(log.of_kind(DROP)) == 8


def fragment(data: bytes, frag: int) -> bytes:
    """`data` with IPv4 flags/fragment offset word `frag` and its header checksum redone."""
    header = bytearray(data[:20])
    header[6:8] = frag.to_bytes(2, "big")
    header[10:12] = b"\0\0"
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return bytes(header) + data[20:]


def test_fragments_are_held_for_reassembly_and_an_overlap_drops_them() -> None:
    # Two SYNs as fragments of one datagram (same addresses, protocol and ID 0): the
    # first is held (tests/test_fragments.py reassembles), the second overlaps it.
    host, log = make_host()
    lst = host.listen(LISTEN_PORT)  # whole, either SYN would draw a SYN-ACK
    host.receive_packet(fragment(packet(syn()), 0x2000), 0)  # MF=1, offset 0
    host.receive_packet(fragment(packet(syn(PEER_PORT + 1)), 0x4001), 1)  # DF, offset 8
    assert host.packets_to_send(1) == []
    assert host.counters["drops"] == {"fragment-overlap": 1}
    assert (host.counters["packets_in"], host.counters["fragments_in"]) == (2, 1)
    assert (lst.embryonic, host.connections()) == (0, [])
    assert [(e.now, e.conn, dict(e.fields)) for e in log.of_kind(DROP)] == [
        (1, None, {"reason": "fragment-overlap", "src": PEER, "dst": LOCAL}),
    ]


def test_udp_draws_protocol_unreachable() -> None:
    host, _ = make_host()
    udp = Ipv4Header(PEER, LOCAL, 17).build(b"\x30\x39\x00\x35\x00\x0c\x00\x00data")
    host.receive_packet(udp, 0)
    [reply] = host.packets_to_send(0)
    ip, payload = Ipv4Header.parse(bytes(reply))
    assert (ip.src, ip.dst, ip.protocol) == (LOCAL, PEER, PROTO_ICMP)
    # RFC 792: type 3 code 2, quoting the IP header and the first 8 bytes of the datagram.
    assert bytes(payload) == build_unreachable(2, udp)
    assert bytes(payload[8:]) == udp[:28]
    assert host.counters["drops"] == {"unknown-protocol": 1}
    assert host.counters["icmp_out"] == 1


def test_icmp_errors_are_rate_limited() -> None:
    host, _ = make_host()
    udp = Ipv4Header(PEER, LOCAL, 17).build(bytes(12))
    for _ in range(60):
        host.receive_packet(udp, 1 * SECOND)
    # A burst of 50, then 1000 a second (Linux icmp_msgs_burst, icmp_msgs_per_sec).
    assert len(host.packets_to_send(1 * SECOND)) == 50
    assert host.counters["drops"]["icmp-rate-limited"] == 10
    for _ in range(20):
        host.receive_packet(udp, 1 * SECOND + 5 * MS)
    assert len(host.packets_to_send(1 * SECOND + 5 * MS)) == 5


# ------------------------------------------------------------------ ICMP


def test_ping_is_answered() -> None:
    host, _ = make_host()
    request = IcmpEcho(TYPE_ECHO_REQUEST, 0x1234, 7, b"ping payload").build()
    host.receive_packet(Ipv4Header(PEER, LOCAL, PROTO_ICMP).build(request), 0)
    [reply] = host.packets_to_send(0)
    ip, payload = Ipv4Header.parse(bytes(reply))
    assert (ip.src, ip.dst, ip.protocol) == (LOCAL, PEER, PROTO_ICMP)
    assert bytes(payload) == IcmpEcho(0, 0x1234, 7, b"ping payload").build()
    assert (host.counters["icmp_in"], host.counters["icmp_out"]) == (1, 1)
    assert host.counters["packets_out"] == 1


def test_bad_icmp_is_dropped() -> None:
    host, _ = make_host()
    request = bytearray(IcmpEcho(TYPE_ECHO_REQUEST, 1, 1, b"x").build())
    request[-1] ^= 0xFF
    host.receive_packet(Ipv4Header(PEER, LOCAL, PROTO_ICMP).build(request), 0)
    reply = IcmpEcho(0, 1, 1, b"x").build()
    host.receive_packet(Ipv4Header(PEER, LOCAL, PROTO_ICMP).build(reply), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"icmp-bad-checksum": 1, "icmp-echo-reply": 1}


def test_icmp_for_no_connection_is_dropped() -> None:
    host, _ = make_host()
    quoted = Ipv4Header(LOCAL, PEER, PROTO_TCP, total_length=60)
    err = IcmpError(TYPE_DEST_UNREACHABLE, CODE_HOST_UNREACHABLE, None, quoted, 1234, 80, 5)
    host.receive_packet(Ipv4Header(OTHER, LOCAL, PROTO_ICMP).build(err.build()), 0)
    assert host.counters["drops"] == {"icmp-no-connection": 1}


def test_icmp_unreachable_fails_the_quoted_connection() -> None:
    host, _ = make_host()
    a = host.connect((PEER, 80), 0)
    b = host.connect((PEER, 81), 0)
    sent = host.packets_to_send(0)
    by_port = {seg.dst_port: data for seg, data in zip(segments(sent), sent, strict=True)}
    quoted, _ = Ipv4Header.parse(bytes(by_port[80]))
    err = IcmpError(
        TYPE_DEST_UNREACHABLE, CODE_HOST_UNREACHABLE, None, quoted, a.local[1], 80, LOCAL_ISS
    )
    host.receive_packet(Ipv4Header(OTHER, LOCAL, PROTO_ICMP).build(err.build()), 1 * MS)
    assert a.error == "unreachable"
    assert ConnectionFailed("unreachable") in drain_events(a)
    assert a.is_closed
    assert b.state == State.SYN_SENT
    host.packets_to_send(1 * MS)
    assert host.connections() == [b]


def drain_events(conn: object) -> list[object]:
    events = []
    for _ in range(100):
        event = conn.next_event()  # type: ignore[attr-defined]
        if event is None:
            break
        events.append(event)
    return events


# ------------------------------------------------------------------ demultiplexing


def handshake_active(host: Host, port: int, now: int) -> tuple[object, TcpSegment]:
    """connect() to PEER:port and answer its SYN; returns the connection and its ACK."""
    conn = host.connect((PEER, port), now)
    [syn_out] = [s for s in segments(host.packets_to_send(now)) if s.dst_port == port]
    assert syn_out.flags == S
    assert syn_out.seq == LOCAL_ISS
    synack = TcpSegment(port, syn_out.src_port, PEER_ISS, LOCAL_ISS + 1, S | A, 65535, mss=1460)
    host.receive_packet(packet(synack), now)
    return conn, only(host, now)


def test_demux_by_four_tuple() -> None:
    host, _ = make_host()
    a = host.connect((PEER, 80), 0)
    b = host.connect((PEER, 81), 0)
    c = host.connect((OTHER, 80), 0)
    assert [x.id for x in (a, b, c)] == [1, 2, 3]
    sent = {(seg.dst_port, seg.src_port) for seg in segments(host.packets_to_send(0))}
    assert sent == {(80, a.local[1]), (81, b.local[1]), (80, c.local[1])}
    synack = TcpSegment(81, b.local[1], PEER_ISS, LOCAL_ISS + 1, S | A, 65535, mss=1460)
    host.receive_packet(packet(synack), 1 * MS)
    assert (a.state, b.state, c.state) == (State.SYN_SENT, State.ESTABLISHED, State.SYN_SENT)
    assert bare(only(host, 1 * MS)) == (b.local[1], 81, LOCAL_ISS + 1, PEER_ISS + 1, A, 0)
    # The same ports from another address belong to nobody.
    synack_c = TcpSegment(80, c.local[1], PEER_ISS, LOCAL_ISS + 1, S | A, 65535)
    host.receive_packet(packet(synack_c, src=PEER), 1 * MS)
    if c.local[1] != a.local[1]:
        assert only(host, 1 * MS) == TcpSegment(c.local[1], 80, LOCAL_ISS + 1, 0, R, 0)
    assert c.state == State.SYN_SENT
    assert host.connections() == [a, b, c]


def test_connection_is_forgotten_once_closed_and_then_orphan() -> None:
    host, _ = make_host()
    conn, _ = handshake_active(host, 80, 0)
    conn.abort(1 * MS)  # type: ignore[attr-defined]
    assert bare(only(host, 1 * MS))[4] & R
    assert host.connections() == []
    assert conn.is_closed  # type: ignore[attr-defined]
    late = TcpSegment(80, conn.local[1], PEER_ISS + 1, LOCAL_ISS + 1, A, 65535, payload=b"x")  # type: ignore[attr-defined]
    host.receive_packet(packet(late), 2 * MS)
    assert only(host, 2 * MS) == TcpSegment(conn.local[1], 80, LOCAL_ISS + 1, 0, R, 0)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ listeners


def test_passive_open_accept() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT)
    assert lst.id == 1
    host.receive_packet(packet(syn()), 0)
    synack = only(host, 0)
    assert bare(synack) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS, PEER_ISS + 1, S | A, 0)
    assert (lst.embryonic, lst.pending, lst.accept()) == (1, 0, None)
    host.receive_packet(packet(ack()), 1 * MS)
    assert (lst.embryonic, lst.pending) == (0, 1)
    conn = lst.accept()
    assert conn is not None
    assert conn.id == 2
    assert conn.state == State.ESTABLISHED
    assert (conn.local, conn.remote) == ((LOCAL, LISTEN_PORT), (PEER, PEER_PORT))
    assert lst.accept() is None
    assert host.connections() == [conn]
    assert host.snapshot() == {
        "address": "10.77.0.2",
        "address6": None,
        "mtu": 1500,
        "counters": {
            "packets_in": 2,
            "packets_out": 1,
            "rst_sent": 0,
            "icmp_in": 0,
            "icmp_out": 0,
            "fragments_in": 0,
            "reassembled": 0,
            "drops": {},
        },
        "challenge_acks": {"limit": 1000, "second": None, "left": 0},  # none asked for
        "listeners": [1],
        "connections": [2],
    }


def test_syn_backlog_limit() -> None:
    host, _ = make_host(syn_cookies="never")
    lst = host.listen(LISTEN_PORT, backlog=2)
    for port in (40_001, 40_002, 40_003):
        host.receive_packet(packet(syn(port)), 0)
    assert sorted(s.dst_port for s in segments(host.packets_to_send(0))) == [40_001, 40_002]
    assert host.counters["drops"] == {"syn-backlog-full": 1}
    assert lst.embryonic == 2
    assert lst.snapshot(0) == {
        "id": 1,
        "state": "LISTEN",
        "local": {"addr": "*", "port": LISTEN_PORT},  # both families, as ss prints it
        "backlog": 2,
        "syn_cookies": "never",
        "syn_queue": 2,
        "accept_queue": 0,
        "counters": {
            "syn_received": 2,
            "accepted": 0,
            "syn_dropped": 1,
            "ack_dropped": 0,
            "cookies_sent": 0,
            "cookies_accepted": 0,
            "synack_pruned": 0,
        },
    }


def test_accept_queue_limit_drops_the_final_ack_until_accept() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, backlog=2)
    host.receive_packet(packet(syn(40_001)), 0)
    host.receive_packet(packet(syn(40_002)), 0)
    host.receive_packet(packet(ack(40_001)), 0)
    host.receive_packet(packet(syn(40_003)), 0)
    host.receive_packet(packet(ack(40_002)), 0)
    assert (lst.embryonic, lst.pending) == (1, 2)
    host.packets_to_send(0)
    # The accept queue is full: the ACK completing 40_003's handshake is dropped...
    host.receive_packet(packet(ack(40_003)), 1 * MS)
    assert host.packets_to_send(1 * MS) == []
    assert host.counters["drops"] == {"accept-queue-full": 1}
    assert (lst.embryonic, lst.pending) == (1, 2)
    # ... and so is a new SYN.
    host.receive_packet(packet(syn(40_004)), 1 * MS)
    assert host.counters["drops"] == {"accept-queue-full": 2}
    first = lst.accept()
    assert first is not None
    assert first.remote == (PEER, 40_001)
    # The peer's retransmission completes it once there is room.
    host.receive_packet(packet(ack(40_003)), 2 * MS)
    assert (lst.embryonic, lst.pending) == (0, 2)
    assert [c.remote[1] for c in (lst.accept(), lst.accept())] == [40_002, 40_003]  # type: ignore[union-attr]


def test_listener_close_resets_embryonic_and_unaccepted() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT)
    host.receive_packet(packet(syn(40_001)), 0)
    host.receive_packet(packet(syn(40_002)), 0)
    host.receive_packet(packet(ack(40_001)), 0)
    host.packets_to_send(0)
    lst.close(1 * MS)
    rsts = sorted(bare(s) for s in segments(host.packets_to_send(1 * MS)))
    assert [(r[1], r[4] & R) for r in rsts] == [(40_001, R), (40_002, R)]
    assert host.listeners() == []
    assert host.connections() == []
    host.receive_packet(packet(syn(40_005)), 2 * MS)
    assert bare(only(host, 2 * MS)) == (LISTEN_PORT, 40_005, 0, PEER_ISS + 1, R | A, 0)
    host.listen(LISTEN_PORT)  # the port is free again


def server_in_time_wait(host: Host, ts: bool = False) -> Connection:
    """An accepted connection that the server closed first and the peer too: TIME-WAIT.
    With `ts`, both sides use timestamps (the peer's TSval is 1000, then 1001, 1002)."""
    lst = host.listen(LISTEN_PORT)
    stamp = (lambda n: (1000 + n, 0)) if ts else (lambda n: None)
    host.receive_packet(packet(replace(syn(), timestamps=stamp(0))), 0)
    host.packets_to_send(0)  # the SYN-ACK leaves before its ACK comes
    host.receive_packet(packet(replace(ack(), timestamps=stamp(1))), 0)
    conn = lst.accept()
    assert conn is not None
    assert conn.tcb.timestamps == ts
    conn.shutdown(0)
    [fin] = segments(host.packets_to_send(0))
    assert fin.flags & F
    fin_ack = TcpSegment(
        PEER_PORT, LISTEN_PORT, PEER_ISS + 1, LOCAL_ISS + 2, A | F, 65535, timestamps=stamp(2)
    )
    host.receive_packet(packet(fin_ack), 1 * MS)
    host.packets_to_send(1 * MS)
    assert conn.state == State.TIME_WAIT
    return conn


def test_new_syn_with_higher_seq_reopens_time_wait() -> None:
    host, _ = make_host()
    old = server_in_time_wait(host)
    host.receive_packet(packet(syn(iss=PEER_ISS + 100_000)), 2 * MS)
    # RFC 1122 §4.2.2.13: the old incarnation goes, a new one answers the SYN.
    assert old.state == State.CLOSED
    synack = only(host, 2 * MS)
    assert bare(synack) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS, PEER_ISS + 100_001, S | A, 0)
    [new] = host.half_opens()  # a half-open record, no connection yet
    assert (new.id, new.state, host.connections()) == (old.id + 1, State.SYN_RECEIVED, [])


def test_old_syn_in_time_wait_stays_with_the_old_connection() -> None:
    host, _ = make_host()
    old = server_in_time_wait(host)
    host.receive_packet(packet(syn(iss=PEER_ISS - 5)), 2 * MS)
    assert old.state == State.TIME_WAIT
    assert host.connections() == [old]
    # RFC 5961 §4: the old connection answers with a challenge ACK, no new connection.
    assert bare(only(host, 2 * MS)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 2, PEER_ISS + 2, A, 0)


@pytest.mark.parametrize(
    ("seq", "tsval", "reopens"),
    [(PEER_ISS - 5, 1003, True), (PEER_ISS + 100_000, 1002, False)],
)
def test_time_wait_reopen_goes_by_timestamps_when_both_used_them(
    seq: int, tsval: int, reopens: bool
) -> None:
    # RFC 6191 §2: with timestamps on both sides, a newer TSval decides, not the sequence.
    host, _ = make_host()
    old = server_in_time_wait(host, ts=True)
    host.receive_packet(packet(replace(syn(iss=seq), timestamps=(tsval, 0))), 2 * MS)
    assert (old.state == State.CLOSED) == reopens
    [reply] = segments(host.packets_to_send(2 * MS))
    assert reply.flags == (S | A if reopens else A)


def test_syn_with_a_new_isn_in_syn_received_challenge_ack_then_rst_frees_it() -> None:
    # RFC 9293 §3.10.7.4 fourth would return a passive SYN-RECEIVED to LISTEN; we keep
    # RFC 5961 §4's challenge ACK (as Linux tcp_check_req ACKs an out-of-window SYN):
    # a live peer ignores it, a restarted one answers with the RST that frees the
    # embryonic connection, and its next SYN finds the listener.
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT)
    host.receive_packet(packet(syn()), 0)
    assert bare(only(host, 0)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS, PEER_ISS + 1, S | A, 0)
    new_isn = PEER_ISS + 3_000_000
    host.receive_packet(packet(syn(iss=new_isn)), 1 * SECOND)
    challenge = only(host, 1 * SECOND)
    assert bare(challenge) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 1, PEER_ISS + 1, A, 0)
    assert lst.embryonic == 1
    # the peer, in SYN-SENT, finds the ACK unacceptable: <SEQ=SEG.ACK><CTL=RST>
    rst = TcpSegment(PEER_PORT, LISTEN_PORT, challenge.ack, 0, R, 0)
    host.receive_packet(packet(rst), 1 * SECOND + 1 * MS)
    assert host.packets_to_send(1 * SECOND + 1 * MS) == []
    assert (lst.embryonic, len(host.connections())) == (0, 0)
    host.receive_packet(packet(syn(iss=new_isn)), 2 * SECOND)
    synack = only(host, 2 * SECOND)
    assert bare(synack) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS, new_isn + 1, S | A, 0)


def test_syn_cookie_when_the_backlog_is_full() -> None:
    host, _ = make_host(syn_cookies=True)
    lst = host.listen(LISTEN_PORT, backlog=1)
    host.receive_packet(packet(syn(40_001)), 0)
    host.packets_to_send(0)
    host.receive_packet(packet(replace(syn(40_002), wscale=7, sack_permitted=True)), 0)
    # RFC 4987 §3.6: a SYN-ACK whose ISS is the cookie, no state kept, MSS only.
    cookie = only(host, 0)
    expected_iss = SynCookies(b"test secret").make(
        (LOCAL, LISTEN_PORT), (PEER, 40_002), PEER_ISS, 1460, 0
    )
    assert cookie == TcpSegment(
        LISTEN_PORT, 40_002, expected_iss, PEER_ISS + 1, S | A, 65535, mss=1460
    )
    assert (lst.embryonic, len(host.half_opens()), host.connections()) == (1, 1, [])
    # The ACK carrying the cookie back, with data, becomes an accepted connection.
    final = TcpSegment(
        40_002, LISTEN_PORT, PEER_ISS + 1, expected_iss + 1, A | P, 65535, payload=b"hello"
    )
    host.receive_packet(packet(final), 1 * MS)
    assert (lst.embryonic, lst.pending) == (1, 1)
    conn = lst.accept()
    assert conn is not None
    assert conn.state == State.ESTABLISHED
    assert (conn.tcb.iss, conn.tcb.irs, conn.tcb.snd_mss) == (expected_iss, PEER_ISS, 1460)
    assert (conn.tcb.wscale_remote, conn.tcb.sack) == (0, False)
    assert conn.receive(100, 1 * MS) == b"hello"
    assert lst.counters["cookies_sent"] == lst.counters["cookies_accepted"] == 1


def test_syn_cookie_connection_takes_no_rtt_sample_from_the_handshake() -> None:
    # RFC 6298 §3: only true measurements.  The cookie SYN-ACK left when the SYN came;
    # the connection rebuilt when the ACK arrives cannot time it, so the first RTO is
    # the initial one (2.1), not rto_min from a 0 ns "sample".
    host, _ = make_host(syn_cookies=True)
    lst = host.listen(LISTEN_PORT, backlog=1)
    host.receive_packet(packet(syn(40_001)), 0)
    host.packets_to_send(0)
    host.receive_packet(packet(syn(40_002)), 0)
    cookie = only(host, 0)
    final = TcpSegment(40_002, LISTEN_PORT, PEER_ISS + 1, cookie.seq + 1, A, 65535)
    host.receive_packet(packet(final), 600 * MS)
    conn = lst.accept()
    assert conn is not None and conn.state == State.ESTABLISHED
    assert conn.rtt.snapshot() == {
        "srtt": None,
        "rttvar": None,
        "rto": 1 * SECOND,
        "min_rtt": None,
        "samples": 0,
        "backoff": 0,
        "timed_seq": None,
        "karn": False,
        "ts_floor": None,
    }
    conn.send(b"x" * 100, 600 * MS)
    host.packets_to_send(600 * MS)
    assert conn.timers["retransmission"].deadline == 1600 * MS


def test_forged_or_stale_cookie_draws_a_rst() -> None:
    host, _ = make_host(syn_cookies=True)
    lst = host.listen(LISTEN_PORT, backlog=1)
    host.receive_packet(packet(syn(40_001)), 0)
    host.receive_packet(packet(syn(40_002)), 0)
    [cookie] = [s.seq for s in segments(host.packets_to_send(0)) if s.dst_port == 40_002]
    forged = TcpSegment(40_002, LISTEN_PORT, PEER_ISS + 1, cookie + 2, A, 65535)
    host.receive_packet(packet(forged), 1 * MS)
    assert only(host, 1 * MS) == TcpSegment(LISTEN_PORT, 40_002, cookie + 2, 0, R, 0)
    stale = TcpSegment(40_002, LISTEN_PORT, PEER_ISS + 1, cookie + 1, A, 65535)
    host.receive_packet(packet(stale), 200 * SECOND)  # cookies live 64-128 s
    assert bare(only(host, 200 * SECOND))[4] == R
    assert (lst.pending, lst.counters["cookies_accepted"]) == (0, 0)


def test_syn_cookies_are_on_by_default() -> None:
    # As Linux's tcp_syncookies=1: a host not told otherwise answers a full backlog
    # with cookies.
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, backlog=1)
    assert lst.syn_cookies == "auto"
    host.receive_packet(packet(syn(40_001)), 0)
    host.receive_packet(packet(syn(40_002)), 0)
    assert sorted(s.dst_port for s in segments(host.packets_to_send(0))) == [40_001, 40_002]
    assert (lst.embryonic, lst.counters["cookies_sent"]) == (1, 1)


def test_syn_cookie_keeps_wscale_and_sack_in_the_timestamp() -> None:
    # Linux cookie_init_timestamp: the low 6 bits of TSval carry the peer's shift and
    # SACK-permitted; the TSval stays at or below the clock (4951 <= 5000 ms).
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, backlog=1)
    host.receive_packet(packet(syn(40_001)), 0)
    host.packets_to_send(0)
    now = 5 * SECOND
    offer = replace(syn(40_002), wscale=7, sack_permitted=True, timestamps=(1000, 0))
    host.receive_packet(packet(offer), now)
    cookie = only(host, now)
    iss = SynCookies(b"test secret").make((LOCAL, LISTEN_PORT), (PEER, 40_002), PEER_ISS, 1460, now)
    assert cookie_tsval(5000, 7, True) == 4951 == (5000 & ~63 | 7 | 16) - 64
    assert cookie == TcpSegment(
        LISTEN_PORT, 40_002, iss, PEER_ISS + 1, S | A, 65535, mss=1460, wscale=7,
        sack_permitted=True, timestamps=(4951, 1000),
    )  # fmt: skip
    ack = TcpSegment(40_002, LISTEN_PORT, PEER_ISS + 1, iss + 1, A, 1000, timestamps=(1010, 4951))
    host.receive_packet(packet(ack), now + 10 * MS)
    conn = lst.accept()
    assert conn is not None and conn.state == State.ESTABLISHED
    tcb = conn.tcb
    # Our shift is the one a connection offers (for rcv_buf_max, 6 MiB: 7).
    assert (tcb.wscale_remote, tcb.wscale_local, tcb.sack, tcb.timestamps) == (7, 7, True, True)
    assert (tcb.snd_wnd, tcb.ts_recent) == (1000 << 7, 1010)
    conn.send(b"data", now + 20 * MS)
    (data,) = segments(host.packets_to_send(now + 20 * MS))
    assert data.timestamps == (5020, 1010)  # our clock, never behind the cookie's TSval
    assert lst.counters["cookies_accepted"] == 1


def test_syn_cookie_without_timestamps_offers_mss_only() -> None:
    host, _ = make_host(syn_cookies="always")
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(replace(syn(40_002), wscale=7, sack_permitted=True)), 0)
    cookie = only(host, 0)
    assert (cookie.mss, cookie.wscale, cookie.sack_permitted, cookie.timestamps) == (
        1460, None, False, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("tsecr", "options"),
    [(0x0F, (None, False)), (0x1F, (None, True)), (0x07, (7, False)), (0x10, (0, True)),
     (0x2E + 0x1000, (14, False))],
)
def test_cookie_options_from_the_echoed_tsval(tsecr: int, options: object) -> None:
    assert cookie_options(tsecr) == options
    shift, sack = cookie_options(tsecr)
    assert cookie_options(cookie_tsval(123_456, shift, sack)) == (shift, sack)


def test_always_answers_every_syn_with_a_cookie_and_keeps_no_state() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, syn_cookies="always")
    host.receive_packet(packet(syn(40_001)), 0)
    cookie = only(host, 0)
    assert (lst.embryonic, len(host.connections()), lst.counters["cookies_sent"]) == (0, 0, 1)
    ack = TcpSegment(40_001, LISTEN_PORT, PEER_ISS + 1, cookie.seq + 1, A, 65535)
    host.receive_packet(packet(ack), 1 * MS)
    assert lst.pending == 1


def test_auto_accepts_cookies_only_while_it_sends_them() -> None:
    # Linux tcp_synq_no_recent_overflow: with no recent overflow, an ACK that happens to
    # carry a valid cookie is an ACK to a listener (RST), so blind guesses hit nothing.
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, backlog=1)
    iss = SynCookies(b"test secret").make((LOCAL, LISTEN_PORT), (PEER, 40_002), PEER_ISS, 1460, 0)
    guess = TcpSegment(40_002, LISTEN_PORT, PEER_ISS + 1, iss + 1, A, 65535)
    host.receive_packet(packet(guess), 0)
    assert bare(only(host, 0))[4] == R
    host.receive_packet(packet(syn(40_001)), 0)  # fills the backlog
    host.receive_packet(packet(syn(40_002)), 0)  # overflows it: a cookie goes out
    host.packets_to_send(0)
    host.receive_packet(packet(guess), 1 * MS)
    assert lst.pending == 1
    assert host.listen(LISTEN_PORT + 1, syn_cookies="never").syn_cookies == "never"
    with pytest.raises(ValueError):
        host.listen(LISTEN_PORT + 2, syn_cookies="sometimes")


def _spoofed_flood(host: Host, count: int, now: int = 0) -> None:
    spoofed = IPv4Address("10.77.0.99")
    for port in range(1000, 1000 + count):
        seg = TcpSegment(port, LISTEN_PORT, port * 1000, 0, S, 65535, mss=1460)
        host.receive_packet(packet(seg, src=spoofed), now)
    host.packets_to_send(now)


def test_under_pressure_embryonic_connections_get_fewer_synack_retries() -> None:
    # Linux reqsk_timer_handler: a full backlog with no young entries allows 2 SYN-ACK
    # retransmissions (1 s, 3 s) instead of 5; at 7 s they are forgotten without a RST.
    host, _ = make_host(syn_cookies="never")
    lst = host.listen(LISTEN_PORT, backlog=8)
    _spoofed_flood(host, 8)
    for at in (1 * SECOND, 3 * SECOND):
        host.handle_timers(at)
        assert len(segments(host.packets_to_send(at))) == 8  # SYN-ACKs again
    host.handle_timers(7 * SECOND)
    assert host.packets_to_send(7 * SECOND) == []  # no SYN-ACK, no RST
    assert (lst.embryonic, lst.counters["synack_pruned"]) == (0, 8)
    assert host.counters["drops"]["synack-pruned"] == 8
    assert host.connections() == []


def test_without_pressure_synack_retries_stay_at_the_limit() -> None:
    host, _ = make_host(syn_cookies="never")
    lst = host.listen(LISTEN_PORT, backlog=128)
    _spoofed_flood(host, 8)
    for at in (1, 3, 7, 15, 31):
        host.handle_timers(at * SECOND)
        assert len(segments(host.packets_to_send(at * SECOND))) == 8
    assert (lst.embryonic, lst.counters["synack_pruned"]) == (8, 0)


def test_without_cookies_a_full_backlog_drops_syns() -> None:
    host, _ = make_host(syn_cookies=False)  # as "never"
    host.listen(LISTEN_PORT, backlog=1)
    host.receive_packet(packet(syn(40_001)), 0)
    host.receive_packet(packet(syn(40_002)), 0)
    assert [s.dst_port for s in segments(host.packets_to_send(0))] == [40_001]
    assert host.counters["drops"] == {"syn-backlog-full": 1}


# ------------------------------------------------------------------ ports


def test_listen_and_connect_eaddrinuse() -> None:
    host, _ = make_host()
    host.listen(LISTEN_PORT)
    with pytest.raises(OSError) as info:
        host.listen(LISTEN_PORT)
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        host.connect((PEER, 80), 0, local_port=LISTEN_PORT)
    assert info.value.errno == errno.EADDRINUSE
    host.connect((PEER, 80), 0, local_port=6000)
    with pytest.raises(OSError) as info:
        host.connect((PEER, 80), 0, local_port=6000)
    assert info.value.errno == errno.EADDRINUSE
    other = host.connect((PEER, 81), 0, local_port=6000)  # another 4-tuple: fine
    assert other.local == (LOCAL, 6000)


def test_ephemeral_ports_in_range_distinct_and_deterministic() -> None:
    runs = []
    for _ in range(2):
        host, _ = make_host()
        ports = [host.connect((PEER, 80), 0).local[1] for _ in range(200)]
        runs.append(ports)
        assert all(EPHEMERAL_MIN <= p <= EPHEMERAL_MAX for p in ports)
        assert len(set(ports)) == 200
    assert runs[0] == runs[1]


def test_ephemeral_ports_depend_on_secret_and_remote() -> None:
    def first(secret: bytes, remote: tuple[IPv4Address, int]) -> list[int]:
        alloc = PortAllocator(secret, random.Random(0))
        return [alloc.pick(LOCAL, remote, lambda p: True) for _ in range(5)]  # type: ignore[misc]

    a = first(b"one", (PEER, 80))
    assert a != first(b"two", (PEER, 80))
    assert a != first(b"one", (PEER, 81))
    # Algorithm 4: one remote's ports walk forward from its offset.
    span = EPHEMERAL_MAX - EPHEMERAL_MIN + 1
    assert [(p - a[0]) % span for p in a] == [0, 1, 2, 3, 4]


def test_port_allocator_skips_taken_ports_and_exhausts() -> None:
    alloc = PortAllocator(b"s", random.Random(0), low=1000, high=1009)
    taken: set[int] = set()
    for _ in range(10):
        port = alloc.pick(LOCAL, (PEER, 80), lambda p: p not in taken)
        assert port is not None
        taken.add(port)
    assert taken == set(range(1000, 1010))
    assert alloc.pick(LOCAL, (PEER, 80), lambda p: p not in taken) is None


def test_connect_rejects_bad_remotes() -> None:
    host, _ = make_host()
    with pytest.raises(ValueError, match="remote port 0 out of range"):
        host.connect((PEER, 0), 0)
    with pytest.raises(OSError) as info:
        host.connect((IPv4Address("0.0.0.0"), 80), 0)
    assert info.value.errno == errno.EADDRNOTAVAIL


# ------------------------------------------------------------------ timers


def test_next_deadline_is_the_minimum_and_timers_fire() -> None:
    host, _ = make_host()
    assert host.next_deadline() is None
    a = host.connect((PEER, 80), 0)
    b = host.connect((PEER, 81), 5 * MS)
    host.packets_to_send(5 * MS)
    assert host.next_deadline() == min(a.next_deadline(), b.next_deadline())  # type: ignore[type-var]
    deadline = host.next_deadline()
    assert deadline is not None
    host.handle_timers(deadline)
    again = segments(host.packets_to_send(deadline))
    assert [bare(s)[1:5] for s in again] == [(80, LOCAL_ISS, 0, S)]  # SYN retransmitted


def test_synack_retries_exhausted_frees_the_backlog() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, backlog=1)
    host.receive_packet(packet(syn()), 0)
    now = 0
    synacks = []
    for _ in range(100):
        synacks += [now for s in segments(host.packets_to_send(now)) if s.flags == S | A]
        deadline = host.next_deadline()
        if deadline is None:
            break
        now = deadline
        host.handle_timers(now)
    # The SYN-ACK and its synack_retries (5) retransmissions, RTO doubling from 1 s
    # (RFC 6298 (5.5)); the connection gives up one more RTO after the last (Linux).
    assert synacks == [0, 1 * SECOND, 3 * SECOND, 7 * SECOND, 15 * SECOND, 31 * SECOND]
    assert now == 63 * SECOND
    assert host.next_deadline() is None
    assert (lst.embryonic, lst.pending, host.connections()) == (0, 0, [])


# ------------------------------------------------------------------ fuzz

ports = st.sampled_from([LISTEN_PORT, PEER_PORT, 80, 1])
flags = st.integers(0, 255).map(Flags)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def tcp_segments(draw: st.DrawFn) -> TcpSegment:
    return TcpSegment(
        draw(ports),
        draw(ports),
        draw(st.one_of(u32, st.sampled_from([PEER_ISS, PEER_ISS + 1, LOCAL_ISS + 1]))),
        draw(st.one_of(u32, st.sampled_from([LOCAL_ISS, LOCAL_ISS + 1, 0]))),
        draw(flags),
        draw(st.integers(0, 65535)),
        draw(st.integers(0, 65535)),
        draw(st.binary(max_size=64)),
        mss=draw(st.none() | st.integers(0, 65535)),
        wscale=draw(st.none() | st.integers(0, 255)),
        sack_permitted=draw(st.booleans()),
        sack=draw(st.lists(st.tuples(u32, u32), max_size=3).map(tuple)),
        timestamps=draw(st.none() | st.tuples(u32, u32)),
    )


def established_host() -> Host:
    """A host with a listener, an accepted connection and one in SYN-RECEIVED."""
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT, backlog=4)
    host.receive_packet(packet(syn(PEER_PORT)), 0)
    host.receive_packet(packet(ack(PEER_PORT)), 0)
    host.receive_packet(packet(syn(80)), 0)
    host.connect((PEER, 1), 0, local_port=PEER_PORT)
    host.packets_to_send(0)
    assert lst.pending == 1
    return host


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tcp_segments(), min_size=1, max_size=8), st.integers(0, 10 * SECOND))
def test_fuzz_valid_segments_never_raise(segs: list[TcpSegment], step: int) -> None:
    host = established_host()
    now = 0
    for seg in segs:
        try:
            data = packet(seg)
        except ValueError:
            continue  # options that do not fit 40 bytes cannot be built: nothing to send
        now += step
        host.receive_packet(data, now)
        host.handle_timers(now)
        segments(host.packets_to_send(now))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    host = established_host()
    host.receive_packet(data, 1)
    host.receive_packet(Ipv4Header(PEER, LOCAL, PROTO_TCP).build(data), 1)
    host.receive_packet(Ipv4Header(PEER, LOCAL, PROTO_ICMP).build(data), 1)
    host.packets_to_send(1)


def fix_checksums(buf: bytearray) -> None:
    """Recompute the IPv4 header checksum and the TCP or ICMP checksum in place, where
    the (mutated) header still says where they are."""
    if len(buf) < 20:
        return
    ihl = (buf[0] & 0x0F) * 4
    if ihl < 20 or ihl > len(buf):
        return
    buf[10:12] = b"\0\0"
    buf[10:12] = internet_checksum(buf[:ihl]).to_bytes(2, "big")
    body = memoryview(buf)[ihl:]
    if buf[9] == PROTO_TCP and len(body) >= 18:
        body[16:18] = b"\0\0"
        src, dst = IPv4Address(bytes(buf[12:16])), IPv4Address(bytes(buf[16:20]))
        initial = pseudo_header_sum(src, dst, PROTO_TCP, len(body))
        body[16:18] = internet_checksum(body, initial).to_bytes(2, "big")
    elif buf[9] == PROTO_ICMP and len(body) >= 4:
        body[2:4] = b"\0\0"
        body[2:4] = internet_checksum(body).to_bytes(2, "big")
    body.release()


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_fuzz_mutated_packets_never_raise(data: st.DataObject) -> None:
    host = established_host()
    quoted = Ipv4Header(LOCAL, PEER, PROTO_TCP, total_length=60)
    icmp = IcmpError(TYPE_DEST_UNREACHABLE, 4, 1200, quoted, PEER_PORT, 1, LOCAL_ISS).build()
    seeds = [
        packet(syn()),
        packet(ack()),
        packet(replace(ack(), payload=b"hello", flags=A | P | F)),
        Ipv4Header(PEER, LOCAL, PROTO_ICMP).build(icmp),
        Ipv4Header(PEER, LOCAL, PROTO_ICMP).build(IcmpEcho(8, 1, 2, b"abc").build()),
    ]
    buf = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    if data.draw(st.booleans()):
        fix_checksums(buf)  # so that the mutation reaches past the checksums
    host.receive_packet(bytes(buf), 1)
    host.handle_timers(2 * SECOND)
    host.packets_to_send(2 * SECOND)


def test_fix_checksums_makes_a_packet_valid_again() -> None:
    # The mutation fuzzer relies on it to get past the checksums.
    for original in (packet(syn()), Ipv4Header(PEER, LOCAL, PROTO_ICMP).build(b"\x08\0\0\0ab")):
        buf = bytearray(original)
        buf[10:12] = b"\xff\xff"
        buf[22] ^= 0x55  # inside TCP (sequence number) or ICMP (identifier)
        fix_checksums(buf)
        ip, payload = Ipv4Header.parse(buf)
        assert (
            internet_checksum(
                payload,
                pseudo_header_sum(PEER, LOCAL, PROTO_TCP, len(payload))
                if ip.protocol == PROTO_TCP
                else 0,
            )
            == 0
        )


# ------------------------------------------------------------------ stateful fuzz


class HostMachine(RuleBasedStateMachine):
    """Random interleavings of user calls, peer segments aimed near each connection's
    window, ICMP errors and time. Nothing may raise but InvalidStateError from a user
    call; every packet out must parse; the listener queues stay within their bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.host, self.log = make_host()
        self.host.listen(LISTEN_PORT, backlog=2)
        self.now = 0
        self.conns: list[Connection] = []
        self.peer_seq: dict[int, int] = {}

    @rule(port=st.sampled_from([80, 81]))
    def connect(self, port: int) -> None:
        try:
            self.conns.append(self.host.connect((PEER, port), self.now))
        except OSError as exc:
            assert exc.errno == errno.EADDRNOTAVAIL

    @rule(port=st.integers(40_000, 40_005))
    def peer_syn(self, port: int) -> None:
        self.host.receive_packet(packet(syn(port)), self.now)
        for lst in self.host.listeners():
            self.conns.extend(c for c in self.host.connections() if c not in self.conns)
            assert lst.embryonic <= lst.backlog

    @rule(
        pick=st.integers(0, 1000),
        flags=st.sampled_from([A, A, A | P, A | F, A | P | F, R, R | A, S, S | A, F, 0]),
        seq_off=st.sampled_from([0, 0, 0, 1, -1, 100, -100, 2**31, 70_000]),
        ack_off=st.sampled_from([0, 0, 0, 1, -1, 2**31, -70_000]),
        payload=st.sampled_from([b"", b"x", b"hello world" * 10]),
        window=st.sampled_from([0, 1, 1000, 65535]),
    )
    def peer_segment(
        self, pick: int, flags: int, seq_off: int, ack_off: int, payload: bytes, window: int
    ) -> None:
        if not self.conns:
            return
        conn = self.conns[pick % len(self.conns)]
        tcb = conn.tcb
        seg = TcpSegment(
            conn.remote[1],
            conn.local[1],
            (tcb.rcv_nxt + seq_off) % 2**32,
            (tcb.snd_nxt + ack_off) % 2**32,
            Flags(flags),
            window,
            payload=payload,
        )
        self.host.receive_packet(packet(seg, src=conn.remote[0]), self.now)

    @rule(pick=st.integers(0, 1000))
    def peer_completes_handshake(self, pick: int) -> None:
        """The peer's side of a handshake: SYN-ACK to our SYN, ACK to our SYN-ACK."""
        if not self.conns:
            return
        conn = self.conns[pick % len(self.conns)]
        tcb = conn.tcb
        if conn.state == State.SYN_SENT:
            seg = TcpSegment(
                conn.remote[1], conn.local[1], PEER_ISS, tcb.snd_nxt, S | A, 65535, mss=1460
            )
        elif conn.state == State.SYN_RECEIVED:
            seg = TcpSegment(conn.remote[1], conn.local[1], tcb.rcv_nxt, tcb.snd_nxt, A, 65535)
        else:
            return
        self.host.receive_packet(packet(seg, src=conn.remote[0]), self.now)

    @rule(
        pick=st.integers(0, 1000),
        flags=st.sampled_from([A, A | F, A | P]),
        payload=st.sampled_from([b"", b"y" * 700]),
    )
    def peer_in_order(self, pick: int, flags: int, payload: bytes) -> None:
        """An in-window segment acknowledging everything: moves closes along."""
        if not self.conns:
            return
        conn = self.conns[pick % len(self.conns)]
        tcb = conn.tcb
        seg = TcpSegment(
            conn.remote[1],
            conn.local[1],
            tcb.rcv_nxt,
            tcb.snd_nxt,
            Flags(flags),
            65535,
            payload=payload,
        )
        self.host.receive_packet(packet(seg, src=conn.remote[0]), self.now)

    @rule(pick=st.integers(0, 1000), code=st.sampled_from([0, 1, 3, 4]))
    def icmp(self, pick: int, code: int) -> None:
        if not self.conns:
            return
        conn = self.conns[pick % len(self.conns)]
        quoted = Ipv4Header(conn.local[0], conn.remote[0], PROTO_TCP, total_length=60)
        err = IcmpError(
            TYPE_DEST_UNREACHABLE,
            code,
            1200 if code == 4 else None,
            quoted,
            conn.local[1],
            conn.remote[1],
            conn.tcb.snd_una,
        )
        self.host.receive_packet(Ipv4Header(OTHER, LOCAL, PROTO_ICMP).build(err.build()), self.now)

    @rule(
        pick=st.integers(0, 1000),
        call=st.sampled_from(["send", "receive", "shutdown", "close", "abort", "status"]),
    )
    def user_call(self, pick: int, call: str) -> None:
        if not self.conns:
            return
        conn = self.conns[pick % len(self.conns)]
        try:
            if call == "send":
                conn.send(b"data" * 100, self.now)
            elif call == "receive":
                conn.receive(1000, self.now)
            elif call == "status":
                conn.status(self.now)
            else:
                getattr(conn, call)(self.now)
        except InvalidStateError:
            pass
        while conn.next_event() is not None:
            pass

    @rule()
    def accept(self) -> None:
        for lst in self.host.listeners():
            lst.accept()

    @rule(dt=st.sampled_from([1 * MS, 40 * MS, 300 * MS, 2 * SECOND, 70 * SECOND]))
    def tick(self, dt: int) -> None:
        self.now += dt
        self.host.handle_timers(self.now)

    @invariant()
    def outputs_parse_and_queues_are_bounded(self) -> None:
        for data in self.host.packets_to_send(self.now):
            ip, payload = Ipv4Header.parse(bytes(data))
            assert ip.src == LOCAL
            if ip.protocol == PROTO_TCP:
                TcpSegment.parse(payload, ip.src, ip.dst)
        live = self.host.connections()
        assert all(not c.is_closed for c in live)
        self.conns = [c for c in self.conns if not c.is_closed]
        assert [c.id for c in live] == sorted(c.id for c in live)
        for lst in self.host.listeners():
            assert lst.embryonic <= lst.backlog
            assert lst.pending <= lst.backlog
        deadline = self.host.next_deadline()
        deadlines = [d for c in live if (d := c.next_deadline()) is not None]
        deadlines += [e.expires for e in self.host.path_mtus().values()]  # RFC 1191 §6.3
        deadlines += [r.deadline for r in self.host.time_waits()]  # compacted TIME-WAITs
        deadlines += [r.deadline for r in self.host.half_opens()]  # SYN-ACK timers
        assert deadline == (min(deadlines) if deadlines else None)


class CookieHostMachine(HostMachine):
    """The same, with SYN cookies answering SYNs beyond the backlog of 2."""

    def __init__(self) -> None:
        super().__init__()
        self.host, self.log = make_host(syn_cookies=True)
        self.host.listen(LISTEN_PORT, backlog=2)


HostMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_host_machine = HostMachine.TestCase
CookieHostMachine.TestCase.settings = HostMachine.TestCase.settings
test_cookie_host_machine = CookieHostMachine.TestCase


# ------------------------------------------------------------------ IPv6

LOCAL6 = IPv6Address("fd77::2")
PEER6 = IPv6Address("fd77::1")


def make_host6(**kw: object) -> Host:
    return Host(
        address=LOCAL,
        address6=LOCAL6,
        isn_secret=b"test secret",
        rng=random.Random(1),
        isn=lambda local, remote, now: LOCAL_ISS,
        **kw,  # type: ignore[arg-type]
    )


def packet6(seg: TcpSegment, src: IPv6Address = PEER6, dst: IPv6Address = LOCAL6) -> bytes:
    return Ipv6Header(src, dst, PROTO_TCP).build(seg.build(src, dst))


def segments6(packets: Sequence[bytes | Packet]) -> list[TcpSegment]:
    out = []
    for data in packets:
        ip6, payload = Ipv6Header.parse(bytes(data))
        assert (ip6.src, ip6.protocol, ip6.hop_limit) == (LOCAL6, PROTO_TCP, 64)
        out.append(TcpSegment.parse(payload, ip6.src, ip6.dst))
    return out


def test_ipv6_passive_open_accept_and_data() -> None:
    host = make_host6()
    lst = host.listen(LISTEN_PORT)  # all addresses: IPv4 and IPv6
    host.receive_packet(packet6(syn()), 0)
    [synack] = segments6(host.packets_to_send(0))
    # RFC 8200 §5: MSS = MTU - 40 (IPv6) - 20 (TCP).
    assert bare(synack) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS, PEER_ISS + 1, S | A, 0)
    assert synack.mss == 1440
    host.receive_packet(packet6(replace(ack(), payload=b"over six", flags=A | P)), 1 * MS)
    conn = lst.accept()
    assert conn is not None
    assert (conn.local, conn.remote) == ((LOCAL6, LISTEN_PORT), (PEER6, PEER_PORT))
    assert conn.receive(100, 1 * MS) == b"over six"
    conn.send(b"back", 1 * MS)
    [data] = segments6(host.packets_to_send(1 * MS))
    assert bytes(data.payload) == b"back"
    # The same port over IPv4 is a different 4-tuple, served by the same listener.
    host.receive_packet(packet(syn()), 2 * MS)
    assert [s.dst_port for s in segments(host.packets_to_send(2 * MS))] == [PEER_PORT]
    assert lst.embryonic == 1


def test_ipv6_orphan_rst_and_never_a_rst_to_a_rst() -> None:
    host = make_host6()
    host.receive_packet(packet6(syn()), 0)
    [rst] = segments6(host.packets_to_send(0))
    assert rst == TcpSegment(LISTEN_PORT, PEER_PORT, 0, PEER_ISS + 1, R | A, 0)
    host.receive_packet(packet6(TcpSegment(PEER_PORT, 80, 5, 6, R | A, 0)), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"no-connection": 1, "rst-no-connection": 1}


def test_ipv6_ping_is_answered() -> None:
    host = make_host6()
    request = IcmpEcho(128, 0x77, 3, b"ping six").build(PEER6, LOCAL6)
    host.receive_packet(Ipv6Header(PEER6, LOCAL6, PROTO_ICMPV6).build(request), 0)
    [reply] = host.packets_to_send(0)
    ip6, payload = Ipv6Header.parse(bytes(reply))
    assert (ip6.src, ip6.dst, ip6.protocol) == (LOCAL6, PEER6, PROTO_ICMPV6)
    assert bytes(payload) == IcmpEcho(129, 0x77, 3, b"ping six").build(LOCAL6, PEER6)


def test_ipv6_bad_packets_are_drops() -> None:
    host = make_host6()
    host.receive_packet(packet6(syn(), dst=IPv6Address("ff02::1")), 0)
    host.receive_packet(packet6(syn(), src=IPv6Address("ff02::2")), 0)
    host.receive_packet(packet6(syn(), src=LOCAL6), 0)
    host.receive_packet(packet6(syn())[:30], 0)
    bad = bytearray(packet6(syn()))
    bad[-1] ^= 1
    host.receive_packet(bad, 0)
    host.receive_packet(Ipv6Header(PEER6, LOCAL6, 17).build(bytes(12)), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {
        "not-for-us": 1,
        "bad-source": 2,
        "truncated": 1,
        "bad-checksum": 1,
        "unknown-protocol": 1,
    }


def test_ipv6_connect_needs_an_ipv6_address() -> None:
    host, _ = make_host()
    with pytest.raises(OSError) as info:
        host.connect((PEER6, 80), 0)
    assert info.value.errno == errno.EADDRNOTAVAIL


def synack6(conn: Connection) -> TcpSegment:
    return TcpSegment(
        conn.remote[1], conn.local[1], PEER_ISS, LOCAL_ISS + 1, S | A, 65535, mss=1440
    )


def test_icmpv6_port_unreachable_refuses_connect() -> None:
    host = make_host6()
    conn = host.connect((PEER6, 80), 0)
    assert conn.local[0] == LOCAL6
    [syn_out] = segments6(host.packets_to_send(0))
    quoted = Ipv6Header(LOCAL6, PEER6, PROTO_TCP, payload_length=40)
    err = Icmpv6Error(1, 4, None, quoted, conn.local[1], 80, syn_out.seq)  # port unreachable
    host.receive_packet(
        Ipv6Header(PEER6, LOCAL6, PROTO_ICMPV6).build(err.build(PEER6, LOCAL6)), 1 * MS
    )
    assert conn.error == "refused"


def test_icmpv6_packet_too_big_lowers_the_mss() -> None:
    host = make_host6()
    conn = host.connect((PEER6, 80), 0)
    host.packets_to_send(0)
    host.receive_packet(packet6(synack6(conn)), 1 * MS)
    conn.send(b"x" * 3000, 1 * MS)
    first = segments6(host.packets_to_send(1 * MS))
    assert [len(s.payload) for s in first if s.payload][:2] == [1440, 1440]
    quoted = Ipv6Header(LOCAL6, PEER6, PROTO_TCP, payload_length=1460)
    err = Icmpv6Error(2, 0, 1280, quoted, conn.local[1], 80, LOCAL_ISS + 1)
    host.receive_packet(
        Ipv6Header(PEER6, LOCAL6, PROTO_ICMPV6).build(err.build(PEER6, LOCAL6)), 2 * MS
    )
    # RFC 8201: segments now fit 1280 - 40 (IPv6) - 20 (TCP).
    assert conn.tcb.snd_mss == 1220


def test_ipv6_syn_cookie() -> None:
    host = make_host6(syn_cookies=True)
    lst = host.listen(LISTEN_PORT, backlog=1)
    host.receive_packet(packet6(syn(40_001)), 0)
    host.receive_packet(packet6(syn(40_002)), 0)
    [cookie] = [s for s in segments6(host.packets_to_send(0)) if s.dst_port == 40_002]
    assert (cookie.flags, cookie.mss, cookie.wscale) == (S | A, 1440, None)
    final = TcpSegment(40_002, LISTEN_PORT, PEER_ISS + 1, cookie.seq + 1, A, 65535)
    host.receive_packet(packet6(final), 1 * MS)
    conn = lst.accept()
    assert conn is not None
    assert (conn.state, conn.remote, conn.tcb.snd_mss) == (State.ESTABLISHED, (PEER6, 40_002), 1440)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_ipv6_fuzz_random_bytes_never_raise(data: bytes) -> None:
    host = make_host6()
    host.listen(LISTEN_PORT)
    host.receive_packet(b"\x60" + data, 1)
    host.receive_packet(Ipv6Header(PEER6, LOCAL6, PROTO_TCP).build(data), 1)
    host.receive_packet(Ipv6Header(PEER6, LOCAL6, PROTO_ICMPV6).build(data), 1)
    host.packets_to_send(1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tcp_segments(), min_size=1, max_size=8), st.integers(0, 10 * SECOND))
def test_ipv6_fuzz_valid_segments_never_raise(segs: list[TcpSegment], step: int) -> None:
    host = make_host6()
    lst = host.listen(LISTEN_PORT, backlog=4)
    host.receive_packet(packet6(syn(PEER_PORT)), 0)
    host.receive_packet(packet6(ack(PEER_PORT)), 0)
    host.connect((PEER6, 1), 0, local_port=PEER_PORT)
    host.packets_to_send(0)
    assert lst.pending == 1
    now = 0
    for seg in segs:
        try:
            data = packet6(seg)
        except ValueError:
            continue
        now += step
        host.receive_packet(data, now)
        host.handle_timers(now)
        segments6(host.packets_to_send(now))


# ------------------------------------------------------------------ against the kernel

KERNEL_SIDE = "10.77.0.1"  # the defaults of a Stack's first TUN in a fresh namespace
STACK_SIDE = "10.77.0.2"


@pytest.mark.netns
def test_kernel_ping_is_answered(netns: Netns) -> None:
    def body(t: StackThread, stack: Stack) -> int:
        t.run_until_stopped(stack)
        return stack.host.counters["icmp_out"]

    t = StackThread(body).start()
    request = IcmpEcho(TYPE_ECHO_REQUEST, 0x4242, 7, b"pytcp ping").build()
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw:
        raw.settimeout(BOUND)
        raw.sendto(request, (STACK_SIDE, 0))
        for _ in range(20):  # a raw socket sees every ICMP message: skip the others
            data, (addr, _) = raw.recvfrom(4096)
            _, payload = Ipv4Header.parse(data)
            message = parse_icmp(payload)
            if isinstance(message, IcmpEcho) and message.type == 0 and message.ident == 0x4242:
                replies.append((addr, message.seq, bytes(message.payload)))
                break
    assert replies == [(STACK_SIDE, 7, b"pytcp ping")]
    assert t.result() == 1


@pytest.mark.netns
def test_kernel_udp_gets_protocol_unreachable(netns: Netns) -> None:
    def body(t: StackThread, stack: Stack) -> dict[str, int]:
        t.run_until_stopped(stack)
        return stack.host.counters["drops"]

    t = StackThread(body).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(BOUND)
        udp.connect((STACK_SIDE, 9))
        udp.send(b"anyone?")
        # Linux maps ICMP protocol unreachable to ENOPROTOOPT on a connected socket.
        with pytest.raises(OSError) as info:
            udp.recv(100)
    assert info.value.errno == errno.ENOPROTOOPT
    assert t.result()["unknown-protocol"] == 1


def test_connection_reset_before_accept_is_still_accepted() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT)
    host.receive_packet(packet(syn()), 0)
    host.receive_packet(packet(ack()), 0)
    host.packets_to_send(0)
    rst = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 1, 0, R, 0)
    host.receive_packet(packet(rst), 1 * MS)
    host.packets_to_send(1 * MS)
    assert host.connections() == []
    conn = lst.accept()
    assert conn is not None
    assert (conn.state, conn.error) == (State.CLOSED, "reset")


# --------------------------------------------- neighbour discovery (RFC 4861) on a TUN


def _scapy_ns(src: str, dst: str, target: str, hlim: int = 255) -> bytes:
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6

    return bytes(IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=target))


def test_neighbour_solicitation_for_our_address_is_answered() -> None:
    from scapy.layers.inet6 import ICMPv6ND_NA, IPv6, in6_chksum

    host = make_host6()
    # Solicited-node multicast of fd77::2 (RFC 4291 §2.7.1), as a kernel would ask.
    host.receive_packet(_scapy_ns("fd77::1", "ff02::1:ff00:2", "fd77::2"), 0)
    [out] = host.packets_to_send(0)
    na = IPv6(bytes(out))
    assert (na.src, na.dst, na.hlim, na.nh) == ("fd77::2", "fd77::1", 255, 58)
    adv = na[ICMPv6ND_NA]
    assert (adv.type, adv.code, adv.R, adv.S, adv.O, adv.tgt) == (136, 0, 0, 1, 1, "fd77::2")
    assert bytes(adv.payload) == b""  # no link-layer address option: a TUN has none
    assert in6_chksum(58, na, bytes(adv)) == 0  # a checksum scapy verifies
    assert (host.counters["icmp_in"], host.counters["icmp_out"]) == (1, 1)
    assert host.counters["drops"] == {}


def test_duplicate_address_detection_is_defended_to_all_nodes() -> None:
    from scapy.layers.inet6 import ICMPv6ND_NA, IPv6

    host = make_host6()
    host.receive_packet(_scapy_ns("::", "ff02::1:ff00:2", "fd77::2"), 0)  # RFC 4862 §5.4.2
    [out] = host.packets_to_send(0)
    na = IPv6(bytes(out))
    assert (na.src, na.dst, na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O) == ("fd77::2", "ff02::1", 0, 1)


def test_link_housekeeping_is_taken_in_quietly() -> None:
    from scapy.layers.inet6 import (
        ICMPv6MLReport2,
        ICMPv6ND_RS,
        IPv6,
        IPv6ExtHdrHopByHop,
        RouterAlert,
    )

    log = TraceLog()
    host = make_host6(tracer=log)
    rs = IPv6(src="fe80::1", dst="ff02::2", hlim=255) / ICMPv6ND_RS()  # router solicitation
    mld = (
        IPv6(src="fe80::1", dst="ff02::16", hlim=1)
        / IPv6ExtHdrHopByHop(options=[RouterAlert()])
        / ICMPv6MLReport2()
    )
    other = _scapy_ns("fd77::1", "ff02::1:ff00:9", "fd77::9")  # someone else's address
    for pkt in (bytes(rs), bytes(mld), other):
        host.receive_packet(pkt, 0)
    assert host.packets_to_send(0) == []
    assert (host.counters["icmp_in"], host.counters["drops"], log.events) == (3, {}, [])
    # Forged from beyond a router (hop limit below 255): dropped with its reason.
    host.receive_packet(_scapy_ns("fd77::1", "fd77::2", "fd77::2", hlim=64), 0)
    bad = bytearray(_scapy_ns("fd77::1", "fd77::2", "fd77::2"))
    bad[-1] ^= 1
    host.receive_packet(bad, 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"icmp-nd-hop-limit": 1, "icmp-bad-checksum": 1}


# ------------------------------------- path MTU (RFC 1191, RFC 8201, RFC 5927, floors)


def established_client(host: Host, now: int = 0, *, timestamps: bool = False) -> Connection:
    """An active open to PEER:80 completed by a SYN-ACK with MSS 1460 (timestamps off
    unless asked): snd_mss 1460."""
    conn = host.connect((PEER, 80), now)
    host.packets_to_send(now)
    synack = TcpSegment(
        80, conn.local[1], PEER_ISS, LOCAL_ISS + 1, S | A, 65535, mss=1460,
        timestamps=(1, LOCAL_ISS) if timestamps else None,
    )  # fmt: skip
    host.receive_packet(packet(synack), now + 1 * MS)
    host.packets_to_send(now + 1 * MS)
    assert conn.state is State.ESTABLISHED
    return conn


def frag_needed(conn: Connection, mtu: int, seq: int, *, port: int | None = None) -> bytes:
    """ICMP fragmentation needed (type 3 code 4, RFC 1191 §4) from a router, quoting
    the header of one of our segments to conn's peer."""
    quoted = Ipv4Header(conn.local[0], conn.remote[0], PROTO_TCP, total_length=1500)
    lport = conn.local[1] if port is None else port
    err = IcmpError(TYPE_DEST_UNREACHABLE, 4, mtu, quoted, lport, conn.remote[1], seq)
    return Ipv4Header(OTHER, LOCAL, PROTO_ICMP).build(err.build())


def sent_ip(packets: Sequence[bytes | Packet]) -> list[tuple[bool, TcpSegment]]:
    """(DF, segment) of each packet, without segments()'s DF check."""
    out = []
    for data in packets:
        ip, payload = Ipv4Header.parse(bytes(data))
        out.append((ip.dont_fragment, TcpSegment.parse(payload, ip.src, ip.dst)))
    return out


def test_forged_frag_needed_mtu_68_leaves_the_mss_alone() -> None:
    host, _ = make_host()
    conn = established_client(host)
    conn.send(b"x" * 2920, 2 * MS)
    assert [len(s.payload) for s in segments(host.packets_to_send(2 * MS))] == [1460, 1460]
    # RFC 5927 §4.1: a blind attacker must guess a sequence number in SND.UNA..SND.NXT
    # (ISS+1 .. ISS+2920 here): the SYN's, SND.NXT itself and a far one all miss.
    for seq in (LOCAL_ISS, LOCAL_ISS + 1 + 2920, LOCAL_ISS + 1 + 100_000):
        host.receive_packet(frag_needed(conn, 68, seq), 3 * MS)
    host.receive_packet(frag_needed(conn, 68, LOCAL_ISS + 1, port=1), 3 * MS)  # no such 4-tuple
    assert host.packets_to_send(3 * MS) == []
    assert (conn.tcb.snd_mss, conn.path_mtu, host.path_mtus()) == (1460, 1500, {})
    assert host.counters["drops"] == {"icmp-no-connection": 1}
    assert conn.snapshot(3 * MS)["counters"]["drops"] == {"icmp-stale-seq": 3}


def test_genuine_frag_needed_mtu_68_is_floored_at_552_and_resends_at_512() -> None:
    host, _ = make_host()
    conn = established_client(host)
    conn.send(b"x" * 3000, 2 * MS)
    host.packets_to_send(2 * MS)
    host.receive_packet(frag_needed(conn, 68, LOCAL_ISS + 1), 3 * MS)
    # Linux's floor: min_pmtu 552 -> MSS 552 - 40 = 512; what was in flight is resent at
    # the new size from SND.UNA (RFC 1191 §6.3), DF cleared as Linux's locked MTU does.
    # cwnd follows the MSS (NewReno's set_mss: RFC 5681's initial window, 4 x 512).
    out = sent_ip(host.packets_to_send(3 * MS))
    assert [(df, s.seq - LOCAL_ISS - 1, len(s.payload)) for df, s in out] == [
        (False, 0, 512),
        (False, 512, 512),
        (False, 1024, 512),
        (False, 1536, 512),
    ]
    assert (conn.tcb.snd_mss, conn.path_mtu) == (512, 552)
    [(peer, learned)] = host.path_mtus().items()
    assert (peer, learned.mtu, learned.expires, learned.locked) == (
        PEER,
        552,
        3 * MS + 600 * SECOND,
        True,
    )
    options = conn.snapshot(3 * MS)["options"]
    assert (options["path_mtu"], options["path_mtu_expires"]) == (552, 600 * SECOND)
    # Another "MTU 68" cannot go lower: the floor is the estimate.
    host.receive_packet(frag_needed(conn, 68, LOCAL_ISS + 1), 4 * MS)
    assert conn.tcb.snd_mss == 512
    assert conn.snapshot(4 * MS)["counters"]["drops"] == {"icmp-mtu-not-lower": 1}


def test_frag_needed_with_timestamps_leaves_room_for_them() -> None:
    host, _ = make_host()
    conn = established_client(host, timestamps=True)
    assert conn.tcb.snd_mss == 1448
    conn.send(b"x" * 100, 2 * MS)
    host.packets_to_send(2 * MS)
    host.receive_packet(frag_needed(conn, 1000, LOCAL_ISS + 1), 3 * MS)
    assert (conn.tcb.snd_mss, conn.path_mtu) == (1000 - 40 - 12, 1000)
    [(df, resent)] = sent_ip(host.packets_to_send(3 * MS))
    assert (df, resent.seq, len(resent.payload)) == (True, LOCAL_ISS + 1, 100)  # DF kept


def test_learned_path_mtu_applies_to_every_connection_to_the_peer_and_expires() -> None:
    host, _ = make_host()
    first = established_client(host)
    second = established_client(host)
    first.send(b"x" * 2000, 2 * MS)
    host.packets_to_send(2 * MS)
    host.receive_packet(frag_needed(first, 1280, LOCAL_ISS + 1), 3 * MS)
    assert (first.tcb.snd_mss, second.tcb.snd_mss) == (1240, 1240)
    resent = segments(host.packets_to_send(3 * MS))
    # The 220 bytes beyond 1240 were sent before: resent with the 540 Nagle held.
    assert [(s.seq - LOCAL_ISS - 1, len(s.payload)) for s in resent] == [(0, 1240), (1240, 760)]
    # A new connection to the same peer offers the link's MSS but sends at the path's.
    third = host.connect((PEER, 81), 4 * MS)
    [syn_out] = segments(host.packets_to_send(4 * MS))
    assert syn_out.mss == 1460
    host.receive_packet(
        packet(TcpSegment(81, third.local[1], PEER_ISS, LOCAL_ISS + 1, S | A, 65535, mss=1460)),
        5 * MS,
    )
    assert third.tcb.snd_mss == 1240
    expires = 3 * MS + 600 * SECOND
    assert host.next_deadline() == min(
        d for d in [expires] + [c.next_deadline() for c in (first, second, third)] if d
    )
    host.handle_timers(expires - 1)
    assert [c.tcb.snd_mss for c in (first, second, third)] == [1240, 1240, 1240]
    host.handle_timers(expires)  # RFC 1191 §6.3: back to the link MTU, learn again if need be
    assert [c.tcb.snd_mss for c in (first, second, third)] == [1460, 1460, 1460]
    assert [c.snapshot(expires)["options"]["path_mtu"] for c in (first, second, third)] == [
        1500,
        1500,
        1500,
    ]
    assert host.path_mtus() == {}


def test_icmpv6_packet_too_big_below_1280_is_floored_at_1280() -> None:
    host = make_host6()
    conn = host.connect((PEER6, 80), 0)
    host.packets_to_send(0)
    host.receive_packet(packet6(synack6(conn)), 1 * MS)
    conn.send(b"x" * 2880, 1 * MS)
    assert [len(s.payload) for s in segments6(host.packets_to_send(1 * MS))] == [1440, 1440]
    quoted = Ipv6Header(LOCAL6, PEER6, PROTO_TCP, payload_length=1460)
    # Forged: a sequence number outside what is in flight changes nothing.
    err = Icmpv6Error(2, 0, 600, quoted, conn.local[1], 80, LOCAL_ISS + 5000)
    host.receive_packet(
        Ipv6Header(PEER6, LOCAL6, PROTO_ICMPV6).build(err.build(PEER6, LOCAL6)), 2 * MS
    )
    assert conn.tcb.snd_mss == 1440
    err = Icmpv6Error(2, 0, 600, quoted, conn.local[1], 80, LOCAL_ISS + 1)
    host.receive_packet(
        Ipv6Header(PEER6, LOCAL6, PROTO_ICMPV6).build(err.build(PEER6, LOCAL6)), 2 * MS
    )
    # RFC 8201 §4: never below the IPv6 minimum link MTU: 1280 - 40 - 20 = 1220.
    assert conn.tcb.snd_mss == 1220
    # The 2880 bytes in flight again at 1220.
    assert [len(s.payload) for s in segments6(host.packets_to_send(2 * MS))] == [1220, 1220, 440]
    assert conn.snapshot(2 * MS)["options"]["path_mtu"] == 1280
    assert [e.mtu for e in host.path_mtus().values()] == [1260]  # IPv4 terms inside
