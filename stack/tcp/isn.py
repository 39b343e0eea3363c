"""Initial sequence numbers (RFC 6528) and SYN cookies (RFC 4987 §3.6). Imports
hashlib's BLAKE2s, struct, ipaddress and clock.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey)   (RFC 6528 §3)

M is a timer ticking every 4 microseconds (the RFC 793 ISN clock), taken from the
`now` the caller hands in; F is a keyed hash of the connection 4-tuple, here BLAKE2s
keyed with the secret (a PRF, as §3 asks: "MD5 ... or a better one").  A new
incarnation of the same 4-tuple therefore starts above the old one's sequence space
while it moves on at 250 000 per second, and an off-path attacker who does not know
the secret cannot predict the ISN of any other 4-tuple (RFC 6528 §3, RFC 9293 §3.4.1).
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from stack.tcp.clock import SECOND, US

try:  # hashlib.blake2s itself, without hashlib's loading of OpenSSL (2 ms of start-up)
    from _blake2 import blake2s
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2s

Address = IPv4Address | IPv6Address
Endpoint = tuple[Address, int]

TICK = 4 * US  # M advances once every 4 µs (RFC 6528 §3, RFC 9293 §3.4.1)
KEY_BYTES = 32  # BLAKE2s key size; longer secrets are hashed down to it
_PORTS = struct.Struct("!HH")


def _key(secret: bytes) -> bytes:
    if len(secret) <= KEY_BYTES:
        return secret
    return blake2s(secret, person=b"pytcpkey").digest()


class IsnGenerator:
    """ISN(local, remote, now) per RFC 6528 with a secret handed in by the caller.

    The secret should be at least 128 random bits (RFC 6528 §3) and live as long as
    the host; tests pin it so ISNs are reproducible.
    """

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        self._key = _key(bytes(secret))

    def offset(self, local: Endpoint, remote: Endpoint) -> int:
        """F(localip, localport, remoteip, remoteport, secretkey): 32 bits."""
        h = blake2s(key=self._key, digest_size=4, person=b"pytcpisn")
        h.update(local[0].packed)
        h.update(remote[0].packed)
        h.update(_PORTS.pack(local[1], remote[1]))
        return int.from_bytes(h.digest(), "big")

    def __call__(self, local: Endpoint, remote: Endpoint, now: int) -> int:
        """The ISN for a connection from `local` to `remote` opened at `now` (ns)."""
        m = now // TICK
        return (m + self.offset(local, remote)) & 0xFFFFFFFF


COOKIE_PERIOD = 64 * SECOND  # RFC 4987 §3.6: t, a counter that increases every 64 s
COOKIE_MAX_AGE = 1  # accept cookies of the current and the previous period
# RFC 4987 §3.6: 3 bits encode the MSS as one of 8 values; the cookie carries the
# largest entry not above what the client offered (so we never send more).
COOKIE_MSS = (536, 1200, 1300, 1380, 1440, 1452, 1460, 8960)
_COOKIE_HASH = struct.Struct("!IQB")
# Linux (cookie_init_timestamp): with timestamps, the options a cookie cannot hold ride
# in the low 6 bits of our TSval, echoed back in the ACK's TSecr: 4 bits of the peer's
# window shift (15: none offered), 1 bit SACK-permitted, 1 bit ECN (unused here).
TS_OPT_WSCALE = 0xF
TS_OPT_SACK = 1 << 4
TS_OPT_MASK = 0x3F
MAX_COOKIE_WSCALE = 14  # RFC 7323 §2.3


def cookie_tsval(ts_now: int, wscale: int | None, sack: bool) -> int:
    """Our TSval for a cookie SYN-ACK: `ts_now` (the ms clock) with its low 6 bits
    replaced by the options, never ahead of `ts_now` (the connection's later TSvals
    must not go backwards, RFC 7323 §5.4)."""
    options = (TS_OPT_WSCALE if wscale is None else min(wscale, MAX_COOKIE_WSCALE)) | (
        TS_OPT_SACK if sack else 0
    )
    ts = ((ts_now & ~TS_OPT_MASK) | options) & 0xFFFFFFFF
    ahead = (ts - ts_now) & 0xFFFFFFFF
    if 0 < ahead < 1 << 31:
        ts = (ts - (TS_OPT_MASK + 1)) & 0xFFFFFFFF
    return ts


def cookie_options(tsecr: int) -> tuple[int | None, bool]:
    """The peer's window shift (None: it offered none) and SACK-permitted from the TSecr
    of an ACK answering a cookie SYN-ACK. Every 4-bit shift is valid: 15 means none and
    a shift above 14 was sent as 14 (RFC 7323 §2.3)."""
    wscale = tsecr & TS_OPT_WSCALE
    return (None if wscale == TS_OPT_WSCALE else wscale), bool(tsecr & TS_OPT_SACK)


class SynCookies:
    """Stateless SYN-ACK sequence numbers (RFC 4987 §3.6), for a listener whose
    SYN backlog is full.

    The cookie is our ISS: 5 bits of t mod 32 (t counts 64 s periods of `now`),
    3 bits of MSS index, and 24 bits of a keyed hash of the 4-tuple, the client's
    ISN and t.  The ACK that completes the handshake acknowledges cookie + 1;
    `check` recomputes the hash and returns the MSS, or None for a forged, stale
    or mismatched ACK.  Without timestamps only the MSS survives (RFC 4987 §3.6's
    known limitation); with them, window scale and SACK-permitted ride in the TSval
    (`cookie_tsval`, `cookie_options`), as Linux does.
    """

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        # A key distinct from the ISN generator's even for the same secret.
        self._key = blake2s(bytes(secret), person=b"pytcpsyn").digest()

    def _hash(self, local: Endpoint, remote: Endpoint, peer_isn: int, t: int, index: int) -> int:
        h = blake2s(key=self._key, digest_size=3, person=b"pytcpck")
        h.update(local[0].packed)
        h.update(remote[0].packed)
        h.update(_PORTS.pack(local[1], remote[1]))
        h.update(_COOKIE_HASH.pack(peer_isn & 0xFFFFFFFF, t, index))
        return int.from_bytes(h.digest(), "big")

    def make(self, local: Endpoint, remote: Endpoint, peer_isn: int, mss: int, now: int) -> int:
        """The ISS for a SYN-ACK answering a SYN with sequence `peer_isn` offering
        `mss` (536 when the SYN had no MSS option, RFC 9293 §3.7.1)."""
        index = 0
        for i, value in enumerate(COOKIE_MSS):
            if value <= mss:
                index = i
        t = now // COOKIE_PERIOD
        return ((t & 0x1F) << 27) | (index << 24) | self._hash(local, remote, peer_isn, t, index)

    def check(
        self, local: Endpoint, remote: Endpoint, peer_isn: int, cookie: int, now: int
    ) -> int | None:
        """The MSS encoded in `cookie` (SEG.ACK - 1 of the client's ACK, whose
        SEG.SEQ - 1 is `peer_isn`) if we made it within the last 64-128 s, else None."""
        cookie &= 0xFFFFFFFF
        current = now // COOKIE_PERIOD
        age = (current - (cookie >> 27)) & 0x1F
        if age > COOKIE_MAX_AGE:
            return None
        t = current - age
        if t < 0:
            return None
        index = (cookie >> 24) & 0x7
        if self._hash(local, remote, peer_isn, t, index) != cookie & 0xFFFFFF:
            return None
        return COOKIE_MSS[index]
