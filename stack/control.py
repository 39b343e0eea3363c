"""The per-process control endpoint: list, inspect, send on and close live connections.

Three parts: a pure JSON-lines codec (`Request`, `Response`, `encode_*`/`decode_*`), the
server (`ControlServer(stack).start()`: a Unix socket served from the stack's own `Loop`,
non-blocking), and the client other `pytcp` processes use (`ControlClient`). Imports the
standard library, and `stack.api` (for InvalidStateError) only when serving a request; it
acts on the `Stack` it is handed: its loop, host and sockets.

Protocol: one JSON object per line each way, UTF-8, at most `MAX_REQUEST` bytes and
`MAX_DEPTH` levels of nesting per request (checked before the line is parsed). Every
message carries `"v": PROTOCOL_VERSION`. Requests are
`{"v": 1, "op": "list"}` (optionally `"view": "rows"`, only what a list row shows, and
the filters `"states": ["ESTABLISHED", ...]` and `"port": N`, applied before any
connection is described: the work is proportional to what is shown),
`{"v": 1, "op": "get", "conn": "PID.N"}`,
`{"v": 1, "op": "send", "conn": "PID.N", "data": "<base64>"}` and
`{"v": 1, "op": "close", "conn": "PID.N", "how": "half" | "full" | "reset"}`; the steering
ops of issue 12 are `{"v": 1, "op": "impair", "conn": "PID.N", "spec": "drop-next 3"}` and
`{"v": 1, "op": "timer", "conn": "PID.N", "action": "fire" | "set", "name": "time-wait",
"delay": NS}` (delay for set only) and `{"v": 1, "op": "journal", "conn": "PID.N", "limit": N}`
(limit optional). Replies are
`{"v": 1, "ok": true, "result": {...}}` or
`{"v": 1, "ok": false, "error": {"code": "<slug>", "message": "<one line>"}}`.
A bad request gets an error reply; it never reaches a connection.

No client can crash or starve the server (issue 14): every request is answered in order,
one at a time per client (the next is read only once the reply has left, so a client
holds at most one request and one reply in memory); a client whose reply makes no
progress for `STALL_TIMEOUT` seconds is hung up on; one that sits idle (or halfway through
a request line) for `IDLE_TIMEOUT` gets a "client-timeout" error line, then is hung up
on; at `MAX_CLIENTS` the client idle longest makes room for a new one (a
"client-evicted" error line first); at most `BATCH`
requests of one client are served per wake-up; all replies waiting together stay under
`MAX_BUFFERED` bytes (a request beyond that is answered "busy"). Each such event is
counted in `ControlServer.counters` by name.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import socket
import stat
import struct
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

PROTOCOL_VERSION = 1
MAX_REQUEST = 256 * 1024  # bytes per request line; a send request carries base64 data
MAX_RESPONSE = 64 * 1024 * 1024  # a list of many connections stays well below this
RESPONSE_DEPTH = 64  # a snapshot nests a few levels; a reply deeper than this is refused
MAX_SEND_CHUNK = 96 * 1024  # raw bytes per send request: base64 of it fits MAX_REQUEST
MAX_DEPTH = 8  # nesting levels of a request: ours have 1; deeper is refused unparsed
MAX_CLIENTS = 64  # control clients held at once; the longest idle makes room for a new one
IDLE_TIMEOUT = 5.0  # seconds a client may stay connected without a request under way
STALL_TIMEOUT = 5.0  # seconds a pending reply may go without any byte read by its client
MAX_BUFFERED = 64 * 1024 * 1024  # reply bytes waiting to be read, all clients together
BATCH = 16  # requests of one client answered per wake-up: the others get their turn

OPS = ("list", "get", "send", "close", "impair", "timer", "journal")
LIST_VIEWS = ("full", "rows")  # list: whole snapshots, or the fields of a list row
MAX_STATES = 16  # states one list request may filter on
CLOSE_HOW = ("half", "full", "reset")
TIMER_ACTIONS = ("fire", "set")
SOCKET_NAME = re.compile(r"^([0-9]+)\.sock$")
FULL_ID = re.compile(r"^[0-9]+\.[0-9]+$")
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# Error codes (stable slugs, shown by --json and tested).
BAD_JSON = "bad-json"
BAD_REQUEST = "bad-request"
BAD_VERSION = "bad-version"
TOO_LARGE = "too-large"
TOO_DEEP = "too-deep"
UNKNOWN_OP = "unknown-op"
NO_SUCH_CONNECTION = "no-such-connection"
NOT_A_CONNECTION = "not-a-connection"
WRITE_CLOSED = "write-closed"
NOT_ARMED = "not-armed"  # pytcp timer: that timer is not armed
FORBIDDEN = "forbidden"
BUSY = "busy"
EVICTED = "client-evicted"  # at MAX_CLIENTS: the client idle longest is hung up
TIMED_OUT = "client-timeout"  # idle, or half a request, for IDLE_TIMEOUT
INTERNAL = "internal"
# Client side only: the process is gone (its socket vanished or refuses), or it closed the
# control socket without answering (it was exiting): ask again to learn which.
GONE = "gone"
HUNG_UP = "hung-up"
PERMISSION_DENIED = "permission-denied"  # client side: the socket is another user's


class ServedStack(Protocol):
    """What the server needs of `stack.api.Stack`: its loop (readers, writers, `now()`) and
    its host (`connections()`, `listeners()`), as docs/internals.md describes them."""

    loop: Any
    host: Any


class ProtocolError(Exception):
    """A message that breaks the protocol; `code` is one of the slugs above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ControlError(Exception):
    """A control request that could not be carried out (client side), one line."""

    def __init__(self, message: str, code: str = INTERNAL) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- codec


@dataclass(frozen=True)
class Request:
    op: str
    conn: str | None = None
    data: bytes = b""
    how: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # impair, timer, journal


@dataclass(frozen=True)
class Response:
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    code: str | None = None
    message: str | None = None

    @classmethod
    def error(cls, code: str, message: str) -> Response:
        return cls(ok=False, code=code, message=message)


