"""The event loop: one thread, `selectors`, timers; the one place the clock is read.

Imports the standard library and the layers below (stack.io.link, pcap; stack.io.impair
when a host is attached with impairers or a fault is active).

A `Loop` drives one or more attached hosts, each over its own link (a TUN device, or
a `PairLink` in tests). Every wake-up, for each host: drain its link until EAGAIN (at
most DRAIN_LIMIT packets, so a flood cannot starve timers and other descriptors; the
rest is read on the next wake-up, at once) into `host.receive_packet`, run
`host.handle_timers`, write `host.packets_to_send` to the link. Draining a batch before
asking for output lets the host answer a burst with one cumulative ACK, as GRO does.
Then run due loop timers and the callbacks of ready file descriptors (stdin,
stdout, child pipes, the control socket), pump the hosts again so what those callbacks
queued leaves at once, and run the iteration hooks (the API's change notifications).
Then sleep until the earliest of: a host's `next_deadline()`, a loop timer, a held
(impaired) packet, or I/O.

Optional per host: an `Impairer` for each direction (`--impair`) and a `PcapWriter`
that records every packet the host sends and receives. `attach` wraps the link in
them (`ImpairedLink`, then `PcapLink` around it, so the capture shows outgoing packets
before impairment and incoming ones after it: a capture on the stack's own interface);
the per-connection faults of `pytcp impair` (`Faults`) sit between the capture and the
link-wide impairment (`_FaultsLink`). The loop itself only moves packets between a link
and a host, and wakes when a wrapper's `next_deadline()` (a held packet) is due.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import time
from collections import deque
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Protocol

from stack.io.faults import Faults
from stack.io.link import Link
from stack.io.pcap import PcapLink, PcapWriter
from stack.wire.packet import Packet

if TYPE_CHECKING:
    from stack.io.impair import Impairer

DRAIN_LIMIT = 4096  # packets read from one link per wake-up, so timers and fds are not starved
POLL_INTERVAL = 1_000_000  # ns: how often a link without a file descriptor is polled
SETTLE_ROUNDS = 8  # pump rounds per wake-up while hosts keep producing packets for each other
_NOTHING_READY: frozenset[int] = frozenset()


class HostLike(Protocol):
    """What the loop needs of a host (stack.host.Host satisfies it)."""

    def receive_packet(self, data: bytes | bytearray | memoryview | Packet, now: int) -> None: ...
    def packets_to_send(self, now: int) -> Sequence[bytes | Packet]: ...
    def handle_timers(self, now: int) -> None: ...
    def next_deadline(self) -> int | None: ...


def deadline_to_timeout(deadline: int | None, now: int) -> float | None:
    """Seconds from `now` until `deadline` (ns) for select(): None waits for I/O only.

    Rounded up to the next microsecond so the loop never wakes just before a deadline
    and spins; a deadline already past gives 0.
    """
    if deadline is None:
        return None
    if deadline <= now:
        return 0.0
    return -(-(deadline - now) // 1000) / 1_000_000


class Handle:
    """A scheduled callback; `cancel()` before it runs and it never does."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Port:
    """One attached host and its link (wrapped in impairment and pcap when asked)."""

    def __init__(self, host: HostLike, link: Link) -> None:
        self.host = host
        self.link = link
        self.deadline: Callable[[], int | None] | None = getattr(link, "next_deadline", None)
        self.flush: Callable[[], None] | None = getattr(link, "flush", None)
        self.polled = False  # the link has no fileno(): wake every POLL_INTERVAL to read it
        self.fd: int | None = None
        # The last drain stopped at DRAIN_LIMIT, not at an empty link: read again before
        # the descriptor says so.
        self.unread = False
        # Whether the link's wrappers may hold a packet now (`attach` sets it for a
        # link that says it keeps none itself); by default a link may always hold one.
        self.holds: Callable[[], bool] = _always

    def may_hold(self) -> bool:
        """Whether a recv() can return a packet although the descriptor was not
        reported readable: no descriptor (polled), a drain cut short, or a link that
        keeps packets of its own (impairment, `pytcp impair` faults, a link that does
        not say it reads from its descriptor only)."""
        return self.polled or self.unread or self.holds()


def _always() -> bool:
    return True


def _never() -> bool:
    return False


