"""What the CLI uses: `Stack` (a host, its link and its loop) and socket-like `Socket`s.

Imports everything below it (stack.io, stack.host, stack.tcp, stack.wire, stack.trace).

A `Stack` is entered as a context manager: that opens its TUN interface (DESIGN §3;
`tun`/`addr` default to the environment variables PYTCP_TUN and PYTCP_ADDR, read here;
PYTCP_ADDR may hold an IPv4 address, an IPv6 one, or one of each separated by a comma),
builds the `Host` and the `Loop`, and `close()` (or leaving the `with`) ends every
connection and removes the interface. Blocking calls run the loop until their
condition holds or their timeout passes; `setblocking(False)` turns `send`/`recv`
into single polls for the CLI's relay, which drives the same loop with its own file
descriptors and learns of changes through `on_change` callbacks.

Connection failures surface as the builtins: ConnectionRefusedError,
ConnectionResetError, TimeoutError, and OSError(EHOSTUNREACH, "... unreachable").
A connection that something other than its socket aborted (`pytcp close --reset`
through stack.control acts on the Connection itself) surfaces as
ConnectionAbortedError(ECONNABORTED); `Socket.closed_elsewhere` tells a reset from a
close requested that way.
The machine refusing a TUN device is `StackEnvironmentError` (an OSError; exit 3).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import os
import random
import signal
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from stack.host import Host, Listener
from stack.io.faults import Faults
from stack.io.link import Link
from stack.io.loop import Loop
from stack.io.pcap import PcapWriter
from stack.io.tun import DEFAULT_MTU, StackEnvironmentError, TunLink, linger_address
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.errors import InvalidStateError
from stack.tcp.state import State
from stack.trace import Tracer

if TYPE_CHECKING:
    from stack.io.impair import Impairer, ImpairSpec


def _impair_module() -> Any:
    """stack.io.impair, imported by the first stack with --impair: the others never
    need its parser and impairers (about 1 ms of start-up)."""
    import stack.io.impair

    return stack.io.impair

__all__ = [
    "ClosedElsewhere",
    "ListeningSocket",
    "Socket",
    "Stack",
    "StackEnvironmentError",
    "TcpConfig",
]

ENV_TUN = "PYTCP_TUN"
ENV_ADDR = "PYTCP_ADDR"
CLOSE_LINGER = 2.0  # seconds Stack.close() waits for FINs to be acknowledged, then RSTs
# With an injected link (no TUN): the DESIGN §3 addresses of pytcp0.
PAIR_ADDRESS = IPv4Address("10.77.0.2")
PAIR_PEER = IPv4Address("10.77.0.1")
PAIR_ADDRESS6 = IPv6Address("fd77::2")
PAIR_PEER6 = IPv6Address("fd77::1")

# States in which the application's close has nothing left to wait for: our FIN is
# acknowledged (FIN-WAIT-2, TIME-WAIT) or the connection is gone.
_CLOSE_DONE = frozenset({State.CLOSED, State.FIN_WAIT_2, State.TIME_WAIT})


SCAN_WINDOW = 256  # handshakes a scan runs at once (nc -z is sequential; this is not)
SCAN_CLOSE = 2.0  # seconds a scan gives its open ports' four-way closes


def _failure(reason: str, remote: tuple[str, int]) -> OSError:
    """The builtin exception for a connection failure reason ("refused", "reset", ...)."""
    where = f"{remote[0]}:{remote[1]}"
    if reason == "refused":
        return ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {where} refused")
    if reason == "reset":
        return ConnectionResetError(errno.ECONNRESET, f"connection to {where} reset by peer")
    if reason == "timed out":
        return TimeoutError(errno.ETIMEDOUT, f"connection to {where} timed out")
    if reason == "unreachable":
        return OSError(errno.EHOSTUNREACH, f"{where} unreachable")
    return OSError(errno.EIO, f"connection to {where} failed: {reason}")


class ClosedElsewhere(ConnectionAbortedError):
    """The connection was ended for its owner by another party (`pytcp close` through
    stack.control): `how` is "reset" or "closed" (Socket.closed_elsewhere)."""

    def __init__(self, how: str, remote: tuple[str, int], *, established: bool) -> None:
        where = f"{remote[0]}:{remote[1]}"
        when = "" if established else " before it was established"
        super().__init__(
            errno.ECONNABORTED, f"connection to {where} {how} by another process{when}"
        )
        self.how = how
        self.established = established


def parse_address(text: str) -> IPv4Address | IPv6Address | None:
    """An IPv4 or IPv6 literal, brackets allowed around IPv6 (`[fd77::1]`, as in URLs);
    None when `text` is not one.  A zone (`%eth0`) on an address that is not link-local
    is dropped, as Linux ignores it there: kept, the address would not equal the one
    in the peer's segments."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, IPv6Address) and addr.scope_id is not None and not addr.is_link_local:
        addr = IPv6Address(text.split("%", 1)[0])
    return addr


