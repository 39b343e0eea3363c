"""scapy as the independent oracle, both ways (DESIGN §5).

What we build, scapy dissects to the same fields, and scapy recomputing every checksum
from scratch (chksum deleted) produces our exact bytes; what scapy builds, with options in
any order, unknown options and padding, we parse to the same fields.
scapy is imported here only: it is slow to import and the stack never needs it.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.wire import (
    PROTO_TCP,
    Flags,
    IcmpEcho,
    IcmpError,
    Ipv4Header,
    TcpSegment,
    WireError,
    icmp,
)
from stack.wire.ipv6 import Ipv6Header
from tests.wire.test_fuzz import segments

scapy_all = pytest.importorskip("scapy.all")
IP, TCP, ICMP, IPerror, TCPerror, UDP = (
    scapy_all.IP,
    scapy_all.TCP,
    scapy_all.ICMP,
    scapy_all.IPerror,
    scapy_all.TCPerror,
    scapy_all.UDP,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addresses = st.builds(IPv4Address, u32)


def scapy_option_fields(options: list[tuple[str | int, Any]]) -> dict[str, Any]:
    """Our TcpSegment option fields from scapy's option list (last occurrence wins)."""
    fields: dict[str, Any] = {
        "mss": None,
        "wscale": None,
        "sack_permitted": False,
        "sack": (),
        "timestamps": None,
    }
    for name, value in options:
        if name == "MSS":
            fields["mss"] = value
        elif name == "WScale":
            fields["wscale"] = value
        elif name == "SAckOK":
            fields["sack_permitted"] = True
        elif name == "SAck":
            fields["sack"] = tuple(zip(value[::2], value[1::2], strict=True))
        elif name == "Timestamp":
            fields["timestamps"] = tuple(value)
    return fields


def assert_scapy_sees(pkt: Any, seg: TcpSegment) -> None:
    tcp = pkt[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
    )
    assert (int(tcp.flags), tcp.window, tcp.urgptr) == (int(seg.flags), seg.window, seg.urgent)
    assert bytes(tcp.payload) == bytes(seg.payload)
    assert scapy_option_fields(tcp.options) == {
        "mss": seg.mss,
        "wscale": seg.wscale,
        "sack_permitted": seg.sack_permitted,
        "sack": seg.sack,
        "timestamps": seg.timestamps,
    }


def rebuilt_by_scapy(packet: bytes) -> bytes:
    """scapy's bytes for the same packet with every checksum recomputed by scapy."""
    pkt = IP(packet)
    del pkt[IP].chksum
    for layer in (TCP, ICMP):
        if layer in pkt:
            del pkt[layer].chksum
    return bytes(pkt)


# --- ours -> scapy -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(segments(), addresses, addresses, st.integers(1, 255), u16)
def test_scapy_dissects_what_we_build(
    seg: TcpSegment, src: IPv4Address, dst: IPv4Address, ttl: int, ident: int
) -> None:
    packet = Ipv4Header(src, dst, PROTO_TCP, ttl=ttl, ident=ident).build(seg.build(src, dst))
    pkt = IP(packet)
    ip = pkt[IP]
    assert (ip.version, ip.ihl, ip.len, ip.id, str(ip.flags), ip.frag, ip.ttl, ip.proto) == (
        4,
        5,
        len(packet),
        ident,
        "DF",
        0,
        ttl,
        6,
    )
    assert (ip.src, ip.dst) == (str(src), str(dst))
    assert_scapy_sees(pkt, seg)
    assert rebuilt_by_scapy(packet) == packet  # both checksums are what scapy computes


def test_scapy_dissects_our_linux_style_syn() -> None:
    src, dst = IPv4Address("10.77.0.2"), IPv4Address("10.77.0.1")
    seg = TcpSegment(
        40000,
        5000,
        1,
        0,
        Flags.SYN,
        64240,
        mss=1460,
        wscale=7,
        sack_permitted=True,
        timestamps=(1, 0),
    )
    pkt = IP(Ipv4Header(src, dst, PROTO_TCP).build(seg.build(src, dst)))
    assert pkt[TCP].options == [
        ("MSS", 1460),
        ("SAckOK", b""),
        ("Timestamp", (1, 0)),
        ("NOP", None),
        ("WScale", 7),
    ]


