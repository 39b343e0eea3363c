"""The IPv6 header (RFC 8200 §3) and its extension-header chain: `Ipv6Header` parse and build.

Imports the standard library and `stack.wire` (WireError). The same shape as `Ipv4Header`:
`parse` returns the header and the upper-layer payload (after any extension headers);
`protocol` is the upper-layer protocol found at the end of the chain. We never fragment and
reassemble here: a fragment is refused with reason "fragment", as in IPv4 (the host
reassembles it, stack/fragments.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from stack.wire import WireError

PROTO_TCP = 6
PROTO_ICMPV6 = 58

# Extension headers this parser walks (RFC 8200 §4.1 order), and the chain's ends.
NH_HOP_BY_HOP = 0
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_DESTINATION = 60
NH_NO_NEXT = 59

HEADER = struct.Struct("!IHBB16s16s")  # version/class/flow, payload length, next, hop limit
HEADER_LEN = HEADER.size  # 40
MAX_PAYLOAD_LENGTH = 0xFFFF  # jumbograms (RFC 2675) are neither sent nor accepted

_FRAGMENT = struct.Struct("!BBHI")  # next header, reserved, offset/flags, identification


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    """The fields of one IPv6 header we use; extension headers are walked, never built."""

    src: IPv6Address
    dst: IPv6Address
    protocol: int  # the upper-layer "next header" at the end of the chain
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    payload_length: int = 0  # filled in by parse (RFC 8200 "Payload Length")
    header_length: int = 40  # filled in by parse: 40 + the extension headers

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> tuple[Ipv6Header, memoryview]:
        """Parse an IPv6 packet: its header and the upper-layer payload, cut to the payload
        length. The payload is a memoryview into `data`. Raises only WireError."""
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        return _parse(view, quoted=False)

    @classmethod
    def parse_quoted(cls, data: bytes | bytearray | memoryview) -> tuple[Ipv6Header, memoryview]:
        """Parse the packet quoted inside an ICMPv6 error (RFC 4443 §2.4 (c)): cut short, so
        the payload length is not held against the buffer; the payload is what is there."""
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        return _parse(view, quoted=True)

    def build(self, payload: bytes | bytearray | memoryview) -> bytes:
        """The packet's bytes: a 40-byte header (no extension headers) and the payload.

        Raises ValueError when the payload exceeds 65535 bytes or a field is out of range.
        """
        return b"".join((self.build_header(len(payload)), payload))

    def build_header(self, payload_length: int | None = None) -> bytes:
        """Only the 40-byte header; without an argument it keeps `self.payload_length`."""
        if payload_length is None:
            payload_length = self.payload_length
        if payload_length > MAX_PAYLOAD_LENGTH:
            raise ValueError(f"IPv6 payload length {payload_length} > {MAX_PAYLOAD_LENGTH}")
        if not 0 <= self.traffic_class <= 0xFF or not 0 <= self.flow_label <= 0xFFFFF:
            raise ValueError("IPv6 traffic class or flow label out of range")
        try:
            return HEADER.pack(
                (6 << 28) | (self.traffic_class << 20) | self.flow_label,
                payload_length,
                self.protocol,
                self.hop_limit,
                self.src.packed,
                self.dst.packed,
            )
        except struct.error as exc:
            raise ValueError(f"IPv6 field out of range: {exc}") from None


def _parse(view: memoryview, *, quoted: bool) -> tuple[Ipv6Header, memoryview]:
    length = len(view)
    if length < HEADER_LEN:
        raise WireError("truncated", f"IPv6 packet of {length} bytes < {HEADER_LEN}")
    first, payload_length, next_header, hop_limit, src, dst = HEADER.unpack_from(view)
    version = first >> 28
    if version != 6:
        raise WireError("bad-version", f"IP version {version} != 6")
    end = HEADER_LEN + payload_length
    if quoted:
        end = min(end, length)
    elif end > length:
        raise WireError(
            "truncated", f"payload length {payload_length} > {length - HEADER_LEN} bytes received"
        )
    protocol, offset = _walk_extension_headers(view, next_header, end)
    header = Ipv6Header(
        IPv6Address(bytes(src)),
        IPv6Address(bytes(dst)),
        protocol,
        hop_limit,
        (first >> 20) & 0xFF,
        first & 0xFFFFF,
        payload_length,
        offset,
    )
    return header, view[offset:end]


def _walk_extension_headers(view: memoryview, next_header: int, end: int) -> tuple[int, int]:
    """Follow the chain from the fixed header to the upper layer (RFC 8200 §4)."""
    offset = HEADER_LEN
    first = True
    while True:
        if next_header in (NH_HOP_BY_HOP, NH_DESTINATION, NH_ROUTING):
            if next_header == NH_HOP_BY_HOP and not first:
                # RFC 8200 §4.1: hop-by-hop options only immediately after the IPv6 header.
                raise WireError("bad-extension-header", "hop-by-hop options not first")
            if offset + 2 > end:
                raise WireError("truncated", f"extension header {next_header} cut short")
            size = (view[offset + 1] + 1) * 8
            if offset + size > end:
                raise WireError(
                    "truncated", f"extension header {next_header} of {size} bytes cut short"
                )
            if next_header == NH_ROUTING:
                # RFC 8200 §4.4: segments left > 0 means we are not the final destination.
                if view[offset + 3]:
                    raise WireError("routing-header", f"routing header, {view[offset + 3]} left")
            else:
                _check_options(view[offset + 2 : offset + size], next_header)
            next_header = view[offset]
            offset += size
        elif next_header == NH_FRAGMENT:
            if offset + 8 > end:
                raise WireError("truncated", "fragment header cut short")
            following, _, frag, _ = _FRAGMENT.unpack_from(view, offset)
            # RFC 6946: an atomic fragment (offset 0, M clear) is a whole packet.
            if frag & 0xFFF9:
                raise WireError("fragment", f"fragment (M={frag & 1}, offset {frag & 0xFFF8})")
            next_header = following
            offset += 8
        else:
            return next_header, offset
        first = False


def _check_options(options: memoryview, next_header: int) -> None:
    """Walk hop-by-hop or destination options (RFC 8200 §4.2): an unrecognised option whose
    two high-order type bits are not 00 says "discard the packet"."""
    i = 0
    end = len(options)
    while i < end:
        kind = options[i]
        if kind == 0:  # Pad1
            i += 1
            continue
        if i + 2 > end or i + 2 + options[i + 1] > end:
            raise WireError("bad-extension-header", f"option {kind} overruns header {next_header}")
        if kind != 1 and kind >> 6:  # PadN is 1; nothing else is recognised here
            raise WireError(
                "unrecognized-ipv6-option", f"option type {kind:#04x} in header {next_header}"
            )
        i += 2 + options[i + 1]
