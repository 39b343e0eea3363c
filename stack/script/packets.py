"""Script segments on the wire: build the IP packets a script injects (its TCP options in
the order written, NOPs included) and read the ones a stack sends into an ordered,
comparable form. Imports stack.wire and stack.script.model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from stack.script.model import TcpOption
from stack.wire import WireError
from stack.wire.checksum import internet_checksum, pseudo_header_sum
from stack.wire.icmp import build_unreachable, build_unreachable_v6
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, Ipv4Header
from stack.wire.ipv6 import PROTO_ICMPV6, Ipv6Header

Address = IPv4Address | IPv6Address

TCP_HEADER = struct.Struct("!HHIIBBHHH")
# Flag letters of packetdrill's flags word and their header bits (E: ECE, W: CWR).
FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, ".": 0x10, "U": 0x20, "E": 0x40, "W": 0x80}
FLAG_ORDER = "FSRPUEW."  # how flags are printed: "FP.", "S.", "R."
ECN_BITS = {None: 0, "noecn": 0, "ect1": 1, "ect0": 2, "ce": 3}
MASK = 0xFFFFFFFF

# ICMP names (packetdrill's icmp_packet.c tables): (v4 type, {code name: code}).
ICMP4_TYPES: dict[str, tuple[int, dict[str, int]]] = {
    "unreachable": (
        3,
        {
            "net_unreachable": 0,
            "host_unreachable": 1,
            "protocol_unreachable": 2,
            "port_unreachable": 3,
            "frag_needed": 4,
            "source_route_failed": 5,
            "net_unknown": 6,
            "host_unknown": 7,
            "source_host_isolated": 8,
            "net_prohibited": 9,
            "host_prohibited": 10,
            "packet_filtered": 13,
        },
    ),
    "time_exceeded": (11, {"ttl_exceeded": 0, "frag_reassembly_time_exceeded": 1}),
    "source_quench": (4, {}),
}
ICMP6_TYPES: dict[str, tuple[int, dict[str, int]]] = {
    "unreachable": (
        1,
        {
            "net_unreachable": 0,
            "no_route": 0,
            "admin_prohibited": 1,
            "not_neighbour": 2,
            "address_unreachable": 3,
            "port_unreachable": 4,
        },
    ),
    "packet_too_big": (2, {}),
    "time_exceeded": (3, {"exceeded_hop_limit": 0, "exceeded_frag_time": 1}),
}


def flag_bits(flags: str) -> int:
    bits = 0
    for ch in flags:
        bits |= FLAG_BITS[ch]
    return bits


def flags_text(bits: int) -> str:
    text = "".join(ch for ch in FLAG_ORDER if bits & FLAG_BITS[ch])
    return text or "-"


def encode_options(options: tuple[TcpOption, ...], ecr: int | None, sack_offset: int) -> bytes:
    """The options as written, in order; `ecr` replaces TS ecr (mapped to the value the
    stack sent), SACK edges are shifted by `sack_offset`. ValueError when too long or
    an option has no wire form here."""
    out = bytearray()
    for o in options:
        if o.kind == "nop":
            out.append(1)
        elif o.kind == "eol":
            out.append(0)
        elif o.kind == "mss":
            out += struct.pack("!BBH", 2, 4, o.value or 0)
        elif o.kind == "wscale":
            out += struct.pack("!BBB", 3, 3, o.value or 0)
        elif o.kind == "sackOK":
            out += b"\x04\x02"
        elif o.kind == "sack":
            out += struct.pack("!BB", 5, 2 + 8 * len(o.blocks))
            for left, right in o.blocks:
                out += struct.pack("!II", (left + sack_offset) & MASK, (right + sack_offset) & MASK)
        elif o.kind == "TS":
            out += struct.pack(
                "!BBII", 8, 10, o.val or 0, ((o.ecr or 0) if ecr is None else ecr) & MASK
            )
        else:
            raise ValueError(f"TCP option {o.kind} cannot be sent (not modelled)")
    if len(out) > 40:
        raise ValueError(f"TCP options of {len(out)} bytes > 40")
    while len(out) % 4:
        out.append(0)  # EOL padding
    return bytes(out)


def build_tcp(
    src: Address,
    dst: Address,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    options: bytes,
    payload: bytes,
    tos: int = 0,
) -> bytes:
    """One IPv4 or IPv6 packet carrying the TCP segment, checksums set."""
    offset = (20 + len(options)) // 4
    header = TCP_HEADER.pack(
        sport, dport, seq & MASK, ack & MASK, offset << 4, flags, window, 0, urgent
    )
    segment = bytearray(header + options + payload)
    pseudo = pseudo_header_sum(src, dst, PROTO_TCP, len(segment))
    struct.pack_into("!H", segment, 16, internet_checksum(segment, pseudo))
    if isinstance(src, IPv6Address):
        assert isinstance(dst, IPv6Address)
        return Ipv6Header(src, dst, PROTO_TCP, traffic_class=tos).build(segment)
    assert isinstance(dst, IPv4Address)
    return Ipv4Header(src, dst, PROTO_TCP, tos=tos).build(segment)


def build_icmp(
    kind: str,
    code: str | None,
    mtu: int | None,
    quoted_packet: bytes,
    src: Address,
    dst: Address,
) -> bytes:
    """An ICMP(v6) error from `src` to `dst` quoting `quoted_packet` (one the stack sent)."""
    if isinstance(src, IPv6Address):
        assert isinstance(dst, IPv6Address)
        if kind not in ICMP6_TYPES:
            raise ValueError(f"ICMPv6 type {kind} is not supported")
        t6, codes6 = ICMP6_TYPES[kind]
        c6 = _code(kind, code, codes6)
        body6 = build_unreachable_v6(t6, c6, quoted_packet, src, dst, mtu=mtu)
        return Ipv6Header(src, dst, PROTO_ICMPV6).build(body6)
    assert isinstance(dst, IPv4Address)
    if kind not in ICMP4_TYPES:
        raise ValueError(f"ICMP type {kind} is not supported for IPv4")
    t4, codes4 = ICMP4_TYPES[kind]
    c4 = _code(kind, code, codes4)
    body = bytearray(build_unreachable(c4, quoted_packet, mtu=mtu))
    if t4 != 3:
        body[0] = t4
        body[2:4] = b"\0\0"
        struct.pack_into("!H", body, 2, internet_checksum(body))
    return Ipv4Header(src, dst, PROTO_ICMP).build(bytes(body))


def _code(kind: str, code: str | None, codes: dict[str, int]) -> int:
    if code is None:
        return 0
    if code.isdigit():
        return int(code)
    if code not in codes:
        raise ValueError(f"ICMP {kind} code {code} is not known")
    return codes[code]


@dataclass(frozen=True, slots=True)
class Option:
    """One TCP option as it came, in order: kind number and its data bytes."""

    kind: int
    data: bytes

    def describe(self, ack_offset: int = 0) -> str:
        k, d = self.kind, self.data
        if k == 1:
            return "nop"
        if k == 0:
            return "eol"
        if k == 2 and len(d) == 2:
            return f"mss {struct.unpack('!H', d)[0]}"
        if k == 3 and len(d) == 1:
            return f"wscale {d[0]}"
        if k == 4:
            return "sackOK"
        if k == 5 and len(d) % 8 == 0:
            edges = struct.unpack(f"!{len(d) // 4}I", d)
            blocks = " ".join(
                f"{(edges[i] - ack_offset) & MASK}:{(edges[i + 1] - ack_offset) & MASK}"
                for i in range(0, len(edges), 2)
            )
            return f"sack {blocks}"
        if k == 8 and len(d) == 8:
            val, ecr = struct.unpack("!II", d)
            return f"TS val {val} ecr {ecr}"
        return f"kind {k} len {len(d) + 2}"


@dataclass(frozen=True, slots=True)
class Segment:
    """A TCP segment the stack sent, fields raw (not yet in script space)."""

    src: Address
    dst: Address
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int
    options: tuple[Option, ...]
    payload: bytes
    ecn: int  # IP ECN bits

    def option(self, kind: int) -> Option | None:
        return next((o for o in self.options if o.kind == kind), None)


def parse_tcp_packet(data: bytes) -> Segment | None:
    """The TCP segment in an IP packet the stack sent, or None for anything else (an ICMP
    message, neighbour discovery, a packet too short to read)."""
    try:
        if data and data[0] >> 4 == 6:
            ip6, payload = Ipv6Header.parse(data)
            if ip6.protocol != PROTO_TCP:
                return None
            src: Address = ip6.src
            dst: Address = ip6.dst
            ecn = ip6.traffic_class & 3
        else:
            ip4, payload = Ipv4Header.parse(data)
            if ip4.protocol != PROTO_TCP:
                return None
            src, dst, ecn = ip4.src, ip4.dst, ip4.tos & 3
    except WireError:
        return None
    raw = bytes(payload)
    if len(raw) < 20:
        return None
    sport, dport, seq, ack, off, flags, window, _, urgent = TCP_HEADER.unpack_from(raw)
    header_len = (off >> 4) * 4
    if header_len < 20 or header_len > len(raw):
        return None
    options: list[Option] = []
    i = 20
    while i < header_len:
        kind = raw[i]
        if kind == 0:
            options.append(Option(0, b""))
            break
        if kind == 1:
            options.append(Option(1, b""))
            i += 1
            continue
        if i + 1 >= header_len:
            break
        length = raw[i + 1]
        if length < 2 or i + length > header_len:
            break
        options.append(Option(kind, raw[i + 2 : i + length]))
        i += length
    flags |= (off & 0x01) << 8  # AE (RFC 3540 NS) bit
    return Segment(
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags & 0xFF,
        window,
        urgent,
        tuple(options),
        raw[header_len:],
        ecn,
    )
