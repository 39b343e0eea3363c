"""Opening a connection: active, passive, simultaneous (RFC 9293 §3.5, §3.10.7.2-3)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
from stack.tcp.events import Closed, ConnectionFailed, Established, StateChanged
from stack.tcp.state import State
from tests.tcp.helpers import (
    ACK,
    BUF,
    CONFIG,
    FIN,
    LOCAL_ISS,
    MSS,
    RECV,
    REMOTE_ISS,
    RST,
    SEND,
    SYN,
    connection,
    established,
    events,
    recv,
    recv_nothing,
    send,
    syn,
    syn_received,
    syn_sent,
)

SYN_OUT = replace(RECV, seq=LOCAL_ISS, ack=0, flags=SYN, mss=MSS)


def test_active_open_sends_syn_with_mss() -> None:
    c = connection()
    c.open_active(0)
    assert c.state is State.SYN_SENT
    assert recv(c, 0) == SYN_OUT
    assert recv_nothing(c, 1)


def test_active_open_completes_on_syn_ack() -> None:
    c = syn_sent()
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, mss=1000), 10 * MS)
    assert c.state is State.ESTABLISHED
    assert recv(c, 10 * MS) == RECV
    assert events(c) == [
        StateChanged(State.CLOSED, State.SYN_SENT),
        StateChanged(State.SYN_SENT, State.ESTABLISHED),
        Established(),
    ]
    assert c.tcb.snd_mss == 1000
    assert c.rtt.srtt == 10 * MS


def test_mss_defaults_to_536_when_absent() -> None:
    c = syn_sent()
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK), 0)
    assert c.tcb.mss_remote == 536
    assert c.tcb.snd_mss == 536


def test_passive_open_sends_syn_ack_then_establishes() -> None:
    c = connection()
    c.open_passive(0)
    assert c.state is State.LISTEN
    send(c, syn(), 0)
    assert c.state is State.SYN_RECEIVED
    assert recv(c, 0) == replace(RECV, seq=LOCAL_ISS, flags=SYN | ACK, mss=MSS)
    send(c, SEND, 5 * MS)
    assert c.state is State.ESTABLISHED
    assert Established() in events(c)
    assert recv_nothing(c, 5 * MS)


def test_simultaneous_open() -> None:
    c = syn_sent()
    send(c, syn(), 0)
    assert c.state is State.SYN_RECEIVED
    assert recv(c, 0) == replace(RECV, seq=LOCAL_ISS, flags=SYN | ACK, mss=MSS)
    send(c, replace(SEND, seq=REMOTE_ISS + 1, flags=SYN | ACK), 0)  # their SYN-ACK
    # a SYN in a synchronized state: challenge ACK, not a reset
    assert recv(c, 0) == RECV
    send(c, SEND, 1)
    assert c.state is State.ESTABLISHED


def test_simultaneous_open_established_by_the_peers_syn_ack() -> None:
    # RFC 9293 §3.5 figure 8, line 6: in SYN-RECEIVED the peer's SYN,ACK (its SYN
    # again, SEG.SEQ = IRS, and an ACK of ours) establishes the connection; we ACK it.
    # Its window is a SYN's: not scaled (RFC 7323 §2.2).
    cfg = replace(CONFIG, wscale=True)
    c = syn_sent(cfg)
    send(c, syn(wscale=7), 0)
    assert c.state is State.SYN_RECEIVED
    recv(c, 0)
    events(c)
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, window=2920, wscale=7), 10 * MS)
    assert c.state is State.ESTABLISHED
    assert c.tcb.snd_wnd == 2920
    assert recv(c, 10 * MS) == replace(RECV, window=c.tcb.rcv_wnd >> c.tcb.wscale_local)
    assert c.counters["drops"] == {}
    assert events(c) == [StateChanged(State.SYN_RECEIVED, State.ESTABLISHED), Established()]


def test_simultaneous_open_syn_ack_acking_nothing_of_ours_is_old() -> None:
    c = syn_sent()
    send(c, syn(), 0)
    recv(c, 0)
    send(c, replace(SEND, seq=REMOTE_ISS, ack=LOCAL_ISS, flags=SYN | ACK), 1)
    assert c.state is State.SYN_RECEIVED
    assert recv(c, 1) == replace(RECV, seq=LOCAL_ISS + 1)
    assert c.counters["drops"] == {"out-of-window": 1}


def test_listen_answers_ack_with_rst() -> None:
    c = connection()
    c.open_passive(0)
    send(c, replace(SEND, ack=555), 0)
    assert recv(c, 0) == replace(RECV, seq=555, ack=0, flags=RST, window=0)
    assert c.state is State.LISTEN
    assert c.counters["drops"] == {"ack-in-listen": 1}


def test_listen_ignores_rst() -> None:
    c = connection()
    c.open_passive(0)
    send(c, replace(SEND, flags=RST), 0)
    assert recv_nothing(c, 0)
    assert c.state is State.LISTEN


def test_syn_sent_bad_ack_draws_rst() -> None:
    c = syn_sent()
    send(c, replace(SEND, seq=REMOTE_ISS, ack=LOCAL_ISS + 5, flags=SYN | ACK), 0)
    assert recv(c, 0) == replace(RECV, seq=LOCAL_ISS + 5, ack=0, flags=RST, window=0)
    assert c.state is State.SYN_SENT


def test_connect_refused_on_rst_ack() -> None:
    c = syn_sent()
    events(c)
    send(c, replace(SEND, seq=0, flags=RST | ACK), 0)
    assert c.state is State.CLOSED
    assert c.error == "refused"
    assert events(c) == [
        ConnectionFailed("refused"),
        StateChanged(State.SYN_SENT, State.CLOSED),
        Closed(),
    ]
    assert recv_nothing(c, 0)


def test_syn_sent_ignores_rst_without_ack() -> None:
    c = syn_sent()
    send(c, replace(SEND, seq=0, flags=RST), 0)
    assert c.state is State.SYN_SENT


def test_syn_retransmitted_with_backoff_then_timed_out() -> None:
    c = syn_sent()
    assert recv_nothing(c, 1 * SECOND - 1)
    assert recv(c, 1 * SECOND) == SYN_OUT
    assert recv_nothing(c, 3 * SECOND - 1)
    assert recv(c, 3 * SECOND) == SYN_OUT
    t = 3 * SECOND
    for k in range(2, CONFIG.syn_retries):
        t += (1 << k) * SECOND
        assert recv(c, t) == SYN_OUT
    t += (1 << CONFIG.syn_retries) * SECOND
    assert t == 127 * SECOND  # Linux: 6 retries, ~127 s
    assert recv_nothing(c, t)
    assert c.state is State.CLOSED
    assert c.error == "timed out"


def test_karn_no_rtt_sample_from_retransmitted_syn() -> None:
    c = syn_sent()
    assert recv(c, 1 * SECOND) == SYN_OUT
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK), 1 * SECOND + 5 * MS)
    assert c.state is State.ESTABLISHED
    assert c.rtt.samples == 0
    assert c.rtt.backoffs == 0  # new ACK resets the backoff
    assert c.rtt.rto == 3 * SECOND  # RFC 6298 (5.7): re-initialised after a SYN timeout


def test_syn_ack_retransmitted_and_lost_syn_ack_resent_on_peer_syn() -> None:
    c = syn_received()
    assert recv(c, 1 * SECOND) == replace(RECV, seq=LOCAL_ISS, flags=SYN | ACK, mss=MSS)
    send(c, syn(), 1 * SECOND + 1)  # their SYN again
    assert recv(c, 1 * SECOND + 1) == replace(RECV, seq=LOCAL_ISS, flags=SYN | ACK, mss=MSS)
    assert c.state is State.SYN_RECEIVED


def test_synack_retries_exhausted_closes() -> None:
    c = syn_received()
    t = 0
    for k in range(CONFIG.synack_retries):
        t += (1 << k) * SECOND
        assert recv(c, t).flags == SYN | ACK
    t += (1 << CONFIG.synack_retries) * SECOND
    assert recv_nothing(c, t)
    assert c.state is State.CLOSED


def test_syn_received_bad_ack_draws_rst() -> None:
    c = syn_received()
    send(c, replace(SEND, ack=LOCAL_ISS), 0)
    assert recv(c, 0) == replace(RECV, seq=LOCAL_ISS, ack=0, flags=RST, window=0)
    assert c.state is State.SYN_RECEIVED


def test_established_builder_matches_active_handshake() -> None:
    # smoltcp's sanity!: the passive builder and an active open reach the same TCB.
    passive = established()
    active = connection()
    active.open_active(0)
    recv(active, 0)
    send(active, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, mss=MSS), 0)
    recv(active, 0)
    a, p = active.snapshot(0), passive.snapshot(0)
    # SND.WL1 is the SEG.SEQ of the segment that set the window: the SYN-ACK on the
    # active side, the third segment of the handshake on the passive side.
    assert a["send"].pop("snd_wl1") == REMOTE_ISS
    assert p["send"].pop("snd_wl1") == REMOTE_ISS + 1
    assert (
        a["send"]
        == p["send"]
        == {
            "iss": LOCAL_ISS,
            "snd_una": LOCAL_ISS + 1,
            "snd_nxt": LOCAL_ISS + 1,
            "snd_max": LOCAL_ISS + 1,
            "snd_wnd": BUF,
            "snd_wl2": LOCAL_ISS + 1,
            "snd_up": LOCAL_ISS,
            "max_snd_wnd": BUF,
            "snd_sml": LOCAL_ISS,
        }
    )
    assert (
        a["receive"]
        == p["receive"]
        == {
            "irs": REMOTE_ISS,
            "rcv_nxt": REMOTE_ISS + 1,
            "rcv_wnd": BUF,
            "rcv_up": REMOTE_ISS + 1,
            "sack_order": [],
            "dsack": None,
            "peer_fin_seq": None,
            "unacked_rx": 0,
            "rcv_mss": 536,  # RFC 9293 3.7.1's default until the peer sends data
        }
    )
    assert a["options"] == p["options"]
    assert a["buffers"] == p["buffers"]


def test_data_queued_in_syn_sent_goes_after_handshake() -> None:
    c = syn_sent()
    assert c.send(b"hello", 0) == 5
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK), 0)
    assert recv(c, 0) == replace(RECV, flags=ACK | 8, payload=b"hello")


def test_snapshot_has_every_section_and_timer() -> None:
    c = established()
    snap = c.snapshot(0)
    assert list(snap) == [
        "id",
        "state",
        "local",
        "remote",
        "send",
        "receive",
        "options",
        "congestion",
        "recovery",
        "rtt",
        "buffers",
        "counters",
        "timers",
        "close",
    ]
    assert [t["name"] for t in snap["timers"]] == [
        "retransmission",
        "syn",
        "delayed-ack",
        "persist",
        "keepalive",
        "time-wait",
        "fin-wait-2",
    ]
    assert snap["state"] == "ESTABLISHED"
    assert snap["local"] == {"addr": "10.77.0.2", "port": 5000}


def test_rto_after_syn_timeout_is_three_seconds_for_data() -> None:
    c = syn_received()
    assert recv(c, 1 * SECOND).flags == SYN | ACK  # the SYN-ACK timed out once
    send(c, SEND, 1 * SECOND + 5 * MS)
    assert c.state is State.ESTABLISHED
    c.send(b"x", 2 * SECOND)
    recv(c, 2 * SECOND)
    assert c.timers["retransmission"].deadline == 5 * SECOND  # RFC 6298 (5.7)


def test_data_on_the_handshake_ack_is_delivered() -> None:
    c = syn_received()
    send(c, replace(SEND, flags=ACK | FIN, payload=b"GET /"), 1 * MS)
    assert c.state is State.CLOSE_WAIT
    assert c.receive(100, 1 * MS) == b"GET /"
    assert c.at_eof
    assert recv(c, 1 * MS) == replace(RECV, ack=REMOTE_ISS + 7, window=BUF - 5)


def test_data_on_the_syn_ack_is_delivered() -> None:
    c = syn_sent()
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, payload=b"hi"), 1 * MS)
    assert c.state is State.ESTABLISHED
    assert c.receive(10, 1 * MS) == b"hi"
    assert recv(c, 1 * MS) == replace(RECV, ack=REMOTE_ISS + 3, window=BUF - 2)


def test_karn_syn_ack_resent_for_a_repeated_syn_is_not_timed() -> None:
    # RFC 6298 §3: our first SYN-ACK was lost, the peer's SYN came again and we resent
    # it: the ACK cannot say which copy it answers, so it yields no RTT sample.
    c = syn_received()
    send(c, syn(), 900 * MS)
    assert recv(c, 900 * MS) == replace(RECV, seq=LOCAL_ISS, flags=SYN | ACK, mss=MSS)
    assert c.counters["retransmissions"] == 1
    send(c, SEND, 910 * MS)
    assert c.state is State.ESTABLISHED
    assert (c.rtt.samples, c.rtt.srtt, c.rtt.rto) == (0, None, 1 * SECOND)
