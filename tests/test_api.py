"""stack/api.py without root: two Stacks over a PairLink pair, driven by one shared Loop."""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import ListeningSocket, Socket, Stack, StackEnvironmentError, TcpConfig
from stack.io.link import PairLink
from stack.io.loop import Loop

CLIENT = "10.77.0.2"
SERVER = "10.77.0.1"
PORT = 5000
WAIT = 10.0  # bounds every blocking call: a hung test fails instead of hanging


@pytest.fixture
def pair() -> Iterator[tuple[Stack, Stack]]:
    a, b = PairLink.pair()
    loop = Loop()
    client = Stack(link=a, loop=loop, addr=CLIENT, gateway=f"{SERVER}/24", seed=1)
    server = Stack(link=b, loop=loop, addr=SERVER, gateway=f"{CLIENT}/24", seed=2)
    with client, server:
        yield client, server
        # Close while both stacks still answer each other: a stack that has left the
        # shared loop cannot ACK the other's FIN, which would then linger CLOSE_LINGER.
        if not (client.closed or server.closed):
            for sock in client.sockets() + server.sockets():
                sock.close()
            hosts = (client.host, server.host)
            loop.run_until(
                lambda: all(
                    str(c.state) in ("CLOSED", "TIME-WAIT") for h in hosts for c in h.connections()
                ),
                WAIT,
            )
    a.close()
    b.close()
    loop.close()


def connected(pair: tuple[Stack, Stack]) -> tuple[Socket, Socket, ListeningSocket]:
    client, server = pair
    listener = server.listen(PORT)
    sock = client.connect(SERVER, PORT, timeout=WAIT)
    accepted = listener.accept(timeout=WAIT)
    assert accepted is not None
    for s in (sock, accepted):
        s.settimeout(WAIT)
    return sock, accepted, listener


def test_public_names() -> None:
    import stack
    from stack.io.tun import StackEnvironmentError as TunError
    from stack.tcp.config import TcpConfig as RealConfig

    assert stack.__all__ == [
        "ListeningSocket",
        "Socket",
        "Stack",
        "StackEnvironmentError",
        "TcpConfig",
    ]
    assert (StackEnvironmentError, TcpConfig) == (TunError, RealConfig)
    assert issubclass(StackEnvironmentError, OSError)
    with pytest.raises(AttributeError):
        _ = stack.Nothing


def test_connect_accept_exchange_close(pair: tuple[Stack, Stack]) -> None:
    client, server = pair
    sock, accepted, listener = connected(pair)
    pid = os.getpid()
    assert listener.id == f"{pid}.1"
    assert (sock.id, accepted.id) == (f"{pid}.1", f"{pid}.2")
    assert sock.local == (CLIENT, sock.local[1]) and 32768 <= sock.local[1] <= 60999
    assert (sock.remote, accepted.local, accepted.remote) == (
        (SERVER, PORT),
        (SERVER, PORT),
        sock.local,
    )
    assert (sock.state, accepted.state) == ("ESTABLISHED", "ESTABLISHED")
    assert client.sockets() == [sock] and server.sockets() == [listener, accepted]
    sock.sendall(b"hello, ")
    assert sock.send(b"world") == 5
    got = b""
    while len(got) < 12:
        got += accepted.recv(100)
    assert got == b"hello, world"
    accepted.sendall(b"x" * 300_000)  # more than the buffers: sendall runs the loop
    total = 0
    while total < 300_000:
        total += len(sock.recv(1 << 20))
    assert total == 300_000
    sock.close()
    assert accepted.recv(10) == b""  # the FIN
    assert accepted.at_eof
    accepted.close()
    assert client.run_until(lambda: sock.state == "TIME-WAIT", WAIT)
    assert server.run_until(lambda: accepted.connection.is_closed, WAIT)
    assert sock.info()["state"] == "TIME-WAIT"
    assert client.sockets() == [] and server.sockets() == [listener]
    with pytest.raises(OSError) as exc:
        sock.recv(1)
    assert (exc.value.errno, exc.value.strerror) == (errno.EBADF, "socket is closed")


def test_connect_refused(pair: tuple[Stack, Stack]) -> None:
    client, _ = pair
    with pytest.raises(ConnectionRefusedError) as exc:
        client.connect(SERVER, 7, timeout=WAIT)
    assert str(exc.value) == f"[Errno 111] connection to {SERVER}:7 refused"
    assert client.sockets() == []


def test_connect_to_loopback_says_where_the_kernel_is(pair: tuple[Stack, Stack]) -> None:
    client, _ = pair
    with pytest.raises(OSError) as exc:
        client.connect("localhost", PORT)
    assert exc.value.errno == errno.ENETUNREACH
    assert exc.value.strerror == (
        f"localhost is a loopback address, which the stack cannot reach: the kernel is at {SERVER}"
    )


