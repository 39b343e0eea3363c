"""Every way a connection ends (RFC 9293 §3.6, §3.10.4, §3.10.7.4 eighth; RFC 1122 4.2.2.13)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.errors import InvalidStateError
from stack.tcp.events import Closed, PeerClosed, StateChanged
from stack.tcp.state import State
from tests.tcp.helpers import (
    ACK,
    CONFIG,
    FIN,
    LOCAL_ISS,
    PSH,
    RECV,
    REMOTE_ISS,
    RST,
    SEND,
    close_wait,
    closing,
    established,
    events,
    fin_wait_1,
    fin_wait_2,
    last_ack,
    recv,
    recv_nothing,
    send,
    syn_received,
    syn_sent,
    time_wait,
)

TW = 2 * CONFIG.msl


def test_active_close_fin_wait_1_2_time_wait_closed() -> None:
    c = fin_wait_1()
    assert c.state is State.FIN_WAIT_1
    send(c, replace(SEND, ack=LOCAL_ISS + 2), 0)
    assert c.state is State.FIN_WAIT_2
    assert recv_nothing(c, 0)
    send(c, replace(SEND, ack=LOCAL_ISS + 2, flags=FIN | ACK), 10 * MS)
    assert c.state is State.TIME_WAIT
    assert recv(c, 10 * MS) == replace(RECV, seq=LOCAL_ISS + 2, ack=REMOTE_ISS + 2)
    assert c.next_deadline() == 10 * MS + TW
    assert recv_nothing(c, 10 * MS + TW - 1)
    assert c.state is State.TIME_WAIT
    assert recv_nothing(c, 10 * MS + TW)
    assert c.state is State.CLOSED
    assert events(c)[-2:] == [StateChanged(State.TIME_WAIT, State.CLOSED), Closed()]


def test_time_wait_is_two_msl_configurable() -> None:
    assert TW == 60 * SECOND
    c = established(TcpConfig(**{**CONFIG.__dict__, "msl": 1 * SECOND}))
    c.shutdown(0)
    recv(c, 0)
    send(c, replace(SEND, ack=LOCAL_ISS + 2, flags=FIN | ACK), 0)
    assert c.state is State.TIME_WAIT
    assert c.next_deadline() == 2 * SECOND


def test_fin_acked_together_with_peer_fin_goes_straight_to_time_wait() -> None:
    c = fin_wait_1()
    send(c, replace(SEND, ack=LOCAL_ISS + 2, flags=FIN | ACK), 0)
    assert c.state is State.TIME_WAIT


def test_time_wait_reacks_retransmitted_fin_and_restarts() -> None:
    c = time_wait()
    send(c, replace(SEND, ack=LOCAL_ISS + 2, flags=FIN | ACK), 30 * SECOND)
    assert recv(c, 30 * SECOND) == replace(RECV, seq=LOCAL_ISS + 2, ack=REMOTE_ISS + 2)
    assert c.next_deadline() == 30 * SECOND + TW
    assert recv_nothing(c, TW)
    assert c.state is State.TIME_WAIT


def test_passive_close_close_wait_last_ack_closed() -> None:
    c = established()
    send(c, replace(SEND, flags=FIN | ACK), 0)
    assert c.state is State.CLOSE_WAIT
    assert PeerClosed() in events(c)
    assert c.at_eof
    assert c.receive(100, 0) == b""
    assert recv(c, 0) == replace(RECV, ack=REMOTE_ISS + 2)
    c.shutdown(1)
    assert c.state is State.LAST_ACK
    assert recv(c, 1) == replace(RECV, flags=FIN | ACK, ack=REMOTE_ISS + 2)
    send(c, replace(SEND, seq=REMOTE_ISS + 2, ack=LOCAL_ISS + 2), 2)
    assert c.state is State.CLOSED
    assert recv_nothing(c, 2)


def test_simultaneous_close_through_closing() -> None:
    c = closing()
    send(c, replace(SEND, seq=REMOTE_ISS + 2, ack=LOCAL_ISS + 2), 1)
    assert c.state is State.TIME_WAIT
    assert recv_nothing(c, 1)


def test_fin_carried_on_the_last_data_segment() -> None:
    c = established()
    c.send(b"bye", 0)
    c.shutdown(0)
    assert recv(c, 0) == replace(RECV, flags=FIN | PSH | ACK, payload=b"bye")
    send(c, replace(SEND, ack=LOCAL_ISS + 5), 1)
    assert c.state is State.FIN_WAIT_2


def test_fin_retransmitted_on_rto() -> None:
    c = fin_wait_1()
    assert recv(c, 200 * MS) == replace(RECV, flags=FIN | ACK)  # RTO = rto_min
    assert c.counters["retransmissions"] == 1


def test_half_close_as_initiator_keeps_receiving() -> None:
    c = fin_wait_2()
    send(c, replace(SEND, payload=b"more", ack=LOCAL_ISS + 2), 0)
    assert c.receive(100, 0) == b"more"
    send(c, replace(SEND, seq=REMOTE_ISS + 5, ack=LOCAL_ISS + 2, flags=FIN | ACK), 1)
    # receiver SWS avoidance: 4 bytes read do not move the right edge (RFC 9293 3.8.6.2.2)
    assert recv(c, 1) == replace(RECV, seq=LOCAL_ISS + 2, ack=REMOTE_ISS + 6, window=4092)
    assert c.state is State.TIME_WAIT


def test_half_close_as_receiver_keeps_sending() -> None:
    c = close_wait()
    assert c.send(b"still here", 0) == 10
    assert recv(c, 0) == replace(RECV, flags=PSH | ACK, ack=REMOTE_ISS + 2, payload=b"still here")
    send(c, replace(SEND, seq=REMOTE_ISS + 2, ack=LOCAL_ISS + 11), 1)
    assert c.state is State.CLOSE_WAIT


def test_send_after_shutdown_is_connection_closing() -> None:
    c = fin_wait_1()
    try:
        c.send(b"x", 0)
    except InvalidStateError as e:
        assert str(e) == "connection closing"
    else:
        raise AssertionError("send after shutdown must fail")


def test_fin_wait_2_timeout_once_app_fully_closed() -> None:
    c = fin_wait_2()
    assert c.next_deadline() is None  # half-closed: the app may still read; wait forever
    c.close(5)
    assert c.next_deadline() == 5 + CONFIG.fin_wait_2_timeout
    # It ends silently, as Linux's FIN-WAIT-2 timewait record: the peer's next segment
    # finds no connection and the host answers it with RST.
    recv_nothing(c, 5 + CONFIG.fin_wait_2_timeout)
    assert c.state is State.CLOSED


def test_fin_wait_2_timeout_is_never_shorter_than_3_5_rto() -> None:
    # Linux tcp_fin_time: TCP_LINGER2 or tcp_fin_timeout, but at least 3.5 RTO, so a FIN
    # the peer sends as the wait ends can be retransmitted once and still be answered.
    c = established(replace(CONFIG, fin_wait_2_timeout=10 * MS))
    c.shutdown(0)
    assert recv(c, 0) == replace(RECV, flags=FIN | ACK)
    send(c, replace(SEND, ack=LOCAL_ISS + 2), 0)
    assert c.state is State.FIN_WAIT_2
    rto = c.rtt.rto
    c.close(5)
    assert c.timers["fin-wait-2"].deadline == 5 + 7 * rto // 2


def test_close_in_fin_wait_1_arms_fin_wait_2_timer_on_entry() -> None:
    c = fin_wait_1()
    c.close(0)
    send(c, replace(SEND, ack=LOCAL_ISS + 2), 7)
    assert c.state is State.FIN_WAIT_2
    assert c.timers["fin-wait-2"].deadline == 7 + CONFIG.fin_wait_2_timeout


def test_close_with_unread_data_sends_rst() -> None:
    c = established()
    send(c, replace(SEND, payload=b"unread"), 0)
    c.close(1)
    assert recv(c, 1) == replace(RECV, ack=0, flags=RST, window=0)
    assert c.state is State.CLOSED
    assert c.counters["drops"] == {"unread-data-at-close": 1}


def test_data_after_full_close_draws_rst() -> None:
    c = established()
    c.close(0)
    assert recv(c, 0) == replace(RECV, flags=FIN | ACK)
    send(c, replace(SEND, payload=b"late", ack=LOCAL_ISS + 2), 1)
    assert recv(c, 1) == replace(RECV, seq=LOCAL_ISS + 2, ack=0, flags=RST, window=0)
    assert c.state is State.CLOSED
    assert c.counters["drops"] == {"data-after-close": 1}


def test_close_without_unread_data_is_a_graceful_fin() -> None:
    c = established()
    send(c, replace(SEND, payload=b"read"), 0)
    assert c.receive(10, 0) == b"read"
    c.close(1)
    assert c.state is State.FIN_WAIT_1
    assert recv(c, 1) == replace(RECV, flags=FIN | ACK, ack=REMOTE_ISS + 5, window=4092)


def test_close_in_syn_sent_deletes() -> None:
    c = syn_sent()
    c.shutdown(0)
    assert c.state is State.CLOSED
    assert recv_nothing(c, 0)


def test_close_in_syn_received_queues_fin_until_established() -> None:
    c = syn_received()
    c.shutdown(0)
    assert c.state is State.SYN_RECEIVED
    send(c, SEND, 1)
    assert c.state is State.FIN_WAIT_1
    assert recv(c, 1) == replace(RECV, flags=FIN | ACK)


def test_last_ack_retransmits_fin() -> None:
    c = last_ack()
    assert recv(c, 200 * MS) == replace(RECV, flags=FIN | ACK, ack=REMOTE_ISS + 2)


def test_abort_sends_rst_and_closes() -> None:
    c = established()
    c.send(b"abc", 0)
    c.abort(0)
    assert recv(c, 0) == replace(RECV, ack=0, flags=RST, window=0)
    assert c.state is State.CLOSED
    assert c.next_deadline() is None


def test_rst_in_established_is_reset() -> None:
    c = established()
    send(c, replace(SEND, flags=RST), 0)
    assert c.state is State.CLOSED
    assert c.error == "reset"
    assert recv_nothing(c, 0)


def test_rst_in_time_wait_closes_silently() -> None:
    c = time_wait()
    send(c, replace(SEND, seq=REMOTE_ISS + 2, flags=RST), 1)
    assert c.state is State.CLOSED
    assert c.error is None


def test_closed_connection_answers_with_rst() -> None:
    c = established()
    c.abort(0)
    recv(c, 0)
    send(c, replace(SEND, payload=b"x"), 1)
    assert recv(c, 1) == replace(RECV, seq=LOCAL_ISS + 1, ack=0, flags=RST, window=0)
    send(c, replace(SEND, flags=RST), 2)
    assert recv_nothing(c, 2)


def test_out_of_order_fin_waits_for_the_hole() -> None:
    c = established()
    send(c, replace(SEND, seq=REMOTE_ISS + 4, payload=b"def", flags=FIN | ACK), 0)
    assert c.state is State.ESTABLISHED
    assert recv(c, 0) == RECV  # immediate duplicate ACK
    send(c, replace(SEND, payload=b"abc"), 1)
    assert c.state is State.CLOSE_WAIT
    assert c.receive(10, 1) == b"abcdef"
    assert recv(c, 1) == replace(RECV, ack=REMOTE_ISS + 8, window=4090)


def test_fin_wait_2_timeout_default_is_60_s() -> None:
    # Linux's tcp_fin_timeout, pinned in seconds and driven with every default at once.
    assert TcpConfig().fin_wait_2_timeout == 60 * SECOND
    c = established(TcpConfig())
    c.shutdown(0)
    assert recv(c, 0) == replace(RECV, flags=FIN | ACK, window=65535)
    send(c, replace(SEND, ack=LOCAL_ISS + 2), 0)
    assert c.state is State.FIN_WAIT_2
    c.close(5)
    assert c.next_deadline() == 5 + 60 * SECOND
    assert recv_nothing(c, 5 + 60 * SECOND - 1)
    assert c.state is State.FIN_WAIT_2
    assert recv_nothing(c, 5 + 60 * SECOND)  # silently, as Linux
    assert c.state is State.CLOSED


def test_time_wait_default_is_60_s() -> None:
    # 2·MSL with MSL = 30 s, as Linux's TCP_TIMEWAIT_LEN, driven with every default at once.
    assert 2 * TcpConfig().msl == 60 * SECOND
    c = established(TcpConfig())
    c.shutdown(0)
    assert recv(c, 0) == replace(RECV, flags=FIN | ACK, window=65535)
    send(c, replace(SEND, ack=LOCAL_ISS + 2, flags=FIN | ACK), 5)
    assert c.state is State.TIME_WAIT
    assert recv(c, 5) == replace(RECV, seq=LOCAL_ISS + 2, ack=REMOTE_ISS + 2, window=65535)
    assert c.next_deadline() == 5 + 60 * SECOND
    assert recv_nothing(c, 5 + 60 * SECOND - 1)
    assert c.state is State.TIME_WAIT
    assert recv_nothing(c, 5 + 60 * SECOND)
    assert c.state is State.CLOSED
