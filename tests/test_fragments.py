"""IP fragment reassembly (issue 14; RFC 1122 §3.3.2 MUST, RFC 791/815, RFC 8200 §4.5,
RFC 5722): a segment in fragments reaches its connection, memory is bounded, overlaps
drop the whole datagram, every drop is counted."""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from stack.fragments import MAX_BYTES, MAX_DATAGRAMS, TIMEOUT_V4, Reassembler
from stack.host import Host
from stack.tcp.clock import MS
from stack.wire import PROTO_TCP, Flags, TcpSegment
from stack.wire.ipv6 import Ipv6Header
from tests.test_host import (
    LISTEN_PORT,
    LOCAL,
    LOCAL6,
    PEER,
    PEER6,
    PEER_ISS,
    make_host,
    make_host6,
    syn,
)

A, P = Flags.ACK, Flags.PSH
_V4 = struct.Struct("!BBHHHBBH4s4s")


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fragments4(datagram: bytes, cuts: list[tuple[int, int]], ident: int = 7,
               src: IPv4Address = PEER, dst: IPv4Address = LOCAL) -> list[bytes]:
    """IPv4 fragments of `datagram` (the payload after the IP header): (offset, length)."""
    out = []
    for offset, length in cuts:
        more = offset + length < len(datagram)
        frag = (offset // 8) | (0x2000 if more else 0)
        body = datagram[offset : offset + length]
        header = _V4.pack(0x45, 0, 20 + len(body), ident, frag, 64, PROTO_TCP, 0,
                          src.packed, dst.packed)  # fmt: skip
        header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
        out.append(header + body)
    return out


def established(host: Host) -> tuple[int, TcpSegment]:
    """An accepted connection on the listener; returns its next expected SEG.SEQ and a
    template of the peer's data segment."""
    lst = host.listen(LISTEN_PORT)
    from tests.test_host import ack, packet

    host.receive_packet(packet(syn()), 0)
    host.packets_to_send(0)  # the SYN-ACK (it sets the window the peer may fill)
    host.receive_packet(packet(ack()), 0)
    assert lst.accept() is not None
    host.packets_to_send(0)
    return PEER_ISS + 1, TcpSegment(40_000, LISTEN_PORT, PEER_ISS + 1, 10_001, A | P, 65535)


def test_a_segment_in_two_fragments_is_reassembled_and_delivered() -> None:
    # The probe of issue 14: a 1000-byte segment in two fragments, as Linux delivers it.
    host, _ = make_host()
    _, template = established(host)
    seg = TcpSegment(template.src_port, template.dst_port, template.seq, template.ack,
                     template.flags, 65535, payload=bytes(range(250)) * 4)  # fmt: skip
    tcp = seg.build(PEER, LOCAL)
    first, second = fragments4(tcp, [(0, 512), (512, len(tcp) - 512)])
    host.receive_packet(second, 1 * MS)  # out of order too
    assert host.connections()[0].readable == 0
    host.receive_packet(first, 2 * MS)
    (conn,) = host.connections()
    assert conn.receive(2000, 2 * MS) == bytes(range(250)) * 4
    c = host.counters
    assert (c["fragments_in"], c["reassembled"], c["packets_in"]) == (2, 1, 4)
    assert len(host._fragments) == 0 and host._fragments.held == 0  # nothing held


def fragments6(tcp: bytes, cuts: tuple[tuple[int, int], ...], ident: int = 99) -> list[bytes]:
    out = []
    for offset, length in cuts:
        more = offset + length < len(tcp)
        fh = struct.pack("!BBHI", PROTO_TCP, 0, offset | (1 if more else 0), ident)
        out.append(Ipv6Header(PEER6, LOCAL6, 44).build(fh + tcp[offset : offset + length]))
    return out


def test_ipv6_fragments_are_reassembled() -> None:
    host = make_host6()
    host.listen(LISTEN_PORT)
    tcp = syn().build(PEER6, LOCAL6)  # 24 bytes: 16 + 8, the TCP header first
    for f in fragments6(tcp, ((0, 16), (16, len(tcp) - 16))):
        host.receive_packet(f, 0)
    # A first fragment of 16 bytes does not hold the fixed TCP header (20): discarded.
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"fragment-header-incomplete": 1}
    tcp = replace(syn(), payload=b"x" * 16).build(PEER6, LOCAL6)  # 40 bytes: 24 + 16
    for f in fragments6(tcp, ((0, 24), (24, len(tcp) - 24)), ident=100):
        host.receive_packet(f, 0)
    (synack,) = host.packets_to_send(0)
    assert host.listeners()[0].embryonic == 1
    assert host.counters["reassembled"] == 1
    assert synack


