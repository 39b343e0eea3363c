"""A small rtnetlink client: the few requests the TUN set-up makes, and nothing more.

Imports the standard library only. `Rtnl` speaks NETLINK_ROUTE (RFC 3549; the message
layouts are linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h): list interfaces and
their addresses, set a link's MTU, IPv6 address generation mode and state, add an
address, ask which route the kernel takes to an address (and out of which interface),
and wait for a change it announces (the local route a new IPv6 address gets, an
interface that goes away).
`stack.io.tun` is its only user.

Why not pyroute2 (the design card's netlink library): importing it costs about 120 ms of
CPU (it loads asyncio, ssl and most of its own package even for `pyroute2.iproute`),
which alone is more than a one-shot `pytcp connect` may take from start to exit, and
opening an IPRoute costs several ms more per call. The requests here are a few fixed
messages; building them with `struct` costs microseconds.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

# linux/netlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTN_LOCAL = 2  # a route to one of the host's own addresses
RTNLGRP_LINK = 1
RTNLGRP_IPV6_ROUTE = 11
RTA_DST = 1
RTA_OIF = 4
# linux/if_link.h, linux/if_addr.h, linux/if.h
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_AF_SPEC = 26
IFLA_INET6_ADDR_GEN_MODE = 8
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
#                                       scope, type, flags
_RTATTR = struct.Struct("=HH")  # length, type
_ERRNO = struct.Struct("=i")
RECV_SIZE = 65536
MAX_REPLIES = 100_000  # a dump longer than this is not a namespace pytcp works in


class NetlinkError(OSError):
    """The kernel answered a request with an error; `errno` is its code."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))


@dataclass(frozen=True)
class Address:
    """One address of RTM_GETADDR: IFA_LOCAL (None for IPv6, which has only
    IFA_ADDRESS) and IFA_ADDRESS (the peer of a point-to-point IPv4 address)."""

    index: int
    family: int
    prefixlen: int
    local: str | None
    address: str | None


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, value: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    raw = _RTATTR.pack(_RTATTR.size + len(value), kind) + value
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def parse_attrs(data: bytes | memoryview) -> dict[int, bytes]:
    """rtattrs -> {type: payload} (the nested flag bits stripped); a truncated one ends it."""
    out: dict[int, bytes] = {}
    view = memoryview(data)
    offset = 0
    while offset + _RTATTR.size <= len(view):
        length, kind = _RTATTR.unpack_from(view, offset)
        if length < _RTATTR.size or offset + length > len(view):
            break
        out[kind & 0x3FFF] = bytes(view[offset + _RTATTR.size : offset + length])
        offset += _align(length)
    return out


def _ip_text(family: int, raw: bytes | None) -> str | None:
    if raw is None:
        return None
    if family == socket.AF_INET and len(raw) == 4:
        return str(IPv4Address(raw))
    if family == socket.AF_INET6 and len(raw) == 16:
        return str(IPv6Address(raw))
    return None


