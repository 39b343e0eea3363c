"""Signals and terminal job control around the installed `pytcp`, as a user meets them:
SIGHUP (ssh ProxyCommand, a closed terminal), nohup, the first signal's message, the
bounded wait for -e/-c children and its line in `pytcp inspect`, and a listener started
with `&` from an interactive shell (a background process group on a terminal).

Each test runs the installed command in a test namespace; terminals are pseudo-terminals.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    KERNEL,
    PYTCP,
    TIMEOUT,
    StderrLines,
    connect_kernel,
    pytcp,
    read_line,
    recv_all,
    run,
    start_listener,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@FAMILIES
def test_sighup_closes_listen_exec_and_reaps_its_child(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]
    # A child that never exits by itself on EOF: only pytcp's bounded wait ends it.
    proc, err = start_listener("--child-grace", "1s", "-k", "7301", "-c", "echo $$; exec sleep 600")
    conn = connect_kernel(7301, STACK)
    pid = int(read_line(conn))
    proc.send_signal(signal.SIGHUP)
    assert recv_all(conn) == b""  # FIN: the peer is not left ESTABLISHED
    line = err.wait_for("pytcp: SIGHUP: ")
    assert line == (
        "pytcp: SIGHUP: no connection open; waiting for 1 child to exit (up to 1s, then it is "
        "killed) (send it again to kill it)\n"
    ) or line.startswith("pytcp: SIGHUP: closing (FIN), then waiting for 1 child to exit (up to 1s")
    assert proc.wait(TIMEOUT) == 129
    conn.close()
    assert _gone(pid)  # killed and reaped: no orphan outlives pytcp


@FAMILIES
def test_nohup_keeps_pytcp_running_through_a_hangup(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup(1) does before exec

    proc, _err = start_listener("7302", stdin=subprocess.DEVNULL, preexec_fn=nohup)
    proc.send_signal(signal.SIGHUP)
    conn = connect_kernel(7302, STACK)  # still listening: the hangup was ignored as asked
    conn.sendall(b"still here\n")
    conn.shutdown(socket.SHUT_WR)
    assert recv_all(conn) == b""
    assert proc.wait(TIMEOUT) == 0
    assert proc.stdout is not None and proc.stdout.read() == b"still here\n"


@FAMILIES
def test_signal_during_the_handshake_exits_with_its_status(netns, family: int) -> None:
    # 10.77.0.9 (fd77::9) is routed into pytcp0 and answered by nobody: the SYN is resent.
    proc = pytcp("connect", "-vv", "10.77.0.9" if family == 4 else "fd77::9", "80")
    err = StderrLines(proc)
    err.wait_for("")  # the first trace line: the stack runs, SYN-SENT
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(TIMEOUT) == 128 + signal.SIGUSR2
    assert not [line for line in err.rest() if "Traceback" in line]


@FAMILIES
def test_child_wait_is_bounded_and_shown_by_inspect(netns, family: int, tmp_path) -> None:
    _KERNEL, STACK = ADDRS[family]
    env = {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path)}
    proc, err = start_listener(
        "--child-grace", "30s", "-k", "7303", "-c", "echo $$; exec sleep 600", env=env
    )
    conn = connect_kernel(7303, STACK)
    pid = int(read_line(conn))
    proc.send_signal(signal.SIGTERM)
    # Said whatever -v says: pytcp does not exit at once, so it says why.
    assert err.wait_for("pytcp: SIGTERM: ") == (
        "pytcp: SIGTERM: closing (FIN), then waiting for 1 child to exit (up to 30s, then it "
        "is killed); send it again to reset (RST) and kill it\n"
    )
    assert recv_all(conn) == b""  # the FIN; the child has EOF and still does not exit
    conn.close()
    out = subprocess.run(
        [PYTCP, "inspect"], capture_output=True, env=env, timeout=TIMEOUT, check=False
    )
    assert out.returncode == 0, out
    note = out.stdout.decode().splitlines()[-1]
    m = re.fullmatch(
        rf"process {proc.pid} \(pytcp0\): stopping after SIGTERM: waiting for 1 child "
        rf"\(sh -c, pid {pid}\) to exit, killed in (\d+\.\d)s",
        note,
    )
    assert m is not None, out.stdout
    assert 0 < float(m.group(1)) <= 30
    assert proc.poll() is None and not _gone(pid)
    proc.send_signal(signal.SIGTERM)  # a second signal ends the wait at once
    assert proc.wait(TIMEOUT) == 143
    assert _gone(pid)


@FAMILIES
def test_child_grace_runs_out(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]
    proc, _err = start_listener("--child-grace", "200ms", "-k", "7304", "-c", "echo $$; sleep 600")
    conn = connect_kernel(7304, STACK)
    pid = int(read_line(conn))
    proc.send_signal(signal.SIGTERM)
    assert recv_all(conn) == b""
    assert proc.wait(TIMEOUT) == 143  # one signal was enough: the grace is bounded
    conn.close()
    assert _gone(pid)


BACKGROUND_JOB = r"""
import os, sys, termios
# An interactive shell: session leader on the terminal, pytcp started with `&` in a
# process group of its own, while the shell keeps the terminal's foreground.
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)
import fcntl; fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.dup2(fd, 0)
    os.execv(sys.argv[2], sys.argv[2:])
