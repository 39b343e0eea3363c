"""`pytcp send HOST PORT [DATA...]` (one shot) and `pytcp send --conn ID [DATA...]`.

Imports click, `pytcpcli.app`/`options`/`output`/`errors`, `pytcpcli.commands.inspect`
(ID completion) and `stack.control` (the client); no protocol logic lives here.
"""

from __future__ import annotations

import os
import time
from typing import Any

import click

from pytcpcli.app import App
from pytcpcli.commands.inspect import complete_data_connection_ids
from pytcpcli.errors import EXIT_CONN, EXIT_USAGE, CliError
from pytcpcli.options import (
    PORT,
    StackOptions,
    family_of,
    family_option,
    format_duration,
    stack_options,
    time_wait_option,
    timeout_option,
    udp_option,
)
from pytcpcli.output import send_report, stdout_trouble
from stack.control import MAX_SEND_CHUNK, ControlClient, ControlError

QUEUE_WAIT = 10.0  # seconds --conn waits for room in a full send buffer
POLL = 0.05

EXIT_STATUS = """\
0  sent, the four-way close completed, and the peer's reply was written to stdout;
   with --conn: every byte was queued on the connection.
1  the connection failed (refused, reset, timed out, unreachable), or the reply could
   not be written to stdout (closed, also from the start, `>&-`; its reader gone,
   `| head -c1`; a full disk, `> /dev/full`: stderr names which, and the connection is
   reset); with --conn: no live connection matches ID, its write side is closed, or
   its send buffer stayed full for 10 s (the bytes queued so far are reported).
2  usage error: no HOST PORT (and no --conn), DATA with --file, a bad port, stack
   options with --conn.
3  environment: no permission for /dev/net/tun, the interface is busy, ...
130  interrupted by SIGINT.
143  terminated by SIGTERM (129 SIGHUP; 128 + N for any signal that ends a process).
"""

EXAMPLES = """\
Ask a server one thing and print its answer (DATA joined like echo, newline added):
  pytcp send 10.77.0.1 7 hello world
Without the newline, or from a file, or from stdin:
  pytcp send -n 10.77.0.1 7 ping
  pytcp send --file request.bin 10.77.0.1 9000 > reply.bin
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | pytcp send -v 10.77.0.1 80
Queue text on a live connection held by another pytcp (ID from pytcp inspect); with
--conn every argument is DATA, so this queues "10.77.0.1 7 hi" and a newline:
  pytcp send --conn 4242.3 'hello from outside'
  pytcp send --conn 4242.3 10.77.0.1 7 hi
"""


