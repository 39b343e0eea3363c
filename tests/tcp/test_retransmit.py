"""Data transfer and retransmission: cumulative ACKs, delayed ACK, RFC 6298 RTO with
backoff and Karn's rule, go-back-N after a timeout, the retry budget."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.events import ConnectionFailed, DataReceived
from stack.tcp.state import State
from tests.tcp.helpers import (
    ACK,
    CONFIG,
    LOCAL_ISS,
    PSH,
    RECV,
    REMOTE_ISS,
    SEND,
    established,
    events,
    recv,
    recv_all,
    recv_nothing,
    send,
)

DATA = replace(RECV, flags=PSH | ACK)
# The builders' handshake measured an RTT of 0: RTO = rto_min (RFC 6298 (2.4)).
RTO = 200 * MS


def test_data_goes_out_and_is_acknowledged() -> None:
    c = established()
    assert c.send(b"abcdef", 0) == 6
    assert recv(c, 0) == replace(DATA, payload=b"abcdef")
    assert c.timers["retransmission"].deadline == RTO
    send(c, replace(SEND, ack=LOCAL_ISS + 7), 50 * MS)
    assert c.tcb.snd_una == LOCAL_ISS + 7
    assert c.timers["retransmission"].deadline is None
    assert c.rtt.samples == 2
    assert c.rtt.srtt == 50 * MS // 8  # (2.3): 7/8 * 0 + 1/8 * 50 ms
    assert recv_nothing(c, 50 * MS)


def test_data_retransmit_on_rto() -> None:
    c = established()
    c.send(b"abcdef", 0)
    assert recv(c, 0) == replace(DATA, payload=b"abcdef")
    assert recv_nothing(c, RTO - 1)
    assert recv(c, RTO) == replace(DATA, payload=b"abcdef")
    assert recv_nothing(c, 3 * RTO - 1)
    # RFC 6298 (5.5): the RTO doubles
    assert recv(c, 3 * RTO) == replace(DATA, payload=b"abcdef")
    assert c.timers["retransmission"].deadline == 7 * RTO
    assert c.counters["retransmissions"] == 2
    assert c.counters["retransmitted_bytes"] == 12


def test_karn_no_sample_from_retransmitted_data_and_backoff_reset_by_new_ack() -> None:
    c = established()
    c.send(b"abc", 0)
    recv(c, 0)
    recv(c, RTO)
    assert c.rtt.backoffs == 1
    send(c, replace(SEND, ack=LOCAL_ISS + 4), RTO + 10 * MS)
    assert c.rtt.samples == 1  # only the handshake's: Karn, the retransmission is ambiguous
    assert c.rtt.backoffs == 0  # a new ACK ends the backoff
    c.send(b"d", 2 * SECOND)
    recv(c, 2 * SECOND)
    send(c, replace(SEND, ack=LOCAL_ISS + 5), 2 * SECOND + 80 * MS)
    assert c.rtt.samples == 2
    assert c.rtt.srtt == 10 * MS


def test_backoff_kept_across_retransmissions_capped_at_rto_max() -> None:
    c = established(TcpConfig(**{**CONFIG.__dict__, "rto_max": 4 * SECOND}))
    c.send(b"x", 0)
    recv(c, 0)
    # 200 ms, 400, 800, 1.6 s, 3.2 s, then 4 s (rto_max) from there on
    t = 0
    for rto in (200, 400, 800, 1600, 3200, 4000, 4000):
        t += rto * MS
        assert recv(c, t).payload == b"x"
    assert c.timers["retransmission"].deadline == t + 4 * SECOND


def test_go_back_n_from_snd_una_after_rto() -> None:
    c = established(TcpConfig(**{**CONFIG.__dict__, "snd_buf": 8192}))
    c.send(b"a" * 1460 + b"b" * 1460 + b"c" * 100, 0)
    out = recv_all(c, 0)
    assert [s.seq for s in out] == [LOCAL_ISS + 1, LOCAL_ISS + 1461, LOCAL_ISS + 2921]
    send(c, replace(SEND, ack=LOCAL_ISS + 1461), 10 * MS)  # first one arrived
    out = recv_all(c, 10 * MS + RTO)
    # everything from SND.UNA again, in MSS-sized segments
    assert [(s.seq, len(s.payload)) for s in out] == [
        (LOCAL_ISS + 1461, 1460),
        (LOCAL_ISS + 2921, 100),
    ]
    # an ACK for data sent before the timeout is still acceptable (SND.MAX)
    send(c, replace(SEND, ack=LOCAL_ISS + 3021), 1100 * MS)
    assert c.tcb.snd_una == LOCAL_ISS + 3021
    assert c.timers["retransmission"].deadline is None


def test_timed_out_after_retries_rtos() -> None:
    c = established(TcpConfig(**{**CONFIG.__dict__, "retries": 3}))
    c.send(b"x", 0)
    recv(c, 0)
    for t in (1, 3, 7):
        assert recv(c, t * RTO).payload == b"x"
    assert recv_nothing(c, 15 * RTO)
    assert c.state is State.CLOSED
    assert c.error == "timed out"
    assert ConnectionFailed("timed out") in events(c)


def test_cumulative_ack_of_several_segments() -> None:
    c = established(TcpConfig(**{**CONFIG.__dict__, "snd_buf": 8192}))
    c.send(b"z" * 3000, 0)
    assert len(recv_all(c, 0)) == 3
    send(c, replace(SEND, ack=LOCAL_ISS + 3001), 5 * MS)
    assert c.tcb.snd_una == LOCAL_ISS + 3001
    assert len(c.sendbuf) == 0


def test_delayed_ack_fires_after_40ms() -> None:
    c = established()
    send(c, replace(SEND, payload=b"hello"), 0)
    assert events(c) == [DataReceived(5)]
    assert recv_nothing(c, 39 * MS)
    assert recv(c, 40 * MS) == replace(RECV, ack=REMOTE_ISS + 6, window=4091)


def test_ack_every_second_full_segment() -> None:
    c = established(TcpConfig(**{**CONFIG.__dict__, "rcv_buf": 65535}))
    send(c, replace(SEND, payload=b"a" * 1460), 0)
    assert recv_nothing(c, 0)
    send(c, replace(SEND, seq=REMOTE_ISS + 1461, payload=b"b" * 1460), 1)
    assert recv(c, 1).ack == REMOTE_ISS + 2921


def test_ack_every_second_full_segment_within_a_burst() -> None:
    # RFC 5681 §4.2 / RFC 9293 3.8.6.3 SHLD-19: six full segments fed before the owner
    # collects output still draw an ACK per two, not one cumulative ACK.
    c = established(TcpConfig(**{**CONFIG.__dict__, "rcv_buf": 65535}))
    for k in range(7):
        send(c, replace(SEND, seq=REMOTE_ISS + 1 + k * 1460, payload=b"x" * 1460), k)
    out = recv_all(c, 7)
    assert [(s.ack, s.window) for s in out] == [
        (REMOTE_ISS + 1 + 2920, 65535 - 2920),
        (REMOTE_ISS + 1 + 5840, 65535 - 5840),
        (REMOTE_ISS + 1 + 8760, 65535 - 8760),
    ]
    assert c.timers["delayed-ack"].deadline == 6 + 40 * MS  # the seventh waits


def test_duplicate_ack_for_every_out_of_order_segment_within_a_burst() -> None:
    # RFC 5681 §4.2: an immediate (duplicate) ACK per out-of-order segment, so the
    # peer counts three and retransmits, even when they arrive in one burst.
    c = established()
    for k in range(1, 4):
        send(c, replace(SEND, seq=REMOTE_ISS + 1 + 10 * k, payload=b"y" * 10), k)
    assert recv_all(c, 4) == [replace(RECV, window=4096)] * 3


def test_data_piggybacks_the_delayed_ack() -> None:
    c = established()
    send(c, replace(SEND, payload=b"ping"), 0)
    c.send(b"pong", 1 * MS)
    assert recv(c, 1 * MS) == replace(DATA, ack=REMOTE_ISS + 5, window=4092, payload=b"pong")
    assert c.timers["delayed-ack"].deadline is None


def test_out_of_order_segments_reassembled_and_acked_at_once() -> None:
    c = established()
    send(c, replace(SEND, seq=REMOTE_ISS + 4, payload=b"def"), 0)
    assert recv(c, 0) == RECV  # duplicate ACK at once (RFC 5681 §4.2)
    assert c.readable == 0
    assert c.snapshot(0)["buffers"]["out_of_order"] == [[REMOTE_ISS + 4, REMOTE_ISS + 7]]
    send(c, replace(SEND, seq=REMOTE_ISS + 1, payload=b"abc"), 1)
    assert recv(c, 1) == replace(RECV, ack=REMOTE_ISS + 7, window=4090)  # hole filled: at once
    assert c.receive(100, 1) == b"abcdef"


def test_duplicate_data_is_acked_not_delivered_twice() -> None:
    c = established()
    send(c, replace(SEND, payload=b"abc"), 0)
    send(c, replace(SEND, payload=b"abc"), 1)
    assert recv(c, 1) == replace(RECV, ack=REMOTE_ISS + 4, window=4093)
    assert c.receive(10, 1) == b"abc"


def test_overlapping_segment_trimmed() -> None:
    c = established()
    send(c, replace(SEND, payload=b"abc"), 0)
    send(c, replace(SEND, payload=b"abcdef"), 1)
    assert c.receive(10, 1) == b"abcdef"


def test_old_ack_ignored() -> None:
    c = established()
    c.send(b"abc", 0)
    recv(c, 0)
    send(c, replace(SEND, ack=LOCAL_ISS + 4), 1)
    send(c, replace(SEND, ack=LOCAL_ISS + 2), 2)
    assert c.tcb.snd_una == LOCAL_ISS + 4
    assert recv_nothing(c, 2)


def test_pure_ack_after_rto_carries_snd_max() -> None:
    # After a timeout pulled SND.NXT back, an ACK sent with SEQ = SND.NXT would be
    # older than the peer's RCV.NXT and unacceptable there; BSD uses SND.MAX.
    c = established(TcpConfig(**{**CONFIG.__dict__, "cc": "newreno", "snd_buf": 8192}))
    c.send(b"q" * 2920, 0)
    assert len(recv_all(c, 0)) == 2
    assert [s.seq for s in recv_all(c, RTO)] == [LOCAL_ISS + 1]  # loss window: one
    assert (c.tcb.snd_nxt, c.tcb.snd_max) == (LOCAL_ISS + 1461, LOCAL_ISS + 2921)
    send(c, replace(SEND, payload=b"p" * 2000, ack=LOCAL_ISS + 1), RTO + 1)
    assert recv(c, RTO + 1 + 40 * MS) == replace(
        RECV, seq=LOCAL_ISS + 2921, ack=REMOTE_ISS + 2001, window=4096 - 2000
    )