try:
    os.setpgid(pid, pid)  # as a shell does; EACCES once the child has exec'd (it set it)
except OSError:
    pass
print(pid, flush=True)
os.waitpid(pid, 0)
"""


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_background_listener_keeps_serving_and_stays_killable(netns) -> None:
    master, slave = pty.openpty()
    slave_name = os.ttyname(slave)
    os.close(slave)
    shell = subprocess.Popen(
        [sys.executable, "-c", BACKGROUND_JOB, slave_name, PYTCP, "listen", "-k", "-v", "7305"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert shell.stdout is not None
        pid = int(shell.stdout.readline())
        err = StderrLines(shell)
        err.wait_for("pytcp: listening on ")
        os.write(master, b"typed at the shell\n")  # input for the foreground job, not pytcp
        for n in range(3):  # after the first client pytcp used to stop on SIGTTIN
            conn = connect_kernel(7305)
            conn.sendall(b"client %d\n" % n)
            err.wait_for("pytcp: connection from ")
            conn.close()
            assert _state(pid) != "T", "pytcp was stopped by terminal job control"
        os.kill(pid, signal.SIGTERM)  # `kill %1`
        assert shell.wait(TIMEOUT) == 0
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped by the shell: it ended
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait(TIMEOUT)
        os.close(master)


def test_background_job_reads_the_terminal_once_in_front(netns) -> None:
    # The same job brought to the foreground (`fg`): then the terminal is its stdin.
    master, slave = pty.openpty()
    got = threading.Event()
    data: list[bytes] = []

    def serve(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            data.append(conn.recv(64))
            got.set()

    listener = socket.create_server(("0.0.0.0", 7306))
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    job = r"""
import os, sys, termios, fcntl, time
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.dup2(fd, 0)
    os.execv(sys.argv[2], sys.argv[2:])
try:
    os.setpgid(pid, pid)  # as a shell does; EACCES once the child has exec'd (it set it)
except OSError:
    pass
sys.stdin.readline()        # the test says when: `fg`
os.tcsetpgrp(fd, pid)
os.killpg(pid, 18)          # SIGCONT, as a shell's fg sends
os.waitpid(pid, 0)
"""
    shell = subprocess.Popen(
        [sys.executable, "-c", job, os.ttyname(slave), PYTCP, "connect", "-v", KERNEL, "7306"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    try:
        err = StderrLines(shell)
        err.wait_for("pytcp: connected to ")
        assert shell.stdin is not None
        shell.stdin.write(b"fg\n")
        shell.stdin.flush()
        os.write(master, b"typed\n")
        assert got.wait(TIMEOUT)
        assert data == [b"typed\n"]
    finally:
        shell.kill()
        shell.wait(TIMEOUT)
        os.close(master)
        listener.close()


@FAMILIES
def test_stderr_stays_quiet_when_nothing_is_waited_for(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    out = run("connect", "-z", "-w", "2s", KERNEL, "7399")  # refused: nothing to wait for
    assert out.returncode == 1
    assert b"SIG" not in out.stderr
