"""Round-trip time estimation and the retransmission timeout (RFC 6298). Imports clock.

All arithmetic is integer nanoseconds. How a connection uses the estimator:

- Feed `sample(rtt)` only with measurements that Karn's rule allows (RFC 6298 §3):
  the RTT of a segment that was never retransmitted, or a timestamp echo
  (RFC 7323 §4.1), which stays unambiguous across retransmission.
  Take at most one sample per RTT when timing one segment at a time (RFC 6298 §3).
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
        "min_rtt",
        "rto_max",
        "rto_min",
        "rttvar",
        "samples",
        "srtt",
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

    def snapshot(self) -> dict[str, int | None]:
        """Plain data for `inspect`: times in ns, None before the first sample."""
        return {
            "srtt": self.srtt,
            "rttvar": self.rttvar,
            "rto": self.rto,
            "min_rtt": self.min_rtt,
            "samples": self.samples,
            "backoff": self.backoffs,
        }
