"""Hostile control clients at the installed `pytcp listen`, in a namespace (issue 14).

A kernel client holds a live connection to `pytcp listen` while the test, as any local
process of the same user could, sends the control socket what no `pytcp` client sends:
nesting, an endless line, bytes that are not UTF-8, half a line, requests it never
reads the answers of, a hundred idle connections. Every case gets one error line (or,
for the client that does not read, a hang-up), each is counted in `inspect --host`, the
connection carries data both ways afterwards, and `pytcp inspect` answers throughout;
when the process cannot answer (stopped), `inspect` says so and exits 1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

import pytest

from tests.cli.netcat import TIMEOUT, connect_kernel, run, start_listener

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

PORT = 7600


def ask(path: str, payload: bytes) -> list[dict[str, Any]]:
    """Send `payload` on a fresh control connection; every line until the hang-up."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(TIMEOUT)
        s.connect(path)
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):  # answered, hung up on (too large)
            pass
        buf = b""
        try:
            while chunk := s.recv(1 << 16):
                buf += chunk
                if buf.endswith(b"\n") and payload.endswith(b"\n"):
                    break  # one answer per line sent: the test sends one line
        except ConnectionResetError:  # after the answer: it hung up with our bytes unread
            pass
    return [json.loads(line) for line in buf.splitlines()]


def codes(replies: list[dict[str, Any]]) -> list[str]:
    return [r["error"]["code"] if not r["ok"] else "ok" for r in replies]


def test_hostile_control_clients_get_errors_and_the_connection_goes_on(netns: Any) -> None:
    proc, _err = start_listener(str(PORT))
    assert proc.stdin is not None and proc.stdout is not None
    path = os.path.join(os.environ["PYTCP_RUNTIME_DIR"], f"{proc.pid}.sock")
    kernel = connect_kernel(PORT)
    try:
        kernel.sendall(b"before\n")
        assert proc.stdout.read(7) == b"before\n"
        assert codes(ask(path, b"[" * 1000 + b"\n")) == ["too-deep"]  # it was a RecursionError
        assert codes(ask(path, b'{"a":' * 1000 + b"\n")) == ["too-deep"]
        assert codes(ask(path, b'{"v":1,"op":"\xff\xfe"}\n')) == ["bad-json"]
        assert codes(ask(path, b'{"v":true,"op":"list"}\n')) == ["bad-version"]
        (unknown,) = ask(path, b'{"v":1,"op":"' + b"a" * 200_000 + b'"}\n')
        assert unknown["error"]["code"] == "unknown-op" and len(unknown["error"]["message"]) < 200
        # A line that never ends: answered once it passes 256 KiB, then hung up on.
        assert codes(ask(path, b"x" * (1 << 20))) == ["too-large"]
        # Half a line, then silence: told so when the idle timeout (5 s) ends it.
        (half,) = ask(path, b'{"v":1,"op":"li')
        assert half["error"] == {
            "code": "client-timeout",
            "message": "an incomplete request (no newline) for 5s: hung up",
        }
        # Requests whose answers are never read: not read either, then cut off (5 s
        # without progress); what it could push stays in the kernel's socket buffers.
        with socket.socket(socket.AF_UNIX) as greedy:
            greedy.connect(path)
            greedy.settimeout(TIMEOUT)
            request = b'{"v":1,"op":"list"}\n' * 1000
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for _ in range(10_000):  # bounded: the hang-up comes within seconds
                    greedy.sendall(request)
        # A hundred idle clients: the oldest make room, `inspect` still answers at once.
        idle = [socket.socket(socket.AF_UNIX) for _ in range(100)]
        for s in idle:
            s.connect(path)
        listed = run("inspect", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [e["state"] for e in json.loads(listed.stdout)] == ["ESTABLISHED"]
        for s in idle:
            s.close()
        hosts = run("inspect", "--host", "--json")
        assert hosts.returncode == 0, hosts.stderr
        (host,) = json.loads(hosts.stdout)
        counters = host["control"]["counters"]
        assert counters["too-deep"] == 2 and counters["bad-json"] == 1
        assert counters["bad-version"] == 1 and counters["unknown-op"] == 1
        assert counters["too-large"] == 1 and counters["client-timeout"] >= 1
        assert counters["client-stalled"] == 1 and counters["client-evicted"] >= 36
        # The connection never noticed.
        kernel.sendall(b"after\n")
        assert proc.stdout.read(6) == b"after\n"
        proc.stdin.write(b"reply\n")
        proc.stdin.flush()
        assert kernel.recv(100) == b"reply\n"
        # A process that cannot answer (stopped): the list says so and exits 1.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for args in (("inspect",), ("inspect", "--host"), ("inspect", "--json")):
                stopped = run(*args)
                assert stopped.returncode == 1, (args, stopped)
                assert stopped.stderr == (
                    f"pytcp: warning: process {proc.pid} did not answer within 2s\n".encode()
                ), args
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert run("inspect").returncode == 0
    finally:
        kernel.close()
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