def test_connect_timeout_aborts() -> None:
    a, b = PairLink.pair()  # nobody drives b: the SYN is never answered
    try:
        with Stack(link=a, addr=CLIENT, seed=3) as client:
            with pytest.raises(TimeoutError) as exc:
                client.connect(SERVER, PORT, timeout=0.3)
            assert (
                str(exc.value) == f"[Errno 110] connection to {SERVER}:{PORT} timed out after 0.3 s"
            )
            assert client.sockets() == []
            assert client.host.connections() == []
    finally:
        a.close()
        b.close()


def test_nonblocking_send_recv(pair: tuple[Stack, Stack]) -> None:
    client, _ = pair
    sock, accepted, _ = connected(pair)
    accepted.setblocking(False)
    with pytest.raises(BlockingIOError):
        accepted.recv(10)
    sock.setblocking(False)
    queued = 0
    with pytest.raises(BlockingIOError):
        while True:
            n = sock.send(b"y" * 65536)
            assert n > 0
            queued += n
    assert sock.writable == 0
    assert queued == TcpConfig().snd_buf
    assert client.run_until(lambda: accepted.readable > 0, WAIT)
    assert accepted.recv(10) == b"yyyyyyyyyy"


def test_on_change_fires_on_data_and_stops_when_cleared(pair: tuple[Stack, Stack]) -> None:
    client, _ = pair
    sock, accepted, listener = connected(pair)
    calls: list[int] = []
    accepted.on_change(lambda: calls.append(accepted.readable))
    sock.send(b"abc")
    assert client.run_until(lambda: bool(calls) and calls[-1] == 3, WAIT)
    accepted.on_change(None)
    before = len(calls)
    sock.send(b"def")
    assert client.run_until(lambda: accepted.readable == 6, WAIT)
    assert len(calls) == before
    accepts: list[int] = []
    listener.on_change(lambda: accepts.append(listener.pending))
    second = client.connect(SERVER, PORT, timeout=WAIT)
    assert client.run_until(lambda: accepts == [1], WAIT)
    assert listener.accept(timeout=0) is not None
    assert listener.accept(timeout=0) is None
    second.close()


def test_a_socket_accepted_after_its_data_came_is_told_of_it(pair: tuple[Stack, Stack]) -> None:
    # The stack tells only the sockets of connections something happened to (issue 14);
    # what happened before the socket existed, or before it had a callback, is still
    # told on the next iteration, without any new segment.
    client, server = pair
    listener = server.listen(PORT)
    sock = client.connect(SERVER, PORT, timeout=WAIT)
    sock.send(b"early")
    assert client.run_until(lambda: listener.pending == 1, WAIT)
    conn = listener.listener._accept_queue[0]
    assert client.run_until(lambda: conn.readable == 5, WAIT)
    accepted = listener.accept(timeout=0)
    assert accepted is not None
    calls: list[int] = []
    accepted.on_change(lambda: calls.append(accepted.readable))
    server.run_once(0)
    assert calls == [5]
    sock.close()
    accepted.close()


def test_listener_on_change_tells_every_arrival_when_the_callback_accepts(
    pair: tuple[Stack, Stack],
) -> None:
    # `listen -k` accepts inside the callback, so the queue goes 0 -> 1 -> 0 each time:
    # the third client, like the second, brings it back to 1 and must be told.
    client, _ = pair
    _sock, _accepted, listener = connected(pair)
    accepted: list[Socket] = []

    def take() -> None:
        got = listener.accept(timeout=0)
        if got is not None:
            accepted.append(got)

    listener.on_change(take)
    clients: list[Socket] = []

    def all_accepted() -> bool:
        return len(accepted) == len(clients)

    for n in range(3):
        clients.append(client.connect(SERVER, PORT, timeout=WAIT))
        assert client.run_until(all_accepted, WAIT), n
    for c in clients:
        c.close()


