"""What a connection tells its owner: frozen value classes popped from
Connection.next_event(). Imports tcp.state and wire.frozen.

Each is what `@dataclass(frozen=True, slots=True)` would generate (field order,
`__eq__`, `__hash__`, `__repr__`, `__match_args__`, FrozenInstanceError on assignment),
through wire.frozen.Frozen: the decorator costs about 0.4 ms of start-up per class, and
every pytcp command imports these six.
"""

from __future__ import annotations

from stack.tcp.state import State
from stack.wire.frozen import Frozen


class Established(Frozen):
    """The handshake completed: the connection reached ESTABLISHED."""

    __slots__ = ()


class DataReceived(Frozen):
    """`nbytes` new in-order bytes became readable."""

    __slots__ = ("nbytes",)
    __match_args__ = ("nbytes",)
    nbytes: int

    def __init__(self, nbytes: int) -> None:
        object.__setattr__(self, "nbytes", nbytes)


class PeerClosed(Frozen):
    """The peer's FIN arrived: end of file after the bytes already buffered."""

    __slots__ = ()


class StateChanged(Frozen):
    __slots__ = ("new", "old")
    __match_args__ = ("old", "new")
    old: State
    new: State

    def __init__(self, old: State, new: State) -> None:
        object.__setattr__(self, "old", old)
        object.__setattr__(self, "new", new)


class ConnectionFailed(Frozen):
    """The connection failed; `reason` is "refused", "reset", "timed out" or "unreachable"."""

    __slots__ = ("reason",)
    __match_args__ = ("reason",)
    reason: str

    def __init__(self, reason: str) -> None:
        object.__setattr__(self, "reason", reason)


class Closed(Frozen):
    """The connection reached CLOSED (a complete close, a reset, an abort or a failure)."""

    __slots__ = ()


Event = Established | DataReceived | PeerClosed | StateChanged | ConnectionFailed | Closed
