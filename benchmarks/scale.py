"""Figure `scale`: one `pytcp listen -k` holding many idle kernel connections.

The listener (`pytcp listen -k --backlog 1024 --max-conns MAX PORT`, stdin a pipe that
stays silent, stdout /dev/null) is filled with idle kernel connections in stages,
BENCH_SCALE_STAGES (default "1 1000 10000"; "1 100 300" with BENCH_QUICK=1). At each
stage n:
  RSS per connection      (pytcp's VmRSS - its VmRSS before the first connection) / the
                          connections `pytcp inspect` lists as ESTABLISHED (n, normally);
                          the reference is what the kernel keeps for an idle socket (the
                          object sizes of its TCP, sock_inode_cache, filp and dentry slabs)
  inspect buffers         the buffer bytes `pytcp inspect ID --json` reports for one
                          connection (its `buffers` fields naming allocated memory
                          where the build has them, else those ending in `capacity`)
  inspect list / ID       start to exit of `pytcp inspect` (the list, to /dev/null) and of
                          `pytcp inspect ID`, against `ss -tn` and `ss -tni sport = :P`
                          listing/finding the harness's kernel sockets
  per-packet cost         a kernel sender moves BENCH_SCALE_BULK_MIB (default 8; 1 quick)
                          to pytcp on one more connection; elapsed time / segments pytcp
                          received (its inspect counters); ratio against the cost at n = 1
Stages stop early, with a note, when the next one would take more than BENCH_SCALE_MEM_MIB
(default 2048) of pytcp RSS at the measured cost per connection, or more file descriptors
than `ulimit -n` allows. Then TIME-WAIT: a fresh `pytcp listen -k` (stdin at EOF) takes
BENCH_SCALE_TW connections (default 10000; 300 quick; at most 45 s of them, well inside
TIME-WAIT's 60 s, and no more than the RSS bound), each waiting for pytcp's FIN, sending a
byte and closing, so that pytcp ends in TIME-WAIT; RSS delta / connections in TIME-WAIT
against the kernel's tw_sock_TCP object size. One run.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.bulk import ZEROS
from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, Proc, Tun, connect, rss, wait_acked
from benchmarks.report import Figure

PORT = 5006
TW_PORT = 5007
BATCH = 64


def slab_objsize(*names: str) -> int:
    """Sum of the object sizes of these kernel slab caches (/proc/slabinfo)."""
    sizes = {}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        parts = line.split()
        sizes[parts[0]] = int(parts[3])
    return sum(sizes.get(n, 0) for n in names)


def open_idle(addr: str, port: int, count: int, timeout: float) -> list[socket.socket]:
    """`count` established kernel connections to addr:port, BATCH at a time, non-blocking."""
    done: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    while len(done) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(done)} of {count} connections in {timeout}s")
        batch = []
        for _ in range(min(BATCH, count - len(done))):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((addr, port))
            batch.append(s)
        pending = {s.fileno(): s for s in batch}
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(1000):
                s = pending.pop(fd)
                poller.unregister(fd)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    s.close()
                    raise BenchError(f"connection {len(done)}: {os.strerror(err)}")
                done.append(s)
        for s in pending.values():
            s.close()
    return done


def buffer_bytes(snapshot: dict[str, Any]) -> int:
    """The buffer bytes inspect reports for one connection: the fields naming allocated
    memory where this build has them, else the capacities."""
    buffers = {k: v for k, v in snapshot.get("buffers", {}).items() if isinstance(v, int)}
    held = [v for k, v in buffers.items() if "alloc" in k or "memory" in k]
    return sum(held) if held else sum(v for k, v in buffers.items() if k.endswith("capacity"))


def time_cmd(bench: Bench, cmd: list[str]) -> float:
    """Milliseconds from start to exit of `cmd`."""
    return bench.time_command(cmd) * 1000


def bulk_on_one_more(bench: Bench, tun: Tun, pid: int, size: int) -> float:
    """µs per segment pytcp received while a kernel sender moved `size` bytes to it on one
    more connection (from connect until pytcp acknowledged the last byte)."""
    sock = connect(tun.pytcp, PORT, timeout=20)
    with sock:
        sock.settimeout(120)
        start = time.perf_counter()
        left = size
        while left:
            left -= sock.send(ZEROS[: min(left, len(ZEROS))])
        wait_acked(sock, 120)
        elapsed = time.perf_counter() - start
        sport = sock.getsockname()[1]
        entries = [e for e in bench.inspect("--port", str(sport), timeout=120)
                   if str(e.get("id", "")).startswith(f"{pid}.")]
        if len(entries) != 1:
            raise BenchError(f"pytcp inspect --port {sport}: {len(entries)} connections")
        counters = bench.inspect(str(entries[0]["id"]))["counters"]
    if counters["bytes_in"] < size:
        raise BenchError(f"the bulk connection received {counters['bytes_in']} of {size} bytes")
    return elapsed / int(counters["segments_in"]) * 1e6


def run(bench: Bench, ns: Namespaces) -> Figure:
    default = "1 100 300" if bench.quick else "1 1000 10000"
    stages = [int(x) for x in os.environ.get("BENCH_SCALE_STAGES", default).split()]
    limit = int(os.environ.get("BENCH_SCALE_MEM_MIB", 2048)) << 20
    bulk = int(os.environ.get("BENCH_SCALE_BULK_MIB", bench.size(8, 1))) << 20
    tw_count = int(os.environ.get("BENCH_SCALE_TW", bench.size(10000, 300)))
    fig = Figure("scale", "scale: one pytcp listen -k with many idle connections", __doc__ or "")
    kernel_idle = slab_objsize("TCP", "sock_inode_cache", "filp", "dentry")
    kernel_tw = slab_objsize("tw_sock_TCP")
    fig.row("kernel_idle", "kernel: slab bytes of one idle socket", "bytes", better="lower"
            ).runs.append(float(kernel_idle))
    fig.row("kernel_tw", "kernel: slab bytes of one TIME-WAIT socket", "bytes", better="lower"
            ).runs.append(float(kernel_tw))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    tun = bench.tun()
    cmd = bench.cmd(tun, "listen", "-k", "--backlog", "1024", "--max-conns",
                    str(max(stages) + 64), str(PORT))
    clients: list[socket.socket] = []
    with Proc(cmd, env=bench.env, stdin=subprocess.PIPE, name="pytcp listen -k") as listener:
        try:
            bench.wait_listener(listener, PORT)
            rss0 = rss(listener.pid)
            first_id: str | None = None
            per_conn: float | None = None
            cost1: float | None = None
            for n in stages:
                if n + 64 > nofile:
                    fig.extra[f"stopped_before_{n}"] = f"ulimit -n is {nofile}"
                    break
                if per_conn is not None and per_conn * n > limit:
                    fig.extra[f"stopped_before_{n}"] = (
                        f"{n} connections would take {per_conn * n / 2**20:.0f} MiB "
                        f"(> BENCH_SCALE_MEM_MIB={limit >> 20})")
                    break
                clients += open_idle(tun.pytcp, PORT, n - len(clients), timeout=60 + n / 20)
                time.sleep(0.5)  # let pytcp accept the last ones
                listener.check_alive()
                mine = [e for e in bench.inspect(timeout=120)
                        if str(e.get("id", "")).startswith(f"{listener.pid}.")
                        and e.get("state") == "ESTABLISHED"]
                fig.extra[f"established_at_{n}"] = len(mine)
                if first_id is None and mine:
                    first_id = str(mine[0]["id"])
                # Divide by what pytcp holds (every client, unless some were not accepted).
                per_conn = (rss(listener.pid) - rss0) / (len(mine) or n)
                label = f"{n:,}"
                fig.row(f"rss_{n}", f"pytcp: RSS per idle connection at {label}", "bytes",
                        better="lower", baseline="kernel_idle").runs.append(per_conn)
                if first_id is not None:
                    snap = bench.inspect(first_id)
                    fig.row(f"buffers_{n}", f"pytcp: inspect's buffer bytes of one at {label}",
                            "bytes", better="lower", baseline="kernel_idle"
                            ).runs.append(float(buffer_bytes(snap)))
                ss_list = time_cmd(bench, ["ss", "-tn"])
                fig.row(f"ss_list_{n}", f"ss -tn at {label}", "ms", better="lower"
                        ).runs.append(ss_list)
                fig.row(f"inspect_list_{n}", f"pytcp inspect (list) at {label}", "ms",
                        better="lower", baseline=f"ss_list_{n}").runs.append(
                            time_cmd(bench, [bench.pytcp, "inspect"]))
                sport = clients[0].getsockname()[1]
                fig.row(f"ss_one_{n}", f"ss -tni sport = :P at {label}", "ms", better="lower"
                        ).runs.append(time_cmd(bench, ["ss", "-tni", f"sport = :{sport}"]))
                if first_id is not None:
                    fig.row(f"inspect_one_{n}", f"pytcp inspect ID at {label}", "ms",
                            better="lower", baseline=f"ss_one_{n}").runs.append(
                                time_cmd(bench, [bench.pytcp, "inspect", first_id]))
                cost = bulk_on_one_more(bench, tun, listener.pid, bulk)
                cost1 = cost1 or cost
                fig.row(f"packet_{n}", f"pytcp: µs per received segment, bulk at {label}",
                        "µs", better="lower", baseline="packet_1" if n != 1 else None
                        ).runs.append(cost)
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            fig.extra["failed"] = str(exc)[:300]
        finally:
            for s in clients:
                s.close()
    try:
        time_wait(bench, fig, tw_count, limit)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        fig.extra["time_wait_failed"] = str(exc)[:300]
    return fig


def pytcp_closes_first(addr: str, port: int) -> None:
    """Connect, wait for pytcp's FIN (its stdin is at EOF), send a byte, close: pytcp ends
    in TIME-WAIT, the kernel client in CLOSED."""
    with socket.create_connection((addr, port), timeout=10) as sock:
        while sock.recv(4096):
            pass
        sock.sendall(b"x")


def time_wait(bench: Bench, fig: Figure, count: int, limit: int) -> None:
    tun = bench.tun()
    with Proc(bench.cmd(tun, "listen", "-k", str(TW_PORT)), env=bench.env,
              name="pytcp listen -k") as listener:
        bench.wait_listener(listener, TW_PORT)
        rss0 = rss(listener.pid)
        deadline = time.monotonic() + 45
        made = 0
        while made < count and time.monotonic() < deadline:
            pytcp_closes_first(tun.pytcp, TW_PORT)
            made += 1
            if made % 100 == 0 and rss(listener.pid) - rss0 > limit:
                fig.extra["time_wait_stopped"] = f"RSS grew past BENCH_SCALE_MEM_MIB={limit >> 20}"
                break
        time.sleep(0.5)
        after = rss(listener.pid)
        waiting = [e for e in bench.inspect("-s", "time-wait", timeout=120)
                   if str(e.get("id", "")).startswith(f"{listener.pid}.")]
        fig.extra["time_wait"] = {"connections": made, "in_time_wait": len(waiting)}
        if waiting:
            fig.row("rss_tw", f"pytcp: RSS per TIME-WAIT connection at {len(waiting):,}",
                    "bytes", better="lower", baseline="kernel_tw"
                    ).runs.append((after - rss0) / len(waiting))
