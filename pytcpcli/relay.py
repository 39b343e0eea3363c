"""The byte relay between local file descriptors (stdin, stdout, a child's pipes) and sockets.

Imports the standard library and pytcpcli.signals only. It drives the stack through the documented
`stack.api` Socket and `stack.io.loop` Loop methods, typed here as Protocols, so it
runs the same on the real stack and on test doubles.

Bytes move as they come, never line-buffered, with back-pressure both ways:
stdin is read only while every socket fed from it has room (`HIGH_WATER`), and a
socket is read only while the output it feeds is below `HIGH_WATER`, so a slow
reader of stdout closes the TCP receive window instead of growing a buffer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import stat
import struct
import termios
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

from pytcpcli.signals import ALWAYS_CAUGHT, CAUGHT, in_background
from pytcpcli.signals import name as signal_name

# One read from an fd or a socket. 256 KiB (the send buffer's size) rather than 64 KiB:
# a quarter of the reads, writes and relay passes per byte (`head -c 64M /dev/zero |
# pytcp connect` about 30 % faster on the bench machine); the pipes hold 1 MiB.
CHUNK = 256 * 1024
BACKGROUND_POLL = 0.25  # seconds between looks at a terminal owned by another job
HIGH_WATER = 256 * 1024  # bytes buffered before the producer is paused
# Pipes on stdin, stdout and a child's stdio are grown to this (F_SETPIPE_SZ; Linux's
# default 64 KiB costs a wake-up per 64 KiB). 1 MiB is fs.pipe-max-size's default, the
# most an unprivileged process may ask for; a refusal leaves the pipe as it was.
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # linux/fcntl.h F_LINUX_SPECIFIC_BASE + 7
# Write errors that mean the output is gone for good (the reader left, the disk is full):
# the writer turns `broken` and counts what it could not write instead of raising.
BROKEN_ERRNOS = frozenset(
    {errno.EPIPE, errno.ECONNRESET, errno.EIO, errno.EBADF, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
)


class Handle(Protocol):
    def cancel(self) -> None: ...


class LoopLike(Protocol):
    """The part of `stack.io.loop.Loop` the relay uses."""

    def now(self) -> int: ...
    def add_reader(self, fd: int, cb: Callable[[], None]) -> None: ...
    def remove_reader(self, fd: int) -> Any: ...
    def add_writer(self, fd: int, cb: Callable[[], None]) -> None: ...
    def remove_writer(self, fd: int) -> Any: ...
    def call_later(self, delay: float, cb: Callable[[], None]) -> Any: ...
    def run_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool: ...


class SocketLike(Protocol):
    """The part of `stack.api.Socket` the relay uses (non-blocking mode)."""

    @property
    def state(self) -> str: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def send_queued(self) -> int: ...
    def send(self, data: bytes | memoryview) -> int: ...
    def recv(self, bufsize: int) -> bytes: ...
    def shutdown(self, how: int = ...) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def on_change(self, cb: Callable[[], None] | None) -> None: ...


# RFC 9293 §3.3.2 states in which our FIN has been acknowledged (or the connection is gone).
OUR_FIN_ACKED = frozenset({"FIN-WAIT-2", "TIME-WAIT", "CLOSED"})
CLOSED_STATES = frozenset({"TIME-WAIT", "CLOSED"})
# States in which our FIN is already sent: after our own shutdown, or one another pytcp
# process asked for through the control endpoint (`pytcp close --half ID`).
WRITE_CLOSED = frozenset({"FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "TIME-WAIT", "LAST-ACK", "CLOSED"})


def _pollable(loop: LoopLike, fd: int, add: Callable[[int, Callable[[], None]], None]) -> bool:
    """Whether the loop's selector accepts fd: regular files and /dev/null are not pollable
    (epoll refuses them with EPERM); they are always ready instead."""
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return False
    except OSError:
        return False  # a closed fd (`<&-`): reading it is EOF, writing it is broken
    try:
        add(fd, lambda: None)
    except PermissionError:
        return False
    return True


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> bool:
    """Make the pipe `fd` (either end) hold `size` bytes; False when fd is not a pipe or
    the kernel refused (EPERM above fs.pipe-max-size, EBUSY below what it holds)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    except OSError:
        return False
    return True


