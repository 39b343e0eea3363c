"""format_segment prints what tcpdump -nn prints for the same segment."""

from __future__ import annotations

from ipaddress import IPv4Address

from stack.wire import Flags, Ipv4Header, TcpSegment, format_segment
from stack.wire.ipv6 import Ipv6Header
from stack.wire.pretty import format_flags
from tests.wire.vectors import LINUX_DATA, LINUX_SYN, LINUX_SYN6, LINUX_SYN_ACK

A = IPv4Address("10.77.0.2")
B = IPv4Address("10.77.0.1")


def line(packet: bytes, **kw) -> str:
    hdr, payload = Ipv4Header.parse(packet)
    return format_segment(TcpSegment.parse(payload, hdr.src, hdr.dst), hdr.src, hdr.dst, **kw)


def test_internals_example() -> None:
    seg = TcpSegment(
        5000,
        40000,
        1,
        2,
        Flags.SYN | Flags.ACK,
        64240,
        mss=1460,
        sack_permitted=True,
        timestamps=(1, 2),
        wscale=7,
    )
    assert format_segment(seg, A, B) == (
        "10.77.0.2.5000 > 10.77.0.1.40000: Flags [S.], seq 1, ack 2, win 64240, "
        "options [mss 1460,sackOK,TS val 1 ecr 2,nop,wscale 7], length 0"
    )


def test_linux_captures_match_tcpdump() -> None:
    # The lines tcpdump -nn -S printed for the captured packets (see vectors.py).
    assert line(LINUX_SYN) == (
        "10.77.0.2.40000 > 10.77.0.1.5000: Flags [S], seq 1792775970, win 65495, "
        "options [mss 65495,sackOK,TS val 2880921809 ecr 0,nop,wscale 10], length 0"
    )
    assert line(LINUX_SYN_ACK) == (
        "10.77.0.1.5000 > 10.77.0.2.40000: Flags [S.], seq 4254408396, ack 1792775971, "
        "win 65483, options [mss 65495,sackOK,TS val 3942130038 ecr 2880921809,nop,wscale 10], "
        "length 0"
    )


def test_relative_numbers_after_the_handshake() -> None:
    # tcpdump without -S: "seq 1:7, ack 1".
    assert line(LINUX_DATA, isn=(1792775970, 4254408396)) == (
        "10.77.0.2.40000 > 10.77.0.1.5000: Flags [P.], seq 1:7, ack 1, win 64, "
        "options [nop,nop,TS val 2880921809 ecr 3942130038], length 6"
    )


def test_relative_numbers_wrap() -> None:
    seg = TcpSegment(1, 2, 5, 3, Flags.ACK, 9, payload=b"ab", sack=((10, 20),))
    text = format_segment(seg, A, B, isn=(0xFFFFFFFE, 0xFFFFFFF0))
    assert text == (
        "10.77.0.2.1 > 10.77.0.1.2: Flags [.], seq 7:9, ack 19, win 9, "
        "options [nop,nop,sack 1 {26:36}], length 2"
    )


def test_bare_ack_has_no_seq() -> None:
    seg = TcpSegment(1, 2, 100, 200, Flags.ACK, 512)
    assert (
        format_segment(seg, A, B)
        == "10.77.0.2.1 > 10.77.0.1.2: Flags [.], ack 200, win 512, length 0"
    )


def test_rst_fin_urg_and_sack_options() -> None:
    rst = TcpSegment(1, 2, 7, 0, Flags.RST, 0)
    assert (
        format_segment(rst, A, B) == "10.77.0.2.1 > 10.77.0.1.2: Flags [R], seq 7, win 0, length 0"
    )
    fin = TcpSegment(
        1,
        2,
        7,
        8,
        Flags.FIN | Flags.PSH | Flags.ACK | Flags.URG,
        5,
        urgent=3,
        payload=b"x",
        sack_permitted=True,
        wscale=0,
        sack=((1, 2), (3, 4)),
    )
    assert format_segment(fin, A, B) == (
        "10.77.0.2.1 > 10.77.0.1.2: Flags [FP.U], seq 7:8, ack 8, win 5, urg 3, "
        "options [nop,nop,sackOK,nop,wscale 0,nop,nop,sack 2 {1:2}{3:4}], length 1"
    )


def test_flag_letters() -> None:
    assert format_flags(Flags(0)) == "none"
    assert format_flags(Flags.SYN | Flags.ECE | Flags.CWR) == "SEW"
    assert format_flags(Flags.RST | Flags.ACK) == "R."


def test_ipv6_addresses_as_tcpdump_prints_them() -> None:
    hdr, payload = Ipv6Header.parse(LINUX_SYN6)
    seg = TcpSegment.parse(payload, hdr.src, hdr.dst)
    assert format_segment(seg, hdr.src, hdr.dst) == (
        "fd77::2.40000 > fd77::1.5000: Flags [S], seq 3580363760, win 65476, "
        "options [mss 65476,sackOK,TS val 2605812712 ecr 0,nop,wscale 10], length 0"
    )
