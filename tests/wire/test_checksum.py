"""The internet checksum against RFC 1071's worked example and a word-by-word reference."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum


def reference_sum(data: bytes) -> int:
    """RFC 1071 §4.1's loop, literally: add 16-bit words, fold the carries."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_rfc1071_example() -> None:
    # RFC 1071 §3 "Numerical Examples": 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0xFFFF),
        (b"\0\0\0", 0xFFFF),
        (b"\xff\xff", 0x0000),  # sum 0xFFFF: the "negative zero" stays 0xFFFF
        (b"\xff\xff\xff\xff", 0x0000),
        (b"\x01", 0xFEFF),  # odd length: padded on the right
        (b"\x00\x01\xff\xfe", 0x0000),  # 0x0001 + 0xFFFE = 0xFFFF
    ],
)
def test_edge_cases(data: bytes, expected: int) -> None:
    assert internet_checksum(data) == expected
    assert internet_checksum(data) == ~reference_sum(data) & 0xFFFF


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=0xFFFF))
def test_matches_the_reference_loop(data: bytes, initial: int) -> None:
    expected = reference_sum(data) + initial
    while expected >> 16:
        expected = (expected & 0xFFFF) + (expected >> 16)
    assert ones_sum(data, initial) == expected


@given(st.binary(min_size=1, max_size=500), st.binary(max_size=500))
def test_sums_of_even_halves_add(head: bytes, tail: bytes) -> None:
    if len(head) % 2:
        head += b"\x5a"
    assert ones_sum(head + tail) == ones_sum(tail, ones_sum(head))


def test_memoryview_and_bytearray_give_the_same_sum() -> None:
    data = bytes(range(256)) * 300 + b"\x07"
    assert internet_checksum(memoryview(data)) == internet_checksum(data)
    assert internet_checksum(bytearray(data)) == internet_checksum(data)
    assert internet_checksum(memoryview(data)[3:]) == internet_checksum(data[3:])


def test_64k_payload() -> None:
    data = bytes(range(256)) * 256
    assert len(data) == 65536
    assert internet_checksum(data) == ~reference_sum(data) & 0xFFFF


def test_pseudo_header_ipv4() -> None:
    src, dst = IPv4Address("10.77.0.2"), IPv4Address("10.77.0.1")
    raw = src.packed + dst.packed + bytes((0, 6)) + (40).to_bytes(2, "big")
    assert pseudo_header_sum(src, dst, 6, 40) == reference_sum(raw)


def test_pseudo_header_ipv6() -> None:
    # RFC 8200 §8.1: 32-bit upper-layer length, then three zero bytes and next header.
    src, dst = IPv6Address("fd77::2"), IPv6Address("fd77:ffff::1:0:ffff")
    raw = src.packed + dst.packed + (70000).to_bytes(4, "big") + bytes((0, 0, 0, 6))
    assert pseudo_header_sum(src, dst, 6, 70000) == reference_sum(raw)
