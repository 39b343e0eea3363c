"""stack/io/tun.py on a real TUN device, alone: naming, addressing, attach, errors, cleanup."""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface
from pathlib import Path

import pytest

from stack.io import tun
from stack.io.tun import (
    StackEnvironmentError,
    TunLink,
    default_gateway6,
    derive_stack_address,
    derive_stack_address6,
)
from tests.conftest import Netns

ROOT = Path(__file__).resolve().parents[2]


def link_info(netns: Netns, name: str) -> dict | None:
    """`ip -j addr show dev NAME` as a dict, or None when the interface does not exist."""
    res = netns.run("ip", "-j", "addr", "show", "dev", name, check=False)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout)[0]


def ipv4_of(info: dict) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["family"] == "inet"]


def ipv6_of(info: dict) -> list[str]:
    """Every IPv6 address of the interface, link-local ones included."""
    return [f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["family"] == "inet6"]


def wait_gone(netns: Netns, name: str, timeout: float = 5.0) -> bool:
    """True once interface `name` no longer exists (bounded poll: netdev teardown is async)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if link_info(netns, name) is None:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def tunlink(netns: Netns) -> Iterator[TunLink]:
    link = TunLink.open()
    try:
        yield link
    finally:
        link.close()


# -- pure helpers -------------------------------------------------------------------------


def test_ipv6_defaults_follow_the_ipv4_subnet() -> None:
    # N is written with the same digits in both families: pytcp12 is 10.77.12.x, fd77:12::x.
    assert default_gateway6(IPv4Interface("10.77.12.1/24")) == IPv6Interface("fd77:12::1/64")
    assert default_gateway6(IPv4Interface("10.77.255.1/24")) == IPv6Interface("fd77:255::1/64")
    assert default_gateway6(IPv4Interface("10.77.9.1/16")) == IPv6Interface("fd77:9::1/64")
    assert default_gateway6(IPv4Interface("192.168.7.1/24")) is None  # IPv6 when asked for
    assert derive_stack_address6(IPv6Interface("fd77:3::1/64")) == IPv6Address("fd77:3::2")
    assert derive_stack_address6(IPv6Interface("fd77::ffff:ffff:ffff:ffff/64")) == IPv6Address(
        "fd77::ffff:ffff:ffff:fffe"
    )
    with pytest.raises(StackEnvironmentError):
        derive_stack_address6(IPv6Interface("fd77::1/128"))


def test_derive_stack_address() -> None:
    assert derive_stack_address(IPv4Interface("10.77.0.1/24")) == IPv4Address("10.77.0.2")
    assert derive_stack_address(IPv4Interface("10.77.3.254/24")) == IPv4Address("10.77.3.253")
    assert derive_stack_address(IPv4Interface("10.77.0.5/30")) == IPv4Address("10.77.0.6")
    assert derive_stack_address(IPv4Interface("10.77.0.6/30")) == IPv4Address("10.77.0.5")
    assert derive_stack_address(IPv4Interface("10.77.0.0/31")) == IPv4Address("10.77.0.1")
    assert derive_stack_address(
        IPv4Interface("10.77.0.1/32"), IPv4Address("10.77.0.9")
    ) == IPv4Address("10.77.0.9")
    with pytest.raises(StackEnvironmentError) as exc:
        derive_stack_address(IPv4Interface("10.77.0.1/32"))
    assert str(exc.value) == "cannot derive a stack address from 10.77.0.1/32 (a /32): give --addr"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mtu": 100}, "bad --mtu 100: must be between 576 and 65535"),
        (
            {"addr": "10.77.0.300"},
            "bad --addr '10.77.0.300': expected an IPv4 address such as 10.77.0.2",
        ),
        (
            {"gateway": "10.77.0.1/31"},
            "bad --gateway '10.77.0.1/31': the prefix must leave room for two hosts (/30 or wider)",
        ),
        ({"name": "a" * 16}, f"bad interface name {'a' * 16!r}: 1 to 15 characters, no '/'"),
        (
            {"addr6": "fd77::zz"},
            "bad --addr 'fd77::zz': expected an IPv6 address such as fd77:0::2",
        ),
        (
            {"gateway6": "fd77::1/127"},
            "bad --gateway 'fd77::1/127': the prefix must leave room for two hosts "
            "(/126 or wider)",
        ),
    ],
)
def test_bad_options_are_one_line(kwargs: dict, message: str) -> None:
    name = kwargs.pop("name", None)
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open(name, **kwargs)
    assert str(exc.value) == message
    assert exc.value.errno == errno.EINVAL
    assert isinstance(exc.value, OSError)


# -- on a real device ---------------------------------------------------------------------


@pytest.mark.netns
def test_default_creates_pytcp0_configured_and_up(netns: Netns, tunlink: TunLink) -> None:
    assert tunlink.name == "pytcp0"
    assert tunlink.created is True
    assert tunlink.address == IPv4Address("10.77.0.2")
    assert tunlink.peer_address == IPv4Address("10.77.0.1")
    assert tunlink.network == IPv4Network("10.77.0.0/24")
    assert tunlink.mtu == tun.DEFAULT_MTU == 1500
    info = link_info(netns, "pytcp0")
    assert info is not None
    assert ipv4_of(info) == ["10.77.0.1/24"]
    assert "UP" in info["flags"]
    assert info["mtu"] == 1500
    assert info["link_type"] == "none"  # a TUN: raw IP, no link-layer header
    # No IPv6 address generation on an interface pytcp made: no link-local address, so
    # the kernel sends no router solicitations into the stack; only fd77:0::1/64 (DESIGN
    # §3), and the stack is fd77:0::2.
    assert addr_gen_mode(netns, "pytcp0") == "none"
    assert ipv6_of(info) == ["fd77::1/64"]
    assert (tunlink.address6, tunlink.peer_address6, str(tunlink.network6)) == (
        IPv6Address("fd77::2"),
        IPv6Address("fd77::1"),
        "fd77::/64",
    )
    tunlink.close()
    assert wait_gone(netns, "pytcp0")


def addr_gen_mode(netns: Netns, name: str) -> str:
    res = netns.run("ip", "-d", "-j", "link", "show", "dev", name)
    return str(json.loads(res.stdout)[0]["inet6_addr_gen_mode"])


@pytest.mark.netns
def test_second_stack_takes_the_next_name_and_subnet(netns: Netns, tunlink: TunLink) -> None:
    with TunLink.open() as second:
        assert (second.name, str(second.address), str(second.peer_address)) == (
            "pytcp1",
            "10.77.1.2",
            "10.77.1.1",
        )
        info = link_info(netns, "pytcp1")
        # Its own subnet, and a copy of the kernel address users connect to (10.77.0.1,
        # fd77:0::1), so that address outlives pytcp0 while pytcp1 is up (DESIGN §3).
        assert info is not None and ipv4_of(info) == ["10.77.1.1/24", "10.77.0.1/32"]
        assert sorted(ipv6_of(info)) == ["fd77:1::1/64", "fd77::1/128"]
        assert str(second.address6) == "fd77:1::2"
    assert wait_gone(netns, "pytcp1")
    assert link_info(netns, "pytcp0") is not None


@pytest.mark.netns
def test_overrides_name_addr_gateway_mtu(netns: Netns) -> None:
    with TunLink.open("mytun", addr="10.77.42.7", gateway="10.77.42.1/24", mtu=9000) as link:
        assert (link.name, str(link.address), str(link.peer_address), link.mtu) == (
            "mytun",
            "10.77.42.7",
            "10.77.42.1",
            9000,
        )
        info = link_info(netns, "mytun")
        assert info is not None
        assert (ipv4_of(info), info["mtu"]) == (["10.77.42.1/24"], 9000)
    with TunLink.open(addr="10.77.8.9") as link:
        assert (link.name, str(link.address), str(link.peer_address)) == (
            "pytcp0",
            "10.77.8.9",
            "10.77.8.1",
        )
    with TunLink.open(gateway="10.77.9.1/16") as link:
        assert (str(link.address), str(link.network)) == ("10.77.9.2", "10.77.0.0/16")
        assert str(link.address6) == "fd77:9::2"
    with TunLink.open("t6", addr6="fd77:aa::9", gateway6="fd77:aa::1/112") as link:
        assert (str(link.address6), str(link.peer_address6), str(link.network6)) == (
            "fd77:aa::9",
            "fd77:aa::1",
            "fd77:aa::/112",
        )
        info = link_info(netns, "t6")
        assert info is not None and ipv6_of(info) == ["fd77:aa::1/112"]
    with TunLink.open(addr6="fd77:bb::7") as link:  # the kernel takes ::1 of its /64
        assert (str(link.address6), str(link.peer_address6)) == ("fd77:bb::7", "fd77:bb::1")
    with TunLink.open("t7", gateway="192.168.77.1/24") as link:  # no IPv6 unless asked
        assert (link.address6, link.peer_address6, link.network6) == (None, None, None)
        info = link_info(netns, "t7")
        assert info is not None and ipv6_of(info) == []
    with TunLink.open("t5", mtu=576) as link:  # IPv4 only: no IPv6 link is below 1280 bytes
        assert (link.mtu, link.address6) == (576, None)
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("t5", mtu=1279, addr6="fd77:5::2")
    assert str(exc.value) == "IPv6 needs an MTU of at least 1280 (RFC 8200 §5): raise --mtu"
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("t8", addr6="fd77:cc::2", gateway6="fd77:dd::1/64")
    assert str(exc.value) == "--addr fd77:cc::2 is outside the kernel side's subnet fd77:dd::/64"
    assert link_info(netns, "t8") is None


@pytest.mark.netns
def test_busy_interface(netns: Netns, tunlink: TunLink) -> None:
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("pytcp0")
    assert exc.value.errno == errno.EBUSY
    assert str(exc.value) == (
        "interface pytcp0 is busy: another process has it open (pick another with --tun)"
    )


@pytest.mark.netns
def test_address_in_use(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "dev", "d0", "mode", "tun")
    netns.run("ip", "addr", "add", "10.77.0.1/24", "dev", "d0")
    with TunLink.open() as link:  # the default skips the taken subnet, name and all
        assert (link.name, str(link.peer_address)) == ("pytcp1", "10.77.1.1")
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open(gateway="10.77.0.1/24")
    assert exc.value.errno == errno.EADDRINUSE
    assert str(exc.value) == (
        "address 10.77.0.1 is already in use on d0: choose others with --addr/--gateway"
    )
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("t9", gateway="10.77.0.100/16")
    assert str(exc.value) == (
        "subnet 10.77.0.0/16 is already in use on d0 (10.77.0.1/24): choose another with --gateway"
    )
    assert link_info(netns, "t9") is None
    # The same for the IPv6 prefix: a default skips N, an explicit request is refused.
    netns.run("ip", "tuntap", "add", "dev", "d6", "mode", "tun")
    netns.run("ip", "addr", "add", "fd77:1::1/64", "dev", "d6")
    with TunLink.open() as link:
        assert (link.name, str(link.peer_address), str(link.peer_address6)) == (
            "pytcp2",
            "10.77.2.1",
            "fd77:2::1",
        )
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("t9", gateway6="fd77:1::5/64")
    assert exc.value.errno == errno.EADDRINUSE
    assert str(exc.value) == (
        "subnet fd77:1::/64 is already in use on d6 (fd77:1::1/64): choose another with --gateway"
    )
    assert link_info(netns, "t9") is None


@pytest.mark.netns
def test_no_dev_net_tun(netns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tun, "TUN_PATH", "/nonexistent/tun")
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open()
    assert exc.value.errno == errno.ENOENT
    assert str(exc.value) == (
        "no /nonexistent/tun: load the tun module (modprobe tun) or, in a container, "
        "pass the device in (--device /dev/net/tun)"
    )
    assert link_info(netns, "pytcp0") is None


@pytest.mark.netns
def test_attach_to_persistent_device_as_is(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "dev", "ptun", "mode", "tun")
    netns.run("ip", "addr", "add", "10.77.5.1/24", "dev", "ptun")
    netns.run("ip", "link", "set", "ptun", "mtu", "1400", "up")
    with TunLink.open("ptun") as link:
        assert (link.name, link.created, str(link.address), str(link.peer_address)) == (
            "ptun",
            False,
            "10.77.5.2",
            "10.77.5.1",
        )
        assert link.mtu == 1400
    info = link_info(netns, "ptun")  # persistent: still there, untouched
    assert info is not None and ipv4_of(info) == ["10.77.5.1/24"] and info["mtu"] == 1400
    assert addr_gen_mode(netns, "ptun") != "none"  # the kernel's default, left alone
    assert link.address6 is None  # no global IPv6 address on it: IPv4 only
    netns.run("ip", "addr", "add", "fd77:5::1/64", "dev", "ptun")
    with TunLink.open("ptun") as link:
        assert (str(link.address6), str(link.peer_address6)) == ("fd77:5::2", "fd77:5::1")
    with TunLink.open("ptun", addr6="fd77:5::99") as link:
        assert str(link.address6) == "fd77:5::99"
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("ptun", addr6="fd77:6::2")
    assert str(exc.value) == (
        "--addr fd77:6::2 is outside ptun's subnet fd77:5::/64: choose an address in it"
    )
    with TunLink.open("ptun", addr="10.77.5.77") as link:
        assert str(link.address) == "10.77.5.77"
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("ptun", mtu=9000)
    assert str(exc.value) == (
        "interface ptun already exists and is used as it is: "
        "drop --gateway/--mtu, or pick a new name with --tun"
    )
    netns.run("ip", "tuntap", "add", "dev", "bare", "mode", "tun")
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("bare")
    assert str(exc.value) == (
        "interface bare has no IPv4 address, and pytcp uses an existing interface as it is: "
        "add one (ip addr add 10.77.0.1/24 dev bare)"
    )
    with pytest.raises(StackEnvironmentError) as exc:
        TunLink.open("ptun", addr="10.77.99.2")
    assert str(exc.value) == (
        "--addr 10.77.99.2 is outside ptun's subnet 10.77.5.0/24: choose an address in it"
    )
    # A point-to-point address names the stack's address as the peer.
    netns.run("ip", "addr", "add", "10.77.6.1", "peer", "10.77.6.9", "dev", "bare")
    with TunLink.open("bare") as link:
        assert (str(link.address), str(link.peer_address)) == ("10.77.6.9", "10.77.6.1")


@pytest.mark.netns
def test_default_attaches_to_a_free_persistent_pytcp0(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "dev", "pytcp0", "mode", "tun")
    netns.run("ip", "addr", "add", "10.77.0.1/24", "dev", "pytcp0")
    with TunLink.open() as link:
        assert (link.name, link.created, str(link.address)) == ("pytcp0", False, "10.77.0.2")
        with TunLink.open() as second:  # pytcp0 is busy now: a new pytcp1
            assert (second.name, second.created) == ("pytcp1", True)
    with TunLink.open(addr="10.77.0.9") as link:  # PYTCP_ADDR in pytcp0's subnet: attached
        assert (link.name, link.created, str(link.address)) == ("pytcp0", False, "10.77.0.9")
    with TunLink.open(addr="10.77.8.2") as link:  # another subnet: a new interface for it
        assert (link.name, link.created, str(link.peer_address)) == ("pytcp1", True, "10.77.8.1")


def _kernel_addresses_loaded() -> None:
    """Load everything interface set-up uses now: a child that drops root cannot read
    root's files."""
    tun._kernel_addresses()


