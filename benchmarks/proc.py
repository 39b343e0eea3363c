"""Bounded subprocesses, the pytcp command as a user runs it, and the kernel peers' helpers.

`Bench` is what every figure gets: the installed `pytcp` (env BENCH_PYTCP, else the one
next to this Python), its feature flags (read from --help, so a figure whose option has
not landed says "n/a" instead of failing), the size knobs (BENCH_QUICK, BENCH_RUNS) and a
fresh TUN per pytcp it starts (`--tun pytcpN` means subnet 10.77.N.0/24, so the kernel is
10.77.N.1 and pytcp 10.77.N.2). Every pytcp started here shares a private control
directory (PYTCP_RUNTIME_DIR), so `pytcp inspect` sees this run's processes only.

`Proc` starts a command in its own process group and, on leaving its `with` block, on
every path, ends the group (SIGTERM, then SIGKILL after a grace); every wait has a
timeout. Imports the standard library only.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

T = TypeVar("T")

SIOCOUTQ = 0x5411  # TIOCOUTQ: bytes in a TCP socket's send queue not yet acknowledged
GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a process must be stopped


class BenchError(RuntimeError):
    """A figure could not be measured (a process failed, a timeout); says what and why."""


def last_line(text: str | bytes) -> str:
    """The last non-empty line of a command's stderr (a traceback's is the error)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(nothing on stderr)"


@dataclass
class Tun:
    """One TUN interface for one pytcp process: its name and both ends' addresses."""

    name: str
    kernel: str  # the kernel's address on it (10.77.N.1)
    pytcp: str  # the stack's address (10.77.N.2)


