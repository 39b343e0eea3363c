"""`pytcp connect HOST PORT`: the netcat client. Imports click, pytcpcli.app/options/relay/errors.

Parses the arguments, opens a stack, connects, and wires stdin and stdout to the
socket through `pytcpcli.relay`; no protocol logic lives here.
"""

from __future__ import annotations

from typing import Any

import click

from pytcpcli.app import App
from pytcpcli.errors import EXIT_CONN, EXIT_OK, EXIT_USAGE, CliError
from pytcpcli.options import (
    CLOSE_NOTES,
    PORT,
    PORTS,
    Duration,
    StackOptions,
    family_of,
    family_option,
    format_duration,
    idle_timeout_option,
    shutdown_on_eof_option,
    stack_options,
    time_wait_option,
    timeout_option,
    udp_option,
)
from pytcpcli.output import stdout_trouble
from pytcpcli.relay import CLOSED_STATES, FdReader, FdWriter, Relay, Session, unsent_input

ZERO_IO_CLOSE = 2.0  # seconds -z waits for the four-way close to finish

# Man page sections scripts/generate.py takes from each command module.
EXIT_STATUS = """\
0  the connection was made and closed cleanly (with -z: the port is open), or it was
   closed or reset by `pytcp close [--reset] ID` from another process: a close the
   user asked for is not a connection failure (stderr says which it was).
1  the connection failed: refused, reset by the peer, timed out (-w), idle (-i),
   unreachable, closed or reset by `pytcp close` before the handshake completed,
   or stdout was closed (also from the start, `>&-`) before every received byte was
   written.
2  usage error: a bad option, port, duration or --tun/--addr/--gateway value.
3  environment: no permission for /dev/net/tun, the interface is busy or was
   deleted while pytcp used it, ...
130  interrupted by SIGINT (143 SIGTERM, 129 SIGHUP: 128 + N for any signal); every
     byte received was written first, unless a second signal came while stdout's
     reader was stuck (see NOTES).
"""

NOTES = CLOSE_NOTES

EXAMPLES = """\
Fetch a web page through pytcp's own TCP:
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | pytcp connect 10.77.0.1 8000
Send a file and wait until the server has closed its side too:
  pytcp connect 10.77.0.1 9000 < backup.tar
Check whether a port is open:
  pytcp connect -z -w 2s 10.77.0.1 22 && echo open
Watch every segment and state change on stderr:
  echo hello | pytcp connect --trace 10.77.0.1 7
"""


