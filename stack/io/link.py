"""The Link protocol (what moves whole IP packets in and out) and PairLink, an
in-memory pair of links for tests. Imports the standard library and stack.wire.packet.

A Link carries one IP packet per `send` and per `recv`: plain bytes, or a
`stack.wire.packet.Packet` with offload facts (only a link that opened with them, a
TUN with a virtio-net header, hands those out or is handed them). `fileno()` is a
descriptor that selects readable while packets are waiting (None: the loop must poll).
Wrappers (`stack.io.impair.ImpairedLink`, `stack.io.pcap.PcapLink`) are Links around
a Link; they may add `next_deadline()` (when held packets are due: the loop wakes then
and calls `recv()`) and `flush()` (called once per wake-up after the packets moved).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Protocol, runtime_checkable

from stack.wire.packet import Packet


@runtime_checkable
class Link(Protocol):
    def fileno(self) -> int | None: ...

    def recv(self) -> bytes | bytearray | memoryview | Packet | None:
        """The next waiting packet, or None when nothing is waiting (never blocks)."""
        ...

    def send(self, packet: bytes | bytearray | memoryview | Packet) -> None: ...

    def close(self) -> None: ...


class PairLink:
    """One end of an in-memory point-to-point link; make both ends with `pair()`.

    What one end sends the other receives, in order, whole. Each end has a pipe
    whose read side is its `fileno()`: it holds one byte while packets wait, so a
    selector wakes on it exactly like on a TUN descriptor. Safe to use from two
    threads (one stack per thread). Packets sent to a closed end are dropped and
    counted, as on an unplugged cable; `limit` bounds the queue the same way.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)
        self._signalled = False
        self._closed = False
        self._peer: PairLink | None = None
        self.limit = limit
        self.sent = 0
        self.received = 0
        self.dropped = 0

    @classmethod
    def pair(cls, limit: int = 4096) -> tuple[PairLink, PairLink]:
        a, b = cls(limit), cls(limit)
        a._peer, b._peer = b, a
        return a, b

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int | None:
        return None if self._closed else self._rfd

    def pending(self) -> int:
        """Packets waiting to be received at this end."""
        return len(self._queue)

    def send(self, packet: bytes | bytearray | memoryview | Packet) -> None:
        if self._closed:
            raise OSError(9, "send on a closed PairLink")  # EBADF, as a closed fd
        if isinstance(packet, Packet):  # a cable carries wire segments, checksums done
            for wire in packet.segments():
                self.send(wire)
            return
        peer = self._peer
        self.sent += 1
        if peer is None or not peer._deliver(bytes(packet)):
            self.dropped += 1

    def recv(self) -> bytes | None:
        with self._lock:
            if self._closed or not self._queue:
                return None
            packet = self._queue.popleft()
            if not self._queue and self._signalled:
                os.read(self._rfd, 1)
                self._signalled = False
        self.received += 1
        return packet

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            os.close(self._rfd)
            os.close(self._wfd)

    def _deliver(self, packet: bytes) -> bool:
        with self._lock:
            if self._closed or len(self._queue) >= self.limit:
                return False
            self._queue.append(packet)
            if not self._signalled:
                os.write(self._wfd, b"\x01")
                self._signalled = True
            return True

    def __enter__(self) -> PairLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
