"""ICMPv4 (RFC 792): destination unreachable about our TCP segments, and echo (ping).

Imports the standard library, `stack.wire` (WireError), checksum and ipv4. Only the
messages the host acts on are views here; any other well-formed ICMP message parses to None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire import WireError
from stack.wire.checksum import internet_checksum, ones_sum
from stack.wire.ipv4 import PROTO_TCP, Ipv4Header

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACHABLE = 3
TYPE_ECHO_REQUEST = 8

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
class IcmpEcho:
    """Echo request (type 8) or echo reply (type 0), RFC 792 "Echo or Echo Reply Message"."""

    type: int
    ident: int
    seq: int
    payload: bytes | memoryview = b""
    code: int = 0

    @property
    def is_request(self) -> bool:
        return self.type == TYPE_ECHO_REQUEST

    def reply(self) -> IcmpEcho:
        """The echo reply to this request: same identifier, sequence number and data."""
        return IcmpEcho(TYPE_ECHO_REPLY, self.ident, self.seq, self.payload)

    def build(self) -> bytes:
        return _build(self.type, self.code, (self.ident << 16) | self.seq, self.payload)


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


def _build(icmp_type: int, code: int, rest: int, body: bytes | bytearray | memoryview) -> bytes:
    try:
        header = HEADER.pack(icmp_type, code, 0, rest >> 16, rest & 0xFFFF)
    except struct.error as exc:
        raise ValueError(f"ICMP field out of range: {exc}") from None
    # The header is 8 bytes, so the body's words line up: sum it in place, no copy first.
    checksum = internet_checksum(body, ones_sum(header))
    return b"".join((header[:2], checksum.to_bytes(2, "big"), header[4:], body))
