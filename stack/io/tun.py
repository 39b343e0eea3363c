"""The TUN device: open /dev/net/tun, pick or attach an interface, configure it.

Imports the standard library, stack.io.rtnl (netlink) and stack.wire.packet.

`TunLink.open()` follows DESIGN §3. With no name it takes the first free `pytcpN`
(N = 0, 1, ...): it creates the interface (IFF_TUN | IFF_NO_PI, not persistent, so
it vanishes with its file descriptor on every exit path, SIGKILL included), puts
`10.77.N.1/24` and `fd77:N::1/64` on the kernel side, sets the MTU, brings it up, and
gives the stack `10.77.N.2` and `fd77:N::2` (N written as the same decimal digits in
both, so pytcp12 is 10.77.12.x and fd77:12::x). An interface that already exists (a
persistent TUN, perhaps owned by an ordinary user: how pytcp runs without root) is
attached to as it is, never reconfigured; the stack's address then comes from `addr`,
or is derived from the kernel side's configured IPv4 address (see
`derive_stack_address`), and likewise the IPv6 one from the interface's first global
IPv6 address when it has one.

Several processes (DESIGN §3): the claim of pytcpN is the kernel's (IFF_TUN_EXCL), and
pytcpN is always 10.77.N.0/24, also when named with --tun; another name takes the first
free subnet under an flock on /dev/net/tun. Each pytcpN also holds the shared kernel
address 10.77.0.1/32 (fd77:0::1/128), so it stays valid while any pytcp runs, and has
net.ipv4.conf.pytcpN.forwarding=1 and net.ipv6.conf.pytcpN.force_forwarding=1 (Linux
6.17+) so the kernel routes between pytcp interfaces; all of it goes with the
interface. Where IPv6 cannot be forwarded (an older kernel, all.forwarding off),
`TunLink.forwarding_problem` says why before a SYN is lost.

IPv6 on a TUN needs no neighbour discovery: the device is point-to-point and NOARP,
so the kernel neither resolves neighbours nor runs duplicate address detection on it
(it sends straight to fd77:N::2). An interface pytcp creates gets no link-local
address (addrgenmode none), so no router solicitation or MLD report reaches the
stack either; the fd77 address is added by hand and works without one.

The default MTU is 1500 (`DEFAULT_MTU`): segments, windows, loss recovery and
`--trace` then look like TCP on a real Ethernet path (MSS 1460), and paths past the
host need no more. Throughput comes from offloads instead (per-packet cost dominates
in Python, not per-byte), on by default (`offload=True`): the device is opened with
a virtio-net header (IFF_VNET_HDR) and TUNSETOFFLOAD(CSUM|TSO4|TSO6), so the kernel
hands us GRO'd super-packets of up to 64 KiB with checksums it vouches for, and takes
ours the same way (NEEDS_CSUM, GSO TCPV4/TCPV6 cut at the MSS: TSO). Each packet comes
and goes as a `stack.wire.packet.Packet` carrying those facts. Where the kernel refuses
a flag the next smaller set is tried (CSUM|TSO4, CSUM, none), and where it refuses the
header itself the device is opened without it: `offloads` says what is active.
A kernel that takes the header but refuses a GSO write at run time (EINVAL or
EOPNOTSUPP from the write: virtio_net_hdr_to_skb() said no) loses no packet: that
super-packet is cut into MSS-sized segments in Python (checksums done, as the kernel's
tcp_gso_segment() would), TSO is off for the link from then on (`tso`, and "tso" leaves
`offloads["tx"]`), `on_tso_refused` tells the stack, and `tso_refused`,
`tso_refused_error` and `gso_resegmented` count it for `inspect`.
The environment variables PYTCP_TUN and PYTCP_ADDR are read by stack/api.py, not here.

Every environment failure raises `StackEnvironmentError` (an `OSError`) whose
message is one line naming the cause and what to do (exit status 3 in the CLI).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface
from typing import TypeVar

from stack.io.rtnl import RTN_LOCAL, RTNLGRP_IPV6_ROUTE, RTNLGRP_LINK, NetlinkError, Rtnl
from stack.wire.frozen import Frozen
from stack.wire.packet import NO_OFFLOAD_HDR, VNET_HDR_LEN, Packet

T = TypeVar("T")

IFF_PERSIST = 0x0800  # the interface outlives its descriptors (ip tuntap add)
TUNGETIFF = 0x800454D2  # _IOR('T', 210, unsigned int): the name and flags of an fd's device
TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int), linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix: each read/write is one IP packet
IFF_TUN_EXCL = 0x8000  # fail with EBUSY rather than attach when the name already exists
IFF_VNET_HDR = 0x4000  # each packet is preceded by a struct virtio_net_hdr (offloads)
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_CSUM = 0x01  # we accept packets whose checksum the kernel left for us to finish
TUN_F_TSO4 = 0x02  # ... and TCP segments larger than the MTU (GSO), IPv4
TUN_F_TSO6 = 0x04  # ... and IPv6
# What TUNSETOFFLOAD is asked for, most first; the first set the kernel takes is kept.
OFFLOAD_TRIES = (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM | TUN_F_TSO4, TUN_F_CSUM, 0)
IFNAMSIZ = 16
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name + ifr_flags, padded to 40 bytes

# Errors of a GSO write that mean the kernel will not take our super-packets (bad gso
# facts for this kernel), unlike EAGAIN/ENOBUFS (queue full) or EIO (interface down).
TSO_REFUSALS = frozenset({errno.EINVAL, errno.EOPNOTSUPP})

DEFAULT_MTU = 1500  # conventional Ethernet MTU: segments and traces look like real TCP (MSS 1460)
MIN_MTU = 576  # RFC 791: every IPv4 host must accept 576-byte datagrams
IPV6_MIN_MTU = 1280  # RFC 8200 §5: below it an interface carries no IPv6
MAX_MTU = 65535  # the IPv4 total-length field
DEFAULT_PREFIX = "pytcp"
DEFAULT_NET = IPv4Network("10.77.0.0/16")  # DESIGN §3: 10.77.N.0/24 per interface
DEFAULT_PREFIX6 = 64  # DESIGN §3: fd77:N::/64 per interface
IFA_F_NODAD = 0x02  # linux/if_addr.h: no duplicate address detection (a point-to-point TUN)
MAX_AUTO = 256  # pytcp0 .. pytcp255, one /24 of 10.77.0.0/16 each
# DESIGN §3: the kernel's address users connect to stays valid while any pytcp runs.
# Every pytcpN this process creates inside 10.77.0.0/16 also carries 10.77.0.1/32 (and
# fd77:0::1/128): the kernel counts the address as its own while one interface holds it.
SHARED_KERNEL = IPv4Address("10.77.0.1")
SHARED_KERNEL6 = IPv6Address("fd77::1")
FORWARDING = "/proc/sys/net/ipv4/conf/{}/forwarding"  # per interface: dies with it
# IPv6 forwarding follows net.ipv6.conf.all.forwarding (host-wide: pytcp leaves it alone),
# or, since Linux 6.17, force_forwarding of the interface a packet arrives on.
FORCE_FORWARDING6 = "/proc/sys/net/ipv6/conf/{}/force_forwarding"
ALL_FORWARDING6 = "/proc/sys/net/ipv6/conf/all/forwarding"
READ_SIZE = 65536  # larger than any IPv4 packet: a TUN read never truncates


def persistent_hint(name: str = f"{DEFAULT_PREFIX}0") -> str:
    """What to do without root: a persistent TUN made once for the user, named `name`
    (the interface the user asked for with --tun, else pytcp0), with pytcpN's subnet."""
    n = subnet_number(name)
    return (
        "run as root, or have root create a persistent device for you once: "
        f"ip tuntap add dev {name} mode tun user $USER && ip addr add 10.77.{n or 0}.1/24 dev "
        f"{name} && ip link set {name} up (then use --tun {name})"
    )


