"""Per-connection faults for `pytcp impair ID SPEC`: a filter keyed by 4-tuple between a
host and its link. Imports the standard library, stack.wire and stack.trace.

`FaultSpec.parse("drop-next 3")` reads one fault; `Faults` holds the active ones of
every connection of one host and, sans-IO like `Impairer`, says what becomes of each
packet: `apply(packet, now, outgoing)` returns None (untouched: the fast path, also
when no fault is active) or the (deliver_at, bytes) pairs to schedule, [] for a drop.
Every impaired segment is traced (kind IMPAIR) with what was done to it.

Directions: `in` acts on segments arriving from the peer, `out` on pytcp's own, `both`
on either; every fault but `window` takes `in` unless told. Counted faults
(drop-next, drop-acks, dup-next, corrupt-next, reorder-next) end after N segments;
`delay` lasts until `clear`. `window N` is not a packet fault: the owner hands it to
the connection (`Connection.clamp_window`), so the TCB offers the clamped window and
judges arriving segments against it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from stack.trace import IMPAIR, TraceEvent, Tracer
from stack.wire import Ipv4Header, TcpSegment, WireError
from stack.wire.ipv6 import Ipv6Header

COUNTED = ("drop-next", "drop-acks", "dup-next", "corrupt-next", "reorder-next")
KINDS = (*COUNTED, "delay", "window", "clear")
DIRECTIONS = ("in", "out", "both")
MAX_COUNT = 1_000_000
MAX_DELAY_MS = 60_000
REORDER_MAX_HOLD = 200_000_000  # ns a reordered segment waits for one to overtake it
_PORTS = struct.Struct("!HH")
_MS = 1_000_000

Key = tuple[bytes, bytes, int, int]  # source address, destination address, ports


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault: its kind, its number (segments, ms, or window bytes) and direction."""

    kind: str
    value: int = 0
    direction: str = "in"

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """`drop-next 3`, `delay 50 out`, `window 0`, `clear`; ValueError with one line."""
        words = text.replace("=", " ").split()
        if not words:
            raise ValueError(f"impair: empty fault (one of {', '.join(KINDS)})")
        kind, args = words[0].lower(), words[1:]
        if kind not in KINDS:
            raise ValueError(f"impair: unknown fault {kind!r} (one of {', '.join(KINDS)})")
        if kind == "clear":
            if args:
                raise ValueError("impair: clear takes no argument")
            return cls("clear", 0, "both")
        if not args:
            what = "bytes" if kind == "window" else "milliseconds" if kind == "delay" else "N"
            raise ValueError(f"impair: {kind} needs a number ({kind} {what})")
        if not args[0].isdigit():
            raise ValueError(f"impair: {kind} {args[0]}: not a non-negative integer")
        value = int(args[0])
        direction = "out" if kind == "window" else "in"
        if len(args) > 2:
            raise ValueError(f"impair: {kind}: too many words")
        if len(args) == 2:
            if kind == "window":
                raise ValueError("impair: window clamps the window pytcp advertises; no direction")
            direction = args[1].lower()
            if direction not in DIRECTIONS:
                raise ValueError(f"impair: direction {args[1]!r} is not in, out or both")
        if kind in COUNTED and not 1 <= value <= MAX_COUNT:
            raise ValueError(f"impair: {kind} {value}: N must be 1-{MAX_COUNT}")
        if kind == "delay" and value > MAX_DELAY_MS:
            raise ValueError(f"impair: delay {value}: at most {MAX_DELAY_MS} ms")
        if kind == "window" and value > 0x3FFFFFFF:
            raise ValueError(f"impair: window {value}: at most {0x3FFFFFFF} bytes")
        return cls(kind, value, direction)

    def __str__(self) -> str:
        if self.kind == "clear":
            return "clear"
        if self.kind == "window":
            return f"window {self.value}"
        return f"{self.kind} {self.value} {self.direction}"


@dataclass(slots=True)
class _Active:
    kind: str
    direction: str
    left: int  # segments still to impair (counted kinds) or the delay in ms


class _Entry:
    """The faults of one connection and its reordered segments waiting."""

    __slots__ = ("faults", "held", "name", "out_key")

    def __init__(self, name: str, out_key: Key) -> None:
        self.name = name
        self.out_key = out_key
        self.faults: list[_Active] = []
        self.held: list[tuple[int, bool, bytes]] = []  # (until, outgoing, packet)


