"""`make demo`: pytcp's whole story on its embedded default, in a throwaway network namespace.

Runs as root. A `pytcp listen --trace` holds a connection from a kernel client: the
handshake in the trace, data both ways, `pytcp inspect` of the live connection and its
timers, `pytcp close --half`, the kernel's last words after our FIN, and the four-way
close ending in TIME-WAIT. The namespace is removed on every path (error, ^C, SIGTERM).
Imports the standard library only; drives the installed `pytcp` as a user would.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

VENV_BIN = os.path.dirname(sys.executable)
PYTCP = os.path.join(VENV_BIN, "pytcp")
NETNS = f"pytcp-demo-{os.getpid()}"
CLONE_NEWNET = 0x40000000
PORT = 5000
STACK = "10.77.0.2"  # pytcp's address on pytcp0 in the fresh namespace
STEP_WAIT = 10.0  # seconds any one step may take before the demo gives up
_libc = ctypes.CDLL(None, use_errno=True)


class DemoError(Exception):
    """A step that did not happen as the story says; printed as one line."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def namespace() -> Iterator[None]:
    """Create NETNS, move this process into it (children follow), and always remove it."""
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{NETNS}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            _setns(original)
    finally:
        os.close(original)
        for pid in subprocess.run(
            ["ip", "netns", "pids", NETNS], capture_output=True, text=True
        ).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", NETNS], check=False)


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, title: str) -> None:
    say(f"\n=== {n}. {title}")


def shell(*args: str, env: dict[str, str], quiet: bool = False) -> str:
    """Run `pytcp ARGS`, echo the command line and (unless quiet) its output; stdout."""
    say("$ pytcp " + " ".join(args) + ("        (output read by the demo)" if quiet else ""))
    out = subprocess.run([PYTCP, *args], capture_output=True, text=True, env=env, timeout=30)
    if out.stdout and not quiet:
        say(out.stdout.rstrip("\n"))
    if out.stderr:
        say(out.stderr.rstrip("\n"))
    if out.returncode != 0:
        raise DemoError(f"`pytcp {' '.join(args)}` exited {out.returncode}")
    return out.stdout


class Lines:
    """A stream's lines collected by a thread, shown on request."""

    def __init__(self, stream: object, prefix: str) -> None:
        self.prefix = prefix
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            self.queue.put(raw.decode(errors="replace").rstrip("\n"))
        self.queue.put(None)

    def show_until(self, needle: str, timeout: float = STEP_WAIT) -> None:
        """Print lines until one contains `needle`, then whatever follows within 0.3 s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f"never saw {needle!r} in the trace")
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise DemoError(f"the trace ended before {needle!r}")
            say(self.prefix + line)
            if needle in line:
                break
        self.show_more(0.3)

    def show_more(self, quiet: float) -> None:
        """Print what arrives until `quiet` seconds pass without a line."""
        while True:
            try:
                line = self.queue.get(timeout=quiet)
            except queue.Empty:
                return
            if line is None:
                return
            say(self.prefix + line)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def connect_kernel() -> socket.socket:
    deadline = time.monotonic() + STEP_WAIT
    while True:
        try:
            sock = socket.create_connection((STACK, PORT), timeout=1)
            sock.settimeout(STEP_WAIT)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise DemoError(f"no pytcp listener answered on {STACK} port {PORT}") from None
            time.sleep(0.1)


def story(env: dict[str, str]) -> None:
    step(1, "pytcp listens; the kernel connects (the handshake, seen from pytcp's trace)")
    say(f"$ pytcp listen --trace --time-wait full {PORT}        (in the background)")
    listener = subprocess.Popen(
        [PYTCP, "listen", "--trace", "--time-wait", "full", str(PORT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert listener.stdin is not None and listener.stdout is not None
    trace = Lines(listener.stderr, "  trace| ")
    out = Lines(listener.stdout, "  pytcp listen stdout| ")
    try:
        say(f">>> kernel: socket.create_connection(('{STACK}', {PORT}))")
        kernel = connect_kernel()
        trace.show_until("ESTABLISHED")

        step(2, "data both ways")
        say(">>> kernel: send b'hello from the kernel\\n'")
        kernel.sendall(b"hello from the kernel\n")
        out.show_until("hello from the kernel")
        trace.show_more(0.3)
        say(">>> pytcp listen stdin: 'hello from pytcp'")
        listener.stdin.write(b"hello from pytcp\n")
        listener.stdin.flush()
        got = read_exactly(kernel, 17)
        say(f">>> kernel received {got!r}")
        trace.show_more(0.3)

        step(3, "pytcp inspect: every live connection of every pytcp process")
        listing = shell("inspect", env=env)
        ids = [row.split()[0] for row in listing.splitlines()[1:] if "ESTABLISHED" in row]
        if not ids:
            raise DemoError("pytcp inspect did not list the connection")
        conn_id = ids[0]
        step(4, f"pytcp inspect {conn_id}: the whole control block and every timer")
        shell("inspect", conn_id, env=env)

        step(5, "pytcp send --conn: another process queues data on this connection")
        shell("send", "--conn", conn_id, "queued by pytcp send --conn", env=env)
        got = read_exactly(kernel, 28)
        say(f">>> kernel received {got!r}")
        trace.show_more(0.3)

        step(6, "pytcp close --half: FIN goes out, the connection keeps receiving")
        shell("close", "--half", conn_id, env=env)
        trace.show_more(0.3)
        eof = kernel.recv(100)
        say(f">>> kernel: recv() -> {eof!r}  (EOF: pytcp's FIN)")
        say(">>> kernel: send b'one more line after your FIN\\n'")
        kernel.sendall(b"one more line after your FIN\n")
        out.show_until("one more line")
        trace.show_more(0.3)

        step(7, "the kernel closes too: the four-way close ends in TIME-WAIT")
        say(">>> kernel: close()")
        kernel.close()
        trace.show_until("TIME-WAIT")
        tcb = shell("inspect", conn_id, "--json", env=env, quiet=True)
        entry = json.loads(tcb)
        (tw,) = [t for t in entry["timers"] if t["name"] == "time-wait"]
        say(
            f"\n{conn_id} is {entry['state']}; its time-wait timer is armed with "
            f"{tw['remaining'] / 1e9:.1f} s to go (2·MSL, RFC 9293 §3.6.1)."
        )
        shell("inspect", "-s", "time-wait", env=env)
    finally:
        listener.terminate()  # SIGTERM: pytcp ends what is left cleanly and removes pytcp0
        try:
            listener.wait(STEP_WAIT)
        except subprocess.TimeoutExpired:
            listener.kill()
            listener.wait()


def main() -> int:
    version = subprocess.run([PYTCP, "--version"], capture_output=True, text=True).stdout
    say(f"$ pytcp --version\n{version}")
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None:
        say("demo: the live part needs root, /dev/net/tun and iproute2; run `sudo make demo`.")
        return 0

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    rundir = tempfile.mkdtemp(prefix="pytcp-demo-")
    env = {**os.environ, "PYTCP_RUNTIME_DIR": rundir}
    say(f"demo: a throwaway network namespace {NETNS}; pytcp is {STACK}, the kernel 10.77.0.1")
    try:
        with namespace():
            story(env)
    except DemoError as e:
        say(f"demo: {e}")
        return 1
    except KeyboardInterrupt:
        say("\ndemo: interrupted")
        return 130
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
        say(f"\ndemo: namespace {NETNS} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
