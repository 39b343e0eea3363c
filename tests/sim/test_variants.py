"""The lossy-link transfer under other configurations: each congestion controller,
every TCP option off, Nagle off, heavy jitter (reordering by delay variation), and a
slow reader behind a small receive buffer (zero windows and the persist timer).
256 KiB each way, client closes first; every byte intact and both ends CLOSED.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest

from stack.host import Host
from stack.io.impair import ImpairSpec
from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.state import State
from stack.wire import Ipv4Header, TcpSegment
from tests.sim.harness import App, Network

CLIENT = IPv4Address("10.77.0.1")
SERVER = IPv4Address("10.77.0.2")
PORT = 6000
SIZE = 256 * 1024
LOSSY = ImpairSpec(loss=0.05, dup=0.02, reorder=0.03, delay=5 * MS)


def transfer(
    config: TcpConfig,
    spec: ImpairSpec,
    seed: int,
    *,
    server_read_limit: int | None = None,
    server_read_interval: int = 0,
    observe: Callable[[IPv4Address | IPv6Address, bytes], None] | None = None,
    setup: Callable[[Network], None] | None = None,
    mtu: int = 1500,
    size: int = SIZE,
) -> tuple[Network, Connection, Connection]:
    net = Network([CLIENT, SERVER], spec, seed, mtu=mtu, config=config)
    if observe is not None:
        net.observers.append(observe)
    if setup is not None:
        setup(net)
    rng = random.Random(seed)
    client_app = App(rng.randbytes(size))
    server_app = App(
        rng.randbytes(size), read_limit=server_read_limit, read_interval=server_read_interval
    )
    listener = net.hosts[SERVER].listen(PORT)
    client = net.hosts[CLIENT].connect((SERVER, PORT), 0)
    accepted: list[Connection] = []

    def apps(now: int) -> None:
        if not accepted and (conn := listener.accept()) is not None:
            accepted.append(conn)
        client_app.step(client, now, may_close=True)
        for server in accepted:
            server_app.step(server, now, may_close=True, after_eof=True)

    def done() -> bool:
        return bool(accepted) and client.is_closed and accepted[0].is_closed

    def wake() -> int | None:
        return server_app.wake(accepted[0]) if accepted else None

    net.run(apps, done, max_iterations=400_000, max_time=7200 * SECOND, wake=wake)
    server = accepted[0]
    assert bytes(server_app.received) == client_app.payload
    assert bytes(client_app.received) == server_app.payload
    for conn in (client, server):
        assert conn.state == State.CLOSED
        assert conn.error is None
    assert client_app.states[-2:] == [State.TIME_WAIT, State.CLOSED]
    return net, client, server


@pytest.mark.parametrize(
    "config",
    [
        TcpConfig(cc="newreno"),
        TcpConfig(cc="cubic"),
        TcpConfig(sack=False, timestamps=False, wscale=False),
        TcpConfig(nodelay=True),
    ],
    ids=["newreno", "cubic", "no-options", "nodelay"],
)
def test_lossy_transfer_per_configuration(config: TcpConfig) -> None:
    transfer(config, LOSSY, seed=3)


def test_heavy_jitter_reorders_and_still_delivers() -> None:
    net, _, _ = transfer(TcpConfig(), ImpairSpec(loss=0.02, delay=5 * MS, jitter=4 * MS), 7)
    assert sum(imp.counters["delivered"] for imp in net.impairers.values()) > 0


def test_slow_reader_behind_a_small_buffer() -> None:
    # The server reads at most 500 bytes every 20 ms from a 2 KiB buffer: its window
    # closes again and again, the client must stop and resume on its window updates
    # (or probe when one is lost, RFC 9293 §3.8.6.1), and no byte may be lost.  (With
    # 4 KiB the sender's SWS avoidance mostly leaves a sliver open: whether the window
    # reached zero at all depended on the seed's loss pattern.)
    windows: list[int] = []

    def observe(sender: IPv4Address | IPv6Address, data: bytes) -> None:
        if sender == SERVER:
            ip, payload = Ipv4Header.parse(data)
            windows.append(TcpSegment.parse(payload, ip.src, ip.dst).window)

    config = TcpConfig(rcv_buf=2048, snd_buf=16 * 1024)
    transfer(
        config,
        LOSSY,
        seed=9,
        server_read_limit=500,
        server_read_interval=20 * MS,
        observe=observe,
    )
    assert windows.count(0) > 0
    assert max(windows) <= 2048


def max_srtt(config: TcpConfig, seed: int) -> int:
    """The largest smoothed RTT either end held during a 256 KiB transfer at 20 % loss
    over a link whose real round trip is 10 ms (sampled whenever a packet leaves)."""
    peak = 0
    hosts: list[Host] = []
    now = [0]

    def observe(sender: IPv4Address | IPv6Address, data: bytes) -> None:
        nonlocal peak
        for host in hosts:
            for conn in host.connections():
                rtt = conn.snapshot(now[0])["rtt"]
                assert isinstance(rtt, dict)
                if rtt["srtt"] is not None:
                    peak = max(peak, rtt["srtt"])

    def remember(net: Network) -> None:
        hosts.extend(net.hosts.values())

    transfer(config, ImpairSpec(loss=0.2, delay=5 * MS), seed, observe=observe, setup=remember)
    return peak


@pytest.mark.parametrize("timestamps", [False, True], ids=["no-ts", "ts"])
@pytest.mark.parametrize("seed", [2, 3])
def test_rtt_estimate_stays_sane_at_high_loss(seed: int, timestamps: bool) -> None:
    # With timestamps, an ACK may echo the TSval of a segment sent before an RTO (a lost
    # ACK, a duplicate answered with the old TS.Recent): taken as a sample it is minutes
    # long and pins the RTO at rto_max. Karn's rule applies to echoed timestamps too.
    assert max_srtt(TcpConfig(timestamps=timestamps), seed) < 1 * SECOND


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simultaneous_close(seed: int) -> None:
    # Both ends shut down as soon as their own data is written: their FINs cross, so
    # these runs go through CLOSING (RFC 9293 §3.6, simultaneous close) on one end.
    net = Network([CLIENT, SERVER], LOSSY, seed, mtu=1500)
    rng = random.Random(seed)
    client_app, server_app = App(rng.randbytes(SIZE)), App(rng.randbytes(SIZE))
    listener = net.hosts[SERVER].listen(PORT)
    client = net.hosts[CLIENT].connect((SERVER, PORT), 0)
    accepted: list[Connection] = []

    def apps(now: int) -> None:
        if not accepted and (conn := listener.accept()) is not None:
            accepted.append(conn)
        client_app.step(client, now, may_close=True)
        for server in accepted:
            server_app.step(server, now, may_close=True)

    def done() -> bool:
        return bool(accepted) and client.is_closed and accepted[0].is_closed

    net.run(apps, done, max_iterations=400_000, max_time=3600 * SECOND)
    client_app.step(client, net.now, may_close=False)
    server_app.step(accepted[0], net.now, may_close=False)
    assert bytes(server_app.received) == client_app.payload
    assert bytes(client_app.received) == server_app.payload
    for app, conn in ((client_app, client), (server_app, accepted[0])):
        assert conn.error is None
        assert app.states[-2:] == [State.TIME_WAIT, State.CLOSED]
    assert State.CLOSING in client_app.states + server_app.states


def test_jumbo_segments_of_64_kib() -> None:
    # DESIGN §2: the stack carries 64 KB segments (large TUN MTU, GSO/GRO).
    sizes: list[int] = []

    def observe(sender: IPv4Address | IPv6Address, data: bytes) -> None:
        sizes.append(len(data))

    _, client, _ = transfer(
        TcpConfig(), LOSSY, seed=4, observe=observe, mtu=65535, size=4 * 1024 * 1024
    )
    assert max(sizes) > 60_000
    assert client.tcb.snd_mss > 60_000


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_abort_mid_transfer_resets_the_peer(seed: int) -> None:
    # The client aborts halfway; its RST may be lost on this link, and then the server's
    # retransmissions meet the client host's RST for a connection it no longer has
    # (RFC 9293 §3.10.7.1). Either way the server fails with "reset".
    net = Network([CLIENT, SERVER], LOSSY, seed, mtu=1500)
    rng = random.Random(seed)
    client_app, server_app = App(rng.randbytes(SIZE)), App(rng.randbytes(SIZE))
    listener = net.hosts[SERVER].listen(PORT)
    client = net.hosts[CLIENT].connect((SERVER, PORT), 0)
    accepted: list[Connection] = []

    def apps(now: int) -> None:
        if not accepted and (conn := listener.accept()) is not None:
            accepted.append(conn)
        if not client.is_closed:
            client_app.step(client, now, may_close=False)
            if len(client_app.received) >= SIZE // 2:
                client.abort(now)
        for server in accepted:
            server_app.step(server, now, may_close=False)

    def done() -> bool:
        return bool(accepted) and client.is_closed and accepted[0].is_closed

    net.run(apps, done, max_iterations=400_000, max_time=3600 * SECOND)
    assert client.error is None  # an abort is the application's choice, not a failure
    assert accepted[0].error == "reset"
    for host in net.hosts.values():
        assert host.connections() == []
