"""What a packetdrill script says, as plain frozen data. Imports the standard library only.

A script is its options (``--tolerance_usecs=...``), optional init/cleanup shell commands
and a list of events; each event has a time and one action: a TCP or ICMP segment
(``<`` injected into the stack under test, ``>`` expected from it), a socket call with its
expected return, a shell command in backquotes, or a ``%{ }%`` code block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Event time kinds (packetdrill's event_time_t).
ABSOLUTE = "absolute"  # 0.100
RELATIVE = "relative"  # +0.1
ANY = "any"  # *          (outbound segments only)
ABSOLUTE_RANGE = "absolute-range"  # 0.1~0.2   (outbound segments only)
RELATIVE_RANGE = "relative-range"  # +0.1~+0.2 (outbound segments only)


@dataclass(frozen=True, slots=True)
class Time:
    kind: str
    usecs: int  # start (or the time) in µs
    end_usecs: int | None = None  # range end


@dataclass(frozen=True, slots=True)
class TcpOption:
    """One option as written, in order: kind is "nop", "eol", "mss", "wscale", "sackOK",
    "sack", "TS", "md5", "FO", "FOEXP"; values as the script wrote them."""

    kind: str
    value: int | None = None  # mss, wscale
    blocks: tuple[tuple[int, int], ...] = ()  # sack (script sequence space)
    val: int | None = None  # TS val
    ecr: int | None = None  # TS ecr
    text: str = ""  # md5 key, FO cookie


@dataclass(frozen=True, slots=True)
class TcpPacket:
    direction: str  # "<" inbound (injected) | ">" outbound (expected)
    flags: str  # "S.", "P.", ".", "" (no flags, written "-") ...
    start_seq: int
    end_seq: int
    length: int
    ack: int | None  # None: no "ack" written
    window: int | None  # None: not written (outbound: not checked)
    urgent: int = 0
    options: tuple[TcpOption, ...] | None = ()  # None: <...>, not checked
    ports: tuple[int, int] | None = None  # "src>dst" written explicitly
    ecn: str | None = None  # [ect0] / [noecn] / [ce] / [ect1] / [ect01]

    @property
    def has_ack(self) -> bool:
        return "." in self.flags


@dataclass(frozen=True, slots=True)
class IcmpPacket:
    direction: str
    type: str  # "unreachable", "packet_too_big", "time_exceeded", ...
    code: str | None
    mtu: int | None
    echoed: tuple[int, int, int] | None  # (start, end, len) of the quoted TCP segment


@dataclass(frozen=True, slots=True)
class Expr:
    """A syscall argument or return expression.

    kind: "int" (value), "ellipsis", "word" (name), "string" (text), "or" (items),
    "list" ([...], items), "struct" ({...}, items; named ones in `names`), "call"
    (name(items): htons(8080), inet_addr("...")), "assign" (name = items[0]).
    """

    kind: str
    value: int = 0
    name: str = ""
    items: tuple[Expr, ...] = ()
    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "int":
            return str(self.value)
        if self.kind == "ellipsis":
            return "..."
        if self.kind == "word":
            return self.name
        if self.kind == "string":
            return '"' + self.name + '"'
        if self.kind == "or":
            return "|".join(str(i) for i in self.items)
        if self.kind == "list":
            return "[" + ", ".join(str(i) for i in self.items) + "]"
        if self.kind == "struct":
            parts = [
                f"{n}={i}" if n else str(i) for n, i in zip(self.names, self.items, strict=True)
            ]
            return "{" + ", ".join(parts) + "}"
        if self.kind == "call":
            return self.name + "(" + ", ".join(str(i) for i in self.items) + ")"
        return f"{self.name}={self.items[0]}"


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str
    args: tuple[Expr, ...]
    result: Expr
    errno: str | None = None  # EINPROGRESS ...
    note: str | None = None  # (Operation now in progress)
    end_usecs: int | None = None  # "...0.200": the call blocks until then

    def __str__(self) -> str:
        ret = f"{self.name}({', '.join(str(a) for a in self.args)}) = {self.result}"
        return ret + (f" {self.errno}" if self.errno else "")


@dataclass(frozen=True, slots=True)
class Shell:
    command: str


@dataclass(frozen=True, slots=True)
class Code:
    text: str


Action = TcpPacket | IcmpPacket | Syscall | Shell | Code


@dataclass(frozen=True, slots=True)
class Event:
    line: int
    time: Time
    action: Action
    text: str  # the source line(s), stripped, for reports


@dataclass(frozen=True)
class Script:
    path: str
    options: dict[str, str] = field(default_factory=dict)  # --name=value ("" without =)
    init: Shell | None = None
    events: tuple[Event, ...] = ()
    cleanup: Shell | None = None
