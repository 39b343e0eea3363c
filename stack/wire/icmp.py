"""ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): destination unreachable (and IPv6 packet too
big) about our TCP segments, echo (ping), and the neighbour solicitation and
advertisement of RFC 4861 §4.3-4.4 that a point-to-point link may still carry.

Imports the standard library, `stack.wire` (WireError), checksum, ipv4 and ipv6. Only the
messages the host acts on are views here; any other well-formed ICMP message parses to None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from stack.wire import WireError
from stack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum
from stack.wire.ipv4 import PROTO_TCP, Ipv4Header
from stack.wire.ipv6 import PROTO_ICMPV6, Ipv6Header

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACHABLE = 3
TYPE_ECHO_REQUEST = 8

# ICMPv6 types (RFC 4443 §2.1, §3, §4).
TYPE6_DEST_UNREACHABLE = 1
TYPE6_PACKET_TOO_BIG = 2
TYPE6_ECHO_REQUEST = 128
TYPE6_ECHO_REPLY = 129
TYPE6_NEIGHBOUR_SOLICIT = 135  # RFC 4861 §4.3
TYPE6_NEIGHBOUR_ADVERT = 136  # RFC 4861 §4.4
# Link-local housekeeping a host takes in and acts on no further (RFC 4861 §6.2.6: a host
# ignores router solicitations; MLD reports and queries, RFC 3810, ask nothing of a
# node that joins no group; RA and redirects have no use on a TUN with its addresses).
TYPES6_LINK = frozenset({130, 131, 132, 133, 134, 135, 136, 137, 143})
ND_HOP_LIMIT = 255  # RFC 4861 §7.1.1: a neighbour discovery message never crossed a router
NA_SOLICITED = 0x40000000  # RFC 4861 §4.4 S flag
NA_OVERRIDE = 0x20000000  # O flag
_ECHO_REPLY_TO = {TYPE_ECHO_REQUEST: TYPE_ECHO_REPLY, TYPE6_ECHO_REQUEST: TYPE6_ECHO_REPLY}

# Destination unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1).
CODE_NET_UNREACHABLE = 0
CODE_HOST_UNREACHABLE = 1
CODE_PROTOCOL_UNREACHABLE = 2
CODE_PORT_UNREACHABLE = 3
CODE_FRAGMENTATION_NEEDED = 4  # RFC 1191 §4: carries the next-hop MTU
CODE_SOURCE_ROUTE_FAILED = 5
CODE_ADMIN_PROHIBITED = 13

HEADER = struct.Struct("!BBHHH")  # type, code, checksum, two 16-bit words (RFC 792)
HEADER_LEN = HEADER.size  # 8
QUOTED_DATA_LEN = 8  # RFC 792: "the internet header plus the first 64 bits" of the datagram
_QUOTED_TCP = struct.Struct("!HHI")  # source port, destination port, sequence number


@dataclass(frozen=True, slots=True)
class IcmpError:
    """Destination unreachable (type 3, any code) about a TCP segment we sent."""

    type: int
    code: int
    mtu: int | None  # next-hop MTU when code 4 (frag needed), as sent (0: router too old)
    quoted: Ipv4Header  # the header of the packet we sent
    src_port: int  # from the first 8 bytes of the quoted TCP header
    dst_port: int
    seq: int

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> IcmpError | None:
        """Parse an ICMP message (the IP payload). None: valid, but not an error about TCP.

        Raises only WireError.
        """
        message = parse(data)
        return message if isinstance(message, IcmpError) else None

    def build(self) -> bytes:
        """The ICMP message: quoted header (with its total length) and ports and sequence."""
        rest = self.mtu if self.code == CODE_FRAGMENTATION_NEEDED and self.mtu else 0
        try:
            quoted = self.quoted.build_header(
                self.quoted.total_length or self.quoted.header_length + QUOTED_DATA_LEN
            ) + _QUOTED_TCP.pack(self.src_port, self.dst_port, self.seq)
        except struct.error as exc:
            raise ValueError(f"quoted TCP field out of range: {exc}") from None
        return _build(self.type, self.code, rest, quoted)


@dataclass(frozen=True, slots=True)
class Icmpv6Error:
    """ICMPv6 destination unreachable (type 1, any code) or packet too big (type 2, with
    the MTU, RFC 4443 §3.2) about a TCP segment we sent."""

    type: int
    code: int
    mtu: int | None  # packet too big: the MTU of the next-hop link
    quoted: Ipv6Header  # the header of the packet we sent
    src_port: int
    dst_port: int
    seq: int

    def build(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        """The ICMPv6 message sent from src (the reporter) to dst (the original sender)."""
        rest = (self.mtu or 0) if self.type == TYPE6_PACKET_TOO_BIG else 0
        try:
            quoted = self.quoted.build_header(
                self.quoted.payload_length or QUOTED_DATA_LEN
            ) + _QUOTED_TCP.pack(self.src_port, self.dst_port, self.seq)
        except struct.error as exc:
            raise ValueError(f"quoted TCP field out of range: {exc}") from None
        return _build(
            self.type, self.code, rest, quoted, _v6_pseudo(src, dst, HEADER_LEN + len(quoted))
        )


@dataclass(frozen=True, slots=True)
class IcmpEcho:
    """Echo request or reply: ICMPv4 types 8 and 0 (RFC 792), ICMPv6 128 and 129 (RFC 4443
    §4). An ICMPv6 message's checksum covers the pseudo-header: build it with src, dst."""

    type: int
    ident: int
    seq: int
    payload: bytes | memoryview = b""
    code: int = 0

    @property
    def is_request(self) -> bool:
        return self.type in _ECHO_REPLY_TO

    def reply(self) -> IcmpEcho:
        """The echo reply to this request: same identifier, sequence number and data."""
        return IcmpEcho(
            _ECHO_REPLY_TO.get(self.type, self.type), self.ident, self.seq, self.payload
        )

    def build(self, src: IPv6Address | None = None, dst: IPv6Address | None = None) -> bytes:
        """The message; src and dst (the IPv6 packet's) are needed for ICMPv6 only."""
        initial = 0
        if self.type in (TYPE6_ECHO_REQUEST, TYPE6_ECHO_REPLY):
            if src is None or dst is None:
                raise ValueError("an ICMPv6 echo needs the IPv6 src and dst for its checksum")
            initial = _v6_pseudo(src, dst, HEADER_LEN + len(self.payload))
        return _build(self.type, self.code, (self.ident << 16) | self.seq, self.payload, initial)


