"""The host-wide challenge-ACK budget (RFC 5961 §7; Linux 4.7-5.x tcp_challenge_ack_limit
with the randomized per-second allowance it took after CVE-2016-5696): sans-IO, with a
fake clock (times in every call) and scripted or seeded random draws."""

from __future__ import annotations

import random

import pytest

from stack.host import CHALLENGE_ACK_LIMIT, ChallengeAckBudget, Host
from stack.tcp.clock import MS, SECOND
from stack.tcp.connection import Connection
from stack.wire import TcpSegment
from tests.test_host import (
    LISTEN_PORT,
    LOCAL_ISS,
    PEER,
    PEER_ISS,
    PEER_PORT,
    A,
    R,
    bare,
    handshake_active,
    make_host,
    packet,
    segments,
)
from tests.test_time_wait import closed_in_time_wait


class Draws:
    """A RandomSource that hands out scripted 32-bit draws, and records each request."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.asked: list[int] = []

    def getrandbits(self, k: int, /) -> int:
        self.asked.append(k)
        return self.values.pop(0)


def spend(budget: ChallengeAckBudget, now: int, n: int) -> list[bool]:
    return [budget.allow(now) for _ in range(n)]


def test_each_second_allows_half_the_limit_plus_a_random_part_of_it() -> None:
    # limit 4: (4 + 1) // 2 = 2, plus (draw * 4) >> 32 in [0, 4): 2 to 5 per second.
    draws = Draws(0, 2**32 - 1, 2**31)
    budget = ChallengeAckBudget(4, draws)
    assert spend(budget, 0, 3) == [True, True, False]  # 2 + 0
    assert budget.snapshot() == {"limit": 4, "second": 0, "left": 0}
    assert spend(budget, SECOND - 1, 1) == [False]  # the same second: still exhausted
    assert spend(budget, SECOND, 6) == [True] * 5 + [False]  # refilled: 2 + 3
    assert spend(budget, 5 * SECOND + 7 * MS, 5) == [True] * 4 + [False]  # 2 + 2
    assert draws.asked == [32, 32, 32]  # one draw per second that asked, none between


def test_the_allowance_is_drawn_from_the_rng_second_by_second() -> None:
    # What an attacker would count varies from second to second (CVE-2016-5696); with a
    # seeded generator the allowances are exactly limit/2 + scaled draws.
    budget = ChallengeAckBudget(CHALLENGE_ACK_LIMIT, random.Random(7))
    reference = random.Random(7)
    counts = []
    for second in range(5):
        now = second * SECOND
        n = 0
        while budget.allow(now):
            n += 1
        counts.append(n)
    expected = [500 + ((reference.getrandbits(32) * 1000) >> 32) for _ in range(5)]
    assert counts == expected
    assert len(set(counts)) > 1


@pytest.mark.parametrize("limit", [0, None])
def test_off_means_no_host_wide_limit(limit: int | None) -> None:
    draws = Draws()
    budget = ChallengeAckBudget(limit, draws)
    assert all(spend(budget, 0, 10_000))
    assert draws.asked == []
    assert budget.snapshot() == {"limit": None, "second": None, "left": 0}


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="challenge_ack_limit"):
        ChallengeAckBudget(-1, Draws())
    with pytest.raises(ValueError, match="challenge_ack_limit"):
        make_host(challenge_ack_limit=-5)


# ------------------------------------------------------------------ through the host


def established(host: Host, port: int) -> Connection:
    conn, _ = handshake_active(host, port, 0)
    assert isinstance(conn, Connection)
    return conn


def rst_in_window(conn: Connection, port: int) -> bytes:
    local_port = conn.local[1]
    return packet(TcpSegment(port, local_port, PEER_ISS + 100, 0, R, 0))


def challenge(conn: Connection, port: int) -> tuple[int, int, int, int, int, int]:
    local_port = conn.local[1]
    return (local_port, port, LOCAL_ISS + 1, PEER_ISS + 1, A, 0)


def test_connections_share_the_host_budget_after_their_own_limit() -> None:
    # limit 1: (1 + 1) // 2 + 0 = exactly one challenge ACK a second, whatever the draw.
    host, _ = make_host(challenge_ack_limit=1)
    a = established(host, 80)
    b = established(host, 81)
    host.receive_packet(rst_in_window(a, 80), 1 * MS)
    assert [bare(s) for s in segments(host.packets_to_send(1 * MS))] == [challenge(a, 80)]
    host.receive_packet(rst_in_window(b, 81), 2 * MS)  # b's own limit passes, the host's not
    assert host.packets_to_send(2 * MS) == []
    assert host.counters["drops"]["challenge-ack-host-limited"] == 1
    assert b.counters["drops"] == {"rst-in-window": 1, "challenge-ack-host-limited": 1}
    assert b.counters["challenge_acks"] == 0
    host.receive_packet(rst_in_window(a, 80), 3 * MS)  # a's own limit first: never asks
    assert host.packets_to_send(3 * MS) == []
    assert a.counters["drops"]["challenge-ack-rate-limited"] == 1
    assert host.counters["drops"]["challenge-ack-host-limited"] == 1
    assert host.snapshot()["challenge_acks"] == {"limit": 1, "second": 0, "left": 0}
    # The next second refills; b's own limit was spent at 2 ms (as Linux), long enough ago.
    host.receive_packet(rst_in_window(b, 81), SECOND)
    assert [bare(s) for s in segments(host.packets_to_send(SECOND))] == [challenge(b, 81)]
    host.receive_packet(rst_in_window(a, 80), SECOND + 1 * MS)
    assert host.packets_to_send(SECOND + 1 * MS) == []
    assert host.counters["drops"]["challenge-ack-host-limited"] == 2
    assert (a.counters["challenge_acks"], b.counters["challenge_acks"]) == (1, 1)


@pytest.mark.parametrize("limit", [0, None])
def test_with_the_host_limit_off_only_each_connection_s_own_applies(limit: int | None) -> None:
    host, _ = make_host(challenge_ack_limit=limit)
    conns = [established(host, port) for port in range(80, 90)]
    for i, conn in enumerate(conns):
        host.receive_packet(rst_in_window(conn, 80 + i), 1 * MS)
    assert len(host.packets_to_send(1 * MS)) == 10
    assert "challenge-ack-host-limited" not in host.counters["drops"]
    assert host.snapshot()["challenge_acks"]["limit"] is None


def test_time_wait_records_draw_from_the_same_budget() -> None:
    host, _ = make_host(challenge_ack_limit=1)
    closed_in_time_wait(host, port=PEER_PORT)
    closed_in_time_wait(host, port=PEER_PORT + 1)

    def rst_near(port: int) -> bytes:  # RFC 5961 §3.2: a RST in the window, not at RCV.NXT
        return packet(TcpSegment(port, LISTEN_PORT, PEER_ISS + 10, 0, R, 0))

    host.receive_packet(rst_near(PEER_PORT), 2 * MS)
    assert len(host.packets_to_send(2 * MS)) == 1
    host.receive_packet(rst_near(PEER_PORT + 1), 3 * MS)
    assert host.packets_to_send(3 * MS) == []
    drops = host.counters["drops"]
    assert drops["challenge-ack-host-limited"] == 1
    assert drops["time-wait-rst-in-window:challenge-ack-host-limited"] == 1
    host.receive_packet(rst_near(PEER_PORT + 1), SECOND)  # a new second, the record's
    [reply] = segments(host.packets_to_send(SECOND))  # own limit spent 997 ms ago
    assert bare(reply) == (LISTEN_PORT, PEER_PORT + 1, LOCAL_ISS + 2, PEER_ISS + 2, A, 0)


def test_acks_to_out_of_window_segments_are_not_under_the_host_budget() -> None:
    # As Linux: tcp_oow_rate_limited is per socket only; the budget is challenge ACKs'.
    host, _ = make_host(challenge_ack_limit=1)
    a = established(host, 80)
    b = established(host, 81)
    host.receive_packet(rst_in_window(a, 80), 1 * MS)  # spends this second's budget
    assert len(host.packets_to_send(1 * MS)) == 1
    old = TcpSegment(81, b.local[1], PEER_ISS - 1000, LOCAL_ISS + 1, A, 65535)
    host.receive_packet(packet(old, src=PEER), 2 * MS)
    [reply] = segments(host.packets_to_send(2 * MS))
    assert bare(reply) == challenge(b, 81)
    assert b.counters["invalid_acks"] == 1
    assert "challenge-ack-host-limited" not in host.counters["drops"]


def test_a_host_s_default_is_linux_s_old_default() -> None:
    host = Host(address=PEER, isn_secret=b"s", rng=random.Random(1))
    budget = {"limit": CHALLENGE_ACK_LIMIT, "second": None, "left": 0}
    assert host.snapshot()["challenge_acks"] == budget
    assert CHALLENGE_ACK_LIMIT == 1000