class _FaultsLink:
    """Any Link through the per-connection faults of `pytcp impair` (stack.io.faults):
    each packet, while any fault is active, is handed to `Faults.apply` on its way, as a
    wire would carry it (a super-packet cut into its segments, `wire_packets`); what it
    delays waits here, what it holds back for reordering in `Faults` until overtaken or
    due (`Faults.due`). No fault active: packets pass as they are."""

    def __init__(self, inner: Link, faults: Faults, *, clock: Callable[[], int]) -> None:
        self.inner = inner
        self.faults = faults
        self._clock = clock
        self._held: list[tuple[int, int, bool, bytes]] = []  # (at, seq, outgoing, packet)
        self._seq = itertools.count()
        self._ready: deque[bytes] = deque()

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def holds(self) -> bool:
        """Whether recv() may return a packet without reading the inner link: one held
        (delayed, reordered) or ready, or a fault active."""
        return bool(self._held or self._ready or self.faults.active)

    def next_deadline(self) -> int | None:
        inner = getattr(self.inner, "next_deadline", None)
        candidates = [inner() if inner is not None else None]
        if self._held:
            candidates.append(self._held[0][0])
        if self.faults.active:
            candidates.append(self.faults.next_deadline())
        found = [d for d in candidates if d is not None]
        return min(found) if found else None

    def flush(self) -> None:
        inner = getattr(self.inner, "flush", None)
        if inner is not None:
            inner()

    def _release(self, now: int) -> None:
        held = self._held
        while held and held[0][0] <= now:
            _, _, outgoing, packet = heapq.heappop(held)
            self._pass(outgoing, packet)
        if self.faults.active:
            for outgoing, packet in self.faults.due(now):  # reordered, nothing overtook them
                self._pass(outgoing, packet)

    def _pass(self, outgoing: bool, packet: bytes) -> None:
        if outgoing:
            self.inner.send(packet)
        else:
            self._ready.append(packet)

    def _filter(self, packet: bytes | bytearray | memoryview | Packet, now: int,
                outgoing: bool) -> None:  # fmt: skip
        from stack.io.impair import wire_packets  # faults are active: imported by now

        for wire in wire_packets(packet):
            fate = self.faults.apply(wire, now, outgoing)
            if fate is None:
                self._pass(outgoing, wire)
                continue
            for at, copy in fate:
                if at <= now:
                    self._pass(outgoing, copy)
                else:  # delayed: passed on as it is when due
                    heapq.heappush(self._held, (at, next(self._seq), outgoing, copy))

    def recv(self) -> bytes | bytearray | memoryview | Packet | None:
        now = self._clock()
        self._release(now)
        while not self._ready:
            packet = self.inner.recv()
            if packet is None:
                return None
            if not self.faults.active:
                return packet
            self._filter(packet, now, False)
        return self._ready.popleft()

    def send(self, packet: bytes | bytearray | memoryview | Packet) -> None:
        now = self._clock()
        self._release(now)
        if not self.faults.active:
            self.inner.send(packet)
            return
        self._filter(packet, now, True)

    def close(self) -> None:
        self._held.clear()
        self._ready.clear()
        self.inner.close()


