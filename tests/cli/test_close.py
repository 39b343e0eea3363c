"""`pytcp close`: --half, full, --reset on a live connection of a control endpoint (two
real stacks over a PairLink; no root), and the exit status that says whether the close
completed."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from pytcpcli.main import cli
from tests.cli.test_inspect import live
from tests.test_control import PairedStacks

__all__ = ["live"]  # the fixture, imported for pytest


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
