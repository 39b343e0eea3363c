"""The send buffer: bytes the application wrote, from SND.UNA on, in a fixed
bytearray ring. Imports nothing from the stack.

Offsets are relative to SND.UNA (offset 0 is the oldest unacknowledged byte), so
the connection maps sequence numbers with `seq_diff(seq, snd_una)` and the buffer
never sees the wrap.  A SYN or FIN occupies sequence space but no buffer space: the
connection accounts for them.

A ring of one preallocated bytearray costs one copy in (write) and one copy out
(peek) per byte, done by memoryview slice assignment in C; there are no per-write
or per-byte Python objects, and acknowledged bytes are released in O(1).
"""

from __future__ import annotations


class SendBuffer:
    """Unacknowledged and unsent bytes, addressed by offset from SND.UNA."""

    __slots__ = ("_buf", "_len", "_start", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._buf = bytearray(capacity)
        self._start = 0  # ring index of SND.UNA's byte
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def free(self) -> int:
        return self.capacity - self._len

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append as much of `data` as fits; return how many bytes were taken."""
        src = memoryview(data).cast("B")
        n = min(len(src), self.capacity - self._len)
        if n == 0:
            return 0
        cap = self.capacity
        end = self._start + self._len
        if end >= cap:
            end -= cap
        first = min(n, cap - end)
        buf = self._buf
        buf[end : end + first] = src[:first]
        if first < n:
            buf[: n - first] = src[first:n]
        self._len += n
        return n

    def peek(self, offset: int, length: int) -> bytes | memoryview:
        """Up to `length` bytes starting `offset` bytes after SND.UNA (fewer near the
        end of the buffer, b"" past it).  A memoryview into the ring when the bytes lie
        in one piece (no copy: the segment's payload goes from here to the link with
        writev); valid until those bytes are consumed and the ring reused, which
        happens only once they are acknowledged, after the segment left.  Bytes that
        wrap around the ring's end come back joined (a copy)."""
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length: {offset}, {length}")
        length = min(length, self._len - offset)
        if length <= 0:
            return b""
        cap = self.capacity
        begin = self._start + offset
        if begin >= cap:
            begin -= cap
        view = memoryview(self._buf)
        if begin + length <= cap:
            return view[begin : begin + length]
        first = cap - begin
        return b"".join((view[begin:], view[: length - first]))

    def consume(self, n: int) -> None:
        """Release the first `n` bytes: SND.UNA advanced by n (data acknowledged)."""
        if not 0 <= n <= self._len:
            raise ValueError(f"cannot consume {n} of {self._len} buffered bytes")
        self._len -= n
        if self._len == 0:
            # Restart at the front so later segments are contiguous and peek
            # avoids the join.
            self._start = 0
            return
        self._start += n
        if self._start >= self.capacity:
            self._start -= self.capacity