def _as_nobody(tun_path: str, name: str) -> tuple[str, str]:
    """Fork, drop to uid/gid 65534, open `name` through `tun_path`; ("ok"|"error", detail)."""
    _kernel_addresses_loaded()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            tun.TUN_PATH = tun_path
            with TunLink.open(name) as link:
                msg = f"ok {link.name} {link.address} {link.created}"
        except BaseException as exc:
            msg = f"error {exc}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    kind, _, detail = out.partition(" ")
    return kind, detail


@pytest.mark.netns
def test_ordinary_user_attaches_to_own_persistent_device(netns: Netns) -> None:
    # A private /dev/net/tun anyone may open (the real one may be 0600), in a directory
    # that uid 65534 can reach (pytest's tmp_path lives under a 0700 directory).
    with tempfile.TemporaryDirectory(prefix="pytcp-tun-") as tmp:
        os.chmod(tmp, 0o755)
        node = Path(tmp) / "tun"
        try:
            os.mknod(node, 0o20666, os.makedev(10, 200))
            os.chmod(node, 0o666)
        except OSError as exc:
            pytest.skip(f"cannot create a tun device node here: {exc}")
        _check_nobody(netns, str(node))


def _check_nobody(netns: Netns, node: str) -> None:
    netns.run("ip", "tuntap", "add", "dev", "usertun", "mode", "tun", "user", "65534")
    netns.run("ip", "addr", "add", "10.77.7.1/24", "dev", "usertun")
    netns.run("ip", "link", "set", "usertun", "up")
    assert _as_nobody(node, "usertun") == ("ok", "usertun 10.77.7.2 False")
    netns.run("ip", "tuntap", "add", "dev", "roottun", "mode", "tun", "user", "0")
    netns.run("ip", "addr", "add", "10.77.8.1/24", "dev", "roottun")
    kind, detail = _as_nobody(node, "roottun")
    assert kind == "error"
    assert detail.startswith(
        "no permission to attach to interface roottun (it belongs to another user, or it is "
        "not a TUN): run as root, or use one that root made for your user "
        "(ip tuntap add dev NAME mode tun user $USER, then --tun NAME)"
    )
    kind, detail = _as_nobody(node, "newtun")
    assert (kind, detail.split(":")[0]) == (
        "error",
        "no permission to create TUN interface newtun (needs CAP_NET_ADMIN)",
    )
    # --tun newtun was asked for: the hint names newtun, not pytcp0.
    assert "ip tuntap add dev newtun mode tun user $USER" in detail
    assert "pytcp0" not in detail


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # RFC 768: 0 = none
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + udp


