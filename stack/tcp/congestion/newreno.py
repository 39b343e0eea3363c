"""NewReno: RFC 5681 slow start and congestion avoidance with RFC 6582 fast
recovery. Imports congestion.base.

Congestion avoidance counts bytes (RFC 5681 §3.1 (3), RFC 3465 with L = 1 SMSS in
slow start), so delayed or stretched ACKs grow cwnd as fast as per-segment ACKs.
"""

from __future__ import annotations

from stack.tcp.congestion.base import CongestionControl


class NewReno(CongestionControl):
    name = "newreno"

    def __init__(self, mss: int, *, initial_window: int | None = None) -> None:
        super().__init__(mss, initial_window=initial_window)
        self._bytes_acked = 0  # RFC 3465 §2.1 bytes_acked, congestion avoidance only
        self._rto_backed_off = False  # an RTO reduced ssthresh and nothing was ACKed since

    def on_ack(
        self, now: int, acked: int, in_flight: int, rtt: int | None, cwnd_limited: bool = True
    ) -> None:
        if acked <= 0:
            return
        self._acked_any = True
        self._rto_backed_off = False
        if not cwnd_limited:
            return  # the window was not used: the ACK does not show it is safe to grow
        if self.cwnd < self.ssthresh:
            # Slow start: cwnd += min(N, SMSS) (RFC 5681 §3.1 (2); RFC 3465 L = 1*SMSS).
            self.cwnd += min(acked, self.mss)
            return
        # Congestion avoidance: about one SMSS per RTT.  RFC 3465 §2.1: once
        # bytes_acked >= cwnd, bytes_acked -= cwnd and cwnd += SMSS.
        self._bytes_acked += acked
        if self._bytes_acked >= self.cwnd:
            self._bytes_acked -= self.cwnd
            self.cwnd += self.mss

    def on_enter_recovery(self, now: int, in_flight: int) -> None:
        # RFC 5681 §3.2 step 2 ((4)): ssthresh = max(FlightSize / 2, 2*SMSS);
        # step 3 / RFC 6582 §3.2 step 2: cwnd = ssthresh + 3*SMSS ("inflated" by the
        # three segments that left the network).
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss
        self._bytes_acked = 0

    def on_dup_ack_in_recovery(self, now: int) -> None:
        # RFC 6582 §3.2 step 3: each further duplicate ACK inflates cwnd by SMSS.
        self.cwnd += self.mss

    def on_partial_ack(self, now: int, acked: int) -> None:
        # RFC 6582 §3.2 step 5: deflate by the newly acknowledged data and add back
        # SMSS if at least SMSS was acknowledged, so about ssthresh stays in flight.
        cwnd = self.cwnd - max(acked, 0)
        if acked >= self.mss:
            cwnd += self.mss
        self.cwnd = max(cwnd, self.mss)

    def on_exit_recovery(self, now: int, in_flight: int) -> None:
        # RFC 6582 §3.2 step 6, option (1): cwnd = min(ssthresh, max(FlightSize, SMSS)
        # + SMSS), which avoids a burst when little is in flight.
        self._acked_any = True
        self.cwnd = min(self.ssthresh, max(in_flight, self.mss) + self.mss)
        self._bytes_acked = 0

    def on_rto(self, now: int, in_flight: int) -> None:
        # RFC 5681 §3.1 (4): ssthresh = max(FlightSize / 2, 2*SMSS) -- but held
        # constant when the same data times out again (the note after (4)), which
        # we detect as "no ACK since the previous RTO".
        if not self._rto_backed_off:
            self.ssthresh = max(in_flight // 2, 2 * self.mss)
            self._rto_backed_off = True
        # RFC 5681 §3.1 (5): cwnd = LW = 1 full-sized segment.
        self.cwnd = self.mss
        self._bytes_acked = 0
