"""Header prediction (`Connection._predicted`) against the slow path it short-cuts.

Every test drives two connections with the same calls and the same segments at the same
times: one as the stack runs it, one whose class turns prediction off (`predict =
False`). After every step their output, events, readable bytes, journals and whole
snapshots must be equal; a fast path that forgot one thing the slow path does (a
timestamp, the send window, an RTT sample, a timer, the delayed ACK) fails here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.tcp.clock import MS
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.seq import seq_add, seq_diff
from stack.tcp.state import State
from stack.wire.tcp import Flags, TcpSegment
from tests.tcp.helpers import LOCAL, LOCAL_ISS, REMOTE, REMOTE_ISS

ACK, PSH, FIN, SYN, RST, URG, ECE = (
    Flags.ACK, Flags.PSH, Flags.FIN, Flags.SYN, Flags.RST, Flags.URG, Flags.ECE,
)  # fmt: skip
MSS = 1448
CONFIG = TcpConfig(rcv_buf=64 * 1024, rcv_buf_max=64 * 1024, snd_buf=64 * 1024, cc="newreno")


class Predicting(Connection):
    """The stack's connection, counting the segments header prediction took."""

    __slots__ = ("hits",)

    def _predicted(self, seg: TcpSegment, now: int) -> bool:
        hit = super()._predicted(seg, now)
        self.hits = getattr(self, "hits", 0) + hit
        return hit


class SlowPath(Connection):
    """The same connection with every segment through the RFC 9293 steps."""

    __slots__ = ()
    predict = False


def _pair(config: TcpConfig = CONFIG) -> tuple[Predicting, SlowPath, int]:
    """Both connections passively opened with the same handshake (timestamps, SACK and
    window scaling negotiated when the config offers them); returns them and the
    peer's next TSval."""
    conns: list[Any] = []
    for cls in (Predicting, SlowPath):
        c = cls(id=1, local=LOCAL, remote=REMOTE, iss=LOCAL_ISS, config=config)
        c.open_passive(0)
        c.receive_segment(
            TcpSegment(REMOTE[1], LOCAL[1], REMOTE_ISS, 0, SYN, 65535, mss=MSS, wscale=7,
                       sack_permitted=True, timestamps=(100, 0)), 0)  # fmt: skip
        [synack] = c.segments_to_send(0)
        c.receive_segment(_seg(REMOTE_ISS + 1, LOCAL_ISS + 1, ts=(101, synack.timestamps)), MS)
        c.segments_to_send(MS)
        assert c.state is State.ESTABLISHED
        conns.append(c)
    return conns[0], conns[1], 102


def _seg(seq: int, ack: int, *, ts: Any = None, flags: int = ACK, window: int = 512,
         payload: bytes = b"", sack: tuple[tuple[int, int], ...] = ()) -> TcpSegment:  # fmt: skip
    if isinstance(ts, tuple) and isinstance(ts[1], tuple):  # (TSval, echo of a timestamps pair)
        ts = (ts[0], ts[1][0])
    return TcpSegment(REMOTE[1], LOCAL[1], seq % 2**32, ack % 2**32, flags, window,
                      payload=payload, sack=sack, timestamps=ts)  # fmt: skip


def _drain(c: Connection) -> list[object]:
    out: list[object] = []
    while (e := c.next_event()) is not None:
        out.append(e)
    return out


def _same(fast: Connection, slow: Connection, now: int) -> list[TcpSegment]:
    """Output, events, journal and snapshot of both are equal; returns the output."""
    fast.handle_timers(now)
    slow.handle_timers(now)
    out_fast, out_slow = fast.segments_to_send(now), slow.segments_to_send(now)
    assert out_fast == out_slow
    assert _drain(fast) == _drain(slow)
    assert fast.snapshot(now) == slow.snapshot(now)
    assert fast.next_deadline() == slow.next_deadline()
    assert fast.journal is not None and slow.journal is not None
    ends = (LOCAL_ISS, REMOTE_ISS)
    assert fast.journal.entries(*ends) == slow.journal.entries(*ends)
    return out_fast