def split_addresses(text: str) -> tuple[str | None, str | None]:
    """PYTCP_ADDR / `addr`: an IPv4 address, an IPv6 one, or both comma-separated ->
    (IPv4 text or None, IPv6 text or None). Anything else goes through as IPv4 text,
    for TunLink to reject with its one-line reason."""
    v4: str | None = None
    v6: str | None = None
    for part in (p.strip() for p in text.split(",")):
        addr = parse_address(part)
        if isinstance(addr, IPv6Address) and v6 is None:
            v6 = str(addr)
        elif v4 is None and not isinstance(addr, IPv6Address):
            v4 = part
        else:
            raise StackEnvironmentError(
                errno.EINVAL, f"bad --addr {text!r}: at most one IPv4 and one IPv6 address"
            )
    return v4, v6


def _resolve(host: str, family: int | None = None) -> IPv4Address | IPv6Address:
    """A literal as it is, a name through the system resolver (`family` 4 or 6 limits it)."""
    literal = parse_address(host)
    if literal is not None:
        return literal
    af = {4: socket.AF_INET, 6: socket.AF_INET6}.get(family or 0, socket.AF_UNSPEC)
    try:
        infos = socket.getaddrinfo(host, None, af, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(errno.EHOSTUNREACH, f"cannot resolve {host}: {exc.strerror}") from exc
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0])


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


def _split_gateways(text: str | None) -> tuple[str | None, str | None]:
    """`gateway`: IP/LEN of either family, or one of each comma-separated."""
    if text is None:
        return None, None
    v4: str | None = None
    v6: str | None = None
    for part in (p.strip() for p in text.split(",")):
        if ":" in part and v6 is None:
            v6 = part.replace("[", "").replace("]", "")
        elif ":" not in part and v4 is None:
            v4 = part
        else:
            raise StackEnvironmentError(
                errno.EINVAL, f"bad --gateway {text!r}: at most one IPv4 and one IPv6 prefix"
            )
    return v4, v6


