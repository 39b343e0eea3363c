"""The receiver's SACK option: block order per RFC 2018 §4 (the most recent block first,
then the most recently reported others, as Linux) and D-SACK blocks (RFC 2883 §4)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.config import TcpConfig
from tests.tcp.helpers import (
    REMOTE_ISS,
    SEND,
    connection,
    recv,
    send,
    syn,
)

SACK = TcpConfig(rcv_buf=64 * 1024, snd_buf=64 * 1024, cc="none", wscale=False)
NXT = REMOTE_ISS + 1


def sacking(*, timestamps: bool = False):
    c = connection(replace(SACK, timestamps=timestamps))
    c.open_passive(0)
    send(c, syn(sack_permitted=True, timestamps=(1, 0) if timestamps else None), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(1, 0) if timestamps else None), 0)
    return c


def data(seq: int, n: int = 100, *, timestamps: bool = False):
    return replace(SEND, seq=NXT + seq, payload=b"x" * n, timestamps=(2, 0) if timestamps else None)


def test_five_ranges_most_recent_first_then_most_recently_reported() -> None:
    # The example: 101:201, 301:401, ..., 901:1001 arrive in that order; with
    # timestamps three blocks fit.  Linux sends 901:1001 701:801 501:601.
    c = sacking(timestamps=True)
    for k, start in enumerate((100, 300, 500, 700, 900)):
        send(c, data(start, timestamps=True), k + 1)
        seg = recv(c, k + 1)
    assert seg.sack == (
        (NXT + 900, NXT + 1000),
        (NXT + 700, NXT + 800),
        (NXT + 500, NXT + 600),
    )


def test_a_range_that_grows_moves_to_the_front() -> None:
    c = sacking()
    for k, start in enumerate((100, 300, 500, 700, 900)):
        send(c, data(start), k + 1)
        recv(c, k + 1)
    send(c, data(200), 6)  # joins 101:201 and 301:401
    assert recv(c, 6).sack == (
        (NXT + 100, NXT + 400),
        (NXT + 900, NXT + 1000),
        (NXT + 700, NXT + 800),
        (NXT + 500, NXT + 600),
    )


def test_blocks_rcv_nxt_passed_are_dropped_from_the_order() -> None:
    c = sacking()
    for k, start in enumerate((100, 300)):
        send(c, data(start), k + 1)
        recv(c, k + 1)
    send(c, data(0), 3)
    seg = recv(c, 3)
    assert (seg.ack, seg.sack) == (NXT + 200, ((NXT + 300, NXT + 400),))
    assert c.sack_order == [NXT + 300]


def test_dsack_for_a_duplicate_below_rcv_nxt() -> None:  # RFC 2883 §4 (1), example 4.1.1
    c = sacking()
    send(c, data(0), 1)
    c.handle_timers(1)
    send(c, data(0), 2)  # the same segment again: a spurious retransmission
    seg = recv(c, 2)
    assert (seg.ack, seg.sack) == (NXT + 100, ((NXT, NXT + 100),))
    assert c.counters["dsacks_sent"] == 1
    c.send(b"y", 3)
    assert recv(c, 3).sack == ()  # reported once


def test_dsack_for_a_partly_duplicate_segment() -> None:
    c = sacking()
    send(c, data(0), 1)
    send(c, data(50), 2)  # 50 bytes old, 50 new: in order, the ACK may be delayed
    seg = recv(c, 2 + SACK.delayed_ack)
    assert (seg.ack, seg.sack) == (NXT + 150, ((NXT + 50, NXT + 100),))


def test_dsack_above_rcv_nxt_is_followed_by_its_block() -> None:  # RFC 2883 §4 (2)
    c = sacking()
    send(c, data(300), 1)
    recv(c, 1)
    send(c, data(500), 2)
    recv(c, 2)
    send(c, data(300), 3)  # held out of order already
    assert recv(c, 3).sack == (
        (NXT + 300, NXT + 400),
        (NXT + 300, NXT + 400),
        (NXT + 500, NXT + 600),
    )


def test_no_dsack_without_sack() -> None:
    c = connection(replace(SACK, sack=False, timestamps=False))
    c.open_passive(0)
    send(c, syn(), 0)
    recv(c, 0)
    send(c, SEND, 0)
    send(c, data(0), 1)
    send(c, data(0), 2)
    seg = recv(c, 2)
    assert (seg.ack, seg.sack, c.dsack) == (NXT + 100, (), None)
