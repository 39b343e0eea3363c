"""stack/io/rtnl.py: its messages byte for byte, and each request against the kernel's
answer in a private namespace, checked with iproute2's `ip`."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
from ipaddress import IPv6Address
from typing import cast

import pytest

from stack.io import rtnl
from stack.io.rtnl import RTNLGRP_IPV6_ROUTE, RTNLGRP_LINK, NetlinkError, Rtnl
from tests.conftest import Netns

# -- the wire, without a kernel ---------------------------------------------------------


def test_attr_is_padded_to_four_bytes() -> None:
    assert rtnl.attr(rtnl.IFLA_IFNAME, b"lo\0") == struct.pack("=HH", 7, 3) + b"lo\0" + b"\0"
    assert rtnl.attr(rtnl.IFLA_MTU, struct.pack("=I", 1500)) == struct.pack("=HHI", 8, 4, 1500)
    # Nested: IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE = 1 } }, as `ip link set
    # addrgenmode none` sends it.
    inner = rtnl.attr(rtnl.IFLA_INET6_ADDR_GEN_MODE, b"\x01")
    assert inner == struct.pack("=HHB3x", 5, 8, 1)
    assert rtnl.attr(rtnl.IFLA_AF_SPEC, rtnl.attr(socket.AF_INET6, inner)) == (
        struct.pack("=HH", 16, 26) + struct.pack("=HH", 12, 10) + inner
    )


def test_parse_attrs_takes_whole_attributes_only() -> None:
    data = rtnl.attr(3, b"eth0\0") + rtnl.attr(4, struct.pack("=I", 9000))
    assert rtnl.parse_attrs(data) == {3: b"eth0\0", 4: struct.pack("=I", 9000)}
    # A truncated last attribute, or one whose length is below its header, ends the list.
    assert rtnl.parse_attrs(data + struct.pack("=HH", 40, 5) + b"xx") == {
        3: b"eth0\0",
        4: struct.pack("=I", 9000),
    }
    assert rtnl.parse_attrs(struct.pack("=HH", 2, 1) + b"\0" * 8) == {}
    # The NLA_F_NESTED / NLA_F_NET_BYTEORDER bits are not part of the type.
    assert rtnl.parse_attrs(rtnl.attr(0x8000 | 26, b"abcd")) == {26: b"abcd"}


def _route_body(rtype: int, dst: bytes, dst_len: int = 128, family: int = socket.AF_INET6) -> bytes:
    head = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, 255, 2, 0, rtype, 0)
    return head + rtnl.attr(rtnl.RTA_DST, dst)


def test_local_route_notification_is_recognised_exactly() -> None:
    address = IPv6Address("fd77:3::1")
    match = rtnl._is_local_route
    assert match(memoryview(_route_body(rtnl.RTN_LOCAL, address.packed)), address)
    assert not match(memoryview(_route_body(1, address.packed)), address)  # unicast
    assert not match(memoryview(_route_body(rtnl.RTN_LOCAL, IPv6Address("fd77:3::2").packed)),
                     address)  # fmt: skip
    assert not match(memoryview(_route_body(rtnl.RTN_LOCAL, address.packed, dst_len=64)), address)
    assert not match(memoryview(_route_body(rtnl.RTN_LOCAL, b"\0" * 4, family=2)), address)
    assert not match(memoryview(b"\0" * 4), address)  # shorter than an rtmsg


def test_framing_stops_at_a_bad_length() -> None:
    one = struct.pack("=IHHII", 20, rtnl.NLMSG_DONE, 2, 7, 0) + b"\0" * 4
    bad = struct.pack("=IHHII", 8, 3, 0, 8, 0)  # shorter than its own header
    assert [(k, f, s, bytes(b)) for k, f, s, b in rtnl._framed(one + bad + one)] == [
        (rtnl.NLMSG_DONE, 2, 7, b"\0" * 4)
    ]


# -- against the kernel -----------------------------------------------------------------


def _ip_json(netns: Netns, *args: str) -> list[dict]:
    return list(json.loads(netns.run("ip", "-j", *args).stdout or "[]"))


@pytest.mark.netns
def test_links_and_addresses_are_what_ip_shows(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "dev", "r0", "mode", "tun")
    netns.run("ip", "addr", "add", "10.77.4.1/24", "dev", "r0")
    netns.run("ip", "addr", "add", "10.77.5.1", "peer", "10.77.5.9", "dev", "r0")
    netns.run("ip", "addr", "add", "fd77:4::1/64", "dev", "r0", "nodad")
    with Rtnl() as nl:
        links = nl.links()
        v4 = nl.addresses(socket.AF_INET)
        v6 = nl.addresses(socket.AF_INET6)
    assert links == {link["ifindex"]: link["ifname"] for link in _ip_json(netns, "link")}
    index = socket.if_nametoindex("r0")
    assert sorted((a.index, a.prefixlen, a.local, a.address) for a in v4) == sorted(
        [
            (socket.if_nametoindex("lo"), 8, "127.0.0.1", "127.0.0.1"),
            (index, 24, "10.77.4.1", "10.77.4.1"),
            (index, 32, "10.77.5.1", "10.77.5.9"),  # point-to-point: IFA_ADDRESS the peer
        ]
    )
    assert [(a.index, a.prefixlen, a.local, a.address) for a in v6 if a.index == index] == [
        (index, 64, None, "fd77:4::1")
    ]


@pytest.mark.netns
def test_set_link_and_add_address_do_what_ip_would(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "dev", "r1", "mode", "tun")
    index = socket.if_nametoindex("r1")
    with Rtnl() as nl:
        nl.set_link(index, mtu=1400)
        nl.set_link(index, addr_gen_mode=1)  # none
        nl.add_address(index, socket.AF_INET, "10.77.6.1", 24)
        nl.add_address(index, socket.AF_INET6, "fd77:6::1", 64, flags=0x02)  # IFA_F_NODAD
        nl.set_link(index, up=True)
        with pytest.raises(NetlinkError) as exc:
            nl.add_address(index, socket.AF_INET, "10.77.6.1", 24)
        assert (exc.value.errno, exc.value.strerror) == (errno.EEXIST, "File exists")
        with pytest.raises(NetlinkError) as exc:
            nl.set_link(index, mtu=10)  # below the minimum: the kernel says EINVAL
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(NetlinkError) as exc:
            nl.set_link(999_999, up=True)
        assert exc.value.errno == errno.ENODEV
    link = json.loads(netns.run("ip", "-d", "-j", "link", "show", "dev", "r1").stdout)[0]
    assert (link["mtu"], link["inet6_addr_gen_mode"], "UP" in link["flags"]) == (1400, "none", True)
    info = json.loads(netns.run("ip", "-j", "addr", "show", "dev", "r1").stdout)[0]
    assert [(a["family"], a["local"], a["prefixlen"], a.get("nodad", False))
            for a in info["addr_info"]] == [
        ("inet", "10.77.6.1", 24, False),
        ("inet6", "fd77:6::1", 64, True),
    ]  # fmt: skip


@pytest.mark.netns
def test_route_type_is_what_ip_route_get_says(netns: Netns) -> None:
    netns.run("ip", "-6", "addr", "add", "fd77:7::1/64", "dev", "lo")
    with Rtnl() as nl:
        assert nl.route_type(IPv6Address("::1")) == rtnl.RTN_LOCAL
        # No route at all (only lo is up, and no default route): None, not an error.
        assert nl.route_type(IPv6Address("fd77:99::1")) is None


class _NoRoute:
    def route_type(self, address: IPv6Address) -> int | None:
        return None


def _open_tun(name: str) -> int:
    """A TUN interface `name` held by the returned descriptor (it has carrier while open)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH22x", name.encode(), 0x0001 | 0x1000))
    return fd


