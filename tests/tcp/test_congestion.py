"""Congestion control: NewReno (RFC 5681, RFC 6582), CUBIC (RFC 9438), NoControl."""

from __future__ import annotations

import pytest

from stack.tcp.congestion import (
    CONTROLLERS,
    INFINITE_SSTHRESH,
    CongestionControl,
    NewReno,
    NoControl,
    default_initial_window,
)

MSS = 1000


def test_initial_window_rfc_5681_3390() -> None:
    assert default_initial_window(536) == 2144  # 4 * MSS
    assert default_initial_window(1000) == 4000  # 4 * MSS
    assert default_initial_window(1460) == 4380  # 4380
    assert default_initial_window(2190) == 4380  # 2 * MSS = 4380
    assert default_initial_window(9000) == 18000  # 2 * MSS


def test_newreno_starts_at_iw_with_infinite_ssthresh() -> None:
    cc = NewReno(1460)
    assert cc.snapshot() == {"algorithm": "newreno", "cwnd": 4380, "ssthresh": INFINITE_SSTHRESH}


def test_explicit_initial_window_in_bytes() -> None:
    assert NewReno(1460, initial_window=14600).cwnd == 14600


def test_slow_start_adds_min_of_acked_and_mss() -> None:  # RFC 5681 (2)
    cc = NewReno(MSS)
    cc.on_ack(0, 1000, 3000, None)
    assert cc.cwnd == 5000
    cc.on_ack(0, 300, 2700, None)
    assert cc.cwnd == 5300
    cc.on_ack(0, 3000, 0, None)  # a stretch ACK still counts one SMSS (L = 1)
    assert cc.cwnd == 6300


def test_zero_byte_ack_changes_nothing() -> None:
    cc = NewReno(MSS)
    cc.on_ack(0, 0, 4000, None)
    assert cc.cwnd == 4000


def test_congestion_avoidance_one_mss_per_cwnd_of_bytes() -> None:  # RFC 5681 (3), RFC 3465
    cc = NewReno(MSS)
    cc.ssthresh = 4000
    for _ in range(3):
        cc.on_ack(0, 1000, 0, None)
    assert cc.cwnd == 4000
    cc.on_ack(0, 1000, 0, None)
    assert cc.cwnd == 5000
    for _ in range(4):
        cc.on_ack(0, 1000, 0, None)
    assert cc.cwnd == 5000
    cc.on_ack(0, 1000, 0, None)
    assert cc.cwnd == 6000


def test_congestion_avoidance_keeps_the_remainder() -> None:
    cc = NewReno(MSS)
    cc.ssthresh = 4000
    cc.on_ack(0, 4500, 0, None)  # 500 bytes left over toward the next increase
    assert cc.cwnd == 5000
    cc.on_ack(0, 4500, 0, None)
    assert cc.cwnd == 6000


def test_enter_recovery_halves_flight_and_inflates_by_three() -> None:  # RFC 5681 §3.2
    cc = NewReno(MSS)
    cc.on_enter_recovery(0, 10_000)
    assert (cc.ssthresh, cc.cwnd) == (5000, 8000)


def test_enter_recovery_ssthresh_floor_two_mss() -> None:  # RFC 5681 (4)
    cc = NewReno(MSS)
    cc.on_enter_recovery(0, 3000)
    assert (cc.ssthresh, cc.cwnd) == (2000, 5000)


def test_recovery_inflate_partial_deflate_and_exit() -> None:  # RFC 6582 §3.2
    cc = NewReno(MSS)
    cc.on_enter_recovery(0, 10_000)
    cc.on_dup_ack_in_recovery(0)
    assert cc.cwnd == 9000
    cc.on_partial_ack(0, 2500)  # deflate by 2500, add back one SMSS
    assert cc.cwnd == 7500
    cc.on_partial_ack(0, 500)  # less than SMSS: no add-back
    assert cc.cwnd == 7000
    cc.on_exit_recovery(0, 3000)  # min(ssthresh, max(FlightSize, SMSS) + SMSS)
    assert (cc.cwnd, cc.ssthresh) == (4000, 5000)


def test_exit_recovery_with_large_flight_goes_to_ssthresh() -> None:
    cc = NewReno(MSS)
    cc.on_enter_recovery(0, 10_000)
    cc.on_exit_recovery(0, 8000)
    assert cc.cwnd == 5000


