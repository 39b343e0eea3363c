"""TIME-WAIT records (issue 14): once its application has closed it, a connection in
TIME-WAIT is replaced in the host by a compact record (Linux's tcp_timewait_sock) that
keeps the 4-tuple, re-ACKs a retransmitted FIN, answers per RFC 9293 §3.10.7.4 with
RFC 5961 and RFC 7323, is visible by id, and ends after 2·MSL."""

from __future__ import annotations

import errno
import gc
import random
import tracemalloc
from dataclasses import replace

import pytest

from stack.host import Host, TimeWait
from stack.tcp.clock import MS, SECOND
from stack.tcp.connection import Connection
from stack.tcp.errors import InvalidStateError
from stack.tcp.state import State
from stack.wire import TcpSegment
from tests.test_host import (
    LISTEN_PORT,
    LOCAL,
    LOCAL_ISS,
    PEER,
    PEER_ISS,
    PEER_PORT,
    A,
    F,
    R,
    S,
    ack,
    bare,
    make_host,
    only,
    packet,
    segments,
    syn,
)

TW_END = 1 * MS + 60 * SECOND  # 2·MSL after the FIN arrived at 1 ms


def closed_in_time_wait(host: Host, ts: bool = False, port: int = PEER_PORT) -> Connection:
    """An accepted connection the server's application closed, then the peer closed:
    TIME-WAIT, compacted into a record (the peer's TSval is 1000, 1001, 1002)."""
    lst = host.listeners()[0] if host.listeners() else host.listen(LISTEN_PORT)
    stamp = (lambda n: (1000 + n, 0)) if ts else (lambda n: None)
    host.receive_packet(packet(replace(syn(port), timestamps=stamp(0))), 0)
    host.packets_to_send(0)  # the SYN-ACK leaves before its ACK comes
    host.receive_packet(packet(replace(ack(port), timestamps=stamp(1))), 0)
    conn = lst.accept()
    assert conn is not None
    conn.close(0)
    [fin] = segments(host.packets_to_send(0))
    assert fin.flags & F
    fin_ack = TcpSegment(
        port, LISTEN_PORT, PEER_ISS + 1, LOCAL_ISS + 2, A | F, 65535, timestamps=stamp(2)
    )
    host.receive_packet(packet(fin_ack), 1 * MS)
    [last_ack] = segments(host.packets_to_send(1 * MS))
    assert bare(last_ack) == (LISTEN_PORT, port, LOCAL_ISS + 2, PEER_ISS + 2, A, 0)
    return conn


def test_a_closed_connection_in_time_wait_becomes_a_record() -> None:
    host, _ = make_host()
    conn = closed_in_time_wait(host)
    assert host.connections() == []
    (record,) = host.time_waits()
    assert (record.id, record.state, record.deadline) == (conn.id, State.TIME_WAIT, TW_END)
    assert host.find(conn.id) == (record, False)
    assert host.next_deadline() == TW_END
    assert conn.state == State.TIME_WAIT  # the object its holder kept says so too
    assert record.snapshot(11 * MS) == {
        "id": conn.id,
        "state": "TIME-WAIT",
        "time_wait_record": True,
        "local": {"addr": str(LOCAL), "port": LISTEN_PORT},
        "remote": {"addr": str(PEER), "port": PEER_PORT},
        "send": {"iss": LOCAL_ISS, "snd_una": LOCAL_ISS + 2, "snd_nxt": LOCAL_ISS + 2,
                 "snd_max": LOCAL_ISS + 2},
        "receive": {"irs": PEER_ISS, "rcv_nxt": PEER_ISS + 2, "rcv_wnd": 65535},
        "options": {"timestamps": False, "ts_recent": 0},
        "timers": [{"name": "time-wait", "armed": True, "deadline": TW_END,
                    "remaining": TW_END - 11 * MS, "backoff": 0, "reason": "2MSL"}],
        "close": {"fin_sent": True, "fin_acked": True, "fin_received": True,
                  "app_closed": True},
    }  # fmt: skip


