"""Congestion control: NewReno (RFC 5681, RFC 6582), CUBIC (RFC 9438), NoControl."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.clock import MS, SECOND
from stack.tcp.congestion import (
    CONTROLLERS,
    INFINITE_SSTHRESH,
    CongestionControl,
    Cubic,
    NewReno,
    NoControl,
    default_initial_window,
)
from stack.tcp.congestion.hystart import HyStart
from stack.tcp.recovery import reno_enter, reno_exit, reno_inflate, reno_partial_ack

MSS = 1000


def test_initial_window_rfc_5681_3390() -> None:
    assert default_initial_window(536) == 2144  # 4 * MSS
    assert default_initial_window(1000) == 4000  # 4 * MSS
    assert default_initial_window(1460) == 4380  # 4380
    assert default_initial_window(2190) == 4380  # 2 * MSS = 4380
    assert default_initial_window(9000) == 18000  # 2 * MSS


def test_newreno_starts_at_iw_with_infinite_ssthresh() -> None:
    cc = NewReno(1460)
    assert cc.snapshot() == {
        "algorithm": "newreno",
        "cwnd": 4380,
        "ssthresh": INFINITE_SSTHRESH,
        "state": {"bytes_acked": 0},
    }


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
    reno_enter(cc, 0, 10_000)
    assert (cc.ssthresh, cc.cwnd) == (5000, 8000)


def test_enter_recovery_ssthresh_floor_two_mss() -> None:  # RFC 5681 (4)
    cc = NewReno(MSS)
    reno_enter(cc, 0, 3000)
    assert (cc.ssthresh, cc.cwnd) == (2000, 5000)


def test_recovery_inflate_partial_deflate_and_exit() -> None:  # RFC 6582 §3.2
    cc = NewReno(MSS)
    reno_enter(cc, 0, 10_000)
    reno_inflate(cc)
    assert cc.cwnd == 9000
    reno_partial_ack(cc, 0, 2500)  # deflate by 2500, add back one SMSS
    assert cc.cwnd == 7500
    reno_partial_ack(cc, 0, 500)  # less than SMSS: no add-back
    assert cc.cwnd == 7000
    reno_exit(cc, 0, 3000)  # min(ssthresh, max(FlightSize, SMSS) + SMSS)
    assert (cc.cwnd, cc.ssthresh) == (4000, 5000)


def test_exit_recovery_with_large_flight_goes_to_ssthresh() -> None:
    cc = NewReno(MSS)
    reno_enter(cc, 0, 10_000)
    reno_exit(cc, 0, 8000)
    assert cc.cwnd == 5000


def test_exit_recovery_with_nothing_in_flight_allows_two_segments() -> None:
    cc = NewReno(MSS)
    reno_enter(cc, 0, 10_000)
    reno_exit(cc, 0, 0)
    assert cc.cwnd == 2000


def test_partial_ack_never_deflates_below_one_mss() -> None:
    cc = NewReno(MSS)
    reno_enter(cc, 0, 4000)  # cwnd 5000
    reno_partial_ack(cc, 0, 999)
    reno_partial_ack(cc, 0, 999)
    reno_partial_ack(cc, 0, 999)
    reno_partial_ack(cc, 0, 999)
    reno_partial_ack(cc, 0, 999)
    assert cc.cwnd == 1000


def test_after_recovery_congestion_avoidance() -> None:
    cc = NewReno(MSS)
    reno_enter(cc, 0, 10_000)
    reno_exit(cc, 0, 8000)  # cwnd = ssthresh = 5000: avoidance
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
    cc.on_sent(0, 1000, 1000)
    cc.on_ack(0, 1000, 0, 5)
    cc.on_congestion_event(0, 10_000)
    cc.on_ecn(0, 10_000)
    cc.on_rto(0, 10_000)
    cc.undo(9000, 9000)
    assert (
        cc.snapshot()
        == before
        == {"algorithm": "base", "cwnd": 4000, "ssthresh": INFINITE_SSTHRESH, "state": {}}
    )


def test_cubic_does_not_subclass_newreno() -> None:  # each algorithm stands alone
    assert not issubclass(Cubic, NewReno)
    assert Cubic.__mro__[1] is CongestionControl


def test_ecn_echo_reduces_at_once() -> None:  # RFC 3168 §6.1.2, RFC 9438 §4.6
    reno = NewReno(MSS)
    reno.cwnd = 10_000
    reno.on_ecn(0, 10_000)
    assert (reno.cwnd, reno.ssthresh) == (5000, 5000)
    cubic = Cubic(MSS)
    cubic.cwnd = 10_000
    cubic.on_ecn(0, 4000)  # CUBIC reduces from cwnd, whatever the FlightSize
    assert (cubic.cwnd, cubic.ssthresh, cubic.w_max) == (7000, 7000, 10_000)


def test_undo_restores_the_window_before_the_episode() -> None:  # RFC 2883, Linux undo
    for cls in (NewReno, Cubic):
        cc = cls(MSS)
        cc.cwnd = 20_000
        prior = (cc.cwnd, cc.ssthresh)
        reno_enter(cc, 0, 20_000)
        reno_exit(cc, 0, 20_000)
        assert cc.cwnd < 20_000
        cc.undo(*prior)
        assert (cc.cwnd, cc.ssthresh) == prior
    assert isinstance(cc, Cubic) and cc.w_max is None  # CUBIC: no loss yet again


def test_no_control_is_unlimited_and_ignores_loss() -> None:
    cc = NoControl(MSS)
    cc.on_rto(0, 10_000)
    reno_enter(cc, 0, 10_000)
    cc.set_mss(1460)
    assert cc.cwnd == NoControl.UNLIMITED
    assert cc.snapshot()["algorithm"] == "none"


def test_controllers_registry() -> None:
    assert set(CONTROLLERS) == {"newreno", "cubic"}
    for name, cls in CONTROLLERS.items():
        cc = cls(1460)
        assert cc.name == name
        assert cc.snapshot()["algorithm"] == name
        assert cc.cwnd == 4380


# -- CUBIC (RFC 9438) -----------------------------------------------------------
#
# The scenario the exact numbers below come from: MSS 1000, a loss at cwnd =
# 288 000 bytes.  ssthresh = 0.7 * cwnd = 201 600 and W_max = 288 000, so
# K = cbrt((288 - 201.6) / 0.4) = cbrt(216) = 6 s.  CUBIC takes the decrease from
# cwnd, not from the FlightSize the hook passes (RFC 9438 §4.6 allows it with
# window validation, which the sender does, RFC 7661): the FlightSize left after
# the ACK that revealed the loss is often a few segments (here 3000 bytes), and
# 0.7 of it would collapse the window to the 2 SMSS floor.


def cubic_after_loss(now: int = 0) -> Cubic:
    cc = Cubic(MSS)
    cc.cwnd = 288_000
    reno_enter(cc, now, 3000)
    reno_exit(cc, 0, 201_600)
    return cc


def test_cubic_multiplicative_decrease_beta_0_7() -> None:  # RFC 9438 §4.6
    cc = Cubic(MSS)
    cc.cwnd = 288_000
    reno_enter(cc, 0, 3000)  # FlightSize 3000: ssthresh is 0.7 * cwnd all the same
    assert cc.snapshot() == {
        "algorithm": "cubic",
        "cwnd": 201_600 + 3 * MSS,  # RFC 6582 inflation on top of CUBIC's ssthresh
        "ssthresh": 201_600,
        "state": {
            "w_max": 288_000,
            "k": None,
            "hystart": {  # RFC 9406: a loss ends slow start
                "phase": "done",
                "current_round_min_rtt": None,
                "last_round_min_rtt": None,
                "css_rounds": 0,
            },
        },
    }
    reno_exit(cc, 0, 201_600)
    assert cc.cwnd == 201_600


def test_cubic_k_from_w_max_and_cwnd_epoch() -> None:  # RFC 9438 §4.2 Figure 2
    cc = cubic_after_loss()
    cc.on_ack(1 * SECOND, 1000, 200_000, None)  # the epoch starts at this ACK
    assert cc.k == 6 * SECOND
    assert cc.k == 6_000_000_000


def test_cubic_window_reaches_w_max_at_k() -> None:  # RFC 9438 §4.2 Figure 1
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)  # epoch starts at t = 0 with cwnd_epoch 201 600
    assert cc.w_cubic(0) == 201_600
    assert cc.w_cubic(6 * SECOND) == 288_000
    assert cc.w_cubic(7 * SECOND) == 288_400  # C * 1**3 segments beyond W_max
    assert cc.w_cubic(5 * SECOND) == 287_600
    # A whole window acknowledged at t = K moves cwnd all the way to the target
    # (288 000 is within 1.5 * 201 600).
    cc.on_ack(6 * SECOND, 201_600, 0, None)
    assert cc.cwnd == 288_000


def test_cubic_target_uses_t_plus_srtt() -> None:  # RFC 9438 §4.2
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)
    cc.on_ack(6 * SECOND, 201_600, 0, 1 * SECOND)  # RTT 1 s: target W_cubic(7 s)
    assert cc.cwnd == 288_400


def test_cubic_target_capped_at_one_and_a_half_cwnd() -> None:  # RFC 9438 §4.2
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)
    cwnd = cc.cwnd
    cc.on_ack(16 * SECOND, cwnd, 0, None)  # W_cubic(16 s) = 688 000
    assert cc.w_cubic(16 * SECOND) == 688_000
    assert cc.cwnd == cwnd + cwnd // 2


def test_cubic_reno_friendly_region() -> None:  # RFC 9438 §4.3
    cc = cubic_after_loss()
    # At t = 0 the cubic curve is flat at cwnd_epoch; W_est grows by
    # alpha = 9/17 segment per window acknowledged: 201 600 + 9000/17 = 202 129.4.
    cc.on_ack(0, 201_600, 0, None)
    assert cc.cwnd == 202_129


def test_cubic_reno_friendly_alpha_becomes_one_past_the_prior_window() -> None:  # §4.3
    cc = Cubic(MSS)
    cc.cwnd = 3000
    reno_enter(cc, 0, 3000)  # cwnd_prior = W_max = 3000, ssthresh 2100
    reno_exit(cc, 0, 2100)
    assert cc.cwnd == 2100
    cc.on_ack(0, 2100, 0, None)  # W_est: 2100 + 9/17 segment = 2629.4
    assert cc.cwnd == 2629
    cc.on_ack(0, 2629, 0, None)  # + 9/17 segment again = 3158.8
    assert cc.cwnd == 3158
    cc.on_ack(0, 3158, 0, None)  # W_est >= cwnd_prior: alpha = 1, a whole segment
    assert cc.cwnd == 4158


def test_cubic_concave_growth_per_ack() -> None:  # RFC 9438 §4.4
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)  # epoch start; W_est grows by 9/17 * 1000 / 201 600
    assert cc.cwnd == 201_600
    # At t = 3 s: W_cubic(3) = 288 000 - 0.4 * 27 * 1000 = 277 200, target 277 200.
    assert cc.w_cubic(3 * SECOND) == 277_200
    cc.on_ack(3 * SECOND, 1000, 0, None)
    # cwnd += (277 200 - 201 600) * 1000 / 201 600 = 375 (remainder carried)
    assert cc.cwnd == 201_975


def test_cubic_no_growth_when_curve_below_cwnd() -> None:
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)
    cc.cwnd = 300_000  # above the curve near K: target = cwnd, W_est far below
    cc.on_ack(6 * SECOND, 1000, 0, None)
    assert cc.cwnd == 300_000


def test_cubic_fast_convergence() -> None:  # RFC 9438 §4.7
    cc = cubic_after_loss()
    assert cc.w_max == 288_000
    cc.cwnd = 200_000  # a second loss below the previous W_max
    reno_enter(cc, 0, 50_000)
    assert cc.w_max == 200_000 * 17 // 20 == 170_000
    assert cc.ssthresh == 140_000
    cc.cwnd = 180_000  # a third loss above it: W_max = cwnd
    reno_enter(cc, 0, 180_000)
    assert cc.w_max == 180_000


def test_cubic_rto_loss_window_then_k_zero() -> None:  # RFC 9438 §4.8
    cc = Cubic(MSS)
    cc.cwnd = 100_000
    cc.on_rto(0, 40_000)  # ssthresh as in §4.6: 0.7 * cwnd
    assert (cc.cwnd, cc.ssthresh, cc.w_max) == (1000, 70_000, 100_000)
    cc.on_rto(0, 1000)  # the same data timing out again: ssthresh held
    assert (cc.cwnd, cc.ssthresh) == (1000, 70_000)
    cc.ssthresh = 2000
    cc.on_ack(0, 1000, 0, None)  # slow start: 2000 = ssthresh
    cc.on_ack(5 * SECOND, 1000, 0, None)  # first avoidance ACK: epoch with K = 0
    assert cc.k == 0
    assert cc.w_max == 2000
    assert cc.w_cubic(1 * SECOND) == 2400


def test_cubic_rto_in_recovery_holds_the_episodes_ssthresh() -> None:  # Linux tcp_enter_loss
    cc = Cubic(MSS)
    cc.cwnd = 100_000
    reno_enter(cc, 0, 5000)  # ssthresh 70 000, W_max 100 000
    cc.cwnd = 20_000  # PRR brought the window down; the retransmission is lost
    cc.on_rto(0, 60_000)  # the episode's reduction stands: no second one from 20 000
    assert (cc.cwnd, cc.ssthresh, cc.w_max) == (1000, 70_000, 100_000)
    cc.ssthresh = 2000
    cc.on_ack(0, 1000, 0, None)  # an ACK outside recovery: the reduction is spent
    cc.on_rto(0, 2000)  # a new loss: ssthresh from cwnd 2000, at least 2 SMSS
    assert (cc.cwnd, cc.ssthresh) == (1000, 2000)


def test_cubic_slow_start_like_reno() -> None:
    cc = Cubic(MSS)
    cc.on_ack(0, 1000, 0, 50 * MS)
    cc.on_ack(0, 5000, 0, 50 * MS)
    assert cc.cwnd == 6000
    assert cc.k is None


def test_cubic_first_epoch_without_loss_starts_at_its_window() -> None:
    cc = Cubic(MSS)
    cc.ssthresh = 4000
    cc.on_ack(0, 1000, 0, None)
    assert (cc.k, cc.w_max) == (0, 4000)


def test_cubic_negative_k_when_epoch_starts_above_w_max() -> None:
    cc = Cubic(MSS)
    cc.cwnd = 100_000
    reno_enter(cc, 0, 10_000)  # W_max 100 000
    cc.cwnd = 100_000 + 400 * MSS  # far above W_max when avoidance starts
    cc.on_ack(0, 1, 0, None)
    assert cc.k == -10 * SECOND  # (-400 / 0.4) = -1000 = (-10)**3
    assert cc.w_cubic(0) == 500_000


def test_cubic_partial_ack_ends_the_epoch() -> None:
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)
    assert cc.k == 6 * SECOND
    reno_enter(cc, 0, 201_600)
    reno_partial_ack(cc, 0, 3000)
    assert cc.k is None


def test_cubic_set_mss_scales_w_max() -> None:
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)
    cc.set_mss(500)
    assert (cc.w_max, cc.k) == (144_000, None)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ack", "enter", "dup", "partial", "exit", "rto"]),
            st.integers(0, 200_000),
            st.integers(0, 50 * SECOND),
        ),
        max_size=80,
    )
)
def test_controllers_keep_cwnd_sane(script: list[tuple[str, int, int]]) -> None:
    for cls in (NewReno, Cubic):
        cc = cls(MSS)
        now = 0
        for op, n, dt in script:
            now += dt
            if op == "ack":
                before = cc.cwnd
                cc.on_ack(now, n, n, dt)
                if cls is NewReno:
                    # RFC 5681 (2) and (3): at most one SMSS per ACK.
                    assert before <= cc.cwnd <= before + MSS
                elif n <= before:
                    # RFC 9438 §4.2: the target is at most 1.5 * cwnd; §4.3: W_est
                    # grows by at most one segment per window acknowledged.
                    assert before <= cc.cwnd <= before + before // 2 + MSS
                else:
                    assert before <= cc.cwnd
            elif op == "enter":
                reno_enter(cc, now, n)
            elif op == "dup":
                reno_inflate(cc)
            elif op == "partial":
                reno_partial_ack(cc, now, n)
            elif op == "exit":
                reno_exit(cc, now, n)
            else:
                cc.on_rto(now, n)
            assert cc.cwnd >= MSS
            assert cc.ssthresh >= 2 * MSS


def test_acks_of_an_unused_window_do_not_grow_cwnd() -> None:  # Linux tcp_is_cwnd_limited
    cc = NewReno(MSS)
    cc.on_ack(0, 1000, 0, None, cwnd_limited=False)
    assert cc.cwnd == 4000
    cc.ssthresh = 4000
    cc.on_ack(0, 4000, 0, None, cwnd_limited=False)
    cc.on_ack(0, 1000, 0, None, cwnd_limited=True)
    assert cc.cwnd == 4000  # bytes_acked counts only ACKs of a used window: 1000 < cwnd


def test_cubic_epoch_clock_stops_while_the_window_is_unused() -> None:  # as Linux's idle shift
    cc = cubic_after_loss()
    cc.on_ack(0, 1, 0, None)  # the epoch starts at t = 0
    cc.on_ack(2 * SECOND, 1000, 0, None, cwnd_limited=False)
    cc.on_ack(5 * SECOND, 1000, 0, None, cwnd_limited=False)
    assert cc.cwnd == 201_600
    # 8 s of the 10 were unused: the curve is at t = 2 s, W_cubic = 288 000 - 0.4 * 4**3
    # segments = 262 400 (at t = 10 s it would be 313 600, capped at 1.5 cwnd = 302 400)
    cc.on_ack(10 * SECOND, 201_600, 0, None)
    assert cc.cwnd == 262_400


# -- HyStart++ (RFC 9406) -----------------------------------------------------------


def hystart_round(hs: HyStart, rtt: int, *, flight: int = 8 * MSS) -> list[int]:
    """One round: eight ACKs of one MSS, each with an RTT sample; the divisors."""
    return [hs.on_ack(MSS, flight, rtt) for _ in range(8)]


def test_hystart_enters_css_when_the_round_min_rtt_grows_by_the_threshold() -> None:
    hs = HyStart()
    assert hystart_round(hs, 20 * MS) == [1] * 8  # the first round sets lastRoundMinRTT
    # threshold: max(4 ms, min(20 ms / 8, 16 ms)) = 4 ms; 23 ms is below it
    assert hystart_round(hs, 23 * MS) == [1] * 8
    assert hs.phase == "slow-start"
    # the next round: 27 ms >= 23 + 4 after N_RTT_SAMPLE samples: CSS from the 8th on
    assert hystart_round(hs, 27 * MS) == [1] * 7 + [4]
    assert (hs.phase, hs.css_baseline_min_rtt) == ("css", 27 * MS)


def test_hystart_css_back_to_slow_start_when_the_rtt_falls() -> None:
    hs = HyStart()
    for rtt in (20, 20, 30):
        hystart_round(hs, rtt * MS)
    assert hs.phase == "css"
    assert hystart_round(hs, 22 * MS) == [4] * 7 + [1]  # below the baseline: spurious
    assert hs.phase == "slow-start"


def test_hystart_leaves_slow_start_after_css_rounds() -> None:
    hs = HyStart()
    for rtt in (20, 20, 30):
        hystart_round(hs, rtt * MS)
    for _ in range(4):
        hystart_round(hs, 30 * MS)
    assert hs.phase == "css"
    assert hs.on_ack(MSS, 8 * MSS, 30 * MS) == 0  # the fifth CSS round begins: done
    assert hs.phase == "done"


def test_cubic_slow_start_grows_a_quarter_in_css_then_stops_at_ssthresh() -> None:
    cc = Cubic(MSS)
    cc.hystart.phase = "css"
    cc.hystart._round_end = 1 << 40  # no round ends in this test
    before = cc.cwnd
    for _ in range(4):
        cc.on_ack(0, MSS, 4 * MSS, None)
    assert cc.cwnd == before + MSS  # four ACKs of one MSS: a quarter each
    cc.hystart.css_rounds = 4
    cc.hystart._round_end = 0  # the next ACK starts the fifth CSS round
    cwnd = cc.cwnd
    cc.on_ack(0, MSS, 4 * MSS, None)
    assert cc.ssthresh == cwnd and cc.hystart.phase == "done"