def _payload(app: App, data: tuple[str, ...], no_newline: bool, file: str | None) -> bytes:
    """DATA joined by spaces with a newline (echo), or the file, or stdin to EOF."""
    if file is not None:
        if data:
            raise CliError("give DATA or --file, not both", EXIT_USAGE)
        try:
            with open(file, "rb") as f:
                return f.read()
        except OSError as e:
            raise CliError(f"cannot read {file}: {e.strerror}", EXIT_USAGE) from None
    if data:
        text = " ".join(data) + ("" if no_newline else "\n")
        return os.fsencode(text)  # arguments as the shell gave them, bytes preserved
    chunks = []
    while chunk := os.read(app.stdin_fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


class StdoutTrouble(Exception):
    """The reply could not be written to stdout (closed, its reader gone, a full disk):
    stdout's trouble, never the connection's (connect's rules, DESIGN §4)."""

    def __init__(self, error: OSError | None) -> None:
        super().__init__(error)
        self.error = error

    def message(self) -> str:
        return stdout_trouble(self.error.errno if self.error is not None else None)


class Reply:
    """Writes the peer's bytes to stdout and counts what got there."""

    def __init__(self, fd: int, closed: bool) -> None:
        self.fd = fd
        self.closed = closed  # the caller closed stdout (`>&-`): nothing can be written
        self.written = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.closed:
            raise StdoutTrouble(None)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError as e:
                raise StdoutTrouble(e) from None
            view = view[n:]
            self.written += n


def _queue(app: App, conn_id: str, payload: bytes) -> None:
    client = ControlClient()
    try:
        full_id = client.resolve(conn_id)
    except ControlError as e:
        raise CliError(str(e), EXIT_CONN) from None
    queued = 0
    waited_since: float | None = None
    while queued < len(payload) or not payload:
        try:
            n = client.send(full_id, payload[queued : queued + MAX_SEND_CHUNK])["queued"]
        except ControlError as e:
            if queued:
                click.echo(f"{queued} bytes queued on {full_id}")
            raise CliError(str(e), EXIT_CONN) from None
        queued += n
        if not payload:
            break
        if n:
            waited_since = None
            continue
        # The send buffer is full: the peer's window decides when room comes back.
        now = time.monotonic()
        waited_since = now if waited_since is None else waited_since
        if now - waited_since >= QUEUE_WAIT:
            click.echo(f"{queued} bytes queued on {full_id}")
            raise CliError(
                f"the send buffer of {full_id} stayed full for {format_duration(QUEUE_WAIT)}; "
                f"{len(payload) - queued} bytes not queued",
                EXIT_CONN,
            )
        time.sleep(POLL)
    click.echo(f"{queued} bytes queued on {full_id}")


def _exchange(st: Any, sock: Any, payload: bytes, reply: Reply) -> None:
    """Send `payload` then FIN while writing whatever arrives to stdout, until the peer's
    FIN. Both directions move together: a peer that answers while we still send (an echo
    server and a payload larger than the windows) cannot deadlock us."""
    view = memoryview(payload)
    offset = 0
    shut = False
    sock.setblocking(False)
    while True:
        while sock.readable:
            reply.write(sock.recv(65536))
        if sock.error is not None:
            raise sock.error
        while offset < len(view) and sock.writable:
            offset += sock.send(view[offset : offset + 65536])
        if offset == len(view) and not shut:
            sock.shutdown()  # FIN after the data: the peer sees EOF and answers
            shut = True
        if shut and sock.at_eof:
            return
        sending = offset < len(view)

        def ready(sending: bool = sending) -> bool:
            return bool(
                sock.readable > 0
                or sock.at_eof
                or sock.error is not None
                or (sending and sock.writable > 0)
            )

        st.run_until(ready, None)


def _one_shot(
    app: App,
    opts: StackOptions,
    host: str,
    port: int,
    payload: bytes,
    timeout: float | None,
    source_port: int | None,
    time_wait: float | None,
    family: int | None = None,
) -> None:
    addresses = app.resolve_all(host, False, family)
    with app.stack(opts) as st, app.control(st, opts.verbose):
        sock = app.connect_any(
            st, host, addresses, port, timeout=timeout, source_port=source_port,
            verbose=opts.verbose,
        )  # fmt: skip
        address = str(sock.remote[0])
        info: dict[str, Any] = {}
        reply = Reply(app.stdout_fd, app.stdout_closed)
        try:
            _exchange(st, sock, payload, reply)
            # Our FIN acknowledged and the peer's received: TIME-WAIT (RFC 9293 3.6).
            st.run_until(lambda: sock.state in ("TIME-WAIT", "CLOSED"), 5.0)
            info = sock.info()
        except StdoutTrouble as trouble:
            # Nobody takes what still arrives: say so to the peer (RST), as connect does.
            info = sock.info()
            sock.abort()
            raise CliError(trouble.message(), EXIT_CONN) from None
        except OSError as e:
            raise app.connect_failure(e, address, port, timeout) from None
        finally:
            if opts.verbose and info:
                app.say(send_report(info, written=reply.written).rstrip("\n"))
        if time_wait is None or time_wait > 0:
            # Linger to re-ACK a retransmitted FIN (--time-wait), as connect does: in a
            # child that keeps only the TUN, so the shell gets its prompt back now.
            sock.close()
            if time_wait is None or not st.linger_in_background(time_wait):
                st.run_until(lambda: sock.state == "CLOSED", time_wait)
        sock.close()


@click.command(
    short_help="Send DATA to HOST PORT in one shot, or queue it on a live connection (--conn).",
)
@click.argument("args", nargs=-1, metavar="(HOST PORT | --conn ID) [DATA...]")
@click.option(
    "--conn",
    "conn_id",
    metavar="ID",
    shell_complete=complete_data_connection_ids,
    help="Queue DATA on the live connection ID of another pytcp process instead; every "
    "argument is then DATA (there is no HOST PORT).",
)
@click.option(
    "-n", "no_newline", is_flag=True, help="Do not append a newline to DATA (as echo -n)."
)
@click.option(
    "--file",
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="Send the contents of FILE instead of DATA.",
)
@click.option("-p", "--source-port", type=PORT, help="Local port to connect from.")
@family_option
@timeout_option
@time_wait_option
@udp_option
@stack_options
@click.pass_obj
def send(
    app: App,
    stack: StackOptions,
    args: tuple[str, ...],
    conn_id: str | None,
    no_newline: bool,
    file: str | None,
    source_port: int | None,
    ipv4: bool,
    ipv6: bool,
    timeout: float | None,
    time_wait: float | None,
) -> None:
    """Send DATA to HOST PORT and print what the peer sends back.

    One shot: the handshake, DATA (the arguments joined by spaces with a newline,
    as echo prints them; -n leaves the newline out), or --file FILE, or stdin when
    there is no DATA; then FIN, and everything the peer sends until its FIN goes to
    stdout. -v prints the byte counts, the RTT and the retransmissions on stderr.

    With --conn ID there is no HOST PORT: every argument is DATA, and it is
    queued on a live connection held by another pytcp process (ID from `pytcp
    inspect`; a unique prefix will do). The number of bytes queued is printed; it
    fails (exit 1) when the connection's write side is closed.
    """
    if conn_id is not None:
        if (
            stack != StackOptions()
            or source_port is not None
            or timeout is not None
            or ipv4
            or ipv6
        ):
            raise CliError("--conn uses the other process's stack; stack options do not apply",
                           EXIT_USAGE)  # fmt: skip
        _queue(app, conn_id, _payload(app, args, no_newline, file))
        return
    if len(args) < 2:
        raise CliError("give HOST PORT [DATA...], or --conn ID [DATA...]", EXIT_USAGE)
    host, port_text, data = args[0], args[1], args[2:]
    port = PORT.convert(port_text, None, None)
    payload = _payload(app, data, no_newline, file)
    family = family_of(ipv4, ipv6)
    _one_shot(app, stack, host, port, payload, timeout, source_port, time_wait, family)


send.exit_status = EXIT_STATUS  # type: ignore[attr-defined]
send.examples = EXAMPLES  # type: ignore[attr-defined]
