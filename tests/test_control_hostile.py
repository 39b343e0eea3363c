"""The control endpoint against hostile and careless clients (issue 14): nested and
oversized requests refused before parsing, clients that never read, idle clients, many
clients at once, one client's flood of requests, and the live connection untouched."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from stack import control
from stack.control import (
    BATCH,
    MAX_CLIENTS,
    MAX_DEPTH,
    OPS,
    ControlClient,
    ControlServer,
    ProtocolError,
    Request,
    check_depth,
    decode_request,
    decode_response,
)
from tests.test_control import FakeConnection, FakeStack, PairedStacks, raw_exchange

LIST = b'{"v":1,"op":"list"}\n'


def nested(depth: int) -> bytes:
    return b'{"v":1,"op":"list","x":' + b"[" * depth + b"]" * depth + b"}"


# --------------------------------------------------------------------------- codec


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 1000,  # the RecursionError of issue 14, unbalanced
        b"[" * 100_000 + b"]" * 100_000,  # balanced, and deep enough for any stack
        nested(MAX_DEPTH),  # one level more than allowed: the object is a level too
        b'{"v":1,"op":"list","x":' + b'{"a":' * 20 + b"1" + b"}" * 20 + b"}",
    ],
)
def test_nesting_beyond_the_limit_is_refused_before_parsing(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert info.value.code == "too-deep"
    assert info.value.message == f"message nested deeper than {MAX_DEPTH} levels"


def test_nesting_within_the_limit_and_brackets_in_strings_pass() -> None:
    assert decode_request(nested(MAX_DEPTH - 1)) == Request(op="list")
    # Brackets inside a string (escaped quotes included) do not nest.
    line = b'{"v":1,"op":"get","conn":"' + b'[{\\"' * 50 + b'"}'
    assert decode_request(line) == Request(op="get", conn='[{"' * 50)


@pytest.mark.parametrize(
    "line",
    [
        b'"\\"' * 80_000 + b"\\",  # escaped quotes to the end: one string, never closed
        b'"' + b"[" * 200_000,  # an unterminated string hides the brackets
        b"[]" * 120_000,  # wide, not deep
        b'{"a":"' + b"[{" * 100 + b'","b":[' + b'"]]"' * 50 + b"]}",  # no escapes: split
    ],
)
def test_depth_check_accepts_what_is_not_deep(line: bytes) -> None:
    check_depth(line, MAX_DEPTH)  # no exception; json.loads decides the rest


def test_brackets_outside_strings_count_with_or_without_escapes() -> None:
    deep = b'{"x":"]]]]]]]]]]",' + b'"y":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    for line in (deep, deep.replace(b'"]]]', b'"\\"]]]')):  # split, then regex
        with pytest.raises(ProtocolError):
            check_depth(line, MAX_DEPTH)


def test_a_deep_reply_is_refused_by_the_client_too() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_response(b'{"v":1,"ok":true,"result":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}")
    assert info.value.code == "too-deep"


# --------------------------------------------------------------------------- server, stepped


class Stepped:
    """A control server on a fake stack whose loop the test steps itself."""

    def __init__(self, directory: str) -> None:
        self.stack = FakeStack()
        self.server = ControlServer(self.stack, directory=directory).start()

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.stack.loop.run_once(0.01)

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(self.server.path)
        return s

    def close(self) -> None:
        self.server.close()
        self.stack.loop.close()


@pytest.fixture
def stepped(tmp_path: Any) -> Iterator[Stepped]:
    st = Stepped(str(tmp_path / "rt"))
    try:
        yield st
    finally:
        st.close()


def read_lines(s: socket.socket, n: int) -> list[dict[str, Any]]:
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def available(s: socket.socket) -> list[dict[str, Any]]:
    """The complete reply lines already waiting on `s` (nothing blocks)."""
    buf = b""
    s.setblocking(False)
    try:
        while chunk := s.recv(1 << 20):
            buf += chunk
    except BlockingIOError:
        pass
    finally:
        s.settimeout(5)
    assert buf.endswith(b"\n") or not buf
    return [json.loads(line) for line in buf.splitlines()]


def collect(stepped: Stepped, s: socket.socket, n: int) -> list[dict[str, Any]]:
    """Read `n` reply lines from `s`, stepping the server's loop meanwhile (bounded)."""
    buf = b""
    s.setblocking(False)
    try:
        for _ in range(2000):
            try:
                while chunk := s.recv(1 << 20):
                    buf += chunk
            except BlockingIOError:
                pass
            if buf.count(b"\n") >= n:
                break
            stepped.step()
    finally:
        s.settimeout(5)
    return [json.loads(line) for line in buf.splitlines()]


