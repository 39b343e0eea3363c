"""RFC 6528 ISNs: M (4 µs clock) + F (keyed hash of the 4-tuple), secret pinned."""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.clock import MS, SECOND, US
from stack.tcp.isn import IsnGenerator

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