class Socket:
    """One TCP connection of a `Stack`, shaped like a `socket.socket`.

    Blocking by default (with the timeout of `settimeout`, None = forever);
    `setblocking(False)` makes `send`/`recv` raise BlockingIOError instead of waiting.
    """

    def __init__(self, stack: Stack, conn: Connection) -> None:
        self._stack = stack
        self._conn = conn
        self.id = f"{os.getpid()}.{conn.id}"
        self.local = (str(conn.local[0]), conn.local[1])
        self.remote = (str(conn.remote[0]), conn.remote[1])
        self._timeout: float | None = None
        self._callback: Callable[[], None] | None = None
        self._last: tuple[Any, ...] | None = None
        self._error: OSError | None = None
        self._write_shut = False
        self._read_shut = False
        self._aborted = False
        self.closed = False
        self._order = next(stack._order)  # notifications go out oldest socket first

    # -- state ---------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The `Connection` underneath (for tests and `inspect`)."""
        return self._conn

    @property
    def state(self) -> str:
        return str(self._conn.state)

    @property
    def readable(self) -> int:
        return int(self._conn.readable)

    @property
    def writable(self) -> int:
        if self._write_shut or self.closed:
            return 0
        return int(self._conn.send_space)

    @property
    def at_eof(self) -> bool:
        return bool(self._conn.at_eof) or self._read_shut

    @property
    def send_queued(self) -> int:
        """Bytes sent and not yet acknowledged by the peer (SIOCOUTQ): what an abort()
        would discard."""
        return int(self._conn.send_queued)

    @property
    def error(self) -> BaseException | None:
        """The failure that ended the connection (refused, reset, timed out...), or None.

        A reset that did not come from the peer nor from this socket (another process
        through `pytcp close --reset`) is ConnectionAbortedError."""
        if self._error is None and self._conn.error is not None:
            self._error = _failure(self._conn.error, self.remote)
        if self._error is None and self.closed_elsewhere == "reset":
            self._error = ClosedElsewhere("reset", self.remote, established=True)
        return self._error

    @property
    def closed_elsewhere(self) -> str | None:
        """How the connection was ended by someone other than this socket's owner, or
        None: "reset" (ABORT, RFC 9293 3.10.5, on the connection and not through this
        socket's abort()) or "closed" (CLOSE as the application gone, RFC 1122
        4.2.2.13, while this socket is still open). That someone is the stack's
        control endpoint, acting for `pytcp close [--reset] ID`. The connection says
        so itself (Connection.aborted, tcb.app_closed): a peer's RST after our FIN
        also leaves CLOSED without an error, and is nobody's doing here."""
        if self.closed or self._aborted:
            return None
        conn = self._conn
        if conn.tcb.app_closed:
            return "closed"
        if conn.aborted:
            return "reset"
        return None

    def info(self) -> dict[str, Any]:
        """The whole TCB as plain data (Connection.snapshot)."""
        return dict(self._conn.snapshot(self._stack.loop.now()))

    # -- modes ---------------------------------------------------------------------

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def settimeout(self, timeout: float | None) -> None:
        """Seconds a blocking call waits before TimeoutError; None forever, 0 non-blocking."""
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def on_change(self, cb: Callable[[], None] | None) -> None:
        """Call `cb` after every loop iteration in which this connection produced events
        or its state, readable or writable amounts, EOF or error changed from what the
        application last saw: at its last callback, send() or recv()."""
        self._callback = cb
        self._last = self._signature()
        self._stack._recheck[self._order] = self  # events already queued are told next

    # -- data ----------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue what fits of `data`; blocking waits for room. Returns bytes queued."""
        self._check_open()
        if not data:
            return 0
        conn = self._conn
        try:
            if not self._wait(lambda: conn.send_space > 0 or self._cannot_send()):
                raise self._would_block("send")
            self._raise_if_cannot_send()
            try:
                # The connection copies what fits into its ring: no slice or copy here.
                n = conn.send(data, self._stack.loop.now())
            except InvalidStateError as exc:
                raise BrokenPipeError(errno.EPIPE, f"cannot send: {exc}") from exc
        finally:
            self._saw_send_space()
        return int(n)

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Queue all of `data`, running the loop while the send buffer is full (also in
        non-blocking mode); the socket timeout bounds each wait for room."""
        view = memoryview(data)
        offset = 0
        conn = self._conn
        self._check_open()
        while offset < len(view):
            if not self._stack.loop.run_until(
                lambda: conn.send_space > 0 or self._cannot_send(), self._timeout or None
            ):
                raise TimeoutError(errno.ETIMEDOUT, "timed out waiting to send")
            self._raise_if_cannot_send()
            try:
                offset += conn.send(view[offset:], self._stack.loop.now())
            except InvalidStateError as exc:
                raise BrokenPipeError(errno.EPIPE, f"cannot send: {exc}") from exc
            finally:
                self._saw_send_space()

    def recv(self, bufsize: int) -> bytes:
        """Up to `bufsize` bytes; b"" at end of file. Blocking waits for data or EOF."""
        self._check_open()
        conn = self._conn
        if self._read_shut:
            return b""
        if not self._wait(
            lambda: conn.readable > 0 or conn.at_eof or conn.error is not None or conn.is_closed
        ):
            self._saw_readable()
            raise self._would_block("recv")
        if conn.readable > 0:
            data = bytes(conn.receive(bufsize, self._stack.loop.now()))
            self._saw_readable()
            return data
        error = self.error
        if error is not None:
            raise error
        return b""

    # -- closing -------------------------------------------------------------------

    def shutdown(self, how: int = socket.SHUT_WR) -> None:
        """SHUT_WR: send FIN after the queued data (half-close); SHUT_RD: read EOF from now."""
        self._check_open()
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._read_shut = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self._write_shut:
            if self._conn.error is not None:
                # The failure says more than Linux's ENOTCONN would: report it.
                error = self.error
                assert error is not None
                raise error
            if self._conn.is_closed:
                raise OSError(errno.ENOTCONN, "socket is not connected")
            self._write_shut = True
            try:
                self._conn.shutdown(self._stack.loop.now())
            except InvalidStateError as exc:
                raise OSError(errno.ENOTCONN, f"cannot shut down: {exc}") from exc

    def close(self) -> None:
        """The application is done: FIN after queued data (RST if unread data is
        discarded, RFC 1122 4.2.2.13); the close completes in the background."""
        if self.closed:
            return
        self.closed = True
        self._callback = None
        if not self._conn.is_closed:
            try:
                self._conn.close(self._stack.loop.now())
            except InvalidStateError:
                pass  # already closing: nothing more to do
        self._stack._forget(self)

    def abort(self) -> None:
        """Reset the connection now (RST if synchronized) and close the socket."""
        if not self._conn.is_closed:
            self._conn.abort(self._stack.loop.now())
        self._aborted = True
        self.closed = True
        self._callback = None
        self._stack._forget(self)

    # -- internals -----------------------------------------------------------------

    def _signature(self) -> tuple[Any, ...]:
        conn = self._conn
        return (conn.state, conn.readable, conn.send_space, conn.at_eof, conn.error)

    def _notify(self) -> None:
        """Loop hook: drain the connection's events and call back if anything changed."""
        conn = self._conn
        events = 0
        while conn.next_event() is not None:
            events += 1
        if self._callback is None:
            return
        sig = self._signature()
        if events or sig != self._last:
            self._last = sig
            self._callback()
            # What the callback left is what the application knows: if it filled the
            # send buffer, room coming back to the amount of before is news.
            self._last = self._signature()

    # The application learns the amounts it acts on from its own calls: a send() that
    # fills the buffer outside a callback has seen it full, so room that comes back in
    # the same wake-up (the kernel ACKs before the loop polls again) is still told.
    def _saw_send_space(self) -> None:
        last = self._last
        if last is not None:
            self._last = (last[0], last[1], self._conn.send_space, last[3], last[4])

    def _saw_readable(self) -> None:
        last = self._last
        if last is not None:
            self._last = (last[0], self._conn.readable, last[2], last[3], last[4])

    def _wait(self, condition: Callable[[], bool]) -> bool:
        if condition():
            return True
        if self._timeout == 0:
            return False
        if self._stack.loop.run_until(condition, self._timeout):
            return True
        raise TimeoutError(errno.ETIMEDOUT, "timed out")

    def _would_block(self, what: str) -> BlockingIOError:
        return BlockingIOError(errno.EAGAIN, f"{what} would block")

    def _cannot_send(self) -> bool:
        conn = self._conn
        return (
            self._write_shut
            or conn.error is not None
            or conn.is_closed
            or conn.state not in (State.ESTABLISHED, State.CLOSE_WAIT)
        )

    def _raise_if_cannot_send(self) -> None:
        if self._conn.error is not None:
            error = self.error
            assert error is not None
            raise error
        if self._cannot_send():
            raise BrokenPipeError(
                errno.EPIPE, f"cannot send: connection is {self._conn.state} and shut for writing"
            )

    def _check_open(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        self._stack._check_open()

    def __repr__(self) -> str:
        local, remote = self.local, self.remote
        return f"<Socket {self.id} {local[0]}:{local[1]} -> {remote[0]}:{remote[1]} {self.state}>"


class ListeningSocket:
    """A listener of a `Stack`: `accept()` returns connected `Socket`s."""

    def __init__(self, stack: Stack, listener: Listener) -> None:
        self._stack = stack
        self._listener = listener
        self.id = f"{os.getpid()}.{listener.id}"
        self.local = (str(listener.local[0]), listener.local[1])
        self._callback: Callable[[], None] | None = None
        self._last: tuple[int, bool] = (0, False)
        self.closed = False
        self._order = next(stack._order)

    @property
    def listener(self) -> Listener:
        return self._listener

    @property
    def state(self) -> str:
        return "CLOSED" if self.closed or self._listener.closed else "LISTEN"

    @property
    def closed_elsewhere(self) -> bool:
        """The listener was closed while this socket is still open: by the stack's
        control endpoint, for `pytcp close PID.N` from another process."""
        return bool(self._listener.closed) and not self.closed

    @property
    def pending(self) -> int:
        """Established connections waiting in accept()."""
        return int(self._listener.pending)

    def accept(self, timeout: float | None = None) -> Socket | None:
        """The next established connection; waits up to `timeout` seconds (None: forever,
        0: poll) and returns None when none arrived in time."""
        if self.closed:
            raise OSError(errno.EBADF, "listening socket is closed")
        self._stack._check_open()
        listener = self._listener
        if not self._stack.loop.run_until(lambda: listener.pending > 0, timeout):
            return None
        conn = listener.accept()
        if conn is None:
            return None
        return self._stack._adopt(conn)

    def on_change(self, cb: Callable[[], None] | None) -> None:
        """Call `cb` after every loop iteration in which the accept queue changed or the
        listener was closed."""
        self._callback = cb
        self._last = (self._listener.pending, self._listener.closed)

    def _notify(self) -> None:
        if self._callback is None:
            return
        now = (self._listener.pending, self._listener.closed)
        if now != self._last:
            self._last = now
            self._callback()
            # What the callback left (it usually accepts): a later arrival that brings
            # the queue back to the same length is a change too, and must be told.
            self._last = (self._listener.pending, self._listener.closed)

    def info(self) -> dict[str, Any]:
        return dict(self._listener.snapshot(self._stack.loop.now()))

    def close(self) -> None:
        """Stop listening: connections not yet accepted are reset."""
        if self.closed:
            return
        self.closed = True
        self._callback = None
        self._listener.close(self._stack.loop.now())
        self._stack._forget(self)

    def __repr__(self) -> str:
        return f"<ListeningSocket {self.id} {self.local[0]}:{self.local[1]}>"


class Stack:
    """One userspace TCP/IP stack: a TUN interface (or the `link` given), a `Host`, a `Loop`.

    Enter it (`with Stack() as s:`) to create the interface; `close()` removes it.
    `loop` lets several stacks share one loop (tests: two stacks over a PairLink pair
    in one thread); without it each stack has its own.
    """

    def __init__(
        self,
        *,
        tun: str | None = None,
        addr: str | None = None,
        gateway: str | None = None,
        mtu: int | None = None,
        config: TcpConfig | None = None,
        tracer: Tracer | None = None,
        pcap: str | None = None,
        impair: str | None = None,
        link: Link | None = None,
        loop: Loop | None = None,
        seed: int | None = None,
        offload: bool = True,
    ) -> None:
        self._tun = tun
        self._addr = addr
        self._gateway = gateway
        self._mtu = mtu
        self.config = config if config is not None else TcpConfig()
        self._tracer = tracer
        self._pcap_path = pcap
        self.impair: ImpairSpec | None = (
            _impair_module().ImpairSpec.parse(impair) if impair is not None else None
        )
        self._link: Link | None = link
        self._given_link = link is not None
        self._shared_loop = loop
        self._seed = seed
        self.offload = offload
        self._sockets: dict[str, Socket | ListeningSocket] = {}
        # Which sockets the iteration hook tells (issue 14: never a scan of them all):
        # the sockets of the connections the host reports touched, by connection id;
        # every listening socket (a handful); and those to look at once more (adopted,
        # given a callback, or touched again by a callback after they were told).
        self._by_conn: dict[int, Socket] = {}
        self._listening: dict[str, ListeningSocket] = {}
        self._recheck: dict[int, Socket | ListeningSocket] = {}
        self._order = itertools.count()
        self._pcap: PcapWriter | None = None
        self.impairers: tuple[Impairer, Impairer] | None = None  # (outgoing, incoming)
        self.faults = Faults(tracer)  # per-connection faults (`pytcp impair`)
        self.tun_name = ""
        # What the application is doing beyond its connections, for `pytcp inspect`
        # (stack.control shows it): a callable returning one line, or None.
        self.status_note: Callable[[], str | None] | None = None
        # Told what changes on the link at run time, one line each (-v): the kernel
        # refused a TSO write, so TSO went off.
        self.on_link_note: Callable[[str], None] | None = None
        self.address = PAIR_ADDRESS
        self.peer_address = PAIR_PEER
        # IPv6 (DESIGN §3: both families on one interface); None when the TUN has none.
        self.address6: IPv6Address | None = PAIR_ADDRESS6
        self.peer_address6: IPv6Address | None = PAIR_PEER6
        self.mtu = mtu or DEFAULT_MTU
        self.host: Host
        self.loop: Loop
        self.opened = False
        self.closed = False

    # -- lifetime ------------------------------------------------------------------

    def open(self) -> Stack:
        """Create the interface (or take the given link), the host and the loop."""
        if self.opened:
            return self
        if self._link is None:
            name = self._tun if self._tun is not None else os.environ.get(ENV_TUN) or None
            addr = self._addr if self._addr is not None else os.environ.get(ENV_ADDR) or None
            addr4, addr6 = split_addresses(addr) if addr is not None else (None, None)
            gateway4, gateway6 = _split_gateways(self._gateway)
            tun = TunLink.open(
                name,
                addr=addr4,
                gateway=gateway4,
                mtu=self._mtu,
                offload=self.offload,
                addr6=addr6,
                gateway6=gateway6,
            )
            self._link = tun
            network: ipaddress.IPv4Network | None = tun.network
            self.tun_name = tun.name
            self.address = tun.address
            self.peer_address = tun.peer_address
            self.address6 = tun.address6
            self.peer_address6 = tun.peer_address6
            self.mtu = tun.mtu
        else:
            self.tun_name = str(getattr(self._link, "name", ""))
            if self._addr is not None:
                addr4, addr6 = split_addresses(self._addr)
                if addr4 is not None:
                    self.address = IPv4Address(addr4)
                # An injected link has IPv6 only as asked: two stacks of a pair must not
                # both be fd77::2.
                self.address6 = IPv6Address(addr6) if addr6 is not None else None
            gateway4, gateway6 = _split_gateways(self._gateway)
            network = None
            if gateway4 is not None:
                self.peer_address = ipaddress.IPv4Interface(gateway4).ip
                network = ipaddress.IPv4Interface(gateway4).network
            if self._gateway is not None:
                self.peer_address6 = (
                    ipaddress.IPv6Interface(gateway6).ip if gateway6 is not None else None
                )
        try:
            rng = random.Random(self._seed if self._seed is not None else os.urandom(16))
            secret = rng.randbytes(16) if self._seed is not None else os.urandom(16)
            self.host = Host(
                address=self.address,
                isn_secret=secret,
                rng=rng,
                config=self.config,
                mtu=self.mtu,
                tracer=self._tracer,
                address6=self.address6,
                # Packets with offload facts both ways when the link carries them.
                offload=bool(getattr(self._link, "offload", False)),
                # A /31 or /32 has no broadcast address (RFC 3021).
                broadcast=network.broadcast_address
                if network is not None and network.prefixlen < 31
                else None,
            )
            impair_out = impair_in = None
            if self.impair is not None:
                seed = self.impair.seed
                impairer = _impair_module().Impairer
                impair_out = impairer(self.impair, random.Random(seed))
                # The other direction draws from its own stream: same seed, same run;
                # seed-in gives it a seed of its own.
                seed_in = self.impair.seed_in
                if seed_in is None and seed is not None:
                    seed_in = ~seed
                impair_in = impairer(self.impair, random.Random(seed_in))
                self.impairers = (impair_out, impair_in)
            if self._pcap_path is not None:
                try:
                    self._pcap = PcapWriter(self._pcap_path)
                except OSError as exc:
                    raise StackEnvironmentError(
                        exc.errno or errno.EIO,
                        f"cannot write pcap file {self._pcap_path}: {exc.strerror}",
                    ) from exc
            self.loop = self._shared_loop if self._shared_loop is not None else Loop()
            self.loop.attach(
                self.host,
                self._link,
                impair_out=impair_out,
                impair_in=impair_in,
                pcap=self._pcap,
                faults=self.faults,
            )
            self.loop.add_hook(self._after_iteration)
            if isinstance(self._link, TunLink):
                self._link.on_tso_refused = self._tso_refused
        except BaseException:
            self._release()
            raise
        self.opened = True
        return self

    def __enter__(self) -> Stack:
        return self.open()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # On an exception the connections are reset at once rather than closed politely.
        self.close(linger=0 if exc_type is not None else None)

    def close(self, linger: float | None = None) -> None:
        """Close every socket, give FINs up to `linger` seconds (CLOSE_LINGER) to be
        acknowledged, reset what is still open, and remove the interface."""
        if self.closed:
            return
        self.closed = True
        if not self.opened:
            self._release()
            return
        try:
            now = self.loop.now()
            for sock in list(self._sockets.values()):
                if linger == 0 and isinstance(sock, Socket):
                    sock.abort()
                else:
                    sock.close()
            for listener in self.host.listeners():
                listener.close(now)
            host = self.host
            wait = CLOSE_LINGER if linger is None else linger
            if wait > 0:
                self.loop.run_until(
                    lambda: all(c.state in _CLOSE_DONE for c in host.connections()), wait
                )
            now = self.loop.now()
            for conn in host.connections():
                if conn.state not in _CLOSE_DONE:
                    conn.abort(now)
            self.loop.run_once(0)  # the RSTs leave before the interface goes
        finally:
            self.loop.remove_hook(self._after_iteration)
            self.loop.detach(self.host)
            if self._shared_loop is None:
                self.loop.close()
            self._release()

    @property
    def link(self) -> Link:
        """The link under the host: the TunLink opened on enter, or the link handed in."""
        if self._link is None:
            raise OSError(errno.EBADF, "stack is not open (use `with Stack() as stack:`)")
        return self._link

    @property
    def offloads(self) -> dict[str, list[str]]:
        """The offloads active on the link, by direction (TunLink.offloads): "rx" what
        the kernel may hand us (csum, tso4, tso6), "tx" what we hand it (csum, tso)."""
        offloads = getattr(self._link, "offloads", None)
        return dict(offloads) if offloads is not None else {"rx": [], "tx": []}

    def _release(self) -> None:
        if self._pcap is not None:
            self._pcap.close()
            self._pcap = None
        if self._link is not None and not self._given_link:
            self._link.close()

    def _tso_refused(self, why: str) -> None:
        """The TUN turned TSO off: no connection builds super-segments any more."""
        self.host.disable_tso()
        if self.on_link_note is not None:
            self.on_link_note(why)

    @property
    def tso_fallback(self) -> dict[str, Any]:
        """What the link counted of refused TSO writes (TunLink): `tso_refused` writes,
        the first one's `tso_refused_error` (None: never), and `gso_resegmented`
        super-packets cut into segments in Python instead."""
        link = self._link
        return {
            "tso_refused": int(getattr(link, "tso_refused", 0)),
            "tso_refused_error": getattr(link, "tso_refused_error", None),
            "gso_resegmented": int(getattr(link, "gso_resegmented", 0)),
        }

    def _check_open(self) -> None:
        if self.closed or not self.opened:
            raise OSError(errno.EBADF, "stack is not open (use `with Stack() as stack:`)")

    # -- sockets -------------------------------------------------------------------

    def connect(
        self,
        host: str,
        port: int,
        *,
        timeout: float | None = None,
        source_port: int | None = None,
        family: int | None = None,
    ) -> Socket:
        """Open a connection to `host`:`port` and wait for the handshake (at most
        `timeout` seconds; without one the SYN retries bound it, about 2 minutes).
        `host` is an IPv4 or IPv6 literal (brackets allowed) or a name; `family` 4 or 6
        limits what a name resolves to."""
        sock = self.start_connect(host, port, source_port=source_port, family=family)
        conn = sock.connection
        where = sock.remote

        def settled() -> bool:
            return conn.state != State.SYN_SENT or conn.error is not None or conn.is_closed

        if not self.loop.run_until(settled, timeout):
            sock.abort()
            raise TimeoutError(
                errno.ETIMEDOUT,
                f"connection to {where[0]}:{where[1]} timed out after {timeout:g} s",
            )
        self._raise_if_failed(sock)
        return sock

    def _raise_if_failed(self, sock: Socket) -> None:
        """The handshake of `sock` ended without a connection: forget it and raise why."""
        conn = sock.connection
        if conn.error is not None or conn.is_closed:
            how = sock.closed_elsewhere  # asked before the socket is marked closed
            self._forget(sock)
            sock.closed = True
            if conn.error is None and how is not None:
                raise ClosedElsewhere(how, sock.remote, established=False)
            raise _failure(conn.error or "reset", sock.remote)

    def start_connect(
        self,
        host: str,
        port: int,
        *,
        source_port: int | None = None,
        family: int | None = None,
    ) -> Socket:
        """Send the SYN to `host`:`port` and return the socket in SYN-SENT at once (the
        loop then runs the handshake); `connect` waits for it, `scan` runs many."""
        self._check_open()
        address = _resolve(host, family)
        kernel = self.peer_address if address.version == 4 else self.peer_address6
        if address.is_loopback:
            # The kernel drops packets from a TUN to 127/8 (or ::1) as martians: say so
            # now rather than time out after two minutes of SYN retries.
            raise OSError(
                errno.ENETUNREACH,
                f"{host} is a loopback address, which the stack cannot reach: "
                f"the kernel is at {kernel or self.peer_address}",
            )
        if address in (self.address, self.address6):
            # The kernel would route it straight back into the TUN as a martian; the
            # stack does not talk to itself either. Say so now rather than time out.
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"{host} is pytcp's own address; a peer is the kernel at {kernel} "
                "or beyond it",
            )
        if address.version == 6 and self.address6 is None:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"{host} is an IPv6 address and interface {self.tun_name or 'the link'} has "
                "no IPv6 address (add one, or give an IPv4 address)",
            )
        check = getattr(self._link, "forwarding_problem", None)  # a TUN's: the kernel routes
        problem = check(address) if check is not None else None
        if problem is not None:
            # The kernel would drop the SYN silently (no forwarding between interfaces):
            # say why now rather than time out after two minutes of SYN retries.
            raise OSError(errno.ENETUNREACH, problem)
        conn = self.host.connect(
            (address, port), self.loop.now(), local_port=source_port, config=self.config
        )
        return self._adopt(conn)

    def linger_in_background(self, seconds: float) -> int | None:
        """Hand the TIME-WAIT linger to a child process so the command can exit now.

        When every connection left is in TIME-WAIT (RFC 9293 §3.6.1: a retransmitted FIN
        must still be acknowledged), fork: the child keeps only the TUN device (stdio on
        /dev/null, every other descriptor closed, a session of its own, default signal
        actions) and runs the stack for up to `seconds`, until those connections are
        CLOSED, or until another pytcp asks for the interface (tun.claim_lingering:
        then it hands the device over to a pytcp of its own uid, which keeps the
        interface as it is when that is what it would create, and goes at once). The
        parent stops reading the device and returns the child's pid; None (nothing done)
        for a link that is not a plain TUN, with --pcap, or with nothing in TIME-WAIT."""
        link = self._link
        conns = list(self.host.connections())
        # A connection its application closed in TIME-WAIT may be a record already (the
        # host compacts it on its next output pass): it still re-ACKs a late FIN.
        records = self.host.time_waits()
        if (
            seconds <= 0
            or not isinstance(link, TunLink)
            or link.fileno() is None
            or self._pcap is not None
            or not (conns or records)
            or any(c.state != State.TIME_WAIT for c in conns)
        ):
            return None
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            listener.bind(linger_address(link.name))
            listener.listen(8)
        except OSError:
            return None  # another pytcp lingers on this name already (it cannot: busy)
        pid = os.fork()
        if pid:
            listener.close()
            self.loop.detach(self.host)  # the child answers what arrives now
            link.close()  # our copy only: the interface lives while the child holds it
            return pid
        try:  # the child: never returns
            self._linger_child(link, listener, seconds)
        finally:
            os._exit(0)

    def _linger_child(self, link: TunLink, listener: socket.socket, seconds: float) -> None:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        # A selector of its own first, while the inherited descriptors are valid: the
        # old epoll must be closed by its number before that number can be reused.
        self.loop.fork_reset()
        keep = {0, 1, 2, link.fileno(), listener.fileno(), self.loop.selector_fileno()}
        for entry in os.listdir("/proc/self/fd"):
            if int(entry) not in keep:
                with contextlib.suppress(OSError):
                    os.close(int(entry))
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        asked: list[socket.socket] = []

        def on_ask() -> None:
            with contextlib.suppress(OSError):
                asked.append(listener.accept()[0])

        listener.setblocking(False)
        self.loop.add_reader(listener.fileno(), on_ask)
        host = self.host
        self.loop.run_until(
            lambda: bool(asked)
            or (all(c.is_closed for c in host.connections()) and not host.time_waits()),
            seconds,
        )
        # Nothing reads the device from here on. It goes to the first asker if that is a
        # process of our uid or root (SCM_RIGHTS; tun.claim_lingering checks ours), then
        # our copy closes: the interface lives on with the asker's, or goes now. Then the
        # listener, last the askers' connections: their EOF says the device and the
        # linger name are let go.
        device = link.fileno()
        if asked and device is not None and _peer_uid(asked[0]) in (0, os.getuid()):
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", device))]
            with contextlib.suppress(OSError):
                asked[0].sendmsg([b"\0"], rights)
        link.close()
        listener.close()
        for conn in asked:
            conn.close()

    def scan(
        self,
        host: str,
        ports: list[int],
        *,
        timeout: float | None = None,
        family: int | None = None,
        window: int = SCAN_WINDOW,
        on_result: Callable[[int, BaseException | None], None] | None = None,
    ) -> dict[int, BaseException | None]:
        """Handshake with each of `ports` (a port scan, `connect -z`), up to `window` at
        once: port -> None (open: closed again with FIN at once) or the failure
        (ConnectionRefusedError for a closed port, TimeoutError after `timeout`...).
        `on_result(port, error)` is told as each one settles."""
        results: dict[int, BaseException | None] = {}
        waiting = list(dict.fromkeys(ports))[::-1]  # each port once, popped in order
        active: dict[Socket, int] = {}  # socket -> the loop time it gives up
        opened: list[Socket] = []

        def settle(port: int, error: BaseException | None) -> None:
            results[port] = error
            if on_result is not None:
                on_result(port, error)

        def any_settled() -> bool:
            now = self.loop.now()
            return any(
                s.connection.state != State.SYN_SENT
                or s.connection.error is not None
                or s.connection.is_closed
                or now >= deadline
                for s, deadline in active.items()
            )

        span = None if timeout is None else round(timeout * 1_000_000_000)
        while waiting or active:
            while waiting and len(active) < window:
                port = waiting.pop()
                try:
                    sock = self.start_connect(host, port, family=family)
                except OSError as e:
                    settle(port, e)
                    continue
                active[sock] = self.loop.now() + span if span is not None else 1 << 62
            if not active:
                break
            soonest = min(active.values())
            self.loop.run_until(any_settled, max(0.0, (soonest - self.loop.now()) / 1e9))
            now = self.loop.now()
            for sock, deadline in list(active.items()):
                conn = sock.connection
                port = sock.remote[1]
                if conn.state != State.SYN_SENT and conn.error is None and not conn.is_closed:
                    del active[sock]
                    sock.shutdown()  # -z: no data, FIN at once
                    opened.append(sock)
                    settle(port, None)
                elif conn.error is not None or conn.is_closed:
                    del active[sock]
                    try:
                        self._raise_if_failed(sock)
                    except OSError as e:
                        settle(port, e)
                elif now >= deadline:
                    del active[sock]
                    sock.abort()
                    settle(
                        port,
                        TimeoutError(errno.ETIMEDOUT, f"timed out after {timeout:g} s"),
                    )
        # Give the open ports' four-way closes a moment, as one -z does.
        self.loop.run_until(
            lambda: all(s.state in ("TIME-WAIT", "CLOSED") for s in opened), SCAN_CLOSE
        )
        for sock in opened:
            sock.close()
        return results

    def listen(
        self,
        port: int,
        address: str | None = None,
        backlog: int = 128,
        family: int | None = None,
        syn_cookies: str | None = None,
    ) -> ListeningSocket:
        """Listen on `port` (0: an ephemeral port) of this stack's address: both
        families' (a dual-stack socket, as ncat listens) unless `address` names one of
        them or `family` (4 or 6) picks one. `syn_cookies` "auto" (default), "always" or
        "never" (RFC 4987, as Linux tcp_syncookies)."""
        self._check_open()
        local = parse_address(address) if address is not None else None
        if address is not None and local is None:
            raise OSError(errno.EADDRNOTAVAIL, f"{address} is not an IP address")
        listener = self.host.listen(
            port,
            address=local,
            backlog=backlog,
            config=self.config,
            family=family,
            syn_cookies=syn_cookies,
        )
        sock = ListeningSocket(self, listener)
        self._sockets[sock.id] = sock
        self._listening[sock.id] = sock
        return sock

    def sockets(self) -> list[Socket | ListeningSocket]:
        """Sockets the application holds (not yet closed), oldest first."""
        return list(self._sockets.values())

    def socket(self, id: str) -> Socket | ListeningSocket | None:
        """The socket the application holds for connection `id` ("PID.N"), if any: one
        look-up (the control endpoint's send and close)."""
        return self._sockets.get(id)

    def run_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run the loop until `predicate()` (True) or `timeout` seconds pass (False)."""
        self._check_open()
        return self.loop.run_until(predicate, timeout)

    def run_once(self, timeout: float | None = None) -> None:
        self._check_open()
        self.loop.run_once(timeout)

    def _adopt(self, conn: Connection) -> Socket:
        sock = Socket(self, conn)
        self._sockets[sock.id] = sock
        self._by_conn[conn.id] = sock
        self._recheck[sock._order] = sock  # what its connection did before it was adopted
        return sock

    def _forget(self, sock: Socket | ListeningSocket) -> None:
        self._sockets.pop(sock.id, None)
        self._recheck.pop(sock._order, None)
        if isinstance(sock, ListeningSocket):
            self._listening.pop(sock.id, None)
        elif self._by_conn.get(sock._conn.id) is sock:
            del self._by_conn[sock._conn.id]

    def _due(self) -> list[Socket | ListeningSocket]:
        """The sockets to tell after this iteration, oldest first: those whose connection
        the host reports touched, every listener, and those marked for another look."""
        due: dict[int, Socket | ListeningSocket] = self._recheck
        self._recheck = {}
        by_conn = self._by_conn
        for conn in self.host.touched():
            sock = by_conn.get(conn.id)
            if sock is not None:
                due[sock._order] = sock
        for lsock in self._listening.values():
            due[lsock._order] = lsock
        return [due[k] for k in sorted(due)] if len(due) > 1 else list(due.values())

    def _after_iteration(self) -> None:
        # Only the sockets something happened to are told (the host says which
        # connections were touched): per-iteration work is independent of how many
        # sockets are open. A second pass tells those that earlier callbacks touched
        # in this iteration, as a scan of every socket in order would have (a socket
        # touched again after it was told is looked at next iteration, as before).
        told: set[int] = set()
        for _ in range(2):
            for sock in self._due():
                if sock._order in told:
                    if isinstance(sock, Socket):
                        self._recheck[sock._order] = sock
                    continue
                told.add(sock._order)
                sock._notify()
        for name in self.faults.names():  # `pytcp impair`'s faults end with their connection:
            if self.host.find(int(name)) is None:  # a later one on the same 4-tuple is clean
                self.faults.forget(name)

    def __repr__(self) -> str:
        six = f" {self.address6}" if self.address6 is not None else ""
        return f"<Stack {self.tun_name or 'link'} {self.address}{six} mtu {self.mtu}>"
