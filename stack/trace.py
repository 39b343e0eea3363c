"""Trace events and the sink protocol. Imports the standard library only.

Every layer reports what it did as a `TraceEvent` stamped with the caller's `now`
(integer nanoseconds): segments in and out, state changes, timers, drops with a
reason. `--trace`, `--pcap`, `inspect` and the tests are sinks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Kinds of trace event. Fields each kind carries are listed beside it.
SEGMENT_IN = "segment-in"  # conn, segment (wire.tcp.TcpSegment), src, dst
SEGMENT_OUT = "segment-out"  # conn, segment, src, dst
STATE = "state"  # conn, old, new (State names such as "SYN-SENT")
TIMER = "timer"  # conn, timer, action ("armed" | "cancelled" | "fired"), deadline, reason
DROP = "drop"  # conn (or None), reason, and whatever identifies the packet
EVENT = "event"  # conn, event (a tcp.events object)
IMPAIR = "impair"  # conn, action ("dropped" | "delayed" | ...), fault, direction, left,
# segment, src, dst: what `pytcp impair` did to one segment (stack.io.faults)


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing that happened, at `now` ns on the caller's clock."""

    now: int
    kind: str
    conn: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


Tracer = Callable[[TraceEvent], None]
"""A sink: called once per event, must not raise."""


def null_tracer(event: TraceEvent) -> None:
    """The sink that drops everything."""


class TraceLog:
    """A sink that keeps every event in a list (tests, `inspect HOST PORT`)."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    def __call__(self, event: TraceEvent) -> None:
        self.events.append(event)

    def of_kind(self, kind: str) -> list[TraceEvent]:
        return [e for e in self.events if e.kind == kind]


def fan_out(*sinks: Tracer) -> Tracer:
    """One sink that forwards each event to every sink given."""

    def tracer(event: TraceEvent) -> None:
        for sink in sinks:
            sink(event)

    return tracer
