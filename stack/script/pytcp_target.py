"""The `pytcp` target: a script against pytcp's sans-IO Host on a virtual clock, with the
socket calls scripts make modelled over Host, Listener and Connection. Imports
stack.host, stack.tcp, stack.wire and stack.script; the caller hands in the randomness.

Time moves only when the runner asks: `wait_until` runs every timer due before then,
`next_outbound` runs timers until the stack sends something, so a 3 s RTO takes no
time at all and every run is the same.
"""

from __future__ import annotations

import errno as E
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, ClassVar

from stack.host import Host, Listener, RandomSource
from stack.script.calls import (
    SYMBOLS,
    CallOutcome,
    errno_name,
    fail,
    list_int,
    recvmsg_problems,
    recvmsg_spec,
    struct_field,
    symbol,
)
from stack.script.model import Expr, Syscall
from stack.script.parser import ScriptError
from stack.script.runner import Captured, Config
from stack.tcp.clock import SECOND, US
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.errors import InvalidStateError
from stack.tcp.state import State
from stack.wire.packet import Packet

LOCAL_V4 = IPv4Address("10.77.250.2")  # the stack under test
REMOTE_V4 = IPv4Address("10.77.250.1")  # the script's peer
LOCAL_V6 = IPv6Address("fd77:250::2")
REMOTE_V6 = IPv6Address("fd77:250::1")

FAILURE_ERRNO = {
    "refused": E.ECONNREFUSED,
    "reset": E.ECONNRESET,
    "timed out": E.ETIMEDOUT,
    "unreachable": E.EHOSTUNREACH,
}
POLL_MODELLED = (
    SYMBOLS["POLLIN"] | SYMBOLS["POLLRDNORM"] | SYMBOLS["POLLOUT"] | SYMBOLS["POLLWRNORM"]
    | SYMBOLS["POLLRDHUP"] | SYMBOLS["POLLERR"] | SYMBOLS["POLLHUP"] | SYMBOLS["POLLNVAL"]
)  # fmt: skip
LINGER2_MAX = 120  # seconds: Linux's TCP_FIN_TIMEOUT_MAX, where TCP_LINGER2 is capped
DEFAULT_MSS = 536  # what Linux's getsockopt(TCP_MAXSEG) says before a connection


@dataclass
class Sock:
    """One script socket: options set before it became a listener or a connection."""

    nonblock: bool = False
    port: int | None = None  # bound
    listener: Listener | None = None
    conn: Connection | None = None
    connecting: bool = False
    shut_rd: bool = False
    closed: bool = False
    error_reported: bool = False  # ECONNRESET given once; EPIPE after
    so_error: int = 0
    opts: dict[str, int] = field(default_factory=dict)
    linger: tuple[int, int] | None = None