@dataclass
class Bench:
    """Settings and shared state handed to every figure."""

    pytcp: str
    quick: bool
    runs: int
    tmp: Path
    features: dict[str, bool] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _subnets: itertools.count[int] = field(default_factory=lambda: itertools.count())

    @classmethod
    def create(cls, quick: bool, runs: int | None) -> Bench:
        pytcp = os.environ.get("BENCH_PYTCP") or str(Path(sys.executable).parent / "pytcp")
        if not os.access(pytcp, os.X_OK):
            raise BenchError(f"no pytcp command at {pytcp} (install it: make bench does)")
        tmp = Path(tempfile.mkdtemp(prefix="pytcp-bench-"))
        runtime = tmp / "run"
        runtime.mkdir(mode=0o700)
        env = dict(os.environ, PYTCP_RUNTIME_DIR=str(runtime))
        env.pop("PYTCP_TUN", None)
        env.pop("PYTCP_ADDR", None)
        # As a user runs it: with bytecode caches. Inherited PYTHONDONTWRITEBYTECODE=1
        # makes every pytcp compile all its modules from source, about 80 ms a command.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        bench = cls(pytcp=pytcp, quick=quick, runs=runs or (1 if quick else 3), tmp=tmp, env=env)
        bench.features = bench._detect()
        return bench

    def _detect(self) -> dict[str, bool]:
        def helptext(*cmd: str) -> str:
            out = subprocess.run(
                [self.pytcp, *cmd, "--help"], capture_output=True, text=True, timeout=30,
                env=self.env,
            )
            return out.stdout

        connect, listen = helptext("connect"), helptext("listen")
        return {
            "no_offload": "--no-offload" in connect and "--no-offload" in listen,
            "syn_cookies": "--syn-cookies" in listen,
            "impair": "--impair" in connect and "--impair" in listen,
        }

    def size(self, full: T, quick: T) -> T:
        """A size knob: `full` normally, `quick` with BENCH_QUICK=1."""
        return quick if self.quick else full

    def tun(self) -> Tun:
        """A TUN name no earlier pytcp of this run used recently (1..199, round robin)."""
        n = next(self._subnets) % 199 + 1
        return Tun(f"pytcp{n}", f"10.77.{n}.1", f"10.77.{n}.2")

    def cmd(self, tun: Tun, *args: str) -> list[str]:
        """`pytcp SUBCOMMAND --tun pytcpN ARGS...` (args[0] is the subcommand)."""
        return [self.pytcp, args[0], "--tun", tun.name, "--gateway", f"{tun.kernel}/24",
                *args[1:]]

    def inspect(self, *args: str, timeout: float = 60) -> Any:
        """`pytcp inspect ARGS --json`, parsed."""
        out = subprocess.run(
            [self.pytcp, "inspect", *args, "--json"], capture_output=True, text=True,
            timeout=timeout, env=self.env,
        )
        if out.returncode != 0:
            raise BenchError(f"pytcp inspect {' '.join(args)}: {last_line(out.stderr)}")
        return json.loads(out.stdout)

    def time_command(self, cmd: Sequence[str], timeout: float = 120) -> float:
        """Seconds from start to exit of a command (stdout discarded); it must exit 0.
        stderr goes to a file: a process left behind must not hold the clock."""
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            code = subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=timeout, env=self.env).returncode
            elapsed = time.perf_counter() - start
            if code != 0:
                err.seek(0)
                raise BenchError(f"{' '.join(cmd)}: exit {code}: {last_line(err.read())}")
        return elapsed

    def wait_listener(self, proc: Proc, port: int, timeout: float = 20) -> str:
        """Wait until `proc` (a pytcp) listens on `port`; return the listener's ID."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.check_alive()
            try:
                entries = self.inspect(timeout=max(1.0, deadline - time.monotonic()))
            except (BenchError, subprocess.TimeoutExpired, json.JSONDecodeError):
                entries = []
            for entry in entries:
                if (
                    entry.get("state") == "LISTEN"
                    and entry.get("local", {}).get("port") == port
                    and str(entry.get("id", "")).startswith(f"{proc.pid}.")
                ):
                    return str(entry["id"])
            time.sleep(0.05)
        raise BenchError(f"pytcp (pid {proc.pid}) not listening on port {port} after {timeout}s")


class Proc:
    """A command in its own process group; ended on leaving the `with` block."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        name: str | None = None,
    ) -> None:
        self.name = name or Path(cmd[0]).name
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.popen = subprocess.Popen(
            list(cmd), env=env, stdin=stdin, stdout=stdout, stderr=self._err,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def __enter__(self) -> Proc:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._err.close()

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace").strip()

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited {code}: {last_line(self.stderr())}")

    def wait(self, timeout: float) -> int:
        """Wait for a normal exit; a process still running after `timeout` is a failure."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name} still running after {timeout}s") from None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after GRACE seconds."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(GRACE)
            except subprocess.TimeoutExpired:
                pass
        self.signal(signal.SIGKILL)  # children that outlived their parent too
        try:
            self.popen.wait(GRACE)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def rss(pid: int) -> int:
    """Resident set size of `pid` in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def unacked(sock: socket.socket) -> int:
    """Bytes a kernel TCP socket has queued and not yet seen acknowledged (SIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), SIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", buf)[0])


def wait_acked(sock: socket.socket, timeout: float) -> None:
    """Wait until the peer acknowledged everything sent on `sock` (polls every 0.5 ms)."""
    deadline = time.monotonic() + timeout
    while unacked(sock) > 0:
        if time.monotonic() > deadline:
            raise BenchError(f"peer did not acknowledge {unacked(sock)} bytes in {timeout}s")
        time.sleep(0.0005)


def wait_kernel_port(port: int, timeout: float = 20, ns: str | None = None) -> None:
    """Wait until a kernel socket listens on TCP `port` (in namespace `ns`, or this one)."""
    cmd = ["ss", "-Hltn", f"sport = :{port}"]
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        if out.stdout.strip():
            return
        time.sleep(0.02)
    raise BenchError(f"nothing listens on port {port} after {timeout}s")


def connect(addr: str, port: int, timeout: float = 10, nodelay: bool = False) -> socket.socket:
    """A kernel TCP connection, retried while the peer is not yet there (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((addr, port), timeout=timeout)
            break
        except (ConnectionRefusedError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def netstat(names: Sequence[str]) -> dict[str, int]:
    """Counters from this namespace's /proc/net/netstat and /proc/net/snmp (TcpExt, Tcp)."""
    found: dict[str, int] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        lines = Path(path).read_text().splitlines()
        for head, vals in itertools.pairwise(lines):
            if head.split(":")[0] != vals.split(":")[0]:
                continue
            proto = head.split(":")[0]
            for key, val in zip(head.split()[1:], vals.split()[1:], strict=False):
                qualified = f"{proto}.{key}"
                if qualified in names:
                    found[qualified] = int(val)
    return found


def ss_info(local_port: int) -> dict[str, str]:
    """`ss -tin` fields (key:value) of the kernel socket with this local port."""
    out = subprocess.run(
        ["ss", "-Htin", f"sport = :{local_port}"], capture_output=True, text=True, timeout=10
    ).stdout
    fields: dict[str, str] = {}
    for word in out.split():
        key, sep, val = word.partition(":")
        if sep and val and key.isidentifier():
            fields.setdefault(key, val)
    return fields


def machine(bench: Bench) -> dict[str, Any]:
    """CPU model, cores, kernel, Python, pytcp's version and commit: printed with the table."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    version = subprocess.run(
        [bench.pytcp, "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "log", "-1", "--format=%h %cI"],
        capture_output=True, text=True, timeout=30,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "pytcp": version,
        "commit": commit,
        "features": bench.features,
        "load_at_start": list(os.getloadavg()),
    }