def _key(packet: bytes | bytearray | memoryview) -> tuple[Key, int] | None:
    """(src, dst, sport, dport) of a TCP packet and the TCP header's offset; None else."""
    if len(packet) < 40:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != 6 or len(packet) < ihl + 20:
            return None
        sport, dport = _PORTS.unpack_from(packet, ihl)
        return (bytes(packet[12:16]), bytes(packet[16:20]), sport, dport), ihl
    if version == 6 and len(packet) >= 60 and packet[6] == 6:
        sport, dport = _PORTS.unpack_from(packet, 40)
        return (bytes(packet[8:24]), bytes(packet[24:40]), sport, dport), 40
    return None


def _is_pure_ack(packet: bytes | bytearray | memoryview, tcp: int) -> bool:
    """No payload and no SYN, FIN or RST: an acknowledgment only."""
    flags = packet[tcp + 13]
    if flags & 0x07 or not flags & 0x10:
        return False
    data_offset = (packet[tcp + 12] >> 4) * 4
    if packet[0] >> 4 == 4:
        total = struct.unpack_from("!H", packet, 2)[0]
    else:
        total = 40 + struct.unpack_from("!H", packet, 4)[0]
    return total - tcp - data_offset <= 0


def _corrupt(packet: bytes | bytearray | memoryview) -> bytes:
    """One bit flipped in the last byte of the TCP segment (its payload, or its header):
    the TCP checksum fails, the IP header stays valid, so the receiver drops it as a
    bad checksum as it would a packet damaged on the way."""
    damaged = bytearray(packet)
    damaged[-1] ^= 0x01
    return bytes(damaged)