class PytcpTarget:
    """A Host at LOCAL (v4 or v6), the script's peer at REMOTE, time from 0."""

    name = "pytcp"

    def __init__(self, config: Config, *, rng: RandomSource, isn_secret: bytes) -> None:
        self.cfg = config
        v6 = config.ip_version == "ipv6"
        self.local_ip: IPv4Address | IPv6Address = LOCAL_V6 if v6 else LOCAL_V4
        self.remote_ip: IPv4Address | IPv6Address = REMOTE_V6 if v6 else REMOTE_V4
        self.base = TcpConfig()  # pytcp's defaults, as every pytcp command runs
        self.host = Host(
            address=LOCAL_V4,
            address6=LOCAL_V6 if v6 else None,
            isn_secret=isn_secret,
            rng=rng,
            config=self.base,
            mtu=config.mtu,
        )
        self.ns = 0
        self.out: deque[Captured] = deque()
        self.socks: list[Sock] = []
        self.pending: list[tuple[Syscall, Callable[[], CallOutcome | None]]] = []
        self.done: list[tuple[Syscall, CallOutcome]] = []
        self.conn: Connection | None = None  # the connection under test (newest)
        self.wakeups: list[int] = []  # ns: poll() timeouts

    # -- time and packets -----------------------------------------------------------

    def start_clock(self) -> None:
        """The virtual clock starts at 0 with the Host."""

    def now(self) -> int:
        return self.ns // US

    def _emit(self, packet: bytes | Packet) -> None:
        """A packet the stack sent: kept for next_outbound (a TUN target sends it). A
        super-packet (offload) is the wire segments it stands for."""
        for part in packet.segments() if isinstance(packet, Packet) else (packet,):
            self.out.append(Captured(self.now(), part))

    def _flush(self) -> None:
        for pkt in self.host.packets_to_send(self.ns):
            self._emit(pkt)
        # The newest connection, a half-open record (SYN-RECEIVED) included; a record
        # promoted to a connection keeps its id and is followed to it.
        live: list[Any] = [*self.host.connections(), *self.host.half_opens()]
        if live:
            newest = max(live, key=lambda c: c.id)
            if self.conn is None or newest.id > self.conn.id or (
                newest.id == self.conn.id and newest is not self.conn
            ):
                self.conn = newest
        self._poll()

    def _poll(self) -> None:
        still = []
        for call, check in self.pending:
            outcome = check()
            if outcome is None:
                still.append((call, check))
            else:
                outcome.at = self.now()
                self.done.append((call, outcome))
        self.pending = still
        if self.done:
            # A call that returns may have let data or a FIN go.
            for pkt in self.host.packets_to_send(self.ns):
                self._emit(pkt)

    def _step(self, limit_ns: int) -> bool:
        """Run the next timer due at or before limit_ns; False when there is none."""
        deadline = self.host.next_deadline()
        wake = min(self.wakeups) if self.wakeups else None
        if wake is not None and (deadline is None or wake < deadline):
            if wake > limit_ns:
                return False
            self.wakeups.remove(wake)
            self.ns = max(self.ns, wake)
            self._flush()
            return True
        if deadline is None or deadline > limit_ns:
            return False
        self.ns = max(self.ns, deadline)
        self.host.handle_timers(self.ns)
        self._flush()
        return True

    def wait_until(self, t: int) -> None:
        limit = t * US
        while self._step(limit):
            pass
        self.ns = max(self.ns, limit)
        self._flush()

    def next_outbound(self, deadline: int) -> Captured | None:
        limit = deadline * US
        while not self.out:
            if not self._step(limit):
                self.ns = max(self.ns, limit)
                self._flush()
                break
        return self.out.popleft() if self.out else None

    def unread(self, cap: Captured) -> None:
        self.out.appendleft(cap)

    def inject(self, packet: bytes) -> list[str]:
        before = self._drops()
        self.host.receive_packet(packet, self.ns)
        self._flush()
        after = self._drops()
        return [k for k in after for _ in range(after[k] - before.get(k, 0))]

    def _drops(self) -> dict[str, int]:
        total = dict(self.host.counters["drops"])
        for c in self._all_conns():
            for k, v in c.counters.get("drops", {}).items():
                total[k] = total.get(k, 0) + v
        return total

    def _all_conns(self) -> list[Any]:
        seen: dict[int, Any] = {c.id: c for c in self.host.connections()}
        for record in self.host.half_opens():
            seen[record.id] = record
        for s in self.socks:
            if s.conn is not None:
                seen[s.conn.id] = s.conn
        if self.conn is not None:
            seen[self.conn.id] = self.conn
        return list(seen.values())

    def completed(self) -> list[tuple[Syscall, CallOutcome]]:
        done, self.done = self.done, []
        return done

    def tcb(self) -> dict[str, Any] | None:
        if self.conn is None:
            return None
        return flatten(self.conn.snapshot(self.ns))

    def close(self) -> None:
        """Nothing to release: the Host is garbage once the target is."""

    # -- calls ----------------------------------------------------------------------

    def call(self, call: Syscall, fds: dict[int, Any], blocking_ok: bool) -> CallOutcome | None:
        handler = getattr(self, "_call_" + call.name, None)
        if handler is None:
            raise ScriptError("", 0, f"{call.name}() is not modelled by the pytcp target")
        try:
            outcome: CallOutcome | None = handler(call, call.args, fds)
        except ScriptError:
            raise
        if outcome is None:
            if not blocking_ok:
                raise ScriptError(
                    "", 0, f"{call.name}() would block here; give it an end time (+0...T)"
                )
            return None
        outcome.at = self.now()
        self._flush()
        return outcome

    def _block(self, call: Syscall, check: Callable[[], CallOutcome | None]) -> CallOutcome | None:
        outcome = check()
        if outcome is None:
            self.pending.append((call, check))
        return outcome

    def _sock(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> Sock | CallOutcome:
        if not args:
            raise ScriptError("", 0, "missing fd argument")
        fd = symbol(args[0])
        s = fds.get(fd)
        if not isinstance(s, Sock) or s.closed:
            return fail(E.EBADF, self.now())
        return s

    def _config(self, s: Sock) -> TcpConfig:
        cfg = self.base
        o = s.opts
        if "TCP_NODELAY" in o:
            cfg = replace(cfg, nodelay=bool(o["TCP_NODELAY"]))
        if "TCP_MAXSEG" in o:
            cfg = replace(cfg, mss=o["TCP_MAXSEG"])
        if o.get("SO_KEEPALIVE"):
            cfg = replace(
                cfg,
                keepalive_idle=o.get("TCP_KEEPIDLE", 7200) * SECOND,
                keepalive_interval=o.get("TCP_KEEPINTVL", 75) * SECOND,
                keepalive_probes=o.get("TCP_KEEPCNT", 9),
            )
        if o.get("TCP_LINGER2", 0) > 0:  # 0: the default (tcp_fin_timeout, 60 s)
            cfg = replace(cfg, fin_wait_2_timeout=min(o["TCP_LINGER2"], LINGER2_MAX) * SECOND)
        if "SO_RCVBUF" in o:
            cfg = replace(cfg, rcv_buf=max(2 * o["SO_RCVBUF"], 2304))
        if "SO_SNDBUF" in o:
            cfg = replace(cfg, snd_buf=max(2 * o["SO_SNDBUF"], 4608))
        return cfg

    def _call_socket(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        if len(args) != 3:
            raise ScriptError("", 0, "socket() takes 3 arguments")
        if args[0].kind != "ellipsis":
            family = symbol(args[0])
            want = SYMBOLS["AF_INET6"] if self.cfg.ip_version == "ipv6" else SYMBOLS["AF_INET"]
            if family != want:
                raise ScriptError("", 0, "socket() family does not match --ip_version")
        kind = symbol(args[1])
        if kind & 0xF != SYMBOLS["SOCK_STREAM"]:
            raise ScriptError("", 0, "only SOCK_STREAM sockets are modelled")
        proto = symbol(args[2]) if args[2].kind != "ellipsis" else 6
        if proto not in (0, 6):
            raise ScriptError("", 0, "only IPPROTO_TCP is modelled")
        s = Sock(nonblock=bool(kind & SYMBOLS["SOCK_NONBLOCK"]))
        self.socks.append(s)
        return CallOutcome(0, handle=s)

    def _call_fcntl(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        cmd = symbol(args[1])
        if cmd == SYMBOLS["F_SETFL"]:
            s.nonblock = bool(symbol(args[2]) & SYMBOLS["O_NONBLOCK"])
            return CallOutcome(0)
        if cmd == SYMBOLS["F_GETFL"]:
            return CallOutcome(SYMBOLS["O_RDWR"] | (SYMBOLS["O_NONBLOCK"] if s.nonblock else 0))
        raise ScriptError("", 0, "fcntl() models F_GETFL and F_SETFL only")

    OPTS: ClassVar[dict[tuple[int, int], str]] = {
        (1, 2): "SO_REUSEADDR",
        (1, 15): "SO_REUSEPORT",
        (1, 9): "SO_KEEPALIVE",
        (1, 4): "SO_ERROR",
        (1, 13): "SO_LINGER",
        (1, 7): "SO_SNDBUF",
        (1, 8): "SO_RCVBUF",
        (6, 1): "TCP_NODELAY",
        (6, 2): "TCP_MAXSEG",
        (6, 4): "TCP_KEEPIDLE",
        (6, 5): "TCP_KEEPINTVL",
        (6, 6): "TCP_KEEPCNT",
        (6, 8): "TCP_LINGER2",
        (6, 36): "TCP_INQ",
    }

    def _opt(self, args: tuple[Expr, ...]) -> str:
        level, name = symbol(args[1]), symbol(args[2])
        opt = self.OPTS.get((level, name))
        if opt is None:
            raise ScriptError("", 0, f"socket option {args[1]}/{args[2]} is not modelled by pytcp")
        return opt

    def _call_setsockopt(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        opt = self._opt(args)
        if opt == "SO_LINGER":
            onoff = struct_field(args[3], "onoff")
            linger = struct_field(args[3], "linger")
            if onoff is None or linger is None:
                raise ScriptError("", 0, "SO_LINGER takes {onoff=N, linger=N}")
            s.linger = (symbol(onoff), symbol(linger))
            return CallOutcome(0)
        if opt == "SO_ERROR":
            return fail(E.ENOPROTOOPT, self.now())
        value = list_int(args[3])
        if value is None:
            raise ScriptError("", 0, "setsockopt() needs a value [N]")
        if opt == "TCP_MAXSEG" and not 88 <= value <= 32767:
            return fail(E.EINVAL, self.now())
        if opt == "TCP_LINGER2" and value < 0:
            raise ScriptError(
                "", 0, "TCP_LINGER2 below 0 (a RST instead of FIN-WAIT-2) is not modelled by pytcp"
            )
        if opt in ("SO_SNDBUF", "SO_RCVBUF") and s.conn is not None:
            raise ScriptError(
                "", 0, f"{opt} on a connection is not modelled by pytcp (set it before "
                "listen() or connect())"
            )
        s.opts[opt] = value
        if s.listener is not None:
            s.listener.config = self._config(s)  # children take the listener's options
        if s.conn is not None and opt in (
            "TCP_NODELAY",
            "SO_KEEPALIVE",
            "TCP_KEEPIDLE",
            "TCP_KEEPINTVL",
            "TCP_KEEPCNT",
            "TCP_LINGER2",
        ):
            s.conn.reconfigure(self._config(s), self.ns)
        return CallOutcome(0)

    def _call_getsockopt(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        opt = self._opt(args)
        if opt == "SO_LINGER":
            raise ScriptError("", 0, "getsockopt(SO_LINGER) is not modelled")
        if opt == "SO_ERROR":
            value = s.so_error
            if not value and s.conn is not None and s.conn.error and not s.error_reported:
                value = FAILURE_ERRNO.get(s.conn.error, E.EIO)
                s.error_reported = True
            s.so_error = 0
        elif opt == "TCP_MAXSEG":
            if s.conn is not None and s.conn.state not in (
                State.CLOSED,
                State.LISTEN,
                State.SYN_SENT,
            ):
                value = s.conn.tcb.snd_mss
            else:
                value = s.opts.get("TCP_MAXSEG", DEFAULT_MSS)
        elif opt == "TCP_LINGER2":  # Linux answers the sysctl's 60 s for "the default"
            value = self._config(s).fin_wait_2_timeout // SECOND
        elif opt in ("SO_SNDBUF", "SO_RCVBUF"):
            cfg = self._config(s)
            value = cfg.snd_buf if opt == "SO_SNDBUF" else cfg.rcv_buf
        else:
            value = s.opts.get(opt, 0)
            if opt in ("SO_REUSEADDR", "SO_KEEPALIVE", "TCP_NODELAY", "SO_REUSEPORT", "TCP_INQ"):
                value = 1 if value else 0
        problems = []
        want = list_int(args[3])
        if want is not None and want != value:
            problems.append(f"{opt} is {value}, expected {want}")
        out = CallOutcome(0, problems=problems, detail=f"{opt}={value}")
        if problems:
            out.detail = f"[{value}]"
        return out

    def _port_from(self, e: Expr) -> int | None:
        port = struct_field(e, "sin_port") or struct_field(e, "sin6_port")
        if port is None:
            return None
        if port.kind == "call" and port.name == "htons" and port.items:
            return symbol(port.items[0])
        return symbol(port)

    def _address_from(self, e: Expr) -> IPv4Address | IPv6Address | str | None:
        """sin_addr/sin6_addr of a sockaddr: the address, "any" for INADDR_ANY or
        in6addr_any, None when the struct names none."""
        a = struct_field(e, "sin_addr") or struct_field(e, "sin6_addr")
        if a is None:
            return None
        if a.kind == "call" and a.items and a.items[0].kind == "string":
            try:
                ip = ip_address(a.items[0].name)
            except ValueError:
                raise ScriptError("", 0, f"bad address {a.items[0].name!r}") from None
            return "any" if ip.is_unspecified else ip
        if a.kind == "word" and a.name in ("INADDR_ANY", "in6addr_any"):
            return "any"
        raise ScriptError("", 0, f"address {a} is not modelled by pytcp")

    def _call_bind(self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        # As Linux's inet_bind: the address is checked first, then whether the socket
        # is bound already (an accepted one is).
        address = self._address_from(args[1]) if len(args) > 1 else None
        if address is not None and address not in (self.local_ip, "any"):
            return fail(E.EADDRNOTAVAIL, self.now())  # not the stack's address
        if s.port is not None or s.conn is not None or s.listener is not None:
            return fail(E.EINVAL, self.now())
        port = self._port_from(args[1]) if len(args) > 1 else None
        s.port = self.cfg.bind_port if port is None else port
        return CallOutcome(0)

    def _call_listen(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        if s.conn is not None:
            return fail(E.EINVAL, self.now())
        if s.listener is not None:
            return CallOutcome(0)
        backlog = symbol(args[1]) if len(args) > 1 else 128
        try:
            s.listener = self.host.listen(
                s.port if s.port is not None else self.cfg.bind_port,
                backlog=backlog,
                config=self._config(s),
            )
        except OSError as exc:
            return fail(exc.errno or E.EINVAL, self.now())
        return CallOutcome(0)

    def _call_accept(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        listener = s.listener
        if listener is None:
            return fail(E.EINVAL, self.now())

        nonblock_child = False
        if call.name == "accept4" and len(args) > 3 and args[3].kind != "ellipsis":
            flags = symbol(args[3])
            if flags & ~(SYMBOLS["SOCK_NONBLOCK"] | SYMBOLS["SOCK_CLOEXEC"]):
                raise ScriptError("", 0, f"accept4() flags {args[3]} are not modelled by pytcp")
            nonblock_child = bool(flags & SYMBOLS["SOCK_NONBLOCK"])

        def check() -> CallOutcome | None:
            conn = listener.accept()
            if conn is None:
                return None
            child = Sock(conn=conn, opts=dict(s.opts), linger=s.linger, nonblock=nonblock_child)
            self.socks.append(child)
            self.conn = conn
            return CallOutcome(0, handle=child)

        out = check()
        if out is None and s.nonblock:
            return fail(E.EAGAIN, self.now())
        return out if out is not None else self._block(call, check)

    _call_accept4 = _call_accept

    def _established(self, s: Sock) -> CallOutcome | None:
        conn = s.conn
        assert conn is not None
        if conn.error:
            s.connecting = False
            s.error_reported = True
            return fail(FAILURE_ERRNO.get(conn.error, E.EIO), self.now())
        if conn.state is State.SYN_SENT or conn.state is State.SYN_RECEIVED:
            return None
        s.connecting = False
        return CallOutcome(0)

    def _call_connect(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        if s.listener is not None:
            return fail(E.EINVAL, self.now())
        if s.conn is not None:
            if s.connecting:
                out = self._established(s)
                if out is None:
                    return fail(E.EALREADY, self.now())
                return out
            if s.conn.error:
                s.error_reported = True
                return fail(FAILURE_ERRNO.get(s.conn.error, E.EIO), self.now())
            return fail(E.EISCONN, self.now())
        address = self._address_from(args[1]) if len(args) > 1 else None
        if address is not None and address != self.remote_ip:
            raise ScriptError(
                "", 0, f"connect() to {address}: the pytcp target's only peer is {self.remote_ip}"
            )
        port = self._port_from(args[1]) if len(args) > 1 else None
        remote = (self.remote_ip, self.cfg.connect_port if port is None else port)
        try:
            s.conn = self.host.connect(
                remote,
                self.ns,
                local_port=s.port,
                config=self._config(s),
            )
        except OSError as exc:
            return fail(exc.errno or E.EINVAL, self.now())
        self.conn = s.conn
        s.connecting = True
        self._flush()
        if s.nonblock:
            return fail(E.EINPROGRESS, self.now())
        return self._block(call, lambda: self._established(s))

    def _conn_error(self, s: Sock, *, writing: bool) -> CallOutcome | None:
        conn = s.conn
        if conn is None:
            return fail(E.EPIPE if writing else E.ENOTCONN, self.now())
        if conn.error:
            if not s.error_reported and conn.error != "refused":
                s.error_reported = True
                return fail(FAILURE_ERRNO.get(conn.error, E.EIO), self.now())
            return fail(E.EPIPE, self.now()) if writing else CallOutcome(0)
        return None

    def _length(self, args: tuple[Expr, ...], index: int) -> int:
        if len(args) <= index:
            raise ScriptError("", 0, "missing length argument")
        return symbol(args[index])

    def _flags(self, args: tuple[Expr, ...], index: int, allowed: int) -> int:
        if len(args) <= index or args[index].kind == "ellipsis":
            return 0
        flags = symbol(args[index])
        if flags & ~allowed:
            raise ScriptError("", 0, f"flags {args[index]} are not modelled by pytcp")
        return flags

    def _write(self, call: Syscall, s: Sock, n: int, nonblock: bool) -> CallOutcome | None:
        err = self._conn_error(s, writing=True)
        if err is not None:
            return err
        conn = s.conn
        assert conn is not None
        if conn.state in (State.SYN_SENT, State.SYN_RECEIVED) and not s.connecting:
            return fail(E.ENOTCONN, self.now())
        if conn.tcb.fin_queued or conn.state not in (
            State.ESTABLISHED,
            State.CLOSE_WAIT,
            State.SYN_SENT,
            State.SYN_RECEIVED,
        ):
            return fail(E.EPIPE, self.now())
        if conn.state in (State.SYN_SENT, State.SYN_RECEIVED) and nonblock:
            return fail(E.EAGAIN, self.now())
        remaining = [n]

        def push() -> CallOutcome | None:
            err = self._conn_error(s, writing=True)
            if err is not None:
                return err
            if conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
                return None
            try:
                took = conn.send(bytes(remaining[0]), self.ns)
            except InvalidStateError:
                return fail(E.EPIPE, self.now())
            remaining[0] -= took
            if remaining[0] == 0:
                return CallOutcome(n)
            if nonblock:
                sent = n - remaining[0]
                return CallOutcome(sent) if sent else fail(E.EAGAIN, self.now())
            return None

        out = push()
        return out if out is not None else self._block(call, push)

    def _call_write(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        return self._write(call, s, self._length(args, 2), s.nonblock)

    def _call_send(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        flags = self._flags(args, 3, SYMBOLS["MSG_NOSIGNAL"] | SYMBOLS["MSG_DONTWAIT"])
        return self._write(call, s, self._length(args, 2), s.nonblock or bool(flags & 0x40))

    def _call_writev(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        total = 0
        for iov in args[1].items if len(args) > 1 else ():
            if iov.kind != "struct" or len(iov.items) != 2:
                raise ScriptError("", 0, "writev() takes [{..., N}, ...]")
            total += symbol(iov.items[1])
        return self._write(call, s, total, s.nonblock)

    def _read(
        self,
        call: Syscall,
        s: Sock,
        n: int,
        peek: bool,
        nonblock: bool,
        then: Callable[[CallOutcome], CallOutcome] | None = None,
    ) -> CallOutcome | None:
        """read/recv/recvmsg: `then` completes the outcome when the call returns (for
        recvmsg, its control messages)."""

        def pull() -> CallOutcome | None:
            out = take()
            return out if out is None or then is None else then(out)

        def take() -> CallOutcome | None:
            conn = s.conn
            if conn is None or s.listener is not None:
                return fail(E.ENOTCONN, self.now())
            if s.shut_rd and not conn.readable:
                return CallOutcome(0)
            if conn.readable:
                if peek:
                    return CallOutcome(min(n, conn.readable))
                try:
                    data = conn.receive(n, self.ns)
                except InvalidStateError:
                    data = b""
                return CallOutcome(len(data))
            err = self._conn_error(s, writing=False)
            if err is not None:
                return err
            if conn.at_eof or conn.state in (
                State.CLOSED,
                State.TIME_WAIT,
                State.CLOSE_WAIT,
                State.LAST_ACK,
                State.CLOSING,
            ):
                return CallOutcome(0)
            if nonblock:
                return fail(E.EAGAIN, self.now())
            return None

        out = pull()
        return out if out is not None else self._block(call, pull)

    def _call_read(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        return self._read(call, s, self._length(args, 2), False, s.nonblock)

    def _call_recv(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        flags = self._flags(args, 3, SYMBOLS["MSG_PEEK"] | SYMBOLS["MSG_DONTWAIT"])
        return self._read(
            call, s, self._length(args, 2), bool(flags & 2), s.nonblock or bool(flags & 0x40)
        )

    def _call_recvmsg(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        spec = recvmsg_spec(args)
        allowed = SYMBOLS["MSG_PEEK"] | SYMBOLS["MSG_DONTWAIT"]
        if spec.flags & ~allowed:
            raise ScriptError("", 0, f"recvmsg() flags {spec.flags:#x} are not modelled by pytcp")

        def control(out: CallOutcome) -> CallOutcome:
            # TCP_INQ (Linux tcp_inq_hint): the bytes still to read after this call,
            # the FIN counting as one, so a reader knows to come back for the EOF.
            cmsgs = []
            conn = s.conn
            if s.opts.get("TCP_INQ") and out.errno is None and conn is not None:
                inq = conn.readable + (1 if conn.tcb.fin_received else 0)
                cmsgs.append((SYMBOLS["SOL_TCP"], SYMBOLS["TCP_CM_INQ"], inq))
            out.problems += recvmsg_problems(spec, 0, cmsgs)
            return out

        return self._read(
            call,
            s,
            spec.length,
            bool(spec.flags & SYMBOLS["MSG_PEEK"]),
            s.nonblock or bool(spec.flags & SYMBOLS["MSG_DONTWAIT"]),
            control,
        )

    def _call_shutdown(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        how = symbol(args[1])
        if s.conn is None or s.conn.state in (State.CLOSED, State.SYN_SENT):
            return fail(E.ENOTCONN, self.now())
        if how in (0, 2):
            s.shut_rd = True
        if how in (1, 2) and not s.conn.tcb.fin_queued:
            try:
                s.conn.shutdown(self.ns)
            except InvalidStateError:
                pass
        return CallOutcome(0)

    def _call_close(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        s.closed = True
        if s.listener is not None:
            s.listener.close(self.ns)
        if s.conn is not None:
            if s.linger is not None and s.linger[0] and s.linger[1] == 0:
                s.conn.abort(self.ns)  # SO_LINGER 0: RST (RFC 9293 §3.10.5 ABORT)
            else:
                s.conn.close(self.ns)
        for fd, v in list(fds.items()):
            if v is s:
                del fds[fd]
        return CallOutcome(0)

    def _call_ioctl(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome:
        s = self._sock(args, fds)
        if isinstance(s, CallOutcome):
            return s
        req = symbol(args[1])
        conn = s.conn
        if req == SYMBOLS["SIOCINQ"]:
            value = conn.readable if conn is not None else 0
        elif req == SYMBOLS["SIOCOUTQ"]:
            value = len(conn.sendbuf) if conn is not None else 0
        else:
            raise ScriptError("", 0, f"ioctl {args[1]} is not modelled")
        want = list_int(args[2])
        problems = [] if want is None or want == value else [f"value is {value}, expected {want}"]
        return CallOutcome(0, problems=problems, detail=f"[{value}]")

    def _revents(self, s: Sock, events: int) -> int:
        r = 0
        if s.listener is not None:
            return SYMBOLS["POLLIN"] & events if s.listener.pending else 0
        conn = s.conn
        if conn is None:
            return SYMBOLS["POLLOUT"] | SYMBOLS["POLLHUP"]
        if conn.readable or conn.at_eof:
            r |= SYMBOLS["POLLIN"] | SYMBOLS["POLLRDNORM"]
        if conn.at_eof:
            r |= SYMBOLS["POLLRDHUP"]
        if conn.error:
            r |= SYMBOLS["POLLERR"] | SYMBOLS["POLLHUP"] | SYMBOLS["POLLIN"]
        if (
            conn.state in (State.ESTABLISHED, State.CLOSE_WAIT)
            and conn.send_space > 0
            and not conn.tcb.fin_queued
        ):
            r |= SYMBOLS["POLLOUT"] | SYMBOLS["POLLWRNORM"]
        always = SYMBOLS["POLLERR"] | SYMBOLS["POLLHUP"]
        return r & (events | always)

    def _call_poll(
        self, call: Syscall, args: tuple[Expr, ...], fds: dict[int, Any]
    ) -> CallOutcome | None:
        if len(args) != 3 or args[0].kind != "list":
            raise ScriptError("", 0, "poll() takes [{fd=N, events=..., revents=...}], n, timeout")
        items = []
        for pfd in args[0].items:
            fd_e = struct_field(pfd, "fd")
            ev_e = struct_field(pfd, "events")
            if fd_e is None or ev_e is None:
                raise ScriptError("", 0, "poll() entries are {fd=N, events=...}")
            rev_e = struct_field(pfd, "revents")
            if symbol(ev_e) & ~POLL_MODELLED:
                raise ScriptError(
                    "", 0, f"poll() events {symbol(ev_e) & ~POLL_MODELLED:#x} are not modelled"
                )
            items.append(
                (fds.get(symbol(fd_e)), symbol(ev_e), None if rev_e is None else symbol(rev_e))
            )
        timeout_ms = symbol(args[2])
        deadline = self.ns + timeout_ms * 1_000_000 if timeout_ms >= 0 else None

        def check() -> CallOutcome | None:
            got = []
            for s, events, _ in items:
                got.append(
                    SYMBOLS["POLLNVAL"] if not isinstance(s, Sock) else self._revents(s, events)
                )
            ready = sum(1 for r in got if r)
            if not ready and (deadline is None or self.ns < deadline):
                return None
            problems = [
                f"revents of fd {i} is {r:#x}, expected {want:#x}"
                for i, ((_, _, want), r) in enumerate(zip(items, got, strict=True))
                if want is not None and want != r
            ]
            return CallOutcome(ready, problems=problems, detail=" ".join(f"{r:#x}" for r in got))

        out = check()
        if out is None and deadline is not None:
            self.wakeups.append(deadline)  # poll's timeout is a wake-up of its own
        return out if out is not None else self._block(call, check)


def flatten(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The TCB fields worth watching line by line, sequence numbers relative to the ISNs."""
    out: dict[str, Any] = {"state": snapshot["state"]}
    send = snapshot.get("send", {})
    recv = snapshot.get("receive", {})
    iss = send.get("iss", 0)
    irs = recv.get("irs", 0)
    for k, v in send.items():
        if k in ("snd_una", "snd_nxt", "snd_max", "snd_wl2", "snd_up") and isinstance(v, int):
            out[k] = (v - iss) & 0xFFFFFFFF
        elif k != "iss":
            out[k] = v
    for k, v in recv.items():
        if k in ("rcv_nxt", "rcv_up") and isinstance(v, int):
            out[k] = (v - irs) & 0xFFFFFFFF
        elif k != "irs":
            out[k] = v
    if "snd_wl1" in out and isinstance(out["snd_wl1"], int):
        out["snd_wl1"] = (out["snd_wl1"] - irs) & 0xFFFFFFFF
    for section in ("options", "congestion", "rtt", "close"):
        for k, v in snapshot.get(section, {}).items():
            if isinstance(v, (dict, list)):
                continue  # nested detail (a controller's own state): not a TCB field
            if k in out:
                k = f"{section}.{k}"  # never hide a field of the same name
            if k == "recover" and isinstance(v, int):
                v = (v - iss) & 0xFFFFFFFF
            elif section == "rtt" and k in ("srtt", "rttvar", "rto", "min_rtt") and v is not None:
                v = f"{v / SECOND:.6f}s"
            out[k] = v
    counters = snapshot.get("counters", {})
    for k in (
        "retransmissions",
        "dup_acks",
        "challenge_acks",
        "zero_window_probes",
        "keepalive_probes",
    ):
        if k in counters:
            out[k] = counters[k]
    for t in snapshot.get("timers", []):
        if t.get("armed"):
            out[f"timer.{t['name']}"] = f"{t['deadline'] / SECOND:.6f}s"
    return out


def errno_of(name: str) -> str:
    return errno_name(FAILURE_ERRNO.get(name, E.EIO))
