"""ImpairSpec parsing (exact one-line errors) and Impairer behaviour with seeded rngs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.io.impair import Impairer, ImpairSpec
from stack.tcp.clock import MS, SECOND, US

PACKET = bytes(range(40))


def test_parse_full_spec() -> None:
    spec = ImpairSpec.parse("loss=5%,dup=1%,reorder=2%,delay=20ms,jitter=5ms,corrupt=0.1%,seed=7")
    assert spec == ImpairSpec(
        loss=0.05, dup=0.01, reorder=0.02, corrupt=0.001, delay=20 * MS, jitter=5 * MS, seed=7
    )


def test_seed_in_gives_the_incoming_direction_its_own_seed() -> None:
    spec = ImpairSpec.parse("loss=3%,seed=1,seed-in=1001")
    assert spec == ImpairSpec(loss=0.03, seed=1, seed_in=1001)
    assert str(spec) == "loss=3%,seed=1,seed-in=1001"
    assert ImpairSpec.parse(str(spec)) == spec
    assert ImpairSpec.parse("seed-in=4") == ImpairSpec(seed_in=4)


def test_parse_fractions_units_and_spaces() -> None:
    spec = ImpairSpec.parse(" loss = 0.25 , delay=1.5s, jitter=250us, gap=3ms ")
    assert spec == ImpairSpec(loss=0.25, delay=1_500 * MS, jitter=250 * US, gap=3 * MS)
    assert ImpairSpec.parse("delay=0").delay == 0
    assert ImpairSpec.parse("loss=100%").loss == 1.0


def test_str_round_trips() -> None:
    text = "loss=5%,dup=1%,reorder=2%,corrupt=0.1%,delay=20ms,jitter=5ms,seed=7"
    spec = ImpairSpec.parse(text)
    assert str(spec) == text
    assert ImpairSpec.parse(str(spec)) == spec
    assert str(ImpairSpec(delay=1500 * US)) == "delay=1500us"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "impair: empty spec (try loss=5%,seed=1)"),
        ("loss", "impair: 'loss': expected key=value"),
        ("loss=", "impair: 'loss=': expected key=value"),
        (
            "los=5%",
            "impair: unknown key 'los' (known: loss, dup, reorder, corrupt, "
            "delay, jitter, gap, seed, seed-in)",
        ),
        ("seed-in=x", "impair: seed-in=x: not a non-negative integer"),
        ("seed-in=1,seed-in=2", "impair: seed-in given twice"),
        ("loss=5%,loss=1%", "impair: loss given twice"),
        ("loss=x%", "impair: loss=x%: not a percentage (try loss=5%)"),
        ("loss=abc", "impair: loss=abc: not a rate (try loss=5% or loss=0.05)"),
        ("loss=5", "impair: loss=5: must be between 0% and 100%"),
        ("dup=150%", "impair: dup=150%: must be between 0% and 100%"),
        ("loss=-1%", "impair: loss=-1%: not a percentage (try loss=5%)"),
        ("delay=20", "impair: delay=20: not a duration (try delay=20ms; units ns us ms s)"),
        ("jitter=5min", "impair: jitter=5min: not a duration (try jitter=20ms; units ns us ms s)"),
        ("seed=-3", "impair: seed=-3: not a non-negative integer"),
        ("loss=5%,,dup=1%", "impair: '': expected key=value"),
    ],
)
def test_parse_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ImpairSpec.parse(text)
    assert str(info.value) == message
    assert "\n" not in message


def test_no_impairment_delivers_once_at_now() -> None:
    imp = Impairer(ImpairSpec(), random.Random(1))
    assert imp.apply(PACKET, 5 * MS) == [(5 * MS, PACKET)]
    assert imp.counters == {
        "packets": 1,
        "lost": 0,
        "duplicated": 0,
        "reordered": 0,
        "corrupted": 0,
        "delivered": 1,
    }


def test_total_loss_and_total_duplication() -> None:
    lossy = Impairer(ImpairSpec(loss=1.0), random.Random(1))
    assert [lossy.apply(PACKET, n) for n in range(10)] == [[]] * 10
    assert lossy.counters["lost"] == 10
    dup = Impairer(ImpairSpec(dup=1.0, delay=3 * MS), random.Random(1))
    assert dup.apply(PACKET, 0) == [(3 * MS, PACKET), (3 * MS, PACKET)]
    assert dup.counters["duplicated"] == 1
    assert dup.counters["delivered"] == 2


def test_reordered_packet_is_held_by_the_gap() -> None:
    imp = Impairer(ImpairSpec(reorder=1.0, delay=2 * MS), random.Random(1))
    assert imp.apply(PACKET, 0) == [(4 * MS, PACKET)]  # delay + gap (gap defaults to delay)
    imp = Impairer(ImpairSpec(reorder=1.0), random.Random(1))
    assert imp.apply(PACKET, 0) == [(1 * MS, PACKET)]  # no delay: the 1 ms minimum gap
    imp = Impairer(ImpairSpec(reorder=1.0, gap=7 * MS), random.Random(1))
    assert imp.apply(PACKET, 10) == [(10 + 7 * MS, PACKET)]
    assert imp.counters["reordered"] == 1


def test_corruption_flips_exactly_one_bit() -> None:
    imp = Impairer(ImpairSpec(corrupt=1.0), random.Random(3))
    for now in range(50):
        [(at, damaged)] = imp.apply(PACKET, now)
        assert at == now
        diff = [a ^ b for a, b in zip(damaged, PACKET, strict=True)]
        assert sorted(bin(d).count("1") for d in diff) == [0] * 39 + [1]
    assert imp.counters["corrupted"] == 50


def test_jitter_stays_within_bounds_and_not_before_now() -> None:
    imp = Impairer(ImpairSpec(delay=2 * MS, jitter=5 * MS), random.Random(9))
    times = [imp.apply(PACKET, SECOND)[0][0] for _ in range(500)]
    assert min(times) == SECOND  # clamped: delay - jitter < 0
    assert max(times) == 1_006_947_742  # this seed's largest: within delay + jitter
    assert all(SECOND <= t <= SECOND + 7 * MS for t in times)
    assert len(set(times)) == 329


def test_same_seed_same_deliveries() -> None:
    spec = ImpairSpec.parse("loss=20%,dup=10%,reorder=10%,delay=5ms,jitter=1ms,corrupt=5%,seed=4")
    runs = []
    for _ in range(2):
        imp = Impairer(spec)  # rng from spec.seed
        runs.append([imp.apply(PACKET, n * MS) for n in range(300)])
    assert runs[0] == runs[1]
    other = Impairer(spec, random.Random(5))
    assert [other.apply(PACKET, n * MS) for n in range(300)] != runs[0]


def test_rates_are_honoured() -> None:
    # Seeded, so the counts are exact: 1002 of 20000 lost is 5.01 %, 210 of the 18998
    # survivors duplicated is 1.1 %, 365 of 19208 copies reordered is 1.9 %.
    imp = Impairer(ImpairSpec(loss=0.05, dup=0.01, reorder=0.02), random.Random(7))
    for n in range(20_000):
        imp.apply(PACKET, n)
    assert imp.counters == {
        "packets": 20_000,
        "lost": 1002,
        "duplicated": 210,
        "reordered": 365,
        "corrupted": 0,
        "delivered": 20_000 - 1002 + 210,
    }


@given(
    loss=st.floats(0, 1),
    dup=st.floats(0, 1),
    reorder=st.floats(0, 1),
    corrupt=st.floats(0, 1),
    delay=st.integers(0, SECOND),
    jitter=st.integers(0, SECOND),
    seed=st.integers(0, 2**32),
    packet=st.binary(max_size=64),
)
def test_apply_invariants(
    loss: float,
    dup: float,
    reorder: float,
    corrupt: float,
    delay: int,
    jitter: int,
    seed: int,
    packet: bytes,
) -> None:
    imp = Impairer(ImpairSpec(loss, dup, reorder, corrupt, delay, jitter), random.Random(seed))
    out = imp.apply(packet, 1000)
    assert len(out) in (0, 1, 2)
    for at, data in out:
        assert at >= 1000
        assert len(data) == len(packet)