def _line(obj: dict[str, Any]) -> bytes:
    import json  # here, not at the top: a run no control client talks to never needs it

    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def encode_request(req: Request) -> bytes:
    """One request as a JSON line (newline included)."""
    obj: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": req.op}
    if req.conn is not None:
        obj["conn"] = req.conn
    if req.op == "send":
        import base64

        obj["data"] = base64.b64encode(req.data).decode("ascii")
    if req.how is not None:
        obj["how"] = req.how
    obj.update(req.params)
    return _line(obj)


# A JSON string (removed whole: brackets inside it do not nest). An unterminated string
# runs to the end, so each byte is scanned once (linear time).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
# What is left of a line without its strings, as one signed byte per bracket: +1 opens,
# -1 closes, every other byte deleted.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[{]}")


def check_depth(line: bytes, limit: int) -> None:
    """Refuse a message nested deeper than `limit` without parsing it: json.loads recurses
    once per level and a few KiB of `[` would exhaust the interpreter's stack. Linear
    and at C speed (a reply listing 10 000 connections is megabytes): strings are cut
    out (by one regex substitution, or without any escape in the line by a split at its
    quotes), the brackets left become +1/-1 and their running sum is the depth. An
    unbalanced line passes here and json.loads refuses it."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return  # the common case: too few brackets to nest that deep
    if b'"' in line:
        if b"\\" in line:
            line = _STRING.sub(b"", line)
        else:  # no escapes: the pieces between quotes are the strings (twice as fast)
            line = b"".join(line.split(b'"')[0::2])
    steps = array("b", line.translate(_BRACKETS, _NOT_BRACKETS))
    if steps and max(itertools.accumulate(steps)) > limit:
        raise ProtocolError(TOO_DEEP, f"message nested deeper than {limit} levels")


def _load(line: bytes, limit: int, depth: int) -> dict[str, Any]:
    if len(line) > limit:
        raise ProtocolError(TOO_LARGE, f"message of {len(line)} bytes exceeds {limit}")
    check_depth(line, depth)
    import json

    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(BAD_JSON, f"not a JSON line: {exc}") from None
    except RecursionError:  # only if the interpreter's stack is smaller than MAX_DEPTH
        raise ProtocolError(TOO_DEEP, "message nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "a message must be a JSON object")
    version = obj.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # not true, not 1.0
        raise ProtocolError(
            BAD_VERSION, f"protocol version {_clip(version)} unsupported, expected 1"
        )
    return obj


def _cut(text: str, limit: int = 64) -> str:
    """`text` as an error message quotes it, cut to `limit` characters: a request may be
    256 KiB, the reply to it stays one short line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(value: Any) -> str:
    return _cut(repr(value))


def decode_request(line: bytes) -> Request:
    """Parse one request line; raises ProtocolError with the reason."""
    obj = _load(line, MAX_REQUEST, MAX_DEPTH)
    op = obj.get("op")
    if op not in OPS:
        raise ProtocolError(
            UNKNOWN_OP, f"unknown op {_clip(op)}; expected one of {', '.join(OPS)}"
        )
    conn = obj.get("conn")
    if op == "list":
        return Request(op="list", params=_list_params(obj))
    if not isinstance(conn, str) or not conn:
        raise ProtocolError(BAD_REQUEST, f"op {op!r} needs a connection id in 'conn'")
    if op == "send":
        raw = obj.get("data")
        if not isinstance(raw, str):
            raise ProtocolError(BAD_REQUEST, "op 'send' needs base64 'data'")
        import base64
        import binascii

        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(BAD_REQUEST, "'data' is not valid base64") from None
        return Request(op="send", conn=conn, data=data)
    if op == "close":
        how = obj.get("how")
        if how not in CLOSE_HOW:
            raise ProtocolError(BAD_REQUEST, f"'how' must be one of {', '.join(CLOSE_HOW)}")
        return Request(op="close", conn=conn, how=how)
    if op in ("impair", "timer", "journal"):
        return Request(op=op, conn=conn, params=_steer_params(op, obj))
    return Request(op=op, conn=conn)


def _list_params(obj: dict[str, Any]) -> dict[str, Any]:
    """The optional arguments of list: "view" (LIST_VIEWS), "states" (state names, as
    `inspect -s` takes them) and "port" (a local or remote port)."""
    params: dict[str, Any] = {}
    view = obj.get("view", "full")
    if view not in LIST_VIEWS:
        raise ProtocolError(BAD_REQUEST, f"'view' must be one of {', '.join(LIST_VIEWS)}")
    if view != "full":
        params["view"] = view
    states = obj.get("states")
    if states is not None:
        if (
            not isinstance(states, list)
            or len(states) > MAX_STATES
            or not all(isinstance(x, str) and 0 < len(x) <= 32 for x in states)
        ):
            raise ProtocolError(BAD_REQUEST, "'states' must be a short list of state names")
        if states:
            params["states"] = states
    port = obj.get("port")
    if port is not None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
            raise ProtocolError(BAD_REQUEST, "'port' must be a port number")
        params["port"] = port
    return params