@pytest.mark.parametrize(
    ("cuts", "reason"),
    [
        ([(0, 16), (8, 16)], "fragment-overlap"),  # overlaps the first
        ([(8, 16), (0, 16)], "fragment-overlap"),
        ([(0, 12)], "fragment-bad-length"),  # not a multiple of 8 with MF set
    ],
)
def test_overlapping_or_malformed_fragments_drop_the_datagram(
    cuts: list[tuple[int, int]], reason: str
) -> None:
    host, _ = make_host()
    datagram = bytes(64)
    for f in fragments4(datagram, cuts):
        host.receive_packet(f, 0)
    assert host.counters["drops"][reason] == 1
    # RFC 5722: later fragments of that datagram go too, even ones that would complete it.
    for f in fragments4(datagram, [(0, 32), (32, 32)]):
        host.receive_packet(f, 1 * MS)
    assert host.counters["reassembled"] == 0
    assert host.counters["drops"]["fragment-of-overlapped"] == 2


def test_an_exact_duplicate_fragment_is_dropped_alone() -> None:
    host, _ = make_host()
    established(host)
    r = Reassembler()
    assert r.add("k", 0, True, bytes(8), 0, TIMEOUT_V4) == (None, None)
    assert r.add("k", 0, True, bytes(8), 1, TIMEOUT_V4) == (None, "fragment-duplicate")
    assert r.add("k", 8, False, b"xy", 2, TIMEOUT_V4) == (bytes(8) + b"xy", None)


def test_ping_of_death_is_refused() -> None:
    r = Reassembler()
    assert r.add("k", 65528, False, bytes(16), 0, TIMEOUT_V4) == (None, "fragment-too-big")


def test_incomplete_datagrams_time_out_and_free_their_memory() -> None:
    host, _ = make_host()
    (first, _second) = fragments4(bytes(64), [(0, 32), (32, 32)])
    host.receive_packet(first, 0)
    assert host._fragments.held == 32
    assert host.next_deadline() == TIMEOUT_V4
    host.handle_timers(TIMEOUT_V4)
    assert (host._fragments.held, len(host._fragments)) == (0, 0)
    assert host.counters["drops"]["fragment-timeout"] == 1
    assert host.next_deadline() is None


def test_memory_held_by_fragments_is_bounded() -> None:
    r = Reassembler()
    # A flood of first fragments that never complete: at most MAX_DATAGRAMS held, and
    # never more than MAX_BYTES (the oldest goes first when bytes run out).
    for ident in range(10 * MAX_DATAGRAMS):
        assert r.add(ident, 0, True, bytes(32 * 1024), ident, TIMEOUT_V4) == (None, None)
        assert r.held <= MAX_BYTES and len(r) <= MAX_DATAGRAMS
    assert len(r) == MAX_BYTES // (32 * 1024)  # the newest ones: the oldest made room
    for ident in range(10 * MAX_DATAGRAMS, 11 * MAX_DATAGRAMS):  # small: the count binds
        r.add(ident, 0, True, bytes(8), 10 * MAX_DATAGRAMS, TIMEOUT_V4)
    assert len(r) == MAX_DATAGRAMS
    assert r.add("late", 0, True, bytes(8), 10 * MAX_DATAGRAMS, TIMEOUT_V4) == (
        None, "fragment-limit",
    )  # fmt: skip
    held = len(r)
    assert r.expire(11 * MAX_DATAGRAMS + TIMEOUT_V4) == held
    assert (len(r), r.held) == (0, 0)
