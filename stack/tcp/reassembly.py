"""The receive buffer: in-order bytes for the application plus the out-of-order
queue, in one bytearray ring. Imports nothing from the stack.

The ring holds the bytes from the first unread one up to `capacity` bytes later.
Stream position p lives at ring index p % capacity, so a segment that arrives
early is copied straight to its final place and becomes readable without a second
copy when the hole before it fills (smoltcp's Assembler over a RingBuffer).  The
out-of-order data is described by sorted, disjoint, non-adjacent ranges of stream
positions (aioquic's RangeSet); callers see them as offsets from RCV.NXT.

What fits is exactly the receive window the connection can advertise: `window`
bytes from RCV.NXT (RFC 9293 §3.8.6.2: the window is the free space of the buffer);
anything beyond is trimmed, so buffer and window always agree.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

# Each out-of-order hole costs a list entry; an adversary sending one byte into
# every other position would otherwise make each insert O(window).  Beyond this
# many ranges, a segment that would open a new one is refused (it is retransmitted
# later); one that extends or joins existing ranges is always taken.  Linux
# similarly prunes its out-of-order queue under memory pressure.
MAX_OOO_RANGES = 64


class RecvBuffer:
    """Reassembly of a byte stream from segments at offsets relative to RCV.NXT."""

    __slots__ = (
        "_buf",
        "_ends",
        "_held",
        "_nxt",
        "_read",
        "_starts",
        "capacity",
        "max_ranges",
        "refused",
    )

    def __init__(self, capacity: int, *, max_ranges: int = MAX_OOO_RANGES) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.max_ranges = max_ranges
        self._buf = bytearray(capacity)
        self._read = 0  # stream position of the first unread byte
        self._nxt = 0  # stream position of RCV.NXT: end of the in-order bytes
        # Out-of-order ranges [start, end) in stream positions, all > _nxt.
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._held = 0  # bytes in those ranges
        self.refused = 0  # bytes refused because max_ranges was reached

    @property
    def readable(self) -> int:
        """In-order bytes the application has not read yet."""
        return self._nxt - self._read

    @property
    def window(self) -> int:
        """Bytes accepted from RCV.NXT on: the receive window the buffer backs."""
        return self.capacity - (self._nxt - self._read)

    @property
    def free(self) -> int:
        """capacity - readable - out-of-order bytes held."""
        return self.capacity - (self._nxt - self._read) - self._held

    def grow(self, capacity: int) -> None:
        """Enlarge the buffer to `capacity` bytes (receive autotuning); every byte held,
        in order or not, stays at its stream position.  Never shrinks."""
        old_cap = self.capacity
        if capacity <= old_cap:
            return
        old = self._buf
        start = self._read
        i = start % old_cap
        data = old[i:] + old[:i]  # stream positions start .. start + old_cap - 1
        new = bytearray(capacity)
        j = start % capacity
        first = min(old_cap, capacity - j)
        new[j : j + first] = data[:first]
        new[: old_cap - first] = data[first:]
        self._buf = new
        self.capacity = capacity

    def ooo_ranges(self) -> list[tuple[int, int]]:
        """Out-of-order data held, as sorted (start, end) offsets from RCV.NXT."""
        nxt = self._nxt
        return [(s - nxt, e - nxt) for s, e in zip(self._starts, self._ends, strict=True)]

    def insert(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Store segment text that starts `offset` bytes after RCV.NXT.

        Bytes beyond the window are trimmed; bytes already held are written again
        (TCP retransmits the same bytes).  Returns how far RCV.NXT advanced: the
        number of bytes that became readable in order.
        """
        if offset < 0:
            raise ValueError(f"offset {offset} is before RCV.NXT; trim the segment first")
        src = memoryview(data).cast("B")
        length = min(len(src), self.capacity - (self._nxt - self._read) - offset)
        if length <= 0:
            return 0
        start = self._nxt + offset
        end = start + length
        starts, ends = self._starts, self._ends
        if offset == 0 and not starts:
            # The common case: in order, nothing queued.
            self._copy(start, src, length)
            self._nxt = end
            return length
        # Ranges that overlap or touch [start, end) merge with it.
        lo = bisect_left(ends, start)
        hi = bisect_right(starts, end)
        if lo == hi and offset > 0 and len(starts) >= self.max_ranges:
            self.refused += length
            return 0
        self._copy(start, src, length)
        held = self._held
        if lo < hi:
            for i in range(lo, hi):
                held -= ends[i] - starts[i]
            start = min(start, starts[lo])
            end = max(end, ends[hi - 1])
        starts[lo:hi] = [start]
        ends[lo:hi] = [end]
        if start != self._nxt:
            self._held = held + end - start
            return 0
        # The hole at RCV.NXT is filled: the first range is now in order.
        self._held = held
        advance = end - start
        self._nxt = end
        del starts[0], ends[0]
        return advance

    def read(self, max_bytes: int) -> bytes:
        """Up to max_bytes in-order bytes, removed from the buffer."""
        n = min(max_bytes, self._nxt - self._read)
        if n <= 0:
            return b""
        cap = self.capacity
        begin = self._read % cap
        view = memoryview(self._buf)
        self._read += n
        if begin + n <= cap:
            return bytes(view[begin : begin + n])
        return b"".join((view[begin:], view[: n - (cap - begin)]))

    def _copy(self, position: int, src: memoryview, length: int) -> None:
        cap = self.capacity
        begin = position % cap
        first = min(length, cap - begin)
        buf = self._buf
        buf[begin : begin + first] = src[:first]
        if first < length:
            buf[: length - first] = src[first:length]
