"""The IPv4 header (RFC 791 §3.1): `Ipv4Header` parse and build. Imports stdlib, checksum.

We never fragment: a fragment is refused here with reason "fragment" (the host then
reassembles it, stack/fragments.py), and what we build has DF set by default (RFC 1191
path MTU discovery answers with ICMP "fragmentation needed" instead).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from stack.wire import WireError
from stack.wire.checksum import internet_checksum
from stack.wire.frozen import fast_init

PROTO_ICMP = 1
PROTO_TCP = 6

HEADER = struct.Struct("!BBHHHBBHII")  # RFC 791 §3.1, without options
HEADER_LEN = HEADER.size  # 20
MAX_TOTAL_LENGTH = 0xFFFF

_FLAG_DF = 0x4000  # RFC 791 §3.1 "Flags" bit 1: don't fragment
_FLAG_MF = 0x2000  # bit 2: more fragments
_OFFSET_MASK = 0x1FFF
# Parsed addresses by value: a stream of packets between the same two hosts builds no
# new IPv4Address per packet (its constructor is Python code). A cache only, cleared
# when full, so a flood of sources cannot grow it.
_ADDRESSES: dict[int, IPv4Address] = {}
_ADDRESSES_MAX = 1024


def _address(value: int) -> IPv4Address:
    address = _ADDRESSES.get(value)
    if address is None:
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        address = _ADDRESSES[value] = IPv4Address(value)
    return address


@fast_init
@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """The fields of one IPv4 header we use; options are skipped on parse, never built."""

    src: IPv4Address
    dst: IPv4Address
    protocol: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    dont_fragment: bool = True
    total_length: int = 0  # filled in by parse
    header_length: int = 20  # filled in by parse (IHL * 4)

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, *, verify_checksum: bool = True
    ) -> tuple[Ipv4Header, memoryview]:
        """Parse an IPv4 packet: its header and its payload cut to the total length.

        The payload is a memoryview into `data` (no copy). Raises only WireError.
        `verify_checksum` False: the header checksum is not checked (a packet the link
        vouches for, built by the kernel itself).
        """
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        header, header_len, total_length = _parse_header(
            view, quoted=False, verify=verify_checksum
        )
        return header, view[header_len:total_length]

    @classmethod
    def parse_quoted(cls, data: bytes | bytearray | memoryview) -> tuple[Ipv4Header, memoryview]:
        """Parse the header quoted inside an ICMP error (RFC 792): the packet is cut short.

        The total length is that of the original packet, longer than what is quoted, so it
        is not held against the buffer, and the header checksum is not verified (routers
        and NATs rewrite quoted headers; Linux does not check it either). The payload is
        whatever follows the header.
        """
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        header, header_len, _ = _parse_header(view, quoted=True)
        return header, view[header_len:]

    def build(self, payload: bytes | bytearray | memoryview) -> bytes:
        """The packet's bytes: a 20-byte header (total length, checksum set) and payload.

        Raises ValueError when the packet would exceed 65535 bytes or a field is out of range.
        """
        total_length = HEADER_LEN + len(payload)
        return b"".join((self.build_header(total_length), payload))

    def build_header(self, total_length: int | None = None) -> bytes:
        """Only the 20-byte header, for a payload of total_length - 20 bytes.

        Without an argument the header keeps `self.total_length` (ICMP quotes, tests).
        """
        if total_length is None:
            total_length = self.total_length
        if total_length > MAX_TOTAL_LENGTH:
            raise ValueError(f"IPv4 total length {total_length} > {MAX_TOTAL_LENGTH}")
        try:
            header = HEADER.pack(
                0x45,  # version 4, IHL 5: we send no IP options
                self.tos,
                total_length,
                self.ident,
                _FLAG_DF if self.dont_fragment else 0,
                self.ttl,
                self.protocol,
                0,
                int(self.src),
                int(self.dst),
            )
        except struct.error as exc:
            raise ValueError(f"IPv4 field out of range: {exc}") from None
        checksum = internet_checksum(header)
        return header[:10] + checksum.to_bytes(2, "big") + header[12:]


def _parse_header(
    view: memoryview, *, quoted: bool, verify: bool = True
) -> tuple[Ipv4Header, int, int]:
    length = len(view)
    if length < HEADER_LEN:
        raise WireError("truncated", f"IPv4 packet of {length} bytes < {HEADER_LEN}")
    (ver_ihl, tos, total_length, ident, frag, ttl, protocol, _, src, dst) = HEADER.unpack_from(view)
    version = ver_ihl >> 4
    if version != 4:
        raise WireError("bad-version", f"IP version {version} != 4")
    header_len = (ver_ihl & 0x0F) * 4
    if header_len < HEADER_LEN:
        raise WireError("bad-ihl", f"IHL {ver_ihl & 0x0F} < 5")
    if header_len > length:
        raise WireError("truncated", f"IPv4 header of {header_len} bytes in {length} bytes")
    if total_length < header_len:
        raise WireError("bad-total-length", f"total length {total_length} < IHL {header_len}")
    if not quoted:
        if total_length > length:
            raise WireError("truncated", f"total length {total_length} > {length} bytes received")
        # RFC 791 §3.1 "Header Checksum": the sum over the header, checksum included.
        if verify and internet_checksum(view[:header_len]) != 0:
            raise WireError("bad-header-checksum", "IPv4 header checksum does not verify")
    # A quoted first fragment (MF, offset 0) still starts with the TCP header we need.
    if frag & (_OFFSET_MASK if quoted else _FLAG_MF | _OFFSET_MASK):
        raise WireError(
            "fragment",
            f"fragment (MF={1 if frag & _FLAG_MF else 0}, offset {(frag & _OFFSET_MASK) * 8})",
        )
    header = Ipv4Header(
        _address(src),
        _address(dst),
        protocol,
        ttl,
        tos,
        ident,
        bool(frag & _FLAG_DF),
        total_length,
        header_len,
    )
    return header, header_len, total_length
