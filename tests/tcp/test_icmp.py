"""ICMP errors about our segments (RFC 1122 4.2.3.9, RFC 5461, RFC 1191, RFC 5927)."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.events import ConnectionFailed
from stack.tcp.state import State
from stack.wire.icmp import IcmpError
from stack.wire.ipv4 import PROTO_TCP, Ipv4Header
from tests.tcp.helpers import (
    ACK,
    LOCAL,
    LOCAL_ISS,
    PSH,
    RECV,
    REMOTE,
    REMOTE_ISS,
    SEND,
    SYN,
    established,
    events,
    recv,
    recv_all,
    send,
    syn_sent,
)

QUOTED = Ipv4Header(src=LOCAL[0], dst=REMOTE[0], protocol=PROTO_TCP)


def icmp(code: int, seq: int = LOCAL_ISS, mtu: int | None = None) -> IcmpError:
    return IcmpError(
        type=3, code=code, mtu=mtu, quoted=QUOTED, src_port=LOCAL[1], dst_port=REMOTE[1], seq=seq
    )


def test_connect_fails_unreachable_on_host_unreachable() -> None:
    c = syn_sent()
    events(c)
    c.receive_icmp(icmp(1), 10)
    assert c.state is State.CLOSED
    assert c.error == "unreachable"
    assert events(c)[0] == ConnectionFailed("unreachable")


def test_connect_fails_refused_on_port_unreachable() -> None:
    c = syn_sent()
    c.receive_icmp(icmp(3), 10)
    assert c.error == "refused"


def test_icmp_with_a_sequence_number_not_in_flight_is_ignored() -> None:
    c = syn_sent()
    c.receive_icmp(icmp(1, seq=LOCAL_ISS + 5), 10)
    assert c.state is State.SYN_SENT
    assert c.counters["drops"] == {"icmp-stale-seq": 1}


def test_unreachable_is_a_soft_error_once_established() -> None:
    c = established()
    c.send(b"x", 0)
    recv(c, 0)
    c.receive_icmp(icmp(1, seq=LOCAL_ISS + 1), 1)
    assert c.state is State.ESTABLISHED
    assert c.counters["drops"] == {"icmp-soft-error": 1}


def test_frag_needed_lowers_the_mss_and_resends_smaller() -> None:
    c = established()
    c.send(b"m" * 3000, 0)
    assert [len(s.payload) for s in recv_all(c, 0)] == [1460, 1460, 80]
    c.receive_icmp(icmp(4, seq=LOCAL_ISS + 1, mtu=1000), 1)
    assert c.tcb.snd_mss == 960
    assert c.state is State.ESTABLISHED
    out = recv_all(c, 1)  # RFC 1191: resend at once, in segments that fit
    assert [(s.seq, len(s.payload)) for s in out] == [
        (LOCAL_ISS + 1, 960),
        (LOCAL_ISS + 961, 960),
        (LOCAL_ISS + 1921, 960),
        (LOCAL_ISS + 2881, 120),
    ]
    assert out[-1] == replace(RECV, seq=LOCAL_ISS + 2881, flags=PSH | ACK, payload=b"m" * 120)
    send(c, replace(SEND, ack=LOCAL_ISS + 3001), 2)
    assert c.tcb.snd_una == LOCAL_ISS + 3001


def test_frag_needed_that_would_not_lower_the_mss_is_ignored() -> None:
    c = established()
    c.send(b"m", 0)
    recv(c, 0)
    c.receive_icmp(icmp(4, seq=LOCAL_ISS + 1, mtu=1500), 1)
    assert c.tcb.snd_mss == 1460
    assert c.counters["drops"] == {"icmp-mtu-not-lower": 1}


def test_frag_needed_during_the_handshake_caps_the_mss_negotiated_later() -> None:
    c = syn_sent()
    c.receive_icmp(icmp(4, seq=LOCAL_ISS, mtu=1000), 1)
    send(c, replace(SEND, seq=REMOTE_ISS, flags=SYN | ACK, mss=1460), 2)
    assert c.state is State.ESTABLISHED
    assert c.tcb.snd_mss == 960


def test_frag_needed_below_the_ipv4_minimum_is_ignored() -> None:
    c = established()
    c.send(b"m", 0)
    recv(c, 0)
    c.receive_icmp(icmp(4, seq=LOCAL_ISS + 1, mtu=60), 1)
    assert c.tcb.snd_mss == 1460
    assert c.counters["drops"] == {"icmp-mtu-too-small": 1}


def test_set_path_mtu_raises_the_mss_no_higher_than_the_syns_allowed() -> None:
    c = established()  # the peer's SYN said MSS 1460, ours 1460
    c.receive_icmp(icmp(4, seq=LOCAL_ISS + 1, mtu=1000), 1)
    assert (c.tcb.snd_mss, c.path_mtu) == (960, 1000)
    c.set_path_mtu(1200, 2)  # a probe found more room: up, nothing resent
    assert (c.tcb.snd_mss, c.path_mtu) == (1160, 1200)
    assert recv_all(c, 2) == []
    c.set_path_mtu(9000, 3)  # a jumbo path: capped by what both SYNs allowed
    assert (c.tcb.snd_mss, c.path_mtu) == (1460, 9000)
    assert c.snapshot(3)["options"]["path_mtu"] == 9000
