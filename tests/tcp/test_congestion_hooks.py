"""NewReno through the connection: slow start, fast retransmit on the third duplicate
ACK only (RFC 5681 §3.2), RFC 6582 fast recovery with the recover point, what does and
does not count as a duplicate ACK (RFC 5681 §2), and the loss window after an RTO."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS
from stack.tcp.config import TcpConfig
from tests.tcp.helpers import (
    CONFIG,
    LOCAL_ISS,
    REMOTE_ISS,
    SEND,
    established,
    recv,
    recv_all,
    recv_nothing,
    send,
)

SMSS = 1460
NEWRENO = TcpConfig(**{**CONFIG.__dict__, "cc": "newreno", "snd_buf": 1 << 20})
WIN = 65535
UNA = LOCAL_ISS + 1


def ack(n: int, **kw: object):
    """The peer acknowledging n bytes of our data, with a steady window."""
    kw.setdefault("window", WIN)
    return replace(SEND, ack=UNA + n, **kw)  # type: ignore[arg-type]


def flowing(segments: int):
    """Established under NewReno with `segments` full segments in flight."""
    c = established(NEWRENO)
    send(c, ack(0), 0)  # the peer opens its window
    c.cc.cwnd = segments * SMSS  # as if slow start had got there
    c.send(b"d" * (segments * SMSS + 20 * SMSS), 0)
    out = recv_all(c, 0)
    assert [s.seq for s in out] == [UNA + k * SMSS for k in range(segments)]
    return c


def test_initial_window_then_slow_start() -> None:
    c = established(NEWRENO)
    send(c, ack(0), 0)
    assert c.cc.cwnd == 4380  # RFC 5681 (3): min(4*SMSS, max(2*SMSS, 4380))
    c.send(b"x" * 10 * SMSS, 0)
    assert len(recv_all(c, 0)) == 3
    send(c, ack(SMSS), 10 * MS)
    assert c.cc.cwnd == 4380 + SMSS
    assert len(recv_all(c, 10 * MS)) == 2  # one ACKed, cwnd grew by one: two more


def test_fast_retransmit_on_third_duplicate_ack_only() -> None:
    c = flowing(10)
    # RFC 3042 limited transmit: each of the first two duplicates sends one new
    # segment (an earlier version of this test expected nothing: RFC 3042 says SHOULD).
    send(c, ack(0), 1 * MS)
    seg = recv(c, 1 * MS)
    assert (seg.seq, len(seg.payload)) == (UNA + 10 * SMSS, SMSS)
    send(c, ack(0), 2 * MS)
    seg = recv(c, 2 * MS)
    assert (seg.seq, len(seg.payload)) == (UNA + 11 * SMSS, SMSS)
    assert c.cc.cwnd == 10 * SMSS  # RFC 3042: cwnd is not changed
    send(c, ack(0), 3 * MS)
    seg = recv(c, 3 * MS)
    assert (seg.seq, len(seg.payload)) == (UNA, SMSS)
    snap = c.snapshot(3 * MS)["congestion"]
    assert snap["phase"] == "recovery"
    assert snap["recover"] == UNA + 12 * SMSS
    assert snap["ssthresh"] == 5 * SMSS
    assert snap["cwnd"] == 8 * SMSS  # ssthresh + 3*SMSS
    assert c.counters["dup_acks"] == 3
    assert c.counters["retransmissions"] == 1


def test_fast_recovery_inflates_partial_ack_retransmits_full_ack_exits() -> None:
    c = flowing(10)
    for t in (1, 2, 3):
        send(c, ack(0), t * MS)
    recv(c, 3 * MS)
    # further duplicates inflate cwnd by SMSS each; once cwnd exceeds the flight,
    # new data goes out (RFC 6582 §3.2 step 3)
    for t in (4, 5):
        send(c, ack(0), t * MS)
        assert recv_nothing(c, t * MS)
    send(c, ack(0), 6 * MS)
    assert c.cc.cwnd == 11 * SMSS
    seg = recv(c, 6 * MS)
    assert seg.seq == UNA + 10 * SMSS
    # partial ACK: the next hole is retransmitted at once, recovery continues
    send(c, ack(4 * SMSS), 7 * MS)
    # cwnd deflates by the 4 SMSS acknowledged and adds one back (step 5): 8 SMSS,
    # with 7 in flight: the retransmission plus one new segment
    assert [s.seq for s in recv_all(c, 7 * MS)] == [UNA + 4 * SMSS, UNA + 11 * SMSS]
    assert c.cc.cwnd == 8 * SMSS
    assert c.snapshot(7 * MS)["congestion"]["phase"] == "recovery"
    # the full ACK (covers recover) ends it (step 6, option 1):
    # cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS) = min(5, 2 + 1) SMSS
    send(c, ack(10 * SMSS), 8 * MS)
    snap = c.snapshot(8 * MS)["congestion"]
    assert (snap["phase"], snap["cwnd"], snap["in_flight"]) == ("open", 3 * SMSS, 2 * SMSS)


def test_window_update_is_not_a_duplicate_ack() -> None:
    c = flowing(10)
    for k in range(4):
        send(c, ack(0, window=WIN - 100 * (k + 1)), (k + 1) * MS)
    assert c.counters["dup_acks"] == 0
    assert recv_nothing(c, 5 * MS)


def test_segment_with_data_is_not_a_duplicate_ack() -> None:
    c = flowing(10)
    for k in range(4):
        send(c, ack(0, seq=REMOTE_ISS + 1 + k, payload=b"x"), (k + 1) * MS)
    assert c.counters["dup_acks"] == 0
    assert c.snapshot(5 * MS)["congestion"]["phase"] == "open"


def test_no_duplicate_ack_without_outstanding_data() -> None:
    c = established(NEWRENO)
    for k in range(4):
        send(c, ack(0), k * MS)
    assert c.counters["dup_acks"] == 0


def test_rto_sets_loss_window_and_goes_back_n() -> None:
    c = flowing(10)
    out = recv_all(c, 200 * MS)  # RTO = rto_min after the handshake's zero RTT
    assert [(s.seq, len(s.payload)) for s in out] == [(UNA, SMSS)]  # cwnd = 1 SMSS
    snap = c.snapshot(200 * MS)["congestion"]
    assert (snap["cwnd"], snap["ssthresh"], snap["phase"]) == (SMSS, 5 * SMSS, "loss")
    assert snap["recover"] == UNA + 10 * SMSS
    send(c, ack(SMSS), 210 * MS)
    # slow start from the loss window: two segments, the next ones from SND.UNA on
    assert [s.seq for s in recv_all(c, 210 * MS)] == [UNA + SMSS, UNA + 2 * SMSS]


def test_duplicates_after_rto_below_recover_do_not_trigger_fast_retransmit() -> None:
    c = flowing(10)
    recv_all(c, 200 * MS)
    for t in (1, 2, 3, 4):
        send(c, ack(0), 200 * MS + t)
    assert c.snapshot(201 * MS)["congestion"]["phase"] == "loss"
    assert c.counters["retransmissions"] == 1


def sack_flowing(segments: int, *, rack: bool = True):
    """Like flowing(), with SACK negotiated."""
    from tests.tcp.helpers import connection, syn

    c = connection(TcpConfig(**{**NEWRENO.__dict__, "sack": True, "rack": rack}))
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=WIN), 0)
    recv(c, 0)
    send(c, ack(0), 0)
    assert c.tcb.sack
    c.cc.cwnd = segments * SMSS
    c.send(b"d" * (segments * SMSS + 20 * SMSS), 0)
    assert len(recv_all(c, 0)) == segments
    return c


def seg_range(first: int, last: int) -> tuple[int, int]:
    return (UNA + first * SMSS, UNA + last * SMSS)


def test_sack_recovery_rfc_6675_scoreboard_with_prr() -> None:
    # RFC 6675 with RACK off: a hole is lost once DupThresh segments above it are
    # SACKed (IsLost); PRR (RFC 6937) paces the episode.  This replaces the pre-RFC
    # 6675 test that resent one hole per duplicate ACK and inflated cwnd meanwhile.
    c = sack_flowing(10, rack=False)  # segments 0 and 3 are lost
    # SACKed segments leave the pipe: one new segment each (limited transmit)
    send(c, ack(0, sack=(seg_range(1, 2),)), 1 * MS)
    assert [s.seq for s in recv_all(c, 1 * MS)] == [UNA + 10 * SMSS]
    send(c, ack(0, sack=(seg_range(1, 3),)), 2 * MS)
    assert [s.seq for s in recv_all(c, 2 * MS)] == [UNA + 11 * SMSS]
    assert c.snapshot(2 * MS)["congestion"]["phase"] == "disorder"
    # three SACKed segments above segment 0: lost; segment 3 has one above it: not yet
    send(c, ack(0, sack=(seg_range(4, 5), seg_range(1, 3))), 3 * MS)
    assert [s.seq for s in recv_all(c, 3 * MS)] == [UNA]
    snap = c.snapshot(3 * MS)
    # ssthresh halves the FlightSize without the two limited-transmit segments
    assert (snap["congestion"]["phase"], snap["congestion"]["ssthresh"]) == ("recovery", 5 * SMSS)
    assert snap["congestion"]["recover"] == UNA + 12 * SMSS
    assert (snap["recovery"]["pipe"], snap["recovery"]["prr_out"]) == (9 * SMSS, SMSS)
    send(c, ack(0, sack=(seg_range(4, 6), seg_range(1, 3))), 4 * MS)
    assert recv_nothing(c, 4 * MS)  # PRR: pipe 8 > ssthresh 5: ceil(2 * 5/12) - 1 = 0
    send(c, ack(0, sack=(seg_range(4, 7), seg_range(1, 3))), 5 * MS)
    assert [s.seq for s in recv_all(c, 5 * MS)] == [UNA + 3 * SMSS]  # now IsLost(3)
    assert c.sacked == [(UNA + SMSS, UNA + 3 * SMSS), (UNA + 4 * SMSS, UNA + 7 * SMSS)]
    send(c, ack(3 * SMSS, sack=(seg_range(4, 7),)), 6 * MS)  # partial ACK
    assert recv_nothing(c, 6 * MS)
    assert c.counters["retransmissions"] == 2
    assert c.counters["fast_recoveries"] == 1
    send(c, ack(10 * SMSS), 7 * MS)  # still below the recovery point
    assert [s.seq for s in recv_all(c, 7 * MS)] == [UNA + k * SMSS for k in (12, 13, 14)]
    send(c, ack(12 * SMSS), 8 * MS)  # the recovery point: cwnd = ssthresh (RFC 6937)
    snap = c.snapshot(8 * MS)
    assert (snap["congestion"]["phase"], snap["congestion"]["cwnd"]) == ("open", 5 * SMSS)
    assert c.sacked == []


def test_sack_blocks_outside_the_flight_are_ignored() -> None:
    c = sack_flowing(4)
    send(c, ack(0, sack=((UNA - 100, UNA), (UNA + 4 * SMSS, UNA + 5 * SMSS))), 1 * MS)
    assert c.sacked == []


def test_rto_keeps_the_sack_scoreboard_and_goes_back_n_around_it() -> None:
    # RFC 6675 §5.1 (a sender "SHOULD attempt to fill gaps in the receiver's buffer and
    # avoid retransmitting data the receiver already holds") and Linux's
    # tcp_timeout_mark_lost: what the peer SACKed survives the RTO and is not resent.
    # With RACK off (no reordering timer, no tail loss probe) the RTO is what fires.
    c = sack_flowing(4, rack=False)
    send(c, ack(0, sack=(seg_range(1, 2),)), 1 * MS)
    assert c.sacked == [(UNA + SMSS, UNA + 2 * SMSS)]
    assert [s.seq for s in recv_all(c, 300 * MS)] == [UNA]  # the RTO: cwnd 1, the head
    snap = c.snapshot(300 * MS)
    assert (snap["counters"]["rtos"], snap["congestion"]["phase"]) == (1, "loss")
    assert c.sacked == [(UNA + SMSS, UNA + 2 * SMSS)]
    assert snap["recovery"]["lost_bytes"] == 2 * SMSS  # segments 2 and 3 (0 was resent)
    # the head's ACK: cwnd 2; go-back-N resends 2 and 3, never the SACKed 1
    send(c, ack(SMSS, sack=(seg_range(1, 2),)), 301 * MS)
    out = recv_all(c, 301 * MS)
    assert [(s.seq, len(s.payload)) for s in out] == [
        (UNA + 2 * SMSS, SMSS), (UNA + 3 * SMSS, SMSS)
    ]  # fmt: skip
    assert c.counters["retransmitted_bytes"] == 3 * SMSS


def test_rto_forgets_the_scoreboard_of_a_peer_that_reneged() -> None:
    # A SACK of the first outstanding segment, never cumulatively acknowledged: the
    # receiver may have thrown SACKed data away (RFC 2018 §8; Linux's is_sack_reneg),
    # so the RTO forgets the scoreboard and everything is sent again.
    c = sack_flowing(4, rack=False)
    send(c, ack(0, sack=(seg_range(0, 2),)), 1 * MS)
    assert c.sacked == [(UNA, UNA + 2 * SMSS)]
    assert [s.seq for s in recv_all(c, 300 * MS)] == [UNA]
    assert c.sacked == []
    assert c.snapshot(300 * MS)["recovery"]["lost_bytes"] == 3 * SMSS  # 1, 2 and 3


def test_fast_retransmit_again_for_a_loss_starting_exactly_at_recover() -> None:
    # RFC 6582 §3.2 step 2: "recover" is the highest sequence number sent when
    # recovery began; duplicates whose cumulative ACK covers more than it -- here
    # SND.UNA = recover + 1, the first byte sent after it -- start a new recovery.
    # The first two duplicates of each episode send one new segment each (RFC 3042
    # limited transmit), which ssthresh's FlightSize leaves out (RFC 5681 §3.2 step 2).
    c = flowing(10)
    for t, first in ((1, UNA + 10 * SMSS), (2, UNA + 11 * SMSS), (3, UNA)):
        send(c, ack(0), t * MS)
        assert [s.seq for s in recv_all(c, t * MS)] == [first]
    snap = c.snapshot(3 * MS)["congestion"]
    assert (snap["recover"], snap["ssthresh"]) == (UNA + 12 * SMSS, 5 * SMSS)
    send(c, ack(12 * SMSS), 4 * MS)  # the full ACK: exactly up to recover
    assert c.snapshot(4 * MS)["congestion"]["phase"] == "open"
    out = recv_all(c, 4 * MS)
    assert [s.seq for s in out] == [UNA + 12 * SMSS, UNA + 13 * SMSS]
    # the segment at recover is lost; three duplicates at recover come back
    send(c, ack(12 * SMSS), 5 * MS)
    assert [s.seq for s in recv_all(c, 5 * MS)] == [UNA + 14 * SMSS]
    send(c, ack(12 * SMSS), 6 * MS)
    assert [s.seq for s in recv_all(c, 6 * MS)] == [UNA + 15 * SMSS]
    send(c, ack(12 * SMSS), 7 * MS)
    out = recv_all(c, 7 * MS)
    # the head again, then new data: cwnd = ssthresh (2 SMSS, the floor) + 3 SMSS
    assert [(s.seq, len(s.payload)) for s in out] == [(UNA + k * SMSS, SMSS) for k in (12, 16)]
    snap = c.snapshot(7 * MS)["congestion"]
    assert (snap["phase"], snap["recover"]) == ("recovery", UNA + 16 * SMSS)
    assert (snap["ssthresh"], snap["cwnd"]) == (2 * SMSS, 5 * SMSS)


def test_cwnd_does_not_grow_while_the_peer_window_limits_the_flight() -> None:
    # Linux tcp_is_cwnd_limited (RFC 7661's spirit): ACKs of a flight that did not
    # use the window do not grow cwnd; in slow start cwnd grows to twice the flight.
    c = established(NEWRENO)
    send(c, ack(0, window=2 * SMSS), 0)
    c.send(b"w" * 40 * SMSS, 0)
    for k in range(10):
        t = k * 10 * MS
        assert [len(s.payload) for s in recv_all(c, t)] == [SMSS, SMSS]
        send(c, ack(2 * SMSS * (k + 1), window=2 * SMSS), t + 5 * MS)
        assert c.cc.cwnd == 4 * SMSS  # 4380 + 1460 once, then no more


def test_cwnd_grows_in_congestion_avoidance_only_when_the_window_is_full() -> None:
    c = established(TcpConfig(**{**NEWRENO.__dict__, "cc": "cubic"}))
    send(c, ack(0, window=4 * SMSS), 0)
    c.cc.ssthresh = c.cc.cwnd = 4 * SMSS  # congestion avoidance, window = peer window
    c.send(b"w" * 40 * SMSS, 0)
    assert len(recv_all(c, 0)) == 4
    send(c, ack(4 * SMSS, window=4 * SMSS), 5 * MS)
    grown = c.cc.cwnd
    assert grown > 4 * SMSS  # cwnd-limited: CUBIC grows (RFC 9438 §4.4)
    for k in range(2, 10):
        assert len(recv_all(c, k * 10 * MS)) == 4  # the peer's window limits it now
        send(c, ack(4 * SMSS * k, window=4 * SMSS), k * 10 * MS + 5 * MS)
        assert c.cc.cwnd == grown
