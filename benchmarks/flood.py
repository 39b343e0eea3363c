"""Figure `flood`: legitimate clients of `pytcp listen -k` during a spoofed SYN flood.

`pytcp listen -k PORT` (stdin at EOF, so every accepted client gets pytcp's FIN at once;
stdout /dev/null) is flooded by `benchmarks.synflood`: up to BENCH_FLOOD_COUNT spoofed SYNs
(default 200000; 20000 with BENCH_QUICK=1) within BENCH_FLOOD_SECONDS (10; 2 quick), from
random 10.77.128.0/17 sources, toward pytcp's address only. Meanwhile BENCH_FLOOD_CLIENTS
kernel clients (20; 5 quick), started evenly over the flood, each connect and wait for
pytcp's FIN within 5 s (the kernel resends its SYN after 1 s and 3 s): the share that
completes is the figure, against the same clients with no flood. The JSON's extra holds
the SYNs sent, the listener's counters from `pytcp inspect --json` (cookies sent and
accepted, SYNs dropped, where main counts them) and pytcp's RSS before, at the end of and
after the flood. `--syn-cookies` is left at pytcp's default.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, Proc, rss
from benchmarks.report import Figure

PORT = 5008
CLIENT_TIMEOUT = 5.0
ROOT = Path(__file__).resolve().parent.parent


def client(addr: str, port: int, results: list[bool]) -> None:
    ok = False
    try:
        with socket.create_connection((addr, port), timeout=CLIENT_TIMEOUT) as sock:
            sock.settimeout(CLIENT_TIMEOUT)
            while sock.recv(4096):
                pass
            ok = True
    except OSError:
        pass
    results.append(ok)


def clients_during(addr: str, port: int, n: int, seconds: float) -> float:
    """Start n clients evenly over `seconds`; the share that completed."""
    results: list[bool] = []
    threads = []
    gap = seconds / n
    for _ in range(n):
        t = threading.Thread(target=client, args=(addr, port, results), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(gap)
    for t in threads:
        t.join(CLIENT_TIMEOUT * 3)
    return sum(results) / n


def listener_counters(bench: Bench, pid: int) -> dict[str, Any]:
    for entry in bench.inspect():
        if str(entry.get("id", "")).startswith(f"{pid}.") and entry.get("state") == "LISTEN":
            return dict(entry.get("counters", {}))
    return {}


def run(bench: Bench, ns: Namespaces) -> Figure:
    count = int(os.environ.get("BENCH_FLOOD_COUNT", bench.size(200_000, 20_000)))
    seconds = float(os.environ.get("BENCH_FLOOD_SECONDS", bench.size(10, 2)))
    n = int(os.environ.get("BENCH_FLOOD_CLIENTS", bench.size(20, 5)))
    fig = Figure("flood", f"SYN flood: share of {n} legitimate clients that connect", __doc__ or "")
    runs: list[dict[str, Any]] = []
    fig.extra["runs"] = runs
    for _ in range(bench.runs):
        tun = bench.tun()
        info: dict[str, Any] = {}
        try:
            with Proc(bench.cmd(tun, "listen", "-k", str(PORT)), env=bench.env,
                      name="pytcp listen -k") as listener:
                bench.wait_listener(listener, PORT)
                calm = clients_during(tun.pytcp, PORT, n, min(seconds, 2.0))
                fig.row("calm", "clients connected, no flood", "share").runs.append(calm)
                info["rss_before"] = rss(listener.pid)
                flooder = Proc(
                    [sys.executable, "-m", "benchmarks.synflood", tun.pytcp, str(PORT),
                     str(count), str(seconds)],
                    stdout=subprocess.PIPE, name="synflood",
                )
                with flooder:
                    time.sleep(min(0.5, seconds / 4))
                    share = clients_during(tun.pytcp, PORT, n, seconds * 0.75)
                    out, _ = flooder.popen.communicate(timeout=seconds + 30)
                    info["syns_sent"] = int(out or 0)
                    info["rss_end_of_flood"] = rss(listener.pid)
                fig.row("flood", "clients connected during the flood", "share",
                        baseline="calm").runs.append(share)
                info["listener_counters"] = listener_counters(bench, listener.pid)
                time.sleep(1)
                info["rss_after_1s"] = rss(listener.pid)
        except (BenchError, OSError, subprocess.SubprocessError, ValueError) as exc:
            fig.row("flood", "clients connected during the flood", "share", baseline="calm"
                    ).note = f"failed: {exc}"[:200]
        runs.append(info)
    return fig
