"""Figure `oneshot`: `echo x | pytcp connect HOST PORT`, start to exit, against `nc -N`.

A kernel server (a thread of the harness) accepts, reads until EOF and closes. Each run
times BENCH_ONESHOT_COUNT commands (default 5; 2 with BENCH_QUICK=1) from fork to exit
and keeps their median: `echo x | nc -N 127.0.0.1 PORT` (OpenBSD netcat, what a user
types) and `echo x | pytcp connect 10.77.N.1 PORT` (a fresh TUN each time, as a user's
first command gets). Lower is better; the ratio is pytcp's time over nc's.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, last_line
from benchmarks.report import Figure

PORT = 5005


class SinkServer:
    """Accept, read to EOF, close; until stopped (bounded by the socket timeout)."""

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("0.0.0.0", port))
        self.server.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.server.close()


def timed_pipeline(line: str, env: dict[str, str]) -> float:
    """Seconds until `sh -c LINE` exits. stderr goes to a file, not a pipe: a process the
    command leaves behind (a TIME-WAIT linger) must not hold the clock."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        code = subprocess.run(["sh", "-c", line], env=env, stdout=subprocess.DEVNULL,
                              stderr=err, timeout=60).returncode
        elapsed = time.perf_counter() - start
        if code != 0:
            err.seek(0)
            raise BenchError(f"{line}: exit {code}: {last_line(err.read())}")
    return elapsed


def run(bench: Bench, ns: Namespaces) -> Figure:
    count = int(os.environ.get("BENCH_ONESHOT_COUNT", bench.size(5, 2)))
    fig = Figure("oneshot", "one-shot latency: echo x | CLIENT HOST PORT, start to exit (ms)",
                 __doc__ or "")
    server = SinkServer(PORT)
    try:
        for _ in range(bench.runs):
            for key, baseline in (("nc", None), ("pytcp", "nc")):
                what = "echo x | nc -N" if key == "nc" else "echo x | pytcp connect"
                row = fig.row(key, what, "ms", better="lower", baseline=baseline)
                try:
                    times = []
                    for _ in range(count):
                        if key == "nc":
                            line = f"echo x | nc -N 127.0.0.1 {PORT}"
                        else:
                            tun = bench.tun()
                            cmd = " ".join(bench.cmd(tun, "connect", tun.kernel, str(PORT)))
                            line = f"echo x | {cmd}"
                        times.append(timed_pipeline(line, bench.env) * 1000)
                    row.runs.append(statistics.median(times))
                except (BenchError, OSError, subprocess.SubprocessError) as exc:
                    row.note = f"failed: {exc}"[:200]
    finally:
        server.stop()
    return fig