def subnet_number(name: str) -> int | None:
    """N of an interface named pytcpN (0 <= N < 256, no leading zero): DESIGN §3 gives it
    10.77.N.0/24 and fd77:N::/64, whoever creates it. None for any other name."""
    digits = name[len(DEFAULT_PREFIX) :]
    if not name.startswith(DEFAULT_PREFIX) or not digits.isdigit() or not digits.isascii():
        return None
    if digits != str(int(digits)) or int(digits) >= MAX_AUTO:
        return None
    return int(digits)


class StackEnvironmentError(OSError):
    """The machine cannot give the stack a TUN interface; str() is one line: why, what to do.

    `errno` says which case: ENOENT (no /dev/net/tun), EACCES/EPERM (no permission),
    EBUSY (interface busy), EADDRINUSE (address or subnet in use), EINVAL (bad option).
    """

    def __str__(self) -> str:
        # OSError would print "[Errno 16] ..."; the CLI shows this line as it is.
        return str(self.strerror)


class _KernelAddress(Frozen):
    __slots__ = ("ifname", "local", "network", "peer")
    __match_args__ = ("ifname", "local", "peer", "network")
    ifname: str
    local: IPv4Address
    peer: IPv4Address | None
    network: IPv4Network

    def __init__(
        self,
        ifname: str,
        local: IPv4Address,
        peer: IPv4Address | None,  # set for point-to-point addresses (`ip addr add A peer B`)
        network: IPv4Network,
    ) -> None:
        object.__setattr__(self, "ifname", ifname)
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "peer", peer)
        object.__setattr__(self, "network", network)


class _KernelAddress6(Frozen):
    __slots__ = ("ifname", "interface")
    __match_args__ = ("ifname", "interface")
    ifname: str
    interface: IPv6Interface

    def __init__(
        self,
        ifname: str,
        interface: IPv6Interface,  # a global or unique-local address (link-local ones skipped)
    ) -> None:
        object.__setattr__(self, "ifname", ifname)
        object.__setattr__(self, "interface", interface)


def _fail(message: str, err: int = errno.EINVAL) -> StackEnvironmentError:
    return StackEnvironmentError(err, message)


def derive_stack_address(kernel: IPv4Interface, peer: IPv4Address | None = None) -> IPv4Address:
    """The stack's address on an interface whose kernel side is `kernel`.

    A point-to-point address (`ip addr add 10.77.0.1 peer 10.77.0.2 dev pytcp0`) names
    the stack itself: the peer. Otherwise the stack takes the next host address after
    the kernel's (10.77.0.1/24 -> 10.77.0.2), or the one before it when the kernel's
    is the last host of the subnet (10.77.0.254/24 -> 10.77.0.253).
    """
    if peer is not None:
        return peer
    net = kernel.network
    if net.prefixlen >= 31:
        hosts = [a for a in net if a != kernel.ip]
        if not hosts:
            raise _fail(f"cannot derive a stack address from {kernel} (a /32): give --addr")
        return hosts[0]
    after = kernel.ip + 1
    if after != net.broadcast_address:
        return after
    before = kernel.ip - 1
    if before == net.network_address:
        raise _fail(f"cannot derive a stack address from {kernel}: give --addr")
    return before


def derive_stack_address6(kernel: IPv6Interface) -> IPv6Address:
    """The stack's IPv6 address on an interface whose kernel side is `kernel`: the next
    address (fd77:0::1/64 -> fd77:0::2), or the one before it at the end of the prefix."""
    net = kernel.network
    after = kernel.ip + 1 if kernel.ip != net.broadcast_address else None
    if after is not None and after in net:
        return after
    before = kernel.ip - 1
    if before in net and before != net.network_address:
        return before
    raise _fail(f"cannot derive a stack address from {kernel}: give an IPv6 --addr")


def default_gateway6(gateway: IPv4Interface) -> IPv6Interface | None:
    """The kernel side's IPv6 address that goes with IPv4 `gateway`: fd77:N::1/64 for
    10.77.N.x (DESIGN §3); None outside 10.77.0.0/16 (IPv6 only when asked for)."""
    if gateway.ip not in DEFAULT_NET:
        return None
    return IPv6Interface(f"fd77:{gateway.ip.packed[2]}::1/{DEFAULT_PREFIX6}")


def _parse_gateway6(text: str) -> IPv6Interface:
    try:
        iface = IPv6Interface(text if "/" in text else f"{text}/{DEFAULT_PREFIX6}")
    except ValueError as exc:
        raise _fail(
            f"bad --gateway {text!r}: expected IP/LEN such as fd77:0::1/64 ({exc})"
        ) from exc
    if iface.network.prefixlen > 126:
        raise _fail(
            f"bad --gateway {text!r}: the prefix must leave room for two hosts (/126 or wider)"
        )
    return iface


def _parse_addr6(text: str) -> IPv6Address:
    try:
        return IPv6Address(text)
    except ValueError as exc:
        raise _fail(f"bad --addr {text!r}: expected an IPv6 address such as fd77:0::2") from exc


def _parse_gateway(text: str) -> IPv4Interface:
    try:
        iface = IPv4Interface(text if "/" in text else f"{text}/24")
    except ValueError as exc:
        raise _fail(
            f"bad --gateway {text!r}: expected IP/LEN such as 10.77.0.1/24 ({exc})"
        ) from exc
    if iface.network.prefixlen > 30:
        raise _fail(
            f"bad --gateway {text!r}: the prefix must leave room for two hosts (/30 or wider)"
        )
    return iface


