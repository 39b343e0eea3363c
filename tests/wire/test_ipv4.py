"""Ipv4Header: a real Linux packet parses to exact fields and builds back; each malformation
has its exact reason; fragments are refused; options are skipped; payload cut to length."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from stack.wire import PROTO_TCP, Ipv4Header, WireError
from stack.wire.checksum import internet_checksum
from tests.wire.vectors import CLIENT, LINUX_DATA, LINUX_SYN, SERVER

A = IPv4Address("10.77.0.2")
B = IPv4Address("10.77.0.1")


def fix_checksum(packet: bytes | bytearray) -> bytes:
    buf = bytearray(packet)
    ihl = (buf[0] & 0x0F) * 4
    buf[10:12] = b"\0\0"
    buf[10:12] = internet_checksum(buf[:ihl]).to_bytes(2, "big")
    return bytes(buf)


def header(**fields: int) -> bytes:
    values = {
        "ver_ihl": 0x45,
        "tos": 0,
        "total": 20,
        "ident": 1,
        "frag": 0x4000,
        "ttl": 64,
        "proto": 6,
        "src": int(A),
        "dst": int(B),
    }
    values.update(fields)
    raw = struct.pack(
        "!BBHHHBBHII",
        values["ver_ihl"],
        values["tos"],
        values["total"],
        values["ident"],
        values["frag"],
        values["ttl"],
        values["proto"],
        0,
        values["src"],
        values["dst"],
    )
    return fix_checksum(raw)


def reason_of(data: bytes) -> tuple[str, str]:
    with pytest.raises(WireError) as err:
        Ipv4Header.parse(data)
    return err.value.reason, str(err.value)


def test_linux_syn_header_parses_to_exact_fields() -> None:
    hdr, payload = Ipv4Header.parse(LINUX_SYN)
    assert hdr == Ipv4Header(
        src=CLIENT,
        dst=SERVER,
        protocol=PROTO_TCP,
        ttl=64,
        tos=0,
        ident=11403,
        dont_fragment=True,
        total_length=60,
        header_length=20,
    )
    assert bytes(payload) == LINUX_SYN[20:]


@pytest.mark.parametrize("packet", [LINUX_SYN, LINUX_DATA], ids=["syn", "data"])
def test_linux_packet_builds_back_to_the_same_bytes(packet: bytes) -> None:
    hdr, payload = Ipv4Header.parse(packet)
    assert hdr.build(payload) == packet


def test_payload_is_cut_to_total_length() -> None:
    # Ethernet pads short frames; TUN may hand over trailing bytes: they are not payload.
    hdr, payload = Ipv4Header.parse(LINUX_DATA + b"\0" * 6)
    assert hdr.total_length == 58
    assert bytes(payload) == LINUX_DATA[20:]


def test_payload_is_a_view() -> None:
    _, payload = Ipv4Header.parse(LINUX_SYN)
    assert isinstance(payload, memoryview)


def test_options_are_skipped() -> None:
    # IHL 6: one word of options (NOP, NOP, NOP, EOL) before the payload.
    raw = bytearray(header(ver_ihl=0x46, total=28))[:20] + b"\x01\x01\x01\x00" + b"ABCD"
    packet = fix_checksum(raw)
    hdr, payload = Ipv4Header.parse(packet)
    assert (hdr.header_length, hdr.total_length, bytes(payload)) == (24, 28, b"ABCD")


def test_build_sets_length_checksum_and_df() -> None:
    packet = Ipv4Header(A, B, PROTO_TCP, ttl=17, tos=0x10, ident=0xBEEF).build(b"xyz")
    # version/IHL, TOS, total length 23, ident, DF, TTL 17, protocol 6
    assert packet[:10] == bytes.fromhex("45 10 0017 beef 4000 11 06")
    assert packet[20:] == b"xyz"
    assert internet_checksum(packet[:20]) == 0
    hdr, _ = Ipv4Header.parse(packet)
    assert hdr == Ipv4Header(A, B, PROTO_TCP, 17, 0x10, 0xBEEF, True, 23, 20)


def test_build_without_df() -> None:
    packet = Ipv4Header(A, B, PROTO_TCP, dont_fragment=False).build(b"")
    assert packet[6:8] == b"\0\0"
    assert Ipv4Header.parse(packet)[0].dont_fragment is False


def test_build_rejects_oversize() -> None:
    with pytest.raises(ValueError, match="IPv4 total length 65536 > 65535"):
        Ipv4Header(A, B, PROTO_TCP).build(bytes(65516))


def test_build_accepts_the_largest_packet() -> None:
    packet = Ipv4Header(A, B, PROTO_TCP).build(memoryview(bytes(65515)))
    assert len(packet) == 65535
    assert Ipv4Header.parse(packet)[0].total_length == 65535


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", "truncated", "IPv4 packet of 0 bytes < 20"),
        (LINUX_SYN[:19], "truncated", "IPv4 packet of 19 bytes < 20"),
        (header(ver_ihl=0x65), "bad-version", "IP version 6 != 4"),
        (header(ver_ihl=0x44), "bad-ihl", "IHL 4 < 5"),
        (header(ver_ihl=0x46, total=24), "truncated", "IPv4 header of 24 bytes in 20 bytes"),
        (header(total=19), "bad-total-length", "total length 19 < IHL 20"),
        (LINUX_SYN[:59], "truncated", "total length 60 > 59 bytes received"),
        (header(frag=0x2000), "fragment", "fragment (MF=1, offset 0)"),
        (header(frag=0x0001), "fragment", "fragment (MF=0, offset 8)"),
        (header(frag=0x4000 | 0x1FFF), "fragment", "fragment (MF=0, offset 65528)"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformations(data: bytes, reason: str, message: str) -> None:
    assert reason_of(data) == (reason, message)


def test_bad_header_checksum() -> None:
    data = bytearray(LINUX_SYN)
    data[8] = 63  # TTL changed without fixing the checksum
    assert reason_of(bytes(data)) == ("bad-header-checksum", "IPv4 header checksum does not verify")


def test_header_checksum_covers_options() -> None:
    raw = bytearray(header(ver_ihl=0x46, total=24))[:20] + b"\x01\x01\x01\x00"
    packet = bytearray(fix_checksum(raw))
    packet[21] = 0x00  # an option byte changes after the checksum was computed
    assert reason_of(bytes(packet))[0] == "bad-header-checksum"


def test_parse_quoted_ignores_total_length_and_checksum() -> None:
    quoted = bytearray(LINUX_SYN[:28])
    quoted[10:12] = b"\0\0"  # a NAT mangled it
    hdr, rest = Ipv4Header.parse_quoted(bytes(quoted))
    assert (hdr.total_length, hdr.src, hdr.dst, bytes(rest)) == (
        60,
        CLIENT,
        SERVER,
        LINUX_SYN[20:28],
    )


def test_parse_quoted_first_fragment_is_fine_later_ones_are_not() -> None:
    assert Ipv4Header.parse_quoted(header(frag=0x2000, total=1500))[0].ident == 1
    with pytest.raises(WireError) as err:
        Ipv4Header.parse_quoted(header(frag=0x2001, total=1500))
    assert err.value.reason == "fragment"


def test_parsed_addresses_come_from_a_bounded_cache() -> None:
    from stack.wire import ipv4

    first, _ = Ipv4Header.parse(LINUX_SYN)
    again, _ = Ipv4Header.parse(LINUX_SYN)
    assert (first.src, first.dst) == (CLIENT, SERVER)
    assert again.src is first.src and again.dst is first.dst  # no new object a packet
    for n in range(3 * ipv4._ADDRESSES_MAX):  # a flood of sources cannot grow it
        src = IPv4Address(0x0A4D0000 + n)
        pkt, _ = Ipv4Header.parse(Ipv4Header(src, SERVER, PROTO_TCP).build(b""))
        assert pkt.src == src
        assert len(ipv4._ADDRESSES) <= ipv4._ADDRESSES_MAX
