"""The sending half of a Connection: segmentation, the SYN, retransmission of the head,
the advertised window, options and SACK blocks on every segment we build.
Imports tcp (clock, config, congestion, buffers, rtt, seq, state, tcb, timers), stack.wire
and stack.trace.

`Sender` is Connection's base class and shares its state (the attributes declared
below, set up by Connection.__init__); it never changes the connection's state, only
SND.NXT/SND.MAX, the send-side timers and the counters.  It exists because what to
put on the wire and when (RFC 9293 3.7.4, 3.8.6, RFC 6298, RFC 7323, RFC 2018) changes
for different reasons than the §3.10 state machine in connection.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from stack.tcp.clock import MS
from stack.tcp.config import TcpConfig
from stack.tcp.congestion import CongestionControl
from stack.tcp.cwv import CwndValidation
from stack.tcp.reassembly import RecvBuffer
from stack.tcp.recovery import Recovery
from stack.tcp.rtt import RttEstimator
from stack.tcp.sendbuf import SendBuffer
from stack.tcp.seq import MASK, seq_add, seq_diff, seq_ge, seq_gt, seq_lt
from stack.tcp.state import State
from stack.tcp.tcb import Tcb
from stack.tcp.timers import TimerSet
from stack.trace import TIMER, TraceEvent, Tracer
from stack.wire.frozen import fast_init
from stack.wire.tcp import Flags, TcpSegment

Endpoint = tuple[IPv4Address, int]  # docs/internals.md; IPv6 later, same shape

ACK = int(Flags.ACK)
SYN = int(Flags.SYN)
FIN = int(Flags.FIN)
RST = int(Flags.RST)
PSH = int(Flags.PSH)
ECE = int(Flags.ECE)
CWR = int(Flags.CWR)
ECT0 = 0b10  # RFC 3168 §5: the ECT(0) codepoint of the IP ECN field
CE = 0b11  # RFC 3168 §5: Congestion Experienced


@fast_init
@dataclass(frozen=True, slots=True, repr=False)
class EctSegment(TcpSegment):
    """A segment whose IP packet carries ECT(0) (RFC 3168 §6.1.1): new data on an ECN
    connection.  The host sets the IP ECN field from the type; the TCP bytes are the
    same as a TcpSegment's."""


MAX_WINDOW_FIELD = 0xFFFF
MAX_SACKED_RANGES = 32  # scoreboard entries kept; more only costs memory an attacker chooses
# States in which queued data and the FIN are (re)transmitted.
SENDING = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)
# States in which arriving text is accepted (RFC 9293 §3.10.7.4 seventh).
RECEIVING = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})


