"""`pytcp impair ID SPEC`: per-connection faults on a live connection of another process.

Imports click, `pytcpcli.app`/`output`/`errors`, `pytcpcli.commands.inspect` (ID
completion), `stack.io.faults` (the spec parser, when run) and `stack.control` (the client).
"""

from __future__ import annotations

import click

from pytcpcli.app import App
from pytcpcli.commands.inspect import complete_data_connection_ids
from pytcpcli.errors import EXIT_CONN, EXIT_USAGE, CliError
from pytcpcli.output import describe_fault
from stack.control import BAD_REQUEST, ControlClient, ControlError

EXIT_STATUS = """\
0  the fault is set (or cleared); the active impairments are printed on stdout.
1  no live connection matches ID (or ID is a listener).
2  usage error: an unknown fault, a missing or bad number or direction.
130  interrupted by SIGINT.
143  terminated by SIGTERM (129 SIGHUP; 128 + N for any signal that ends a process).
"""

EXAMPLES = """\
Drop the next three segments the peer sends; its retransmissions show in --trace:
  pytcp impair 4242.3 drop-next 3
Drop the next two pure ACKs pytcp sends, so the peer times out and resends:
  pytcp impair 4242.3 drop-acks 2 out
Delay everything pytcp sends by 50 ms until cleared:
  pytcp impair 4242.3 delay 50 out
Advertise a zero window so the peer probes it, then open it again:
  pytcp impair 4242.3 window 0
  pytcp impair 4242.3 clear
"""

NOTES = """\
Faults: drop-next N (the next N segments vanish), drop-acks N (the next N pure
ACKs, no data, SYN, FIN or RST, vanish), dup-next N (delivered twice), corrupt-next
N (one bit of the segment's last byte flipped: the receiver drops it for its TCP
checksum), reorder-next N (each held until a later segment in the same direction
has passed it, at most 200 ms), delay MS (every segment, until cleared; 0 ends it),
window N (pytcp advertises at most N bytes of receive window, 0 a zero window; the
right edge never moves left, so the window closes as data fills it; the TCB judges
arriving segments against it), clear (every fault of the connection ends; held
segments go at once and the window is announced again).

Direction: each fault but window takes a last word in (segments from the peer, the
default), out (segments pytcp sends) or both. Counted faults end after N segments.
Faults act between the stack and its link, after pcap has seen outgoing segments
and before it sees arriving ones; --trace and --ladder of the owning process show
each impaired segment with what was done to it. inspect ID lists the active ones.
"""


@click.command(short_help="Inject faults into a live connection: drop, delay, dup, window...")
@click.argument("conn_id", metavar="ID", shell_complete=complete_data_connection_ids)
@click.argument("spec", nargs=-1, required=True, metavar="FAULT [N] [in|out|both]")
@click.pass_obj
def impair(app: App, conn_id: str, spec: tuple[str, ...]) -> None:
    """Impair the live connection ID (PID.N from `pytcp inspect`) of another pytcp.

    FAULT is one of drop-next N, drop-acks N, dup-next N, corrupt-next N,
    reorder-next N, delay MS, window N, clear. Each call adds one fault; the
    active ones are printed afterwards, one per line.
    """
    from stack.io.faults import KINDS, FaultSpec  # here: start-up stays cheap

    text = " ".join(spec)
    try:
        FaultSpec.parse(text)
    except ValueError as e:
        raise CliError(f"{str(e).removeprefix('impair: ')}; faults: {', '.join(KINDS)}",
                       EXIT_USAGE) from None  # fmt: skip
    client = ControlClient()
    try:
        full_id = client.resolve(conn_id)
        result = client.impair(full_id, text)
    except ControlError as e:
        raise CliError(str(e), EXIT_USAGE if e.code == BAD_REQUEST else EXIT_CONN) from None
    active = result.get("impairments") or []
    if not active:
        click.echo(f"{full_id} no impairment")
    for fault in active:
        click.echo(f"{full_id} {describe_fault(fault)}")


impair.exit_status = EXIT_STATUS  # type: ignore[attr-defined]
impair.examples = EXAMPLES  # type: ignore[attr-defined]
