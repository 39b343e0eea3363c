"""PairLink: in-order whole-packet delivery, a selectable descriptor, close and limits."""

from __future__ import annotations

import selectors
import threading

import pytest

from stack.io.link import Link, PairLink


def readable(link: PairLink) -> bool:
    fd = link.fileno()
    assert fd is not None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout=0))


def test_packets_cross_in_order_and_whole() -> None:
    a, b = PairLink.pair()
    with a, b:
        assert isinstance(a, Link)
        a.send(b"one")
        a.send(bytearray(b"two"))
        b.send(b"back")
        assert b.recv() == b"one"
        assert b.recv() == b"two"
        assert b.recv() is None
        assert a.recv() == b"back"
        assert a.recv() is None
        assert (a.sent, a.received, b.sent, b.received) == (2, 1, 1, 2)


def test_fileno_is_readable_exactly_while_packets_wait() -> None:
    a, b = PairLink.pair()
    with a, b:
        assert not readable(b)
        a.send(b"x")
        a.send(b"y")
        assert readable(b)
        assert b.recv() == b"x"
        assert readable(b)
        assert b.recv() == b"y"
        assert not readable(b)
        assert b.pending() == 0


def test_limit_drops_and_counts() -> None:
    a, b = PairLink.pair(limit=2)
    with a, b:
        for n in range(5):
            a.send(bytes([n]))
        assert (b.pending(), a.sent, a.dropped) == (2, 5, 3)
        assert [b.recv(), b.recv(), b.recv()] == [b"\x00", b"\x01", None]


def test_closed_end() -> None:
    a, b = PairLink.pair()
    b.close()
    a.send(b"lost")  # the peer is gone: dropped like on an unplugged cable
    assert a.dropped == 1
    assert b.fileno() is None
    assert b.recv() is None
    with pytest.raises(OSError):
        b.send(b"x")
    b.close()  # idempotent
    a.close()


def test_two_threads() -> None:
    a, b = PairLink.pair(limit=100_000)
    count = 20_000

    def writer() -> None:
        for n in range(count):
            a.send(n.to_bytes(4, "big"))

    t = threading.Thread(target=writer)
    t.start()
    got: list[int] = []
    sel = selectors.DefaultSelector()
    fd = b.fileno()
    assert fd is not None
    sel.register(fd, selectors.EVENT_READ)
    for _ in range(100_000):
        if len(got) == count:
            break
        sel.select(timeout=1)
        while (p := b.recv()) is not None:
            got.append(int.from_bytes(p, "big"))
    t.join(timeout=10)
    sel.close()
    a.close()
    b.close()
    assert got == list(range(count))