def test_a_connection_its_application_still_holds_stays_whole() -> None:
    host, _ = make_host()
    lst = host.listen(LISTEN_PORT)
    host.receive_packet(packet(syn()), 0)
    host.receive_packet(packet(ack()), 0)
    conn = lst.accept()
    assert conn is not None
    conn.shutdown(0)  # a half close: the application may still read
    host.packets_to_send(0)
    fin_ack = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 1, LOCAL_ISS + 2, A | F, 65535)
    host.receive_packet(packet(fin_ack), 1 * MS)
    host.packets_to_send(1 * MS)
    assert (conn.state, host.connections(), host.time_waits()) == (State.TIME_WAIT, [conn], [])
    conn.close(2 * MS)  # now it lets go: the next output pass compacts it
    host.packets_to_send(2 * MS)
    assert host.connections() == [] and [r.id for r in host.time_waits()] == [conn.id]


def test_a_retransmitted_fin_is_acked_again_and_restarts_the_wait() -> None:
    host, _ = make_host()
    closed_in_time_wait(host)
    fin_again = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 1, LOCAL_ISS + 2, A | F, 65535)
    host.receive_packet(packet(fin_again), 30 * SECOND)
    # The same ACK the connection sent last (no window scaling without the option).
    assert only(host, 30 * SECOND) == TcpSegment(
        LISTEN_PORT, PEER_PORT, LOCAL_ISS + 2, PEER_ISS + 2, A, 65535
    )
    (record,) = host.time_waits()
    assert record.deadline == 90 * SECOND
    # The host's next wake-up is the restarted deadline, not the one it replaced.
    assert host.next_deadline() == 90 * SECOND
    host.handle_timers(TW_END)  # the old deadline passes: still there
    assert host.time_waits() == [record]
    assert host.next_deadline() == 90 * SECOND
    host.handle_timers(90 * SECOND)
    assert host.time_waits() == [] and host.next_deadline() is None
    assert host.counters["drops"]["time-wait-out-of-window"] == 1


def test_the_record_acks_with_the_window_and_timestamps_the_connection_used() -> None:
    host, _ = make_host()
    conn = closed_in_time_wait(host, ts=True)
    window = conn.tcb.rcv_wnd >> conn.tcb.wscale_local
    fin_again = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 1, LOCAL_ISS + 2, A | F, 65535,
                           timestamps=(1005, 7))  # fmt: skip
    host.receive_packet(packet(fin_again), 2 * SECOND)
    assert only(host, 2 * SECOND) == TcpSegment(
        LISTEN_PORT, PEER_PORT, LOCAL_ISS + 2, PEER_ISS + 2, A, window, timestamps=(2000, 1002)
    )  # TS.Recent is not taken from an out-of-window segment (RFC 7323 §4.3)
    old = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 2, LOCAL_ISS + 2, A, 65535,
                     timestamps=(900, 7))  # fmt: skip
    host.receive_packet(packet(old), 3 * SECOND)  # PAWS (RFC 7323 §5.3): ACK and drop
    assert bare(only(host, 3 * SECOND)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 2,
                                            PEER_ISS + 2, A, 0)  # fmt: skip
    assert host.counters["drops"]["time-wait-paws"] == 1


