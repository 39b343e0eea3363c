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

Memory follows what the buffer holds, not its capacity (issue 14): the ring is
allocated when the first byte arrives, grows by doubling (MIN_RING up to `capacity`)
when a segment lands beyond it, and is freed once the application has read
everything and nothing waits out of order. Stream position p then lives at index
p % (the ring's size), and growing moves the held bytes to their new indices.

The next ring starts at the size the last ones needed (`_hint`). A bulk reader's fills
alternate: a wake-up that brought one super-packet needs 64 KiB, the next that brought
a batch needs the whole window. Shrinking the hint after each small fill made every
large one regrow by doubling, copying what it held at each step (about a tenth of the
receive path's time, kernel → `pytcp listen >/dev/null`); so the hint shrinks only
after SHRINK_AFTER small fills in a row (each needed at most half of it). An idle
connection still holds no ring: the hint is a number, not memory.

A bulk reader empties the buffer after nearly every segment, so "freed" goes to a
`RingPool` the host shares among its connections when there is one: the next ring of
that size is taken back from it instead of allocated (and its pages faulted in) anew,
which cost a third of the receive path. The pool keeps a few rings only; a ring's
old bytes are never read (only written positions are), so they need no clearing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from stack.tcp.sendbuf import ring_size

# Each out-of-order hole costs a list entry; an adversary sending one byte into
# every other position would otherwise make each insert O(window).  Beyond this
# many ranges, a segment that would open a new one is refused (it is retransmitted
# later); one that extends or joins existing ranges is always taken.  Linux
# similarly prunes its out-of-order queue under memory pressure.
MAX_OOO_RANGES = 64
POOL_PER_SIZE = 2  # rings of one size a RingPool keeps at most ...
SHRINK_AFTER = 8  # small fills in a row before the next ring is allocated smaller
POOL_BYTES = 16 * 1024 * 1024  # ... and bytes in all: a bulk reader's ring grows by
# doubling while its reader lags (64 KiB ... 4 MiB), and each size comes back


class RingPool:
    """Freed receive rings kept for reuse by size, at most POOL_PER_SIZE of a size and
    POOL_BYTES in all; past that a freed ring is let go."""

    __slots__ = ("_free", "held", "rings")

    def __init__(self) -> None:
        self._free: dict[int, list[bytearray]] = {}
        self.rings = 0
        self.held = 0  # bytes of the rings kept

    def take(self, size: int) -> bytearray:
        """A ring of `size` bytes: a kept one (old contents left in place) or a new one."""
        kept = self._free.get(size)
        if kept:
            self.rings -= 1
            self.held -= size
            return kept.pop()
        return bytearray(size)

    def give(self, ring: bytearray) -> None:
        size = len(ring)
        if not size or self.held + size > POOL_BYTES:
            return
        kept = self._free.setdefault(size, [])
        if len(kept) < POOL_PER_SIZE:
            kept.append(ring)
            self.rings += 1
            self.held += size


class RecvBuffer:
    """Reassembly of a byte stream from segments at offsets relative to RCV.NXT."""

    __slots__ = (
        "_buf",
        "_ends",
        "_held",
        "_hint",
        "_nxt",
        "_peak",
        "_pool",
        "_read",
        "_small",
        "_starts",
        "capacity",
        "max_ranges",
        "refused",
    )

    def __init__(
        self, capacity: int, *, max_ranges: int = MAX_OOO_RANGES, pool: RingPool | None = None
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.max_ranges = max_ranges
        self._pool = pool  # where freed rings go and new ones come from (None: the heap)
        self._buf = bytearray()  # the ring; empty (unallocated) while nothing is held
        self._peak = 0  # the largest extent held since the ring was allocated
        self._hint = 0  # the ring size the next allocation starts at
        self._small = 0  # fills in a row that needed at most half of _hint
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
        """Enlarge the buffer to `capacity` bytes (receive autotuning). The ring follows
        what is held (it grows on demand, stream positions kept), so only the limit
        moves. Never shrinks."""
        if capacity > self.capacity:
            self.capacity = capacity

    @property
    def allocated(self) -> int:
        """Bytes of ring storage held now (0 when empty)."""
        return len(self._buf)

    def ooo_ranges(self) -> list[tuple[int, int]]:
        """Out-of-order data held, as sorted (start, end) offsets from RCV.NXT."""
        if not self._starts:
            return []  # the common case, asked several times a segment
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
        if end - self._read > len(self._buf):
            self._reserve(end - self._read)
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
            self._release_if_empty()
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
        cap = len(self._buf)
        begin = self._read % cap
        view = memoryview(self._buf)
        self._read += n
        if begin + n <= cap:
            out = bytes(view[begin : begin + n])
        else:
            out = b"".join((view[begin:], view[: n - (cap - begin)]))
        del view
        self._release_if_empty()
        return out

    def _extent(self) -> int:
        """Stream position just past the last byte held (in order or not)."""
        return self._ends[-1] if self._ends else self._nxt

    def _reserve(self, need: int) -> None:
        """Grow the ring to cover `need` bytes from the first unread one, moving the
        bytes held (gaps between out-of-order ranges included) to their new indices."""
        old = self._buf
        size = ring_size(need, self._hint, self.capacity)
        pool = self._pool
        new = pool.take(size) if pool is not None else bytearray(size)
        held = self._extent() - self._read
        if held and old:
            old_cap = len(old)
            begin = self._read % old_cap
            first = min(held, old_cap - begin)
            data = memoryview(old)
            self._buf = new
            self._copy(self._read, data[begin : begin + first], first)
            if first < held:
                self._copy(self._read + first, data[: held - first], held - first)
            del data
        if old and pool is not None:
            pool.give(old)
        self._buf = new
        if need > self._peak:
            self._peak = need

    def _release_if_empty(self) -> None:
        """Free the ring once nothing is held: all read, nothing out of order."""
        if self._buf and self._read == self._nxt and not self._starts:
            needed = ring_size(self._peak, 0, self.capacity)
            if needed >= self._hint:
                self._hint, self._small = needed, 0
            elif needed * 2 > self._hint:
                self._small = 0  # close enough: keep the larger size
            else:
                self._small += 1
                if self._small >= SHRINK_AFTER:
                    self._hint, self._small = needed, 0
            if self._pool is not None:
                self._pool.give(self._buf)
            self._buf = bytearray()
            self._peak = 0

    def _copy(self, position: int, src: memoryview, length: int) -> None:
        cap = len(self._buf)
        begin = position % cap
        first = min(length, cap - begin)
        buf = self._buf
        buf[begin : begin + first] = src[:first]
        if first < length:
            buf[: length - first] = src[first:length]
