"""`pytcp inspect`: argument handling, and the list/ID/--json/--watch views of a real
stack's live connection (two stacks over a PairLink; no root), through CliRunner."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from pytcpcli.app import App
from pytcpcli.commands.inspect import NOTES, complete_connection_ids
from pytcpcli.main import cli
from pytcpcli.output import TimelineItem, duration, monotonic_seconds
from stack.api import Stack
from stack.control import MAX_REQUEST
from stack.io.link import PairLink
from stack.io.loop import Loop
from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    PYTCP,
    TIMEOUT,
    KernelServer,
    connect_kernel,
    recv_all,
    start_listener,
)
from tests.test_control import PairedStacks, _as_nobody, raw_exchange


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
    # A filter that matches nothing says so, and of how many live ones.
    assert invoke(runner, "inspect", "-s", "time-wait").output == (
        "no connection matches -s TIME-WAIT (of 1)\n"
    )
    assert invoke(runner, "inspect", "--port", "5001").output == (
        "no connection matches --port 5001 (of 1)\n"
    )
    out = invoke(runner, "inspect", "-s", "established", "--port", "5000").output
    assert out.splitlines()[1].split()[0] == paired.client.id


def _sections(text: str) -> dict[str, dict[str, str]]:
    """`inspect ID` text -> {section title: {row label: value, spaces collapsed}}; a label
    ends at the first run of two spaces (labels such as "in flight" hold one)."""
    sections: dict[str, dict[str, str]] = {}
    rows: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            continue
        if not line.startswith(" "):
            rows = sections.setdefault(line, {})
            continue
        label, _, value = line.strip().partition("  ")
        rows[label] = " ".join(value.split())
    return sections


def test_id_view_has_every_section(live: tuple[PairedStacks, CliRunner]) -> None:
    """Every row of every section of `inspect ID`, under its label, against the snapshot
    (`--json`) of the same idle connection: 5 bytes sent and acknowledged, none received."""
    paired, runner = live
    result = invoke(runner, "inspect", paired.client.id)
    assert result.exit_code == 0
    e = json.loads(invoke(runner, "inspect", paired.client.id, "--json").output)
    snd, rcv, opt, cc, rec, rtt, cnt = (e[k] for k in ("send", "receive", "options",
                                                      "congestion", "recovery", "rtt",
                                                      "counters"))  # fmt: skip
    hs = cc["state"]["hystart"]
    sections = _sections(result.output)
    timers = sections.pop("Timers")
    assert sections == {
        "Connection": {
            "id": paired.client.id, "state": "ESTABLISHED",
            "local": f"{paired.client.local[0]}:{paired.client.local[1]}",
            "remote": "10.77.0.1:5000", "process": str(os.getpid()), "tun": e["tun"],
        },
        "Link (offloads, for the whole interface)": {  # a PairLink: no offloads
            "offloads rx": "none", "offloads tx": "none",
            "GSO in": "0 super-packets, 0 segments", "GSO out": "0 super-packets, 0 segments",
            "checksums trusted": "0", "TSO refused": "no",
        },
        "Send sequence space (relative to ISS; SND.WL1 to IRS)": {
            "raw": "relative",
            "ISS": f"{snd['iss']} 0",
            "SND.UNA": f"{snd['snd_una']} 6",  # the SYN and the 5 bytes, acknowledged
            "SND.NXT": f"{snd['snd_nxt']} 6",
            "SND.MAX": f"{snd['snd_max']} 6",
            "SND.WND": str(snd["snd_wnd"]),
            "SND.WL1": f"{snd['snd_wl1']} 1",  # the peer's SYN: relative to IRS
            "SND.WL2": f"{snd['snd_wl2']} 6",
            "SND.UP": f"{snd['snd_up']} 0",
            "MAX.SND.WND": str(snd["max_snd_wnd"]),
            "SND.SML": f"{snd['snd_sml']} 6",  # the 5 bytes were a short segment
        },
        "Receive sequence space (relative to IRS)": {
            "raw": "relative",
            "IRS": f"{rcv['irs']} 0",
            "RCV.NXT": f"{rcv['rcv_nxt']} 1",  # the peer's SYN, no data
            "RCV.WND": str(rcv["rcv_wnd"]),
            "RCV.UP": f"{rcv['rcv_up']} 1",
        },
        "Options": {
            "MSS": "local 1460, remote 1460, sending 1448",
            "window scale": f"local {opt['wscale_local']}, remote {opt['wscale_remote']}",
            "SACK": "yes",
            "timestamps": "yes",
            "ECN": "no",  # the kernel does not ask by default (tcp_ecn = 2)
            "path MTU": str(opt["path_mtu"]),
            "Nagle": "on",
            "keepalive": "off",
        },
        "Congestion": {
            "algorithm": "cubic", "cwnd": str(cc["cwnd"]), "ssthresh": str(cc["ssthresh"]),
            # the algorithm's own variables, in the (sorted) order the control endpoint sends
            "state": f"hystart.css_rounds 0, hystart.current_round_min_rtt "
                     f"{hs['current_round_min_rtt'] or '-'}, hystart.last_round_min_rtt "
                     f"{hs['last_round_min_rtt'] or '-'}, hystart.phase {hs['phase']}, k -, "
                     f"w_max -",
            "in flight": f"0 (window's largest {cc['max_flight']}, cwnd-limited "
                         f"{'yes' if cc['cwnd_limited'] else 'no'})",
            "phase": "open", "recover": str(cc["recover"]), "dup ACKs": "0",
            "ECN": f"echo no, CWR pending no, next cut after {cc['ecn_recover']}",
            # RFC 7661: 5 bytes acknowledged in an RTT is less than half of cwnd
            "CWV": f"pipeACK {cc['pipe_ack'] if cc['pipe_ack'] is not None else '-'}, "
                   + ("validated" if cc["nvp_since"] is None
                      else f"non-validated since {monotonic_seconds(cc['nvp_since'])}"),
        },
        "Recovery": {
            "scoreboard": "none (0 records)", "pipe": "0 (0 SACKed, 0 lost)",
            "HighRxt": "-, rescue -", "PRR": "delivered 0, out 0, RecoverFS 0",
            "RACK": f"on, rtt {duration(rec['rack_rtt'])}, reo_wnd x1, reordering no",
            "TLP out to": "-", "undo": "-", "timer": rec["timer_mode"],
            "retries": "0 RTOs, 0 SYN timeouts, 0 probes and 0 keepalives unanswered",
        },
        "RTT": {
            "srtt": duration(rtt["srtt"]), "rttvar": duration(rtt["rttvar"]),
            "rto": duration(rtt["rto"]), "min rtt": duration(rtt["min_rtt"]),
            "samples": str(rtt["samples"]), "backoff": "0", "timing": "-", "Karn": "no",
            "TSfloor": "-",
        },
        "Buffers": {
            "send": "0 queued of 262144: 0 unacknowledged, 0 unsent",
            "receive": "0 unread of 262144",
            "out of order": "none",
            "SACK order": "none", "D-SACK next": "-", "FIN ahead": "-",
            "delayed ACK": f"0 bytes unacknowledged, peer MSS {rcv['rcv_mss']}",
        },
        "Counters": {
            "segments": f"in {cnt['segments_in']}, out {cnt['segments_out']}",
            "bytes": "in 0, out 5",
            "retransmissions": "0 (0 bytes)",
            "duplicate ACKs": "0",
            "recovery": "0 fast, 0 RTOs, 0 TLPs (0 repaired), 0 undone",
            "D-SACKs": "sent 0, received 0",
            "ECN": "CE 0, ECE 0, reductions 0",
            "receive buffer": "grown 0 times (autotuning)",
            "cwnd validation": "0 reductions (RFC 7661)",
            "challenge ACKs": "0",
            "invalid ACKs": "0 sent, 0 held back by the rate limit",
            "drops": "none",
        },
        "Close": {
            "FIN sent": "no", "FIN acknowledged": "no", "FIN received": "no",
            "application closed": "no",
        },
    }  # fmt: skip
    assert rtt["samples"] >= 1 and rtt["rto"] >= 200_000_000  # measured; the 200 ms floor
    assert list(timers) == [
        "timer", "retransmission", "syn", "delayed-ack", "persist", "keepalive", "time-wait",
        "fin-wait-2",
    ]  # fmt: skip
    # Idle, every byte acknowledged: no timer is armed.
    assert [v.split()[0] for k, v in timers.items() if k != "timer"] == ["no"] * 7


def test_json_by_unique_prefix(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = invoke(runner, "inspect", str(os.getpid()), "--json")
    assert result.exit_code == 0
    entry = json.loads(result.output)
    assert set(entry) == {
        "id", "pid", "tun", "state", "local", "remote", "send", "receive", "options",
        "congestion", "recovery", "rtt", "buffers", "counters", "timers", "close",
        "impairments", "link",
    }  # fmt: skip
    assert entry["id"] == paired.client.id
    assert (entry["send"]["snd_nxt"] - entry["send"]["iss"] - 1) % 2**32 == 5
    listing = json.loads(invoke(runner, "inspect", "--json").output)
    assert [e["id"] for e in listing] == [paired.client.id]


# The JSON fields of a connection as docs/internals.md (the Connection.snapshot block)
# and pytcp-inspect(1) NOTES document them; `timers` is each timer's keys.
DOCUMENTED_FIELDS: dict[str, set[str]] = {
    "": {"id", "pid", "tun", "state", "local", "remote", "send", "receive", "options",
         "congestion", "recovery", "rtt", "buffers", "counters", "timers", "close",
         "impairments", "link"},
    "local": {"addr", "port"},
    "remote": {"addr", "port"},
    "send": {"iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2", "snd_up",
             "max_snd_wnd", "snd_sml"},
    "receive": {"irs", "rcv_nxt", "rcv_wnd", "rcv_up", "sack_order", "dsack", "peer_fin_seq",
                "unacked_rx", "rcv_mss"},
    "options": {"mss_local", "mss_remote", "snd_mss", "wscale_local", "wscale_remote", "sack",
                "timestamps", "ecn", "path_mtu", "path_mtu_expires", "nodelay", "keepalive"},
    "congestion": {"algorithm", "cwnd", "ssthresh", "state", "in_flight", "phase", "recover",
                   "dup_acks", "ecn_echo", "cwr_pending", "ecn_recover", "pipe_ack",
                   "nvp_since", "cwnd_limited", "max_flight"},
    "recovery": {"sacked", "segments", "sacked_bytes", "lost_bytes", "pipe", "retries",
                 "high_rxt", "rescue_rxt", "prr_delivered", "prr_out", "recover_fs", "rack",
                 "rack_rtt", "rack_xmit_ts", "reo_wnd_mult", "reordering_seen", "tlp_end",
                 "undo_retrans", "timer_mode", "syn_timeouts", "probes_unanswered",
                 "keepalives_unanswered"},
    "rtt": {"srtt", "rttvar", "rto", "min_rtt", "samples", "backoff", "timed_seq", "karn",
            "ts_floor"},
    "buffers": {"send_capacity", "send_queued", "unacked", "unsent", "recv_capacity", "unread",
                "send_allocated", "recv_allocated", "out_of_order"},
    "counters": {"segments_in", "segments_out", "bytes_in", "bytes_out", "retransmissions",
                 "retransmitted_bytes", "dup_acks", "challenge_acks", "invalid_acks",
                 "invalid_acks_limited", "keepalive_probes",
                 "zero_window_probes", "dsacks_sent", "dsacks_received", "rtos",
                 "fast_recoveries", "tlp_probes", "tlp_recoveries", "lost_marked_bytes",
                 "undos", "ce_received", "ece_received", "ecn_reductions", "rcv_buf_grown",
                 "cwv_reductions", "drops"},
    "timers": {"name", "armed", "deadline", "remaining", "backoff", "reason"},
    "close": {"fin_sent", "fin_acked", "fin_received", "app_closed"},
    "link": {"offloads_rx", "offloads_tx", "gso_packets_in", "gso_segments_in",
             "gso_packets_out", "gso_segments_out", "csum_trusted_in", "tso_refused",
             "tso_refused_error", "gso_resegmented"},
}  # fmt: skip
TIMER_NAMES = ["retransmission", "syn", "delayed-ack", "persist", "keepalive", "time-wait",
               "fin-wait-2"]  # fmt: skip


def _braced_keys(text: str, opening: str) -> set[str]:
    """The keys listed at the top level of the braces that follow `opening` in `text`:
    `a, b: [[x, y], ...], c: {k: v}` -> {a, b, c}; quotes and comments dropped."""
    text = " ".join(line.split("#")[0] for line in text.splitlines())
    start = text.index(opening) + len(opening)
    depth, item, items = 0, "", []
    for ch in text[start:]:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(item)
            item = ""
            continue
        if depth == 0:
            item += ch
    items.append(item)
    keys = {i.split(":")[0].strip().strip('"') for i in items}
    return keys - {"", "..."}


def test_documented_fields_are_what_the_docs_say() -> None:
    """DOCUMENTED_FIELDS, which the netns test holds a real snapshot to, is the list in
    docs/internals.md and in the man page's NOTES, section by section."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "internals.md")) as f:
        internals = f.read()
    block = internals[internals.index("Snapshot (plain data") :]
    block = block[: block.index("```", block.index("```") + 3)]
    for section, keys in DOCUMENTED_FIELDS.items():
        if section in ("", "remote", "timers"):
            continue
        if section == "link":  # added by the control endpoint (ControlClient.entries)
            assert _braced_keys(internals, '"link": {') == keys
            assert _braced_keys(NOTES, "link {") == keys
            continue
        assert _braced_keys(block, f'"{section}": {{') == keys, section
        if section != "local":  # NOTES: "local and remote {addr, port}"
            assert _braced_keys(NOTES, f"{section} {{") == keys, section
    assert _braced_keys(block, '"timers": [{') == DOCUMENTED_FIELDS["timers"]
    assert _braced_keys(NOTES, "each {") == DOCUMENTED_FIELDS["timers"]
    assert _braced_keys(NOTES, "remote {") == DOCUMENTED_FIELDS["remote"]
    # Connection.snapshot(), plus what the control endpoint adds (ControlClient): pid, tun,
    # the impairments of `pytcp impair` and the link (offloads).
    added = {"pid", "tun", "impairments", "link"}
    assert _braced_keys(block, "{") | added == DOCUMENTED_FIELDS[""]
    assert 'Every connection object has: id ("PID.N"), pid, tun, state' in " ".join(NOTES.split())
    assert "(" + ", ".join(TIMER_NAMES) + ")" in " ".join(NOTES.split())


