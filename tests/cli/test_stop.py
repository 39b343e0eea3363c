"""How `pytcp connect` and `pytcp listen` end when told to, or when something else ends
their connection: signals, `pytcp close` from another process, a vanished interface.

The installed command as a subprocess in a test namespace, kernel peers as sockets."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading

import pytest

from tests.cli.netcat import (
    KERNEL,
    TIMEOUT,
    KernelServer,
    connect_kernel,
    pytcp,
    recv_all,
    start_listener,
    unacked,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

DATA = 300 * 1024  # more than a pipe holds, less than pytcp buffers while stdout is stuck


def wait_acked(conn: socket.socket) -> None:
    for _ in range(TIMEOUT * 100):  # until pytcp acknowledged every byte
        if unacked(conn) == 0:
            return
        threading.Event().wait(0.01)
    raise AssertionError("pytcp never acknowledged the data")


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job inherits


def lost_bytes(err: bytes, name: str) -> int:
    m = re.fullmatch(
        rb"pytcp: (\d+) received bytes could not be written to stdout "
        rb"\(its reader was not reading when the second " + name.encode() + rb" came\)\n",
        err,
    )
    assert m is not None, err
    return int(m.group(1))


@pytest.mark.parametrize("inherited_ignore", [False, True])
def test_second_sigint_ends_connect_with_stdout_stuck(netns, inherited_ignore: bool) -> None:
    data = os.urandom(DATA)

    acked = threading.Event()

    def push_then_close(conn: socket.socket) -> bytes:
        conn.sendall(data)
        wait_acked(conn)
        acked.set()
        return recv_all(conn)  # pytcp's FIN after the first ^C; then the kernel closes

    server = KernelServer(7100, push_then_close)
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


def test_second_sigterm_ends_listen_with_stdout_stuck(netns) -> None:
    data = os.urandom(DATA)
    proc, err = start_listener("7101")
    assert proc.stdout is not None
    conn = connect_kernel(7101)
    conn.sendall(data)
    wait_acked(conn)
    proc.send_signal(signal.SIGTERM)
    assert recv_all(conn) == b""  # the first signal: FIN
    conn.close()
    err.wait_for("pytcp: 10.77.0.1 port ")  # the connection's -v summary: it is over
    proc.send_signal(signal.SIGTERM)
    proc.wait(TIMEOUT)  # stdout still unread: pytcp must not wait for its reader
    out = proc.stdout.read()
    assert proc.returncode == 143
    assert out == data[: len(out)]
    rest = [line for line in err.rest() if "received bytes could not be written" in line]
    assert lost_bytes("".join(rest).encode(), "SIGTERM") == DATA - len(out) > 0
