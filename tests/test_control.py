"""The control endpoint: codec, runtime directory, stale sockets, and the server answering
real Unix-socket clients (bad requests, oversized ones, other users) without root."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stack import control
from stack.api import Stack
from stack.control import (
    MAX_REQUEST,
    ControlClient,
    ControlError,
    ControlServer,
    Endpoint,
    ProtocolError,
    Request,
    Response,
    close_completed,
    decode_request,
    decode_response,
    discover,
    encode_request,
    encode_response,
    runtime_dir,
)
from stack.io.link import PairLink
from stack.io.loop import Loop
from stack.tcp.errors import InvalidStateError

# --------------------------------------------------------------------------- codec


def test_request_round_trip() -> None:
    for req in [
        Request(op="list"),
        Request(op="get", conn="12.3"),
        Request(op="send", conn="12.3", data=b"\x00\xffhello\n"),
        Request(op="close", conn="12.3", how="half"),
        Request(op="close", conn="12", how="reset"),
    ]:
        line = encode_request(req)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode_request(line) == req


def test_request_wire_format_is_documented_json() -> None:
    line = encode_request(Request(op="send", conn="7.1", data=b"hi"))
    assert line == b'{"conn":"7.1","data":"aGk=","op":"send","v":1}\n'


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        (b"{", "bad-json", None),
        (b"\xff\xfe", "bad-json", None),
        (b"[1]", "bad-request", "a message must be a JSON object"),
        (b'{"op":"list"}', "bad-version", "protocol version None unsupported, expected 1"),
        (b'{"v":2,"op":"list"}', "bad-version", "protocol version 2 unsupported, expected 1"),
        (b'{"v":1,"op":"dance"}', "unknown-op", None),
        (b'{"v":1,"op":"get"}', "bad-request", "op 'get' needs a connection id in 'conn'"),
        (b'{"v":1,"op":"get","conn":5}', "bad-request", None),
        (b'{"v":1,"op":"send","conn":"1.1"}', "bad-request", "op 'send' needs base64 'data'"),
        (b'{"v":1,"op":"send","conn":"1.1","data":"!!"}', "bad-request", None),
        (b'{"v":1,"op":"close","conn":"1.1","how":"gently"}', "bad-request", None),
        (b'{"v":1,"op":"list","pad":"' + b"x" * MAX_REQUEST + b'"}', "too-large", None),
    ],
)
def test_bad_requests_raise_protocol_error(line: bytes, code: str, message: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert info.value.code == code
    if message is not None:
        assert info.value.message == message


def test_response_round_trip() -> None:
    ok = Response(ok=True, result={"queued": 5})
    err = Response.error("write-closed", "1.2 is FIN-WAIT-1: its write side is closed")
    assert decode_response(encode_response(ok)) == ok
    assert decode_response(encode_response(err)) == err
    assert json.loads(encode_response(err)) == {
        "v": 1,
        "ok": False,
        "error": {"code": "write-closed", "message": "1.2 is FIN-WAIT-1: its write side is closed"},
    }
    with pytest.raises(ProtocolError):
        decode_response(b'{"v":1,"ok":"maybe"}')


def test_close_completed() -> None:
    assert close_completed("reset", None)
    assert close_completed("full", {"state": "TIME-WAIT"})
    assert not close_completed("full", {"state": "FIN-WAIT-2", "close": {"fin_acked": True}})
    assert close_completed("half", {"state": "FIN-WAIT-2", "close": {"fin_acked": True}})
    assert not close_completed("half", {"state": "FIN-WAIT-1", "close": {"fin_acked": False}})


# --------------------------------------------------------------------------- runtime directory


def test_runtime_dir_choice() -> None:
    assert runtime_dir({"PYTCP_RUNTIME_DIR": "/x"}, 0) == "/x"
    assert runtime_dir({}, 0) == "/run/pytcp"
    assert runtime_dir({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000) == "/run/user/1000/pytcp"
    assert runtime_dir({}, 1000) == "/tmp/pytcp-1000"


def test_discover_removes_sockets_of_dead_processes(tmp_path: Any) -> None:
    dead = 2**22 + 12345  # above pid_max's default ceiling: never a live process
    (tmp_path / f"{dead}.sock").write_bytes(b"")
    (tmp_path / f"{os.getpid()}.sock").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    assert discover(str(tmp_path)) == [Endpoint(os.getpid(), str(tmp_path / f"{os.getpid()}.sock"))]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["notes.txt", f"{os.getpid()}.sock"]
    )
    assert discover(str(tmp_path / "missing")) == []


def test_client_removes_a_socket_nobody_listens_on(tmp_path: Any) -> None:
    # A live pid whose socket refuses: a stale file from a process that reused the pid.
    path = tmp_path / f"{os.getpid()}.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    client = ControlClient([str(tmp_path)], timeout=1)
    assert client.entries() == []
    assert not path.exists()


# --------------------------------------------------------------------------- server doubles


class FakeConnection:
    """Records the user calls the server makes; snapshot() in the documented shape."""

    def __init__(self, n: int) -> None:
        self.id = n
        self.state = "ESTABLISHED"
        self.sent = bytearray()
        self.calls: list[str] = []
        self.fin_sent = False

    def snapshot(self, now: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "local": {"addr": "10.77.0.2", "port": 5000},
            "remote": {"addr": "10.77.0.1", "port": 40000 + self.id},
            "close": {"fin_sent": self.fin_sent, "fin_acked": False, "fin_received": False,
                      "app_closed": False},
            "timers": [],
        }  # fmt: skip

    send_space = 10  # a send buffer with 10 bytes free

    def send(self, data: bytes, now: int) -> int:
        if self.fin_sent:
            raise InvalidStateError("connection closing")
        self.sent += data[:10]
        return min(len(data), 10)

    def shutdown(self, now: int) -> None:
        self.calls.append("shutdown")
        self.fin_sent = True
        self.state = "FIN-WAIT-1"

    def close(self, now: int) -> None:
        self.calls.append("close")

    def abort(self, now: int) -> None:
        self.calls.append("abort")
        self.state = "CLOSED"


class FakeListener:
    def __init__(self, n: int) -> None:
        self.id = n
        self.closed = False

    def snapshot(self, now: int) -> dict[str, Any]:
        return {"id": self.id, "state": "LISTEN", "local": {"addr": "0.0.0.0", "port": 5000}}

    def close(self, now: int) -> None:
        self.closed = True


class FakeHost:
    def __init__(self) -> None:
        self.conns = [FakeConnection(2), FakeConnection(3)]
        self.lsts = [FakeListener(1)]

    def connections(self) -> list[FakeConnection]:
        return self.conns

    def listeners(self) -> list[FakeListener]:
        return self.lsts


class FakeStack:
    """A host double on the real Loop (readers, writers, now())."""

    def __init__(self) -> None:
        self.loop = Loop()
        self.host = FakeHost()
        self.tun_name = "pytcp9"
        self.address = "10.77.9.2"


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[ControlServer, FakeStack, str]]:
    """A server on a fake stack, its loop run by a thread until the test ends."""
    directory = str(tmp_path / "rt")
    stack = FakeStack()
    server = ControlServer(stack, directory=directory).start()
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            stack.loop.run_once(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server, stack, directory
    finally:
        stop.set()
        thread.join(5)
        server.close()


def raw_exchange(path: str, payload: bytes, *, replies: int = 1) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(payload)
        buf = b""
        while buf.count(b"\n") < replies:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


# --------------------------------------------------------------------------- server


def test_server_files_and_modes(served: tuple[ControlServer, FakeStack, str]) -> None:
    server, _stack, directory = served
    assert server.path == os.path.join(directory, f"{os.getpid()}.sock")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert os.listdir(directory) == [f"{os.getpid()}.sock"]


def test_server_close_removes_socket(tmp_path: Any) -> None:
    server = ControlServer(FakeStack(), directory=str(tmp_path)).start()
    assert os.path.exists(server.path)
    server.close()
    assert os.listdir(tmp_path) == []


def test_list_get_send_close_through_the_client(
    served: tuple[ControlServer, FakeStack, str],
) -> None:
    _server, stack, directory = served
    pid = os.getpid()
    client = ControlClient([directory], timeout=5)
    entries = client.entries()
    assert [(e["id"], e["state"], e["pid"], e["tun"]) for e in entries] == [
        (f"{pid}.1", "LISTEN", pid, "pytcp9"),
        (f"{pid}.2", "ESTABLISHED", pid, "pytcp9"),
        (f"{pid}.3", "ESTABLISHED", pid, "pytcp9"),
    ]
    assert client.resolve(f"{pid}.3") == f"{pid}.3"
    assert client.get(f"{pid}.2")["remote"] == {"addr": "10.77.0.1", "port": 40002}
    assert client.send(f"{pid}.2", b"0123456789abc") == {
        "id": f"{pid}.2",
        "queued": 10,
        "state": "ESTABLISHED",
    }
    assert bytes(stack.host.conns[0].sent) == b"0123456789"
    assert client.close(f"{pid}.2", "half") == {"id": f"{pid}.2", "state": "FIN-WAIT-1"}
    assert stack.host.conns[0].calls == ["shutdown"]
    with pytest.raises(ControlError) as info:
        client.send(f"{pid}.2", b"late")
    assert info.value.code == "write-closed"
    assert str(info.value) == f"{pid}.2 is FIN-WAIT-1: its write side is closed"
    assert client.close(f"{pid}.3", "reset")["state"] == "CLOSED"
    assert stack.host.conns[1].calls == ["abort"]
    with pytest.raises(ControlError) as info:
        client.send(f"{pid}.1", b"x")
    assert info.value.code == "not-a-connection"


def test_prefix_matching(served: tuple[ControlServer, FakeStack, str]) -> None:
    _server, stack, directory = served
    pid = os.getpid()
    stack.host.conns.append(FakeConnection(31))
    client = ControlClient([directory], timeout=5)
    assert client.resolve(f"{pid}.3") == f"{pid}.3"  # exact beats the longer 31
    assert client.resolve(f"{pid}.2") == f"{pid}.2"
    with pytest.raises(ControlError) as info:
        client.resolve(str(pid))
    assert info.value.code == "ambiguous"
    with pytest.raises(ControlError) as info:
        client.resolve("999999999.1")
    assert info.value.code == "no-such-connection"


def test_malformed_and_unknown_requests_get_errors_and_the_session_carries_on(
    served: tuple[ControlServer, FakeStack, str],
) -> None:
    server, _stack, _directory = served
    pid = os.getpid()
    replies = raw_exchange(
        server.path,
        b"this is not json\n"
        b'{"v":1,"op":"get","conn":"1.999"}\n'
        b'{"v":1,"op":"explode"}\n'
        b'{"v":1,"op":"list"}\n',
        replies=4,
    )
    assert [r["ok"] for r in replies] == [False, False, False, True]
    assert [r.get("error", {}).get("code") for r in replies[:3]] == [
        "bad-json",
        "no-such-connection",
        "unknown-op",
    ]
    assert replies[1]["error"]["message"] == f"no connection 1.999 in process {pid}"
    assert len(replies[3]["result"]["connections"]) == 3
    assert server.counters == {"bad-json": 1, "unknown-op": 1}


def test_oversized_request_answered_then_hung_up(
    served: tuple[ControlServer, FakeStack, str],
) -> None:
    server, _stack, directory = served
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(server.path)
        s.sendall(b"x" * (MAX_REQUEST + 1))
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    assert json.loads(buf) == {
        "v": 1,
        "ok": False,
        "error": {"code": "too-large", "message": f"request exceeds {MAX_REQUEST} bytes"},
    }
    # The server keeps serving.
    assert len(ControlClient([directory], timeout=5).entries()) == 3


def test_send_request_with_a_full_chunk_fits_the_limit(
    served: tuple[ControlServer, FakeStack, str],
) -> None:
    server, stack, _directory = served
    data = bytes(range(256)) * (control.MAX_SEND_CHUNK // 256)
    line = encode_request(Request(op="send", conn=f"{os.getpid()}.3", data=data))
    assert len(line) <= MAX_REQUEST
    (reply,) = raw_exchange(server.path, line)
    assert reply["result"]["queued"] == 10
    assert base64.b64encode(bytes(stack.host.conns[1].sent)) == base64.b64encode(data[:10])


def test_internal_failure_becomes_an_error_reply(
    served: tuple[ControlServer, FakeStack, str],
) -> None:
    server, stack, _directory = served

    def broken(now: int) -> dict[str, Any]:
        raise RuntimeError("snapshot exploded")

    stack.host.conns[0].snapshot = broken  # type: ignore[method-assign]
    (reply,) = raw_exchange(server.path, b'{"v":1,"op":"list"}\n')
    assert reply["error"] == {"code": "internal", "message": "RuntimeError: snapshot exploded"}
    assert server.counters == {"internal": 1}


def test_stale_socket_of_own_pid_is_replaced(tmp_path: Any) -> None:
    stale = tmp_path / f"{os.getpid()}.sock"
    stale.write_bytes(b"")
    server = ControlServer(FakeStack(), directory=str(tmp_path)).start()
    try:
        assert stat.S_ISSOCK(os.stat(stale).st_mode)
    finally:
        server.close()


def test_refuses_a_directory_owned_by_someone_else(tmp_path: Any) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(ControlError) as info:
        ControlServer(FakeStack(), directory=str(d)).start()
    assert str(info.value) == f"control directory {d} belongs to uid 65534, not to us"


def _as_nobody(fn: Callable[[], bytes]) -> bytes:
    """Run `fn` in a forked child as uid/gid 65534 (nobody); return what it returned."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                out = fn()
            except Exception as exc:
                out = f"{type(exc).__name__}: {exc}".encode()
            os.write(w, out)
        finally:
            os._exit(0)
    os.close(w)
    reply = b""
    while chunk := os.read(r, 65536):
        reply += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return reply


