"""Option negotiation: MSS (RFC 9293 3.7.1), window scale and timestamps (RFC 7323),
SACK-permitted and SACK blocks (RFC 2018)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.wire.tcp import TcpSegment
from tests.tcp.helpers import (
    ACK,
    CONFIG,
    LOCAL,
    LOCAL_ISS,
    MSS,
    PSH,
    RECV,
    REMOTE,
    REMOTE_ISS,
    SEND,
    SYN,
    connection,
    recv,
    recv_all,
    send,
    syn,
)

FULL = TcpConfig(rcv_buf=256 * 1024, snd_buf=256 * 1024, cc="none")  # defaults: every option


def _tsval(seg: TcpSegment) -> int:
    """The TSval a segment carries (it must carry timestamps)."""
    assert seg.timestamps is not None
    return seg.timestamps[0]


def test_syn_carries_every_option_from_config() -> None:
    c = connection(FULL)
    c.open_active(5 * MS)
    assert recv(c, 5 * MS) == replace(
        RECV,
        seq=LOCAL_ISS,
        ack=0,
        flags=SYN,
        window=65535,
        mss=MSS,
        wscale=7,  # for the autotuning ceiling: 6 MiB >> 7 fits 16 bits (as Linux)
        sack_permitted=True,
        timestamps=(5, 0),  # TSval from now in ms
    )


def test_mss_from_link_mtu_and_config() -> None:
    c = connection(CONFIG, mtu=9000)
    c.open_active(0)
    assert recv(c, 0).mss == 8960
    c = connection(TcpConfig(**{**CONFIG.__dict__, "mss": 1000}))
    c.open_active(0)
    assert recv(c, 0).mss == 1000


def test_passive_open_negotiates_everything_the_peer_offered() -> None:
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(wscale=7, sack_permitted=True, timestamps=(777, 0), window=64240), 0)
    assert recv(c, 2 * MS) == replace(
        RECV,
        seq=LOCAL_ISS,
        flags=SYN | ACK,
        window=65535,
        mss=MSS,
        wscale=7,
        sack_permitted=True,
        timestamps=(2, 777),
    )
    tcb = c.tcb
    assert (tcb.wscale_local, tcb.wscale_remote, tcb.sack, tcb.timestamps) == (7, 7, True, True)
    assert tcb.snd_mss == MSS - 12  # timestamps take 12 bytes of every segment
    send(c, replace(SEND, window=1000, timestamps=(778, 2)), 10 * MS)
    assert tcb.snd_wnd == 1000 << 7
    c.send(b"x", 10 * MS)
    assert recv(c, 10 * MS) == replace(
        RECV, flags=PSH | ACK, window=256 * 1024 >> 7, payload=b"x", timestamps=(10, 778)
    )


def test_passive_open_offers_nothing_the_peer_did_not() -> None:
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(), 0)
    assert recv(c, 0) == replace(RECV, seq=LOCAL_ISS, flags=SYN | ACK, window=65535, mss=MSS)
    assert (c.tcb.wscale_local, c.tcb.wscale_remote) == (0, 0)


def test_active_open_without_peer_options_falls_back() -> None:
    c = connection(FULL)
    c.open_active(0)
    recv(c, 0)
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, window=5000), 1)
    tcb = c.tcb
    assert (tcb.wscale_local, tcb.wscale_remote, tcb.sack, tcb.timestamps) == (0, 0, False, False)
    assert tcb.snd_mss == 536
    assert recv(c, 1) == replace(RECV, window=65535)


def test_window_scale_shift_above_14_is_clamped() -> None:
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(wscale=20), 0)
    assert c.tcb.wscale_remote == 14  # RFC 7323 §2.3


def test_timestamps_rttm_sample_from_echo() -> None:
    c = connection(FULL)
    c.open_active(0)
    recv(c, 0)
    send(
        c,
        replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, timestamps=(50, 0), window=1000, wscale=0),
        30 * MS,
    )
    assert c.rtt.srtt == 30 * MS  # the SYN was timed
    c.send(b"abc", 100 * MS)
    assert recv(c, 100 * MS).timestamps == (100, 50)
    send(c, replace(SEND, ack=LOCAL_ISS + 4, timestamps=(60, 100)), 180 * MS)
    assert c.rtt.samples == 2
    assert c.rtt.min_rtt == 30 * MS
    assert c.tcb.ts_recent == 60


def test_sack_blocks_for_out_of_order_data_latest_first() -> None:
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(sack_permitted=True), 0)
    recv(c, 0)
    send(c, SEND, 0)
    nxt = REMOTE_ISS + 1
    send(c, replace(SEND, seq=nxt + 10, payload=b"b" * 10), 1)
    assert recv(c, 1).sack == ((nxt + 10, nxt + 20),)
    send(c, replace(SEND, seq=nxt + 30, payload=b"d" * 10), 2)
    assert recv(c, 2).sack == ((nxt + 30, nxt + 40), (nxt + 10, nxt + 20))
    send(c, replace(SEND, seq=nxt + 20, payload=b"c" * 5), 3)
    assert recv(c, 3).sack == ((nxt + 10, nxt + 25), (nxt + 30, nxt + 40))
    send(c, replace(SEND, seq=nxt, payload=b"a" * 10), 4)
    seg = recv(c, 4)
    assert (seg.ack, seg.sack) == (nxt + 25, ((nxt + 30, nxt + 40),))
    send(c, replace(SEND, seq=nxt + 25, payload=b"c" * 5), 5)
    seg = recv(c, 5)
    assert (seg.ack, seg.sack) == (nxt + 40, ())


def test_no_sack_blocks_unless_negotiated() -> None:
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(), 0)
    recv(c, 0)
    send(c, SEND, 0)
    send(c, replace(SEND, seq=REMOTE_ISS + 11, payload=b"b" * 10), 1)
    assert recv(c, 1).sack == ()


def test_data_segments_shrink_to_make_room_for_sack_blocks() -> None:
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(sack_permitted=True, window=65535), 0)
    recv(c, 0)
    send(c, replace(SEND, window=65535), 0)
    send(c, replace(SEND, seq=REMOTE_ISS + 11, payload=b"b" * 10, window=65535), 1)
    recv(c, 1)
    c.send(b"x" * 2000, 2)
    seg, tail = recv_all(c, 2)
    assert seg.sack == tail.sack == ((REMOTE_ISS + 11, REMOTE_ISS + 21),)
    assert len(seg.payload) == MSS - 12  # one block: 2 NOPs + 2 + 8 bytes of option
    assert len(tail.payload) == 2000 - (MSS - 12)


def test_timestamp_echo_older_than_the_last_rto_is_not_a_sample() -> None:
    # Karn's rule for timestamps: the peer answers our retransmission of data it already
    # had with the TS.Recent of the original (RFC 7323 §4.3); that "RTT" is our backoff.
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(timestamps=(1, 0), window=65535), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(2, 0), window=65535), 10 * MS)
    samples = c.rtt.samples
    c.send(b"abc", 20 * MS)
    assert recv(c, 20 * MS).timestamps == (20, 2)
    rto = c.rtt.rto
    assert recv(c, 20 * MS + rto).timestamps == ((20 * MS + rto) // MS, 2)  # RTO
    # the ACK finally arrives, echoing the original segment's TSval: not a sample
    send(c, replace(SEND, ack=LOCAL_ISS + 4, timestamps=(3, 20), window=65535), 3 * SECOND)
    assert c.tcb.snd_una == LOCAL_ISS + 4
    assert c.rtt.samples == samples
    # an echo of a segment sent after the timeout is one
    c.send(b"d", 4 * SECOND)
    recv(c, 4 * SECOND)
    send(c, replace(SEND, ack=LOCAL_ISS + 5, timestamps=(4, 4000), window=65535), 4010 * MS)
    assert c.rtt.samples == samples + 1


def test_timestamps_on_data_is_still_timed_in_ns() -> None:
    # RFC 6298 §3 per-segment timing stays on with timestamps (as Linux times in µs):
    # a 300 µs path is measured as 300 µs, not as 0 or 1 ms ticks of TSecr.
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(timestamps=(1, 0), window=65535), 0)
    assert recv(c, 0).timestamps == (0, 1)
    send(c, replace(SEND, timestamps=(2, 0), window=65535), 300_000)
    assert (c.rtt.samples, c.rtt.srtt) == (1, 300_000)  # the SYN-ACK, timed in ns
    t = 7 * MS + 123_456
    for k in range(3):
        c.send(b"x" * 100, t)
        seg = recv(c, t)
        ack = LOCAL_ISS + 1 + 100 * (k + 1)
        send(c, replace(SEND, ack=ack, timestamps=(3, _tsval(seg)), window=65535), t + 300_000)
        t += 10 * MS
    assert c.rtt.snapshot()["samples"] == 4
    assert (c.rtt.srtt, c.rtt.min_rtt) == (300_000, 300_000)


def test_timestamp_echo_samples_the_ack_of_a_retransmission() -> None:
    # Karn's rule forbids timing the retransmission; its TSecr echo is unambiguous
    # (RFC 7323 §4.1) and supplies the sample, in 1 ms ticks.
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(timestamps=(1, 0), window=65535), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(2, 0), window=65535), 10 * MS)
    assert (c.rtt.samples, c.rtt.rto) == (1, 200 * MS)
    c.send(b"abc", 20 * MS)
    assert recv(c, 20 * MS).timestamps == (20, 2)
    assert recv(c, 220 * MS).timestamps == (220, 2)  # the RTO resends it
    send(c, replace(SEND, ack=LOCAL_ISS + 4, timestamps=(3, 220), window=65535), 227 * MS)
    assert c.rtt.samples == 2
    assert c.rtt.min_rtt == 7 * MS


def test_timestamp_echoes_still_sample_25_days_after_an_rto() -> None:
    # The Karn floor set by an RTO is dropped once everything sent before it is
    # acknowledged; kept, it would fall 2**31 ms behind after 24.9 days and the mod
    # 2**32 comparison would refuse every echo (here: of a fast retransmission).
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(timestamps=(1, 0), window=65535), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(2, 0), window=65535), 10 * MS)
    c.send(b"abc", 20 * MS)
    recv(c, 20 * MS)
    assert recv(c, 220 * MS).timestamps == (220, 2)  # an RTO
    send(c, replace(SEND, ack=LOCAL_ISS + 4, timestamps=(3, 220), window=65535), 227 * MS)
    assert c.rtt.samples == 2
    t = 25 * 24 * 3600 * SECOND
    una = LOCAL_ISS + 4
    c.send(b"y" * 4 * 1448, t)
    first = recv_all(c, t)
    assert [len(s.payload) for s in first] == [1448] * 4
    for k in (1, 2, 3):  # the first is lost: three duplicates, fast retransmit
        send(c, replace(SEND, ack=una, timestamps=(3 + k, t // MS), window=65535), t + k * MS)
    [rexmit] = recv_all(c, t + 3 * MS)
    assert (rexmit.seq, rexmit.timestamps) == (una, ((t + 3 * MS) // MS % 2**32, 6))
    full = replace(SEND, ack=una + 4 * 1448, timestamps=(7, _tsval(rexmit)), window=65535)
    send(c, full, t + 8 * MS)
    assert c.rtt.samples == 3  # the echo of the retransmission: 5 ms
    assert c.rtt.min_rtt == 5 * MS


def test_ts_recent_is_replaced_after_24_days_idle() -> None:
    # RFC 7323 §5.5: after more than 24 days idle TS.Recent is invalid; the next
    # segment's TSval replaces it even when, 2**31 ticks on, it looks older.
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(timestamps=(1000, 0), window=65535), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(1001, 0), window=65535), 0)
    day = 24 * 3600 * SECOND
    nxt = REMOTE_ISS + 1
    for k, (t, tsval) in enumerate([(1 * day, 86_401_000), (27 * day, 2_332_801_000)]):
        data = replace(SEND, seq=nxt + 2 * k, payload=b"hi", timestamps=(tsval, 0))
        send(c, replace(data, window=65535), t)
        assert c.tcb.ts_recent == tsval
        assert recv(c, t + 40 * MS).timestamps == ((t + 40 * MS) // MS % 2**32, tsval)
        assert c.receive(10, t + 40 * MS) == b"hi"


def test_retransmission_with_sack_blocks_fits_the_mtu() -> None:
    # RFC 9293 3.7.1 / RFC 2018 §3: options count against the MSS.  A fast
    # retransmission carrying three SACK blocks (we hold the peer's out-of-order data)
    # shrinks its payload as new data does: 20 + 20 + 12 (timestamps) + 28 + 1420.
    cfg = TcpConfig(rcv_buf=1 << 18, snd_buf=1 << 18, wscale=False, cc="newreno", nodelay=True)
    c = connection(cfg)
    c.open_passive(0)
    send(c, syn(sack_permitted=True, timestamps=(1, 0)), 0)
    recv(c, 0)
    send(c, replace(SEND, window=65535, timestamps=(2, 0)), 0)
    mss = c.tcb.snd_mss
    assert mss == 1448
    for k in (2, 4, 6):  # the peer's segment 1 was lost: three ranges held
        seg = replace(SEND, seq=REMOTE_ISS + 1 + k * 1000, payload=b"p" * 1000)
        send(c, replace(seg, window=65535, timestamps=(3, 0)), 0)
    recv_all(c, 0)
    c.send(b"x" * 8 * mss, 0)
    new = recv_all(c, 0)
    assert [len(s.payload) for s in new] == [1420, 1420, 1420]  # cwnd: 4380 bytes
    for right in (2, 3, 3):  # the first is lost: three duplicates, SACKing the others
        sack = ((LOCAL_ISS + 1 + 1420, LOCAL_ISS + 1 + right * 1420),)
        send(c, replace(SEND, window=65535, timestamps=(4, 0), sack=sack), 10 * MS)
    # the SACKed segments leave the pipe: new data goes out too (RFC 6675, RFC 3042)
    rexmit = next(s for s in recv_all(c, 10 * MS) if s.seq == LOCAL_ISS + 1)
    assert (rexmit.seq, len(rexmit.payload), len(rexmit.sack)) == (LOCAL_ISS + 1, 1420, 3)
    assert 20 + len(rexmit.build(LOCAL[0], REMOTE[0])) == 1500


def test_segment_acking_unsent_data_leaves_ts_recent_alone() -> None:
    # RFC 7323 §4.3 (2) / RFC 9293 §3.10.7.4 fifth: SEG.ACK > SND.NXT drops the
    # segment (with an ACK), and a dropped segment's TSval is not TS.Recent: the
    # next good segment, TSval 201, must not fall to PAWS.
    c = connection(FULL)
    c.open_passive(0)
    send(c, syn(timestamps=(100, 0), window=65535), 0)
    recv(c, 0)
    send(c, replace(SEND, timestamps=(200, 0), window=65535), 1 * MS)
    bad = replace(SEND, ack=LOCAL_ISS + 9999, payload=b"x", timestamps=(200_000, 0))
    send(c, bad, 2 * MS)
    assert c.counters["drops"] == {"ack-unacceptable": 1}
    assert c.tcb.ts_recent == 200
    assert recv(c, 2 * MS).timestamps == (2, 200)
    send(c, replace(SEND, payload=b"hi", timestamps=(201, 0), window=65535), 3 * MS)
    assert c.receive(10, 3 * MS) == b"hi"
    assert c.tcb.ts_recent == 201