class Faults:
    """The active per-connection faults of one host (see the module docstring)."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._tracer = tracer
        self._by_key: dict[Key, tuple[_Entry, bool]] = {}  # key -> (entry, outgoing)
        self._entries: dict[str, _Entry] = {}
        self.counters: dict[str, int] = {}
        self.active = False  # any fault or held segment: apply() must look

    # -- control

    def set(self, name: str, local: tuple[Any, int], remote: tuple[Any, int],
            spec: FaultSpec) -> None:  # fmt: skip
        """Add `spec` to connection `name` (`PID.N` or the host's id) with this 4-tuple;
        `clear` removes every fault of it (held segments are released at once)."""
        laddr, raddr = ip_address(local[0]).packed, ip_address(remote[0]).packed
        out_key: Key = (laddr, raddr, local[1], remote[1])
        in_key: Key = (raddr, laddr, remote[1], local[1])
        entry = self._entries.get(name)
        if entry is None or entry.out_key != out_key:
            entry = _Entry(name, out_key)
            self._entries[name] = entry
            self._by_key[out_key] = (entry, True)
            self._by_key[in_key] = (entry, False)
        if spec.kind == "clear":
            entry.faults.clear()
            # Held segments go at once: due() finds them on the loop's next turn.
            entry.held = [(0, outgoing, packet) for _, outgoing, packet in entry.held]
        elif spec.kind == "delay":
            same = ("delay", spec.direction)
            entry.faults = [f for f in entry.faults if (f.kind, f.direction) != same]
            if spec.value:
                entry.faults.append(_Active("delay", spec.direction, spec.value))
        elif spec.kind in COUNTED:
            entry.faults.append(_Active(spec.kind, spec.direction, spec.value))
        self._refresh()

    def describe(self, name: str) -> list[dict[str, Any]]:
        """The active faults of `name`: {"fault", "direction", "left"} (segments still to
        impair) or, for delay, {"fault", "direction", "ms"}; in the order they were set."""
        entry = self._entries.get(name)
        if entry is None:
            return []
        out: list[dict[str, Any]] = []
        for f in entry.faults:
            if f.kind == "delay":
                out.append({"fault": "delay", "direction": f.direction, "ms": f.left})
            else:
                out.append({"fault": f.kind, "direction": f.direction, "left": f.left})
        return out

    def forget(self, name: str) -> None:
        """The connection is gone: its faults go with it (held segments are dropped)."""
        entry = self._entries.pop(name, None)
        if entry is None:
            return
        for key in [k for k, (e, _) in self._by_key.items() if e is entry]:
            del self._by_key[key]
        self._refresh()

    def names(self) -> list[str]:
        return list(self._entries)

    # -- the packet path

    def apply(self, packet: bytes, now: int, outgoing: bool) -> list[tuple[int, bytes]] | None:
        """What becomes of `packet` (an IP packet) at `now`; None: it passes untouched."""
        if not self.active:
            return None
        found = _key(packet)
        if found is None:
            return None
        key, tcp = found
        hit = self._by_key.get(key)
        if hit is None:
            return None
        entry, is_out = hit
        direction = "out" if is_out else "in"
        fault = None
        for f in entry.faults:
            if f.direction not in (direction, "both"):
                continue
            if f.kind == "drop-acks" and not _is_pure_ack(packet, tcp):
                continue
            if f.kind == "delay" or f.left > 0:
                fault = f
                break
        released = self._overtaken(entry, is_out, now)
        if fault is None:
            if not released:
                return None
            self._refresh()
            return [(now, packet), *released]
        kind = fault.kind
        out: list[tuple[int, bytes]]
        if kind == "delay":
            out = [(now + fault.left * _MS, packet)]
            self._trace(now, entry, direction, packet, "delayed", f"delay {fault.left} ms", None)
        else:
            fault.left -= 1
            left = fault.left
            if kind in ("drop-next", "drop-acks"):
                out = []
                self._trace(now, entry, direction, packet, "dropped", kind, left)
            elif kind == "dup-next":
                out = [(now, packet), (now, packet)]
                self._trace(now, entry, direction, packet, "duplicated", kind, left)
            elif kind == "corrupt-next":
                out = [(now, _corrupt(packet))]
                self._trace(now, entry, direction, packet, "corrupted", kind, left)
            else:  # reorder-next: held until a later segment overtakes it
                entry.held.append((now + REORDER_MAX_HOLD, is_out, packet))
                out = []
                self._trace(now, entry, direction, packet, "held back", kind, left)
            if left == 0:
                entry.faults.remove(fault)
        self._count(kind)
        self._refresh()
        return out + released

    def next_deadline(self) -> int | None:
        """When the oldest reordered segment must go even if nothing overtook it."""
        deadlines = [h[0] for e in self._entries.values() for h in e.held]
        return min(deadlines) if deadlines else None

    def due(self, now: int) -> list[tuple[bool, bytes]]:
        """Reordered segments whose wait is over: (outgoing, packet) to send on now."""
        out: list[tuple[bool, bytes]] = []
        for entry in self._entries.values():
            keep = []
            for held in entry.held:
                if held[0] <= now:
                    out.append((held[1], held[2]))
                else:
                    keep.append(held)
            entry.held = keep
        self._refresh()
        return out

    # -- internals

    def _overtaken(self, entry: _Entry, outgoing: bool, now: int) -> list[tuple[int, bytes]]:
        """Segments held for reordering in this direction: a later one has now passed."""
        if not entry.held:
            return []
        released = [(now, h[2]) for h in entry.held if h[1] == outgoing]
        if released:
            entry.held = [h for h in entry.held if h[1] != outgoing]
        return released

    def _refresh(self) -> None:
        self.active = any(e.faults or e.held for e in self._entries.values())

    def _count(self, kind: str) -> None:
        self.counters[kind] = self.counters.get(kind, 0) + 1

    def _trace(self, now: int, entry: _Entry, direction: str, packet: bytes, action: str,
               fault: str, left: int | None) -> None:  # fmt: skip
        if self._tracer is None:
            return
        fields: dict[str, Any] = {"action": action, "fault": fault, "direction": direction}
        if left is not None:
            fields["left"] = left
        try:
            ip: Ipv4Header | Ipv6Header
            if packet[0] >> 4 == 4:
                ip, payload = Ipv4Header.parse(packet)
            else:
                ip, payload = Ipv6Header.parse(packet)
            seg = TcpSegment.parse(payload, ip.src, ip.dst, verify_checksum=False)
            fields.update(segment=seg, src=ip.src, dst=ip.dst)
        except WireError:
            pass
        self._tracer(TraceEvent(now, IMPAIR, entry.name, fields))