def test_scapy_dissects_our_icmp_messages() -> None:
    src, dst = IPv4Address("10.77.0.2"), IPv4Address("10.77.0.1")
    sent = Ipv4Header(src, dst, PROTO_TCP, ident=77).build(
        TcpSegment(40000, 5000, 123456, 0, Flags.SYN, 1000).build(src, dst)
    )
    for message in (
        icmp.build_unreachable(4, sent, mtu=1400),
        IcmpError.parse(icmp.build_unreachable(4, sent, mtu=1400)).build(),  # type: ignore[union-attr]
    ):
        packet = Ipv4Header(IPv4Address("10.77.0.254"), src, 1).build(message)
        pkt = IP(packet)
        assert (pkt[ICMP].type, pkt[ICMP].code, pkt[ICMP].nexthopmtu) == (3, 4, 1400)
        assert (pkt[IPerror].src, pkt[IPerror].dst, pkt[IPerror].id) == (str(src), str(dst), 77)
        assert (pkt[TCPerror].sport, pkt[TCPerror].dport, pkt[TCPerror].seq) == (
            40000,
            5000,
            123456,
        )
        assert rebuilt_by_scapy(packet) == packet
    echo = Ipv4Header(dst, src, 1).build(IcmpEcho(0, 0x4242, 3, b"payload").build())
    pkt = IP(echo)
    assert (pkt[ICMP].type, pkt[ICMP].id, pkt[ICMP].seq) == (0, 0x4242, 3)
    assert bytes(pkt[ICMP].payload) == b"payload"
    assert rebuilt_by_scapy(echo) == echo


# --- scapy -> ours -------------------------------------------------------------------------

