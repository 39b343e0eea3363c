"""TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018): `TcpSegment` parse and build.

Imports the standard library, `stack.wire` (WireError) and `stack.wire.checksum`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from stack.wire import WireError
from stack.wire.checksum import ones_sum, pseudo_header_sum
from stack.wire.frozen import fast_init

PROTO_TCP = 6

HEADER = struct.Struct("!HHIIBBHHH")  # RFC 9293 §3.1 fixed header, 20 bytes
HEADER_LEN = HEADER.size
MAX_OPTIONS_LEN = 40  # data offset is 4 bits of 32-bit words: 60 - 20

# Option kinds (RFC 9293 §3.2, RFC 7323 §2-3, RFC 2018 §2-3) and their fixed lengths.
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8
_FIXED_LENGTH = {OPT_MSS: 4, OPT_WSCALE: 3, OPT_SACK_PERMITTED: 2, OPT_TIMESTAMPS: 10}
_OPTION_NAMES = {
    OPT_MSS: "MSS",
    OPT_WSCALE: "window scale",
    OPT_SACK_PERMITTED: "SACK-permitted",
    OPT_SACK: "SACK",
    OPT_TIMESTAMPS: "timestamps",
}

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
# Option words laid out as Linux's tcp_options_write() emits them (all 32-bit aligned).
_MSS_WORD = struct.Struct("!BBH")  # kind 2, len 4, MSS
_TS_WORD = struct.Struct("!BBBBII")  # NOP,NOP or SACK-perm; kind 8, len 10, TSval, TSecr
_WS_WORD = struct.Struct("!BBBB")  # NOP, kind 3, len 3, shift
_SACK_PERM_WORD = bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
_FIN_BIT = 1
_SYN_BIT = 2


class Flags(enum.IntFlag):
    """The control bits of RFC 9293 §3.1 plus ECE/CWR (RFC 3168)."""

    FIN = 1
    SYN = 2
    RST = 4
    PSH = 8
    ACK = 16
    URG = 32
    ECE = 64
    CWR = 128


Address = IPv4Address | IPv6Address


@fast_init
@dataclass(frozen=True, slots=True, repr=False)
class TcpSegment:
    """One TCP segment as values: header fields, the options we know, and the payload.

    `parse` leaves `payload` a memoryview into the caller's buffer (no copy); `build` takes
    bytes or a memoryview. Options we do not know are skipped on parse and never built.
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int  # a plain int on the hot path (parse stores the byte); `Flags` names the bits
    window: int
    urgent: int = 0
    payload: bytes | memoryview = b""
    mss: int | None = None  # option kind 2
    wscale: int | None = None  # option kind 3 (shift count as sent)
    sack_permitted: bool = False  # option kind 4
    sack: tuple[tuple[int, int], ...] = ()  # option kind 5: (left, right) edges
    timestamps: tuple[int, int] | None = None  # option kind 8: (TSval, TSecr)
    # Offload facts, not header fields (docs/internals.md "Offloads"): a super-segment
    # whose payload stands for ceil(len / gso_size) segments of gso_size bytes (GRO'd
    # by the kernel on receive; cut by it, TSO, on send). 0: one ordinary segment.
    gso_size: int = 0

    @property
    def gso_segs(self) -> int:
        """How many segments this one stands for: 1 unless it is a super-segment."""
        size = self.gso_size
        n = len(self.payload)
        return -(-n // size) if size and n > size else 1

    def __repr__(self) -> str:
        # A memoryview payload would print as "<memory at 0x...>": show the bytes (the
        # first 64 of them), and only the options that are present, so test diffs read.
        payload = bytes(self.payload[:64])
        more = len(self.payload) - len(payload)
        shown = f"{payload!r}" + (f"+{more} bytes" if more > 0 else "")
        fields = [
            f"src_port={self.src_port}",
            f"dst_port={self.dst_port}",
            f"seq={self.seq}",
            f"ack={self.ack}",
            f"flags={_flag_names(self.flags)}",
            f"window={self.window}",
        ]
        if self.urgent:
            fields.append(f"urgent={self.urgent}")
        if len(self.payload):
            fields.append(f"payload={shown}")
        for name in ("mss", "wscale", "timestamps"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        if self.sack_permitted:
            fields.append("sack_permitted=True")
        if self.sack:
            fields.append(f"sack={self.sack!r}")
        if self.gso_size:
            fields.append(f"gso_size={self.gso_size}")
        return f"TcpSegment({', '.join(fields)})"

    @property
    def seg_len(self) -> int:
        """RFC 9293 §3.4 SEG.LEN: payload octets plus one each for SYN and FIN."""
        flags = self.flags
        return len(self.payload) + (flags & _SYN_BIT) // _SYN_BIT + (flags & _FIN_BIT)

    @classmethod
    def parse(
        cls,
        data: bytes | bytearray | memoryview,
        src: Address,
        dst: Address,
        *,
        verify_checksum: bool = True,
        gso_size: int = 0,
    ) -> TcpSegment:
        """Parse one TCP segment (header, options, payload) carried from src to dst.

        `data` is the IP payload, already cut to the IP length. Raises only WireError.
        `verify_checksum=False` for a packet whose checksum the link vouches for (the
        kernel's NEEDS_CSUM or DATA_VALID); `gso_size` is the link's fact that the
        segment is a GRO'd super-segment of gso_size-byte segments (kept on the result).
        """
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        length = len(view)
        if length < HEADER_LEN:
            raise WireError("truncated", f"TCP segment of {length} bytes < {HEADER_LEN}")
        src_port, dst_port, seq, ack, offset_byte, flag_byte, window, _, urgent = (
            HEADER.unpack_from(view)
        )
        header_len = (offset_byte >> 4) * 4
        if header_len < HEADER_LEN:
            raise WireError("bad-data-offset", f"data offset {offset_byte >> 4} < 5")
        if header_len > length:
            raise WireError(
                "bad-data-offset",
                f"data offset {offset_byte >> 4} ({header_len} bytes) > segment length {length}",
            )
        if verify_checksum:
            # RFC 9293 §3.1: the sum over pseudo-header, header and text, checksum field
            # included, is all ones when the segment arrived intact.
            total = ones_sum(view, pseudo_header_sum(src, dst, PROTO_TCP, length))
            if total != 0xFFFF:
                raise WireError("bad-checksum", f"TCP checksum does not verify (sum {total:#06x})")
        mss = wscale = None
        sack_permitted = False
        sack: tuple[tuple[int, int], ...] = ()
        timestamps = None
        if header_len > HEADER_LEN:
            mss, wscale, sack_permitted, sack, timestamps = _parse_options(
                view[HEADER_LEN:header_len]
            )
        return cls(
            src_port,
            dst_port,
            seq,
            ack,
            flag_byte,
            window,
            urgent,
            view[header_len:],
            mss,
            wscale,
            sack_permitted,
            sack,
            timestamps,
            gso_size,
        )

    def options_bytes(self) -> bytes:
        """The options as build lays them out (Linux order, 32-bit aligned, at most 40).

        Raises ValueError when a value does not fit its option or they need over 40 bytes.
        """
        try:
            options = self._pack_options()
        except struct.error as exc:
            raise ValueError(f"TCP option out of range: {exc}") from None
        if len(options) & 3:  # RFC 9293 §3.1: the header ends on a 32-bit boundary
            options += bytes(4 - (len(options) & 3))
        if len(options) > MAX_OPTIONS_LEN:
            raise ValueError(f"TCP options need {len(options)} bytes > {MAX_OPTIONS_LEN}")
        return options

    def _pack_options(self) -> bytes:
        # tcp_options_write() in Linux net/ipv4/tcp_output.c writes this order, every
        # option in whole 32-bit words, so no trailing padding is ever needed.
        parts: list[bytes] = []
        if self.mss is not None:
            parts.append(_MSS_WORD.pack(OPT_MSS, 4, self.mss))
        if self.timestamps is not None:
            # Linux folds SACK-permitted into the two NOPs before the timestamps.
            lead = (OPT_SACK_PERMITTED, 2) if self.sack_permitted else (OPT_NOP, OPT_NOP)
            parts.append(_TS_WORD.pack(*lead, OPT_TIMESTAMPS, 10, *self.timestamps))
        elif self.sack_permitted:
            parts.append(_SACK_PERM_WORD)
        if self.wscale is not None:
            parts.append(_WS_WORD.pack(OPT_NOP, OPT_WSCALE, 3, self.wscale))
        if self.sack:
            parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(self.sack))))
            parts.extend(_U32X2.pack(left, right) for left, right in self.sack)
        return b"".join(parts)

    def build(self, src: Address, dst: Address) -> bytes:
        """The segment's bytes: header, options (padded), payload; checksum set for src->dst.

        Raises ValueError when a field is out of range (our own values, not network input).
        """
        payload = self.payload
        header = self.build_header(src, dst)
        return b"".join((header, payload)) if payload else header

    def build_header(self, src: Address, dst: Address, *, partial: bool = False) -> bytes:
        """Header and options only, for `payload` to follow them unjoined (writev).

        The checksum covers the payload; with `partial` it is only the pseudo-header sum
        (not complemented), for a device to finish (CHECKSUM_PARTIAL: the sum from the
        TCP header to the end is folded in and complemented at offset 16).
        """
        options = self.options_bytes() if self._has_options() else b""
        header_len = HEADER_LEN + len(options)
        payload = self.payload
        try:
            header = HEADER.pack(
                self.src_port,
                self.dst_port,
                self.seq,
                self.ack,
                (header_len >> 2) << 4,
                self.flags,
                self.window,
                0,
                self.urgent,
            )
        except struct.error as exc:
            raise ValueError(f"TCP field out of range: {exc}") from None
        if options:
            header += options
        length = header_len + len(payload)
        pseudo = pseudo_header_sum(src, dst, PROTO_TCP, length)
        if partial:
            checksum = pseudo
        else:
            # The header is a whole number of words, so the payload's words line up and
            # its sum can be taken in place, without concatenating first.
            checksum = ~ones_sum(payload, ones_sum(header, pseudo)) & 0xFFFF
        return header[:16] + _U16.pack(checksum) + header[18:]

    def _has_options(self) -> bool:
        return (
            self.mss is not None
            or self.timestamps is not None
            or self.sack_permitted
            or self.wscale is not None
            or bool(self.sack)
        )


