"""Running one script file on one target for `pytcp script`: reading the file, the
shell commands, and the targets that need real I/O, with the queue of captured packets
the real-time targets share. Imports `stack.script` and the standard library; the linux
and pytcp-tun targets live in `pytcpcli.script_linux` and `pytcpcli.script_tun`
(imported when used).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from stack.script.parser import ScriptError, parse
from stack.script.pytcp_target import PytcpTarget
from stack.script.runner import Captured, Config, Runner, ScriptResult

TARGETS = ("pytcp", "linux", "pytcp-tun")
SHELL_TIMEOUT = 60.0  # seconds a script's shell command may take
CAPTURE_LAG = 50_000  # µs a captured packet may take from the kernel to the queue
SO_TIMESTAMPNS = 35  # linux/asm-generic/socket.h (the socket module lacks it)


class CaptureQueue:
    """The packets a real-time target captured from its TUN, in the order they left,
    each stamped with its script time (µs). A capture thread `put`s them; the runner
    takes them with `next_outbound` and may give one back with `unread`."""

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now  # the target's script clock, µs
        self._queue: deque[Captured] = deque()
        self._cond = threading.Condition()

    def clear(self) -> None:
        with self._cond:
            self._queue.clear()

    def put(self, cap: Captured) -> None:
        with self._cond:
            self._queue.append(cap)
            self._cond.notify_all()

    def next_outbound(self, deadline: int) -> Captured | None:
        """The first packet sent at or before `deadline` (µs), or None. A packet is
        stamped by the kernel as it leaves but reaches this queue through a thread:
        wait CAPTURE_LAG past the deadline for one sent before it."""
        with self._cond:
            while not self._queue:
                left = deadline + CAPTURE_LAG - self._now()
                if left <= 0:
                    return None
                self._cond.wait(min(left / 1e6, 0.5))
            if self._queue[0].time > deadline:
                return None
            return self._queue.popleft()

    def unread(self, cap: Captured) -> None:
        with self._cond:
            self._queue.appendleft(cap)



class RealTimeTarget:
    """What the real-time targets (linux, pytcp-tun) share: script time is the wall
    clock since start, and what they sent comes from their CaptureQueue."""

    captured: CaptureQueue

    def now(self) -> int:  # µs of script time: each target has its own zero
        raise NotImplementedError

    def wait_until(self, t: int) -> None:
        while (left := t - self.now()) > 0:
            time.sleep(min(left / 1e6, 0.5))

    def next_outbound(self, deadline: int) -> Captured | None:
        return self.captured.next_outbound(deadline)

    def unread(self, cap: Captured) -> None:
        self.captured.unread(cap)

def capture_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket on `ifname` that sees every packet both ways, each stamped
    by the kernel (SO_TIMESTAMPNS) as it passed."""
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))  # ETH_P_ALL
    cap.bind((ifname, 0))
    cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return cap


def kernel_stamp(ancillary: Iterable[tuple[int, int, bytes]], t0_ns: int) -> int | None:
    """The SO_TIMESTAMPNS stamp of a received packet as µs since `t0_ns` on the
    monotonic clock, or None when the kernel gave none. The stamp is wall-clock time:
    the offset between the clocks is read now (it moves only if the wall clock is set)."""
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = struct.unpack("qq", raw[:16])
            wall_offset = time.time_ns() - time.monotonic_ns()
            return (sec * 1_000_000_000 + nsec - wall_offset - t0_ns) // 1000
    return None


def read_script(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(
            path, 0, f"cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def shell_runner(cwd: str, *, isolate: bool) -> Callable[[str], tuple[int, str]]:
    """Runs a script's backquoted command with sh in the script's directory, bounded in
    time; `isolate` runs it in a network namespace of its own (unshare -n) so that its
    sysctls and interfaces never reach the host."""

    def run(command: str) -> tuple[int, str]:
        argv = ["sh", "-c", command]
        if isolate:
            unshare = shutil.which("unshare")
            if unshare is None or os.geteuid() != 0:
                return 0, "skipped: needs root and unshare(1) for a private network namespace"
            argv = [unshare, "--net", "--", *argv]
        # packetdrill's helpers (set_sysctls.py) name their restore file by this.
        env = {**os.environ, "PACKETDRILL_PID": str(os.getpid())}
        try:
            done = subprocess.run(
                argv,
                cwd=cwd or ".",
                env=env,
                capture_output=True,
                text=True,
                timeout=SHELL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {SHELL_TIMEOUT:g} s"
        except OSError as exc:
            return 127, str(exc)
        return done.returncode, (done.stdout + done.stderr)

    return run


def run_script(
    path: str,
    target: str,
    *,
    overrides: dict[str, str] | None = None,
    skip_shell: bool = False,
    tcb: bool = False,
    seed: int = 1,
) -> tuple[ScriptResult, float]:
    """One script on one target: its result (a script that cannot be read or parsed is
    a failed result naming the line) and the seconds it took."""
    started = time.monotonic()
    try:
        script = parse(read_script(path), path)
        config = Config.from_script(script, overrides)
    except ScriptError as exc:
        return ScriptResult(path, target, ok=False, error=str(exc)), time.monotonic() - started
    if target in ("linux", "pytcp-tun"):
        from pytcpcli.script_linux import run_in_namespace

        here = os.path.dirname(path)
        result = run_in_namespace(
            script,
            config,
            lambda: None if skip_shell else shell_runner(here, isolate=False),
            target=target,
            tcb=tcb,
        )
        return result, time.monotonic() - started
    shell = None if skip_shell else shell_runner(os.path.dirname(path), isolate=True)
    rng = random.Random(seed)
    pytcp = PytcpTarget(config, rng=rng, isn_secret=rng.randbytes(16))
    try:
        if shell is not None and script.init is not None:
            status, output = shell(script.init.command)
            if status != 0:
                return (
                    ScriptResult(
                        path,
                        target,
                        ok=False,
                        error=f"{path}: init command failed "
                        f"with status {status}: {output.strip()[-200:]}",
                    ),
                    time.monotonic() - started,
                )
        result = Runner(script, pytcp, config=config, shell=shell, tcb=tcb).run()
    finally:
        pytcp.close()
        if shell is not None and script.cleanup is not None:
            shell(script.cleanup.command)
    return result, time.monotonic() - started
