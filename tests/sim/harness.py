"""A fake-clock network for simulations: Hosts joined by one Impairer per sender.

`Network.run(apps, done)` repeats: deliver every packet due, run due timers, let the
applications act, send what the hosts have (through each sender's Impairer), then
jump the clock to the next delivery or timer deadline. Bounded in iterations and in
simulated time; a network with nothing in flight and no timer armed is a failure.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from stack.host import Host
from stack.io.impair import Impairer, ImpairSpec
from stack.tcp.clock import SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.events import StateChanged
from stack.tcp.state import State

WRITE_CHUNK = 64 * 1024


class SimulationError(AssertionError):
    pass


def fixed_isn(value: int) -> Callable[[object, object, int], int]:
    return lambda local, remote, now: value


@dataclass
class App:
    """One end's application: writes `payload`, reads everything, shuts down when told."""

    payload: bytes
    read_limit: int | None = None  # a slow reader: at most this many bytes ...
    read_interval: int = 0  # ... once per this many ns
    next_read: int = 0
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    shut: bool = False
    states: list[State] = field(default_factory=list)

    def step(self, conn: Connection, now: int, may_close: bool, after_eof: bool = False) -> None:
        """Act at `now`: take events, write what fits, read, and shut down once every byte
        is written (and, with `after_eof`, once the peer's EOF was read) if `may_close`."""
        while (event := conn.next_event()) is not None:
            if isinstance(event, StateChanged):
                self.states.append(event.new)
        if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            while self.sent < len(self.payload):
                n = conn.send(self.payload[self.sent : self.sent + WRITE_CHUNK], now)
                if n == 0:
                    break
                self.sent += n
        if self.read_limit is not None:
            if conn.readable and now >= self.next_read:
                self.received += conn.receive(self.read_limit, now)
                self.next_read = now + self.read_interval
        else:
            while conn.readable:
                self.received += conn.receive(WRITE_CHUNK, now)
        if after_eof and not conn.at_eof:
            return
        if may_close and not self.shut and self.sent == len(self.payload):
            conn.shutdown(now)
            self.shut = True

    def wake(self, conn: Connection) -> int | None:
        """When this application next wants to run on its own (a slow reader's next read)."""
        if self.read_limit is not None and conn.readable:
            return self.next_read
        return None


class Network:
    """Hosts on one wire. Each host's packets pass its own Impairer on the way out.
    An IPv6 address makes a host that speaks IPv6 (its IPv4 address, 10.77.0.N, unused)."""

    def __init__(
        self,
        addresses: Sequence[IPv4Address | IPv6Address],
        spec: ImpairSpec,
        seed: int,
        *,
        mtu: int,
        config: TcpConfig | None = None,
        iss: list[int] | None = None,
        syn_cookies: bool = False,
    ) -> None:
        rng = random.Random(seed)
        self.hosts: dict[IPv4Address | IPv6Address, Host] = {}
        self.impairers: dict[IPv4Address | IPv6Address, Impairer] = {}
        for n, addr in enumerate(addresses):
            v6 = isinstance(addr, IPv6Address)
            self.hosts[addr] = Host(
                address=IPv4Address(f"10.77.0.{n + 1}") if v6 else IPv4Address(addr),
                address6=addr if isinstance(addr, IPv6Address) else None,
                isn_secret=rng.randbytes(16),
                rng=random.Random(rng.getrandbits(32)),
                config=config,
                mtu=mtu,
                isn=None if iss is None else fixed_isn(iss[n]),
                syn_cookies=syn_cookies,
            )
            self.impairers[addr] = Impairer(spec, random.Random(rng.getrandbits(32)))
        self.now = 0
        self.iterations = 0
        self._in_flight: list[tuple[int, int, IPv4Address | IPv6Address, bytes]] = []
        self._order = 0  # ties at one deliver_at keep their sending order
        self.unroutable = 0
        # Called with (sender address, packet) for every packet a host sends.
        self.observers: list[Callable[[IPv4Address | IPv6Address, bytes], None]] = []

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def step(self, apps: Callable[[int], None]) -> None:
        """Everything that happens at `now`."""
        now = self.now
        heap = self._in_flight
        while heap and heap[0][0] <= now:
            _, _, to, data = heapq.heappop(heap)
            self.hosts[to].receive_packet(data, now)
        for host in self.hosts.values():
            host.handle_timers(now)
        apps(now)
        for addr, host in self.hosts.items():
            impairer = self.impairers[addr]
            for out in host.packets_to_send(now):
                data = bytes(out)  # hosts here have no offloads: plain packets
                for observe in self.observers:
                    observe(addr, data)
                dst: IPv4Address | IPv6Address = (
                    IPv6Address(data[24:40]) if data[0] >> 4 == 6 else IPv4Address(data[16:20])
                )
                if dst not in self.hosts:
                    self.unroutable += 1
                    continue
                for at, delivered in impairer.apply(data, now):
                    heapq.heappush(heap, (at, self._order, dst, delivered))
                    self._order += 1

    def advance(self, wake: int | None = None) -> None:
        """Jump to the next delivery, timer deadline or application wake-up."""
        upcoming = [d for d in (h.next_deadline() for h in self.hosts.values()) if d is not None]
        if wake is not None:
            upcoming.append(wake)
        if self._in_flight:
            upcoming.append(self._in_flight[0][0])
        if not upcoming:
            raise SimulationError(f"stuck at {self.now} ns: nothing in flight, no timer armed")
        self.now = max(self.now, min(upcoming))

    def run(
        self,
        apps: Callable[[int], None],
        done: Callable[[], bool],
        *,
        max_iterations: int,
        max_time: int,
        wake: Callable[[], int | None] = lambda: None,
    ) -> None:
        """Step until done() holds with nothing in flight; bounded in count and time.
        `wake` gives the next time the applications want to act on their own."""
        for _ in range(max_iterations):
            self.iterations += 1
            self.step(apps)
            if done() and not self._in_flight:
                return
            self.advance(wake())
            if self.now > max_time:
                raise SimulationError(f"still running at {self.now / SECOND:.3f} s simulated")
        raise SimulationError(f"not done within {max_iterations} iterations")