def test_every_json_field_is_documented(live: tuple[PairedStacks, CliRunner]) -> None:
    """The man page's NOTES name every field a real snapshot has (stable field names)."""
    paired, runner = live
    entry = json.loads(invoke(runner, "inspect", paired.client.id, "--json").output)
    words = set(NOTES.replace("{", " ").replace("}", " ").replace(",", " ").replace(":", " ")
                .replace(";", " ").replace("(", " ").replace(")", " ").split())  # fmt: skip
    missing = [k for k in entry if k not in words]
    for section in ("send", "receive", "options", "congestion", "rtt", "buffers", "counters",
                    "close", "link"):  # fmt: skip
        missing += [f"{section}.{k}" for k in entry[section] if k not in words]
    missing += [f"timers.{k}" for k in entry["timers"][0] if k not in words]
    assert missing == []


def test_watch_redraws_count_times(live: tuple[PairedStacks, CliRunner]) -> None:
    paired, runner = live
    result = invoke(runner, "inspect", paired.client.id, "--json", "--watch=0.01", "--count", "3")
    assert result.exit_code == 0
    assert "\x1b" not in result.output  # not a terminal: frames one after another, no redraw
    frames = [json.loads(line) for line in result.output.splitlines()]
    assert [f["id"] for f in frames] == [paired.client.id] * 3


