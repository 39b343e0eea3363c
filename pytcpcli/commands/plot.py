"""`pytcp plot FILE -o OUT`: time-sequence and congestion/RTT graphs from a pcap or a
--record file, as SVG or PNG.

Imports click, `pytcpcli.app`/`errors`/`plotdata`, and matplotlib only inside the
command (it costs a second and is an optional extra: pip install 'pytcpcli[plot]').
"""

from __future__ import annotations

import os
from typing import Any

import click

from pytcpcli.app import App
from pytcpcli.errors import EXIT_CONN, EXIT_ENV, EXIT_USAGE, CliError

EXIT_STATUS = """\
0  the graph was written.
1  the input holds nothing to plot (no packets, no TCB lines for that connection).
2  usage error: an output that is neither .svg nor .png, an unreadable or unknown
   input, several connections and no --conn, a --conn that matches none.
3  environment: matplotlib is not installed, or OUT cannot be written.
130  interrupted by SIGINT.
143  terminated by SIGTERM (129 SIGHUP; 128 + N for any signal that ends a process).
"""

EXAMPLES = """\
A time-sequence graph of a capture made with pytcp's own --pcap:
  pytcp plot run.pcap -o run.svg
Such a capture of a transfer with 2 % loss each way, and its graph as PNG:
  pytcp connect --pcap run.pcap --impair loss=2%,seed=1 10.77.0.1 9000 < big.bin
  pytcp plot run.pcap -o run.png
From any tcpdump capture, choosing one connection by its endpoints:
  pytcp plot --conn 10.77.0.2:40000 capture.pcap -o seq.png
The cwnd, ssthresh, flight, windows, SRTT and RTO over time from a --record file:
  pytcp connect --record run.jsonl 10.77.0.1 9000 < big.bin
  pytcp plot run.jsonl -o cwnd.svg
"""

NOTES = """\
Time-sequence graph (tcptrace style), for the direction that carried the most data:
each data segment is a vertical stroke from its first to its last sequence number
(relative to the sender's ISN) at the time it was seen, retransmissions in red; the
receiver's cumulative ACK is a step line, ACK plus its advertised window (scaled when
both SYNs carried window scale) the window line above it; SACK blocks are purple
strokes at the time of the ACK that carried them, duplicate ACKs (no data, SYN or FIN,
the same ACK and window, data outstanding) are x marks.

Congestion graph (from --record only: a pcap cannot see inside a TCB): cwnd, ssthresh
(once set), bytes in flight, the peer's window (SND.WND) and ours (RCV.WND) in bytes,
and below them SRTT and RTO in ms. A record draws both graphs unless --graph says.

matplotlib draws them: the one library that writes SVG and PNG of the same figure with
no display. It is an optional extra (pip install 'pytcpcli[plot]'); the test tools
install it.
"""


