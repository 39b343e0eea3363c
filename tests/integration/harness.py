"""Helpers for interop tests: a pytcp Stack run in a thread of the test's network namespace,
a bounded tracer, and readers of the kernel's own socket table (`ss`).

A thread started by a test that holds the `netns` fixture is in the namespace too (Linux
copies the creating thread's namespaces), so the stack's TUN device and the kernel's
sockets of the test meet there.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from stack.api import Socket, Stack
from stack.trace import SEGMENT_IN, SEGMENT_OUT, STATE, TraceEvent

BOUND = 60.0  # seconds: the most any one wait in these tests may take before it fails


class FirstSegments:
    """A tracer keeping every state change and the first `limit` segments each way."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self.states: list[tuple[str | None, str, str]] = []  # (conn, old, new)
        self.segments: list[tuple[str, str]] = []  # ("in"|"out", tcpdump flags such as "S.")

    def __call__(self, event: TraceEvent) -> None:
        if event.kind == STATE:
            self.states.append((event.conn, str(event.fields["old"]), str(event.fields["new"])))
        elif event.kind in (SEGMENT_IN, SEGMENT_OUT) and len(self.segments) < self.limit:
            seg = event.fields["segment"]
            self.segments.append(("in" if event.kind == SEGMENT_IN else "out", flags_of(seg)))


def flags_of(seg: Any) -> str:
    """tcpdump's flag letters: S, F, R, P, then "." for ACK."""
    f = int(seg.flags)
    text = "".join(ch for bit, ch in ((2, "S"), (1, "F"), (4, "R"), (8, "P")) if f & bit)
    return text + ("." if f & 16 else "")


class StackThread:
    """Runs `body(stack)` on a fresh `Stack(**kwargs)` in a thread; `result()` joins it.

    `stop()` wakes the stack's loop (a pipe registered on it) so bodies that run until
    `stopping` is set end promptly. The Stack is opened and closed inside the thread:
    a Stack belongs to one thread.
    """

    def __init__(self, body: Callable[[StackThread, Stack], Any], **kwargs: Any) -> None:
        self.body = body
        self.kwargs = kwargs
        self.stack: Stack | None = None
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.marker = threading.Event()  # for the body to say "listening" and the like
        self.go = threading.Event()  # for the test to tell the body to go on (see proceed)
        self._r, self._w = os.pipe()
        self._result: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StackThread:
        self.thread.start()
        if not self.ready.wait(BOUND):
            raise TimeoutError("the stack thread did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            with Stack(**self.kwargs) as stack:
                self.stack = stack
                stack.loop.add_reader(self._r, self._drain_wakeups)
                self.ready.set()
                self._result = self.body(self, stack)
        except BaseException as exc:
            self._error = exc
        finally:
            self.ready.set()
            os.close(self._r)

    def _drain_wakeups(self) -> None:
        os.read(self._r, 64)

    def run_until_stopped(self, stack: Stack) -> None:
        """A body's tail: keep the stack answering until the test calls stop()."""
        stack.run_until(self.stopping.is_set, BOUND)

    def wait_go(self, stack: Stack) -> None:
        """In a body: keep the stack running until the test calls proceed()."""
        if not stack.run_until(self.go.is_set, BOUND):
            raise TimeoutError("the test never said go")

    def proceed(self) -> None:
        """From the test: let a body blocked in wait_go() go on."""
        self.go.set()
        self._wake()

    def stop(self) -> None:
        self.stopping.set()
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._w, b"x")
        except OSError:
            pass

    def result(self, timeout: float = BOUND) -> Any:
        """Stop, join, and return the body's result (or raise what it raised)."""
        self.stop()
        self.thread.join(timeout)
        os.close(self._w)
        if self.thread.is_alive():
            raise TimeoutError("the stack thread did not finish")
        if self._error is not None:
            raise self._error
        return self._result


def ss_time_wait() -> list[tuple[str, str]]:
    """The kernel's TIME-WAIT sockets in this namespace as (local, peer) "ip:port" pairs."""
    out = subprocess.run(
        ["ss", "-tanH", "state", "time-wait"], capture_output=True, text=True, check=True
    ).stdout
    pairs = []
    for line in out.splitlines():
        fields = line.split()
        # With a state filter, ss prints: Recv-Q Send-Q Local:Port Peer:Port
        pairs.append((fields[-2], fields[-1]))
    return pairs


def pytcp_duplex(stack: Stack, sock: Socket, data: bytes, expect: int) -> tuple[str, int]:
    """Send `data` on a pytcp socket while receiving `expect` bytes (or until EOF), full
    duplex on the one loop; returns (SHA-256 hex of what arrived, bytes received)."""
    sock.setblocking(False)
    view = memoryview(data)
    sent = 0
    digest = hashlib.sha256()
    received = 0
    deadline = time.monotonic() + BOUND

    def ready() -> bool:
        return bool(
            sock.readable
            or (sent < len(view) and sock.writable)
            or sock.at_eof
            or sock.error is not None
        )

    while sent < len(view) or received < expect:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pytcp duplex stuck: sent {sent}, received {received}")
        if not ready():
            stack.run_until(ready, 1.0)
            continue
        if sock.error is not None:
            raise sock.error
        if sent < len(view) and sock.writable:
            sent += sock.send(view[sent : sent + sock.writable])
        if sock.readable:
            chunk = sock.recv(1 << 20)
            digest.update(chunk)
            received += len(chunk)
        elif sock.at_eof:
            break
    return digest.hexdigest(), received


def kernel_duplex(sock: socket.socket, data: bytes, expect: int) -> tuple[str, int]:
    """The same on a kernel socket: a thread sends while this one receives."""
    sock.settimeout(BOUND)
    failure: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(data)
        except BaseException as exc:
            failure.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    digest = hashlib.sha256()
    received = 0
    while received < expect:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        received += len(chunk)
    sender.join(BOUND)
    if sender.is_alive():
        raise TimeoutError("kernel sender stuck")
    if failure:
        raise failure[0]
    return digest.hexdigest(), received


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
