"""`pytcp impair` and `pytcp timer` against a live connection with the Linux kernel as
the peer, inside a test namespace, through the installed command.

Every wait is bounded by an event (a trace line, a process exit) and TIMEOUT."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    PYTCP,
    TIMEOUT,
    KernelServer,
    StderrLines,
    connect_kernel,
    pytcp,
    recv_all,
)


class Owner:
    """A pytcp process holding one connection, its stderr lines, and its control dir."""

    def __init__(self, proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.proc = proc
        self.env = env
        self.err = StderrLines(proc)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTCP, *args], capture_output=True, text=True, timeout=TIMEOUT,
                              env=self.env)  # fmt: skip

    def entry(self) -> dict[str, Any]:
        """The one connection (not the listener) of the owner, once it is listed."""
        for _ in range(TIMEOUT * 20):
            out = self.run("inspect", "--json")
            assert out.returncode == 0, out.stderr
            conns = [e for e in json.loads(out.stdout) if e["state"] != "LISTEN"]
            if conns:
                (entry,) = conns
                return dict(entry)
            threading.Event().wait(0.05)
        raise AssertionError("the connection was never listed")

    def until(self, pattern: str) -> str:
        """The next stderr line matching `pattern` (a regex searched in the line)."""
        rx = re.compile(pattern)
        while True:
            try:
                line = self.err._queue.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in {self.err.lines[-20:]}") from None
            assert line is not None, f"stderr ended before {pattern!r}: {self.err.lines[-20:]}"
            self.err.lines.append(line)
            if rx.search(line):
                return line


@pytest.fixture
def rundir() -> Iterator[dict[str, str]]:
    path = tempfile.mkdtemp(prefix="pytcp-steer-")
    try:
        yield {**os.environ, "PYTCP_RUNTIME_DIR": os.path.join(path, "rt")}
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _listen(env: dict[str, str], port: int, *extra: str) -> Owner:
    owner = Owner(pytcp("listen", "-v", "--trace", *extra, str(port), env=env), env)
    owner.until("pytcp: listening on ")
    return owner


def _end(owner: Owner) -> None:
    if owner.proc.poll() is None:
        owner.proc.kill()
    owner.proc.wait(TIMEOUT)


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_drop_next_3_drops_exactly_three_and_the_kernel_retransmits(
    netns, rundir, family: int
) -> None:
    KERNEL, STACK = (re.escape(a) for a in ADDRS[family])
    owner = _listen(rundir, 7201)
    kernel = connect_kernel(7201, ADDRS[family][1])
    try:
        conn_id = owner.entry()["id"]
        out = owner.run("impair", conn_id, "drop-next", "3")
        assert (out.returncode, out.stdout) == (0, f"{conn_id} drop-next in: 3 segments left\n")
        assert owner.entry()["impairments"] == [{"fault": "drop-next", "direction": "in",
                                                 "left": 3}]  # fmt: skip
        kernel.sendall(b"k" * 100)
        drops = [owner.until(rf"impair {conn_id}: dropped \(drop-next, {n} left\) In ")
                 for n in (2, 1, 0)]  # fmt: skip
        # The same segment each time: the kernel retransmits it after each timeout...
        assert all("seq 1:101, ack 1" in line for line in drops)
        # ... and its fourth copy arrives, is taken and acknowledged.
        owner.until(rf"In +{KERNEL}\.\d+ > {STACK}\.7201: Flags \[P\.\], seq 1:101, ack 1")
        owner.until(rf"Out {STACK}\.7201 > {KERNEL}\.\d+: Flags \[\.\], ack 101")
        assert owner.proc.stdout is not None
        assert owner.proc.stdout.read(100) == b"k" * 100
        assert owner.entry()["impairments"] == []
        kernel.close()
        owner.proc.stdin.close()  # type: ignore[union-attr]
        assert owner.proc.wait(TIMEOUT) == 0
        rest = owner.err.rest()
        assert sum(" dropped (drop-next" in line for line in rest) == 3
    finally:
        kernel.close()
        _end(owner)


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_window_0_makes_the_kernel_probe_and_clear_resumes_byte_exact(
    netns, rundir, family: int
) -> None:
    KERNEL, STACK = (re.escape(a) for a in ADDRS[family])
    owner = _listen(rundir, 7202)
    kernel = connect_kernel(7202, ADDRS[family][1])
    data = os.urandom(700 * 1024)
    def send_all() -> None:
        kernel.sendall(data)
        kernel.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send_all, daemon=True)
    received: list[bytes] = []
    assert owner.proc.stdout is not None
    stdout = owner.proc.stdout
    reader = threading.Thread(target=lambda: received.append(stdout.read()), daemon=True)
    try:
        conn_id = owner.entry()["id"]
        out = owner.run("impair", conn_id, "window", "0")
        assert out.stdout == f"{conn_id} window 0 (advertised window clamped)\n"
        reader.start()
        sender.start()
        # The window closes as the data fills it: an ACK with win 0 goes out ...
        owner.until(rf"Out {STACK}\.7202 > {KERNEL}\.\d+: Flags \[\.\], ack \d+, win 0,")
        # ... and the kernel probes it (Linux: an ACK at SND.UNA - 1, no data), which
        # the stack refuses as out of the window and answers with win 0 again.
        owner.until(rf"In +{KERNEL}\.\d+ > {STACK}\.7202: Flags \[\.\], ack 1, win \d+, "
                    r"options \[[^]]*\], length 0")  # fmt: skip
        owner.until(rf"drop {conn_id}: out-of-window")
        owner.until(rf"Out {STACK}\.7202 > {KERNEL}\.\d+: Flags \[\.\], ack \d+, win 0,")
        assert owner.entry()["receive"]["rcv_wnd"] == 0
        out = owner.run("impair", conn_id, "clear")
        assert out.stdout == f"{conn_id} no impairment\n"
        sender.join(TIMEOUT)
        reader.join(TIMEOUT)
        assert hashlib.sha256(received[0]).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        kernel.close()
        owner.proc.stdin.close()  # type: ignore[union-attr]
        _end(owner)


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_timer_fire_time_wait_ends_it_at_once(netns, rundir, family: int) -> None:
    server = KernelServer(7203, recv_all, family=family)
    proc = pytcp("connect", "--trace", "--time-wait", "full", ADDRS[family][0], "7203",
                 env=rundir)  # fmt: skip
    owner = Owner(proc, rundir)
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"bye\n")
        proc.stdin.close()
        line = owner.until(r": FIN-WAIT-2 -> TIME-WAIT$")
        conn_id = line.split()[1].rstrip(":")
        entry = owner.entry()
        assert entry["state"] == "TIME-WAIT"
        refused = owner.run("timer", conn_id, "fire", "persist")
        assert refused.returncode == 1
        assert refused.stderr == (
            f"pytcp: {conn_id}: the persist timer is not armed (state TIME-WAIT); "
            f"`pytcp inspect {conn_id}` shows the armed timers\n"
        )
        fired = owner.run("timer", conn_id, "fire", "time-wait")
        assert (fired.returncode, fired.stdout) == (0, f"{conn_id} time-wait fired; CLOSED\n")
        owner.until(rf"{conn_id}: TIME-WAIT -> CLOSED$")
        assert proc.wait(TIMEOUT) == 0
        assert server.wait() == [b"bye\n"]
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_journal_names_the_reason_of_a_crafted_out_of_window_segment(
    netns, rundir, family: int
) -> None:
    from ipaddress import ip_address

    from stack.wire import Flags, TcpSegment

    KERNEL, STACK = ADDRS[family]
    owner = _listen(rundir, 7204)
    kernel = connect_kernel(7204, STACK)
    try:
        kernel.sendall(b"real")
        assert owner.proc.stdout is not None
        assert owner.proc.stdout.read(4) == b"real"
        entry = owner.entry()
        conn_id, rcv_nxt = entry["id"], entry["receive"]["rcv_nxt"]
        # A segment the kernel's socket never sent: 1 MiB past RCV.NXT, through a raw
        # socket from the kernel's address to the connection's ports (the kernel adds the
        # IP header, its source the kernel's address on pytcp0).
        port = kernel.getsockname()[1]
        forged = TcpSegment(port, 7204, (rcv_nxt + 2**20) % 2**32, entry["send"]["snd_nxt"],
                            Flags.ACK | Flags.PSH, 500, payload=b"forged")  # fmt: skip
        af = socket.AF_INET6 if family == 6 else socket.AF_INET
        raw = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_TCP)
        try:
            raw.sendto(forged.build(ip_address(KERNEL), ip_address(STACK)), (STACK, 0))
        finally:
            raw.close()
        owner.until(rf"drop {conn_id}: out-of-window")
        out = owner.run("inspect", conn_id, "--journal", "--json")
        assert out.returncode == 0, out.stderr
        journal = json.loads(out.stdout)
        (crafted,) = [e for e in journal["entries"] if e["rel_seq"] == 2**20 + 5]
        assert (crafted["direction"], crafted["verdict"], crafted["reason"], crafted["len"]) == (
            "in", "dropped", "out-of-window", 6,
        )  # fmt: skip
        assert crafted["test"]["met"] is False
        assert crafted["changes"] == {}
        text = owner.run("inspect", conn_id, "--journal").stdout
        assert "seq 1048581:1048587 ack 1 win 500 len 6\n" in text
        assert "[SEG.SEQ=1048581 SEG.LEN=6 RCV.NXT=5 RCV.WND=" in text
        assert "    verdict: dropped: out-of-window\n" in text
    finally:
        kernel.close()
        owner.proc.stdin.close()  # type: ignore[union-attr]
        _end(owner)


# ------------------------------------------------------------- through CliRunner (no root)

from click.testing import CliRunner  # noqa: E402

from pytcpcli.main import cli  # noqa: E402
from tests.cli.test_inspect import held, live  # noqa: E402
from tests.test_control import PairedStacks  # noqa: E402

__all__ = ["held", "live"]


def test_impair_usage_errors_and_the_inspect_section(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    cid = paired.client.id
    bad = runner.invoke(cli, ["impair", cid, "drop-next", "x"])
    assert bad.exit_code == 2
    assert bad.output.startswith("pytcp: drop-next x: not a non-negative integer; faults: ")
    ok = runner.invoke(cli, ["impair", cid, "delay", "20", "out"])
    assert (ok.exit_code, ok.output) == (0, f"{cid} delay out: 20 ms\n")
    ok = runner.invoke(cli, ["impair", cid, "window", "1000"])
    assert ok.output == f"{cid} delay out: 20 ms\n{cid} window 1000 (advertised window clamped)\n"
    shown = runner.invoke(cli, ["inspect", cid])
    assert (
        "Impairments (pytcp impair)\n  delay out: 20 ms\n  window 1000 (advertised window "
        "clamped)\n\nTimers" in shown.output
    )
    assert paired.client.connection.window_clamp == 1000
    cleared = runner.invoke(cli, ["impair", cid, "clear"])
    assert cleared.output == f"{cid} no impairment\n"
    assert paired.client.connection.window_clamp is None
    assert "Impairments" not in runner.invoke(cli, ["inspect", cid]).output


def test_timer_usage_and_refusals(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    cid = paired.client.id
    assert runner.invoke(cli, ["timer", cid, "set", "keepalive"]).output == (
        "pytcp: timer set needs a DURATION (500ms, 2s, 1m)\n"
    )
    wrong = runner.invoke(cli, ["timer", cid, "fire", "rto"])
    assert wrong.exit_code == 2
    refused = runner.invoke(cli, ["timer", cid, "fire", "time-wait"])
    assert refused.exit_code == 1
    assert refused.output == (
        f"pytcp: {cid}: the time-wait timer is not armed (state ESTABLISHED); "
        f"`pytcp inspect {cid}` shows the armed timers\n"
    )
    listener = runner.invoke(cli, ["timer", "nosuch", "fire", "syn"])
    assert listener.exit_code == 1
    assert listener.output.startswith("pytcp: no live connection matches 'nosuch'")


def test_journal_through_the_control_socket(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    cid = paired.client.id
    out = runner.invoke(cli, ["inspect", cid, "--journal", "--json"])
    journal = json.loads(out.output)
    assert set(journal) == {"id", "now", "size", "recorded", "iss", "irs", "entries"}
    assert (journal["id"], journal["size"]) == (cid, 64)
    first = journal["entries"][0]
    assert set(first) == {"time", "direction", "flags", "seq", "ack", "rel_seq", "rel_ack", "len",
                          "window", "sack", "test", "verdict", "reason", "changes"}  # fmt: skip
    assert (first["direction"], first["flags"], first["verdict"]) == ("out", "SYN", "sent")
    text = runner.invoke(cli, ["inspect", cid, "--journal"]).output
    assert text.startswith(f"Segment journal of {cid}: the last ")
    assert "out SYN seq 0 win " in text
    bad = runner.invoke(cli, ["inspect", "--journal"])
    assert (bad.exit_code, bad.output) == (
        2, "pytcp: --journal needs one ID: pytcp inspect ID --journal\n"
    )


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_impair_and_timer_complete_live_ids_and_refuse_another_uid(held: Any) -> None:
    from tests.cli.test_inspect import _cli_as_nobody, _still_carries_data

    conn_id = held.conn_id()

    def complete(words: str) -> list[str]:
        env = {**held.env, "_PYTCP_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}  # fmt: skip
        out = subprocess.run([PYTCP], capture_output=True, env=env, timeout=TIMEOUT)
        return [line for line in out.stdout.decode().splitlines() if line]

    # Connections only: a listener has no segments to impair and no timers to fire.
    assert complete("pytcp impair ") == [f"plain,{conn_id}"]
    assert complete("pytcp timer ") == [f"plain,{conn_id}"]
    assert complete(f"pytcp timer {conn_id} fire ") == [
        f"plain,{name}" for name in ("retransmission", "syn", "delayed-ack", "persist",
                                     "keepalive", "time-wait", "fin-wait-2")
    ]  # fmt: skip
    directory = held.env["PYTCP_RUNTIME_DIR"]
    os.chmod(directory, 0o755)  # modes opened up: only SO_PEERCRED stands in the way
    os.chmod(os.path.join(directory, f"{held.proc.pid}.sock"), 0o666)
    env = {"PYTCP_RUNTIME_DIR": directory}
    for args in (("impair", conn_id, "drop-next", "5"), ("timer", conn_id, "fire", "syn"),
                 ("inspect", conn_id, "--journal")):  # fmt: skip
        refused = _cli_as_nobody(env, *args)
        assert refused["code"] == 1, args
        assert refused["stderr"] == f"pytcp: uid 65534 may not use process {held.proc.pid}\n"
    assert held.entries()[-1]["impairments"] == []
    _still_carries_data(held)


def test_the_cli_timer_names_are_the_stack_s() -> None:
    from pytcpcli.commands.timer import TIMER_NAMES as CLI_NAMES
    from stack.tcp.timers import TIMER_NAMES

    assert CLI_NAMES == TIMER_NAMES
