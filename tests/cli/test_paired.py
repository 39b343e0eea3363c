"""`pytcp connect` through CliRunner over an in-memory link to a second stack: the whole
relay on the real stack without root or TUN (the netns tests do the same against Linux).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pytcpcli.app import App, tcp_config
from pytcpcli.main import cli
from stack.api import Socket, Stack
from stack.io.link import PairLink
from stack.io.loop import Loop


class Peer:
    """Stack B's server, driven by callbacks in the loop pytcp runs: it answers
    transform(everything received) and then FIN, after the client's FIN."""

    def __init__(self, stack: Stack, port: int, transform: Callable[[bytes], bytes]) -> None:
        self.transform = transform
        self.received = bytearray()
        self.listener = stack.listen(port)
        self.listener.on_change(self._accept)
        self.socks: list[Socket] = []
        self.answered = False

    def _accept(self) -> None:
        while (sock := self.listener.accept(timeout=0)) is not None:
            sock.setblocking(False)
            self.socks.append(sock)
            reply = bytearray()
            sock.on_change(functools.partial(self._pump, sock, reply))

    def _pump(self, sock: Socket, reply: bytearray) -> None:
        while not self.answered:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            if not data:  # the client's FIN: the answer is due
                reply += self.transform(bytes(self.received))
                self.answered = True
                break
            self.received += data
        while reply:
            try:
                del reply[: sock.send(bytes(reply[:65536]))]
            except BlockingIOError:
                return
        if sock.state == "CLOSE-WAIT":
            sock.shutdown()


@pytest.fixture
def paired() -> Iterator[tuple[App, list[Peer]]]:
    peers: list[Peer] = []
    stacks: list[Stack] = []

    def factory(opts: Any, tracer: Any) -> Stack:
        a_link, b_link = PairLink.pair()
        loop = Loop()
        b = Stack(link=b_link, loop=loop, addr="10.77.0.1", gateway="10.77.0.2/24", seed=2)
        b.open()
        stacks.append(b)
        peers.append(Peer(b, 7000, bytes.upper))
        return Stack(
            link=a_link, loop=loop, addr="10.77.0.2", gateway="10.77.0.1/24", seed=1,
            tracer=tracer, config=tcp_config(opts), impair=opts.impair,
        )  # fmt: skip

    yield App(stack_factory=factory, serve_control=False), peers
    for b in stacks:
        b.close(linger=0)


def run_connect(app: App, tmp_path: Path, data: bytes, *args: str) -> tuple[Any, bytes]:
    (tmp_path / "in").write_bytes(data)
    stdin = os.open(tmp_path / "in", os.O_RDONLY)
    stdout = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    app.stdin_fd, app.stdout_fd = stdin, stdout
    try:
        result = CliRunner().invoke(
            cli, ["connect", *args, "10.77.0.1", "7000"], obj=app, prog_name="pytcp",
            catch_exceptions=False,
        )  # fmt: skip
    finally:
        os.close(stdin)
        os.close(stdout)
    return result, (tmp_path / "out").read_bytes()


def test_bytes_both_ways_from_and_to_regular_files(
    paired: tuple[App, list[Peer]], tmp_path: Path
) -> None:
    app, peers = paired
    data = os.urandom(2 * 1024 * 1024) + b"tail\n"
    result, out = run_connect(app, tmp_path, data, "--time-wait", "0")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert bytes(peers[0].received) == data
    assert hashlib.sha256(out).digest() == hashlib.sha256(data.upper()).digest()


def test_verbose_and_state_changes(paired: tuple[App, list[Peer]], tmp_path: Path) -> None:
    app, _ = paired
    result, out = run_connect(app, tmp_path, b"abc", "-vv", "--time-wait", "0")
    assert (result.exit_code, out) == (0, b"ABC")
    lines = result.stderr.splitlines()
    pid = os.getpid()
    assert [line.split(" ", 1)[1] for line in lines if f" {pid}.1: " in line] == [
        f"{pid}.1: CLOSED -> SYN-SENT",
        f"{pid}.1: SYN-SENT -> ESTABLISHED",
        f"{pid}.1: ESTABLISHED -> FIN-WAIT-1",
        f"{pid}.1: FIN-WAIT-1 -> FIN-WAIT-2",
        f"{pid}.1: FIN-WAIT-2 -> TIME-WAIT",
    ]
    said = [line for line in lines if line.startswith("pytcp: ")]
    assert said[0] == (
        f"pytcp: connected to 10.77.0.1 port 7000 from 10.77.0.2 port "
        f"{said[0].split(' port ')[2].split(' ')[0]} (id {pid}.1)"
    )
    assert said[1] == "pytcp: the peer closed its side of the connection"
    assert said[2].startswith("pytcp: 3 bytes sent, 3 received in ")