CLEAR = "\x1b[H\x1b[2J"  # ANSI cursor home, erase display


def _on_a_terminal(
    env: dict[str, str], *args: str, size: tuple[int, int] | None = None
) -> tuple[int, str]:
    """Run `pytcp ARGS` with stdout on a pseudo-terminal (of `size` columns x lines when
    given; a fresh one says 0x0); its exit status and everything it wrote there
    (bounded by TIMEOUT)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    try:
        proc = subprocess.Popen([PYTCP, *args], stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=subprocess.PIPE, env=env)  # fmt: skip
        os.close(slave)
        slave = -1
        out = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child exited and the terminal's last writer is gone
                break
            if not chunk:
                break
            out += chunk
        try:
            code = proc.wait(TIMEOUT)
        finally:
            proc.kill()
            proc.wait(TIMEOUT)
        assert proc.stderr is not None
        assert proc.stderr.read() == b""
        return code, out.decode()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_watch_redraws_in_place_on_a_terminal(
    live: tuple[PairedStacks, CliRunner], tmp_path: Any
) -> None:
    """On a terminal every --watch frame starts with cursor home + erase screen and a
    header line, so each one is drawn over the last (the terminal turns \n into \r\n)."""
    paired, _runner = live
    header = f"{CLEAR}every 0.01s: pytcp inspect (Ctrl-C to stop)\r\n\r\n"
    empty = {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path / "none")}
    code, out = _on_a_terminal(empty, "inspect", "--watch", "--interval", "10ms", "--count", "2")
    assert (code, out) == (0, (header + "no live pytcp connections\r\n") * 2)
    env = {**os.environ, "PYTCP_RUNTIME_DIR": paired.control.directory}
    code, out = _on_a_terminal(env, "inspect", paired.client.id, "--watch=10ms", "--count", "2")
    assert code == 0
    frames = out.split(CLEAR)
    assert frames[0] == "" and len(frames) == 3  # the sequence before each frame, no other
    for frame in frames[1:]:
        lines = frame.split("\r\n")
        assert frame.startswith(header[len(CLEAR) :])
        # The compact view by default.
        assert lines[2] == f"{paired.client.id}  ESTABLISHED  pid {os.getpid()}"
        assert lines[-2].startswith("timers    ") and lines[-1] == ""
    code, out = _on_a_terminal(env, "inspect", paired.client.id, "--watch=10ms", "--count", "1",
                               "--full")  # fmt: skip
    lines = out.split(CLEAR)[1].split("\r\n")
    assert code == 0
    assert lines[2:4] == ["Connection", f"  id       {paired.client.id}"]
    assert "Timers" in lines and lines[-1] == ""


@pytest.mark.parametrize(
    "watch",
    [
        ["--watch", "ID", "--interval", "0.01"],  # ID right after --watch is the ID
        ["--watch=0.01", "ID"],  # the attached value is the interval
        ["ID", "--interval", "10ms"],  # --interval implies --watch
    ],
)
def test_watch_never_takes_the_id_for_seconds(
    live: tuple[PairedStacks, CliRunner], watch: list[str]
) -> None:
    paired, runner = live
    args = [paired.client.id if a == "ID" else a for a in watch]
    result = invoke(runner, "inspect", *args, "--json", "--count", "2")
    assert result.exit_code == 0, result.output
    frames = [json.loads(line) for line in result.output.splitlines()]
    assert [f["id"] for f in frames] == [paired.client.id] * 2


def test_watch_ends_143_on_sigterm_and_141_when_stdout_goes(tmp_path: Any) -> None:
    """The statuses pytcp-inspect(1) documents for a --watch that is stopped."""
    import signal

    env = {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path)}
    args = [PYTCP, "inspect", "--watch", "--interval", "50ms"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"no live pytcp connections\n"  # a first frame
        proc.send_signal(signal.SIGTERM)
        # Killed by it (a shell's $? is then 128 + 15 = 143), or exits 143 itself.
        assert proc.wait(TIMEOUT) in (-signal.SIGTERM, 143)
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"no live pytcp connections\n"
        proc.stdout.close()  # the reader goes away: the next frame meets EPIPE
        assert proc.wait(TIMEOUT) == 141
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


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


def test_completion_offers_ids_only_where_an_id_goes(
    live: tuple[PairedStacks, CliRunner],
) -> None:
    """The installed command answering bash: `inspect <TAB>` and `close <TAB>` offer the
    live IDs, listeners included; after one argument comes a probe's PORT, where no ID
    belongs; `send --conn <TAB>` leaves the listener out (send refuses its ID)."""
    paired, _runner = live
    paired.pause()  # the loop's thread stops while this thread adds a listener to A
    listener = paired.a.listen(6000)
    paired.run_in_background()
    both = sorted([f"plain,{paired.client.id}", f"plain,{listener.id}"])

    def complete(words: str) -> list[str]:
        env = {**os.environ, "PYTCP_RUNTIME_DIR": paired.control.directory,
               "_PYTCP_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}  # fmt: skip
        out = subprocess.run([PYTCP], capture_output=True, env=env, timeout=TIMEOUT, text=True)
        return [line for line in out.stdout.splitlines() if line]  # none: one empty line

    assert sorted(complete("pytcp inspect ")) == both
    assert sorted(complete("pytcp inspect --json ")) == both
    assert complete("pytcp inspect 10.77.0.1 ") == []
    assert complete(f"pytcp inspect {paired.client.id} ") == []
    assert sorted(complete("pytcp close ")) == both
    assert complete("pytcp send --conn ") == [f"plain,{paired.client.id}"]
    assert complete(f"pytcp send --conn {listener.id}") == []


FULL_USAGE = "pytcp inspect --watch --full ID\n"


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
        *(
            (args, "pytcp: --full is for one connection's text view: " + FULL_USAGE)
            for args in (
                ["inspect", "--watch", "--full"],
                ["inspect", "1.2", "--full", "--json"],
                ["inspect", "1.2", "--full", "--journal"],
            )
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


def test_probe_shows_what_the_syn_offered(tmp_path: Any) -> None:
    """SYN-SENT: the snapshot's options say what is negotiated (nothing yet); the probe
    shows what the SYN offered beside it, and at ESTABLISHED what became of each."""
    peers: list[Any] = []
    app = App(stack_factory=paired_factory(peers, b""))
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(cli, ["inspect", "10.77.0.1", "5000", "--json"], obj=app,
                           prog_name="pytcp")  # fmt: skip
    assert result.exit_code == 0, result.output
    timeline = json.loads(result.output)["timeline"]
    syn = next(i for i in timeline if i["kind"] == "out")
    assert "sackOK" in syn["text"] and "TS val" in syn["text"] and "wscale" in syn["text"]
    states = [i for i in timeline if i["kind"] == "state"]
    assert states[0]["text"] == "CLOSED -> SYN-SENT"
    offered = states[0]["offered"]
    assert offered["sack"] is True and offered["timestamps"] is True
    assert offered["mss"] == 1460 and f"wscale {offered['wscale']}" in syn["text"]
    assert [i["offered"] for i in states[1:]] == [None] * (len(states) - 1)
    # The snapshot fields are unchanged: negotiated, so no/0 in SYN-SENT.
    assert ["options.sack", None, False] in states[0]["changes"]
    result = runner.invoke(cli, ["inspect", "10.77.0.1", "5000"], obj=app, prog_name="pytcp")
    assert result.exit_code == 0, result.output
    lines = [ln.strip() for ln in result.output.splitlines()]
    syn_sent = lines[: next(n for n, ln in enumerate(lines) if "Flags [S]" in ln)]
    assert "options.sack: - -> offered" in syn_sent
    assert "options.timestamps: - -> offered" in syn_sent
    assert f"options.wscale_local: - -> offered {offered['wscale']}" in syn_sent
    assert "options.sack: offered -> yes" in lines
    assert "options.timestamps: offered -> yes" in lines
    assert f"options.wscale_local: offered {offered['wscale']} -> {offered['wscale']}" in lines
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


def test_probe_recorder_bug_stops_it_with_one_warning(tmp_path: Any, monkeypatch: Any) -> None:
    """A bug in the probe's own recorder (here: the segment formatter raises) never
    reaches the stack: the probe still runs its four-way close, and the first failure
    stops the recorder with one warning line instead of being swallowed per event."""
    import stack.wire.pretty

    def broken(*args: Any, **kwargs: Any) -> str:
        raise ValueError("formatter bug")

    monkeypatch.setattr(stack.wire.pretty, "format_segment", broken)
    peers: list[Any] = []
    app = App(stack_factory=paired_factory(peers, b"pong\n"))
    runner = CliRunner(env={"PYTCP_RUNTIME_DIR": str(tmp_path)})
    result = runner.invoke(cli, ["inspect", "10.77.0.1", "5000", "--data", "ping", "--json"],
                           obj=app, prog_name="pytcp", catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0
    assert result.stderr == (
        "pytcp: warning: the probe's timeline stopped: ValueError: formatter bug "
        "(what follows is incomplete)\n"
    )
    out = json.loads(result.stdout)
    # The step into SYN-SENT came before the SYN the formatter failed on; nothing after.
    assert [i["text"] for i in out["timeline"]] == ["CLOSED -> SYN-SENT"]
    assert bytes(peers[0][1].received) == b"ping"  # the connection itself went on
    for b, _peer in peers:
        b.close(linger=0)


def test_probe_recorder_hook_bug_stops_it_with_one_warning() -> None:
    """The recorder's loop hook and finish() are guarded the same way."""
    from pytcpcli.commands.inspect import ProbeRecorder

    warnings: list[str] = []
    recorder = ProbeRecorder(warn=warnings.append)

    class BrokenHost:
        def connections(self) -> list[Any]:
            raise RuntimeError("snapshot bug")

    class FakeStack:
        host = BrokenHost()

    recorder.stack = FakeStack()
    recorder.pending = [(TimelineItem(0, "state", "CLOSED -> SYN-SENT"), None)]
    recorder.settle()  # the loop hook: must not raise
    recorder.settle()
    assert recorder.failed
    assert recorder.finish() is None
    assert warnings == [
        "warning: the probe's timeline stopped: RuntimeError: snapshot bug "
        "(what follows is incomplete)"
    ]


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


