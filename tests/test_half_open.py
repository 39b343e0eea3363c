"""Half-open records (issue 14): a SYN to a listener makes a compact record of what
SYN-RECEIVED needs (stack.host.HalfOpen, Linux's request_sock), not a Connection. It
answers segments as a passive Connection in SYN-RECEIVED does (RFC 9293 §3.10.7.4, RFC
5961, RFC 7323), retransmits its SYN-ACK from the host's timer heap, and becomes a
Connection only when the ACK of its SYN-ACK arrives. Sans-IO, on a fake clock."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from stack.host import HalfOpen, Host
from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.state import State
from stack.trace import STATE
from stack.wire import Flags, TcpSegment
from stack.wire.icmp import IcmpError
from tests.test_host import (
    LISTEN_PORT,
    LOCAL,
    LOCAL_ISS,
    PEER,
    PEER_ISS,
    PEER_PORT,
    A,
    F,
    P,
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

E = Flags.ECE
C = Flags.CWR
LINUX_SYN = TcpSegment(PEER_PORT, LISTEN_PORT, PEER_ISS, 0, S, 64240, mss=1460, wscale=7,
                       sack_permitted=True, timestamps=(1000, 0))  # fmt: skip


def half_open(seg: TcpSegment = LINUX_SYN, **kw: object) -> tuple[Host, HalfOpen, TcpSegment]:
    """A host with a listener, a SYN received at 0: its record and the SYN-ACK sent."""
    host, _ = make_host(**kw)
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(seg), 0)
    synack = only(host, 0)
    [record] = host.half_opens()
    return host, record, synack


def reference(seg: TcpSegment = LINUX_SYN, config: TcpConfig | None = None) -> Connection:
    """The Connection the record stands in for: passive, the same SYN at 0."""
    conn = Connection(id=1, local=(LOCAL, LISTEN_PORT), remote=(PEER, PEER_PORT),
                      iss=LOCAL_ISS, config=config or TcpConfig())  # fmt: skip
    conn.open_passive(0)
    conn.receive_segment(seg, 0)
    return conn


def from_peer(
    flags: Flags, seq: int = PEER_ISS + 1, ack_: int = LOCAL_ISS + 1, **kw: object
) -> TcpSegment:
    fields: dict[str, object] = {"timestamps": (1001, 0)} | kw
    return TcpSegment(PEER_PORT, LISTEN_PORT, seq, ack_ if flags & A else 0, flags, 502,
                      **fields)  # type: ignore[arg-type]  # fmt: skip


# ------------------------------------------------------------------ the record itself


def test_a_syn_makes_a_record_whose_synack_is_the_connections() -> None:
    for seg in (LINUX_SYN, syn(), replace(LINUX_SYN, flags=S | E | C)):
        host, record, synack = half_open(seg)
        assert host.connections() == []
        [expected] = reference(seg).segments_to_send(0)
        assert synack == expected
        assert record.state is State.SYN_RECEIVED
        assert (record.iss, record.irs, record.retransmits) == (LOCAL_ISS, PEER_ISS, 0)
        assert host.find(record.id) == (record, False)
    # ECN setup (RFC 3168 §6.1.1): ECE on the SYN-ACK.
    assert half_open(replace(LINUX_SYN, flags=S | E | C))[2].flags == S | A | E


def test_the_record_is_listed_with_what_it_keeps() -> None:
    host, record, _ = half_open()
    snap = record.snapshot(5 * MS)
    assert snap["state"] == "SYN-RECEIVED" and snap["half_open_record"]
    assert snap["send"]["iss"] == LOCAL_ISS and snap["receive"]["irs"] == PEER_ISS
    assert snap["options"]["wscale_remote"] == 7 and snap["options"]["sack"]
    assert snap["options"]["ts_recent"] == 1000
    [timer] = snap["timers"]
    assert (timer["name"], timer["deadline"]) == ("syn", SECOND)
    assert timer["remaining"] == SECOND - 5 * MS
    assert host.listeners()[0].snapshot(0)["syn_queue"] == 1


def test_a_retransmitted_syn_draws_the_synack_again_rate_limited() -> None:
    host, record, first = half_open()
    host.receive_packet(packet(LINUX_SYN), 10 * MS)
    again = only(host, 10 * MS)
    assert bare(again) == bare(first) and again.timestamps == (10, 1000)
    host.receive_packet(packet(LINUX_SYN), 20 * MS)  # within invalid_ack_interval
    assert host.packets_to_send(20 * MS) == []
    assert record.counters["drops"] == {"retransmitted-syn": 2}
    assert record.resent  # Karn: neither copy will be timed


def test_the_synack_is_retransmitted_on_its_timer_then_the_record_gives_up() -> None:
    host, record, _ = half_open()
    now, synacks = 0, []
    for _ in range(20):
        deadline = host.next_deadline()
        if deadline is None:
            break
        now = deadline
        host.handle_timers(now)
        synacks += [(now, s.timestamps) for s in segments(host.packets_to_send(now))]
    # synack_retries (5) retransmissions, the RTO doubling from 1 s (RFC 6298 (5.5)).
    assert [t for t, _ in synacks] == [1 * SECOND, 3 * SECOND, 7 * SECOND, 15 * SECOND, 31 * SECOND]
    assert all(ts == (t // MS, 1000) for t, ts in synacks)
    assert now == 63 * SECOND and record.is_closed
    assert host.half_opens() == [] and host.listeners()[0].embryonic == 0


def test_the_timer_verbs_reach_the_record() -> None:
    host, record, _ = half_open()
    record.set_timer("syn", 5 * MS, 1 * MS)
    assert host.next_deadline() == 6 * MS
    host.fire_timer(record, "syn", 2 * MS)
    assert only(host, 2 * MS).flags == S | A and record.retransmits == 1
    assert host.next_deadline() == 2 * MS + 2 * SECOND
    try:
        host.fire_timer(record, "retransmission", 3 * MS)
    except ValueError as exc:
        assert "only syn" in str(exc)
    else:
        raise AssertionError("no such timer on a record")


def test_rst_at_rcv_nxt_forgets_the_record_silently_elsewhere_in_window_challenges() -> None:
    host, record, _ = half_open()
    host.receive_packet(packet(from_peer(R, seq=PEER_ISS + 100, timestamps=None)), 1 * MS)
    challenge = only(host, 1 * MS)  # RFC 5961 §3.2
    assert bare(challenge) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 1, PEER_ISS + 1, A, 0)
    host.receive_packet(packet(from_peer(R, seq=PEER_ISS + 200, timestamps=None)), 2 * MS)
    assert host.packets_to_send(2 * MS) == []  # one challenge ACK per 500 ms (§7)
    host.receive_packet(packet(from_peer(R, seq=PEER_ISS + 10**6, timestamps=None)), 3 * MS)
    assert host.packets_to_send(3 * MS) == []  # out of window: nothing
    assert record.counters["drops"] == {"rst-in-window": 2, "challenge-ack-rate-limited": 1,
                                        "rst-out-of-window": 1}  # fmt: skip
    host.receive_packet(packet(from_peer(R, timestamps=None)), 4 * MS)
    assert host.packets_to_send(4 * MS) == [] and record.is_closed
    assert host.half_opens() == [] and host.next_deadline() is None


def test_half_open_records_draw_challenge_acks_from_the_host_budget() -> None:
    # limit 1: exactly one challenge ACK a second host-wide (RFC 5961 §7, Linux 4.7-5.x).
    host, first, _ = half_open(challenge_ack_limit=1)
    other = replace(LINUX_SYN, src_port=PEER_PORT + 1)
    host.receive_packet(packet(other), 0)
    only(host, 0)
    second = next(r for r in host.half_opens() if r is not first)

    def rst_in_window(port: int) -> bytes:
        seg = from_peer(R, seq=PEER_ISS + 100, timestamps=None)
        return packet(replace(seg, src_port=port))

    host.receive_packet(rst_in_window(PEER_PORT), 1 * MS)
    assert bare(only(host, 1 * MS)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 1, PEER_ISS + 1, A, 0)
    host.receive_packet(rst_in_window(PEER_PORT + 1), 2 * MS)  # its own limit passes
    assert host.packets_to_send(2 * MS) == []
    assert host.counters["drops"]["challenge-ack-host-limited"] == 1
    assert second.counters["drops"] == {"rst-in-window": 1}
    assert not first.is_closed and not second.is_closed


def test_the_final_ack_promotes_it_to_a_connection_in_the_accept_queue() -> None:
    host, record, _ = half_open()
    lst = host.listeners()[0]
    host.receive_packet(packet(from_peer(A, timestamps=(1001, 100))), 100 * MS)
    assert host.packets_to_send(100 * MS) == []  # nothing owed
    assert (lst.embryonic, lst.pending, host.half_opens()) == (0, 1, [])
    conn = lst.accept()
    assert conn is not None and conn.id == record.id
    assert conn.state is State.ESTABLISHED
    tcb = conn.tcb
    assert (tcb.iss, tcb.irs) == (LOCAL_ISS, PEER_ISS)
    assert (tcb.snd_una, tcb.rcv_nxt) == (LOCAL_ISS + 1, PEER_ISS + 1)
    assert (tcb.wscale_remote, tcb.sack, tcb.timestamps, tcb.ts_recent) == (7, True, True, 1001)
    assert tcb.snd_wnd == 502 << 7 and tcb.snd_mss == 1460 - 12
    # The handshake was timed: the SYN-ACK left at 0, its ACK came at 100 ms.
    assert conn.rtt.srtt == 100 * MS
    assert host.find(conn.id) == (conn, False)


def test_an_ack_with_data_and_fin_promotes_and_delivers() -> None:
    host, _, _ = half_open()
    host.receive_packet(packet(from_peer(A | P | F, payload=b"hello")), 50 * MS)
    lst = host.listeners()[0]
    conn = lst.accept()
    assert conn is not None and conn.state is State.CLOSE_WAIT
    assert conn.receive(100, 50 * MS) == b"hello"
    [ack_] = segments(host.packets_to_send(50 * MS))
    assert bare(ack_) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 1, PEER_ISS + 7, A, 0)


def test_a_promoted_connection_keeps_what_its_synack_timeouts_did() -> None:
    # Two SYN-ACK timeouts: Karn (no sample), RFC 6298 (5.7) (RTO 3 s once
    # established), the record's drops handed on.
    host, record, _ = half_open(syn())
    host.receive_packet(packet(from_peer(A, seq=PEER_ISS + 10**6, timestamps=None)), 1)
    host.packets_to_send(1)
    for t in (1 * SECOND, 3 * SECOND):
        host.handle_timers(t)
        assert only(host, t).flags == S | A
    host.receive_packet(packet(from_peer(A, timestamps=None)), 3 * SECOND + 50 * MS)
    conn = host.listeners()[0].accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.rtt.srtt is None and conn.rtt.rto == 3 * SECOND
    snap = conn.snapshot(3 * SECOND + 50 * MS)
    assert snap["recovery"]["syn_timeouts"] == 2
    assert snap["counters"]["retransmissions"] == 2
    assert snap["counters"]["drops"] == {"out-of-window": 1}
    assert record.is_closed


def test_a_bad_ack_draws_a_rst_and_the_record_stays() -> None:
    host, record, _ = half_open()
    host.receive_packet(packet(from_peer(A, ack_=LOCAL_ISS + 5)), 1 * MS)
    rst = only(host, 1 * MS)  # §3.10.7.4 fifth, SYN-RECEIVED: <SEQ=SEG.ACK><CTL=RST>
    assert bare(rst) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 5, 0, R, 0)
    host.receive_packet(packet(from_peer(A, ack_=LOCAL_ISS)), 2 * MS)  # our SYN, not ACKed
    assert bare(only(host, 2 * MS)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS, 0, R, 0)
    assert host.half_opens() == [record]
    assert record.counters["drops"] == {"bad-ack-in-syn-received": 2}
    host.receive_packet(packet(from_peer(A)), 3 * MS)  # the good one still completes
    assert host.listeners()[0].pending == 1


def test_paws_and_no_ack_and_a_new_syn() -> None:
    host, record, _ = half_open()
    host.receive_packet(packet(from_peer(A, timestamps=(999, 0))), 1 * MS)  # RFC 7323 §5.3
    assert bare(only(host, 1 * MS)) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 1, PEER_ISS + 1, A, 0)
    host.receive_packet(packet(from_peer(P, payload=b"x")), 2 * MS)
    assert host.packets_to_send(2 * MS) == []
    # A SYN with another ISN in the window: a challenge ACK (RFC 5961 §4).
    host.receive_packet(packet(replace(LINUX_SYN, seq=PEER_ISS + 10)), 3 * MS)
    assert only(host, 3 * MS).flags == A
    assert record.counters["drops"] == {"paws": 1, "no-ack": 1, "syn-in-synchronized": 1}
    assert host.half_opens() == [record]


def test_listener_close_resets_the_record_and_the_4_tuple_is_held() -> None:
    host, record, _ = half_open()
    lst = host.listeners()[0]
    lst.close(5 * MS)
    rst = only(host, 5 * MS)
    assert bare(rst) == (LISTEN_PORT, PEER_PORT, LOCAL_ISS + 1, 0, R, 0)
    assert record.is_closed and host.half_opens() == [] and host.next_deadline() is None


def test_icmp_quoting_the_synack_fails_the_handshake_or_lowers_the_path_mtu() -> None:
    from stack.wire import Ipv4Header

    host, record, _ = half_open()
    quoted = Ipv4Header(LOCAL, PEER, 6)
    stale = IcmpError(3, 1, None, quoted, LISTEN_PORT, PEER_PORT, LOCAL_ISS + 7)
    host._icmp_error(Ipv4Header(PEER, LOCAL, 1), stale, 1 * MS)
    assert record.counters["drops"] == {"icmp-stale-seq": 1}
    mtu = IcmpError(3, 4, 1200, quoted, LISTEN_PORT, PEER_PORT, LOCAL_ISS)
    host._icmp_error(Ipv4Header(PEER, LOCAL, 1), mtu, 2 * MS)
    assert host.path_mtus()[PEER].mtu == 1200 and not record.is_closed
    unreachable = IcmpError(3, 1, None, quoted, LISTEN_PORT, PEER_PORT, LOCAL_ISS)
    host._icmp_error(Ipv4Header(PEER, LOCAL, 1), unreachable, 3 * MS)
    assert record.is_closed and host.half_opens() == []


def test_the_trace_tells_the_states_as_a_connection_would() -> None:
    host, log = make_host()
    host.listen(LISTEN_PORT)
    host.receive_packet(packet(syn()), 0)
    host.packets_to_send(0)
    host.receive_packet(packet(ack()), 1 * MS)
    states = [(e.conn, e.fields["old"], e.fields["new"]) for e in log.of_kind(STATE)]
    rid = str(host.listeners()[0].accept().id)  # type: ignore[union-attr]
    assert states == [(rid, "CLOSED", "LISTEN"), (rid, "LISTEN", "SYN-RECEIVED"),
                      (rid, "SYN-RECEIVED", "ESTABLISHED")]  # fmt: skip


def test_syn_cookies_still_complete_without_a_record() -> None:
    host, _ = make_host(syn_cookies="always")
    lst = host.listen(LISTEN_PORT)
    host.receive_packet(packet(LINUX_SYN), 0)
    cookie = only(host, 0)
    assert host.half_opens() == [] and lst.counters["cookies_sent"] == 1
    assert cookie.timestamps is not None
    final = from_peer(A | P, ack_=cookie.seq + 1, timestamps=(1001, cookie.timestamps[0]),
                      payload=b"hi")  # fmt: skip
    host.receive_packet(packet(final), 10 * MS)
    conn = lst.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert (conn.tcb.wscale_remote, conn.tcb.sack) == (7, True)
    assert conn.receive(10, 10 * MS) == b"hi"


# ------------------------------------------------------ the record against Connection


@st.composite
def peer_segments(draw: st.DrawFn) -> TcpSegment:
    flags = Flags(draw(st.sampled_from([A, A | P, A | F, R, R | A, S, S | A, P, F, 0, A | R])))
    seq = PEER_ISS + 1 + draw(st.sampled_from([0, -1, 1, 100, 65535, 70000, 2**31, -2**31]))
    ack_ = LOCAL_ISS + draw(st.sampled_from([1, 0, 2, -1, 2**31]))
    ts = draw(st.sampled_from([None, (1001, 0), (999, 0), (1000, 5)]))
    payload = draw(st.sampled_from([b"", b"data"]))
    ack_ = ack_ & 0xFFFFFFFF if flags & A else 0
    return TcpSegment(PEER_PORT, LISTEN_PORT, seq & 0xFFFFFFFF, ack_, flags, 502,
                      payload=payload, timestamps=ts)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(peer_segments(), st.integers(1, 800)), min_size=1, max_size=4),
       st.sampled_from([LINUX_SYN, syn()]))  # fmt: skip
def test_the_record_answers_as_a_passive_connection_in_syn_received(
    steps: list[tuple[TcpSegment, int]], first: TcpSegment
) -> None:
    host = Host(address=LOCAL, isn_secret=b"test secret", rng=random.Random(1),
                isn=lambda local, remote, now: LOCAL_ISS)  # fmt: skip
    lst = host.listen(LISTEN_PORT)
    host.receive_packet(packet(first), 0)
    conn = reference(first)
    assert segments(host.packets_to_send(0)) == conn.segments_to_send(0)
    now = 0
    for seg, dt in steps:
        now += dt * MS
        if now >= SECOND:
            break  # timers are tested above
        record_alive = bool(host.half_opens())
        host.receive_packet(packet(seg), now)
        ours = segments(host.packets_to_send(now))
        if not record_alive:
            return  # promoted or gone: the Connection takes over from here
        conn.receive_segment(seg, now)
        theirs = conn.segments_to_send(now)
        assert [bare(s) for s in ours] == [bare(s) for s in theirs], seg
        assert [(s.window, s.timestamps) for s in ours] == [
            (s.window, s.timestamps) for s in theirs
        ]
        if conn.state is State.SYN_RECEIVED:
            assert host.half_opens() != []
        elif conn.state is State.CLOSED:
            assert host.half_opens() == [] and lst.pending == 0
        else:
            accepted = lst.accept()
            assert accepted is not None and accepted.state is conn.state
            return
