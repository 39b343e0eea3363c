"""HyStart++ (RFC 9406): leave slow start before the first loss when the RTT starts to
grow, through a Conservative Slow Start (CSS) phase. Imports nothing from the stack.

A controller asks `HyStart.on_ack` on every ACK in slow start; the answer is how
much of the usual slow-start growth to apply (1: all of it, CSS_GROWTH_DIVISOR:
CSS's quarter) or 0 when slow start is over (the controller sets ssthresh = cwnd
and goes on in congestion avoidance).  Rounds are counted in bytes, as the
controller sees no sequence numbers: a round ends once the bytes acknowledged since
it began reach the FlightSize at its start (RFC 9406 §4.2's windowEnd = SND.NXT).
The RTT samples are the per-ACK ones of loss recovery (RACK's, RFC 8985 §6.2),
Karn-valid, so a round has many.  Used in the initial slow start only (RFC 9406 §4.3):
`exit()` after the first congestion event.
"""

from __future__ import annotations

MS = 1_000_000
MIN_RTT_THRESH = 4 * MS  # RFC 9406 §4.3
MAX_RTT_THRESH = 16 * MS
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5


class HyStart:
    """The HyStart++ state of one connection's slow start."""

    __slots__ = (
        "_acked",
        "_round_end",
        "css_baseline_min_rtt",
        "css_rounds",
        "current_round_min_rtt",
        "last_round_min_rtt",
        "phase",
        "rtt_sample_count",
    )

    def __init__(self) -> None:
        self.phase = "slow-start"  # "slow-start" | "css" | "done"
        self._acked = 0  # bytes acknowledged in slow start so far
        self._round_end = 0  # _acked at which the current round ends
        self.current_round_min_rtt: int | None = None
        self.last_round_min_rtt: int | None = None
        self.rtt_sample_count = 0
        self.css_baseline_min_rtt: int | None = None
        self.css_rounds = 0

    def exit(self) -> None:
        """A congestion event: slow start (and HyStart++) is over for good."""
        self.phase = "done"

    def on_ack(self, acked: int, in_flight: int, rtt: int | None) -> int:
        """Returns the divisor of slow start's growth for this ACK, 0 to leave it."""
        if self.phase == "done":
            return 1
        self._acked += max(acked, 0)
        if self._acked >= self._round_end:
            # RFC 9406 §4.2: a new round begins.
            self.last_round_min_rtt = self.current_round_min_rtt
            self.current_round_min_rtt = None
            self.rtt_sample_count = 0
            self._round_end = self._acked + max(in_flight, 1)
            if self.phase == "css":
                self.css_rounds += 1
                if self.css_rounds >= CSS_ROUNDS:
                    self.phase = "done"  # §4.3: CSS lasted CSS_ROUNDS: avoidance now
                    return 0
        if rtt is not None and rtt >= 0:
            cur = self.current_round_min_rtt
            self.current_round_min_rtt = rtt if cur is None else min(cur, rtt)
            self.rtt_sample_count += 1
        cur, last = self.current_round_min_rtt, self.last_round_min_rtt
        if self.rtt_sample_count >= N_RTT_SAMPLE and cur is not None and last is not None:
            if self.phase == "slow-start":
                thresh = max(MIN_RTT_THRESH, min(last // MIN_RTT_DIVISOR, MAX_RTT_THRESH))
                if cur >= last + thresh:
                    self.phase = "css"  # the delay grew: probe conservatively
                    self.css_baseline_min_rtt = cur
                    self.css_rounds = 0
            elif self.css_baseline_min_rtt is not None and cur < self.css_baseline_min_rtt:
                self.phase = "slow-start"  # §4.3: the increase was spurious
                self.css_baseline_min_rtt = None
        return CSS_GROWTH_DIVISOR if self.phase == "css" else 1

    def snapshot(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "current_round_min_rtt": self.current_round_min_rtt,
            "last_round_min_rtt": self.last_round_min_rtt,
            "css_rounds": self.css_rounds,
        }