@pytest.fixture
def open_dir() -> Iterator[str]:
    """A runtime directory nobody can reach the path of (unlike pytest's 0700 tmp_path)."""
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="pytcp-ctl-")
    os.chmod(base, 0o711)
    try:
        yield os.path.join(base, "rt")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_other_uid_is_refused_by_peer_credentials(open_dir: str) -> None:
    """Even with the file modes opened up, SO_PEERCRED keeps another user out."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    stack = FakeStack()
    server = ControlServer(stack, directory=open_dir).start()
    os.chmod(open_dir, 0o711)
    os.chmod(server.path, 0o666)

    def ask() -> bytes:
        return encode_response(control._exchange(server.path, Request(op="list"), 5))

    result: list[bytes] = []
    thread = threading.Thread(target=lambda: result.append(_as_nobody(ask)))
    thread.start()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        stack.loop.run_once(0.05)
    thread.join(5)
    server.close()
    assert json.loads(result[0]) == {
        "v": 1,
        "ok": False,
        "error": {"code": "forbidden", "message": f"uid 65534 may not use process {os.getpid()}"},
    }
    assert server.counters == {"forbidden": 1}
    assert stack.host.conns[0].calls == []


def test_other_uid_cannot_reach_the_socket_by_default(open_dir: str) -> None:
    """With the modes the server sets (dir 0700, socket 0600) another user gets EACCES."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    server = ControlServer(FakeStack(), directory=open_dir).start()
    try:

        def ask() -> bytes:
            client = ControlClient([open_dir], timeout=2)
            return json.dumps([client.entries(), client.problems]).encode()

        assert json.loads(_as_nobody(ask)) == [[], [f"{open_dir}: permission denied"]]
    finally:
        server.close()