class ConnectSession(Session):
    """One connection relayed to stdin and stdout until it is closed both ways."""

    def __init__(
        self,
        app: App,
        stack: Any,
        sock: Any,
        *,
        time_wait: float | None,
        quit_after: float | None,
        idle_timeout: float | None,
        no_shutdown: bool,
        recv_only: bool,
        send_only: bool,
        crlf: bool,
        verbose: int,
        detach: Any = None,
    ) -> None:
        super().__init__(
            stack.loop, time_wait=time_wait, say=app.say if verbose else None, warn=app.say
        )
        self.detach = detach
        self.app = app
        self.sock = sock
        self.quit_after = quit_after
        self.idle_timeout = idle_timeout
        self.no_shutdown = no_shutdown
        self.recv_only = recv_only
        self.verbose = verbose
        self.started = self.loop.now()
        self.ended: int | None = None
        self.last_activity = self.started
        self.stdin_eof = False
        self.stdout = FdWriter(
            self.loop,
            app.stdout_fd,
            owned=False,
            gone=app.stdout_closed,
            on_drain=self._on_stdout_drain,
            on_broken=self._on_stdout_broken,
        )
        sock.setblocking(False)
        self.relay = Relay(
            sock,
            None if send_only else self.stdout,
            on_progress=self._on_progress,
            on_peer_eof=self._on_peer_eof,
            on_done=self._on_done,
            on_write_side_gone=self._on_write_side_gone,
            crlf=crlf,
            shutdown_on_eof=not no_shutdown,
        )
        self.stdin: FdReader | None = None
        if not recv_only:
            self.stdin = FdReader(self.loop, app.stdin_fd, self._on_stdin, self._on_stdin_eof)
            self.stdin.resume()
        if idle_timeout is not None:
            self.loop.call_later(idle_timeout, self._check_idle)
        self.relay.pump()

    # -- stdin -> socket

    def _on_stdin(self, data: bytes) -> None:
        self.last_activity = self.loop.now()
        self.relay.feed(data)
        if not self.relay.has_room and self.stdin is not None:
            self.stdin.pause()  # back-pressure: resumed from _on_progress

    def _on_stdin_eof(self) -> None:
        self.stdin_eof = True
        if self.no_shutdown and self.relay.peer_eof:
            self.relay.shutdown_now()
        else:
            self.relay.feed_eof()
        if self.quit_after is not None:
            self.loop.call_later(self.quit_after, self._quit)

    # -- socket -> stdout

    def _on_progress(self) -> None:
        self.last_activity = self.loop.now()
        if self.stdin is not None and self.relay.has_room and self.signum is None:
            self.stdin.resume()

    def _on_stdout_drain(self) -> None:
        self.relay.pump()

    def _on_peer_eof(self) -> None:
        if self.verbose:
            self.app.say("the peer closed its side of the connection")
        # The next stage of a pipeline sees EOF as soon as the peer has nothing more.
        self.stdout.close_when_drained()
        if self.recv_only or (self.no_shutdown and self.stdin_eof):
            self.relay.shutdown_now()

    def _on_write_side_gone(self, unsent: int) -> None:
        """`pytcp close [--half] ID` from another process sent our FIN: stdin can no
        longer go anywhere, so it is no longer read; say so whatever -v says."""
        reading = self.stdin is not None and not self.stdin_eof
        if self.stdin is not None and reading:
            self.stdin.stop()
        how = getattr(self.sock, "closed_elsewhere", None)
        if how == "closed":
            what = "the connection was closed by pytcp close (another process)"
        else:
            what = "the write side was closed by pytcp close --half (another process)"
        # Counted after the stop: nothing more is read, so what stdin holds now is lost.
        lost = unsent_input("stdin", unsent, self.app.stdin_fd if reading else None)
        self.app.say(what + (f"; {lost}" if lost else ""))

    def _on_stdout_broken(self) -> None:
        assert self.stdout is not None
        self.error = stdout_trouble(self.stdout.errno)
        self.code = EXIT_CONN
        if not self.relay.peer_eof and not self.relay.done:
            self.relay.abort()  # nobody takes what arrives: say so to the peer (RST)

    # -- the end

    def _on_done(self, relay: Relay) -> None:
        if self.stdin is not None:
            self.stdin.stop()
        if relay.failure is not None and self.signum is None and self.error is None:
            addr, port = self.sock.remote
            failure = self.app.connect_failure(relay.failure, addr, port, None, established=True)
            self.code = failure.exit_code
            self.error = failure.format_message()
        self.ended = self.loop.now()
        if relay.failure is None and self.error is None:
            self.settle(self.sock, self._finish)
        else:
            self._finish()

    def _finish(self) -> None:
        """The connection is over; run() writes out what stdout still holds."""
        if self.finished:
            return
        if self.stdin is not None:
            self.stdin.stop()
        try:
            self.sock.close()
        except OSError:
            pass
        self.finished = True

    def _quit(self) -> None:
        """-q: the time after stdin EOF is up; take what arrived, then abort with RST,
        as a kernel close does when data could still arrive unread (RFC 1122
        4.2.2.13): the peer must not be left half-open. The RST waits until the peer
        has acknowledged all of stdin, which it would otherwise discard."""
        if self.relay.done:
            return
        self.relay.abort_when_sent()

    def _check_idle(self) -> None:
        assert self.idle_timeout is not None
        if self.finished or self.relay.done:
            return
        idle_for = (self.loop.now() - self.last_activity) / 1e9
        if idle_for >= self.idle_timeout:
            self.code = EXIT_CONN
            self.error = f"no data either way for {format_duration(self.idle_timeout)} (-i); "
            self.error += "closed the connection"
            self.relay.abort()
            return
        self.loop.call_later(self.idle_timeout - idle_for, self._check_idle)

    def has_open_connections(self) -> bool:
        # The stack's state, not the relay's: the relay learns of the peer's FIN only
        # after the loop iteration that moved the connection to TIME-WAIT, and a signal
        # can be read in between.
        return not self.relay.done and self.sock.state not in CLOSED_STATES

    def graceful_close(self) -> None:
        if self.stdin is not None:
            self.stdin.stop()
        if self.relay.done:
            # Closed both ways already, lingering in TIME-WAIT (--time-wait): nothing
            # is left to close, so pytcp goes now.
            self._finish()
            return
        self.relay.shutdown_now()

    def abort_all(self) -> None:
        if not self.relay.done:
            self.relay.abort()
        self._finish()

    def run(self) -> int:
        failed = True
        try:
            self.loop.run_until(lambda: self.finished, None)
            failed = False
        finally:
            # stdout drains with signals still watched: a second ^C while its reader is
            # stuck ends pytcp at once (RST, what cannot be written is reported).
            self.finish_output(self.stdout, failed=failed)
        if self.verbose:
            seconds = ((self.ended or self.loop.now()) - self.started) / 1e9
            self.app.say(
                f"{self.relay.sent} bytes sent, {self.relay.received} received in {seconds:.2f} s"
            )
        if self.error is not None and self.signum is None:
            raise CliError(self.error, self.code)
        return self.code


