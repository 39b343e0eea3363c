"""The relay's pieces on the stack's real Loop: fd reader and writer, CRLF, and Relay over a
scripted socket (back-pressure, half-close order, failures). No TUN, no root."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytcpcli.relay import (
    CHUNK,
    HIGH_WATER,
    PIPE_SIZE,
    FdReader,
    FdWriter,
    Relay,
    grow_pipe,
    to_crlf,
)
from stack.io.loop import Loop

BOUND = 5.0  # seconds any run_until may take before the test fails


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


def test_crlf() -> None:
    assert to_crlf(b"a\nb\r\nc", after_cr=False) == b"a\r\nb\r\nc"
    assert to_crlf(b"\n\n", after_cr=False) == b"\r\n\r\n"
    # "\r" ended the previous chunk: the "\n" completes that CRLF, it is not doubled.
    assert to_crlf(b"\nx\n", after_cr=True) == b"\nx\r\n"
    assert to_crlf(b"", after_cr=True) == b""


def test_writer_waits_for_a_slow_reader_and_keeps_order(loop: Loop) -> None:
    r, w = os.pipe()
    data = os.urandom(4 * PIPE_SIZE)  # more than the pipe holds once the writer grew it
    drains: list[int] = []
    writer = FdWriter(loop, w, on_drain=lambda: drains.append(writer.pending))
    writer.write(data)
    assert 0 < writer.pending < len(data)  # the pipe took what fits, the rest waits
    assert not writer.has_room
    got = bytearray()

    def read() -> None:
        got.extend(os.read(r, 65536))

    loop.add_reader(r, read)
    assert loop.run_until(lambda: writer.pending == 0, BOUND)
    loop.remove_reader(r)
    writer.close_when_drained()
    got.extend(read_to_eof(r))
    assert bytes(got) == data
    assert drains[-1] == 0 and writer.written == len(data)
    os.close(r)


def test_writer_on_a_closed_pipe_is_broken_once(loop: Loop) -> None:
    r, w = os.pipe()
    os.close(r)
    broken: list[bool] = []
    writer = FdWriter(loop, w, on_broken=lambda: broken.append(True))
    writer.write(b"abc")
    writer.write(b"de")
    assert (writer.broken, writer.dropped, broken, writer.closed) == (True, 5, [True], True)
    assert writer.has_room  # a broken sink never holds the producer back


def test_writer_restores_blocking_mode_of_an_fd_it_does_not_own(loop: Loop) -> None:
    r, w = os.pipe()
    shared = os.dup(w)  # another holder of the same open file (a shell's terminal, say)
    assert os.get_blocking(w)
    writer = FdWriter(loop, w, owned=False)
    assert not os.get_blocking(shared)
    writer.write(b"last words")
    writer.close_when_drained()
    assert os.get_blocking(shared)  # the flags came back before pytcp let go
    os.close(shared)
    # Not owned (stdout): the fd stays valid but points at /dev/null; the reader sees EOF.
    assert read_to_eof(r) == b"last words"
    os.write(w, b"to /dev/null")
    os.close(w)
    os.close(r)


def test_reader_of_a_regular_file_reads_in_chunks_then_eof(loop: Loop, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 5)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    got: list[bytes] = []
    eofs: list[bool] = []
    reader = FdReader(loop, fd, got.append, lambda: eofs.append(True))
    assert not reader.pollable
    reader.resume()
    assert loop.run_until(lambda: bool(eofs), BOUND)
    assert [len(c) for c in got] == [CHUNK, CHUNK, CHUNK, 5]
    assert b"".join(got) == data and eofs == [True]
    os.close(fd)


def test_reader_pauses_and_resumes(loop: Loop) -> None:
    r, w = os.pipe()
    got: list[bytes] = []
    reader = FdReader(loop, r, got.append, lambda: None)
    assert reader.pollable
    os.write(w, b"one")
    loop.run_once(0)
    assert got == []  # not resumed yet
    reader.resume()
    assert loop.run_until(lambda: got == [b"one"], BOUND)
    reader.pause()
    os.write(w, b"two")
    loop.run_once(0)
    assert got == [b"one"]
    reader.resume()
    assert loop.run_until(lambda: got == [b"one", b"two"], BOUND)
    os.close(w)
    os.close(r)


class ScriptedSocket:
    """A non-blocking socket whose send room, incoming bytes, EOF and error the test sets."""

    def __init__(self) -> None:
        self.room = 0
        self.sent = bytearray()
        self.send_queued = 0  # sent and not yet acknowledged
        self.incoming = bytearray()
        self.eof = False
        self.failure: BaseException | None = None
        self.state = "ESTABLISHED"
        self.calls: list[str] = []
        self.callback: Callable[[], None] | None = None

    @property
    def error(self) -> BaseException | None:
        return self.failure

    def send(self, data: bytes | memoryview) -> int:
        if self.room == 0:
            raise BlockingIOError
        n = min(self.room, len(data))
        self.sent += data[:n]
        self.room -= n
        return n

    def recv(self, bufsize: int) -> bytes:
        if self.incoming:
            chunk = bytes(self.incoming[:bufsize])
            del self.incoming[:bufsize]
            return chunk
        if self.failure is not None:
            raise self.failure
        if self.eof:
            return b""
        raise BlockingIOError

    def shutdown(self, how: int = 1) -> None:
        self.calls.append("shutdown")
        self.state = "FIN-WAIT-1"

    def close(self) -> None:
        self.calls.append("close")

    def abort(self) -> None:
        self.calls.append("abort")
        self.state = "CLOSED"

    def on_change(self, cb: Callable[[], None] | None) -> None:
        self.callback = cb

    def change(self, **kw: object) -> None:
        for name, value in kw.items():
            setattr(self, name, value)
        assert self.callback is not None
        self.callback()


class Sink:
    """Stands in for FdWriter: records writes; has_room as the test sets it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.has_room = True

    def write(self, data: bytes) -> None:
        self.data += data


