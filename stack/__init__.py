"""pytcp's userspace TCP/IP stack. Usable without click; see DESIGN.md §2 for its layers.

Public names (from `stack.api`, imported on first use so that `import stack.wire` and
the other layers stay light): Stack, Socket, ListeningSocket, StackEnvironmentError,
TcpConfig.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ListeningSocket", "Socket", "Stack", "StackEnvironmentError", "TcpConfig"]

if TYPE_CHECKING:
    from stack.api import ListeningSocket, Socket, Stack, StackEnvironmentError, TcpConfig


def __getattr__(name: str) -> Any:
    # PEP 562: the API (and with it the whole stack) loads only when asked for.
    if name in __all__:
        from stack import api

        return getattr(api, name)
    raise AttributeError(f"module 'stack' has no attribute {name!r}")
