"""Per-packet work independent of the number of connections (issue 14): the host visits
only the connections something happened to, files timers in a heap, finds a connection
by id in one look-up. Asserted as counts of connections touched, never as times."""

from __future__ import annotations

from typing import Any

import pytest

from stack.host import Host
from stack.tcp.clock import MS
from stack.tcp.connection import Connection
from stack.wire import Ipv4Header, TcpSegment
from stack.wire.packet import Packet
from tests.test_memory import Pair


class Counting:
    """Counts calls of a Connection method on one host's connections."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, host: Host, name: str) -> None:
        self.calls = 0
        cls = host._connection_class
        original = getattr(cls, name)

        def counted(conn: Connection, *args: Any, **kw: Any) -> Any:
            self.calls += 1
            return original(conn, *args, **kw)

        monkeypatch.setattr(cls, name, counted)


def one_exchange(n_idle: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    """With `n_idle` idle connections, one more sends and receives a few segments and
    its timers run; returns how often the server host called segments_to_send,
    next_deadline and handle_timers on any connection meanwhile."""
    pair = Pair()
    pair.connect(n_idle)
    busy_client = pair.client.connect((pair.server.address, 5000), pair.now)
    pair.pump()
    busy_server = pair.listener.accept()
    assert busy_server is not None
    out = Counting(monkeypatch, pair.server, "segments_to_send")
    deadline = Counting(monkeypatch, pair.server, "next_deadline")
    timers = Counting(monkeypatch, pair.server, "handle_timers")
    for _ in range(5):
        busy_client.send(b"x" * 1000, pair.now)
        pair.pump()
        assert busy_server.receive(2000, pair.now) == b"x" * 1000
        busy_server.send(b"y" * 100, pair.now)
        pair.pump()
        pair.now += 50 * MS  # delayed ACKs
        for host in (pair.client, pair.server):
            d = host.next_deadline()
            if d is not None and d <= pair.now:
                host.handle_timers(pair.now)
        pair.pump()
    pair.server.next_deadline()
    return out.calls, deadline.calls, timers.calls


def test_work_per_exchange_does_not_grow_with_idle_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    few = one_exchange(10, monkeypatch)
    monkeypatch.undo()
    many = one_exchange(1000, monkeypatch)
    assert few == many  # the idle connections are never touched
    assert few[0] > 0


def seq_and_payload(packet: bytes | Packet) -> tuple[int, bytes]:
    assert isinstance(packet, bytes)  # no offload: plain packets
    ip, tcp = Ipv4Header.parse(packet)
    seg = TcpSegment.parse(tcp, ip.src, ip.dst)
    return seg.seq, bytes(seg.payload)


def test_one_connection_s_timer_fires_from_the_heap_among_idle_ones() -> None:
    pair = Pair()
    _clients, servers = pair.connect(50)
    assert pair.server.next_deadline() is None  # idle: no timer armed anywhere
    servers[7].send(b"late", pair.now)
    (first,) = pair.server.packets_to_send(pair.now)  # lost: nobody delivers it
    deadline = pair.server.next_deadline()
    assert deadline is not None
    rto = deadline - pair.now
    pair.now = deadline
    pair.server.handle_timers(pair.now)
    (again,) = pair.server.packets_to_send(pair.now)  # resent by that connection only
    assert seq_and_payload(again) == seq_and_payload(first)  # the same bytes again
    later = pair.server.next_deadline()  # re-armed (a TLP probe or an RTO, backed off)
    assert later is not None and later > pair.now
    assert rto > 0


def test_find_is_one_look_up(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Pair()
    _clients, servers = pair.connect(100)
    scans: list[int] = []

    def connections() -> list[Connection]:
        scans.append(1)
        return []

    monkeypatch.setattr(pair.server, "connections", connections)
    assert pair.server.find(servers[42].id) == (servers[42], False)
    assert pair.server.find(pair.listener.id) == (pair.listener, True)
    assert pair.server.find(10**9) is None
    assert scans == []


# --------------------------------------------------------------------- stack.api


def notified_during_exchange(
    n_idle: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], int]:
    """Two Stacks over a PairLink; `n_idle` idle connections, each socket with an
    on_change callback, then one more connection carries data both ways. Returns the ids
    of the sockets the iteration hook told (Socket._notify / ListeningSocket._notify),
    one entry per call, during that exchange, and the loop iterations it took."""
    from stack import Stack
    from stack.api import ListeningSocket, Socket
    from stack.io.link import PairLink
    from stack.io.loop import Loop

    a, b = PairLink.pair(limit=1 << 16)
    loop = Loop()
    client = Stack(link=a, loop=loop, addr="10.77.0.2", gateway="10.77.0.1/24", seed=1)
    server = Stack(link=b, loop=loop, addr="10.77.0.1", gateway="10.77.0.2/24", seed=2)
    told: list[str] = []
    with client, server:
        listener = server.listen(5000, backlog=n_idle + 8)
        accepted: list[Socket] = []

        def take() -> None:
            while (sock := listener.accept(timeout=0)) is not None:
                sock.setblocking(False)
                sock.on_change(lambda: None)
                accepted.append(sock)

        listener.on_change(take)
        idle = [client.start_connect("10.77.0.1", 5000) for _ in range(n_idle)]
        for sock in idle:
            sock.on_change(lambda: None)
        assert loop.run_until(lambda: len(accepted) == n_idle, 30)
        busy = client.connect("10.77.0.1", 5000, timeout=10)
        assert loop.run_until(lambda: len(accepted) == n_idle + 1, 10)
        peer = accepted[-1]
        received = bytearray()

        def read() -> None:
            try:
                while data := peer.recv(65536):
                    received.extend(data)
            except BlockingIOError:
                pass

        peer.on_change(read)
        loop.run_once(0)  # what the handshake left is told before counting starts
        for cls in (Socket, ListeningSocket):
            original = cls._notify

            def counted(sock: Any, __original: Any = original) -> None:
                told.append(sock.id)
                __original(sock)

            monkeypatch.setattr(cls, "_notify", counted)
        busy.settimeout(10)
        start = loop.iterations
        busy.sendall(b"z" * 50_000)
        assert loop.run_until(lambda: len(received) == 50_000, 10)
        iterations = loop.iterations - start
        monkeypatch.undo()
        expected = {busy.id, peer.id, listener.id}
        assert set(told) <= expected, set(told) - expected  # no idle socket is ever told
        for held in (*client.sockets(), *server.sockets()):
            held.close()
        loop.run_until(lambda: all(c.is_closed or str(c.state) == "TIME-WAIT"
                                   for h in (client.host, server.host)
                                   for c in h.connections()), 10)  # fmt: skip
    a.close()
    b.close()
    loop.close()
    return told, iterations


def test_only_the_sockets_of_touched_connections_are_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    few, _ = notified_during_exchange(5, monkeypatch)
    many, iterations = notified_during_exchange(400, monkeypatch)
    # As many sockets told, whatever the number of idle ones (the busy two and the
    # listener), each at most once per iteration: a scan would tell 800 more each time.
    assert len(set(few)) == len(set(many)) == 3
    assert len(many) <= 3 * iterations


# --------------------------------------------------------------------- pytcp inspect


class _Clock:
    def __init__(self, pair: Pair) -> None:
        self.pair = pair

    def now(self) -> int:
        return self.pair.now


class _Served:
    """What ControlServer needs of a Stack (stack.control.ServedStack), over a sans-IO
    host: nothing is started, requests are handed to `handle` directly."""

    def __init__(self, pair: Pair) -> None:
        self.loop = _Clock(pair)
        self.host = pair.server
        self.tun_name = "pytcp9"
        self.address = "10.77.0.2"


def test_inspect_list_describes_only_what_it_shows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from stack.control import ControlServer, Request

    pair = Pair()
    clients, servers = pair.connect(300)
    servers[5].send(b"queued", pair.now)  # one with data in flight and a timer armed
    pair.server.packets_to_send(pair.now)
    snapshots = Counting(monkeypatch, pair.server, "snapshot")
    rows = Counting(monkeypatch, pair.server, "row")
    control = ControlServer(_Served(pair), directory=str(tmp_path))
    pair.server.touched()  # the record starts here

    def listed(**params: Any) -> list[dict[str, Any]]:
        reply = control.handle(Request(op="list", params=params))
        assert reply.ok and reply.result["total"] == 301  # the listener and 300
        entries: list[dict[str, Any]] = reply.result["connections"]
        return entries

    table = listed(view="rows")  # `pytcp inspect`: one row's fields each, no snapshot
    assert (len(table), rows.calls, snapshots.calls) == (301, 300, 0)
    one = listed(view="rows", port=clients[7].local[1])  # `--port P`: only that one
    assert [e["remote"]["port"] for e in one] == [clients[7].local[1]]
    assert (rows.calls, snapshots.calls) == (301, 0)
    assert listed(states=["SYN-RECEIVED"]) == []  # `-s syn-received --json`: nothing
    assert snapshots.calls == 0
    full = listed(view="full", states=["established"], port=clients[9].local[1])
    assert len(full) == 1 and snapshots.calls == 1  # `--json`: whole entries, for what shows
    # Looking changes nothing: no connection is touched, so none is visited or told.
    assert pair.server.touched() == []
    # A row holds snapshot()'s own values, field by field (one truth, no second copy).
    busy = servers[5]
    row, snap = busy.row(pair.now), busy.snapshot(pair.now)
    assert row["timers"] == [t for t in snap["timers"] if t["armed"]] != []
    for key, value in row.items():
        if isinstance(value, dict):
            assert value == {k: snap[key][k] for k in value}, key
        elif key != "timers":
            assert value == snap[key], key


def test_inspect_id_describes_one_connection_without_a_scan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from stack.control import ControlServer, Request

    pair = Pair()
    _clients, servers = pair.connect(200)
    snapshots = Counting(monkeypatch, pair.server, "snapshot")
    scans: list[int] = []

    def connections() -> list[Connection]:
        scans.append(1)
        return []

    monkeypatch.setattr(pair.server, "connections", connections)
    control = ControlServer(_Served(pair), directory=str(tmp_path))
    reply = control.handle(Request(op="get", conn=f"{control.pid}.{servers[123].id}"))
    assert reply.ok and reply.result["id"] == f"{control.pid}.{servers[123].id}"
    assert (snapshots.calls, scans) == (1, [])
