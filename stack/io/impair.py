"""Seeded link impairment: loss, duplication, reordering, delay, jitter, corruption.

`ImpairSpec` is the parsed form of `--impair SPEC`; `Impairer` applies it to one
packet at a time, sans-IO: the caller hands in `now` and gets back the deliveries
(time, bytes) to schedule, so the event loop and the simulation tests drive it the
same way. `ImpairedLink` wraps any Link with one per direction. Imports the standard
library (`random` is allowed in `io/`), the time units of `stack.tcp.clock`,
`stack.wire.packet` and `stack.io.link`.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from stack.io.link import Link
from stack.tcp.clock import MS, SECOND, US
from stack.wire.packet import Packet

# Keys of a spec, in the order `str(spec)` prints them.
RATE_KEYS = ("loss", "dup", "reorder", "corrupt")
DURATION_KEYS = ("delay", "jitter", "gap")
SEED_KEYS = ("seed", "seed-in")
KEYS = (*RATE_KEYS, *DURATION_KEYS, *SEED_KEYS)

# A reordered packet is held back by `gap`; without one given, by the base delay,
# and at least this long, so that packets sent after it overtake it.
MIN_REORDER_GAP = 1 * MS

_UNITS = {"ns": 1, "us": US, "µs": US, "ms": MS, "s": SECOND}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s)$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _parse_rate(key: str, text: str) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05; anything else or outside [0, 1] is an error."""
    if text.endswith("%"):
        body = text[:-1]
        if not _NUMBER.match(body):
            raise ValueError(f"impair: {key}={text}: not a percentage (try {key}=5%)")
        value = float(body) / 100
    elif _NUMBER.match(text):
        value = float(text)
    else:
        raise ValueError(f"impair: {key}={text}: not a rate (try {key}=5% or {key}=0.05)")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"impair: {key}={text}: must be between 0% and 100%")
    return value


def _parse_duration(key: str, text: str) -> int:
    """'20ms' -> 20_000_000 ns; '0' is allowed bare, any other number needs a unit."""
    if text == "0":
        return 0
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"impair: {key}={text}: not a duration (try {key}=20ms; units ns us ms s)")
    return round(float(m.group(1)) * _UNITS[m.group(2)])


def _format_rate(value: float) -> str:
    return f"{value * 100:g}%"


