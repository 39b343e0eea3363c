"""Two Hosts over a lossy, duplicating, reordering in-memory link, on a fake clock.

Client 10.77.0.1 connects to server 10.77.0.2; each sends 1 MiB, the client closes
first (FIN after its data, then keeps reading: half-close), the server closes after it
has read the client's EOF and sent everything. Both must end CLOSED, the client through
TIME-WAIT, every byte intact. The clock jumps to the next delivery or the next timer
deadline (tests/sim/harness.py); every run is bounded in iterations and simulated time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest

from stack.io.impair import Impairer, ImpairSpec
from stack.tcp.clock import MS, SECOND
from stack.tcp.connection import Connection
from stack.tcp.state import State
from tests.sim.harness import App, Network

CLIENT = IPv4Address("10.77.0.1")
SERVER = IPv4Address("10.77.0.2")
PORT = 5000
MIB = 1 << 20
# An Ethernet MTU: ~720 full segments each way, so loss, duplication and reordering hit
# dozens of them per run, and a run still takes about 0.1 s.
MTU = 1500
LOSSY = ImpairSpec(loss=0.05, dup=0.02, reorder=0.03, delay=5 * MS)
MAX_ITERATIONS = 300_000
MAX_SIM_TIME = 900 * SECOND


@dataclass
class Result:
    net: Network
    client: Connection
    server: Connection
    client_app: App
    server_app: App

    @property
    def impairers(self) -> list[Impairer]:
        return list(self.net.impairers.values())


def run(
    seed: int,
    *,
    spec: ImpairSpec = LOSSY,
    iss: list[int] | None = None,
    addresses: tuple[IPv4Address, IPv4Address] | tuple[IPv6Address, IPv6Address] = (
        CLIENT,
        SERVER,
    ),
) -> Result:
    client_addr, server_addr = addresses
    net = Network([client_addr, server_addr], spec, seed, mtu=MTU, iss=iss)
    rng = random.Random(seed)
    client_app = App(rng.randbytes(MIB))
    server_app = App(rng.randbytes(MIB))
    listener = net.hosts[server_addr].listen(PORT, backlog=4)
    client = net.hosts[client_addr].connect((server_addr, PORT), net.now)
    accepted: list[Connection] = []

    def apps(now: int) -> None:
        if not accepted and (conn := listener.accept()) is not None:
            accepted.append(conn)
        client_app.step(client, now, may_close=True)
        for server in accepted:
            # The server closes once it has the client's EOF and has sent its own data.
            server_app.step(server, now, may_close=True, after_eof=True)

    def done() -> bool:
        return bool(accepted) and client.is_closed and accepted[0].is_closed

    net.run(apps, done, max_iterations=MAX_ITERATIONS, max_time=MAX_SIM_TIME)
    client_app.step(client, net.now, may_close=False)  # collect the last events
    server_app.step(accepted[0], net.now, may_close=False)
    return Result(net, client, accepted[0], client_app, server_app)


def check_clean(result: Result) -> None:
    c, s = result.client_app, result.server_app
    assert bytes(s.received) == c.payload  # byte-exact, both ways
    assert bytes(c.received) == s.payload
    assert result.client.state == State.CLOSED
    assert result.server.state == State.CLOSED
    assert result.client.error is None
    assert result.server.error is None
    # The client closed first: FIN-WAIT-1, then TIME-WAIT, then CLOSED after 2·MSL.
    assert State.FIN_WAIT_1 in c.states
    assert c.states[-2:] == [State.TIME_WAIT, State.CLOSED]
    # The server closed passively: CLOSE-WAIT, LAST-ACK, CLOSED, never TIME-WAIT.
    assert s.states[-3:] == [State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]
    assert State.TIME_WAIT not in s.states
    for host in result.net.hosts.values():
        assert host.connections() == []
        assert host.next_deadline() is None
        assert "no-connection" not in host.counters["drops"]


def retransmissions(result: Result) -> int:
    total = 0
    for conn in (result.client, result.server):
        counters = conn.snapshot(result.net.now)["counters"]
        assert isinstance(counters, dict)
        total += counters["retransmissions"]
    return total


@pytest.mark.parametrize("seed", range(1, 11))
def test_one_mib_each_way_over_a_lossy_link(seed: int) -> None:
    result = run(seed)
    check_clean(result)
    # The link really impaired this run (the counts are fixed by the seed; > 0 is what
    # matters: otherwise the test would not be testing recovery).
    for kind in ("lost", "duplicated", "reordered"):
        assert sum(imp.counters[kind] for imp in result.impairers) > 0, kind
    assert retransmissions(result) > 0


def test_sequence_numbers_wrap() -> None:
    # Both ISS a few hundred bytes short of 2**32: nearly every data byte lies past the wrap.
    iss = [2**32 - 300, 2**32 - 700]
    result = run(11, iss=iss)
    check_clean(result)
    assert result.client.tcb.iss == iss[0]
    assert result.server.tcb.iss == iss[1]
    assert result.client.tcb.snd_nxt == (iss[0] + MIB + 2) % 2**32  # SYN + data + FIN
    assert result.server.tcb.snd_nxt == (iss[1] + MIB + 2) % 2**32
    assert result.client.tcb.rcv_nxt == result.server.tcb.snd_nxt


def test_clean_link_needs_no_retransmission() -> None:
    result = run(21, spec=ImpairSpec(delay=5 * MS))
    check_clean(result)
    assert retransmissions(result) == 0


def test_corruption_is_dropped_and_recovered() -> None:
    result = run(31, spec=ImpairSpec(loss=0.01, corrupt=0.03, delay=5 * MS))
    check_clean(result)
    corrupted = sum(imp.counters["corrupted"] for imp in result.impairers)
    dropped = sum(sum(h.counters["drops"].values()) for h in result.net.hosts.values())
    assert corrupted > 0
    # One flipped bit always changes a ones' complement sum, and the IP header checksum
    # and the TCP checksum between them cover every bit: each corrupted copy is a drop.
    assert dropped == corrupted


def test_one_mib_each_way_over_ipv6() -> None:
    result = run(41, addresses=(IPv6Address("fd77::1"), IPv6Address("fd77::2")))
    check_clean(result)
    assert result.client.local[0] == IPv6Address("fd77::1")
    # RFC 8200 §5: the MSS leaves room for the 40-byte IPv6 header (1500 - 60).
    assert result.client.tcb.mss_local == 1440
    assert retransmissions(result) > 0
