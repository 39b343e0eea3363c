"""Segment acceptability and the RFC 5961 rules: RST (§3), SYN (§4), ACK (§5), and the
ACK owed to any unacceptable segment (RFC 9293 §3.10.7.4 first), at most one per
500 ms for segments without data (RFC 5961 §7, Linux tcp_invalid_ratelimit)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
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
    later = 1 + CONFIG.invalid_ack_interval  # one such ACK per interval (see below)
    send(c, replace(SEND, seq=NXT - 1), later)  # before RCV.NXT: not
    assert recv(c, later) == RECV


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
        # a challenge ACK in and out of the window alike, not an out-of-window ACK
        assert c.counters["challenge_acks"] == 1
        assert c.counters["drops"] == {"syn-in-synchronized": 1}


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


# --- ACKs to unacceptable segments: RFC 5961 §7, Linux tcp_invalid_ratelimit ---


def test_acks_to_unacceptable_segments_are_rate_limited() -> None:
    c = established()
    interval = CONFIG.invalid_ack_interval
    assert interval == 500 * MS  # Linux net.ipv4.tcp_invalid_ratelimit
    old = replace(SEND, seq=NXT - 1000)  # an old duplicate ACK, or a spoofed one
    send(c, old, 0)
    assert recv(c, 0) == RECV
    send(c, old, 1 * MS)
    assert recv_nothing(c, 1 * MS)  # one per interval
    send(c, replace(SEND, seq=NXT + BUF), interval - 1)  # beyond the window: the same
    assert recv_nothing(c, interval - 1)
    send(c, old, interval)
    assert recv(c, interval) == RECV
    assert c.counters["invalid_acks"] == 2
    assert c.counters["invalid_acks_limited"] == 2
    assert c.counters["drops"] == {"out-of-window": 4}
    assert c.state is State.ESTABLISHED


def test_unacceptable_data_and_fins_are_always_acknowledged() -> None:
    # Linux: "data packets without SYNs are not likely part of an ACK loop": a
    # retransmission whose ACK was lost must get that ACK, however soon it comes.
    c = established()
    for t in (0, 1 * MS, 2 * MS):
        send(c, replace(SEND, seq=NXT - 4, payload=b"dupe"), t)
        assert recv(c, t) == RECV
    send(c, replace(SEND, seq=NXT - 1, flags=FIN | ACK), 3 * MS)  # an old FIN
    assert recv(c, 3 * MS) == RECV
    send(c, replace(SEND, seq=NXT - 1000), 4 * MS)  # and they started no interval
    assert recv(c, 4 * MS) == RECV
    send(c, replace(SEND, seq=NXT - 1000), 5 * MS)
    assert recv_nothing(c, 5 * MS)
    assert c.counters["invalid_acks"] == 5
    assert c.counters["invalid_acks_limited"] == 1


def test_paws_acks_share_the_limit() -> None:
    from stack.tcp.config import TcpConfig
    from tests.tcp.helpers import connection, syn

    c = connection(TcpConfig(**{**CONFIG.__dict__, "timestamps": True}))
    c.open_passive(0)
    send(c, syn(timestamps=(1000, 0)), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(1001, 0)), 1)
    stale = replace(SEND, timestamps=(900, 0))  # RFC 7323 §5.3 R1: PAWS rejects it
    send(c, stale, 2)
    assert recv(c, 2) == replace(RECV, timestamps=(0, 1001))
    send(c, stale, 3)
    assert recv_nothing(c, 3)
    send(c, replace(SEND, seq=NXT - 1000, timestamps=(1001, 0)), 4)  # out of window
    assert recv_nothing(c, 4)
    assert c.counters["drops"] == {"paws": 2, "out-of-window": 1}
    assert (c.counters["invalid_acks"], c.counters["invalid_acks_limited"]) == (1, 2)


def test_challenge_acks_and_acks_to_unacceptable_segments_have_their_own_limits() -> None:
    # Linux shares one timestamp between them (last_oow_ack_time); pytcp limits each on
    # its own, so neither kind can hide the other (README: rate limits).
    c = established()
    send(c, replace(SEND, seq=NXT - 1000), 0)
    assert recv(c, 0) == RECV
    send(c, replace(SEND, seq=NXT + 1, flags=RST), 1 * MS)
    assert recv(c, 1 * MS) == RECV  # the challenge ACK
    assert c.counters["challenge_acks"] == 1 and c.counters["invalid_acks"] == 1


def test_a_syn_again_in_syn_received_is_answered_once_per_interval() -> None:
    # Linux tcp_check_req: the SYN-ACK a retransmitted SYN draws is rate-limited too.
    from tests.tcp.helpers import MSS, syn

    c = syn_received()
    synack = replace(RECV, seq=LOCAL_ISS, flags=SYN | ACK, mss=MSS)
    send(c, syn(), 10 * MS)
    assert recv(c, 10 * MS) == synack
    send(c, syn(), 20 * MS)  # a flood of copies is not echoed
    assert recv_nothing(c, 20 * MS)
    send(c, syn(), 10 * MS + CONFIG.invalid_ack_interval)
    assert recv(c, 10 * MS + CONFIG.invalid_ack_interval) == synack
    assert c.counters["drops"] == {"retransmitted-syn": 3}
    assert (c.counters["invalid_acks"], c.counters["invalid_acks_limited"]) == (2, 1)
    assert recv(c, 1 * SECOND) == synack  # the SYN-ACK timer is its own
    assert c.state is State.SYN_RECEIVED
