"""`pytcp close`: --half, full, --reset on a live connection of a control endpoint (two
real stacks over a PairLink; no root), and the exit status that says whether the close
completed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from pytcpcli.main import cli
from tests.cli.netcat import ADDRS, FAMILIES, PYTCP, TIMEOUT, KernelServer, StderrLines, pytcp
from tests.cli.test_inspect import Held, held, live
from tests.test_control import PairedStacks, _end_owner_when

__all__ = ["held", "live"]  # fixtures, imported for pytest


def test_half_close_completes_and_the_peer_can_still_send(
    live: tuple[PairedStacks, CliRunner],
) -> None:
    paired, runner = live
    result = runner.invoke(cli, ["close", "--half", paired.client.id])
    assert (result.exit_code, result.output) == (0, f"{paired.client.id} FIN-WAIT-2\n")
    paired.pause()
    assert paired.server.recv(10) == b"hello"  # the fixture's data, then
    assert paired.server.recv(10) == b""  # EOF at the peer
    paired.server.sendall(b"after")
    paired.loop.run_until(lambda: paired.client.readable == 5, 5)
    assert paired.client.recv(10) == b"after"


def test_full_close_waits_for_the_peer(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    # The peer never closes: the close cannot complete within -w.
    result = runner.invoke(cli, ["close", "-w", "300ms", paired.client.id])
    assert result.exit_code == 1
    assert result.output == (
        f"{paired.client.id} FIN-WAIT-2\n"
        f"pytcp: the full close of {paired.client.id} did not complete within 300ms "
        "(still FIN-WAIT-2); raise -w to wait longer\n"
    )
    paired.pause()
    assert paired.server.recv(10) == b"hello"  # read all, or closing would reset
    paired.server.close()  # now the peer closes: our side reaches TIME-WAIT
    paired.loop.run_until(lambda: paired.client.state == "TIME-WAIT", 5)
    paired.run_in_background()
    result = runner.invoke(cli, ["close", paired.client.id])
    assert (result.exit_code, result.output) == (0, f"{paired.client.id} TIME-WAIT\n")


def test_reset(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = runner.invoke(cli, ["close", "--reset", paired.client.id])
    assert (result.exit_code, result.output) == (0, f"{paired.client.id} CLOSED\n")
    paired.pause()
    paired.loop.run_until(lambda: paired.server.state == "CLOSED", 5)
    assert isinstance(paired.server.error, ConnectionResetError)


def test_reset_when_the_owner_exits_at_once(live: tuple[PairedStacks, CliRunner]) -> None:
    """A `pytcp connect` whose connection is reset exits: close does not take the owner's
    going away for a failure."""
    paired, runner = live
    paired.pause()
    _end_owner_when(paired, lambda: paired.client.state == "CLOSED")
    paired.run_in_background()
    result = runner.invoke(cli, ["close", "--reset", paired.client.id])
    assert (result.exit_code, result.output) == (0, f"{paired.client.id} CLOSED\n")


def test_full_close_when_the_owner_exits_in_time_wait(
    live: tuple[PairedStacks, CliRunner],
) -> None:
    """The owner exits as its connection reaches TIME-WAIT, before close looks again: the
    process hangs up on close's next question, then is gone, and the close completed."""
    paired, runner = live
    paired.pause()
    assert paired.server.recv(10) == b"hello"

    def peer_closes_on_eof() -> None:
        if paired.server.at_eof and not paired.server.closed:
            paired.server.close()

    paired.loop.add_hook(peer_closes_on_eof)
    _end_owner_when(paired, lambda: paired.client.state == "TIME-WAIT")
    paired.run_in_background()
    result = runner.invoke(cli, ["close", "-w", "10s", paired.client.id])
    assert (result.exit_code, result.output) == (0, f"{paired.client.id} CLOSED\n")


