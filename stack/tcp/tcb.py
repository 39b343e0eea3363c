"""The transmission control block: RFC 9293 §3.3.1 variables by their RFC names plus
the negotiated options and close flags. Imports tcp.state.

One truth (DESIGN §2): Connection reads and writes these fields, `inspect` renders
`snapshot()`; nothing keeps a second copy.  Sequence numbers are raw 32-bit values.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.tcp.state import State


@dataclass(slots=True)
class Tcb:
    state: State = State.CLOSED
    # Send sequence variables (RFC 9293 §3.3.1)
    iss: int = 0
    snd_una: int = 0
    snd_nxt: int = 0
    snd_max: int = 0  # highest sequence number sent + 1 (BSD snd_max): SND.NXT before
    # a go-back-N retransmission pulled SND.NXT back; ACKs up to it are acceptable
    snd_wnd: int = 0  # in bytes, already scaled (RFC 7323 §2.3)
    snd_wl1: int = 0
    snd_wl2: int = 0
    snd_up: int = 0
    max_snd_wnd: int = 0  # largest window the peer offered (RFC 5961 §5, 9293 3.8.6.2.1)
    snd_sml: int = 0  # end of the last short segment sent (Minshall's Nagle; Linux snd_sml)
    # Receive sequence variables
    irs: int = 0
    rcv_nxt: int = 0
    rcv_wnd: int = 0  # bytes from RCV.NXT to the right edge last advertised
    rcv_up: int = 0
    last_ack_sent: int = 0  # RFC 7323 §4.3 Last.ACK.sent
    # Options (RFC 9293 §3.7.1, RFC 7323, RFC 2018)
    mss_local: int = 536  # what our SYN announced
    mss_remote: int = 536  # what the peer's SYN announced (536 when absent)
    snd_mss: int = 536  # payload bytes per full-sized segment we send (options subtracted)
    wscale_local: int = 0  # Rcv.Wind.Shift: applied to windows we send
    wscale_remote: int = 0  # Snd.Wind.Shift: applied to windows we receive
    sack: bool = False  # both SYNs carried SACK-permitted
    timestamps: bool = False  # both SYNs carried timestamps
    ecn: bool = False  # RFC 3168 §6.1.1: ECN-setup SYN and SYN-ACK exchanged
    ts_recent: int = 0  # RFC 7323 §4.3 TS.Recent
    ts_recent_age: int = 0  # ns when TS.Recent was last set (RFC 7323 §5.5)
    # Close bookkeeping
    fin_queued: bool = False  # the application called CLOSE/shutdown: FIN follows the data
    fin_sent: bool = False
    fin_acked: bool = False
    fin_received: bool = False
    app_closed: bool = False  # the application is gone (close(), RFC 1122 4.2.2.13)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """The RFC variables, options and close flags as plain data (part of
        Connection.snapshot, docs/internals.md)."""
        return {
            "send": {
                "iss": self.iss,
                "snd_una": self.snd_una,
                "snd_nxt": self.snd_nxt,
                "snd_max": self.snd_max,
                "snd_wnd": self.snd_wnd,
                "snd_wl1": self.snd_wl1,
                "snd_wl2": self.snd_wl2,
                "snd_up": self.snd_up,
                "max_snd_wnd": self.max_snd_wnd,
                "snd_sml": self.snd_sml,
            },
            "receive": {
                "irs": self.irs,
                "rcv_nxt": self.rcv_nxt,
                "rcv_wnd": self.rcv_wnd,
                "rcv_up": self.rcv_up,
            },
            "options": {
                "mss_local": self.mss_local,
                "mss_remote": self.mss_remote,
                "snd_mss": self.snd_mss,
                "wscale_local": self.wscale_local,
                "wscale_remote": self.wscale_remote,
                "sack": self.sack,
                "timestamps": self.timestamps,
                "ecn": self.ecn,
            },
            "close": {
                "fin_sent": self.fin_sent,
                "fin_acked": self.fin_acked,
                "fin_received": self.fin_received,
                "app_closed": self.app_closed,
            },
        }
