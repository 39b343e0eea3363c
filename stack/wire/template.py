"""Prebuilt IPv4 + TCP headers for one flow's common segments. Imports wire only.

A bulk transfer sends thousands of segments a second whose headers differ only in a
few fields: the IP total length and identification (and so the IP header checksum),
the TCP sequence and acknowledgment numbers, flags, window and timestamps, and the
pseudo-header sum left in the TCP checksum field for the device to finish (checksum
offload). `HeaderTemplate` holds everything else of one flow, fixed at creation (the
addresses, ports, TTL, DF, the TCP data offset and the option layout), and packs a
whole header with one `struct` call, its IP checksum from a precomputed sum of the
fixed words: the bytes are exactly those `Ipv4Header.build_header` followed by
`TcpSegment.build_header(partial=True)` give (tests/wire/test_template.py compares
them over any field values).

Only the segments most of a transfer consists of have a template: IPv4, no IP
options, and TCP with no options or with the timestamps option alone (NOP, NOP,
kind 8; RFC 7323 appendix A's layout, as Linux writes it). Anything else (SYNs, SACK
blocks, urgent data, IPv6) goes through the general builders.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from stack.wire import PROTO_TCP
from stack.wire.tcp import HEADER_LEN, OPT_NOP, OPT_TIMESTAMPS

_IPV4_LEN = 20
_TS_LEN = 12  # NOP, NOP, kind 8, length 10, TSval, TSecr
_FLAG_DF = 0x4000
_FOLD = 0xFFFF
# IPv4 header (RFC 791 §3.1, no options), TCP header (RFC 9293 §3.1) and, for the
# timestamps layout, NOP NOP kind length TSval TSecr (RFC 7323 §3).
_PLAIN = struct.Struct("!BBHHHBBHIIHHIIBBHHH")
_WITH_TS = struct.Struct("!BBHHHBBHIIHHIIBBHHHBBBBII")


def _fold(total: int) -> int:
    """A sum of 16-bit words folded to 16 bits (RFC 1071 end-around carry)."""
    while total > _FOLD:
        total = (total & _FOLD) + (total >> 16)
    return total


class HeaderTemplate:
    """One IPv4 flow's TCP headers (`timestamps`: with the timestamps option), built by
    patching the varying fields into what is fixed."""

    __slots__ = (
        "_dst",
        "_frag",
        "_ip_sum",
        "_offset",
        "_ports",
        "_pseudo",
        "_src",
        "_struct",
        "_ttl_proto",
        "dont_fragment",
        "header_len",
        "timestamps",
    )  # fmt: skip

    def __init__(
        self,
        src: IPv4Address,
        dst: IPv4Address,
        src_port: int,
        dst_port: int,
        *,
        ttl: int,
        dont_fragment: bool,
        timestamps: bool,
    ) -> None:
        self.timestamps = timestamps
        self.dont_fragment = dont_fragment
        tcp_len = HEADER_LEN + (_TS_LEN if timestamps else 0)
        self.header_len = _IPV4_LEN + tcp_len
        self._struct = _WITH_TS if timestamps else _PLAIN
        self._src, self._dst = int(src), int(dst)
        self._ports = (src_port, dst_port)
        self._ttl_proto = (ttl, PROTO_TCP)
        self._frag = _FLAG_DF if dont_fragment else 0
        self._offset = (tcp_len >> 2) << 4
        src_i, dst_i = self._src, self._dst
        # The IP header's words that never change: version/IHL (tos added per packet),
        # flags/fragment offset, TTL/protocol, both addresses.
        self._ip_sum = (0x4500 + self._frag + (ttl << 8) + PROTO_TCP + (src_i >> 16)
                        + (src_i & _FOLD) + (dst_i >> 16) + (dst_i & _FOLD))  # fmt: skip
        # The TCP pseudo-header without the TCP length (RFC 9293 §3.1).
        self._pseudo = (src_i >> 16) + (src_i & _FOLD) + (dst_i >> 16) + (dst_i & _FOLD) + PROTO_TCP

    def build(
        self,
        payload_len: int,
        ident: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        timestamps: tuple[int, int] | None = None,
        tos: int = 0,
    ) -> bytes:
        """The IPv4 and TCP headers for a segment of `payload_len` bytes of text; the TCP
        checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL). `timestamps`
        (TSval, TSecr) is required exactly when the template has the option."""
        header_len = self.header_len
        total = header_len + payload_len
        ip_csum = ~_fold(self._ip_sum + tos + total + ident) & _FOLD
        tcp_length = total - _IPV4_LEN
        pseudo = _fold(self._pseudo + tcp_length)
        if pseudo == 0:  # as pseudo_header_sum: a non-zero sum never folds to 0
            pseudo = _FOLD if self._pseudo + tcp_length else 0
        if self.timestamps:
            assert timestamps is not None
            return self._struct.pack(
                0x45, tos, total, ident, self._frag, *self._ttl_proto, ip_csum, self._src,
                self._dst, *self._ports, seq, ack, self._offset, flags, window, pseudo, 0,
                OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10, *timestamps,
            )  # fmt: skip
        return self._struct.pack(
            0x45, tos, total, ident, self._frag, *self._ttl_proto, ip_csum, self._src,
            self._dst, *self._ports, seq, ack, self._offset, flags, window, pseudo, 0,
        )  # fmt: skip
