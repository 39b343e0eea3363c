"""What a connection tells its owner: frozen dataclasses popped from
Connection.next_event(). Imports the standard library and tcp.state."""

from __future__ import annotations

from dataclasses import dataclass

from stack.tcp.state import State


@dataclass(frozen=True, slots=True)
class Established:
    """The handshake completed: the connection reached ESTABLISHED."""


@dataclass(frozen=True, slots=True)
class DataReceived:
    """`nbytes` new in-order bytes became readable."""

    nbytes: int


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer's FIN arrived: end of file after the bytes already buffered."""


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: State
    new: State


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The connection failed; `reason` is "refused", "reset", "timed out" or "unreachable"."""

    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection reached CLOSED (a complete close, a reset, an abort or a failure)."""


Event = Established | DataReceived | PeerClosed | StateChanged | ConnectionFailed | Closed
