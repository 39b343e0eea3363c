"""`pytcp inspect`: argument handling, and the list/ID/--json/--watch views of a real
stack's live connection (two stacks over a PairLink; no root), through CliRunner."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from pytcpcli.app import App
from pytcpcli.commands.inspect import complete_connection_ids
from pytcpcli.main import cli
from stack.api import Stack
from stack.io.link import PairLink
from stack.io.loop import Loop
from tests.test_control import PairedStacks


@pytest.fixture
def live(tmp_path: Any) -> Iterator[tuple[PairedStacks, CliRunner]]:
    """A live connection served by a control endpoint, and a runner that finds it."""
    directory = str(tmp_path / "rt")
    paired = PairedStacks(directory)
    paired.client.sendall(b"hello")
    # Received and acknowledged (after the peer's delayed ACK): queues are empty.
    paired.loop.run_until(lambda: paired.client.info()["buffers"]["send_queued"] == 0, 5)
    paired.run_in_background()
    try:
        yield paired, CliRunner(env={"PYTCP_RUNTIME_DIR": directory})
    finally:
        paired.close()


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(cli, list(args), prog_name="pytcp", catch_exceptions=False)


def test_list_shows_the_connection(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = invoke(runner, "inspect")
    assert result.exit_code == 0
    header, row = result.output.splitlines()
    assert header.split() == [
        "ID", "STATE", "LOCAL", "REMOTE", "SEND-Q", "RECV-Q", "CWND", "SRTT", "RTO", "TIMERS",
    ]  # fmt: skip
    local = f"{paired.client.local[0]}:{paired.client.local[1]}"
    assert row.split()[:6] == [paired.client.id, "ESTABLISHED", local, "10.77.0.1:5000", "0", "0"]


def test_filters(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    assert invoke(runner, "inspect", "-s", "time-wait").output == "no live pytcp connections\n"
    assert invoke(runner, "inspect", "--port", "5001").output == "no live pytcp connections\n"
    out = invoke(runner, "inspect", "-s", "established", "--port", "5000").output
    assert out.splitlines()[1].split()[0] == paired.client.id


def test_id_view_has_every_section(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = invoke(runner, "inspect", paired.client.id)
    assert result.exit_code == 0
    titles = [ln for ln in result.output.splitlines() if ln and not ln.startswith(" ")]
    assert titles == [
        "Connection",
        "Send sequence space (relative to ISS; SND.WL1 to IRS)",
        "Receive sequence space (relative to IRS)",
        "Options",
        "Congestion",
        "RTT",
        "Buffers",
        "Counters",
        "Close",
        "Timers",
    ]
    lines = result.output.splitlines()
    assert "  state    ESTABLISHED" in lines
    # SND.NXT relative to ISS counts the SYN and the 5 bytes sent.
    (nxt,) = [ln.split() for ln in lines if ln.startswith("  SND.NXT")]
    assert nxt[2] == "6"
    timers = lines[lines.index("Timers") + 2 :]
    assert [t.split()[0] for t in timers] == [
        "retransmission", "syn", "delayed-ack", "persist", "keepalive", "time-wait", "fin-wait-2",
    ]  # fmt: skip


def test_json_by_unique_prefix(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = invoke(runner, "inspect", str(os.getpid()), "--json")
    assert result.exit_code == 0
    entry = json.loads(result.output)
    assert set(entry) == {
        "id", "pid", "tun", "state", "local", "remote", "send", "receive", "options",
        "congestion", "rtt", "buffers", "counters", "timers", "close",
    }  # fmt: skip
    assert entry["id"] == paired.client.id
    assert (entry["send"]["snd_nxt"] - entry["send"]["iss"] - 1) % 2**32 == 5
    listing = json.loads(invoke(runner, "inspect", "--json").output)
    assert [e["id"] for e in listing] == [paired.client.id]


def test_watch_redraws_count_times(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = invoke(runner, "inspect", paired.client.id, "--json", "--watch=0.01", "--count", "3")
    assert result.exit_code == 0
    frames = [json.loads(line) for line in result.output.splitlines()]
    assert [f["id"] for f in frames] == [paired.client.id] * 3


def test_unknown_id_exits_1(live: tuple[PairedStacks, CliRunner]) -> None:
    _paired, runner = live
    result = runner.invoke(cli, ["inspect", "999999999.7"], prog_name="pytcp")
    assert result.exit_code == 1
    assert result.output == (
        "pytcp: no live connection matches '999999999.7'; `pytcp inspect` lists them\n"
    )


def test_completion_lists_live_ids(live: tuple[PairedStacks, CliRunner], monkeypatch: Any) -> None:
    paired, _runner = live
    monkeypatch.setenv("PYTCP_RUNTIME_DIR", paired.control.directory)
    items = complete_connection_ids(None, None, str(os.getpid()))  # type: ignore[arg-type]
    assert [i.value for i in items] == [paired.client.id]
    assert items[0].help is not None and items[0].help.startswith("ESTABLISHED 10.77.0.2:")
    assert complete_connection_ids(None, None, "x") == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "--count", "2"], "pytcp: --count needs --watch\n"),
        (["inspect", "a", "b", "c"], "pytcp: give no argument, an ID, or HOST PORT\n"),
        (
            ["inspect", "1.2", "--port", "5"],
            "pytcp: -s and --port filter the list; they do not apply to ID\n",
        ),
        (
            ["inspect", "--data", "x"],
            "pytcp: --data is for a probe: pytcp inspect HOST PORT --data TEXT\n",
        ),
        (
            ["inspect", "10.77.0.1", "80", "--watch=1"],
            "pytcp: --watch, -s and --port do not apply to a probe\n",
        ),
    ],
)
def test_usage_errors(args: list[str], message: str, tmp_path: Any) -> None:
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(cli, args, prog_name="pytcp")
    assert (result.exit_code, result.output) == (2, message)


def test_empty_list(tmp_path: Any) -> None:
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = invoke(runner, "inspect")
    assert (result.exit_code, result.output) == (0, "no live pytcp connections\n")
    assert json.loads(invoke(runner, "inspect", "--json").output) == []


class ReplyingPeer:
    """Stack B's application: accept, read to EOF, answer `reply`, close (all from the
    loop's change callbacks, so it runs inside whatever drives the shared loop)."""

    def __init__(self, stack: Stack, port: int, reply: bytes) -> None:
        self.reply = reply
        self.received = bytearray()
        self.listener = stack.listen(port)
        self.listener.on_change(self._on_listener)
        self.sock: Any = None

    def _on_listener(self) -> None:
        if self.sock is None and self.listener.pending:
            self.sock = self.listener.accept(timeout=0)
            self.sock.setblocking(False)
            self.sock.on_change(self._on_sock)
            self._on_sock()

    def _on_sock(self) -> None:
        sock = self.sock
        if sock.closed:
            return
        while sock.readable:
            self.received += sock.recv(65536)
        if sock.at_eof:
            if self.reply:
                sock.send(self.reply)
            sock.close()


