"""The application object the root group puts in `ctx.obj` (hatch style).

Holds what commands share: how to build a stack (`stack_factory`, which tests
replace), the data fds, the stderr messages of -v/-vv/--trace, and the one place
that turns the stack's exceptions into `CliError`s with DESIGN §4 exit statuses.
Imports click, `pytcpcli.errors`, `pytcpcli.options`, and `stack` lazily (so
`--help` works without importing the stack).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pytcpcli.errors import EXIT_CONN, EXIT_ENV, EXIT_OK, EXIT_USAGE, CliError
from pytcpcli.options import StackOptions, format_duration

CONTROL_LINGER = 0.5  # seconds control clients connected at the end are still served
StackFactory = Callable[[StackOptions, Callable[[Any], None] | None], Any]


def tcp_config(opts: StackOptions) -> Any:
    """The stack's TcpConfig with what --mss, --cc, --no-sack, ... changed (None: defaults)."""
    overrides = opts.tcp_overrides()
    if not overrides:
        return None
    return importlib.import_module("stack.api").TcpConfig(**overrides)


def default_stack_factory(opts: StackOptions, tracer: Callable[[Any], None] | None) -> Any:
    """A `stack.api.Stack` on a TUN device, configured from the command line."""
    api = importlib.import_module("stack.api")
    return api.Stack(
        tun=opts.tun,
        addr=opts.addr,
        gateway=opts.gateway,
        mtu=opts.mtu,
        config=tcp_config(opts),
        tracer=tracer,
        pcap=opts.pcap,
        impair=opts.impair,
        offload=opts.offload,
    )


def offload_note(stack: Any) -> str:
    """What -v says of the offloads on a stack's TUN: "offloads rx csum+tso4+tso6 tx
    csum+tso", "offloads off", or "" for a stack without a TUN (tests' paired stacks)."""
    if not getattr(stack, "tun_name", ""):
        return ""
    offloads = getattr(stack, "offloads", None) or {}
    rx, tx = offloads.get("rx", []), offloads.get("tx", [])
    if not rx and not tx:
        return "offloads off"
    return f"offloads rx {'+'.join(rx) or 'none'} tx {'+'.join(tx) or 'none'}"


def _environment_errors() -> tuple[type[BaseException], ...]:
    try:
        return (importlib.import_module("stack.api").StackEnvironmentError,)
    except (ImportError, AttributeError):
        return ()


