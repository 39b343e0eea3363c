"""The segment journal (`pytcp inspect ID --journal`): a bounded ring of the last
segments in and out of one connection. Imports tcp.seq and tcp.state.

For every arriving segment the connection calls `begin` before SEGMENT ARRIVES
(RFC 9293 §3.10.7), `tested` with the outcome of the acceptability test of
§3.10.7.4 (first) where it applies, `dropped` for each counted drop, and `end` after;
for every segment sent, `sent`.  The hooks only copy numbers: the verdict, the test's
case and what changed in the TCB are worked out by `entries()` when someone asks.

Verdicts: "dropped" (a counted drop, with its reason), "trimmed" (text partly outside
RCV.NXT .. RCV.NXT+RCV.WND, kept in part), "queued out of order" (text beyond
RCV.NXT, held for reassembly), "accepted", and "sent" for our own segments.
"""

from __future__ import annotations

from typing import Any, Protocol

from stack.tcp.seq import seq_diff
from stack.tcp.state import SYNCHRONIZED, State

DEFAULT_SIZE = 64
# The TCB fields an entry records before and after (Connection.snapshot names).
FIELDS = ("state", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2", "rcv_nxt",
          "rcv_wnd", "cwnd", "ssthresh")  # fmt: skip
_SEQ_FROM_ISS = frozenset({"snd_una", "snd_nxt", "snd_max", "snd_wl2"})
_SEQ_FROM_IRS = frozenset({"snd_wl1", "rcv_nxt"})
_FLAG_NAMES = ((2, "SYN"), (1, "FIN"), (4, "RST"), (8, "PSH"), (16, "ACK"), (32, "URG"))


class _Tcb(Protocol):
    state: State
    snd_una: int
    snd_nxt: int
    snd_max: int
    snd_wnd: int
    snd_wl1: int
    snd_wl2: int
    rcv_nxt: int
    rcv_wnd: int


class _Cc(Protocol):
    cwnd: int
    ssthresh: int


