"""`pytcp plot` and `--record`: graphs of a transfer to the kernel, over IPv4 and IPv6,
with --impair loss=2%, checked for the marks they must carry (retransmissions, a monotone
ACK line, SACK, ssthresh once loss was seen) in the data plotted, and for being valid SVG
and PNG."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytcpcli.plotdata import choose, congestion, load, time_sequence
from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    TIMEOUT,
    KernelServer,
    StderrLines,
    recv_all,
    run,
)

SIZE = 1 << 20  # ~720 full segments: at 2 % loss, some are lost for sure (1 - 0.98**720)


def _is_svg(path: Path) -> bool:
    root = ET.parse(path).getroot()
    return root.tag == "{http://www.w3.org/2000/svg}svg"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"


@pytest.mark.netns
@pytest.mark.timeout(280)
@FAMILIES
def test_plot_of_a_lossy_transfer(netns, tmp_path: Path, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(7401, recv_all, family=family)
    data = os.urandom(SIZE)
    pcap, record = tmp_path / "run.pcap", tmp_path / "run.jsonl"
    tcpdump = None
    if shutil.which("tcpdump"):
        # Any capture, not only pytcp's: tcpdump on every interface (Linux cooked).
        tcpdump = subprocess.Popen(
            ["tcpdump", "-i", "any", "-U", "-n", "-w", str(tmp_path / "any.pcap"), "tcp port 7401"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        StderrLines(tcpdump).wait_for("tcpdump: listening on")
    try:
        out = run("connect", "--pcap", str(pcap), "--record", str(record),
                  "--impair", "loss=2%,seed=3", KERNEL, "7401", input=data)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert server.wait() == [data]
    finally:
        server.close()
        if tcpdump is not None:
            tcpdump.send_signal(signal.SIGINT)
            tcpdump.wait(TIMEOUT)

    # What is drawn: the data, from pytcp's own pcap.
    (conn,) = load(str(pcap))
    ts = time_sequence(conn)
    assert ts.sender[1] != 7401 and ts.receiver == (KERNEL, 7401)
    assert max(end for _, _, end, _ in ts.data) == SIZE + 1  # relative to the ISN
    assert ts.retransmissions, "2 % loss and not one retransmission drawn"
    acks = [a for _, a in ts.acks]
    assert acks == sorted(acks) and acks[-1] == SIZE + 2  # monotone, up to our FIN
    assert all(w >= a for (_, a), (_, w) in zip(ts.acks, ts.window, strict=True))
    assert ts.sacks  # the kernel SACKs what arrived after a hole
    for suffix, valid in (("svg", _is_svg), ("png", _is_png)):
        target = tmp_path / f"seq.{suffix}"
        drawn = run("plot", str(pcap), "-o", str(target))
        assert drawn.returncode == 0, drawn.stderr
        assert drawn.stdout.decode() == f"{target}: 1 {conn.describe()}\n"
        assert valid(target)

    # The record: the same connection by its PID.N, and its congestion state over time.
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["kind"] == "record"
    (rconn,) = load(str(record))
    assert rconn.ident.endswith(".1") and rconn.tcb
    series = congestion(rconn)
    assert series["ssthresh"], "loss was seen: ssthresh was set"
    cwnd = [c for _, c in series["cwnd"]]
    assert any(b < a for a, b in itertools.pairwise(cwnd))  # reduced on a loss
    assert series["srtt"] and series["rto"]
    assert len(time_sequence(rconn).retransmissions) == len(ts.retransmissions)
    drawn = run("plot", str(record), "-o", str(tmp_path / "all.svg"))
    assert drawn.returncode == 0, drawn.stderr
    assert _is_svg(tmp_path / "all.svg")

    if tcpdump is not None:
        peer = f"[{KERNEL}]:7401" if family == 6 else f"{KERNEL}:7401"  # as --conn is typed
        any_conn = choose(load(str(tmp_path / "any.pcap")), peer)
        assert time_sequence(any_conn).retransmissions


def test_plot_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello\n")
    bad = run("plot", str(tmp_path / "x.txt"), "-o", str(tmp_path / "o.svg"))
    assert (bad.returncode, bad.stderr.decode()) == (
        2, f"pytcp: {tmp_path / 'x.txt'} is neither a pcap nor a pytcp --record file\n"
    )  # fmt: skip
    fmt = run("plot", str(tmp_path / "x.txt"), "-o", str(tmp_path / "o.jpg"))
    assert fmt.stderr.decode() == (
        f"pytcp: -o {tmp_path / 'o.jpg'}: the graph is written as .svg or .png\n"
    )
    missing = run("plot", str(tmp_path / "none.pcap"), "-o", str(tmp_path / "o.svg"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr.decode()