def test_rst_at_rcv_nxt_ends_it_and_one_elsewhere_draws_a_limited_challenge() -> None:
    host, _ = make_host()
    conn = closed_in_time_wait(host)
    near = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 10, 0, R, 0)
    host.receive_packet(packet(near), 2 * MS)  # RFC 5961 §3.2: challenge ACK
    assert bare(only(host, 2 * MS)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 2, PEER_ISS + 2, A, 0)
    host.receive_packet(packet(near), 3 * MS)  # within 500 ms: no second one (§7)
    assert host.packets_to_send(3 * MS) == []
    far = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 2**30, 0, R, 0)
    host.receive_packet(packet(far), 4 * MS)  # out of window: nothing
    assert host.packets_to_send(4 * MS) == []
    assert len(host.time_waits()) == 1
    exact = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 2, 0, R, 0)
    host.receive_packet(packet(exact), 5 * MS)  # §3.10.7.4 second: CLOSED
    assert host.packets_to_send(5 * MS) == []
    assert host.time_waits() == [] and conn.state == State.CLOSED
    drops = host.counters["drops"]
    assert (drops["time-wait-rst-in-window:challenge-ack"],
            drops["time-wait-rst-in-window:challenge-ack-rate-limited"],
            drops["time-wait-rst-out-of-window"]) == (1, 1, 1)  # fmt: skip


def test_a_newer_syn_reopens_the_record_and_an_older_one_is_challenged() -> None:
    host, _ = make_host()
    old = closed_in_time_wait(host)
    host.receive_packet(packet(syn(iss=PEER_ISS - 5)), 2 * MS)  # RFC 5961 §4
    assert bare(only(host, 2 * MS)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 2, PEER_ISS + 2, A, 0)
    assert len(host.time_waits()) == 1 and host.connections() == []
    host.receive_packet(packet(syn(iss=PEER_ISS + 100_000)), 3 * MS)  # RFC 1122 §4.2.2.13
    synack = only(host, 3 * MS)
    assert bare(synack) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS, PEER_ISS + 100_001, S | A, 0)
    assert host.time_waits() == [] and old.state == State.CLOSED
    [new] = host.half_opens()
    assert new.state == State.SYN_RECEIVED


@pytest.mark.parametrize(("tsval", "reopens"), [(1003, True), (1002, False)])
def test_reopening_a_record_goes_by_timestamps(tsval: int, reopens: bool) -> None:
    host, _ = make_host()
    closed_in_time_wait(host, ts=True)
    seg = replace(syn(iss=PEER_ISS - 5), timestamps=(tsval, 0))
    host.receive_packet(packet(seg), 2 * MS)
    assert (host.time_waits() == []) == reopens


def test_the_record_holds_its_4_tuple_and_ignores_icmp_and_text() -> None:
    host, _ = make_host()
    closed_in_time_wait(host)
    host.listeners()[0].close(2 * MS)  # the port is free but for the record
    with pytest.raises(OSError) as info:
        host.connect((PEER, PEER_PORT), 2 * MS, local_port=LISTEN_PORT)
    assert info.value.errno == errno.EADDRINUSE  # TIME-WAIT holds the 4-tuple
    text = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 2, LOCAL_ISS + 2, A | F, 65535,
                      payload=b"late")  # fmt: skip
    host.receive_packet(packet(text), 3 * MS)  # FIN again in window: ACK, restart
    assert bare(only(host, 3 * MS)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 2, PEER_ISS + 2, A, 0)
    (record,) = host.time_waits()
    assert record.deadline == 3 * MS + 60 * SECOND


def test_expire_time_wait_fires_the_timer_now() -> None:
    host, _ = make_host()
    conn = closed_in_time_wait(host)
    assert host.expire_time_wait(conn.id, 5 * MS)
    assert (host.time_waits(), host.find(conn.id), conn.state) == ([], None, State.CLOSED)
    assert not host.expire_time_wait(conn.id, 6 * MS)
    assert host.next_deadline() is None


def test_user_calls_on_a_record() -> None:
    host, _ = make_host()
    conn = closed_in_time_wait(host)
    (record,) = host.time_waits()
    with pytest.raises(InvalidStateError):
        record.send(b"x", 2 * MS)
    record.close(2 * MS)
    assert host.time_waits() == [record]
    record.abort(2 * MS)  # ABORT in TIME-WAIT: deleted, nothing sent
    assert host.time_waits() == [] and host.packets_to_send(2 * MS) == []
    assert conn.state == State.CLOSED


