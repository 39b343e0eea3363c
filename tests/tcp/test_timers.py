"""Named timers (DESIGN §2 "Timers are data"): deadlines, next_deadline, keepalive, and
what the trace records."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.state import State
from stack.tcp.timers import TIMER_NAMES, TimerSet
from stack.trace import DROP, SEGMENT_IN, SEGMENT_OUT, STATE, TIMER, TraceLog
from tests.tcp.helpers import (
    CONFIG,
    LOCAL_ISS,
    RECV,
    RST,
    SEND,
    connection,
    established,
    recv,
    recv_nothing,
    send,
    syn,
)

KEEPALIVE = TcpConfig(
    **{
        **CONFIG.__dict__,
        "keepalive_idle": 10 * SECOND,
        "keepalive_interval": 1 * SECOND,
        "keepalive_probes": 3,
    }
)


def test_timer_set_arm_cancel_due_earliest_snapshot() -> None:
    t = TimerSet()
    assert t.earliest() is None
    t.arm("persist", 50, "probe", backoff=2)
    t.arm("syn", 30, "SYN")
    assert t.earliest() == 30
    assert t.due(29) == []
    assert t.due(50) == ["syn", "persist"]  # TIMER_NAMES order
    t.cancel("syn")
    assert t.due(50) == ["persist"]
    snap = t.snapshot(20)
    assert [s["name"] for s in snap] == list(TIMER_NAMES)
    assert snap[3] == {
        "name": "persist",
        "armed": True,
        "deadline": 50,
        "remaining": 30,
        "backoff": 2,
        "reason": "probe",
    }
    assert snap[1]["armed"] is False


def test_next_deadline_is_the_earliest_timer() -> None:
    c = established()
    assert c.next_deadline() is None
    send(c, replace(SEND, payload=b"a"), 0)  # delayed ACK at 40 ms
    c.send(b"b", 5 * MS)
    recv(c, 5 * MS)  # data carries the ACK; RTO at 205 ms
    assert c.next_deadline() == 205 * MS
    assert c.timers["delayed-ack"].deadline is None


def test_keepalive_probes_an_idle_connection_and_resets_on_answer() -> None:
    c = established(KEEPALIVE)
    assert c.next_deadline() == 10 * SECOND
    probe = replace(RECV, seq=LOCAL_ISS)  # SEG.SEQ = SND.NXT - 1 (RFC 1122 4.2.3.6)
    assert recv(c, 10 * SECOND) == probe
    assert c.next_deadline() == 11 * SECOND
    send(c, SEND, 10 * SECOND + 5 * MS)  # the peer answers
    assert c.next_deadline() == 20 * SECOND + 5 * MS
    assert c.counters["keepalive_probes"] == 1


def test_keepalive_gives_up_after_probes() -> None:
    c = established(KEEPALIVE)
    for t in (10, 11, 12):
        assert recv(c, t * SECOND) == replace(RECV, seq=LOCAL_ISS)
    assert recv(c, 13 * SECOND) == replace(RECV, ack=0, flags=RST, window=0)
    assert c.state is State.CLOSED
    assert c.error == "timed out"


def test_keepalive_off_by_default() -> None:
    assert TcpConfig().keepalive_idle is None
    c = established()
    assert c.timers["keepalive"].deadline is None


def test_trace_records_segments_states_timers_and_drops() -> None:
    log = TraceLog()
    c = connection(tracer=log)
    c.open_passive(0)
    send(c, syn(), 0)
    recv(c, 0)
    send(c, replace(SEND, ack=12345), 1)  # bad ACK in SYN-RECEIVED: drop + RST
    recv(c, 1)
    assert [(e.fields["old"], e.fields["new"]) for e in log.of_kind(STATE)] == [
        ("CLOSED", "LISTEN"),
        ("LISTEN", "SYN-RECEIVED"),
    ]
    assert [e.fields["segment"].flags for e in log.of_kind(SEGMENT_IN)] == [syn().flags, SEND.flags]
    assert len(log.of_kind(SEGMENT_OUT)) == 2
    assert [e.fields["reason"] for e in log.of_kind(DROP)] == ["bad-ack-in-syn-received"]
    armed = log.of_kind(TIMER)[0]
    assert (armed.now, armed.fields["timer"], armed.fields["action"]) == (0, "syn", "armed")
    assert all(e.conn == "1" for e in log.events)


def test_timer_fired_is_traced() -> None:
    log = TraceLog()
    c = connection(tracer=log)
    c.open_active(0)
    recv(c, 0)
    recv(c, 1 * SECOND)
    fired = [e for e in log.of_kind(TIMER) if e.fields["action"] == "fired"]
    assert [(e.now, e.fields["timer"]) for e in fired] == [(1 * SECOND, "syn")]


def test_handle_timers_before_deadline_does_nothing() -> None:
    c = established()
    c.send(b"x", 0)
    recv(c, 0)
    assert recv_nothing(c, 199 * MS)
    assert c.counters["retransmissions"] == 0


def test_delayed_ack_reason_in_snapshot() -> None:
    c = established()
    send(c, replace(SEND, payload=b"a"), 0)
    timers = {t["name"]: t for t in c.snapshot(10 * MS)["timers"]}
    assert timers["delayed-ack"] == {
        "name": "delayed-ack",
        "armed": True,
        "deadline": 40 * MS,
        "remaining": 30 * MS,
        "backoff": 0,
        "reason": "delayed ACK",
    }


def test_snapshot_is_json_safe_in_every_state() -> None:
    import json

    from tests.tcp.helpers import BUILDERS

    for state, build in BUILDERS.items():
        c = build()
        snap = c.snapshot(7)
        assert json.loads(json.dumps(snap)) == snap, state
        assert snap["state"] == str(state)