def _parse_addr(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError as exc:
        raise _fail(f"bad --addr {text!r}: expected an IPv4 address such as 10.77.0.2") from exc


def _default_gateway_for(addr: IPv4Address) -> IPv4Interface:
    """The kernel side for a stack at `addr`: host .1 of its /24 (.2 if the stack is .1)."""
    net = IPv4Network(f"{addr}/24", strict=False)
    gw = net.network_address + 1
    if gw == addr:
        gw = net.network_address + 2
    return IPv4Interface(f"{gw}/24")


def _interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _kernel_addresses() -> list[_KernelAddress]:
    """Every IPv4 address configured on any interface of this network namespace."""
    out: list[_KernelAddress] = []
    try:
        with Rtnl() as nl:
            names = nl.links()
            for msg in nl.addresses(socket.AF_INET):
                local = msg.local or msg.address
                address = msg.address or local
                if local is None:
                    continue
                peer = IPv4Address(address) if address != local else None
                base = peer if peer is not None else IPv4Address(local)
                out.append(
                    _KernelAddress(
                        ifname=names.get(msg.index, "?"),
                        local=IPv4Address(local),
                        peer=peer,
                        network=IPv4Network(f"{base}/{msg.prefixlen}", strict=False),
                    )
                )
    except OSError as exc:
        raise _fail(f"cannot list interface addresses over netlink: {exc}", exc.errno or 0) from exc
    return out


def _kernel_addresses6() -> list[_KernelAddress6]:
    """Every IPv6 address other than link-local ones on any interface of this namespace."""
    out: list[_KernelAddress6] = []
    try:
        with Rtnl() as nl:
            names = nl.links()
            for msg in nl.addresses(socket.AF_INET6):
                if msg.address is None:
                    continue
                iface = IPv6Interface(f"{msg.address}/{msg.prefixlen}")
                if iface.ip.is_link_local or iface.ip.is_loopback:
                    continue
                out.append(_KernelAddress6(names.get(msg.index, "?"), iface))
    except OSError as exc:
        raise _fail(f"cannot list interface addresses over netlink: {exc}", exc.errno or 0) from exc
    return out


def _v6_in_use(addresses: list[_KernelAddress6], gateway6: IPv6Interface) -> _KernelAddress6 | None:
    for ka in addresses:
        shared = ka.interface == IPv6Interface(f"{SHARED_KERNEL6}/128")
        if shared and subnet_number(ka.ifname) is not None:
            continue  # another pytcp's copy of the shared kernel address
        if ka.interface.network.overlaps(gateway6.network):
            return ka
    return None


def _open_device(
    name: str, *, exclusive: bool, offload: bool = False
) -> tuple[int, str, bool, int]:
    """Open /dev/net/tun and bind it to interface `name`; returns (fd, actual name,
    whether the virtio-net header is on, the TUN_F_* offloads the kernel accepted)."""
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise _fail(
            f"no {TUN_PATH}: load the tun module (modprobe tun) or, in a container, "
            "pass the device in (--device /dev/net/tun)",
            errno.ENOENT,
        ) from exc
    except PermissionError as exc:
        raise _fail(
            f"no permission to open {TUN_PATH}: {persistent_hint(name)}", errno.EACCES
        ) from exc
    flags = IFF_TUN | IFF_NO_PI | (IFF_TUN_EXCL if exclusive else 0)
    try:
        vnet = False
        if offload:
            try:
                ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags | IFF_VNET_HDR))
                vnet = True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # A kernel without IFF_VNET_HDR: the plain device, no offloads.
        if not vnet:
            ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
        accepted = negotiate_offloads(fd) if vnet else 0
    except OSError as exc:
        os.close(fd)
        raise exc
    actual = _IFREQ.unpack(ifr)[0].rstrip(b"\0").decode()
    return fd, actual, vnet, accepted


def negotiate_offloads(fd: int, tries: tuple[int, ...] = OFFLOAD_TRIES) -> int:
    """TUNSETOFFLOAD with the first of `tries` the kernel accepts; returns it (0 when it
    refuses all: the header stays, and the kernel then sends whole packets, checksums
    done, while still taking ours partial and TSO'd). The kernel may now hand us
    super-packets of up to 64 KiB whatever the MTU, checksums left partial."""
    for want in tries:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, want)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY):
                raise
            continue
        return want
    return 0


def describe_offloads(vnet: bool, accepted: int) -> dict[str, list[str]]:
    """What is active, by direction, for `inspect` and `-v`: "rx" what the kernel may
    hand us (csum: checksums left partial; tso4/tso6: super-packets), "tx" what we hand
    it (csum: our TCP checksums partial; tso: our super-segments cut by the kernel)."""
    if not vnet:
        return {"rx": [], "tx": []}
    rx = [n for bit, n in ((TUN_F_CSUM, "csum"), (TUN_F_TSO4, "tso4"), (TUN_F_TSO6, "tso6"))
          if accepted & bit]  # fmt: skip
    return {"rx": rx, "tx": ["csum", "tso"]}


LINGER_PREFIX = b"\0pytcp-linger-"  # abstract unix socket of a lingering pytcp, per netns


def linger_address(name: str) -> bytes:
    """Where a pytcp that only lingers on interface `name` (TIME-WAIT after its command
    ended, stack.api.Stack.linger_in_background) listens for `claim_lingering`."""
    return LINGER_PREFIX + name.encode()


