"""Parameter types and option groups shared by the commands. Imports click only.

Durations (`500ms`, `2s`, `1m`), ports, and the option groups every stack-running
command takes (the TUN/address options, `-v`, `--trace`, `--pcap`, `--mss`,
`--time-wait`), each defined once so `--help`, the man pages and the completions agree.
"""

from __future__ import annotations

import functools
import importlib
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_DURATION = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """`500ms`, `2s`, `1.5`, `1m`, `1h` -> seconds as a float; a bare number is seconds.

    Raises ValueError with a one-line reason for anything else (negative, empty, `2x`).
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 2s, 1.5 or 1m")
    return float(match["num"]) * _UNIT_SECONDS[match["unit"]]


def format_duration(seconds: float) -> str:
    """The shortest of `500ms`, `2s`, `1.5s`, `1m` that reads back as `seconds`."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds >= 1 or seconds == 0:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


class Duration(click.ParamType):
    """A time span in seconds (float), written `500ms`, `2s`, `1m` or a bare number of seconds."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError as e:
                self.fail(str(e), param, ctx)
        if seconds == 0 and not self.allow_zero:
            self.fail(f"{value!r} is zero; give a positive duration", param, ctx)
        return seconds


class Port(click.ParamType):
    """A TCP port, 1-65535 (0 is not a port anyone can reach), or a service name from
    the system's services database (`ssh`, as nc takes it: socket.getservbyname)."""

    name = "port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            number = value
        else:
            text = str(value).strip()
            if not text.isdigit():
                try:
                    return socket.getservbyname(text, "tcp")
                except (OSError, UnicodeError):
                    self.fail(
                        f"{value!r} is neither a port number (1-65535) nor a TCP service name",
                        param,
                        ctx,
                    )
            number = int(text)
        if not 1 <= number <= 65535:
            self.fail(f"{number} is out of range; a port is 1-65535", param, ctx)
        return number


class PortRange(click.ParamType):
    """PORT, LOW-HIGH, or a comma list of either (`22,80,8000-8010`, for `connect -z` as
    nc scans): a list of ports. HIGH-LOW counts down (30-20: 30, 29, ... 20)."""

    name = "port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, list):
            return value
        ports: list[int] = []
        for part in str(value).split(","):
            text = part.strip()
            low, dash, high = text.partition("-")
            if not dash or not low.isdigit() or not high.isdigit():
                if not text:
                    self.fail(f"{value!r} has an empty entry; write 22,80 or 20-30", param, ctx)
                ports.append(PORT.convert(text, param, ctx))
                continue
            first, last = PORT.convert(low, param, ctx), PORT.convert(high, param, ctx)
            step = 1 if first <= last else -1
            ports.extend(range(first, last + step, step))
        return ports


DURATION = Duration()
PORT = Port()
PORTS = PortRange()


def parse_time_wait(text: str) -> float | None:
    """`full` -> None (hold the whole 2·MSL); a duration -> that many seconds of linger."""
    if text.strip() == "full":
        return None
    return parse_duration(text)