# --------------------------------------------------------------------------- real stacks


class PairedStacks:
    """Two real stacks over an in-memory PairLink in one loop: A (10.77.0.2, with the
    control server) connected to B (10.77.0.1) listening on 5000."""

    def __init__(self, directory: str) -> None:
        a_link, b_link = PairLink.pair()
        self.loop = Loop()
        self.a = Stack(link=a_link, loop=self.loop, addr="10.77.0.2", gateway="10.77.0.1/24",
                       seed=1).open()  # fmt: skip
        self.b = Stack(link=b_link, loop=self.loop, addr="10.77.0.1", gateway="10.77.0.2/24",
                       seed=2).open()  # fmt: skip
        self.listener = self.b.listen(5000)
        self.client = self.a.connect("10.77.0.1", 5000, timeout=5)
        server = self.listener.accept(timeout=5)
        assert server is not None
        self.server = server
        self.control = ControlServer(self.a, directory=directory).start()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_in_background(self) -> None:
        """Run the shared loop on a thread while the test talks to the control socket."""

        def run() -> None:
            deadline = time.monotonic() + 60
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.loop.run_once(0.02)

        self._stop.clear()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def close(self) -> None:
        self.pause()
        self.control.close()
        self.a.close(linger=0)
        self.b.close(linger=0)
        self.loop.close()


