"""stack.wire.packet: the virtio-net header both ways, finishing a partial checksum, and
software GSO, with scapy as the oracle for what a wire would carry."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from stack.wire import Ipv4Header, Ipv6Header, TcpSegment, WireError
from stack.wire.checksum import pseudo_header_sum
from stack.wire.packet import (
    F_DATA_VALID,
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    NO_OFFLOAD_HDR,
    VNET_HDR,
    Packet,
)

SRC, DST = IPv4Address("10.77.0.1"), IPv4Address("10.77.0.2")
SRC6, DST6 = IPv6Address("fd77::1"), IPv6Address("fd77::2")


def test_from_vnet_reads_every_fact_and_keeps_the_packet_unjoined() -> None:
    raw = VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 52, 1448, 20, 16) + b"IP packet"
    pkt = Packet.from_vnet(raw)
    facts = (pkt.gso_type, pkt.gso_size, pkt.needs_csum, pkt.data_valid)
    assert facts == (GSO_TCPV4, 1448, True, False)
    assert (pkt.csum_start, pkt.csum_offset) == (20, 16)
    assert isinstance(pkt.head, memoryview) and bytes(pkt) == b"IP packet"
    assert pkt.is_gso and pkt.checksum_trusted
    valid = Packet.from_vnet(VNET_HDR.pack(F_DATA_VALID, GSO_NONE, 0, 0, 0, 0) + b"x")
    assert (valid.is_gso, valid.checksum_trusted, valid.gso_size) == (False, True, 0)
    plain = Packet.from_vnet(NO_OFFLOAD_HDR + b"x")
    assert (plain.is_gso, plain.checksum_trusted) == (False, False)
    # The ECN bit rides on the type; a size without a GSO type means nothing.
    ecn = Packet.from_vnet(VNET_HDR.pack(0, GSO_TCPV6 | GSO_ECN, 0, 1428, 0, 0) + b"x")
    assert (ecn.gso_type, ecn.gso_size) == (GSO_TCPV6, 1428)
    assert Packet.from_vnet(VNET_HDR.pack(0, GSO_NONE, 0, 1448, 0, 0) + b"x").gso_size == 0


def test_from_vnet_refuses_a_short_header() -> None:
    with pytest.raises(WireError) as exc:
        Packet.from_vnet(b"\x01\x01\x00")
    assert exc.value.reason == "truncated"


def test_vnet_header_states_the_facts_and_covers_the_checksum_field() -> None:
    pkt = Packet(bytes(52), bytes(2896), gso_type=GSO_TCPV4, gso_size=1448, needs_csum=True,
                 csum_start=20, csum_offset=16)  # fmt: skip
    assert pkt.vnet_header() == VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 52, 1448, 20, 16)
    assert Packet(bytes(40)).vnet_header() == NO_OFFLOAD_HDR
    small = Packet(bytes(30), needs_csum=True, csum_start=20, csum_offset=16)
    assert small.vnet_header() == VNET_HDR.pack(F_NEEDS_CSUM, GSO_NONE, 38, 0, 20, 16)
    assert len(pkt) == 52 + 2896


def _partial(whole: bytes, ip_len: int, src: IPv4Address | IPv6Address,
             dst: IPv4Address | IPv6Address) -> bytes:  # fmt: skip
    """`whole` with its TCP checksum field holding the pseudo-header sum only."""
    partial = bytearray(whole)
    pseudo = pseudo_header_sum(src, dst, 6, len(whole) - ip_len)
    struct.pack_into("!H", partial, ip_len + 16, pseudo)
    return bytes(partial)


def test_finished_completes_a_partial_checksum_as_scapy_computes_it() -> None:
    from scapy.layers.inet import IP, TCP

    whole = bytes(IP(src=str(SRC), dst=str(DST), id=9) / TCP(sport=40000, dport=5000, seq=1,
                  ack=2, flags="PA") / (b"z" * 3001))  # fmt: skip
    pkt = Packet(_partial(whole, 20, SRC, DST), needs_csum=True, csum_start=20, csum_offset=16)
    assert bytes(pkt) != whole and pkt.finished() == whole
    assert Packet(whole).finished() == whole  # nothing to finish
    bogus = Packet(whole, needs_csum=True, csum_start=20, csum_offset=60000)
    assert bogus.finished() == whole  # facts out of range: left for the receiver to judge


def test_build_header_partial_holds_the_pseudo_header_sum() -> None:
    seg = TcpSegment(5000, 40000, 7, 9, 0x18, 512, payload=b"abc" * 700, timestamps=(1, 2))
    full = seg.build_header(SRC, DST)
    partial = seg.build_header(SRC, DST, partial=True)
    length = len(full) + len(seg.payload)
    assert partial[16:18] == struct.pack("!H", pseudo_header_sum(SRC, DST, 6, length))
    assert full[:16] == partial[:16] and full[18:] == partial[18:]
    assert full + bytes(seg.payload) == seg.build(SRC, DST)
    ip = Ipv4Header(SRC, DST, 6).build_header(20 + length)
    pkt = Packet(ip + partial, seg.payload, needs_csum=True, csum_start=20, csum_offset=16)
    assert pkt.finished() == ip + seg.build(SRC, DST)


def _super(version: int, payload: bytes, flags: int, gso_size: int) -> Packet:
    seg = TcpSegment(5000, 40000, 2**32 - 1000, 77, flags, 512, payload=payload,
                     timestamps=(5, 6))  # fmt: skip
    if version == 4:
        tcp = seg.build_header(SRC, DST, partial=True)
        ip = Ipv4Header(SRC, DST, 6, ident=0xFFFE).build_header(20 + len(tcp) + len(payload))
        gso = GSO_TCPV4
    else:
        tcp = seg.build_header(SRC6, DST6, partial=True)
        ip = Ipv6Header(SRC6, DST6, 6).build_header(len(tcp) + len(payload))
        gso = GSO_TCPV6
    return Packet(ip + tcp, payload, gso_type=gso, gso_size=gso_size, needs_csum=True,
                  csum_start=len(ip), csum_offset=16)  # fmt: skip


@pytest.mark.parametrize("version", [4, 6])
def test_segments_cut_a_super_packet_as_the_kernel_would(version: int) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    payload = bytes(range(256)) * 20  # 5120 bytes: 3 full segments of 1448 and 776
    fin_psh_cwr_ack = 0x01 | 0x08 | 0x80 | 0x10
    wires = _super(version, payload, fin_psh_cwr_ack, 1448).segments()
    assert len(wires) == 4
    got = b""
    for i, wire in enumerate(wires):
        pkt = IP(wire) if version == 4 else IPv6(wire)
        tcp = pkt[TCP]
        # scapy recomputes both checksums from scratch: they must equal ours.
        fresh = (IP if version == 4 else IPv6)(wire)
        del fresh[TCP].chksum
        if version == 4:
            del fresh[IP].chksum
            assert IP(bytes(fresh)).chksum == pkt.chksum
            assert pkt.id == (0xFFFE + i) & 0xFFFF  # identification counts up, wrapping
            assert pkt.len == len(wire)
        else:
            assert pkt.plen == len(wire) - 40
        rebuilt = (IP if version == 4 else IPv6)(bytes(fresh))
        assert rebuilt[TCP].chksum == tcp.chksum
        assert tcp.seq == (2**32 - 1000 + i * 1448) % 2**32  # wraps past 2**32
        assert tcp.ack == 77 and tcp.options == [("NOP", None), ("NOP", None),
                                                 ("Timestamp", (5, 6))]  # fmt: skip
        last, first = i == len(wires) - 1, i == 0
        assert bool(tcp.flags & 0x01) == last and bool(tcp.flags & 0x08) == last  # FIN, PSH
        assert bool(tcp.flags & 0x80) == first  # CWR only on the first (tcp_gso_segment)
        assert tcp.flags & 0x10  # ACK on every one
        got += bytes(tcp.payload)
        assert len(bytes(tcp.payload)) == (776 if last else 1448)
    assert got == payload


def test_segments_of_a_plain_packet_is_the_packet_finished() -> None:
    pkt = _super(4, b"x" * 100, 0x18, 0)
    assert not pkt.is_gso
    assert pkt.segments() == [pkt.finished()]
    assert TcpSegment.parse(Ipv4Header.parse(pkt.finished())[1], SRC, DST).payload == b"x" * 100
