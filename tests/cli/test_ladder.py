"""`--ladder`: the drawing of a whole connection with the kernel as the peer, over IPv4
and IPv6, compared whole (times, ISNs and what depends on the clock masked), and of
impaired, dropped and retransmitted segments; the drawing's pieces, sans-IO, from trace
events."""

from __future__ import annotations

import io
import queue
import re
import socket
import threading

import pytest

from tests.cli.netcat import ADDRS, FAMILIES, TIMEOUT, StderrLines, pytcp

EXPECTED = """\
PID.1: pytcp 10.77.0.2:40000 <-> peer 10.77.0.1:7301
                       pytcp 10.77.0.2:40000                                          10.77.0.1:7301
                       |  SYN seq 0 win 65535 <mss 1460,sackOK,TS,wscale 7>           |
 T.TTTTTT SYN-SENT     |-----------------------------._                               | LISTEN
                       |                               `----------------------------->| SYN-RECEIVED
                       * pytcp ISN <isn>                                              |
                       |SYN,ACK seq 0 ack 1 win 65160 <mss 1460,sackOK,TS,wscale 10>  |
 T.TTTTTT              |                               _.-----------------------------|
          ESTABLISHED  |<-----------------------------'                               |
                       * peer ISN <isn>                                               |
                       |  ACK seq 1 ack 1 win 2048                                    |
 T.TTTTTT              |-----------------------------._                               |
                       |                               `----------------------------->| ESTABLISHED
                       |  PSH,ACK 1:7(6) ack 1 win 2048                               |
 T.TTTTTT              |-----------------------------._                               |
                       |                               `----------------------------->|
                       |                                      ACK seq 1 ack 7 win 64  |
 T.TTTTTT              |                               _.-----------------------------|
                       |<-----------------------------'                               |
                       |  FIN,ACK seq 7 ack 1 win 2048                                |
 T.TTTTTT FIN-WAIT-1   |-----------------------------._                               |
                       |                               `----------------------------->| CLOSE-WAIT
                       |                                      ACK seq 1 ack 8 win 64  |
 T.TTTTTT              |                               _.-----------------------------|
          FIN-WAIT-2   |<-----------------------------'                               |
                       |                                  FIN,ACK seq 1 ack 8 win 64  |
 T.TTTTTT              |                               _.-----------------------------| LAST-ACK
          TIME-WAIT    |<-----------------------------'                               |
 T.TTTTTT              * timer time-wait armed: 60s (2MSL)                            |
                       |  ACK seq 8 ack 2 win 2048                                    |
 T.TTTTTT              |-----------------------------._                               |
                       |                               `----------------------------->| CLOSED
 T.TTTTTT              * end of run in TIME-WAIT, <left> of 2MSL left                 |
"""


# Over IPv6 the same drawing but for the addresses (bracketed: the same width here), the
# MSS (1500 - 40 - 20), the kernel's SYN-ACK window (45 segments of 1428, the MSS less
# timestamps, where IPv4 has 45 of 1448) and its later windows (scaled by 2^10).
EXPECTED6 = (
    EXPECTED.replace("10.77.0.2:", "[fd77::2]:")
    .replace("10.77.0.1:", "[fd77::1]:")
    .replace("<mss 1460,", "<mss 1440,")
    .replace("SYN,ACK seq 0 ack 1 win 65160 ", "SYN,ACK seq 0 ack 1 win 64260 ")
    .replace(" win 64  |", " win 63  |")
)


def mask(text: str) -> str:
    """Times, ISNs, the PID and the TIME-WAIT time left: what changes from run to run."""
    text = re.sub(r"^[ \d]\d\.\d{6}", " T.TTTTTT", text, flags=re.MULTILINE)
    text = re.sub(r"ISN \d+ +\|", lambda m: "ISN <isn>".ljust(len(m[0]) - 1) + "|", text)
    text = re.sub(r"^\d+\.1:", "PID.1:", text, flags=re.MULTILINE)
    return re.sub(r"in TIME-WAIT, [\d.]+m?s of 2MSL left +\|",
                  lambda m: "in TIME-WAIT, <left> of 2MSL left".ljust(len(m[0]) - 1) + "|",
                  text)  # fmt: skip


@pytest.mark.netns
@pytest.mark.timeout(240)
@FAMILIES
def test_the_ladder_of_a_whole_connection_with_the_kernel(netns, family: int) -> None:
    """Handshake, one data segment and its ACK, pytcp's FIN, the kernel's delayed ACK of
    it, the kernel's FIN, TIME-WAIT and its timer. Each step waits for the line that
    shows the one before, so the kernel's ACKs never merge with what follows."""
    KERNEL, _STACK = ADDRS[family]
    close_now = threading.Event()
    got: queue.Queue[bytes] = queue.Queue()
    srv = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::" if family == 6 else "0.0.0.0", 7301))
    srv.listen(1)
    srv.settimeout(TIMEOUT)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            got.put(data)
            close_now.wait(TIMEOUT)  # the kernel's FIN only after its ACK of ours

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    proc = pytcp("connect", "--ladder", "--width", "100", "-p", "40000", KERNEL, "7301")
    err = StderrLines(proc)
    try:
        assert proc.stdin is not None
        _until(err, "ISN ")  # our SYN is drawn: the handshake runs
        _until(err, "ESTABLISHED")
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        _until(err, "ACK seq 1 ack 7 win")  # the kernel ACKs at once (quick-ack)
        proc.stdin.close()  # our FIN
        _until(err, "FIN-WAIT-2")  # the kernel's delayed ACK of it
        close_now.set()
        assert proc.wait(TIMEOUT) == 0
        assert got.get(timeout=TIMEOUT) == b"hello\n"
        drawing = "".join(err.rest())
    finally:
        close_now.set()
        srv.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
    assert mask(drawing) == (EXPECTED if family == 4 else EXPECTED6)


