"""The runner core: plays a parsed script against a `Target` and checks every event the
way packetdrill does. Imports stack.script (model, packets, calls) and the standard
library; it never reads a clock or a device itself: the target owns time and I/O.

Time.  Script times are µs from the first event.  A relative time counts from the moment
the previous event finished (an outbound segment: its stamp, when it left, not when the
runner got it), except that an inbound segment right after another inbound segment
counts from that one's script time.  A
segment or call is on time when it happens within max(--tolerance_usecs,
--tolerance_percent of the gap since the previous event) of its script time.

Sequence space.  The peer's numbers are sent as written (its ISN is the script's);
the stack's are shown relative to its ISN, learned from its SYN or SYN-ACK.  An
inbound TS ecr names a TS val of an earlier outbound segment and is sent as the value
the stack really used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stack.script.calls import CallOutcome, symbol
from stack.script.model import (
    ABSOLUTE,
    ABSOLUTE_RANGE,
    ANY,
    RELATIVE,
    Code,
    Event,
    IcmpPacket,
    Script,
    Shell,
    Syscall,
    TcpPacket,
)
from stack.script.packets import (
    ECN_BITS,
    FLAG_BITS,
    MASK,
    Address,
    Segment,
    build_icmp,
    build_tcp,
    encode_options,
    flag_bits,
    flags_text,
    parse_tcp_packet,
)
from stack.script.parser import ScriptError

SUPPORTED_OPTIONS = {
    "tolerance_usecs",
    "tolerance_percent",
    "ip_version",
    "tcp_ts_tick_usecs",
    "bind_port",
    "connect_port",
    "strict_segments",
    "define",
    "verbose",
    "mss",
    "mtu",
}
RETURN_GRACE_US = 200_000  # see finish_pending
HORIZON_US = 2_000_000  # how far past a missed segment's window we look, to say what came


@dataclass(frozen=True)
class Config:
    tolerance_usecs: int = 4000
    tolerance_percent: float = 12.5
    ip_version: str = "ipv4"
    tcp_ts_tick_usecs: int = 0  # 0: outbound TS val not checked (packetdrill's default)
    bind_port: int = 8080
    connect_port: int = 8080
    strict_segments: bool = False  # never coalesce consecutive segments into one expected
    mtu: int = 1500

    @classmethod
    def from_script(cls, script: Script, overrides: dict[str, str] | None = None) -> Config:
        options = {**script.options, **(overrides or {})}
        kw: dict[str, Any] = {}
        for name, value in options.items():
            if name not in SUPPORTED_OPTIONS:
                raise ScriptError(script.path, 0, f"option --{name} is not supported")
            try:
                if name in (
                    "tolerance_usecs",
                    "tcp_ts_tick_usecs",
                    "bind_port",
                    "connect_port",
                    "mtu",
                ):
                    kw[name] = int(value)
                elif name == "tolerance_percent":
                    kw[name] = float(value)
                elif name == "strict_segments":
                    kw[name] = True
                elif name == "ip_version":
                    if value not in ("ipv4", "ipv6"):
                        raise ScriptError(
                            script.path, 0, f"--ip_version={value} is not supported (ipv4, ipv6)"
                        )
                    kw[name] = value
                elif name == "mss":
                    raise ScriptError(script.path, 0, "option --mss is not supported")
            except ValueError:
                raise ScriptError(script.path, 0, f"bad value for --{name}: {value!r}") from None
        return cls(**kw)


@dataclass
class Captured:
    """An IP packet the stack sent, at `time` µs script time."""

    time: int
    data: bytes


class Target(Protocol):
    """What a stack under test offers the runner (see pytcp_target, pytcpcli.scripting)."""

    name: str
    local_ip: Address  # the stack under test
    remote_ip: Address  # the script's peer

    def start_clock(self) -> None: ...  # the first event happens now: time 0
    def now(self) -> int: ...  # µs since the script's time 0
    def wait_until(self, t: int) -> None: ...  # let time pass to t (µs), stack running
    def next_outbound(self, deadline: int) -> Captured | None: ...  # first one sent <= deadline
    def inject(self, packet: bytes) -> list[str]: ...  # drop reasons, if the stack says
    def call(
        self, call: Syscall, fds: dict[int, Any], blocking_ok: bool
    ) -> CallOutcome | None: ...  # None: still blocking (completed() says when)

    def completed(self) -> list[tuple[Syscall, CallOutcome]]: ...  # blocking calls done
    def tcb(self) -> dict[str, Any] | None: ...  # flat TCB of the connection under test
    def close(self) -> None: ...


@dataclass
class LineResult:
    line: int
    text: str
    kind: str  # "inbound" | "outbound" | "call" | "shell"
    ok: bool
    time: float  # seconds, when it happened
    message: str = ""  # what went wrong
    expected: str = ""
    actual: str = ""
    tcb: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (old, new)
    drops: list[str] = field(default_factory=list)


@dataclass
class ScriptResult:
    path: str
    target: str
    ok: bool
    error: str = ""  # "FILE:LINE: what" of the first failure
    lines: list[LineResult] = field(default_factory=list)
    skipped: bool = False
    tcb_at_failure: dict[str, Any] = field(default_factory=dict)


class Failure(Exception):
    def __init__(
        self, line: int, message: str, expected: str = "", actual: str = "", kind: str = ""
    ) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.expected = expected
        self.actual = actual
        self.kind = kind


@dataclass
class Flow:
    """The connection under test as the script sees it."""

    local_port: int
    remote_port: int
    passive: bool
    local_isn: int | None = None  # live ISN of the stack
    remote_isn: int = 0  # the script's (= live) ISN of the peer


@dataclass
class Pending:
    event: Event
    call: Syscall
    start: int
    end: int


ShellRunner = Callable[[str], tuple[int, str]]
# Runs a %{ }% block (Python) with the tcp_info variables given: (status, output).
CodeRunner = Callable[[str, dict[str, int]], tuple[int, str]]


class Runner:
    """One script against one target. `run()` returns the ScriptResult."""

    def __init__(
        self,
        script: Script,
        target: Target,
        *,
        config: Config,
        shell: ShellRunner | None = None,
        tcb: bool = False,
        code: CodeRunner | None = None,
    ) -> None:
        self.script = script
        self.t = target
        self.cfg = config
        self.shell = shell  # None: shell lines are skipped (--skip-shell)
        self.want_tcb = tcb
        self.code = code  # None: %{ }% blocks cannot run on this target
        # %{ }% blocks whose tcp_info was read at their line, run after the last event
        self.code_due: list[tuple[Event, Code, dict[str, int], LineResult]] = []
        self.last_fd: int | None = None  # the socket under test: the newest one
        self.result = ScriptResult(script.path, target.name, ok=False)
        self.fds: dict[int, Any] = {}  # script fd -> target handle
        self.fd_kind: dict[int, str] = {}
        self.flows: list[Flow] = []
        self.listening: set[int] = set()
        self.listen_fresh = False  # listen() called and no connection to it yet
        self.connecting: int | None = None  # remote port of a connect() not yet seen
        self.ts_map: dict[int, int] = {}  # script TS val -> live TS val
        self.first_ts: tuple[int, int] | None = None  # (script, live) first TS val
        self.pending: list[Pending] = []
        self.last_time = 0  # script time of the previous event (µs, absolute)
        self.prev: Event | None = None
        self.prev_tcb: dict[str, Any] | None = None
        self.next_remote_port = 48000
        self.injected_at: int | None = None  # when the previous event's segment went in
        self.blocked_at: int | None = None  # when the previous event's blocking call began
        self.came_at: int | None = None  # when the previous event's outbound segment left
        self.picked_at: int | None = None  # ... and when the runner got it (real time: later)
        self.last_sent: bytes | None = None  # last IP packet the stack sent (ICMP quotes it)

    # -- the loop -----------------------------------------------------------------

    def run(self) -> ScriptResult:
        try:
            self.prev_tcb = self.t.tcb()
            self.t.start_clock()
            for ev in self.script.events:
                self.event(ev)
            self.finish_pending()
            self.run_code_due()
            self.result.ok = True
        except Failure as f:
            self.result.ok = False
            self.result.error = f"{self.script.path}:{f.line}: {f.message}"
            self.result.lines.append(
                LineResult(
                    f.line,
                    self.text_of(f.line),
                    f.kind or "event",
                    False,
                    self.t.now() / 1e6,
                    f.message,
                    f.expected,
                    f.actual,
                    tcb=self.tcb_changes(),
                )
            )
            self.result.tcb_at_failure = self.t.tcb() or {}
        return self.result

    def text_of(self, line: int) -> str:
        for ev in self.script.events:
            if ev.line == line:
                return ev.text
        return ""

    def tolerance(self, t: int) -> int:
        dynamic = int(self.cfg.tolerance_percent / 100.0 * (t - self.last_time))
        return max(self.cfg.tolerance_usecs, dynamic)

    def times(self, ev: Event) -> tuple[int, int]:
        """The event's script time and range end, made absolute (µs)."""
        kind = ev.time.kind
        if kind in (ABSOLUTE, ABSOLUTE_RANGE):
            return (
                ev.time.usecs,
                ev.time.end_usecs if ev.time.end_usecs is not None else ev.time.usecs,
            )
        anchored = self.prev is not None and _is_inbound(self.prev) and _is_inbound(ev)
        # After an injection the next relative time counts from when the segment went in
        # (a TUN target may take a moment longer to say what the stack did with it);
        # after an outbound segment, from its stamp, not from when the runner got it
        # (as packetdrill's adjust_relative_event_times): a real-time target's capture
        # reaches the runner late under load, and counting from then would move every
        # later event, the peer's ACK that times the RTT included.
        if anchored:
            offset = self.last_time
        elif self.injected_at is not None:
            offset = self.injected_at
        elif self.blocked_at is not None:
            # After a call that blocks, from when it was made (packetdrill: the call's
            # start time), not from when the runner saw its thread asleep and went on.
            offset = self.blocked_at
        elif self.came_at is not None:
            offset = self.came_at
        else:
            offset = self.t.now()
        self.injected_at = self.came_at = self.blocked_at = None
        start = offset + ev.time.usecs
        end = offset + (ev.time.end_usecs if ev.time.end_usecs is not None else ev.time.usecs)
        return start, end

    def event(self, ev: Event) -> None:
        picked, self.picked_at = self.picked_at, None
        start, end = self.times(ev)
        action = ev.action
        if isinstance(action, TcpPacket) and action.direction == ">":
            rec = self.outbound(ev, action, start, end)
        elif isinstance(action, IcmpPacket) and action.direction == ">":
            raise Failure(ev.line, "outbound ICMP is not supported", kind="outbound")
        else:
            self.t.wait_until(start)
            self.check_completed()
            # Not late for having learned of the segment before it late: the runner can
            # act on a segment only once it has it.
            self.on_time(ev, start, start if picked is None else max(start, picked), "event")
            if isinstance(action, TcpPacket):
                rec = self.inbound(ev, action)
            elif isinstance(action, IcmpPacket):
                rec = self.inbound_icmp(ev, action)
            elif isinstance(action, Syscall):
                rec = self.syscall(ev, action, start)
            elif isinstance(action, Shell):
                rec = self.run_shell(ev, action)
            else:
                assert isinstance(action, Code)
                rec = self.run_code(ev, action)
        self.check_completed()
        rec.tcb = self.tcb_changes()
        self.result.lines.append(rec)
        self.last_time = start
        self.prev = ev

    def on_time(self, ev: Event, start: int, end: int, what: str) -> None:
        now = self.t.now()
        tol = self.tolerance(start)
        if now < start - tol or now > end + tol:
            raise Failure(
                ev.line,
                f"timing error: expected {what} at {start / 1e6:.6f} sec "
                f"but happened at {now / 1e6:.6f} sec; tolerance {tol / 1e6:.6f} sec",
            )

    def tcb_changes(self) -> dict[str, tuple[Any, Any]]:
        if not self.want_tcb:
            return {}
        now = self.t.tcb()
        before = self.prev_tcb or {}
        self.prev_tcb = now
        if now is None:
            return {}
        return {k: (before.get(k), v) for k, v in now.items() if before.get(k) != v}

    # -- flows ----------------------------------------------------------------------

    @property
    def flow(self) -> Flow | None:
        return self.flows[-1] if self.flows else None

    def inbound_flow(self, ev: Event, pkt: TcpPacket) -> Flow:
        syn_only = "S" in pkt.flags and not pkt.has_ack
        if pkt.ports is not None:
            for f in reversed(self.flows):
                if (f.remote_port, f.local_port) == pkt.ports:
                    return f
            flow = Flow(pkt.ports[1], pkt.ports[0], passive=True, remote_isn=pkt.start_seq)
            self.flows.append(flow)
            return flow
        if syn_only and self.listen_fresh and self.listening:
            self.listen_fresh = False  # one connection per listen(), as packetdrill
            port = (
                self.cfg.bind_port if self.cfg.bind_port in self.listening else min(self.listening)
            )
            flow = Flow(port, self.new_remote_port(), passive=True, remote_isn=pkt.start_seq)
            self.flows.append(flow)
            return flow
        if self.flow is None:
            raise Failure(
                ev.line, "no connection for this segment (no listen() or connect())", kind="inbound"
            )
        return self.flow

    def new_remote_port(self) -> int:
        port = self.next_remote_port
        self.next_remote_port += 1
        return port

    # -- segments -----------------------------------------------------------------

    def inbound(self, ev: Event, pkt: TcpPacket) -> LineResult:
        flow = self.inbound_flow(ev, pkt)
        if "S" in pkt.flags and pkt.has_ack and not flow.passive:
            flow.remote_isn = pkt.start_seq
        if pkt.ack is not None and flow.local_isn is None and pkt.has_ack:
            raise Failure(
                ev.line, "an ACK before the stack sent its SYN: no ISN to ack", kind="inbound"
            )
        local_isn = flow.local_isn or 0
        ack = (pkt.ack + local_isn) & MASK if pkt.ack is not None and pkt.has_ack else 0
        ecr = None
        if pkt.options:
            for o in pkt.options:
                if o.kind == "TS" and pkt.has_ack:
                    ecr = self.live_ecr(ev, o.ecr or 0)
        try:
            options = encode_options(pkt.options or (), ecr, local_isn)
            data = build_tcp(
                self.t.remote_ip,
                self.t.local_ip,
                flow.remote_port,
                flow.local_port,
                pkt.start_seq,
                ack,
                flag_bits(pkt.flags),
                pkt.window or 0,
                pkt.urgent,
                options,
                bytes(pkt.length),
                ECN_BITS.get(pkt.ecn, 0),
            )
        except ValueError as exc:
            raise Failure(ev.line, str(exc), kind="inbound") from None
        at = self.t.now()
        drops = self.inject(ev, data)
        self.injected_at = at
        return LineResult(ev.line, ev.text, "inbound", True, at / 1e6, drops=drops)

    def live_ecr(self, ev: Event, script_ecr: int) -> int:
        if script_ecr in self.ts_map:
            return self.ts_map[script_ecr]
        if script_ecr == 0:
            return 0
        raise Failure(
            ev.line,
            f"unable to infer live TS ecr for script TS ecr {script_ecr}; "
            "no matching outbound TS val",
            kind="inbound",
        )

    def inbound_icmp(self, ev: Event, pkt: IcmpPacket) -> LineResult:
        flow = self.flow
        if flow is None or flow.local_isn is None:
            raise Failure(ev.line, "ICMP before the stack sent anything to quote", kind="inbound")
        if pkt.echoed is not None:
            start, _, length = pkt.echoed
            seq = (start + flow.local_isn) & MASK
        else:
            seq = flow.local_isn
            length = 0
        quoted = build_tcp(
            self.t.local_ip,
            self.t.remote_ip,
            flow.local_port,
            flow.remote_port,
            seq,
            0,
            FLAG_BITS["."],
            0,
            0,
            b"",
            bytes(length),
        )
        try:
            data = build_icmp(
                pkt.type, pkt.code, pkt.mtu, quoted, self.t.remote_ip, self.t.local_ip
            )
        except ValueError as exc:
            raise Failure(ev.line, str(exc), kind="inbound") from None
        drops = self.inject(ev, data)
        return LineResult(ev.line, ev.text, "inbound", True, self.t.now() / 1e6, drops=drops)

    def inject(self, ev: Event, data: bytes) -> list[str]:
        """Hand `data` to the target; a packet it cannot put in fails the line."""
        try:
            return self.t.inject(data)
        except ScriptError as exc:
            raise Failure(ev.line, exc.message, kind="inbound") from None
        except OSError as exc:
            raise Failure(
                ev.line,
                f"cannot inject the {len(data)}-byte packet: {exc.strerror or exc}",
                kind="inbound",
            ) from None

    def outbound(self, ev: Event, pkt: TcpPacket, start: int, end: int) -> LineResult:
        tol = self.tolerance(start)
        any_time = ev.time.kind == ANY
        deadline = end + tol if not any_time else end + 3600 * 1_000_000
        got = self.t.next_outbound(deadline)
        if got is None:
            later = self.t.next_outbound(deadline + HORIZON_US)
            came = "nothing"
            if later is not None:
                seg = parse_tcp_packet(later.data)
                came = (
                    f"{self.render(seg, later.time)}" if seg is not None else "a non-TCP packet"
                ) + f" at {later.time / 1e6:.6f} sec"
            raise Failure(
                ev.line,
                f"none within tolerance: expected outbound segment at {start / 1e6:.6f} sec "
                f"(tolerance {tol / 1e6:.6f} sec); {came} came"
                + (" within 2 s after" if later is None else ""),
                expected=self.render_script(pkt),
                actual=came,
                kind="outbound",
            )
        seg = parse_tcp_packet(got.data)
        if seg is None:
            raise Failure(ev.line, "the stack sent a non-TCP packet", kind="outbound")
        flow = self.outbound_flow(ev, seg, pkt)
        segs = [seg]
        total = len(seg.payload)
        # A script's big segment may come as several MSS-sized ones (as packetdrill
        # aggregates what TSO/GSO would have sent as one).
        while total < pkt.length and not self.cfg.strict_segments:
            more = self.t.next_outbound(deadline)
            if more is None:
                break
            nxt = parse_tcp_packet(more.data)
            if (
                nxt is None
                or nxt.seq != (segs[-1].seq + len(segs[-1].payload)) & MASK
                or ((nxt.sport, nxt.dport) != (seg.sport, seg.dport))
            ):
                self.t_unread(more)
                break
            segs.append(nxt)
            total += len(nxt.payload)
        last = segs[-1]
        merged = Segment(
            seg.src,
            seg.dst,
            seg.sport,
            seg.dport,
            seg.seq,
            last.ack,
            (seg.flags & ~0x09) | (last.flags & 0x09),
            last.window,
            seg.urgent,
            seg.options,
            b"".join(s.payload for s in segs),
            seg.ecn,
        )
        self.last_sent = got.data
        if "S" in pkt.flags and seg.flags & FLAG_BITS["S"]:
            flow.local_isn = (seg.seq - pkt.start_seq) & MASK  # the stack's ISN
        problems = self.compare(pkt, merged, flow)
        actual = self.render(merged, got.time, flow)
        if problems:
            raise Failure(
                ev.line,
                "; ".join(problems),
                expected=self.render_script(pkt),
                actual=actual,
                kind="outbound",
            )
        if not any_time:
            lo, hi = start - tol, end + tol
            if not lo <= got.time <= hi:
                when = (
                    f"{start / 1e6:.6f} sec"
                    if start == end
                    else f"{start / 1e6:.6f}~{end / 1e6:.6f} sec"
                )
                raise Failure(
                    ev.line,
                    f"timing error: expected outbound segment at {when} "
                    f"but happened at {got.time / 1e6:.6f} sec; tolerance {tol / 1e6:.6f} sec",
                    expected=self.render_script(pkt),
                    actual=actual,
                    kind="outbound",
                )
        self.record_ts(pkt, merged)
        # The next relative time counts from when this segment came (its stamp).
        self.t.wait_until(max(self.t.now(), got.time))
        self.came_at, self.picked_at = got.time, self.t.now()
        return LineResult(ev.line, ev.text, "outbound", True, got.time / 1e6, actual=actual)

    def t_unread(self, cap: Captured) -> None:
        unread = getattr(self.t, "unread", None)
        if unread is not None:
            unread(cap)

    def outbound_flow(self, ev: Event, seg: Segment, pkt: TcpPacket) -> Flow:
        for f in reversed(self.flows):
            if (f.local_port, f.remote_port) == (seg.sport, seg.dport):
                return f
        syn = seg.flags & FLAG_BITS["S"] and not seg.flags & FLAG_BITS["."]
        if syn and self.connecting is not None and seg.dport == self.connecting:
            self.connecting = None
            flow = Flow(seg.sport, seg.dport, passive=False)
            self.flows.append(flow)
            return flow
        raise Failure(
            ev.line,
            f"the stack sent a segment of a connection the script does not know "
            f"({seg.sport} > {seg.dport} {flags_text(seg.flags)})",
            expected=self.render_script(pkt),
            actual=self.render(seg, self.t.now()),
            kind="outbound",
        )

    def compare(self, pkt: TcpPacket, seg: Segment, flow: Flow) -> list[str]:
        problems = []
        want = flag_bits(pkt.flags)
        if seg.flags != want:
            problems.append(
                f"bad flags: expected {flags_text(want)} but got {flags_text(seg.flags)}"
            )
        isn = flow.local_isn or 0
        rel_seq = (seg.seq - isn) & MASK
        if rel_seq != pkt.start_seq:
            problems.append(f"bad seq: expected {pkt.start_seq} but got {rel_seq}")
        if len(seg.payload) != pkt.length:
            problems.append(f"bad payload length: expected {pkt.length} but got {len(seg.payload)}")
        elif any(seg.payload):
            problems.append("incorrect outbound data payload")
        if seg.flags & FLAG_BITS["."]:
            rel_ack = (seg.ack - flow.remote_isn) & MASK
            if pkt.has_ack and pkt.ack is not None and rel_ack != pkt.ack:
                problems.append(f"bad ack: expected {pkt.ack} but got {rel_ack}")
        if pkt.window is not None and seg.window != pkt.window:
            problems.append(f"bad window: expected {pkt.window} but got {seg.window}")
        if seg.urgent != pkt.urgent:
            problems.append(f"bad urgent pointer: expected {pkt.urgent} but got {seg.urgent}")
        if pkt.ecn == "ect01":
            if seg.ecn not in (ECN_BITS["ect0"], ECN_BITS["ect1"]):
                problems.append(f"bad ECN bits: expected ect0 or ect1 but got {seg.ecn}")
        elif pkt.ecn is not None and ECN_BITS[pkt.ecn] != seg.ecn:
            problems.append(f"bad ECN bits: expected {pkt.ecn} but got {seg.ecn}")
        if pkt.options is not None:
            problems += self.compare_options(pkt, seg, flow)
        return problems

    def compare_options(self, pkt: TcpPacket, seg: Segment, flow: Flow) -> list[str]:
        assert pkt.options is not None
        actual = list(seg.options)
        while actual and actual[-1].kind == 0 and not any(o.kind == "eol" for o in pkt.options):
            actual.pop()  # padding
        kinds = {
            "nop": 1,
            "eol": 0,
            "mss": 2,
            "wscale": 3,
            "sackOK": 4,
            "sack": 5,
            "TS": 8,
            "md5": 19,
            "FO": 34,
            "FOEXP": 254,
        }
        want = [kinds[o.kind] for o in pkt.options]
        got = [o.kind for o in actual]
        if want != got:
            return [
                "bad outbound TCP options: expected "
                f"<{self.options_text(pkt)}> but got <{self.actual_options(seg, flow)}>"
            ]
        out = []
        for o, a in zip(pkt.options, actual, strict=True):
            shown = a.describe(flow.remote_isn)
            if (
                o.kind == "mss" and a.data != o.value.to_bytes(2, "big")
                if o.value is not None
                else False
            ):
                out.append(f"bad mss: expected mss {o.value} but got {shown}")
            elif o.kind == "wscale" and (len(a.data) != 1 or a.data[0] != o.value):
                out.append(f"bad wscale: expected wscale {o.value} but got {shown}")
            elif o.kind == "sack":
                exp = " ".join(f"{left}:{right}" for left, right in o.blocks)
                if shown != f"sack {exp}":
                    out.append(f"bad SACK blocks: expected sack {exp} but got {shown}")
            elif o.kind == "TS" and len(a.data) == 8:
                val = int.from_bytes(a.data[:4], "big")
                ecr = int.from_bytes(a.data[4:], "big")
                if ecr != o.ecr:
                    out.append(f"bad TS ecr: expected ecr {o.ecr} but got ecr {ecr}")
                tick = self.cfg.tcp_ts_tick_usecs
                if tick and self.first_ts is not None and o.val is not None:
                    script_val = (self.first_ts[0] + (val - self.first_ts[1])) & MASK
                    diff = abs(((script_val - o.val + 2**31) & MASK) - 2**31)
                    # As packetdrill: the slack grows with the time since the script began.
                    slack = max(
                        self.cfg.tolerance_usecs,
                        int(self.cfg.tolerance_percent / 100.0 * self.t.now()),
                    )
                    if diff * tick > slack:
                        out.append(
                            f"bad outbound TCP timestamp value: expected val {o.val} "
                            f"but got {script_val} (in script ticks)"
                        )
            elif o.kind in ("md5", "FO", "FOEXP"):
                out.append(f"TCP option {o.kind} is not modelled")
        return out

    def record_ts(self, pkt: TcpPacket, seg: Segment) -> None:
        if not pkt.options:
            return
        want = next((o for o in pkt.options if o.kind == "TS"), None)
        got = seg.option(8)
        if want is None or got is None or want.val is None or len(got.data) != 8:
            return
        live = int.from_bytes(got.data[:4], "big")
        self.ts_map[want.val] = live
        if self.first_ts is None:
            self.first_ts = (want.val, live)

    # -- rendering ------------------------------------------------------------------

    @staticmethod
    def options_text(pkt: TcpPacket) -> str:
        if pkt.options is None:
            return "..."
        parts = []
        for o in pkt.options:
            if o.kind in ("mss", "wscale"):
                parts.append(f"{o.kind} {o.value}")
            elif o.kind == "sack":
                parts.append("sack " + " ".join(f"{a}:{b}" for a, b in o.blocks))
            elif o.kind == "TS":
                parts.append(f"TS val {o.val} ecr {o.ecr}")
            else:
                parts.append(o.kind)
        return ",".join(parts)

    def render_script(self, pkt: TcpPacket) -> str:
        text = f"{pkt.flags or '-'} {pkt.start_seq}:{pkt.end_seq}({pkt.length})"
        if pkt.ack is not None:
            text += f" ack {pkt.ack}"
        if pkt.window is not None:
            text += f" win {pkt.window}"
        if pkt.options is None or pkt.options:
            text += f" <{self.options_text(pkt)}>"
        return text

    @staticmethod
    def actual_options(seg: Segment, flow: Flow | None) -> str:
        opts = list(seg.options)
        while opts and opts[-1].kind == 0:
            opts.pop()
        return ",".join(o.describe(flow.remote_isn if flow else 0) for o in opts)

    def render(self, seg: Segment | None, time: int, flow: Flow | None = None) -> str:
        if seg is None:
            return "a non-TCP packet"
        flow = flow or next(
            (
                f
                for f in reversed(self.flows)
                if (f.local_port, f.remote_port) == (seg.sport, seg.dport)
            ),
            None,
        )
        isn = flow.local_isn if flow and flow.local_isn is not None else seg.seq
        rel = (seg.seq - isn) & MASK
        n = len(seg.payload)
        text = f"{flags_text(seg.flags)} {rel}:{(rel + n) & MASK}({n})"
        if seg.flags & FLAG_BITS["."]:
            text += f" ack {(seg.ack - (flow.remote_isn if flow else 0)) & MASK}"
        text += f" win {seg.window}"
        opts = self.actual_options(seg, flow)
        if opts:
            text += f" <{opts}>"
        return text

    # -- calls ----------------------------------------------------------------------

    def syscall(self, ev: Event, call: Syscall, start: int) -> LineResult:
        if call.name in ("socket", "accept", "accept4") and call.result.kind != "int":
            raise Failure(ev.line, f"{call.name}() must name the fd it returns", kind="call")
        blocking = call.end_usecs is not None
        if call.name == "connect":
            self.connecting = self.cfg.connect_port
        if call.name == "listen":
            self.listening.add(self.cfg.bind_port)
            self.listen_fresh = True
        called = self.t.now()
        try:
            outcome = self.t.call(call, self.fds, blocking)
        except ScriptError as exc:
            raise Failure(ev.line, exc.message, kind="call") from None
        if outcome is None:
            self.blocked_at = called
            end = self.blocking_end(ev, call, start)
            self.pending.append(Pending(ev, call, start, end))
            return LineResult(
                ev.line, ev.text, "call", True, self.t.now() / 1e6, actual="(blocking)"
            )
        self.check_outcome(ev, call, outcome)
        if blocking:
            end = self.blocking_end(ev, call, start)
            self.check_return_time(ev, start, end, outcome.at)
        return LineResult(
            ev.line, ev.text, "call", True, self.t.now() / 1e6, actual=outcome.describe()
        )

    def blocking_end(self, ev: Event, call: Syscall, start: int) -> int:
        assert call.end_usecs is not None
        if ev.time.kind == RELATIVE:
            return start - ev.time.usecs + call.end_usecs
        return call.end_usecs

    def return_tolerance(self, start: int, end: int) -> int:
        dynamic = int(self.cfg.tolerance_percent / 100.0 * (end - start))
        return max(self.cfg.tolerance_usecs, dynamic)

    def check_return_time(self, ev: Event, start: int, end: int, at: int) -> None:
        """A blocking call's return, stamped `at` by the thread that made it as the call
        came back, against its end time. As packetdrill (the syscall thread's
        verify_time), the slack is --tolerance_percent of the call's own span (start to
        end), not of the gap since whichever event the runner was at when it noticed:
        when the runner notices depends on how fast the call's thread ran."""
        tol = self.return_tolerance(start, end)
        if abs(at - end) > tol:
            raise Failure(
                ev.line,
                f"timing error: expected system call return at {end / 1e6:.6f} sec "
                f"but happened at {at / 1e6:.6f} sec; tolerance {tol / 1e6:.6f} sec",
                kind="call",
            )

    def check_completed(self) -> None:
        for call, outcome in self.t.completed():
            p = next((p for p in self.pending if p.call is call), None)
            if p is None:
                continue
            self.pending.remove(p)
            self.check_outcome(p.event, call, outcome)
            self.check_return_time(p.event, p.start, p.end, outcome.at)
            for rec in self.result.lines:
                if rec.line == p.event.line and rec.kind == "call":
                    rec.actual = outcome.describe() + f" (returned at {outcome.at / 1e6:.6f} sec)"

    def finish_pending(self) -> None:
        """The script is over: every blocking call must have returned on time. A call's
        return is stamped when it happened, so a real-time target gets RETURN_GRACE more
        to report it (its thread may be slow to run); the stamp is what is checked."""
        for p in list(self.pending):
            tol = self.return_tolerance(p.start, p.end)
            self.t.wait_until(max(self.t.now(), p.end + tol))
            self.check_completed()
            limit = self.t.now() + RETURN_GRACE_US
            while p in self.pending and self.t.now() < limit:
                self.t.wait_until(min(limit, self.t.now() + 1000))
                self.check_completed()
        if self.pending:
            p = self.pending[0]
            raise Failure(
                p.event.line,
                f"{p.call.name}() still blocked at {self.t.now() / 1e6:.6f} sec; "
                f"expected it to return at {p.end / 1e6:.6f} sec",
                kind="call",
            )

    def check_outcome(self, ev: Event, call: Syscall, out: CallOutcome) -> None:
        expected = call.result
        if expected.kind == "ellipsis":
            return
        try:
            want = symbol(expected)
        except ScriptError as exc:
            raise Failure(ev.line, exc.message, kind="call") from None
        if call.name in ("socket", "accept", "accept4") and out.errno is None and not call.errno:
            self.fds[want] = out.handle
            self.fd_kind[want] = call.name
            self.last_fd = want
            out.detail = f"fd {want}"
            return
        if out.ret != want or (call.errno or None) != out.errno:
            exp = f"{want}" + (f" {call.errno}" if call.errno else "")
            raise Failure(
                ev.line,
                f"{call.name}() returned {out.describe()}; expected {exp}",
                expected=exp,
                actual=out.describe(),
                kind="call",
            )
        for problem in out.problems:
            raise Failure(ev.line, f"{call.name}(): {problem}", kind="call")

    # -- code -----------------------------------------------------------------------

    def run_code(self, ev: Event, block: Code) -> LineResult:
        """A %{ }% block: the socket under test's tcp_info is read at the line's time, as
        packetdrill does, and the Python runs after the script's last event with it as
        tcpi_* variables (packetdrill's names) -- a Python process started at the line
        would hold up the lines after it. A failing assert fails the block's line."""
        info = getattr(self.t, "tcp_info", None)
        if info is None or self.code is None:
            raise Failure(
                ev.line,
                f"%{{ }}% code blocks (Python over tcp_info) are not supported on {self.t.name}",
                kind="code",
            )
        if self.last_fd is None or self.last_fd not in self.fds:
            raise Failure(ev.line, "a %{ }% block needs an open socket", kind="code")
        rec = LineResult(ev.line, ev.text, "code", True, self.t.now() / 1e6, actual="tcp_info read")
        self.code_due.append((ev, block, info(self.fds[self.last_fd]), rec))
        return rec

    def run_code_due(self) -> None:
        """Run the %{ }% blocks in script order over the tcp_info read at their lines."""
        assert self.code is not None or not self.code_due
        for ev, block, variables, rec in self.code_due:
            assert self.code is not None
            status, output = self.code(block.text, variables)
            if status != 0:
                self.result.lines.remove(rec)  # the failure's own record replaces it
                lines = [ln for ln in output.strip().splitlines() if ln.strip()]
                raise Failure(
                    ev.line, f"code block failed: {lines[-1] if lines else status}", kind="code"
                )
            rec.actual = "ok"
        self.code_due.clear()

    # -- shell ----------------------------------------------------------------------

    def run_shell(self, ev: Event, sh: Shell) -> LineResult:
        if self.shell is None:
            return LineResult(ev.line, ev.text, "shell", True, self.t.now() / 1e6, actual="skipped")
        status, output = self.shell(sh.command)
        if status != 0:
            raise Failure(
                ev.line,
                f"shell command failed with status {status}: {output.strip()[-200:]}",
                kind="shell",
            )
        return LineResult(ev.line, ev.text, "shell", True, self.t.now() / 1e6, actual="status 0")


def _is_inbound(ev: Event) -> bool:
    a = ev.action
    return isinstance(a, (TcpPacket, IcmpPacket)) and a.direction == "<"
