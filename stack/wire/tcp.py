"""TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018): `TcpSegment` parse and build.

Imports the standard library, `stack.wire` (WireError) and `stack.wire.checksum`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Flags(enum.IntFlag):
    """The control bits of RFC 9293 §3.1 plus ECE/CWR (RFC 3168)."""

    FIN = 1
    SYN = 2
    RST = 4
    PSH = 8
    ACK = 16
    URG = 32
    ECE = 64
    CWR = 128


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment as values: header fields, the options we know, and the payload."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: Flags
    window: int
    urgent: int = 0
    payload: bytes | memoryview = b""
    mss: int | None = None  # option kind 2
    wscale: int | None = None  # option kind 3 (shift count as sent)
    sack_permitted: bool = False  # option kind 4
    sack: tuple[tuple[int, int], ...] = ()  # option kind 5: (left, right) edges
    timestamps: tuple[int, int] | None = None  # option kind 8: (TSval, TSecr)

    @property
    def seg_len(self) -> int:
        """RFC 9293 §3.4 SEG.LEN: payload octets plus one each for SYN and FIN."""
        return (
            len(self.payload)
            + (1 if self.flags & Flags.SYN else 0)
            + (1 if self.flags & Flags.FIN else 0)
        )
