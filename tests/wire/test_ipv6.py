"""Ipv6Header and ICMPv6: a real Linux IPv6 SYN, the extension-header walk (RFC 8200 §4),
fragments refused, ICMPv6 errors quoting our segment and echo."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

import pytest

from stack.wire import Flags, IcmpEcho, TcpSegment, WireError, icmp
from stack.wire.checksum import internet_checksum, pseudo_header_sum
from stack.wire.icmp import Icmpv6Error
from stack.wire.ipv6 import PROTO_ICMPV6, Ipv6Header
from tests.wire.vectors import CLIENT6, LINUX_SYN6, SERVER6

ROUTER6 = IPv6Address("fd77::fe")


def packet(next_header: int, body: bytes, *, payload_length: int | None = None) -> bytes:
    length = len(body) if payload_length is None else payload_length
    fixed = struct.pack("!IHBB", 6 << 28, length, next_header, 64)
    return fixed + CLIENT6.packed + SERVER6.packed + body


def reason_of(data: bytes) -> tuple[str, str]:
    with pytest.raises(WireError) as err:
        Ipv6Header.parse(data)
    return err.value.reason, str(err.value)


def test_linux_syn6_parses_to_exact_fields() -> None:
    hdr, payload = Ipv6Header.parse(LINUX_SYN6)
    assert hdr == Ipv6Header(
        src=CLIENT6,
        dst=SERVER6,
        protocol=6,
        hop_limit=64,
        traffic_class=0,
        flow_label=0x6ABE2,
        payload_length=40,
        header_length=40,
    )
    seg = TcpSegment.parse(payload, CLIENT6, SERVER6)
    assert seg == TcpSegment(
        40000,
        5000,
        3580363760,
        0,
        Flags.SYN,
        65476,
        mss=65476,
        wscale=10,
        sack_permitted=True,
        timestamps=(2605812712, 0),
    )
    assert hdr.build(seg.build(CLIENT6, SERVER6)) == LINUX_SYN6


def test_payload_cut_to_payload_length() -> None:
    hdr, payload = Ipv6Header.parse(LINUX_SYN6 + b"\0\0")
    assert (hdr.payload_length, bytes(payload)) == (40, LINUX_SYN6[40:])


def test_build_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="IPv6 payload length 65536 > 65535"):
        Ipv6Header(CLIENT6, SERVER6, 6).build(bytes(65536))
    with pytest.raises(ValueError, match="traffic class or flow label"):
        Ipv6Header(CLIENT6, SERVER6, 6, flow_label=1 << 20).build(b"")
    with pytest.raises(ValueError, match="IPv6 field out of range"):
        Ipv6Header(CLIENT6, SERVER6, 256).build(b"")


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (LINUX_SYN6[:39], "truncated", "IPv6 packet of 39 bytes < 40"),
        (bytes([0x45]) + LINUX_SYN6[1:], "bad-version", "IP version 4 != 6"),
        (LINUX_SYN6[:79], "truncated", "payload length 40 > 39 bytes received"),
        (packet(44, bytes((6, 0, 0, 1)) + bytes(4)), "fragment", "fragment (M=1, offset 0)"),
        (packet(44, bytes((6, 0, 0, 8)) + bytes(4)), "fragment", "fragment (M=0, offset 8)"),
        (
            packet(60, bytes((0, 0, 1, 4, 0, 0, 0, 0))),
            "bad-extension-header",
            "hop-by-hop options not first",
        ),
        (packet(43, bytes((6, 0, 0, 1, 0, 0, 0, 0))), "routing-header", "routing header, 1 left"),
        (
            packet(0, bytes((6, 0, 0xC2, 4, 0, 1, 0, 0))),
            "unrecognized-ipv6-option",
            "option type 0xc2 in header 0",
        ),
        (
            packet(60, bytes((6, 0, 1, 9, 0, 0, 0, 0))),
            "bad-extension-header",
            "option 1 overruns header 60",
        ),
        (
            packet(60, bytes((6, 1, 0, 0, 0, 0, 0, 0))),
            "truncated",
            "extension header 60 of 16 bytes cut short",
        ),
        (packet(0, bytes((6,))), "truncated", "extension header 0 cut short"),
        (packet(44, bytes(4)), "truncated", "fragment header cut short"),
    ],
)
def test_malformations(data: bytes, reason: str, message: str) -> None:
    assert reason_of(data) == (reason, message)


def test_extension_headers_are_walked_to_the_upper_layer() -> None:
    body = (
        bytes((60, 0, 1, 4, 0, 0, 0, 0))  # hop-by-hop: PadN
        + bytes((43, 0, 5, 2, 0, 0, 0, 0))  # destination: router alert type 5 (skippable)
        + bytes((44, 0, 0, 0, 0, 0, 0, 0))  # routing: type 0, segments left 0
        + bytes((6, 0, 0, 0, 0, 0, 0, 1))  # atomic fragment (RFC 6946)
        + b"TCP!"
    )
    hdr, payload = Ipv6Header.parse(packet(0, body))
    assert (hdr.protocol, hdr.header_length, hdr.payload_length) == (6, 72, 36)
    assert bytes(payload) == b"TCP!"


def test_no_next_header() -> None:
    hdr, payload = Ipv6Header.parse(packet(59, b"ignored"))
    assert (hdr.protocol, bytes(payload)) == (59, b"ignored")


# --- ICMPv6 --------------------------------------------------------------------------------


def test_packet_too_big_quoting_our_syn() -> None:
    message = icmp.build_unreachable_v6(2, 0, LINUX_SYN6, ROUTER6, CLIENT6, mtu=1280)
    assert message[:8] == bytes.fromhex("0200") + message[2:4] + bytes.fromhex("00000500")
    assert message[8:] == LINUX_SYN6
    err = icmp.parse_v6(message, ROUTER6, CLIENT6)
    quoted, _ = Ipv6Header.parse(LINUX_SYN6)
    assert err == Icmpv6Error(2, 0, 1280, quoted, 40000, 5000, 3580363760)
    assert isinstance(err, Icmpv6Error)
    # Rebuilt from the view, it quotes the header and the first 8 bytes only.
    rebuilt = err.build(ROUTER6, CLIENT6)
    assert rebuilt == icmp.build_unreachable_v6(2, 0, LINUX_SYN6[:48], ROUTER6, CLIENT6, mtu=1280)


@pytest.mark.parametrize("code", range(7))
def test_destination_unreachable_codes(code: int) -> None:
    message = icmp.build_unreachable_v6(1, code, LINUX_SYN6[:48], ROUTER6, CLIENT6)
    err = icmp.parse_v6(message, ROUTER6, CLIENT6)
    assert isinstance(err, Icmpv6Error)
    assert (err.type, err.code, err.mtu, err.seq) == (1, code, None, 3580363760)


def test_icmpv6_checksum_covers_the_pseudo_header() -> None:
    message = icmp.build_unreachable_v6(1, 4, LINUX_SYN6, ROUTER6, CLIENT6)
    with pytest.raises(WireError) as err:
        icmp.parse_v6(message, ROUTER6, SERVER6)
    assert (err.value.reason, str(err.value)) == ("bad-checksum", "ICMPv6 checksum does not verify")


def test_icmpv6_short_quote_and_other_types() -> None:
    with pytest.raises(WireError) as err:
        icmp.parse_v6(
            icmp.build_unreachable_v6(1, 0, LINUX_SYN6[:47], ROUTER6, CLIENT6), ROUTER6, CLIENT6
        )
    assert str(err.value) == "ICMPv6 quotes 7 bytes of TCP header < 8"
    # Time exceeded (3), parameter problem (4), neighbour solicitation (135): not acted on.
    for icmp_type in (3, 4, 135):
        message = icmp.build_unreachable_v6(icmp_type, 0, LINUX_SYN6, ROUTER6, CLIENT6)
        assert icmp.parse_v6(message, ROUTER6, CLIENT6) is None
    with pytest.raises(WireError) as err:
        icmp.parse_v6(b"\x80\x00\x00", ROUTER6, CLIENT6)
    assert (err.value.reason, str(err.value)) == ("truncated", "ICMPv6 message of 3 bytes < 8")


def test_icmpv6_echo() -> None:
    request = IcmpEcho(128, 7, 1, b"ping")
    data = request.build(CLIENT6, SERVER6)
    assert internet_checksum(data, pseudo_header_sum(CLIENT6, SERVER6, PROTO_ICMPV6, 12)) == 0
    parsed = icmp.parse_v6(data, CLIENT6, SERVER6)
    assert parsed == request
    assert isinstance(parsed, IcmpEcho) and parsed.is_request
    reply = parsed.reply()
    assert reply == IcmpEcho(129, 7, 1, b"ping")
    assert icmp.parse_v6(reply.build(SERVER6, CLIENT6), SERVER6, CLIENT6) == reply
    with pytest.raises(ValueError, match="needs the IPv6 src and dst"):
        request.build()
