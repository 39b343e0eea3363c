"""Figure `rr`: 1-byte request/response rate from a kernel client (TCP_NODELAY).

The client sends one byte, waits for one byte back, and repeats for BENCH_RR_SECONDS
(default 3; 0.5 with BENCH_QUICK=1) after a warm-up of 50 exchanges; the figure is
exchanges per second. Rows:
  ncat -e cat        `ncat -l -k -e /bin/cat PORT`, the client over loopback
  pytcp -e cat       `pytcp listen -k -e cat PORT`, the client over the TUN; ratio vs ncat
  ncat relay         `ncat -l PORT <FIFO | ncat 127.0.0.1 ECHO >FIFO`: netcat relaying its
                     stdin/stdout to a kernel echo server (ncat -l -k -e /bin/cat ECHO)
  pytcp relay        `pytcp listen PORT <FIFO | ncat 127.0.0.1 ECHO >FIFO`: the same with
                     pytcp as the listening netcat; ratio vs ncat relay
"""

from __future__ import annotations

import os
import subprocess
import time

from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, Proc, connect, wait_kernel_port
from benchmarks.report import Figure

PORT = 5002
ECHO = 5003
WARMUP = 50


def exchanges(addr: str, port: int, seconds: float) -> float:
    """Exchanges per second of one byte each way, over `seconds` after the warm-up."""
    sock = connect(addr, port, timeout=20, nodelay=True)
    with sock:
        sock.settimeout(10)
        one = b"x"

        def exchange() -> None:
            sock.sendall(one)
            if not sock.recv(1):
                raise BenchError(f"{addr}:{port} closed the connection")

        for _ in range(WARMUP):
            exchange()
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            exchange()
            n += 1
            if n % 32 == 0 and time.perf_counter() >= deadline:
                break
        return n / (time.perf_counter() - start)


def echo_server() -> Proc:
    proc = Proc(["ncat", "-l", "-k", "-e", "/bin/cat", "127.0.0.1", str(ECHO)], name="ncat echo")
    wait_kernel_port(ECHO)
    return proc


def run(bench: Bench, ns: Namespaces) -> Figure:
    seconds = float(os.environ.get("BENCH_RR_SECONDS", bench.size(3, 0.5)))
    fig = Figure("rr", "1-byte request/response (exchanges/s)", __doc__ or "")
    fifo = bench.tmp / "rr.fifo"
    os.mkfifo(fifo)

    def ncat_exec() -> float:
        with Proc(["ncat", "-l", "-k", "-e", "/bin/cat", "127.0.0.1", str(PORT)], name="ncat -e"):
            wait_kernel_port(PORT)
            return exchanges("127.0.0.1", PORT, seconds)

    def pytcp_exec() -> float:
        tun = bench.tun()
        with Proc(bench.cmd(tun, "listen", "-k", "-e", "cat", str(PORT)), env=bench.env,
                  name="pytcp listen -k -e cat") as listener:
            bench.wait_listener(listener, PORT)
            return exchanges(tun.pytcp, PORT, seconds)

    def ncat_relay() -> float:
        line = f"ncat -l 127.0.0.1 {PORT} <{fifo} | ncat 127.0.0.1 {ECHO} >{fifo}"
        with echo_server(), Proc(["sh", "-c", line], name="ncat relay"):
            wait_kernel_port(PORT)
            return exchanges("127.0.0.1", PORT, seconds)

    def pytcp_relay() -> float:
        tun = bench.tun()
        listen = " ".join(bench.cmd(tun, "listen", str(PORT)))
        deadline = time.monotonic() + 20
        line = f"{listen} <{fifo} | ncat 127.0.0.1 {ECHO} >{fifo}"
        with echo_server(), Proc(["sh", "-c", line], env=bench.env, name="pytcp relay") as sh:
            # The listener is a child of sh: wait for any listener of this run on PORT.
            while time.monotonic() < deadline:
                sh.check_alive()
                entries = bench.inspect()
                if any(e.get("state") == "LISTEN" and e["local"]["port"] == PORT for e in entries):
                    break
                time.sleep(0.05)
            return exchanges(tun.pytcp, PORT, seconds)

    cases = [
        ("ncat_exec", "kernel ↔ ncat -l -k -e /bin/cat", ncat_exec, None),
        ("pytcp_exec", "kernel ↔ pytcp listen -k -e cat", pytcp_exec, "ncat_exec"),
        ("ncat_relay", "kernel ↔ ncat -l relaying to a kernel echo server", ncat_relay, None),
        ("pytcp_relay", "kernel ↔ pytcp listen relaying to a kernel echo server", pytcp_relay,
         "ncat_relay"),
    ]
    for _ in range(bench.runs):
        for key, what, measure, baseline in cases:
            row = fig.row(key, what, "exchanges/s", baseline=baseline)
            try:
                row.runs.append(measure())
            except (TimeoutError, BenchError, OSError, subprocess.SubprocessError) as exc:
                row.note = f"failed: {exc}"[:200]
    return fig
