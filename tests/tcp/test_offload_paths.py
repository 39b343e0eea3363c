"""The TCP core's side of the fast path: super-segments of several MSS for TSO/GSO
(`Connection.tso_max`), an ACK for every second full-sized segment where a GRO'd
super-segment counts as the segments it carries (RFC 5681 §4.2), and receive-buffer
autotuning with window scaling (TcpConfig.rcv_buf_max)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS
from stack.tcp.config import TcpConfig
from tests.tcp.helpers import (
    ACK,
    CONFIG,
    LOCAL_ISS,
    REMOTE_ISS,
    SEND,
    connection,
    recv,
    recv_all,
    recv_nothing,
    send,
    syn,
)

SMSS = 1460
RTT = 10 * MS


def established(config: TcpConfig, **syn_kw: object):
    c = connection(config)
    c.open_passive(0)
    send(c, syn(window=65535, **syn_kw), 0)  # type: ignore[arg-type]
    recv(c, 0)
    send(c, replace(SEND, ack=LOCAL_ISS + 1, window=65535), RTT)
    return c


def test_super_segments_of_whole_mss_up_to_tso_max() -> None:
    c = established(replace(CONFIG, snd_buf=1 << 20))
    c.tso_max = 65536
    c.send(b"s" * (100 * SMSS), RTT)
    out = recv_all(c, RTT)
    # the peer's 65535-byte window: 44 whole segments in one super-segment, then none
    # (the 1315-byte rest is below one MSS and more data waits: SWS avoidance)
    assert [len(s.payload) for s in out] == [44 * SMSS]
    assert c.snapshot(RTT)["recovery"]["segments"] == 1  # one record for it
    # a partial ACK splits the record
    send(c, replace(SEND, ack=LOCAL_ISS + 1 + 10 * SMSS, window=65535), 2 * RTT)
    assert c.snapshot(2 * RTT)["recovery"]["segments"] == 1
    assert c.recovery.segs[0].start - c.recovery.una == 0
    assert c.recovery.segs[0].end - c.recovery.una == 34 * SMSS


def test_without_tso_one_mss_per_segment() -> None:
    c = established(replace(CONFIG, snd_buf=1 << 20))
    c.send(b"s" * (4 * SMSS), RTT)
    assert [len(s.payload) for s in recv_all(c, RTT)] == [SMSS, SMSS, SMSS, SMSS]


def test_gro_super_segment_counts_as_the_segments_it_carries() -> None:  # RFC 5681 §4.2
    c = established(replace(CONFIG, rcv_buf=1 << 20, wscale=True))
    send(c, replace(SEND, ack=LOCAL_ISS + 1, payload=b"g" * (10 * SMSS)), 2 * RTT)
    seg = recv(c, 2 * RTT)  # ten full-sized segments' worth: ACKed at once
    assert seg.ack == REMOTE_ISS + 1 + 10 * SMSS
    send(c, replace(SEND, seq=REMOTE_ISS + 1 + 10 * SMSS, payload=b"g" * SMSS), 3 * RTT)
    assert recv_nothing(c, 3 * RTT)  # one segment: the ACK may wait (delayed ACK)


def test_receive_buffer_grows_when_the_reader_keeps_up() -> None:
    c = established(TcpConfig(rcv_buf=64 * 1024, rcv_buf_max=1 << 20, cc="none"), wscale=7)
    assert c.tcb.wscale_local == 5  # chosen for the 1 MiB ceiling
    nxt = REMOTE_ISS + 1
    now = RTT
    for _ in range(4):  # the application reads everything at once, every RTT
        send(c, replace(SEND, seq=nxt, ack=LOCAL_ISS + 1, payload=b"a" * 48 * 1024), now)
        nxt += 48 * 1024
        c.receive(1 << 20, now)
        now += RTT
        recv_all(c, now)
    # the first RTT's measurement saw two reads (96 KiB >= half of 64 KiB): four times
    # that; 48 KiB an RTT is below half of 384 KiB, so it stays there
    assert c.recvbuf.capacity == 4 * 96 * 1024
    assert c.counters["rcv_buf_grown"] == 1
    send(c, replace(SEND, seq=nxt, ack=LOCAL_ISS + 1, payload=b"a" * SMSS), now)
    seg = recv_all(c, now + 100 * MS)[-1]
    # the window grew with it: the free space in 32-byte units, rounded up (RFC 7323 §2.4)
    assert (seg.flags, seg.window) == (ACK, -(-(4 * 96 * 1024 - SMSS) // 32))


def test_a_slow_reader_keeps_its_buffer() -> None:
    c = established(TcpConfig(rcv_buf=64 * 1024, rcv_buf_max=1 << 20, cc="none"), wscale=7)
    nxt = REMOTE_ISS + 1
    now = RTT
    for _ in range(6):
        send(c, replace(SEND, seq=nxt, ack=LOCAL_ISS + 1, payload=b"a" * 8 * 1024), now)
        nxt += 8 * 1024
        c.receive(8 * 1024, now)  # 8 KiB an RTT: far below half the buffer
        now += RTT
    assert c.recvbuf.capacity == 64 * 1024
    assert c.counters["rcv_buf_grown"] == 0


def test_no_autotuning_without_window_scaling() -> None:
    c = established(TcpConfig(rcv_buf=64 * 1024, rcv_buf_max=1 << 20, cc="none"))
    assert c.tcb.wscale_local == 0  # the peer offered none
    nxt = REMOTE_ISS + 1
    for k in range(4):
        send(c, replace(SEND, seq=nxt, ack=LOCAL_ISS + 1, payload=b"a" * 48 * 1024), (k + 1) * RTT)
        nxt += 48 * 1024
        c.receive(1 << 20, (k + 1) * RTT)
    assert c.recvbuf.capacity == 64 * 1024