def test_time_wait_records_cost_under_1_kib_each() -> None:
    # No tracer: a trace log would keep every segment (make_host's does).
    host = Host(address=LOCAL, isn_secret=b"test secret", rng=random.Random(1),
                isn=lambda local, remote, now: LOCAL_ISS)  # fmt: skip
    host.listen(LISTEN_PORT)
    n = 2000
    gc.collect()
    tracemalloc.start()
    try:
        for port in range(20_000, 20_000 + n):
            closed_in_time_wait(host, ts=True, port=port)
        gc.collect()
        before_records = tracemalloc.get_traced_memory()[0]
        # What the host holds is only the records: the connections are gone.
        assert len(host.time_waits()) == n and host.connections() == []
        per_record = before_records / n
    finally:
        tracemalloc.stop()
    assert all(isinstance(r, TimeWait) for r in host.time_waits())
    assert per_record < 1024, f"{per_record:.0f} bytes each"


def test_the_timer_verbs_reach_a_record() -> None:
    host, _ = make_host()
    conn = closed_in_time_wait(host)
    (record,) = host.time_waits()
    with pytest.raises(ValueError):
        host.fire_timer(record, "retransmission", 2 * MS)
    record.set_timer("time-wait", 5 * SECOND, 2 * MS)  # `pytcp timer ID set time-wait 5s`
    assert host.next_deadline() == 2 * MS + 5 * SECOND
    host.handle_timers(2 * MS + 5 * SECOND)
    assert host.time_waits() == [] and conn.state == State.CLOSED
    other = closed_in_time_wait(host, port=PEER_PORT + 1)
    (record,) = host.time_waits()
    host.fire_timer(record, "time-wait", 3 * MS)  # `pytcp timer ID fire time-wait`
    assert host.time_waits() == [] and other.state == State.CLOSED
    assert record.snapshot(3 * MS)["state"] == "CLOSED"


def test_acks_to_unacceptable_segments_are_rate_limited_but_a_fin_is_always_acked() -> None:
    # Linux tcp_oow_rate_limited (tcp_invalid_ratelimit, 500 ms) for a timewait socket.
    host, _ = make_host()
    closed_in_time_wait(host)
    old = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS - 1000, LOCAL_ISS + 2, A, 65535)
    host.receive_packet(packet(old), 2 * MS)
    assert len(host.packets_to_send(2 * MS)) == 1
    host.receive_packet(packet(old), 3 * MS)
    assert host.packets_to_send(3 * MS) == []  # within 500 ms: no second ACK
    fin = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS + 1, LOCAL_ISS + 2, A | F, 65535)
    host.receive_packet(packet(fin), 4 * MS)
    assert len(host.packets_to_send(4 * MS)) == 1  # a retransmitted FIN still is
    host.receive_packet(packet(old), 600 * MS)
    assert len(host.packets_to_send(600 * MS)) == 1
    assert host.counters["drops"]["time-wait-out-of-window-rate-limited"] == 1


def test_a_time_wait_record_acks_every_unacceptable_data_segment() -> None:
    # As a Connection (stack.tcp.connection.invalid_ack_limited): only segments without
    # data are rate-limited; a retransmission with data is answered each time.
    host, _ = make_host()
    closed_in_time_wait(host)
    dupe = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS - 3, LOCAL_ISS + 2, A, 65535,
                      payload=b"old")  # fmt: skip
    for t in (2 * MS, 3 * MS):
        host.receive_packet(packet(dupe), t)
        assert len(host.packets_to_send(t)) == 1
    old = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS - 1000, LOCAL_ISS + 2, A, 65535)
    host.receive_packet(packet(old), 4 * MS)
    assert len(host.packets_to_send(4 * MS)) == 1  # the data started no interval
    host.receive_packet(packet(old), 5 * MS)
    assert host.packets_to_send(5 * MS) == []
    assert host.counters["drops"]["time-wait-out-of-window-rate-limited"] == 1
