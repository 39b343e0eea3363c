"""Random applications over a lossy link: many connections whose ends send, read,
shut down, close with unread data (RST) and abort at random moments, then close what
is left. Whatever happens, nothing raises but InvalidStateError from a user call the
state does not allow, and both hosts end with no connection and no timer.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from stack.io.impair import ImpairSpec
from stack.tcp.clock import MS, SECOND
from stack.tcp.connection import Connection
from stack.tcp.errors import InvalidStateError
from stack.tcp.state import State
from tests.sim.harness import Network

CLIENT = IPv4Address("10.77.0.1")
SERVER = IPv4Address("10.77.0.2")
PORT = 80
CONNECTIONS = 10
CHAOS_UNTIL = 30 * SECOND  # then every application closes what it still holds
TICK = 10 * MS  # the applications act at least this often while the chaos lasts


def act(conn: Connection, rng: random.Random, now: int) -> None:
    while conn.next_event() is not None:
        pass
    if conn.is_closed:
        return
    r = rng.random()
    try:
        # Per 10 ms tick: a connection lives a few seconds before one of the three
        # endings, long enough to move data through losses both ways first.
        if r < 0.3:
            conn.send(rng.randbytes(rng.randrange(1, 5000)), now)
        elif r < 0.6:
            conn.receive(rng.randrange(1, 5000), now)
        elif r < 0.602:
            conn.shutdown(now)
        elif r < 0.603:
            conn.close(now)
        elif r < 0.6035:
            conn.abort(now)
    except InvalidStateError:
        pass  # the call is not allowed in this state (state.USER_CALLS): fine


@pytest.mark.parametrize("seed", range(1, 21))
def test_random_applications_leave_nothing_behind(seed: int) -> None:
    rng = random.Random(seed)
    spec = ImpairSpec(loss=0.05, dup=0.02, reorder=0.05, delay=3 * MS)
    net = Network([CLIENT, SERVER], spec, seed, mtu=1500)
    listener = net.hosts[SERVER].listen(PORT, backlog=4)
    conns = [net.hosts[CLIENT].connect((SERVER, PORT), 0) for _ in range(CONNECTIONS)]

    def apps(now: int) -> None:
        while (accepted := listener.accept()) is not None:
            conns.append(accepted)
        for conn in conns:
            act(conn, rng, now)
            if now > CHAOS_UNTIL and conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                conn.close(now)

    def done() -> bool:
        # TIME-WAIT records too: the connections closed by their application live on there.
        # Half-open records too: a SYN-RECEIVED whose peer went is no connection yet.
        return all(
            not host.connections() and not host.time_waits() and not host.half_opens()
            for host in net.hosts.values()
        )

    def wake() -> int | None:
        return net.now + TICK if net.now < CHAOS_UNTIL else None

    net.run(apps, done, max_iterations=300_000, max_time=2000 * SECOND, wake=wake)
    for conn in conns:
        assert conn.is_closed
        assert conn.error in (None, "reset", "timed out")
    for host in net.hosts.values():
        assert host.next_deadline() is None