def _format_duration(ns: int) -> str:
    for unit, size in (("s", SECOND), ("ms", MS), ("us", US)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


@dataclass(frozen=True, slots=True)
class ImpairSpec:
    """What to do to packets: rates are probabilities in [0, 1], durations ns."""

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: int = 0
    jitter: int = 0
    gap: int | None = None  # extra hold of a reordered packet; None: max(delay, 1 ms)
    seed: int | None = None  # for the caller's random.Random; None: not reproducible
    # The incoming direction's own seed (`seed-in=N`); None: derived from `seed`.  Two
    # runs that move data in opposite directions give the data the same draws with
    # seed=S,seed-in=T on one and seed=T,seed-in=S on the other.
    seed_in: int | None = None

    @classmethod
    def parse(cls, text: str) -> ImpairSpec:
        """Parse "loss=5%,dup=1%,reorder=2%,delay=20ms,jitter=5ms,corrupt=0.1%,seed=7".

        Raises ValueError with one line the CLI can print as it is.
        """
        values: dict[str, object] = {}
        items = [item.strip() for item in text.split(",")]
        if not text.strip():
            raise ValueError("impair: empty spec (try loss=5%,seed=1)")
        for item in items:
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise ValueError(f"impair: {item!r}: expected key=value")
            if key not in KEYS:
                raise ValueError(f"impair: unknown key {key!r} (known: {', '.join(KEYS)})")
            if key.replace("-", "_") in values:
                raise ValueError(f"impair: {key} given twice")
            if key in RATE_KEYS:
                values[key] = _parse_rate(key, value)
            elif key in DURATION_KEYS:
                values[key] = _parse_duration(key, value)
            else:
                if not value.isdigit():
                    raise ValueError(f"impair: {key}={value}: not a non-negative integer")
                values[key.replace("-", "_")] = int(value)
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        """The canonical spec text; parse(str(spec)) == spec."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in RATE_KEYS and value:
                parts.append(f"{f.name}={_format_rate(value)}")
            elif f.name in DURATION_KEYS and value:
                parts.append(f"{f.name}={_format_duration(value)}")
            elif f.name in ("seed", "seed_in") and value is not None:
                parts.append(f"{f.name.replace('_', '-')}={value}")
        return ",".join(parts)

    @property
    def reorder_gap(self) -> int:
        return self.gap if self.gap is not None else max(self.delay, MIN_REORDER_GAP)


class Impairer:
    """Applies an `ImpairSpec` to packets, drawing every choice from the `rng` given.

    The same spec, seed and sequence of `apply` calls give the same deliveries.
    """

    def __init__(self, spec: ImpairSpec, rng: random.Random | None = None) -> None:
        self.spec = spec
        self.rng = rng if rng is not None else random.Random(spec.seed)
        self.counters: dict[str, int] = {
            "packets": 0,
            "lost": 0,
            "duplicated": 0,
            "reordered": 0,
            "corrupted": 0,
            "delivered": 0,
        }

    def apply(self, packet: bytes, now: int) -> list[tuple[int, bytes]]:
        """What becomes of `packet` sent at `now`: (deliver_at, bytes) pairs.

        [] when it is lost; two pairs when it is duplicated (each copy delayed,
        reordered and corrupted on its own draws).
        """
        spec, rng, counters = self.spec, self.rng, self.counters
        counters["packets"] += 1
        if spec.loss and rng.random() < spec.loss:
            counters["lost"] += 1
            return []
        copies = 1
        if spec.dup and rng.random() < spec.dup:
            counters["duplicated"] += 1
            copies = 2
        out = []
        for _ in range(copies):
            out.append((self._deliver_at(now), self._maybe_corrupt(packet)))
        counters["delivered"] += copies
        return out

    def _deliver_at(self, now: int) -> int:
        spec, rng = self.spec, self.rng
        at = now + spec.delay
        if spec.jitter:
            # Uniform in [-jitter, +jitter] around the base delay, never before `now`.
            at = max(now, at + rng.randint(-spec.jitter, spec.jitter))
        if spec.reorder and rng.random() < spec.reorder:
            self.counters["reordered"] += 1
            at += spec.reorder_gap
        return at

    def _maybe_corrupt(self, packet: bytes) -> bytes:
        spec, rng = self.spec, self.rng
        if not (spec.corrupt and packet and rng.random() < spec.corrupt):
            return packet
        self.counters["corrupted"] += 1
        bit = rng.randrange(len(packet) * 8)
        damaged = bytearray(packet)
        damaged[bit >> 3] ^= 1 << (bit & 7)
        return bytes(damaged)


def wire_packets(packet: bytes | bytearray | memoryview | Packet) -> list[bytes]:
    """What `packet` is on a wire: a super-packet is the MSS-sized segments the kernel
    would cut it into (software GSO), each with its checksums done; a packet whose
    checksum was left partial is finished; plain bytes stay as they are."""
    if isinstance(packet, Packet):
        return packet.segments()
    return [bytes(packet)]


class ImpairedLink:
    """Any `Link` with an `Impairer` on each direction (smoltcp's FaultInjector).

    Impairment acts on what a wire would carry: a GSO super-packet is cut into its
    MSS-sized segments first (`wire_packets`), and each one is lost, duplicated,
    reordered, delayed or corrupted on its own draws, so `--impair loss=1%` means 1 % of
    wire segments whether offloads are on or off. Segments it delivers leave as plain
    packets with full checksums (a corrupted one is then caught by the receiver's
    checksum, as on a wire). Packets held for later wait here: `next_deadline()` says
    when the first is due, and each `recv()`/`send()` releases what is due by then.
    `clock` is the loop's (ns), handed in: this wrapper reads no clock of its own.
    """

    def __init__(
        self,
        inner: Link,
        *,
        impair_out: Impairer | None = None,
        impair_in: Impairer | None = None,
        clock: Callable[[], int],
    ) -> None:
        self.inner = inner
        self.impair_out = impair_out
        self.impair_in = impair_in
        self._clock = clock
        self._held: list[tuple[int, int, bool, bytes]] = []  # (at, seq, outgoing, packet)
        self._seq = itertools.count()
        self._ready: deque[bytes] = deque()  # incoming packets due, not yet received

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def next_deadline(self) -> int | None:
        """When the first held packet is due (loop ns), or None."""
        inner = getattr(self.inner, "next_deadline", None)
        mine = self._held[0][0] if self._held else None
        theirs = inner() if inner is not None else None
        if mine is None or (theirs is not None and theirs < mine):
            return theirs
        return mine

    def flush(self) -> None:
        inner = getattr(self.inner, "flush", None)
        if inner is not None:
            inner()

    def _release(self, now: int) -> None:
        held = self._held
        while held and held[0][0] <= now:
            _, _, outgoing, packet = heapq.heappop(held)
            if outgoing:
                self.inner.send(packet)
            else:
                self._ready.append(packet)

    def recv(self) -> bytes | bytearray | memoryview | Packet | None:
        now = self._clock()
        self._release(now)
        while not self._ready:
            packet = self.inner.recv()
            if packet is None:
                return None
            if self.impair_in is None:
                return packet
            for wire in wire_packets(packet):
                for at, copy in self.impair_in.apply(wire, now):
                    if at <= now:
                        self._ready.append(copy)
                    else:
                        heapq.heappush(self._held, (at, next(self._seq), False, copy))
        return self._ready.popleft()

    def send(self, packet: bytes | bytearray | memoryview | Packet) -> None:
        if self.impair_out is None:
            self.inner.send(packet)
            return
        now = self._clock()
        self._release(now)
        for wire in wire_packets(packet):
            for at, copy in self.impair_out.apply(wire, now):
                if at <= now:
                    self.inner.send(copy)
                else:
                    heapq.heappush(self._held, (at, next(self._seq), True, copy))

    def close(self) -> None:
        self._held.clear()
        self._ready.clear()
        self.inner.close()
