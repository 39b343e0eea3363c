"""`pytcp inspect`: live connections of every pytcp process, one TCB, or a probe of HOST PORT.

Imports click, `pytcpcli.app`/`options`/`output`/`errors`, `stack.control` (the client of
the other processes' control endpoints) and, for the probe, `stack.trace` and
`stack.wire.pretty`; no protocol logic lives here.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

from pytcpcli.app import App
from pytcpcli.errors import EXIT_CONN, EXIT_OK, EXIT_USAGE, CliError
from pytcpcli.options import (
    DURATION,
    PORT,
    StackOptions,
    family_of,
    family_option,
    stack_options,
    timeout_option,
)
from pytcpcli.output import (
    TimelineItem,
    changed_fields,
    endpoint,
    matches,
    render_compact,
    render_hosts,
    render_journal,
    render_json,
    render_list,
    render_probe_summary,
    render_tcb,
    render_timeline,
    syn_offer,
)
from stack.control import HUNG_UP, ControlClient, ControlError, is_gone

PROBE_CLOSE_WAIT = 10.0  # seconds the probe waits for the peer's FIN after its own
FIRST_FIELDS = frozenset({
    "state", "local.addr", "local.port", "remote.addr", "remote.port", "send.iss",
    "send.snd_nxt", "options.mss_local", "options.wscale_local", "options.sack",
    "options.timestamps", "congestion.algorithm", "congestion.cwnd", "rtt.rto",
})  # fmt: skip
WATCH_DEFAULT = 2.0  # seconds between redraws of --watch without --interval
WATCH_HEADER_LINES = 2  # "every 2s: pytcp inspect (Ctrl-C to stop)" and a blank line
CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase screen: redraw in place on a terminal

NOTES = """\
Control endpoints: every pytcp process that runs a stack serves a Unix socket,
<runtime dir>/PID.sock (mode 0600, directory 0700), where the runtime dir is
/run/pytcp for root, $XDG_RUNTIME_DIR/pytcp otherwise, or $PYTCP_RUNTIME_DIR. Only
the same user or root may use it (checked with SO_PEERCRED). Sockets of processes
that died are removed when found.

JSON output (--json) is stable; times are nanoseconds, sequence numbers raw
(mod 2**32). A list is an array of objects; `inspect ID` prints one object; with
--watch, one object or array per line.

Every connection object has: id ("PID.N"), pid, tun, state (the RFC 9293 name,
such as "ESTABLISHED"), local and remote {addr, port};

send {iss, snd_una, snd_nxt, snd_max, snd_wnd, snd_wl1, snd_wl2, snd_up,
max_snd_wnd, snd_sml}; receive {irs, rcv_nxt, rcv_wnd, rcv_up, sack_order, dsack,
peer_fin_seq, unacked_rx, rcv_mss};

