"""The internet checksum (RFC 1071) and the TCP/UDP pseudo-header sums. Imports stdlib only.

The ones' complement sum of 16-bit big-endian words is computed without a per-word Python
loop: read the whole buffer as one big-endian integer (C speed) and reduce it modulo 0xFFFF.
That is the same number, because 2**16 == 1 (mod 0xFFFF) makes every 16-bit word count with
weight one, and the end-around carry of RFC 1071 §1 is exactly arithmetic modulo 0xFFFF.
The one ambiguity of that arithmetic — ones' complement has two zeros, 0x0000 and 0xFFFF —
is settled as RFC 1071's folding loop settles it: a sum of anything non-zero is never 0x0000.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

_FOLD = 0xFFFF


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The 16-bit ones' complement sum (RFC 1071 §1 step 2, not complemented) of data.

    `initial` is another such sum (for example the pseudo-header's) to add in. An odd-length
    buffer is summed as if padded with one zero byte (RFC 9293 §3.1, "Checksum").
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8  # the pad byte is the low byte of the last word
    total = value + initial
    if total == 0:
        return 0
    folded = total % _FOLD
    # 0 (mod 0xFFFF) with a non-zero total: the folding loop of RFC 1071 yields 0xFFFF.
    return folded if folded else _FOLD


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The internet checksum of data: the ones' complement of the ones' complement sum.

    Over a packet whose checksum field is already filled in (and its pseudo-header sum as
    `initial`), a correct checksum gives 0 (RFC 1071 §1 step 3).
    """
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header_sum(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, protocol: int, length: int
) -> int:
    """The ones' complement sum of the pseudo-header, to hand to `ones_sum` as `initial`.

    IPv4 (RFC 9293 §3.1): source, destination, zero, protocol, TCP length (16 bits).
    IPv6 (RFC 8200 §8.1): source, destination, upper-layer length (32 bits), zero, next
    header. Both are sums of the same numbers, so one expression serves: a 128-bit address
    as an integer contributes the sum of its eight words modulo 0xFFFF, as the length does.
    """
    total = int(src) + int(dst) + protocol + length
    if total == 0:
        return 0
    folded = total % _FOLD
    return folded if folded else _FOLD
