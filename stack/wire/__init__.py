"""The wire layer: parse bytes into immutable views and build bytes (IPv4, IPv6, TCP, ICMP).

Imports the standard library only (DESIGN §2). `WireError` is the one exception any
parser raises on untrusted input; its `reason` is a stable slug the host counts drops by.
"""

from __future__ import annotations


class WireError(ValueError):
    """Malformed input from the network: `reason` is a stable slug, str() one human line."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message if message is not None else reason)
        self.reason = reason


# Re-exports come after WireError: the submodules import it from this package.
from stack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum  # noqa: E402
from stack.wire.icmp import IcmpEcho, IcmpError, Icmpv6Error  # noqa: E402
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, Ipv4Header  # noqa: E402
from stack.wire.ipv6 import PROTO_ICMPV6, Ipv6Header  # noqa: E402
from stack.wire.pretty import format_segment  # noqa: E402
from stack.wire.tcp import Flags, TcpSegment  # noqa: E402

__all__ = [
    "PROTO_ICMP",
    "PROTO_ICMPV6",
    "PROTO_TCP",
    "Flags",
    "IcmpEcho",
    "IcmpError",
    "Icmpv6Error",
    "Ipv4Header",
    "Ipv6Header",
    "TcpSegment",
    "WireError",
    "format_segment",
    "internet_checksum",
    "ones_sum",
    "pseudo_header_sum",
]
