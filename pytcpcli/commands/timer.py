"""`pytcp timer ID fire NAME` and `pytcp timer ID set NAME DURATION`: a live connection's
timers on demand. Imports click, `pytcpcli.app`/`options`/`errors`,
`pytcpcli.commands.inspect` (ID completion), and `stack.control` (the client).
"""

from __future__ import annotations

import click

from pytcpcli.app import App
from pytcpcli.commands.inspect import complete_data_connection_ids
from pytcpcli.errors import EXIT_CONN, EXIT_USAGE, CliError
from pytcpcli.options import DURATION, format_duration
from stack.control import NOT_ARMED, ControlClient, ControlError

# stack.tcp.timers.TIMER_NAMES, spelled out so --help imports no stack module (a test
# holds them equal).
TIMER_NAMES = ("retransmission", "syn", "delayed-ack", "persist", "keepalive", "time-wait",
               "fin-wait-2")  # fmt: skip

EXIT_STATUS = """\
0  the timer fired (the state reached is printed) or was re-armed.
1  no live connection matches ID, or that timer is not armed on it.
2  usage error: an unknown action or timer name, a bad duration.
130  interrupted by SIGINT.
143  terminated by SIGTERM (129 SIGHUP; 128 + N for any signal that ends a process).
"""

EXAMPLES = """\
End TIME-WAIT now instead of after 2·MSL (the connection reaches CLOSED):
  pytcp timer 4242.3 fire time-wait
Retransmit now, as if the RTO had expired (the backoff doubles as usual):
  pytcp timer 4242.3 fire retransmission
Give a FIN-WAIT-2 connection 5 more seconds before it is reset:
  pytcp timer 4242.3 set fin-wait-2 5s
"""

NOTES = """\
Timers: retransmission, syn (SYN or SYN-ACK retransmission), delayed-ack, persist
(zero-window probe), keepalive, time-wait (2·MSL), fin-wait-2. fire runs what the
timer's expiry runs (the same backoff, retries and state changes, traced as a timer
firing); set moves its deadline to DURATION from now and keeps its backoff and
reason. Only an armed timer can be fired or set: `pytcp inspect ID` shows which are.
"""


@click.command(short_help="Fire a live connection's timer now, or re-arm it.")
@click.argument("conn_id", metavar="ID", shell_complete=complete_data_connection_ids)
@click.argument("action", type=click.Choice(["fire", "set"]))
@click.argument("name", type=click.Choice(TIMER_NAMES), metavar="NAME")
@click.argument("duration", type=DURATION, required=False, metavar="[DURATION]")
@click.pass_obj
def timer(app: App, conn_id: str, action: str, name: str, duration: float | None) -> None:
    """Fire the armed timer NAME of the live connection ID now (fire), or re-arm it
    to expire DURATION from now (set).

    NAME is one of retransmission, syn, delayed-ack, persist, keepalive,
    time-wait, fin-wait-2. The connection's state afterwards is printed.
    """
    if action == "set" and duration is None:
        raise CliError("timer set needs a DURATION (500ms, 2s, 1m)", EXIT_USAGE)
    if action == "fire" and duration is not None:
        raise CliError("timer fire takes no DURATION", EXIT_USAGE)
    client = ControlClient()
    delay = None if duration is None else round(duration * 1e9)
    try:
        full_id = client.resolve(conn_id)
        entry = client.timer(full_id, action, name, delay)
    except ControlError as e:
        if e.code == NOT_ARMED:
            raise CliError(f"{e}; `pytcp inspect {conn_id}` shows the armed timers") from None
        raise CliError(str(e), EXIT_CONN) from None
    state = entry.get("state")
    if action == "fire":
        click.echo(f"{full_id} {name} fired; {state}")
    else:
        click.echo(
            f"{full_id} {name} re-armed to fire in {format_duration(duration or 0)}; {state}"
        )


timer.exit_status = EXIT_STATUS  # type: ignore[attr-defined]
timer.examples = EXAMPLES  # type: ignore[attr-defined]
