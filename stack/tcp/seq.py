"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4). Imports nothing.

Every comparison of sequence numbers in the stack goes through these helpers:
`a < b` on raw numbers is wrong as soon as the space wraps.
"""

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32 (n may be negative)."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance a - b, in [-2**31, 2**31)."""
    return ((a - b + HALF) & MASK) - HALF


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def seq_max(a: int, b: int) -> int:
    return a if seq_ge(a, b) else b


def seq_min(a: int, b: int) -> int:
    return a if seq_le(a, b) else b


def in_window(x: int, start: int, size: int) -> bool:
    """start <= x < start + size, modulo 2**32 (RFC 9293 §3.4 acceptability tests)."""
    return 0 <= ((x - start) & MASK) < size


def between(left: int, x: int, right: int) -> bool:
    """left <= x <= right, modulo 2**32 (for example SND.UNA <= SEG.ACK <= SND.NXT)."""
    return ((x - left) & MASK) <= ((right - left) & MASK)
