"""pytcp script: the language, the runner against the virtual-clock pytcp target, and
the corpus in tests/scripts/ (every scenario passes against pytcp)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stack.script.calls import CallOutcome
from stack.script.model import Syscall
from stack.script.parser import ScriptError, parse
from stack.script.pytcp_target import PytcpTarget
from stack.script.runner import Captured, Config, Runner, ScriptResult

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "scripts").glob("*.pkt"))
PYTCP = str(Path(sys.executable).parent / "pytcp")

HANDSHAKE = """\
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <...>
  +.1 < . 1:1(0) ack 1 win 257
   +0 accept(3, ..., ...) = 4
"""


def run(text: str, *, tcb: bool = False) -> ScriptResult:
    script = parse(text, "t.pkt")
    cfg = Config.from_script(script)
    target = PytcpTarget(cfg, rng=random.Random(1), isn_secret=bytes(16))
    return Runner(script, target, config=cfg, shell=None, tcb=tcb).run()


def test_parse_times_segments_and_calls() -> None:
    s = parse(
        "--tolerance_usecs=10000\n`init`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
        "+.1...0.200 connect(3, ..., ...) = 0\n"
        "+0 > S 0:0(0) <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 8>\n"
        "+0.1~+0.2 > . 1:1(0) ack 1 <nop,nop,sack 1001:2001 3001:4001>\n"
        "1.5 < F. 1:1(0) ack 1 win 257\n"
        "* > R 1:1(0)\n"
        "+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)\n",
        "x.pkt",
    )
    assert s.options == {"tolerance_usecs": "10000"}
    assert s.init is not None and s.init.command == "init"
    kinds = [e.time.kind for e in s.events]
    assert kinds == [
        "absolute",
        "relative",
        "relative",
        "relative-range",
        "absolute",
        "any",
        "relative",
    ]
    call = s.events[1].action
    assert call.end_usecs == 200_000 and s.events[1].time.usecs == 100_000  # type: ignore[union-attr]
    syn = s.events[2].action
    assert [o.kind for o in syn.options] == ["mss", "sackOK", "TS", "nop", "wscale"]  # type: ignore[union-attr]
    sack = s.events[3].action
    assert sack.options[2].blocks == ((1001, 2001), (3001, 4001))  # type: ignore[union-attr,index]
    assert s.events[6].action.errno == "EINPROGRESS"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("0 > S 0:1(0) <...>\n", 1, "inconsistent TCP sequence numbers and payload size"),
        (
            "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0) <...>\n",
            2,
            "<...> for TCP options",
        ),
        (
            "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0)\n",
            2,
            "window must be specified",
        ),
        ("0 socket(..., 1, 6) = 3\n+0.2~+0.1 > S 0:0(0)\n", 2, "time range is backwards"),
        ("0 socket(..., 1, 6) = 3\n* close(3) = 0\n", 2, "can only be used with outbound packets"),
        ("+1 socket(..., 1, 6) = 3\n", 1, "first event should be at time 0"),
        ("0 > S 0:0(0) <mss 1460,bogus>\n", 1, "unknown TCP option 'bogus'"),
    ],
)
def test_parse_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse(text, "bad.pkt")
    assert info.value.line == line
    assert message in info.value.message
    assert str(info.value).startswith(f"bad.pkt:{line}: ")


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_passes_against_pytcp(path: Path) -> None:
    result = run(path.read_text())
    assert result.ok, result.error
    assert [r.ok for r in result.lines] == [True] * len(result.lines)


def test_wrong_segment_points_at_line_segment_and_tcb() -> None:
    result = run(HANDSHAKE + "   +0 write(4, ..., 10) = 10\n   +0 > P. 1:11(10) ack 5\n", tcb=True)
    assert not result.ok
    assert result.error == "t.pkt:10: bad ack: expected 5 but got 1"
    last = result.lines[-1]
    assert (last.line, last.ok, last.kind) == (10, False, "outbound")
    assert last.expected == "P. 1:11(10) ack 5"
    assert last.actual.startswith("P. 1:11(10) ack 1 win ")
    assert result.tcb_at_failure["state"] == "ESTABLISHED"
    assert result.tcb_at_failure["snd_nxt"] == 11


def test_missing_segment_is_none_within_tolerance_and_says_what_came() -> None:
    # The data is sent at once; the script expects it 1 s later.
    result = run(HANDSHAKE + "   +0 write(4, ..., 10) = 10\n   +1 > P. 1:11(10) ack 1\n")
    assert not result.ok
    assert (
        "timing error: expected outbound segment at 1.100000 sec but happened at 0.100000"
        in result.error
    )
    result = run(HANDSHAKE + "   +0 > P. 1:11(10) ack 1\n")
    assert "none within tolerance" in result.error


def test_call_return_and_errno_are_checked() -> None:
    result = run(HANDSHAKE + "   +0 read(4, ..., 10) = 10\n")
    assert "read() would block here" in result.error
    result = run(
        HANDSHAKE + "   +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n   +0 read(4, ..., 10) = 10\n"
    )
    assert result.error == "t.pkt:10: read() returned -1 EAGAIN; expected 10"
    result = run(HANDSHAKE + "   +0 getsockopt(4, SOL_TCP, TCP_MAXSEG, [1460], [4]) = 0\n")
    assert result.error == "t.pkt:9: getsockopt(): TCP_MAXSEG is 1000, expected 1460"


def test_recvmsg_control_messages_are_checked() -> None:
    # TCP_INQ's TCP_CM_INQ: the bytes still to read after the call.
    call = (
        "   +0 recvmsg(4, {{msg_name(...)=..., msg_iov(1)=[{{..., 40}}], msg_flags=0, "
        "msg_control=[{{cmsg_level=SOL_TCP, cmsg_type=TCP_CM_INQ, cmsg_data={}}}]}}, 0) = 40\n"
    )
    text = HANDSHAKE + (
        "   +0 setsockopt(4, SOL_TCP, TCP_INQ, [1], 4) = 0\n"
        "   +0 < P. 1:101(100) ack 1 win 257\n"
    )
    assert run(text + call.format(60)).ok
    result = run(text + call.format(100))
    assert result.error == (
        "t.pkt:11: recvmsg(): control messages are {level 6, type 36, data 60}, "
        "expected {level 6, type 36, data 100}"
    )
    # Without TCP_INQ there is no control message to find.
    result = run(HANDSHAKE + "   +0 < P. 1:101(100) ack 1 win 257\n" + call.format(60))
    assert result.error.endswith("control messages are none, expected {level 6, type 36, data 60}")


def test_tcb_changes_and_drop_reasons_per_line() -> None:
    result = run(
        HANDSHAKE + " +.01 < R. 100:100(0) ack 1 win 257\n   +0 > . 1:1(0) ack 1\n", tcb=True
    )
    assert result.ok, result.error
    syn = result.lines[4]
    assert syn.tcb["state"] == (None, "SYN-RECEIVED")
    ack = result.lines[6]
    assert ack.tcb["state"] == ("SYN-RECEIVED", "ESTABLISHED")
    rst = result.lines[8]
    assert rst.drops == ["rst-in-window"]  # RFC 5961 §3.2: challenged, then dropped
    assert rst.tcb.get("challenge_acks") == (0, 1)


def test_unmodelled_things_fail_at_their_line() -> None:
    result = run(HANDSHAKE + "   +0 setsockopt(4, SOL_TCP, TCP_CORK, [1], 4) = 0\n")
    assert result.error == "t.pkt:9: socket option SOL_TCP/TCP_CORK is not modelled by pytcp"
    result = run(HANDSHAKE + "   +0 %{ assert tcpi_rto == 1 }%\n")
    assert "code blocks" in result.error and result.error.startswith("t.pkt:9:")
    result = run(HANDSHAKE + "   +0 sendmsg(4, {msg_name(...)=...}, 0) = 0\n")
    assert result.error == "t.pkt:9: sendmsg() is not modelled by the pytcp target"


def test_code_blocks_read_tcp_info_at_their_line_and_run_after_the_last_event() -> None:
    # As packetdrill: tcp_info is read at the block's time, the Python runs at the end
    # (a process started at the line would hold up the lines after it).
    class InfoTarget(PytcpTarget):
        def tcp_info(self, handle: object) -> dict[str, int]:
            return {"tcpi_read_at": self.now()}

    ran: list[tuple[str, dict[str, int], int]] = []

    def code(block: str, variables: dict[str, int]) -> tuple[int, str]:
        ran.append((block.strip(), variables, target.now()))
        return (0, "") if "good" in block else (1, "AssertionError: 7\n")

    text = HANDSHAKE + (
        "   +0 %{ good }%\n  +.3 %{ bad }%\n"
        "  +.3 setsockopt(4, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0\n"
    )
    script = parse(text, "t.pkt")
    cfg = Config.from_script(script)
    target = InfoTarget(cfg, rng=random.Random(1), isn_secret=bytes(16))
    result = Runner(script, target, config=cfg, shell=None, code=code).run()
    assert [(b, v["tcpi_read_at"]) for b, v, _ in ran] == [("good", 100000), ("bad", 400000)]
    assert all(at == 700000 for _, _, at in ran)
    assert result.error == "t.pkt:10: code block failed: AssertionError: 7"
    assert [(r.line, r.ok) for r in result.lines if r.kind == "code"] == [(9, True), (10, False)]


def test_blocking_call_returns_when_the_segment_comes() -> None:
    text = HANDSHAKE + (
        "   +0...0.200 read(4, ..., 1000) = 1000\n  +.2 < P. 1:1001(1000) ack 1 win 257\n"
    )
    assert run(text).ok
    # "+0...0.150": the call starts at 0.1 and must return by 0.25 (both relative to
    # the previous event, as packetdrill's end times); the data comes at 0.3.
    late = (
        HANDSHAKE
        + "   +0...0.150 read(4, ..., 1000) = 1000\n  +.2 < P. 1:1001(1000) ack 1 win 257\n"
    )
    result = run(late)
    assert (
        "expected system call return at 0.250000 sec but happened at 0.300000 sec" in result.error
    )


def test_blocking_return_slack_is_a_share_of_the_calls_own_span() -> None:
    """As packetdrill: a blocking call's return may be off by --tolerance_percent of
    the call's span (start to end time), whatever event the runner was at when it
    noticed the return."""
    listen = HANDSHAKE.split("   +0 < S")[0]

    def script(ack_at: str) -> str:
        return listen + (
            "   +0...0.200 accept(3, ..., ...) = 4\n"
            "  +.1 < S 0:0(0) win 32792 <mss 1000,nop,wscale 7>\n"
            "   +0 > S. 0:0(0) ack 1 <...>\n"
            f"   {ack_at} < . 1:1(0) ack 1 win 257\n"
            "  +.1 write(4, ..., 10) = 10\n"
            "   +0 > P. 1:11(10) ack 1\n"
        )

    # 15 ms late: beyond 4 ms and beyond 12.5 % of the 0.115 s since the SYN-ACK, but
    # within 12.5 % of the call's 0.2 s.
    assert run(script("+.115")).ok
    late = run(script("+.130"))  # 30 ms late: beyond 25 ms
    assert late.error == (
        "t.pkt:5: timing error: expected system call return at 0.200000 sec "
        "but happened at 0.230000 sec; tolerance 0.025000 sec"
    )


def test_cli_json_junit_and_exit_status(tmp_path: Path) -> None:
    good = ROOT / "tests" / "scripts" / "handshake-passive.pkt"
    bad = tmp_path / "bad.pkt"
    bad.write_text(HANDSHAKE + "   +0 > P. 1:11(10) ack 1\n")
    junit = tmp_path / "r.xml"
    done = subprocess.run(
        [PYTCP, "script", "--json", "--junit", str(junit), str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["target"], r["ok"]) for r in rows] == [("pytcp", True), ("pytcp", False)]
    assert rows[1]["error"].startswith(f"{bad}:9: none within tolerance")
    xml = junit.read_text()
    assert 'tests="2" failures="1"' in xml and "<failure" in xml
    ok = subprocess.run(
        [PYTCP, "script", str(good)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (ok.returncode, ok.stdout) == (0, f"{good}: PASS (pytcp)\n")
    usage = subprocess.run(
        [PYTCP, "script", "--against", "bsd", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2 and "unknown target 'bsd'" in usage.stderr


def test_failure_text_shows_the_line_both_segments_and_the_tcb() -> None:
    from stack.script.report import render_text

    result = run(HANDSHAKE + "   +0 write(4, ..., 10) = 10\n   +0 > P. 1:11(10) ack 5\n")
    text = render_text(result)
    assert text.splitlines()[:2] == [
        "t.pkt: FAIL (pytcp)",
        "t.pkt:10: bad ack: expected 5 but got 1",
    ]
    assert "      script: P. 1:11(10) ack 5" in text
    assert "      tcb now: state=ESTABLISHED snd_una=1 snd_nxt=11 snd_max=11 " in text
    # the fields the failed check is about: the ack is RCV.NXT
    assert "      tcb involved: rcv_nxt=1 fin_received=False\n" in text
    assert result.tcb_at_failure["rcv_nxt"] == 1
    late = run(HANDSHAKE + "   +0 write(4, ..., 10) = 10\n  +.5 > P. 1:11(10) ack 1\n")
    assert "      tcb involved: rto=" in render_text(late)


def test_involved_tcb_fields_follow_the_checks_that_failed() -> None:
    from stack.script.report import involved

    tcb = {"state": "ESTABLISHED", "snd_una": 1, "snd_nxt": 11, "snd_max": 11, "rcv_nxt": 5}
    tcb |= {"rto": "0.3s", "timer.rexmit": "0.4s", "fin_received": False}
    assert involved("bad seq: expected 1 but got 11", tcb) == [
        "snd_una=1",
        "snd_nxt=11",
        "snd_max=11",
    ]
    assert involved("bad flags: x; bad ack: y", tcb) == [
        "state=ESTABLISHED",
        "fin_received=False",
        "rcv_nxt=5",
    ]
    assert involved("none within tolerance", tcb) == ["rto=0.3s", "timer.rexmit=0.4s"]
    assert involved("something else", tcb) == []


def test_side_by_side_says_where_targets_agree_and_how_they_differ() -> None:
    from stack.script.report import side_by_side
    from stack.script.runner import LineResult, ScriptResult

    def rec(n: int, ok: bool = True, actual: str = "", message: str = "") -> LineResult:
        return LineResult(n, f"  +0 line{n}", "outbound", ok, 0.0, message, actual=actual)

    a = ScriptResult("x.pkt", "pytcp", ok=True, lines=[rec(1), rec(2, actual="R 1:1(0) win 0")])
    a.lines.append(rec(3))
    b = ScriptResult(
        "x.pkt",
        "linux",
        ok=False,
        error="x.pkt:2: bad flags: expected R but got R.",
        lines=[rec(1), rec(2, False, "R. 1:1(0) ack 1 win 63", "bad flags: expected R but got R.")],
    )
    assert side_by_side([a, b]).splitlines() == [
        "x.pkt:",
        "  pytcp      PASS",
        "  linux      FAIL  bad flags: expected R but got R.",
        "  the targets agree on 1 of 3 lines and differ on 2, from line 2:",
        "    line 2: +0 line2",
        "      pytcp      ok: R 1:1(0) win 0",
        "      linux      FAIL: R. 1:1(0) ack 1 win 63 (bad flags: expected R but got R.)",
        "    line 3: +0 line3",
        "      pytcp      ok",
        "      linux      not reached",
    ]
    assert side_by_side([a, a]).splitlines()[-1] == "  the targets agree on all 3 lines"
    assert side_by_side([b, b]).splitlines()[-1] == (
        "  the targets agree on all 2 lines; all fail at line 2"
    )
    c = ScriptResult("x.pkt", "linux", ok=False, error="x.pkt:2: bad seq: expected 1 but got 0")
    c.lines = [rec(1), rec(2, False, "R. 0:0(0) ack 1 win 63", "bad seq: expected 1 but got 0")]
    assert side_by_side([b, c]).splitlines()[-3:] == [
        "  the targets agree on all 2 lines; all fail at line 2, differently:",
        "      linux      FAIL: R. 1:1(0) ack 1 win 63 (bad flags: expected R but got R.)",
        "      linux      FAIL: R. 0:0(0) ack 1 win 63 (bad seq: expected 1 but got 0)",
    ]


def test_tcp_info_fields_by_packetdrill_names() -> None:
    import struct

    from pytcpcli.script_linux import TCP_INFO_FIELDS, parse_tcp_info

    names = [n for n, _ in TCP_INFO_FIELDS]
    assert names[:8] == ["tcpi_state", "tcpi_ca_state", "tcpi_retransmits", "tcpi_probes",
                         "tcpi_backoff", "tcpi_options", "_wscale", "_flags"]  # fmt: skip
    raw = bytearray(248)
    raw[0] = 1  # TCP_ESTABLISHED
    raw[6] = 0x87  # rcv_wscale 8, snd_wscale 7
    struct.pack_into("I", raw, 8, 204000)  # tcpi_rto (µs)
    struct.pack_into("I", raw, 16, 1100)  # tcpi_snd_mss
    struct.pack_into("Q", raw, 104, 12345)  # tcpi_pacing_rate, 8-aligned after 24 u32
    struct.pack_into("H", raw, 240, 3)  # tcpi_total_rto
    info = parse_tcp_info(bytes(raw))
    assert (info["tcpi_state"], info["tcpi_snd_wscale"], info["tcpi_rcv_wscale"]) == (1, 7, 8)
    assert (info["tcpi_rto"], info["tcpi_snd_mss"]) == (204000, 1100)
    assert (info["tcpi_pacing_rate"], info["tcpi_total_rto"]) == (12345, 3)
    assert "tcpi_total_rto_time" in info
    short = parse_tcp_info(bytes(raw[:104]))  # an older kernel's shorter struct
    assert "tcpi_total_retrans" in short and "tcpi_pacing_rate" not in short


def test_a_packet_the_target_cannot_inject_fails_its_line() -> None:
    class Refusing(PytcpTarget):
        def inject(self, packet: bytes) -> list[str]:
            if len(packet) > 1000:
                raise OSError(90, "Message too long")
            return super().inject(packet)

    text = HANDSHAKE + "   +0 < P. 1:2001(2000) ack 1 win 257\n"
    script = parse(text, "t.pkt")
    cfg = Config.from_script(script)
    target = Refusing(cfg, rng=random.Random(1), isn_secret=bytes(16))
    result = Runner(script, target, config=cfg, shell=None).run()
    assert result.error == "t.pkt:9: cannot inject the 2040-byte packet: Message too long"


def test_calls_pytcp_cannot_model_fail_at_their_line() -> None:
    """Nothing is passed over silently: what the pytcp target cannot do is an error at
    the line (a buffer size on a live connection, a poll event it does not compute,
    another peer), and what it models it models as Linux does."""
    cases = {
        "   +0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [1000], 4) = 0\n": (
            "t.pkt:9: SO_SNDBUF on a connection is not modelled by pytcp "
            "(set it before listen() or connect())"
        ),
        "   +0 poll([{fd=4, events=POLLIN|POLLPRI}], 1, 0) = 0\n": (
            "t.pkt:9: poll() events 0x2 are not modelled"
        ),
        "   +0 accept4(3, ..., ..., SOCK_NONBLOCK|O_NONBLOCK|1) = 5\n": (
            "t.pkt:9: accept4() flags SOCK_NONBLOCK|O_NONBLOCK|1 are not modelled by pytcp"
        ),
        '   +0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 5\n   +0 connect(5, {sa_family=AF_INET, '
        'sin_port=htons(80), sin_addr=inet_addr("192.0.2.1")}, 16) = 0\n': (
            "t.pkt:10: connect() to 192.0.2.1: the pytcp target's only peer is 10.77.250.1"
        ),
    }
    for line, error in cases.items():
        assert run(HANDSHAKE + line).error == error, line
    modelled = (
        "   +0 bind(4, ..., ...) = -1 EINVAL (Invalid argument)\n"
        '   +0 bind(4, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("10.77.250.9")}'
        ", 16) = -1 EADDRNOTAVAIL (Cannot assign requested address)\n"
        "   +0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 5\n"
        '   +0 bind(5, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("0.0.0.0")}'
        ", 16) = 0\n"
    )
    assert run(HANDSHAKE + modelled).ok


def test_accept4_sock_nonblock_gives_a_non_blocking_socket() -> None:
    listen = HANDSHAKE.replace("   +0 accept(3, ..., ...) = 4\n", "")
    text = listen + (
        "   +0 accept4(3, ..., ..., SOCK_NONBLOCK) = 4\n"
        "   +0 read(4, ..., 10) = -1 EAGAIN (Resource temporarily unavailable)\n"
    )
    assert run(text).ok
    blocking = listen + "   +0 accept4(3, ..., ..., 0) = 4\n   +0 read(4, ..., 10) = 0\n"
    assert "read() would block here" in run(blocking).error


def test_relative_times_count_from_an_outbound_segments_stamp_not_its_pickup() -> None:
    # A real-time target's capture reaches the runner after the segment left (its
    # stamp); the stack's clock runs on meanwhile. Relative times count from the stamp,
    # so the peer's ACK still comes 100 ms after the SYN,ACK left (the RTT, hence an RTO
    # of 300 ms) and each retransmission is expected 300, 600 ms after the one before,
    # not 40 ms later each time the runner got a capture late. The ACK due 10 ms after
    # the last one is not late for going in once the runner has that one.
    class LatePickup(PytcpTarget):
        def next_outbound(self, deadline: int) -> Captured | None:
            got = super().next_outbound(deadline)
            if got is not None:
                self.wait_until(self.now() + 40_000)
            return got

    script = parse(ROOT.joinpath("tests", "scripts", "rto-backoff.pkt").read_text(), "t.pkt")
    cfg = Config.from_script(script)
    target = LatePickup(cfg, rng=random.Random(1), isn_secret=bytes(16))
    result = Runner(script, target, config=cfg, shell=None).run()
    assert result.ok, result.error


def test_relative_times_after_a_blocking_call_count_from_when_it_was_made() -> None:
    # A real-time target goes on past a blocking call only once it sees the call's
    # thread asleep, a little after the call was made; the SYN a blocking connect()
    # sends left at once. The `+0 > S` after it counts from the call (packetdrill: the
    # call's start time), so that SYN is on time, not 10 ms early.
    class LateToSleep(PytcpTarget):
        def call(
            self, call: Syscall, fds: dict[int, Any], blocking_ok: bool
        ) -> CallOutcome | None:
            outcome = super().call(call, fds, blocking_ok)
            if outcome is None:
                self.wait_until(self.now() + 10_000)
            return outcome

    text = ROOT.joinpath("tests", "scripts", "handshake-active.pkt").read_text()
    script = parse(text, "t.pkt")
    cfg = Config.from_script(script)
    target = LateToSleep(cfg, rng=random.Random(1), isn_secret=bytes(16))
    result = Runner(script, target, config=cfg, shell=None).run()
    assert result.ok, result.error