def claim_lingering(
    name: str, adopt: Callable[[int], T | None] | None = None, timeout: float = 0.5
) -> tuple[bool, T | None]:
    """Ask the pytcp lingering on interface `name` (TIME-WAIT after its command ended) to
    let it go now. Returns (released, adopted): released is False when no lingering
    pytcp holds it (the interface is in real use). A lingering pytcp of this uid hands
    its device over (SCM_RIGHTS), the interface still configured as it made it:
    `adopt(fd)` takes it, and what it returns is `adopted`; when it returns None (or
    there is no `adopt`) the descriptor is closed, and the interface goes with it.

    Returns only once the lingering pytcp has let go of its device and its linger
    socket (the name is free for this process's own linger later), and, unless the
    device was adopted, once the interface is gone. Every wait is for an event (its
    answer and EOF, then the kernel's RTM_DELLINK), `timeout` at most each."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return True, None  # gone already
    with contextlib.ExitStack() as scope:
        try:
            # Joined before asking: the interface cannot go unseen.
            events: Rtnl | None = scope.enter_context(Rtnl(groups=(RTNLGRP_LINK,)))
        except OSError:
            events = None
        sock = scope.enter_context(
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        )
        sock.settimeout(timeout)
        try:
            sock.connect(linger_address(name))
        except OSError:
            return False, None  # nobody lingers on it: the interface is in real use
        adopted = None
        fd = _handed_device(sock)
        if fd is not None:
            try:
                adopted = adopt(fd) if adopt is not None else None
            finally:
                if adopted is None:
                    os.close(fd)
        # EOF (or a reset of this unaccepted connection): it has closed its copy of the
        # device, then its listener, and exits.
        _wait_eof(sock)
        if adopted is not None:
            return True, adopted
        if events is None:
            return not _interface_exists(name), None
        gone = events.wait_link_gone(index, timeout, lambda: not _interface_exists(name))
        return gone, None


def _wait_eof(sock: socket.socket) -> None:
    """Read `sock` to its end (bounded: its timeout, and a few reads of nothing)."""
    for _ in range(16):
        try:
            if not sock.recv(64):
                return
        except OSError:
            return


def _handed_device(sock: socket.socket) -> int | None:
    """The descriptor a lingering pytcp of this uid (or root) sends on `sock`, if any."""
    uid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
    try:
        _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC)
    except OSError:
        return None
    fds = [
        fd
        for level, kind, data in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
        for (fd,) in struct.iter_unpack("i", data[: len(data) - len(data) % 4])
    ]
    if fds and uid in (0, os.getuid()):
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]
    for fd in fds:
        os.close(fd)
    return None


def release_lingering(name: str, timeout: float = 0.5) -> bool:
    """`claim_lingering` without adopting: True once the interface is gone."""
    return claim_lingering(name, timeout=timeout)[0]


def _attach_error(name: str, exc: OSError) -> StackEnvironmentError:
    if exc.errno == errno.EBUSY:
        return _fail(
            f"interface {name} is busy: another process has it open (pick another with --tun)",
            errno.EBUSY,
        )
    if exc.errno == errno.EPERM:
        return _fail(
            f"no permission to attach to interface {name} (it belongs to another user, or it is not"
            " a TUN): run as root, or use one that root made for your user "
            "(ip tuntap add dev NAME mode tun user $USER, then --tun NAME)",
            errno.EPERM,
        )
    if exc.errno == errno.EINVAL:
        return _fail(
            f"interface {name} exists but is not a TUN device without packet info "
            "(pick another name with --tun)",
            errno.EINVAL,
        )
    return _fail(f"cannot attach to interface {name}: {exc.strerror}", exc.errno or 0)


def _create_error(name: str, exc: OSError) -> StackEnvironmentError:
    if exc.errno == errno.EPERM:
        return _fail(
            f"no permission to create TUN interface {name} (needs CAP_NET_ADMIN): "
            f"{persistent_hint(name)}",
            errno.EPERM,
        )
    if exc.errno == errno.EBUSY:
        return _fail(f"interface {name} is busy: another process created it first", errno.EBUSY)
    return _fail(f"cannot create TUN interface {name}: {exc.strerror}", exc.errno or 0)


def _is_shared(ka: _KernelAddress) -> bool:
    """10.77.0.1/32 that another pytcp process put on its pytcpN (SHARED_KERNEL)."""
    return (
        ka.local == SHARED_KERNEL
        and ka.network.prefixlen == 32
        and subnet_number(ka.ifname) is not None
    )


def _not_shared(addresses: list[_KernelAddress]) -> list[_KernelAddress]:
    return [ka for ka in addresses if not _is_shared(ka)]


def _check_free(addresses: list[_KernelAddress], gateway: IPv4Interface, addr: IPv4Address) -> None:
    for ka in _not_shared(addresses):
        if ka.local in (gateway.ip, addr) or (ka.peer is not None and ka.peer == addr):
            raise _fail(
                f"address {ka.local} is already in use on {ka.ifname}: "
                "choose others with --addr/--gateway",
                errno.EADDRINUSE,
            )
        if ka.network.overlaps(gateway.network):
            raise _fail(
                f"subnet {gateway.network} is already in use on {ka.ifname} ({ka.local}/"
                f"{ka.network.prefixlen}): choose another with --gateway",
                errno.EADDRINUSE,
            )


def _configure(
    index: int,
    gateway: IPv4Interface,
    mtu: int,
    name: str = "pytcp0",
    gateway6: IPv6Interface | None = None,
    share: bool = False,
) -> None:
    """Configure an interface this process created (never an attached one): MTU, the
    kernel-side addresses (`share`: also the shared SHARED_KERNEL/32 and
    SHARED_KERNEL6/128), no IPv6 address generation (no link-local), forwarding on this
    interface only (pytcp to pytcp), up; with IPv6, returns once the kernel takes its
    IPv6 address as its own (`Rtnl.wait_local6`, LOCAL_WAIT at most)."""
    try:
        # Subscribed to IPv6 route changes before the link is up: the local route of
        # gateway6 cannot be inserted unseen.
        with contextlib.ExitStack() as scope:
            nl = scope.enter_context(Rtnl())
            events = None
            if gateway6 is not None:
                events = scope.enter_context(Rtnl(groups=(RTNLGRP_IPV6_ROUTE,)))
            nl.set_link(index, mtu=mtu)
            nl.add_address(index, socket.AF_INET, str(gateway.ip), gateway.network.prefixlen)
            _no_ipv6_autoconf(nl, index)
            if gateway6 is not None:
                nl.add_address(
                    index,
                    socket.AF_INET6,
                    str(gateway6.ip),
                    gateway6.network.prefixlen,
                    flags=IFA_F_NODAD,
                )
            if share and gateway.ip != SHARED_KERNEL:
                nl.add_address(index, socket.AF_INET, str(SHARED_KERNEL), 32)
            if share and gateway6 is not None and gateway6.ip != SHARED_KERNEL6:
                nl.add_address(
                    index, socket.AF_INET6, str(SHARED_KERNEL6), 128, flags=IFA_F_NODAD
                )
            _forward(name)
            nl.set_link(index, up=True)
            if gateway6 is not None and events is not None:
                # Even without DAD (IFA_F_NODAD) Linux inserts the address's local route
                # from its address-configuration work, just after the link comes up; a
                # packet to it before that is dropped (Ip6InAddrErrors) and the stack's
                # first SYN would cost a 1 s retransmission. Bounded: after LOCAL_WAIT the
                # interface is used as it is.
                events.wait_local6(gateway6.ip, LOCAL_WAIT, ask=nl)
    except NetlinkError as exc:
        code = exc.errno or errno.EIO
        if code == errno.EEXIST:
            both = f"{gateway}" + (f" or {gateway6}" if gateway6 is not None else "")
            raise _fail(
                f"address {both} is already in use: choose another with --gateway", code
            ) from exc
        if code == errno.EPERM:
            raise _fail(
                f"no permission to configure the interface: {persistent_hint(name)}", code
            ) from exc
        if code == errno.EINVAL:
            raise _fail(
                f"the kernel refused the configuration (MTU {mtu}, {gateway}): {exc.strerror}",
                code,
            ) from exc
        raise _fail(f"cannot configure the interface: {exc.strerror}", code) from exc


def _forward(name: str) -> None:
    """net.ipv4.conf.NAME.forwarding=1 and net.ipv6.conf.NAME.force_forwarding=1 on this
    interface only (they go with it): the kernel then routes what one pytcp sends
    another (10.77.1.2 -> 10.77.0.2, fd77:1::2 -> fd77:0::2) from this interface on.
    The host's own settings (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding) are
    left alone. A kernel before 6.17 has no force_forwarding (IPv6 between pytcp
    processes then needs all.forwarding: see `ipv6_forwarding_problem`); a /proc/sys
    that cannot be written (a container) only costs pytcp-to-pytcp traffic."""
    for path in (FORWARDING.format(name), FORCE_FORWARDING6.format(name)):
        try:
            with open(path, "w") as f:
                f.write("1")
        except OSError:
            pass


def _sysctl_on(path: str) -> bool | None:
    """A boolean sysctl: True when it is 1, None when it does not exist."""
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def ipv6_forwarding_problem(name: str, destination: IPv6Address) -> str | None:
    """Why the kernel will not forward IPv6 between the interface `name` and the one it
    routes `destination` out of (another pytcp's interface, or the way off this host),
    both ways; None when it will, or when no forwarding is needed (the kernel itself is
    the peer, or there is no route: the kernel then answers unreachable itself).

    Linux forwards an IPv6 packet when net.ipv6.conf.all.forwarding is 1 (host-wide,
    which pytcp never changes) or, since 6.17, when force_forwarding is 1 on the
    interface it arrived on: pytcp's SYN arrives on `name`, the reply on the other one.
    Without either the kernel drops the SYN silently and the connection would time out
    after two minutes of retries; the caller says why at once instead."""
    if _sysctl_on(ALL_FORWARDING6):
        return None
    try:
        with Rtnl() as nl:
            route = nl.route6(destination)
            if route is None or route[0] == RTN_LOCAL:
                return None
            oif = route[1]
            if oif is None or oif == socket.if_nametoindex(name):
                return None
            out = nl.links().get(oif, f"interface {oif}")
    except OSError:  # NetlinkError too: no answer, no verdict (the SYN then tells)
        return None
    states = {n: _sysctl_on(FORCE_FORWARDING6.format(n)) for n in (name, out)}
    if all(states.values()):
        return None
    if states[name] is None:
        why = "this kernel has no per-interface force_forwarding (Linux 6.17 and later)"
    else:
        off = " and ".join(n for n, on in states.items() if not on)
        why = f"net.ipv6.conf.{off}.force_forwarding is 0"
    return (
        f"{destination} is routed out of {out}, and the kernel forwards IPv6 between "
        f"interfaces only with net.ipv6.conf.all.forwarding=1 (0 here, a host-wide setting "
        f"pytcp does not change) or force_forwarding=1 on both ({why}); as root: sysctl -w "
        "net.ipv6.conf.all.forwarding=1, or use IPv4"
    )


IN6_ADDR_GEN_MODE_NONE = 1  # linux/if_link.h
LOCAL_WAIT = 2.0  # seconds at most for the kernel to take its IPv6 address as its own


def _no_ipv6_autoconf(nl: Rtnl, index: int) -> None:
    """`ip link set dev X addrgenmode none` before the interface is up: the kernel then
    gives it no link-local IPv6 address, so it sends no router or neighbour
    solicitations into the stack (they would show as drops in every --trace). Only this
    interface; a kernel without IPv6 refuses, which changes nothing."""
    try:
        nl.set_link(index, addr_gen_mode=IN6_ADDR_GEN_MODE_NONE)
    except OSError:
        pass


class TunLink:
    """An open TUN interface: one IP packet per read or write (the `Link` protocol).

    Attributes: `name`; `address` (the stack's); `peer_address` (the kernel side);
    `network`; `address6`, `peer_address6`, `network6` (the same for IPv6, None when the
    interface has none); `mtu`; `created` (True when this process made the interface,
    which then disappears when `close()` runs or the process dies).
    """

    def __init__(
        self,
        fd: int,
        *,
        name: str,
        address: IPv4Address,
        peer_address: IPv4Address,
        network: IPv4Network,
        mtu: int,
        created: bool,
        offload: bool = False,
        address6: IPv6Address | None = None,
        peer_address6: IPv6Interface | None = None,
        accepted: int = 0,
    ) -> None:
        self._fd: int | None = fd
        self.name = name
        self.address = address
        self.peer_address = peer_address
        self.network = network
        self.address6 = address6
        self.peer_address6 = peer_address6.ip if peer_address6 is not None else None
        self.network6 = peer_address6.network if peer_address6 is not None else None
        self.mtu = mtu
        self.created = created
        self.offload = offload  # the virtio-net header is on: packets carry offload facts
        self.offloads = describe_offloads(offload, accepted)
        self.tso = offload  # the kernel cuts our GSO super-packets (off after a refusal)
        self.tso_refused = 0  # GSO writes the kernel refused (TSO_REFUSALS)
        self.tso_refused_error: str | None = None  # why, the first time: "EINVAL (...)"
        self.gso_resegmented = 0  # super-packets cut into segments here instead
        # Told once, with a one-line reason, when TSO goes off (the stack stops building
        # super-packets and -v says so).
        self.on_tso_refused: Callable[[str], None] | None = None
        self.counters: dict[str, int] = {
            "rx_packets": 0,
            "rx_bytes": 0,
            "tx_packets": 0,
            "tx_bytes": 0,
            "tx_dropped": 0,
        }

    def forwarding_problem(self, destination: IPv4Address | IPv6Address) -> str | None:
        """Why the kernel will not route between this interface and `destination`
        (module function `ipv6_forwarding_problem`); None when it will. IPv4 needs no
        check: each pytcp interface forwards on its own (`_forward`)."""
        if destination.version != 6:
            return None
        return ipv6_forwarding_problem(self.name, destination)

    @classmethod
    def open(
        cls,
        name: str | None = None,
        *,
        addr: str | None = None,
        gateway: str | None = None,
        mtu: int | None = None,
        offload: bool = True,
        addr6: str | None = None,
        gateway6: str | None = None,
    ) -> TunLink:
        """Create or attach to a TUN interface per DESIGN §3 (see the module docstring).

        `addr6`/`gateway6` are the IPv6 counterparts of `addr`/`gateway` (default: the
        fd77:N::/64 that goes with 10.77.N.0/24, see `default_gateway6`).
        `offload`: open with a virtio-net header and TUNSETOFFLOAD, falling back to what
        the kernel accepts (`offloads` says what is active); False: plain IP packets.
        """
        if name is not None and (not name or len(name.encode()) >= IFNAMSIZ or "/" in name):
            raise _fail(f"bad interface name {name!r}: 1 to 15 characters, no '/'")
        if mtu is not None and not MIN_MTU <= mtu <= MAX_MTU:
            raise _fail(f"bad --mtu {mtu}: must be between {MIN_MTU} and {MAX_MTU}")
        want_addr = _parse_addr(addr) if addr is not None else None
        want_gw = _parse_gateway(gateway) if gateway is not None else None
        v6 = _V6(
            _parse_addr6(addr6) if addr6 is not None else None,
            _parse_gateway6(gateway6) if gateway6 is not None else None,
        )
        if name is not None:
            if _interface_exists(name):
                if want_gw is not None or v6.gateway is not None or mtu is not None:
                    # Only a lingering pytcp's interface may be replaced by the new one
                    # asked for (or taken over when it is that one already).
                    released, link = cls._take_over(name, want_addr, want_gw, mtu, offload, v6)
                    if link is not None:
                        return link
                    if not released:
                        raise _fail(
                            f"interface {name} already exists and is used as it is: "
                            "drop --gateway/--mtu, or pick a new name with --tun"
                        )
                else:
                    try:
                        return cls._attach(name, want_addr, offload, v6)
                    except StackEnvironmentError as exc:
                        # Held by a pytcp that only lingers in TIME-WAIT: it lets go at once.
                        if exc.errno != errno.EBUSY:
                            raise
                        released, link = cls._take_over(name, want_addr, None, None, offload, v6)
                        if link is not None:
                            return link
                        if not released:
                            raise
            return cls._create(name, want_addr, want_gw, mtu, offload=offload, v6=v6)
        return cls._auto(want_addr, want_gw, mtu, offload, v6)

    @classmethod
    def _auto(
        cls,
        addr: IPv4Address | None,
        gateway: IPv4Interface | None,
        mtu: int | None,
        offload: bool = False,
        v6: _V6 | None = None,
    ) -> TunLink:
        """The first free pytcpN: a free existing persistent one is attached to, else created."""
        v6 = v6 or _V6()
        addresses = _kernel_addresses()
        addresses6 = _kernel_addresses6()
        for n in range(MAX_AUTO):
            name = f"{DEFAULT_PREFIX}{n}"
            if _interface_exists(name):
                if gateway is not None or v6.gateway is not None or mtu is not None:
                    continue  # asked for a configuration: only a new interface can have it
                try:
                    return cls._attach(name, addr, offload, v6)
                except StackEnvironmentError as exc:
                    # Held by a pytcp that only lingers in TIME-WAIT: it hands the device
                    # over at once (a script keeps its interface and addresses), or lets
                    # go and pytcpN is free to create again.
                    released = False
                    if exc.errno == errno.EBUSY:
                        released, link = cls._take_over(name, addr, None, None, offload, v6)
                        if link is not None:
                            return link
                    if not released and exc.errno in (errno.EBUSY, errno.EPERM, errno.EINVAL):
                        continue  # someone else's: try the next N
                    if not released and exc.errno == errno.EADDRNOTAVAIL and addr is not None:
                        continue  # --addr belongs to another subnet than this one's
                    if not released:
                        raise
                    addresses = _kernel_addresses()  # its addresses went with it
                    addresses6 = _kernel_addresses6()
            gw = gateway or (
                _default_gateway_for(addr) if addr else IPv4Interface(f"10.77.{n}.1/24")
            )
            stack_addr = addr or derive_stack_address(gw)
            if (
                gateway is None
                and addr is None
                and (
                    any(ka.network.overlaps(gw.network) for ka in _not_shared(addresses))
                    or (v6.gateway is None and _default6_taken(addresses6, gw))
                )
            ):
                continue  # 10.77.N.0/24 (or fd77:N::/64) is taken on this host: the next N
            try:
                return cls._create(
                    name, stack_addr, gw, mtu, addresses=addresses, offload=offload, v6=v6
                )
            except StackEnvironmentError as exc:
                if exc.errno == errno.EBUSY:
                    continue  # lost a race for this name to another process
                raise
        raise _fail(
            f"no free interface name {DEFAULT_PREFIX}0..{MAX_AUTO - 1}: pick one with --tun"
        )

    @classmethod
    def _create(
        cls,
        name: str,
        addr: IPv4Address | None,
        gateway: IPv4Interface | None,
        mtu: int | None,
        *,
        addresses: list[_KernelAddress] | None = None,
        offload: bool = False,
        v6: _V6 | None = None,
    ) -> TunLink:
        v6 = v6 or _V6()
        n = subnet_number(name)
        if gateway is None and addr is None and n is not None:
            gateway = IPv4Interface(f"10.77.{n}.1/24")  # DESIGN §3: --tun pytcpN is subnet N
        if gateway is None and addr is None:
            # Any other name takes the first free subnet. Choosing and configuring happen
            # under an exclusive flock on /dev/net/tun, so two pytcp processes started
            # together cannot both pick the same one; the kernel drops the lock with the fd.
            with _subnet_lock():
                return cls._create(
                    name, None, _free_default_gateway(), mtu, offload=offload, v6=v6
                )
        if gateway is None:
            gateway = _default_gateway_for(addr) if addr is not None else _free_default_gateway()
        if addr is None:
            addr = derive_stack_address(gateway)
        if addr == gateway.ip:
            raise _fail(f"--addr {addr} equals the kernel side's address: choose another")
        if addr not in gateway.network:
            raise _fail(f"--addr {addr} is outside the kernel side's subnet {gateway.network}")
        _check_free(addresses if addresses is not None else _kernel_addresses(), gateway, addr)
        mtu = mtu or DEFAULT_MTU
        if mtu >= IPV6_MIN_MTU:
            gateway6, addr6 = _plan6(gateway, v6)
        elif v6.addr is not None or v6.gateway is not None:
            raise _fail(f"IPv6 needs an MTU of at least {IPV6_MIN_MTU} (RFC 8200 §5): raise --mtu")
        else:
            gateway6, addr6 = None, None  # Linux keeps IPv6 off a link below 1280 bytes
        try:
            fd, actual, vnet, accepted = _open_device(name, exclusive=True, offload=offload)
        except StackEnvironmentError:
            raise
        except OSError as exc:
            raise _create_error(name, exc) from exc
        try:
            index = socket.if_nametoindex(actual)
            share = subnet_number(actual) is not None and _may_share(gateway, addresses)
            _configure(index, gateway, mtu, actual, gateway6, share=share)
        except BaseException:
            os.close(fd)  # the interface is not persistent: closing removes it
            raise
        return cls(
            fd,
            name=actual,
            address=addr,
            peer_address=gateway.ip,
            network=gateway.network,
            mtu=mtu,
            created=True,
            address6=addr6,
            peer_address6=gateway6,
            offload=vnet,
            accepted=accepted,
        )

    @classmethod
    def _take_over(
        cls,
        name: str,
        addr: IPv4Address | None,
        gateway: IPv4Interface | None,
        mtu: int | None,
        offload: bool,
        v6: _V6,
    ) -> tuple[bool, TunLink | None]:
        """From a pytcp lingering on `name` (`claim_lingering`): (released, its device as
        a TunLink when the interface is exactly what creating `name` with these options
        would make, else None: the interface is gone then). released False: no
        lingering pytcp holds `name`."""
        return claim_lingering(
            name, lambda fd: cls._adopt(fd, name, addr, gateway, mtu, offload, v6)
        )

    @classmethod
    def _adopt(
        cls,
        fd: int,
        name: str,
        addr: IPv4Address | None,
        gateway: IPv4Interface | None,
        mtu: int | None,
        offload: bool,
        v6: _V6,
    ) -> TunLink | None:
        """A TunLink on `fd`, a device another pytcp created and handed over, if the
        interface is what `_create(name, addr, gateway, mtu, offload, v6)` would make
        now: the same non-persistent TUN with the same header, addresses (the shared
        ones or not) and MTU, nothing else on the host in its way. None otherwise."""
        try:
            ifr = fcntl.ioctl(fd, TUNGETIFF, _IFREQ.pack(b"", 0))
        except OSError:
            return None
        actual, flags = _IFREQ.unpack(ifr)
        vnet = bool(flags & IFF_VNET_HDR)
        if actual.rstrip(b"\0").decode(errors="replace") != name or flags & IFF_PERSIST:
            return None
        if not flags & IFF_TUN or vnet != offload:
            return None
        plan = _planned(name, addr, gateway, mtu, v6)
        if plan is None:
            return None
        gw, stack_addr, mtu, gw6, addr6 = plan
        addresses, addresses6 = _kernel_addresses(), _kernel_addresses6()
        mine = {(ka.local, ka.network.prefixlen, ka.peer) for ka in addresses if ka.ifname == name}
        mine6 = {ka.interface for ka in addresses6 if ka.ifname == name}
        if mine - {(SHARED_KERNEL, 32, None)} != {(gw.ip, gw.network.prefixlen, None)}:
            return None
        if mine6 - {IPv6Interface(f"{SHARED_KERNEL6}/128")} != ({gw6} if gw6 else set()):
            return None
        others = [ka for ka in addresses if ka.ifname != name]
        others6 = [ka for ka in addresses6 if ka.ifname != name]
        try:
            _check_free(others, gw, stack_addr)
        except StackEnvironmentError:
            return None
        if gw6 is not None and _v6_in_use(others6, gw6) is not None:
            return None
        if socket_mtu(name) != mtu:
            return None
        return cls(
            fd,
            name=name,
            address=stack_addr,
            peer_address=gw.ip,
            network=gw.network,
            mtu=mtu,
            created=True,
            address6=addr6,
            peer_address6=gw6,
            offload=vnet,
            accepted=negotiate_offloads(fd) if vnet else 0,
        )

    @classmethod
    def _attach(
        cls, name: str, addr: IPv4Address | None, offload: bool = False, v6: _V6 | None = None
    ) -> TunLink:
        try:
            fd, actual, vnet, accepted = _open_device(name, exclusive=False, offload=offload)
        except StackEnvironmentError:
            raise
        except OSError as exc:
            raise _attach_error(name, exc) from exc
        try:
            ours = [ka for ka in _kernel_addresses() if ka.ifname == actual]
            if not ours:
                raise _fail(
                    f"interface {actual} has no IPv4 address, and pytcp uses an existing "
                    f"interface as it is: add one (ip addr add 10.77.0.1/24 dev {actual})",
                    errno.EADDRNOTAVAIL,
                )
            kernel = ours[0]
            if addr is not None and addr not in kernel.network:
                raise _fail(
                    f"--addr {addr} is outside {actual}'s subnet {kernel.network}: "
                    "choose an address in it",
                    errno.EADDRNOTAVAIL,
                )
            iface = IPv4Interface(f"{kernel.local}/{kernel.network.prefixlen}")
            stack_addr = addr if addr is not None else derive_stack_address(iface, kernel.peer)
            if stack_addr == kernel.local:
                raise _fail(
                    f"--addr {stack_addr} is the kernel's own address on {actual}: choose another",
                    errno.EADDRINUSE,
                )
            kernel6, stack6 = _attached6(actual, v6 or _V6())
            mtu = socket_mtu(actual)
        except BaseException:
            os.close(fd)
            raise
        return cls(
            fd,
            name=actual,
            address=stack_addr,
            peer_address=kernel.local,
            network=kernel.network,
            mtu=mtu,
            created=False,
                        address6=stack6,
            peer_address6=kernel6,
            offload=vnet,
            accepted=accepted,
        )

    # -- the Link protocol ---------------------------------------------------------------

    # recv() returns a packet only when the descriptor is readable (it keeps none): the
    # loop reads it only then (stack.io.loop).
    reads_from_fd_only = True

    def fileno(self) -> int | None:
        return self._fd

    def recv(self) -> bytes | Packet | None:
        """One IP packet from the kernel (a `Packet` with its facts when the virtio-net
        header is on), or None when none is waiting (EAGAIN)."""
        if self._fd is None:
            return None
        try:
            raw = os.read(self._fd, READ_SIZE + VNET_HDR_LEN if self.offload else READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            # EBADFD: the interface was deleted under us (`ip link del`). Say so once;
            # the link is dead from now on, so closing the stack afterwards is quiet.
            self.close()
            raise _fail(
                f"interface {self.name} went away while pytcp was using it "
                f"({exc.strerror}): was it deleted?",
                exc.errno or errno.EBADFD,
            ) from exc
        counters = self.counters
        counters["rx_packets"] += 1
        if self.offload and len(raw) >= VNET_HDR_LEN:
            counters["rx_bytes"] += len(raw) - VNET_HDR_LEN
            return Packet.from_vnet(raw)
        counters["rx_bytes"] += len(raw)
        return raw

    def send(self, packet: bytes | bytearray | memoryview | Packet) -> None:
        """Hand one IP packet to the kernel. A packet the kernel refuses is counted, not raised:
        to the stack it is a packet lost on the link, which TCP recovers from."""
        if self._fd is None:
            self.counters["tx_dropped"] += 1
            return
        try:
            if isinstance(packet, Packet):
                if self.offload:
                    if packet.is_gso and not self.tso:
                        self._resegment(packet)
                        return
                    try:
                        self._write((packet.vnet_header(), packet.head, packet.body))
                    except OSError as exc:
                        if not packet.is_gso or exc.errno not in TSO_REFUSALS:
                            raise
                        self._refuse_tso(exc)
                        self._resegment(packet)
                        return
                else:
                    # No header to carry the facts: a finished packet, or its segments.
                    for part in packet.segments():
                        self._write((part,))
            elif self.offload:
                self._write((NO_OFFLOAD_HDR, packet))
            else:
                self._write((packet,))
        except OSError:
            # EAGAIN/ENOBUFS (queue full), EIO (interface down), EINVAL (malformed).
            self.counters["tx_dropped"] += 1
            return
        self.counters["tx_packets"] += 1
        self.counters["tx_bytes"] += len(packet)

    def _write(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """One packet to the device (the virtio-net header first when it is on)."""
        assert self._fd is not None
        os.writev(self._fd, parts)

    def _refuse_tso(self, exc: OSError) -> None:
        """The kernel refused a GSO write: TSO off for this link from now on."""
        self.tso_refused += 1
        if not self.tso:
            return
        self.tso = False
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.tso_refused_error = f"{code} ({exc.strerror or os.strerror(exc.errno or 0)})"
        self.offloads = {
            "rx": list(self.offloads.get("rx", [])),
            "tx": [name for name in self.offloads.get("tx", []) if name != "tso"],
        }
        if self.on_tso_refused is not None:
            self.on_tso_refused(
                f"the kernel refused a TSO write on {self.name} ({self.tso_refused_error}): "
                "TSO off, segments cut in Python from now on"
            )

    def _resegment(self, packet: Packet) -> None:
        """Software GSO: the super-packet's MSS-sized segments, checksums done, each a
        packet of its own with an empty virtio-net header."""
        self.gso_resegmented += 1
        counters = self.counters
        for part in packet.segments():
            try:
                self._write((NO_OFFLOAD_HDR, part))
            except OSError:
                counters["tx_dropped"] += 1
                continue
            counters["tx_packets"] += 1
            counters["tx_bytes"] += len(part)

    def close(self) -> None:
        """Release the device; an interface this process created disappears with it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> TunLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        how = "created" if self.created else "attached"
        six = (
            f", stack {self.address6}, kernel {self.peer_address6}/{self.network6.prefixlen}"
            if self.network6 is not None
            else ""
        )
        return (
            f"TunLink({self.name}, stack {self.address}, kernel {self.peer_address}/"
            f"{self.network.prefixlen}{six}, mtu {self.mtu}, {how})"
        )


class _V6(Frozen):
    """What was asked for IPv6: the stack's address and the kernel side (None: default)."""

    __slots__ = ("addr", "gateway")
    __match_args__ = ("addr", "gateway")
    addr: IPv6Address | None
    gateway: IPv6Interface | None

    def __init__(
        self, addr: IPv6Address | None = None, gateway: IPv6Interface | None = None
    ) -> None:
        object.__setattr__(self, "addr", addr)
        object.__setattr__(self, "gateway", gateway)


def _default6_taken(addresses6: list[_KernelAddress6], gateway: IPv4Interface) -> bool:
    gateway6 = default_gateway6(gateway)
    return gateway6 is not None and _v6_in_use(addresses6, gateway6) is not None


def _planned(
    name: str,
    addr: IPv4Address | None,
    gateway: IPv4Interface | None,
    mtu: int | None,
    v6: _V6,
) -> tuple[IPv4Interface, IPv4Address, int, IPv6Interface | None, IPv6Address | None] | None:
    """What `TunLink._create` would give a new interface `name` (kernel side, stack
    address, MTU, and the IPv6 pair), leaving out whether the host has room for it;
    None where that depends on the host (another name takes the first free subnet) or
    the options are refused (`_create` then says why)."""
    if gateway is None and addr is None:
        n = subnet_number(name)
        if n is None:
            return None
        gateway = IPv4Interface(f"10.77.{n}.1/24")
    if gateway is None:
        assert addr is not None
        gateway = _default_gateway_for(addr)
    try:
        stack_addr = addr if addr is not None else derive_stack_address(gateway)
        if stack_addr == gateway.ip or stack_addr not in gateway.network:
            return None
        mtu = mtu or DEFAULT_MTU
        if mtu >= IPV6_MIN_MTU:
            gateway6, addr6 = _plan6(gateway, v6, check=False)
        elif v6.addr is not None or v6.gateway is not None:
            return None
        else:
            gateway6, addr6 = None, None
    except StackEnvironmentError:
        return None
    return gateway, stack_addr, mtu, gateway6, addr6


def _plan6(
    gateway: IPv4Interface, v6: _V6, *, check: bool = True
) -> tuple[IPv6Interface | None, IPv6Address | None]:
    """The kernel side's and the stack's IPv6 addresses for a new interface whose IPv4
    kernel side is `gateway` (DESIGN §3: fd77:N::1/64 and fd77:N::2 by default);
    `check`: refuse a prefix another interface uses."""
    gateway6 = v6.gateway
    if gateway6 is None and v6.addr is not None:
        gateway6 = IPv6Interface(f"{v6.addr}/{DEFAULT_PREFIX6}")
        gateway6 = IPv6Interface(f"{gateway6.network.network_address + 1}/{DEFAULT_PREFIX6}")
        if gateway6.ip == v6.addr:
            gateway6 = IPv6Interface(f"{gateway6.ip + 1}/{DEFAULT_PREFIX6}")
    if gateway6 is None:
        gateway6 = default_gateway6(gateway)
    if gateway6 is None:
        return None, None  # an IPv4 subnet outside 10.77.0.0/16 and no IPv6 asked for
    addr6 = v6.addr if v6.addr is not None else derive_stack_address6(gateway6)
    if addr6 == gateway6.ip:
        raise _fail(f"--addr {addr6} equals the kernel side's address: choose another")
    if addr6 not in gateway6.network:
        raise _fail(f"--addr {addr6} is outside the kernel side's subnet {gateway6.network}")
    taken = _v6_in_use(_kernel_addresses6(), gateway6) if check else None
    if taken is not None:
        raise _fail(
            f"subnet {gateway6.network} is already in use on {taken.ifname} ({taken.interface}): "
            "choose another with --gateway",
            errno.EADDRINUSE,
        )
    return gateway6, addr6


def _attached6(ifname: str, v6: _V6) -> tuple[IPv6Interface | None, IPv6Address | None]:
    """The kernel side's and the stack's IPv6 addresses on an existing interface, as it
    is: its first global IPv6 address, and the next one for the stack (or `v6.addr`)."""
    ours = [ka.interface for ka in _kernel_addresses6() if ka.ifname == ifname]
    if not ours:
        if v6.addr is not None:
            raise _fail(
                f"--addr {v6.addr}: interface {ifname} has no IPv6 address, and pytcp uses an "
                f"existing interface as it is (ip addr add fd77:0::1/64 dev {ifname})",
                errno.EADDRNOTAVAIL,
            )
        return None, None
    kernel = ours[0]
    if v6.addr is not None and v6.addr not in kernel.network:
        raise _fail(
            f"--addr {v6.addr} is outside {ifname}'s subnet {kernel.network}: "
            "choose an address in it",
            errno.EADDRNOTAVAIL,
        )
    stack6 = v6.addr if v6.addr is not None else derive_stack_address6(kernel)
    if stack6 == kernel.ip:
        raise _fail(
            f"--addr {stack6} is the kernel's own address on {ifname}: choose another",
            errno.EADDRINUSE,
        )
    return kernel, stack6


def _may_share(gateway: IPv4Interface, addresses: list[_KernelAddress] | None) -> bool:
    """Whether a new interface with kernel side `gateway` also holds SHARED_KERNEL: inside
    10.77.0.0/16, and only while no interface other than a pytcpN uses 10.77.0.0/24 (a
    real 10.77.0.1 on some other link must not be shadowed)."""
    if gateway.ip not in DEFAULT_NET:
        return False
    zero = IPv4Network("10.77.0.0/24")
    for ka in addresses if addresses is not None else _kernel_addresses():
        if ka.network.overlaps(zero) and subnet_number(ka.ifname) is None:
            return False
    return True


@contextlib.contextmanager
def _subnet_lock() -> Iterator[None]:
    """An exclusive flock on /dev/net/tun while a subnet is chosen and configured."""
    try:
        fd = os.open(TUN_PATH, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield  # _open_device reports what is wrong with the device
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _free_default_gateway() -> IPv4Interface:
    """10.77.N.1/24 for the first N whose subnet no interface uses and whose pytcpN does
    not exist (a named new interface; DESIGN §3 keeps subnet N for pytcpN)."""
    addresses = _not_shared(_kernel_addresses())
    for n in range(MAX_AUTO):
        gw = IPv4Interface(f"10.77.{n}.1/24")
        if _interface_exists(f"{DEFAULT_PREFIX}{n}"):
            continue
        if not any(ka.network.overlaps(gw.network) for ka in addresses):
            return gw
    raise _fail("every subnet of 10.77.0.0/16 is in use: give --gateway", errno.EADDRINUSE)


def socket_mtu(name: str) -> int:
    """The MTU the kernel has configured on interface `name` (SIOCGIFMTU)."""
    SIOCGIFMTU = 0x8921
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s.fileno(), SIOCGIFMTU, struct.pack("16si20x", name.encode(), 0))
    return int(struct.unpack("16si20x", ifr)[1])


__all__ = [
    "DEFAULT_MTU",
    "StackEnvironmentError",
    "TunLink",
    "default_gateway6",
    "derive_stack_address",
    "derive_stack_address6",
]
