"""The congestion-control interface and NoControl. Imports nothing from the stack.

A controller sees numbers, never segments: loss detection and the recovery
episodes (the phase, the recovery point, the window during recovery: PRR or RFC
6582's inflation) live in tcp/recovery.py, which calls the hooks below.  The hooks
fit any algorithm (as aioquic's congestion/base.py); each algorithm stands alone.
All sizes are bytes; `now` is ns.

Which hook is called when:
- `on_sent`: `sent` bytes of new data left; `in_flight` is the FlightSize after it.
- `on_ack`: an ACK delivered `acked` bytes outside a recovery episode; `in_flight`
  is the FlightSize after it, `rtt` a Karn-valid sample or None.  `cwnd_limited`
  says whether cwnd limited the sender in the current window (Linux
  tcp_is_cwnd_limited, RFC 7661): a window that was not used is not validated by
  ACKs, so controllers grow cwnd only when it is True.
- `on_congestion_event`: a loss starts a recovery episode (or a tail loss probe
  repaired one, RFC 8985 §7.4.2): set ssthresh (the multiplicative decrease);
  `in_flight` is the FlightSize then.  cwnd is the episode's business (PRR).
- `on_ecn`: an ECN-Echo (RFC 3168 §6.1.2), at most once per window of data: the
  same decrease, and cwnd = ssthresh at once (no retransmission to pace).
- `on_cwnd_set`: recovery set cwnd (a PRR step, RFC 6582's deflation, the end of
  an episode): a controller with a growth epoch starts a new one.
- `on_rto`: the retransmission timer expired (RFC 5681 §3.1 (4) and (5));
  `in_flight` is the FlightSize before the timeout.
- `undo`: the episode proved spurious (D-SACK, RFC 2883): restore the window.
- `set_mss`: SMSS changed (options negotiated, or path MTU discovery).
"""

from __future__ import annotations

INFINITE_SSTHRESH = 0x7FFFFFFF  # RFC 5681 §3.1: initially "arbitrarily high" (Linux's value)


def default_initial_window(mss: int) -> int:
    """IW = min(4*SMSS, max(2*SMSS, 4380)) bytes (RFC 5681 §3.1 (3), RFC 3390)."""
    return min(4 * mss, max(2 * mss, 4380))


class CongestionControl:
    """Base class: a fixed window of IW bytes; every hook a no-op.

    Subclasses override the hooks they care about.  `cwnd` and `ssthresh` are read
    by the connection directly.
    """

    name = "base"
    limits = True  # False: NoControl, whose window recovery must leave alone

    def __init__(self, mss: int, *, initial_window: int | None = None) -> None:
        if mss <= 0:
            raise ValueError(f"mss must be positive, got {mss}")
        self.mss = mss
        # Bytes, not segments; when None, RFC 5681 (3) and recomputed by set_mss
        # until the first ACK.
        self._fixed_iw = initial_window
        self.cwnd = initial_window if initial_window is not None else default_initial_window(mss)
        self.ssthresh = INFINITE_SSTHRESH
        self._acked_any = False

    def on_ack(
        self, now: int, acked: int, in_flight: int, rtt: int | None, cwnd_limited: bool = True
    ) -> None:
        self._acked_any = True

    def on_sent(self, now: int, sent: int, in_flight: int) -> None:
        pass

    def on_congestion_event(self, now: int, in_flight: int) -> None:
        pass

    def on_ecn(self, now: int, in_flight: int) -> None:
        pass

    def on_cwnd_set(self, now: int) -> None:
        pass

    def on_rto(self, now: int, in_flight: int) -> None:
        pass

    def undo(self, cwnd: int, ssthresh: int) -> None:
        pass

    def set_mss(self, mss: int) -> None:
        """Change SMSS.  Before any data is acknowledged the initial window is
        recomputed for the new SMSS (RFC 5681 (3) is in terms of SMSS); afterwards
        cwnd and ssthresh keep their size in segments, as Linux's packet-counted
        cwnd does across a path MTU change."""
        if mss <= 0:
            raise ValueError(f"mss must be positive, got {mss}")
        old = self.mss
        self.mss = mss
        if not self._acked_any:
            if self._fixed_iw is None:
                self.cwnd = default_initial_window(mss)
        else:
            self.cwnd = max(self.cwnd * mss // old, mss)
        if self.ssthresh != INFINITE_SSTHRESH:
            self.ssthresh = max(self.ssthresh * mss // old, 2 * mss)

    def snapshot(self) -> dict[str, object]:
        """algorithm, cwnd, ssthresh and `state`: the algorithm's own variables."""
        return {
            "algorithm": self.name,
            "cwnd": self.cwnd,
            "ssthresh": self.ssthresh,
            "state": self.state(),
        }

    def state(self) -> dict[str, object]:
        """The algorithm's own variables (inspect's congestion.state)."""
        return {}


class NoControl(CongestionControl):
    """No congestion control: an unbounded window, for state-machine tests where only
    the peer's window should limit sending."""

    name = "none"
    limits = False
    UNLIMITED = 1 << 62

    def __init__(self, mss: int, *, initial_window: int | None = None) -> None:
        super().__init__(mss, initial_window=initial_window)
        self.cwnd = self.UNLIMITED

    def set_mss(self, mss: int) -> None:
        if mss <= 0:
            raise ValueError(f"mss must be positive, got {mss}")
        self.mss = mss
