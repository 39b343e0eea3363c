"""Congestion control (DESIGN §2): the hook interface, NewReno and CUBIC, and the
CONTROLLERS registry the connection and `--cc` choose from. Imports only its own
modules."""

from __future__ import annotations

from stack.tcp.congestion.base import (
    INFINITE_SSTHRESH,
    CongestionControl,
    NoControl,
    default_initial_window,
)
from stack.tcp.congestion.cubic import Cubic
from stack.tcp.congestion.newreno import NewReno

CONTROLLERS: dict[str, type[CongestionControl]] = {
    "newreno": NewReno,
    "cubic": Cubic,
}

__all__ = [
    "CONTROLLERS",
    "INFINITE_SSTHRESH",
    "CongestionControl",
    "Cubic",
    "NewReno",
    "NoControl",
    "default_initial_window",
]