class _Seg(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def ack(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def window(self) -> int: ...
    @property
    def sack(self) -> tuple[tuple[int, int], ...]: ...
    @property
    def payload(self) -> bytes | memoryview: ...


def _state(tcb: _Tcb, cc: _Cc) -> tuple[Any, ...]:
    return (tcb.state, tcb.snd_una, tcb.snd_nxt, tcb.snd_max, tcb.snd_wnd, tcb.snd_wl1,
            tcb.snd_wl2, tcb.rcv_nxt, tcb.rcv_wnd, cc.cwnd, cc.ssthresh)  # fmt: skip


def flag_names(flags: int) -> str:
    """`SYN,ACK`, `PSH,ACK`, `FIN,ACK`, `RST`, ... (empty for none)."""
    return ",".join(name for bit, name in _FLAG_NAMES if flags & bit)


class Journal:
    """The last `size` segments of one connection (see the module docstring)."""

    __slots__ = ("_head", "_open", "_ring", "recorded", "size")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        # A list that grows to `size` entries, then is overwritten from `_head` (the
        # oldest) on: a connection that saw two segments holds two, not a deque block.
        self._ring: list[list[Any]] = []
        self._head = 0
        self._open: list[Any] | None = None
        self.recorded = 0  # segments ever journaled (the ring keeps the last `size`)

    def _keep(self, entry: list[Any]) -> None:
        ring = self._ring
        if len(ring) < self.size:
            ring.append(entry)
        else:
            ring[self._head] = entry
            self._head = (self._head + 1) % self.size
        self.recorded += 1

    # -- hooks (the connection calls these; each only copies numbers)

    def begin(self, seg: _Seg, now: int, tcb: _Tcb, cc: _Cc) -> None:
        """An arriving segment, before SEGMENT ARRIVES runs."""
        flags, length = int(seg.flags), len(seg.payload)
        # SEG.LEN counts SYN and FIN (seg_len, spelled out: the property is slow).
        self._open = [now, "in", seg.seq, seg.ack, flags, seg.window, length,
                      length + (flags & 1) + ((flags >> 1) & 1), seg.sack, _state(tcb, cc),
                      None, None, []]  # fmt: skip

    def tested(self, acceptable: bool) -> None:
        """The §3.10.7.4 acceptability test's outcome for the open segment."""
        if self._open is not None:
            self._open[11] = acceptable

    def dropped(self, reason: str) -> None:
        """A counted drop while the open segment was processed (its reason)."""
        if self._open is not None:
            self._open[12].append(reason)

    def end(self, tcb: _Tcb, cc: _Cc) -> None:
        entry = self._open
        if entry is None:
            return
        self._open = None
        entry[10] = _state(tcb, cc)
        self._keep(entry)

    def sent(self, seg: _Seg, now: int, tcb: _Tcb, cc: _Cc) -> None:
        after = _state(tcb, cc)
        flags, length = int(seg.flags), len(seg.payload)
        self._keep([now, "out", seg.seq, seg.ack, flags, seg.window, length,
                    length + (flags & 1) + ((flags >> 1) & 1), seg.sack, after, after,
                    None, []])  # fmt: skip

    # -- reading

    def entries(self, iss: int, irs: int) -> list[dict[str, Any]]:
        """The ring, oldest first, as JSON-safe dicts (docs/internals.md)."""
        ring, head = self._ring, self._head
        return [self._render(e, iss, irs) for e in (*ring[head:], *ring[:head])]

    def _render(self, e: list[Any], iss: int, irs: int) -> dict[str, Any]:
        now, way, seq, ack, flags, window, length, seg_len, sack, before, after, ok, drops = e
        incoming = way == "in"
        own, peer = (irs, iss) if incoming else (iss, irs)
        out: dict[str, Any] = {
            "time": now,
            "direction": way,
            "flags": flag_names(flags),
            "seq": seq,
            "ack": ack if flags & 16 else None,
            "rel_seq": seq_diff(seq, own),
            "rel_ack": seq_diff(ack, peer) if flags & 16 else None,
            "len": length,
            "window": window,
            "sack": [list(b) for b in sack],
            "test": None,
            "verdict": "sent",
            "reason": None,
            "changes": {},
        }
        if not incoming:
            return out
        state, rcv_nxt, rcv_wnd = before[0], before[7], before[8]
        if ok is not None:
            out["test"] = _acceptability(seq, seg_len, rcv_nxt, rcv_wnd, irs, ok)
        if drops:
            out["verdict"], out["reason"] = "dropped", ", ".join(drops)
        elif length and state in SYNCHRONIZED:
            offset = seq_diff(seq, rcv_nxt)
            if offset > 0:
                out["verdict"] = "queued out of order"
            elif offset < 0 or offset + length > rcv_wnd:
                out["verdict"] = "trimmed"
                out["reason"] = _trim_reason(offset, length, rcv_wnd)
            elif offset == 0 and seq_diff(after[7], rcv_nxt) < length:
                # in the window, but the buffer held less (Connection._retract_to_buffer)
                out["verdict"] = "trimmed"
                out["reason"] = f"{length - seq_diff(after[7], rcv_nxt)} bytes past the buffer"
            else:
                out["verdict"] = "accepted"
        else:
            out["verdict"] = "accepted"
        out["changes"] = {
            name: [str(old) if name == "state" else old, str(new) if name == "state" else new]
            for name, old, new in zip(FIELDS, before, after, strict=True)
            if old != new
        }
        return out


def _trim_reason(offset: int, length: int, wnd: int) -> str:
    parts = []
    if offset < 0:
        parts.append(f"{-offset} bytes before RCV.NXT already received")
    if offset + length > wnd:
        parts.append(f"{offset + length - max(wnd, offset, 0)} bytes beyond the window")
    return "; ".join(parts)


def _acceptability(
    seq: int, seg_len: int, nxt: int, wnd: int, irs: int, ok: bool
) -> dict[str, Any]:
    """Which of the four cases of RFC 9293 §3.10.7.4 (first) applied, with its numbers
    (relative to IRS) and whether it was met; the outcome comes from the connection."""
    if seg_len == 0:
        rule = "SEG.SEQ = RCV.NXT" if wnd == 0 else "RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND"
    elif wnd == 0:
        rule = "not acceptable: SEG.LEN > 0 and RCV.WND = 0"
    else:
        rule = ("RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND or "
                "RCV.NXT =< SEG.SEQ+SEG.LEN-1 < RCV.NXT+RCV.WND")  # fmt: skip
    case = f"SEG.LEN {'=' if seg_len == 0 else '>'} 0, RCV.WND {'=' if wnd == 0 else '>'} 0"
    values = (f"SEG.SEQ={seq_diff(seq, irs)} SEG.LEN={seg_len} RCV.NXT={seq_diff(nxt, irs)} "
              f"RCV.WND={wnd}")  # fmt: skip
    return {"case": case, "rule": rule, "values": values, "met": ok}
