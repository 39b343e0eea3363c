"""Several pytcp processes on one host, through the installed command in a test namespace:
the kernel's 10.77.0.1 (and fd77::1) outlives the process whose interface brought it,
`--tun pytcpN` is subnet N, simultaneous starts never share a subnet, and one pytcp
reaches another with nothing set host-wide.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    STACK,
    TIMEOUT,
    KernelServer,
    StderrLines,
    pytcp,
    run,
    start_listener,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


def addresses(netns, name: str) -> list[str]:
    out = netns.run("ip", "-br", "addr", "show", "dev", name, check=False).stdout.split()
    return out[2:]


def upper_lines(conn: socket.socket) -> bytes:
    with conn.makefile("rb") as f:
        for line in f:
            conn.sendall(line.upper())
    return b"done"


@FAMILIES
def test_kernel_address_outlives_the_first_process(netns, family: int) -> None:
    KERNEL = ADDRS[family][0]
    server = KernelServer(7401, upper_lines, family=family)
    first, _first_err = start_listener("7400", stdin=subprocess.DEVNULL)  # pytcp0: 10.77.0.1/24
    second = pytcp("connect", "-v", KERNEL, "7401")
    err = StderrLines(second)
    second_addr = "10.77.1.2" if family == 4 else "fd77:1::2"
    assert err.wait_for("pytcp: connected to ").startswith(
        f"pytcp: connected to {KERNEL} port 7401 from {second_addr} port "
    )
    assert second.stdin is not None and second.stdout is not None
    second.stdin.write(b"one\n")
    second.stdin.flush()
    assert second.stdout.readline() == b"ONE\n"
    first.send_signal(signal.SIGTERM)
    assert first.wait(TIMEOUT) == 143
    assert addresses(netns, "pytcp0") == []  # gone, and 10.77.0.1 with it from pytcp0
    assert ("10.77.0.1/32" if family == 4 else "fd77::1/128") in addresses(netns, "pytcp1")
    second.stdin.write(b"two\n")  # the connection to 10.77.0.1 lives on
    second.stdin.flush()
    assert second.stdout.readline() == b"TWO\n"
    second.stdin.close()
    assert second.wait(TIMEOUT) == 0
    assert server.wait() == [b"done"]


def test_tun_pytcp_n_is_subnet_n(netns) -> None:
    proc, err = start_listener("--tun", "pytcp7", "7402", stdin=subprocess.DEVNULL)
    assert err.lines[0].startswith("pytcp: listening on pytcp7 10.77.7.2 and fd77:7::2 port 7402")
    assert addresses(netns, "pytcp7")[:2] == ["10.77.7.1/24", "10.77.0.1/32"]
    out = run("send", "10.77.7.2", "7402", "to seven")  # from pytcp0: pytcp to pytcp
    assert (out.returncode, out.stderr) == (0, b"")
    assert proc.wait(TIMEOUT) == 0
    assert proc.stdout is not None and proc.stdout.read() == b"to seven\n"


def test_pytcp_reaches_pytcp_with_nothing_set_host_wide(netns) -> None:
    forward = "/proc/sys/net/ipv4/ip_forward"
    with open(forward) as f:
        before = f.read()
    proc, _err = start_listener("7403", stdin=subprocess.DEVNULL)  # pytcp0, 10.77.0.2
    with open("/proc/sys/net/ipv4/conf/pytcp0/forwarding") as f:
        assert f.read() == "1\n"  # on pytcp's own interface only
    out = run("send", "-v", STACK, "7403", "hello")  # pytcp1 -> pytcp0
    assert out.returncode == 0, out.stderr
    assert re.match(rb"pytcp: connected to 10\.77\.0\.2 port 7403 from 10\.77\.1\.2 ", out.stderr)
    assert proc.wait(TIMEOUT) == 0
    assert proc.stdout is not None and proc.stdout.read() == b"hello\n"
    with open(forward) as f:
        assert f.read() == before  # the host's setting is what it was


FORCE_FORWARDING6 = "/proc/sys/net/ipv6/conf/{}/force_forwarding"
ALL_FORWARDING6 = "/proc/sys/net/ipv6/conf/all/forwarding"
needs_force_forwarding = pytest.mark.skipif(
    not os.path.exists(FORCE_FORWARDING6.format("lo")),
    reason="needs Linux 6.17+ (net.ipv6.conf.IF.force_forwarding)",
)


@needs_force_forwarding
def test_pytcp_reaches_pytcp_over_ipv6_with_nothing_set_host_wide(netns) -> None:
    with open(ALL_FORWARDING6) as f:
        assert f.read() == "0\n"  # a fresh namespace: the host-wide switch is off
    proc, _err = start_listener("-6", "7404", stdin=subprocess.DEVNULL)  # pytcp0, fd77:0::2
    with open(FORCE_FORWARDING6.format("pytcp0")) as f:
        assert f.read() == "1\n"  # on pytcp's own interface only
    out = run("send", "-v", "fd77::2", "7404", "hello six")  # pytcp1 -> pytcp0, IPv6
    assert out.returncode == 0, out.stderr
    assert re.match(rb"pytcp: connected to fd77::2 port 7404 from fd77:1::2 ", out.stderr)
    assert proc.wait(TIMEOUT) == 0
    assert proc.stdout is not None and proc.stdout.read() == b"hello six\n"
    with open(ALL_FORWARDING6) as f:
        assert f.read() == "0\n"  # still off: nothing host-wide was changed


@needs_force_forwarding
def test_ipv6_to_pytcp_without_forwarding_fails_at_once_naming_the_cause(netns) -> None:
    """When the kernel cannot forward IPv6 between two pytcp interfaces (here the
    listener's force_forwarding is turned off, as on a kernel before 6.17 with
    all.forwarding off), the SYN would be dropped silently and the connection time out
    after two minutes: pytcp says why before it sends one."""
    proc, err = start_listener("-6", "7405", stdin=subprocess.DEVNULL)
    with open(FORCE_FORWARDING6.format("pytcp0"), "w") as f:
        f.write("0")  # this test namespace's interface, not a host-wide setting
    out = run("connect", "-w", "100s", "fd77::2", "7405", input=b"lost\n")
    assert out.returncode == 1
    assert out.stderr == (
        b"pytcp: cannot connect to fd77::2 port 7405: fd77::2 is routed out of pytcp0, and "
        b"the kernel forwards IPv6 between interfaces only with "
        b"net.ipv6.conf.all.forwarding=1 (0 here, a host-wide setting pytcp does not change) "
        b"or force_forwarding=1 on both (net.ipv6.conf.pytcp0.force_forwarding is 0); as "
        b"root: sysctl -w net.ipv6.conf.all.forwarding=1, or use IPv4\n"
    )
    with open(ALL_FORWARDING6) as f:
        assert f.read() == "0\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(TIMEOUT) == 130
    assert not [line for line in err.rest() if "connection from" in line]  # no SYN came


@pytest.mark.parametrize("names", [("pytcp3", "pytcp4"), ("alpha", "beta")])
def test_simultaneous_starts_get_distinct_subnets(netns, names: tuple[str, str]) -> None:
    for round_ in range(3):
        port = 7410 + round_
        procs = [
            pytcp("listen", "-v", "--tun", name, str(port), stdin=subprocess.DEVNULL)
            for name in names
        ]
        errs = [StderrLines(p) for p in procs]
        lines = [e.wait_for("pytcp: listening on ") for e in errs]
        addrs = [line.split()[4] for line in lines]
        assert len(set(addrs)) == 2, lines
        if names[0] == "pytcp3":
            assert addrs == ["10.77.3.2", "10.77.4.2"]  # deterministic: the name says it
        for p in procs:
            p.send_signal(signal.SIGINT)
        assert [p.wait(TIMEOUT) for p in procs] == [130, 130]


def test_stack_addresses_never_shadow_another_link(netns) -> None:
    # Some other link holds 10.77.0.0/24: pytcp takes pytcp1 and does not add the shared
    # 10.77.0.1 (a real host there must stay reachable through that link).
    netns.run("ip", "tuntap", "add", "dev", "other0", "mode", "tun")
    netns.run("ip", "addr", "add", "10.77.0.5/24", "dev", "other0")
    proc, err = start_listener("7420", stdin=subprocess.DEVNULL)
    assert err.lines[0].startswith("pytcp: listening on pytcp1 10.77.1.2 and fd77:1::2 port 7420")
    assert "10.77.0.1/32" not in addresses(netns, "pytcp1")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(TIMEOUT) == 130