def test_abort_when_sent_waits_for_every_byte_to_be_acknowledged() -> None:
    sock = ScriptedSocket()
    sink = Sink()
    done: list[Relay] = []
    relay = Relay(sock, sink, on_done=done.append)  # type: ignore[arg-type]
    relay.feed(b"abcdef")  # no room yet: all of it waits in the relay
    relay.feed_eof()
    relay.abort_when_sent()
    assert (sock.calls, done) == ([], [])
    sock.change(room=6, send_queued=6)  # taken by the connection, not acknowledged
    assert (bytes(sock.sent), sock.calls, done) == (b"abcdef", ["shutdown"], [])
    sock.change(incoming=bytearray(b"late"))  # what arrives meanwhile is kept
    assert bytes(sink.data) == b"late" and done == []
    sock.change(send_queued=0)  # the peer acknowledged it all: now the RST
    assert (sock.calls, done, relay.done) == (["shutdown", "abort"], [relay], True)


def test_relay_send_back_pressure_and_fin_after_the_last_byte() -> None:
    sock = ScriptedSocket()
    events: list[str] = []
    relay = Relay(sock, None, on_progress=lambda: events.append("progress"))
    data = os.urandom(HIGH_WATER + 10)
    relay.feed(data)
    assert not relay.has_room  # the producer (stdin) must pause now
    relay.feed_eof()
    assert sock.calls == []  # no FIN while bytes are queued
    sock.change(room=HIGH_WATER)
    assert relay.has_room and sock.calls == [] and len(relay.up) == 10
    sock.change(room=100)
    assert bytes(sock.sent) == data
    assert sock.calls == ["shutdown"] and relay.sent == len(data)
    assert events == ["progress", "progress"]


def test_relay_reads_only_while_the_sink_has_room_and_reports_eof_after_the_data() -> None:
    sock = ScriptedSocket()
    sink = Sink()
    order: list[str] = []
    relay = Relay(
        sock,
        sink,  # type: ignore[arg-type]
        on_peer_eof=lambda: order.append(f"eof after {len(sink.data)}"),
        on_done=lambda r: order.append("done"),
    )
    sink.has_room = False
    sock.change(incoming=bytearray(b"x" * 1000), eof=True)
    assert sink.data == b"" and order == []  # back-pressure: nothing read
    sink.has_room = True
    relay.pump()
    assert sink.data == b"x" * 1000 and order == ["eof after 1000"]
    relay.feed_eof()
    assert sock.calls == ["shutdown"] and order == ["eof after 1000"]
    sock.change(state="LAST-ACK")
    assert not relay.done
    sock.change(state="CLOSED")
    assert relay.done and relay.failure is None and order == ["eof after 1000", "done"]


def test_relay_failure_keeps_what_was_received() -> None:
    sock = ScriptedSocket()
    sink = Sink()
    done: list[Relay] = []
    relay = Relay(sock, sink, on_done=done.append)  # type: ignore[arg-type]
    reset = ConnectionResetError(104, "reset")
    sink.has_room = False
    sock.change(incoming=bytearray(b"acked"), failure=reset)
    # The error ends the relay, but the acknowledged bytes are handed over first.
    assert done == [relay] and relay.failure is reset and sink.data == b"acked"


