"""`pytcp close [--half | --reset] ID`: close a live connection of another pytcp process.

Imports click, `pytcpcli.app`/`options`/`errors`, `pytcpcli.commands.inspect` (ID
completion) and `stack.control` (the client); no protocol logic lives here.
"""

from __future__ import annotations

import time
from typing import Any

import click

from pytcpcli.app import App
from pytcpcli.commands.inspect import complete_connection_ids
from pytcpcli.errors import EXIT_CONN, EXIT_USAGE, CliError
from pytcpcli.options import DURATION, format_duration
from stack.control import HUNG_UP, ControlClient, ControlError, close_completed, is_gone

POLL = 0.05  # seconds between looks at the connection while the close completes
DEFAULT_WAIT = 5.0

EXIT_STATUS = """\
0  the close completed: --half once our FIN is acknowledged (FIN-WAIT-2 or later),
   a full close once both FINs are exchanged (TIME-WAIT or CLOSED), --reset at once.
1  no live connection matches ID, or the close did not complete within -w.
2  usage error: --half with --reset, a bad duration.
130  interrupted by SIGINT.
143  terminated by SIGTERM (129 SIGHUP; 128 + N for any signal that ends a process).
"""

EXAMPLES = """\
Half-close: send FIN after the queued data; the connection keeps receiving and the
owning pytcp keeps writing what arrives to its stdout:
  pytcp close --half 4242.3
Close it both ways and wait up to 10 s for the peer's FIN:
  pytcp close -w 10s 4242.3
Abort it with a RST:
  pytcp close --reset 4242
"""


@click.command(short_help="Close a live connection: --half (FIN, keep receiving), full, --reset.")
@click.argument("conn_id", metavar="ID", shell_complete=complete_connection_ids)
@click.option(
    "--half",
    is_flag=True,
    help="Shut down the write side only: FIN after the queued data, keep receiving.",
)
@click.option("--reset", is_flag=True, help="Abort the connection with RST (RFC 9293 ABORT).")
@click.option(
    "-w",
    "--timeout",
    type=DURATION,
    default=DEFAULT_WAIT,
    metavar="DURATION",
    help=f"How long to wait for the close to complete (default {DEFAULT_WAIT:g}s).",
)
@click.pass_obj
def close(app: App, conn_id: str, half: bool, reset: bool, timeout: float) -> None:
    """Close the live connection ID (PID.N from `pytcp inspect`; a unique prefix will do).

    A plain close ends the connection both ways: FIN after the queued data, and
    data that arrives afterwards is refused (RFC 1122 4.2.2.13), then pytcp waits
    for the peer's FIN. --half shuts down only the write side: FIN goes out after
    any queued data and the connection keeps receiving. --reset aborts it with RST.
    A listener's ID closes the listener. The exit status says whether the close
    completed; the state reached is printed on stdout.

    The owning pytcp stops reading the stdin that fed the connection (nothing read
    later could be sent) and says on its stderr, without -v too, how much of it will
    never be sent: the bytes it read but had not handed to the connection, plus what
    stdin still holds unread - exactly for a file (its size past the read offset),
    "so far" for a pipe or a terminal (what waits in it now; what is written later is
    not read either). What the connection had queued still goes out before the FIN.
    """
    if half and reset:
        raise CliError("--half and --reset exclude each other; pick one", EXIT_USAGE)
    how = "half" if half else "reset" if reset else "full"
    client = ControlClient()
    try:
        full_id = client.resolve(conn_id)
    except ControlError as e:
        raise CliError(str(e), EXIT_CONN) from None
    state = _close_and_wait(client, full_id, how, timeout)
    click.echo(f"{full_id} {state}")


def _close_and_wait(client: ControlClient, full_id: str, how: str, timeout: float) -> str:
    """Ask the owner to close `full_id`, then look until the close completed; the state
    reached. The owner may end its process as soon as the connection is closed (a
    `pytcp connect` whose connection was reset exits): a process that hangs up without
    answering is asked again, and a process that is gone took the connection with it."""
    deadline = time.monotonic() + timeout
    entry: dict[str, Any] | None
    try:
        entry = client.close(full_id, how)
    except ControlError as e:
        if e.code != HUNG_UP:
            raise CliError(str(e), EXIT_CONN) from None
        entry = {"state": "unknown"}  # it was exiting as we asked: look again below
    while True:
        if entry is not None and close_completed(how, entry):
            return str(entry.get("state"))
        if time.monotonic() >= deadline:
            state = entry.get("state") if entry is not None else "CLOSED"
            click.echo(f"{full_id} {state}")
            raise CliError(
                f"the {how} close of {full_id} did not complete within "
                f"{format_duration(timeout)} (still {state}); raise -w to wait longer",
                EXIT_CONN,
            )
        time.sleep(POLL)
        try:
            entry = client.get(full_id)
        except ControlError as e:
            if is_gone(e):
                return "CLOSED"  # closed and forgotten by its stack, or gone with its process
            if e.code != HUNG_UP:
                raise CliError(str(e), EXIT_CONN) from None
            # Hung up without answering: it is exiting. Ask again; bounded by -w.


close.exit_status = EXIT_STATUS  # type: ignore[attr-defined]
close.examples = EXAMPLES  # type: ignore[attr-defined]
