"""Figure `connrate`: connections per second, each a handshake, one byte and a four-way close.

A kernel client connects, sends one byte, half-closes, reads until the server's FIN and
closes, one connection after the other, for BENCH_CONN_SECONDS (default 3; 0.5 with
BENCH_QUICK=1). Servers: `ncat -l -k PORT` over loopback and `pytcp listen -k PORT` over
the TUN, each with stdin at EOF (/dev/null) and stdout to /dev/null. The pytcp row's
ratio is against ncat's. pytcp answers each client's byte and FIN with its own FIN, so
its connections end in TIME-WAIT inside pytcp: the `scale` figure's TIME-WAIT memory row
counts them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, Proc, wait_kernel_port
from benchmarks.report import Figure

PORT = 5004


def one_connection(addr: str, port: int) -> None:
    with socket.create_connection((addr, port), timeout=10) as sock:
        sock.sendall(b"x")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass


def rate(addr: str, port: int, seconds: float) -> float:
    """Connections per second, one at a time, for `seconds` (after 5 warm-up ones)."""
    for _ in range(5):
        one_connection(addr, port)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        one_connection(addr, port)
        n += 1
    return n / (time.perf_counter() - start)


def run(bench: Bench, ns: Namespaces) -> Figure:
    seconds = float(os.environ.get("BENCH_CONN_SECONDS", bench.size(3, 0.5)))
    fig = Figure("connrate", "connection rate: handshake, 1 byte, four-way close (conn/s)",
                 __doc__ or "")

    def ncat() -> float:
        with Proc(["ncat", "-l", "-k", "127.0.0.1", str(PORT)], name="ncat -l -k"):
            wait_kernel_port(PORT)
            return rate("127.0.0.1", PORT, seconds)

    def pytcp() -> float:
        tun = bench.tun()
        with Proc(bench.cmd(tun, "listen", "-k", str(PORT)), env=bench.env,
                  name="pytcp listen -k") as listener:
            bench.wait_listener(listener, PORT)
            return rate(tun.pytcp, PORT, seconds)

    for _ in range(bench.runs):
        for key, what, measure, baseline in (
            ("ncat", "kernel → ncat -l -k", ncat, None),
            ("pytcp", "kernel → pytcp listen -k", pytcp, "ncat"),
        ):
            row = fig.row(key, what, "conn/s", baseline=baseline)
            try:
                row.runs.append(measure())
            except (BenchError, OSError, subprocess.SubprocessError) as exc:
                row.note = f"failed: {exc}"[:200]
    return fig