@pytest.fixture
def paired(tmp_path: Any) -> Iterator[PairedStacks]:
    p = PairedStacks(str(tmp_path / "rt"))
    try:
        yield p
    finally:
        p.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_real_stack_list_and_get(paired: PairedStacks) -> None:
    paired.client.sendall(b"hello")
    paired.loop.run_until(lambda: paired.server.readable == 5, 5)
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    (entry,) = client.entries()
    assert entry["id"] == paired.client.id
    assert entry["state"] == "ESTABLISHED"
    assert entry["local"]["addr"] == "10.77.0.2"
    assert entry["remote"] == {"addr": "10.77.0.1", "port": 5000}
    assert entry["counters"]["bytes_out"] == 5
    send = entry["send"]
    assert (send["snd_nxt"] - send["iss"] - 1) % 2**32 == 5  # SYN takes one
    assert [t["name"] for t in entry["timers"]] == [
        "retransmission", "syn", "delayed-ack", "persist", "keepalive", "time-wait", "fin-wait-2",
    ]  # fmt: skip
    assert client.resolve(str(os.getpid())) == paired.client.id  # a unique prefix


def test_real_stack_send_reaches_the_peer(paired: PairedStacks) -> None:
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    assert client.send(paired.client.id, b"from outside\n")["queued"] == 13
    assert wait_for(lambda: paired.server.readable == 13)
    paired.pause()
    assert paired.server.recv(100) == b"from outside\n"


