"""Ladder diagrams (`--ladder`): a trace sink that draws each connection as two columns,
pytcp and its peer, with one slanted arrow per segment. Imports the standard library;
segments come in trace events (stack.trace), read by attribute only.

Every segment is a label row (flags, relative seq/ack, length, window, the options that
matter) and a two-row arrow that descends the way the segment travels. Beside each
column the side's state is written when it changes: pytcp's from the stack's state
changes, the peer's inferred from the segments exchanged (the RFC 9293 state diagram
applied to what the peer sent and received; it is not observed). Note rows mark
retransmissions, drops with their reason, timers armed for TIME-WAIT and FIN-WAIT-2,
timers firing, and what `pytcp impair` did to a segment.

Events are buffered and drawn at the end of each loop iteration (`flush`, a loop hook),
so a segment and what happened to it on the way out are drawn together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, TextIO

TIME_WIDTH = 10  # "12.345678 "
GUTTER = 13  # a state name (SYN-RECEIVED is 12) and a space
MIN_WIDTH = 60
DEFAULT_WIDTH = 100
SYN, FIN, RST, PSH, ACK, URG = 2, 1, 4, 8, 16, 32

# ANSI colours on a terminal: pytcp's arrows, the peer's, notes, timers, states.
_COLOURS = {"out": "36", "in": "33", "drop": "31", "timer": "35", "state": "1"}


def flag_words(flags: int) -> str:
    names = [n for bit, n in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"),
                               (URG, "URG"), (ACK, "ACK")) if flags & bit]  # fmt: skip
    return ",".join(names) or "none"


def _ms(ns: int | None) -> str:
    if ns is None:
        return "-"
    seconds = ns / 1e9
    return f"{seconds:.3g}s" if seconds >= 1 else f"{ns / 1e6:.3g}ms"


@dataclass
class _Side:
    isn: int | None = None
    high: int | None = None  # highest sequence end sent (retransmission detection)
    fin: int | None = None  # sequence number of its FIN


@dataclass
class _Conn:
    name: str  # PID.N
    ours: tuple[Any, int]
    peer: tuple[Any, int]
    our_state: str = "CLOSED"
    peer_state: str = ""
    me: _Side = field(default_factory=_Side)
    them: _Side = field(default_factory=_Side)
    started: bool = False  # its header is drawn
    drawn: bool = False  # an arrow is drawn
    shown: str = ""  # our state as last written beside our column
    forced: str | None = None  # a timer fired on demand: its "fired" event is not noted
    time_wait_end: int | None = None  # deadline of our time-wait timer


class Ladder:
    """A trace sink drawing ladder diagrams on `out` (see the module docstring)."""

    def __init__(self, out: TextIO, *, width: int | None = None, colour: bool | None = None,
                 pid: int | None = None) -> None:  # fmt: skip
        self.out = out
        tty = bool(getattr(out, "isatty", lambda: False)())
        if width is None:
            width = DEFAULT_WIDTH
            if tty:
                try:
                    width = os.get_terminal_size(out.fileno()).columns
                except (OSError, ValueError, AttributeError):
                    pass
        self.width = max(width, MIN_WIDTH)
        self.colour = tty if colour is None else colour
        self.pid = os.getpid() if pid is None else pid
        self.start: int | None = None
        self.pending: list[Any] = []
        self.conns: dict[str, _Conn] = {}
        self.by_tuple: dict[tuple[str, int, str, int], _Conn] = {}
        self.last_conn: _Conn | None = None
        self.stack: Any = None
        self.failed = False

    # -- sink and hooks ------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        if event.kind in ("segment-in", "segment-out", "state", "timer", "drop", "impair"):
            self.pending.append(event)

    def attach(self, stack: Any) -> None:
        """Draw after every loop iteration of `stack`."""
        self.stack = stack
        stack.loop.add_hook(self.flush)

    def detach(self) -> None:
        if self.stack is not None:
            self.stack.loop.remove_hook(self.flush)
        self.flush()

    def flush(self) -> None:
        """Draw what the last iteration traced (a loop hook; never raises)."""
        if not self.pending or self.failed:
            self.pending = []
            return
        events, self.pending = self.pending, []
        try:
            lines = self._draw(events)
            if lines:
                self.out.write("".join(line + "\n" for line in lines))
                self.out.flush()
        except (OSError, ValueError):
            self.failed = True  # stderr is gone: the connection goes on without pictures
        except Exception as exc:  # a drawing bug must not break the stack: stop, say so once
            self.failed = True
            try:
                self.out.write(f"pytcp: warning: --ladder stopped: {type(exc).__name__}: {exc}\n")
            except (OSError, ValueError):
                pass

    # -- geometry ------------------------------------------------------------------

    @property
    def span(self) -> int:
        return self.width - TIME_WIDTH - 2 * GUTTER - 2

    def _paint(self, text: str, what: str) -> str:
        if not self.colour or not text.strip():
            return text
        return f"\x1b[{_COLOURS[what]}m{text}\x1b[0m"

    def _row(self, time: str, left: str, body: str, right: str, what: str = "out",
             left_bar: str = "|") -> str:  # fmt: skip
        state_l = self._paint(left.ljust(GUTTER - 1), "state") + " "
        state_r = " " + self._paint(right, "state") if right else ""
        line = f"{time:<{TIME_WIDTH}}{state_l}{left_bar}{self._paint(body, what)}|{state_r}"
        return line.rstrip()

    def _stamp(self, now: int) -> str:
        assert self.start is not None
        return f"{(now - self.start) / 1e9:9.6f}"

    # -- drawing -------------------------------------------------------------------

    def _draw(self, events: list[Any]) -> list[str]:
        lines: list[str] = []
        i = 0
        while i < len(events):
            event = events[i]
            if self.start is None:
                self.start = event.now
            kind = event.kind
            conn = self._conn_of(event, lines)
            if conn is None:
                i += 1
                continue
            if kind == "segment-out":
                # What `pytcp impair` did to it on the way out comes later in the batch.
                fate = None
                for later in events[i + 1 :]:
                    if later.kind == "impair" and later.fields.get("direction") == "out":
                        seg = later.fields.get("segment")
                        if seg is not None and _same(seg, event.fields["segment"]):
                            fate = later
                            later.fields = {**later.fields, "_drawn": True}
                            break
                lines += self._arrow(conn, event, "out", fate, None)
            elif kind == "segment-in":
                # State changes its processing caused belong to its arrival.
                arrival = None
                j = i + 1
                while j < len(events) and events[j].kind in ("state", "drop", "timer"):
                    e = events[j]
                    if e.now != event.now or e.conn != event.conn:
                        break
                    if e.kind == "state":
                        if (e.fields["old"], e.fields["new"]) == ("CLOSED", "LISTEN"):
                            conn.our_state = "LISTEN"  # a passive open, made for this SYN
                        else:
                            arrival = e.fields["new"]
                    j += 1
                lines += self._arrow(conn, event, "in", None, arrival)
                # drops and timers of its processing follow as notes
                for e in events[i + 1 : j]:
                    if e.kind != "state":
                        lines += self._note(conn, e)
                i = j
                continue
            elif kind == "state":
                new = event.fields["new"]
                conn.our_state = new
                # Timers armed while the segment was built are traced before it.
                nxt = next(
                    (e for e in events[i + 1 :] if e.kind != "timer" and e.conn == event.conn),
                    None,
                )
                before_arrow = (
                    nxt is not None and nxt.kind == "segment-out" and nxt.conn == event.conn
                )
                if not before_arrow and new not in ("LISTEN", "SYN-SENT"):
                    # A change no segment brought (a timer, a user call): a row of its own.
                    lines.append(self._row(self._stamp(event.now), new, " " * self.span, ""))
                    conn.shown = new
            elif kind == "impair":
                if not event.fields.get("_drawn"):
                    if event.fields.get("direction") == "in" and event.fields.get("action") in (
                        "dropped",
                        "held back",
                    ):
                        seg = event.fields.get("segment")
                        if seg is not None and event.fields.get("action") == "dropped":
                            lines += self._arrow(conn, event, "in", event, None)
                        else:
                            lines += self._note(conn, event)
                    else:
                        lines += self._note(conn, event)
            else:
                lines += self._note(conn, event)
            i += 1
        return lines

    def _conn_of(self, event: Any, lines: list[str]) -> _Conn | None:
        name = event.conn
        fields = event.fields
        seg = fields.get("segment")
        if name is None:
            if seg is None:
                return None
            src, dst = str(fields.get("src")), str(fields.get("dst"))
            key = (src, seg.src_port, dst, seg.dst_port)
            rkey = (dst, seg.dst_port, src, seg.src_port)
            conn = self.by_tuple.get(key) or self.by_tuple.get(rkey)
            return conn
        conn = self.conns.get(name)
        if conn is None:
            if seg is None:
                if event.kind == "state":
                    # Seen before any segment: remember the state; drawn on the first arrow.
                    pending = _Conn(f"{self.pid}.{name}", ("?", 0), ("?", 0))
                    pending.our_state = event.fields["new"]
                    self.conns[name] = pending
                return None
            incoming = event.kind == "segment-in" or fields.get("direction") == "in"
            src, dst = fields.get("src"), fields.get("dst")
            ours = (dst, seg.dst_port) if incoming else (src, seg.src_port)
            peer = (src, seg.src_port) if incoming else (dst, seg.dst_port)
            conn = _Conn(f"{self.pid}.{name}", ours, peer)
            self.conns[name] = conn
        if not conn.started:
            if seg is None:
                return conn if conn.ours[0] != "?" else None
            incoming = event.kind == "segment-in" or fields.get("direction") == "in"
            src, dst = fields.get("src"), fields.get("dst")
            conn.ours = (dst, seg.dst_port) if incoming else (src, seg.src_port)
            conn.peer = (src, seg.src_port) if incoming else (dst, seg.dst_port)
            conn.started = True
            self.by_tuple[(str(conn.ours[0]), conn.ours[1], str(conn.peer[0]), conn.peer[1])] = conn
            lines += self._header(conn)
        if self.last_conn is not None and self.last_conn is not conn and len(self.conns) > 1:
            lines.append(self._row("", "", f" ~ {conn.name} ~".ljust(self.span), ""))
        self.last_conn = conn
        return conn

    def _header(self, conn: _Conn) -> list[str]:
        left = f"pytcp {_endpoint(conn.ours)}"
        right = f"{_endpoint(conn.peer)}"
        pad = TIME_WIDTH + GUTTER
        title = f"{conn.name}: pytcp {_endpoint(conn.ours)} <-> peer {_endpoint(conn.peer)}"
        heads = " " * pad + left.ljust(self.span + 1) + right
        return [title, heads.rstrip()]

    def _label(self, conn: _Conn, seg: Any, way: str) -> list[str]:
        sender, receiver = (conn.me, conn.them) if way == "out" else (conn.them, conn.me)
        flags = int(seg.flags)
        length = len(seg.payload)
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if flags & SYN and sender.isn is None:
            sender.isn = seg.seq
        base = sender.isn if sender.isn is not None else seg.seq
        rel = (seg.seq - base) % 2**32
        retrans = False
        end = (rel + seg_len) % 2**32
        if seg_len:
            if sender.high is not None and end <= sender.high:
                retrans = True
            if sender.high is None or end > sender.high:
                sender.high = end
        text = flag_words(flags)
        text += f" {rel}:{rel + length}({length})" if length else f" seq {rel}"
        if flags & ACK:
            ack_base = receiver.isn if receiver.isn is not None else seg.ack
            text += f" ack {(seg.ack - ack_base) % 2**32}"
        text += f" win {seg.window}"
        opts = []
        if seg.mss is not None:
            opts.append(f"mss {seg.mss}")
        if seg.sack_permitted:
            opts.append("sackOK")
        if flags & SYN and seg.timestamps is not None:
            opts.append("TS")
        if seg.wscale is not None:
            opts.append(f"wscale {seg.wscale}")
        if seg.sack:
            sack_base = receiver.isn if receiver.isn is not None else 0
            opts.append("sack " + " ".join(
                f"{(a - sack_base) % 2**32}:{(b - sack_base) % 2**32}" for a, b in seg.sack
            ))  # fmt: skip
        if opts:
            text += f" <{','.join(opts)}>"
        if retrans:
            text += " [retransmission]"
        if flags & FIN and sender.fin is None:
            sender.fin = (seg.seq + length) % 2**32
        return _wrap(text, self.span - 2)

    def _arrow(
        self, conn: _Conn, event: Any, way: str, fate: Any, arrival: str | None
    ) -> list[str]:
        """A label row (or more) and the two rows of a slanted arrow; `fate` is what
        `pytcp impair` did to the segment, `arrival` our state after it arrived."""
        seg = event.fields["segment"]
        span, half = self.span, self.span // 2
        lost = fate is not None and fate.fields.get("action") == "dropped"
        rows = []
        for text in self._label(conn, seg, way):
            body = ("  " + text).ljust(span) if way == "out" else (text + "  ").rjust(span)
            rows.append(self._row("", "", body, "", way))
        first = not conn.drawn
        conn.drawn = True
        peer_before = conn.peer_state
        left = ""
        if first or (way == "out" and conn.our_state != conn.shown):
            left = conn.our_state
        conn.shown = conn.our_state
        if way == "out":
            if first:
                self._peer_initial(conn, seg, "out")
                peer_before = conn.peer_state
            peer_after = peer_before if lost else self._peer_receives(conn, seg)
            upper = "-" * (half - 2) + "._" + " " * (span - half)
            if lost:
                stop = (span - half) // 2
                lower = " " * half + "`" + "-" * (stop - 1) + "X" + " " * (span - half - stop - 1)
            else:
                lower = " " * half + "`" + "-" * (span - half - 2) + ">"
            rows.append(self._row(self._stamp(event.now), left, upper,
                                  peer_before if first else "", way))  # fmt: skip
            rows.append(self._row("", "", lower, peer_after if peer_after != peer_before else "",
                                  way))  # fmt: skip
        else:
            if first:
                self._peer_initial(conn, seg, "in")
                peer_before = ""
            self._peer_sends(conn, seg)
            upper = " " * (span - half) + "_." + "-" * (half - 2)
            if lost:
                stop = (span - half) // 2
                lower = " " * (span - half - stop - 1) + "X" + "-" * (stop - 1) + "'" + " " * half
            else:
                lower = "<" + "-" * (span - half - 2) + "'" + " " * half
            shown = conn.peer_state if conn.peer_state != peer_before else ""
            rows.append(self._row(self._stamp(event.now), left, upper, shown, way))
            rows.append(self._row("", arrival or "", lower, "", way))
            if arrival:
                conn.shown = conn.our_state = arrival
        if int(seg.flags) & SYN:
            who = "pytcp" if way == "out" else "peer"
            rows.append(self._note_row("", f"{who} ISN {seg.seq}", "state"))
        if fate is not None:
            rows += self._note(conn, fate)
        return rows

    def _note_row(self, stamp: str, text: str, what: str) -> str:
        return self._row(stamp, "", (" " + text).ljust(self.span), "", what, left_bar="*")

    def _peer_initial(self, conn: _Conn, seg: Any, way: str) -> None:
        """The peer's state before the first segment drawn: LISTEN when we open with a
        SYN, CLOSED when it does, otherwise (a ladder started late) ESTABLISHED."""
        flags = int(seg.flags)
        if flags & SYN and not flags & ACK:
            conn.peer_state = "LISTEN" if way == "out" else "CLOSED"
        else:
            conn.peer_state = "ESTABLISHED"

    # -- the peer's state, inferred ------------------------------------------------

    def _peer_sends(self, conn: _Conn, seg: Any) -> None:
        flags = int(seg.flags)
        state = conn.peer_state
        if flags & RST:
            state = "CLOSED"
        elif flags & SYN and not flags & ACK:
            state = "SYN-SENT"
        elif flags & FIN:
            state = {"ESTABLISHED": "FIN-WAIT-1", "SYN-RECEIVED": "FIN-WAIT-1",
                     "CLOSE-WAIT": "LAST-ACK"}.get(state, state)  # fmt: skip
        conn.peer_state = state

    def _peer_receives(self, conn: _Conn, seg: Any) -> str:
        flags = int(seg.flags)
        state = conn.peer_state
        if flags & RST:
            state = "CLOSED"
        elif flags & SYN:
            if not flags & ACK:
                state = {"LISTEN": "SYN-RECEIVED", "SYN-SENT": "SYN-RECEIVED"}.get(state, state)
            elif state == "SYN-SENT":
                state = "ESTABLISHED"
        else:
            them = conn.them
            if (
                flags & ACK
                and state == "SYN-RECEIVED"
                and them.isn is not None
                and (seg.ack - them.isn) % 2**32 >= 1
            ):
                state = "ESTABLISHED"
            fin_acked = (
                flags & ACK and them.fin is not None and 0 < (seg.ack - them.fin) % 2**32 < 2**31
            )
            if fin_acked:
                state = {"FIN-WAIT-1": "FIN-WAIT-2", "CLOSING": "TIME-WAIT",
                         "LAST-ACK": "CLOSED"}.get(state, state)  # fmt: skip
            if flags & FIN:
                state = {"ESTABLISHED": "CLOSE-WAIT", "SYN-RECEIVED": "CLOSE-WAIT",
                         "FIN-WAIT-1": "CLOSING",
                         "FIN-WAIT-2": "TIME-WAIT"}.get(state, state)  # fmt: skip
        conn.peer_state = state
        return state

    # -- notes ---------------------------------------------------------------------

    def _note(self, conn: _Conn, event: Any) -> list[str]:
        f = event.fields
        kind = event.kind
        if kind == "drop":
            text, what = f"dropped: {f.get('reason')}", "drop"
        elif kind == "timer":
            action = f.get("action")
            name = f.get("timer")
            if action == "fired":
                text = f"timer {name} fired ({f.get('reason') or '-'})"
            elif action == "forced":
                text = f"timer {name} fired on demand (pytcp timer)"
                # the "fired" that follows says the same: skip it
                conn.forced = name
            elif action == "armed" and name in ("time-wait", "fin-wait-2"):
                if name == "time-wait":
                    conn.time_wait_end = f.get("deadline")
                remaining = (f.get("deadline") or event.now) - event.now
                text = f"timer {name} armed: {_ms(remaining)} ({f.get('reason')})"
            else:
                return []
            if action == "fired" and conn.forced == name:
                conn.forced = None
                return []
            what = "timer"
        elif kind == "impair":
            left = f" ({f['left']} left)" if "left" in f else ""
            way = "from the peer" if f.get("direction") == "in" else "to the peer"
            text = f"impair {f.get('fault')}: {f.get('action')} a segment {way}{left}"
            what = "drop"
        else:
            return []
        lines = _wrap(text, self.span - 2)
        out = []
        for n, line in enumerate(lines):
            stamp = self._stamp(event.now) if n == 0 else ""
            out.append(self._row(stamp, "", (" " + line).ljust(self.span), "", what,
                                 left_bar="*"))  # fmt: skip
        return out

    def close(self) -> None:
        """Draw what is left at the end of the run, and how each connection was left."""
        self.detach()
        if self.failed or self.start is None:
            return
        now = self.stack.loop.now() if self.stack is not None else self.start
        lines = []
        for conn in self.conns.values():
            if not conn.drawn:
                continue
            if conn.our_state == "TIME-WAIT" and conn.time_wait_end is not None:
                left = _ms(max(conn.time_wait_end - now, 0))
                text = f"end of run in TIME-WAIT, {left} of 2MSL left"
            else:
                text = f"end of run: pytcp {conn.our_state}, peer {conn.peer_state or '?'}"
            if sum(c.drawn for c in self.conns.values()) > 1:
                text = f"{conn.name}: {text}"
            for n, line in enumerate(_wrap(text, self.span - 2)):
                lines.append(self._row(self._stamp(now) if n == 0 else "", "",
                                       (" " + line).ljust(self.span), "", "timer",
                                       left_bar="*"))  # fmt: skip
        try:
            self.out.write("".join(line + "\n" for line in lines))
            self.out.flush()
        except (OSError, ValueError):
            self.failed = True


def _same(a: Any, b: Any) -> bool:
    return bool(
        a.seq == b.seq
        and a.ack == b.ack
        and int(a.flags) == int(b.flags)
        and len(a.payload) == len(b.payload)
    )


def _endpoint(ep: tuple[Any, int]) -> str:
    addr = str(ep[0])
    return f"[{addr}]:{ep[1]}" if ":" in addr else f"{addr}:{ep[1]}"


def _wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width`, broken at spaces where it can be."""
    lines: list[str] = []
    while len(text) > width:
        cut = text.rfind(" ", 0, width + 1)
        if cut <= 0:
            cut = width
        lines.append(text[:cut])
        text = text[cut:].lstrip()
    lines.append(text)
    return lines