def _flag_names(flags: int) -> str:
    names = [flag.name for flag in Flags if flags & flag and flag.name]
    return "Flags." + "|".join(names) if names else "Flags(0)"


def _parse_options(
    opts: memoryview,
) -> tuple[int | None, int | None, bool, tuple[tuple[int, int], ...], tuple[int, int] | None]:
    """Walk the option list (RFC 9293 §3.2): known kinds checked, unknown ones skipped."""
    mss = wscale = None
    sack_permitted = False
    sack: tuple[tuple[int, int], ...] = ()
    timestamps = None
    end = len(opts)
    i = 0
    while i < end:
        kind = opts[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise WireError("option-overrun", f"option kind {kind} at offset {i} has no length")
        size = opts[i + 1]
        if size < 2:
            raise WireError("bad-option-length", f"option kind {kind} length {size} < 2")
        if i + size > end:
            raise WireError(
                "option-overrun",
                f"option kind {kind} length {size} at offset {i} overruns {end} option bytes",
            )
        fixed = _FIXED_LENGTH.get(kind)
        if fixed is not None and size != fixed:
            raise WireError(
                "bad-option-length", f"{_OPTION_NAMES[kind]} option length {size} != {fixed}"
            )
        if kind == OPT_MSS:
            mss = _U16.unpack_from(opts, i + 2)[0]
        elif kind == OPT_WSCALE:
            wscale = opts[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            sack_permitted = True
        elif kind == OPT_TIMESTAMPS:
            timestamps = _U32X2.unpack_from(opts, i + 2)
        elif kind == OPT_SACK:
            # RFC 2018 §3: length 2 + 8n, n >= 1 (at most 4 fit in 40 bytes).
            if (size - 2) % 8 or size == 2:
                raise WireError("bad-option-length", f"SACK option length {size} != 2 + 8n")
            sack = tuple(_U32X2.unpack_from(opts, off) for off in range(i + 2, i + size, 8))
        i += size
    return mss, wscale, sack_permitted, sack, timestamps
