"""Flow control: the receive window from free buffer space, never shrinking its right
edge; receiver and sender SWS avoidance and Nagle; SND.WL1/WL2; the persist timer."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.state import State
from tests.tcp.helpers import (
    ACK,
    BUF,
    CONFIG,
    LOCAL_ISS,
    MSS,
    PSH,
    RECV,
    REMOTE_ISS,
    SEND,
    SYN,
    established,
    recv,
    recv_all,
    recv_nothing,
    send,
)
from tests.tcp.test_journal import journal

RTO = 200 * MS
DATA = replace(RECV, flags=PSH | ACK)


def cfg(**kw: object) -> TcpConfig:
    return TcpConfig(**{**CONFIG.__dict__, **kw})


def test_receive_window_is_free_buffer_space() -> None:
    c = established()
    send(c, replace(SEND, payload=b"x" * 1000), 0)
    assert recv(c, 40 * MS) == replace(RECV, ack=REMOTE_ISS + 1001, window=BUF - 1000)


def test_full_buffer_advertises_zero_window_and_reading_reopens_it() -> None:
    c = established()
    send(c, replace(SEND, payload=b"a" * 2048), 0)
    send(c, replace(SEND, seq=REMOTE_ISS + 2049, payload=b"b" * 2048), 1)
    assert recv(c, 1) == replace(RECV, ack=REMOTE_ISS + 4097, window=0)
    # a zero window takes no data, but the probe is ACKed
    send(c, replace(SEND, seq=REMOTE_ISS + 4097, payload=b"c"), 2)
    assert recv(c, 2) == replace(RECV, ack=REMOTE_ISS + 4097, window=0)
    assert c.counters["drops"] == {"zero-window": 1}
    assert c.receive(BUF, 3) == b"a" * 2048 + b"b" * 2048
    # window update at once: the window went from 0 to the whole buffer
    assert recv(c, 3) == replace(RECV, ack=REMOTE_ISS + 4097, window=BUF)


def test_receiver_sws_small_reads_do_not_move_the_right_edge() -> None:
    c = established()
    send(c, replace(SEND, payload=b"a" * 3000), 0)
    assert recv(c, 40 * MS).window == BUF - 3000
    c.receive(1000, 50 * MS)  # 1000 < min(BUF/2, MSS): no window update
    assert recv_nothing(c, 50 * MS)
    send(c, replace(SEND, seq=REMOTE_ISS + 3001, payload=b"b"), 60 * MS)
    assert recv(c, 100 * MS).window == BUF - 3001  # right edge unchanged
    c.receive(1000, 110 * MS)  # now 2000 free beyond the edge >= MSS: move it
    send(c, replace(SEND, seq=REMOTE_ISS + 3002, payload=b"c"), 120 * MS)
    assert recv(c, 160 * MS).window == BUF - 1002


def test_right_edge_never_shrinks_with_window_scaling() -> None:
    # rcv_buf 100000 needs shift 1: the 16-bit field counts 2-byte units, and
    # rounding down would pull the right edge back by one byte (RFC 7323 §2.4).
    c = _scaled(cfg(rcv_buf=100_000, rcv_buf_max=0, wscale=True))  # no autotuning
    assert c.tcb.wscale_local == 1
    send(c, replace(SEND, payload=b"x"), 0)
    seg = recv(c, 40 * MS)
    assert (seg.ack, seg.window) == (REMOTE_ISS + 2, 49_999)  # 99_999 free, rounded down
    edge = seg.ack + (seg.window << 1)
    send(c, replace(SEND, seq=REMOTE_ISS + 2, payload=b"y"), 50 * MS)
    seg = recv(c, 90 * MS)
    # 99_997 bytes to the old edge: 49_998 units would shrink it, so round up
    assert (seg.ack, seg.window) == (REMOTE_ISS + 3, 49_999)
    assert seg.ack + (seg.window << 1) == edge + 1


def _scaled(config: TcpConfig):
    from tests.tcp.helpers import connection, syn

    c = connection(config)
    c.open_passive(0)
    send(c, syn(wscale=2), 0)
    synack = recv(c, 0)
    assert synack.wscale == 1 and synack.window == 65535  # never scaled in a SYN
    send(c, replace(SEND, window=1000), 0)
    assert c.tcb.snd_wnd == 4000  # 1000 << 2
    return c


def test_sender_sws_avoidance_waits_for_a_useful_window() -> None:
    c = established()
    send(c, replace(SEND, window=100), 0)  # max_snd_wnd stays 4096
    c.send(b"z" * 1000, 1)
    assert recv_nothing(c, 1)  # 100 < MSS, < queued, < max window / 2
    assert c.timers["persist"].deadline == 1 + RTO
    # the override timeout sends what fits (RFC 9293 3.8.6.2.1)
    assert recv(c, 1 + RTO) == replace(RECV, payload=b"z" * 100)
    send(c, replace(SEND, ack=LOCAL_ISS + 101, window=4096), 2 * RTO)
    assert recv(c, 2 * RTO) == replace(DATA, seq=LOCAL_ISS + 101, payload=b"z" * 900)


def test_sender_sends_half_the_max_window() -> None:
    from tests.tcp.helpers import connection, syn

    c = connection()
    c.open_passive(0)
    send(c, syn(window=1000), 0)
    recv(c, 0)
    send(c, replace(SEND, window=1000), 0)
    assert c.tcb.max_snd_wnd == 1000
    c.send(b"z" * 3000, 1)
    # 1000 < MSS and < queued, but >= max window / 2 (RFC 9293 3.8.6.2.1 (2))
    assert recv(c, 1) == replace(RECV, payload=b"z" * 1000)


def test_passive_open_sws_counts_the_windows_after_the_syn() -> None:
    # The SYN's unscaled 65535 is no estimate of a scaling peer's buffer: its real
    # window (768 bytes, 6 << 7) arrives with the handshake's ACK, and half of that is
    # what sender SWS avoidance (RFC 9293 3.8.6.2.1) compares with, as Linux does.
    from tests.tcp.helpers import connection, syn

    c = connection(cfg(wscale=True, rcv_buf=65536, snd_buf=65536))
    c.open_passive(0)
    send(c, syn(window=65535, wscale=7, mss=1000), 0)
    recv(c, 0)
    send(c, replace(SEND, window=6), 100 * MS)
    assert c.tcb.max_snd_wnd == 768
    c.send(b"z" * 2000, 100 * MS)
    [seg] = recv_all(c, 100 * MS)  # 768 >= 768 / 2: it goes now, not on the persist timer
    assert (seg.seq, len(seg.payload)) == (LOCAL_ISS + 1, 768)


def test_active_open_counts_the_syn_acks_window() -> None:
    from tests.tcp.helpers import syn_sent

    c = syn_sent(cfg(wscale=True))
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, window=4000, wscale=7), 1)
    assert c.tcb.max_snd_wnd == 4000


def test_sender_sws_holds_a_segment_below_half_the_max_window() -> None:
    c = established()
    send(c, replace(SEND, window=2048), 0)
    c.send(b"z" * 3000, 1)
    assert [len(s.payload) for s in recv_all(c, 1)] == [1460]  # 588 more would be silly


def test_nagle_holds_small_segments_while_a_short_one_is_unacknowledged() -> None:
    c = established(cfg(nodelay=False))  # Nagle on: the Linux default
    c.send(b"a", 0)
    assert recv(c, 0) == replace(DATA, payload=b"a")
    c.send(b"b", 1)
    c.send(b"c", 2)
    assert recv_nothing(c, 2)
    send(c, replace(SEND, ack=LOCAL_ISS + 2), 3)
    assert recv(c, 3) == replace(DATA, seq=LOCAL_ISS + 2, payload=b"bc")


def test_nagle_sends_a_writes_tail_behind_its_full_segments() -> None:
    # Minshall's variant (Linux tcp_minshall_check): only an unacknowledged *short*
    # segment holds the next short one.  The tail of a write follows its full-sized
    # segment at once; the next short write waits for the tail's ACK.
    c = established(cfg(nodelay=False))
    c.send(b"x" * (MSS + 10), 0)
    assert [len(s.payload) for s in recv_all(c, 0)] == [MSS, 10]
    tail_end = LOCAL_ISS + 1 + MSS + 10
    assert c.tcb.snd_sml == tail_end
    c.send(b"y", 1)
    assert recv_nothing(c, 1)
    send(c, replace(SEND, ack=LOCAL_ISS + 1 + MSS), 2)  # the full segment only
    assert recv_nothing(c, 2)
    send(c, replace(SEND, ack=tail_end), 3)
    assert recv(c, 3) == replace(DATA, seq=tail_end, payload=b"y")


def test_nagle_does_not_count_full_segments_in_flight() -> None:
    c = established(cfg(nodelay=False))
    c.send(b"x" * MSS, 0)
    assert [len(s.payload) for s in recv_all(c, 0)] == [MSS]
    c.send(b"y", 1)  # only a full-sized segment is unacknowledged
    assert recv(c, 1) == replace(DATA, seq=LOCAL_ISS + 1 + MSS, payload=b"y")


def test_nagle_off_sends_small_segments_at_once() -> None:
    c = established(cfg(nodelay=True))
    c.send(b"a", 0)
    recv(c, 0)
    c.send(b"b", 1)
    assert recv(c, 1) == replace(DATA, seq=LOCAL_ISS + 2, payload=b"b")


def test_nagle_default_is_on() -> None:
    assert TcpConfig().nodelay is False


def test_wl1_wl2_old_segment_does_not_update_window() -> None:
    c = established()
    c.send(b"abc", 0)
    recv(c, 0)
    send(c, replace(SEND, seq=REMOTE_ISS + 1, ack=LOCAL_ISS + 4, payload=b"xy", window=3000), 1)
    assert c.tcb.snd_wnd == 3000
    assert (c.tcb.snd_wl1, c.tcb.snd_wl2) == (REMOTE_ISS + 1, LOCAL_ISS + 4)
    # a reordered older ACK (same SEQ, smaller ACK) must not undo the update
    send(c, replace(SEND, seq=REMOTE_ISS + 1, ack=LOCAL_ISS + 2, window=50), 2)
    assert c.tcb.snd_wnd == 3000
    # a newer segment does update it, even to a smaller window
    send(c, replace(SEND, seq=REMOTE_ISS + 3, ack=LOCAL_ISS + 4, window=1000), 3)
    assert c.tcb.snd_wnd == 1000
    assert (c.tcb.snd_wl1, c.tcb.snd_wl2) == (REMOTE_ISS + 3, LOCAL_ISS + 4)


def test_persist_probes_zero_window_with_backoff_and_never_give_up_while_answered() -> None:
    c = established(cfg(retries=3))
    send(c, replace(SEND, window=0), 0)
    c.send(b"hello", 0)
    assert recv_nothing(c, 0)
    assert c.timers["persist"].deadline == RTO
    t = 0
    for k in range(8):  # more probes than `retries`: answered ones never time out
        t += min(RTO << k, 120 * SECOND) if k else RTO
        assert recv_nothing(c, t - 1)
        assert recv(c, t) == replace(RECV, payload=b"h")
        send(c, replace(SEND, window=0), t + 1)
        assert c.state is State.ESTABLISHED
    assert c.counters["zero_window_probes"] == 8
    # the window opens: everything goes, from SND.UNA (the zero window dropped the probe)
    send(c, replace(SEND, window=4096), t + 2)
    assert recv(c, t + 2) == replace(DATA, payload=b"hello")
    assert c.timers["persist"].deadline is None


def test_persist_probe_accepted_byte_is_acknowledged() -> None:
    c = established()
    send(c, replace(SEND, window=0), 0)
    c.send(b"hi", 0)
    assert recv_nothing(c, 0)
    assert recv(c, RTO) == replace(RECV, payload=b"h")
    send(c, replace(SEND, ack=LOCAL_ISS + 2, window=4095), RTO + 1)
    assert recv(c, RTO + 1) == replace(DATA, seq=LOCAL_ISS + 2, payload=b"i")


def test_persist_unanswered_probes_time_out() -> None:
    c = established(cfg(retries=2))
    send(c, replace(SEND, window=0), 0)
    c.send(b"x", 0)
    assert recv_nothing(c, 0)
    assert recv(c, RTO).payload == b"x"
    assert recv(c, 3 * RTO).payload == b"x"
    assert recv_nothing(c, 7 * RTO)
    assert c.state is State.CLOSED
    assert c.error == "timed out"


def test_window_update_opens_the_flow() -> None:
    c = established()
    send(c, replace(SEND, window=0), 0)
    c.send(b"data", 0)
    assert recv_nothing(c, 1)
    send(c, replace(SEND, window=4096), 2)
    assert recv(c, 2) == replace(DATA, payload=b"data")
    assert c.timers["persist"].deadline is None


def test_send_space_tracks_the_buffer() -> None:
    c = established()
    assert c.send_space == BUF
    assert c.send(b"x" * 5000, 0) == BUF
    assert c.send_space == 0
    assert c.send(b"y", 0) == 0


def test_persist_timer_with_nothing_left_to_send_is_quiet() -> None:
    c = established()
    send(c, replace(SEND, window=0), 0)
    c.send(b"x", 0)
    assert recv_nothing(c, 0)
    assert recv(c, RTO) == replace(RECV, payload=b"x")  # the probe carries the only byte
    send(c, replace(SEND, ack=LOCAL_ISS + 2, window=0), RTO + 1)  # taken, window still 0
    assert recv_nothing(c, 10 * RTO)
    assert c.next_deadline() is None
    assert c.counters["zero_window_probes"] == 1


def test_window_shrunk_to_zero_with_data_in_flight_probes_and_never_times_out() -> None:
    # RFC 9293 §3.8.6.1 MUST-34/35, SHLD-17: the peer shrinks its window to zero while
    # data is in flight.  The RTO finds nothing it may resend: it hands over to the
    # persist timer (no retry counted) instead of going back N segments into nothing.
    c = established(cfg(retries=3))
    data = bytes(range(250)) * 8
    c.send(data, 0)
    assert recv_all(c, 0) == [
        replace(RECV, payload=data[:1460]),
        replace(DATA, seq=LOCAL_ISS + 1461, payload=data[1460:]),
    ]
    send(c, replace(SEND, ack=LOCAL_ISS + 1001, window=0), 0)
    assert c.timers["retransmission"].deadline == RTO
    assert recv_nothing(c, RTO)  # the RTO fires: nothing fits a zero window
    assert c.timers["retransmission"].deadline is None
    assert c.timers["persist"].deadline == 2 * RTO
    assert c.tcb.snd_nxt == LOCAL_ISS + 1001
    t = RTO
    for k in range(8):  # more probes than `retries`: answered ones never time out
        t += RTO << k
        assert recv_nothing(c, t - 1)
        assert recv(c, t) == replace(RECV, seq=LOCAL_ISS + 1001, payload=data[1000:1001])
        send(c, replace(SEND, ack=LOCAL_ISS + 1001, window=0), t + 1)
        assert recv_nothing(c, t + 1)
        assert c.state is State.ESTABLISHED
    assert c.counters["zero_window_probes"] == 8
    assert c.rtt.backoffs == 0
    # the window opens: everything from SND.UNA goes again
    send(c, replace(SEND, ack=LOCAL_ISS + 1001, window=4096), t + 2)
    assert recv(c, t + 2) == replace(DATA, seq=LOCAL_ISS + 1001, payload=data[1000:])
    assert c.timers["persist"].deadline is None
    assert c.timers["retransmission"].deadline == t + 2 + RTO



def _promised_past_the_buffer() -> tuple[Connection, int, int]:
    """A connection (shift 1, 100 000-byte buffer, nothing read) whose right edge was
    rounded up one byte past the buffer: the connection, RCV.NXT and that edge."""
    c = _scaled(cfg(rcv_buf=100_000, rcv_buf_max=0, wscale=True, journal=8))
    for n, t in enumerate((0, 50 * MS, 100 * MS)):
        send(c, replace(SEND, seq=REMOTE_ISS + 1 + n, payload=b"x"), t)
        seg = recv(c, t + 40 * MS)
    assert (seg.ack, seg.window) == (REMOTE_ISS + 4, 49_999)  # 99_997 free: rounded up
    edge = seg.ack + (seg.window << 1)
    assert edge == REMOTE_ISS + 1 + 100_000 + 1
    return c, seg.ack, edge


def test_text_the_buffer_cannot_hold_retracts_the_window_at_once() -> None:
    # Rounding the window up so as not to pull the right edge back (RFC 7323 §2.4) can
    # promise bytes past the buffer.  Text that finds no room there is dropped, and the
    # ACK goes out at once with the window the buffer backs, zero (a retraction, as
    # Linux when a segment finds no memory): the peer probes a zero window instead of
    # retransmitting into silence until it gives up.
    c, nxt, _edge = _promised_past_the_buffer()
    full = REMOTE_ISS + 1 + 100_000
    t = 200 * MS
    send(c, replace(SEND, seq=nxt, payload=b"y" * (full - nxt)), t)  # fills the buffer
    assert recv(c, t) == replace(RECV, ack=full, window=1)  # the promise stands
    send(c, replace(SEND, seq=full, payload=b"zz"), t + 1)  # inside it: no room
    assert recv(c, t + 1) == replace(RECV, ack=full, window=0)
    assert c.tcb.rcv_wnd == 0
    assert c.counters["drops"] == {"no-buffer-space": 1}
    e = journal(c)[-2]
    assert (e["direction"], e["verdict"], e["reason"]) == ("in", "dropped", "no-buffer-space")
    # the peer's retransmission is a zero-window probe now, answered at once
    send(c, replace(SEND, seq=full, payload=b"zz"), t + RTO)
    assert recv(c, t + RTO) == replace(RECV, ack=full, window=0)
    assert c.counters["drops"] == {"no-buffer-space": 1, "zero-window": 1}
    # reading reopens the window with an update, as after any zero window
    assert len(c.receive(100_000, t + RTO + 1)) == 100_000
    assert recv(c, t + RTO + 1) == replace(RECV, ack=full, window=50_000)


def test_text_partly_past_the_buffer_is_trimmed_and_the_window_retracted() -> None:
    c, nxt, edge = _promised_past_the_buffer()
    t = 200 * MS
    send(c, replace(SEND, seq=nxt, payload=b"y" * (edge - nxt)), t)  # one byte too many
    assert recv(c, t) == replace(RECV, ack=REMOTE_ISS + 1 + 100_000, window=0)
    assert c.tcb.rcv_wnd == 0
    assert c.counters["drops"] == {}
    e = journal(c)[-2]
    assert (e["direction"], e["verdict"], e["reason"]) == ("in", "trimmed",
                                                          "1 bytes past the buffer")
