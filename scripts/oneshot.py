"""`python scripts/oneshot.py [-n RUNS] [--fresh] [NAME=PYTCP ...]`: a one-shot
`echo x | pytcp connect 10.77.0.1 PORT`, start to exit and CPU, beside
`echo x | nc -N 127.0.0.1 PORT` (OpenBSD netcat) in the same run.

Needs root: it makes the network namespace `pytcp-oneshot-PID`, runs itself inside it
(`ip netns exec`) and removes it on every path, with whatever still runs there. A kernel
server (a thread) accepts, reads to EOF and closes. Each round runs nc, then each pytcp
given (default: the one beside this Python), interleaved, so that load from elsewhere
falls on all alike. By default every pytcp run takes the default interface, as a
script's commands do (pytcp0, handed over by the previous run's linger child); --fresh
gives each its own `--tun pytcpN --gateway 10.77.N.1/24`, as benchmarks/oneshot.py does.
CPU is the command's own user+system time (wait4), not its linger child's. The commands
run without PYTHONDONTWRITEBYTECODE, as `make bench` runs them. Prints medians, minimum
and maximum. A development tool; `make bench` has the figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

PORT = 5009
INSIDE = "PYTCP_ONESHOT_NETNS"
# As a user runs it, with bytecode caches (as benchmarks/proc.py): an inherited
# PYTHONDONTWRITEBYTECODE=1 makes every run compile all of pytcp from source.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def serve(server: socket.socket, stopping: threading.Event) -> None:
    """Accept, read to EOF, close; until stopped (each wait bounded by the timeout)."""
    while not stopping.is_set():
        try:
            conn, _ = server.accept()
        except OSError:
            continue
        with conn:
            conn.settimeout(10)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass


def timed(argv: list[str]) -> tuple[float, float]:
    """(ms from start to exit, ms of CPU) of `echo x | ARGV`; it must exit 0."""
    r, w = os.pipe()
    os.write(w, b"x\n")
    os.close(w)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=ENV)  # fmt: skip
    os.close(r)
    assert proc.stderr is not None
    # stderr is read after the exit: a linger child has it on /dev/null, not this pipe.
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"oneshot: {' '.join(argv)}: exit {proc.returncode}: {err}")
    return elapsed * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def measure(runs: int, fresh: bool, pytcps: list[tuple[str, str]]) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    server = socket.create_server(("0.0.0.0", PORT), backlog=64)
    server.settimeout(0.5)
    stopping = threading.Event()
    thread = threading.Thread(target=serve, args=(server, stopping), daemon=True)
    thread.start()
    nc = shutil.which("nc")
    rows: dict[str, tuple[list[float], list[float]]] = {"nc -N": ([], [])} if nc else {}
    rows.update({name: ([], []) for name, _ in pytcps})
    try:
        for i in range(runs):
            if nc:
                wall, cpu = timed([nc, "-N", "127.0.0.1", str(PORT)])
                rows["nc -N"][0].append(wall)
                rows["nc -N"][1].append(cpu)
            for k, (name, pytcp) in enumerate(pytcps):
                n = (i * len(pytcps) + k) % 150 + 1
                tun = ["--tun", f"pytcp{n}", "--gateway", f"10.77.{n}.1/24"] if fresh else []
                host = f"10.77.{n}.1" if fresh else "10.77.0.1"
                wall, cpu = timed([pytcp, "connect", *tun, host, str(PORT)])
                rows[name][0].append(wall)
                rows[name][1].append(cpu)
    finally:
        stopping.set()
        thread.join(5)
        server.close()
    how = "each pytcp run on its own --tun pytcpN" if fresh else "the default interface"
    print(f"{runs} runs each, interleaved, {how}; ms")
    print(f"{'':10} {'start to exit':>30}   {'CPU':>30}")
    for name, (walls, cpus) in rows.items():
        print(
            f"{name:10} median {statistics.median(walls):6.1f} (min {min(walls):6.1f}, "
            f"max {max(walls):6.1f})   median {statistics.median(cpus):6.1f} "
            f"(min {min(cpus):6.1f}, max {max(cpus):6.1f})"
        )
    if not nc:
        print("(no nc on PATH: apt-get install netcat-openbsd for the baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="--tun pytcpN per run")
    parser.add_argument("pytcp", nargs="*", metavar="NAME=PYTCP",
                        help="pytcp commands to time (default: pytcp=<venv>/pytcp)")
    args = parser.parse_args()
    pytcps = [(a.partition("=")[0], a.partition("=")[2] or a) for a in args.pytcp]
    pytcps = pytcps or [("pytcp", str(Path(sys.executable).parent / "pytcp"))]
    if os.environ.get(INSIDE):
        measure(args.runs, args.fresh, pytcps)
        return
    if os.geteuid() != 0:
        raise SystemExit("oneshot: needs root (it makes a network namespace)")
    name = f"pytcp-oneshot-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        code = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, __file__, *sys.argv[1:]],
            env={**os.environ, INSIDE: name},
            timeout=600,
        ).returncode
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split()  # fmt: skip
        for pid in pids:  # linger children still holding a TUN
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
