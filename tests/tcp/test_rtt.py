"""RFC 6298 estimator: exact integer nanoseconds for every clause."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.clock import MS, SECOND
from stack.tcp.rtt import RTO_INITIAL, RTO_MAX, RTO_MIN, RttEstimator


def estimator() -> RttEstimator:
    return RttEstimator(rto_initial=1 * SECOND, rto_min=200 * MS, rto_max=120 * SECOND)


def test_defaults_cite_linux_and_rfc_6298() -> None:
    assert (RTO_INITIAL, RTO_MIN, RTO_MAX) == (1 * SECOND, 200 * MS, 120 * SECOND)
    assert RttEstimator().snapshot() == estimator().snapshot()


def test_initial_rto_is_one_second_before_any_sample() -> None:  # (2.1)
    assert estimator().snapshot() == {
        "srtt": None,
        "rttvar": None,
        "rto": 1 * SECOND,
        "min_rtt": None,
        "samples": 0,
        "backoff": 0,
        "timed_seq": None,
        "karn": False,
        "ts_floor": None,
    }


def test_first_sample_sets_srtt_r_and_rttvar_half_r() -> None:  # (2.2)
    e = estimator()
    e.sample(100 * MS)
    assert (e.srtt, e.rttvar, e.rto) == (100 * MS, 50 * MS, 300 * MS)


def test_second_sample_uses_alpha_eighth_beta_quarter() -> None:  # (2.3)
    e = estimator()
    e.sample(100 * MS)
    e.sample(120 * MS)
    # RTTVAR = 3/4 * 50 + 1/4 * |100 - 120| = 42.5 ms; SRTT = 7/8 * 100 + 1/8 * 120 = 102.5 ms
    assert e.rttvar == 42_500_000
    assert e.srtt == 102_500_000
    assert e.rto == 102_500_000 + 4 * 42_500_000 == 272_500_000
    assert e.samples == 2
    assert e.min_rtt == 100 * MS


def test_rttvar_uses_the_old_srtt() -> None:
    e = estimator()
    e.sample(800 * MS)
    e.sample(0)
    # |SRTT - R| with SRTT still 800 ms: RTTVAR = (3 * 400 + 800) / 4 = 500 ms
    assert e.rttvar == 500 * MS
    assert e.srtt == 700 * MS
    assert e.min_rtt == 0


def test_integer_arithmetic_floors() -> None:
    e = RttEstimator(rto_min=1, rto_max=120 * SECOND)
    e.sample(3)
    e.sample(4)
    # first: SRTT = 3, RTTVAR = floor(3 / 2) = 1; then SRTT = floor((7*3 + 4) / 8) = 3
    # and RTTVAR = floor((3*1 + |3 - 4|) / 4) = 1
    assert (e.srtt, e.rttvar) == (3, 1)


def test_clock_granularity_bounds_the_variance_term() -> None:  # G in (2.2)/(2.3)
    e = RttEstimator(rto_initial=1 * SECOND, rto_min=1, rto_max=120 * SECOND)
    e.sample(0)
    assert e.rto == 1 * MS
    e.sample(10 * MS)  # RTTVAR = 2.5 ms: K*RTTVAR = 10 ms > G
    assert (e.srtt, e.rttvar, e.rto) == (1_250_000, 2_500_000, 11_250_000)


def test_rto_clamped_to_minimum() -> None:  # (2.4), 200 ms as Linux
    e = estimator()
    e.sample(1 * MS)
    assert e.rto == 200 * MS
    assert e.srtt == 1 * MS


def test_rto_clamped_to_maximum() -> None:  # (2.5)
    e = estimator()
    e.sample(100 * SECOND)
    assert e.rto == 120 * SECOND


def test_initial_rto_above_maximum_is_capped() -> None:
    assert RttEstimator(rto_initial=200 * SECOND, rto_min=200 * MS, rto_max=60 * SECOND).rto == (
        60 * SECOND
    )


def test_backoff_doubles_and_caps() -> None:  # (5.5)
    e = estimator()
    e.sample(100 * MS)
    rtos = []
    for _ in range(12):
        e.backoff()
        rtos.append(e.rto)
    assert rtos == [
        600 * MS,
        1200 * MS,
        2400 * MS,
        4800 * MS,
        9600 * MS,
        19200 * MS,
        38400 * MS,
        76800 * MS,
        120 * SECOND,
        120 * SECOND,
        120 * SECOND,
        120 * SECOND,
    ]
    assert e.backoffs == 12
    assert e.snapshot()["backoff"] == 12


def test_backoff_of_the_initial_rto() -> None:  # SYN retransmissions: 1, 2, 4, 8 s ...
    e = estimator()
    seen = [e.rto]
    for _ in range(4):
        e.backoff()
        seen.append(e.rto)
    assert seen == [1 * SECOND, 2 * SECOND, 4 * SECOND, 8 * SECOND, 16 * SECOND]


def test_backoff_is_kept_across_samples_until_reset() -> None:  # Karn, RFC 6298 §5
    e = estimator()
    e.sample(100 * MS)
    e.backoff()
    e.backoff()
    e.sample(100 * MS)  # e.g. a timestamp echo: SRTT moves, backoff stays
    assert e.rto == (100 * MS + 4 * 37_500_000) * 4 == 1000 * MS
    e.reset_backoff()
    assert e.rto == 250 * MS
    assert e.backoffs == 0


def test_very_many_backoffs_stay_at_the_maximum() -> None:
    e = estimator()
    for _ in range(10_000):
        e.backoff()
    assert e.rto == 120 * SECOND


def test_rto_falls_back_to_three_seconds_after_syn_timeout() -> None:  # (5.7)
    e = estimator()
    e.backoff()  # the SYN timed out once: 2 s
    e.handshake_retransmitted()
    assert (e.rto, e.backoffs, e.samples) == (3 * SECOND, 0, 0)
    e.sample(100 * MS)  # the first real sample replaces the fallback
    assert e.rto == 300 * MS


def test_fallback_does_not_override_a_sample() -> None:  # e.g. a timestamp echo on the SYN-ACK
    e = estimator()
    e.sample(100 * MS)
    e.backoff()
    e.handshake_retransmitted()
    assert e.rto == 300 * MS


def test_fallback_capped_at_rto_max() -> None:
    e = RttEstimator(rto_initial=1 * SECOND, rto_min=200 * MS, rto_max=2 * SECOND)
    e.handshake_retransmitted()
    assert e.rto == 2 * SECOND


def test_negative_sample_is_ignored() -> None:
    e = estimator()
    e.sample(-5)
    assert e.snapshot() == estimator().snapshot()


def test_snapshot_after_samples() -> None:
    e = estimator()
    e.sample(100 * MS)
    e.sample(120 * MS)
    e.backoff()
    assert e.snapshot() == {
        "srtt": 102_500_000,
        "rttvar": 42_500_000,
        "rto": 545_000_000,
        "min_rtt": 100 * MS,
        "samples": 2,
        "backoff": 1,
        "timed_seq": None,
        "karn": False,
        "ts_floor": None,
    }


def test_bad_bounds_rejected() -> None:
    with pytest.raises(ValueError):
        RttEstimator(rto_min=2 * SECOND, rto_max=1 * SECOND)
    with pytest.raises(ValueError):
        RttEstimator(rto_min=0)
    with pytest.raises(ValueError):
        RttEstimator(rto_initial=0)


@given(
    st.lists(
        st.one_of(st.integers(-10, 300 * SECOND), st.just("backoff"), st.just("reset")),
        max_size=60,
    )
)
def test_rto_always_within_bounds(ops: list[int | str]) -> None:
    e = estimator()
    for op in ops:
        if op == "backoff":
            e.backoff()
        elif op == "reset":
            e.reset_backoff()
        else:
            assert isinstance(op, int)
            e.sample(op)
        assert 200 * MS <= e.rto <= 120 * SECOND
        if e.samples:
            assert e.srtt is not None and e.rttvar is not None and e.srtt >= 0 <= e.rttvar


@given(st.lists(st.integers(0, 10 * SECOND), min_size=1, max_size=60))
def test_srtt_is_a_weighted_mean_of_the_samples(samples: list[int]) -> None:
    e = estimator()
    for r in samples:
        e.sample(r)
    assert e.srtt is not None
    assert min(samples) <= e.srtt <= max(samples)
    assert e.min_rtt == min(samples)
    assert e.samples == len(samples)


def test_one_timed_segment_per_rtt_and_karn() -> None:  # RFC 6298 §3
    rtt = estimator()
    rtt.on_send(1100, 0)
    rtt.on_send(1200, 5 * MS)  # already timing 1100: not timed
    assert (rtt.timed_seq, rtt.timed_at) == (1100, 0)
    assert rtt.on_ack(1050, 8 * MS, None) is None  # does not cover the timed segment
    assert rtt.on_ack(1100, 10 * MS, None) == 10 * MS
    assert (rtt.srtt, rtt.samples, rtt.timed_seq) == (10 * MS, 1, None)
    rtt.on_send(1300, 20 * MS)
    rtt.on_retransmit()  # Karn: the timed segment's ACK is ambiguous now
    assert (rtt.timed_seq, rtt.karn) == (None, True)
    assert rtt.on_ack(1300, 40 * MS, None) is None
    assert rtt.samples == 1


def test_timestamp_echo_samples_only_under_karn_and_above_the_floor() -> None:  # RFC 7323 §4
    rtt = estimator()
    assert rtt.on_ack(1000, 50 * MS, 40) is None  # no Karn: echoes are not used
    rtt.on_retransmit()
    rtt.on_timeout(100, 2000)  # an RTO when our TSval clock read 100 ms
    assert rtt.ts_floor == 100
    assert rtt.on_ack(1500, 130 * MS, 90) is None  # echo of a TSval before the RTO
    assert rtt.ts_floor == 100  # kept until SND.MAX at the timeout is acknowledged
    assert rtt.on_ack(2000, 140 * MS, 120) == 20 * MS
    assert rtt.ts_floor is None
    assert rtt.samples == 1
