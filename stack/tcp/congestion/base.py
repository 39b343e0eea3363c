"""The congestion-control interface and NoControl. Imports nothing from the stack.

A controller sees numbers, never segments: the connection counts duplicate ACKs,
keeps the recovery point (RFC 6582 "recover") and decides the phase, and calls
the hooks below. All sizes are bytes; `now` is ns.

Which hook the connection calls when:
- `on_ack`: an ACK advanced SND.UNA by `acked` bytes outside fast recovery;
  `in_flight` is the FlightSize after it, `rtt` a Karn-valid sample or None.
  `cwnd_limited` says whether cwnd limited the sender in the current window (Linux
  tcp_is_cwnd_limited, RFC 7661's spirit): a window that was not used is not
  validated by ACKs, so controllers grow cwnd only when it is True.
- `on_enter_recovery`: the third duplicate ACK (RFC 5681 §3.2 step 2); `in_flight`
  is the FlightSize when it arrived.  Then the connection retransmits.
- `on_dup_ack_in_recovery`: each further duplicate ACK (RFC 6582 §3.2 step 3).
- `on_partial_ack`: an ACK below the recovery point (RFC 6582 §3.2 step 5).
- `on_exit_recovery`: the full ACK (RFC 6582 §3.2 step 6); `in_flight` after it.
- `on_rto`: the retransmission timer expired (RFC 5681 §3.1 (4) and (5));
  `in_flight` is the FlightSize before the timeout.
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

    def on_enter_recovery(self, now: int, in_flight: int) -> None:
        pass

    def on_dup_ack_in_recovery(self, now: int) -> None:
        pass

    def on_partial_ack(self, now: int, acked: int) -> None:
        pass

    def on_exit_recovery(self, now: int, in_flight: int) -> None:
        pass

    def on_rto(self, now: int, in_flight: int) -> None:
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
        return {"algorithm": self.name, "cwnd": self.cwnd, "ssthresh": self.ssthresh}


class NoControl(CongestionControl):
    """No congestion control: an unbounded window, for state-machine tests where only
    the peer's window should limit sending."""

    name = "none"
    UNLIMITED = 1 << 62

    def __init__(self, mss: int, *, initial_window: int | None = None) -> None:
        super().__init__(mss, initial_window=initial_window)
        self.cwnd = self.UNLIMITED

    def set_mss(self, mss: int) -> None:
        if mss <= 0:
            raise ValueError(f"mss must be positive, got {mss}")
        self.mss = mss