class Loop:
    """One thread's event loop. Not thread-safe: use it from the thread that made it."""

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._readers: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Callable[[], None]] = {}
        self._timers: list[tuple[int, int, Handle]] = []
        self._timer_seq = itertools.count()
        self._ports: list[_Port] = []
        self._link_fds: dict[int, _Port] = {}
        self._hooks: list[Callable[[], None]] = []
        self.iterations = 0
        self.closed = False

    # -- time --------------------------------------------------------------------------

    def now(self) -> int:
        """The loop's clock: monotonic integer nanoseconds."""
        return self._clock()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        """Run `callback` once, `delay` seconds from now (on a later iteration)."""
        return self.call_at(self.now() + max(0, round(delay * 1_000_000_000)), callback)

    def call_at(self, when: int, callback: Callable[[], None]) -> Handle:
        """Run `callback` once at loop time `when` (ns)."""
        handle = Handle(when, callback)
        heapq.heappush(self._timers, (when, next(self._timer_seq), handle))
        return handle

    # -- hosts and file descriptors ----------------------------------------------------

    def attach(
        self,
        host: HostLike,
        link: Link,
        *,
        impair_out: Impairer | None = None,
        impair_in: Impairer | None = None,
        pcap: PcapWriter | None = None,
        faults: Faults | None = None,
    ) -> None:
        """Drive `host` over `link` from now on, wrapped in `ImpairedLink` (impairers
        given), `_FaultsLink` (`faults`: its connections' packets between the host and
        the link-wide impairment, `pytcp impair`) and `PcapLink` (a pcap writer)."""
        # A link that keeps no packet of its own (`reads_from_fd_only`, the TUN) is read
        # only when its descriptor is readable, unless impairment or faults hold some.
        holds: Callable[[], bool] | None = None
        if getattr(link, "reads_from_fd_only", False):
            holds = _never
        if impair_out is not None or impair_in is not None:
            holds = None
            from stack.io.impair import ImpairedLink

            link = ImpairedLink(link, impair_out=impair_out, impair_in=impair_in, clock=self.now)
        if faults is not None:
            faults_link = _FaultsLink(link, faults, clock=self.now)
            link = faults_link
            if holds is not None:
                holds = faults_link.holds
        if pcap is not None:
            wall_offset = time.time_ns() - self.now()
            now = self.now
            link = PcapLink(link, pcap, clock=lambda: now() + wall_offset)
        port = _Port(host, link)
        if holds is not None:
            port.holds = holds
        self._ports.append(port)
        fd = link.fileno()
        port.fd = fd
        if fd is not None:
            self._link_fds[fd] = port
            self._update(fd)
        else:
            port.polled = True  # Link protocol: no descriptor means the loop must poll

    def detach(self, host: HostLike) -> None:
        """Stop driving `host`; its held packets are dropped. The link stays open."""
        for port in [p for p in self._ports if p.host is host]:
            self._ports.remove(port)
            for fd, p in list(self._link_fds.items()):
                if p is port:
                    del self._link_fds[fd]
                    self._update(fd)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` whenever `fd` is readable (replaces an earlier reader)."""
        previous = self._readers.get(fd)
        self._readers[fd] = callback
        try:
            self._update(fd)
        except BaseException:  # e.g. PermissionError: epoll refuses regular files
            self._restore(self._readers, fd, previous)
            raise

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` whenever `fd` is writable (replaces an earlier writer)."""
        previous = self._writers.get(fd)
        self._writers[fd] = callback
        try:
            self._update(fd)
        except BaseException:
            self._restore(self._writers, fd, previous)
            raise

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def fork_reset(self) -> None:
        """In a child after os.fork(): a selector of its own (the parent's epoll is
        shared with the child) watching only the links; no timers, readers, writers or
        hooks of the parent's application survive. Call it while the inherited
        descriptors are still open: the child's copy of the old epoll descriptor is
        closed here, before the new one is made (left to the garbage collector, it would
        be closed after the new one took its number, closing the new one)."""
        self._selector.close()
        self._selector = selectors.DefaultSelector()
        self._readers.clear()
        self._writers.clear()
        self._timers.clear()
        self._hooks.clear()
        for fd in self._link_fds:
            self._update(fd)

    def selector_fileno(self) -> int | None:
        """The selector's own descriptor (an epoll fd), for a child that closes every
        descriptor it does not keep; None for a selector without one."""
        fileno = getattr(self._selector, "fileno", None)
        return int(fileno()) if fileno is not None else None

    def add_hook(self, hook: Callable[[], None]) -> None:
        """Call `hook` at the end of every iteration (after the hosts are pumped)."""
        self._hooks.append(hook)

    def remove_hook(self, hook: Callable[[], None]) -> None:
        if hook in self._hooks:
            self._hooks.remove(hook)

    @staticmethod
    def _restore(
        table: dict[int, Callable[[], None]], fd: int, previous: Callable[[], None] | None
    ) -> None:
        if previous is None:
            table.pop(fd, None)
        else:
            table[fd] = previous

    def _update(self, fd: int) -> None:
        events = 0
        if fd in self._readers or fd in self._link_fds:
            events |= selectors.EVENT_READ
        if fd in self._writers:
            events |= selectors.EVENT_WRITE
        try:
            registered = self._selector.get_key(fd).events
        except KeyError:
            registered = 0
        if events == registered:
            return
        if not events:
            self._selector.unregister(fd)
        elif not registered:
            self._selector.register(fd, events)
        else:
            self._selector.modify(fd, events)

    # -- running -----------------------------------------------------------------------

    def run_once(self, timeout: float | None = None) -> None:
        """One iteration: pump the hosts, sleep until the next deadline or I/O (at most
        `timeout` seconds; 0 polls), run what became ready, pump again, run the hooks."""
        now = self.now()
        # Before the select only links that may hold a packet are read: a descriptor
        # link was drained to EAGAIN after the last select, and the select reports what
        # came since (a read here would be an EAGAIN per wake-up).
        busy = self._pump(now, _NOTHING_READY) + self._run_timers(now)
        if busy:
            # Work was done: poll only, so the hooks and the caller's predicate see it now.
            wake: int | None = now
        else:
            wake = self._next_wake()
            if timeout is not None:
                limit = now + round(max(0.0, timeout) * 1_000_000_000)
                wake = limit if wake is None else min(wake, limit)
        ready = self._selector.select(deadline_to_timeout(wake, self.now()))
        readable: set[int] = set()
        for key, events in ready:
            fd = key.fd
            if events & selectors.EVENT_READ:
                readable.add(fd)
                reader = self._readers.get(fd)
                if reader is not None:
                    reader()
            if events & selectors.EVENT_WRITE:
                writer = self._writers.get(fd)
                if writer is not None:
                    writer()
        now = self.now()
        self._run_timers(now)
        self._pump(now, readable)
        self.iterations += 1
        for hook in list(self._hooks):
            hook()

    def run_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run iterations until `predicate()` is true (True) or `timeout` seconds pass (False)."""
        if predicate():
            return True
        deadline = None if timeout is None else self.now() + round(timeout * 1_000_000_000)
        while True:
            if deadline is None:
                self.run_once(None)
            else:
                remaining = deadline - self.now()
                if remaining <= 0:
                    return predicate()
                self.run_once(remaining / 1_000_000_000)
            if predicate():
                return True

    def close(self) -> None:
        """Forget every host, fd and timer (closes nothing it was handed)."""
        self._ports.clear()
        self._link_fds.clear()
        self._readers.clear()
        self._writers.clear()
        self._timers.clear()
        self._hooks.clear()
        self._selector.close()
        self.closed = True

    # -- internals ---------------------------------------------------------------------

    def _next_wake(self) -> int | None:
        wake: int | None = None
        now = self.now()
        for port in self._ports:
            if port.polled and (wake is None or now + POLL_INTERVAL < wake):
                wake = now + POLL_INTERVAL
            d = port.host.next_deadline()
            if d is not None and (wake is None or d < wake):
                wake = d
            if port.deadline is not None:
                d = port.deadline()
                if d is not None and (wake is None or d < wake):
                    wake = d
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if self._timers and (wake is None or self._timers[0][0] < wake):
            wake = self._timers[0][0]
        return wake

    def _run_timers(self, now: int) -> int:
        """Run the loop timers due at `now`; returns how many ran."""
        timers = self._timers
        ran = 0
        while timers and timers[0][0] <= now:
            handle = heapq.heappop(timers)[2]
            if not handle.cancelled:
                handle.cancelled = True  # ran: cancel() afterwards is a no-op
                handle.callback()
                ran += 1
        return ran

    def _pump(self, now: int, readable: AbstractSet[int]) -> int:
        """Move packets until the hosts are quiet (or SETTLE_ROUNDS pass): links into
        hosts, due held packets on, host timers, host output out. Returns packets moved.
        A link is read when its descriptor is in `readable` (the last select's) or it
        may hold a packet (`_Port.may_hold`); in a later round (the hosts sent each
        other packets) every link is read. Host timers run after their link was read:
        a timer must not fire for want of a packet already waiting (before the select,
        a link that is not read only sends; a due timer makes the select return at
        once)."""
        total = 0
        before_select = readable is _NOTHING_READY
        for _ in range(SETTLE_ROUNDS):
            moved = 0
            for port in self._ports:
                read = port.fd in readable or port.may_hold()
                # Before the select, a link not read is not timed either: a host timer
                # due now runs after the select, once what arrived (an ACK) is read.
                moved += self._pump_port(port, now, read, timers=read or not before_select)
            total += moved
            if not moved or len(self._ports) < 2:
                break  # with one host nothing it sent can come back within this wake-up
            readable = self._link_fds.keys()
        return total

    def _pump_port(self, port: _Port, now: int, read: bool = True, timers: bool = True) -> int:
        """Drain the link (at most DRAIN_LIMIT packets; none unless `read`) into the
        host, then run its timers (if `timers`) and send what it has: one round of
        output for the whole batch."""
        host, link = port.host, port.link
        moved = 0
        if read:
            receive = host.receive_packet
            recv = link.recv
            port.unread = True
            for _ in range(DRAIN_LIMIT):
                incoming = recv()
                if incoming is None:
                    port.unread = False
                    break
                moved += 1
                receive(incoming, now)
        if timers:
            host.handle_timers(now)
        out = host.packets_to_send(now)
        if out:
            send = link.send
            for packet in out:
                send(packet)
        if port.flush is not None and (out or moved):
            port.flush()
        return moved + len(out)
