"""IP fragment reassembly with bounded memory (issue 14): RFC 791 §3.2 and RFC 815 for
IPv4, RFC 8200 §4.5 and RFC 5722 for IPv6. Imports the standard library only; sans-IO
(the caller hands in `now`, ns).

RFC 1122 §3.3.2 makes reassembly a MUST for hosts. What resists fragment attacks:
- an overlap that is not an exact duplicate drops the whole datagram, and fragments of it
  that arrive later until its timeout (RFC 5722 for IPv6; Linux does the same for IPv4
  since FragmentSmack); an exact duplicate is dropped alone;
- a datagram above 65535 bytes (the ping of death), a non-last fragment whose length is
  not a multiple of 8, or a last fragment contradicting the end already known, drops it;
- at most MAX_DATAGRAMS in reassembly, MAX_FRAGMENTS each and MAX_BYTES held in all
  (Linux ipfrag_high_thresh): a fragment beyond a limit is dropped, the oldest datagram
  first making room when bytes run out; each reassembly ends TIMEOUT after its first
  fragment (Linux ipfrag_time 30 s; RFC 8200 §4.5 says 60 s for IPv6).
Every refusal returns its reason for the host to count.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable

from stack.tcp.clock import SECOND

MAX_DATAGRAMS = 64
MAX_FRAGMENTS = 64  # per datagram
MAX_BYTES = 1024 * 1024  # fragment bytes held, all datagrams together
MAX_DATAGRAM = 65535  # bytes of payload after the IPv4 header (total length is 16 bits)
TIMEOUT_V4 = 30 * SECOND  # Linux net.ipv4.ipfrag_time
TIMEOUT_V6 = 60 * SECOND  # RFC 8200 §4.5


class _Datagram:
    __slots__ = ("deadline", "ends", "held", "pieces", "starts", "total")

    def __init__(self, deadline: int) -> None:
        self.deadline = deadline
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.pieces: list[bytes] = []
        self.held = 0
        self.total: int | None = None  # known once the last fragment (MF/M clear) came


class Reassembler:
    """Fragments by datagram key (IPv4: src, dst, protocol, identification; IPv6: src,
    dst, identification); `add` returns the whole payload once complete."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, _Datagram] = {}  # oldest first
        self._dead: dict[Hashable, int] = {}  # overlapped datagrams: key -> deadline
        self.held = 0

    def __len__(self) -> int:
        return len(self._pending)

    def next_deadline(self) -> int | None:
        """When the oldest reassembly (or tombstone) times out."""
        deadlines = [d.deadline for d in self._pending.values()][:1]
        deadlines += list(self._dead.values())[:1]
        return min(deadlines) if deadlines else None

    def expire(self, now: int) -> int:
        """End the reassemblies whose time is up; returns how many were dropped."""
        expired = 0
        for key, d in list(self._pending.items()):
            if d.deadline > now:
                break  # oldest first: the rest are younger
            self._discard(key)
            expired += 1
        for key, deadline in list(self._dead.items()):
            if deadline > now:
                break
            del self._dead[key]
        return expired

    def _discard(self, key: Hashable) -> None:
        d = self._pending.pop(key)
        self.held -= d.held

    def add(
        self, key: Hashable, offset: int, more: bool, data: bytes, now: int, timeout: int
    ) -> tuple[bytes | None, str | None]:
        """One fragment of `data` at byte `offset`; `more` when others follow it.
        Returns (the reassembled payload, None) when this completed the datagram,
        (None, None) when it is held, (None, reason) when it was dropped."""
        self.expire(now)
        if key in self._dead:
            return None, "fragment-of-overlapped"
        end = offset + len(data)
        if end > MAX_DATAGRAM:
            self._kill(key, now, timeout)
            return None, "fragment-too-big"
        if more and (len(data) % 8 or not data):
            self._kill(key, now, timeout)
            return None, "fragment-bad-length"
        d = self._pending.get(key)
        if d is None:
            if len(self._pending) >= MAX_DATAGRAMS:
                return None, "fragment-limit"
            d = self._pending[key] = _Datagram(now + timeout)
        if d.total is not None and (end > d.total or (not more and end != d.total)):
            self._kill(key, now, timeout)
            return None, "fragment-overlap"
        if not more:
            if d.ends and d.ends[-1] > end:
                self._kill(key, now, timeout)
                return None, "fragment-overlap"
            d.total = end
        i = bisect_left(d.starts, offset)
        if i < len(d.starts) and d.starts[i] == offset and d.ends[i] == end:
            return None, "fragment-duplicate"  # the same fragment again: keep the first
        if (i > 0 and d.ends[i - 1] > offset) or (i < len(d.starts) and d.starts[i] < end):
            self._kill(key, now, timeout)
            return None, "fragment-overlap"
        if len(d.starts) >= MAX_FRAGMENTS:
            return None, "fragment-limit"
        while self.held + len(data) > MAX_BYTES and self._pending:
            oldest = next(iter(self._pending))
            if oldest == key:
                return None, "fragment-limit"
            self._discard(oldest)  # make room: the oldest reassembly goes
        d.starts.insert(i, offset)
        d.ends.insert(i, end)
        d.pieces.insert(i, data)
        d.held += len(data)
        self.held += len(data)
        if d.total is None or d.starts[0] != 0:
            return None, None
        for a, b in zip(d.ends, d.starts[1:], strict=False):
            if a != b:
                return None, None  # a hole remains
        if d.ends[-1] != d.total:
            return None, None
        self._discard(key)
        return b"".join(d.pieces), None

    def _kill(self, key: Hashable, now: int, timeout: int) -> None:
        """Drop the datagram and refuse its later fragments until its timeout."""
        d = self._pending.get(key)
        if d is not None:
            self._discard(key)
        if len(self._dead) >= MAX_DATAGRAMS:
            self._dead.pop(next(iter(self._dead)))
        self._dead[key] = d.deadline if d is not None else now + timeout