# --------------------------------------------------------------------------- netns: kernel peers


@dataclass
class Held:
    """A `pytcp listen -k 5000` subprocess holding one connection from a kernel client, with
    its control endpoint in a private runtime directory, and a way to run other pytcp
    commands against it."""

    proc: subprocess.Popen[bytes]
    err: Any
    kernel: socket.socket
    rundir: str
    env: dict[str, str]

    def run(self, *args: str, user: int | None = None, input: bytes = b"") -> Any:
        return subprocess.run(
            [PYTCP, *args], input=input, capture_output=True, timeout=TIMEOUT, env=self.env,
            user=user, group=user, extra_groups=[] if user is not None else None,
        )  # fmt: skip

    def entries(self) -> list[dict[str, Any]]:
        out = self.run("inspect", "--json")
        assert out.returncode == 0, out.stderr
        entries: list[dict[str, Any]] = json.loads(out.stdout)
        return entries

    def conn_id(self) -> str:
        """The ID of the connection from the kernel client (waits until it is listed)."""
        port = self.kernel.getsockname()[1]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for e in self.entries():
                if (e.get("remote") or {}).get("port") == port:
                    return str(e["id"])
            time.sleep(0.05)
        raise AssertionError("the kernel client's connection was never listed")

    def read_stdout(self, n: int) -> bytes:
        """Exactly n bytes from the listener's stdout (bounded in time)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + TIMEOUT
        while len(buf) < n and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, n - len(buf))
                if not chunk:
                    break
                buf += chunk
        return buf


@pytest.fixture
def held(netns: Any) -> Iterator[Held]:
    # Under /tmp with 0711 so the `nobody` of the security tests can reach the path.
    rundir = tempfile.mkdtemp(prefix="pytcp-held-")
    os.chmod(rundir, 0o711)
    env = {**os.environ, "PYTCP_RUNTIME_DIR": os.path.join(rundir, "rt")}
    proc, err = start_listener("-k", "5000", env=env)  # -k: the listener stays listed
    kernel = connect_kernel(5000)
    try:
        yield Held(proc, err, kernel, rundir, env)
    finally:
        kernel.close()
        proc.kill()
        proc.wait(TIMEOUT)
        shutil.rmtree(rundir, ignore_errors=True)


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_inspect_lists_the_kernel_connection(held: Held) -> None:
    held.kernel.sendall(b"k" * 100)
    assert held.read_stdout(100) == b"k" * 100
    conn_id = held.conn_id()
    entries = {e["id"]: e for e in held.entries()}
    entry = entries[conn_id]
    assert entry["state"] == "ESTABLISHED"
    assert entry["pid"] == held.proc.pid
    assert entry["local"] == {"addr": "10.77.0.2", "port": 5000}
    assert entry["remote"] == {"addr": "10.77.0.1", "port": held.kernel.getsockname()[1]}
    assert entry["counters"]["bytes_in"] == 100
    assert (entry["receive"]["rcv_nxt"] - entry["receive"]["irs"] - 1) % 2**32 == 100
    listeners = [e for e in entries.values() if e["state"] == "LISTEN"]
    assert [(e["pid"], e["local"]["port"]) for e in listeners] == [(held.proc.pid, 5000)]
    table = held.run("inspect")
    assert table.returncode == 0
    rows = {line.split()[0]: line.split() for line in table.stdout.decode().splitlines()[1:]}
    kernel_port = held.kernel.getsockname()[1]
    assert rows[conn_id][1:4] == ["ESTABLISHED", "10.77.0.2:5000", f"10.77.0.1:{kernel_port}"]


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_inspect_id_json_counts_what_was_sent(held: Held) -> None:
    assert held.proc.stdin is not None
    held.proc.stdin.write(b"hello kernel\n")
    held.proc.stdin.flush()
    got = b""
    while len(got) < 13:
        got += held.kernel.recv(100)
    assert got == b"hello kernel\n"
    conn_id = held.conn_id()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        out = held.run("inspect", conn_id, "--json")
        entry = json.loads(out.stdout)
        if entry["buffers"]["send_queued"] == 0:  # acknowledged by the kernel
            break
        time.sleep(0.05)
    # Every section holds exactly the documented fields (docs/internals.md, NOTES).
    assert set(entry) == DOCUMENTED_FIELDS[""]
    for section, keys in DOCUMENTED_FIELDS.items():
        if section not in ("", "timers"):
            assert set(entry[section]) == keys, section
    for timer in entry["timers"]:
        assert set(timer) == DOCUMENTED_FIELDS["timers"], timer["name"]
    assert isinstance(entry["counters"]["drops"], dict)
    assert isinstance(entry["buffers"]["out_of_order"], list)
    send = entry["send"]
    assert (send["snd_nxt"] - send["iss"] - 1) % 2**32 == 13
    assert entry["counters"]["bytes_out"] == 13
    assert [t["name"] for t in entry["timers"]] == TIMER_NAMES
    text = held.run("inspect", conn_id).stdout.decode()
    assert "Timers" in text.splitlines() and f"  id       {conn_id}" in text.splitlines()


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_netns_probe_against_a_kernel_listener(netns: Any, tmp_path: Any, family: int) -> None:
    def handler(conn: socket.socket) -> bytes:
        data = recv_all(conn)  # to our FIN
        conn.sendall(b"bye\n")
        time.sleep(0.3)  # the kernel acknowledges our FIN before it sends its own
        return data

    server = KernelServer(7000, handler, family=family)
    try:
        env = {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path)}
        out = subprocess.run(
            [PYTCP, "inspect", f"-{family}", ADDRS[family][0], "7000", "--data", "hi\\n", "--json"],
            capture_output=True, timeout=TIMEOUT, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert server.wait() == [b"hi\n"]
    finally:
        server.close()
    probe = json.loads(out.stdout)
    reached = [i["text"].split(" -> ")[1] for i in probe["timeline"] if i["kind"] == "state"]
    assert reached == ["SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"]
    last = [i for i in probe["timeline"] if i["kind"] == "state"][-1]
    assert [t["name"] for t in last["timers"] if t["armed"]] == ["time-wait"]
    assert probe["summary"]["counters"]["bytes_in"] == 4
    # The kernel's MSS: its MTU 1500 less 40 (IPv4 + TCP) or 60 (IPv6 + TCP).
    assert probe["summary"]["options"]["mss_remote"] == {4: 1460, 6: 1440}[family]
    assert probe["summary"]["remote"]["addr"] == ADDRS[family][0]
    # What our SYN offered (sackOK, TS, wscale) is on the step into SYN-SENT.
    first = next(i for i in probe["timeline"] if i["kind"] == "state")
    assert first["text"] == "CLOSED -> SYN-SENT"
    assert first["offered"]["sack"] is True and first["offered"]["timestamps"] is True
    assert first["offered"]["wscale"] == probe["summary"]["options"]["wscale_local"]


# --------------------------------------------------------------------------- netns: security


def _cli_as_nobody(env: dict[str, str], *args: str) -> dict[str, Any]:
    """`pytcp ARGS` through CliRunner in a child that became nobody (the venv's python
    lives where nobody may not exec it, so the child keeps this interpreter)."""

    def run() -> bytes:
        from click.testing import CliRunner

        from pytcpcli.main import cli

        result = CliRunner(env=env).invoke(cli, list(args), prog_name="pytcp")
        return json.dumps(
            {"code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}
        ).encode()

    out: dict[str, Any] = json.loads(_as_nobody(run))
    return out


def _still_carries_data(held: Held) -> None:
    held.kernel.sendall(b"still alive\n")
    assert held.read_stdout(12) == b"still alive\n"
    entry = next(e for e in held.entries() if e["id"] == held.conn_id())
    assert entry["state"] == "ESTABLISHED"


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_another_uid_cannot_see_or_close(held: Held) -> None:
    conn_id = held.conn_id()
    env = {"PYTCP_RUNTIME_DIR": held.env["PYTCP_RUNTIME_DIR"]}
    listing = _cli_as_nobody(env, "inspect")
    assert listing == {
        "code": 0,
        "stdout": "no live pytcp connections\n",
        "stderr": f"pytcp: warning: {env['PYTCP_RUNTIME_DIR']}: permission denied\n",
    }
    closing = _cli_as_nobody(env, "close", "--reset", conn_id)
    assert closing["code"] == 1
    assert closing["stderr"] == (
        f"pytcp: no live connection matches '{conn_id}'; `pytcp inspect` lists them "
        f"({env['PYTCP_RUNTIME_DIR']}: permission denied)\n"
    )
    _still_carries_data(held)


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_peer_credentials_refuse_another_uid_even_with_open_modes(held: Held) -> None:
    conn_id = held.conn_id()
    directory = held.env["PYTCP_RUNTIME_DIR"]
    os.chmod(directory, 0o755)  # modes opened up: only SO_PEERCRED stands in the way
    os.chmod(os.path.join(directory, f"{held.proc.pid}.sock"), 0o666)
    env = {"PYTCP_RUNTIME_DIR": directory}
    refused = f"pytcp: warning: process {held.proc.pid}: uid 65534 may not use process "
    refused += f"{held.proc.pid}\n"
    assert _cli_as_nobody(env, "inspect", "--json") == {
        "code": 0, "stdout": "[]\n", "stderr": refused,
    }  # fmt: skip
    sent = _cli_as_nobody(env, "send", "--conn", conn_id, "intruder")
    assert sent["code"] == 1
    _still_carries_data(held)
    assert held.kernel.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_malformed_and_oversized_requests_leave_the_connection_alone(held: Held) -> None:
    conn_id = held.conn_id()
    path = os.path.join(held.env["PYTCP_RUNTIME_DIR"], f"{held.proc.pid}.sock")
    replies = raw_exchange(
        path,
        b"\x00\xff garbage\n"
        b'{"v":1,"op":"send","conn":"' + conn_id.encode() + b'","data":"%%%"}\n'
        b'{"v":9,"op":"list"}\n',
        replies=3,
    )
    assert [r["error"]["code"] for r in replies] == ["bad-json", "bad-request", "bad-version"]
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"y" * (MAX_REQUEST + 10))
        reply = json.loads(s.recv(65536))
    assert reply["error"]["code"] == "too-large"
    _still_carries_data(held)
    assert held.proc.poll() is None  # the listener process is still running


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_socket_of_a_killed_process_is_removed(netns: Any, tmp_path: Any) -> None:
    directory = str(tmp_path / "rt")
    env = {**os.environ, "PYTCP_RUNTIME_DIR": directory}
    proc, _err = start_listener("5002", env=env)
    path = os.path.join(directory, f"{proc.pid}.sock")
    try:
        assert os.path.exists(path)
        listed = subprocess.run([PYTCP, "inspect", "--json"], capture_output=True, env=env,
                                timeout=TIMEOUT)  # fmt: skip
        assert [e["local"]["port"] for e in json.loads(listed.stdout)] == [5002]
    finally:
        proc.kill()  # SIGKILL: no chance to remove its socket
        proc.wait(TIMEOUT)
    assert os.path.exists(path)
    out = subprocess.run([PYTCP, "inspect"], capture_output=True, env=env, timeout=TIMEOUT)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"no live pytcp connections\n", b"")
    assert not os.path.exists(path)


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_shell_completion_offers_live_ids(held: Held) -> None:
    """`close <TAB>` offers the connection and the listener; `send --conn <TAB>` only the
    connection: a listener carries no data and send refuses its ID."""
    conn_id = held.conn_id()
    (listener_id,) = [e["id"] for e in held.entries() if e["state"] == "LISTEN"]

    def complete(words: str) -> list[str]:
        env = {**held.env, "_PYTCP_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}  # fmt: skip
        out = subprocess.run([PYTCP], capture_output=True, env=env, timeout=TIMEOUT)
        return [line for line in out.stdout.decode().splitlines() if line]

    assert sorted(complete("pytcp close ")) == sorted([f"plain,{conn_id}", f"plain,{listener_id}"])
    assert complete("pytcp send --conn ") == [f"plain,{conn_id}"]
    refused = held.run("send", "--conn", listener_id, "x")
    assert refused.returncode == 1  # what send does with a listener's ID


def test_host_view_shows_the_hosts_drops_by_reason(
    live: tuple[PairedStacks, CliRunner],
) -> None:
    paired, runner = live
    paired.pause()
    # Bad packets the host drops before any connection sees them (issue 14).
    before = dict(paired.a.host.counters["drops"])
    paired.a.host.receive_packet(b"\x45" + bytes(10), paired.loop.now())
    paired.a.host.receive_packet(b"\x45" + bytes(30), paired.loop.now())
    paired.run_in_background()
    result = invoke(runner, "inspect", "--host", "--json")
    assert result.exit_code == 0
    (process,) = json.loads(result.output)
    assert (process["pid"], process["tun"]) == (os.getpid(), "")
    drops = process["host"]["counters"]["drops"]
    added = {k: v - before.get(k, 0) for k, v in drops.items() if v != before.get(k, 0)}
    assert added == {"truncated": 1, "bad-total-length": 1}
    assert (process["host"]["connections"], process["host"]["listeners"]) == (1, 0)
    assert process["host"]["challenge_acks"]["limit"] == 1000  # the host-wide budget
    assert process["control"]["clients"] >= 1  # this very request
    text = invoke(runner, "inspect", "--host").output
    assert text.startswith(f"process {os.getpid()} (-)\n  address ")
    assert "bad-total-length 1" in text and "truncated 1" in text
    assert "challenge ACKs  host-wide limit 1000/s (randomized allowance)" in text
    bad = invoke(runner, "inspect", "--host", "1.2")
    assert (bad.exit_code, bad.output) == (
        2, "pytcp: --host shows every process; it takes no ID, -s or --port\n"
    )  # fmt: skip


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_netns_views_fit_an_80x24_terminal_over_ipv6(held: Held) -> None:
    """The installed command on a pseudo-terminal of 80x24 (and 40x24): the list, the
    compact --watch view and the --full one of an IPv6 connection from the kernel fit
    its width, and every --watch frame its height."""
    kernel6 = connect_kernel(5000, ADDRS[6][1])
    try:
        kernel6.sendall(b"six")
        assert held.read_stdout(3) == b"six"
        port6 = kernel6.getsockname()[1]
        conn_id = next(
            str(e["id"])
            for e in _wait_listed(held, port6)
            if (e.get("remote") or {}).get("port") == port6
        )
        remote = f"[{ADDRS[6][0]}]:{port6}"
        for columns in (80, 40):
            code, out = _on_a_terminal(held.env, "inspect", size=(columns, 24))
            lines = out.split("\r\n")
            assert code == 0 and lines[-1] == ""
            assert max(len(line) for line in lines) <= columns, out
            mine = [line for line in lines if line.startswith(conn_id + " ")]
            assert len(mine) == 1 and "ESTABLISHED" in mine[0]
            if columns == 80:
                assert remote in mine[0]
        code, out = _on_a_terminal(held.env, "inspect", "--watch=10ms", "--count", "1", conn_id,
                                   size=(80, 24))  # fmt: skip
        frame = out.split(CLEAR)[1].split("\r\n")
        assert code == 0 and frame[-1] == ""
        assert len(frame) - 1 <= 24 and max(len(line) for line in frame) <= 80
        assert frame[2] == f"{conn_id}  ESTABLISHED  on pytcp0, pid {held.proc.pid}"
        assert frame[4] == f"remote    {remote}"
        assert [line.split()[0] for line in frame[5:8]] == ["send", "receive", "cwnd"]
        assert frame[-2].startswith(("timers    ", "          "))
        # The whole TCB is taller than 24 lines: cut, and the last line says so.
        code, out = _on_a_terminal(held.env, "inspect", "--watch=10ms", "--count", "1",
                                   "--full", conn_id, size=(80, 24))  # fmt: skip
        frame = out.split(CLEAR)[1].split("\r\n")
        assert code == 0 and len(frame) - 1 == 24
        assert frame[2:4] == ["Connection", f"  id       {conn_id}"]
        assert frame[-2].endswith(" more lines: a taller terminal shows them)")
    finally:
        kernel6.close()


def _wait_listed(held: Held, port: int) -> list[dict[str, Any]]:
    """`inspect --json` once the connection from kernel port `port` is listed."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        entries = held.entries()
        if any((e.get("remote") or {}).get("port") == port for e in entries):
            return entries
        time.sleep(0.05)
    raise AssertionError(f"the connection from port {port} was never listed")