def test_real_stack_half_close_keeps_receiving(paired: PairedStacks) -> None:
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    client.close(paired.client.id, "half")
    assert wait_for(lambda: close_completed("half", client.get(paired.client.id)))
    assert client.get(paired.client.id)["state"] == "FIN-WAIT-2"
    with pytest.raises(ControlError) as info:
        client.send(paired.client.id, b"too late")
    assert info.value.code == "write-closed"
    assert str(info.value) == f"{paired.client.id} is FIN-WAIT-2: its write side is closed"
    paired.pause()
    assert paired.server.recv(100) == b""  # the peer reads EOF
    paired.server.sendall(b"still flowing")  # and can still send to the half-closed side
    paired.loop.run_until(lambda: paired.client.readable == 13, 5)
    assert paired.client.recv(100) == b"still flowing"
    with pytest.raises(BrokenPipeError):
        paired.client.send(b"owner cannot write either")


def test_real_stack_reset(paired: PairedStacks) -> None:
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    assert client.close(paired.client.id, "reset")["state"] == "CLOSED"
    assert wait_for(lambda: paired.server.state == "CLOSED")
    paired.pause()
    with pytest.raises(ConnectionResetError):
        paired.server.recv(100)


def test_real_stack_full_close(paired: PairedStacks) -> None:
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    client.close(paired.client.id, "full")
    assert wait_for(lambda: paired.server.at_eof)
    paired.pause()
    paired.server.close()  # the peer closes too: our side reaches TIME-WAIT
    paired.loop.run_until(lambda: paired.client.state == "TIME-WAIT", 5)
    paired.run_in_background()
    entry = client.get(paired.client.id)
    assert entry["state"] == "TIME-WAIT"
    assert close_completed("full", entry)
    (tw,) = [t for t in entry["timers"] if t["name"] == "time-wait"]
    assert tw["armed"] is True


def read_until_eof(s: socket.socket) -> bytes:
    buf = b""
    while chunk := s.recv(1 << 16):
        buf += chunk
    return buf


