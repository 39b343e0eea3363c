"""The TUN interface of a pytcp process is gone after it ends: normally, by an exception,
by SIGTERM and by SIGKILL (a non-persistent TUN vanishes with its file descriptor)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Netns
from tests.integration.test_tun import link_info, wait_gone

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    from stack.api import Stack
    how = sys.argv[1]
    with Stack() as stack:
        listener = stack.listen(5000)
        print(stack.tun_name, stack.address, flush=True)
        sock = listener.accept(timeout=30)
        assert sock is not None
        sock.settimeout(30)
        print("accepted", sock.recv(5).decode(), flush=True)
        if how == "exception":
            raise RuntimeError("boom")
        if how == "normal":
            sock.sendall(b"bye")
        else:
            stack.run_until(lambda: False, 60)  # until the test's signal
    """
)


@pytest.mark.netns
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["normal", "exception", "SIGTERM", "SIGKILL"])
def test_tun_gone_when_pytcp_process_ends(netns: Netns, how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["pytcp0", "10.77.0.2"]
        assert link_info(netns, "pytcp0") is not None
        with socket.create_connection(("10.77.0.2", 5000), timeout=30) as k:
            k.sendall(b"hello")
            assert proc.stdout.readline().split() == ["accepted", "hello"]
            if how == "normal":
                # Leaving `with Stack()` closes the socket cleanly: data, then FIN.
                received = b""
                while chunk := k.recv(100):
                    received += chunk
                assert received == b"bye"
            elif how == "exception":
                # Leaving it by an exception resets the connections.
                with pytest.raises(ConnectionResetError):
                    k.recv(100)
            else:
                proc.send_signal(getattr(signal, how))
            proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_gone(netns, "pytcp0")
    expected = {"normal": 0, "exception": 1, "SIGTERM": -15, "SIGKILL": -9}[how]
    assert proc.returncode == expected
    if how == "exception":
        assert proc.stderr is not None
        assert proc.stderr.read().splitlines()[-1] == "RuntimeError: boom"