def test_nested_request_is_answered_and_counted_and_the_session_goes_on(
    stepped: Stepped,
) -> None:
    s = stepped.connect()
    s.sendall(b"[" * 1000 + b"\n" + LIST)
    stepped.step(3)
    deep, listed = read_lines(s, 2)
    assert deep == {
        "v": 1,
        "ok": False,
        "error": {"code": "too-deep", "message": f"message nested deeper than {MAX_DEPTH} levels"},
    }
    assert len(listed["result"]["connections"]) == 3
    assert stepped.server.counters == {"too-deep": 1}
    s.close()


def test_a_client_that_does_not_read_is_not_read_and_is_cut_off(
    stepped: Stepped, monkeypatch: Any
) -> None:
    # A list reply of a few hundred KiB: more than the socket buffers hold.
    stepped.stack.host.conns += [FakeConnection(n) for n in range(10, 2000)]
    s = stepped.connect()
    s.setblocking(False)
    sent, blocked = 0, 0
    for _ in range(10_000):  # bounded: stop once the server stops reading us
        try:
            sent += s.send(LIST * 64)
            blocked = 0
        except BlockingIOError:
            blocked += 1
            if blocked == 3:
                break
        stepped.step()
    else:
        pytest.fail("the server kept reading a client that never reads")
    (client,) = stepped.server.clients.values()
    assert not client.reading  # paused while its reply waits
    reply = len(control.encode_response(stepped.server.handle_line(LIST.strip())))
    assert 0 < len(client.outbuf) <= reply  # one reply held, not one per request
    assert len(client.inbuf) <= control.MAX_REQUEST + 65536
    assert sent > 10 * len(client.inbuf)  # the rest waits in the kernel, not in us
    # It never reads: after STALL_TIMEOUT without progress it is hung up on.
    monkeypatch.setattr(control, "STALL_TIMEOUT", 0.3)
    deadline = stepped.stack.loop.now() + 5 * 10**9
    while stepped.server.clients and stepped.stack.loop.now() < deadline:
        stepped.step()
    assert stepped.server.clients == {}
    assert stepped.server.counters.get("client-stalled") == 1
    s.close()


def test_idle_clients_cannot_keep_a_new_one_out(stepped: Stepped) -> None:
    idle = []
    for _ in range(MAX_CLIENTS + 20):
        idle.append(stepped.connect())
        stepped.step()
    assert len(stepped.server.clients) == MAX_CLIENTS
    late = stepped.connect()
    late.sendall(LIST)
    stepped.step(3)
    (reply,) = read_lines(late, 1)
    assert reply["ok"] is True
    assert stepped.server.counters["client-evicted"] == 21
    assert len(stepped.server.clients) <= MAX_CLIENTS
    # Each evicted client was told why in one line before the hang-up.
    evicted = {"v": 1, "ok": False, "error": {"code": "client-evicted", "message":
               f"{MAX_CLIENTS} control clients at once: the one idle longest is hung up"}}
    assert [read_lines(s, 2) for s in idle[:21]] == [[evicted]] * 21
    for s in [*idle, late]:
        s.close()


def test_half_a_request_line_is_answered_when_the_client_times_out(
    stepped: Stepped, monkeypatch: Any
) -> None:
    monkeypatch.setattr(control, "IDLE_TIMEOUT", 0.05)
    s = stepped.connect()
    s.sendall(b'{"v":1,"op":"li')  # and never the rest
    for _ in range(1000):  # bounded: the sweep runs every few ms of loop time
        stepped.step()
        if not stepped.server.clients:
            break
    assert read_lines(s, 2) == [{"v": 1, "ok": False, "error": {
        "code": "client-timeout",
        "message": "an incomplete request (no newline) for 0.05s: hung up"}}]  # fmt: skip
    assert stepped.server.counters == {"client-timeout": 1}
    s.close()