def parse(data: bytes | bytearray | memoryview) -> IcmpError | IcmpEcho | None:
    """Parse one ICMP message (the IP payload, already cut to the IP total length).

    Returns an IcmpError (destination unreachable quoting TCP), an IcmpEcho, or None for a
    well-formed message of a type we do not act on. Raises only WireError.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    if len(view) < HEADER_LEN:
        raise WireError("truncated", f"ICMP message of {len(view)} bytes < {HEADER_LEN}")
    # RFC 792: the checksum covers the whole ICMP message.
    if internet_checksum(view) != 0:
        raise WireError("bad-checksum", "ICMP checksum does not verify")
    icmp_type, code, _, word1, word2 = HEADER.unpack_from(view)
    if icmp_type in (TYPE_ECHO_REQUEST, TYPE_ECHO_REPLY):
        return IcmpEcho(icmp_type, word1, word2, view[HEADER_LEN:], code)
    if icmp_type != TYPE_DEST_UNREACHABLE:
        return None
    quoted, quoted_payload = Ipv4Header.parse_quoted(view[HEADER_LEN:])
    if quoted.protocol != PROTO_TCP:
        return None
    if len(quoted_payload) < QUOTED_DATA_LEN:
        raise WireError(
            "truncated",
            f"ICMP quotes {len(quoted_payload)} bytes of TCP header < {QUOTED_DATA_LEN}",
        )
    src_port, dst_port, seq = _QUOTED_TCP.unpack_from(quoted_payload)
    mtu = word2 if code == CODE_FRAGMENTATION_NEEDED else None
    return IcmpError(icmp_type, code, mtu, quoted, src_port, dst_port, seq)


def build_unreachable(
    code: int, original: bytes | bytearray | memoryview, *, mtu: int | None = None
) -> bytes:
    """A destination unreachable message about `original` (an IPv4 packet), as a router
    or host sends it: the original's IP header and its first 64 bits of data (RFC 792).

    `mtu` is the next-hop MTU for code 4 (RFC 1191 §4). Raises ValueError on a bad original.
    """
    view = memoryview(original)
    if len(view) < 1:
        raise ValueError("empty original packet")
    header_len = (view[0] & 0x0F) * 4
    quoted = view[: header_len + QUOTED_DATA_LEN]
    return _build(TYPE_DEST_UNREACHABLE, code, mtu or 0, quoted)


def parse_v6(
    data: bytes | bytearray | memoryview, src: IPv6Address, dst: IPv6Address
) -> Icmpv6Error | IcmpEcho | None:
    """Parse one ICMPv6 message carried from src to dst (RFC 4443).

    Returns an Icmpv6Error (destination unreachable or packet too big quoting TCP), an
    IcmpEcho, or None for a well-formed message we do not act on (time exceeded, parameter
    problem, neighbour discovery...). Raises only WireError.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    if len(view) < HEADER_LEN:
        raise WireError("truncated", f"ICMPv6 message of {len(view)} bytes < {HEADER_LEN}")
    # RFC 4443 §2.3: the checksum covers the IPv6 pseudo-header too.
    if internet_checksum(view, _v6_pseudo(src, dst, len(view))) != 0:
        raise WireError("bad-checksum", "ICMPv6 checksum does not verify")
    icmp_type, code, _, word1, word2 = HEADER.unpack_from(view)
    if icmp_type in (TYPE6_ECHO_REQUEST, TYPE6_ECHO_REPLY):
        return IcmpEcho(icmp_type, word1, word2, view[HEADER_LEN:], code)
    if icmp_type not in (TYPE6_DEST_UNREACHABLE, TYPE6_PACKET_TOO_BIG):
        return None
    quoted, quoted_payload = Ipv6Header.parse_quoted(view[HEADER_LEN:])
    if quoted.protocol != PROTO_TCP:
        return None
    if len(quoted_payload) < QUOTED_DATA_LEN:
        raise WireError(
            "truncated",
            f"ICMPv6 quotes {len(quoted_payload)} bytes of TCP header < {QUOTED_DATA_LEN}",
        )
    src_port, dst_port, seq = _QUOTED_TCP.unpack_from(quoted_payload)
    mtu = (word1 << 16) | word2 if icmp_type == TYPE6_PACKET_TOO_BIG else None
    return Icmpv6Error(icmp_type, code, mtu, quoted, src_port, dst_port, seq)


