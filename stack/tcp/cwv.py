"""Congestion window validation (RFC 7661, new CWV) for idle and application-limited
senders. Imports tcp.congestion.

A cwnd is *validated* while the sender uses it: pipeACK, the bytes acknowledged in
the last RTT, is at least half of it (§4.1, §4.3).  Otherwise the sender is in the
non-validated phase (NVP): the window must not grow there (§4.3 -- the connection
already grows cwnd only when it was used, `Sender._is_cwnd_limited`), and when the NVP
has lasted NVP_DURATION the window is reduced (§4.4.3): ssthresh = max(ssthresh,
3/4 cwnd), cwnd = max(cwnd / 2, IW) -- and again after each further NVP_DURATION.
An idle sender's pipeACK is 0, so a long idle period ends in the same reduction
(RFC 7661 replaces RFC 5681 §4.1's restart window).
"""

from __future__ import annotations

from stack.tcp.congestion import CongestionControl, default_initial_window

NVP_DURATION = 300 * 1_000_000_000  # RFC 7661 §4.4.3: five minutes
MIN_PERIOD = 1_000_000  # a pipeACK sampling period is at least 1 ms


class CwndValidation:
    """pipeACK and the non-validated phase of one connection (RFC 7661)."""

    __slots__ = ("_acked", "_period_start", "counters", "nvp_since", "pipe_ack", "reductions")

    def __init__(self, counters: dict[str, int] | None = None) -> None:
        self.counters = counters
        self.pipe_ack: int | None = None  # undefined until the first full period (§4.1)
        self._acked = 0  # bytes acknowledged in the current sampling period
        self._period_start: int | None = None
        self.nvp_since: int | None = None  # when the non-validated phase began
        self.reductions = 0

    def _sample(self, now: int, srtt: int | None) -> int | None:
        """Close the sampling period if it lasted an RTT (§4.1: pipeACK sample); returns
        when the closed period began."""
        start = self._period_start
        if start is None:
            self._period_start = now
            return None
        if now - start >= max(srtt or 0, MIN_PERIOD):
            self.pipe_ack = self._acked
            self._acked = 0
            self._period_start = now
            return start
        return None

    def on_ack(self, now: int, acked: int, srtt: int | None) -> None:
        """`acked` bytes were newly acknowledged at `now`."""
        self._acked += max(acked, 0)
        self._sample(now, srtt)

    def check(self, now: int, cc: CongestionControl, srtt: int | None) -> None:
        """Before sending: follow the phase, and reduce cwnd after NVP_DURATION in the
        non-validated phase (§4.4.3)."""
        if not cc.limits:
            return
        closed = self._sample(now, srtt)
        pipe_ack = self.pipe_ack
        if pipe_ack is None or 2 * pipe_ack >= cc.cwnd:
            self.nvp_since = None  # validated (§4.3)
            return
        if self.nvp_since is None:
            # The phase began with the period that showed the window unused (an idle
            # sender's began at the last ACK).
            self.nvp_since = closed if closed is not None else now
        if now - self.nvp_since >= NVP_DURATION:
            cc.ssthresh = max(cc.ssthresh, 3 * cc.cwnd // 4)
            cc.cwnd = max(cc.cwnd // 2, default_initial_window(cc.mss))
            cc.on_cwnd_set(now)
            self.reductions += 1
            if self.counters is not None:
                self.counters["cwv_reductions"] += 1
            self.nvp_since = now

    def snapshot(self) -> dict[str, int | None]:
        return {"pipe_ack": self.pipe_ack, "nvp_since": self.nvp_since}