def test_an_error_quotes_a_long_value_cut_short() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(b'{"v":1,"op":"' + b"a" * 200_000 + b'"}')
    assert info.value.code == "unknown-op"
    assert info.value.message == f"unknown op '{'a' * 60}...; expected one of {', '.join(OPS)}"


@pytest.mark.parametrize("version", [b"true", b"1.0", b'"1"', b"NaN"])
def test_a_version_that_only_compares_equal_is_refused(version: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(b'{"v":' + version + b',"op":"list"}')
    assert info.value.code == "bad-version"


def test_one_client_flooding_requests_does_not_hold_up_another(stepped: Stepped) -> None:
    flood, other = stepped.connect(), stepped.connect()
    stepped.step(2)  # both accepted
    flood.sendall(b'{"v":1,"op":"get","conn":"1.999"}\n' * (BATCH * 10))
    other.sendall(LIST)
    stepped.step()
    (reply,) = read_lines(other, 1)
    assert reply["ok"] is True  # answered in the first wake-up
    first = available(flood)
    # The flood got at most two batches (one from its reader, one from the continuation
    # the loop runs after the other ready descriptors), not all it asked for.
    assert BATCH <= len(first) <= 2 * BATCH
    stepped.step(12)
    rest = available(flood)
    assert len(first) + len(rest) == BATCH * 10  # then the rest, batch by batch
    assert all(r["error"]["code"] == "no-such-connection" for r in first + rest)
    flood.close()
    other.close()


def test_too_many_replies_waiting_are_answered_busy(
    stepped: Stepped, monkeypatch: Any
) -> None:
    stepped.stack.host.conns += [FakeConnection(n) for n in range(10, 4000)]
    reply = len(control.encode_response(stepped.server.handle_line(LIST.strip())))
    monkeypatch.setattr(control, "MAX_BUFFERED", reply + reply // 2)
    slow, other = stepped.connect(), stepped.connect()
    slow.sendall(LIST)
    stepped.step(3)  # slow's reply is more than the kernel buffers: most of it waits
    other.sendall(LIST)
    stepped.step(3)
    (busy,) = read_lines(other, 1)
    assert busy["ok"] is False and busy["error"]["code"] == "busy"
    assert stepped.server.counters == {"busy": 1}
    (full,) = collect(stepped, slow, 1)  # the first client still gets its whole reply
    assert len(full["result"]["connections"]) == 3 + 3990
    slow.close()
    other.close()


def test_a_client_that_half_closes_still_gets_its_answer(stepped: Stepped) -> None:
    s = stepped.connect()
    s.sendall(LIST + b'{"v":1,"op":"list"}')  # the last without its newline
    s.shutdown(socket.SHUT_WR)
    stepped.step(4)
    replies = read_lines(s, 3)
    assert [r["ok"] for r in replies] == [True, True]
    assert s.recv(10) == b""  # and then the server hangs up
    s.close()


# --------------------------------------------------------------------------- real stack


def test_hostile_requests_leave_the_live_connection_untouched(tmp_path: Any) -> None:
    paired = PairedStacks(str(tmp_path / "rt"))
    try:
        paired.run_in_background()
        path = paired.control.path
        conn = paired.client.id.encode()
        replies = raw_exchange(
            path,
            b"[" * 1000 + b"\n"
            + nested(50) + b"\n"
            + b'{"v":1,"op":"send","conn":"' + conn + b'","data":[[[[[[[[[]]]]]]]]]}\n'
            + b'{"v":1,"op":"close","conn":"' + conn + b'","how":{}}\n',
            replies=4,
        )  # fmt: skip
        assert [r["error"]["code"] for r in replies] == [
            "too-deep", "too-deep", "too-deep", "bad-request",
        ]  # fmt: skip
        (long,) = raw_exchange(path, b"x" * (control.MAX_REQUEST + 10))
        assert long["error"]["code"] == "too-large"
        client = ControlClient([paired.control.directory], timeout=5)
        entry = client.get(paired.client.id)
        assert entry["state"] == "ESTABLISHED"
        assert entry["counters"]["bytes_out"] == 0
        assert paired.control.counters == {"too-deep": 3, "bad-request": 1, "too-large": 1}
    finally:
        paired.close()