def paired_factory(peers: list[Any], reply: bytes) -> Any:
    """An App stack factory: stack A over a PairLink to a stack B that runs ReplyingPeer."""

    def factory(opts: Any, tracer: Any) -> Stack:
        a_link, b_link = PairLink.pair()
        loop = Loop()
        b = Stack(link=b_link, loop=loop, addr="10.77.0.1", gateway="10.77.0.2/24", seed=2)
        b.open()
        peers.append((b, ReplyingPeer(b, 5000, reply)))
        return Stack(link=a_link, loop=loop, addr="10.77.0.2", gateway="10.77.0.1/24",
                     seed=1, tracer=tracer)  # fmt: skip

    return factory


def test_probe_timeline_through_time_wait(tmp_path: Any) -> None:
    peers: list[Any] = []
    app = App(stack_factory=paired_factory(peers, b"pong\n"))
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(
        cli, ["inspect", "10.77.0.1", "5000", "--data", "ping\\n", "--json"], obj=app,
        prog_name="pytcp", catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert bytes(peers[0][1].received) == b"ping\n"
    states = [i["text"] for i in out["timeline"] if i["kind"] == "state"]
    assert states == [
        "CLOSED -> SYN-SENT",
        "SYN-SENT -> ESTABLISHED",
        "ESTABLISHED -> FIN-WAIT-1",
        "FIN-WAIT-1 -> FIN-WAIT-2",
        "FIN-WAIT-2 -> TIME-WAIT",
    ]
    segments = [i for i in out["timeline"] if i["kind"] != "state"]
    assert [s["kind"] for s in segments[:3]] == ["out", "in", "out"]  # the three-way handshake
    assert "Flags [S]" in segments[0]["text"] and "Flags [S.]" in segments[1]["text"]
    offsets = [i["offset"] for i in out["timeline"]]
    assert offsets == sorted(offsets) and offsets[0] == 0
    time_wait = next(i for i in out["timeline"] if i["text"] == "FIN-WAIT-2 -> TIME-WAIT")
    armed = [t["name"] for t in time_wait["timers"] if t["armed"]]
    assert "time-wait" in armed
    changed = {c[0] for c in time_wait["changes"]}
    assert {"state", "close.fin_received", "receive.rcv_nxt"} <= changed
    summary = out["summary"]
    assert summary["state"] == "TIME-WAIT"
    assert summary["counters"]["bytes_in"] == 5 and summary["counters"]["bytes_out"] == 5
    for b, _peer in peers:
        b.close(linger=0)


def test_probe_text_output(tmp_path: Any) -> None:
    peers: list[Any] = []
    app = App(stack_factory=paired_factory(peers, b""))
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(cli, ["inspect", "10.77.0.1", "5000"], obj=app, prog_name="pytcp")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    states = [ln.split("== ")[1] for ln in lines if " == " in ln]
    assert states[-1] == "FIN-WAIT-2 -> TIME-WAIT"
    assert any(ln.strip().startswith("timers armed: time-wait in ") for ln in lines)
    assert "Summary" in lines
    assert "  final state        TIME-WAIT" in lines
    for b, _peer in peers:
        b.close(linger=0)


def test_probe_refused_exits_1(tmp_path: Any) -> None:
    peers: list[Any] = []
    app = App(stack_factory=paired_factory(peers, b""))
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(cli, ["inspect", "10.77.0.1", "5001"], obj=app, prog_name="pytcp")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "pytcp: connection to 10.77.0.1 port 5001 refused; check that something listens there"
    )
    for b, _peer in peers:
        b.close(linger=0)
