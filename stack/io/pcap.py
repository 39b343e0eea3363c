"""A pcap file writer for raw IP packets (LINKTYPE_RAW = 101), and `PcapLink`, which
records every packet through any Link. Imports the standard library, stack.wire.packet
and stack.io.link.

The classic libpcap format (microsecond timestamps, little-endian) that `tcpdump -r`,
Wireshark and scapy's `rdpcap` read. The caller hands in the wall-clock time of each
packet in nanoseconds: this module reads no clock (the loop does, see io/loop.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from stack.io.link import Link
from stack.wire.packet import Packet

LINKTYPE_RAW = 101  # "raw IP; the packet begins with an IPv4 or IPv6 header" (tcpdump.org)
PCAP_MAGIC = 0xA1B2C3D4  # microsecond resolution
SNAPLEN = 65535  # the largest IPv4 packet: every packet is written whole
_GLOBAL = struct.Struct("<IHHiIII")  # magic, 2, 4, thiszone, sigfigs, snaplen, network
_RECORD = struct.Struct("<IIII")  # ts_sec, ts_usec, incl_len, orig_len


class PcapWriter:
    """Writes a pcap global header, then one record per `write(packet, wall_ns)`.

    `path` is a file name (created or truncated) or an open binary file, which the
    writer then leaves open on `close()`. `count` is the number of records written.
    """

    def __init__(self, path: str | BinaryIO, *, snaplen: int = SNAPLEN) -> None:
        if isinstance(path, str):
            self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._file = path
            self._owned = False
        self.snaplen = snaplen
        self.count = 0
        self._file.write(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))

    def write(self, packet: bytes | bytearray | memoryview, wall_ns: int) -> None:
        """Append one packet stamped `wall_ns` nanoseconds after the Unix epoch."""
        usec_total = wall_ns // 1000
        length = len(packet)
        captured = min(length, self.snaplen)
        self._file.write(
            _RECORD.pack(usec_total // 1_000_000, usec_total % 1_000_000, captured, length)
        )
        self._file.write(packet[:captured] if captured < length else packet)
        self.count += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        if self._owned:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapLink:
    """Any `Link`, with every packet both ways written to a `PcapWriter` (smoltcp's
    PcapWriter device): a capture on the stack's own interface, as `tcpdump -i pytcp0`
    would show it. With offloads a super-packet is recorded whole, as one packet of up to
    64 KiB (tcpdump shows the same on a TSO/GRO interface), and a checksum left partial
    is recorded finished, as the device puts it on the wire. Wrapped around an
    `ImpairedLink`, it records what the host sends before impairment and what it
    receives after. `clock` gives the wall-clock time in ns (handed in by the loop)."""

    def __init__(self, inner: Link, writer: PcapWriter, *, clock: Callable[[], int]) -> None:
        self.inner = inner
        self.writer = writer
        self._clock = clock
        self._dirty = False

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def next_deadline(self) -> int | None:
        inner = getattr(self.inner, "next_deadline", None)
        return inner() if inner is not None else None

    def recv(self) -> bytes | bytearray | memoryview | Packet | None:
        packet = self.inner.recv()
        if packet is not None:
            self._record(packet)
        return packet

    def send(self, packet: bytes | bytearray | memoryview | Packet) -> None:
        self._record(packet)
        self.inner.send(packet)

    def _record(self, packet: bytes | bytearray | memoryview | Packet) -> None:
        data = packet.finished() if isinstance(packet, Packet) else packet
        self.writer.write(data, self._clock())
        self._dirty = True

    def flush(self) -> None:
        """Flush the file after a batch (the loop calls it once per wake-up)."""
        if self._dirty:
            self.writer.flush()
            self._dirty = False
        inner = getattr(self.inner, "flush", None)
        if inner is not None:
            inner()

    def close(self) -> None:
        self.inner.close()
