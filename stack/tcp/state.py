"""The eleven connection states and the user-call table (RFC 9293 §3.3.2, §3.10.1-6).
Imports the standard library only.

USER_CALLS maps (state, call) to what the call does there.  A value starting with
"error: " names the error the call raises (InvalidStateError carrying the text after
the prefix); any other value names the action Connection performs.  Tests iterate
the table, `inspect` can print it, and Connection dispatches on it: a missing key is
a bug, not a default.

Actions:
  open        OPEN from CLOSED (active: send SYN; passive: enter LISTEN)
  activate    active OPEN in LISTEN: become SYN-SENT and send a SYN (RFC 9293 §3.10.1)
  queue       accept now, act once ESTABLISHED (SEND/CLOSE before the handshake ends;
              RECEIVE before any data can exist returns b"")
  send        append to the send buffer
  receive     hand over in-order bytes; b"" when none (and at EOF)
  fin         CLOSE: send FIN after the queued data (ESTABLISHED -> FIN-WAIT-1,
              CLOSE-WAIT -> LAST-ACK)
  delete      drop the TCB without sending anything (-> CLOSED)
  reset       send RST, drop the TCB (-> CLOSED)
  status      return the snapshot

Deliberate deviations from the RFC text, kept in one place:
- RECEIVE in CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT and CLOSED hands over the bytes
  still buffered and then b"" (end of file), as a socket does, where RFC 9293 says
  "error: connection closing" once the buffer is empty.  `at_eof` tells the two apart.
- SEND in LISTEN is refused: a connection here always knows its remote endpoint but
  turning a passive OPEN active is done with OPEN, not SEND.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """RFC 9293 §3.3.2 states; value and str() are the RFC's names."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value


# RFC 9293 §3.10.7.4: "Otherwise" (the synchronized states) -- an ACK is expected.
SYNCHRONIZED: frozenset[State] = frozenset(
    {
        State.SYN_RECEIVED,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)

CALLS = ("OPEN", "SEND", "RECEIVE", "CLOSE", "ABORT", "STATUS")

_NO_CONN = "error: connection does not exist"  # RFC 9293 §3.10.x, CLOSED STATE
_EXISTS = "error: connection already exists"  # §3.10.1 OPEN in any other state
_CLOSING = "error: connection closing"  # §3.10.2, §3.10.4

S = State
USER_CALLS: dict[tuple[State, str], str] = {
    # §3.10.1 OPEN
    (S.CLOSED, "OPEN"): "open",
    (S.LISTEN, "OPEN"): "activate",
    **{(s, "OPEN"): _EXISTS for s in SYNCHRONIZED | {S.SYN_SENT}},
    # §3.10.2 SEND
    (S.CLOSED, "SEND"): _NO_CONN,
    (S.LISTEN, "SEND"): "error: foreign socket unspecified",
    (S.SYN_SENT, "SEND"): "queue",
    (S.SYN_RECEIVED, "SEND"): "queue",
    (S.ESTABLISHED, "SEND"): "send",
    (S.CLOSE_WAIT, "SEND"): "send",
    **{
        (s, "SEND"): _CLOSING
        for s in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT)
    },
    # §3.10.3 RECEIVE (see the deviations above)
    (S.CLOSED, "RECEIVE"): "receive",
    (S.LISTEN, "RECEIVE"): "queue",
    (S.SYN_SENT, "RECEIVE"): "queue",
    (S.SYN_RECEIVED, "RECEIVE"): "queue",
    **{
        (s, "RECEIVE"): "receive"
        for s in (
            S.ESTABLISHED,
            S.FIN_WAIT_1,
            S.FIN_WAIT_2,
            S.CLOSE_WAIT,
            S.CLOSING,
            S.LAST_ACK,
            S.TIME_WAIT,
        )
    },
    # §3.10.4 CLOSE
    (S.CLOSED, "CLOSE"): _NO_CONN,
    (S.LISTEN, "CLOSE"): "delete",
    (S.SYN_SENT, "CLOSE"): "delete",
    (S.SYN_RECEIVED, "CLOSE"): "queue",
    (S.ESTABLISHED, "CLOSE"): "fin",
    (S.CLOSE_WAIT, "CLOSE"): "fin",
    **{
        (s, "CLOSE"): _CLOSING
        for s in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT)
    },
    # §3.10.5 ABORT
    (S.CLOSED, "ABORT"): _NO_CONN,
    (S.LISTEN, "ABORT"): "delete",
    (S.SYN_SENT, "ABORT"): "delete",
    **{
        (s, "ABORT"): "reset"
        for s in (S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT)
    },
    **{(s, "ABORT"): "delete" for s in (S.CLOSING, S.LAST_ACK, S.TIME_WAIT)},
    # §3.10.6 STATUS
    (S.CLOSED, "STATUS"): _NO_CONN,
    **{(s, "STATUS"): "status" for s in State if s is not S.CLOSED},
}
del S


def format_user_calls() -> str:
    """The table as aligned text, one state per line (for `inspect` and docs); errors
    are shown as "error: <text>"."""
    rows = [["", *CALLS]] + [[str(s), *(USER_CALLS[(s, c)] for c in CALLS)] for s in State]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
