"""Sequence arithmetic modulo 2**32, checked at and across the wrap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.seq import between, in_window, seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt

u32 = st.integers(0, 2**32 - 1)


def test_seq_add_wraps() -> None:
    assert seq_add(2**32 - 10, 20) == 10
    assert seq_add(5, -10) == 2**32 - 5


def test_seq_comparisons_across_the_wrap() -> None:
    assert seq_lt(2**32 - 1, 0)
    assert seq_gt(3, 2**32 - 300)
    assert seq_le(7, 7) and seq_ge(7, 7)
    assert seq_diff(2, 2**32 - 2) == 4
    assert seq_diff(2**32 - 2, 2) == -4


def test_in_window_across_the_wrap() -> None:
    assert in_window(5, 2**32 - 5, 20)
    assert not in_window(15, 2**32 - 5, 20)
    assert not in_window(2**32 - 6, 2**32 - 5, 20)
    assert not in_window(0, 0, 0)


def test_between_across_the_wrap() -> None:
    assert between(2**32 - 5, 3, 10)
    assert not between(2**32 - 5, 11, 10)


@given(u32, st.integers(-(2**31) + 1, 2**31 - 1))
def test_seq_diff_inverts_seq_add(a: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), a) == n
