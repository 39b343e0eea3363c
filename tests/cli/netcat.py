"""Helpers for running the installed `pytcp` as a user would, inside a test namespace.

pytcp creates pytcp0 in the fresh namespace: the kernel is 10.77.0.1 and fd77::1 on it
and pytcp is 10.77.0.2 and fd77::2. Kernel peers are Python sockets in threads; every
wait is bounded. `FAMILIES` parametrizes a test over IPv4 and IPv6 (`ADDRS[family]`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

PYTCP = os.path.join(os.path.dirname(sys.executable), "pytcp")
KERNEL = "10.77.0.1"
STACK = "10.77.0.2"
KERNEL6 = "fd77::1"
STACK6 = "fd77::2"
ADDRS = {4: (KERNEL, STACK), 6: (KERNEL6, STACK6)}  # family -> (kernel, pytcp)
FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
TIMEOUT = 60  # seconds any one subprocess or wait may take before the test fails


def pytcp(*args: str, **kw: Any) -> subprocess.Popen[bytes]:
    """Start `pytcp ARGS...` with pipes for whatever stdin/stdout/stderr are not given."""
    kw.setdefault("stdin", subprocess.PIPE)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([PYTCP, *args], **kw)


def run(*args: str, input: bytes = b"", timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([PYTCP, *args], input=input, capture_output=True, timeout=timeout)


def recv_all(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        data = conn.recv(1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def reset_by_peer(conn: socket.socket, timeout: float = TIMEOUT) -> bool:
    """Wait for the peer's RST on conn, whatever else came first; True once it came.

    A FIN that came before (pytcp's stdin was at EOF) makes recv() return b"" even
    after the RST, and a send that fitted into the send buffer returns before it: only
    the socket's own state tells. Linux ends the socket at the RST (POLLHUP, CLOSE)
    and sets its error (POLLERR: ECONNRESET, or EPIPE in CLOSE-WAIT); a FIN alone
    raises neither while this side has not shut down. The wait is for that event;
    `timeout` only bounds a test that is failing (False: no RST came)."""
    poller = select.poll()
    poller.register(conn, select.POLLERR | select.POLLHUP)
    if not poller.poll(int(timeout * 1000)):
        return False
    error = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return error in (errno.ECONNRESET, errno.EPIPE)


def read_line(conn: socket.socket) -> bytes:
    """Bytes up to and including the first newline: one recv() may return less than a
    line (TCP keeps no message boundaries)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            break
        line += byte
    return line


def unacked(conn: socket.socket) -> int:
    """Bytes the kernel has sent on conn that the peer has not acknowledged (SIOCOUTQ
    counts unsent + unacknowledged)."""
    import fcntl
    import struct
    import termios

    buf = fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


@dataclass
class KernelServer:
    """A kernel TCP server on 0.0.0.0:port (family 6: [::]:port, IPv6 only);
    handler(conn) runs in a thread per client."""

    port: int
    handler: Callable[[socket.socket], Any]
    results: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    family: int = 4

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6 if self.family == 6 else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.family == 6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind(("::" if self.family == 6 else "0.0.0.0", self.port))
        self.sock.listen(16)
        self.sock.settimeout(TIMEOUT)
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.results.append(self.handler(conn))
        except BaseException as e:  # reported by wait()
            self.errors.append(e)

    def wait(self, clients: int = 1) -> list[Any]:
        """The handlers' results once `clients` handlers finished (bounded by TIMEOUT)."""
        deadline = TIMEOUT
        for _ in range(deadline * 20):
            if len(self.results) + len(self.errors) >= clients:
                break
            threading.Event().wait(0.05)
        if self.errors:
            raise self.errors[0]
        assert len(self.results) >= clients, f"{len(self.results)} of {clients} clients done"
        return self.results

    def close(self) -> None:
        """Stop accepting, then close the listening socket.

        Never close a descriptor another thread is blocked on: the accept thread's poll()
        names the socket by its number, and once that number is closed the next pipe2()
        (subprocess's exec-error pipe, say) reuses it. A signal that interrupts the poll
        (a child's SIGCHLD lands on this thread while subprocess's vfork has every signal
        blocked in the main thread) restarts it on the same number, now the pipe's write
        end, which the poll then pins for the rest of its 60 s timeout: the parent's read
        of that pipe waits as long. shutdown() wakes accept() (EINVAL) instead, and the
        socket is closed once its thread has returned."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.accepting.join(TIMEOUT)
        self.sock.close()


class StderrLines:
    """Collects a process's stderr lines in a thread; `wait_for(prefix)` blocks until one
    starts with prefix (bounded)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            self._queue.put(raw.decode(errors="replace"))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float = TIMEOUT) -> str:
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"stderr ended before {prefix!r}: {self.lines}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def rest(self, timeout: float = TIMEOUT) -> list[str]:
        """Every remaining line, until the stream ends."""
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                return self.lines
            self.lines.append(line)


def start_listener(*args: str, **kw: Any) -> tuple[subprocess.Popen[bytes], StderrLines]:
    """`pytcp listen -v ARGS` started and listening (its first -v line seen)."""
    proc = pytcp("listen", "-v", *args, **kw)
    err = StderrLines(proc)
    try:
        err.wait_for("pytcp: listening on ")
    except BaseException:
        proc.kill()
        proc.wait(TIMEOUT)
        raise
    return proc, err


def connect_kernel(port: int, host: str = STACK) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock
