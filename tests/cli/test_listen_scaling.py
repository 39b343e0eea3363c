"""`listen -k` with many idle clients: a segment on one client costs the same however
many others are connected (issue 14). The session runs on a real Stack over a PairLink,
its stdout /dev/null (every write completes at once, as in `make bench`), and what is
counted is the relays it pumps, never a time."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from typing import Any

import pytest

from pytcpcli.app import App
from pytcpcli.commands.listen import ListenSession
from pytcpcli.relay import Relay
from stack.api import Socket, Stack
from stack.io.link import PairLink
from stack.io.loop import Loop

WAIT = 30.0


@pytest.fixture
def stacks() -> Iterator[tuple[Stack, Stack, Loop]]:
    a, b = PairLink.pair(limit=1 << 16)
    loop = Loop()
    peer = Stack(link=a, loop=loop, addr="10.77.0.1", gateway="10.77.0.2/24", seed=1)
    ours = Stack(link=b, loop=loop, addr="10.77.0.2", gateway="10.77.0.1/24", seed=2)
    with peer, ours:
        yield peer, ours, loop
        for sock in peer.sockets() + ours.sockets():
            if isinstance(sock, Socket):
                sock.abort()
            else:
                sock.close()
        loop.run_once(0)
    a.close()
    b.close()
    loop.close()


def relays_pumped(
    n_idle: int, stacks: tuple[Stack, Stack, Loop], monkeypatch: pytest.MonkeyPatch
) -> tuple[set[int], int]:
    """`n_idle` idle clients and one busy one sending 100 KB to `listen -k`; the relays
    (by id) the session pumped meanwhile, and how many bytes reached its stdout."""
    peer, ours, loop = stacks
    stdin_r, stdin_w = os.pipe()  # stdin stays silent, as in the bench
    devnull = os.open(os.devnull, os.O_WRONLY)
    app = App(stdin_fd=stdin_r, stdout_fd=devnull, serve_control=False)
    listener = ours.listen(5000, backlog=n_idle + 8)
    session = ListenSession(app, ours, listener, keep_open=True, max_conns=None,
                            command=None, crlf=False, time_wait=0, verbose=0)  # fmt: skip
    try:
        listener.on_change(session._on_listener_change)  # as ListenSession.run does
        idle = [peer.start_connect("10.77.0.2", 5000) for _ in range(n_idle)]
        assert loop.run_until(lambda: len(session.clients) == n_idle, WAIT)
        busy = peer.connect("10.77.0.2", 5000, timeout=WAIT)
        assert loop.run_until(lambda: len(session.clients) == n_idle + 1, WAIT)
        relay = list(session.clients)[-1].relay
        pumped: set[int] = set()
        original = Relay._pump_once  # what every pump runs (sockets hold bound pumps)

        def counted(self: Relay) -> None:
            pumped.add(id(self))
            original(self)

        monkeypatch.setattr(Relay, "_pump_once", counted)
        busy.settimeout(WAIT)
        busy.sendall(b"q" * 100_000)
        assert loop.run_until(lambda: relay.received == 100_000, WAIT)
        monkeypatch.undo()
        assert pumped == {id(relay)}  # the idle clients' relays are never pumped
        assert all(s.state == "ESTABLISHED" for s in idle)
        return pumped, relay.received
    finally:
        session.signals.close()
        for fd in (stdin_r, stdin_w, devnull):
            os.close(fd)


def test_a_busy_client_pumps_only_its_own_relay(
    stacks: tuple[Stack, Stack, Loop], monkeypatch: pytest.MonkeyPatch
) -> None:
    pumped, received = relays_pumped(200, stacks, monkeypatch)
    assert (len(pumped), received) == (1, 100_000)


def test_with_one_client_too(stacks: tuple[Stack, Stack, Loop], monkeypatch: Any) -> None:
    pumped, received = relays_pumped(0, stacks, monkeypatch)
    assert (len(pumped), received) == (1, 100_000)


def test_a_departed_client_is_let_go_at_once_and_its_time_wait_is_a_record(
    stacks: tuple[Stack, Stack, Loop],
) -> None:
    # `listen -k` with stdin at EOF: pytcp closes first and ends in TIME-WAIT. The host
    # keeps that as a compact record for 2·MSL, so the session does not hold the whole
    # connection for its --time-wait linger (an hour here: only letting go at once
    # passes), and the close scans no list of clients (issue 14).
    peer, ours, loop = stacks
    stdin_r, stdin_w = os.pipe()
    os.close(stdin_w)  # stdin at EOF: a FIN for every client
    devnull = os.open(os.devnull, os.O_WRONLY)
    app = App(stdin_fd=stdin_r, stdout_fd=devnull, serve_control=False)
    listener = ours.listen(5000, backlog=8)
    session = ListenSession(app, ours, listener, keep_open=True, max_conns=None,
                            command=None, crlf=False, time_wait=3600.0, verbose=0)  # fmt: skip
    try:
        listener.on_change(session._on_listener_change)
        for _ in range(3):
            client = peer.connect("10.77.0.2", 5000, timeout=WAIT)
            client.settimeout(WAIT)
            while client.recv(4096):
                pass  # pytcp's FIN
            client.close()
        assert loop.run_until(
            lambda: not session.clients and len(ours.host.time_waits()) == 3, WAIT
        )
        assert ours.host.connections() == [] and session._closing == {}
        # The records keep no reference to the connections that were let go (a client's
        # relay and its callbacks are a cycle: gone at the collector's next pass).
        gc.collect()
        assert all(record._conn is None for record in ours.host.time_waits())
    finally:
        session.signals.close()
        for fd in (stdin_r, devnull):
            os.close(fd)