options {mss_local, mss_remote, snd_mss, wscale_local, wscale_remote, sack,
timestamps, ecn, path_mtu, path_mtu_expires, nodelay, keepalive: {idle, interval,
count} or null} (path_mtu: the path MTU estimate; path_mtu_expires: while one learned
from ICMP holds, the nanoseconds until it is raised back to the link's, else null);
congestion {algorithm, cwnd, ssthresh, state: {the algorithm's own}, in_flight,
phase, recover, dup_acks, ecn_echo, cwr_pending, ecn_recover, pipe_ack, nvp_since,
cwnd_limited, max_flight}; recovery {sacked: [[left,
right], ...], segments, sacked_bytes, lost_bytes, pipe, retries, high_rxt,
rescue_rxt, prr_delivered, prr_out, recover_fs, rack, rack_rtt, rack_xmit_ts,
reo_wnd_mult, reordering_seen, tlp_end, undo_retrans, timer_mode, syn_timeouts,
probes_unanswered, keepalives_unanswered}; rtt {srtt,
rttvar, rto, min_rtt, samples, backoff, timed_seq, karn, ts_floor};

buffers {send_capacity, send_queued, unacked, unsent, recv_capacity, unread,
send_allocated, recv_allocated, out_of_order: [[start_seq, end_seq], ...]}
(*_allocated: bytes of storage held now; buffers grow on demand, freed when empty);

counters {segments_in, segments_out, bytes_in, bytes_out, retransmissions,
retransmitted_bytes, dup_acks, challenge_acks, invalid_acks,
invalid_acks_limited, keepalive_probes,
zero_window_probes, dsacks_sent, dsacks_received, rtos, fast_recoveries,
tlp_probes, tlp_recoveries, lost_marked_bytes, undos, ce_received, ece_received,
ecn_reductions, rcv_buf_grown, cwv_reductions, drops: {reason: count}}
(invalid_acks: ACKs sent in reply to unacceptable segments; invalid_acks_limited:
those held back, at most one per 500 ms for segments without data);

timers: a list of all seven timers (retransmission, syn, delayed-ack, persist,
keepalive, time-wait, fin-wait-2), each {name, armed, deadline, remaining,
backoff, reason}; close {fin_sent, fin_acked, fin_received, app_closed};
impairments: what `pytcp impair` set and is still active, a list of {fault,
direction, left} (segments still to impair), {fault: "delay", direction, ms} or
{fault: "window", direction: "out", bytes}; empty without any.

A connection also has link {offloads_rx, offloads_tx, gso_packets_in,
gso_segments_in, gso_packets_out, gso_segments_out, csum_trusted_in, tso_refused,
tso_refused_error, gso_resegmented}: the offloads active on its TUN ("csum", "tso4",
"tso6" received; "csum", "tso" sent; empty with --no-offload), the host's counts of
GSO super-packets and of checksums the kernel vouched for, and the TSO writes the
kernel refused at run time (the first one's error, null when none; "tso" then leaves
offloads_tx) with the super-packets cut into segments in Python instead.

A listener has id, pid, tun, state "LISTEN", local, backlog, syn_queue,
accept_queue and counters. The probe prints {"timeline": [{offset, kind, text,
changes, timers, offered}, ...], "summary": <connection object>}: changes are
[field, old, new] of the flattened snapshot; offered is null except on the step into
SYN-SENT, where it holds what our SYN offered, {mss, wscale, sack, timestamps} (the
snapshot's options say what is negotiated, nothing before the SYN-ACK).

The journal (--journal --json) is {id, now, size, recorded, iss, irs, entries}: size
is the ring's capacity (--journal-size of the owning process, default 64), recorded
how many segments ever passed, entries the last ones, oldest first, each {time,
direction ("in" or "out"), flags, seq, ack, rel_seq, rel_ack, len, window, sack,
test, verdict, reason, changes}. test is null where the acceptability test of RFC
9293 §3.10.7.4 does not apply (our own segments, LISTEN, SYN-SENT, a PAWS drop
before it) and otherwise {case, rule, values, met}; verdict is "accepted",
"trimmed", "queued out of order", "dropped" (reason: the drop counter's name) or
"sent"; changes maps a TCB field (state, snd_una, snd_nxt, snd_max, snd_wnd, snd_wl1,
snd_wl2, rcv_nxt, rcv_wnd, cwnd, ssthresh) to [old, new].
"""

EXIT_STATUS = """\
0  the list or the connection was shown; the probe completed its four-way close.
1  no live connection matches ID, or it vanished during --watch; a process did not
   answer (the list or --host shows the others, a warning names it); the probe's
   connection failed (refused, reset, timed out) or its close did not complete.
2  usage error: a bad option, port, state or duration.
3  environment: no permission for /dev/net/tun (the probe only), ...
130  interrupted by SIGINT (the way out of --watch).
141  stdout's reader went away (EPIPE) while a table was printed, as a tool killed
     by SIGPIPE.
143  terminated by SIGTERM (129 SIGHUP; 128 + N for any signal that ends a process).
"""

EXAMPLES = """\
Every live connection and listener of every pytcp process, like ss -ti:
  pytcp inspect
Only established connections on port 5000, redrawn every second (--watch=1 is short
for --watch --interval 1s):
  pytcp inspect -s established --port 5000 --watch=1
One connection redrawn every 2 s until Ctrl-C, compact enough for an 80x24 terminal
(--watch takes no value, so ID is ID):
  pytcp inspect --watch 4242.3
The whole control block redrawn every second:
  pytcp inspect --watch=1 --full 4242.3
The whole control block and every timer of one connection (a unique prefix will do):
  pytcp inspect 4242.3
The same for a script:
  pytcp inspect 4242.3 --json | jq .send.snd_nxt
The last segments in and out, each with its acceptability test, verdict and TCB changes:
  pytcp inspect 4242.3 --journal
  pytcp inspect 4242.3 --journal --json | jq '.entries[] | select(.verdict == "dropped")'

Watch a handshake, a request and the four-way close against a server, TIME-WAIT included:
  pytcp inspect 10.77.0.1 80 --data 'GET / HTTP/1.0\\r\\n\\r\\n'
The same as a ladder diagram, 90 columns wide:
  pytcp inspect 10.77.0.1 80 --ladder --width 90 --data 'GET / HTTP/1.0\\r\\n\\r\\n'
"""

STATES = ("LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
          "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT", "CLOSED")  # fmt: skip


def _live_ids(incomplete: str, *, listeners: bool) -> list[CompletionItem]:
    """The live IDs starting with `incomplete`, asked of the control endpoints; LISTEN
    entries only when `listeners`."""
    try:
        entries = ControlClient(timeout=0.5).entries(view="rows")
    except Exception:
        return []  # completion must never print a traceback into the user's shell
    return [
        CompletionItem(
            e["id"],
            help=f"{e.get('state')} {endpoint(e.get('local'))} {endpoint(e.get('remote'))}",
        )
        for e in entries
        if str(e.get("id", "")).startswith(incomplete) and (listeners or e.get("state") != "LISTEN")
    ]


def complete_connection_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion: the live connection and listener IDs (`inspect`, `close`)."""
    return _live_ids(incomplete, listeners=True)


def complete_data_connection_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion for `send --conn`: connections only; a listener carries no data
    (send refuses its ID)."""
    return _live_ids(incomplete, listeners=False)


def complete_inspect_target(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """`inspect [ID | HOST PORT]`: IDs at the first argument only; the second is a
    probe's PORT, where an ID makes no sense."""
    if ctx.params.get(param.name or ""):
        return []
    return complete_connection_ids(ctx, param, incomplete)


def control_failure(error: ControlError) -> CliError:
    return CliError(str(error), EXIT_CONN)


# --------------------------------------------------------------------------- list and ID


def _warn(app: App, client: ControlClient) -> None:
    for problem in client.problems:
        app.say(f"warning: {problem}")


def _incomplete(client: ControlClient, watch: float | None) -> None:
    """Exit 1 after a list that leaves out a process that did not answer (the warning
    said which): a script must not take it for the whole picture. Processes of another
    user are not left out, they are not ours to show; --watch goes on regardless."""
    if watch is None and client.unanswered:
        click.get_current_context().exit(EXIT_CONN)


def terminal_size() -> tuple[int | None, int | None] | None:
    """stdout's terminal (columns, lines), either None when the terminal does not say
    (a fresh pseudo-terminal reports 0x0); None when stdout is not a terminal (a pipe or
    a file gets whole lines, as ps(1) gives them)."""
    try:
        if not sys.stdout.isatty():
            return None
    except (OSError, ValueError, AttributeError):
        return None
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return (None, None)
    return (size.columns or None, size.lines or None)


def terminal_width() -> int | None:
    size = terminal_size()
    return size[0] if size is not None else None


def fit_height(text: str, rows: int | None) -> str:
    """A --watch frame cut to the terminal's `rows` (less the header's two), so that it
    is redrawn in place rather than scrolled; the last line says what was cut."""
    lines = text.splitlines()
    if rows is None:
        return text
    room = max(rows - WATCH_HEADER_LINES, 1)
    if len(lines) <= room:
        return text
    cut = len(lines) - room + 1
    kept = [*lines[: room - 1], f"({cut} more lines: a taller terminal shows them)"]
    return "\n".join(kept) + "\n"


def _watch(frame: Callable[[], str], interval: float | None, count: int | None) -> None:
    """Print `frame()` once, or every `interval` seconds (`count` times when given). On
    a terminal each frame is drawn over the last, cut to the terminal's height."""
    if interval is None:
        click.echo(frame(), nl=False)
        return
    shown = 0
    while count is None or shown < count:
        text = frame()
        size = terminal_size()  # looked at each time: the window may have been resized
        if size is not None:
            header = f"every {interval:g}s: pytcp inspect (Ctrl-C to stop)\n\n"
            click.echo(CLEAR + header + fit_height(text, size[1]), nl=False)
        else:
            click.echo(text, nl=False)
        sys.stdout.flush()
        shown += 1
        if count is None or shown < count:
            time.sleep(interval)


def describe_filter(states: tuple[str, ...], port: int | None) -> str:
    """The -s/--port filters as the user gave them, for 'no connection matches ...'."""
    words = [f"-s {s}" for s in states]
    if port is not None:
        words.append(f"--port {port}")
    return " ".join(words)


def _list(
    app: App,
    states: tuple[str, ...],
    port: int | None,
    as_json: bool,
    watch: float | None,
    count: int | None,
) -> None:
    client = ControlClient()

    def frame() -> str:
        # Each process filters and describes only what is shown: the table takes a
        # row's fields, --json the whole entries (issue 14: a list of 10 000 in well
        # under a second). `matches` again here for a process that ignores filters.
        found = client.entries(view="full" if as_json else "rows", states=states, port=port)
        entries = [e for e in found if matches(e, states=states, port=port)]
        _warn(app, client)
        if as_json:
            return json.dumps(entries, sort_keys=True) + "\n" if watch else render_json(entries)
        notes = "".join(f"{note}\n" for note in client.notes)
        if client.total and not entries:
            return f"no connection matches {describe_filter(states, port)} (of {client.total})\n"
        if notes and not entries:
            return notes
        return render_list(entries, terminal_width()) + notes

    _watch(frame, watch, count)
    _incomplete(client, watch)


def _hosts(app: App, as_json: bool, watch: float | None, count: int | None) -> None:
    client = ControlClient()

    def frame() -> str:
        hosts = client.hosts()
        _warn(app, client)
        if as_json:
            return json.dumps(hosts, sort_keys=True) + "\n" if watch else render_json(hosts)
        return render_hosts(hosts)

    _watch(frame, watch, count)
    _incomplete(client, watch)


def _one(
    app: App,
    prefix: str,
    as_json: bool,
    watch: float | None,
    count: int | None,
    journal: bool = False,
    full: bool = False,
) -> None:
    client = ControlClient()
    try:
        conn_id = client.resolve(prefix)
    except ControlError as e:
        raise control_failure(e) from None
    _warn(app, client)

    def frame() -> str:
        try:
            if journal:
                result = client.journal(conn_id)
                if not as_json:
                    return render_journal(result)
                return json.dumps(result, sort_keys=True) + "\n" if watch else render_json(result)
            entry = client.get(conn_id)
        except ControlError as e:
            if is_gone(e) or e.code == HUNG_UP:
                raise CliError(f"connection {conn_id} is gone", EXIT_CONN) from None
            raise control_failure(e) from None
        if as_json:
            return json.dumps(entry, sort_keys=True) + "\n" if watch else render_json(entry)
        if watch is None or full:
            return render_tcb(entry)
        return render_compact(entry, terminal_width())

    _watch(frame, watch, count)


# --------------------------------------------------------------------------- probe


class ProbeRecorder:
    """A trace sink that builds the probe's timeline: every segment, and at each state
    change the TCB diffed against the one before.

    A state change is traced in the middle of processing a segment, before the timers it
    leads to are armed, so its snapshot is taken by a loop hook once the iteration is
    done. When one segment causes two changes (FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT),
    the earlier keeps the snapshot taken as it happened.

    A bug of its own (an exception from recording an event, from the loop hook or from
    `finish`) must not raise into the stack: the first one stops the recorder, `warn`
    says so in one line, and the timeline ends where it stopped (`failed`).
    """

    def __init__(self, warn: Callable[[str], None] | None = None) -> None:
        self.warn = warn
        self.failed = False
        self.stack: Any = None
        self.start: int | None = None
        self.items: list[TimelineItem] = []
        self.last: dict[str, Any] | None = None
        self.pending: list[tuple[TimelineItem, dict[str, Any] | None]] = []
        self.isn: dict[tuple[Any, int], int] = {}

    def attach(self, stack: Any) -> None:
        self.stack = stack
        stack.loop.add_hook(self.settle)

    def detach(self) -> None:
        if self.stack is not None:
            self.stack.loop.remove_hook(self.settle)

    def __call__(self, event: Any) -> None:
        if self.failed:
            return
        try:
            self._record(event)
        except Exception as exc:  # a sink must not raise into the stack: stop, say so once
            self._stop(exc)

    def _stop(self, exc: Exception) -> None:
        self.failed = True
        self.pending = []
        if self.warn is not None:
            self.warn(
                f"warning: the probe's timeline stopped: {type(exc).__name__}: {exc} "
                "(what follows is incomplete)"
            )

    def _snapshot(self) -> dict[str, Any] | None:
        if self.stack is None:
            return None
        conns = self.stack.host.connections()
        if not conns:
            return None
        # A deep copy: the live snapshot shares dicts (counters) with the connection.
        snap: dict[str, Any] = json.loads(json.dumps(conns[0].snapshot(self.stack.loop.now())))
        return snap

    def _fill(self, item: TimelineItem, snap: dict[str, Any] | None) -> None:
        if snap is None:
            old, _, new = item.text.partition(" -> ")
            item.changes = [("state", old, new)]
            return
        item.changes = changed_fields(self.last, snap)
        if self.last is None:
            # The first change: the identity and what was offered, not every zero.
            item.changes = [c for c in item.changes if c[0] in FIRST_FIELDS]
        item.timers = snap.get("timers", [])
        self.last = snap

    def settle(self) -> None:
        """Loop hook: give the state changes of this iteration their snapshots."""
        if self.failed or not self.pending:
            return
        try:
            self._settle()
        except Exception as exc:  # a hook must not raise into the loop either
            self._stop(exc)

    def _settle(self) -> None:
        pending, self.pending = self.pending, []
        for item, provisional in pending[:-1]:
            self._fill(item, provisional)
        item, provisional = pending[-1]
        final = self._snapshot()
        self._fill(item, final if final is not None else provisional)

    def _record(self, event: Any) -> None:
        if self.start is None:
            self.start = event.now
        offset = event.now - self.start
        if event.kind in ("segment-in", "segment-out"):
            from stack.wire.pretty import format_segment

            seg, src, dst = event.fields["segment"], event.fields["src"], event.fields["dst"]
            sender, receiver = (src, seg.src_port), (dst, seg.dst_port)
            if seg.flags & 0x02:  # SYN: this side's ISN, for tcpdump-style relative numbers
                self.isn[sender] = seg.seq
            isn = None
            if sender in self.isn and receiver in self.isn and not seg.flags & 0x02:
                isn = (self.isn[sender], self.isn[receiver])
            text = format_segment(seg, src, dst, isn=isn)
            kind = "in" if event.kind == "segment-in" else "out"
            if kind == "out" and seg.flags & 0x12 == 0x02:
                self._offered(seg)
            self.items.append(TimelineItem(offset, kind, text))
            if self.pending:
                # Still in the state of the last change: its TCB as of this segment.
                item, _ = self.pending[-1]
                snap = self._snapshot()
                if snap is not None and item.text.endswith(f"-> {snap.get('state')}"):
                    self.pending[-1] = (item, snap)
        elif event.kind == "state":
            item = TimelineItem(offset, "state", f"{event.fields['old']} -> {event.fields['new']}")
            self.items.append(item)
            self.pending.append((item, self._snapshot()))

    def _offered(self, seg: Any) -> None:
        """Our SYN: what it offers goes on the step into SYN-SENT (its snapshot says what
        is negotiated, which is nothing yet)."""
        for item in reversed(self.items):
            if item.kind == "state":
                if item.text.endswith("-> SYN-SENT") and item.offered is None:
                    item.offered = syn_offer(
                        seg.mss, seg.wscale, bool(seg.sack_permitted), seg.timestamps is not None
                    )
                return

    def finish(self) -> dict[str, Any] | None:
        """Settle what is pending; the last snapshot of the connection (even after the
        timeline stopped; the last one recorded when no snapshot can be taken)."""
        self.settle()
        try:
            snap = self._snapshot()
        except Exception as exc:
            if not self.failed:
                self._stop(exc)
            return self.last
        return snap if snap is not None else self.last


def _probe_app(app: App, recorder: ProbeRecorder) -> App:
    """A copy of `app` whose stacks also trace into `recorder` (and -vv/--trace as usual)."""

    class ProbeApp(App):
        def make_tracer(self, opts: StackOptions) -> Callable[[Any], None] | None:
            from stack.trace import fan_out

            usual = App.make_tracer(self, dataclasses.replace(opts, ladder=False))
            sinks: list[Callable[[Any], None]] = [recorder]
            if opts.ladder:
                # The probe's ladder is its output: stdout, instead of the timeline.
                from pytcpcli.ladder import Ladder

                ladder = Ladder(sys.stdout, width=opts.width)
                self.extra["ladder"] = ladder
                sinks.append(ladder)
            if usual is not None:
                sinks.append(usual)
            return fan_out(*sinks)

    return ProbeApp(**{f.name: getattr(app, f.name) for f in dataclasses.fields(app)})


def _probe(
    app: App,
    opts: StackOptions,
    host: str,
    port: int,
    data: bytes,
    timeout: float | None,
    as_json: bool,
    family: int | None = None,
) -> int:
    address = app.resolve(host, False, family)
    recorder = ProbeRecorder(warn=app.say)
    failure: CliError | None = None
    final: dict[str, Any] | None = None
    probe_app = _probe_app(app, recorder)
    with probe_app.stack(opts) as st, probe_app.control(st, opts.verbose):
        recorder.attach(st)
        try:
            sock = st.connect(address, port, timeout=timeout)
        except OSError as e:
            failure = app.connect_failure(e, address, port, timeout)
        else:
            try:
                if data:
                    sock.sendall(data)
                sock.shutdown()  # our FIN: FIN-WAIT-1, then FIN-WAIT-2 once acknowledged
                # Read the peer's reply (counted in the summary, not printed) up to its FIN.
                deadline = st.loop.now() + int(PROBE_CLOSE_WAIT * 1e9)
                while not sock.at_eof and sock.error is None:
                    left = (deadline - st.loop.now()) / 1e9
                    ready = st.run_until(
                        lambda: sock.readable > 0 or sock.at_eof or sock.error is not None,
                        max(left, 0.0),
                    )
                    if not ready:
                        break
                    while sock.readable:
                        sock.recv(65536)
                st.run_until(lambda: sock.state in ("TIME-WAIT", "CLOSED"), PROBE_CLOSE_WAIT)
            except OSError as e:
                failure = app.connect_failure(e, address, port, timeout)
            final = recorder.finish()
            if failure is None and (final is None or final.get("state") != "TIME-WAIT"):
                state = final.get("state") if final else "CLOSED"
                failure = CliError(
                    f"the four-way close with {address} port {port} did not complete "
                    f"within {PROBE_CLOSE_WAIT:g}s (still {state})",
                    EXIT_CONN,
                )
            sock.close()
        recorder.detach()
    if as_json:
        timeline = [dataclasses.asdict(i) for i in recorder.items]
        click.echo(render_json({"timeline": timeline, "summary": final}), nl=False)
    else:
        if not opts.ladder:
            click.echo(render_timeline(recorder.items), nl=False)
        if final is not None:
            click.echo("\n" + render_probe_summary(final), nl=False)
    if failure is not None:
        raise failure
    return EXIT_OK


# --------------------------------------------------------------------------- command


class InspectCommand(click.Command):
    """`--watch=SECS` (value attached) is short for `--watch --interval SECS`; a bare
    `--watch` never takes the next word, so `inspect --watch 4242.3` watches 4242.3."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        for n, arg in enumerate(args):
            if arg == "--":
                rewritten += args[n:]
                break
            if arg.startswith("--watch="):
                rewritten += ["--watch", "--interval", arg.partition("=")[2]]
            else:
                rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@click.command(
    cls=InspectCommand,
    epilog="The JSON fields are listed under NOTES in pytcp-inspect(1).",
    short_help="List live connections, show one connection's TCB, or probe HOST PORT.",
)
@click.argument(
    "target", nargs=-1, metavar="[ID | HOST PORT]", shell_complete=complete_inspect_target
)
@click.option(
    "-s",
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES, case_sensitive=False),
    help="Only connections in this state (repeatable; time-wait, established, ...).",
)
@click.option("--port", type=PORT, help="Only connections with this local or remote port.")
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw until Ctrl-C (in place on a terminal). It takes no value: "
    "--watch=SECS is short for --watch --interval SECS.",
)
@click.option(
    "--interval",
    type=DURATION,
    metavar="DURATION",
    help=f"With --watch: time between redraws (default {WATCH_DEFAULT:g}s); implies --watch.",
)
@click.option(
    "--full",
    is_flag=True,
    help="With --watch ID: redraw the whole TCB and every timer, as `inspect ID` prints "
    "it, instead of the compact view that fits an 80x24 terminal.",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    metavar="N",
    help="With --watch: stop after N redraws.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON for scripts (stable fields; see the man page).",
)
@click.option(
    "--journal",
    is_flag=True,
    help="With ID: the connection's last segments in and out, each with the RFC 9293 "
    "§3.10.7.4 acceptability test it met or failed, the verdict (accepted, trimmed, "
    "queued out of order, dropped and why) and what it changed in the TCB.",
)
@click.option(
    "--host",
    "host_view",
    is_flag=True,
    help="Per pytcp process instead: the host's packet counters, its host-wide "
    "challenge-ACK budget (limit per second, none for no limit, and what is left of the "
    "last allowance; --json: challenge_acks {limit, second, left}), the packets it "
    "dropped before any connection saw them, by reason (bad checksum, truncated, "
    "fragment, bad source, time-wait-..., challenge-ack-host-limited, ...), and the "
    "control endpoint's counters.",
)
@click.option(
    "--data",
    metavar="TEXT",
    help="Probe only: send TEXT (backslash escapes \\r \\n \\t \\\\ understood) before the close.",
)
@family_option
@timeout_option
@stack_options
@click.pass_obj
def inspect(
    app: App,
    stack: StackOptions,
    target: tuple[str, ...],
    states: tuple[str, ...],
    port: int | None,
    watch: bool,
    interval: float | None,
    full: bool,
    count: int | None,
    as_json: bool,
    journal: bool,
    host_view: bool,
    data: str | None,
    ipv4: bool,
    ipv6: bool,
    timeout: float | None,
) -> None:
    """Show pytcp's live TCP connections, or probe HOST PORT.

    Without arguments: one row per connection and listener of every pytcp process
    of this user (root sees everyone's) - ID, state, local and remote address,
    send and receive queue bytes, cwnd, srtt, rto, and each armed timer with its
    time remaining.

    With ID (PID.N as the list shows it; a unique prefix will do): the whole
    control block in sections - identity, send and receive sequence space (raw and
    relative to ISS/IRS), negotiated options, congestion state, RTT, buffers,
    counters, close flags - and a table of every timer, armed or not. --watch ID
    redraws a compact view instead that fits an 80x24 terminal: state, SND.UNA/
    NXT/MAX and SND.WND relative to ISS, RCV.NXT/WND relative to IRS, cwnd,
    ssthresh, pipe and flight, the recovery phase, srtt/rttvar/rto, bytes,
    retransmissions, queues, options and the armed timers (--full: the whole
    block). On a terminal the list and the compact view fit its width (a list too
    wide for it takes two or three lines per connection; long addresses are
    shortened in the middle, the port kept) and --watch frames its height; a pipe
    or a file gets whole lines.

    With HOST PORT: a probe on a stack of its own. It runs the handshake, sends
    --data if given, closes (FIN), reads the peer's reply and FIN, and prints a
    timeline: every segment with its time offset and, after each state change,
    the TCB fields that changed and the timers armed, through TIME-WAIT; then
    what the peer negotiated and the RTT measured. HOST is an IPv4 or IPv6
    address or a name (-4/-6 keep to one family). The stack options (--tun,
    --addr, --trace, ...) apply to the probe only.
    """
    every: float | None = None  # seconds between redraws; None: draw once
    if watch or interval is not None:
        every = WATCH_DEFAULT if interval is None else interval
    if count is not None and every is None:
        raise CliError("--count needs --watch", EXIT_USAGE)
    if full and (len(target) != 1 or as_json or journal):
        raise CliError("--full is for one connection's text view: pytcp inspect --watch --full ID",
                       EXIT_USAGE)  # fmt: skip
    if journal and len(target) != 1:
        raise CliError("--journal needs one ID: pytcp inspect ID --journal", EXIT_USAGE)
    if stack.ladder and (len(target) != 2 or as_json):
        raise CliError("--ladder draws a probe: pytcp inspect HOST PORT --ladder", EXIT_USAGE)
    if len(target) == 2:
        if every is not None or states or port is not None:
            raise CliError("--watch, -s and --port do not apply to a probe", EXIT_USAGE)
        payload = b""
        if data is not None:
            payload = codecs.escape_decode(data.encode("utf-8"))[0]
        code = _probe(app, stack, target[0], PORT.convert(target[1], None, None), payload,
                      timeout, as_json, family_of(ipv4, ipv6))  # fmt: skip
        click.get_current_context().exit(code)
    if data is not None:
        raise CliError("--data is for a probe: pytcp inspect HOST PORT --data TEXT", EXIT_USAGE)
    if ipv4 or ipv6:
        raise CliError("-4 and -6 are for a probe: pytcp inspect -6 HOST PORT", EXIT_USAGE)
    if host_view:
        if target or states or port is not None:
            raise CliError("--host shows every process; it takes no ID, -s or --port", EXIT_USAGE)
        _hosts(app, as_json, every, count)
    elif len(target) == 0:
        _list(app, states, port, as_json, every, count)
    elif len(target) == 1:
        if states or port is not None:
            raise CliError("-s and --port filter the list; they do not apply to ID", EXIT_USAGE)
        _one(app, target[0], as_json, every, count, journal, full)
    else:
        raise CliError("give no argument, an ID, or HOST PORT", EXIT_USAGE)


inspect.exit_status = EXIT_STATUS  # type: ignore[attr-defined]
inspect.examples = EXAMPLES  # type: ignore[attr-defined]
