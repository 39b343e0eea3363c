"""pytcp against the tools it replaces: OpenBSD nc and socat, as client and as server,
over IPv4 and IPv6 (nc's connect and listen; socat into listen -e)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.cli.netcat import ADDRS, FAMILIES, PYTCP, STACK, TIMEOUT, start_listener

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

needs_nc = pytest.mark.skipif(shutil.which("nc") is None, reason="needs OpenBSD nc")
needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")


def wait_for_kernel_listener(port: int, family: int = 4) -> None:
    """Bounded wait until something listens on the kernel's port (of that family)."""
    for _ in range(TIMEOUT * 20):
        probe = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET)
        try:
            if family == 6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(("::" if family == 6 else "0.0.0.0", port))
        except OSError:
            return  # taken: the server is listening
        finally:
            probe.close()
        subprocess.run(["sleep", "0.05"], check=True)
    raise AssertionError(f"nothing listens on {port}")


def blob(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_nc
@FAMILIES
def test_pytcp_connect_to_nc_listener(netns, tmp_path: Path, family: int) -> None:
    kernel = ADDRS[family][0]
    upload, up_sum = blob(tmp_path, "up.bin", 1024 * 1024)
    reply, reply_sum = blob(tmp_path, "reply.bin", 256 * 1024)
    got = tmp_path / "got.bin"
    with open(reply, "rb") as stdin, open(got, "wb") as stdout:
        # -N: nc sends FIN at the end of its stdin, as pytcp does by default.
        server = subprocess.Popen(
            ["nc", f"-{family}", "-N", "-l", "9100"], stdin=stdin, stdout=stdout
        )
    try:
        wait_for_kernel_listener(9100, family)
        with open(upload, "rb") as stdin, open(tmp_path / "back.bin", "wb") as stdout:
            proc = subprocess.run(
                [PYTCP, "connect", kernel, "9100"],
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=TIMEOUT,
            )
        assert server.wait(TIMEOUT) == 0
    finally:
        server.kill()
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert sha(got) == up_sum
    assert sha(tmp_path / "back.bin") == reply_sum


@needs_nc
@FAMILIES
def test_nc_client_to_pytcp_listen(netns, tmp_path: Path, family: int) -> None:
    stack = ADDRS[family][1]
    upload, up_sum = blob(tmp_path, "up.bin", 2 * 1024 * 1024)
    reply, reply_sum = blob(tmp_path, "reply.bin", 100 * 1024)
    with open(reply, "rb") as stdin, open(tmp_path / "got.bin", "wb") as stdout:
        proc, _ = start_listener("9101", stdin=stdin, stdout=stdout)
    with open(upload, "rb") as stdin, open(tmp_path / "back.bin", "wb") as stdout:
        nc = subprocess.run(
            ["nc", "-N", stack, "9101"], stdin=stdin, stdout=stdout, timeout=TIMEOUT
        )
    assert nc.returncode == 0
    assert proc.wait(TIMEOUT) == 0
    assert sha(tmp_path / "got.bin") == up_sum
    assert sha(tmp_path / "back.bin") == reply_sum


@needs_socat
@FAMILIES
def test_pytcp_connect_to_socat_echo(netns, tmp_path: Path, family: int) -> None:
    upload, up_sum = blob(tmp_path, "up.bin", 2 * 1024 * 1024)
    listen = "TCP-LISTEN:9102,reuseaddr" if family == 4 else "TCP6-LISTEN:9102,reuseaddr,ipv6only=1"
    server = subprocess.Popen(["socat", listen, "EXEC:cat"])
    try:
        wait_for_kernel_listener(9102, family)
        with open(upload, "rb") as stdin, open(tmp_path / "back.bin", "wb") as stdout:
            proc = subprocess.run(
                [PYTCP, "connect", ADDRS[family][0], "9102"],
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=TIMEOUT,
            )
        assert server.wait(TIMEOUT) == 0
    finally:
        server.kill()
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert sha(tmp_path / "back.bin") == up_sum


@needs_socat
@FAMILIES
def test_socat_client_to_pytcp_listen_exec(netns, tmp_path: Path, family: int) -> None:
    upload, up_sum = blob(tmp_path, "up.bin", 1024 * 1024)
    proc, _ = start_listener("9103", "-e", "sha256sum", stdin=subprocess.DEVNULL)
    target = f"TCP:{STACK}:9103" if family == 4 else f"TCP6:[{ADDRS[6][1]}]:9103"
    with open(upload, "rb") as stdin:
        socat = subprocess.run(
            ["socat", "-t", "30", "STDIO", target],
            stdin=stdin,
            capture_output=True,
            timeout=TIMEOUT,
        )
    assert (socat.returncode, socat.stdout, socat.stderr) == (0, f"{up_sum}  -\n".encode(), b"")
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (0, b"")
