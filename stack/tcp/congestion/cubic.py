"""CUBIC (RFC 9438): window growth as a cubic function of the time since the last
congestion event, with a Reno-friendly floor. Imports congestion.base.

CUBIC changes only the window increase and decrease (RFC 9438 §1): the
multiplicative decrease (beta = 0.7 instead of 0.5) and congestion avoidance.  Loss
recovery, and the window during it, are tcp/recovery.py's; CUBIC stands alone on
the neutral hooks of congestion/base.py.

The decrease is taken from cwnd, as Linux's bictcp_recalc_ssthresh does, not from
the FlightSize the hooks pass: RFC 9438 §4.6 lets an implementation "use cwnd
instead of flight_size when calculating a new ssthresh" if it uses "other measures
to prevent cwnd from growing when the volume of bytes in flight is smaller than
cwnd".  pytcp has them: an ACK grows cwnd only while cwnd limited the sender
(`Sender._is_cwnd_limited`, the `cwnd_limited` argument of `on_ack`; in slow start
only while the flight reached half of cwnd, RFC 7661's validated phase), and
tcp/cwv.py reduces a window left unused (RFC 7661 §4.4.3).  The FlightSize seen by
the ACK that reveals a loss is what is left after it, often two or three segments
when a window's tail was SACKed, and 0.7 of it collapses the window far below what
the path carried.  An RTO while the reduction of a congestion event is still in
force (no ACK outside recovery since) holds ssthresh, as Linux tcp_enter_loss does
in the Recovery and CWR states: the reduction was made for this loss already.

The arithmetic is integer, in bytes and nanoseconds, so results are exact and
repeatable: C = 0.4 segments/s**3 and beta = 0.7 are the fractions 4/10 and 7/10;
the Reno-friendly estimate W_est is kept in bytes scaled by 2**20; the per-ACK
increase (target - cwnd) / cwnd carries its remainder to the next ACK.
"""

from __future__ import annotations

from stack.tcp.congestion.base import CongestionControl
from stack.tcp.congestion.hystart import HyStart

BETA_NUM, BETA_DEN = 7, 10  # beta_cubic = 0.7 (RFC 9438 §4.6)
C_NUM, C_DEN = 4, 10  # C = 0.4 (RFC 9438 §5)
# alpha_cubic = 3 * (1 - beta) / (1 + beta) = 9/17 (RFC 9438 §4.3)
ALPHA_NUM, ALPHA_DEN = 3 * (BETA_DEN - BETA_NUM), BETA_DEN + BETA_NUM
FAST_CONVERGENCE = True  # RFC 9438 §4.7 (SHOULD)
W_EST_SHIFT = 20  # fixed-point fraction bits of W_est
NS_PER_S = 1_000_000_000