def test_a_client_that_lingers_is_hung_up_on(
    served: tuple[ControlServer, FakeStack, str], monkeypatch: Any
) -> None:
    server, _stack, directory = served
    monkeypatch.setattr(control, "IDLE_TIMEOUT", 0.2)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(server.path)
        # After IDLE_TIMEOUT without a request: told why in one line, then hung up on.
        line = read_until_eof(s)
        assert json.loads(line) == {"v": 1, "ok": False, "error": {
            "code": "client-timeout", "message": "no request for 0.2s: hung up"}}  # fmt: skip
        assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert server.counters == {"client-timeout": 1}
    assert server.clients == {}
    assert len(ControlClient([directory], timeout=5).entries()) == 3


def test_closing_a_replaced_server_leaves_the_new_socket(tmp_path: Any) -> None:
    first = ControlServer(FakeStack(), directory=str(tmp_path)).start()
    second = ControlServer(FakeStack(), directory=str(tmp_path)).start()  # same pid
    first.close()
    assert stat.S_ISSOCK(os.stat(second.path).st_mode)
    second.close()
    assert os.listdir(tmp_path) == []


def _end_owner_when(paired: PairedStacks, done: Callable[[], bool]) -> None:
    """Make the control server's process behave like a `pytcp connect` that exits once
    `done()`: from a loop hook (where the owner's callbacks run) it stops answering, and
    the next control client that connects finds the socket closed under it without an
    answer, as when the process exits; then the socket file is gone."""

    def hook() -> None:
        server = paired.control
        if server.listener is not None and done():
            paired.loop.add_reader(server.listener.fileno(), server.close)  # no accept

    paired.loop.add_hook(hook)


def test_the_reply_is_written_before_the_owner_can_end(paired: PairedStacks) -> None:
    _end_owner_when(paired, lambda: paired.client.state == "CLOSED")
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    assert client.close(paired.client.id, "reset") == {"id": paired.client.id, "state": "CLOSED"}
    # The owner then hangs up on the next request, and once its socket is gone, is gone.
    with pytest.raises(ControlError) as info:
        client.get(paired.client.id)
    assert info.value.code == "hung-up"
    assert str(info.value) == f"process {os.getpid()} hung up without answering (exiting?)"
    assert wait_for(lambda: not os.path.exists(paired.control.path))
    with pytest.raises(ControlError) as info:
        client.get(paired.client.id)
    assert info.value.code == "gone"
    assert control.is_gone(info.value)


def test_impair_and_journal_of_a_time_wait_record_are_refused_by_name(
    paired: PairedStacks,
) -> None:
    # The application closes first and the peer after: ours ends in TIME-WAIT and, its
    # socket closed, the host keeps it as a compact record (stack.host.TimeWait).
    paired.client.close()
    paired.loop.run_until(lambda: paired.server.at_eof, 5)
    paired.server.close()
    assert paired.loop.run_until(lambda: len(paired.a.host.time_waits()) == 1, 5)
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    assert client.get(paired.client.id)["state"] == "TIME-WAIT"
    for call, kept in ((lambda: client.impair(paired.client.id, "drop-next 1"), "impairments"),
                       (lambda: client.journal(paired.client.id), "journal")):  # fmt: skip
        with pytest.raises(ControlError) as info:
            call()
        assert info.value.code == "bad-request"
        assert str(info.value) == (
            f"{paired.client.id} is in TIME-WAIT, kept as a compact record that sends "
            f"nothing but ACKs and keeps no {kept}; "
            f"`pytcp timer {paired.client.id} fire time-wait` ends it"
        )
    assert client.get(paired.client.id)["state"] == "TIME-WAIT"  # untouched, still served


def test_impairments_end_with_their_connection(paired: PairedStacks) -> None:
    paired.run_in_background()
    client = ControlClient([paired.control.directory], timeout=5)
    client.impair(paired.client.id, "drop-next 5 out")
    assert [f["fault"] for f in client.get(paired.client.id)["impairments"]] == ["drop-next"]
    assert client.close(paired.client.id, "reset")["state"] == "CLOSED"
    # Nothing of it is left to catch a later connection that reuses the 4-tuple.
    assert wait_for(lambda: paired.a.faults.names() == [])
