"""Small user-facing edges of connect and listen: port names and ranges, addresses
pytcp cannot use, and the wording of their errors. The installed command in a netns."""

from __future__ import annotations

import socket

import pytest

from tests.cli.netcat import KERNEL, STACK, KernelServer, recv_all, run

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]


def listening(*ports: int) -> list[socket.socket]:
    socks = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen()
        socks.append(s)
    return socks


def test_port_service_name(netns) -> None:
    server = KernelServer(socket.getservbyname("ssh", "tcp"), recv_all)
    out = run("connect", KERNEL, "ssh", input=b"hi")
    assert (out.returncode, out.stderr) == (0, b"")
    assert server.wait() == [b"hi"]
    out = run("connect", KERNEL, "no-such-service")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: invalid value for 'PORT': 'no-such-service' is neither a port number "
        b"(1-65535) nor a TCP service name; see 'pytcp connect --help'\n",
    )


def test_zero_io_port_range(netns) -> None:
    socks = listening(7202, 7205)
    out = run("connect", "-z", "-v", KERNEL, "7200-7206")
    assert (out.returncode, out.stderr.decode().splitlines()) == (
        0,
        [
            f"pytcp: connection to {KERNEL} port 7202 succeeded: open",
            f"pytcp: connection to {KERNEL} port 7205 succeeded: open",
        ],
    )
    for s in socks:
        s.close()
    out = run("connect", "-z", KERNEL, "7200-7206")
    assert (out.returncode, out.stderr) == (1, b"")
    out = run("connect", KERNEL, "7200-7206")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: a port range (LOW-HIGH) needs -z: only a scan tries many ports\n",
    )


def test_ipv6_address_says_not_supported(netns) -> None:
    out = run("connect", "::1", "80")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: ::1 is an IPv6 address, and IPv6 is not supported yet; give an IPv4 address\n",
    )


def test_own_address_fails_at_once(netns) -> None:
    # Without the check this waits for the SYN retries (about 2 minutes): the test's
    # subprocess bound would fail it.
    out = run("connect", STACK, "80", timeout=30)
    assert (out.returncode, out.stderr) == (
        1,
        f"pytcp: cannot connect to {STACK} port 80: {STACK} is pytcp's own address; "
        f"a peer is the kernel at {KERNEL} or beyond it\n".encode(),
    )


def test_listen_port_0_names_port(netns) -> None:
    out = run("listen", "0")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: invalid value for 'PORT': 0 is out of range; a port is 1-65535; "
        b"see 'pytcp listen --help'\n",
    )
