"""Figure `bulk`: bytes one way through the installed pytcp, against kernel↔kernel over veth.

Rows (MB/s = 10^6 bytes per second, median of the runs):
  kernel↔kernel   iperf3 -n SIZE between two namespaces joined by a veth pair: the baseline
  kernel→kernel   the harness's kernel sender into `nc -l PORT >/dev/null` over the same
                  veth: the netcat a user would pick, measured exactly as pytcp's rows are
  kernel→pytcp    the harness's kernel sender into `pytcp listen PORT | cat >/dev/null`,
                  `pytcp listen PORT >/dev/null` and `pytcp listen PORT >FILE`; timed
                  from connect until pytcp acknowledged the last byte (SIOCOUTQ = 0)
  pytcp→kernel    `head -c SIZE /dev/zero | pytcp connect HOST PORT` and
                  `pytcp connect HOST PORT <FILE` (a file just written, so in the page
                  cache, as a file a user sends usually is) into the harness's kernel receiver;
                  timed from accept until the last byte arrived
and the kernel→pytcp pipe and pytcp→kernel pipe rows again with `--no-offload --mtu 1500`
("n/a" while the command has no --no-offload). Every pytcp row's ratio is against the
veth baseline. Sizes: BENCH_BULK_MIB (default 64; 8 with BENCH_QUICK=1). BENCH_PROFILE=1
adds one untimed kernel → `pytcp listen | cat` run under py-spy (speedscope file beside
the JSON; `make bench BENCH_PROFILE=1` installs py-spy into the venv).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, Proc, connect, wait_acked, wait_kernel_port
from benchmarks.report import Figure

PORT = 5001
CHUNK = 1 << 20
TIMEOUT = 180.0
ZEROS = memoryview(bytes(CHUNK))
RESULTS = Path(__file__).resolve().parent / "results"


def kernel_send(addr: str, port: int, size: int) -> float:
    """Send `size` bytes from a kernel socket; seconds from connect to the last byte acked."""
    sock = connect(addr, port, timeout=20)
    with sock:
        sock.settimeout(TIMEOUT)
        start = time.perf_counter()
        left = size
        while left:
            left -= sock.send(ZEROS[: min(left, CHUNK)])
        wait_acked(sock, TIMEOUT)
        elapsed = time.perf_counter() - start
        sock.shutdown(socket.SHUT_WR)
    return elapsed


class KernelReceiver:
    """A kernel listener that times one connection: accept to `size` bytes (or EOF)."""

    def __init__(self, port: int, size: int) -> None:
        self.size = size
        self.server = socket.create_server(("0.0.0.0", port), reuse_port=False)
        self.server.settimeout(60)
        self.elapsed: float | None = None
        self.got = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                start = time.perf_counter()
                buf = bytearray(CHUNK)
                while self.got < self.size:
                    n = conn.recv_into(buf)
                    if n == 0:
                        break
                    self.got += n
                self.elapsed = time.perf_counter() - start
        except BaseException as exc:
            self.error = exc
        finally:
            self.server.close()

    def result(self, timeout: float) -> float:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise BenchError(f"kernel receiver: still receiving after {timeout}s")
        if self.error is not None:
            raise BenchError(f"kernel receiver: {self.error}")
        if self.got != self.size or self.elapsed is None:
            raise BenchError(f"kernel receiver: {self.got} of {self.size} bytes")
        return self.elapsed


def veth_iperf(size: int, peer: str, far: str) -> float:
    """iperf3 -n SIZE across the veth pair; MB/s as the receiver saw it."""
    server = ["ip", "netns", "exec", peer, "iperf3", "-s", "-B", far, "-p", "5201"]
    with Proc(server, name="iperf3 -s"):
        wait_kernel_port(5201, ns=peer)
        out = subprocess.run(
            ["iperf3", "-c", far, "-p", "5201", "-n", str(size), "-J"],
            capture_output=True, text=True, timeout=TIMEOUT,
        )
    if out.returncode != 0:
        raise BenchError(f"iperf3 -c: exit {out.returncode}: {out.stdout[-300:]}")
    report = json.loads(out.stdout)
    return float(report["end"]["sum_received"]["bits_per_second"]) / 8 / 1e6


def veth_nc(size: int, peer: str, far: str) -> float:
    server = ["ip", "netns", "exec", peer, "nc", "-l", far, str(PORT)]
    with Proc(server, name="nc -l") as nc:
        wait_kernel_port(PORT, ns=peer)
        elapsed = kernel_send(far, PORT, size)
        nc.wait(30)
    return size / elapsed / 1e6


def pytcp_listen(bench: Bench, size: int, sink: str, extra: list[str],
                 profile: Path | None = None) -> float:
    """kernel → `pytcp listen PORT` with stdout into a pipe to cat, /dev/null or a file;
    with `profile`, py-spy records the listener into that file (speedscope format)."""
    tun = bench.tun()
    cmd = bench.cmd(tun, "listen", *extra, str(PORT))
    target = bench.tmp / "bulk.out"
    with open(os.devnull, "wb") as null, open(target, "wb") as file:
        if sink == "pipe":
            listener = Proc(cmd, env=bench.env, stdout=subprocess.PIPE, name="pytcp listen")
            cat = Proc(["cat"], stdin=listener.popen.stdout, stdout=null)
            assert listener.popen.stdout is not None
            listener.popen.stdout.close()  # cat holds the read end, as in a shell pipeline
        else:
            listener = Proc(cmd, env=bench.env, stdout=null if sink == "null" else file,
                            name="pytcp listen")
            cat = None
        with listener:
            try:
                bench.wait_listener(listener, PORT)
                spy = None
                if profile is not None:
                    spy = Proc(["py-spy", "record", "-p", str(listener.pid), "-f", "speedscope",
                                "-o", str(profile)], name="py-spy")
                    time.sleep(1)  # py-spy attaches
                elapsed = kernel_send(tun.pytcp, PORT, size)
                listener.wait(30)
                if spy is not None:
                    with spy:
                        spy.wait(30)
            finally:
                if cat is not None:
                    cat.stop()
    if sink == "file" and target.stat().st_size != size:
        raise BenchError(f"pytcp listen >FILE: {target.stat().st_size} of {size} bytes")
    target.unlink()
    return size / elapsed / 1e6


def pytcp_connect(bench: Bench, size: int, source: str, extra: list[str]) -> float:
    """`head -c SIZE /dev/zero | pytcp connect` (or `<FILE`) → a kernel receiver."""
    tun = bench.tun()
    receiver = KernelReceiver(PORT, size)
    cmd = bench.cmd(tun, "connect", *extra, tun.kernel, str(PORT))
    if source == "pipe":
        head = Proc(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
        with head, Proc(cmd, env=bench.env, stdin=head.popen.stdout, name="pytcp connect") as pc:
            assert head.popen.stdout is not None
            head.popen.stdout.close()  # pytcp holds the read end, as in a shell pipeline
            elapsed = receiver.result(TIMEOUT)
            pc.wait(30)
    else:
        path = bench.tmp / "bulk.in"
        # Written, not truncated: a sparse file is read through page faults on this
        # path (about 360 MB/s on the bench VM, on pytcp's one thread), while a file a
        # user sends has usually just been written and sits in the page cache.
        chunk = bytes(1 << 20)
        with open(path, "wb") as dst:
            for _ in range(size >> 20):
                dst.write(chunk)
            dst.write(bytes(size & ((1 << 20) - 1)))
        with open(path, "rb") as src, Proc(cmd, env=bench.env, stdin=src) as pc:
            elapsed = receiver.result(TIMEOUT)
            pc.wait(30)
        path.unlink()
    return size / elapsed / 1e6


def run(bench: Bench, ns: Namespaces) -> Figure:
    mib = int(os.environ.get("BENCH_BULK_MIB", bench.size(64, 8)))
    size = mib << 20
    fig = Figure("bulk", f"bulk transfer, {mib} MiB one way (MB/s)", __doc__ or "")
    peer, _near, far = ns.veth_peer()
    offload_note = "" if bench.features["no_offload"] else "pytcp has no --no-offload yet"
    nooff = ["--no-offload", "--mtu", "1500"]
    cases: list[tuple[str, str, Callable[[], float | None]]] = [
        ("veth_iperf", "kernel↔kernel, iperf3 over veth", lambda: veth_iperf(size, peer, far)),
        ("veth_nc", "kernel → nc -l >/dev/null, over veth", lambda: veth_nc(size, peer, far)),
        ("listen_pipe", "kernel → pytcp listen | cat >/dev/null",
         lambda: pytcp_listen(bench, size, "pipe", [])),
        ("listen_null", "kernel → pytcp listen >/dev/null",
         lambda: pytcp_listen(bench, size, "null", [])),
        ("listen_file", "kernel → pytcp listen >FILE",
         lambda: pytcp_listen(bench, size, "file", [])),
        ("connect_pipe", "head -c N /dev/zero | pytcp connect → kernel",
         lambda: pytcp_connect(bench, size, "pipe", [])),
        ("connect_file", "pytcp connect <FILE → kernel",
         lambda: pytcp_connect(bench, size, "file", [])),
        ("listen_pipe_nooff", "kernel → pytcp listen --no-offload --mtu 1500 | cat",
         lambda: pytcp_listen(bench, size, "pipe", nooff) if not offload_note else None),
        ("connect_pipe_nooff", "head | pytcp connect --no-offload --mtu 1500 → kernel",
         lambda: pytcp_connect(bench, size, "pipe", nooff) if not offload_note else None),
    ]
    for _ in range(bench.runs):
        for key, what, measure in cases:
            row = fig.row(key, what, "MB/s", baseline=None if key == "veth_iperf" else "veth_iperf")
            if key.endswith("nooff") and offload_note:
                row.note = offload_note
                continue
            try:
                value = measure()
            except (BenchError, OSError, subprocess.SubprocessError) as exc:
                row.note = f"failed: {exc}"[:200]
                continue
            if value is not None:
                row.runs.append(value)
    if os.environ.get("BENCH_PROFILE", "") not in ("", "0"):
        fig.extra["profile"] = profile_listen(bench, size)
    return fig


def profile_listen(bench: Bench, size: int) -> str:
    """BENCH_PROFILE=1: one more kernel → `pytcp listen | cat` run under py-spy (not timed
    as a figure); the speedscope file lands beside the JSON. Returns its path or why not."""
    if shutil.which("py-spy") is None:
        return "no py-spy (make bench BENCH_PROFILE=1 installs it into the venv)"
    out = Path(os.environ.get("BENCH_OUT") or RESULTS / "latest.json").parent
    out.mkdir(parents=True, exist_ok=True)
    path = out / "profile-bulk-listen.speedscope.json"
    try:
        pytcp_listen(bench, size, "pipe", [], profile=path)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        return f"failed: {exc}"[:200]
    return str(path)
