"""Timers on demand (Connection.fire_timer / set_timer, `pytcp timer`) and the window
clamp (`pytcp impair ID window N`), sans-IO with exact segments and a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stack.tcp.clock import MS, SECOND
from stack.tcp.errors import InvalidStateError
from stack.tcp.state import State
from stack.trace import TraceLog
from stack.wire.tcp import TcpSegment
from tests.tcp.helpers import (
    ACK,
    BUF,
    LOCAL_ISS,
    RECV,
    REMOTE_ISS,
    SEND,
    connection,
    established,
    recv,
    recv_nothing,
    send,
    syn_received,
    time_wait,
)


def test_fire_time_wait_ends_it_now() -> None:
    c = time_wait(now=0)
    assert c.timers["time-wait"].deadline == 60 * SECOND
    c.fire_timer("time-wait", 5 * SECOND)
    assert c.state is State.CLOSED
    assert recv_nothing(c, 5 * SECOND)


def test_fire_retransmission_resends_the_head_and_backs_off() -> None:
    c = established()
    c.send(b"abc", 0)
    assert recv(c, 0) == replace(RECV, payload=b"abc", flags=ACK | 8)
    # The handshake measured 0 ns: the RTO is at its 200 ms floor.
    assert c.timers["retransmission"].deadline == 200 * MS
    c.fire_timer("retransmission", 100 * MS)
    assert recv(c, 100 * MS) == replace(RECV, payload=b"abc", flags=ACK | 8)
    timer = c.timers["retransmission"]
    assert (timer.deadline, timer.backoff) == (100 * MS + 400 * MS, 1)
    assert c.counters["retransmissions"] == 1


def test_fire_traces_the_request_then_the_firing() -> None:
    log = TraceLog()
    c = connection(tracer=log)
    c.open_active(0)
    c.segments_to_send(0)
    c.fire_timer("syn", 10 * MS)
    actions = [(e.fields["timer"], e.fields["action"]) for e in log.of_kind("timer")]
    assert actions[-3:] == [("syn", "forced"), ("syn", "fired"), ("syn", "armed")]


def test_fire_or_set_a_timer_that_is_not_armed_is_refused() -> None:
    c = established()
    with pytest.raises(InvalidStateError, match="the time-wait timer is not armed"):
        c.fire_timer("time-wait", 0)
    with pytest.raises(InvalidStateError, match="the persist timer is not armed"):
        c.set_timer("persist", SECOND, 0)
    with pytest.raises(ValueError, match="no timer 'rto'"):
        c.fire_timer("rto", 0)
    assert c.state is State.ESTABLISHED


def test_set_moves_the_deadline_and_keeps_backoff_and_reason() -> None:
    c = syn_received()
    c.fire_timer("syn", 0)  # one SYN-ACK retransmission: backoff 1
    recv(c, 0)
    before = c.timers["syn"]
    assert (before.backoff, before.reason) == (1, "SYN retransmission")
    c.set_timer("syn", 5 * SECOND, 1 * SECOND)
    after = c.timers["syn"]
    assert (after.deadline, after.backoff, after.reason) == (6 * SECOND, 1, "SYN retransmission")


# ---------------------------------------------------------------- window clamp


def _data(seq_offset: int, n: int) -> TcpSegment:
    return replace(SEND, seq=REMOTE_ISS + 1 + seq_offset, payload=b"x" * n)


def test_window_zero_closes_as_data_fills_it_and_a_probe_is_refused() -> None:
    c = established()
    c.clamp_window(0, 0)
    # Nothing advertised yet: the right edge stays BUF bytes ahead; 1000 bytes arrive.
    send(c, _data(0, 1000), 0)
    ack = recv(c, 40 * MS)  # the delayed ACK: the window now ends where it ended before
    assert (ack.ack, ack.window) == (REMOTE_ISS + 1001, BUF - 1000)
    send(c, _data(1000, BUF - 1000), 50 * MS)
    ack = recv(c, 50 * MS)
    assert (ack.ack, ack.window) == (REMOTE_ISS + 1 + BUF, 0)
    # Reading frees the buffer, but the clamp keeps the window shut: no update.
    assert c.receive(BUF, 60 * MS) == b"x" * BUF
    assert recv_nothing(c, 60 * MS)
    # The peer's one-byte zero-window probe is not taken, and is answered.
    send(c, _data(BUF, 1), 300 * MS)
    ack = recv(c, 300 * MS)
    assert (ack.ack, ack.window) == (REMOTE_ISS + 1 + BUF, 0)
    assert c.counters["drops"] == {"zero-window": 1}
    # Lifted: the window update goes out at once, and the next byte is taken.
    c.clamp_window(None, 400 * MS)
    ack = recv(c, 400 * MS)
    assert (ack.ack, ack.window) == (REMOTE_ISS + 1 + BUF, BUF)
    send(c, _data(BUF, 1), 500 * MS)
    assert c.readable == 1


def test_window_clamp_caps_the_offer() -> None:
    c = established()
    c.clamp_window(1000, 0)
    send(c, _data(0, BUF), 0)  # the old edge admits it all
    assert c.receive(BUF, 0) == b"x" * BUF
    ack = recv(c, 0)
    assert (ack.ack, ack.window) == (REMOTE_ISS + 1 + BUF, 1000)
    assert c.window_clamp == 1000
    assert ack.seq == LOCAL_ISS + 1
