"""Loss recovery compared across mechanisms on seeded impaired links (fake clock).

One-way transfers, the same seeds for every configuration, so each comparison sees the
same losses; the figures (retransmitted bytes, RTOs, virtual completion time) are
printed (`pytest -s`) and asserted as directions summed over the seeds, never as
times:
- random loss with reordering: SACK + RACK-TLP retransmits less, with fewer RTOs, and
  finishes sooner than NewReno without SACK; SACK with DupThresh alone (RFC 6675, RACK
  off) needs no more RTOs and retransmits no more than NewReno (its lost
  retransmissions still wait for the RTO, as NewReno's do: only RACK sees those);
- tail drops (the last segment of every application burst): the tail loss probe
  repairs them without the RTO that NewReno and SACK without RACK wait for;
- reordering alone: RACK's reordering window (and D-SACK undo) retransmits less than
  the DupThresh rule.
The congestion controller is NewReno in every run, so only recovery differs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from stack.io.impair import Impairer, ImpairSpec
from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.state import State
from stack.wire import Ipv4Header, TcpSegment
from tests.sim.harness import App, Network

CLIENT = IPv4Address("10.77.0.1")
SERVER = IPv4Address("10.77.0.2")
PORT = 7000
SEEDS = range(1, 7)
BASE = TcpConfig(cc="newreno")
CONFIGS = {
    "newreno": replace(BASE, sack=False, rack=False),
    "sack": replace(BASE, rack=False),
    "sack+rack": BASE,
}
MAX_ITERATIONS = 200_000
MAX_TIME = 600 * SECOND


@dataclass
class Figures:
    retransmitted_bytes: int
    rtos: int
    ticks: int  # virtual ns until the receiver has every byte


@dataclass
class Progress:
    sent: int = 0  # bytes the client application wrote
    next: int = 0  # when it writes its next burst
    done_at: int = -1  # when the server had every byte


class TailDropper:
    """Drops the first transmission of the data segment that ends each `burst`-byte
    chunk of the client's stream: a tail loss per application burst."""

    def __init__(self, inner: Impairer, burst: int) -> None:
        self.inner = inner
        self.burst = burst
        self.isn: int | None = None
        self.dropped: set[int] = set()

    def apply(self, packet: bytes, now: int) -> list[tuple[int, bytes]]:
        ip, payload = Ipv4Header.parse(packet)
        seg = TcpSegment.parse(payload, ip.src, ip.dst)
        if seg.flags & 2:  # the SYN gives the stream's origin
            self.isn = seg.seq
        elif seg.payload and self.isn is not None and ip.src == CLIENT:
            end = (seg.seq + len(seg.payload) - self.isn - 1) % 2**32
            if end % self.burst == 0 and end not in self.dropped:
                self.dropped.add(end)
                return []
        return self.inner.apply(packet, now)


def run(
    config: TcpConfig,
    spec: ImpairSpec,
    seed: int,
    *,
    size: int,
    burst: int | None = None,
    gap: int = 0,
    tail: bool = False,
) -> Figures:
    """The client sends `size` bytes (in `burst`-byte writes `gap` ns apart, if given)
    to a server that reads everything; returns the client's figures."""
    net = Network([CLIENT, SERVER], spec, seed, mtu=1500, config=config)
    if tail:
        assert burst is not None
        net.impairers[CLIENT] = TailDropper(net.impairers[CLIENT], burst)  # type: ignore[assignment]
    payload = random.Random(seed).randbytes(size)
    server_app = App(b"")
    listener = net.hosts[SERVER].listen(PORT)
    client = net.hosts[CLIENT].connect((SERVER, PORT), 0)
    accepted: list[Connection] = []
    state = Progress()

    def apps(now: int) -> None:
        if not accepted and (conn := listener.accept()) is not None:
            accepted.append(conn)
        if client.state is State.ESTABLISHED and now >= state.next:
            limit = size if burst is None else min(size, state.sent + burst)
            while state.sent < limit:
                n = client.send(payload[state.sent : limit], now)
                if n == 0:
                    break
                state.sent += n
            if burst is not None and state.sent == limit:
                state.next = now + gap
        for server in accepted:
            server_app.step(server, now, may_close=False)
        if state.done_at < 0 and len(server_app.received) == size:
            state.done_at = now

    def wake() -> int | None:
        # the next burst's time; a full send buffer waits for ACKs, not for the clock
        nxt = state.next
        return nxt if burst is not None and state.sent < size and nxt > net.now else None

    def done() -> bool:
        return state.done_at >= 0 and client.tcb.snd_una == client.tcb.snd_max

    net.run(apps, done, max_iterations=MAX_ITERATIONS, max_time=MAX_TIME, wake=wake)
    assert bytes(server_app.received) == payload
    counters = client.counters
    return Figures(counters["retransmitted_bytes"], counters["rtos"], state.done_at)


def compare(name: str, runs: dict[str, list[Figures]]) -> dict[str, Figures]:
    """Sums over the seeds, printed as a table."""
    totals = {
        k: Figures(
            sum(f.retransmitted_bytes for f in v), sum(f.rtos for f in v), sum(f.ticks for f in v)
        )
        for k, v in runs.items()
    }
    print(f"\n{name} (sums over seeds {SEEDS.start}..{SEEDS.stop - 1})")
    print(f"  {'config':<10} {'rexmit bytes':>12} {'RTOs':>5} {'virtual time':>13}")
    for k, t in totals.items():
        print(f"  {k:<10} {t.retransmitted_bytes:>12} {t.rtos:>5} {t.ticks / SECOND:>12.3f}s")
    return totals


def test_random_loss_and_reordering() -> None:
    spec = ImpairSpec(loss=0.03, reorder=0.01, delay=10 * MS)
    runs = {k: [run(cfg, spec, s, size=256 * 1024) for s in SEEDS] for k, cfg in CONFIGS.items()}
    t = compare("3% loss, 1% reordering, 10 ms each way", runs)
    assert t["sack+rack"].rtos < t["newreno"].rtos
    assert t["sack+rack"].ticks < t["newreno"].ticks
    assert t["sack+rack"].retransmitted_bytes < t["newreno"].retransmitted_bytes
    assert t["sack"].rtos <= t["newreno"].rtos
    assert t["sack"].retransmitted_bytes <= t["newreno"].retransmitted_bytes


def test_tail_drops() -> None:
    spec = ImpairSpec(delay=10 * MS)
    burst = 8 * 1448
    runs = {
        k: [run(cfg, spec, s, size=24 * burst, burst=burst, gap=100 * MS, tail=True) for s in SEEDS]
        for k, cfg in CONFIGS.items()
    }
    t = compare("the last segment of every 8-segment burst dropped once", runs)
    assert t["sack+rack"].rtos < t["sack"].rtos
    assert t["sack+rack"].rtos < t["newreno"].rtos
    assert t["sack+rack"].ticks < t["sack"].ticks
    assert t["sack+rack"].ticks < t["newreno"].ticks


def test_reordering_only() -> None:
    spec = ImpairSpec(reorder=0.03, delay=10 * MS, gap=3 * MS)
    runs = {
        k: [run(cfg, spec, s, size=256 * 1024) for s in SEEDS]
        for k, cfg in CONFIGS.items()
        if k != "newreno"
    }
    t = compare("3% of packets held 3 ms (reordered), no loss", runs)
    assert t["sack+rack"].retransmitted_bytes < t["sack"].retransmitted_bytes
