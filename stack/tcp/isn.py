"""Initial sequence numbers (RFC 6528). Imports hashlib and ipaddress only.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey)   (RFC 6528 §3)

M is a timer ticking every 4 microseconds (the RFC 793 ISN clock), taken from the
`now` the caller hands in; F is a keyed hash of the connection 4-tuple, here BLAKE2s
keyed with the secret (a PRF, as §3 asks: "MD5 ... or a better one").  A new
incarnation of the same 4-tuple therefore starts above the old one's sequence space
while it moves on at 250 000 per second, and an off-path attacker who does not know
the secret cannot predict the ISN of any other 4-tuple (RFC 6528 §3, RFC 9293 §3.4.1).
"""

from __future__ import annotations

import hashlib
import struct
from ipaddress import IPv4Address, IPv6Address

from stack.tcp.clock import US

Address = IPv4Address | IPv6Address
Endpoint = tuple[Address, int]

TICK = 4 * US  # M advances once every 4 µs (RFC 6528 §3, RFC 9293 §3.4.1)
KEY_BYTES = 32  # BLAKE2s key size; longer secrets are hashed down to it
_PORTS = struct.Struct("!HH")


def _key(secret: bytes) -> bytes:
    if len(secret) <= KEY_BYTES:
        return secret
    return hashlib.blake2s(secret, person=b"pytcpkey").digest()


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
        h = hashlib.blake2s(key=self._key, digest_size=4, person=b"pytcpisn")
        h.update(local[0].packed)
        h.update(remote[0].packed)
        h.update(_PORTS.pack(local[1], remote[1]))
        return int.from_bytes(h.digest(), "big")

    def __call__(self, local: Endpoint, remote: Endpoint, now: int) -> int:
        """The ISN for a connection from `local` to `remote` opened at `now` (ns)."""
        m = now // TICK
        return (m + self.offset(local, remote)) & 0xFFFFFFFF