def _steer_params(op: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The arguments of the steering ops: impair {"spec"}, timer {"action", "name",
    "delay" (ns, for set)}, journal {"limit" (optional)}."""
    if op == "impair":
        spec = obj.get("spec")
        if not isinstance(spec, str) or not spec or len(spec) > 200:
            raise ProtocolError(BAD_REQUEST, "op 'impair' needs a 'spec' string")
        return {"spec": spec}
    if op == "timer":
        action, name = obj.get("action"), obj.get("name")
        if action not in TIMER_ACTIONS:
            raise ProtocolError(BAD_REQUEST, "'action' must be fire or set")
        if not isinstance(name, str) or not name:
            raise ProtocolError(BAD_REQUEST, "op 'timer' needs a timer 'name'")
        params: dict[str, Any] = {"action": action, "name": name}
        if action == "set":
            delay = obj.get("delay")
            if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay < 2**62:
                raise ProtocolError(BAD_REQUEST, "timer set needs 'delay', ns >= 0")
            params["delay"] = delay
        return params
    limit = obj.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ProtocolError(BAD_REQUEST, "'limit' must be a non-negative integer")
    return {} if limit is None else {"limit": limit}


def encode_response(resp: Response) -> bytes:
    """One response as a JSON line (newline included)."""
    if resp.ok:
        return _line({"v": PROTOCOL_VERSION, "ok": True, "result": resp.result})
    error = {"code": resp.code, "message": resp.message}
    return _line({"v": PROTOCOL_VERSION, "ok": False, "error": error})


def decode_response(line: bytes) -> Response:
    """Parse one response line; raises ProtocolError when it is not one."""
    obj = _load(line, MAX_RESPONSE, RESPONSE_DEPTH)
    if obj.get("ok") is True and isinstance(obj.get("result"), dict):
        return Response(ok=True, result=obj["result"])
    err = obj.get("error")
    if obj.get("ok") is False and isinstance(err, dict):
        return Response.error(str(err.get("code")), str(err.get("message")))
    raise ProtocolError(BAD_REQUEST, "a response needs ok/result or ok/error")


# --------------------------------------------------------------------------- runtime dir


def runtime_dir(env: dict[str, str] | None = None, euid: int | None = None) -> str:
    """Where control sockets live: PYTCP_RUNTIME_DIR, /run/pytcp (root), or the user's."""
    env = dict(os.environ) if env is None else env
    euid = os.geteuid() if euid is None else euid
    if env.get("PYTCP_RUNTIME_DIR"):
        return env["PYTCP_RUNTIME_DIR"]
    if euid == 0:
        return "/run/pytcp"
    if env.get("XDG_RUNTIME_DIR"):
        return os.path.join(env["XDG_RUNTIME_DIR"], "pytcp")
    return f"/tmp/pytcp-{euid}"


def ensure_runtime_dir(path: str) -> None:
    """Create the directory 0700, or check that an existing one is ours and private."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ControlError(f"cannot create control directory {path}: {exc.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"control directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise ControlError(f"control directory {path} belongs to uid {st.st_uid}, not to us")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


@dataclass(frozen=True)
class Endpoint:
    """One process's control socket."""

    pid: int
    path: str


def discover(directory: str) -> list[Endpoint]:
    """The control sockets in `directory`, sorted by pid; sockets of dead processes removed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        m = SOCKET_NAME.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        path = os.path.join(directory, name)
        if not _pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        found.append(Endpoint(pid, path))
    return sorted(found, key=lambda e: e.pid)


def search_dirs(env: dict[str, str] | None = None, euid: int | None = None) -> list[str]:
    """Directories a client looks in: its own, and for root every user's under /run/user."""
    env = dict(os.environ) if env is None else env
    euid = os.geteuid() if euid is None else euid
    dirs = [runtime_dir(env, euid)]
    if euid == 0 and not env.get("PYTCP_RUNTIME_DIR"):
        # Root may look at every user's connections (issue 6: same user or root).
        with contextlib.suppress(OSError):
            for uid in sorted(os.listdir("/run/user")):
                dirs.append(os.path.join("/run/user", uid, "pytcp"))
    return dirs


# --------------------------------------------------------------------------- server


def _sweep_interval() -> float:
    """How often idle and stalled clients are looked for: a quarter of the shorter timeout."""
    return min(IDLE_TIMEOUT, STALL_TIMEOUT) / 4


def _peer_uid(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return int(_PEERCRED.unpack(raw)[1])


class _Client:
    """One accepted control connection: what it sent and what waits to be read by it.

    `active` is the loop time (ns) of its last request answered or reply byte read: the
    idle and stall timeouts count from it, and the longest idle client is evicted first.
    """

    __slots__ = ("active", "closing", "eof", "inbuf", "outbuf", "reading", "resume", "sock",
                 "writing")  # fmt: skip

    def __init__(self, sock: socket.socket, now: int) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closing = False  # hang up once outbuf has left
        self.eof = False  # the client shut its write side: answer what it sent, then go
        self.reading = False  # a reader is registered on the loop
        self.writing = False  # a writer is registered on the loop
        self.resume: Any = None  # the loop Handle that serves the rest of a batch
        self.active = now


class ControlServer:
    """Serves one stack's connections on `<runtime dir>/<pid>.sock` from the stack's loop.

    Every socket is non-blocking and every callback catches its own failures, so a bad or
    stuck client can never stall or break the connections the loop carries (the limits
    are in the module docstring).
    """

    def __init__(self, stack: ServedStack, *, directory: str | None = None) -> None:
        self.stack = stack
        self.directory = directory if directory is not None else runtime_dir()
        self.pid = os.getpid()
        self.path = os.path.join(self.directory, f"{self.pid}.sock")
        self.listener: socket.socket | None = None
        self.clients: dict[int, _Client] = {}
        self.counters: dict[str, int] = {}
        self._uid = os.geteuid()
        self._inode = -1
        self._sweeper: Any = None  # the loop Handle of the next idle/stall sweep

    # -- life cycle

    def start(self) -> ControlServer:
        """Create the socket (0600, in a 0700 directory) and register it on the loop."""
        ensure_runtime_dir(self.directory)
        discover(self.directory)  # sweep sockets of dead processes
        tmp = f"{self.path}.{os.urandom(4).hex()}.tmp"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(tmp)
            os.chmod(tmp, 0o600)
            sock.listen(64)
            sock.setblocking(False)
            # Renamed only once it listens: a <pid>.sock that refuses is always stale.
            os.replace(tmp, self.path)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ControlError(f"cannot serve control socket {self.path}: {exc}") from None
        self.listener = sock
        self.stack.loop.add_reader(sock.fileno(), self._guard(None, self._on_accept))
        atexit.register(self._unlink)
        return self

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        for fd in list(self.clients):
            self._drop(fd)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.listener is not None:
            with contextlib.suppress(Exception):
                self.stack.loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
        self._unlink()
        atexit.unregister(self._unlink)

    def _unlink(self) -> None:
        # Only our own socket file: another server of this pid (a second stack in one
        # process) may have replaced it.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def _guard(self, fd: int | None, callback: Callable[[], None]) -> Callable[[], None]:
        """`callback` as a loop callback that never raises: a bug while serving one client
        is counted ("internal") and hangs up on that client, and the loop goes on."""

        def guarded() -> None:
            try:
                callback()
            except Exception:
                self._count(INTERNAL)
                if fd is not None:
                    with contextlib.suppress(Exception):
                        self._drop(fd)

        return guarded

    # -- socket callbacks (run on the loop; never raise)

    def _on_accept(self) -> None:
        if self.listener is None:
            return
        for _ in range(MAX_CLIENTS):  # bounded: the loop has connections to serve too
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._count("accept-failed")
                return
            sock.setblocking(False)
            now = self.stack.loop.now()
            client = _Client(sock, now)
            try:
                uid = _peer_uid(sock)
            except OSError:
                uid = -1
            if uid not in (self._uid, 0):
                # Only the same user or root may look or act (issue 6).
                self._count(FORBIDDEN)
                self._refuse(client, FORBIDDEN, f"uid {uid} may not use process {self.pid}")
                continue
            if len(self.clients) >= MAX_CLIENTS:
                # Idle clients cannot hide the process: the one idle longest makes room.
                self._count(EVICTED)
                oldest = min(self.clients.values(), key=lambda c: c.active)
                self._goodbye(
                    oldest.sock.fileno(),
                    EVICTED,
                    f"{MAX_CLIENTS} control clients at once: the one idle longest is hung up",
                )
            fd = sock.fileno()
            self.clients[fd] = client
            self._want_read(fd, client, True)
            if self._sweeper is None:
                self._sweeper = self.stack.loop.call_later(
                    _sweep_interval(), self._guard(None, self._sweep)
                )

    def _refuse(self, client: _Client, code: str, message: str) -> None:
        with contextlib.suppress(OSError):
            client.sock.send(encode_response(Response.error(code, message)))
        client.sock.close()

    def _want_read(self, fd: int, client: _Client, want: bool) -> None:
        if want and not client.reading:
            self.stack.loop.add_reader(fd, self._guard(fd, partial(self._on_read, fd)))
        elif not want and client.reading:
            self.stack.loop.remove_reader(fd)
        client.reading = want

    def _on_read(self, fd: int) -> None:
        client = self.clients.get(fd)
        if client is None:
            return
        try:
            chunk = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        if chunk:
            client.inbuf += chunk
        else:
            client.eof = True
        self._serve(fd)

    def _serve(self, fd: int) -> None:
        """Answer the complete requests the client sent, one at a time: the next only
        once the last reply has left, at most BATCH per wake-up; then read more."""
        client = self.clients.get(fd)
        if client is None:
            return
        client.resume = None
        served = 0
        while not client.closing and not client.outbuf:
            nl = client.inbuf.find(b"\n")
            if nl < 0 and client.eof and client.inbuf:
                nl = len(client.inbuf)  # a last request without its newline
            if nl < 0:
                if len(client.inbuf) > MAX_REQUEST:
                    # No way to find the next request boundary cheaply: answer and hang up.
                    self._count(TOO_LARGE)
                    self._reply(
                        client,
                        Response.error(TOO_LARGE, f"request exceeds {MAX_REQUEST} bytes"),
                    )
                    client.closing = True
                elif client.eof:
                    client.closing = True
                break
            if served == BATCH:
                # The others get their turn: the rest is served on the next wake-up.
                self._want_read(fd, client, False)
                client.resume = self.stack.loop.call_later(
                    0, self._guard(fd, partial(self._serve, fd))
                )
                return
            line = bytes(client.inbuf[:nl])
            del client.inbuf[: nl + 1]
            self._reply(client, self.handle_line(line))
            served += 1
            client.active = self.stack.loop.now()
            # Written now, inside this reader callback: the owner's own callbacks (which
            # may end its process once a close or reset took effect) run only after it,
            # as loop hooks, so the client always gets the reply of what was done.
            self._flush(fd)
            if fd not in self.clients:
                return
        # Read on only while nothing waits to leave: a client that does not read its
        # replies is not read either, so it holds one request and one reply at most.
        self._want_read(fd, client, not (client.outbuf or client.closing or client.eof))
        self._flush(fd)

    def _reply(self, client: _Client, resp: Response) -> None:
        line = encode_response(resp)
        waiting = sum(len(c.outbuf) for c in self.clients.values())
        if waiting + len(line) > MAX_BUFFERED:
            self._count(BUSY)
            line = encode_response(
                Response.error(BUSY, f"{waiting} reply bytes wait to be read; ask again later")
            )
        client.outbuf += line

    def _flush(self, fd: int) -> None:
        client = self.clients.get(fd)
        if client is None:
            return
        sent = False
        while client.outbuf:
            try:
                n = client.sock.send(client.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(fd)
                return
            del client.outbuf[:n]
            sent = True
        if sent:
            client.active = self.stack.loop.now()
        if client.outbuf and not client.writing:
            client.writing = True
            self.stack.loop.add_writer(fd, self._guard(fd, partial(self._on_writable, fd)))
        elif not client.outbuf:
            if client.writing:
                client.writing = False
                self.stack.loop.remove_writer(fd)
            if client.closing:
                self._drop(fd)

    def _on_writable(self, fd: int) -> None:
        self._flush(fd)
        client = self.clients.get(fd)
        if client is not None and not client.outbuf and client.resume is None:
            self._serve(fd)  # the reply left: the next request may be answered

    def _sweep(self) -> None:
        """Hang up on clients idle for IDLE_TIMEOUT or whose reply has not moved for
        STALL_TIMEOUT; runs while there are clients."""
        self._sweeper = None
        now = self.stack.loop.now()
        idle, stall = round(IDLE_TIMEOUT * 1e9), round(STALL_TIMEOUT * 1e9)
        for fd, client in list(self.clients.items()):
            if client.outbuf and now - client.active >= stall:
                self._count("client-stalled")  # its socket is full: no line would fit
                self._drop(fd)
            elif not client.outbuf and now - client.active >= idle:
                self._count(TIMED_OUT)
                what = "an incomplete request (no newline)" if client.inbuf else "no request"
                self._goodbye(fd, TIMED_OUT, f"{what} for {IDLE_TIMEOUT:g}s: hung up")
        if self.clients and self.listener is not None:
            self._sweeper = self.stack.loop.call_later(
                _sweep_interval(), self._guard(None, self._sweep)
            )

    def _goodbye(self, fd: int, code: str, message: str) -> None:
        """Hang up on a client whose reply queue is empty, telling it why in one error
        line first (one non-blocking send: a client that cannot take it loses nothing)."""
        client = self.clients.get(fd)
        if client is not None and not client.outbuf:
            with contextlib.suppress(OSError):
                client.sock.send(encode_response(Response.error(code, message)))
        self._drop(fd)

    def _drop(self, fd: int) -> None:
        client = self.clients.pop(fd, None)
        if client is None:
            return
        if client.resume is not None:
            client.resume.cancel()
        if client.reading:
            with contextlib.suppress(Exception):
                self.stack.loop.remove_reader(fd)
        if client.writing:
            with contextlib.suppress(Exception):
                self.stack.loop.remove_writer(fd)
        client.sock.close()

    # -- requests

    def handle_line(self, line: bytes) -> Response:
        """Answer one request line; any failure becomes an error reply."""
        try:
            req = decode_request(line)
        except ProtocolError as exc:
            self._count(exc.code)
            return Response.error(exc.code, exc.message)
        except Exception as exc:  # a codec bug: still an answer, never a dead loop
            self._count(BAD_REQUEST)
            return Response.error(BAD_REQUEST, f"undecodable request: {type(exc).__name__}")
        try:
            return self.handle(req)
        except Exception as exc:  # a bug here must not break the loop or the connections
            self._count(INTERNAL)
            return Response.error(INTERNAL, f"{type(exc).__name__}: {exc}")

    def handle(self, req: Request) -> Response:
        """Carry out one decoded request against the stack."""
        if req.op == "list":
            params = req.params
            return Response(
                ok=True,
                result=self.describe(
                    view=params.get("view", "full"),
                    states=params.get("states", ()),
                    port=params.get("port"),
                ),
            )
        assert req.conn is not None
        found = self._find(req.conn)
        if found is None:
            return Response.error(
                NO_SUCH_CONNECTION,
                f"no connection {_cut(req.conn)} in process {self.pid}",
            )
        obj, is_listener = found
        now = self.stack.loop.now()
        if req.op == "get":
            return Response(ok=True, result=self._entry(obj, now))
        if is_listener:
            if req.op == "close" and req.how in ("full", "reset"):
                obj.close(now)  # RSTs its embryonic and unaccepted connections
                return Response(ok=True, result={"id": req.conn, "state": "CLOSED"})
            return Response.error(NOT_A_CONNECTION, f"{req.conn} is a listener")
        if req.op == "send":
            return self._send(obj, req, now)
        if req.op == "impair":
            return self._impair(obj, req, now)
        if req.op == "timer":
            return self._timer(obj, req, now)
        if req.op == "journal":
            return self._journal(obj, req, now)
        return self._close(obj, req, now)

    def _impair(self, conn: Any, req: Request, now: int) -> Response:
        from stack.io.faults import FaultSpec

        if not hasattr(conn, "clamp_window"):  # a TimeWait or HalfOpen record (stack.host)
            return Response.error(BAD_REQUEST, _record_refusal(conn, req.conn, "impair"))
        try:
            spec = FaultSpec.parse(req.params["spec"])
        except ValueError as exc:
            return Response.error(BAD_REQUEST, str(exc))
        faults = getattr(self.stack, "faults", None)
        if faults is None and spec.kind not in ("window", "clear"):
            return Response.error(BAD_REQUEST, f"process {self.pid} cannot impair segments")
        if spec.kind in ("window", "clear"):
            conn.clamp_window(spec.value if spec.kind == "window" else None, now)
        if faults is not None and spec.kind != "window":
            faults.set(str(conn.id), conn.local, conn.remote, spec)
        return Response(ok=True, result={"id": req.conn, "impairments": self._impairments(conn)})

    def _timer(self, conn: Any, req: Request, now: int) -> Response:
        from stack.api import InvalidStateError

        name = req.params["name"]
        try:
            if req.params["action"] == "fire":
                self.stack.host.fire_timer(conn, name, now)
            else:
                conn.set_timer(name, req.params["delay"], now)
        except ValueError as exc:
            return Response.error(BAD_REQUEST, str(exc))
        except InvalidStateError as exc:
            return Response.error(NOT_ARMED, f"{req.conn}: {exc}")
        return Response(ok=True, result=self._entry(conn, now))

    def _journal(self, conn: Any, req: Request, now: int) -> Response:
        if not hasattr(conn, "clamp_window"):  # a TimeWait or HalfOpen record keeps none
            return Response.error(BAD_REQUEST, _record_refusal(conn, req.conn, "journal"))
        journal = getattr(conn, "journal", None)
        if journal is None:
            return Response.error(
                BAD_REQUEST, f"{req.conn} keeps no journal (its process ran --journal-size 0)"
            )
        entries = journal.entries(conn.tcb.iss, conn.tcb.irs)
        limit = req.params.get("limit")
        if limit is not None:
            entries = entries[-limit:] if limit else []
        result = {"id": req.conn, "now": now, "size": journal.size,
                  "recorded": journal.recorded, "iss": conn.tcb.iss, "irs": conn.tcb.irs,
                  "entries": entries}  # fmt: skip
        return Response(ok=True, result=result)

    def _impairments(self, conn: Any) -> list[dict[str, Any]]:
        """What `pytcp impair` set on `conn` and is still active (inspect ID shows it)."""
        faults = getattr(self.stack, "faults", None)
        active = [] if faults is None else faults.describe(str(conn.id))
        clamp = getattr(conn, "window_clamp", None)
        if clamp is not None:
            active.append({"fault": "window", "direction": "out", "bytes": clamp})
        return active

    def _send(self, conn: Any, req: Request, now: int) -> Response:
        from stack.api import InvalidStateError

        sock = self._socket(req.conn)
        shut = sock is not None and sock.writable == 0 and conn.send_space > 0
        try:
            if shut:  # the owning application shut its write side (or closed the socket)
                raise InvalidStateError("shut for writing")
            queued = conn.send(req.data, now)
        except InvalidStateError:
            # RFC 9293 3.10.2: SEND after CLOSE is "connection closing".
            return Response.error(
                WRITE_CLOSED, f"{req.conn} is {conn.state}: its write side is closed"
            )
        # The loop pumps its hosts after every fd callback: the data leaves at once.
        return Response(
            ok=True, result={"id": req.conn, "queued": queued, "state": str(conn.state)}
        )

    def _close(self, conn: Any, req: Request, now: int) -> Response:
        if req.how == "reset":
            conn.abort(now)  # RFC 9293 3.10.5 ABORT: RST, then CLOSED
        elif req.how == "half":
            sock = self._socket(req.conn)
            if sock is not None:
                # Through the owner's socket, so its writes now fail with EPIPE.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
            elif not conn.snapshot(now)["close"]["fin_sent"]:
                conn.shutdown(now)  # RFC 9293 3.10.4 CLOSE: FIN after the queued data
        else:
            # The application is gone (RFC 1122 4.2.2.13): FIN, later data refused. The
            # owner's socket stays open and reads EOF once the connection closes.
            conn.close(now)
        return Response(ok=True, result={"id": req.conn, "state": str(conn.state)})

    def _socket(self, full_id: str | None) -> Any:
        """The owning application's `stack.api.Socket` for the ID, if it holds one."""
        find = getattr(self.stack, "socket", None)
        if find is not None and full_id is not None:
            return find(full_id)  # stack.api.Stack: one look-up
        sockets = getattr(self.stack, "sockets", None)
        if sockets is None:
            return None
        for sock in sockets():
            if sock.id == full_id:
                return sock
        return None

    def _conn_id(self, n: int) -> str:
        return f"{self.pid}.{n}"

    def _find(self, full_id: str) -> tuple[Any, bool] | None:
        host = self.stack.host
        pid, _, n = full_id.partition(".")
        if pid != str(self.pid) or not n.isdigit():
            return None
        find = getattr(host, "find", None)
        if find is not None:  # stack.host.Host: one dict look-up, however many connections
            found: tuple[Any, bool] | None = find(int(n))
            return found
        for conn in host.connections():
            if self._conn_id(conn.id) == full_id:
                return conn, False
        for lst in host.listeners():
            if self._conn_id(lst.id) == full_id:
                return lst, True
        return None

    def _entry(self, obj: Any, now: int, link: dict[str, Any] | None = None) -> dict[str, Any]:
        """`get`'s answer (and a full list's entry): the snapshot, the impairments and
        the link (`link`: computed once for a whole list)."""
        snap = dict(obj.snapshot(now))
        if snap.get("state") != "LISTEN":
            snap["impairments"] = self._impairments(obj)
        snap["id"] = self._conn_id(obj.id)
        snap["pid"] = self.pid
        snap["tun"] = getattr(self.stack, "tun_name", None)
        if snap.get("state") != "LISTEN":
            snap["link"] = dict(link) if link is not None else self._link()
        return snap

    def _link(self) -> dict[str, Any]:
        """The link under the connection: the offloads active on it and what the host
        counted of them (docs/internals.md, Offloads)."""
        offloads = getattr(self.stack, "offloads", None) or {}
        counters = getattr(self.stack.host, "offload_counters", None) or {}
        fallback = getattr(self.stack, "tso_fallback", None) or {}
        error = fallback.get("tso_refused_error")
        return {
            "offloads_rx": list(offloads.get("rx", [])),
            "offloads_tx": list(offloads.get("tx", [])),
            **{k: int(counters.get(k, 0)) for k in LINK_COUNTERS},
            "tso_refused": int(fallback.get("tso_refused", 0)),
            "tso_refused_error": str(error) if error is not None else None,
            "gso_resegmented": int(fallback.get("gso_resegmented", 0)),
        }

    def describe(
        self, view: str = "full", states: Iterable[str] = (), port: int | None = None
    ) -> dict[str, Any]:
        """The `list` result: this process and an entry for each listener and connection
        in `states` (any when empty) with `port` as its local or remote port (any when
        None), by id; "total" counts them all. `view` "full": each entry as `get` gives
        it; "rows": only what a `pytcp inspect` row shows (`row(now)` where the object
        has one), a fraction of the cost. Objects the filters leave out are never
        described: the work is proportional to what is shown, plus one look at each
        object's state and ports."""
        now = self.stack.loop.now()
        host = self.stack.host
        time_waits = getattr(host, "time_waits", None)  # stack.host.Host's TIME-WAIT records
        half_opens = getattr(host, "half_opens", None)  # ... and its half-open ones
        listeners = host.listeners()
        conns: list[Any] = [*host.connections(), *(time_waits() if time_waits else ()),
                            *(half_opens() if half_opens else ())]  # fmt: skip
        total = len(listeners) + len(conns)
        wanted = {s.upper().replace("_", "-") for s in states}
        if wanted or port is not None:
            listeners = [o for o in listeners if _selected("LISTEN", o, wanted, port)]
            conns = [o for o in conns if _selected(str(o.state), o, wanted, port)]
        objs = sorted([*listeners, *conns], key=lambda o: o.id)
        # What the process itself is doing when that is not a connection (a listen
        # waiting for its children after a signal): set by the application.
        note = getattr(self.stack, "status_note", None)
        if view == "rows":
            entries = [self._row(o, now) for o in objs]
        else:
            link = self._link()  # the same for every connection of this host
            entries = [self._entry(o, now, link) for o in objs]
        return {
            "pid": self.pid,
            "tun": getattr(self.stack, "tun_name", None),
            "address": str(getattr(self.stack, "address", "")),
            "note": note() if callable(note) else None,
            "total": total,
            "connections": entries,
            "control": {"clients": len(self.clients), "counters": dict(self.counters)},
            "host": self._host_summary(),
        }

    def _row(self, obj: Any, now: int) -> dict[str, Any]:
        """A list row's entry: `obj.row(now)` (Connection) or its snapshot (a listener or
        a TIME-WAIT record, small already), with the id, pid and tun of every entry."""
        row = getattr(obj, "row", None)
        snap = row(now) if row is not None else dict(obj.snapshot(now))  # row: a new dict
        snap["id"] = self._conn_id(obj.id)
        snap["pid"] = self.pid
        snap["tun"] = getattr(self.stack, "tun_name", None)
        return snap

    def _host_summary(self) -> dict[str, Any] | None:
        """The host's own counters (`inspect --host`): packets in and out, RSTs and ICMP
        sent, the drops it made before any connection saw a packet, by reason, and its
        challenge-ACK budget (stack.host.ChallengeAckBudget)."""
        snapshot = getattr(self.stack.host, "snapshot", None)
        if snapshot is None:
            return None
        host = snapshot()
        time_waits = getattr(self.stack.host, "time_waits", None)
        return {
            "address": host.get("address"),
            "address6": host.get("address6"),
            "mtu": host.get("mtu"),
            "counters": host.get("counters", {}),
            "challenge_acks": host.get("challenge_acks"),
            "listeners": len(host.get("listeners", ())),
            "connections": len(host.get("connections", ())),
            "time_waits": len(time_waits()) if time_waits else 0,
        }


def _selected(state: str, obj: Any, states: set[str], port: int | None) -> bool:
    """`pytcp inspect -s/--port` on a listener, connection or TIME-WAIT record in
    `state`, from its endpoints alone (as pytcpcli.output.matches does on an entry)."""
    if states and state not in states:
        return False
    if port is not None:
        remote = getattr(obj, "remote", None)
        if obj.local[1] != port and (remote is None or remote[1] != port):
            return False
    return True


LINK_COUNTERS = (
    "gso_packets_in",
    "gso_segments_in",
    "gso_packets_out",
    "gso_segments_out",
    "csum_trusted_in",
)


# --------------------------------------------------------------------------- client


def _exchange(path: str, req: Request, timeout: float) -> Response:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        try:
            sock.sendall(encode_request(req))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at accept (forbidden, busy): the reply is already waiting
        buf = bytearray()
        end = -1
        while end < 0:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ControlError("the control endpoint hung up without answering", HUNG_UP)
            end = chunk.find(b"\n")  # only the new bytes: a long reply is scanned once
            if end >= 0:
                end += len(buf)
            buf += chunk
            if len(buf) > MAX_RESPONSE:
                raise ControlError("the control endpoint sent an oversized reply")
        line = bytes(buf[:end])
    finally:
        sock.close()
    try:
        return decode_response(line)
    except ProtocolError as exc:
        raise ControlError(f"bad reply from control endpoint: {exc.message}") from None


class ControlClient:
    """Talks to the control endpoint of every pytcp process this user may see."""

    def __init__(self, dirs: Iterable[str] | None = None, *, timeout: float = 2.0) -> None:
        self.dirs = list(dirs) if dirs is not None else search_dirs()
        self.timeout = timeout
        self.problems: list[str] = []  # processes that could not be asked, one line each
        # Of those, the ones this user may ask that gave no answer (timed out, busy, an
        # error): the list is incomplete, and `pytcp inspect` exits 1. A process of
        # another user (permission denied) is not one: it is not ours to show.
        self.unanswered: list[str] = []
        self.notes: list[str] = []  # what processes without a connection to show are doing
        self.total = 0  # entries the last entries() found before its filters

    def endpoints(self) -> list[Endpoint]:
        found: list[Endpoint] = []
        for d in self.dirs:
            try:
                found.extend(discover(d))
            except PermissionError:
                self.problems.append(f"{d}: permission denied")
        return found

    def _problem(self, message: str, code: str | None) -> None:
        self.problems.append(message)
        if code not in (FORBIDDEN, PERMISSION_DENIED):
            self.unanswered.append(message)

    def request(self, ep: Endpoint, req: Request) -> Response:
        """One request to one process; ControlError when it cannot be asked."""
        try:
            return _exchange(ep.path, req, self.timeout)
        except ConnectionRefusedError:
            # Sockets are renamed into place only once listening: a refusal means stale.
            with contextlib.suppress(OSError):
                os.unlink(ep.path)
            raise ControlError(f"process {ep.pid} is gone (stale socket removed)", GONE) from None
        except FileNotFoundError:
            raise ControlError(f"process {ep.pid} is gone", GONE) from None
        except ConnectionResetError:
            # It accepted nothing and closed its control socket: it is exiting.
            raise ControlError(
                f"process {ep.pid} hung up without answering (exiting?)", HUNG_UP
            ) from None
        except PermissionError:
            raise ControlError(f"process {ep.pid}: permission denied", PERMISSION_DENIED) from None
        except ControlError as exc:
            if exc.code == HUNG_UP:
                raise ControlError(
                    f"process {ep.pid} hung up without answering (exiting?)", HUNG_UP
                ) from None
            raise
        except TimeoutError:
            raise ControlError(
                f"process {ep.pid} did not answer within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise ControlError(f"process {ep.pid}: {exc.strerror or exc}") from None

    def entries(
        self, *, view: str = "full", states: Iterable[str] = (), port: int | None = None
    ) -> list[dict[str, Any]]:
        """Every listener and connection of every reachable process, by pid then id; with
        `states`/`port` only those (each process filters before it describes anything),
        with `view` "rows" only the fields of a list row. `total` counts them all."""
        self.problems = []
        self.unanswered = []
        self.notes = []
        self.total = 0
        params: dict[str, Any] = {}
        if view != "full":
            params["view"] = view
        if states:
            params["states"] = list(states)
        if port is not None:
            params["port"] = port
        entries: list[dict[str, Any]] = []
        for ep in self.endpoints():
            try:
                resp = self.request(ep, Request(op="list", params=params))
            except ControlError as exc:
                if exc.code not in (GONE, HUNG_UP):  # gone or exiting: not a problem
                    self._problem(str(exc), exc.code)
                continue
            if not resp.ok:
                self._problem(f"process {ep.pid}: {resp.message}", resp.code)
                continue
            found = resp.result.get("connections", [])
            entries.extend(found)
            total = resp.result.get("total")
            self.total += total if isinstance(total, int) else len(found)
            if resp.result.get("note"):
                self.notes.append(
                    f"process {ep.pid} ({resp.result.get('tun') or '?'}): {resp.result['note']}"
                )
        return sorted(entries, key=_id_key)

    def ids(self) -> list[str]:
        return [e["id"] for e in self.entries(view="rows")]

    def hosts(self) -> list[dict[str, Any]]:
        """Per reachable process: {"pid", "tun", "host": its counters and drops,
        "control": the control endpoint's clients and counters}, by pid."""
        self.problems = []
        self.unanswered = []
        out: list[dict[str, Any]] = []
        for ep in self.endpoints():
            try:
                resp = self.request(ep, Request(op="list"))
            except ControlError as exc:
                if exc.code not in (GONE, HUNG_UP):
                    self._problem(str(exc), exc.code)
                continue
            if not resp.ok:
                self._problem(f"process {ep.pid}: {resp.message}", resp.code)
                continue
            r = resp.result
            out.append({"pid": r.get("pid", ep.pid), "tun": r.get("tun"),
                        "host": r.get("host"), "control": r.get("control")})  # fmt: skip
        return out

    def resolve(self, prefix: str) -> str:
        """The one live ID that is `prefix` or starts with it (ControlError otherwise).

        A whole ID is asked of its own process first, with one `get`: resolving it costs
        the same however many connections there are. Only a prefix lists them."""
        if FULL_ID.match(prefix):
            try:
                self.get(prefix)
                return prefix
            except ControlError as exc:
                if not is_gone(exc) and exc.code != HUNG_UP:
                    raise
        ids = self.ids()
        if prefix in ids:
            return prefix
        matches = [i for i in ids if i.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            hint = f" ({'; '.join(self.problems)})" if self.problems else ""
            raise ControlError(
                f"no live connection matches {prefix!r}; `pytcp inspect` lists them{hint}",
                NO_SUCH_CONNECTION,
            )
        raise ControlError(
            f"{prefix!r} is ambiguous: {', '.join(matches[:8])}"
            + (" ..." if len(matches) > 8 else ""),
            "ambiguous",
        )

    def _ask(self, full_id: str, req: Request) -> dict[str, Any]:
        pid = int(full_id.split(".", 1)[0])
        path = None
        for ep in self.endpoints():
            if ep.pid == pid:
                path = ep
        if path is None:
            raise ControlError(f"process {pid} is gone", GONE)
        resp = self.request(path, req)
        if not resp.ok:
            raise ControlError(str(resp.message), str(resp.code))
        return resp.result

    def get(self, conn_id: str) -> dict[str, Any]:
        """The snapshot of one connection (exact ID)."""
        return self._ask(conn_id, Request(op="get", conn=conn_id))

    def send(self, conn_id: str, data: bytes) -> dict[str, Any]:
        """Queue at most MAX_SEND_CHUNK bytes; the result says how many were queued."""
        return self._ask(conn_id, Request(op="send", conn=conn_id, data=data[:MAX_SEND_CHUNK]))

    def close(self, conn_id: str, how: str) -> dict[str, Any]:
        return self._ask(conn_id, Request(op="close", conn=conn_id, how=how))

    def impair(self, conn_id: str, spec: str) -> dict[str, Any]:
        """Set one per-connection fault (stack.io.faults); {"id", "impairments"}."""
        return self._ask(conn_id, Request(op="impair", conn=conn_id, params={"spec": spec}))

    def timer(
        self, conn_id: str, action: str, name: str, delay: int | None = None
    ) -> dict[str, Any]:
        """Fire a timer now, or re-arm it `delay` ns from now; the snapshot after."""
        params: dict[str, Any] = {"action": action, "name": name}
        if delay is not None:
            params["delay"] = delay
        return self._ask(conn_id, Request(op="timer", conn=conn_id, params=params))

    def journal(self, conn_id: str, limit: int | None = None) -> dict[str, Any]:
        """The connection's segment journal: {"id", "size", "recorded", "entries"}."""
        params = {} if limit is None else {"limit": limit}
        return self._ask(conn_id, Request(op="journal", conn=conn_id, params=params))


def _id_key(entry: dict[str, Any]) -> tuple[int, int]:
    pid, _, n = str(entry.get("id", "0.0")).partition(".")
    try:
        return int(pid), int(n)
    except ValueError:
        return 0, 0


def is_gone(error: ControlError) -> bool:
    """Whether `error` says the connection no longer exists: its stack forgot it, or the
    process that held it is gone (its connections went with it)."""
    return error.code in (NO_SUCH_CONNECTION, GONE)


def close_completed(how: str, entry: dict[str, Any] | None) -> bool:
    """Whether a close asked with `how` has completed, given the connection's snapshot now.

    `None` means the connection is gone (CLOSED and forgotten). A half close completes when
    our FIN is acknowledged (RFC 9293 3.10.4: FIN-WAIT-2, or later); a full close when both
    FINs are exchanged (TIME-WAIT or CLOSED); a reset at once.
    """
    if entry is None:
        return True
    state = entry.get("state")
    if state in ("CLOSED", "TIME-WAIT"):
        return True
    if how == "half":
        return bool(entry.get("close", {}).get("fin_acked"))
    return False


__all__ = [
    "MAX_REQUEST",
    "MAX_SEND_CHUNK",
    "PROTOCOL_VERSION",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "Endpoint",
    "ProtocolError",
    "Request",
    "Response",
    "close_completed",
    "decode_request",
    "decode_response",
    "discover",
    "encode_request",
    "encode_response",
    "is_gone",
    "runtime_dir",
    "search_dirs",
]


def _record_refusal(conn: Any, conn_id: str | None, what: str) -> str:
    """The refusal of impair/journal on a TIME-WAIT record (its application closed it)
    or a half-open one (SYN-RECEIVED: a connection only once its handshake completes)."""
    if str(conn.state) == "SYN-RECEIVED":
        return (
            f"{conn_id} is half-open (SYN-RECEIVED), kept as a compact record until the "
            f"peer's ACK makes it a connection; it keeps no "
            f"{'impairments' if what == 'impair' else 'journal'} before that"
        )
    return (
        f"{conn_id} is in TIME-WAIT, kept as a compact record that sends nothing but "
        f"ACKs and keeps no {'impairments' if what == 'impair' else 'journal'}; "
        f"`pytcp timer {conn_id} fire time-wait` ends it"
    )