scapy_options = st.lists(
    st.one_of(
        st.tuples(st.just("MSS"), u16),
        st.tuples(st.just("WScale"), st.integers(0, 255)),
        st.tuples(st.just("SAckOK"), st.just(b"")),
        st.tuples(st.just("Timestamp"), st.tuples(u32, u32)),
        st.tuples(st.just("NOP"), st.none()),
        # unknown kinds (MPTCP 30, experimental 253/254) are skipped by their length
        st.tuples(st.sampled_from([30, 253, 254]), st.binary(max_size=4)),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(
    scapy_options,
    st.lists(u32, max_size=4).filter(lambda v: len(v) % 2 == 0),
    u16,
    u16,
    u32,
    u32,
    st.integers(0, 255),
    u16,
    st.binary(max_size=200),
    addresses,
    addresses,
)
def test_we_parse_what_scapy_builds(
    options: list[tuple[Any, Any]],
    sack: list[int],
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: bytes,
    src: IPv4Address,
    dst: IPv4Address,
) -> None:
    if sack:
        options = [*options, ("SAck", tuple(sack))]
    pkt = IP(src=str(src), dst=str(dst), id=9, ttl=33) / TCP(
        sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window, options=options
    )
    pkt = pkt / payload
    raw = bytes(pkt)
    if len(bytes(pkt[TCP])) - len(payload) > 60:
        return  # scapy builds what TCP cannot carry; not a packet anyone could send
    hdr, tcp_bytes = Ipv4Header.parse(raw)
    assert (hdr.src, hdr.dst, hdr.ident, hdr.ttl, hdr.protocol, hdr.total_length) == (
        src,
        dst,
        9,
        33,
        6,
        len(raw),
    )
    seg = TcpSegment.parse(tcp_bytes, src, dst)
    assert_scapy_sees(IP(raw), seg)
    assert seg == TcpSegment(
        sport,
        dport,
        seq,
        ack,
        Flags(flags),
        window,
        0,
        payload,
        **scapy_option_fields(IP(raw)[TCP].options),
    )


@pytest.mark.parametrize("code", [0, 1, 3, 4, 13])
def test_we_parse_scapy_icmp_unreachable(code: int) -> None:
    original = IP(src="10.77.0.2", dst="10.77.0.1", id=5) / TCP(sport=40000, dport=5000, seq=99)
    quoted = bytes(original)[:28]
    pkt = ICMP(type=3, code=code, nexthopmtu=1280 if code == 4 else 0) / scapy_all.Raw(quoted)
    err = icmp.parse(bytes(pkt))
    assert isinstance(err, IcmpError)
    assert (err.type, err.code, err.mtu, err.src_port, err.dst_port, err.seq) == (
        3,
        code,
        1280 if code == 4 else None,
        40000,
        5000,
        99,
    )
    assert err.quoted.ident == 5


def test_we_parse_scapy_echo_and_ignore_udp_quotes() -> None:
    echo = icmp.parse(bytes(ICMP(type=8, id=7, seq=8) / b"hi"))
    assert echo == IcmpEcho(8, 7, 8, b"hi")
    udp_quote = bytes(IP(src="10.77.0.2", dst="10.77.0.1") / UDP(sport=1, dport=2))[:28]
    assert icmp.parse(bytes(ICMP(type=3, code=3) / scapy_all.Raw(udp_quote))) is None


# --- IPv6 ----------------------------------------------------------------------------------

addresses6 = st.builds(IPv6Address, st.integers(0, (1 << 128) - 1))


def rebuilt_by_scapy6(packet: bytes) -> bytes:
    pkt = scapy_all.IPv6(packet)
    if TCP in pkt:
        del pkt[TCP].chksum
    for layer in (scapy_all.ICMPv6PacketTooBig, scapy_all.ICMPv6EchoRequest):
        if layer in pkt:
            del pkt[layer].cksum
    return bytes(pkt)


@settings(max_examples=100, deadline=None)
@given(segments(), addresses6, addresses6, st.integers(0, 0xFFFFF))
def test_scapy_dissects_what_we_build_over_ipv6(
    seg: TcpSegment, src: IPv6Address, dst: IPv6Address, flow: int
) -> None:
    packet = Ipv6Header(src, dst, PROTO_TCP, flow_label=flow).build(seg.build(src, dst))
    pkt = scapy_all.IPv6(packet)
    assert (pkt.version, pkt.fl, pkt.plen, pkt.nh, pkt.hlim) == (6, flow, len(packet) - 40, 6, 64)
    assert (IPv6Address(pkt.src), IPv6Address(pkt.dst)) == (src, dst)
    assert_scapy_sees(pkt, seg)
    assert rebuilt_by_scapy6(packet) == packet


def test_we_parse_scapy_ipv6_with_extension_headers() -> None:
    pkt = (
        scapy_all.IPv6(src="fd77::2", dst="fd77::1", hlim=9)
        / scapy_all.IPv6ExtHdrHopByHop(options=[scapy_all.RouterAlert()])
        / scapy_all.IPv6ExtHdrDestOpt(options=[scapy_all.PadN(optdata=b"\0\0\0\0")])
        / scapy_all.IPv6ExtHdrFragment(offset=0, m=0, id=5)
        / TCP(sport=1, dport=2, seq=3, flags="S", options=[("MSS", 1220)])
        / b"data"
    )
    raw = bytes(pkt)
    hdr, payload = Ipv6Header.parse(raw)
    assert (hdr.protocol, hdr.hop_limit, hdr.payload_length) == (6, 9, len(raw) - 40)
    seg = TcpSegment.parse(payload, hdr.src, hdr.dst)
    assert seg == TcpSegment(1, 2, 3, 0, Flags.SYN, 8192, payload=b"data", mss=1220)


def test_we_refuse_scapy_ipv6_fragments() -> None:
    frag = (
        scapy_all.IPv6(src="fd77::2", dst="fd77::1")
        / scapy_all.IPv6ExtHdrFragment(offset=0, m=1, id=5)
        / TCP()
    )
    with pytest.raises(WireError) as err:
        Ipv6Header.parse(bytes(frag))
    assert err.value.reason == "fragment"


def test_icmpv6_against_scapy() -> None:
    router, us, peer = IPv6Address("fd77::fe"), IPv6Address("fd77::2"), IPv6Address("fd77::1")
    original = bytes(scapy_all.IPv6(src=str(us), dst=str(peer)) / TCP(sport=4, dport=5, seq=6))
    # scapy builds, we parse
    ptb = scapy_all.ICMPv6PacketTooBig(mtu=1300) / scapy_all.Raw(original)
    ip = scapy_all.IPv6(src=str(router), dst=str(us)) / ptb
    raw = bytes(ip)
    err = icmp.parse_v6(raw[40:], router, us)
    assert isinstance(err, icmp.Icmpv6Error)
    assert (err.type, err.code, err.mtu, err.src_port, err.dst_port, err.seq) == (
        2,
        0,
        1300,
        4,
        5,
        6,
    )
    # we build, scapy parses with a valid checksum
    ours = Ipv6Header(router, us, 58).build(
        icmp.build_unreachable_v6(2, 0, original, router, us, mtu=1300)
    )
    assert ours == raw
    echo = IcmpEcho(128, 9, 10, b"abc").build(us, peer)
    packet = Ipv6Header(us, peer, 58).build(echo)
    pkt = scapy_all.IPv6(packet)
    assert (pkt[scapy_all.ICMPv6EchoRequest].id, pkt[scapy_all.ICMPv6EchoRequest].seq) == (9, 10)
    assert rebuilt_by_scapy6(packet) == packet