def scan(
    app: App,
    st: Any,
    address: str,
    ports: list[int],
    timeout: float | None,
    source_port: int | None,
    verbose: int,
) -> int:
    """-z: a handshake with each port, many at once (stack.api.Stack.scan), then FIN.
    With -v one line per port in the order given, open or not, in one format; without
    -v, a single port's failure is its usual line. Exit 0 when at least one is open."""
    if source_port is not None and len(ports) > 1:
        raise CliError("-p fixes one source port: scan one port at a time with it", EXIT_USAGE)
    if len(ports) == 1 and source_port is not None:
        sock = app.connect(st, address, ports[0], timeout=timeout, source_port=source_port,
                           verbose=0)  # fmt: skip
        zero_io(st, sock)
        if verbose:
            app.say(scan_line(app, address, ports[0], None, timeout))
        return EXIT_OK
    results = st.scan(address, ports, timeout=timeout)
    if verbose:
        for port in dict.fromkeys(ports):
            app.say(scan_line(app, address, port, results[port], timeout))
    elif len(ports) == 1 and results[ports[0]] is not None:
        raise app.connect_failure(results[ports[0]], address, ports[0], timeout)
    return EXIT_OK if any(e is None for e in results.values()) else EXIT_CONN


def scan_line(app: App, address: str, port: int, error: BaseException | None,
              timeout: float | None) -> str:  # fmt: skip
    """-z -v: `connection to A port P succeeded: open`, `... refused: closed`, or the
    failure's own line (timed out, unreachable)."""
    if error is None:
        return f"connection to {address} port {port} succeeded: open"
    if isinstance(error, ConnectionRefusedError):
        return f"connection to {address} port {port} refused: closed"
    return app.connect_failure(error, address, port, timeout).format_message()


def zero_io(stack: Any, sock: Any) -> None:
    """-z: close right after the handshake and give the four-way close a moment."""
    sock.shutdown()
    stack.loop.run_until(lambda: sock.state in ("TIME-WAIT", "CLOSED"), ZERO_IO_CLOSE)
    sock.close()


