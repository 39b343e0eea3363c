"""`pytcp listen [ADDR] PORT`: the netcat server. Imports click, pytcpcli.app/options/relay/errors.

Accepts connections on the stack and wires each to stdin/stdout, or to a child
process per connection (-e/-c), through `pytcpcli.relay`; no protocol logic here.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import shlex
import shutil
import signal
import subprocess
import time
from typing import Any

import click

from pytcpcli.app import App, offload_note
from pytcpcli.errors import EXIT_CONN, EXIT_ENV, EXIT_OK, EXIT_USAGE, CliError
from pytcpcli.options import (
    CLOSE_NOTES,
    DURATION,
    PORT,
    Duration,
    StackOptions,
    complete_command,
    family_of,
    format_duration,
    idle_timeout_option,
    listen_family_option,
    shutdown_on_eof_option,
    stack_options,
    time_wait_option,
    udp_option,
)
from pytcpcli.output import stdout_trouble
from pytcpcli.relay import (
    CLOSED_STATES,
    FdReader,
    FdWriter,
    Relay,
    Session,
    pipe_unread,
    unsent_input,
)
from pytcpcli.signals import name as signal_name

CHILD_GRACE = 1.0  # seconds a child has to exit after SIGTERM (second signal) before SIGKILL
CHILD_WAIT = 10.0  # --child-grace default: how long the first signal waits for children

# Man page sections scripts/generate.py takes from each command module.
EXIT_STATUS = """\
0  the connection (or, with -k, every connection) was closed cleanly, or closed or
   reset by `pytcp close [--reset] ID` from another process (not a failure: the user
   asked for it; stderr says which it was). `pytcp close PID.N` on the listener ends
   listening: the live connections are finished, then pytcp exits (-v says so).
1  the one connection failed: reset by the peer, or stdout was closed early.
2  usage error: a bad option, address, port or --tun/--addr/--gateway value.
3  environment: no permission for /dev/net/tun, the port or interface is busy, the
   interface was deleted while pytcp used it, ...
130  interrupted by SIGINT, the usual way to stop -k (143 SIGTERM, 129 SIGHUP: 128 + N
     for any signal; see NOTES).
"""

NOTES = CLOSE_NOTES

EXAMPLES = """\
Receive one file and exit when the sender is done:
  pytcp listen 9000 > received.tar
Serve a fixed HTTP reply to every client, one shell per connection:
  pytcp listen -k 8080 -c 'printf "HTTP/1.0 200 OK\\r\\n\\r\\nhello\\n"'
An echo server, at most 10 clients at a time:
  pytcp listen -k -m 10 7 -e cat
A chat: every line typed goes to every client, and theirs come here:
  pytcp listen -k -v 5000