def silence(stream: Any) -> None:
    """stderr failed (full disk, closed): point its fd at /dev/null so what is still
    buffered, and every later message, goes nowhere instead of failing again (also the
    interpreter's final flush, which would otherwise turn the exit status into 120)."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except (OSError, AttributeError, ValueError):
        pass


def write_err(stream: TextIO | None, text: str) -> None:
    """Write a message to stderr if it can be written: diagnostics never affect data.
    `stream` is None when fd 2 was closed before Python started (sys.stderr is None)."""
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        silence(stream)


class TraceWriter:
    """The --trace / -vv sink: one tcpdump-style line per segment, one per state change.

    `SECONDS In|Out <tcpdump line>`, `SECONDS PID.N: OLD -> NEW`, for segments the
    stack refused `SECONDS drop[ PID.N]: REASON`, and for segments `pytcp impair`
    changed `SECONDS impair PID.N: ACTION (FAULT, N left) In|Out <tcpdump line>`; seconds from the
    first event. Sequence numbers print relative to each side's ISN once both SYNs were
    seen, as tcpdump does. Lines go to stderr (stdout carries connection data only).
    """

    def __init__(self, err: TextIO, *, segments: bool, states: bool) -> None:
        self.err = err
        self.segments = segments
        self.states = states
        self.start: int | None = None
        self.isn: dict[Any, int] = {}  # (addr, port) -> that endpoint's ISN

    def __call__(self, event: Any) -> None:
        try:
            self._write(event)
        except OSError:
            # A sink must not raise into the stack; a broken stderr is not worth a crash.
            silence(self.err)
        except Exception:
            pass

    def _write(self, event: Any) -> None:
        if self.start is None:
            self.start = event.now
        stamp = f"{(event.now - self.start) / 1e9:.6f}"
        kind = event.kind
        if kind in ("segment-in", "segment-out") and self.segments:
            seg, src, dst = event.fields["segment"], event.fields["src"], event.fields["dst"]
            pretty = importlib.import_module("stack.wire.pretty")
            sender, receiver = (src, seg.src_port), (dst, seg.dst_port)
            if seg.flags & 0x02:  # SYN: remember this side's ISN
                self.isn[sender] = seg.seq
            isn = None
            if sender in self.isn and receiver in self.isn and not seg.flags & 0x02:
                isn = (self.isn[sender], self.isn[receiver])
            line = pretty.format_segment(seg, src, dst, isn=isn)
            # In/Out as tcpdump -i any marks direction; then tcpdump's own line.
            self.err.write(f"{stamp} {'In ' if kind == 'segment-in' else 'Out'} {line}\n")
        elif kind == "impair" and self.segments:
            # What `pytcp impair` did to a segment: "impair PID.N: dropped In <line>".
            f = event.fields
            what = f"{f.get('action')} ({f.get('fault')}"
            what += f", {f['left']} left)" if "left" in f else ")"
            line = ""
            if "segment" in f:
                pretty = importlib.import_module("stack.wire.pretty")
                seg, src, dst = f["segment"], f["src"], f["dst"]
                isn = None
                sender, receiver = (src, seg.src_port), (dst, seg.dst_port)
                if sender in self.isn and receiver in self.isn and not seg.flags & 0x02:
                    isn = (self.isn[sender], self.isn[receiver])
                way = "In " if f.get("direction") == "in" else "Out"
                line = f" {way} {pretty.format_segment(seg, src, dst, isn=isn)}"
            self.err.write(f"{stamp} impair {os.getpid()}.{event.conn}: {what}{line}\n")
        elif kind == "drop" and self.segments:
            # A segment the stack refused (bad checksum, out of window, ...): say why.
            who = f" {os.getpid()}.{event.conn}" if event.conn is not None else ""
            self.err.write(f"{stamp} drop{who}: {event.fields.get('reason', '?')}\n")
        elif kind == "state" and (self.states or self.segments):
            fields = event.fields
            # The connection as `pytcp inspect` names it: PID.N.
            conn = f"{os.getpid()}.{event.conn}"
            self.err.write(f"{stamp} {conn}: {fields['old']} -> {fields['new']}\n")
        else:
            return
        self.err.flush()


def _other_family(host: str, family: int | None) -> list[str]:
    """After a lookup limited to `family` found nothing: the addresses `host` has in the
    other family (empty when it has none, or when no family was asked for)."""
    if family is None:
        return []
    other = socket.AF_INET6 if family == 4 else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, None, other, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


@dataclass
class App:
    """What every command needs; `pytcp` builds one, tests build their own."""

    stack_factory: StackFactory = default_stack_factory
    stdin_fd: int = 0
    stdout_fd: int = 1
    stdout_closed: bool = False  # the caller closed stdout (`>&-`): received data is lost
    err: TextIO | None = None
    resolver: Callable[[str], str | list[str]] | None = None
    serve_control: bool = True  # let `pytcp inspect/send/close` reach our connections
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stderr(self) -> TextIO | None:
        """Where messages go; None when there is no stderr (fd 2 closed at start)."""
        return self.err if self.err is not None else sys.stderr

    def say(self, message: str) -> None:
        """One `pytcp: ...` line on stderr (-v output, warnings). A stderr that cannot
        be written loses the line, never the connection's data."""
        write_err(self.stderr, f"pytcp: {message}\n")

    def make_tracer(self, opts: StackOptions) -> Callable[[Any], None] | None:
        sinks: list[Callable[[Any], None]] = []
        if opts.record is not None:
            record = importlib.import_module("pytcpcli.record")
            try:
                stream = record.open_record(opts.record)
            except OSError as e:
                raise CliError(
                    f"cannot write record file {opts.record}: {e.strerror}", EXIT_ENV
                ) from None
            recorder = record.Recorder(stream, warn=self.say)
            self.extra["recorder"] = recorder
            sinks.append(recorder)
        if self.stderr is None:
            return importlib.import_module("stack.trace").fan_out(*sinks) if sinks else None
        if opts.trace or opts.verbose >= 2:
            sinks.append(TraceWriter(self.stderr, segments=opts.trace, states=opts.verbose >= 2))
        if opts.ladder:
            ladder = importlib.import_module("pytcpcli.ladder").Ladder(
                self.stderr, width=opts.width
            )
            self.extra["ladder"] = ladder
            sinks.append(ladder)
        if not sinks:
            return None
        if len(sinks) == 1:
            return sinks[0]
        return importlib.import_module("stack.trace").fan_out(*sinks)

    @contextlib.contextmanager
    def stack(self, opts: StackOptions) -> Iterator[Any]:
        """Build, enter and always close a stack; environment failures exit 3."""
        env_errors = _environment_errors()
        try:
            stack = self.stack_factory(opts, self.make_tracer(opts))
            entered = stack.__enter__()
        except env_errors as e:
            # EINVAL: a bad --tun/--addr/--gateway value is a usage error, the rest is
            # the machine (no /dev/net/tun, no permission, interface busy).
            code = EXIT_USAGE if getattr(e, "errno", None) == errno.EINVAL else EXIT_ENV
            raise CliError(str(e), code) from None
        except PermissionError as e:
            raise CliError(
                f"no permission to set up the TUN device ({e.strerror}); "
                "run as root or attach to a persistent TUN with --tun",
                EXIT_ENV,
            ) from None
        live = entered if entered is not None else stack
        if opts.verbose and hasattr(live, "on_link_note"):
            live.on_link_note = self.say  # -v: the link changed mid-run (TSO refused)
        ladder = self.extra.pop("ladder", None)
        recorder = self.extra.pop("recorder", None)
        for sink in (ladder, recorder):
            if sink is not None:
                sink.attach(entered if entered is not None else stack)
        try:
            try:
                yield entered if entered is not None else stack
            except env_errors as e:
                # The machine took the interface away mid-run (`ip link del`): one line,
                # exit 3.
                with contextlib.suppress(Exception):
                    stack.__exit__(*sys.exc_info())
                raise CliError(str(e), EXIT_ENV) from None
            except BaseException:
                # Leaving on an error or ^C: the stack resets its connections at once.
                stack.__exit__(*sys.exc_info())
                raise
            stack.__exit__(None, None, None)
        finally:
            if ladder is not None:
                ladder.close()  # what the close traced after the last loop iteration
            if recorder is not None:
                recorder.detach()
                with contextlib.suppress(OSError):
                    recorder.stream.close()

    @contextlib.contextmanager
    def control(self, stack: Any, verbose: int = 0) -> Iterator[None]:
        """Serve this process's connections to `pytcp inspect`, `send --conn` and `close`
        (stack.control) while the block runs. A control socket that cannot be made costs
        only that: the data path goes on, and -v says why."""
        server = None
        if self.serve_control:
            control = importlib.import_module("stack.control")
            try:
                server = control.ControlServer(stack).start()
            except (OSError, control.ControlError) as e:
                # Said always when the user chose the directory (PYTCP_RUNTIME_DIR): it
                # is not what they asked for; otherwise under -v.
                if verbose or os.environ.get("PYTCP_RUNTIME_DIR"):
                    self.say(f"warning: {e}; pytcp inspect will not see this process")
        failed = True
        try:
            yield
            failed = False
        finally:
            if server is not None:
                if not failed:
                    # A `pytcp close` may have ended the run: answer the control clients
                    # still connected (their replies, a follow-up request) before going.
                    stack.loop.run_until(lambda: not server.clients, CONTROL_LINGER)
                server.close()

    def resolve(self, host: str, numeric: bool, family: int | None = None) -> str:
        """The first of `resolve_all`: where a scan or a probe goes."""
        return self.resolve_all(host, numeric, family)[0]

    def resolve_all(self, host: str, numeric: bool, family: int | None = None) -> list[str]:
        """HOST as an address string: an IPv4 or IPv6 literal as it is (brackets allowed,
        `[fd77::1]`); a name through the system resolver unless -n (then a usage error),
        limited to `family` (4 or 6, from -4/-6) when given: the first address
        getaddrinfo returns (its RFC 6724 order), as nc takes it."""
        text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            literal = ipaddress.ip_address(text)
        except ValueError:
            literal = None
        if isinstance(literal, ipaddress.IPv6Address) and literal.is_link_local:
            raise CliError(
                f"{host}: pytcp has no link-local address (no %zone); give its fd77 address "
                "or a global one",
                EXIT_USAGE,
            )
        if isinstance(literal, ipaddress.IPv6Address) and literal.scope_id is not None:
            # A zone names one of this host's links; off link-local it means nothing (Linux
            # ignores it there) and pytcp's own interface is the only link it uses.  Kept,
            # it would make the connection's address differ from the replies' (no match).
            literal = ipaddress.IPv6Address(text.split("%", 1)[0])
        if literal is not None:
            if family is not None and literal.version != family:
                raise CliError(
                    f"{host} is an IPv{literal.version} address but -{family} asks for "
                    f"IPv{family}; drop -{family} or give an IPv{family} address",
                    EXIT_USAGE,
                )
            return [str(literal)]
        if numeric:
            raise CliError(
                f"{host!r} is not an IP address and -n forbids name lookups; give an address",
                EXIT_USAGE,
            )
        if self.resolver is not None:  # tests: one address, or a list of them
            found = self.resolver(host)
            return list(found) if isinstance(found, list) else [found]
        af = {4: socket.AF_INET, 6: socket.AF_INET6}.get(family or 0, socket.AF_UNSPEC)
        try:
            infos = socket.getaddrinfo(host, None, af, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
            other = _other_family(host, family) if isinstance(e, socket.gaierror) else []
            if other:
                # The name is fine; -4/-6 ruled out every address it has.
                version = 6 if family == 4 else 4
                raise CliError(
                    f"{host!r} has only IPv{version} addresses ({', '.join(other)}); drop "
                    f"-{family} or give -{version}"
                ) from None
            which = f" to an IPv{family} address" if family is not None else ""
            raise CliError(
                f"cannot resolve {host!r}{which} ({reason}); check the name or give an address"
            ) from None
        # Every address, each once, in getaddrinfo's order (RFC 6724): nc tries them in
        # turn.
        return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))

    def connect_any(
        self,
        st: Any,
        host: str,
        addresses: list[str],
        port: int,
        *,
        timeout: float | None,
        source_port: int | None,
        verbose: int,
    ) -> Any:
        """Connect to the first of `addresses` (all of HOST's) that answers, each with
        the whole `timeout`, as nc does; -v names each one that failed, and the
        connected line names the one that answered. The last failure is the error."""
        for n, address in enumerate(addresses):
            try:
                return self.connect(
                    st, address, port, timeout=timeout, source_port=source_port,
                    verbose=verbose,
                )  # fmt: skip
            except CliError as e:
                if n + 1 == len(addresses) or e.exit_code != EXIT_CONN:
                    raise
                if verbose:
                    self.say(f"{e.format_message()}; trying the next address of {host}")
        raise AssertionError("unreachable: addresses is never empty")

    def connect(
        self,
        st: Any,
        address: str,
        port: int,
        *,
        timeout: float | None,
        source_port: int | None,
        verbose: int,
    ) -> Any:
        """Open a connection on stack `st`; a failure becomes its one line, and -v says
        whom it connected to and from where."""
        try:
            sock = st.connect(address, port, timeout=timeout, source_port=source_port)
        except OSError as e:
            raise self.connect_failure(e, address, port, timeout) from None
        if verbose:
            local_addr, local_port = sock.local
            note = offload_note(st)
            self.say(
                f"connected to {address} port {port} from {local_addr} port {local_port} "
                f"({st.tun_name + ', ' if st.tun_name else ''}{note + ', ' if note else ''}"
                f"id {sock.id})"
            )
        return sock

    def connect_failure(
        self,
        error: BaseException,
        host: str,
        port: int,
        timeout: float | None,
        *,
        established: bool = False,
    ) -> CliError:
        """The one line for a connection that could not be made or broke (exit 1);
        `established`: it broke after the handshake (no -w hint then)."""
        where = f"{host} port {port}"
        how = getattr(error, "how", None)  # stack.api.ClosedElsewhere: pytcp close did it
        if how is not None:
            by = "reset by pytcp close --reset" if how == "reset" else "closed by pytcp close"
            if getattr(error, "established", True):
                # The user ended it on purpose, as with ^C: not a connection failure.
                return CliError(f"connection to {where} {by} (another process)", EXIT_OK)
            return CliError(
                f"connection to {where} {by} (another process) before it was established"
            )
        if isinstance(error, ConnectionRefusedError):
            return CliError(f"connection to {where} refused; check that something listens there")
        if isinstance(error, ConnectionResetError):
            return CliError(f"connection to {where} reset by the peer")
        if isinstance(error, TimeoutError) and established:
            return CliError(
                f"connection to {where} timed out: the peer stopped answering "
                "(retransmissions or keepalive probes went unacknowledged)"
            )
        if isinstance(error, TimeoutError):
            after = f" after {format_duration(timeout)}" if timeout is not None else ""
            return CliError(
                f"connection to {where} timed out{after}; check the address and route, or raise -w"
            )
        if isinstance(error, OSError) and error.errno == errno.EADDRNOTAVAIL:
            # The stack's own explanation (its own address).
            return CliError(f"cannot connect to {where}: {error.strerror}")
        if (
            isinstance(error, OSError)
            and error.errno == errno.ENETUNREACH
            and error.strerror
            and error.strerror != os.strerror(errno.ENETUNREACH)
        ):
            # The stack's own explanation: a loopback address (`localhost`), which the
            # kernel never routes from a TUN.
            return CliError(f"cannot connect to {where}: {error.strerror}")
        if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return CliError(f"{where} is unreachable; check the address and the routes")
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            return CliError("the source port is in use; choose another -p", EXIT_ENV)
        reason = getattr(error, "strerror", None) or str(error)  # no raw "[Errno N]"
        return CliError(f"connection to {where} failed: {reason}", EXIT_CONN)
