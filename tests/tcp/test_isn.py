"""RFC 6528 ISNs: M (4 µs clock) + F (keyed hash of the 4-tuple), secret pinned."""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.clock import MS, SECOND, US
from stack.tcp.isn import COOKIE_MSS, IsnGenerator, SynCookies

SECRET = b"0123456789abcdef"
LOCAL = (IPv4Address("10.77.0.2"), 5000)
REMOTE = (IPv4Address("10.77.0.1"), 40000)


def test_pinned_secret_gives_a_pinned_isn() -> None:
    isn = IsnGenerator(SECRET)
    assert isn(LOCAL, REMOTE, 0) == 1188850894
    assert isn(LOCAL, REMOTE, 0) == isn(LOCAL, REMOTE, 0)
    assert IsnGenerator(SECRET)(LOCAL, REMOTE, 0) == 1188850894


def test_f_is_keyed_blake2s_of_the_four_tuple() -> None:  # RFC 6528 §3
    h = hashlib.blake2s(key=SECRET, digest_size=4, person=b"pytcpisn")
    h.update(
        bytes([10, 77, 0, 2, 10, 77, 0, 1]) + (5000).to_bytes(2, "big") + (40000).to_bytes(2, "big")
    )
    assert IsnGenerator(SECRET).offset(LOCAL, REMOTE) == int.from_bytes(h.digest(), "big")


def test_m_ticks_every_four_microseconds() -> None:  # RFC 6528 §3, RFC 9293 §3.4.1
    isn = IsnGenerator(SECRET)
    base = isn(LOCAL, REMOTE, 0)
    assert isn(LOCAL, REMOTE, 4 * US - 1) == base
    assert isn(LOCAL, REMOTE, 4 * US) == (base + 1) % 2**32
    assert isn(LOCAL, REMOTE, 1 * MS) == (base + 250) % 2**32
    assert isn(LOCAL, REMOTE, 1 * SECOND) == (base + 250_000) % 2**32


def test_wraps_modulo_2_32() -> None:
    isn = IsnGenerator(SECRET)
    base = isn(LOCAL, REMOTE, 0)
    # 2**32 ticks of 4 µs (about 4.77 hours) bring it back to the start.
    assert isn(LOCAL, REMOTE, 2**32 * 4 * US) == base
    later = isn(LOCAL, REMOTE, (2**32 - base) * 4 * US)
    assert later == 0


def test_every_field_of_the_tuple_matters() -> None:
    isn = IsnGenerator(SECRET)
    base = isn(LOCAL, REMOTE, 0)
    variants = [
        ((IPv4Address("10.77.0.3"), 5000), REMOTE),
        ((LOCAL[0], 5001), REMOTE),
        (LOCAL, (IPv4Address("10.77.0.9"), 40000)),
        (LOCAL, (REMOTE[0], 40001)),
        (REMOTE, LOCAL),  # the other direction is another connection
    ]
    values = {isn(local, remote, 0) for local, remote in variants}
    assert base not in values
    assert len(values) == len(variants)


def test_the_secret_matters() -> None:
    assert IsnGenerator(b"another secret!!")(LOCAL, REMOTE, 0) != IsnGenerator(SECRET)(
        LOCAL, REMOTE, 0
    )


def test_long_secret_is_hashed_to_a_key() -> None:
    long_a = b"x" * 100
    long_b = b"x" * 99 + b"y"
    assert IsnGenerator(long_a)(LOCAL, REMOTE, 0) == IsnGenerator(long_a)(LOCAL, REMOTE, 0)
    assert IsnGenerator(long_a)(LOCAL, REMOTE, 0) != IsnGenerator(long_b)(LOCAL, REMOTE, 0)


def test_ipv6_endpoints() -> None:
    isn = IsnGenerator(SECRET)
    a = (IPv6Address("fd77::2"), 5000)
    b = (IPv6Address("fd77::1"), 40000)
    assert isn(a, b, 0) == isn(a, b, 0)
    assert isn(a, b, 0) != isn(b, a, 0)
    assert 0 <= isn(a, b, 0) < 2**32