def pipe_unread(fd: int) -> int:
    """Bytes written into the pipe fd (either end) that its reader has not read yet
    (FIONREAD); 0 when that cannot be told."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return max(0, int(struct.unpack("i", buf)[0]))


def input_left(fd: int) -> tuple[int | None, bool]:
    """What the input fd still holds that was never read: (bytes, exact). A regular file
    says exactly (its size past the read offset); a pipe, socket or terminal says what
    is waiting in it now (FIONREAD), and more may be written later (exact False); any
    other fd cannot tell (None)."""
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return max(0, st.st_size - os.lseek(fd, 0, os.SEEK_CUR)), True
        if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode) or os.isatty(fd)):
            return None, False
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return None, False
    return max(0, int(struct.unpack("i", buf)[0])), False


def unsent_input(name: str, queued: int, fd: int | None) -> str:
    """How much of input `name` (stdin) will never be sent once the write side closed
    without it (`pytcp close --half` from another process): the `queued` bytes read
    but not sent and, while the input was still read (`fd`; None: at its end
    already), what it holds that was never read. Said as far as it can be known: a
    file exactly, a pipe as "so far" (its writer may write more, which is not read
    either)."""
    if fd is None:
        return f"{queued} bytes of {name} were not sent" if queued else ""
    left, exact = input_left(fd)
    if left is None:
        return (f"{name} is no longer read: {queued} bytes read from it were not sent, "
                "nor what it still holds")  # fmt: skip
    total = queued + left
    parts = f" ({queued} read, {left} never read)" if total else ""
    if exact:
        return f"{name} is no longer read: {total} bytes of it were not sent{parts}"
    later = "; what is written to it later is not read either"
    return f"{name} is no longer read: {total} bytes of it were not sent so far{parts}{later}"


def _same_file(fd: int, other: int) -> bool:
    try:
        a, b = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_chunk: memoryview | None = None  # read_chunk's buffer, made at its first use


def read_chunk(fd: int) -> bytes:
    """os.read(fd, CHUNK) into one buffer kept for every read (one thread reads), the
    bytes read copied out. os.read allocates CHUNK bytes afresh each call: above
    malloc's mmap threshold, that is an mmap, an mremap to the length read and a munmap
    per read (three system calls and a page fault a 1-byte request/response pays twice
    per exchange); a copy of what was read is cheaper even at full CHUNKs."""
    global _chunk
    if _chunk is None:
        _chunk = memoryview(bytearray(CHUNK))
    n = os.readv(fd, [_chunk])
    return _chunk[:n].tobytes()


class FdReader:
    """Reads an fd in CHUNKs while resumed, handing bytes to on_data and EOF to on_eof once.

    A pollable fd is read when the loop reports it readable; a regular file or
    /dev/null is read from zero-delay callbacks, one chunk each, so the stack keeps
    running between chunks.
    """

    def __init__(
        self,
        loop: LoopLike,
        fd: int,
        on_data: Callable[[bytes], None],
        on_eof: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.on_data = on_data
        self.on_eof = on_eof
        self.eof = False
        self.active = False
        self._timer: Any = None
        self.tty = os.isatty(fd)
        self.pollable = _pollable(loop, fd, loop.add_reader)
        if self.pollable:
            loop.remove_reader(fd)
            grow_pipe(fd)

    def resume(self) -> None:
        if self.active or self.eof:
            return
        self.active = True
        if self.tty and in_background(self.fd):
            # A terminal owned by another foreground job (`pytcp listen -k 80 > log &`):
            # reading it would stop the whole stack. Look again until we are in front.
            self._timer = self.loop.call_later(BACKGROUND_POLL, self._foreground_check)
        elif self.pollable:
            self.loop.add_reader(self.fd, self._read)
        else:
            self._timer = self.loop.call_later(0, self._tick)

    def _foreground_check(self) -> None:
        self._timer = None
        if self.active and not self.eof:
            self.active = False
            self.resume()

    def _to_background(self) -> None:
        """The terminal went to another job between two reads: wait to be in front again."""
        self.pause()
        self.resume()

    def pause(self) -> None:
        if not self.active:
            return
        self.active = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        elif self.pollable:
            self.loop.remove_reader(self.fd)

    def stop(self) -> None:
        """Stop reading for good (no on_eof): SIGINT, or the consumer went away."""
        self.pause()
        self.eof = True

    def _tick(self) -> None:
        self._timer = None
        self._read()
        if self.active and not self.eof:
            self._timer = self.loop.call_later(0, self._tick)

    def _read(self) -> None:
        if self.tty and in_background(self.fd):
            self._to_background()
            return
        try:
            data = read_chunk(self.fd)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if e.errno == errno.EIO and self.tty and in_background(self.fd):
                self._to_background()  # SIGTTIN is ignored (pytcpcli.signals): EIO instead
                return
            # EIO from a hung-up terminal and the like: nothing more will come.
            data = b""
        if data:
            self.on_data(data)
            return
        self.pause()
        self.eof = True
        self.on_eof()

    def read_available(self) -> None:
        """Read what is there without blocking (a child exited: collect its last output)."""
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        while not self.eof:
            try:
                data = read_chunk(self.fd)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.pause()
                self.eof = True
                self.on_eof()
                return
            self.on_data(data)


class FdWriter:
    """Buffered, non-blocking writes to an fd; partial writes wait for the fd to be writable.

    An `owned` fd (a child's stdin pipe) is closed at the end; one that is not (stdout)
    is pointed at /dev/null instead.

    `pending` is what is buffered; producers stop at HIGH_WATER and on_drain tells
    them to go on. A reader that went away (EPIPE) makes the writer `broken`: later
    data is counted in `dropped` and on_broken is called once.
    """

    def __init__(
        self,
        loop: LoopLike,
        fd: int,
        *,
        on_drain: Callable[[], None] = lambda: None,
        on_broken: Callable[[], None] = lambda: None,
        owned: bool = True,
        gone: bool = False,
    ) -> None:
        self.loop = loop
        self.gone = gone  # the fd was closed before pytcp started: the first write breaks
        self.fd = fd
        self.on_drain = on_drain
        self.on_broken = on_broken
        self.owned = owned
        self.buf = bytearray()
        self.written = 0
        self.dropped = 0
        self.broken = False
        self.errno: int | None = None  # why the writer broke (None: closed before pytcp ran)
        self.closed = False
        self._closing = False
        self._waiting = False
        self._saved_flags: int | None = None
        self.pollable = _pollable(loop, fd, loop.add_writer)
        # stderr on the same file (2>&1, a terminal): O_NONBLOCK is a property of the open
        # file, so it would reach stderr's writes too and break them. Such an fd stays
        # blocking and gets one PIPE_BUF at a time when the loop says there is room,
        # which a pipe or terminal takes without blocking.
        self.stepwise = self.pollable and _same_file(fd, 2)
        if self.pollable:
            loop.remove_writer(fd)
            grow_pipe(fd)
        if self.pollable and not self.stepwise:
            # Non-blocking so a partial write never stalls the stack; the old flags come
            # back in close() because the file may be shared with the shell.
            self._saved_flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, self._saved_flags | os.O_NONBLOCK)

    @property
    def pending(self) -> int:
        return len(self.buf)

    @property
    def has_room(self) -> bool:
        return len(self.buf) < HIGH_WATER or self.broken

    def write(self, data: bytes | memoryview) -> None:
        if self.gone and data and not self.broken:
            self.dropped += len(data)
            self._break()
            return
        if self.broken or self.closed:
            self.dropped += len(data)
            return
        if not self.buf and not self._waiting and not self.stepwise:
            # Nothing queued before it: straight to the fd, and only what it does not take
            # now is copied into the buffer (one copy less on the way to stdout).
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                if e.errno not in BROKEN_ERRNOS:
                    raise
                self.buf += data
                self.errno = e.errno
                self._break()
                return
            self.written += n
            if n == len(data):
                if self._closing:
                    self._close()
                self.on_drain()
                return
            data = memoryview(data)[n:]
        self.buf += data
        if self._waiting:
            return
        if self.stepwise:
            self._waiting = True
            self.loop.add_writer(self.fd, self._step)
        else:
            self._flush()

    def close_when_drained(self) -> None:
        """Close the fd once everything buffered is written (the reader then sees EOF)."""
        self._closing = True
        if not self.buf:
            self._close()

    def _flush(self) -> None:
        while self.buf:
            try:
                n = os.write(self.fd, self.buf)
            except (BlockingIOError, InterruptedError):
                if not self._waiting:
                    self._waiting = True
                    self.loop.add_writer(self.fd, self._flush)
                return
            except OSError as e:
                if e.errno not in BROKEN_ERRNOS:
                    raise
                self.errno = e.errno
                self._break()
                return
            del self.buf[:n]
            self.written += n
        if self._waiting:
            self._waiting = False
            self.loop.remove_writer(self.fd)
        if self._closing:
            self._close()
        self.on_drain()

    def _step(self) -> None:
        """Stepwise mode: the fd is writable, so one PIPE_BUF goes without blocking."""
        try:
            n = os.write(self.fd, self.buf[: select.PIPE_BUF])
        except InterruptedError:
            return
        except OSError as e:
            if e.errno not in BROKEN_ERRNOS:
                raise
            self.errno = e.errno
            self._break()
            return
        del self.buf[:n]
        self.written += n
        if self.buf:
            return
        self._waiting = False
        self.loop.remove_writer(self.fd)
        if self._closing:
            self._close()
        self.on_drain()

    def _break(self) -> None:
        self.dropped += len(self.buf)
        self.buf.clear()
        self.broken = True
        if self._waiting:
            self._waiting = False
            self.loop.remove_writer(self.fd)
        self._close()
        self.on_broken()

    def flush_blocking(self) -> None:
        """Write everything buffered, waiting as long as the reader needs (exit paths)."""
        if self.closed or not self.buf:
            return
        if self._waiting:
            self._waiting = False
            self.loop.remove_writer(self.fd)
        self._restore_flags()
        try:
            while self.buf:
                try:
                    n = os.write(self.fd, self.buf)
                except BlockingIOError:
                    # The fd was non-blocking before pytcp came (inherited): wait here.
                    select.select([], [self.fd], [])
                    continue
                del self.buf[:n]
                self.written += n
        except OSError:
            self.dropped += len(self.buf)
            self.buf.clear()
            self.broken = True

    def write_available(self) -> None:
        """Write what the fd takes now without blocking (a second signal: pytcp must
        end at once); what stays in `pending` could not be written."""
        if self.closed or not self.buf:
            return
        if self._waiting:
            self._waiting = False
            self.loop.remove_writer(self.fd)
        nonblocking = self._saved_flags is not None
        for _ in range(len(self.buf) // select.PIPE_BUF + 2):  # bounded: each pass writes
            if not self.buf:
                break
            if self.pollable:
                try:
                    if not select.select([], [self.fd], [], 0)[1]:
                        break
                except (OSError, ValueError):
                    break
            # A blocking fd the selector called writable takes PIPE_BUF without blocking.
            chunk = self.buf if nonblocking or not self.pollable else self.buf[: select.PIPE_BUF]
            try:
                n = os.write(self.fd, chunk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            del self.buf[:n]
            self.written += n

    def _restore_flags(self) -> None:
        if self._saved_flags is not None:
            try:
                fcntl.fcntl(self.fd, fcntl.F_SETFL, self._saved_flags)
            except OSError:
                pass
            self._saved_flags = None

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._restore_flags()
        try:
            if self.owned:
                os.close(self.fd)
            else:
                # stdout stays a valid fd (Python flushes it at exit) but no longer holds
                # the pipe open, so the next stage of a pipeline sees EOF now.
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self.fd)
                os.close(null)
        except OSError:
            pass

    def close(self) -> None:
        """Give up: restore the fd's flags and close it (what is buffered is dropped)."""
        if self._waiting:
            self._waiting = False
            self.loop.remove_writer(self.fd)
        self.dropped += len(self.buf)
        self.buf.clear()
        self._close()


def to_crlf(data: bytes, after_cr: bool) -> bytes:
    """LF -> CRLF for -C/--crlf; a CRLF already there stays one. after_cr: the previous
    chunk ended in CR, so a leading LF completes that CRLF."""
    head = b""
    if after_cr and data[:1] == b"\n":
        head, data = b"\n", data[1:]
    return head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Relay:
    """One connection's two directions: `feed` bytes to send, received bytes to `sink`.

    Up: bytes fed are queued and sent as the socket takes them; after `feed_eof` and
    once the queue is empty the write side is shut down (FIN), unless `shutdown_on_eof`
    is off. Down: the socket is read while the sink has room; at the peer's FIN,
    `on_peer_eof` runs after the last byte was handed to the sink. The relay is `done`
    when both directions are closed (RFC 9293 §3.6: TIME-WAIT or CLOSED) or the
    connection failed (`failure`).
    """

    def __init__(
        self,
        sock: SocketLike,
        sink: FdWriter | None,
        *,
        on_progress: Callable[[], None] = lambda: None,
        on_peer_eof: Callable[[], None] = lambda: None,
        on_done: Callable[[Relay], None] = lambda relay: None,
        on_write_side_gone: Callable[[int], None] = lambda unsent: None,
        on_sink_full: Callable[[], None] = lambda: None,
        crlf: bool = False,
        shutdown_on_eof: bool = True,
    ) -> None:
        self.sock = sock
        self.sink = sink
        # Told when reading stopped because the sink had no room: the owner pumps this
        # relay again once the sink drains (and need not pump the others).
        self.on_sink_full = on_sink_full
        self.on_progress = on_progress
        self.on_peer_eof = on_peer_eof
        self.on_done = on_done
        self.on_write_side_gone = on_write_side_gone
        self.crlf = crlf
        self.shutdown_on_eof = shutdown_on_eof
        self.up = bytearray()
        self.sent = 0
        self.received = 0
        self.discarded = 0  # received with no sink (--send-only)
        self.unsent = 0  # fed after the write side was closed by another process
        self.input_eof = False
        self.fin_sent = False
        self.peer_eof = False
        self.done = False
        self.failure: BaseException | None = None
        self._after_cr = False
        self._abort_when_sent = False
        self._pumping = False
        self._again = False
        sock.on_change(self.pump)

    # -- up: local input -> connection ------------------------------------------------

    @property
    def has_room(self) -> bool:
        return len(self.up) < HIGH_WATER

    def feed(self, data: bytes) -> None:
        if self.fin_sent or self.done:
            self.unsent += len(data)
            return
        if self.crlf:
            converted = to_crlf(data, self._after_cr)
            self._after_cr = data[-1:] == b"\r"
            data = converted
        self.up += data
        self.pump()

    def feed_eof(self) -> None:
        self.input_eof = True
        self.pump()

    def shutdown_now(self) -> None:
        """Send FIN after what is queued: SIGINT, or an exec'd child exited."""
        self.input_eof = True
        self.shutdown_on_eof = True
        self.pump()

    # -- the pump ---------------------------------------------------------------------

    def pump(self) -> None:
        """Move what can move both ways; called on every socket, fd and sink event."""
        if self._pumping:
            self._again = True  # a callback fired from inside pump: run once more after
            return
        self._pumping = True
        try:
            self._again = True
            while self._again and not self.done:
                self._again = False
                self._pump_once()
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        progressed = False
        if not self.fin_sent and self.sock.state in WRITE_CLOSED:
            self._write_side_gone()
        try:
            if self.up:
                progressed |= self._send()
            if not self.up and self.input_eof and self.shutdown_on_eof and not self.fin_sent:
                self.fin_sent = True
                self.sock.shutdown()
            if not self.peer_eof:
                progressed |= self._receive()
        except OSError as e:
            self._fail(e)
            return
        if self.sock.error is not None and not self.peer_eof:
            self._fail(self.sock.error)
            return
        if progressed:
            self.on_progress()
        if self.peer_eof and self.fin_sent and self.sock.state in CLOSED_STATES:
            self._finish()
        elif self._abort_when_sent and not self.up and not self.sock.send_queued:
            self.abort()

    def _write_side_gone(self) -> None:
        """Our FIN went out without us (pytcp close [--half] from another process): what
        is queued cannot follow. `on_write_side_gone(unsent)` is told, unless the
        connection failed (a reset is reported as the failure)."""
        self.fin_sent = True
        unsent = len(self.up)
        self.unsent += unsent
        self.up.clear()
        if self.sock.error is None:
            self.on_write_side_gone(unsent)

    def _send(self) -> bool:
        sent_any = False
        while self.up:
            try:
                # A view, not a copy: the connection copies what fits into its send ring,
                # and the view is gone before the queue is trimmed.
                with memoryview(self.up) as view:
                    n = self.sock.send(view[:CHUNK])
            except BlockingIOError:
                break
            except BrokenPipeError:
                if self.sock.error is not None:
                    raise
                self._write_side_gone()
                break
            if n <= 0:
                break
            del self.up[:n]
            self.sent += n
            sent_any = True
        return sent_any

    def _receive(self) -> bool:
        got_any = False
        while True:
            if self.sink is not None and not self.sink.has_room:
                self.on_sink_full()
                break
            try:
                data = self.sock.recv(CHUNK)
            except BlockingIOError:
                break
            if not data:
                self.peer_eof = True
                self.on_peer_eof()
                break
            self.received += len(data)
            got_any = True
            if self.sink is None:
                self.discarded += len(data)
            else:
                self.sink.write(data)
        return got_any

    def drain(self) -> None:
        """Read everything the stack holds for us into the sink (it was acknowledged to
        the peer, so it must reach the user) without regard to back-pressure."""
        while not self.peer_eof:
            try:
                data = self.sock.recv(CHUNK)
            except (BlockingIOError, OSError):
                return
            if not data:
                self.peer_eof = True
                self.on_peer_eof()
                return
            self.received += len(data)
            if self.sink is None:
                self.discarded += len(data)
            else:
                self.sink.write(data)

    def _fail(self, error: BaseException) -> None:
        self.drain()
        self.failure = error
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.sock.on_change(None)
        self.on_done(self)

    def stop(self) -> None:
        """Stop relaying without reporting done (the session is ending this connection)."""
        self.done = True
        self.sock.on_change(None)

    def abort_when_sent(self) -> None:
        """-q: abort() as soon as the peer has acknowledged every byte fed, at once if it
        has. An RST discards what the connection still queues, which nc -q does not
        lose: its close leaves the sending to the kernel."""
        self._abort_when_sent = True
        self.pump()

    def abort(self) -> None:
        """RST (second SIGINT, -i timeout): first take what was received, then abort.
        A connection the stack already closed both ways (TIME-WAIT) has nothing to reset:
        what it received is taken and it is let go."""
        self.drain()
        try:
            self.sock.abort()
        except OSError:
            pass
        self._finish()


class SignalWatch:
    """Terminating signals (pytcpcli.signals: SIGINT, SIGTERM, SIGHUP, ...) delivered
    through the loop instead of as exceptions.

    The C-level handler writes the signal number to a pipe (`signal.set_wakeup_fd`);
    the loop reads it and calls `on_signal(signum)` between two packets, so a signal
    never interrupts the stack half-way through a segment.
    """

    def __init__(self, loop: LoopLike, on_signal: Callable[[int], None]) -> None:
        self.loop = loop
        self.on_signal = on_signal
        self.active = False
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup = -1
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        try:
            self._old_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        except ValueError:
            # Not the main thread (a test harness): signals stay as they were.
            os.close(self._r)
            os.close(self._w)
            return
        self.active = True
        self.watched = frozenset(CAUGHT | ALWAYS_CAUGHT)
        for signum in self.watched:
            self._old_handlers[signum] = signal.signal(signum, _ignore_signal)
        loop.add_reader(self._r, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._r, 64)
        except BlockingIOError:
            return
        for signum in data:
            if signum in self.watched:
                self.on_signal(signum)

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        self.loop.remove_reader(self._r)
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        os.close(self._r)
        os.close(self._w)


def _ignore_signal(signum: int, frame: Any) -> None:
    """Python-level handler: the wakeup fd carries the signal to the loop."""


GRACE = 2.0  # seconds the first SIGINT/SIGTERM waits for the close before aborting
EXIT_SIGNAL: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number


class Session(ABC):
    """What connect and listen share around their relays: signals, the TIME-WAIT
    linger, the end of the run and its exit status.

    Subclasses implement `graceful_close()` (first signal: FIN everywhere, keep
    receiving) and `abort_all()` (second signal or GRACE over: take what was received,
    then RST), and set `finished` (with `code`/`error`) when they are done.

    A second SIGINT/SIGTERM is a hard stop (`hard_stop`): connections are reset, stdout
    gets only what it accepts without blocking, and `finish_output` reports the rest.
    """

    def __init__(
        self,
        loop: LoopLike,
        *,
        time_wait: float | None,
        say: Callable[[str], None] | None = None,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.loop = loop
        self.time_wait = time_wait
        self.say = say  # -v: tell what a signal does
        self.warn = warn  # always: what the user must know (bytes that were lost)
        self.finished = False
        self.hard_stop = False
        self.code = 0
        self.error: str | None = None
        self.signum: int | None = None
        self._hard_signum: int = signal.SIGINT
        self._grace: Any = None
        self.signals = SignalWatch(loop, self._on_signal)
        # linger_in_background of the stack (stack.api): the TIME-WAIT linger then goes
        # on in a child process and the command exits at once (None: linger here).
        self.detach: Callable[[float], int | None] | None = None

    def _on_signal(self, signum: int) -> None:
        name = signal_name(signum)
        if self.signum is None:
            self.signum = signum
            self.code = EXIT_SIGNAL.get(signum, 128 + signum)
            message = self.first_signal_message(name)
            if self.waits_for_something():
                self.warn(message)  # always: pytcp does not exit at once, say why
            elif self.say is not None:
                self.say(message)
            self._grace = self.loop.call_later(GRACE, self.abort_all)
            self.graceful_close()
        else:
            if self.say is not None:
                self.say(f"{name} again: resetting (RST)")
            self._hard_signum = signum
            self.hard_stop = True
            self.abort_all()

    def has_open_connections(self) -> bool:
        """Whether a connection is still open: only then does a signal have a FIN to
        send. Subclasses ask the stack (a connection in TIME-WAIT or CLOSED is closed
        both ways, whatever the relay has yet to hand on)."""
        return True

    def waits_for_something(self) -> bool:
        """Whether the first signal leaves pytcp running a while (then it always says so)."""
        return self.has_open_connections()

    def first_signal_message(self, name: str) -> str:
        """What the first signal does: on stderr always when pytcp waits, else under -v."""
        if self.has_open_connections():
            return (
                f"{name}: closing (FIN), waiting up to {GRACE:g}s for the peer to close; "
                f"send it again to reset (RST)"
            )
        return f"{name}: no connection open; exiting"

    @abstractmethod
    def graceful_close(self) -> None:
        """First signal: FIN on every connection, keep receiving."""

    @abstractmethod
    def abort_all(self) -> None:
        """Second signal or GRACE over: take what was received, then RST everything."""

    def finish_output(self, out: FdWriter | None, *, failed: bool = False) -> None:
        """The run is over: write out what `out` (stdout) holds, then stop watching signals.

        The loop keeps running while stdout drains, so a slow reader delays the exit but
        a second SIGINT/SIGTERM still ends it at once: then only what stdout accepts
        without blocking is written and the rest is reported on stderr. Without a second
        signal nothing received is lost. `failed`: the loop itself raised (the TUN is
        gone), so stdout is written out with plain blocking writes.
        """
        if out is not None and not self.hard_stop and not failed:
            self.loop.run_until(lambda: out.closed or not out.pending or self.hard_stop, None)
        self.close_signals()
        if out is None:
            return
        if self.hard_stop:
            out.write_available()
            lost = out.pending
            out.close()
            if lost:
                name = signal_name(self._hard_signum)
                self.warn(
                    f"{lost} received bytes could not be written to stdout "
                    f"(its reader was not reading when the second {name} came)"
                )
        else:
            out.flush_blocking()
            out.close_when_drained()

    def settle(self, sock: SocketLike, then: Callable[[], None]) -> None:
        """After a complete close: stay in TIME-WAIT (RFC 9293 §3.6.1) as long as
        --time-wait says, re-ACKing a retransmitted FIN, then call `then`.

        The default linger is short (1 s) because a script must not wait 2·MSL for a
        connection whose close already completed; `--time-wait full` holds it all.
        """
        if sock.state != "TIME-WAIT" or self.signum is not None:
            then()
            return
        if self.time_wait is not None:
            if self.detach is not None and self.detach(self.time_wait):
                then()  # a child that keeps only the TUN lingers; the shell gets us back
                return
            self.loop.call_later(self.time_wait, then)
            return

        def check() -> None:
            if sock.state == "CLOSED" or getattr(sock, "closed", False):
                sock.on_change(None)
                then()

        sock.on_change(check)
        check()

    def close_signals(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self.signals.close()