def _until(err: StderrLines, text: str) -> str:
    while True:
        try:
            line = err._queue.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no {text!r} in {err.lines}") from None
        assert line is not None, f"stderr ended before {text!r}: {err.lines}"
        err.lines.append(line)
        if text in line:
            return line


# ------------------------------------------------------------- sans-IO: the marks


def test_retransmission_timer_drop_and_impair_are_marked() -> None:
    from dataclasses import replace

    from pytcpcli.ladder import Ladder
    from stack.io.faults import Faults, FaultSpec
    from stack.tcp.clock import MS
    from tests.tcp.helpers import CONFIG, LOCAL, REMOTE, REMOTE_ISS, SEND, connection, syn

    out = io.StringIO()
    ladder = Ladder(out, width=80, colour=False, pid=7)
    c = connection(replace(CONFIG, journal=0), tracer=ladder)
    c.open_passive(0)
    c.receive_segment(syn(), 0)
    c.segments_to_send(0)
    c.receive_segment(SEND, 1 * MS)
    ladder.flush()
    c.send(b"abc", 2 * MS)
    c.segments_to_send(2 * MS)
    ladder.flush()
    c.fire_timer("retransmission", 3 * MS)  # pytcp timer ID fire retransmission
    c.segments_to_send(3 * MS)
    ladder.flush()
    c.receive_segment(replace(SEND, seq=REMOTE_ISS + 100_000, payload=b"x"), 4 * MS)
    c.segments_to_send(4 * MS)
    ladder.flush()
    faults = Faults(ladder)
    faults.set("1", LOCAL, REMOTE, FaultSpec.parse("drop-next 1"))
    from stack.wire import Ipv4Header

    packet = Ipv4Header(REMOTE[0], LOCAL[0], 6).build(
        replace(SEND, payload=b"lost").build(REMOTE[0], LOCAL[0])
    )
    assert faults.apply(packet, 5 * MS, False) == []
    ladder.flush()
    assert out.getvalue() == EXPECTED_MARKS


EXPECTED_MARKS = """\
7.1: pytcp 10.77.0.2:5000 <-> peer 10.77.0.1:40000
                       pytcp 10.77.0.2:5000                       10.77.0.1:40000
                       |           SYN seq 0 win 4096 <mss 1460>  |
 0.000000 LISTEN       |                     _.-------------------| SYN-SENT
          SYN-RECEIVED |<-------------------'                     |
                       * peer ISN 20000                           |
                       |  SYN,ACK seq 0 ack 1 win 4096 <mss 1460> |
 0.000000              |-------------------._                     |
                       |                     `------------------->| ESTABLISHED
                       * pytcp ISN 10000                          |
                       |                ACK seq 1 ack 1 win 4096  |
 0.001000              |                     _.-------------------|
          ESTABLISHED  |<-------------------'                     |
                       |  PSH,ACK 1:4(3) ack 1 win 4096           |
 0.002000              |-------------------._                     |
                       |                     `------------------->|
 0.003000              * timer retransmission fired on demand     |
                       * (pytcp timer)                            |
                       |  PSH,ACK 1:4(3) ack 1 win 4096           |
                       |  [retransmission]                        |
 0.003000              |-------------------._                     |
                       |                     `------------------->|
                       |     ACK 100000:100001(1) ack 1 win 4096  |
 0.004000              |                     _.-------------------|
                       |<-------------------'                     |
 0.004000              * dropped: out-of-window                   |
                       |  ACK seq 4 ack 1 win 4096                |
 0.004000              |-------------------._                     |
                       |                     `------------------->|
                       |               ACK 1:5(4) ack 1 win 4096  |
                       |                        [retransmission]  |
 0.005000              |                     _.-------------------|
                       |          X---------'                     |
 0.005000              * impair drop-next: dropped a segment from |
                       * the peer (0 left)                        |
"""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colours_on_a_terminal_plain_ascii_otherwise() -> None:
    from pytcpcli.ladder import Ladder
    from tests.tcp.helpers import connection, syn

    for stream, coloured in ((_Tty(), True), (io.StringIO(), False)):
        ladder = Ladder(stream, width=80)
        c = connection(tracer=ladder)
        c.open_passive(0)
        c.receive_segment(syn(), 0)
        c.segments_to_send(0)
        ladder.flush()
        text = stream.getvalue()
        assert ("\x1b[33m" in text and "\x1b[36m" in text and "\x1b[1m" in text) == coloured
        assert text.isascii()
        widths = {len(re.sub(r"\x1b\[\d+m", "", line)) for line in text.splitlines()[2:]}
        assert max(widths) <= 80
