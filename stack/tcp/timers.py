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
    """The seven timers of one connection (DESIGN §2 "Timers are data").

    Only armed timers are stored (issue 14: a quiet connection holds one or none); an
    unarmed one reads as a fresh `Timer(name)`. Every change goes through arm/cancel.
    """

    __slots__ = ("_armed",)

    def __init__(self) -> None:
        self._armed: dict[str, Timer] = {}

    def __getitem__(self, name: str) -> Timer:
        timer = self._armed.get(name)
        if timer is not None:
            return timer
        if name not in TIMER_NAMES:
            raise KeyError(name)
        return Timer(name)

    def arm(self, name: str, deadline: int, reason: str, backoff: int = 0) -> None:
        t = self._armed.get(name)
        if t is None:
            if name not in TIMER_NAMES:
                raise KeyError(name)
            self._armed[name] = Timer(name, deadline, backoff, reason)
            return
        t.deadline = deadline
        t.reason = reason
        t.backoff = backoff

    def cancel(self, name: str) -> None:
        if self._armed.pop(name, None) is None and name not in TIMER_NAMES:
            raise KeyError(name)

    def cancel_all(self) -> None:
        self._armed.clear()

    def any_armed(self) -> bool:
        return bool(self._armed)

    def is_armed(self, name: str) -> bool:
        return name in self._armed

    def due(self, now: int) -> list[str]:
        """Names of the armed timers whose deadline is at or before `now`, in
        TIMER_NAMES order."""
        armed = self._armed
        if not armed:
            return []
        due = []
        for name in TIMER_NAMES:
            t = armed.get(name)
            if t is not None and t.deadline is not None and t.deadline <= now:
                due.append(name)
        return due

    def earliest(self) -> int | None:
        deadlines = [t.deadline for t in self._armed.values() if t.deadline is not None]
        return min(deadlines) if deadlines else None

    def snapshot(self, now: int, *, armed_only: bool = False) -> list[dict[str, object]]:
        """Every timer (TIMER_NAMES order), or only the armed ones."""
        armed = self._armed
        out: list[dict[str, object]] = []
        for name in TIMER_NAMES:
            t = armed.get(name)
            if t is None:
                if not armed_only:
                    out.append({"name": name, "armed": False, "deadline": None,
                                "remaining": None, "backoff": 0, "reason": ""})  # fmt: skip
                continue
            out.append({"name": name, "armed": True, "deadline": t.deadline,
                        "remaining": None if t.deadline is None else t.deadline - now,
                        "backoff": t.backoff, "reason": t.reason})  # fmt: skip
        return out