@given(st.integers(0, 2**64), st.integers(0, 2**40))
def test_isn_advances_with_time(now: int, delta: int) -> None:
    isn = IsnGenerator(SECRET)
    assert (isn(LOCAL, REMOTE, now + delta) - isn(LOCAL, REMOTE, now)) % 2**32 == (
        (now + delta) // (4 * US) - now // (4 * US)
    ) % 2**32


# -- SYN cookies (RFC 4987 §3.6) -------------------------------------------------

PEER_ISN = 2**32 - 3  # near the wrap: the client's seq + 1 wraps to 0xFFFFFFFE


def test_syn_cookie_round_trip_gives_back_the_mss() -> None:
    c = SynCookies(SECRET)
    cookie = c.make(LOCAL, REMOTE, PEER_ISN, 1460, 10 * SECOND)
    assert 0 <= cookie < 2**32
    assert c.check(LOCAL, REMOTE, PEER_ISN, cookie, 10 * SECOND) == 1460
    assert c.make(LOCAL, REMOTE, PEER_ISN, 1460, 10 * SECOND) == cookie


def test_syn_cookie_layout() -> None:  # 5 bits t mod 32, 3 bits MSS index, 24 bits hash
    c = SynCookies(SECRET)
    cookie = c.make(LOCAL, REMOTE, PEER_ISN, 1460, 33 * 64 * SECOND + 5)
    assert cookie >> 27 == 1  # t = 33, mod 32
    assert (cookie >> 24) & 7 == COOKIE_MSS.index(1460)


def test_syn_cookie_mss_rounds_down_to_the_table() -> None:
    c = SynCookies(SECRET)
    for offered, encoded in [(536, 536), (1000, 536), (1459, 1452), (1460, 1460), (9000, 8960)]:
        cookie = c.make(LOCAL, REMOTE, 7, offered, 0)
        assert c.check(LOCAL, REMOTE, 7, cookie, 0) == encoded
    # Below the smallest entry the minimum MSS is still what the cookie carries.
    assert c.check(LOCAL, REMOTE, 7, c.make(LOCAL, REMOTE, 7, 100, 0), 0) == 536


def test_syn_cookie_valid_in_the_next_period_only() -> None:
    c = SynCookies(SECRET)
    made = 64 * SECOND - 1  # the last nanosecond of period 0
    cookie = c.make(LOCAL, REMOTE, PEER_ISN, 1460, made)
    assert c.check(LOCAL, REMOTE, PEER_ISN, cookie, 64 * SECOND) == 1460
    assert c.check(LOCAL, REMOTE, PEER_ISN, cookie, 128 * SECOND - 1) == 1460
    assert c.check(LOCAL, REMOTE, PEER_ISN, cookie, 128 * SECOND) is None
    # 32 periods later the 5-bit counter repeats, but the hash covers the full t.
    assert c.check(LOCAL, REMOTE, PEER_ISN, cookie, made + 32 * 64 * SECOND) is None


def test_syn_cookie_rejects_another_tuple_isn_or_secret() -> None:
    c = SynCookies(SECRET)
    cookie = c.make(LOCAL, REMOTE, PEER_ISN, 1460, 0)
    assert c.check(LOCAL, (REMOTE[0], 40001), PEER_ISN, cookie, 0) is None
    assert c.check((IPv4Address("10.77.0.3"), 5000), REMOTE, PEER_ISN, cookie, 0) is None
    assert c.check(LOCAL, REMOTE, PEER_ISN + 1, cookie, 0) is None
    assert SynCookies(b"another secret!!").check(LOCAL, REMOTE, PEER_ISN, cookie, 0) is None


def test_syn_cookie_any_flipped_bit_is_rejected() -> None:
    c = SynCookies(SECRET)
    cookie = c.make(LOCAL, REMOTE, PEER_ISN, 1460, 0)
    for bit in range(32):
        assert c.check(LOCAL, REMOTE, PEER_ISN, cookie ^ (1 << bit), 0) is None, bit


def test_syn_cookie_differs_from_the_isn_key() -> None:
    # The same secret feeds both; the derived keys must not coincide.
    assert SynCookies(SECRET)._key != IsnGenerator(SECRET)._key