def test_peer_abort_is_connection_reset(pair: tuple[Stack, Stack]) -> None:
    sock, accepted, _ = connected(pair)
    accepted.abort()
    assert accepted.closed
    with pytest.raises(ConnectionResetError) as exc:
        sock.recv(10)
    assert str(exc.value) == f"[Errno 104] connection to {SERVER}:{PORT} reset by peer"
    assert isinstance(sock.error, ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        sock.send(b"late")
    with pytest.raises(ConnectionResetError):
        sock.shutdown(socket.SHUT_WR)


def test_shutdown_half_close(pair: tuple[Stack, Stack]) -> None:
    sock, accepted, _ = connected(pair)
    sock.sendall(b"last words")
    sock.shutdown(socket.SHUT_WR)
    sock.shutdown(socket.SHUT_WR)  # twice is harmless, as for a kernel socket
    with pytest.raises(BrokenPipeError):
        sock.send(b"more")
    got = b""
    while chunk := accepted.recv(100):
        got += chunk
    assert got == b"last words"
    assert accepted.state == "CLOSE-WAIT"
    accepted.sendall(b"reply after EOF")
    assert sock.recv(100) == b"reply after EOF"
    assert sock.writable == 0


def test_accept_timeout_and_closed_listener(pair: tuple[Stack, Stack]) -> None:
    _, server = pair
    listener = server.listen(PORT)
    assert listener.accept(timeout=0.05) is None
    listener.close()
    assert listener.state == "CLOSED"
    with pytest.raises(OSError) as exc:
        listener.accept(timeout=0)
    assert exc.value.errno == errno.EBADF


def test_stack_close_finishes_connections(pair: tuple[Stack, Stack]) -> None:
    client, server = pair
    sock, accepted, _ = connected(pair)
    sock.sendall(b"bye")
    client.close()
    assert client.closed and sock.closed
    assert accepted.recv(10) == b"bye"
    assert accepted.recv(10) == b""
    with pytest.raises(OSError) as exc:
        client.connect(SERVER, PORT)
    assert exc.value.strerror == "stack is not open (use `with Stack() as stack:`)"
    # The client's stack is gone, so nobody will ever acknowledge the server's FIN:
    # linger=0 resets at once instead of waiting CLOSE_LINGER.
    conn = accepted.connection
    server.close(linger=0)
    assert accepted.closed and conn.is_closed


def test_stack_exit_on_exception_resets(pair: tuple[Stack, Stack]) -> None:
    client, _ = pair
    _, accepted, _ = connected(pair)
    with pytest.raises(RuntimeError), client:
        raise RuntimeError("boom")
    with pytest.raises(ConnectionResetError):
        accepted.recv(10)


def test_pcap_records_the_handshake(tmp_path: Path) -> None:
    import scapy.layers.inet  # noqa: F401 - registers LINKTYPE_RAW with the reader
    from scapy.utils import rdpcap

    a, b = PairLink.pair()
    loop = Loop()
    path = tmp_path / "s.pcap"
    try:
        with (
            Stack(link=a, loop=loop, addr=CLIENT, pcap=str(path), seed=4) as client,
            Stack(link=b, loop=loop, addr=SERVER, seed=5) as server,
        ):
            listener = server.listen(PORT)
            sock = client.connect(SERVER, PORT, timeout=WAIT)
            assert listener.accept(timeout=WAIT) is not None
            sock.abort()
            client.run_once(0)
        packets = rdpcap(str(path))
        assert [str(p["TCP"].flags) for p in packets] == ["S", "SA", "A", "R"]
        assert [p["IP"].src for p in packets] == [CLIENT, SERVER, CLIENT, CLIENT]
    finally:
        a.close()
        b.close()
        loop.close()


def test_impair_seeds_each_direction() -> None:
    # --impair draws outgoing packets from Random(seed) and incoming ones from
    # Random(seed-in), or from Random(~seed) without one: two runs that move data in
    # opposite directions can give it the same draws (the loss figure does).
    for text, seed_in in (("loss=3%,seed=7,seed-in=1007", 1007), ("loss=3%,seed=7", ~7)):
        a, b = PairLink.pair()
        try:
            with Stack(link=a, impair=text, seed=1) as stack:
                assert stack.impairers is not None
                out, inc = stack.impairers
                assert out.rng.getstate() == random.Random(7).getstate()
                assert inc.rng.getstate() == random.Random(seed_in).getstate()
        finally:
            a.close()
            b.close()


def test_bad_options() -> None:
    with pytest.raises(ValueError) as exc:
        Stack(impair="loss=lots")
    assert str(exc.value) == "impair: loss=lots: not a rate (try loss=5% or loss=0.05)"
    with pytest.raises(StackEnvironmentError) as env:
        Stack(tun="a-name-far-too-long").open()
    assert str(env.value) == "bad interface name 'a-name-far-too-long': 1 to 15 characters, no '/'"
    a, b = PairLink.pair()
    try:
        with pytest.raises(StackEnvironmentError) as env:
            Stack(link=a, pcap="/nonexistent/dir/x.pcap").open()
        assert str(env.value) == (
            "cannot write pcap file /nonexistent/dir/x.pcap: No such file or directory"
        )
        assert not a.closed  # a link handed in stays the caller's to close
    finally:
        a.close()
        b.close()


def test_idle_loop_sleeps_instead_of_spinning(pair: tuple[Stack, Stack]) -> None:
    client, server = pair
    sock, accepted, _ = connected(pair)
    sock.sendall(b"x")
    assert accepted.recv(1) == b"x"
    # Once the delayed ACK has gone, nothing is due: no timer, no packet, no descriptor.
    assert client.run_until(
        lambda: client.host.next_deadline() is None and server.host.next_deadline() is None, WAIT
    )
    before = client.loop.iterations
    assert client.run_until(lambda: False, 0.2) is False
    assert client.loop.iterations - before == 1  # one sleep of the whole 0.2 s, no spinning



def test_on_change_tells_room_that_comes_back_to_what_the_last_call_saw() -> None:
    # The relay fills the send buffer from inside its on_change callback, called while
    # the buffer was empty. When the next wake-up both sends that data and takes the
    # peer's ACK of all of it (a kernel peer ACKs before the loop polls again), the
    # buffer is empty again: the same writable amount as at the call. The application
    # has seen it full since, so it must be told: that lost wake-up stalled `pytcp
    # connect` with everything acknowledged and stdin paused for good.
    a, b = PairLink.pair()
    loop = Loop()
    mss = 1448  # MTU 1500 less IPv4, TCP and the timestamp option
    config = TcpConfig(snd_buf=2 * mss)  # two full segments: ACKed at once (RFC 5681 4.2)
    client = Stack(link=a, loop=loop, addr=CLIENT, gateway=f"{SERVER}/24", seed=1, config=config)
    server = Stack(link=b, loop=loop, addr=SERVER, gateway=f"{CLIENT}/24", seed=2)
    with client, server:
        listener = server.listen(PORT)
        sock = client.connect(SERVER, PORT, timeout=WAIT)
        accepted = listener.accept(timeout=WAIT)
        assert accepted is not None and sock.connection.tcb.snd_mss == mss
        assert client.run_until(lambda: client.host.next_deadline() is None, WAIT)
        sock.setblocking(False)
        seen: list[int] = []

        def fill() -> None:
            seen.append(sock.writable)
            if len(seen) == 1:
                assert sock.send(b"z" * (2 * mss)) == 2 * mss  # as the relay does

        sock.on_change(fill)
        accepted.send(b"!")  # a change, so the callback runs while the buffer is empty
        loop.run_once(0)
        assert seen == [2 * mss] and sock.writable == 0
        loop.run_once(0)  # sends both segments and takes the peer's ACK of both
        assert accepted.readable == 2 * mss and sock.writable == 2 * mss
        assert seen == [2 * mss, 2 * mss]
        sock.close()
        accepted.close()
        loop.run_until(lambda: all(str(c.state) in ("CLOSED", "TIME-WAIT")
                                   for h in (client.host, server.host)
                                   for c in h.connections()), WAIT)
    a.close()
    b.close()
    loop.close()


def test_peer_reset_after_our_fin_is_nobody_here(pair: tuple[Stack, Stack]) -> None:
    # A RST answering our FIN in LAST-ACK ends the connection in CLOSED without an error
    # (RFC 9293 §3.10.7.4 second); it is the peer's doing, not a `pytcp close --reset`.
    sock, accepted, _ = connected(pair)
    accepted.shutdown(socket.SHUT_WR)
    assert sock.recv(10) == b""
    sock.shutdown(socket.SHUT_WR)
    assert sock.state == "LAST-ACK"
    accepted.abort()  # its RST crosses our FIN
    client, _ = pair
    client.loop.run_until(lambda: sock.state == "CLOSED", WAIT)
    assert sock.closed_elsewhere is None
    assert sock.error is None


def test_abort_through_the_connection_is_a_reset_elsewhere(pair: tuple[Stack, Stack]) -> None:
    sock, _, _ = connected(pair)
    client, _ = pair
    sock.connection.abort(client.loop.now())  # what the control endpoint does
    assert sock.closed_elsewhere == "reset"
    assert isinstance(sock.error, ConnectionAbortedError)


def test_parse_address_drops_a_zone_off_link_local_only() -> None:
    from ipaddress import IPv6Address

    from stack.api import parse_address

    assert parse_address("[fd77::1%lo]") == IPv6Address("fd77::1")
    assert parse_address("fd77::1%lo") == parse_address("fd77::1")
    assert parse_address("fe80::1%lo") == IPv6Address("fe80::1%lo")
    assert parse_address("10.77.0.1") is not None and parse_address("x%lo") is None
