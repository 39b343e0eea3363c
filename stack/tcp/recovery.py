"""Loss recovery of one connection's sender: the record of sent segments, the RFC 6675
scoreboard, loss detection (DupThresh, RACK RFC 8985, TLP, RTO) and recovery episodes
with PRR (RFC 6937) and D-SACK undo (RFC 2883). Imports tcp.clock, tcp.seq, congestion.

Design (after aioquic's recovery.py and Linux's retransmit queue)
-----------------------------------------------------------------
- `SentSegment` is one entry of the retransmit queue: a sequence range [start, end),
  when it was last sent, how often, and whether the peer SACKed it or we consider it
  lost.  One record may cover a super-segment of several MSS (TSO); records are split
  where a SACK block or a cumulative ACK ends inside one, or where a retransmission
  covers only part of it.  The records are contiguous from SND.UNA to SND.MAX; they
  hold sequence numbers unwrapped (a Python int that never wraps), so comparisons
  are plain `<`.  The FIN is the last byte of the last record (`fin`).
- The scoreboard is the records' flags: `sacked_bytes`, `lost_bytes` and the
  outstanding total give RFC 6675's pipe = outstanding - sacked - lost (a lost record
  that was retransmitted is no longer lost: it counts once, as RFC 6675's pipe does).
- Loss detection marks records lost: RACK (RFC 8985 §6, on by default as in Linux)
  by time — a record sent a reordering window earlier than one already delivered —
  or, with RACK off, RFC 6675 IsLost (DupThresh SACKed segments, or more than
  (DupThresh - 1) * SMSS SACKed bytes above it).  Without SACK (or with RACK
  off) the third duplicate ACK marks the head lost (RFC 5681 §3.2, RFC 6675 §5 (a));
  with RACK on, RACK alone decides (its window is 0 until reordering is seen, §6.2),
  and NextSeg's rules (3) and (4) are left to it and to the probe.  RACK's
  reordering timer, the tail loss probe (RFC 8985 §7) and the RTO share the
  connection's "retransmission" timer, as Linux's ICSK_TIME_RETRANS / LOSS_PROBE /
  REO_TIMEOUT share one: `timer_mode`.
- A recovery episode starts when a record is marked lost: ssthresh comes from the
  congestion controller (`on_congestion_event`), and PRR (RFC 6937) paces what may
  be sent on each ACK until SND.UNA reaches the recovery point, then cwnd = ssthresh.
  What to send is RFC 6675 NextSeg: (1) the first lost record, (2) new data, (3) an
  unSACKed record below the highest SACKed byte, (4) one rescue retransmission.
  Without SACK the episode is NewReno's (RFC 6582: partial ACKs resend the head).
- Undo (RFC 2883 §5, Linux tcp_try_undo_dsack): every retransmission of an episode
  is counted; a D-SACK for one says it was spurious.  When all of them were, the
  reduction is undone (cwnd and ssthresh as before the episode).
- Phases: "open", "disorder" (SACKs or duplicate ACKs, nothing lost yet),
  "recovery" (fast recovery), "loss" (after an RTO), as Linux's CA states.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from stack.tcp.clock import MS, SECOND
from stack.tcp.congestion import CongestionControl
from stack.tcp.seq import seq_add, seq_diff

DUP_THRESH = 3  # RFC 5681 §3.2, RFC 6675 §2 DupThresh
TLP_SLACK = 2 * MS  # Linux TCP_TIMEOUT_MIN_US: added to 2*SRTT when more than one
# segment is out (Linux dropped its 10 ms floor in 4.13; RFC 8985 §7.2 has none)
TLP_DELACK = 200 * MS  # RFC 8985 §7.2 WCDelAckT (Linux adds TCP_RTO_MIN, 200 ms)
TLP_NO_RTT = 1 * SECOND  # RFC 8985 §7.2: PTO without an RTT sample
REO_WND_PERSIST = 16  # RFC 8985 §6.2 step 4: recoveries a widened window is kept
REO_WND_MULT_MAX = 255  # Linux caps the multiplier at 255


# -- RFC 6582's window during NewReno fast recovery (no SACK) ---------------------------


def reno_enter(cc: CongestionControl, now: int, in_flight: int) -> None:
    """RFC 6582 §3.2 step 2: ssthresh from the controller, cwnd = ssthresh + 3*SMSS
    ("inflated" by the three segments that left the network)."""
    cc.on_congestion_event(now, in_flight)
    if cc.limits:
        cc.cwnd = cc.ssthresh + 3 * cc.mss


def reno_inflate(cc: CongestionControl) -> None:
    """RFC 6582 §3.2 step 3: each further duplicate ACK inflates cwnd by SMSS."""
    if cc.limits:
        cc.cwnd += cc.mss


def reno_partial_ack(cc: CongestionControl, now: int, acked: int) -> None:
    """RFC 6582 §3.2 step 5: deflate by the newly acknowledged data and add back SMSS
    if at least SMSS was acknowledged, so about ssthresh stays in flight."""
    if not cc.limits:
        return
    cwnd = cc.cwnd - max(acked, 0)
    if acked >= cc.mss:
        cwnd += cc.mss
    cc.cwnd = max(cwnd, cc.mss)
    cc.on_cwnd_set(now)


def reno_exit(cc: CongestionControl, now: int, in_flight: int) -> None:
    """RFC 6582 §3.2 step 6, option (1): cwnd = min(ssthresh, max(FlightSize, SMSS) +
    SMSS), which avoids a burst when little is in flight."""
    if cc.limits:
        cc.cwnd = min(cc.ssthresh, max(in_flight, cc.mss) + cc.mss)
        cc.on_cwnd_set(now)


@dataclass(slots=True)
class SentSegment:
    """One retransmit-queue entry (unwrapped sequence numbers)."""

    start: int
    end: int
    sent_at: int  # ns of the last transmission (RACK.xmit_ts of this segment)
    xmits: int = 1  # transmissions so far; > 1 means retransmitted
    sacked: bool = False
    lost: bool = False
    fin: bool = False
    delivered: int = 0  # bytes delivered (acked or SACKed) on the connection when sent

    def split(self, at: int) -> SentSegment:
        """Cut at `at` (start < at < end): self keeps [start, at), returns [at, end)."""
        tail = SentSegment(
            at, self.end, self.sent_at, self.xmits, self.sacked, self.lost, self.fin,
            self.delivered,
        )  # fmt: skip
        self.end = at
        self.fin = False
        return tail


_END = attrgetter("end")  # the bisect key of the queue, ordered and non-overlapping


class Recovery:
    """The sender's retransmit queue, scoreboard, loss detection and recovery episodes.

    The connection calls `on_sent` for every data segment it sends (new or again),
    `on_ack` for every acceptable ACK, `on_rto` when the timer in RTO mode fires,
    `on_reorder_timeout` / `on_probe_timeout` for the other modes, and asks
    `next_retransmit`, `room`, `timer` what to do next.  It never builds a segment.
    """

    __slots__ = ("_n", "_recover_u", "ack_rtt", "cc", "delivered", "dup_acks", "high_rxt",
                 "high_sacked", "limited_bytes", "lost_bytes", "outstanding", "partial_acks",
                 "phase", "prr_delivered", "prr_out", "rack_enabled", "rack_end", "rack_fack",
                 "rack_min_rtt", "rack_rtt", "rack_xmit_ts", "recover", "recover_fs",
                 "reo_deadline", "reo_wnd_mult", "reo_wnd_persist", "reordering_seen",
                 "rescue_rxt", "retries", "sack", "sacked_bytes", "segs", "sndcnt",
                 "timer_mode", "tlp_dsacked", "tlp_end", "tlp_is_retrans", "una", "una_seq",
                 "undo_cwnd", "undo_retrans", "undo_ssthresh")  # fmt: skip

    def __init__(self, iss: int, cc: CongestionControl, counters: dict[str, int], *,
                 sack: bool = False, rack: bool = True) -> None:  # fmt: skip
        self.cc = cc
        self._n = counters
        self.sack = sack  # SACK negotiated (set by the connection after the handshake)
        self.rack_enabled = rack
        self.segs: list[SentSegment] = []
        self.una = iss  # SND.UNA, unwrapped
        self.una_seq = iss  # SND.UNA as sent on the wire
        self.sacked_bytes = 0
        self.lost_bytes = 0
        self.outstanding = 0  # bytes in the records (SND.MAX - SND.UNA, data and FIN)
        self.delivered = 0  # bytes acked or SACKed over the connection's life
        self.phase = "open"
        self.recover = iss  # RFC 6582/6675 RecoveryPoint (wire sequence number)
        self._recover_u = iss  # the same, unwrapped
        self.dup_acks = 0
        self.limited_bytes = 0  # new data sent beyond cwnd in "disorder" (RFC 3042)
        self.retries = 0  # consecutive RTOs without progress (RFC 9293 R2)
        self.high_sacked: int | None = None  # unwrapped end of the highest SACKed byte
        self.high_rxt: int | None = None  # RFC 6675 HighRxt (unwrapped), per episode
        self.rescue_rxt: int | None = None  # RFC 6675 RescueRxt (unwrapped)
        self.partial_acks = 0
        # PRR (RFC 6937)
        self.prr_delivered = 0
        self.prr_out = 0
        self.recover_fs = 0
        self.sndcnt = 0  # bytes PRR allows out now
        # RACK (RFC 8985 §6)
        self.rack_xmit_ts: int | None = None
        self.rack_end = 0
        self.rack_rtt: int | None = None
        self.rack_min_rtt: int | None = None  # smallest RACK RTT (SACKed segments too)
        self.ack_rtt: int | None = None  # this ACK's RTT sample (newest delivered, sent once)
        self.rack_fack = iss  # highest end delivered (unwrapped)
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.reo_deadline: int | None = None  # RACK reordering timer
        # TLP (RFC 8985 §7)
        self.tlp_end: int | None = None  # SND.MAX (wire) when the probe went out
        self.tlp_is_retrans = False
        self.tlp_dsacked = False
        # Undo (RFC 2883, Linux undo_marker / undo_retrans)
        self.undo_retrans = 0
        self.undo_cwnd: int | None = None
        self.undo_ssthresh: int | None = None
        self.timer_mode = "rto"  # what the retransmission timer is armed for

    # ------------------------------------------------------------------ helpers

    def u(self, seq: int) -> int:
        """A wire sequence number, unwrapped relative to SND.UNA."""
        return self.una + seq_diff(seq, self.una_seq)

    def wire(self, useq: int) -> int:
        return seq_add(self.una_seq, useq - self.una)

    @property
    def pipe(self) -> int:
        """RFC 6675 §4 pipe: bytes believed in the network."""
        return self.outstanding - self.sacked_bytes - self.lost_bytes

    @property
    def in_recovery(self) -> bool:
        return self.phase == "recovery"

    def _index(self, useq: int) -> int:
        """Index of the record holding useq, splitting one so that a record starts
        there; len(segs) when useq is at or past the end."""
        segs = self.segs
        lo = bisect_right(segs, useq, key=_END)  # the first record ending past useq
        if lo < len(segs) and segs[lo].start < useq:
            segs.insert(lo + 1, segs[lo].split(useq))
            lo += 1
        return lo

    # ------------------------------------------------------------------ sending

    def on_sent(self, seq: int, length: int, now: int, *, fin: bool = False) -> bool:
        """A data segment (and/or FIN) of `length` sequence numbers starting at `seq`
        left at `now`.  Returns True when it (re)sent sequence space already recorded."""
        if length <= 0:
            return False
        start = self.u(seq)
        end = start + length
        segs = self.segs
        top = segs[-1].end if segs else self.una
        retransmit = start < top
        if retransmit:
            i = self._index(start)
            j = self._index(min(end, top))
            for rec in segs[i:j]:
                if rec.lost:
                    rec.lost = False
                    self.lost_bytes -= rec.end - rec.start
                rec.xmits += 1
                rec.sent_at = now
            self.undo_retrans += 1
            if self.high_rxt is None or min(end, top) > self.high_rxt:
                self.high_rxt = min(end, top)
            if self.phase == "recovery":
                self.prr_out += min(end, top) - start
                self.sndcnt -= min(end, top) - start
        if end > top:
            new_start = max(start, top)
            segs.append(SentSegment(new_start, end, now, fin=fin, delivered=self.delivered))
            self.outstanding += end - new_start
            if self.phase == "disorder":
                # RFC 3042 §2 / RFC 5681 §3.2 step 2: only what went out beyond cwnd
                # (the duplicate ACKs' allowance) stays out of the FlightSize that
                # ssthresh halves; new data within cwnd - pipe (a SACK shrank the
                # pipe) is ordinary flight.
                over = self.outstanding - self.cc.cwnd
                if over > self.limited_bytes:
                    self.limited_bytes = min(self.limited_bytes + end - new_start, over)
            if self.phase == "recovery":
                self.prr_out += end - new_start
                self.sndcnt -= end - new_start
        return retransmit

    def room(self, cwnd: int, mss: int) -> int:
        """Bytes congestion control lets out now: PRR's sndcnt in fast recovery, else
        cwnd - pipe (RFC 6675), with RFC 3042 limited transmit for the first two
        duplicate ACKs without SACK (with SACK the SACKed bytes leave the pipe)."""
        if self.phase == "recovery" and self.sack:
            return self.sndcnt
        room = cwnd - self.pipe
        if not self.sack and self.phase in ("open", "disorder") and 0 < self.dup_acks < 3:
            room += self.dup_acks * mss  # RFC 3042: FlightSize up to cwnd + 2*SMSS
        return room

    def next_retransmit(self, mss: int, *, new_data: bool) -> tuple[int, int] | None:
        """RFC 6675 §4 NextSeg for a retransmission, as a wire (start, end) range of at
        most `mss`: rule (1) the first lost record; if `new_data` is False (none can
        go out), rule (3) the first unSACKed record above HighRxt below the highest
        SACKed byte, then rule (4) one rescue retransmission per episode."""
        for rec in self.segs:
            if rec.lost and not rec.sacked:
                return self.wire(rec.start), self.wire(min(rec.end, rec.start + mss))
        if new_data or not self.sack or self.phase != "recovery" or self.rack_enabled:
            # With RACK only what it marked lost is resent (as Linux): a segment it
            # waits on is probably reordered, and the tail loss probe does rule (4)'s
            # job (RFC 8985 §7).
            return None
        high = self.high_sacked
        if high is not None:
            floor = self.high_rxt if self.high_rxt is not None else self.una
            for rec in self.segs:
                if rec.start >= high:
                    break
                if not rec.sacked and rec.end > floor and rec.xmits == 1:
                    start = max(rec.start, floor)
                    return self.wire(start), self.wire(min(rec.end, start + mss))
        if self.rescue_rxt is None and self.segs and not self.segs[-1].sacked:
            # Rule (4): the last segment, once, so a lost tail does not wait an RTO.
            last = self.segs[-1]
            self.rescue_rxt = self._recover_u
            start = max(last.start, last.end - mss)
            return self.wire(start), self.wire(last.end)
        return None

    # ------------------------------------------------------------------ ACKs

    def on_ack(
        self,
        ack: int,
        blocks: tuple[tuple[int, int], ...],
        now: int,
        *,
        srtt: int | None,
        min_rtt: int | None,
        duplicate: bool,
        snd_max: int,
    ) -> int:
        """Process an acceptable ACK (`ack` at or above SND.UNA, its SACK blocks).
        `duplicate` is RFC 5681's duplicate ACK.  Returns DeliveredData (RFC 6937:
        newly acknowledged plus newly SACKed bytes)."""
        uack = self.u(ack)
        delivered = 0
        newest: SentSegment | None = None
        dsack = False
        if blocks:
            first = blocks[0]
            lo, hi = self.u(first[0]), self.u(first[1])
            if hi <= uack or (
                len(blocks) > 1 and self.u(blocks[1][0]) <= lo and hi <= self.u(blocks[1][1])
            ):
                self._on_dsack(lo, hi)
                dsack = True
                blocks = blocks[1:]
        if uack > self.una:
            segs = self.segs
            i = self._index(uack) if uack < (segs[-1].end if segs else uack) else len(segs)
            for rec in segs[:i]:
                size = rec.end - rec.start
                if rec.sacked:
                    self.sacked_bytes -= size
                else:
                    delivered += size
                    newest = self._rack_candidate(newest, rec, now, min_rtt)
                if rec.lost:
                    self.lost_bytes -= size
                self.outstanding -= size
            del segs[:i]
            self.una = uack
            self.una_seq = ack
            self.retries = 0
            if self.rack_fack < uack:
                self.rack_fack = uack
        top = self.segs[-1].end if self.segs else self.una
        for left, right in blocks:
            lo, hi = max(self.u(left), self.una), min(self.u(right), top)
            if lo >= hi:
                continue  # outside (SND.UNA, SND.MAX]: ignored (RFC 2018 §4)
            i = self._index(lo)
            j = self._index(hi)
            for rec in self.segs[i:j]:
                if rec.sacked:
                    continue
                size = rec.end - rec.start
                rec.sacked = True
                self.sacked_bytes += size
                delivered += size
                if rec.lost:
                    rec.lost = False
                    self.lost_bytes -= size
                if rec.end <= self.rack_fack and rec.xmits == 1:
                    self.reordering_seen = True  # RFC 8985 §6.2 step 2
                newest = self._rack_candidate(newest, rec, now, min_rtt)
            if self.high_sacked is None or hi > self.high_sacked:
                self.high_sacked = hi
            if hi > self.rack_fack:
                self.rack_fack = hi
        if self.high_sacked is not None and self.high_sacked <= self.una:
            self.high_sacked = None
        self.delivered += delivered
        self.ack_rtt = None
        if newest is not None:
            if newest.xmits == 1:
                self.ack_rtt = now - newest.sent_at  # Karn-valid: sent once
            self.rack_rtt = now - newest.sent_at
            if newest.xmits == 1 and (
                self.rack_min_rtt is None or self.rack_rtt < self.rack_min_rtt
            ):
                self.rack_min_rtt = self.rack_rtt
            self.rack_xmit_ts = newest.sent_at
            self.rack_end = newest.end
        if duplicate and not (dsack and not delivered):
            # RFC 6675 §2: a duplicate carries new SACK information (or, without
            # SACK, is RFC 5681's); one that only D-SACKs a duplicate says nothing lost.
            self.dup_acks += 1
            self._n["dup_acks"] += 1
        if self.tlp_end is not None and (not self.segs or self.una >= self.u(self.tlp_end)):
            self._end_tlp_episode(now)
        return delivered

    def _rack_candidate(
        self, best: SentSegment | None, rec: SentSegment, now: int, min_rtt: int | None
    ) -> SentSegment | None:
        """RFC 8985 §6.2 step 1: the most recently sent of the delivered segments,
        skipping a retransmitted one whose ACK may be for the original."""
        if rec.xmits > 1 and min_rtt is not None and now - rec.sent_at < min_rtt:
            return best
        newer = (
            best is None
            or rec.sent_at > best.sent_at
            or (rec.sent_at == best.sent_at and rec.end > best.end)
        )
        if newer and (self.rack_xmit_ts is None or rec.sent_at >= self.rack_xmit_ts):
            return rec
        return best

    def _on_dsack(self, lo: int, hi: int) -> None:
        """A D-SACK (RFC 2883): something was received twice.  Counted; it widens
        RACK's reordering window (RFC 8985 §6.2 step 4), and when every retransmission
        of the episode proved spurious the reduction is undone."""
        self._n["dsacks_received"] += 1
        # A duplicate arrived: a retransmission was spurious, the network reorders
        # (Linux counts D-SACKs as reordering too).
        self.reordering_seen = True
        if self.reo_wnd_mult < REO_WND_MULT_MAX:
            self.reo_wnd_mult += 1
        self.reo_wnd_persist = REO_WND_PERSIST
        if self.tlp_end is not None and self.tlp_is_retrans:
            self.tlp_dsacked = True
        if self.undo_cwnd is None or self.undo_retrans <= 0:
            return
        self.undo_retrans -= 1
        if self.undo_retrans == 0:
            self._undo()

    def _undo(self) -> None:
        """Linux tcp_undo_cwnd_reduction: the episode's retransmissions were all
        spurious, so was the reduction."""
        assert self.undo_cwnd is not None and self.undo_ssthresh is not None
        self.cc.undo(self.undo_cwnd, self.undo_ssthresh)
        self._n["undos"] += 1
        self.undo_cwnd = self.undo_ssthresh = None
        self.dup_acks = 0
        if self.phase in ("recovery", "loss"):
            self.phase = "disorder" if self.sacked_bytes else "open"

    def _end_tlp_episode(self, now: int) -> None:
        """RFC 8985 §7.4: the probe's episode ends.  If the probe was a retransmission
        that repaired a loss (no D-SACK says the original arrived), respond to that
        loss as fast recovery would (§7.4.2)."""
        if self.tlp_is_retrans and not self.tlp_dsacked and self.phase in ("open", "disorder"):
            self.cc.on_congestion_event(now, self.outstanding)
            if self.cc.limits:
                self.cc.cwnd = max(self.cc.ssthresh, self.cc.mss)
            self._n["tlp_recoveries"] += 1
        self.tlp_end = None
        self.tlp_is_retrans = False
        self.tlp_dsacked = False

    # ------------------------------------------------------------------ loss detection

    def reo_wnd(self, srtt: int | None, min_rtt: int | None) -> int:
        """RFC 8985 §6.2 step 4."""
        if not self.reordering_seen and (
            self.phase in ("recovery", "loss") or self._sacked_segments() >= DUP_THRESH
        ):
            return 0
        if self.rack_min_rtt is not None and (min_rtt is None or self.rack_min_rtt < min_rtt):
            min_rtt = self.rack_min_rtt
        if min_rtt is None:
            return 0
        wnd = (min_rtt // 4) * self.reo_wnd_mult
        return min(wnd, srtt) if srtt is not None else wnd

    def _sacked_segments(self) -> int:
        return sum(1 for rec in self.segs if rec.sacked)

    def detect_loss(self, now: int, mss: int, srtt: int | None, min_rtt: int | None) -> int:
        """Mark what is lost now (RACK, or RFC 6675 IsLost with RACK off); arms the
        reordering timer.  Returns the bytes newly marked lost."""
        marked = 0
        self.reo_deadline = None
        if not self.sack:
            return 0
        if self.rack_enabled:
            xmit_ts = self.rack_xmit_ts
            rack_rtt = self.rack_rtt
            if xmit_ts is None or rack_rtt is None:
                return 0
            reo = self.reo_wnd(srtt, min_rtt)
            wait = 0
            for rec in self.segs:
                if rec.sacked or rec.lost:
                    continue
                if rec.sent_at > xmit_ts or (rec.sent_at == xmit_ts and rec.end >= self.rack_end):
                    continue  # not sent before the RACK segment
                remaining = rec.sent_at + rack_rtt + reo - now
                if remaining <= 0:
                    rec.lost = True
                    self.lost_bytes += rec.end - rec.start
                    marked += rec.end - rec.start
                else:
                    wait = max(wait, remaining)
            if wait:
                self.reo_deadline = now + wait
        else:
            # RFC 6675 §4 IsLost, from the top down: sacked segments and bytes above.
            above_segs = 0
            above_bytes = 0
            for rec in reversed(self.segs):
                if rec.sacked:
                    above_segs += 1
                    above_bytes += rec.end - rec.start
                    continue
                if rec.lost or rec.xmits > 1:
                    continue
                if above_segs >= DUP_THRESH or above_bytes > (DUP_THRESH - 1) * mss:
                    rec.lost = True
                    self.lost_bytes += rec.end - rec.start
                    marked += rec.end - rec.start
        if marked:
            self._n["lost_marked_bytes"] += marked
        return marked

    def mark_head_lost(self) -> None:
        """Without SACK the third duplicate ACK says the first record is lost."""
        if self.segs and not self.segs[0].lost and not self.segs[0].sacked:
            rec = self.segs[0]
            rec.lost = True
            self.lost_bytes += rec.end - rec.start

    def mark_all_lost(self, *, keep_sacked: bool = False) -> None:
        """Everything outstanding is to be sent again (RTO, or a smaller path MTU).
        SACK information is dropped too (RFC 2018 §8: the receiver may renege) unless
        `keep_sacked`: then what the peer SACKed stays SACKed, not lost."""
        if keep_sacked:
            for rec in self.segs:
                rec.lost = not rec.sacked
            self.lost_bytes = self.outstanding - self.sacked_bytes
            return
        for rec in self.segs:
            rec.sacked = False
            rec.lost = True
        self.sacked_bytes = 0
        self.lost_bytes = self.outstanding
        self.high_sacked = None

    def resend_span(self, seq: int) -> tuple[int, int | None]:
        """Go-back-N after an RTO skips what the peer holds (RFC 6675 §5.1: "avoid
        retransmitting data the receiver already holds"; Linux's retransmit queue skips
        SACKed skbs): from wire `seq`, where the next resend starts (past any SACKed
        records) and where the unSACKed run there ends (None: at SND.MAX)."""
        segs = self.segs
        useq = self.u(seq)
        lo = bisect_right(segs, useq, key=_END)
        while lo < len(segs) and segs[lo].sacked:
            useq = max(useq, segs[lo].end)
            lo += 1
        stop = lo
        while stop < len(segs) and not segs[stop].sacked:
            stop += 1
        end = self.wire(segs[stop].start) if stop < len(segs) else None
        return self.wire(useq), end

    # ------------------------------------------------------------------ episodes

    def enter_recovery(self, now: int, snd_max: int, *, reno: bool = False) -> None:
        """Start fast recovery (RFC 6675 §5 / RFC 6582 §3.2 step 2): RecoveryPoint =
        HighData, ssthresh from the controller, PRR's state (RFC 6937).  `reno`: the
        caller applies RFC 6582's window (reno_enter) instead of PRR."""
        # RFC 5681 §3.2 step 2: data sent by limited transmit is not part of the
        # FlightSize that ssthresh halves (RFC 3042 §2).
        flight = max(self.outstanding - self.limited_bytes, 0)
        self.limited_bytes = 0
        self.undo_cwnd = self.cc.cwnd
        self.undo_ssthresh = self.cc.ssthresh
        self.undo_retrans = 0
        if not reno:
            self.cc.on_congestion_event(now, flight)
        self.recover = snd_max
        self._recover_u = self.u(snd_max)
        self.phase = "recovery"
        self.partial_acks = 0
        self.high_rxt = None
        self.rescue_rxt = None
        self.prr_delivered = 0
        self.prr_out = 0
        self.recover_fs = max(self.outstanding, 1)  # RFC 6937: snd.nxt - snd.una
        self.sndcnt = 0
        self._n["fast_recoveries"] += 1
        if self.reo_wnd_persist > 0:
            self.reo_wnd_persist -= 1
            if self.reo_wnd_persist == 0:
                self.reo_wnd_mult = 1

    def prr_update(self, now: int, delivered: int, mss: int) -> None:
        """RFC 6937 §3 on each ACK in recovery: how much may go out (sndcnt)."""
        self.prr_delivered += delivered
        pipe = self.pipe
        ssthresh = self.cc.ssthresh
        if pipe > ssthresh:
            # Proportional rate reduction.
            sndcnt = -(-self.prr_delivered * ssthresh // self.recover_fs) - self.prr_out
        else:
            # Slow start reduction bound (PRR-SSRB).
            limit = max(self.prr_delivered - self.prr_out, delivered) + mss
            sndcnt = min(ssthresh - pipe, limit)
        sndcnt = max(sndcnt, 0)
        if self.prr_out == 0 and sndcnt < mss:
            sndcnt = mss  # the fast retransmit goes out whatever PRR computed
        self.sndcnt = sndcnt
        if self.cc.limits:
            self.cc.cwnd = max(pipe + sndcnt, mss)
            self.cc.on_cwnd_set(now)

    def exit_recovery(self, now: int) -> None:
        """RFC 6937 §3: on leaving recovery cwnd = ssthresh (RFC 6675 §5 step (4))."""
        if self.sack and self.cc.limits:
            self.cc.cwnd = max(self.cc.ssthresh, self.cc.mss)
            self.cc.on_cwnd_set(now)
        self.phase = "disorder" if self.sacked_bytes else "open"
        self.dup_acks = 0
        self.high_rxt = None

    def on_rto(self, now: int, snd_max: int) -> None:
        """RFC 6298 (5.4)-(5.6), RFC 5681 §3.1, RFC 6582 §3.2 step 4: the loss phase."""
        self.retries += 1
        if self.phase not in ("recovery", "loss"):
            self.undo_cwnd = self.cc.cwnd
            self.undo_ssthresh = self.cc.ssthresh
            self.undo_retrans = 0
        self.cc.on_rto(now, self.outstanding)
        self.recover = snd_max
        self._recover_u = self.u(snd_max)
        self.phase = "loss"
        self.dup_acks = 0
        self.partial_acks = 0
        self.high_rxt = None
        self.rescue_rxt = None
        self.tlp_end = None
        self.tlp_is_retrans = False
        # RFC 6675 §5.1 and Linux (tcp_timeout_mark_lost): the scoreboard outlives the
        # RTO, so go-back-N resends only what the peer does not hold -- unless the
        # first outstanding segment is SACKed: the receiver reneged (RFC 2018 §8), and
        # everything is sent again.
        reneged = bool(self.segs) and self.segs[0].sacked
        self.mark_all_lost(keep_sacked=not reneged)
        self._n["rtos"] += 1

    def recovered(self, ack: int) -> bool:
        """SND.UNA reached the recovery point."""
        return self.u(ack) >= self._recover_u

    def drag_recover(self, ack: int) -> None:
        """Outside recovery "recover" follows SND.UNA: left behind it would fall 2**31
        back after 2 GiB and the mod 2**32 test refuse fast retransmit."""
        self.recover = ack
        self._recover_u = self.u(ack)

    # ------------------------------------------------------------------ TLP

    def pto(self, srtt: int | None, rto: int, mss: int) -> int:
        """RFC 8985 §7.2 probe timeout: 2 * SRTT, plus WCDelAckT when FlightSize is one
        segment (the receiver may hold its ACK for a lone segment), else plus Linux's
        2 ms of slack; never later than the RTO.  One record may be a TSO
        super-segment of many wire segments, each ACKed as usual: it is one segment
        only if it holds at most `mss` (Linux counts packets_out in MSS)."""
        if srtt is None:
            pto = TLP_NO_RTT
        elif len(self.segs) == 1 and self.segs[0].end - self.segs[0].start <= mss:
            pto = 2 * srtt + TLP_DELACK
        else:
            pto = 2 * srtt + TLP_SLACK
        return min(pto, rto)

    def may_probe(self) -> bool:
        """RFC 8985 §7.2: a probe may be scheduled only in the open phase, with no
        SACKed sequences outstanding ("unless it is already in fast recovery, RTO
        recovery, or the sender has segments delivered and SACKed but not yet
        cumulatively acknowledged"; Linux tcp_schedule_loss_probe: Open or CWR
        only), SACK negotiated and no probe out.  In "disorder" a hole lies below a
        SACKed segment: RACK's reordering timer or its marking, not a probe,
        answers it."""
        return (
            self.rack_enabled
            and self.sack
            and self.phase == "open"
            and not self.sacked_bytes
            and self.tlp_end is None
            and bool(self.segs)
        )

    def on_probe_sent(self, snd_max: int, retransmit: bool) -> None:
        self.tlp_end = snd_max
        self.tlp_is_retrans = retransmit
        self.tlp_dsacked = False
        self._n["tlp_probes"] += 1

    # ------------------------------------------------------------------ inspect

    def sacked_ranges(self) -> list[tuple[int, int]]:
        """The scoreboard as wire [left, right) ranges the peer holds above SND.UNA."""
        out: list[tuple[int, int]] = []
        for rec in self.segs:
            if not rec.sacked:
                continue
            if out and self.u(out[-1][1]) == rec.start:
                out[-1] = (out[-1][0], self.wire(rec.end))
            else:
                out.append((self.wire(rec.start), self.wire(rec.end)))
        return out

    def snapshot(self) -> dict[str, Any]:
        """Plain data for `inspect` (docs/internals.md)."""

        def w(x: int | None) -> int | None:
            return None if x is None else self.wire(x)

        return {
            "sacked": [list(r) for r in self.sacked_ranges()],
            "segments": len(self.segs),
            "sacked_bytes": self.sacked_bytes,
            "lost_bytes": self.lost_bytes,
            "pipe": self.pipe,
            "retries": self.retries,
            "high_rxt": w(self.high_rxt),
            "rescue_rxt": w(self.rescue_rxt),
            "prr_delivered": self.prr_delivered,
            "prr_out": self.prr_out,
            "recover_fs": self.recover_fs,
            "rack": self.rack_enabled,
            "rack_rtt": self.rack_rtt,
            "rack_xmit_ts": self.rack_xmit_ts,
            "reo_wnd_mult": self.reo_wnd_mult,
            "reordering_seen": self.reordering_seen,
            "tlp_end": self.tlp_end,
            "undo_retrans": self.undo_retrans if self.undo_cwnd is not None else None,
            "timer_mode": self.timer_mode,
        }
