"""The send buffer: bytes the application wrote, from SND.UNA on, in a bytearray
ring. Imports nothing from the stack.

Offsets are relative to SND.UNA (offset 0 is the oldest unacknowledged byte), so
the connection maps sequence numbers with `seq_diff(seq, snd_una)` and the buffer
never sees the wrap.  A SYN or FIN occupies sequence space but no buffer space: the
connection accounts for them.

A ring of one bytearray costs one copy in (write) and one copy out (peek) per byte,
done by memoryview slice assignment in C; there are no per-write or per-byte Python
objects, and acknowledged bytes are released in O(1).

Memory follows what the buffer holds, not its capacity (issue 14): the ring is
allocated on the first write, grows by doubling (from MIN_RING bytes, up to
`capacity`) when a write needs more, and is freed as soon as every byte is
acknowledged. The next allocation starts at the size the last one needed at most
(`_hint`), so a bulk sender does not regrow from MIN_RING every time it drains.

An application-limited bulk sender (`head | pytcp connect`: stdin is slower than the
network) drains its buffer to empty again and again: a fresh bytearray each time, its
pages faulted in anew, cost about a tenth of the send path. With a `pool` (the host's
RingPool, shared with the receive rings) the freed ring goes there and the next one
is taken from it; its old bytes are never read (peek sees only what was written).
"""

from __future__ import annotations

from typing import Protocol

MIN_RING = 2048  # the smallest ring allocated: a few small writes fit without regrowing


def ring_size(need: int, hint: int, capacity: int) -> int:
    """The ring size for `need` bytes: a power of two of at least MIN_RING, `hint` and
    `need`, but never above `capacity` (which need not be a power of two)."""
    size = max(MIN_RING, hint)
    while size < need:
        size *= 2
    return min(size, capacity)


class RingSource(Protocol):
    """Where freed rings go and new ones come from (stack.tcp.reassembly.RingPool)."""

    def take(self, size: int) -> bytearray: ...
    def give(self, ring: bytearray) -> None: ...


class SendBuffer:
    """Unacknowledged and unsent bytes, addressed by offset from SND.UNA."""

    __slots__ = ("_buf", "_hint", "_len", "_peak", "_pool", "_start", "capacity")

    def __init__(self, capacity: int, *, pool: RingSource | None = None) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._pool = pool
        self._buf = bytearray()  # the ring; empty (unallocated) while nothing is held
        self._start = 0  # ring index of SND.UNA's byte
        self._len = 0
        self._peak = 0  # the most bytes held since the ring was allocated
        self._hint = 0  # the ring size the last allocation needed at most

    def __len__(self) -> int:
        return self._len

    @property
    def free(self) -> int:
        return self.capacity - self._len

    @property
    def allocated(self) -> int:
        """Bytes of ring storage held now (0 when empty)."""
        return len(self._buf)

    def _reserve(self, need: int) -> None:
        """Grow the ring to hold `need` bytes, moving what it holds to the front."""
        old = self._buf
        size = ring_size(need, self._hint, self.capacity)
        pool = self._pool
        new = pool.take(size) if pool is not None else bytearray(size)
        n = self._len
        if n:
            cap = len(old)
            first = min(n, cap - self._start)
            new[:first] = old[self._start : self._start + first]
            if first < n:
                new[first:n] = old[: n - first]
        if old and pool is not None:
            pool.give(old)
        self._buf = new
        self._start = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append as much of `data` as fits; return how many bytes were taken."""
        src = memoryview(data).cast("B")
        n = min(len(src), self.capacity - self._len)
        if n == 0:
            return 0
        if self._len + n > len(self._buf):
            self._reserve(self._len + n)
        buf = self._buf
        cap = len(buf)
        end = self._start + self._len
        if end >= cap:
            end -= cap
        first = min(n, cap - end)
        buf[end : end + first] = src[:first]
        if first < n:
            buf[: n - first] = src[first:n]
        self._len += n
        if self._len > self._peak:
            self._peak = self._len
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
        cap = len(self._buf)
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
            # Everything is acknowledged: free the ring; the next write allocates one
            # as large as this one needed (so later segments are contiguous too).
            if self._buf:
                self._hint = ring_size(self._peak, 0, self.capacity)
                if self._pool is not None:
                    self._pool.give(self._buf)
                self._buf = bytearray()
                self._peak = 0
            self._start = 0
            return
        self._start += n
        if self._start >= len(self._buf):
            self._start -= len(self._buf)
