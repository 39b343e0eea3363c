"""Segment acceptability and the RFC 5961 rules: RST (§3), SYN (§4), ACK (§5), and the
ACK owed to any unacceptable segment (RFC 9293 §3.10.7.4 first)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS
from stack.tcp.state import State
from tests.tcp.helpers import (
    ACK,
    BUF,
    CONFIG,
    FIN,
    LOCAL_ISS,
    RECV,
    REMOTE_ISS,
    RST,
    SEND,
    SYN,
    established,
    recv,
    recv_nothing,
    send,
    syn_received,
)

NXT = REMOTE_ISS + 1


# --- the four cases of the acceptability test (RFC 9293 §3.10.7.4 first) ---


def zero_window():
    """Established, with the peer having filled our whole buffer: RCV.WND = 0."""
    c = established()
    send(c, replace(SEND, payload=b"f" * BUF), 0)
    assert recv(c, 0) == replace(RECV, ack=NXT + BUF, window=0)
    assert c.tcb.rcv_wnd == 0
    return c


def test_acceptability_zero_length_zero_window() -> None:
    c = zero_window()
    send(c, replace(SEND, seq=NXT + BUF), 1)  # SEG.SEQ = RCV.NXT: acceptable
    assert recv_nothing(c, 1)
    send(c, replace(SEND, seq=NXT + BUF + 1), 2)  # anything else: not
    assert recv(c, 2) == replace(RECV, ack=NXT + BUF, window=0)
    assert c.counters["drops"] == {"out-of-window": 1}


def test_acceptability_zero_length_open_window() -> None:
    c = established()
    send(c, replace(SEND, seq=NXT + BUF - 1), 0)  # last byte of the window: acceptable
    assert recv_nothing(c, 0)
    send(c, replace(SEND, seq=NXT + BUF), 1)  # one past it: not
    assert recv(c, 1) == RECV
    send(c, replace(SEND, seq=NXT - 1), 2)  # before RCV.NXT: not
    assert recv(c, 2) == RECV


def test_acceptability_data_zero_window() -> None:
    c = zero_window()
    send(c, replace(SEND, seq=NXT + BUF + 1, payload=b"x"), 1)
    assert recv(c, 1) == replace(RECV, ack=NXT + BUF, window=0)
    assert c.counters["drops"] == {"out-of-window": 1}
    assert c.readable == BUF


def test_acceptability_data_open_window_either_end_inside() -> None:
    c = established()
    # starts before RCV.NXT, ends inside: acceptable (and trimmed)
    send(c, replace(SEND, seq=NXT - 2, payload=b"xyab"), 0)
    assert c.receive(10, 0) == b"ab"
    # starts inside, ends beyond the window: acceptable (and trimmed)
    c2 = established()
    send(c2, replace(SEND, seq=NXT + BUF - 2, payload=b"abcd"), 0)
    assert c2.snapshot(0)["buffers"]["out_of_order"] == [[NXT + BUF - 2, NXT + BUF]]
    # entirely beyond: not acceptable, ACKed
    c3 = established()
    send(c3, replace(SEND, seq=NXT + BUF, payload=b"abcd"), 0)
    assert recv(c3, 0) == RECV
    assert c3.counters["drops"] == {"out-of-window": 1}


def test_unacceptable_segment_draws_ack_unless_rst() -> None:
    c = established()
    send(c, replace(SEND, seq=NXT + 10 * BUF, payload=b"x"), 0)
    assert recv(c, 0) == RECV
    send(c, replace(SEND, seq=NXT + 10 * BUF, flags=RST), 1)
    assert recv_nothing(c, 1)
    assert c.counters["drops"] == {"out-of-window": 1, "rst-out-of-window": 1}


# --- RST: RFC 5961 §3 ---


def test_rst_exact_match_resets() -> None:
    c = established()
    send(c, replace(SEND, seq=NXT, flags=RST), 0)
    assert c.state is State.CLOSED
    assert c.error == "reset"


def test_rst_in_window_draws_challenge_ack() -> None:
    c = established()
    send(c, replace(SEND, seq=NXT + 100, flags=RST), 0)
    assert c.state is State.ESTABLISHED
    assert recv(c, 0) == RECV
    assert c.counters["challenge_acks"] == 1
    assert c.counters["drops"] == {"rst-in-window": 1}


def test_rst_out_of_window_ignored() -> None:
    c = established()
    send(c, replace(SEND, seq=NXT + BUF, flags=RST), 0)
    send(c, replace(SEND, seq=NXT - 1, flags=RST), 0)
    assert c.state is State.ESTABLISHED
    assert recv_nothing(c, 0)


def test_challenge_acks_are_rate_limited() -> None:
    c = established()
    send(c, replace(SEND, seq=NXT + 1, flags=RST), 0)
    send(c, replace(SEND, seq=NXT + 2, flags=RST), 1 * MS)
    assert recv(c, 1 * MS) == RECV  # one, not two
    interval = CONFIG.challenge_ack_interval
    send(c, replace(SEND, seq=NXT + 3, flags=RST), interval - 1)
    assert recv_nothing(c, interval - 1)
    send(c, replace(SEND, seq=NXT + 4, flags=RST), interval)
    assert recv(c, interval) == RECV
    assert c.counters["challenge_acks"] == 2
    assert c.counters["drops"]["challenge-ack-rate-limited"] == 2


def test_rst_in_syn_received_passive_closes() -> None:
    c = syn_received()
    send(c, replace(SEND, seq=NXT, flags=RST, ack=0), 0)
    assert c.state is State.CLOSED


# --- SYN: RFC 5961 §4 ---


def test_syn_in_synchronized_state_draws_challenge_ack() -> None:
    for seq in (NXT, NXT + 100, NXT + 10 * BUF):  # in window or not
        c = established()
        send(c, replace(SEND, seq=seq, flags=SYN, ack=0), 0)
        assert c.state is State.ESTABLISHED
        assert recv(c, 0) == RECV


# --- ACK: RFC 5961 §5 ---


def test_ack_of_unsent_data_draws_ack_and_is_dropped() -> None:
    c = established()
    send(c, replace(SEND, ack=LOCAL_ISS + 100, payload=b"data"), 0)
    assert recv(c, 0) == RECV  # data not taken
    assert c.readable == 0
    assert c.tcb.snd_una == LOCAL_ISS + 1
    assert c.counters["drops"] == {"ack-unacceptable": 1}


def test_ack_too_old_draws_ack_and_is_dropped() -> None:
    c = established()
    # SND.UNA - MAX.SND.WND is the oldest acceptable: older ones are blind injections
    send(c, replace(SEND, ack=LOCAL_ISS + 1 - BUF - 1, payload=b"data"), 0)
    assert recv(c, 0) == RECV
    assert c.readable == 0
    send(c, replace(SEND, ack=LOCAL_ISS + 1 - BUF, payload=b"data"), 1)
    assert c.readable == 4


def test_segment_without_ack_is_dropped() -> None:
    c = established()
    send(c, replace(SEND, flags=FIN), 0)
    assert c.state is State.ESTABLISHED
    assert c.counters["drops"] == {"no-ack": 1}


def test_rst_from_closed_never_answered() -> None:
    c = established()
    c.abort(0)
    recv(c, 0)
    send(c, replace(SEND, flags=RST | ACK), 1)
    assert recv_nothing(c, 1)


def test_paws_drops_old_timestamp_with_ack() -> None:
    from stack.tcp.config import TcpConfig
    from tests.tcp.helpers import connection, syn

    c = connection(TcpConfig(**{**CONFIG.__dict__, "timestamps": True}))
    c.open_passive(0)
    send(c, syn(timestamps=(1000, 0)), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(1001, 0)), 1)
    assert c.tcb.ts_recent == 1001
    send(c, replace(SEND, payload=b"old", timestamps=(900, 0)), 2)
    assert c.readable == 0
    assert recv(c, 2) == replace(RECV, timestamps=(0, 1001))
    assert c.counters["drops"] == {"paws": 1}
    send(c, replace(SEND, payload=b"new", timestamps=(1002, 0)), 3)
    assert c.readable == 3
    assert c.tcb.ts_recent == 1002


def test_bare_fin_accepted_at_zero_window() -> None:
    c = zero_window()
    send(c, replace(SEND, seq=NXT + BUF, flags=FIN | ACK), 1)
    assert c.state is State.CLOSE_WAIT
    assert recv(c, 1) == replace(RECV, ack=NXT + BUF + 1, window=0)


def test_fin_with_data_at_zero_window_is_not_taken() -> None:
    c = zero_window()
    send(c, replace(SEND, seq=NXT + BUF, flags=FIN | ACK, payload=b"z"), 1)
    assert c.state is State.ESTABLISHED
    assert recv(c, 1) == replace(RECV, ack=NXT + BUF, window=0)
