"""Loss recovery through the connection (stack/tcp/recovery.py): RACK's time-based loss
detection (RFC 8985 §6), the tail loss probe (§7), D-SACK undo (RFC 2883 §5, as Linux),
RFC 6675's rescue retransmission, and ECN (RFC 3168).  A fake clock, a 10 ms RTT
measured on the handshake, exact segments."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from stack.tcp.clock import MS
from stack.tcp.config import TcpConfig
from stack.tcp.congestion import NewReno
from stack.tcp.connection import Connection
from stack.tcp.recovery import TLP_SLACK, Recovery
from stack.tcp.sender import CWR, ECE, EctSegment
from tests.tcp.helpers import (
    ACK,
    CONFIG,
    LOCAL_ISS,
    REMOTE_ISS,
    SEND,
    SYN,
    connection,
    recv,
    recv_all,
    recv_nothing,
    send,
    syn,
)

SMSS = 1460
UNA = LOCAL_ISS + 1
WIN = 65535
RTT = 10 * MS
PTO = 2 * RTT + TLP_SLACK  # RFC 8985 §7.2 (more than one segment out), Linux's slack
BASE = TcpConfig(**{**CONFIG.__dict__, "cc": "newreno", "sack": True, "snd_buf": 1 << 20})


def sending(segments: int, *, rack: bool = True, ecn_syn: bool = False, **cfg: object):
    """Established passively (RTT 10 ms from the handshake), cwnd `segments`, that many
    full segments sent at t = RTT and twenty more queued."""
    c = connection(replace(BASE, rack=rack, **cfg))  # type: ignore[arg-type]
    c.open_passive(0)
    flags = SYN | ECE | CWR if ecn_syn else SYN
    send(c, replace(syn(sack_permitted=True, window=WIN), flags=flags), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    assert (c.rtt.srtt, c.rtt.min_rtt) == (RTT, RTT)
    c.cc.cwnd = segments * SMSS
    c.send(b"d" * ((segments + 20) * SMSS), RTT)
    out = recv_all(c, RTT)
    assert [s.seq for s in out] == [UNA + k * SMSS for k in range(segments)]
    return c


def ack(n: int, **kw: object):
    kw.setdefault("window", WIN)
    return replace(SEND, ack=UNA + n, **kw)  # type: ignore[arg-type]


def segs(first: int, last: int) -> tuple[int, int]:
    return (UNA + first * SMSS, UNA + last * SMSS)


def seqs(c: Connection, now: int) -> list[int]:
    """The segments that go out at `now`, as segment numbers."""
    return [(s.seq - UNA) // SMSS for s in recv_all(c, now)]


# -- RACK (RFC 8985 §6) -------------------------------------------------------------


def test_rack_marks_a_hole_lost_after_the_reordering_window() -> None:
    c = sending(4)
    send(c, ack(0, sack=(segs(1, 2),)), 2 * RTT)  # one segment above the hole
    # reo_wnd = min_rtt / 4 = 2.5 ms: segment 0 (sent with 1, at 10 ms) is lost once
    # 10 + RACK.rtt (10) + 2.5 ms have passed; one new segment fills the SACKed slot.
    assert seqs(c, 2 * RTT) == [4]
    snap = c.snapshot(2 * RTT)
    assert snap["recovery"]["timer_mode"] == "rack"
    assert c.timers["retransmission"].deadline == 2 * RTT + RTT // 4
    assert recv_nothing(c, 2 * RTT + RTT // 4 - 1)
    assert seqs(c, 2 * RTT + RTT // 4) == [0]  # the reordering timeout: resent
    snap = c.snapshot(2 * RTT + RTT // 4)
    assert (snap["congestion"]["phase"], snap["counters"]["fast_recoveries"]) == ("recovery", 1)
    assert snap["counters"]["lost_marked_bytes"] == SMSS


def test_without_rack_one_sacked_segment_is_only_reordering() -> None:
    c = sending(4, rack=False)
    send(c, ack(0, sack=(segs(1, 2),)), 2 * RTT)
    assert seqs(c, 2 * RTT) == [4]
    assert c.snapshot(2 * RTT)["recovery"]["timer_mode"] == "rto"
    assert recv_nothing(c, 3 * RTT)  # no timer but the RTO (200 ms)
    assert c.snapshot(3 * RTT)["congestion"]["phase"] == "disorder"


def test_rack_waits_no_reordering_window_once_dupthresh_segments_are_sacked() -> None:
    # RFC 8985 §6.2 step 4: no reordering seen and DupThresh segments SACKed: reo_wnd 0.
    c = sending(6)
    send(c, ack(0, sack=(segs(1, 4),)), 2 * RTT)
    assert seqs(c, 2 * RTT) == [0]  # at once, no timer (PRR: one segment for now)
    assert c.snapshot(2 * RTT)["congestion"]["phase"] == "recovery"


# -- TLP (RFC 8985 §7) --------------------------------------------------------------


def test_tail_loss_probe_resends_the_last_segment_after_two_rtts() -> None:
    c = sending(3)
    # nothing new may go out (cwnd full): PTO = 2 * SRTT + 2 ms after the last send
    assert c.snapshot(RTT)["recovery"]["timer_mode"] == "tlp"
    assert c.timers["retransmission"].deadline == RTT + PTO
    assert recv_nothing(c, RTT + PTO - 1)
    out = recv_all(c, RTT + PTO)
    # new data is queued and the peer's window has room: the probe is a new segment
    assert [(s.seq, len(s.payload)) for s in out] == [(UNA + 3 * SMSS, SMSS)]
    snap = c.snapshot(RTT + PTO)
    assert (snap["counters"]["tlp_probes"], snap["recovery"]["timer_mode"]) == (1, "rto")
    assert snap["recovery"]["tlp_end"] == UNA + 4 * SMSS


def test_probe_timeout_of_a_super_segment_has_no_delayed_ack_allowance() -> None:
    # RFC 8985 §7.2 adds WCDelAckT only when FlightSize is one segment.  With TSO one
    # record is a super-segment of many wire segments, which the receiver ACKs as
    # usual: PTO = 2 * SRTT (+ 2 ms) for it, not the RTO (Linux counts packets_out in
    # MSS).
    c = connection(BASE)
    c.tso_max = 65536
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    c.cc.cwnd = 4 * SMSS
    c.send(b"t" * (4 * SMSS), RTT)
    assert [len(s.payload) for s in recv_all(c, RTT)] == [4 * SMSS]
    assert c.snapshot(RTT)["recovery"]["segments"] == 1
    assert c.snapshot(RTT)["recovery"]["timer_mode"] == "tlp"
    assert c.timers["retransmission"].deadline == RTT + PTO
    assert recv_nothing(c, RTT + PTO - 1)
    out = recv_all(c, RTT + PTO)  # the probe: the last MSS of the super-segment again
    assert [(s.seq, len(s.payload)) for s in out] == [(UNA + 3 * SMSS, SMSS)]


def test_tail_loss_probe_with_tso_is_one_segment_of_new_data() -> None:
    # RFC 8985 §7.3: the probe is one new segment.  It leaves past cwnd, so with TSO
    # it must not be a super-segment of everything the peer's window holds.
    c = connection(BASE)
    c.tso_max = 65536
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    c.cc.cwnd = 4 * SMSS
    c.send(b"t" * (30 * SMSS), RTT)
    assert [len(s.payload) for s in recv_all(c, RTT)] == [4 * SMSS]
    out = recv_all(c, RTT + PTO)
    assert [(s.seq, len(s.payload)) for s in out] == [(UNA + 4 * SMSS, SMSS)]
    assert c.snapshot(RTT + PTO)["recovery"]["tlp_end"] == UNA + 5 * SMSS


def test_tail_loss_probe_sends_a_short_tail_with_nagle_off() -> None:
    # The end of a burst shorter than a segment waits for Nagle while data is out;
    # the probe sends it all the same (Linux TCP_NAGLE_OFF), it is new data.
    c = connection(replace(BASE, nodelay=False))
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    c.cc.cwnd = 4 * SMSS
    c.send(b"t" * (4 * SMSS + 500), RTT)
    assert seqs(c, RTT) == [0, 1, 2, 3]
    assert recv_nothing(c, RTT + PTO - 1)
    out = recv_all(c, RTT + PTO)
    assert [(s.seq, len(s.payload)) for s in out] == [(UNA + 4 * SMSS, 500)]
    snap = c.snapshot(RTT + PTO)
    assert (snap["counters"]["tlp_probes"], snap["recovery"]["tlp_end"]) == (
        1,
        UNA + 4 * SMSS + 500,
    )


def test_no_tail_loss_probe_once_fast_recovery_starts() -> None:
    # RFC 8985 §7.2: no probe in fast recovery.  The probe armed with the flight gives
    # way to the RTO when SACKs start an episode.
    c = sending(4)
    assert c.snapshot(RTT)["recovery"]["timer_mode"] == "tlp"
    send(c, ack(0, sack=(segs(1, 4),)), RTT + 1 * MS)
    assert seqs(c, RTT + 1 * MS) == [0, 4]  # PRR-SSRB: the hole, then one new segment
    snap = c.snapshot(RTT + 1 * MS)
    assert (snap["congestion"]["phase"], snap["recovery"]["timer_mode"]) == ("recovery", "rto")
    assert c.timers["retransmission"].deadline == RTT + 1 * MS + c.rtt.rto
    assert recv_nothing(c, RTT + PTO)  # where the probe would have gone
    assert c.counters["tlp_probes"] == 0


def test_probe_timeout_of_one_segment_waits_for_a_delayed_ack() -> None:
    c = connection(BASE)
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    c.send(b"t" * SMSS, RTT)
    assert seqs(c, RTT) == [0]
    # 2 * SRTT + WCDelAckT (200 ms) is more than the RTO (200 ms): PTO = RTO
    assert c.timers["retransmission"].deadline == RTT + c.rtt.rto
    assert c.snapshot(RTT)["recovery"]["timer_mode"] == "tlp"


def test_tail_loss_probe_retransmits_when_nothing_new_is_queued() -> None:
    c = connection(BASE)
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    c.send(b"t" * (2 * SMSS), RTT)
    assert seqs(c, RTT) == [0, 1]
    assert recv_nothing(c, RTT + PTO - 1)
    out = recv_all(c, RTT + PTO)
    assert [(s.seq, len(s.payload)) for s in out] == [(UNA + SMSS, SMSS)]  # the last one
    # the probe repaired a loss (no D-SACK for it): fast recovery's response
    cwnd = c.cc.cwnd
    send(c, ack(2 * SMSS), 4 * RTT)
    snap = c.snapshot(4 * RTT)
    assert snap["counters"]["tlp_recoveries"] == 1
    assert c.cc.cwnd < cwnd
    assert snap["recovery"]["tlp_end"] is None


def test_tail_loss_probe_dsacked_means_no_loss() -> None:
    c = connection(BASE)
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    c.send(b"t" * (2 * SMSS), RTT)
    recv_all(c, RTT)
    assert seqs(c, RTT + PTO) == [1]  # the probe: segment 1 again
    cwnd = c.cc.cwnd
    # the originals arrived: the ACK covers both and D-SACKs the probe
    send(c, ack(2 * SMSS, sack=(segs(1, 2),)), 4 * RTT)
    snap = c.snapshot(4 * RTT)
    assert (snap["counters"]["tlp_recoveries"], snap["counters"]["dsacks_received"]) == (0, 1)
    assert c.cc.cwnd >= cwnd


# -- D-SACK undo (RFC 2883 §5, Linux tcp_try_undo_dsack) -----------------------------


def test_dsack_of_every_retransmission_undoes_the_reduction() -> None:
    c = sending(6, rack=False)
    cwnd, ssthresh = c.cc.cwnd, c.cc.ssthresh
    for k, t in ((2, 21), (3, 22), (4, 23)):  # segment 0 delayed: three SACKs
        send(c, ack(0, sack=(segs(1, k),)), t * MS)
        recv_all(c, t * MS)
    assert c.snapshot(23 * MS)["congestion"]["phase"] == "recovery"
    assert c.counters["retransmissions"] == 1
    assert c.cc.cwnd < cwnd
    # the original segment 0 arrives, then our retransmission: a D-SACK for it
    send(c, ack(4 * SMSS), 24 * MS)
    send(c, ack(4 * SMSS, sack=(segs(0, 1),)), 25 * MS)
    snap = c.snapshot(25 * MS)
    assert snap["counters"]["undos"] == 1
    assert (c.cc.cwnd >= cwnd, c.cc.ssthresh) == (True, ssthresh)
    assert snap["congestion"]["phase"] == "open"


# -- RFC 6675 NextSeg rule (4): rescue retransmission --------------------------------


def test_rescue_retransmission_of_the_tail_once_per_episode() -> None:
    c = connection(replace(BASE, rack=False))
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), RTT)
    c.cc.cwnd = 6 * SMSS
    c.send(b"r" * (6 * SMSS), RTT)  # nothing more to send after these six
    assert seqs(c, RTT) == [0, 1, 2, 3, 4, 5]
    # 0 and 5 lost: 1..4 SACKed; 0 is lost by IsLost, 5 (above every SACK) is not
    for k, t, out in ((2, 21, []), (3, 22, []), (4, 23, [0]), (5, 24, [5])):
        send(c, ack(0, sack=(segs(1, k),)), t * MS)
        assert seqs(c, t * MS) == out  # at 24 ms: rule (4), the last segment
    assert c.counters["retransmissions"] == 2
    send(c, ack(0, sack=(segs(1, 5),)), 25 * MS)
    assert recv_nothing(c, 25 * MS)  # once per episode
    assert c.snapshot(24 * MS)["recovery"]["rescue_rxt"] == UNA + 6 * SMSS


def test_no_rescue_retransmission_while_new_data_waits_for_prr() -> None:
    # RFC 6675 §4: rules (3) and (4) apply only when rule (2) fails -- no new data, or
    # the peer's window holds none.  Here new data is queued and the window open; PRR
    # (RFC 6937) allows a fraction of a segment, which sender SWS avoidance holds back.
    # That is no reason to resend segment 8, sent 3 ms ago and surely in flight.
    c = sending(7, rack=False)
    for k, t, out in ((2, 21, [7]), (3, 22, [8]), (4, 23, [0]), (5, 24, []), (6, 25, [])):
        send(c, ack(0, sack=(segs(1, k),)), t * MS)
        assert seqs(c, t * MS) == out
    assert 0 < c.recovery.sndcnt < SMSS
    assert c.snapshot(25 * MS)["recovery"]["rescue_rxt"] is None
    send(c, ack(0, sack=(segs(1, 7),)), 26 * MS)
    assert seqs(c, 26 * MS) == []
    send(c, ack(0, sack=(segs(1, 8),)), 27 * MS)
    assert seqs(c, 27 * MS) == [9]  # PRR's count reached a segment: new data (rule 2)
    assert c.counters["retransmissions"] == 1


def test_every_ack_of_new_data_in_sack_recovery_restarts_the_rto() -> None:
    # RFC 6298 (5.3), as Linux: an ACK that acknowledges new data restarts the timer,
    # in a SACK recovery episode too.  Restarting on the first partial ACK only (RFC
    # 6582's NewReno rule) let an episode that repairs several holes over more than an
    # RTO time out in the middle of its progress.  Segments 0, 3 and 6 are lost.
    c = sending(8, rack=False)
    sacks = ((21, (segs(1, 2),), [8]), (22, (segs(1, 3),), [9]))
    for t, blocks, out in (*sacks, (23, (segs(1, 3), segs(4, 5)), [0])):
        send(c, ack(0, sack=blocks), t * MS)
        assert seqs(c, t * MS) == out  # limited transmit, then recovery: the first hole
    send(c, ack(3 * SMSS, sack=(segs(4, 6),)), 40 * MS)  # partial ACK: 0 repaired
    assert c.timers["retransmission"].deadline == 40 * MS + c.rtt.rto
    send(c, ack(3 * SMSS, sack=(segs(4, 6), segs(7, 8))), 150 * MS)
    assert seqs(c, 150 * MS) == [3]  # IsLost(3): no new data acknowledged, no restart
    assert c.timers["retransmission"].deadline == 40 * MS + c.rtt.rto
    send(c, ack(6 * SMSS, sack=(segs(7, 9),)), 160 * MS)  # the second partial ACK
    assert seqs(c, 160 * MS) == [10, 11]
    assert c.timers["retransmission"].deadline == 160 * MS + c.rtt.rto
    assert recv_nothing(c, 40 * MS + c.rtt.rto)  # where the first partial ACK's RTO was
    snap = c.snapshot(40 * MS + c.rtt.rto)
    assert (snap["congestion"]["phase"], c.recovery.retries) == ("recovery", 0)


# -- RFC 3042 / RFC 5681 §3.2 step 2: the FlightSize that ssthresh halves -----------


def test_new_data_within_cwnd_in_disorder_counts_in_the_flight_size() -> None:
    # Segment 2 is lost.  The ACK of 0-1 grows cwnd to 7 and SACKs 3: the sender is in
    # "disorder" and sends 6, 7, 8 within cwnd (4 + 3 = 7 outstanding) and 9 beyond it
    # as the SACK shrank the pipe; the next SACK lets 10 out beyond cwnd too.  Only
    # 9 and 10 are the duplicate ACKs' extra data that RFC 3042 §2 keeps out of the
    # FlightSize: at the third SACKed segment ssthresh = (9 - 2) / 2 segments.
    c = sending(6, rack=False)
    send(c, ack(2 * SMSS, sack=(segs(3, 4),)), 21 * MS)
    assert (seqs(c, 21 * MS), c.cc.cwnd) == ([6, 7, 8, 9], 7 * SMSS)
    send(c, ack(2 * SMSS, sack=(segs(3, 5),)), 22 * MS)
    assert seqs(c, 22 * MS) == [10]
    send(c, ack(2 * SMSS, sack=(segs(3, 6),)), 23 * MS)
    assert seqs(c, 23 * MS) == [2]
    assert c.snapshot(23 * MS)["congestion"]["phase"] == "recovery"
    assert c.cc.ssthresh == 7 * SMSS // 2


# -- ECN (RFC 3168) -----------------------------------------------------------------


def test_ecn_setup_syn_is_accepted_and_data_goes_out_ect0() -> None:
    c = connection(BASE)
    c.open_passive(0)
    send(c, replace(syn(sack_permitted=True, window=WIN), flags=SYN | ECE | CWR), 0)
    synack = recv(c, 0)
    assert synack.flags == SYN | ACK | ECE  # §6.1.1: ECN-setup SYN-ACK
    send(c, ack(0), RTT)
    assert c.snapshot(RTT)["options"]["ecn"] is True
    c.send(b"e" * 100, RTT)
    seg = recv(c, RTT)
    assert type(seg) is EctSegment and seg.flags & (ECE | CWR) == 0
    assert recv_nothing(c, 2 * RTT)


def test_no_ecn_without_the_setup_syn() -> None:
    c = connection(BASE)
    c.open_passive(0)
    send(c, replace(syn(window=WIN), flags=SYN | ECE), 0)  # ECE alone: not ECN-setup
    assert recv(c, 0).flags == SYN | ACK
    send(c, ack(0), RTT)
    c.send(b"e", RTT)
    assert type(recv(c, RTT)) is not EctSegment


def test_ecn_asked_for_with_config() -> None:
    c = connection(replace(BASE, ecn=True))
    c.open_active(0)
    assert recv(c, 0).flags == SYN | ECE | CWR
    c2 = connection(replace(BASE, ecn=True))
    c2.open_active(0)
    recv(c2, 0)
    send(c2, replace(SEND, seq=REMOTE_ISS, ack=LOCAL_ISS + 1, flags=SYN | ACK | ECE), RTT)
    assert c2.tcb.ecn


def test_ce_mark_is_echoed_until_cwr() -> None:  # RFC 3168 §6.1.3
    c = sending(2, ecn_syn=True)
    data = replace(SEND, ack=UNA, payload=b"p" * 100)
    c.receive_ce()
    send(c, data, 2 * RTT)
    out = recv_all(c, 2 * RTT)  # a CE mark is ACKed at once, with ECE
    assert [s.flags & ECE for s in out] == [ECE]
    assert c.counters["ce_received"] == 1
    send(c, replace(data, seq=REMOTE_ISS + 101), 3 * RTT)
    assert recv_all(c, 3 * RTT + 40 * MS)[-1].flags & ECE  # still echoed
    send(c, replace(data, seq=REMOTE_ISS + 201, flags=ACK | CWR), 4 * RTT)
    assert not recv_all(c, 4 * RTT + 40 * MS)[-1].flags & ECE  # CWR ends it


def test_ece_halves_cwnd_once_per_window_and_sends_cwr() -> None:  # RFC 3168 §6.1.2
    c = sending(8, ecn_syn=True)
    send(c, ack(SMSS, flags=ACK | ECE), 2 * RTT)
    assert c.cc.cwnd == 4 * SMSS  # FlightSize 8 segments halved (NewReno)
    assert recv_nothing(c, 2 * RTT)  # 7 in flight, cwnd 4
    send(c, ack(5 * SMSS, flags=ACK | ECE), 2 * RTT + MS)  # same window: no second cut
    assert c.cc.cwnd == 5 * SMSS  # congestion avoidance (RFC 3465): +1 SMSS per cwnd ACKed
    out = recv_all(c, 2 * RTT + MS)
    assert [(s.seq - UNA) // SMSS for s in out] == [8, 9]
    assert out[0].flags & CWR and type(out[0]) is EctSegment  # the first new data: CWR
    assert not out[1].flags & CWR
    assert c.counters["ecn_reductions"] == 1 and c.counters["ece_received"] == 2


def test_no_tail_loss_probe_while_sacked_sequences_are_outstanding() -> None:
    # RFC 8985 §7.2: no probe is scheduled while the sender "has segments delivered and
    # SACKed but not yet cumulatively acknowledged"; Linux schedules one only in Open
    # (or CWR), never in Disorder.  The scoreboard alone, with a fake clock.
    rec = Recovery(1000, NewReno(SMSS), Counter(), sack=True)
    for k in range(4):
        rec.on_sent(1000 + k * SMSS, SMSS, RTT)
    assert rec.may_probe()  # open, nothing SACKed: a probe may be armed
    delivered = rec.on_ack(1000, ((1000 + 2 * SMSS, 1000 + 3 * SMSS),), 2 * RTT,
                           srtt=RTT, min_rtt=RTT, duplicate=True, snd_max=1000 + 4 * SMSS)
    assert (delivered, rec.sacked_bytes) == (SMSS, SMSS)
    assert not rec.may_probe()  # SACKed sequences, even before the phase says so
    rec.phase = "disorder"
    assert not rec.may_probe()
    # everything up to the SACKed segment cumulatively acknowledged: open again
    rec.on_ack(1000 + 3 * SMSS, (), 3 * RTT, srtt=RTT, min_rtt=RTT, duplicate=False,
               snd_max=1000 + 4 * SMSS)
    rec.phase = "open"
    assert (rec.sacked_bytes, rec.may_probe()) == (0, True)


def test_disorder_arms_rack_reordering_timer_and_no_probe() -> None:
    # One segment SACKed above the hole: "disorder".  The timer is RACK's reordering
    # timeout (the hole's deadline), and no probe may be scheduled.
    c = sending(4)
    assert c.snapshot(RTT)["recovery"]["timer_mode"] == "tlp"
    send(c, ack(0, sack=(segs(1, 2),)), RTT + 1 * MS)
    snap = c.snapshot(RTT + 1 * MS)
    assert (snap["congestion"]["phase"], snap["recovery"]["timer_mode"]) == ("disorder", "rack")
    assert not c.recovery.may_probe()


def test_resend_span_skips_sacked_records() -> None:
    # Go-back-N after an RTO (RFC 6675 §5.1): from SND.NXT, the next resend starts past
    # SACKed records and stops where the next SACKed record begins.
    rec = Recovery(1000, NewReno(SMSS), Counter(), sack=True)
    for k in range(5):
        rec.on_sent(1000 + k * SMSS, SMSS, RTT)
    rec.on_ack(1000, ((1000 + SMSS, 1000 + 2 * SMSS), (1000 + 3 * SMSS, 1000 + 4 * SMSS)),
               2 * RTT, srtt=RTT, min_rtt=RTT, duplicate=True, snd_max=1000 + 5 * SMSS)
    assert rec.resend_span(1000) == (1000, 1000 + SMSS)  # segment 0, up to SACKed 1
    assert rec.resend_span(1000 + SMSS) == (1000 + 2 * SMSS, 1000 + 3 * SMSS)  # 2
    assert rec.resend_span(1000 + SMSS + 100) == (1000 + 2 * SMSS, 1000 + 3 * SMSS)
    assert rec.resend_span(1000 + 3 * SMSS) == (1000 + 4 * SMSS, None)  # 4, to SND.MAX
    rec.on_rto(3 * RTT, 1000 + 5 * SMSS)
    assert (rec.sacked_bytes, rec.lost_bytes) == (2 * SMSS, 3 * SMSS)  # the RTO kept them