@pytest.mark.netns
def test_wait_local6_returns_on_the_kernels_notification(netns: Netns) -> None:
    fd = _open_tun("r3")
    try:
        with Rtnl() as nl, Rtnl(groups=(RTNLGRP_IPV6_ROUTE,)) as events:
            # An address nobody has: no local route comes, the wait ends at its bound.
            assert events.wait_local6(IPv6Address("fd77:8::1"), 0.05, ask=nl) is False
            # A new one: the kernel's address work inserts its route and says so.
            netns.run("ip", "link", "set", "r3", "addrgenmode", "none")
            netns.run("ip", "-6", "addr", "add", "fd77:9::1/64", "dev", "r3", "nodad")
            netns.run("ip", "link", "set", "r3", "up")
            # Told by the notification alone: `ask` here never finds the route.
            assert events.wait_local6(IPv6Address("fd77:9::1"), 5.0, ask=cast(Rtnl, _NoRoute()))
            assert nl.route_type(IPv6Address("fd77:9::1")) == rtnl.RTN_LOCAL
    finally:
        os.close(fd)


@pytest.mark.netns
def test_wait_link_gone_returns_on_rtm_dellink(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "dev", "r4", "mode", "tun")
    index = socket.if_nametoindex("r4")

    def gone() -> bool:
        try:
            socket.if_nametoindex("r4")
        except OSError:
            return True
        return False

    with Rtnl(groups=(RTNLGRP_LINK,)) as events:
        assert events.wait_link_gone(index, 0.05, gone) is False  # still there
        netns.run("ip", "link", "del", "r4")
        assert events.wait_link_gone(index, 5.0, lambda: False) is True  # the notification
    with Rtnl(groups=(RTNLGRP_LINK,)) as events:
        assert events.wait_link_gone(index, 5.0, gone) is True  # gone before the wait
