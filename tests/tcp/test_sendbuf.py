"""SendBuffer: a ring addressed by offset from SND.UNA."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.sendbuf import SendBuffer


def test_write_accepts_what_fits() -> None:
    b = SendBuffer(10)
    assert b.write(b"abcdef") == 6
    assert (len(b), b.free, b.capacity) == (6, 4, 10)
    assert b.write(b"ghijkl") == 4
    assert b.write(b"x") == 0
    assert b.peek(0, 100) == b"abcdefghij"


def test_empty_write() -> None:
    b = SendBuffer(4)
    assert b.write(b"") == 0
    assert len(b) == 0


def test_peek_is_relative_to_snd_una() -> None:
    b = SendBuffer(16)
    b.write(b"0123456789")
    assert b.peek(3, 4) == b"3456"
    assert b.peek(8, 10) == b"89"
    assert b.peek(10, 5) == b""
    assert b.peek(12, 5) == b""
    b.consume(4)
    assert b.peek(0, 3) == b"456"
    assert len(b) == 6


def test_peek_is_a_view_into_the_ring_until_the_bytes_are_consumed() -> None:
    """No copy on the way to the link: the view holds the bytes as long as they are
    unacknowledged (the ring reuses them only after consume)."""
    b = SendBuffer(8)
    b.write(b"abcd")
    got = b.peek(0, 4)
    assert type(got) is memoryview and got == b"abcd"
    b.write(b"efgh")  # fills the ring; the unconsumed bytes stay as they were
    assert got == b"abcd"
    b.consume(4)
    b.write(b"wxyz")  # only now may the ring reuse them
    assert got == b"wxyz"


def test_peek_across_the_ring_end_is_a_copy() -> None:
    b = SendBuffer(8)
    b.write(b"123456")
    b.consume(5)
    b.write(b"abcdef")  # "6abcdef" from index 5, wrapping after "6ab"
    got = b.peek(0, 7)
    assert type(got) is bytes and got == b"6abcdef"


def test_wraps_around_the_ring() -> None:
    b = SendBuffer(8)
    b.write(b"abcdefgh")
    b.consume(5)
    assert b.write(b"ijklmn") == 5
    assert b.peek(0, 8) == b"fghijklm"
    assert b.peek(2, 4) == b"hijk"
    b.consume(4)
    assert b.peek(0, 8) == b"jklm"
    assert b.free == 4


def test_accepts_bytearray_and_memoryview() -> None:
    b = SendBuffer(8)
    assert b.write(bytearray(b"ab")) == 2
    assert b.write(memoryview(b"cdef")[1:3]) == 2
    assert b.peek(0, 8) == b"abde"


def test_consume_all_resets_to_the_front() -> None:
    b = SendBuffer(8)
    b.write(b"abcdef")
    b.consume(6)
    assert b.write(b"12345678") == 8
    assert b.peek(0, 8) == b"12345678"


def test_consume_more_than_buffered_is_an_error() -> None:
    b = SendBuffer(8)
    b.write(b"abc")
    with pytest.raises(ValueError):
        b.consume(4)
    with pytest.raises(ValueError):
        b.consume(-1)
    with pytest.raises(ValueError):
        b.peek(-1, 2)


def test_bad_capacity() -> None:
    with pytest.raises(ValueError):
        SendBuffer(0)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.binary(max_size=40)),
        st.tuples(st.just("consume"), st.integers(0, 40)),
        st.tuples(st.just("peek"), st.tuples(st.integers(0, 40), st.integers(0, 40))),
    ),
    max_size=80,
)


@given(st.integers(1, 33), ops)
def test_matches_a_bytes_model(capacity: int, script: list[tuple[str, object]]) -> None:
    b = SendBuffer(capacity)
    model = b""
    for op, arg in script:
        if op == "write":
            assert isinstance(arg, bytes)
            n = b.write(arg)
            assert n == min(len(arg), capacity - len(model))
            model += arg[:n]
        elif op == "consume":
            assert isinstance(arg, int)
            n = min(arg, len(model))
            b.consume(n)
            model = model[n:]
        else:
            assert isinstance(arg, tuple)
            offset, length = arg
            assert b.peek(offset, length) == model[offset : offset + length]
        assert len(b) == len(model)
        assert b.free == capacity - len(model)
    assert b.peek(0, capacity) == model
