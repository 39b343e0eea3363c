"""The Linux kernel as a second oracle: what we build over a TUN device, the kernel's TCP
accepts (its checksum check included) and answers; what it answers, we parse.

Runs in a private network namespace (10.77.0.0/16, fd77::/16 only). The TUN device is opened
here with one ioctl so that this test depends on the wire layer alone.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from stack.wire import (
    PROTO_ICMP,
    PROTO_TCP,
    Flags,
    IcmpEcho,
    Ipv4Header,
    TcpSegment,
    icmp,
)
from stack.wire.ipv6 import PROTO_ICMPV6, Ipv6Header

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
KERNEL, US = IPv4Address("10.77.0.1"), IPv4Address("10.77.0.2")
KERNEL6, US6 = IPv6Address("fd77::1"), IPv6Address("fd77::2")
PORT = 5000


@pytest.fixture
def tun(netns: Any) -> Iterator[int]:  # tests.conftest.Netns
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", b"wire0", IFF_TUN | IFF_NO_PI))
        netns.run("ip", "addr", "add", "10.77.0.1/24", "dev", "wire0")
        netns.run("ip", "-6", "addr", "add", "fd77::1/64", "dev", "wire0", "nodad")
        netns.run("ip", "link", "set", "wire0", "up")
        # Linux takes fd77::1 as its own only once its address work has inserted the
        # local route, just after link-up, even with nodad: a SYN before that is dropped
        # (Ip6InAddrErrors). Bounded wait for that event.
        for _ in range(1000):
            if netns.run("ip", "-6", "route", "show", "table", "local", "fd77::1").stdout:
                break
            time.sleep(0.005)
        yield fd
    finally:
        os.close(fd)


def read_until(fd: int, match: Callable[[bytes], Any]) -> Any:
    """The first packet from the kernel that `match` accepts (returns non-None); bounded."""
    deadline = time.monotonic() + 10
    for _ in range(1000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        found = match(os.read(fd, 65536))
        if found is not None:
            return found
    raise AssertionError("the kernel did not answer")


def tcp_reply(src_port: int) -> Callable[[bytes], TcpSegment | None]:
    def match(packet: bytes) -> TcpSegment | None:
        if packet[0] >> 4 == 4:
            hdr, payload = Ipv4Header.parse(packet)
            if hdr.protocol != PROTO_TCP:
                return None
            seg = TcpSegment.parse(payload, hdr.src, hdr.dst)
        else:
            hdr6, payload = Ipv6Header.parse(packet)
            if hdr6.protocol != PROTO_TCP:
                return None  # router solicitations, MLD reports
            seg = TcpSegment.parse(payload, hdr6.src, hdr6.dst)
        return seg if seg.dst_port == src_port else None

    return match


def syn(port: int, *, dst_port: int = PORT) -> TcpSegment:
    return TcpSegment(
        port,
        dst_port,
        1000,
        0,
        Flags.SYN,
        64240,
        mss=1460,
        wscale=7,
        sack_permitted=True,
        timestamps=(12345, 0),
    )


def in_csum_errors() -> int:
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("InCsumErrors")])


@pytest.mark.netns
def test_kernel_answers_our_syn_and_we_parse_its_syn_ack(tun: int) -> None:
    with socket.create_server((str(KERNEL), PORT)):
        os.write(tun, Ipv4Header(US, KERNEL, PROTO_TCP).build(syn(40000).build(US, KERNEL)))
        reply = read_until(tun, tcp_reply(40000))
    assert reply.flags == Flags.SYN | Flags.ACK
    assert (reply.src_port, reply.ack, reply.mss, reply.sack_permitted) == (PORT, 1001, 1460, True)
    assert reply.timestamps is not None and reply.timestamps[1] == 12345  # RFC 7323 TSecr
    assert reply.wscale is not None


@pytest.mark.netns
def test_kernel_resets_a_closed_port(tun: int) -> None:
    os.write(tun, Ipv4Header(US, KERNEL, PROTO_TCP).build(syn(40001, dst_port=9).build(US, KERNEL)))
    reply = read_until(tun, tcp_reply(40001))
    assert (reply.flags, reply.seq, reply.ack) == (Flags.RST | Flags.ACK, 0, 1001)


@pytest.mark.netns
def test_kernel_counts_our_corrupted_checksum(tun: int) -> None:
    with socket.create_server((str(KERNEL), PORT)):
        before = in_csum_errors()
        bad = bytearray(syn(40002).build(US, KERNEL))
        bad[16] ^= 0xFF
        os.write(tun, Ipv4Header(US, KERNEL, PROTO_TCP).build(bytes(bad)))
        # A good SYN after it: once it is answered, the bad one was processed (and dropped).
        os.write(tun, Ipv4Header(US, KERNEL, PROTO_TCP).build(syn(40003).build(US, KERNEL)))
        reply = read_until(tun, lambda p: tcp_reply(40002)(p) or tcp_reply(40003)(p))
        assert reply.dst_port == 40003
        assert in_csum_errors() == before + 1


@pytest.mark.netns
def test_kernel_answers_our_ping(tun: int) -> None:
    request = IcmpEcho(8, 0x77, 1, b"pytcp wire" * 10).build()
    os.write(tun, Ipv4Header(US, KERNEL, PROTO_ICMP).build(request))

    def echo_reply(packet: bytes) -> IcmpEcho | None:
        if packet[0] >> 4 != 4:
            return None
        hdr, payload = Ipv4Header.parse(packet)
        message = icmp.parse(payload) if hdr.protocol == PROTO_ICMP else None
        return message if isinstance(message, IcmpEcho) else None

    assert read_until(tun, echo_reply) == IcmpEcho(0, 0x77, 1, b"pytcp wire" * 10)


@pytest.mark.netns
def test_kernel_answers_our_ipv6_syn_and_ping(tun: int) -> None:
    with socket.create_server((str(KERNEL6), PORT), family=socket.AF_INET6):
        segment = syn(40004).build(US6, KERNEL6)
        os.write(tun, Ipv6Header(US6, KERNEL6, PROTO_TCP).build(segment))
        reply = read_until(tun, tcp_reply(40004))
    assert (reply.flags, reply.ack, reply.mss) == (Flags.SYN | Flags.ACK, 1001, 1440)
    request = IcmpEcho(128, 5, 6, b"six").build(US6, KERNEL6)
    os.write(tun, Ipv6Header(US6, KERNEL6, PROTO_ICMPV6).build(request))

    def echo_reply(packet: bytes) -> IcmpEcho | None:
        if packet[0] >> 4 != 6:
            return None
        hdr, payload = Ipv6Header.parse(packet)
        if hdr.protocol != PROTO_ICMPV6:
            return None
        message = icmp.parse_v6(payload, hdr.src, hdr.dst)
        return message if isinstance(message, IcmpEcho) and message.type == 129 else None

    assert read_until(tun, echo_reply) == IcmpEcho(129, 5, 6, b"six")
