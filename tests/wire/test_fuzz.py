"""Hypothesis: build -> parse round-trips exactly; random and mutated bytes thrown at every
parser give a value or WireError, never another exception (h11's "anything else is a bug")."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.wire import Flags, IcmpEcho, IcmpError, Ipv4Header, TcpSegment, WireError, icmp
from stack.wire.checksum import internet_checksum, pseudo_header_sum
from stack.wire.ipv6 import Ipv6Header
from stack.wire.pretty import format_segment
from tests.wire.vectors import (
    CLIENT,
    CLIENT6,
    LINUX_DATA,
    LINUX_SYN,
    LINUX_SYN6,
    LINUX_SYN_ACK,
    SERVER,
    SERVER6,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addresses = st.builds(IPv4Address, u32)


@st.composite
def segments(draw: st.DrawFn) -> TcpSegment:
    timestamps = draw(st.none() | st.tuples(u32, u32))
    mss = draw(st.none() | u16)
    wscale = draw(st.none() | u8)
    sack_permitted = draw(st.booleans())
    used = (
        (4 if mss is not None else 0)
        + (12 if timestamps is not None else (4 if sack_permitted else 0))
        + (4 if wscale is not None else 0)
    )
    max_blocks = max(0, (40 - used - 4) // 8)
    sack = draw(st.lists(st.tuples(u32, u32), max_size=max_blocks).map(tuple))
    return TcpSegment(
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=Flags(draw(u8)),
        window=draw(u16),
        urgent=draw(u16),
        payload=draw(st.binary(max_size=300)),
        mss=mss,
        wscale=wscale,
        sack_permitted=sack_permitted,
        sack=sack,
        timestamps=timestamps,
    )


@given(segments(), addresses, addresses)
def test_tcp_round_trip(seg: TcpSegment, src: IPv4Address, dst: IPv4Address) -> None:
    data = seg.build(src, dst)
    assert len(data) % 4 == len(seg.payload) % 4
    parsed = TcpSegment.parse(data, src, dst)
    assert parsed == seg
    assert parsed.build(src, dst) == data


@given(segments(), addresses, addresses, u8, u16, st.booleans())
def test_ipv4_tcp_round_trip(
    seg: TcpSegment, src: IPv4Address, dst: IPv4Address, ttl: int, ident: int, df: bool
) -> None:
    header = Ipv4Header(src, dst, 6, ttl=ttl, ident=ident, dont_fragment=df)
    packet = header.build(seg.build(src, dst))
    parsed, payload = Ipv4Header.parse(packet)
    assert parsed == Ipv4Header(src, dst, 6, ttl, 0, ident, df, len(packet), 20)
    assert TcpSegment.parse(payload, src, dst) == seg


@given(segments(), st.integers(0, 255), st.integers(0, 0xFFFFF), u8)
def test_ipv6_tcp_round_trip(seg: TcpSegment, tclass: int, flow: int, hops: int) -> None:
    header = Ipv6Header(CLIENT6, SERVER6, 6, hops, tclass, flow)
    packet = header.build(seg.build(CLIENT6, SERVER6))
    parsed, payload = Ipv6Header.parse(packet)
    assert parsed == Ipv6Header(CLIENT6, SERVER6, 6, hops, tclass, flow, len(packet) - 40, 40)
    assert TcpSegment.parse(payload, CLIENT6, SERVER6) == seg


@given(u8, u16, u16, st.binary(max_size=100))
def test_icmp_echo_round_trip(icmp_type: int, ident: int, seq: int, payload: bytes) -> None:
    icmp_type = 8 if icmp_type & 1 else 0
    echo = IcmpEcho(icmp_type, ident, seq, payload)
    assert icmp.parse(echo.build()) == echo


@given(st.integers(0, 15), u16, u32, u16, u16, addresses, addresses)
def test_icmp_error_round_trip(
    code: int, mtu: int, seq: int, sport: int, dport: int, src: IPv4Address, dst: IPv4Address
) -> None:
    quoted = Ipv4Header(src, dst, 6, total_length=1500)
    err = IcmpError(3, code, mtu if code == 4 else None, quoted, sport, dport, seq)
    assert icmp.parse(err.build()) == err


# --- everything that is not a valid packet -------------------------------------------------


def parse_everything(data: bytes) -> None:
    """Every parser on data; only WireError may escape, and a parsed value must print."""
    for verify in (True, False):
        try:
            seg = TcpSegment.parse(data, CLIENT, SERVER, verify_checksum=verify)
            format_segment(seg, CLIENT, SERVER, isn=(1, 2))
        except WireError:
            pass
    for parse in (Ipv4Header.parse, Ipv4Header.parse_quoted):
        try:
            parse(data)
        except WireError:
            pass
    for parse_icmp in (icmp.parse, IcmpError.parse):
        try:
            parse_icmp(data)
        except WireError:
            pass
    try:
        _, payload = Ipv4Header.parse(data)
        TcpSegment.parse(payload, CLIENT, SERVER, verify_checksum=False)
    except WireError:
        pass
    for parse6 in (Ipv6Header.parse, Ipv6Header.parse_quoted):
        try:
            _, payload = parse6(data)
            TcpSegment.parse(payload, CLIENT6, SERVER6, verify_checksum=False)
        except WireError:
            pass
    try:
        icmp.parse_v6(data, CLIENT6, SERVER6)
    except WireError:
        pass


@settings(max_examples=500)
@given(st.binary(max_size=140))
def test_random_bytes_raise_only_wire_error(data: bytes) -> None:
    parse_everything(data)


VALID = [
    *(LINUX_SYN, LINUX_SYN_ACK, LINUX_DATA),  # IPv4 + TCP
    *(LINUX_SYN[20:], LINUX_SYN_ACK[20:], LINUX_DATA[20:]),  # TCP alone
    icmp.build_unreachable(4, LINUX_SYN, mtu=1400),
    IcmpEcho(8, 1, 2, b"ping").build(),
    LINUX_SYN6,
    icmp.build_unreachable_v6(2, 0, LINUX_SYN6, CLIENT6, SERVER6, mtu=1280),
]


def refresh_checksums(data: bytearray) -> bytes:
    """Recompute the IPv4, TCP and ICMP checksums where the shape allows, so mutations get
    past checksum verification and reach the deeper checks."""
    if len(data) >= 48 and data[0] >> 4 == 6 and data[6] == 6:
        tcp = data[40:]
        tcp[16:18] = b"\0\0"
        csum = internet_checksum(tcp, pseudo_header_sum(CLIENT6, SERVER6, 6, len(tcp)))
        data[56:58] = csum.to_bytes(2, "big")
    elif len(data) >= 8 and data[0] in (1, 2, 128, 129):  # ICMPv6 from CLIENT6 to SERVER6
        data[2:4] = b"\0\0"
        csum = internet_checksum(data, pseudo_header_sum(CLIENT6, SERVER6, 58, len(data)))
        data[2:4] = csum.to_bytes(2, "big")
    if len(data) >= 20 and data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        if 20 <= ihl <= len(data):
            data[10:12] = b"\0\0"
            data[10:12] = internet_checksum(data[:ihl]).to_bytes(2, "big")
            total = int.from_bytes(data[2:4], "big")
            tcp = data[ihl:total]
            if data[9] == 6 and len(tcp) >= 20:
                tcp[16:18] = b"\0\0"
                tcp[16:18] = internet_checksum(
                    tcp, pseudo_header_sum(CLIENT, SERVER, 6, len(tcp))
                ).to_bytes(2, "big")
                data[ihl:total] = tcp
    return bytes(data)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 140), st.integers(0, 7)), max_size=6),
    st.lists(st.tuples(st.integers(0, 140), u8), max_size=4),
    st.integers(0, 130),  # 130: keep the whole packet
    st.booleans(),
)
def test_mutated_packets_raise_only_wire_error(
    packet: bytes,
    flips: list[tuple[int, int]],
    sets: list[tuple[int, int]],
    cut: int,
    refresh: bool,
) -> None:
    data = bytearray(packet)
    for pos, bit in flips:
        if pos < len(data):
            data[pos] ^= 1 << bit
    for pos, value in sets:  # option lengths, data offset, IHL... set to anything
        if pos < len(data):
            data[pos] = value
    data = data[:cut] if cut < 130 else data
    mutated = refresh_checksums(data) if refresh else bytes(data)
    parse_everything(mutated)
    parse_everything(mutated[20:])


@settings(max_examples=500)
@given(st.lists(st.tuples(u8, u8, st.binary(max_size=12)), max_size=8), st.binary(max_size=8))
def test_corrupt_option_lists_raise_only_wire_error(
    options: list[tuple[int, int, bytes]], tail: bytes
) -> None:
    raw = b"".join(bytes((kind, length)) + body for kind, length, body in options) + tail
    raw = raw[:40]
    raw += bytes(-len(raw) % 4)
    header = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, (20 + len(raw)) // 4 << 4, 2, 5, 0, 0)
    data = bytearray(header + raw)
    data[16:18] = internet_checksum(data, pseudo_header_sum(CLIENT, SERVER, 6, len(data))).to_bytes(
        2, "big"
    )
    try:
        seg = TcpSegment.parse(bytes(data), CLIENT, SERVER)
    except WireError as err:
        assert err.reason in {"option-overrun", "bad-option-length"}
    else:
        format_segment(seg, CLIENT, SERVER)


any_int = st.integers(-(1 << 33), 1 << 33)


@given(
    st.tuples(any_int, any_int, any_int, any_int, any_int, any_int),
    st.none() | any_int,
    st.none() | any_int,
    st.none() | st.tuples(any_int, any_int),
    st.lists(st.tuples(any_int, any_int), max_size=5).map(tuple),
)
def test_build_of_any_values_raises_only_value_error(
    header: tuple[int, ...],
    mss: int | None,
    wscale: int | None,
    timestamps: tuple[int, int] | None,
    sack: tuple[tuple[int, int], ...],
) -> None:
    """Our own bad values are a ValueError, never struct.error or OverflowError."""
    sport, dport, seq, ack, window, urgent = header
    builds = [
        lambda: TcpSegment(sport, dport, seq, ack, Flags.ACK, window, urgent, b"x").build(
            CLIENT, SERVER
        ),
        lambda: TcpSegment(
            1, 2, 3, 4, Flags.SYN, 5, 0, b"", mss, wscale, True, sack, timestamps
        ).build(CLIENT, SERVER),
        lambda: Ipv4Header(CLIENT, SERVER, sport, ttl=dport, tos=seq, ident=ack).build(b""),
        lambda: IcmpEcho(8, sport, dport).build(),
        lambda: Ipv6Header(CLIENT6, SERVER6, sport, dport, seq, ack).build(b""),
    ]
    for build in builds:
        try:
            build()
        except ValueError:
            pass


@settings(max_examples=500)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 43, 44, 60, 6, 58, 59, 99]), u8, st.binary(max_size=24)),
        max_size=5,
    ),
    st.sampled_from([0, 43, 44, 60, 6]),
    st.binary(max_size=24),
)
def test_ipv6_extension_chains_raise_only_wire_error(
    chain: list[tuple[int, int, bytes]], first: int, tail: bytes
) -> None:
    """Chains of hop-by-hop, routing, fragment and destination headers, well-formed or not."""
    body = b"".join(bytes((nh, length)) + rest for nh, length, rest in chain) + tail
    fixed = struct.pack("!IHBB", 6 << 28, len(body), first, 64)
    packet = fixed + CLIENT6.packed + SERVER6.packed + body
    try:
        hdr, payload = Ipv6Header.parse(packet)
    except WireError as err:
        assert err.reason in {
            "truncated",
            "fragment",
            "bad-extension-header",
            "routing-header",
            "unrecognized-ipv6-option",
        }
    else:
        assert hdr.header_length + len(payload) == len(packet)
