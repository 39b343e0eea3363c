"""`pytcp send`: one shot against a peer stack (PairLink, no root) and --conn on a live
connection of a control endpoint, through CliRunner; argument handling."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner

from pytcpcli.app import App
from pytcpcli.main import cli
from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    PYTCP,
    TIMEOUT,
    KernelServer,
    recv_all,
    reset_by_peer,
)
from tests.cli.test_inspect import Held, held, live, paired_factory
from tests.test_control import PairedStacks

__all__ = ["held", "live"]  # fixtures, imported for pytest


def one_shot(tmp_path: Any, args: list[str], reply: bytes, stdin: bytes = b"") -> tuple[Any, Any]:
    peers: list[Any] = []
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    os.write(in_w, stdin)
    os.close(in_w)
    app = App(stack_factory=paired_factory(peers, reply), stdin_fd=in_r, stdout_fd=out_w)
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    try:
        result = runner.invoke(cli, ["send", "--time-wait", "0", *args], obj=app, prog_name="pytcp")
    finally:
        os.close(out_w)
        os.close(in_r)
    with os.fdopen(out_r, "rb") as f:
        stdout = f.read()
    for b, _peer in peers:
        b.close(linger=0)
    return result, (stdout, bytes(peers[0][1].received) if peers else None)


def test_echo_like_join_with_newline(tmp_path: Any) -> None:
    result, (stdout, received) = one_shot(
        tmp_path, ["10.77.0.1", "5000", "hello", "big  world"], b"reply\n"
    )
    assert result.exit_code == 0, result.output
    assert received == b"hello big  world\n"
    assert stdout == b"reply\n"
    assert result.output == ""


def test_no_newline(tmp_path: Any) -> None:
    result, (stdout, received) = one_shot(tmp_path, ["-n", "10.77.0.1", "5000", "ping"], b"")
    assert (result.exit_code, received, stdout) == (0, b"ping", b"")


def test_file_and_stdin(tmp_path: Any) -> None:
    blob = bytes(range(256)) * 1000
    path = tmp_path / "blob"
    path.write_bytes(blob)
    result, (stdout, received) = one_shot(
        tmp_path, ["--file", str(path), "10.77.0.1", "5000"], b"ok"
    )
    assert (result.exit_code, received, stdout) == (0, blob, b"ok")
    result, (stdout, received) = one_shot(tmp_path, ["10.77.0.1", "5000"], b"", stdin=b"from stdin")
    assert (result.exit_code, received) == (0, b"from stdin")


def test_verbose_reports_counts(tmp_path: Any) -> None:
    result, _ = one_shot(tmp_path, ["-v", "10.77.0.1", "5000", "abc"], b"xyz")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("pytcp: connected to 10.77.0.1 port 5000 from 10.77.0.2 port ")
    assert lines[1].startswith("pytcp: 4 bytes sent, 3 received, srtt ")
    assert lines[1].endswith(", 0 retransmissions")


def test_refused(tmp_path: Any) -> None:
    result, _ = one_shot(tmp_path, ["10.77.0.1", "5001", "x"], b"")
    assert result.exit_code == 1
    assert result.output == (
        "pytcp: connection to 10.77.0.1 port 5001 refused; check that something listens there\n"
    )


def test_conn_queues_on_a_live_connection(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = runner.invoke(cli, ["send", "--conn", paired.client.id, "queued", "text"])
    assert result.exit_code == 0
    assert result.output == f"12 bytes queued on {paired.client.id}\n"
    paired.pause()
    paired.loop.run_until(lambda: paired.server.readable == 17, 5)
    assert paired.server.recv(100) == b"hello" + b"queued text\n"  # after the fixture's


def test_conn_takes_every_argument_as_data(live: tuple[PairedStacks, CliRunner]) -> None:
    """With --conn there is no HOST PORT: what looks like one is DATA, as --help, the man
    page and the exit statuses say (no promise of a usage error for it)."""
    paired, runner = live
    result = runner.invoke(cli, ["send", "--conn", paired.client.id, "10.77.0.1", "7", "hi"])
    assert (result.exit_code, result.output) == (0, f"15 bytes queued on {paired.client.id}\n")
    paired.pause()
    paired.loop.run_until(lambda: paired.server.readable == 20, 5)
    assert paired.server.recv(100) == b"hello" + b"10.77.0.1 7 hi\n"
    help_text = " ".join(runner.invoke(cli, ["send", "--help"], prog_name="pytcp").output.split())
    assert "Usage: pytcp send [OPTIONS] (HOST PORT | --conn ID) [DATA...]" in help_text
    assert "With --conn ID there is no HOST PORT: every argument is DATA" in help_text
    assert "every argument is then DATA (there is no HOST PORT)" in help_text
    from pytcpcli.commands.send import EXAMPLES, EXIT_STATUS

    assert "HOST PORT with --conn" not in " ".join(EXIT_STATUS.split())
    assert "--conn every argument is DATA" in " ".join(EXAMPLES.split())


def test_conn_write_side_closed_exits_1(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    assert runner.invoke(cli, ["close", "--half", paired.client.id]).exit_code == 0
    result = runner.invoke(cli, ["send", "--conn", paired.client.id, "late"])
    assert result.exit_code == 1
    assert result.output == (f"pytcp: {paired.client.id} is FIN-WAIT-2: its write side is closed\n")


def test_conn_unknown_id(tmp_path: Any) -> None:
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(cli, ["send", "--conn", "77.7", "x"])
    assert result.exit_code == 1
    assert result.output == "pytcp: no live connection matches '77.7'; `pytcp inspect` lists them\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send"], "pytcp: give HOST PORT [DATA...], or --conn ID [DATA...]\n"),
        (["send", "10.77.0.1"], "pytcp: give HOST PORT [DATA...], or --conn ID [DATA...]\n"),
        (
            ["send", "--conn", "1.1", "--tun", "x", "data"],
            "pytcp: --conn uses the other process's stack; stack options do not apply\n",
        ),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args, prog_name="pytcp")
    assert (result.exit_code, result.output) == (2, message)


def test_bad_port_and_data_with_file(tmp_path: Any) -> None:
    result = CliRunner().invoke(cli, ["send", "10.77.0.1", "99999"], prog_name="pytcp")
    assert result.exit_code == 2
    assert "99999 is out of range; a port is 1-65535" in result.output
    path = tmp_path / "f"
    path.write_bytes(b"x")
    result, _ = one_shot(tmp_path, ["--file", str(path), "10.77.0.1", "5000", "extra"], b"")
    assert (result.exit_code, result.output) == (2, "pytcp: give DATA or --file, not both\n")


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_send_conn_reaches_the_kernel(held: Held) -> None:
    conn_id = held.conn_id()
    out = held.run("send", "--conn", conn_id, "from", "another process")
    assert (out.returncode, out.stdout) == (0, f"21 bytes queued on {conn_id}\n".encode())
    got = b""
    while len(got) < 21:
        chunk = held.kernel.recv(100)
        assert chunk
        got += chunk
    assert got == b"from another process\n"
    blob = bytes(range(256)) * 800  # larger than one request: sent in chunks
    out = held.run("send", "--conn", conn_id, "--file", "/dev/stdin", input=blob)
    assert (out.returncode, out.stdout) == (0, f"{len(blob)} bytes queued on {conn_id}\n".encode())
    got = b""
    while len(got) < len(blob):
        chunk = held.kernel.recv(65536)
        assert chunk
        got += chunk
    assert got == blob


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_send_conn_after_half_close_fails(held: Held) -> None:
    conn_id = held.conn_id()
    assert held.run("close", "--half", conn_id).returncode == 0
    out = held.run("send", "--conn", conn_id, "late")
    assert out.returncode == 1
    assert out.stderr == f"pytcp: {conn_id} is FIN-WAIT-2: its write side is closed\n".encode()


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_netns_one_shot_against_a_kernel_server(netns: Any, tmp_path: Any, family: int) -> None:
    def handler(conn: socket.socket) -> bytes:
        data = recv_all(conn)
        conn.sendall(data.upper())
        return data

    server = KernelServer(7001, handler, family=family)
    kernel = ADDRS[family][0] if family == 4 else f"[{ADDRS[family][0]}]"  # as users type it
    try:
        out = subprocess.run(
            [PYTCP, "send", "-v", kernel, "7001", "shout", "this"],
            capture_output=True, timeout=TIMEOUT,
            env={**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path)},
        )  # fmt: skip
        assert server.wait() == [b"shout this\n"]
    finally:
        server.close()
    assert (out.returncode, out.stdout) == (0, b"SHOUT THIS\n")
    report = out.stderr.decode().splitlines()[-1]
    assert report.startswith("pytcp: 11 bytes sent, 11 received, srtt ")
    assert report.endswith(", 0 retransmissions")


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_netns_one_shot_to_an_echo_server_larger_than_the_windows(
    netns: Any, family: int, tmp_path: Any
) -> None:
    """The echo comes back while we still send: both directions must move together."""
    KERNEL, _STACK = ADDRS[family]

    def echo(conn: socket.socket) -> int:
        total = 0
        while chunk := conn.recv(65536):
            conn.sendall(chunk)
            total += len(chunk)
        return total

    blob = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)  # 3 MiB
    path = tmp_path / "blob"
    path.write_bytes(blob)
    server = KernelServer(7002, echo, family=family)
    try:
        out = subprocess.run(
            [PYTCP, "send", "--file", str(path), KERNEL, "7002"],
            capture_output=True, timeout=TIMEOUT,
            env={**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path / "rt")},
        )  # fmt: skip
        assert server.wait() == [len(blob)]
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(blob).digest()


def _flood(conn: socket.socket) -> str:
    """Read the request to its FIN, then answer with more than any pipe holds."""
    recv_all(conn)
    try:
        conn.sendall(os.urandom(4 * 1024 * 1024))
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    # pytcp's window and the send buffer may hold it all before the RST comes (a
    # loaded machine): sendall returning is no answer, the RST itself is.
    return "reset" if reset_by_peer(conn) else "sent"


@pytest.mark.netns
@pytest.mark.parametrize(
    ("redirect", "message"),
    [
        (">&-", b"pytcp: stdout was closed before every received byte was written\n"),
        (
            ">/dev/full",
            b"pytcp: cannot write to stdout: No space left on device; received bytes were lost\n",
        ),
    ],
)
@FAMILIES
def test_netns_stdout_trouble_is_stdout_trouble(
    netns: Any, family: int, redirect: str, message: bytes
) -> None:
    KERNEL, _STACK = ADDRS[family]
    # connect's rules: never exit 0 when the reply was not written, never "connection failed".
    server = KernelServer(7031, _flood, family=family)
    for command in ("send -v", "connect"):
        out = subprocess.run(
            f"echo hi | {PYTCP} {command} {KERNEL} 7031 {redirect}",
            shell=True,
            capture_output=True,
            timeout=TIMEOUT,
        )
        lines = out.stderr.splitlines(keepends=True)
        assert (out.returncode, lines[-1]) == (1, message), (command, out.stderr)
        if command == "send -v":
            # -v counts what was received and says how much of it reached stdout.
            assert re.fullmatch(
                rb"pytcp: \d+ bytes sent, \d+ received \(0 written to stdout\), .*\n", lines[-2]
            ), lines
    assert server.wait(2) == ["reset", "reset"]


@pytest.mark.netns
@FAMILIES
def test_netns_send_into_a_reader_that_leaves(netns: Any, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(7032, _flood, family=family)
    out = subprocess.run(
        f"{PYTCP} send {KERNEL} 7032 hi | head -c 1 | wc -c; "
        'echo "pytcp exit ${PIPESTATUS[0]}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert out.stdout == b"1\npytcp exit 1\n"
    assert out.stderr == b"pytcp: stdout was closed before every received byte was written\n"
    assert server.wait() == ["reset"]  # pytcp resets rather than pretend to read on


def test_a_name_with_several_addresses_tries_each_in_turn(tmp_path: Any) -> None:
    # nc's habit: the first address does not answer (-w per address), the next does;
    # -v says which failed and which answered.
    peers: list[Any] = []
    out_r, out_w = os.pipe()
    app = App(
        stack_factory=paired_factory(peers, b"reply\n"),
        stdout_fd=out_w,
        resolver=lambda host: ["10.77.0.9", "10.77.0.1"],
    )
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    try:
        result = runner.invoke(
            cli, ["send", "-v", "-w", "300ms", "--time-wait", "0", "multi.test", "5000", "hi"],
            obj=app, prog_name="pytcp",
        )  # fmt: skip
    finally:
        os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        stdout = f.read()
    for b, _peer in peers:
        b.close(linger=0)
    assert (result.exit_code, stdout) == (0, b"reply\n"), result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "pytcp: connection to 10.77.0.9 port 5000 timed out after 300ms; check the address "
        "and route, or raise -w; trying the next address of multi.test"
    )
    assert lines[1].startswith("pytcp: connected to 10.77.0.1 port 5000 from 10.77.0.2 ")