def icbrt(n: int) -> int:
    """floor(cube root of n) for an integer n >= 0, exactly (Newton's method)."""
    if n < 0:
        raise ValueError(f"icbrt of a negative number: {n}")
    if n < 2:
        return n
    x = 1 << ((n.bit_length() + 2) // 3)  # >= cbrt(n)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            return x
        x = y


class Cubic(CongestionControl):
    name = "cubic"

    def __init__(self, mss: int, *, initial_window: int | None = None) -> None:
        super().__init__(mss, initial_window=initial_window)
        # A reduction (congestion event, ECN or RTO) set ssthresh and no ACK outside
        # recovery came since: a timeout then holds ssthresh (RFC 5681 §3.1).
        self._reduced = False
        self._undo_w_max: int | None = None  # W_max before the last reduction
        self.hystart = HyStart()  # RFC 9406 in the initial slow start (RFC 9438 §4.10)
        self._css_carry = 0  # remainder of CSS's divided growth
        # W_max (bytes): the window before the last reduction, after fast
        # convergence; None until the first congestion event.
        self.w_max: int | None = None
        self._cwnd_prior: int | None = None  # cwnd when ssthresh was last set (§4.3)
        self._reset_after_rto = False  # §4.8: next epoch has K = 0, W_max = cwnd_epoch
        # The current congestion-avoidance epoch (RFC 9438 §4.2), None outside one.
        self._t_epoch: int | None = None
        self._cwnd_epoch = 0
        self._epoch_w_max = 0  # W_max the cubic curve of this epoch plateaus at
        self.k: int | None = None  # K in ns
        self._w_est = 0  # W_est in bytes << W_EST_SHIFT
        self._carry = 0  # remainder of the per-ACK increase, in bytes * cwnd
        self._srtt: int | None = None  # smoothed from the samples on_ack receives
        self._unused_since: int | None = None  # first ACK of a stretch not cwnd-limited

    # -- the cubic function -------------------------------------------------

    def w_cubic(self, t: int) -> int:
        """W_cubic(t) = C * (t - K)**3 + W_max in bytes, t in ns since the epoch
        began (RFC 9438 §4.2, Figure 1); the curve of the current epoch."""
        assert self.k is not None
        d = t - self.k
        return self._epoch_w_max + (C_NUM * d**3 * self.mss) // (C_DEN * NS_PER_S**3)

    def _start_epoch(self, now: int) -> None:
        # RFC 9438 §4.2: t_epoch, cwnd_epoch and K at the start of congestion
        # avoidance; §4.3: W_est = cwnd_epoch.
        self._t_epoch = now
        self._cwnd_epoch = self.cwnd
        self._carry = 0
        self._w_est = self.cwnd << W_EST_SHIFT
        if self.w_max is None or self._reset_after_rto:
            # No loss yet, or the first epoch after a timeout (§4.8): K = 0 and
            # W_max = cwnd_epoch, so growth starts convex from here.
            self._reset_after_rto = False
            self.w_max = self.cwnd
            self._epoch_w_max = self.cwnd
            self.k = 0
            return
        self._epoch_w_max = self.w_max
        # K = cubic_root((W_max - cwnd_epoch) / C) seconds (§4.2, Figure 2), in ns:
        # K_ns**3 = (W_max - cwnd_epoch) / MSS * C_DEN / C_NUM * 10**27.
        # A window above W_max (an undo restored a larger cwnd) gives K < 0: the
        # curve is already past its plateau, in the convex region.
        diff = self.w_max - self.cwnd
        cube = abs(diff) * C_DEN * NS_PER_S**3 // (self.mss * C_NUM)
        self.k = icbrt(cube) if diff >= 0 else -icbrt(cube)

    # -- hooks ----------------------------------------------------------------

    def on_ack(
        self, now: int, acked: int, in_flight: int, rtt: int | None, cwnd_limited: bool = True
    ) -> None:
        if rtt is not None and rtt >= 0:
            # RFC 9438 §4.2 uses the smoothed RTT in W_cubic(t + RTT).
            self._srtt = rtt if self._srtt is None else (7 * self._srtt + rtt) >> 3
        if acked <= 0:
            return
        self._acked_any = True
        self._reduced = False
        if not cwnd_limited:
            # No growth while the window is not used; the epoch's clock stops too
            # (as Linux shifts epoch_start over an idle period), so the curve does
            # not jump ahead once the sender fills the window again.
            if self._unused_since is None:
                self._unused_since = now
            return
        if self._unused_since is not None:
            if self._t_epoch is not None:
                self._t_epoch += now - self._unused_since
            self._unused_since = None
        if self.cwnd < self.ssthresh:
            # Slow start as in RFC 5681, left early by HyStart++ (RFC 9438 §4.10).
            divisor = self.hystart.on_ack(acked, in_flight, rtt)
            if divisor == 0:
                self.ssthresh = self.cwnd  # RFC 9406 §4.3: CSS is over
            else:
                grow = min(acked, self.mss) + self._css_carry
                self.cwnd += grow // divisor
                self._css_carry = grow % divisor
                return
        if self._t_epoch is None:
            self._start_epoch(now)
        assert self._t_epoch is not None
        t = now - self._t_epoch
        cwnd = self.cwnd
        # RFC 9438 §4.2: target from W_cubic(t + RTT), bounded to [cwnd, 1.5 cwnd].
        target = self.w_cubic(t + (self._srtt or 0))
        target = min(max(target, cwnd), cwnd + cwnd // 2)
        # §4.4/§4.5: cwnd += (target - cwnd) / cwnd per SMSS acknowledged, in bytes:
        # (target - cwnd) * acked / cwnd, the remainder carried to the next ACK.
        num = (target - cwnd) * acked + self._carry
        inc, self._carry = divmod(num, cwnd)
        # §4.3: W_est += alpha * segments_acked / cwnd segments, alpha = 9/17 until
        # W_est reaches the window before the last reduction, then 1.
        prior = self._cwnd_prior
        if prior is not None and (self._w_est >> W_EST_SHIFT) < prior:
            self._w_est += (ALPHA_NUM * acked * self.mss << W_EST_SHIFT) // (ALPHA_DEN * cwnd)
        else:
            self._w_est += (acked * self.mss << W_EST_SHIFT) // cwnd
        self.cwnd = cwnd + inc
        w_est = self._w_est >> W_EST_SHIFT
        if self.w_cubic(t) < w_est:
            # Reno-friendly region (§4.3): do at least as well as Reno would.
            self.cwnd = max(self.cwnd, w_est)

    def _reduce(self) -> None:
        """The multiplicative decrease of RFC 9438 §4.6, from cwnd (see the module
        docstring), with fast convergence §4.7."""
        self._acked_any = True
        self._reduced = True
        self._undo_w_max = self.w_max
        self.hystart.exit()
        cwnd = self.cwnd
        if FAST_CONVERGENCE and self.w_max is not None and cwnd < self.w_max:
            # Loss below the previous W_max: the flow is likely losing share to a
            # new one, so release more (W_max * (1 + beta) / 2).
            self.w_max = cwnd * (BETA_DEN + BETA_NUM) // (2 * BETA_DEN)
        else:
            self.w_max = cwnd
        self._cwnd_prior = cwnd
        # ssthresh = cwnd * beta, at least 2 SMSS (§4.6; cwnd instead of flight_size).
        self.ssthresh = max(cwnd * BETA_NUM // BETA_DEN, 2 * self.mss)
        # The epoch ends: congestion avoidance after the episode starts afresh from
        # the window recovery leaves (RFC 9438 §4.2).
        self._t_epoch = None
        self.k = None

    def on_congestion_event(self, now: int, in_flight: int) -> None:
        self._reduce()

    def on_cwnd_set(self, now: int) -> None:
        # cwnd changed under the epoch: a later one starts from the window it finds.
        self._t_epoch = None
        self.k = None

    def on_ecn(self, now: int, in_flight: int) -> None:
        # RFC 9438 §4.6: an ECN-Echo is a congestion event like a loss.
        self._reduce()
        self.cwnd = max(self.ssthresh, self.mss)

    def undo(self, cwnd: int, ssthresh: int) -> None:
        # RFC 9438 §4.9 (spurious congestion events): back to the state before.
        self.cwnd = max(self.cwnd, cwnd)
        self.ssthresh = max(self.ssthresh, ssthresh)
        self.w_max = self._undo_w_max
        self._t_epoch = None
        self.k = None
        self._reduced = False

    def on_rto(self, now: int, in_flight: int) -> None:
        # RFC 9438 §4.8: ssthresh as in §4.6, from cwnd -- held when the same data
        # times out again (RFC 5681 §3.1) or the timeout ends a recovery episode
        # whose reduction is in force (Linux tcp_enter_loss) --, cwnd = 1 SMSS as
        # Reno, and the next congestion avoidance starts with K = 0 from the window
        # it begins with.
        if not self._reduced:
            self._reduce()
        self._reset_after_rto = True
        self._t_epoch = None
        self.k = None
        self.cwnd = self.mss

    def set_mss(self, mss: int) -> None:
        old = self.mss
        super().set_mss(mss)
        if self.w_max is not None:
            self.w_max = self.w_max * mss // old
        if self._cwnd_prior is not None:
            self._cwnd_prior = self._cwnd_prior * mss // old
        self._t_epoch = None  # the curve is in segments: start a new epoch
        self.k = None

    def state(self) -> dict[str, object]:
        return {"w_max": self.w_max, "k": self.k, "hystart": self.hystart.snapshot()}
