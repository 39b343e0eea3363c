"""The segment journal (stack/tcp/journal.py, `inspect ID --journal`): each segment's
acceptability test, verdict and TCB changes, sans-IO with exact segments."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stack.tcp.journal import Journal
from tests.tcp.helpers import (
    BUF,
    CONFIG,
    REMOTE_ISS,
    SEND,
    established,
    recv,
    recv_all,
    send,
)

IN_WINDOW = {"case": "SEG.LEN > 0, RCV.WND > 0",
             "rule": "RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND or "
                     "RCV.NXT =< SEG.SEQ+SEG.LEN-1 < RCV.NXT+RCV.WND"}  # fmt: skip


def journal(c: Any) -> list[dict[str, Any]]:
    assert c.journal is not None
    return list(c.journal.entries(c.tcb.iss, c.tcb.irs))


def last(c: Any) -> dict[str, Any]:
    return journal(c)[-1]


def test_the_handshake_and_in_order_data() -> None:
    c = established()
    kinds = [(e["direction"], e["flags"], e["verdict"]) for e in journal(c)]
    assert kinds == [("in", "SYN", "accepted"), ("out", "SYN,ACK", "sent"),
                     ("in", "ACK", "accepted")]  # fmt: skip
    first = journal(c)[0]
    assert first["test"] is None  # LISTEN: §3.10.7.2, not the acceptability test
    assert first["changes"]["state"] == ["LISTEN", "SYN-RECEIVED"]
    send(c, replace(SEND, payload=b"hello"), 10)
    e = last(c)
    assert {k: e[k] for k in ("direction", "rel_seq", "rel_ack", "len", "verdict", "reason")} == {
        "direction": "in", "rel_seq": 1, "rel_ack": 1, "len": 5, "verdict": "accepted",
        "reason": None,
    }  # fmt: skip
    assert e["test"] == {**IN_WINDOW, "values": f"SEG.SEQ=1 SEG.LEN=5 RCV.NXT=1 RCV.WND={BUF}",
                         "met": True}  # fmt: skip
    assert e["changes"] == {
        "rcv_nxt": [REMOTE_ISS + 1, REMOTE_ISS + 6],
        "rcv_wnd": [BUF, BUF - 5],
    }


def test_out_of_window_data_is_dropped_with_its_reason() -> None:
    c = established()
    send(c, replace(SEND, seq=REMOTE_ISS + 1 + 100_000, payload=b"evil"), 10)
    e = last(c)
    assert (e["verdict"], e["reason"], e["changes"]) == ("dropped", "out-of-window", {})
    assert e["test"] == {**IN_WINDOW,
                         "values": f"SEG.SEQ=100001 SEG.LEN=4 RCV.NXT=1 RCV.WND={BUF}",
                         "met": False}  # fmt: skip
    assert recv(c, 10).ack == REMOTE_ISS + 1  # and answered with an ACK
    assert last(c)["verdict"] == "sent"


def test_zero_window_probe_queued_out_of_order_and_trimmed() -> None:
    c = established()
    send(c, replace(SEND, seq=REMOTE_ISS + 11, payload=b"later"), 1)
    assert last(c)["verdict"] == "queued out of order"
    send(c, replace(SEND, payload=b"0123456789"), 2)
    assert last(c)["verdict"] == "accepted"
    assert last(c)["changes"]["rcv_nxt"] == [REMOTE_ISS + 1, REMOTE_ISS + 16]
    send(c, replace(SEND, seq=REMOTE_ISS + 14, payload=b"ABCDE"), 3)  # 2 old, 3 new bytes
    e = last(c)
    assert (e["verdict"], e["reason"]) == ("trimmed", "2 bytes before RCV.NXT already received")
    c.clamp_window(0, 4)
    send(c, replace(SEND, seq=REMOTE_ISS + 19, payload=b"x" * (BUF - 18)), 5)  # fills it
    assert recv_all(c, 5)[-1].window == 0
    send(c, replace(SEND, seq=REMOTE_ISS + 1 + BUF, payload=b"p"), 6)
    e = last(c)
    assert (e["verdict"], e["reason"]) == ("dropped", "zero-window")
    assert e["test"] == {"case": "SEG.LEN > 0, RCV.WND = 0",
                         "rule": "not acceptable: SEG.LEN > 0 and RCV.WND = 0",
                         "values": f"SEG.SEQ={BUF + 1} SEG.LEN=1 RCV.NXT={BUF + 1} RCV.WND=0",
                         "met": False}  # fmt: skip


def test_the_ring_is_bounded_and_configurable() -> None:
    c = established(replace(CONFIG, journal=2))
    for n in range(3):
        send(c, replace(SEND, seq=REMOTE_ISS + 1 + n, payload=b"x"), n)
    assert c.journal is not None and c.journal.size == 2
    assert c.journal.recorded == 6  # SYN, SYN-ACK, ACK and three data segments
    assert [e["rel_seq"] for e in journal(c)] == [2, 3]
    assert established(replace(CONFIG, journal=0)).journal is None
    assert Journal().size == 64
