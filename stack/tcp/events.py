"""What a connection tells its owner: frozen value classes popped from
Connection.next_event(). Imports the standard library and tcp.state.

Each is what `@dataclass(frozen=True, slots=True)` would generate (field order,
`__eq__`, `__hash__`, `__repr__`, `__match_args__`, FrozenInstanceError on assignment),
written out: the decorator costs about 0.4 ms of start-up per class, and every pytcp
command imports these six.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

from stack.tcp.state import State


class _Frozen:
    """The generated methods, over the fields in `__match_args__` (their order)."""

    __slots__: tuple[str, ...] = ()
    __match_args__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


class Established(_Frozen):
    """The handshake completed: the connection reached ESTABLISHED."""

    __slots__ = ()


class DataReceived(_Frozen):
    """`nbytes` new in-order bytes became readable."""

    __slots__ = ("nbytes",)
    __match_args__ = ("nbytes",)
    nbytes: int

    def __init__(self, nbytes: int) -> None:
        object.__setattr__(self, "nbytes", nbytes)


class PeerClosed(_Frozen):
    """The peer's FIN arrived: end of file after the bytes already buffered."""

    __slots__ = ()


class StateChanged(_Frozen):
    __slots__ = ("new", "old")
    __match_args__ = ("old", "new")
    old: State
    new: State

    def __init__(self, old: State, new: State) -> None:
        object.__setattr__(self, "old", old)
        object.__setattr__(self, "new", new)


class ConnectionFailed(_Frozen):
    """The connection failed; `reason` is "refused", "reset", "timed out" or "unreachable"."""

    __slots__ = ("reason",)
    __match_args__ = ("reason",)
    reason: str

    def __init__(self, reason: str) -> None:
        object.__setattr__(self, "reason", reason)


class Closed(_Frozen):
    """The connection reached CLOSED (a complete close, a reset, an abort or a failure)."""

    __slots__ = ()


Event = Established | DataReceived | PeerClosed | StateChanged | ConnectionFailed | Closed
