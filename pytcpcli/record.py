"""`--record FILE`: JSON lines of a run's trace events and TCB changes, for `pytcp plot`.
Imports the standard library; events come from stack.trace, read by attribute.

The first line is {"kind": "record", "version": 1, "pid": PID}. Then one object per
trace event, "t" in ns on the stack's monotonic clock and "conn" as `PID.N`:
segment-in / segment-out {src, dst, sport, dport, seq, ack, flags, win, len, sack, ts},
state {old, new}, timer {timer, action, deadline, reason}, drop {reason},
impair {action, fault, direction}; and after each loop iteration, for every connection
whose values moved, tcb {state, snd_una, snd_nxt, snd_wnd, rcv_nxt, rcv_wnd, cwnd,
ssthresh, in_flight, srtt, rttvar, rto, wscale_remote, wscale_local}. A file that cannot
be written ends the record with one warning; the connection goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TextIO

VERSION = 1
TCB_FIELDS = ("state", "snd_una", "snd_nxt", "snd_wnd", "rcv_nxt", "rcv_wnd", "cwnd", "ssthresh",
              "in_flight", "srtt", "rttvar", "rto", "wscale_remote", "wscale_local")  # fmt: skip


class Recorder:
    """A trace sink and loop hook writing the record (see the module docstring)."""

    def __init__(self, stream: TextIO, *, warn: Callable[[str], None] | None = None,
                 pid: int | None = None) -> None:  # fmt: skip
        self.stream = stream
        self.warn = warn
        self.pid = os.getpid() if pid is None else pid
        self.stack: Any = None
        self.failed = False
        self._last: dict[int, tuple[Any, ...]] = {}
        self._write({"kind": "record", "version": VERSION, "pid": self.pid})

    def _write(self, obj: dict[str, Any]) -> None:
        if self.failed:
            return
        try:
            self.stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
        except (OSError, ValueError) as exc:
            self.failed = True
            if self.warn is not None:
                self.warn(f"warning: --record stopped: {getattr(exc, 'strerror', None) or exc}")

    def __call__(self, event: Any) -> None:
        if self.failed:
            return
        try:
            self._event(event)
        except Exception as exc:  # a sink must not raise into the stack: stop, say so once
            self.failed = True
            if self.warn is not None:
                self.warn(f"warning: --record stopped: {type(exc).__name__}: {exc}")

    def _event(self, event: Any) -> None:
        f = event.fields
        conn = None if event.conn is None else f"{self.pid}.{event.conn}"
        obj: dict[str, Any] = {"t": event.now, "kind": event.kind, "conn": conn}
        kind = event.kind
        if kind in ("segment-in", "segment-out") or (kind == "impair" and "segment" in f):
            seg = f["segment"]
            obj.update(src=str(f["src"]), dst=str(f["dst"]), sport=seg.src_port,
                       dport=seg.dst_port, seq=seg.seq, ack=seg.ack, flags=int(seg.flags),
                       win=seg.window, len=len(seg.payload),
                       sack=[list(b) for b in seg.sack],
                       ts=list(seg.timestamps) if seg.timestamps else None)  # fmt: skip
            if seg.wscale is not None:
                obj["wscale"] = seg.wscale
        if kind == "state":
            obj.update(old=f["old"], new=f["new"])
        elif kind == "timer":
            obj.update(timer=f.get("timer"), action=f.get("action"),
                       deadline=f.get("deadline"), reason=f.get("reason"))  # fmt: skip
        elif kind == "drop":
            obj["reason"] = f.get("reason")
        elif kind == "impair":
            obj.update(action=f.get("action"), fault=f.get("fault"),
                       direction=f.get("direction"))  # fmt: skip
        elif kind not in ("segment-in", "segment-out"):
            return
        self._write(obj)

    # -- TCB changes, once per loop iteration

    def attach(self, stack: Any) -> None:
        self.stack = stack
        stack.loop.add_hook(self.sample)

    def detach(self) -> None:
        if self.stack is not None:
            self.stack.loop.remove_hook(self.sample)
            self.sample()
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def sample(self) -> None:
        """Loop hook: a tcb line for each connection whose values changed."""
        if self.failed or self.stack is None:
            return
        try:
            now = self.stack.loop.now()
            for conn in self.stack.host.connections():
                tcb, rtt, cc = conn.tcb, conn.rtt, conn.cc
                values = (str(tcb.state), tcb.snd_una, tcb.snd_nxt, tcb.snd_wnd, tcb.rcv_nxt,
                          tcb.rcv_wnd, cc.cwnd, cc.ssthresh, (tcb.snd_max - tcb.snd_una) % 2**32,
                          rtt.srtt, rtt.rttvar, rtt.rto, tcb.wscale_remote,
                          tcb.wscale_local)  # fmt: skip
                if self._last.get(conn.id) == values:
                    continue
                self._last[conn.id] = values
                obj: dict[str, Any] = {"t": now, "kind": "tcb", "conn": f"{self.pid}.{conn.id}"}
                obj.update(zip(TCB_FIELDS, values, strict=True))
                self._write(obj)
        except Exception:
            pass


def open_record(path: str) -> TextIO:
    """The record file, line-buffered so a crash loses little."""
    return open(path, "w", buffering=1, encoding="utf-8")
