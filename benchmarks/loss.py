"""Figure `loss`: the Linux sender and the pytcp sender through the same impaired pytcp link.

pytcp's `--impair` (both directions of its TUN, so data and ACKs are lost) sits on
every path; BENCH_LOSS_SEEDS seeds (default "1 2 3 4 5"; "1" with BENCH_QUICK=1),
BENCH_LOSS_MIB MiB each (default 16; 2 quick). For seed S both senders' data draws
from Random(S) and the ACKs from Random(S + 1000): the pytcp sender's connect gets
`loss=3%,seed=S,seed-in=S+1000` (data goes out), the Linux sender's listen
`loss=3%,seed=S+1000,seed-in=S` (data comes in). So the k-th wire data segment of either
sender meets the same draw, and the count of data segments lost differs only by the
difference in segments sent: the retransmitted bytes compare the senders, not two
random loss sequences (with independent draws one run's loss count varies by about 5 %).
  Linux sender   a kernel socket sends to `pytcp listen --impair SPEC PORT >/dev/null`
                 until pytcp acknowledged the last byte; its RTOs are the namespace's
                 TcpExt.TCPTimeouts delta (/proc/net/netstat; the only kernel sender in
                 the namespace is this one), its retransmitted bytes `bytes_retrans` of
                 `ss -ti` on the socket (TCP_INFO), tail-loss probes TcpExt.TCPLossProbes,
                 the ACKs that reached it `segs_in` of `ss -ti`
  pytcp sender   `pytcp connect --impair SPEC HOST PORT` with the data on stdin into a
                 kernel receiver, which keeps the connection open after the last byte
                 and pytcp's FIN until `pytcp inspect ID --json` was read: counters
                 `retransmitted_bytes`, `rtos`, `tlp_probes` and `segments_in` (the ACKs
                 that reached it; n/a where this build has no such counter); the kernel
                 receiver's ACKs sent are the namespace's Tcp.OutSegs delta
Two patterns: `stream` (the whole size written to the sender at once: the kernel
socket's sends, pytcp's stdin pipe) and `tail` (bursts of BENCH_LOSS_BURST_KIB, default
32 KiB, each sent only after the receiver got the previous one, so every burst ends in a
tail whose loss only a tail-loss probe or an RTO repairs). Rows: RTOs per run and
retransmitted bytes per MiB moved, pytcp against Linux (a ratio ≤ 1: pytcp's sender
needs no more than Linux's), each sender's completion time, and (better "neither": they
describe the path, not a goal) the ACKs per MiB that reached each sender after the
impairment: the two receivers differ (README "Loss recovery, side by side and
simulated"). Medians over seeds; every run's raw numbers (tail-loss probes, D-SACKs,
fast recoveries too) are in the JSON's extra.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from typing import Any

from benchmarks.bulk import CHUNK, ZEROS
from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, Proc, connect, netstat, ss_info, wait_acked
from benchmarks.report import Figure

PORT = 5009
TIMEOUT = 300.0
ACK_SEED_OFFSET = 1000  # the ACK direction's seed is the data direction's + this


def counter(counters: dict[str, Any], key: str) -> int | None:
    """A counter of `pytcp inspect --json`, or None where this build has no such field."""
    value = counters.get(key)
    return int(value) if isinstance(value, int) else None


def linux_sender(bench: Bench, spec: str, size: int, burst: int | None) -> dict[str, Any]:
    tun = bench.tun()
    keys = ("TcpExt.TCPTimeouts", "TcpExt.TCPLossProbes", "Tcp.RetransSegs",
            "TcpExt.TCPDSACKRecv", "TcpExt.TCPSackRecovery")
    with Proc(bench.cmd(tun, "listen", "--impair", spec, str(PORT)), env=bench.env,
              name="pytcp listen --impair") as listener:
        bench.wait_listener(listener, PORT)
        sock = connect(tun.pytcp, PORT, timeout=20)
        with sock:
            sock.settimeout(TIMEOUT)
            before = netstat(keys)
            start = time.perf_counter()
            left = size
            while left:
                chunk = min(left, burst or CHUNK)
                sent = 0
                while sent < chunk:
                    sent += sock.send(ZEROS[: chunk - sent])
                left -= chunk
                if burst:
                    wait_acked(sock, TIMEOUT)
            wait_acked(sock, TIMEOUT)
            elapsed = time.perf_counter() - start
            after = netstat(keys)
            info = ss_info(sock.getsockname()[1])
            sock.shutdown(socket.SHUT_WR)
        listener.wait(30)
    return {
        "seconds": elapsed,
        "rtos": after["TcpExt.TCPTimeouts"] - before["TcpExt.TCPTimeouts"],
        "tlps": after.get("TcpExt.TCPLossProbes", 0) - before.get("TcpExt.TCPLossProbes", 0),
        "retrans_segs": after["Tcp.RetransSegs"] - before["Tcp.RetransSegs"],
        "retransmitted_bytes": int(info.get("bytes_retrans", 0)),
        "acks": int(info.get("segs_in", 0)),
        "dsacks": after.get("TcpExt.TCPDSACKRecv", 0) - before.get("TcpExt.TCPDSACKRecv", 0),
        "recoveries": (after.get("TcpExt.TCPSackRecovery", 0)
                       - before.get("TcpExt.TCPSackRecovery", 0)),
        "ss": info,
    }


class Receiver:
    """Kernel receiver for the pytcp sender: counts bytes, waits for FIN, then holds the
    connection open until told to close (so pytcp's counters can be read first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.server = socket.create_server(("0.0.0.0", PORT))
        self.server.settimeout(60)
        self.got = 0
        self.cond = threading.Condition()
        self.fin = threading.Event()
        self.release = threading.Event()
        self.started: float | None = None
        self.finished: float | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                self.started = time.perf_counter()
                buf = bytearray(CHUNK)
                while True:
                    n = conn.recv_into(buf)
                    if n == 0:
                        break
                    with self.cond:
                        self.got += n
                        if self.got >= self.size:
                            self.finished = time.perf_counter()
                        self.cond.notify_all()
                self.fin.set()
                self.release.wait(60)
        except BaseException as exc:
            self.error = exc
            self.fin.set()
        finally:
            self.server.close()

    def wait_for(self, total: int, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.got >= total or self.error, timeout):
                raise BenchError(f"receiver got {self.got} of {total} bytes in {timeout}s")


def pytcp_sender(bench: Bench, spec: str, size: int, burst: int | None) -> dict[str, Any]:
    tun = bench.tun()
    receiver = Receiver(size)
    before = netstat(("Tcp.OutSegs",))
    cmd = bench.cmd(tun, "connect", "--impair", spec, tun.kernel, str(PORT))
    try:
        with Proc(cmd, env=bench.env, stdin=subprocess.PIPE, name="pytcp connect") as pc:
            assert pc.popen.stdin is not None
            stdin = pc.popen.stdin
            writer_error: list[BaseException] = []

            def feed() -> None:
                try:
                    done = 0
                    while done < size:
                        chunk = min(size - done, burst or CHUNK)
                        stdin.write(ZEROS[:chunk])
                        stdin.flush()
                        done += chunk
                        if burst:
                            receiver.wait_for(done, TIMEOUT)
                    stdin.close()
                except BaseException as exc:
                    writer_error.append(exc)

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            if not receiver.fin.wait(TIMEOUT):
                raise BenchError(f"pytcp sender: {receiver.got} of {size} bytes in {TIMEOUT}s")
            writer.join(10)
            if writer_error:
                raise BenchError(f"feeding pytcp's stdin: {writer_error[0]}")
            if receiver.error is not None:
                raise BenchError(f"kernel receiver: {receiver.error}")
            if receiver.got != size:
                raise BenchError(f"kernel receiver: {receiver.got} of {size} bytes")
            mine = [e for e in bench.inspect() if str(e.get("id", "")).startswith(f"{pc.pid}.")]
            if len(mine) != 1:
                raise BenchError(f"pytcp inspect: {len(mine)} connections of pid {pc.pid}")
            snap = bench.inspect(str(mine[0]["id"]))
            after = netstat(("Tcp.OutSegs",))
            receiver.release.set()
            pc.wait(30)
    finally:
        receiver.release.set()
        receiver.thread.join(10)
    assert receiver.started is not None and receiver.finished is not None
    counters = snap["counters"]
    return {
        "seconds": receiver.finished - receiver.started,
        "rtos": counter(counters, "rtos"),
        "tlps": counter(counters, "tlp_probes"),
        "retransmitted_bytes": int(counters["retransmitted_bytes"]),
        "retransmissions": int(counters["retransmissions"]),
        "acks": counter(counters, "segments_in"),
        "receiver_acks_sent": after["Tcp.OutSegs"] - before["Tcp.OutSegs"],
        "dsacks": counter(counters, "dsacks_received"),
        "recoveries": counter(counters, "fast_recoveries"),
        "counters": counters,
    }


def run(bench: Bench, ns: Namespaces) -> Figure:
    seeds = [int(s) for s in os.environ.get("BENCH_LOSS_SEEDS",
                                            "1" if bench.quick else "1 2 3 4 5").split()]
    mib = int(os.environ.get("BENCH_LOSS_MIB", bench.size(16, 2)))
    burst = int(os.environ.get("BENCH_LOSS_BURST_KIB", 32)) << 10
    rate = os.environ.get("BENCH_LOSS_RATE", "3%")
    size = mib << 20
    fig = Figure("loss", f"loss recovery: {mib} MiB through pytcp --impair loss={rate}, "
                 f"seeds {' '.join(map(str, seeds))}", __doc__ or "")
    raw: list[dict[str, Any]] = []
    fig.extra["runs"] = raw
    for pattern, chunk in (("stream", None), ("tail", burst)):
        label = "one stream" if chunk is None else f"{chunk >> 10} KiB bursts"
        rows = {
            ("linux", "rtos"): fig.row(f"{pattern}_linux_rtos", f"{label}: Linux sender, RTOs",
                                       "RTOs", better="lower"),
            ("pytcp", "rtos"): fig.row(f"{pattern}_pytcp_rtos", f"{label}: pytcp sender, RTOs",
                                       "RTOs", better="lower", baseline=f"{pattern}_linux_rtos"),
            ("linux", "bytes"): fig.row(f"{pattern}_linux_bytes",
                                        f"{label}: Linux sender, retransmitted bytes per MiB",
                                        "bytes/MiB", better="lower"),
            ("pytcp", "bytes"): fig.row(f"{pattern}_pytcp_bytes",
                                        f"{label}: pytcp sender, retransmitted bytes per MiB",
                                        "bytes/MiB", better="lower",
                                        baseline=f"{pattern}_linux_bytes"),
            ("linux", "time"): fig.row(f"{pattern}_linux_time", f"{label}: Linux sender, time",
                                       "s", better="lower"),
            ("pytcp", "time"): fig.row(f"{pattern}_pytcp_time", f"{label}: pytcp sender, time",
                                       "s", better="lower", baseline=f"{pattern}_linux_time"),
            ("linux", "acks"): fig.row(f"{pattern}_linux_acks",
                                       f"{label}: ACKs reaching the Linux sender per MiB "
                                       "(from pytcp's receiver)", "ACKs/MiB", better="neither"),
            ("pytcp", "acks"): fig.row(f"{pattern}_pytcp_acks",
                                       f"{label}: ACKs reaching the pytcp sender per MiB "
                                       "(from the kernel's receiver)", "ACKs/MiB",
                                       better="neither", baseline=f"{pattern}_linux_acks"),
        }
        for seed in seeds:
            acks = seed + ACK_SEED_OFFSET
            specs = {"linux": f"loss={rate},seed={acks},seed-in={seed}",
                     "pytcp": f"loss={rate},seed={seed},seed-in={acks}"}
            for who, measure in (("linux", linux_sender), ("pytcp", pytcp_sender)):
                try:
                    result = measure(bench, specs[who], size, chunk)
                except (BenchError, OSError, subprocess.SubprocessError, KeyError) as exc:
                    rows[(who, "time")].note = f"failed: {exc}"[:200]
                    continue
                raw.append({"pattern": pattern, "seed": seed, "sender": who,
                            **{k: v for k, v in result.items() if k not in ("ss", "counters")}})
                if result["rtos"] is None:
                    rows[(who, "rtos")].note = "this pytcp's inspect has no rtos counter"
                else:
                    rows[(who, "rtos")].runs.append(float(result["rtos"]))
                rows[(who, "bytes")].runs.append(result["retransmitted_bytes"] / mib)
                rows[(who, "time")].runs.append(result["seconds"])
                if result["acks"] is not None:
                    rows[(who, "acks")].runs.append(result["acks"] / mib)
    return fig
