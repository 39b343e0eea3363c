"""Host-level hardening (issue 14): martian sources dropped silently, IPv4 IDs that
reveal nothing across flows (RFC 6864, RFC 7739)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address

import pytest

from stack.host import Host, is_martian_source
from stack.tcp.clock import MS, SECOND
from stack.wire import Ipv4Header, TcpSegment
from tests.test_host import (
    LISTEN_PORT,
    LOCAL,
    PEER,
    A,
    make_host,
    make_host6,
    packet,
    packet6,
    syn,
)


@pytest.mark.parametrize(
    "src",
    ["127.0.0.1", "127.255.0.9", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.255",
     "255.255.255.255"],
)
def test_martian_ipv4_sources_get_no_answer(src: str) -> None:
    # RFC 1122 §3.2.1.3 MUST: a SYN from 127.0.0.1 arriving on the link gets no SYN-ACK.
    host, _ = make_host()
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(syn(), src=IPv4Address(src)), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"bad-source": 1}
    assert host.listeners()[0].embryonic == 0


def test_the_link_s_directed_broadcast_is_a_martian_source() -> None:
    # RFC 1122 §3.2.1.3 (c): {<Network>, -1} MUST NOT be a source; the host handed the
    # link's broadcast drops it as Linux does (its route back is a broadcast route).
    host, _ = make_host(broadcast=IPv4Address("10.77.0.255"))
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(syn(), src=IPv4Address("10.77.0.255")), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"bad-source": 1}
    host.receive_packet(packet(syn(), src=IPv4Address("10.77.0.254")), 0)  # an ordinary host
    assert len(host.packets_to_send(0)) == 1


@pytest.mark.parametrize("src", ["::1", "::", "ff02::1", "::ffff:10.77.0.1"])
def test_martian_ipv6_sources_get_no_answer(src: str) -> None:
    host = make_host6()
    host.listen(LISTEN_PORT)
    host.receive_packet(packet6(syn(), src=IPv6Address(src)), 0)
    assert host.packets_to_send(0) == []
    assert host.counters["drops"] == {"bad-source": 1}


@pytest.mark.parametrize(
    ("src", "martian"),
    [("10.77.0.1", False), ("1.0.0.0", False), ("126.255.255.255", False),
     ("128.0.0.0", False), ("223.255.255.255", False), ("240.0.0.1", False),
     ("fd77::1", False), ("::2", False), ("2001:db8::1", False)],
)
def test_ordinary_sources_are_not_martians(src: str, martian: bool) -> None:
    addr = IPv4Address(src) if "." in src and ":" not in src else IPv6Address(src)
    assert is_martian_source(addr) is martian


def _ids(host: Host, peer: IPv4Address, n: int, now: int) -> list[int]:
    """IPv4 IDs of `n` RSTs the host sends to `peer` (ACKs to a closed port)."""
    out = []
    for i in range(n):
        probe = TcpSegment(40_000 + i, 81, 1, 1000 + i, A, 1000)
        now += 1 * MS  # within the RST rate limit (1000/s)
        host.receive_packet(packet(probe, src=peer), now)
        (reply,) = host.packets_to_send(now)
        assert isinstance(reply, bytes)  # no offload: plain packets
        ip, _ = Ipv4Header.parse(reply)
        assert ip.dont_fragment
        out.append(ip.ident)
    return out


def test_ipv4_ids_say_nothing_about_traffic_to_other_peers() -> None:
    # An idle scan (nmap -sI) reads a zombie's ID twice and infers the packets it sent to
    # a third host in between. Per-flow counters keep the two apart.
    host, _ = make_host()
    zombie_prober, target = PEER, IPv4Address("10.77.0.3")
    first = _ids(host, zombie_prober, 2, 0)
    _ids(host, target, 50, 1 * SECOND)  # the host talks to someone else meanwhile
    later = _ids(host, zombie_prober, 2, 2 * SECOND)
    assert first[1] == (first[0] + 1) & 0xFFFF
    assert later == [(first[1] + 1) & 0xFFFF, (first[1] + 2) & 0xFFFF]  # untouched


def test_ipv4_ids_start_at_a_secret_dependent_place() -> None:
    def host(secret: bytes) -> Host:
        return Host(address=LOCAL, isn_secret=secret, rng=random.Random(1))

    # Same rng, other secret: another bucket for the same flow, another start.
    assert _ids(host(b"one secret"), PEER, 1, 0) != _ids(host(b"another secret"), PEER, 1, 0)


def test_rsts_to_segments_nobody_owns_are_rate_limited_host_wide() -> None:
    # A scan or a spoofed flood of ACKs to closed ports: at most RST_BURST at once, then
    # RST_PER_SECOND (1000/s); the rest are counted drops.
    host, _ = make_host()
    for i in range(80):
        host.receive_packet(packet(TcpSegment(40_000 + i, 81, 1, 1000, A, 1000)), 0)
    assert len(host.packets_to_send(0)) == 50
    assert host.counters["drops"]["rst-rate-limited"] == 30
    host.receive_packet(packet(TcpSegment(41_000, 81, 1, 1000, A, 1000)), 10 * MS)
    assert len(host.packets_to_send(10 * MS)) == 1  # 10 ms refilled 10 tokens
    host.receive_packet(packet(TcpSegment(41_001, 81, 1, 1000, A, 1000)), 1 * SECOND)
    assert len(host.packets_to_send(1 * SECOND)) == 1
    assert host.counters["rst_sent"] == 52