@click.command(
    epilog="stdout carries the connection's data only; every message goes to stderr.",
    short_help="Connect to HOST PORT and relay stdin/stdout (the netcat client).",
)
@click.argument("host")
@click.argument("port_args", metavar="PORT", nargs=-1, required=True, type=PORTS)
@timeout_option
@idle_timeout_option
@click.option(
    "-q",
    "quit_after",
    type=Duration(allow_zero=True),
    metavar="DURATION",
    help="Exit DURATION after stdin EOF, whatever the peer does; a connection still "
    "open then is aborted with RST (the peer is not left half-open) as soon as the peer "
    "has acknowledged all of stdin (an RST would discard it; nc -q's kernel sends it).",
)
@click.option(
    "--no-shutdown",
    is_flag=True,
    help="At stdin EOF keep the write side open (no FIN) until the peer closes.",
)
@shutdown_on_eof_option
@udp_option
@click.option(
    "-z",
    "zero",
    is_flag=True,
    help="Only check the port: handshake and close, no data (exit 0 open, 1 not).",
)
@click.option("-p", "--source-port", type=PORT, help="Local port to connect from.")
@click.option("-n", "--numeric", is_flag=True, help="HOST is an IP address; never look names up.")
@family_option
@click.option(
    "-d",
    "--recv-only",
    is_flag=True,
    help="Do not read stdin; only receive (FIN after the peer's).",
)
@click.option(
    "--send-only",
    is_flag=True,
    help="Discard what the peer sends; only send stdin. At stdin EOF pytcp still waits "
    "for the peer's FIN, where ncat --send-only quits: add -q 0 for that.",
)
@click.option("-C", "--crlf", is_flag=True, help="Send LF line endings from stdin as CRLF.")
@time_wait_option
@stack_options
@click.pass_obj
def connect(
    app: App,
    stack: StackOptions,
    host: str,
    port_args: tuple[list[int], ...],
    timeout: float | None,
    idle_timeout: float | None,
    quit_after: float | None,
    no_shutdown: bool,
    shutdown_on_eof: bool,
    zero: bool,
    source_port: int | None,
    numeric: bool,
    ipv4: bool,
    ipv6: bool,
    recv_only: bool,
    send_only: bool,
    crlf: bool,
    time_wait: float | None,
) -> None:
    """Connect to HOST PORT through pytcp's own TCP and relay stdin and stdout.

    Bytes go exactly as they come, both ways. At stdin EOF pytcp sends FIN
    (half-close) and keeps receiving until the peer's FIN, then exits 0. When the
    peer closes first, stdout is closed at once so the next stage of a pipeline
    sees EOF, and stdin is still sent until its EOF. When stdout's reader goes
    away (EPIPE) or stdout fails before the peer's FIN, pytcp can take no more: it
    resets the connection (RST, also after its own FIN) and exits 1.

    HOST is an IPv4 or IPv6 address (brackets allowed: [fd77:0::1]) or a name
    for the system resolver (not with -n), A or AAAA; -4/-6 keep to one family.
    PORT is a number or a service name (ssh); with -z there may be several, each a
    port, a range (20-30; 30-20 counts down) or a comma list (22,80,443), tried many
    at once (exit 0 when at least one is open; -v reports each port in the order
    given: succeeded: open, refused: closed, or why not).
    DURATIONs are written 500ms, 2s, 1.5, 1m. After the close pytcp stays in
    TIME-WAIT for --time-wait (1 s by default, enough to re-ACK a retransmitted
    FIN), not the full 2·MSL of RFC 9293 unless --time-wait full.
    The first SIGINT closes gracefully (FIN), a second one aborts (RST); every
    byte received is written to stdout before pytcp exits.
    """
    if recv_only and send_only:
        raise CliError("--recv-only and --send-only exclude each other; pick one", EXIT_USAGE)
    if no_shutdown and shutdown_on_eof:
        raise CliError("-N and --no-shutdown exclude each other; pick one", EXIT_USAGE)
    ports = [p for group in port_args for p in group]
    if len(ports) > 1 and not zero:
        raise CliError(
            "several ports (a range, a list) need -z: only a scan tries many ports", EXIT_USAGE
        )
    addresses = app.resolve_all(host, numeric, family_of(ipv4, ipv6))
    address = addresses[0]
    if zero:
        with app.stack(stack) as st, app.control(st, stack.verbose):
            code = scan(app, st, address, ports, timeout, source_port, stack.verbose)
            if time_wait is not None:
                st.linger_in_background(time_wait)  # open ports re-ACK a late FIN there
        if code != EXIT_OK:
            click.get_current_context().exit(code)
        return
    port = ports[0]
    with app.stack(stack) as st, app.control(st, stack.verbose):
        sock = app.connect_any(
            st, host, addresses, port, timeout=timeout, source_port=source_port,
            verbose=stack.verbose,
        )  # fmt: skip
        code = ConnectSession(
            app,
            st,
            sock,
            time_wait=time_wait,
            quit_after=quit_after,
            idle_timeout=idle_timeout,
            no_shutdown=no_shutdown,
            recv_only=recv_only,
            send_only=send_only,
            crlf=crlf,
            verbose=stack.verbose,
            detach=st.linger_in_background,
        ).run()
    if code != EXIT_OK:
        click.get_current_context().exit(code)
