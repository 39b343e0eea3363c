"""How `pytcp connect` and `pytcp listen` end when told to, or when something else ends
their connection: signals, `pytcp close` from another process, a vanished interface.

The installed command as a subprocess in a test namespace, kernel peers as sockets."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading

import pytest

from pytcpcli.relay import PIPE_SIZE
from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    KERNEL,
    PYTCP,
    TIMEOUT,
    KernelServer,
    StderrLines,
    connect_kernel,
    pytcp,
    recv_all,
    start_listener,
    unacked,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

# More than a pipe holds (pytcp grows its stdout pipe to PIPE_SIZE, 1 MiB), less than pytcp
# buffers while stdout is stuck (pipe + the writer's HIGH_WATER + the receive window).
DATA = PIPE_SIZE + 300 * 1024


def wait_acked(conn: socket.socket) -> None:
    for _ in range(TIMEOUT * 100):  # until pytcp acknowledged every byte
        if unacked(conn) == 0:
            return
        threading.Event().wait(0.01)
    raise AssertionError("pytcp never acknowledged the data")


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job inherits


def lost_bytes(err: bytes, name: str) -> int:
    # The first signal's line (always said while a connection is open), then the count.
    first = b"pytcp: " + name.encode() + rb": closing \(FIN\), waiting up to 2s for the peer "
    first += rb"to close; send it again to reset \(RST\)\n"
    m = re.fullmatch(
        rb"(?:" + first + rb")?"
        rb"pytcp: (\d+) received bytes could not be written to stdout "
        rb"\(its reader was not reading when the second " + name.encode() + rb" came\)\n",
        err,
    )
    assert m is not None, err
    return int(m.group(1))


@pytest.mark.parametrize("inherited_ignore", [False, True])
@FAMILIES
def test_second_sigint_ends_connect_with_stdout_stuck(
    netns, family: int, inherited_ignore: bool
) -> None:
    KERNEL, _STACK = ADDRS[family]
    data = os.urandom(DATA)

    acked = threading.Event()

    def push_then_close(conn: socket.socket) -> bytes:
        conn.sendall(data)
        wait_acked(conn)
        acked.set()
        return recv_all(conn)  # pytcp's FIN after the first ^C; then the kernel closes

    server = KernelServer(7100, push_then_close, family=family)
    # stdout is a pipe nobody reads until pytcp has exited.
    proc = pytcp("connect", KERNEL, "7100", preexec_fn=ignore_sigint if inherited_ignore else None)
    assert proc.stderr is not None and proc.stdout is not None
    assert acked.wait(TIMEOUT)
    proc.send_signal(signal.SIGINT)
    # The connection is over once the kernel's handler returns; pytcp is writing stdout.
    assert server.wait() == [b""]
    proc.send_signal(signal.SIGINT)
    proc.wait(TIMEOUT)  # stdout still unread: pytcp must not wait for its reader
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == 130
    assert out == data[: len(out)]
    assert lost_bytes(err, "SIGINT") == DATA - len(out) > 0


@FAMILIES
def test_second_sigterm_ends_listen_with_stdout_stuck(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    data = os.urandom(DATA)
    proc, err = start_listener("7101")
    assert proc.stdout is not None
    conn = connect_kernel(7101, STACK)
    conn.sendall(data)
    wait_acked(conn)
    proc.send_signal(signal.SIGTERM)
    assert recv_all(conn) == b""  # the first signal: FIN
    conn.close()
    err.wait_for(f"pytcp: {KERNEL} port ")  # the connection's -v summary: it is over
    proc.send_signal(signal.SIGTERM)
    proc.wait(TIMEOUT)  # stdout still unread: pytcp must not wait for its reader
    out = proc.stdout.read()
    assert proc.returncode == 143
    assert out == data[: len(out)]
    rest = [line for line in err.rest() if "received bytes could not be written" in line]
    assert lost_bytes("".join(rest).encode(), "SIGTERM") == DATA - len(out) > 0


def connection_id(err: StderrLines) -> str:
    line = err.wait_for("pytcp: connected to ")
    return line.rsplit(" id ", 1)[1].rstrip(")\n")


def control_request(pid: int, request: dict[str, str]) -> dict[str, object]:
    """One request on the owner's control socket, as `pytcp close` sends it; its reply."""
    from stack.control import runtime_dir

    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(TIMEOUT)
        s.connect(os.path.join(runtime_dir(), f"{pid}.sock"))
        s.sendall(json.dumps({"v": 1, **request}).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            assert chunk, f"the owner hung up before answering: {reply!r}"
            reply += chunk
    return dict(json.loads(reply))


@FAMILIES
def test_connect_reset_by_pytcp_close_says_so_and_exits_0(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]

    def hold(conn: socket.socket) -> str:
        try:
            return "eof" if recv_all(conn) == b"" else "data"
        except ConnectionResetError:
            return "reset"

    server = KernelServer(7110, hold, family=family)
    proc = pytcp("connect", "-v", KERNEL, "7110")
    err = StderrLines(proc)
    conn_id = connection_id(err)
    reply = control_request(proc.pid, {"op": "close", "conn": conn_id, "how": "reset"})
    assert reply["ok"] is True, reply
    proc.wait(TIMEOUT)
    lines = err.rest()
    assert proc.returncode == 0
    assert (
        f"pytcp: connection to {KERNEL} port 7110 reset by pytcp close --reset (another process)\n"
        in lines
    )
    assert not [line for line in lines if "the peer closed" in line]
    assert server.wait() == ["reset"]


@FAMILIES
def test_connect_closed_by_pytcp_close_says_so(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]

    def echo_until_eof(conn: socket.socket) -> bytes:
        return recv_all(conn)

    server = KernelServer(7111, echo_until_eof, family=family)
    proc = pytcp("connect", "-v", KERNEL, "7111")
    err = StderrLines(proc)
    conn_id = connection_id(err)
    reply = control_request(proc.pid, {"op": "close", "conn": conn_id, "how": "full"})
    assert reply["ok"] is True, reply
    proc.wait(TIMEOUT)
    lines = err.rest()
    assert proc.returncode == 0
    assert (
        "pytcp: the connection was closed by pytcp close (another process); "
        "stdin is no longer read: 0 bytes of it were not sent so far; what is written to "
        "it later is not read either\n"
    ) in lines
    assert server.wait() == [b""]


@FAMILIES
def test_listen_reset_by_pytcp_close_says_so(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    proc, err = start_listener("7112")
    conn = connect_kernel(7112, STACK)
    line = err.wait_for("pytcp: connection from ")
    conn_id = line.rsplit("(id ", 1)[1].rstrip(")\n")
    reply = control_request(proc.pid, {"op": "close", "conn": conn_id, "how": "reset"})
    assert reply["ok"] is True, reply
    proc.wait(TIMEOUT)
    lines = err.rest()
    assert proc.returncode == 0
    assert (
        f"pytcp: connection to {KERNEL} port {conn.getsockname()[1]} "
        "reset by pytcp close --reset (another process)\n" in lines
    )
    with pytest.raises(ConnectionResetError):
        recv_all(conn)


@FAMILIES
def test_connect_reset_by_pytcp_close_in_syn_sent_exits_1(netns, family: int) -> None:
    # Nothing answers 10.77.0.9 or fd77::9 (no such host on pytcp0): the SYN waits.
    nobody = "10.77.0.9" if family == 4 else "fd77::9"
    proc = pytcp("connect", "-vv", nobody, "7113")
    err = StderrLines(proc)
    line = err.wait_for("")
    while "-> SYN-SENT" not in line:
        line = err.wait_for("")
    conn_id = line.split()[1].rstrip(":")
    reply = control_request(proc.pid, {"op": "close", "conn": conn_id, "how": "reset"})
    assert reply["ok"] is True, reply
    proc.wait(TIMEOUT)
    lines = err.rest()
    assert proc.returncode == 1
    assert (
        f"pytcp: connection to {nobody} port 7113 reset by pytcp close --reset "
        "(another process) before it was established\n"
    ) in lines


def test_interface_deleted_mid_connection_is_one_line_and_exit_3(netns) -> None:
    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        release.wait(TIMEOUT)

    KernelServer(7114, hold)
    proc = pytcp("connect", "-v", KERNEL, "7114")
    err = StderrLines(proc)
    connection_id(err)
    netns.run("ip", "link", "del", "pytcp0")
    proc.wait(TIMEOUT)
    release.set()
    lines = err.rest()
    assert proc.returncode == 3
    assert len(lines) == 2, lines  # the -v "connected" line, then the error
    assert lines[1].startswith("pytcp: interface pytcp0 went away while pytcp was using it")


@pytest.mark.parametrize("keep_open", [True, False])
@FAMILIES
def test_listener_closed_by_pytcp_close_finishes_live_connections(
    netns, family: int, keep_open
) -> None:
    _KERNEL, STACK = ADDRS[family]
    args = ["-k", "7115"] if keep_open else ["7115"]
    proc, err = start_listener(*args, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    if keep_open:
        conn = connect_kernel(7115, STACK)
        err.wait_for("pytcp: connection from ")
    reply = control_request(proc.pid, {"op": "close", "conn": f"{proc.pid}.1", "how": "full"})
    assert reply["ok"] is True, reply
    live = "1 live connection" if keep_open else "0 live connections"
    assert err.wait_for("pytcp: the listener was closed ") == (
        f"pytcp: the listener was closed by pytcp close (another process); exiting after {live}\n"
    )
    if keep_open:
        conn.sendall(b"still here\n")
        conn.shutdown(socket.SHUT_WR)
        assert recv_all(conn) == b""  # stdin was /dev/null: pytcp's FIN
        conn.close()
    proc.wait(TIMEOUT)
    assert proc.returncode == 0
    assert proc.stdout.read() == (b"still here\n" if keep_open else b"")


@FAMILIES
def test_half_close_from_another_process_stops_stdin_and_says_so(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    got_first = threading.Event()
    may_reply = threading.Event()

    def read_then_reply(conn: socket.socket) -> bytes:
        first = conn.recv(1)
        got_first.set()
        rest = recv_all(conn)  # pytcp's FIN comes from `pytcp close --half`
        may_reply.wait(TIMEOUT)
        conn.sendall(b"reply")
        return first + rest

    server = KernelServer(7116, read_then_reply, family=family)
    proc = pytcp("connect", "-v", KERNEL, "7116")
    assert proc.stdin is not None and proc.stdout is not None
    err = StderrLines(proc)
    conn_id = connection_id(err)
    proc.stdin.write(b"a")
    proc.stdin.flush()
    assert got_first.wait(TIMEOUT)
    reply = control_request(proc.pid, {"op": "close", "conn": conn_id, "how": "half"})
    assert reply["ok"] is True, reply
    assert err.wait_for("pytcp: the write side") == (
        "pytcp: the write side was closed by pytcp close --half (another process); "
        "stdin is no longer read: 0 bytes of it were not sent so far; what is written to "
        "it later is not read either\n"
    )
    proc.stdin.write(b"never sent")  # stdin stays open; pytcp no longer reads it
    proc.stdin.flush()
    may_reply.set()
    assert proc.stdout.read() == b"reply"
    proc.wait(TIMEOUT)
    assert proc.returncode == 0
    assert server.wait() == [b"a"]


UNSENT = re.compile(
    r"pytcp: the write side was closed by pytcp close --half \(another process\); "
    r"stdin is no longer read: (\d+) bytes of it were not sent( so far)? "
    r"\((\d+) read, (\d+) never read\)(; what is written to it later is not read either)?\n"
)


@pytest.mark.parametrize("stdin_kind", ["file", "pipe"])
@FAMILIES
def test_half_close_counts_the_stdin_never_read(
    netns, family: int, tmp_path, stdin_kind: str
) -> None:
    """`close --half` while the peer does not read: the count of stdin that will never be
    sent includes what pytcp never read from it (a file's rest, exactly; what waits in a
    pipe, "so far"), and it is true: the peer gets every other byte, then FIN."""
    KERNEL, _STACK = ADDRS[family]
    may_read = threading.Event()

    def read_later(conn: socket.socket) -> int:
        may_read.wait(TIMEOUT)
        return len(recv_all(conn))  # up to the FIN of `close --half`

    server = KernelServer(7117, read_later, family=family)
    # A small receive buffer (inherited by the accepted socket): the kernel's window
    # closes early and pytcp's queues fill, so stdin is only partly read.
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    data = os.urandom(8 * 1024 * 1024)
    if stdin_kind == "file":
        path = tmp_path / "stdin"
        path.write_bytes(data)
        with open(path, "rb") as f:
            proc = pytcp("connect", "-v", KERNEL, "7117", stdin=f)
    else:
        proc = pytcp("connect", "-v", KERNEL, "7117")
    err = StderrLines(proc)
    conn_id = connection_id(err)
    written = len(data) if stdin_kind == "file" else 0

    def fill_pipe() -> None:
        nonlocal written
        assert proc.stdin is not None
        for _ in range(10_000):  # until the pipe is full
            try:
                written += os.write(proc.stdin.fileno(), data[written : written + 65536])
            except BlockingIOError:
                return

    if stdin_kind == "pipe":
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)
    from stack.control import ControlClient

    client = ControlClient(timeout=TIMEOUT)
    for _ in range(TIMEOUT * 100):
        if stdin_kind == "pipe":
            fill_pipe()
        entry = client.get(conn_id)
        buffers = entry["buffers"]
        if entry["send"]["snd_wnd"] == 0 and buffers["send_queued"] >= buffers["send_capacity"]:
            break  # the stack takes no more: pytcp stops reading stdin at its HIGH_WATER
        threading.Event().wait(0.01)
    else:
        raise AssertionError("the peer's window never closed")
    if stdin_kind == "pipe":
        fill_pipe()  # pytcp reads at most one more chunk: the pipe keeps most of this
        assert 0 < written < len(data)
    reply = control_request(proc.pid, {"op": "close", "conn": conn_id, "how": "half"})
    assert reply["ok"] is True, reply
    line = err.wait_for("pytcp: the write side")
    m = UNSENT.fullmatch(line)
    assert m is not None, err.lines[-1]
    unsent, queued, never = int(m.group(1)), int(m.group(3)), int(m.group(4))
    assert unsent == queued + never and never > 0
    assert bool(m.group(2)) == bool(m.group(5)) == (stdin_kind == "pipe")  # a pipe: "so far"
    may_read.set()
    assert server.wait() == [written - unsent]  # every byte not counted as unsent arrived
    if proc.stdin is not None:
        proc.stdin.close()
    proc.wait(TIMEOUT)
    assert proc.returncode == 0


@FAMILIES
def test_listen_half_close_counts_the_stdin_never_read(netns, family: int, tmp_path) -> None:
    """The same for `pytcp listen PORT < FILE` (one client: stdin is its alone)."""
    KERNEL, STACK = ADDRS[family]
    data = os.urandom(8 * 1024 * 1024)
    path = tmp_path / "stdin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        proc, err = start_listener("7118", stdin=f)
    conn = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the window closes early
    conn.settimeout(TIMEOUT)
    conn.connect((STACK, 7118))
    line = err.wait_for("pytcp: connection from ")
    conn_id = line.rsplit("(id ", 1)[1].rstrip(")\n")
    from stack.control import ControlClient

    client = ControlClient(timeout=TIMEOUT)
    for _ in range(TIMEOUT * 100):
        entry = client.get(conn_id)
        buffers = entry["buffers"]
        if entry["send"]["snd_wnd"] == 0 and buffers["send_queued"] >= buffers["send_capacity"]:
            break
        threading.Event().wait(0.01)
    else:
        raise AssertionError("the peer's window never closed")
    reply = control_request(proc.pid, {"op": "close", "conn": conn_id, "how": "half"})
    assert reply["ok"] is True, reply
    line = err.wait_for("pytcp: the write side")
    m = re.fullmatch(
        rf"pytcp: the write side to {KERNEL} port {conn.getsockname()[1]} was closed by "
        r"pytcp close --half \(another process\); stdin is no longer read: (\d+) bytes of it "
        r"were not sent \((\d+) read, (\d+) never read\)\n",
        line,
    )
    assert m is not None, line
    unsent, queued, never = (int(g) for g in m.groups())
    assert unsent == queued + never and never > 0
    assert len(recv_all(conn)) == len(data) - unsent  # every other byte, then FIN
    conn.close()
    proc.wait(TIMEOUT)
    assert proc.returncode == 0


@pytest.mark.parametrize("stderr", ["2>/dev/full", "2>&-"])
@FAMILIES
def test_unwritable_stderr_never_affects_data(netns, family: int, stderr: str) -> None:
    KERNEL, _STACK = ADDRS[family]
    data = os.urandom(200 * 1024)

    def echo(conn: socket.socket) -> bytes:
        got = recv_all(conn)
        conn.sendall(got[::-1])
        return got

    server = KernelServer(7117, echo, family=family)
    out = subprocess.run(
        f"{PYTCP} connect -vv --trace {KERNEL} 7117 {stderr}",
        shell=True,
        input=data,
        stdout=subprocess.PIPE,
        timeout=TIMEOUT,
    )
    assert out.returncode == 0
    assert out.stdout == data[::-1]
    assert server.wait() == [data]


@pytest.mark.parametrize("stderr", ["2>/dev/full", "2>&-"])
@FAMILIES
def test_unwritable_stderr_keeps_the_failure_status(netns, family: int, stderr: str) -> None:
    KERNEL, _STACK = ADDRS[family]
    out = subprocess.run(
        f"{PYTCP} connect -v {KERNEL} 7118 {stderr}",  # nothing listens: refused
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        timeout=TIMEOUT,
    )
    assert (out.returncode, out.stdout) == (1, b"")
