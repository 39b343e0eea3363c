"""Round-trip time estimation and the retransmission timeout (RFC 6298), with its own
sampling and Karn's rule (as smoltcp's RttEstimator). Imports clock and seq.

All arithmetic is integer nanoseconds. How a connection uses the estimator:

- `on_send(end, now)` for every new (never sent) segment: one segment per round trip
  is timed (RFC 6298 §3), in ns, timestamps or not, as Linux times with its µs clock.
  `on_retransmit()` whenever anything is sent again: Karn's rule stops timing what is
  in flight; until the next timed segment is acknowledged, timestamp echoes (RFC 7323
  §4.1, 1 ms ticks) supply the samples.  `on_timeout(tsval, snd_max)` after an RTO or
  SYN timeout: echoes of TSvals older than that are no samples until everything sent
  before it is acknowledged (`ts_floor`).  `on_ack(ack, now, tsecr, timestamps)` for
  every ACK that advances SND.UNA: it takes the sample Karn allows, feeds `sample()`
  and returns it (or None).
- `sample(rtt)` directly only with measurements that Karn's rule allows (RFC 6298 §3).
- When the retransmission timer expires, call `backoff()` (RFC 6298 (5.5)) and arm
  the timer again with the new `rto`.
- When an ACK acknowledges new data after a retransmission, call `reset_backoff()`:
  the backed-off RTO is kept until then (Karn's algorithm, RFC 6298 §5 note).
- When the handshake completes after the SYN (or SYN-ACK) was retransmitted, call
  `handshake_retransmitted()` (RFC 6298 (5.7)).
- `rto` is always the value to arm the timer with: the computed RTO, clamped, times
  2**backoffs, capped at `rto_max`.
"""

from __future__ import annotations

from stack.tcp.clock import MS, SECOND
from stack.tcp.seq import MASK, seq_ge

RTO_INITIAL = 1 * SECOND  # RFC 6298 (2.1)
RTO_MIN = 200 * MS  # Linux TCP_RTO_MIN; RFC 6298 (2.4) says 1 s
RTO_MAX = 120 * SECOND  # Linux TCP_RTO_MAX; RFC 6298 (2.5) allows a maximum >= 60 s
RTO_FALLBACK = 3 * SECOND  # RFC 6298 (5.7), Linux TCP_TIMEOUT_FALLBACK
CLOCK_GRANULARITY = 1 * MS  # G in RFC 6298 (2.2)/(2.3)
# alpha = 1/8 and beta = 1/4 (RFC 6298 (2.3)), applied as shifts below.
ALPHA_SHIFT = 3
BETA_SHIFT = 2
K = 4  # RFC 6298 (2.2)/(2.3)


