"""Congestion window validation (RFC 7661) through the connection: an idle or
application-limited sender keeps its window for the non-validated phase (five
minutes), then halves it (not below IW) and raises ssthresh to 3/4 of it."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.congestion import NewReno
from stack.tcp.cwv import NVP_DURATION, CwndValidation
from tests.tcp.helpers import CONFIG, LOCAL_ISS, SEND, connection, recv, recv_all, send, syn

SMSS = 1460
RTT = 10 * MS
NEWRENO = TcpConfig(**{**CONFIG.__dict__, "cc": "newreno", "snd_buf": 1 << 20})


def busy_then(cwnd: int):
    """Established, cwnd set, one full window sent and acknowledged (validated)."""
    c = connection(NEWRENO)
    c.open_passive(0)
    send(c, syn(window=65535), 0)
    recv(c, 0)
    send(c, replace(SEND, ack=LOCAL_ISS + 1, window=65535), RTT)
    c.cc.cwnd = cwnd
    c.cc.ssthresh = cwnd  # congestion avoidance
    c.send(b"v" * cwnd, RTT)
    assert len(recv_all(c, RTT)) == cwnd // SMSS
    send(c, replace(SEND, ack=LOCAL_ISS + 1 + cwnd, window=65535), 2 * RTT)
    send(c, replace(SEND, ack=LOCAL_ISS + 1 + cwnd, window=65535), 3 * RTT)
    return c


def test_idle_for_the_nvp_halves_cwnd() -> None:
    c = busy_then(20 * SMSS)
    assert c.snapshot(3 * RTT)["congestion"]["pipe_ack"] == 20 * SMSS
    cwnd = c.cc.cwnd
    later = 3 * RTT + NVP_DURATION + SECOND
    c.send(b"w" * SMSS, later - NVP_DURATION // 2)  # half way: the window is kept
    recv_all(c, later - NVP_DURATION // 2)
    assert c.cc.cwnd == cwnd
    send(c, replace(SEND, ack=LOCAL_ISS + 1 + 21 * SMSS, window=65535), later - 1)
    c.send(b"w" * SMSS, later)
    recv_all(c, later)
    # RFC 7661 §4.4.3: ssthresh = max(ssthresh, 3/4 cwnd), cwnd = max(cwnd / 2, IW)
    assert (c.cc.cwnd, c.cc.ssthresh) == (cwnd // 2, max(20 * SMSS, 3 * cwnd // 4))
    assert c.counters["cwv_reductions"] == 1


def test_a_sender_that_uses_its_window_is_never_reduced() -> None:
    cc = NewReno(SMSS)
    cc.cwnd = 10 * SMSS
    cwv = CwndValidation()
    now = 0
    for _ in range(700):  # 700 s, acknowledging a full window every second
        cwv.on_ack(now, 10 * SMSS, RTT)
        now += SECOND
        cwv.check(now, cc, RTT)
    assert (cc.cwnd, cwv.nvp_since, cwv.reductions) == (10 * SMSS, None, 0)


def test_application_limited_for_two_nvps_halves_twice_not_below_iw() -> None:
    cc = NewReno(SMSS)
    cc.cwnd = 10 * SMSS
    cwv = CwndValidation()
    now = 0
    for _ in range(1300):  # a tenth of the window an RTT, for 1300 s
        cwv.on_ack(now, SMSS, SECOND)
        now += SECOND
        cwv.check(now, cc, SECOND)
    assert cwv.reductions == 4  # at 300 s, 600 s, 900 s and 1200 s after the NVP began
    assert cc.cwnd == 4380  # 10 -> 5 -> 2.5 SMSS, then IW (RFC 5681: 4380 bytes)
