"""Many connections at once over a lossy link: demultiplexing, listener queues and the
host's bookkeeping under load. Two client hosts open 12 connections each to one server
(backlog 8, so SYNs overflow the queues and are retried); every connection moves its own
bytes both ways and closes cleanly. Then a spoofed SYN flood against the backlog, with and
without SYN cookies.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from stack.io.impair import ImpairSpec
from stack.tcp.clock import MS, SECOND
from stack.tcp.connection import Connection
from stack.tcp.state import State
from stack.wire import PROTO_TCP, Flags, Ipv4Header, TcpSegment
from tests.sim.harness import App, Network

SERVER = IPv4Address("10.77.0.2")
CLIENTS = [IPv4Address("10.77.0.1"), IPv4Address("10.77.0.3")]
PORT = 7000
PER_CLIENT = 12
SIZE = 24 * 1024
FLOOD_CLIENTS = 6


def test_two_dozen_connections_through_a_small_backlog() -> None:
    spec = ImpairSpec(loss=0.03, dup=0.01, reorder=0.02, delay=2 * MS)
    net = Network([SERVER, *CLIENTS], spec, seed=5, mtu=1500)
    rng = random.Random(5)
    listener = net.hosts[SERVER].listen(PORT, backlog=8)
    clients: list[tuple[Connection, App]] = []
    for addr in CLIENTS:
        for _ in range(PER_CLIENT):
            conn = net.hosts[addr].connect((SERVER, PORT), net.now)
            clients.append((conn, App(rng.randbytes(SIZE))))
    expected = {(c.local[0], c.local[1]): app.payload for c, app in clients}
    assert len(expected) == 2 * PER_CLIENT
    servers: list[tuple[Connection, App]] = []

    def apps(now: int) -> None:
        # Accept one connection per step at most, so the accept queue really fills.
        conn = listener.accept()
        if conn is not None:
            servers.append((conn, App(bytes(reversed(expected[conn.remote])))))
        for conn, app in clients:
            app.step(conn, now, may_close=True)
        for conn, app in servers:
            app.step(conn, now, may_close=True, after_eof=True)

    def done() -> bool:
        return len(servers) == len(clients) and all(c.is_closed for c, _ in clients + servers)

    net.run(apps, done, max_iterations=400_000, max_time=1200 * SECOND)

    for conn, app in clients:
        assert conn.state == State.CLOSED
        assert conn.error is None
        assert bytes(app.received) == bytes(reversed(app.payload))
    for conn, app in servers:
        assert bytes(app.received) == expected[conn.remote]
        assert conn.error is None
    for host in net.hosts.values():
        assert host.connections() == []
        assert host.next_deadline() is None
    assert net.unroutable == 0
    assert (listener.pending, listener.embryonic) == (0, 0)
    assert listener.counters["accepted"] == 2 * PER_CLIENT


@pytest.mark.parametrize("syn_cookies", [True, False], ids=["cookies", "no-cookies"])
def test_syn_flood_with_and_without_cookies(syn_cookies: bool) -> None:
    # A spoofed SYN flood (from an address that never answers) fills the SYN backlog;
    # then 6 real clients connect (at one instant: fewer than the accept queue holds).
    # With SYN cookies (RFC 4987 §3.6) they get through at once; without, their SYNs are
    # dropped until the flood's embryonic connections are pruned: with the backlog full
    # and none of it young, Linux's reqsk_timer_handler allows them 2 SYN-ACK
    # retransmissions, not synack_retries (5, about a minute): 1 + 2 + 4 s.
    net = Network(
        [SERVER, CLIENTS[0]], ImpairSpec(delay=2 * MS), 8, mtu=1500, syn_cookies=syn_cookies
    )
    server_host = net.hosts[SERVER]
    listener = server_host.listen(PORT, backlog=8)
    spoofed = IPv4Address("10.77.0.99")
    for port in range(1000, 1008):
        syn = TcpSegment(port, PORT, port * 1000, 0, Flags.SYN, 65535, mss=1460)
        server_host.receive_packet(
            Ipv4Header(spoofed, SERVER, PROTO_TCP).build(syn.build(spoofed, SERVER)), 0
        )
    assert listener.embryonic == 8
    rng = random.Random(8)
    clients = [
        (net.hosts[CLIENTS[0]].connect((SERVER, PORT), 0), App(rng.randbytes(SIZE)))
        for _ in range(FLOOD_CLIENTS)
    ]
    servers: list[tuple[Connection, App]] = []
    established_at: list[int] = []

    def apps(now: int) -> None:
        while (conn := listener.accept()) is not None:
            servers.append((conn, App(b"")))
            established_at.append(now)
        for conn, app in clients:
            app.step(conn, now, may_close=True)
        for conn, app in servers:
            app.step(conn, now, may_close=True, after_eof=True)

    def done() -> bool:
        return len(servers) == len(clients) and all(c.is_closed for c, _ in clients + servers)

    net.run(apps, done, max_iterations=200_000, max_time=1200 * SECOND)
    received = {conn.remote: bytes(app.received) for conn, app in servers}
    for conn, app in clients:
        assert conn.error is None
        assert received[conn.local] == app.payload
    if syn_cookies:
        assert listener.counters["cookies_accepted"] == FLOOD_CLIENTS
        assert max(established_at) < 1 * SECOND
    else:
        assert listener.counters["cookies_sent"] == 0
        assert listener.counters["synack_pruned"] == 8
        assert 7 * SECOND < min(established_at) < 8 * SECOND