class TimeWait(click.ParamType):
    """`full`, or how long to linger in TIME-WAIT before exiting (0 allowed)."""

    name = "full|duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, float):
            return value
        try:
            return parse_time_wait(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither 'full' nor a duration such as 1s", param, ctx)


class Keepalive(click.ParamType):
    """`IDLE[,INTERVAL[,COUNT]]`: keepalive probes after IDLE without traffic, every
    INTERVAL, giving up after COUNT unanswered (durations as --timeout takes them)."""

    name = "idle[,interval[,count]]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        if len(parts) > 3 or not all(p.strip() for p in parts):
            self.fail(f"{value!r} is not IDLE[,INTERVAL[,COUNT]] (such as 60,10,5)", param, ctx)
        try:
            idle = parse_duration(parts[0])
            interval = parse_duration(parts[1]) if len(parts) > 1 else 75.0
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if idle <= 0 or interval <= 0:
            self.fail(f"{value!r}: IDLE and INTERVAL must be positive", param, ctx)
        count = 9
        if len(parts) > 2:
            if not parts[2].strip().isdigit() or int(parts[2]) < 1:
                self.fail(f"{value!r}: COUNT must be a whole number of probes, at least 1",
                          param, ctx)  # fmt: skip
            count = int(parts[2])
        return (idle, interval, count)


@dataclass(frozen=True)
class StackOptions:
    """What the TUN/address and tracing options asked for; App turns it into a Stack."""

    tun: str | None = None
    addr: str | None = None
    gateway: str | None = None
    mtu: int | None = None
    mss: int | None = None
    trace: bool = False
    pcap: str | None = None
    verbose: int = 0
    impair: str | None = None
    cc: str | None = None
    sack: bool = True
    wscale: bool = True
    timestamps: bool = True
    journal_size: int | None = None
    offload: bool = True
    ladder: bool = False
    width: int | None = None
    rack: bool = True
    ecn: bool = False
    nodelay: bool = False
    keepalive: tuple[float, float, int] | None = None
    record: str | None = None

    def tcp_overrides(self) -> dict[str, Any]:
        """The TcpConfig fields the options changed (an empty dict: the defaults)."""
        changed: dict[str, Any] = {}
        if self.journal_size is not None:
            changed["journal"] = self.journal_size
        if self.mss is not None:
            changed["mss"] = self.mss
        if self.cc is not None:
            changed["cc"] = self.cc
        for name in ("sack", "wscale", "timestamps", "rack"):
            if not getattr(self, name):
                changed[name] = False
        for name in ("ecn", "nodelay"):
            if getattr(self, name):
                changed[name] = True
        if self.keepalive is not None:
            idle, interval, count = self.keepalive
            changed["keepalive_idle"] = round(idle * 1e9)
            changed["keepalive_interval"] = round(interval * 1e9)
            changed["keepalive_probes"] = count
        return changed


class Impair(click.ParamType):
    """An impairment spec, checked by the stack's own parser and kept in canonical form."""

    name = "spec"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        impair = importlib.import_module("stack.io.impair")
        try:
            return str(impair.ImpairSpec.parse(str(value)))
        except ValueError as e:
            self.fail(str(e).removeprefix("impair: "), param, ctx)


def stack_options(f: F) -> F:
    """The options of every command that runs a stack: interface, addresses, MTU, MSS, tracing.

    They collapse into one `stack` argument (a StackOptions) for the command function.
    """
    options = [
        click.option(
            "-v",
            "--verbose",
            count=True,
            help="Say on stderr whom pytcp talks to and what it did; -vv adds state changes.",
        ),
        click.option(
            "--trace",
            is_flag=True,
            help="Print every segment in and out (tcpdump style), every state change and "
            "every segment dropped (with the reason) on stderr.",
        ),
        click.option(
            "--pcap",
            type=click.Path(dir_okay=False, writable=True),
            metavar="FILE",
            help="Write every packet of the run to FILE (pcap; tcpdump -r and Wireshark read it).",
        ),
        click.option(
            "--mss",
            type=click.IntRange(88, 65495),
            metavar="BYTES",
            help="Maximum segment size to announce (default: interface MTU - 40).",
        ),
        click.option(
            "--cc",
            type=click.Choice(["newreno", "cubic"]),
            help="Congestion control: cubic (RFC 9438 with HyStart++, the default, as "
            "Linux) or newreno (RFC 5681/6582).",
        ),
        click.option(
            "--nodelay",
            is_flag=True,
            help="Turn Nagle's algorithm off (TCP_NODELAY): small writes go out at once. "
            "With it on (the default), a short segment waits while an earlier short one "
            "is unacknowledged (Minshall's variant, as Linux).",
        ),
        click.option(
            "--keepalive",
            type=Keepalive(),
            metavar="SPEC",
            help="Keepalive, SPEC = IDLE[,INTERVAL[,COUNT]]: probe after IDLE without "
            "traffic, every INTERVAL (default 75s), reset after COUNT unanswered "
            "(default 9) (RFC 1122 4.2.3.6; off by default). A Linux peer answers at most "
            "one probe per 500 ms (tcp_invalid_ratelimit): keep INTERVAL above that.",
        ),
        click.option(
            "--ecn",
            is_flag=True,
            help="Ask for ECN (RFC 3168) in the SYN; a peer that asks is always answered "
            "(as Linux's default).",
        ),
        click.option(
            "--no-rack",
            "no_rack",
            is_flag=True,
            help="Detect loss by duplicate ACKs only (RFC 6675 DupThresh): no RACK-TLP "
            "(RFC 8985), no tail loss probes. By default a probe (one segment) goes out "
            "about 2 RTTs after the last ACK, only in the open phase: never while SACKed "
            "data is outstanding, in fast recovery or after an RTO (RFC 8985 7.2, as Linux).",
        ),
        click.option("--no-sack", "no_sack", is_flag=True, help="Do not offer SACK (RFC 2018)."),
        click.option(
            "--no-wscale",
            "no_wscale",
            is_flag=True,
            help="Do not offer window scaling (RFC 7323 §2).",
        ),
        click.option(
            "--no-timestamps",
            "no_timestamps",
            is_flag=True,
            help="Do not offer timestamps (RFC 7323 §3).",
        ),
        click.option(
            "--record",
            type=click.Path(dir_okay=False, writable=True),
            metavar="FILE",
            help="Write the run's trace events and TCB changes to FILE (JSON lines) for "
            "`pytcp plot` (cwnd, ssthresh, flight, SRTT, RTO, windows).",
        ),
        click.option(
            "--ladder",
            is_flag=True,
            help="Draw a ladder diagram on stderr: pytcp and the peer as two columns, one "
            "slanted arrow per segment, each side's state as it changes (the peer's "
            "inferred), retransmissions, drops, impairments and timers marked.",
        ),
        click.option(
            "--width",
            type=click.IntRange(60, 400),
            metavar="COLUMNS",
            help="Width of the --ladder drawing (default: the terminal's, else 100).",
        ),
        click.option(
            "--journal-size",
            "journal_size",
            type=click.IntRange(0, 100_000),
            metavar="N",
            help="Segments each connection's journal keeps for `pytcp inspect ID "
            "--journal` (default 64; 0: no journal).",
        ),
        click.option(
            "--no-offload",
            "no_offload",
            is_flag=True,
            help="No virtio-net offloads on the TUN: MTU-sized segments both ways and every "
            "checksum computed in Python, so --trace and --pcap show what a wire carries "
            "(default: TSO/GSO super-segments of up to 64 KiB and checksum offload where "
            "the kernel offers them; a TSO write the kernel refuses at run time is cut "
            "into segments in Python and TSO stays off, said under -v).",
        ),
        click.option(
            "--impair",
            type=Impair(),
            metavar="SPEC",
            help="Impair the link both ways, seeded: loss=5%,dup=1%,reorder=2%,delay=20ms,"
            "jitter=5ms,corrupt=0.1%,seed=7 (any subset); seed-in=N gives the incoming "
            "direction its own seed (default: one derived from seed).",
        ),
        click.option(
            "--tun",
            envvar="PYTCP_TUN",
            metavar="NAME",
            shell_complete=complete_tun,
            help="TUN interface to create or attach to (default: first free pytcpN, "
            "claimed atomically; pytcpN is always subnet 10.77.N.0/24); env PYTCP_TUN.",
        ),
        click.option(
            "--addr",
            envvar="PYTCP_ADDR",
            metavar="IP",
            multiple=True,
            help="pytcp's own address, IPv4 or IPv6; once per family (default: 10.77.N.2 "
            "and fd77:N::2); env PYTCP_ADDR.",
        ),
        click.option(
            "--gateway",
            metavar="IP/LEN",
            multiple=True,
            help="The kernel's address and prefix on the TUN, IPv4 or IPv6; once per family "
            "(default: 10.77.N.1/24 and fd77:N::1/64).",
        ),
        click.option(
            "--mtu",
            type=click.IntRange(576, 65535),
            metavar="BYTES",
            help="MTU of the TUN interface pytcp creates (default: 1500).",
        ),
    ]

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        stack = StackOptions(
            tun=kwargs.pop("tun"),
            addr=",".join(kwargs.pop("addr")) or None,
            gateway=",".join(kwargs.pop("gateway")) or None,
            mtu=kwargs.pop("mtu"),
            mss=kwargs.pop("mss"),
            trace=kwargs.pop("trace"),
            pcap=kwargs.pop("pcap"),
            verbose=kwargs.pop("verbose"),
            impair=kwargs.pop("impair"),
            cc=kwargs.pop("cc"),
            sack=not kwargs.pop("no_sack"),
            rack=not kwargs.pop("no_rack"),
            ecn=kwargs.pop("ecn"),
            nodelay=kwargs.pop("nodelay"),
            keepalive=kwargs.pop("keepalive"),
            wscale=not kwargs.pop("no_wscale"),
            timestamps=not kwargs.pop("no_timestamps"),
            journal_size=kwargs.pop("journal_size"),
            offload=not kwargs.pop("no_offload"),
            ladder=kwargs.pop("ladder"),
            record=kwargs.pop("record"),
            width=kwargs.pop("width"),
        )
        return f(stack=stack, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


# The NOTES section of the connect and listen man pages (scripts/generate.py).
CLOSE_NOTES = """\
TIME-WAIT: RFC 9293 §3.6.1 keeps the side that closed first in TIME-WAIT for 2·MSL
(60 s here, as Linux) so that a retransmitted FIN is acknowledged again. A script must
not wait a minute after its data is done, so pytcp stays only 1 s after the final ACK
by default, enough to re-ACK a retransmitted FIN, and then exits and removes its
interface. --time-wait DURATION changes that linger; --time-wait full holds the whole
2·MSL. connect and send hand the linger to a child process that keeps only the TUN
device (stdio on /dev/null, its own session), so the command returns at once; a later
pytcp that wants the interface asks that child to let go (not with --pcap or full).
The child hands the device to a pytcp of its own uid, which keeps the interface as it
is (nothing removed and made again) when it asks for that interface with the same
options, and makes it anew otherwise. With listen -k, the stack itself holds each
departed client's TIME-WAIT for the whole 2·MSL as a compact record (under 1 KiB) that
re-ACKs a late FIN, so while the listener is open and no signal came a client whose
close completed is let go at once, not held as a whole connection for the linger (nor
counted against --max-conns); --time-wait full keeps each connection until its
TIME-WAIT ends.

Signals: the first SIGINT, SIGTERM or SIGHUP (or any other signal that would end a
process: SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, ...) stops reading stdin, sends FIN on every
connection and waits up to 2 s for the close (then RST); every byte pytcp acknowledged
to a peer is written to stdout before it exits, however long stdout's reader takes.
When pytcp does not exit at once, it says on stderr (without -v too) what it waits for
and that a second signal ends it. A listen -e/-c child is not signalled: it gets every
byte its connection received, then EOF on its stdin, and pytcp waits for it to exit, up
to --child-grace (10 s by default; `pytcp inspect` shows the wait); then it is killed.
A second signal ends pytcp at once: RST on every connection, stdout gets what it
accepts without blocking, children are killed (SIGTERM to their process group, SIGKILL
1 s later) and reaped, and a line on stderr counts the received bytes that did not
reach stdout or a child. The status is 128 + the signal's number: 130 SIGINT, 143
SIGTERM, 129 SIGHUP. A signal that finds every connection closed already (pytcp only
lingering in TIME-WAIT, or listening with no client) and no child running ends pytcp
at once. A signal ignored when pytcp started stays ignored (nohup keeps it running
through a hangup), except SIGINT and SIGTERM.

Terminal job control: pytcp ignores SIGTTIN and SIGTTOU (so do its -e/-c children), so
a terminal never stops its stack. Started with `&` from an interactive shell, it does
not read the terminal while another job has the foreground; it keeps serving, and
reads the terminal once brought to the foreground (fg). ^Z (SIGTSTP) still suspends
it: its connections wait with it, their peers retransmitting, until fg or bg.

Closed by another process: `pytcp close --half ID` sends this connection's FIN; pytcp
stops reading stdin and says on stderr how many bytes of it were not sent. `pytcp close
ID` also refuses later data, `pytcp close --reset ID` aborts with RST; pytcp says which
happened (never "the peer closed") and answers the control request before it exits.

Back-pressure: pytcp reads stdin only while the connection has room for it, and reads
the connection only while stdout keeps up, so a slow reader shrinks the TCP window
instead of pytcp's memory.
"""


def family_option(f: F) -> F:
    """-4 / -6 for a command that names a HOST: one address family only, as nc's flags."""
    return _family_flags(f, "IPv{n} only: HOST must be or resolve to an IPv{n} address.")


def listen_family_option(f: F) -> F:
    """-4 / -6 for listen: one family's listener only (ADDR, if given, of that family)."""
    return _family_flags(f, "Listen on IPv{n} only (ADDR, when given, must be IPv{n}).")


def _family_flags(f: F, what: str) -> F:
    f = click.option("-6", "ipv6", is_flag=True, help=what.format(n=6))(f)
    return click.option("-4", "ipv4", is_flag=True, help=what.format(n=4))(f)


def family_of(ipv4: bool, ipv6: bool) -> int | None:
    """-4/-6 -> 4, 6 or None (both); both flags at once are a usage error."""
    if ipv4 and ipv6:
        raise click.UsageError("-4 and -6 exclude each other; give one or neither")
    return 4 if ipv4 else 6 if ipv6 else None


def time_wait_option(f: F) -> F:
    return click.option(
        "--time-wait",
        "time_wait",
        type=TimeWait(),
        default="1s",
        show_default=True,
        help="How long to stay after the close for a retransmitted FIN: a duration, "
        "or 'full' for the whole 2·MSL (60 s).",
    )(f)


def timeout_option(f: F) -> F:
    return click.option(
        "-w",
        "--timeout",
        type=DURATION,
        metavar="DURATION",
        help="Give up connecting after DURATION (500ms, 2s, 1m; default: the stack's "
        "SYN retries, about 2 min).",
    )(f)


def _no_udp(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        from pytcpcli.errors import EXIT_USAGE, CliError

        raise CliError("-u: pytcp is a TCP tool (no UDP); for UDP use nc -u or socat", EXIT_USAGE)


def complete_tun(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """--tun: the TUN interfaces of this network namespace (those /sys/class/net shows
    with tun_flags), then the next free pytcpN."""
    import os

    from click.shell_completion import CompletionItem

    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        names = []
    tuns = [n for n in names if os.path.exists(f"/sys/class/net/{n}/tun_flags")]
    free = next(f"pytcp{n}" for n in range(256) if f"pytcp{n}" not in names)
    found = [n for n in [*tuns, free] if n.startswith(incomplete)]
    return [CompletionItem(n) for n in dict.fromkeys(found)]


def complete_command(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """-e: executables on PATH (what the first word of CMD names); a path: files."""
    import os

    from click.shell_completion import CompletionItem

    if "/" in incomplete or " " in incomplete:
        return [CompletionItem(incomplete, type="file")]
    found: set[str] = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        try:
            entries = os.listdir(directory or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.startswith(incomplete) and os.access(os.path.join(directory, entry), os.X_OK):
                found.add(entry)
    return [CompletionItem(n) for n in sorted(found)[:200]]


def udp_option(f: F) -> F:
    """-u as nc users type it: one line saying pytcp is TCP only (exit 2)."""
    return click.option(
        "-u",
        "--udp",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_no_udp,
        help="Refused in one line: pytcp is a TCP tool.",
    )(f)


def shutdown_on_eof_option(f: F) -> F:
    """-N as nc spells it: FIN at stdin EOF, which pytcp does anyway."""
    return click.option(
        "-N",
        "--shutdown-on-eof",
        "shutdown_on_eof",
        is_flag=True,
        help="Send FIN at stdin EOF (what pytcp does by default; accepted as nc spells it).",
    )(f)


def idle_timeout_option(f: F) -> F:
    return click.option(
        "-i",
        "--idle-timeout",
        type=DURATION,
        metavar="DURATION",
        help="Close and fail (exit 1) after DURATION with no data either way.",
    )(f)
