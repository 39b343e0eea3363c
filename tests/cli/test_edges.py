"""Small user-facing edges of connect and listen: port names and ranges, addresses
pytcp cannot use, and the wording of their errors. The installed command in a netns."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    PYTCP,
    TIMEOUT,
    KernelServer,
    StderrLines,
    connect_kernel,
    pytcp,
    recv_all,
    run,
    start_listener,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]


def listening(*ports: int, family: int = 4) -> list[socket.socket]:
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if family == 6 else "0.0.0.0", port))
        s.listen()
        socks.append(s)
    return socks


@FAMILIES
def test_port_service_name(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(socket.getservbyname("ssh", "tcp"), recv_all, family=family)
    out = run("connect", KERNEL, "ssh", input=b"hi")
    assert (out.returncode, out.stderr) == (0, b"")
    assert server.wait() == [b"hi"]
    out = run("connect", KERNEL, "no-such-service")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: invalid value for 'PORT': 'no-such-service' is neither a port number "
        b"(1-65535) nor a TCP service name; see 'pytcp connect --help'\n",
    )


@FAMILIES
def test_zero_io_port_range(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    socks = listening(7202, 7205, family=family)
    out = run("connect", "-z", "-v", KERNEL, "7200-7206")
    lines = [
        f"pytcp: connection to {KERNEL} port {p} "
        + ("succeeded: open" if p in (7202, 7205) else "refused: closed")
        for p in range(7200, 7207)
    ]
    assert (out.returncode, out.stderr.decode().splitlines()) == (0, lines)
    # Lists and reversed ranges, in the order given; every port once.
    out = run("connect", "-z", "-v", KERNEL, "7206-7204", "7202,7205")
    assert (out.returncode, out.stderr.decode().splitlines()) == (
        0,
        [lines[6], lines[5], lines[4], lines[2]],
    )
    for s in socks:
        s.close()
    out = run("connect", "-z", KERNEL, "7200-7206")
    assert (out.returncode, out.stderr) == (1, b"")
    out = run("connect", KERNEL, "7200-7206")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: several ports (a range, a list) need -z: only a scan tries many ports\n",
    )


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_loopback_gets_the_stacks_explanation(netns, host: str) -> None:
    out = run("connect", host, "80", timeout=30)
    assert (out.returncode, out.stderr) == (
        1,
        b"pytcp: cannot connect to ::1 port 80: ::1 is a loopback address, which the stack "
        b"cannot reach: the kernel is at fd77::1\n",
    )


@FAMILIES
def test_own_address_fails_at_once(netns, family: int) -> None:
    # Without the check this waits for the SYN retries (about 2 minutes): the test's
    # subprocess bound would fail it.
    kernel, stack = ADDRS[family]
    out = run("connect", stack, "80", timeout=30)
    assert (out.returncode, out.stderr) == (
        1,
        f"pytcp: cannot connect to {stack} port 80: {stack} is pytcp's own address; "
        f"a peer is the kernel at {kernel} or beyond it\n".encode(),
    )


def test_listen_port_0_names_port(netns) -> None:
    out = run("listen", "0")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: invalid value for 'PORT': 0 is out of range; a port is 1-65535; "
        b"see 'pytcp listen --help'\n",
    )


@FAMILIES
def test_listen_verbose_summary_and_child_exit_status(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    proc, err = start_listener("7210", stdin=subprocess.DEVNULL)
    conn = connect_kernel(7210, STACK)
    conn.sendall(b"x")
    conn.shutdown(socket.SHUT_WR)
    assert recv_all(conn) == b""
    conn.close()
    assert proc.wait(TIMEOUT) == 0
    summary = [line for line in err.rest() if " received " in line]
    assert len(summary) == 1
    assert re.fullmatch(
        rf"pytcp: {KERNEL} port \d+: 0 bytes sent, 1 received in \d+\.\d\d s\n", summary[0]
    )
    proc, err = start_listener("7211", "-e", "sh -c 'exit 3'")
    conn = connect_kernel(7211, STACK)
    assert recv_all(conn) == b""
    conn.close()
    assert proc.wait(TIMEOUT) == 0
    line = err.wait_for("pytcp: child ")
    assert re.fullmatch(r"pytcp: child \d+ \(sh\) exited with status 3\n", line)


def test_idle_listener_sigterm_does_not_talk_of_rst(netns) -> None:
    proc, err = start_listener("7212", stdin=subprocess.DEVNULL)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(TIMEOUT) == 143
    assert err.rest()[1:] == ["pytcp: SIGTERM: no connection open; exiting\n"]


@FAMILIES
def test_sigint_in_full_time_wait_exits_without_closing_again(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    # The server reads pytcp's FIN, then closes: pytcp closed first.
    KernelServer(7213, recv_all, family=family)
    proc = pytcp("connect", "-vv", "--time-wait", "full", KERNEL, "7213")
    assert proc.stdin is not None
    err = StderrLines(proc)
    proc.stdin.close()
    err.wait_for("")  # the connected line
    line = err.wait_for("")
    while not line.rstrip().endswith("-> TIME-WAIT"):
        line = err.wait_for("")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(TIMEOUT) == 130
    assert "pytcp: SIGINT: no connection open; exiting\n" in err.rest()


@FAMILIES
def test_child_ignoring_sigterm_is_killed_and_reaped(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]
    child = (
        "exec python3 -c 'import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print(os.getpid(), flush=True); time.sleep(600)'"
    )
    proc, _err = start_listener("7214", "-c", child)
    conn = connect_kernel(7214, STACK)
    # A byte stream: under PYTHONUNBUFFERED print's "\n" is a write (a segment) of its own.
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(64)
        assert chunk, f"EOF before the child's pid line: {line!r}"
        line += chunk
    pid = int(line)
    proc.send_signal(signal.SIGTERM)  # FIN to the client; the child is waited for
    assert recv_all(conn) == b""
    assert proc.poll() is None  # the first signal never ends a running child
    os.kill(pid, 0)
    proc.send_signal(signal.SIGTERM)  # the second kills it; it ignores SIGTERM: SIGKILL
    assert proc.wait(TIMEOUT) == 143
    conn.close()
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(pid, 0)


def test_localhost_resolves_through_the_system_resolver(netns) -> None:
    # No resolver injected: getaddrinfo reads /etc/hosts, localhost is 127.0.0.1, which
    # the stack refuses at once (the kernel drops TUN packets to 127/8).
    out = run("connect", "-z", "-w", "2s", "localhost", "80")
    assert (out.returncode, out.stdout, out.stderr) == (
        1,
        b"",
        b"pytcp: cannot connect to 127.0.0.1 port 80: 127.0.0.1 is a loopback address, "
        b"which the stack cannot reach: the kernel is at 10.77.0.1\n",
    )


def with_hosts(hosts: str, tmp_path, *args: str) -> list[str]:
    """A command that runs with `hosts` as its /etc/hosts: a bind mount in a mount
    namespace of its own (`unshare -m`, private propagation), so the resolver path is the
    system's (getaddrinfo, nsswitch `files`) and the host's /etc/hosts is never touched."""
    path = tmp_path / "hosts"
    path.write_text(hosts)
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(path), *args]


def _hosts_file_resolves() -> bool:
    """Whether getaddrinfo reads /etc/hosts here (nsswitch `hosts: files ...`; glibc
    reads it without an nsswitch.conf too)."""
    try:
        with open("/etc/nsswitch.conf", encoding="utf-8", errors="replace") as f:
            lines = [line.split() for line in f]
    except FileNotFoundError:
        return True
    return any(words[:1] == ["hosts:"] and "files" in words for words in lines)


needs_files_resolver = pytest.mark.skipif(
    shutil.which("unshare") is None or not _hosts_file_resolves(),
    reason="needs unshare(1) and /etc/hosts in the resolver's path (nsswitch files)",
)


@needs_files_resolver
def test_a_name_with_only_an_ipv6_address_is_reached_and_minus_4_says_why(netns, tmp_path):
    """A name whose only address is IPv6, through the system resolver: connect reaches it
    over IPv6; with -4 it fails in one line naming the address the name does have."""
    name = "six-only.pytcp.test"
    hosts = f"127.0.0.1 localhost\n{ADDRS[6][0]} {name}\n"

    def echo(conn: socket.socket) -> bytes:
        got = recv_all(conn)
        conn.sendall(got.upper())
        return got

    server = KernelServer(7460, echo, family=6)
    out = subprocess.run(with_hosts(hosts, tmp_path, PYTCP, "connect", "-v", name, "7460"),
                         input=b"over six\n", capture_output=True, timeout=TIMEOUT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"OVER SIX\n"
    assert out.stderr.startswith(f"pytcp: connected to {ADDRS[6][0]} port 7460 from ".encode())
    assert server.wait() == [b"over six\n"]
    out = subprocess.run(with_hosts(hosts, tmp_path, PYTCP, "connect", "-4", name, "7460"),
                         input=b"", capture_output=True, timeout=TIMEOUT)  # fmt: skip
    assert (out.returncode, out.stdout, out.stderr) == (
        1,
        b"",
        f"pytcp: '{name}' has only IPv6 addresses ({ADDRS[6][0]}); drop -4 or give -6\n".encode(),
    )
    server.close()