@click.command(short_help="Draw time-sequence and cwnd/RTT graphs from a pcap or --record.")
@click.argument("source", metavar="FILE", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="OUT",
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the graph: OUT.svg or OUT.png.",
)
@click.option(
    "--conn",
    "wanted",
    metavar="ID|ADDR:PORT[,ADDR:PORT]",
    help="The connection to draw when FILE holds several: its number in the list "
    "(a pcap), its PID.N (a record), or one or both endpoints.",
)
@click.option(
    "--graph",
    type=click.Choice(["sequence", "congestion", "all"]),
    help="What to draw (default: sequence for a pcap, all for a record with TCB lines).",
)
@click.option("--title", metavar="TEXT", help="A title above the graph.")
@click.pass_obj
def plot(
    app: App, source: str, output: str, wanted: str | None, graph: str | None, title: str | None
) -> None:
    """Draw one connection of FILE (a pcap from --pcap or tcpdump, or a --record JSON
    lines file) as a time-sequence graph and, from a record, its cwnd, ssthresh,
    flight, windows, SRTT and RTO over time."""
    from pytcpcli.plotdata import PlotError, choose, congestion, load, time_sequence

    fmt = os.path.splitext(output)[1].lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise CliError(f"-o {output}: the graph is written as .svg or .png", EXIT_USAGE)
    try:
        conns = load(source)
        conn = choose(conns, wanted)
    except PlotError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if graph is None:
        graph = "all" if conn.tcb else "sequence"
    try:
        seq = time_sequence(conn) if graph in ("sequence", "all") and conn.packets else None
        cong = congestion(conn) if graph in ("congestion", "all") else None
    except PlotError as e:
        raise CliError(str(e), EXIT_CONN) from None
    if seq is None and cong is None:
        raise CliError(f"connection {conn.ident} has no segments to draw", EXIT_CONN)
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise CliError(
            "pytcp plot needs matplotlib: pip install 'pytcpcli[plot]'", EXIT_ENV
        ) from None
    panels = (1 if seq else 0) + (2 if cong else 0)
    fig, axes = pyplot.subplots(panels, 1, figsize=(10, 3.2 * panels + 1), squeeze=False)
    ax = list(axes[:, 0])
    fig.suptitle(title or f"{os.path.basename(source)}: {conn.describe()}")
    if seq is not None:
        _draw_sequence(ax.pop(0), seq)
    if cong is not None:
        _draw_congestion(ax.pop(0), ax.pop(0), cong)
    fig.tight_layout()
    try:
        fig.savefig(output, format=fmt)
    except OSError as e:
        raise CliError(f"cannot write {output}: {e.strerror}", EXIT_ENV) from None
    finally:
        pyplot.close(fig)
    click.echo(f"{output}: {conn.ident} {conn.describe()}")


def _draw_sequence(ax: Any, ts: Any) -> None:
    from matplotlib.collections import LineCollection

    fresh = [[(t, a), (t, b)] for t, a, b, r in ts.data if not r]
    again = [[(t, a), (t, b)] for t, a, b, r in ts.data if r]
    ax.add_collection(LineCollection(fresh, colors="black", linewidths=1.2, label="data"))
    if again:
        ax.add_collection(
            LineCollection(again, colors="red", linewidths=1.6, label="retransmission")
        )
    if ts.acks:
        ax.step(*zip(*ts.acks, strict=True), where="post", color="green", lw=0.9, label="ACK")
    if ts.window:
        ax.step(*zip(*ts.window, strict=True), where="post", color="goldenrod", lw=0.9,
                label="ACK + window")  # fmt: skip
    if ts.sacks:
        strokes = [[(t, a), (t, b)] for t, a, b in ts.sacks]
        ax.add_collection(LineCollection(strokes, colors="purple", linewidths=2.5, label="SACK"))
    if ts.dupacks:
        ax.plot(*zip(*ts.dupacks, strict=True), "x", color="blue", ms=5, label="duplicate ACK")
    ax.autoscale()
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"sequence ({ts.sender[0]}:{ts.sender[1]}, relative)")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)


def _draw_congestion(top: Any, bottom: Any, series: dict[str, list[tuple[float, float]]]) -> None:
    styles = {"cwnd": "tab:blue", "ssthresh": "tab:red", "in_flight": "tab:gray",
              "snd_wnd": "tab:olive", "rcv_wnd": "tab:cyan"}  # fmt: skip
    for name, colour in styles.items():
        if series[name]:
            top.step(*zip(*series[name], strict=True), where="post", color=colour, label=name)
    top.set_ylabel("bytes")
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    for name, colour in (("srtt", "tab:green"), ("rto", "tab:purple")):
        if series[name]:
            bottom.step(*zip(*series[name], strict=True), where="post", color=colour,
                        label=name)  # fmt: skip
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("ms")
    bottom.legend(loc="upper left", fontsize="small")
    bottom.grid(alpha=0.3)


plot.exit_status = EXIT_STATUS  # type: ignore[attr-defined]
plot.examples = EXAMPLES  # type: ignore[attr-defined]