@dataclass(frozen=True, slots=True)
class NeighbourSolicit:
    """RFC 4861 §4.3: who has `target`? (Options, a link-layer address, are not kept.)"""

    target: IPv6Address


def parse_link_message(
    data: bytes | bytearray | memoryview, src: IPv6Address, dst: IPv6Address
) -> NeighbourSolicit | None:
    """A message of TYPES6_LINK: a NeighbourSolicit (checksum and length checked, RFC
    4861 §7.1.1), or None for the rest, which a host on a TUN takes in silently.
    Raises only WireError."""
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    if len(view) < HEADER_LEN:
        raise WireError("truncated", f"ICMPv6 message of {len(view)} bytes < {HEADER_LEN}")
    if internet_checksum(view, _v6_pseudo(src, dst, len(view))) != 0:
        raise WireError("bad-checksum", "ICMPv6 checksum does not verify")
    if view[0] != TYPE6_NEIGHBOUR_SOLICIT:
        return None
    if view[1] != 0 or len(view) < HEADER_LEN + 16:
        raise WireError("bad-neighbour-solicit", "neighbour solicitation: code != 0 or < 24 bytes")
    return NeighbourSolicit(IPv6Address(bytes(view[HEADER_LEN : HEADER_LEN + 16])))


def build_neighbour_advert(
    target: IPv6Address, src: IPv6Address, dst: IPv6Address, *, solicited: bool
) -> bytes:
    """RFC 4861 §4.4: `target` is here. No target link-layer address option: a TUN has
    no link-layer addresses (§4.6.1 leaves it out on such links)."""
    flags = NA_OVERRIDE | (NA_SOLICITED if solicited else 0)
    body = target.packed
    return _build(
        TYPE6_NEIGHBOUR_ADVERT, 0, flags, body, _v6_pseudo(src, dst, HEADER_LEN + len(body))
    )


def build_unreachable_v6(
    icmp_type: int,
    code: int,
    original: bytes | bytearray | memoryview,
    src: IPv6Address,
    dst: IPv6Address,
    *,
    mtu: int | None = None,
) -> bytes:
    """An ICMPv6 error (type 1 or 2) about `original` (an IPv6 packet) sent from src to dst,
    quoting as much of the original as fits the minimum MTU (RFC 4443 §2.4 (c))."""
    quoted = memoryview(original)[: 1280 - 40 - HEADER_LEN]
    return _build(icmp_type, code, mtu or 0, quoted, _v6_pseudo(src, dst, HEADER_LEN + len(quoted)))


def _v6_pseudo(src: IPv6Address, dst: IPv6Address, length: int) -> int:
    return pseudo_header_sum(src, dst, PROTO_ICMPV6, length)


def _build(
    icmp_type: int,
    code: int,
    rest: int,
    body: bytes | bytearray | memoryview,
    initial: int = 0,
) -> bytes:
    try:
        header = HEADER.pack(icmp_type, code, 0, rest >> 16, rest & 0xFFFF)
    except struct.error as exc:
        raise ValueError(f"ICMP field out of range: {exc}") from None
    # The header is 8 bytes, so the body's words line up: sum it in place, no copy first.
    checksum = internet_checksum(body, ones_sum(header, initial))
    return b"".join((header[:2], checksum.to_bytes(2, "big"), header[4:], body))