def _both(fast: Connection, slow: Connection, seg: TcpSegment, now: int) -> list[TcpSegment]:
    fast.receive_segment(seg, now)
    slow.receive_segment(seg, now)
    return _same(fast, slow, now)


# ---------------------------------------------------------------- the two cases, by table


def test_in_order_data_is_predicted_and_ends_as_the_slow_path_does() -> None:
    fast, slow, tsval = _pair()
    now = 2 * MS
    seq = REMOTE_ISS + 1
    for i in range(6):  # delayed ACK, then an ACK for every second full segment
        now += MS
        _both(fast, slow, _seg(seq, LOCAL_ISS + 1, ts=(tsval + i, 1), payload=bytes(MSS)), now)
        seq += MSS
    assert fast.hits == 6
    assert fast.tcb.rcv_nxt == seq and fast.readable == 6 * MSS
    # RFC 7323 §4.3: TS.Recent from the last segment at or before Last.ACK.sent
    assert fast.tcb.ts_recent == tsval + 4


def test_an_ack_of_new_data_is_predicted_and_ends_as_the_slow_path_does() -> None:
    fast, slow, tsval = _pair()
    now = 2 * MS
    for c in (fast, slow):
        c.send(bytes(8 * MSS), now)
    assert _same(fast, slow, now)  # the initial window's worth
    una = LOCAL_ISS + 1
    for i in range(4):  # every ACK moves SND.UNA (an RTT sample, cwnd grows, RTO re-armed)
        now += 10 * MS
        una = min(una + 2 * fast.tcb.snd_mss, fast.tcb.snd_max)
        _both(fast, slow, _seg(REMOTE_ISS + 1, una, ts=(tsval + i, now // MS - 10),
                               window=1024), now)  # fmt: skip
    assert fast.hits == 4
    assert fast.tcb.snd_una == una and fast.tcb.snd_wnd == 1024 << 7


def test_segments_off_the_predicted_path_take_the_slow_path() -> None:
    fast, slow, tsval = _pair()
    now = 2 * MS
    for c in (fast, slow):
        c.send(bytes(4 * MSS), now)
    _same(fast, slow, now)
    nxt, una = REMOTE_ISS + 1, LOCAL_ISS + 1
    not_predicted = [
        _seg(nxt, una, ts=(tsval, 1), flags=ACK | FIN),  # a FIN
        _seg(nxt + MSS, una, ts=(tsval, 1), payload=b"x" * 10),  # out of order
        _seg(nxt, una, ts=(tsval - 5, 1), payload=b"x" * 10),  # PAWS: an old TSval
        _seg(nxt, una, ts=None, payload=b"x" * 10),  # no timestamps where negotiated
        _seg(nxt, una + MSS, ts=(tsval, 1), payload=b"x" * 10),  # data that ACKs data
        _seg(nxt, una, ts=(tsval, 1)),  # no new ACK: a window update or duplicate
        _seg(nxt, una + 2 * MSS, ts=(tsval, 1), sack=((una + 3 * MSS, una + 4 * MSS),)),
        _seg(nxt, una + 9 * MSS, ts=(tsval, 1)),  # ACKs what was never sent
        _seg(nxt, una + 2**31, ts=(tsval, 1)),  # half the sequence space away
        _seg(nxt, una, ts=(tsval, 1), flags=ACK | URG, payload=b"u"),
        _seg(nxt, una, ts=(tsval, 1), flags=ACK | ECE, payload=b"e"),
        _seg(nxt, una, ts=(tsval, 1), flags=RST),
    ]
    for seg in not_predicted:
        now += MS
        before = fast.hits if hasattr(fast, "hits") else 0
        _both(fast, slow, seg, now)
        assert getattr(fast, "hits", 0) == before, seg


def test_data_beyond_the_window_is_not_predicted() -> None:
    fast, slow, tsval = _pair(replace(CONFIG, rcv_buf=4096, rcv_buf_max=4096))
    now = 2 * MS
    _both(fast, slow, _seg(REMOTE_ISS + 1, LOCAL_ISS + 1, ts=(tsval, 1), payload=bytes(5000)), now)
    assert getattr(fast, "hits", 0) == 0
    assert fast.tcb.rcv_nxt == REMOTE_ISS + 1 + 4096  # trimmed to the window, as before


# ---------------------------------------------------------------- any mix, by hypothesis


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), sack=st.booleans(), timestamps=st.booleans(), keepalive=st.booleans())
def test_any_mix_of_segments_ends_as_the_slow_path_does(
    data: st.DataObject, sack: bool, timestamps: bool, keepalive: bool
) -> None:
    config = replace(CONFIG, sack=sack, timestamps=timestamps,
                     keepalive_idle=500 * MS if keepalive else None)  # fmt: skip
    fast, slow, tsval = _pair(config)
    now = 2 * MS
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        now += data.draw(st.sampled_from([0, MS, 40 * MS, 300 * MS]), label="dt")
        action = data.draw(st.sampled_from(["data", "data", "ack", "ack", "write", "read"]))
        if action == "write":
            n = data.draw(st.integers(1, 6 * MSS), label="write")
            assert fast.send(bytes(n), now) == slow.send(bytes(n), now)
            _same(fast, slow, now)
            continue
        if action == "read":
            assert fast.receive(1 << 20, now) == slow.receive(1 << 20, now)
            _same(fast, slow, now)
            continue
        tcb = fast.tcb
        nxt = seq_add(tcb.rcv_nxt, data.draw(st.sampled_from([0, 0, 0, -MSS, MSS, 7]), label="ds"))
        flight = seq_diff(tcb.snd_max, tcb.snd_una)
        acked = data.draw(st.integers(0, flight + 2), label="acked") if action == "ack" else 0
        if data.draw(st.integers(0, 9), label="far ack") == 0:  # half the space away, or any
            acked = data.draw(st.sampled_from([2**31, 2**31 - 1, 2**31 + 1, 2**32 - 1]))
        ack = seq_add(tcb.snd_una, acked)
        tsval += data.draw(st.sampled_from([0, 1, 1, -3]), label="dts")
        ts = (tsval, now // MS) if data.draw(st.booleans(), label="has ts") or timestamps else None
        flags = data.draw(st.sampled_from([ACK, ACK, ACK | PSH, ACK | FIN, ACK | URG]))
        size = 0 if action == "ack" else data.draw(st.sampled_from([1, 100, MSS, 3 * MSS]))
        blocks: tuple[tuple[int, int], ...] = ()
        if action == "ack" and flight > 2 * MSS and data.draw(st.booleans(), label="sack"):
            left = seq_add(ack, MSS)
            blocks = ((left, seq_add(left, MSS)),)
        window = data.draw(st.sampled_from([0, 16, 512, 2000]), label="window")
        seg = _seg(nxt, ack, ts=ts, flags=flags, window=window, payload=bytes(size), sack=blocks)
        _both(fast, slow, seg, now)
    HITS.append(getattr(fast, "hits", 0))


HITS: list[int] = []  # how often the mixes took the fast path (test_the_mixes_were_predicted)


def test_the_mixes_were_predicted() -> None:
    # Runs after the mixes (file order): they exercised the fast path, not only the slow.
    # The mixes are derandomized (the same examples on every run of one hypothesis
    # version), so the count is not left to chance: with random examples it varied
    # from run to run, and a fixed share of them could fail now and then. About one
    # mix in six takes the fast path (26 of 150, 65 predicted segments, with
    # hypothesis 6.170), each compared with the slow path at every step.
    if HITS:
        assert sum(1 for hits in HITS if hits) >= len(HITS) // 10
        assert sum(HITS) >= len(HITS) // 3