def test_unknown_and_usage(tmp_path: Any) -> None:
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(cli, ["close", "5.5"], prog_name="pytcp")
    assert (result.exit_code, result.output) == (
        1,
        "pytcp: no live connection matches '5.5'; `pytcp inspect` lists them\n",
    )
    result = runner.invoke(cli, ["close", "--half", "--reset", "5.5"], prog_name="pytcp")
    assert (result.exit_code, result.output) == (
        2,
        "pytcp: --half and --reset exclude each other; pick one\n",
    )


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_half_close_kernel_reads_eof_and_still_sends(held: Held) -> None:
    conn_id = held.conn_id()
    out = held.run("close", "--half", conn_id)
    assert (out.returncode, out.stdout) == (0, f"{conn_id} FIN-WAIT-2\n".encode())
    assert held.kernel.recv(100) == b""  # EOF: our FIN
    held.kernel.sendall(b"still heard\n")
    assert held.read_stdout(12) == b"still heard\n"  # the listener keeps writing it out
    entry = json.loads(held.run("inspect", conn_id, "--json").stdout)
    assert entry["state"] == "FIN-WAIT-2"
    assert entry["close"] == {
        "fin_sent": True, "fin_acked": True, "fin_received": False, "app_closed": False,
    }  # fmt: skip


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_reset_gives_econnreset_at_the_kernel(held: Held) -> None:
    conn_id = held.conn_id()
    out = held.run("close", "--reset", conn_id)
    assert (out.returncode, out.stdout) == (0, f"{conn_id} CLOSED\n".encode())
    with pytest.raises(ConnectionResetError):
        held.kernel.recv(100)
    assert conn_id not in [e["id"] for e in held.entries()]


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_full_close_completes_when_the_kernel_closes(held: Held) -> None:
    conn_id = held.conn_id()

    # The kernel closes as soon as it reads our FIN, so the close completes (TIME-WAIT).
    def close_on_eof() -> None:
        held.kernel.recv(100)
        held.kernel.close()

    closer = threading.Thread(target=close_on_eof)
    closer.start()
    out = held.run("close", "-w", "10s", conn_id)
    closer.join(TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout in (f"{conn_id} TIME-WAIT\n".encode(), f"{conn_id} CLOSED\n".encode())


# --------------------------------------------------------------------------- netns: connect owns it


class Owner:
    """A `pytcp connect -v` subprocess (stdin held open) and its private runtime dir."""

    def __init__(self, port: int, env: dict[str, str], host: str = "10.77.0.1") -> None:
        self.env = env
        self.proc = pytcp("connect", "-v", host, str(port), env=env)
        self.err = StderrLines(self.proc)

    def conn_id(self, state: str) -> str:
        """The ID of its connection once it is listed in `state` (bounded)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            out = self.run("inspect", "--json")
            for e in json.loads(out.stdout or b"[]"):
                if e["pid"] == self.proc.pid and e["state"] == state:
                    return str(e["id"])
            time.sleep(0.05)
        raise AssertionError(f"pytcp connect never listed a connection in {state}")

    def run(self, *args: str) -> Any:
        return subprocess.run([PYTCP, *args], capture_output=True, timeout=TIMEOUT, env=self.env)

    def finish(self) -> int:
        """Its exit status (killed if it outlives the test's bound)."""
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(TIMEOUT)


@pytest.fixture
def owner_env(netns: Any, tmp_path: Any) -> Iterator[dict[str, str]]:
    yield {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path / "rt")}


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_netns_reset_of_a_connect_that_exits(owner_env: dict[str, str], family: int) -> None:
    kernel = ADDRS[family][0]
    errors: list[BaseException] = []

    def reads_until_reset(conn: socket.socket) -> bytes:
        try:
            return conn.recv(100)
        except OSError as e:
            errors.append(e)
            return b"reset"

    server = KernelServer(7100, reads_until_reset, family=family)
    owner = Owner(7100, owner_env, host=kernel)
    try:
        conn_id = owner.conn_id("ESTABLISHED")
        out = owner.run("close", "--reset", conn_id)
        assert (out.returncode, out.stdout, out.stderr) == (0, f"{conn_id} CLOSED\n".encode(), b"")
        assert server.wait() == [b"reset"]
        assert [type(e) for e in errors] == [ConnectionResetError]
    finally:
        server.close()
        owner.finish()


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_netns_full_close_of_a_connect_that_exits(owner_env: dict[str, str], family: int) -> None:
    kernel = ADDRS[family][0]

    def closes_on_eof(conn: socket.socket) -> bytes:
        data = conn.recv(100)  # b"": our FIN
        conn.close()
        return data

    server = KernelServer(7101, closes_on_eof, family=family)
    owner = Owner(7101, owner_env, host=kernel)
    try:
        conn_id = owner.conn_id("ESTABLISHED")
        out = owner.run("close", "-w", "20s", conn_id)
        assert out.returncode == 0, out.stderr
        assert out.stdout in (f"{conn_id} TIME-WAIT\n".encode(), f"{conn_id} CLOSED\n".encode())
        assert server.wait() == [b""]
    finally:
        server.close()
        owner.finish()


@pytest.mark.netns
@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", [[], ["--reset"]])
def test_netns_close_in_syn_sent(owner_env: dict[str, str], how: list[str]) -> None:
    # 10.77.0.3 is nobody: the kernel (no forwarding) drops the SYNs, so it stays SYN-SENT.
    owner = Owner(7102, owner_env, host="10.77.0.3")
    try:
        conn_id = owner.conn_id("SYN-SENT")
        out = owner.run("close", *how, conn_id)
        assert (out.returncode, out.stdout, out.stderr) == (0, f"{conn_id} CLOSED\n".encode(), b"")
        assert owner.finish() != 0  # its connection failed: connect reports that
    finally:
        owner.finish()
