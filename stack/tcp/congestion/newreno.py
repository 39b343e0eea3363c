"""NewReno's window: RFC 5681 slow start and congestion avoidance and its
multiplicative decrease. Imports congestion.base.

Congestion avoidance counts bytes (RFC 5681 §3.1 (3), RFC 3465 with L = 1 SMSS in
slow start), so delayed or stretched ACKs grow cwnd as fast as per-segment ACKs.
The fast-recovery window itself (RFC 6582's inflation, or PRR with SACK) is
tcp/recovery.py's.
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

    def on_congestion_event(self, now: int, in_flight: int) -> None:
        # RFC 5681 §3.2 step 2 ((4)): ssthresh = max(FlightSize / 2, 2*SMSS).
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self._bytes_acked = 0
        self._acked_any = True

    def on_ecn(self, now: int, in_flight: int) -> None:
        # RFC 3168 §6.1.2: halve as for a loss, without the inflation of recovery.
        self.on_congestion_event(now, in_flight)
        self.cwnd = max(self.ssthresh, self.mss)

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

    def state(self) -> dict[str, object]:
        return {"bytes_acked": self._bytes_acked}

    def undo(self, cwnd: int, ssthresh: int) -> None:
        # Linux tcp_undo_cwnd_reduction with tcp_reno_undo_cwnd.
        self.cwnd = max(self.cwnd, cwnd)
        self.ssthresh = max(self.ssthresh, ssthresh)
        self._rto_backed_off = False