class RttEstimator:
    """SRTT, RTTVAR and RTO of one connection (RFC 6298 §2 and §5)."""

    __slots__ = (
        "_base_rto",
        "backoffs",
        "karn",
        "min_rtt",
        "rto_max",
        "rto_min",
        "rttvar",
        "samples",
        "srtt",
        "timed_at",
        "timed_seq",
        "ts_floor",
        "ts_floor_end",
    )

    def __init__(
        self,
        *,
        rto_initial: int = RTO_INITIAL,
        rto_min: int = RTO_MIN,
        rto_max: int = RTO_MAX,
    ) -> None:
        if not 0 < rto_min <= rto_max or rto_initial <= 0:
            raise ValueError(
                f"need 0 < rto_min <= rto_max and rto_initial > 0, got "
                f"{rto_min}, {rto_max} and {rto_initial}"
            )
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.srtt: int | None = None
        self.rttvar: int | None = None
        self.min_rtt: int | None = None
        self.samples = 0
        self.backoffs = 0
        # The RTO before backoff; RFC 6298 (2.1) until the first measurement.  The
        # initial value is not clamped to rto_min: (2.4) applies to computed values.
        self._base_rto = min(rto_initial, rto_max)
        self.timed_seq: int | None = None  # end of the segment being timed (RFC 6298 §3)
        self.timed_at = 0  # when it was sent (ns)
        self.karn = False  # a retransmission suspended timing: TSecr echoes may sample
        self.ts_floor: int | None = None  # TSval clock (ms) at the last timeout
        self.ts_floor_end = 0  # SND.MAX then: the floor is dropped once that is ACKed

    # -- sampling and Karn's rule ---------------------------------------------

    def on_send(self, end: int, now: int, *, force: bool = False) -> None:
        """A segment ending at sequence `end` left for the first time at `now`: time it
        if nothing is being timed (one sample per RTT, RFC 6298 §3).  `force` times it
        even so (a new SYN restarts the measurement)."""
        if self.timed_seq is None or force:
            self.timed_seq = end
            self.timed_at = now

    def on_retransmit(self) -> None:
        """Something is sent again: time nothing in flight (Karn, RFC 6298 §3)."""
        self.timed_seq = None
        self.karn = True

    def skip(self) -> None:
        """Time nothing in flight now (the segment being timed did not leave when noted)."""
        self.timed_seq = None

    def on_timeout(self, tsval: int, snd_max: int) -> None:
        """The retransmission (or SYN) timer expired when our TSval clock read `tsval`:
        echoes of older TSvals measure our backoff, not the path, until everything
        sent so far (up to `snd_max`) is acknowledged."""
        self.ts_floor = tsval & MASK
        self.ts_floor_end = snd_max

    def on_ack(self, ack: int, now: int, tsecr: int | None) -> int | None:
        """SND.UNA advanced to `ack` at `now`; `tsecr` is the segment's TSecr when both
        sides use timestamps (None otherwise, or 0).  Takes the sample Karn's rule
        allows, feeds it to `sample()` and returns it."""
        sample: int | None = None
        timed = self.timed_seq
        if timed is not None and seq_ge(ack, timed):
            sample = now - self.timed_at
            self.timed_seq = None
            self.karn = False
        elif self.karn and tsecr and (self.ts_floor is None or seq_ge(tsecr, self.ts_floor)):
            # Karn's rule for timestamps: after a timeout, an echo of a segment sent
            # before it measures our backoff, not the path.  Peers echo such stale
            # values when they answer a duplicate (RFC 7323 §4.3 keeps TS.Recent for
            # out-of-window segments), and one such sample can inflate SRTT by minutes.
            sample = ((now // MS - tsecr) & MASK) * MS
        if self.ts_floor is not None and seq_ge(ack, self.ts_floor_end):
            # Everything sent before the floor was set is acknowledged: later ACKs
            # echo later segments.  Kept, the floor would fall 2**31 ms (24.9 days)
            # behind and the mod 2**32 test refuse every echo for the next 24.9 days.
            self.ts_floor = None
        if sample is not None:
            self.sample(sample)
        return sample

    # -- the estimator ----------------------------------------------------------

    @property
    def rto(self) -> int:
        """The timeout to arm the retransmission timer with, backoff included (5.5)."""
        if self.backoffs == 0:
            return self._base_rto
        # Shift at most as far as needed to pass rto_max, so huge counts stay cheap.
        shift = min(self.backoffs, self.rto_max.bit_length())
        return min(self._base_rto << shift, self.rto_max)

    def sample(self, rtt: int) -> None:
        """Take one RTT measurement R in ns (RFC 6298 (2.2) first, (2.3) after).

        Negative values (a confused clock or timestamp echo) are ignored; zero is a
        legitimate sample on a fast link and is kept.
        """
        if rtt < 0:
            return
        if self.srtt is None or self.rttvar is None:
            # (2.2): SRTT <- R, RTTVAR <- R/2
            srtt = rtt
            rttvar = rtt >> 1
        else:
            # (2.3): RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'| using the old
            # SRTT, then SRTT <- (1 - alpha) * SRTT + alpha * R'.  Floors of exact sums
            # so the integer result loses at most one nanosecond per step.
            rttvar = (
                (self.rttvar << BETA_SHIFT) - self.rttvar + abs(self.srtt - rtt)
            ) >> BETA_SHIFT
            srtt = ((self.srtt << ALPHA_SHIFT) - self.srtt + rtt) >> ALPHA_SHIFT
        self.srtt = srtt
        self.rttvar = rttvar
        self.samples += 1
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt
        # RTO <- SRTT + max(G, K*RTTVAR), then (2.4) floor and (2.5) ceiling.
        rto = srtt + max(CLOCK_GRANULARITY, K * rttvar)
        self._base_rto = min(max(rto, self.rto_min), self.rto_max)

    def backoff(self) -> None:
        """The retransmission timer expired: RTO <- RTO * 2, capped (RFC 6298 (5.5))."""
        # The count goes on past the ceiling: the connection's retry budget and
        # `inspect` read it; `rto` stays at rto_max.
        self.backoffs += 1

    def reset_backoff(self) -> None:
        """New data was acknowledged: go back to the computed RTO (Karn, RFC 6298 §5)."""
        self.backoffs = 0

    def handshake_retransmitted(self) -> None:
        """The handshake completed after our SYN or SYN-ACK timed out.  Without an
        RTT sample (Karn forbids timing the retransmitted SYN), data transmission
        starts with RTO = 3 s, not the backed-off SYN timeout (RFC 6298 (5.7))."""
        self.backoffs = 0
        if self.samples == 0:
            self._base_rto = min(max(self._base_rto, RTO_FALLBACK), self.rto_max)

    def snapshot(self) -> dict[str, int | bool | None]:
        """Plain data for `inspect`: times in ns, None before the first sample."""
        return {
            "srtt": self.srtt,
            "rttvar": self.rttvar,
            "rto": self.rto,
            "min_rtt": self.min_rtt,
            "samples": self.samples,
            "backoff": self.backoffs,
            "timed_seq": self.timed_seq,
            "karn": self.karn,
            "ts_floor": self.ts_floor,
        }