def test_relay_write_side_closed_by_someone_else() -> None:
    sock = ScriptedSocket()
    relay = Relay(sock, None)
    relay.feed(b"queued")
    sock.change(state="FIN-WAIT-1")  # pytcp close --half from another process
    assert relay.fin_sent and relay.up == b""
    relay.feed(b"more")
    assert relay.up == b"" and sock.sent == b"" and sock.calls == []


def test_relay_crlf_across_chunks() -> None:
    sock = ScriptedSocket()
    sock.room = 100
    relay = Relay(sock, None, crlf=True)
    relay.feed(b"a\r")
    relay.feed(b"\nb\n")
    assert sock.sent == b"a\r\nb\r\n"


def test_pipes_are_grown_and_a_pipe_with_room_is_written_without_buffering(loop: Loop) -> None:
    r, w = os.pipe()
    assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == 65536  # Linux's default
    writer = FdWriter(loop, w)
    assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
    drains: list[bool] = []
    writer.on_drain = lambda: drains.append(True)
    data = os.urandom(PIPE_SIZE // 2)
    writer.write(data)
    # Taken whole by the fd at once: nothing was copied into the writer's buffer.
    assert (writer.pending, writer.written, drains) == (0, len(data), [True])
    assert read_to_eof_nonblocking(r) == data
    reader = FdReader(loop, r, lambda data: None, lambda: None)
    assert reader.pollable and fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
    writer.close()
    os.close(r)
    with open(os.devnull, "wb") as null:
        assert not grow_pipe(null.fileno())  # not a pipe: left alone


def read_to_eof_nonblocking(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        chunks.append(chunk)
    os.set_blocking(fd, True)
    return b"".join(chunks)


def read_to_eof(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_writer_sharing_stderrs_file_stays_blocking(loop: Loop) -> None:
    # 2>&1 into a pipe: O_NONBLOCK on stdout would make stderr's writes fail too.
    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)
    try:
        writer = FdWriter(loop, w)
        assert writer.stepwise and os.get_blocking(w) and os.get_blocking(2)
        data = os.urandom(200 * 1024)
        writer.write(data)
        got = bytearray()

        def read() -> None:
            got.extend(os.read(r, 65536))

        loop.add_reader(r, read)
        assert loop.run_until(lambda: writer.pending == 0, BOUND)
        loop.run_until(lambda: len(got) == len(data), BOUND)
        loop.remove_reader(r)
        assert bytes(got) == data and os.get_blocking(2)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    writer.close_when_drained()
    os.close(r)


def test_signal_after_time_wait_but_before_the_relay_heard_of_it_is_no_fin(loop: Loop) -> None:
    """The stack moved the connection to TIME-WAIT, but the loop read the signal before
    the relay's on_change ran (the race behind 'closing (FIN)' then 'the peer closed its
    side'): the stack's state decides, so the signal finds no connection open, and what
    arrived still reaches stdout."""
    import io
    import signal
    from types import SimpleNamespace

    from pytcpcli.app import App
    from pytcpcli.commands.connect import ConnectSession

    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    os.close(stdin_w)  # stdin EOF at once: our FIN goes out
    err = io.StringIO()
    app = App(stdin_fd=stdin_r, stdout_fd=out_w, err=err, serve_control=False)
    sock = ScriptedSocket()
    sock.remote = ("10.77.0.1", 7)  # type: ignore[attr-defined]
    sock.setblocking = lambda flag: None  # type: ignore[attr-defined]
    session = ConnectSession(
        app,
        SimpleNamespace(loop=loop),
        sock,
        time_wait=None,
        quit_after=None,
        idle_timeout=None,
        no_shutdown=False,
        recv_only=False,
        send_only=False,
        crlf=False,
        verbose=1,
    )
    try:
        assert loop.run_until(lambda: sock.calls == ["shutdown"], BOUND)
        # The peer's last bytes and FIN are in; the relay has not been told yet.
        sock.state, sock.incoming, sock.eof = "TIME-WAIT", bytearray(b"tail"), True
        session._on_signal(signal.SIGINT)
        assert loop.run_until(lambda: session.finished, BOUND)
    finally:
        session.close_signals()
    session.finish_output(session.stdout)
    assert err.getvalue().splitlines()[0] == "pytcp: SIGINT: no connection open; exiting"
    assert "closing (FIN)" not in err.getvalue()
    assert os.read(out_r, 100) == b"tail"
    assert session.code == 130
    for fd in (stdin_r, out_r, out_w):
        os.close(fd)
