"""RecvBuffer: in-order bytes plus the out-of-order queue, bounded by capacity."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.reassembly import MAX_OOO_RANGES, RecvBuffer


def test_in_order_insert_and_read() -> None:
    r = RecvBuffer(16)
    assert r.insert(0, b"hello") == 5
    assert (r.readable, r.free, r.window) == (5, 11, 11)
    assert r.read(3) == b"hel"
    assert r.read(10) == b"lo"
    assert r.read(10) == b""
    assert (r.readable, r.free, r.window) == (0, 16, 16)


def test_out_of_order_then_hole_filled() -> None:
    r = RecvBuffer(32)
    assert r.insert(5, b"fghij") == 0
    assert r.ooo_ranges() == [(5, 10)]
    assert (r.readable, r.free, r.window) == (0, 27, 32)
    assert r.insert(0, b"abcde") == 10
    assert r.ooo_ranges() == []
    assert r.read(100) == b"abcdefghij"


def test_ranges_merge_when_touching_or_overlapping() -> None:
    r = RecvBuffer(64)
    r.insert(10, b"k" * 5)  # [10, 15)
    r.insert(20, b"u" * 5)  # [20, 25)
    assert r.ooo_ranges() == [(10, 15), (20, 25)]
    r.insert(15, b"p" * 2)  # touches the first: [10, 17)
    assert r.ooo_ranges() == [(10, 17), (20, 25)]
    r.insert(16, b"q" * 6)  # bridges both: [10, 25)
    assert r.ooo_ranges() == [(10, 25)]
    r.insert(30, b"z")
    r.insert(2, b"c" * 3)
    assert r.ooo_ranges() == [(2, 5), (10, 25), (30, 31)]
    r.insert(0, b"ab")
    assert r.readable == 5
    assert r.ooo_ranges() == [(5, 20), (25, 26)]


def test_range_covering_several() -> None:
    r = RecvBuffer(64)
    for off in (4, 8, 12, 16):
        r.insert(off, b"x")
    assert r.insert(3, b"y" * 20) == 0
    assert r.ooo_ranges() == [(3, 23)]


def test_duplicate_segment_advances_nothing() -> None:
    r = RecvBuffer(16)
    r.insert(4, b"efgh")
    assert r.insert(4, b"efgh") == 0
    assert r.ooo_ranges() == [(4, 8)]
    assert r.insert(0, b"abcd") == 8
    assert r.insert(0, b"") == 0
    assert r.read(8) == b"abcdefgh"


def test_data_beyond_capacity_is_trimmed() -> None:
    r = RecvBuffer(8)
    assert r.insert(0, b"0123456789") == 8
    assert r.window == 0
    assert r.insert(0, b"89") == 0
    assert r.read(3) == b"012"
    assert r.window == 3
    assert r.insert(0, b"89abc") == 3
    assert r.read(100) == b"34567" + b"89a"


def test_out_of_order_beyond_window_is_trimmed_or_dropped() -> None:
    r = RecvBuffer(8)
    assert r.insert(6, b"ghij") == 0
    assert r.ooo_ranges() == [(6, 8)]
    assert r.insert(8, b"x") == 0
    assert r.insert(100, b"x") == 0
    assert r.ooo_ranges() == [(6, 8)]
    assert r.insert(0, b"abcdef") == 8
    assert r.read(8) == b"abcdefgh"


def test_wraps_around_the_ring() -> None:
    r = RecvBuffer(8)
    r.insert(0, b"abcdef")
    assert r.read(5) == b"abcde"
    assert r.window == 7
    assert r.insert(4, b"WXYZ") == 0  # positions 10..13, Z beyond the window
    assert r.ooo_ranges() == [(4, 7)]
    assert r.insert(0, b"ghij") == 7  # ring indices 6, 7, 0, 1 then 2..4
    assert r.read(8) == b"fghijWXY"
    assert r.read(8) == b""


def test_read_across_the_ring_end() -> None:
    r = RecvBuffer(6)
    r.insert(0, b"abcd")
    r.read(4)
    r.insert(0, b"efghij")
    assert r.read(6) == b"efghij"


def test_window_counts_out_of_order_data_free_does_not() -> None:
    r = RecvBuffer(100)
    r.insert(0, b"a" * 10)
    r.insert(50, b"b" * 20)
    assert (r.readable, r.window, r.free) == (10, 90, 70)


def test_range_limit_refuses_new_holes_but_takes_extensions() -> None:
    r = RecvBuffer(10_000, max_ranges=3)
    r.insert(10, b"a")
    r.insert(20, b"b")
    r.insert(30, b"c")
    assert r.insert(40, b"d") == 0
    assert r.ooo_ranges() == [(10, 11), (20, 21), (30, 31)]
    assert r.refused == 1
    r.insert(11, b"e")  # extends a range: taken
    assert r.ooo_ranges() == [(10, 12), (20, 21), (30, 31)]
    assert r.insert(0, b"f" * 5) == 5  # in order: always taken
    assert r.ooo_ranges() == [(5, 7), (15, 16), (25, 26)]


def test_default_range_limit() -> None:
    r = RecvBuffer(1 << 20)
    for i in range(MAX_OOO_RANGES + 10):
        r.insert(2 + 2 * i, b"x")
    assert len(r.ooo_ranges()) == MAX_OOO_RANGES
    assert r.refused == 10


def test_negative_offset_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        RecvBuffer(8).insert(-1, b"x")
    with pytest.raises(ValueError):
        RecvBuffer(0)


def test_accepts_memoryview() -> None:
    r = RecvBuffer(8)
    assert r.insert(0, memoryview(b"xxabcd")[2:]) == 4
    assert r.read(8) == b"abcd"


@st.composite
def segmented(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]], int]:
    data = draw(st.binary(min_size=1, max_size=300))
    segments = []
    for _ in range(draw(st.integers(1, 40))):
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start + 1, len(data)))
        segments.append((start, data[start:end]))
    # Make sure every byte is covered at least once (then shuffled and duplicated).
    cut = 0
    while cut < len(data):
        step = draw(st.integers(1, 50))
        segments.append((cut, data[cut : cut + step]))
        cut += step
    seed = draw(st.integers(0, 2**32))
    random.Random(seed).shuffle(segments)
    capacity = draw(st.integers(1, 400))
    return data, segments, capacity


@settings(max_examples=300, deadline=None)  # bounded work; no flakes on a busy box
@given(segmented(), st.integers(1, 64), st.sampled_from([1, 2, 5, 1000]))
def test_random_segmentation_reassembles_exactly(
    case: tuple[bytes, list[tuple[int, bytes]], int], read_size: int, max_ranges: int
) -> None:
    data, segments, capacity = case
    r = RecvBuffer(capacity, max_ranges=max_ranges)
    delivered = bytearray()
    nxt = 0  # RCV.NXT as a stream position, tracked the way the connection does
    pending = list(segments)
    for _ in range(len(segments) * 20 + 20):
        if nxt == len(data):
            break
        progressed = False
        for start, seg in list(pending):
            end = start + len(seg)
            if end <= nxt:
                pending.remove((start, seg))
                continue
            if start < nxt:  # the connection trims what it already has
                seg, start = seg[nxt - start :], nxt
            before = r.window
            advanced = r.insert(start - nxt, seg)
            assert advanced >= 0
            assert r.window == before - advanced
            nxt += advanced
            progressed = progressed or advanced > 0
            ranges = r.ooo_ranges()
            assert len(ranges) <= max_ranges
            for lo, hi in ranges:
                assert 0 < lo < hi <= r.window
            for (_, hi), (lo, _) in pairwise(ranges):
                assert hi < lo  # sorted, disjoint and not touching
            assert r.free == r.window - sum(hi - lo for lo, hi in ranges)
        delivered += r.read(read_size)
        if not progressed and not r.readable:
            # Window full of nothing readable cannot happen; re-send everything
            # (the peer's retransmissions) on the next pass.
            pending = list(segments)
    delivered += r.read(len(data))
    assert bytes(delivered) == data
    assert r.ooo_ranges() == []


@given(st.binary(max_size=200), st.integers(1, 300))
def test_in_order_stream_through_small_buffer(data: bytes, capacity: int) -> None:
    r = RecvBuffer(capacity)
    out = bytearray()
    i = 0
    while i < len(data):
        i += r.insert(0, data[i : i + 17])
        out += r.read(11)
    out += r.read(len(data))
    assert bytes(out) == data
