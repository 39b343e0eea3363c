"""Sequence numbers across 2**32: ISS and IRS a few hundred bytes before the wrap."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS
from stack.tcp.config import TcpConfig
from stack.tcp.state import State
from tests.tcp.helpers import (
    ACK,
    CONFIG,
    FIN,
    LOCAL_ISS,
    PSH,
    RECV,
    RST,
    SEND,
    connection,
    established,
    recv,
    recv_all,
    send,
    syn,
)

ISS = 2**32 - 300
IRS = 2**32 - 200
M = 2**32


def at(n: int) -> int:
    return n % M


def wrapped():
    c = established(iss=ISS, irs=IRS)
    return c


OUT = replace(RECV, seq=ISS + 1, ack=IRS + 1)
IN = replace(SEND, seq=IRS + 1, ack=ISS + 1)


def test_handshake_near_the_wrap() -> None:
    c = wrapped()
    assert (c.tcb.snd_nxt, c.tcb.rcv_nxt) == (ISS + 1, IRS + 1)


def test_sending_across_the_wrap() -> None:
    c = wrapped()
    c.send(b"a" * 1000, 0)
    out = recv_all(c, 0)
    assert out == [replace(OUT, flags=PSH | ACK, payload=b"a" * 1000)]
    send(c, replace(IN, ack=at(ISS + 1 + 1000)), 1)
    assert c.tcb.snd_una == at(ISS + 1001) == 701
    assert c.timers["retransmission"].deadline is None


def test_receiving_across_the_wrap_in_and_out_of_order() -> None:
    c = wrapped()
    send(c, replace(IN, seq=at(IRS + 1 + 300), payload=b"b" * 300), 0)  # beyond the wrap
    assert recv(c, 0) == OUT
    assert c.snapshot(0)["buffers"]["out_of_order"] == [[at(IRS + 301), at(IRS + 601)]]
    send(c, replace(IN, payload=b"a" * 300), 1)  # straddles the wrap
    assert recv(c, 1) == replace(OUT, ack=at(IRS + 601), window=4096 - 600)
    assert c.receive(1000, 1) == b"a" * 300 + b"b" * 300


def test_rst_rules_across_the_wrap() -> None:
    c = wrapped()
    send(c, replace(IN, seq=at(IRS + 1 + 250), flags=RST), 0)  # in window, past 2**32
    assert recv(c, 0) == OUT  # challenge ACK
    send(c, replace(IN, seq=at(IRS + 1 - 1), flags=RST), 1)  # just before: ignored
    assert c.state is State.ESTABLISHED
    send(c, replace(IN, flags=RST), 2)
    assert c.state is State.CLOSED


def test_close_across_the_wrap() -> None:
    c = wrapped()
    c.send(b"x" * 400, 0)
    c.shutdown(0)
    assert recv(c, 0) == replace(OUT, flags=FIN | PSH | ACK, payload=b"x" * 400)
    send(c, replace(IN, ack=at(ISS + 402), flags=FIN | ACK, payload=b"y" * 250), 1)
    assert c.state is State.TIME_WAIT
    assert recv(c, 1) == replace(OUT, seq=at(ISS + 402), ack=at(IRS + 252), window=4096 - 250)


def test_old_ack_before_the_wrap_is_acceptable_within_max_window() -> None:
    c = wrapped()
    c.send(b"z" * 500, 0)
    recv(c, 0)
    send(c, replace(IN, ack=at(ISS + 501)), 1)
    send(c, replace(IN, ack=at(ISS + 1), payload=b"q"), 2)  # old ACK, in range: data taken
    assert c.readable == 1
    assert c.tcb.snd_una == at(ISS + 501)


def test_fast_retransmit_still_works_after_two_gib_without_loss() -> None:
    # RFC 6582 §3.2 "recover" must stay within 2**31 of SND.UNA for the mod-2**32
    # comparison of step 2: outside recovery it follows SND.UNA.
    cfg = TcpConfig(**{**CONFIG.__dict__, "cc": "newreno", "wscale": True, "snd_buf": 4 << 20})
    c = connection(cfg, mtu=65535)
    c.open_passive(0)
    send(c, syn(mss=65495, wscale=7), 0)
    recv(c, 0)
    win = (8 << 20) >> 7
    send(c, replace(SEND, ack=LOCAL_ISS + 1, window=win), 0)
    assert c.state is State.ESTABLISHED
    chunk = b"z" * (1 << 20)
    total = 0
    t = 0
    while total < 2**31 + (4 << 20):
        total += c.send(chunk, t)
        if recv_all(c, t):
            send(c, replace(SEND, ack=c.tcb.snd_max, window=win), t)
        t += MS
    while recv_all(c, t):
        send(c, replace(SEND, ack=c.tcb.snd_max, window=win), t)
    una = c.tcb.snd_una
    assert una == at(LOCAL_ISS + 1 + total)
    assert c.snapshot(t)["congestion"]["recover"] == una
    mss = c.tcb.snd_mss
    c.send(b"q" * 8 * mss, t)
    assert [s.seq for s in recv_all(c, t)] == [at(una + k * mss) for k in range(8)]
    for k in range(3):  # the first is lost; three duplicates
        send(c, replace(SEND, ack=una, window=win), t + (k + 1) * MS)
    out = recv_all(c, t + 3 * MS)
    assert [(s.seq, len(s.payload)) for s in out] == [(una, mss)]
    assert c.snapshot(t + 3 * MS)["congestion"]["phase"] == "recovery"