def test_exit_recovery_with_nothing_in_flight_allows_two_segments() -> None:
    cc = NewReno(MSS)
    cc.on_enter_recovery(0, 10_000)
    cc.on_exit_recovery(0, 0)
    assert cc.cwnd == 2000


def test_partial_ack_never_deflates_below_one_mss() -> None:
    cc = NewReno(MSS)
    cc.on_enter_recovery(0, 4000)  # cwnd 5000
    cc.on_partial_ack(0, 999)
    cc.on_partial_ack(0, 999)
    cc.on_partial_ack(0, 999)
    cc.on_partial_ack(0, 999)
    cc.on_partial_ack(0, 999)
    assert cc.cwnd == 1000


def test_after_recovery_congestion_avoidance() -> None:
    cc = NewReno(MSS)
    cc.on_enter_recovery(0, 10_000)
    cc.on_exit_recovery(0, 8000)  # cwnd = ssthresh = 5000: avoidance
    for _ in range(5):
        cc.on_ack(0, 1000, 0, None)
    assert cc.cwnd == 6000


def test_rto_loss_window_and_ssthresh() -> None:  # RFC 5681 (4), (5)
    cc = NewReno(MSS)
    cc.on_rto(0, 20_000)
    assert (cc.cwnd, cc.ssthresh) == (1000, 10_000)


def test_repeated_rto_holds_ssthresh() -> None:  # RFC 5681 note after (4)
    cc = NewReno(MSS)
    cc.on_rto(0, 20_000)
    cc.on_rto(0, 1000)
    assert (cc.cwnd, cc.ssthresh) == (1000, 10_000)
    cc.on_ack(0, 1000, 3000, None)  # progress: the next RTO is a new loss event
    cc.on_rto(0, 3000)
    assert (cc.cwnd, cc.ssthresh) == (1000, 2000)


def test_slow_start_after_rto_up_to_ssthresh() -> None:
    cc = NewReno(MSS)
    cc.on_rto(0, 6000)  # ssthresh 3000
    cc.on_ack(0, 1000, 0, None)
    cc.on_ack(0, 1000, 0, None)
    assert cc.cwnd == 3000  # slow start: 1000 -> 2000 -> 3000
    cc.on_ack(0, 1000, 0, None)
    assert cc.cwnd == 3000  # avoidance from here


def test_set_mss_before_any_ack_recomputes_iw() -> None:
    cc = NewReno(536)
    assert cc.cwnd == 2144
    cc.set_mss(1460)
    assert (cc.mss, cc.cwnd) == (1460, 4380)


def test_set_mss_keeps_explicit_iw() -> None:
    cc = NewReno(536, initial_window=10_000)
    cc.set_mss(1460)
    assert cc.cwnd == 10_000


def test_set_mss_after_ack_keeps_segments() -> None:
    cc = NewReno(MSS)
    cc.on_ack(0, 1000, 0, None)  # 5000
    cc.on_rto(0, 10_000)  # ssthresh 5000, cwnd 1000
    cc.set_mss(500)
    assert (cc.cwnd, cc.ssthresh) == (500, 2500)


def test_bad_mss_rejected() -> None:
    with pytest.raises(ValueError):
        NewReno(0)
    with pytest.raises(ValueError):
        NewReno(MSS).set_mss(-1)


def test_base_class_hooks_are_no_ops() -> None:
    cc = CongestionControl(MSS)
    before = cc.snapshot()
    cc.on_ack(0, 1000, 0, 5)
    cc.on_enter_recovery(0, 10_000)
    cc.on_dup_ack_in_recovery(0)
    cc.on_partial_ack(0, 1000)
    cc.on_exit_recovery(0, 0)
    cc.on_rto(0, 10_000)
    assert (
        cc.snapshot()
        == before
        == {"algorithm": "base", "cwnd": 4000, "ssthresh": INFINITE_SSTHRESH}
    )


def test_no_control_is_unlimited_and_ignores_loss() -> None:
    cc = NoControl(MSS)
    cc.on_rto(0, 10_000)
    cc.on_enter_recovery(0, 10_000)
    cc.set_mss(1460)
    assert cc.cwnd == NoControl.UNLIMITED
    assert cc.snapshot()["algorithm"] == "none"


def test_controllers_registry() -> None:
    assert set(CONTROLLERS) == {"newreno"}
    for name, cls in CONTROLLERS.items():
        cc = cls(1460)
        assert cc.name == name
        assert cc.snapshot()["algorithm"] == name
        assert cc.cwnd == 4380
