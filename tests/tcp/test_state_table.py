"""The user-call table (RFC 9293 §3.10.1-6): every (state, call) does what USER_CALLS says."""

from __future__ import annotations

import pytest

from stack.tcp.connection import Connection
from stack.tcp.errors import InvalidStateError
from stack.tcp.state import CALLS, USER_CALLS, State, format_user_calls
from tests.tcp.helpers import BUILDERS, FIN, RST, SYN, events, recv_all

NOW = 1_000  # every builder finishes its exchange at 0


def call(c: Connection, name: str) -> object:
    match name:
        case "OPEN":
            c.open_active(NOW)
            return None
        case "SEND":
            return c.send(b"x", NOW)
        case "RECEIVE":
            return c.receive(100, NOW)
        case "CLOSE":
            c.shutdown(NOW)
            return None
        case "ABORT":
            c.abort(NOW)
            return None
        case "STATUS":
            return c.status(NOW)
    raise AssertionError(name)


def test_table_covers_every_state_and_call() -> None:
    assert set(USER_CALLS) == {(s, c) for s in State for c in CALLS}


def test_table_prints() -> None:
    lines = format_user_calls().splitlines()
    assert len(lines) == 12
    assert lines[0].split() == ["OPEN", "SEND", "RECEIVE", "CLOSE", "ABORT", "STATUS"]
    assert lines[5].split() == ["ESTABLISHED", "error:", "connection", "already", "exists",
                                "send", "receive", "fin", "reset", "status"]  # fmt: skip


def _table_order(key: tuple[State, str]) -> tuple[int, str]:
    return (list(State).index(key[0]), key[1])


CASES: list[tuple[State, str]] = sorted(USER_CALLS, key=_table_order)


@pytest.mark.parametrize(
    ("state", "name"),
    CASES,
    ids=lambda v: str(v),
)
def test_user_call(state: State, name: str) -> None:
    c = BUILDERS[state]()
    assert c.state is state
    recv_all(c, 0)
    events(c)
    action = USER_CALLS[(state, name)]
    if action.startswith("error: "):
        with pytest.raises(InvalidStateError) as info:
            call(c, name)
        assert str(info.value) == action.removeprefix("error: ")
        assert c.state is state
        return
    result = call(c, name)
    out = recv_all(c, NOW)
    match action:
        case "open":
            assert c.state is State.SYN_SENT
            assert [s.flags for s in out] == [SYN]
        case "activate":
            assert c.state is State.SYN_SENT
            assert [s.flags for s in out] == [SYN]
        case "queue":
            assert c.state is state
            assert out == []
            if name == "SEND":
                assert result == 1
            elif name == "RECEIVE":
                assert result == b""
            else:
                assert c.tcb.fin_queued
        case "send":
            assert result == 1
            assert [s.payload for s in out] == [b"x"]
        case "receive":
            assert result == b""
        case "fin":
            expected = State.FIN_WAIT_1 if state is State.ESTABLISHED else State.LAST_ACK
            assert c.state is expected
            assert [bool(s.flags & FIN) for s in out] == [True]
        case "delete":
            assert c.state is State.CLOSED
            assert out == []
        case "reset":
            assert c.state is State.CLOSED
            assert [s.flags for s in out] == [RST]
        case "status":
            assert isinstance(result, dict)
            assert result["state"] == str(state)
        case _:
            raise AssertionError(f"untested action {action!r}")


def test_open_passive_only_from_closed() -> None:
    c = BUILDERS[State.CLOSED]()
    c.open_passive(0)
    assert c.state is State.LISTEN
    with pytest.raises(InvalidStateError):
        c.open_passive(0)


def test_close_is_quiet_in_every_state() -> None:
    # close() (the application going away) never raises, whatever the state.
    for state, build in BUILDERS.items():
        c = build()
        c.close(NOW)
        assert c.tcb.app_closed or c.state is State.CLOSED, state
