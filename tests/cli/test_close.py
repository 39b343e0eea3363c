"""`pytcp close`: --half, full, --reset on a live connection of a control endpoint (two
real stacks over a PairLink; no root), and the exit status that says whether the close
completed."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from click.testing import CliRunner

from pytcpcli.main import cli
from tests.cli.netcat import TIMEOUT
from tests.cli.test_inspect import Held, held, live
from tests.test_control import PairedStacks

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