class Rtnl:
    """One NETLINK_ROUTE socket; a context manager. Every request waits for its answer
    (an ACK, an error raised as NetlinkError, or a dump to its end)."""

    def __init__(self, groups: tuple[int, ...] = ()) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        try:
            self.sock.bind((0, 0))
            for group in groups:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        except BaseException:
            self.sock.close()
            raise
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------

    def links(self) -> dict[int, str]:
        """Every interface of this network namespace: index -> name."""
        out = {}
        for body in self._dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            index = _IFINFOMSG.unpack_from(body)[2]
            name = parse_attrs(body[_IFINFOMSG.size :]).get(IFLA_IFNAME)
            if name is not None:
                out[index] = name.rstrip(b"\0").decode(errors="replace")
        return out

    def addresses(self, family: int) -> list[Address]:
        """Every address of `family` (AF_INET, AF_INET6) on every interface."""
        out = []
        for body in self._dump(RTM_GETADDR, _IFADDRMSG.pack(family, 0, 0, 0, 0)):
            fam, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(body)
            if fam != family:
                continue
            attrs = parse_attrs(body[_IFADDRMSG.size :])
            out.append(
                Address(
                    index,
                    fam,
                    prefixlen,
                    _ip_text(fam, attrs.get(IFA_LOCAL)),
                    _ip_text(fam, attrs.get(IFA_ADDRESS)),
                )
            )
        return out

    def set_link(
        self,
        index: int,
        *,
        mtu: int | None = None,
        up: bool = False,
        addr_gen_mode: int | None = None,
    ) -> None:
        """RTM_NEWLINK on an existing interface (`ip link set`): its MTU, its IPv6
        address generation mode (IFLA_AF_SPEC/AF_INET6), and/or IFF_UP."""
        attrs = b""
        if mtu is not None:
            attrs += attr(IFLA_MTU, struct.pack("=I", mtu))
        if addr_gen_mode is not None:
            inet6 = attr(IFLA_INET6_ADDR_GEN_MODE, struct.pack("=B", addr_gen_mode))
            attrs += attr(IFLA_AF_SPEC, attr(socket.AF_INET6, inet6))
        flags = IFF_UP if up else 0
        head = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags)
        self._request(RTM_NEWLINK, 0, head + attrs)

    def add_address(
        self, index: int, family: int, address: str, prefixlen: int, flags: int = 0
    ) -> None:
        """RTM_NEWADDR (`ip addr add ADDRESS/PREFIXLEN dev INDEX`): IFA_LOCAL and
        IFA_ADDRESS both the address for IPv4, IFA_ADDRESS alone for IPv6, `flags` the
        IFA_F_* bits (IFA_F_NODAD). EEXIST when the interface has it already."""
        packed = socket.inet_pton(family, address)
        body = _IFADDRMSG.pack(family, prefixlen, flags, 0, index)
        if family == socket.AF_INET:
            body += attr(IFA_LOCAL, packed)
        body += attr(IFA_ADDRESS, packed)
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def route_type(self, address: IPv6Address) -> int | None:
        """The type (RTN_*) of the route the kernel takes to IPv6 `address` now
        (`ip -6 route get`), or None when it has none (unreachable)."""
        route = self.route6(address)
        return route[0] if route is not None else None

    def route6(self, address: IPv6Address) -> tuple[int, int | None] | None:
        """The route the kernel takes to IPv6 `address` now (`ip -6 route get`): its
        type (RTN_*) and output interface index (RTA_OIF; None without one), or None
        when it has none (unreachable)."""
        body = _RTMSG.pack(socket.AF_INET6, 128, 0, 0, 0, 0, 0, 0, 0) + attr(
            RTA_DST, address.packed
        )
        try:
            for kind, reply in self._exchange(RTM_GETROUTE, 0, body, dump=False):
                if kind == RTM_NEWROUTE and len(reply) >= _RTMSG.size:
                    oif = parse_attrs(reply[_RTMSG.size :]).get(RTA_OIF)
                    index = struct.unpack("=i", oif[:4])[0] if oif and len(oif) >= 4 else None
                    return int(_RTMSG.unpack_from(reply)[7]), index
        except NetlinkError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN):
                return None
            raise
        return None

    # -- notifications -------------------------------------------------------------------

    def wait(
        self,
        match: Callable[[int, memoryview], bool],
        timeout: float,
        done: Callable[[], bool],
    ) -> bool:
        """Wait for a notification (type, body) that `match`es: True once one came or
        `done()` (asked first, and again if notifications were lost: ENOBUFS) says so,
        False after `timeout` seconds. This socket must have joined the groups that
        carry the notification before the change could happen, so that none is missed;
        each wake-up is a message (no polling period)."""
        if done():
            return True
        deadline = time.monotonic() + timeout
        for _ in range(MAX_REPLIES):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return False
            try:
                data = self.sock.recv(RECV_SIZE)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                if done():
                    return True
                continue
            for kind, _flags, _seq, body in _framed(data):
                if match(kind, body):
                    return True
        return False

    def wait_local6(self, address: IPv6Address, timeout: float, ask: Rtnl) -> bool:
        """`wait` (on a socket in RTNLGRP_IPV6_ROUTE) until the kernel takes IPv6
        `address` as its own: its local route exists. `ask`, another Rtnl, asks for it."""
        return self.wait(
            lambda kind, body: kind == RTM_NEWROUTE and _is_local_route(body, address),
            timeout,
            lambda: ask.route_type(address) == RTN_LOCAL,
        )

    def wait_link_gone(self, index: int, timeout: float, gone: Callable[[], bool]) -> bool:
        """`wait` (on a socket in RTNLGRP_LINK) until interface `index` is deleted
        (RTM_DELLINK); `gone()` says whether it is already."""
        return self.wait(
            lambda kind, body: kind == RTM_DELLINK
            and len(body) >= _IFINFOMSG.size
            and _IFINFOMSG.unpack_from(body)[2] == index,
            timeout,
            gone,
        )

    # -- the wire ------------------------------------------------------------------------

    def _request(self, kind: int, flags: int, body: bytes) -> None:
        for _ in self._exchange(kind, flags | NLM_F_ACK, body, dump=False):
            pass

    def _dump(self, kind: int, body: bytes) -> Iterator[memoryview]:
        for _, reply in self._exchange(kind, NLM_F_DUMP, body, dump=True):
            yield reply

    def _exchange(
        self, kind: int, flags: int, body: bytes, *, dump: bool
    ) -> Iterator[tuple[int, memoryview]]:
        """Send one request and yield (type, body) of each answer to it: until
        NLMSG_DONE for a dump, else until the one reply or the ACK. An error answer
        raises NetlinkError."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags,
                                      seq, 0) + body)  # fmt: skip
        for _ in range(MAX_REPLIES):
            data = self.sock.recv(RECV_SIZE)
            for rkind, _rflags, rseq, rbody in _framed(data):
                if rseq != seq:
                    continue  # a notification, or the answer to an earlier request
                if rkind == NLMSG_DONE:
                    return
                if rkind == NLMSG_ERROR:
                    code = -_ERRNO.unpack_from(rbody)[0] if len(rbody) >= 4 else errno.EIO
                    if code:
                        raise NetlinkError(code)
                    return  # the ACK
                yield rkind, rbody
                if not dump and not flags & NLM_F_ACK:
                    return  # the one reply of a request that asked for no ACK
        raise NetlinkError(errno.EMSGSIZE)


def _framed(data: bytes) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, sequence, body) of each netlink message in one datagram."""
    view = memoryview(data)
    offset = 0
    while offset + _NLMSGHDR.size <= len(view):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(view, offset)
        if length < _NLMSGHDR.size or offset + length > len(view):
            break
        yield kind, flags, seq, view[offset + _NLMSGHDR.size : offset + length]
        offset += _align(length)


def _is_local_route(body: memoryview, address: IPv6Address) -> bool:
    """An RTM_NEWROUTE body: the local route (RTN_LOCAL, /128) of IPv6 `address`."""
    if len(body) < _RTMSG.size:
        return False
    family, dst_len, *_rest, rtype, _flags = _RTMSG.unpack_from(body)
    if family != socket.AF_INET6 or dst_len != 128 or rtype != RTN_LOCAL:
        return False
    return parse_attrs(body[_RTMSG.size :]).get(RTA_DST) == address.packed