class Sender:
    """What goes on the wire, and when; Connection inherits it (see the module docstring)."""

    # The fields this class assigns; Connection's __slots__ hold the rest.
    __slots__ = ("_ack_now", "_ack_own", "_cwnd_limited", "_cwnd_usage_seq", "_force",
                 "_max_flight", "_syn_new", "_syn_pending", "_unacked_rx", "cwr_pending",
                 "dsack", "sack_order")  # fmt: skip
    id: int
    local: Endpoint
    remote: Endpoint
    config: TcpConfig
    tcb: Tcb
    timers: TimerSet
    rtt: RttEstimator
    cc: CongestionControl
    sendbuf: SendBuffer
    recvbuf: RecvBuffer
    _tracer: Tracer | None
    _name: str
    _n: dict[str, int]
    _out: list[TcpSegment]
    _wscale_offer: int | None
    _peer_wscale: bool
    _buf_seq: int
    _syn_new: bool
    _syn_pending: bool
    _ack_now: bool
    _ack_own: bool
    _unacked_rx: int
    sack_order: list[int]
    dsack: tuple[int, int] | None
    _force: bool
    _force_probe: bool
    ecn_echo: bool
    cwr_pending: bool
    recovery: Recovery
    cwv: CwndValidation
    _cwnd_limited: bool
    _max_flight: int
    _cwnd_usage_seq: int
    _window_clamp: int | None
    # The largest payload one segment may carry when the link cuts super-segments into
    # MSS-sized ones for us (TSO); the host sets it. 0: every segment is at most one MSS.
    tso_max: int

    def _arm(self, now: int, name: str, delay: int, reason: str, backoff: int = 0) -> None:
        self.timers.arm(name, now + delay, reason, backoff)
        if self._tracer is not None:
            self._trace(TIMER, now, timer=name, action="armed", deadline=now + delay, reason=reason)

    def _trace(self, kind: str, now: int, **fields: object) -> None:
        if self._tracer is not None:
            self._tracer(TraceEvent(now, kind, self._name, fields))

    def _fin_seq(self) -> int:
        return seq_add(self._buf_seq, len(self.sendbuf))

    def _send_syn(self, now: int) -> TcpSegment:
        tcb = self.tcb
        synack = tcb.state is State.SYN_RECEIVED
        flags = SYN | ACK if synack else SYN
        if synack and tcb.ecn:
            flags |= ECE  # RFC 3168 §6.1.1: ECN-setup SYN-ACK
        elif not synack and self.config.ecn:
            flags |= ECE | CWR  # RFC 3168 §6.1.1: ECN-setup SYN
        seg = self._make(flags, tcb.iss, now)
        self._syn_pending = False
        if self._syn_new:
            self._syn_new = False
            self.rtt.on_send(tcb.snd_nxt, now, force=True)
        else:
            self._n["retransmissions"] += 1
        if not self.timers.is_armed("syn"):
            self._arm(now, "syn", self.rtt.rto, "SYN retransmission")
        return seg

    def _arm_rto(self, now: int, backoff: int = 0) -> None:
        """Arm the retransmission timer as the RTO (RFC 6298)."""
        self.recovery.timer_mode = "rto"
        self._arm(now, "retransmission", self.rtt.rto, "RTO", backoff)

    def _rearm(self, now: int, *, restart: bool = False) -> None:
        """Arm the retransmission timer for what is due first: RACK's reordering
        timeout, a tail loss probe (RFC 8985 §7.2), or the RTO (restarted if
        `restart`, RFC 6298 (5.3); otherwise kept if already running, (5.1))."""
        rec = self.recovery
        tcb = self.tcb
        if tcb.snd_una == tcb.snd_max:
            return
        if rec.reo_deadline is not None:
            rec.timer_mode = "rack"
            self._arm(now, "retransmission", max(rec.reo_deadline - now, 0), "RACK reorder")
        elif rec.may_probe() and tcb.state in SENDING:
            rec.timer_mode = "tlp"
            self._arm(
                now,
                "retransmission",
                rec.pto(self.rtt.srtt, self.rtt.rto, self._payload_mss()),
                "TLP",
            )
        elif restart or rec.timer_mode != "rto" or not self.timers.is_armed("retransmission"):
            self._arm_rto(now)

    def _may_send_new(self) -> bool:
        """New data (or the FIN) is queued and the peer's window has room for it."""
        tcb = self.tcb
        if tcb.snd_nxt != tcb.snd_max:
            return False
        unsent = len(self.sendbuf) - seq_diff(tcb.snd_nxt, self._buf_seq)
        if unsent <= 0 and not (tcb.fin_queued and not tcb.fin_sent):
            return False
        return seq_diff(seq_add(tcb.snd_una, tcb.snd_wnd), tcb.snd_nxt) > 0

    def _send_recovery(self, now: int, out: list[TcpSegment]) -> None:
        """SACK fast recovery (RFC 6675 §5 step (C)): while PRR allows, retransmit what
        NextSeg names -- lost segments first (rule 1); rules (3) and (4) only when rule
        (2) fails: no new data is queued or the peer's window holds none.  New data
        that congestion control (PRR's count) or sender SWS avoidance holds back is
        not a failed rule (2): it waits for the next ACK, as RFC 6675 §5 (C) does."""
        tcb = self.tcb
        rec = self.recovery
        if not tcb.sack or rec.phase != "recovery" or tcb.state not in SENDING:
            return
        mss = self._payload_mss()
        for _ in range(len(rec.segs) + 1):  # each round resends one record or stops
            if rec.room(self.cc.cwnd, mss) <= 0:
                return
            nxt = rec.next_retransmit(mss, new_data=self._may_send_new())
            if nxt is None or not self._retransmit(nxt[0], nxt[1], now, out):
                return

    def _send_data(self, now: int, out: list[TcpSegment]) -> None:
        """Segments from SND.NXT within the peer's window and what congestion control
        allows (cwnd - pipe, or PRR's count in recovery), with sender SWS avoidance
        and Nagle (RFC 9293 3.8.6.2.1, 3.7.4); the FIN rides on the last one."""
        tcb = self.tcb
        rec = self.recovery
        mss = self._payload_mss()
        # With TSO a segment carries up to tso_max, a whole number of MSS: the link cuts
        # it into MSS-sized segments on the way (gso_size = mss).  A tail loss probe
        # is one segment of new data (RFC 8985 §7.3), never a super-segment: it goes
        # out past cwnd.
        if self.tso_max > mss and not self._force_probe:
            limit = self.tso_max - self.tso_max % mss
        else:
            limit = mss
        buf = self.sendbuf
        if rec.phase == "open" and len(buf) > seq_diff(tcb.snd_nxt, self._buf_seq):
            self.cwv.check(now, self.cc, self.rtt.srtt)  # RFC 7661 before new data
        while True:
            span = unsent = -1
            if rec.sacked_bytes and seq_lt(tcb.snd_nxt, tcb.snd_max):
                # Go-back-N after an RTO: what the peer SACKed is not sent again
                # (RFC 6675 §5.1), and a resend stops where SACKed data starts.
                nxt, stop = rec.resend_span(tcb.snd_nxt)
                tcb.snd_nxt = nxt
                if stop is not None:
                    span = seq_diff(stop, nxt)
            off = seq_diff(tcb.snd_nxt, self._buf_seq)
            unsent = len(buf) - off
            if unsent < 0 or (unsent == 0 and not tcb.fin_queued):
                break  # everything (and the FIN, if any) is out
            usable = seq_diff(seq_add(tcb.snd_una, tcb.snd_wnd), tcb.snd_nxt)
            if not self._force_probe:
                usable = min(usable, rec.room(self.cc.cwnd, mss))
            length = max(0, min(unsent, limit, usable))
            if span >= 0:
                length = min(length, span)
            if length > mss and length < unsent:
                length -= length % mss  # no short segment in the middle of a super-segment
            fin = tcb.fin_queued and length == unsent and usable > length
            if length == 0 and not fin:
                break
            retransmit = seq_lt(tcb.snd_nxt, tcb.snd_max)
            if length < mss and not fin and not retransmit and not self._force:
                # Sender SWS avoidance (3.8.6.2.1): send a short segment only when it
                # empties the queue or fills half the largest window seen -- and then,
                # with Nagle (3.7.4, Minshall's variant: see connection.py), only when
                # no earlier short segment is unacknowledged (a tail loss probe goes
                # with Nagle off, as Linux's TCP_NAGLE_OFF for it).
                if length < unsent and length < tcb.max_snd_wnd // 2:
                    break
                if not (self.config.nodelay or self._force_probe) and self._short_unacked():
                    break
            self._force = False
            seq = tcb.snd_nxt
            payload = buf.peek(off, length) if length else b""
            flags = ACK
            if length and length == unsent:
                flags |= PSH
            if fin:
                flags |= FIN
                tcb.fin_sent = True
            # RFC 3168 §6.1.5: retransmissions are not ECT; §6.1.1: nor pure FINs.
            ect = bool(length) and not retransmit
            out.append(self._make(flags, seq, now, payload, mss if length > mss else 0, ect=ect))
            end = seq_add(seq, length + (1 if fin else 0))
            tcb.snd_nxt = end
            rec.on_sent(seq, length + (1 if fin else 0), now, fin=fin)
            if retransmit:
                self._n["retransmissions"] += 1
                self._n["retransmitted_bytes"] += length
            else:
                self.rtt.on_send(end, now)  # RFC 6298 §3: one timed segment per RTT
                if length % mss:
                    tcb.snd_sml = end  # short (or a super-segment with a short tail)
            if seq_gt(end, tcb.snd_max):
                tcb.snd_max = end
                self.cc.on_sent(now, length, seq_diff(end, tcb.snd_una))
                if rec.may_probe():
                    self._rearm(now, restart=True)  # RFC 8985 §7.2: after new data
            if not self.timers.is_armed("retransmission"):
                self._rearm(now)  # (5.1)
            if fin or self._force_probe:
                break
        self._force = False
        self._cwnd_validate()
        blocked = len(buf) - seq_diff(tcb.snd_nxt, self._buf_seq) > 0 or (
            tcb.fin_queued and not tcb.fin_sent
        )
        if self.timers.is_armed("retransmission"):
            self.timers.cancel("persist")  # ACKs of data in flight will clock us
        elif blocked:
            if not self.timers.is_armed("persist"):
                self._arm(now, "persist", self.rtt.rto, "window too small")
        elif tcb.snd_max != tcb.snd_una and not self.timers.is_armed("persist"):
            self._rearm(now)

    def _short_unacked(self) -> bool:
        """Minshall's Nagle test (Linux tcp_minshall_check): the last short segment sent
        is not yet acknowledged."""
        tcb = self.tcb
        return seq_gt(tcb.snd_sml, tcb.snd_una) and not seq_gt(tcb.snd_sml, tcb.snd_max)

    def _cwnd_validate(self) -> None:
        """Remember, for the current window of data, whether cwnd limited the sender
        and the largest flight (Linux tcp_cwnd_validate): an ACK grows cwnd only if
        the window was used (`_is_cwnd_limited`), or cwnd would grow without bound
        while the peer's window or the application limits the flight."""
        tcb = self.tcb
        flight = seq_diff(tcb.snd_max, tcb.snd_una)
        limited = self.cc.cwnd - flight < tcb.snd_mss  # no room for a full segment
        if (
            seq_ge(tcb.snd_una, self._cwnd_usage_seq)
            or limited
            or (not self._cwnd_limited and flight > self._max_flight)
        ):
            self._cwnd_limited = limited
            self._max_flight = flight
            self._cwnd_usage_seq = tcb.snd_max

    def _is_cwnd_limited(self) -> bool:
        """Linux tcp_is_cwnd_limited: cwnd was full in this window, or, in slow start,
        the flight reached half of it (so cwnd grows to twice what was used)."""
        cc = self.cc
        if self._cwnd_limited:
            return True
        return cc.cwnd < cc.ssthresh and cc.cwnd < 2 * self._max_flight

    def _payload_mss(self) -> int:
        """Payload bytes that fit a segment built now.  SACK blocks ride on our data
        segments too: keep header + payload within the path MTU (2 NOPs + kind +
        length + 8 bytes a block, RFC 2018 §3; options count against the MSS,
        RFC 9293 3.7.1)."""
        tcb = self.tcb
        blocks = len(self._sack_blocks()) if tcb.sack else 0
        return tcb.snd_mss - (8 * blocks + 4 if blocks else 0)

    def _make(
        self,
        flags: int,
        seq: int,
        now: int,
        payload: bytes | memoryview = b"",
        gso_size: int = 0,
        *,
        ect: bool = False,
    ) -> TcpSegment:
        """A segment from us with the current ACK, window and options; `gso_size` marks a
        super-segment for the link to cut (TSO); `ect`: new data of an ECN connection,
        sent as ECT(0) with CWR if a reduction is to be told."""
        tcb = self.tcb
        syn = bool(flags & SYN)
        if tcb.ecn and not syn:
            if flags & ACK and self.ecn_echo:
                flags |= ECE  # RFC 3168 §6.1.3: until the peer's CWR
            if ect and self.cwr_pending:
                flags |= CWR  # RFC 3168 §6.1.2: on the first new data after reducing
                self.cwr_pending = False
        if syn:
            # RFC 7323 §2.2: the window in a SYN is never scaled.
            window = min(self.recvbuf.window, MAX_WINDOW_FIELD)
            tcb.rcv_wnd = window
        else:
            window = self._window_field()
        ts = None
        if tcb.timestamps or (syn and tcb.state is State.SYN_SENT and self.config.timestamps):
            ts = ((now // MS) & MASK, tcb.ts_recent if flags & ACK else 0)
        sack: tuple[tuple[int, int], ...] = ()
        if flags & ACK:
            tcb.last_ack_sent = tcb.rcv_nxt
            self._ack_now = self._ack_own = False
            self._unacked_rx = 0
            self.timers.cancel("delayed-ack")
            if tcb.sack and not syn:
                sack = self._sack_blocks()
                if self.dsack is not None:
                    self.dsack = None  # reported once (RFC 2883 §4)
                    self._n["dsacks_sent"] += 1
        mss = wscale = None
        sack_permitted = False
        if syn:
            mss = tcb.mss_local
            if tcb.state is State.SYN_SENT:
                wscale = self._wscale_offer
                sack_permitted = self.config.sack
            else:  # a SYN-ACK offers only what the peer's SYN offered (RFC 7323 §1.3)
                wscale = self._wscale_offer if self._peer_wscale else None
                sack_permitted = tcb.sack
        return (EctSegment if ect and tcb.ecn else TcpSegment)(
            src_port=self.local[1],
            dst_port=self.remote[1],
            seq=seq,
            ack=tcb.rcv_nxt if flags & ACK else 0,
            flags=flags,
            window=window,
            payload=payload,
            mss=mss,
            wscale=wscale,
            sack_permitted=sack_permitted,
            sack=sack,
            timestamps=ts,
            gso_size=gso_size,
        )

    def _window_field(self) -> int:
        """The 16-bit window to advertise (RFC 9293 3.8.6.2.2, RFC 7323 §2.4)."""
        tcb = self.tcb
        shift = tcb.wscale_local
        wnd = tcb.rcv_wnd
        avail = self._rcv_avail()
        # Receiver SWS avoidance: move the right edge only by a useful amount.
        if avail - wnd >= self._rcv_sws():
            wnd = avail
        field = min(wnd >> shift, MAX_WINDOW_FIELD)
        if field << shift < tcb.rcv_wnd and field < MAX_WINDOW_FIELD:
            field += 1  # rounding down would shrink the right edge (RFC 7323 §2.4)
        tcb.rcv_wnd = field << shift
        return field

    def _maybe_window_update(self) -> None:
        """After the application read: ACK at once if the window we could offer has at
        least doubled and grown by the SWS threshold (Linux tcp_cleanup_rbuf)."""
        tcb = self.tcb
        if tcb.state not in RECEIVING:
            return
        avail = self._rcv_avail()
        threshold = self._rcv_sws()
        if avail - tcb.rcv_wnd >= threshold and avail >= 2 * tcb.rcv_wnd:
            self._ack_now = True

    def _rcv_avail(self) -> int:
        """Bytes we could offer from RCV.NXT: the buffer's room, capped by a window clamp
        (`pytcp impair ID window N`).  The right edge never moves left (the callers keep
        RCV.WND), so a clamp closes the window as data fills it (RFC 9293 3.8.6.2.2)."""
        clamp = self._window_clamp
        avail = self.recvbuf.window
        return avail if clamp is None or clamp >= avail else clamp

    def _rcv_sws(self) -> int:
        """Receiver SWS threshold (RFC 9293 3.8.6.2.2): min(half the buffer, MSS); a
        window clamp counts as the buffer, or a clamp below it would never open."""
        clamp = self._window_clamp
        space = self.recvbuf.capacity if clamp is None else min(clamp, self.recvbuf.capacity)
        return max(min(space // 2, self.tcb.mss_local), 1)

    def _note_ooo(self, seq: int) -> None:
        """Out-of-order text starting at `seq` was stored: its block becomes the most
        recent (RFC 2018 §4).  `sack_order` holds one sequence number per block, most
        recently changed first; blocks that merged keep one entry."""
        nxt = self.tcb.rcv_nxt
        order = [seq]
        ranges = self.recvbuf.ooo_ranges()
        target = self._ooo_block_of(seq, ranges, nxt)
        for old in self.sack_order:
            block = self._ooo_block_of(old, ranges, nxt)
            if block is not None and block != target:
                order.append(old)
        self.sack_order = order[:MAX_SACKED_RANGES]

    @staticmethod
    def _ooo_block_of(seq: int, ranges: list[tuple[int, int]], nxt: int) -> tuple[int, int] | None:
        off = seq_diff(seq, nxt)
        for lo, hi in ranges:
            if lo <= off < hi:
                return (lo, hi)
        return None

    def _sack_blocks(self) -> tuple[tuple[int, int], ...]:
        """The SACK option of our next ACK: a D-SACK block first if a duplicate just
        arrived (RFC 2883 §4), then RFC 2018 §4's order: the block holding the most
        recent segment, then the other blocks most recently changed first, so that
        each range is repeated in several ACKs and a lost ACK hides none for good
        (Linux sends the same order)."""
        tcb = self.tcb
        ranges = self.recvbuf.ooo_ranges()
        limit = 3 if tcb.timestamps else 4
        nxt = tcb.rcv_nxt
        blocks: list[tuple[int, int]] = []
        dsack = self.dsack
        if dsack is not None:
            blocks.append(dsack)
            # RFC 2883 §4 (2): a duplicate above RCV.NXT is followed by its block.
            container = self._ooo_block_of(dsack[0], ranges, nxt)
            if container is not None:
                blocks.append((seq_add(nxt, container[0]), seq_add(nxt, container[1])))
        seen = set(blocks[1:])
        for seq in self.sack_order:
            block = self._ooo_block_of(seq, ranges, nxt)
            if block is None:
                continue
            pair = (seq_add(nxt, block[0]), seq_add(nxt, block[1]))
            if pair not in seen:
                seen.add(pair)
                blocks.append(pair)
        for lo, hi in ranges:  # never reported yet (none when sack_order is kept)
            pair = (seq_add(nxt, lo), seq_add(nxt, hi))
            if pair not in seen:
                seen.add(pair)
                blocks.append(pair)
        return tuple(blocks[:limit])

    def _rst(self, seq: int) -> TcpSegment:
        return TcpSegment(
            src_port=self.local[1], dst_port=self.remote[1], seq=seq, ack=0, flags=RST, window=0
        )

    def _reset_for(self, seg: TcpSegment) -> TcpSegment:
        # §3.10.7.1: <SEQ=SEG.ACK><CTL=RST>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
        if seg.flags & ACK:
            return self._rst(seg.ack)
        return TcpSegment(
            src_port=self.local[1],
            dst_port=self.remote[1],
            seq=0,
            ack=seq_add(seg.seq, seg.seg_len),
            flags=RST | ACK,
            window=0,
        )

    def _retransmit_head(self, now: int) -> None:
        """Send the first unacknowledged segment again, now (fast retransmit)."""
        tcb = self.tcb
        self._retransmit(tcb.snd_una, tcb.snd_max, now)

    def _retransmit(
        self, start: int, limit: int, now: int, out: list[TcpSegment] | None = None
    ) -> bool:
        """Send again up to one segment of what lies in [start, limit), now (into `out`,
        else the queue segments_to_send returns next); the FIN too if it is the last
        thing before limit.  False when there was nothing to send."""
        tcb = self.tcb
        off = seq_diff(start, self._buf_seq)
        payload = self.sendbuf.peek(off, min(self._payload_mss(), seq_diff(limit, start)))
        flags = ACK
        end = seq_add(start, len(payload))
        if tcb.fin_sent and end == self._fin_seq() and seq_lt(end, limit):
            flags |= FIN
        if not payload and not flags & FIN:
            return False
        if payload and len(payload) == len(self.sendbuf) - off:
            flags |= PSH
        (self._out if out is None else out).append(self._make(flags, start, now, payload))
        fin = bool(flags & FIN)
        self.recovery.on_sent(start, len(payload) + fin, now, fin=fin)
        self._n["retransmissions"] += 1
        self._n["retransmitted_bytes"] += len(payload)
        self.rtt.on_retransmit()
        return True
