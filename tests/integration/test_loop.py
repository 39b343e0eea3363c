"""stack/io/loop.py with pipes, PairLinks and a scripted host: I/O callbacks, timers, deadlines,
the drain-feed-timers-send cycle, impairment and pcap."""

from __future__ import annotations

import io
import os
import random
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.io.impair import Impairer, ImpairSpec
from stack.io.link import PairLink
from stack.io.loop import DRAIN_LIMIT, Loop, deadline_to_timeout
from stack.io.pcap import PcapWriter
from stack.tcp.clock import MS, SECOND
from stack.wire.packet import Packet


class ScriptedHost:
    """A host that records what it is given and sends what the test queues."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, int]] = []
        self.outbox: list[bytes] = []
        self.deadline: int | None = None
        self.timer_calls: list[int] = []
        self.fired_at: int | None = None
        self.echo = False

    def receive_packet(self, data: bytes | bytearray | memoryview | Packet, now: int) -> None:
        self.received.append((bytes(data), now))
        if self.echo:
            self.outbox.append(b"echo:" + bytes(data))

    def packets_to_send(self, now: int) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def handle_timers(self, now: int) -> None:
        self.timer_calls.append(now)
        if self.deadline is not None and now >= self.deadline:
            self.fired_at = now
            self.deadline = None

    def next_deadline(self) -> int | None:
        return self.deadline


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture
def links() -> Iterator[tuple[PairLink, PairLink]]:
    a, b = PairLink.pair()
    yield a, b
    a.close()
    b.close()


def test_deadline_to_timeout() -> None:
    assert deadline_to_timeout(None, 5) is None
    assert deadline_to_timeout(5, 5) == 0.0
    assert deadline_to_timeout(4, 5) == 0.0
    assert deadline_to_timeout(5 + 1 * SECOND, 5) == 1.0
    assert deadline_to_timeout(5 + 250 * MS, 5) == 0.25
    assert deadline_to_timeout(5 + 1, 5) == 0.000001  # rounded up to a microsecond, never 0
    assert deadline_to_timeout(5 + 1001, 5) == 0.000002


def test_reader_and_writer_callbacks(loop: Loop) -> None:
    r, w = os.pipe()
    try:
        got: list[bytes] = []
        loop.add_reader(r, lambda: got.append(os.read(r, 100)))
        loop.run_once(0)
        assert got == []
        os.write(w, b"hello")
        assert loop.run_until(lambda: got == [b"hello"], timeout=5)
        loop.remove_reader(r)
        os.write(w, b"again")
        loop.run_once(0)
        assert got == [b"hello"]
        writable: list[int] = []
        loop.add_writer(w, lambda: writable.append(w))
        loop.add_reader(w, lambda: None)  # both directions on one fd: one registration
        loop.run_once(0)
        assert writable == [w]
        loop.remove_writer(w)
        loop.remove_reader(w)
        loop.run_once(0)
        assert writable == [w]
    finally:
        os.close(r)
        os.close(w)


def test_call_later_order_and_cancel(loop: Loop) -> None:
    order: list[str] = []
    loop.call_later(0.02, lambda: order.append("b"))
    loop.call_later(0.01, lambda: order.append("a"))
    dropped = loop.call_later(0.015, lambda: order.append("cancelled"))
    dropped.cancel()
    start = loop.now()
    late = loop.call_at(start + 30 * MS, lambda: order.append("c"))
    assert loop.run_until(lambda: len(order) == 3, timeout=5)
    assert order == ["a", "b", "c"]
    assert loop.now() >= late.when
    late.cancel()  # after it ran: harmless


def test_run_until_times_out_false(loop: Loop) -> None:
    start = loop.now()
    assert loop.run_until(lambda: False, timeout=0.05) is False
    assert loop.now() - start >= 50 * MS
    assert loop.run_until(lambda: True, timeout=0) is True


def test_drains_feeds_and_sends(loop: Loop, links: tuple[PairLink, PairLink]) -> None:
    near, far = links
    host = ScriptedHost()
    host.echo = True
    loop.attach(host, near)
    for i in range(3):
        far.send(b"pkt%d" % i)
    loop.run_once(0)
    # all three drained in one wake-up, stamped with the same `now`, answered at once
    assert [p for p, _ in host.received] == [b"pkt0", b"pkt1", b"pkt2"]
    assert len({now for _, now in host.received}) == 1
    assert [far.recv() for _ in range(4)] == [b"echo:pkt0", b"echo:pkt1", b"echo:pkt2", None]
    assert host.timer_calls  # timers are run every pump


def test_drain_is_bounded_per_wakeup(loop: Loop) -> None:
    total = 2 * DRAIN_LIMIT + 10
    near, far = PairLink.pair(limit=total)
    try:
        host = ScriptedHost()
        loop.attach(host, near)
        for i in range(total):
            far.send(struct.pack("!I", i))
        loop.run_once(0)
        # one pump before sleeping and one after waking, each bounded by DRAIN_LIMIT
        assert len(host.received) == 2 * DRAIN_LIMIT
        assert loop.run_until(lambda: len(host.received) == total, timeout=5)
        assert [struct.unpack("!I", p)[0] for p, _ in host.received] == list(range(total))
    finally:
        near.close()
        far.close()


def test_sleeps_until_host_deadline(loop: Loop, links: tuple[PairLink, PairLink]) -> None:
    near, _ = links
    host = ScriptedHost()
    loop.attach(host, near)
    host.deadline = loop.now() + 30 * MS
    deadline = host.deadline
    assert loop.run_until(lambda: host.fired_at is not None, timeout=5)
    assert host.fired_at is not None and host.fired_at >= deadline
    # with nothing pending and no deadline, run_once(timeout) returns after the timeout
    before = loop.iterations
    loop.run_once(0.01)
    assert loop.iterations == before + 1


def test_two_hosts_in_one_loop_settle(loop: Loop, links: tuple[PairLink, PairLink]) -> None:
    a_link, b_link = links
    a, b = ScriptedHost(), ScriptedHost()
    b.echo = True
    loop.attach(a, a_link)
    loop.attach(b, b_link)
    a.outbox.append(b"ping")
    loop.run_once(0)
    assert [p for p, _ in b.received] == [b"ping"]
    assert [p for p, _ in a.received] == [b"echo:ping"]
    loop.detach(b)
    a.outbox.append(b"lost")
    loop.run_once(0)
    assert [p for p, _ in b.received] == [b"ping"]
    assert b_link.pending() == 1


def test_impairment_delays_and_drops(loop: Loop, links: tuple[PairLink, PairLink]) -> None:
    near, far = links
    host = ScriptedHost()
    delay = Impairer(ImpairSpec.parse("delay=20ms"), random.Random(1))
    loss = Impairer(ImpairSpec.parse("loss=100%"), random.Random(1))
    loop.attach(host, near, impair_out=delay, impair_in=loss)
    host.outbox.append(b"late")
    sent_at = loop.now()
    loop.run_once(0)
    assert far.recv() is None  # held by the delay
    got: list[bytes] = []

    def arrived() -> bool:
        p = far.recv()
        if p is not None:
            got.append(p)
        return bool(got)

    assert loop.run_until(arrived, timeout=5)
    assert got == [b"late"]
    assert loop.now() - sent_at >= 20 * MS
    far.send(b"dropped")
    loop.run_once(0)
    assert host.received == []
    assert (delay.counters["delivered"], loss.counters["lost"]) == (1, 1)


def test_pcap_records_both_directions(loop: Loop, links: tuple[PairLink, PairLink]) -> None:
    near, far = links
    host = ScriptedHost()
    host.echo = True
    buf = io.BytesIO()
    pcap = PcapWriter(buf)
    loop.attach(host, near, pcap=pcap)
    far.send(b"in")
    loop.run_once(0)
    assert pcap.count == 2
    raw = buf.getvalue()
    first = raw[24:]
    ts_sec, _, incl, orig = struct.unpack("<IIII", first[:16])
    assert (incl, orig, first[16:18]) == (2, 2, b"in")
    second = first[18:]
    assert second[16:] == b"echo:in"
    assert ts_sec > 1_600_000_000  # a wall-clock stamp, not the monotonic clock


@pytest.mark.timeout(20)
def test_work_done_before_sleeping_is_not_slept_on(
    loop: Loop, links: tuple[PairLink, PairLink]
) -> None:
    near, far = links
    host = ScriptedHost()
    loop.attach(host, near)
    far.send(b"x")
    seen: list[int] = []
    loop.add_hook(lambda: seen.append(len(host.received)))
    # Nothing else will ever be ready: were the iteration to sleep after receiving the
    # packet, timeout=None would hang here until the test's timeout.
    loop.run_once(None)
    assert seen == [1]


def test_unpollable_fd_is_refused_and_forgotten(loop: Loop, tmp_path: Path) -> None:
    path = tmp_path / "regular"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(PermissionError):
            loop.add_reader(fd, lambda: None)  # epoll cannot watch a regular file
        with pytest.raises(PermissionError):
            loop.add_writer(fd, lambda: None)
        loop.run_once(0)  # nothing half-registered is left behind
        loop.remove_reader(fd)
        loop.remove_writer(fd)
    finally:
        os.close(fd)


class FdlessLink:
    """A Link without a descriptor: packets appear in `inbox` behind the loop's back."""

    def __init__(self) -> None:
        self.inbox: list[bytes] = []
        self.sent: list[bytes] = []

    def fileno(self) -> int | None:
        return None

    def recv(self) -> bytes | None:
        return self.inbox.pop(0) if self.inbox else None

    def send(self, packet: bytes | bytearray | memoryview | Packet) -> None:
        self.sent.append(bytes(packet))

    def close(self) -> None:
        pass


@pytest.mark.timeout(20)
def test_link_without_fileno_is_polled(loop: Loop) -> None:
    link = FdlessLink()
    host = ScriptedHost()
    loop.attach(host, link)
    loop.run_once(0)
    link.inbox.append(b"late")  # no descriptor will ever say so: only polling finds it
    assert loop.run_until(lambda: len(host.received) == 1, timeout=None)
    assert host.received[0][0] == b"late"