"""


class Client:
    """One accepted connection: its relay and, with -e/-c, the child wired to it."""

    def __init__(self, sock: Any, relay: Relay | None = None) -> None:
        self.sock = sock
        self.relay: Relay = relay  # type: ignore[assignment]  # set right after creation
        self.child: subprocess.Popen[bytes] | None = None
        self.child_out: FdReader | None = None
        self.child_out_fd: int | None = None
        self.child_in: FdWriter | None = None
        self.pidfd: int | None = None
        self.stdin_pipe: tuple[int, int] | None = None  # (st_dev, st_ino) of the child's stdin
        self.child_exited = False
        self.started = 0  # loop time (ns) of the accept
        self.last_activity = 0  # loop time (ns) of the last byte either way (-i)
        self.closed = False  # both directions done (relay.done)
        self.ended = False  # closed, child reaped, lingered: forgotten by the server


class ListenSession(Session):
    """Accepts on one listening socket and relays each client; see the command's help."""

    def __init__(
        self,
        app: App,
        stack: Any,
        listener: Any,
        *,
        keep_open: bool,
        max_conns: int | None,
        command: list[str] | None,
        crlf: bool,
        time_wait: float | None,
        verbose: int,
        child_grace: float = CHILD_WAIT,
        recv_only: bool = False,
        no_shutdown: bool = False,
        quit_after: float | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__(
            stack.loop, time_wait=time_wait, say=app.say if verbose else None, warn=app.say
        )
        self.app = app
        self.stack = stack
        self.listener: Any = listener
        self.keep_open = keep_open
        self.max_conns = max_conns
        self.command = command
        self.crlf = crlf
        self.verbose = verbose
        self.child_grace = child_grace
        self.recv_only = recv_only  # -d: stdin is not read; FIN after the peer's
        self.no_shutdown = no_shutdown  # no FIN at stdin EOF: after the peer's
        self.quit_after = quit_after  # -q: end DURATION after stdin EOF
        self.idle_timeout = idle_timeout  # -i: a connection idle that long is aborted
        self._child_deadline: int | None = None  # loop time the first signal's wait ends
        # The clients not yet ended, in accept order, and those of them closed both ways
        # but not yet ended (lingering, or waiting for their child): a close costs O(1)
        # however many clients there are, never a scan of all of them (issue 14).
        self.clients: dict[Client, None] = {}
        self._closing: dict[Client, None] = {}
        # Back-pressure on stdin without a scan of every client per progress (issue 14):
        # how many clients are open, and those of them whose relay had no room when
        # last looked at (only they can hold stdin back).
        self._open = 0
        self._short: set[Client] = set()
        # Clients whose relay stopped reading because stdout was full: the ones to pump
        # when it drains (stdout drains after every write that went through at once).
        self._sink_waiters: dict[Client, None] = {}
        self.accepted = 0
        self.listener_closed = False  # closed by another process: no more clients
        self.stdin_eof = False
        self.stdout: FdWriter | None = None
        self.stdin: FdReader | None = None
        if command is None:
            self.stdout = FdWriter(
                self.loop,
                app.stdout_fd,
                owned=False,
                gone=app.stdout_closed,
                on_drain=self._pump_all,
                on_broken=self._on_stdout_broken,
            )
            if not recv_only:
                self.stdin = FdReader(
                    self.loop, app.stdin_fd, self._on_stdin, self._on_stdin_eof
                )

    # -- accepting

    @property
    def live(self) -> list[Client]:
        return list(self.clients)  # ended clients are forgotten at once (_forget_client)

    def _may_accept(self) -> bool:
        if self.listener is None or self.signum is not None:
            return False
        if self.max_conns is not None and len(self.clients) >= self.max_conns:
            return False  # further clients wait in the backlog
        return self.keep_open or self.accepted == 0

    def _on_listener_change(self) -> None:
        if self.listener is not None and getattr(self.listener, "closed_elsewhere", False):
            # `pytcp close PID.N` from another process closed the listener: no more
            # clients will come, so the live ones are finished and pytcp exits.
            self.listener.on_change(None)
            self.listener.close()
            self.listener = None
            self.listener_closed = True
            if self.verbose:
                live = len([c for c in self.clients if not c.closed])
                self.app.say(
                    "the listener was closed by pytcp close (another process); "
                    f"exiting after {live} live connection{'' if live == 1 else 's'}"
                )
            self._check_end()
            return
        self._accept()

    def _accept(self) -> None:
        while self._may_accept():
            sock = self.listener.accept(timeout=0)
            if sock is None:
                return
            self.accepted += 1
            if not self.keep_open:
                # One connection only: later clients are refused (RST), as nc does.
                self.listener.on_change(None)
                self.listener.close()
                self.listener = None
            self._start(sock)

    def _start(self, sock: Any) -> None:
        sock.setblocking(False)
        remote_addr, remote_port = sock.remote
        if self.verbose:
            self.app.say(f"connection from {remote_addr} port {remote_port} (id {sock.id})")
        client = Client(sock)
        client.started = client.last_activity = self.loop.now()
        self.clients[client] = None
        self._open += 1
        if self.idle_timeout is not None:
            self.loop.call_later(self.idle_timeout, lambda: self._check_idle(client))
        if self.command is not None:
            self._spawn(client)
            return
        client.relay = Relay(
            sock,
            self.stdout,
            on_progress=lambda: self._client_progress(client),
            on_peer_eof=lambda: self._on_peer_eof(client),
            on_done=lambda relay: self._on_closed(client),
            on_write_side_gone=lambda unsent: self._on_write_side_gone(client, unsent),
            on_sink_full=lambda: self._sink_waiters.setdefault(client),
            crlf=self.crlf,
            shutdown_on_eof=not self.no_shutdown,
        )
        if self.stdin_eof:
            client.relay.feed_eof()
        elif self.stdin is not None:
            self.stdin.resume()
        client.relay.pump()

    # -- stdio mode: stdin to every client, every client to stdout

    def _on_stdin(self, data: bytes) -> None:
        for client in self.live:
            # A client that closed its side is leaving (see _on_peer_eof): no new data.
            if not client.closed and not (self.keep_open and client.relay.peer_eof):
                client.relay.feed(data)
        self._on_progress()

    def _on_stdin_eof(self) -> None:
        self.stdin_eof = True
        for client in self.live:
            client.relay.feed_eof()
            if self.no_shutdown and client.relay.peer_eof and not client.closed:
                client.relay.shutdown_now()  # the peer is done too: now FIN
        if self.quit_after is not None:
            self.loop.call_later(self.quit_after, self._quit)

    def _client_progress(self, client: Client) -> None:
        client.last_activity = self.loop.now()
        self._on_progress(client)

    def _quit(self) -> None:
        """-q: the time after stdin EOF is up. Every connection still open takes what
        arrived and is aborted (RST: the peer is not left half-open) once the peer has
        acknowledged what it was sent from stdin, and pytcp ends."""
        if self.finished or self.signum is not None:
            return
        if self.listener is not None:
            self.listener.on_change(None)
            self.listener.close()
            self.listener = None
        self.listener_closed = True
        for client in self.live:
            if not client.closed:
                client.relay.abort_when_sent()  # once stdin's bytes are acknowledged
        self._check_end()

    def _check_idle(self, client: Client) -> None:
        """-i: no byte either way on this connection for DURATION: RST it, and say so
        (without -k that is the run's failure, exit 1)."""
        assert self.idle_timeout is not None
        if client.closed or client.ended or self.finished:
            return
        idle_for = (self.loop.now() - client.last_activity) / 1e9
        if idle_for < self.idle_timeout:
            self.loop.call_later(self.idle_timeout - idle_for, lambda: self._check_idle(client))
            return
        addr, port = client.sock.remote
        message = (
            f"no data either way for {format_duration(self.idle_timeout)} (-i); "
            f"closed the connection from {addr} port {port}"
        )
        if self.keep_open:
            self.app.say(message)
        else:
            self.error, self.code = message, EXIT_CONN
        client.relay.abort()

    def _on_progress(self, client: Client | None = None) -> None:
        """Back-pressure on stdin: read it only while every client has room for more.
        After one client's progress only that one is looked at again (its queue is all
        that changed); otherwise (stdin fed them all) every client is."""
        if self.stdin is None or self.signum is not None:
            return
        short = self._short
        if client is None:
            short.clear()
            short.update(c for c in self.clients if not c.closed and not c.relay.has_room)
        elif not client.closed and not client.relay.has_room:
            short.add(client)
        if short:  # those still short of room (a queue may also shrink without progress)
            short.difference_update([c for c in short if c.closed or c.relay.has_room])
        if self._open > 0 and not short:
            self.stdin.resume()
        else:
            self.stdin.pause()

    def _pump_all(self) -> None:
        """stdout drained: the relays that stopped for want of room read on (issue 14:
        not every client's, at every write)."""
        waiters = list(self._sink_waiters)  # one that fills it again waits for the next
        self._sink_waiters.clear()
        for client in waiters:
            if not client.closed:
                client.relay.pump()

    def _on_peer_eof(self, client: Client) -> None:
        if self.verbose:
            addr, port = client.sock.remote
            self.app.say(f"{addr} port {port} closed its side of the connection")
        if client.child is None and (self.recv_only or (self.no_shutdown and self.stdin_eof)):
            client.relay.shutdown_now()  # -d / --no-shutdown: FIN once the peer's came
        if client.child_in is not None:
            client.child_in.close_when_drained()  # the child reads EOF
        elif not self.keep_open and self.stdout is not None:
            self.stdout.close_when_drained()  # one client: the pipeline sees EOF now
        elif self.keep_open:
            # -k: a client that closed its side has left. Send it what is queued, then
            # FIN, rather than hold it in CLOSE-WAIT until stdin speaks (as ncat -k
            # closes a departed client); later stdin goes to the clients still there.
            client.relay.feed_eof()

    def _on_write_side_gone(self, client: Client, unsent: int) -> None:
        """`pytcp close [--half] ID` from another process sent this connection's FIN:
        say so whatever -v says. A child's later output is read and counted as unsent
        (so it never blocks on a full pipe)."""
        addr, port = client.sock.remote
        how = getattr(client.sock, "closed_elsewhere", None)
        if how == "closed":
            what = f"connection from {addr} port {port} was closed by pytcp close"
        else:
            what = f"the write side to {addr} port {port} was closed by pytcp close --half"
        what += " (another process)"
        if client.child is not None:
            lost = f"{unsent} bytes of the child's output were not sent" if unsent else ""
        elif self.stdin is not None and not self.keep_open and not self.stdin.eof:
            self.stdin.stop()  # its only reader is gone: what stdin holds is lost too
            lost = unsent_input("stdin", unsent, self.app.stdin_fd)
        else:  # -k: later stdin goes to the other clients; or stdin was at its end
            lost = unsent_input("stdin", unsent, None)
        self.app.say(what + (f"; {lost}" if lost else ""))

    def _on_stdout_broken(self) -> None:
        assert self.stdout is not None
        self.error = stdout_trouble(self.stdout.errno)
        self.code = EXIT_CONN
        for client in self.live:
            if not client.closed:
                client.relay.abort()
        self._end_run()

    # -- exec mode: one child per connection

    def _spawn(self, client: Client) -> None:
        assert self.command is not None
        (local_addr, local_port), (remote_addr, remote_port) = client.sock.local, client.sock.remote
        env = dict(os.environ)
        env.update(
            PYTCP_REMOTE_ADDR=str(remote_addr),
            PYTCP_REMOTE_PORT=str(remote_port),
            PYTCP_LOCAL_ADDR=str(local_addr),
            PYTCP_LOCAL_PORT=str(local_port),
        )
        # Our own pipes, not subprocess.PIPE: the relay owns and closes the parent ends as
        # raw fds, with no file object left to close a reused fd number later.
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        try:
            # Its own process group: a ^C on the terminal reaches pytcp only, which
            # then hands the child every byte received before it ends (NOTES).
            child = subprocess.Popen(
                self.command,
                stdin=child_stdin,
                stdout=child_stdout,
                env=env,
                close_fds=True,
                process_group=0,
            )
        except OSError as e:
            for fd in (child_stdin, to_child, from_child, child_stdout):
                os.close(fd)
            self.app.say(f"cannot run {self.command[0]!r}: {e.strerror}; closing the connection")
            client.sock.abort()
            self._mark_closed(client)
            client.child_exited = True
            self._forget_client(client)
            self._check_end()
            return
        pipe = os.fstat(child_stdin)
        client.stdin_pipe = (pipe.st_dev, pipe.st_ino)
        os.close(child_stdin)
        os.close(child_stdout)
        client.child = child
        client.child_in = FdWriter(self.loop, to_child, on_drain=lambda: self._pump(client))
        client.relay = Relay(
            client.sock,
            client.child_in,
            on_progress=lambda: self._child_progress(client),
            on_peer_eof=lambda: self._on_peer_eof(client),
            on_done=lambda relay: self._on_closed(client),
            on_write_side_gone=lambda unsent: self._on_write_side_gone(client, unsent),
            crlf=self.crlf,
        )
        client.child_out = FdReader(self.loop, from_child, client.relay.feed, client.relay.feed_eof)
        client.child_out_fd = from_child
        client.child_out.resume()
        client.pidfd = os.pidfd_open(child.pid)
        self.loop.add_reader(client.pidfd, lambda: self._child_exited(client))
        client.relay.pump()

    def _pump(self, client: Client) -> None:
        if not client.closed:
            client.relay.pump()

    def _child_progress(self, client: Client) -> None:
        if client.child_out is None or client.child_out.eof:
            return
        if client.closed or client.relay.fin_sent or client.relay.has_room:
            # After our FIN the child's output has nowhere to go: it is read and counted
            # as unsent, so the child never blocks on a full pipe and can exit.
            client.child_out.resume()
        else:
            client.child_out.pause()

    def _child_exited(self, client: Client) -> None:
        """The child's exit closes its connection cleanly: what it wrote is sent, then FIN."""
        assert client.child is not None and client.pidfd is not None
        self.loop.remove_reader(client.pidfd)
        os.close(client.pidfd)
        client.pidfd = None
        status = client.child.wait()
        client.child_exited = True
        if self.verbose:
            self.app.say(f"{describe_exit(client.child.pid, self.command, status)}")
        if client.child_out is not None and not client.child_out.eof:
            client.child_out.read_available()
            if not client.child_out.eof:
                client.child_out.stop()  # a grandchild holds the pipe: the child is what counts
            client.relay.shutdown_now()
        self._check_end()

    # -- the end of a connection and of the run

    def _mark_closed(self, client: Client) -> None:
        if not client.closed:
            client.closed = True
            self._open -= 1
            self._short.discard(client)
            self._sink_waiters.pop(client, None)
            if not client.ended:
                self._closing[client] = None

    def _forget_client(self, client: Client) -> None:
        """The client is over (closed, child reaped, lingered): forgotten, O(1)."""
        client.ended = True
        self.clients.pop(client, None)
        self._closing.pop(client, None)

    def _on_closed(self, client: Client) -> None:
        self._mark_closed(client)
        relay = client.relay
        if relay.failure is not None and self.signum is None:
            addr, port = client.sock.remote
            failure = self.app.connect_failure(relay.failure, addr, port, None, established=True)
            message = failure.format_message()
            if self.keep_open:
                self.app.say(message)
            else:
                self.error, self.code = message, failure.exit_code
        if self.verbose:
            addr, port = client.sock.remote
            seconds = (self.loop.now() - client.started) / 1e9
            self.app.say(
                f"{addr} port {port}: {relay.sent} bytes sent, {relay.received} received "
                f"in {seconds:.2f} s"
            )
        if client.child_in is not None and not self.hard_stop:
            # Every byte received goes to the child, then EOF; the child is waited for
            # (never signalled: only a second SIGINT/SIGTERM kills it).
            client.child_in.close_when_drained()
            self._child_progress(client)
        if relay.failure is None and not self._record_lingers():
            self.settle(client.sock, lambda: self._lingered(client))
        else:
            self._lingered(client)

    def _record_lingers(self) -> bool:
        """With -k, while the listener is open and no signal came, a departed client's
        socket is let go at once: the host keeps its TIME-WAIT as a compact record for
        the whole 2·MSL anyway (re-ACKing a late FIN while pytcp runs), so holding the
        whole connection --time-wait longer only costs memory. `--time-wait full` keeps
        each connection until its TIME-WAIT ends, as asked."""
        return self.keep_open and self.listener is not None and self.signum is None and (
            self.time_wait is not None
        )

    def _lingered(self, client: Client) -> None:
        if client.child is None or client.child_exited:
            self._forget_client(client)
            self._release(client)
        self._check_end()

    def _check_end(self) -> None:
        for client in list(self._closing):  # closed both ways: only these may be over
            if client.child is None or client.child_exited:
                # the child exited after its connection closed: now it is over
                self._forget_client(client)
                self._release(client)
        no_more = (
            self.signum is not None
            or self.listener_closed
            or (not self.keep_open and self.accepted > 0)
        )
        if no_more and not self.clients:
            self._end_run()
        else:
            self._accept()
            self._on_progress()

    def _release(self, client: Client) -> None:
        if client.pidfd is not None:
            self.loop.remove_reader(client.pidfd)
            os.close(client.pidfd)
            client.pidfd = None
        if client.child_in is not None:
            client.child_in.close()
        if client.child_out is not None:
            client.child_out.stop()
        if client.child_out_fd is not None:
            os.close(client.child_out_fd)
            client.child_out_fd = None
        try:
            client.sock.close()
        except OSError:
            pass

    def _end_run(self) -> None:
        """Every connection is over; run() writes out what stdout still holds."""
        if self.finished:
            return
        if self.stdin is not None:
            self.stdin.stop()
        self.finished = True

    # -- signals

    def has_open_connections(self) -> bool:
        # The stack's state, not the relay's: TIME-WAIT or CLOSED is closed both ways
        # even before the relay has read the peer's FIN.
        return any(not c.closed and c.sock.state not in CLOSED_STATES for c in self.clients)

    def _running_children(self) -> list[Client]:
        return [c for c in self.clients if c.child is not None and not c.child_exited]

    def waits_for_something(self) -> bool:
        return self.has_open_connections() or bool(self._running_children())

    def first_signal_message(self, name: str) -> str:
        children = len(self._running_children())
        if not children:
            return super().first_signal_message(name)
        them = "it" if children == 1 else "them"
        waiting = (
            f"waiting for {children} child{'' if children == 1 else 'ren'} to exit "
            f"(up to {format_duration(self.child_grace)}, "
            f"then {'it is' if children == 1 else 'they are'} killed)"
        )
        if self.has_open_connections():
            return (
                f"{name}: closing (FIN), then {waiting}; "
                f"send it again to reset (RST) and kill {them}"
            )
        return f"{name}: no connection open; {waiting} (send it again to kill {them})"

    def status_note(self) -> str | None:
        """For `pytcp inspect`: a stopping process that waits for its children."""
        children = self._running_children()
        if self.signum is None or not children or self._child_deadline is None:
            return None
        left = max(0.0, (self._child_deadline - self.loop.now()) / 1e9)
        pids = ", ".join(str(c.child.pid) for c in children if c.child is not None)
        return (
            f"stopping after {signal_name(self.signum)}: waiting for "
            f"{len(children)} child{'' if len(children) == 1 else 'ren'} "
            f"({child_name(self.command)}, pid {pids}) to exit, killed in {left:.1f}s"
        )

    def _child_grace_over(self) -> None:
        """--child-grace ran out after the first signal: kill the children still running."""
        if self.finished or not self._running_children():
            return
        self._kill_children(f"the {format_duration(self.child_grace)} --child-grace ran out")
        self._check_end()

    def graceful_close(self) -> None:
        if self._child_deadline is None:
            self._child_deadline = self.loop.now() + int(self.child_grace * 1e9)
            self.loop.call_later(self.child_grace, self._child_grace_over)
        if self.stdin is not None:
            self.stdin.stop()
        for client in list(self._closing):
            if client.child is None or client.child_exited:
                # Closed both ways, lingering in TIME-WAIT: nothing left to close.
                self._forget_client(client)
                self._release(client)
        if self.listener is not None:
            self.listener.on_change(None)
            self.listener.close()
            self.listener = None
        for client in list(self.clients):  # closing one forgets it
            if not client.closed:
                client.relay.shutdown_now()
        self._check_end()

    def abort_all(self) -> None:
        """GRACE over: RST what is still open, after taking every byte it received; the
        children still get all of it, then EOF, and are waited for. Second signal: the
        same RST, then the children are killed and what did not reach them is counted."""
        for client in list(self.clients):
            if not client.closed:
                client.relay.abort()  # on_done: _on_closed
        if not self.hard_stop:
            self._check_end()
            return
        self._kill_children(f"the second {signal_name(self._hard_signum)} came")
        for client in list(self.clients):
            self._forget_client(client)
            self._release(client)
        self._end_run()

    def _kill_children(self, why: str) -> None:
        """Second signal or --child-grace over: each child still running gets what its
        pipe takes now, then SIGTERM (SIGKILL after CHILD_GRACE); the received bytes it
        never read are reported (`why`: what ended the wait)."""
        running = self._running_children()
        readers: dict[int, int] = {}  # id(client) -> a read end of its stdin pipe
        for client in running:
            if client.child_in is not None:
                client.child_in.write_available()
            fd = _open_child_stdin(client)
            if fd is not None:
                readers[id(client)] = fd
        end_children([c.child for c in running if c.child is not None])
        for client in running:
            assert client.child is not None
            client.child_exited = True
            writer = client.child_in
            reader = readers.pop(id(client), None)
            if writer is None:
                continue
            # Still in pytcp, dropped on a broken pipe, and left unread in the pipe (read
            # through a read end taken before the child died, else through ours).
            lost = writer.pending + writer.dropped
            if reader is not None:
                lost += pipe_unread(reader)
                os.close(reader)
            elif not writer.closed:
                lost += pipe_unread(writer.fd)
            if lost:
                self.app.say(
                    f"{lost} received bytes did not reach child {client.child.pid} "
                    f"({child_name(self.command)}): it was not reading when {why}"
                )

    def run(self) -> int:
        self.listener.on_change(self._on_listener_change)
        self._accept()
        failed = True
        try:
            self.loop.run_until(lambda: self.finished, None)
            failed = False
        finally:
            end_children([c.child for c in self.clients if c.child is not None])
            self.clients = {}
            self._closing = {}
            # stdout drains with signals still watched: a second ^C while its reader is
            # stuck ends pytcp at once (RST, what cannot be written is reported).
            self.finish_output(self.stdout, failed=failed)
        if self.error is not None and self.signum is None:
            raise CliError(self.error, self.code)
        return self.code


def end_children(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the children still running (each one's process group: what it started
    too), wait up to CHILD_GRACE for them, SIGKILL the ones that ignored it, and reap
    them all (no orphan outlives pytcp)."""
    running = [c for c in children if c.poll() is None]
    for child in running:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_GRACE
    for child in running:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()


def _open_child_stdin(client: Client) -> int | None:
    """A read end of the pipe that is the child's stdin, opened through /proc while the
    child lives (our write end may be closed already): after the child is gone it still
    tells how many bytes the child never read. None when that cannot be done."""
    if client.child is None or client.stdin_pipe is None:
        return None
    try:
        fd = os.open(f"/proc/{client.child.pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != client.stdin_pipe:
        os.close(fd)  # the child put something else on its fd 0
        return None
    return fd


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the child's process group (it leads one: process_group=0)."""
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass
    except OSError:
        with contextlib.suppress(OSError):
            child.send_signal(signum)


def child_name(command: list[str] | None) -> str:
    """How messages name a child: the program's base name, `sh -c` for -c."""
    if command and command[:2] == ["/bin/sh", "-c"]:
        return "sh -c"
    return os.path.basename(command[0]) if command else "?"


def describe_exit(pid: int, command: list[str] | None, status: int) -> str:
    """-v: how a child ended, `child 123 (sh) exited with status 0` / `killed by SIGKILL`."""
    name = child_name(command)
    if status < 0:
        try:
            how = f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            how = f"was killed by signal {-status}"
    else:
        how = f"exited with status {status}"
    return f"child {pid} ({name}) {how}"


def _where(st: Any, address: str | None, family: int | None) -> str:
    """The -v line's addresses: the one asked for, else the stack's of each family heard."""
    if address is not None:
        return address
    ours = [st.address if family != 6 else None, st.address6 if family != 4 else None]
    return " and ".join(str(a) for a in ours if a is not None)


def signal_ready(fd: int, line: str) -> None:
    """--ready-fd: the one line, then the fd is closed (a reader sees EOF after it). A
    reader that went away costs nothing but the signal."""
    try:
        os.write(fd, line.encode())
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def parse_addr_port(args: tuple[str, ...]) -> tuple[str | None, int]:
    """`[ADDR] PORT` -> (address or None for any, port)."""
    if len(args) not in (1, 2):
        raise click.UsageError(
            "give PORT, or ADDR and PORT" if not args else f"got {len(args)} arguments"
        )
    try:
        port = PORT.convert(args[-1], None, None)
    except click.BadParameter as e:
        e.param_hint = "'PORT'"
        raise
    addr = None
    if len(args) == 2:
        text = args[0]
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]  # [fd77:0::2], as URLs and ncat write IPv6
        try:
            # A zone (%lo) is dropped, as App.resolve_all drops it for connect.
            addr = str(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            raise click.UsageError(f"{args[0]!r} is not an IPv4 or IPv6 address") from None
    return addr, port


@click.command(
    epilog="stdout carries the connections' data only; every message goes to stderr.",
    short_help="Accept connections on PORT and relay them (the netcat server).",
)
@click.argument("addr_port", nargs=-1, metavar="[ADDR] PORT")
@click.option(
    "-k",
    "--keep-open",
    is_flag=True,
    help="Serve connections concurrently and keep listening: data of all clients goes "
    "to stdout, stdin goes to every connected client (after stdin ends, each client "
    "gets FIN: a half-close, it can still send). A client that closes its side gets "
    "what is already queued for it, then FIN: it is not kept in CLOSE-WAIT.",
)
@click.option(
    "-e",
    "--exec",
    "exec_cmd",
    metavar="CMD",
    shell_complete=complete_command,
    help="Run CMD (split like a shell would, but no shell) for each connection, wired to it.",
)
@click.option(
    "-c",
    "--sh-exec",
    "sh_cmd",
    metavar="CMD",
    help="Run CMD through /bin/sh -c for each connection, wired to it.",
)
@click.option(
    "-m",
    "--max-conns",
    type=click.IntRange(1),
    metavar="N",
    help="With -k: at most N clients at once; more wait in the backlog.",
)
@click.option(
    "--backlog",
    type=click.IntRange(1, 65535),
    default=128,
    show_default=True,
    metavar="N",
    help="Connections completed but not yet accepted that the stack keeps.",
)
@click.option(
    "--syn-cookies",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="SYN cookies (RFC 4987), as Linux's tcp_syncookies 1, 2, 0: auto answers SYNs "
    "with cookies once the SYN backlog (--backlog) is full, so a SYN flood locks no "
    "client out; always answers every SYN so; never drops SYNs a full backlog cannot hold.",
)
@click.option("-C", "--crlf", is_flag=True, help="Send LF line endings as CRLF.")
@click.option(
    "-d",
    "--recv-only",
    is_flag=True,
    help="Do not read stdin; only receive (FIN after the peer's). For a listener "
    "started from cron, a script or & with stdin at /dev/null.",
)
@click.option(
    "--no-shutdown",
    is_flag=True,
    help="At stdin EOF keep the write side open (no FIN) until the peer closes.",
)
@shutdown_on_eof_option
@click.option(
    "-q",
    "quit_after",
    type=Duration(allow_zero=True),
    metavar="DURATION",
    help="Exit DURATION after stdin EOF, whatever the peers do; connections still "
    "open then are aborted with RST, each as soon as its peer has acknowledged all of "
    "stdin (an RST would discard it).",
)
@idle_timeout_option
@click.option(
    "-l",
    "nc_listen",
    is_flag=True,
    help="Accepted as nc spells it (listen is already listening).",
)
@click.option(
    "-p",
    "--port",
    "port_option",
    type=PORT,
    metavar="PORT",
    help="The port, as nc -l -p PORT spells it (then no PORT argument).",
)
@click.option(
    "--ready-fd",
    type=click.IntRange(3),
    metavar="N",
    help="Once listening, write one line 'TUN ADDRESS PORT' to file descriptor N and "
    "close it: a readiness signal for scripts (pytcp listen --ready-fd 3 80 3>fifo &).",
)
@udp_option
@listen_family_option
@click.option(
    "--child-grace",
    type=DURATION,
    default=format_duration(CHILD_WAIT),
    show_default=True,
    metavar="DURATION",
    help="After the first signal, how long -e/-c children get to exit once they have "
    "every byte and EOF; then they are killed (SIGTERM, SIGKILL 1 s later).",
)
@time_wait_option
@stack_options
@click.pass_obj
def listen(
    app: App,
    stack: StackOptions,
    addr_port: tuple[str, ...],
    keep_open: bool,
    exec_cmd: str | None,
    sh_cmd: str | None,
    max_conns: int | None,
    backlog: int,
    syn_cookies: str,
    crlf: bool,
    recv_only: bool,
    no_shutdown: bool,
    shutdown_on_eof: bool,
    quit_after: float | None,
    idle_timeout: float | None,
    nc_listen: bool,
    port_option: int | None,
    ready_fd: int | None,
    ipv4: bool,
    ipv6: bool,
    child_grace: float,
    time_wait: float | None,
) -> None:
    """Listen on [ADDR] PORT with pytcp's own TCP and relay what connects.

    Without -k, pytcp accepts one connection, relays it with stdin and stdout like
    `pytcp connect`, and exits when it is closed both ways; later clients are
    refused. ADDR is one of the stack's addresses, IPv4 or IPv6 ([fd77:0::2] too);
    without it pytcp listens on both families, as ncat does (-4 or -6: one only).

    With -e or -c, each connection gets its own child process: what the peer sends
    is the child's stdin, what the child writes is sent; the child's environment
    holds PYTCP_REMOTE_ADDR, PYTCP_REMOTE_PORT, PYTCP_LOCAL_ADDR and PYTCP_LOCAL_PORT.
    When the child exits, pytcp sends what it wrote, then FIN (-v reports its exit
    status or signal). When a connection ends first (closed, reset, or a first
    SIGINT/SIGTERM), its child still gets every byte received, then EOF, and pytcp
    waits up to --child-grace for it to exit (stderr says so, and `pytcp inspect`
    shows the wait); then, or at a second signal, it is killed (SIGTERM, SIGKILL
    1 s later). Each child runs in its own process group, so a ^C on the terminal
    reaches pytcp only.
    """
    if port_option is not None:
        if len(addr_port) > 1:
            raise CliError("with -p PORT give at most ADDR as an argument", EXIT_USAGE)
        address, port = parse_addr_port((*addr_port, str(port_option)))
    else:
        address, port = parse_addr_port(addr_port)
    if no_shutdown and shutdown_on_eof:
        raise CliError("-N and --no-shutdown exclude each other; pick one", EXIT_USAGE)
    command_given = exec_cmd is not None or sh_cmd is not None
    if command_given and (recv_only or no_shutdown or quit_after is not None):
        raise CliError(
            "-d, --no-shutdown and -q concern stdin; with -e/-c each child has its own",
            EXIT_USAGE,
        )
    if ready_fd is not None:
        try:
            os.fstat(ready_fd)
        except OSError:
            raise CliError(
                f"--ready-fd {ready_fd}: file descriptor {ready_fd} is not open "
                f"(redirect it, e.g. {ready_fd}>ready.fifo)",
                EXIT_USAGE,
            ) from None
    family = family_of(ipv4, ipv6)
    if address is not None and family is not None and (":" in address) != (family == 6):
        raise CliError(
            f"{address} is not an IPv{family} address; drop -{family} or give one", EXIT_USAGE
        )
    if exec_cmd is not None and sh_cmd is not None:
        raise CliError("-e and -c exclude each other; pick one", EXIT_USAGE)
    if max_conns is not None and not keep_open:
        raise CliError("--max-conns needs -k/--keep-open (without it there is one client)", 2)
    command: list[str] | None = None
    if exec_cmd is not None:
        try:
            command = shlex.split(exec_cmd)
        except ValueError as e:
            raise CliError(f"cannot split -e {exec_cmd!r}: {e}; check the quotes", 2) from None
        if not command:
            raise CliError("-e needs a command; give one", EXIT_USAGE)
        if shutil.which(command[0]) is None:
            raise CliError(
                f"cannot find {command[0]!r} for -e; give a path or a command on PATH", EXIT_USAGE
            )
    elif sh_cmd is not None:
        command = ["/bin/sh", "-c", sh_cmd]
    with app.stack(stack) as st, app.control(st, stack.verbose):
        try:
            listener = st.listen(
                port, address=address, backlog=backlog, family=family, syn_cookies=syn_cookies
            )
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                ours = " and ".join(str(a) for a in (st.address, st.address6) if a is not None)
                if address is None:  # -6 on an interface without IPv6
                    raise CliError(
                        f"cannot listen on IPv6: interface {st.tun_name} has no IPv6 address "
                        f"(pytcp's address is {ours}); drop -6",
                        EXIT_USAGE,
                    ) from None
                raise CliError(
                    f"cannot listen on {address}: pytcp's address is {ours}; "
                    "give one of those or no ADDR",
                    EXIT_USAGE,
                ) from None
            raise CliError(
                f"cannot listen on port {port}: {e.strerror or e}; choose another port", EXIT_ENV
            ) from None
        session = ListenSession(
            app,
            st,
            listener,
            keep_open=keep_open,
            max_conns=max_conns,
            command=command,
            crlf=crlf,
            time_wait=time_wait,
            verbose=stack.verbose,
            child_grace=child_grace,
            recv_only=recv_only,
            no_shutdown=no_shutdown,
            quit_after=quit_after,
            idle_timeout=idle_timeout,
        )
        st.status_note = session.status_note  # shown by `pytcp inspect`
        # Said once the session's signal handling is in place: a ^C from now on closes.
        if stack.verbose:
            note = offload_note(st)
            app.say(
                f"listening on {st.tun_name} {_where(st, address, family)} port {port}"
                f"{' (' + note + ')' if note else ''}"
            )
        if ready_fd is not None:
            signal_ready(ready_fd, f"{st.tun_name} {address or st.address} {port}\n")
        code = session.run()
    if code != EXIT_OK:
        click.get_current_context().exit(code)