@pytest.mark.netns
def test_packets_flow_both_ways(netns: Netns, tunlink: TunLink) -> None:
    fd = tunlink.fileno()
    assert fd is not None
    while tunlink.recv() is not None:  # whatever the kernel sent on link-up
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("10.77.0.1", 0))
        port = s.getsockname()[1]
        s.sendto(b"to the stack", ("10.77.0.2", 9999))
        packet = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            select.select([fd], [], [], 0.5)
            got = tunlink.recv()
            p = None if got is None else bytes(got)  # a Packet when offloads are on
            if p is not None and p[9] == 17:  # UDP (IPv6 router solicitations may come too)
                packet = p
                break
        assert packet is not None
        assert packet[0] >> 4 == 4
        assert socket.inet_ntoa(packet[12:16]) == "10.77.0.1"
        assert socket.inet_ntoa(packet[16:20]) == "10.77.0.2"
        assert packet[28:] == b"to the stack"
        tunlink.send(_udp_packet("10.77.0.2", "10.77.0.1", 9999, port, b"to the kernel"))
        s.settimeout(5)
        data, addr = s.recvfrom(100)
        assert (data, addr) == (b"to the kernel", ("10.77.0.2", 9999))
    assert (tunlink.counters["tx_packets"], tunlink.counters["tx_dropped"]) == (1, 0)
    tunlink.close()
    tunlink.send(b"late")  # after close: counted as dropped, not raised
    assert (tunlink.counters["tx_packets"], tunlink.counters["tx_dropped"]) == (1, 1)
    assert tunlink.recv() is None


CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from stack.io.tun import TunLink
    link = TunLink.open()
    print(link.name, flush=True)
    how = sys.argv[1]
    if how == "exception":
        raise RuntimeError("boom")
    if how == "normal":
        sys.exit(0)
    time.sleep(60)  # killed by the test
    """
)


@pytest.mark.netns
@pytest.mark.parametrize("how", ["normal", "exception", "SIGTERM", "SIGKILL"])
def test_interface_gone_when_process_ends(netns: Netns, how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert name == "pytcp0"
        if how.startswith("SIG"):
            assert link_info(netns, name) is not None
            proc.send_signal(getattr(signal, how))
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_gone(netns, "pytcp0")
    expected = {"normal": 0, "exception": 1, "SIGTERM": -15, "SIGKILL": -9}[how]
    assert proc.returncode == expected


@pytest.mark.netns
def test_interface_deleted_under_us_is_one_environment_error(
    netns: Netns, tunlink: TunLink
) -> None:
    netns.run("ip", "link", "del", "pytcp0")
    with pytest.raises(StackEnvironmentError) as exc:
        tunlink.recv()
    assert str(exc.value) == (
        "interface pytcp0 went away while pytcp was using it (File descriptor in bad state): "
        "was it deleted?"
    )
    assert exc.value.errno == errno.EBADFD
    assert tunlink.recv() is None  # dead from now on, quietly
    tunlink.send(b"x")
    assert tunlink.counters["tx_dropped"] == 1


# -- the configuration of an interface pytcp creates, exactly ------------------------------


def _addresses(netns: Netns, name: str) -> list[tuple]:
    """(family, address/len, scope, nodad) of every address on `name`, sorted."""
    info = link_info(netns, name)
    assert info is not None
    return sorted(
        (a["family"], f"{a['local']}/{a['prefixlen']}", a["scope"], a.get("nodad", False))
        for a in info["addr_info"]
    )


def _routes(netns: Netns, name: str) -> list[tuple]:
    """(type, destination, table, scope, preferred source) of every route through `name`
    in every table and both families (`ip route show table all dev NAME`), sorted."""
    routes = []
    for family in ("-4", "-6"):
        res = netns.run("ip", "-j", family, "route", "show", "table", "all", "dev", name)
        for r in json.loads(res.stdout or "[]"):
            routes.append(
                (
                    r.get("type", "unicast"),
                    r["dst"],
                    r.get("table", "main"),
                    r.get("scope", "global"),
                    r.get("prefsrc", ""),
                )
            )
    return sorted(routes)


def _link(netns: Netns, name: str) -> tuple:
    """(UP, MTU, IPv6 address generation mode, net.ipv4.conf.NAME.forwarding,
    net.ipv6.conf.NAME.forwarding) of `name`."""
    info = json.loads(netns.run("ip", "-d", "-j", "link", "show", "dev", name).stdout)[0]
    v4 = Path(f"/proc/sys/net/ipv4/conf/{name}/forwarding").read_text().strip()
    v6_path = Path(f"/proc/sys/net/ipv6/conf/{name}/forwarding")
    v6 = v6_path.read_text().strip() if v6_path.exists() else None
    return ("UP" in info["flags"], info["mtu"], info.get("inet6_addr_gen_mode"), v4, v6)


def _local6(netns: Netns, address: str) -> str:
    """The type of the route the kernel takes for `address` now (`ip -6 route get`)."""
    res = netns.run("ip", "-j", "-6", "route", "get", address)
    return str(json.loads(res.stdout)[0].get("type", "unicast"))


@pytest.mark.netns
def test_created_interfaces_are_configured_exactly(netns: Netns) -> None:
    # What TunLink.open() puts on the interfaces it creates, in full: the addresses with
    # their flags, every route the kernel derives from them in every table, the link's
    # MTU, state and IPv6 address generation mode, and forwarding on the interface only.
    with TunLink.open() as first, TunLink.open() as second:
        assert (first.name, second.name) == ("pytcp0", "pytcp1")
        # The IPv6 local route is in place when open() returns (no SYN to fd77:N::1
        # is dropped as Ip6InAddrErrors).
        assert _local6(netns, "fd77::1") == "local"
        assert _local6(netns, "fd77:1::1") == "local"
        assert _addresses(netns, "pytcp0") == [
            ("inet", "10.77.0.1/24", "global", False),
            ("inet6", "fd77::1/64", "global", True),
        ]
        assert _routes(netns, "pytcp0") == [
            ("broadcast", "10.77.0.255", "local", "link", "10.77.0.1"),
            ("local", "10.77.0.1", "local", "host", "10.77.0.1"),
            ("local", "fd77::1", "local", "global", ""),
            ("multicast", "ff00::/8", "local", "global", ""),
            ("unicast", "10.77.0.0/24", "main", "link", "10.77.0.1"),
            ("unicast", "fd77::/64", "main", "global", ""),
        ]
        assert _link(netns, "pytcp0") == (True, 1500, "none", "1", "0")
        # The second also holds the shared kernel address 10.77.0.1/32 and fd77::1/128.
        assert _addresses(netns, "pytcp1") == [
            ("inet", "10.77.0.1/32", "global", False),
            ("inet", "10.77.1.1/24", "global", False),
            ("inet6", "fd77:1::1/64", "global", True),
            ("inet6", "fd77::1/128", "global", True),
        ]
        assert _routes(netns, "pytcp1") == [
            ("broadcast", "10.77.1.255", "local", "link", "10.77.1.1"),
            ("local", "10.77.0.1", "local", "host", "10.77.0.1"),
            ("local", "10.77.1.1", "local", "host", "10.77.1.1"),
            ("local", "fd77:1::1", "local", "global", ""),
            ("local", "fd77::1", "local", "global", ""),
            ("multicast", "ff00::/8", "local", "global", ""),
            ("unicast", "10.77.1.0/24", "main", "link", "10.77.1.1"),
            ("unicast", "fd77:1::/64", "main", "global", ""),
            ("unicast", "fd77::1", "main", "global", ""),
        ]
        assert _link(netns, "pytcp1") == (True, 1500, "none", "1", "0")
    with TunLink.open("t7", gateway="192.168.77.1/24", mtu=9000) as link:
        # Outside 10.77.0.0/16: no IPv6 unless asked for, no shared address.
        assert link.address6 is None
        assert _addresses(netns, "t7") == [("inet", "192.168.77.1/24", "global", False)]
        assert _routes(netns, "t7") == [
            ("broadcast", "192.168.77.255", "local", "link", "192.168.77.1"),
            ("local", "192.168.77.1", "local", "host", "192.168.77.1"),
            ("multicast", "ff00::/8", "local", "global", ""),
            ("unicast", "192.168.77.0/24", "main", "link", "192.168.77.1"),
        ]
        assert _link(netns, "t7") == (True, 9000, "none", "1", "0")
    with TunLink.open("t5", mtu=576) as link:
        # Below 1280 bytes Linux keeps IPv6 off the link: IPv4 only.
        assert link.address6 is None
        assert _addresses(netns, "t5") == [("inet", "10.77.0.1/24", "global", False)]
        assert _link(netns, "t5")[:2] == (True, 576)
