"""ECN (RFC 3168) negotiated with the Linux kernel, both ways, over IPv4 and IPv6
(the ECN field of the Traffic Class, RFC 3168 §9.3), through the installed pytcp, read
back from the kernel's own TCP_INFO: TCPI_OPT_ECN (negotiated) and TCPI_OPT_ECN_SEEN
(it received ECT-marked data from us)."""

from __future__ import annotations

import os
import socket

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    TIMEOUT,
    KernelServer,
    connect_kernel,
    recv_all,
    start_listener,
)
from tests.cli.netcat import run as run_pytcp

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

TCPI_OPT_ECN = 8  # include/uapi/linux/tcp.h
TCPI_OPT_ECN_SEEN = 16


def tcpi_options(sock: socket.socket) -> int:
    """struct tcp_info's tcpi_options (the sixth byte)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[5]


def serve_and_report(conn: socket.socket) -> tuple[bytes, int]:
    data = recv_all(conn)
    return data, tcpi_options(conn)


@FAMILIES
@pytest.mark.parametrize(("ask", "negotiated"), [(True, True), (False, False)])
def test_pytcp_asks_for_ecn_with_the_option_only(
    netns, family: int, ask: bool, negotiated: bool
) -> None:
    # The kernel's default net.ipv4.tcp_ecn = 2 (IPv6 too) accepts an ECN-setup SYN.
    kernel, _stack = ADDRS[family]
    server = KernelServer(9300 + ask, serve_and_report, family=family)
    payload = os.urandom(200_000)
    args = ["connect", "--time-wait", "0", *(["--ecn"] if ask else []), kernel]
    result = run_pytcp(*args, str(9300 + ask), input=payload)
    assert result.returncode == 0, result.stderr
    [(data, options)] = server.wait()
    assert data == payload
    assert bool(options & TCPI_OPT_ECN) is negotiated
    # our data went out ECT(0) exactly when ECN was negotiated
    assert bool(options & TCPI_OPT_ECN_SEEN) is negotiated


@FAMILIES
def test_pytcp_accepts_ecn_when_the_kernel_asks(netns, family: int) -> None:
    # In this test's own namespace: the kernel asks for ECN on its connections (the
    # net.ipv4 sysctl covers IPv6 too).
    with open("/proc/sys/net/ipv4/tcp_ecn", "w") as f:
        f.write("1\n")
    _kernel, stack = ADDRS[family]
    proc, _err = start_listener("9310")
    assert proc.stdin is not None and proc.stdout is not None
    client = connect_kernel(9310, stack)
    proc.stdin.write(b"x" * 100_000)
    proc.stdin.close()
    client.sendall(b"hello")
    client.shutdown(socket.SHUT_WR)
    assert recv_all(client) == b"x" * 100_000
    options = tcpi_options(client)
    client.close()
    assert proc.stdout.read() == b"hello"
    assert proc.wait(TIMEOUT) == 0
    assert options & TCPI_OPT_ECN  # our SYN-ACK accepted (RFC 3168 §6.1.1)
    assert options & TCPI_OPT_ECN_SEEN  # and our data to it was ECT(0)