def test_crlf_and_send_only(paired: tuple[App, list[Peer]], tmp_path: Path) -> None:
    app, peers = paired
    result, out = run_connect(app, tmp_path, b"a\nb\n", "-C", "--send-only", "--time-wait", "0")
    assert (result.exit_code, out) == (0, b"")
    assert bytes(peers[0].received) == b"a\r\nb\r\n"


def test_option_flags_reach_the_syn(paired: tuple[App, list[Peer]], tmp_path: Path) -> None:
    app, _ = paired
    flags = ["--trace", "--mss", "1000", "--no-sack", "--no-wscale", "--no-timestamps"]
    result, out = run_connect(app, tmp_path, b"x", *flags, "--cc", "cubic", "--time-wait", "0")
    assert (result.exit_code, out) == (0, b"X")
    syn = next(line for line in result.stderr.splitlines() if "Flags [S]," in line)
    assert syn.endswith(", options [mss 1000], length 0")
    assert syn.split(" ")[1:3] == ["Out", "10.77.0.2." + syn.split(" ")[2].rsplit(".", 1)[1]]
    synack = next(line for line in result.stderr.splitlines() if "Flags [S.]," in line)
    assert synack.split(" ")[1:4] == ["In", "", "10.77.0.1.7000"]


def test_trace_shows_drops_of_corrupted_segments(
    paired: tuple[App, list[Peer]], tmp_path: Path
) -> None:
    app, peers = paired
    data = os.urandom(64 * 1024)
    args = ["--trace", "--impair", "corrupt=5%,seed=3", "--time-wait", "0"]
    result, out = run_connect(app, tmp_path, data, *args)
    assert (result.exit_code, out) == (0, data.upper())
    assert bytes(peers[0].received) == data
    drops = [line.split(" ", 1)[1] for line in result.stderr.splitlines() if " drop" in line]
    assert "drop: bad-checksum" in drops  # a flipped bit: caught by the TCP checksum
    assert all(re.fullmatch(r"drop( \d+\.\d+)?: [a-z-]+", line) for line in drops), drops


def test_verbose_says_once_when_the_kernel_refuses_tso(tmp_path: Path) -> None:
    # A TUN whose kernel refuses GSO writes (tests/test_offload.py): every byte still
    # arrives, cut into segments in Python, and -v says once that TSO went off.
    from tests.test_offload import RefusingTun

    peers: list[Peer] = []
    stacks: list[Stack] = []
    links: list[RefusingTun] = []

    def factory(opts: Any, tracer: Any) -> Stack:
        a_link, b_link = PairLink.pair()
        loop = Loop()
        b = Stack(link=b_link, loop=loop, addr="10.77.0.1", gateway="10.77.0.2/24", seed=2)
        b.open()
        stacks.append(b)
        peers.append(Peer(b, 7000, bytes.upper))
        links.append(RefusingTun(inner=a_link))
        return Stack(link=links[-1], loop=loop, addr="10.77.0.2", gateway="10.77.0.1/24",
                     seed=1, tracer=tracer, config=tcp_config(opts))  # fmt: skip

    app = App(stack_factory=factory, serve_control=False)
    data = os.urandom(300_000)
    try:
        result, out = run_connect(app, tmp_path, data, "-v", "--time-wait", "0")
    finally:
        for b in stacks:
            b.close(linger=0)
        for link in links:
            link.close()
    assert result.exit_code == 0
    assert bytes(peers[0].received) == data and out == data.upper()
    said = [line for line in result.stderr.splitlines() if "TSO" in line]
    assert said == ["pytcp: the kernel refused a TSO write on t0 (EINVAL (Invalid argument)): "
                    "TSO off, segments cut in Python from now on"]  # fmt: skip
    assert links[0].attempts == 1
