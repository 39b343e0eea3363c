"""Named per-connection timers as data: deadline, backoff count and reason. Imports nothing.

The connection arms and cancels them; `earliest()` is its next deadline; `due(now)`
lists the ones that expired, in TIMER_NAMES order, so firing is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMER_NAMES = (
    "retransmission",
    "syn",
    "delayed-ack",
    "persist",
    "keepalive",
    "time-wait",
    "fin-wait-2",
)


@dataclass(slots=True)
class Timer:
    name: str
    deadline: int | None = None  # ns on the caller's clock; None when not armed
    backoff: int = 0
    reason: str = ""


class TimerSet:
    """The seven timers of one connection (DESIGN §2 "Timers are data")."""

    __slots__ = ("_timers",)

    def __init__(self) -> None:
        self._timers = {name: Timer(name) for name in TIMER_NAMES}

    def __getitem__(self, name: str) -> Timer:
        return self._timers[name]

    def arm(self, name: str, deadline: int, reason: str, backoff: int = 0) -> None:
        t = self._timers[name]
        t.deadline = deadline
        t.reason = reason
        t.backoff = backoff

    def cancel(self, name: str) -> None:
        t = self._timers[name]
        t.deadline = None
        t.backoff = 0
        t.reason = ""

    def cancel_all(self) -> None:
        for name in TIMER_NAMES:
            self.cancel(name)

    def is_armed(self, name: str) -> bool:
        return self._timers[name].deadline is not None

    def due(self, now: int) -> list[str]:
        """Names of the armed timers whose deadline is at or before `now`."""
        return [
            t.name for t in self._timers.values() if t.deadline is not None and t.deadline <= now
        ]

    def earliest(self) -> int | None:
        deadlines = [t.deadline for t in self._timers.values() if t.deadline is not None]
        return min(deadlines) if deadlines else None

    def snapshot(self, now: int, *, armed_only: bool = False) -> list[dict[str, object]]:
        """Every timer (TIMER_NAMES order), or only the armed ones."""
        return [
            {
                "name": t.name,
                "armed": t.deadline is not None,
                "deadline": t.deadline,
                "remaining": None if t.deadline is None else t.deadline - now,
                "backoff": t.backoff,
                "reason": t.reason,
            }
            for t in self._timers.values()
            if not armed_only or t.deadline is not None
        ]
