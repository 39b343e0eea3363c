"""How long `pytcp connect` stays in TIME-WAIT: briefly by default, 2·MSL with `--time-wait full`.

The stack always arms the full 2·MSL TIME-WAIT timer (RFC 9293 §3.6.1); the command
decides how long the process lingers to re-ACK a retransmitted FIN (DESIGN §3).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    TIMEOUT,
    KernelServer,
    StderrLines,
    pytcp,
    recv_all,
    run,
)

MSL_2 = 60.0  # seconds: TcpConfig's default MSL of 30 s, twice


def _upper_echo(conn: socket.socket) -> bytes:
    data = recv_all(conn)  # until pytcp's FIN: pytcp closes first and ends in TIME-WAIT
    conn.sendall(data.upper())
    return data


def _until_time_wait(err: StderrLines) -> str:
    """The -vv line announcing TIME-WAIT (bounded by the helper's timeout)."""
    while True:
        line = err._queue.get(timeout=TIMEOUT)
        assert line is not None, f"stderr ended before TIME-WAIT: {err.lines}"
        err.lines.append(line)
        if line.rstrip().endswith("-> TIME-WAIT"):
            return line


@pytest.mark.netns
@FAMILIES
def test_default_linger_exits_after_the_close(netns, family: int) -> None:
    server = KernelServer(7101, _upper_echo, family=family)
    try:
        proc = pytcp("connect", "-vv", ADDRS[family][0], "7101")
        out, err = proc.communicate(b"hello\n", timeout=TIMEOUT)
        assert (proc.returncode, out) == (0, b"HELLO\n")
        assert "-> TIME-WAIT" in err.decode()
        assert server.wait() == [b"hello\n"]
    finally:
        server.close()


@pytest.mark.netns
@FAMILIES
def test_time_wait_full_holds_the_connection_in_time_wait(netns, family: int) -> None:
    server = KernelServer(7102, _upper_echo, family=family)
    proc = pytcp("connect", "-vv", "--time-wait", "full", ADDRS[family][0], "7102")
    try:
        err = StderrLines(proc)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"hello\n")
        proc.stdin.close()
        line = _until_time_wait(err)
        conn_id = line.split()[1].rstrip(":")
        assert proc.stdout.read() == b"HELLO\n"  # stdout closed at the peer's FIN
        # Well past the 1 s default linger, the process still holds its connection ...
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        listed = run("inspect", "-s", "time-wait", "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = [c for c in json.loads(listed.stdout) if c["id"] == conn_id]
        assert row["state"] == "TIME-WAIT"
        (timer,) = [t for t in row["timers"] if t["name"] == "time-wait"]
        # ... and the stack's TIME-WAIT timer runs the whole 2·MSL, most of it still ahead.
        assert timer["armed"] is True
        assert 30 * 10**9 < timer["remaining"] <= MSL_2 * 10**9
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        server.close()
