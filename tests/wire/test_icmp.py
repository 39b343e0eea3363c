"""ICMP: destination unreachable quoting our TCP segment (every code, frag-needed MTU), echo."""

from __future__ import annotations

import pytest

from stack.wire import PROTO_ICMP, IcmpEcho, IcmpError, Ipv4Header, WireError, icmp
from stack.wire.checksum import internet_checksum
from tests.wire.vectors import CLIENT, LINUX_DATA, LINUX_SYN, SERVER

# Destination unreachable, code 4, next-hop MTU 1400, quoting LINUX_SYN's header + 8 bytes,
# written out by hand from RFC 792 / RFC 1191 §4.
FRAG_NEEDED = bytes.fromhex(
    "0304"
    "0000"
    "0000"
    "0578"  # type 3, code 4, checksum (set below), unused, MTU 1400
    "4500003c2c8b40004006f9940a4d00020a4d0001"  # the quoted IPv4 header
    "9c4013886adb9722"  # ports 40000 > 5000, seq 1792775970
)
FRAG_NEEDED = FRAG_NEEDED[:2] + internet_checksum(FRAG_NEEDED).to_bytes(2, "big") + FRAG_NEEDED[4:]


def test_frag_needed_vector_parses_to_exact_fields() -> None:
    err = IcmpError.parse(FRAG_NEEDED)
    quoted, _ = Ipv4Header.parse(LINUX_SYN)
    assert err == IcmpError(
        type=3, code=4, mtu=1400, quoted=quoted, src_port=40000, dst_port=5000, seq=1792775970
    )


def test_build_unreachable_from_the_original_packet() -> None:
    assert icmp.build_unreachable(4, LINUX_SYN, mtu=1400) == FRAG_NEEDED


def test_icmp_error_builds_back_to_the_same_bytes() -> None:
    err = IcmpError.parse(FRAG_NEEDED)
    assert err is not None
    assert err.build() == FRAG_NEEDED


@pytest.mark.parametrize("code", range(16))
def test_every_unreachable_code(code: int) -> None:
    err = icmp.parse(icmp.build_unreachable(code, LINUX_DATA, mtu=576 if code == 4 else None))
    assert isinstance(err, IcmpError)
    assert (err.type, err.code, err.mtu) == (3, code, 576 if code == 4 else None)
    assert (err.quoted.src, err.quoted.dst, err.src_port, err.dst_port, err.seq) == (
        CLIENT,
        SERVER,
        40000,
        5000,
        1792775971,
    )


def test_longer_quote_is_fine() -> None:
    # RFC 1812 §4.3.2.3 routers quote as much as fits in 576 bytes.
    message = bytearray(icmp.build_unreachable(3, LINUX_DATA)[:8] + LINUX_DATA)
    message[2:4] = b"\0\0"
    message[2:4] = internet_checksum(message).to_bytes(2, "big")
    err = icmp.parse(bytes(message))
    assert isinstance(err, IcmpError)
    assert (err.code, err.seq, err.quoted.total_length) == (3, 1792775971, 58)


def test_quote_of_a_non_tcp_packet_is_not_ours() -> None:
    udp = Ipv4Header(CLIENT, SERVER, 17).build(bytes(8))
    assert icmp.parse(icmp.build_unreachable(3, udp)) is None


def test_bad_checksum() -> None:
    data = bytearray(FRAG_NEEDED)
    data[-1] ^= 0x40
    with pytest.raises(WireError) as err:
        icmp.parse(bytes(data))
    assert (err.value.reason, str(err.value)) == ("bad-checksum", "ICMP checksum does not verify")


def test_truncated_header() -> None:
    with pytest.raises(WireError) as err:
        icmp.parse(FRAG_NEEDED[:7])
    assert (err.value.reason, str(err.value)) == ("truncated", "ICMP message of 7 bytes < 8")


def test_quote_too_short_for_the_ports() -> None:
    short = icmp._build(3, 1, 0, LINUX_SYN[:27])
    with pytest.raises(WireError) as err:
        icmp.parse(short)
    assert (err.value.reason, str(err.value)) == (
        "truncated",
        "ICMP quotes 7 bytes of TCP header < 8",
    )


def test_quote_too_short_for_the_ip_header() -> None:
    with pytest.raises(WireError) as err:
        icmp.parse(icmp._build(3, 1, 0, LINUX_SYN[:12]))
    assert err.value.reason == "truncated"


def test_quote_of_another_ip_version() -> None:
    bad = bytes([0x65]) + LINUX_SYN[1:28]
    with pytest.raises(WireError) as err:
        icmp.parse(icmp._build(3, 1, 0, bad))
    assert err.value.reason == "bad-version"


@pytest.mark.parametrize("icmp_type", [4, 5, 11, 12, 13, 14, 42])
def test_other_types_are_none(icmp_type: int) -> None:
    # Redirect, time exceeded, parameter problem, timestamps...: valid, not acted on.
    assert icmp.parse(icmp._build(icmp_type, 0, 0, LINUX_SYN[:28])) is None
    assert IcmpError.parse(icmp._build(icmp_type, 0, 0, LINUX_SYN[:28])) is None


# --- echo ----------------------------------------------------------------------------------

# `ping -c1 -p 61` style request: type 8, ident 0x1234, seq 1, 4 bytes of data.
ECHO_REQUEST = bytes.fromhex("080000001234000161626364")
ECHO_REQUEST = (
    ECHO_REQUEST[:2] + internet_checksum(ECHO_REQUEST).to_bytes(2, "big") + ECHO_REQUEST[4:]
)


def test_echo_request_parses() -> None:
    echo = icmp.parse(ECHO_REQUEST)
    assert echo == IcmpEcho(type=8, ident=0x1234, seq=1, payload=b"abcd", code=0)
    assert isinstance(echo, IcmpEcho) and echo.is_request
    assert IcmpError.parse(ECHO_REQUEST) is None


def test_echo_request_builds_back() -> None:
    assert IcmpEcho(8, 0x1234, 1, b"abcd").build() == ECHO_REQUEST


def test_echo_reply_mirrors_the_request() -> None:
    echo = icmp.parse(ECHO_REQUEST)
    assert isinstance(echo, IcmpEcho)
    reply = echo.reply()
    assert reply == IcmpEcho(0, 0x1234, 1, b"abcd")
    assert not reply.is_request
    data = reply.build()
    # RFC 792: only the type changes, so the checksum grows by exactly 0x0800.
    assert (
        data
        == b"\x00\x00"
        + (int.from_bytes(ECHO_REQUEST[2:4], "big") + 0x0800).to_bytes(2, "big")
        + ECHO_REQUEST[4:]
    )
    assert icmp.parse(data) == reply


def test_echo_in_an_ip_packet() -> None:
    packet = Ipv4Header(SERVER, CLIENT, PROTO_ICMP).build(IcmpEcho(0, 7, 9, b"x" * 56).build())
    hdr, payload = Ipv4Header.parse(packet)
    assert hdr.protocol == PROTO_ICMP
    assert icmp.parse(payload) == IcmpEcho(0, 7, 9, b"x" * 56)


def test_echo_build_out_of_range() -> None:
    with pytest.raises(ValueError, match="ICMP field out of range"):
        IcmpEcho(8, 0x10000, 0).build()
