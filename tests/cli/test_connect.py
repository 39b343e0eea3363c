"""`pytcp connect` as a user runs it: the installed command against kernel peers, in a netns."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    KERNEL,
    PYTCP,
    TIMEOUT,
    KernelServer,
    StderrLines,
    pytcp,
    recv_all,
    reset_by_peer,
    run,
    unacked,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]


NOBODY = {4: "10.77.0.3", 6: "fd77::3"}  # on pytcp0's subnet, held by nobody


def upper_echo(conn: socket.socket) -> bytes:
    data = recv_all(conn)
    conn.sendall(data.upper())
    return data


@FAMILIES
def test_stdin_to_peer_and_reply_to_stdout(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(7000, upper_echo, family=family)
    out = run("connect", KERNEL, "7000", input=b"hello\x00world\n")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"HELLO\x00WORLD\n", b"")
    assert server.wait() == [b"hello\x00world\n"]


def test_a_zone_on_an_address_that_is_not_link_local_is_ignored(netns) -> None:
    # As Linux ignores it there: the connection's address is the plain one, so the
    # SYN-ACK matches it (kept, it reset its own connection's SYN-ACK and timed out).
    KernelServer(7000, upper_echo, family=6)
    out = run("connect", "-v", "-w", "5s", "fd77::1%lo", "7000", input=b"zone")
    assert (out.returncode, out.stdout) == (0, b"ZONE")
    assert out.stderr.decode().startswith("pytcp: connected to fd77::1 port 7000 from fd77::2 ")


@FAMILIES
def test_verbose_lines(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    KernelServer(7000, upper_echo, family=family)
    out = run("connect", "-v", KERNEL, "7000", input=b"abc")
    assert (out.returncode, out.stdout) == (0, b"ABC")
    lines = out.stderr.decode().splitlines()
    assert lines[0].startswith(f"pytcp: connected to {KERNEL} port 7000 from {STACK} port ")
    offloads = "offloads rx csum+tso4+tso6 tx csum+tso"
    assert lines[0].endswith(f" (pytcp0, {offloads}, id {out_pid(lines[0])}.1)")
    assert lines[1] == "pytcp: the peer closed its side of the connection"
    assert lines[2].startswith("pytcp: 3 bytes sent, 3 received in ")
    assert len(lines) == 3


@FAMILIES
def test_verbose_says_offloads_off_with_no_offload(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    KernelServer(7000, upper_echo, family=family)
    out = run("connect", "-v", "--no-offload", KERNEL, "7000", input=b"abc")
    assert (out.returncode, out.stdout) == (0, b"ABC")
    first = out.stderr.decode().splitlines()[0]
    assert first.endswith(f" (pytcp0, offloads off, id {out_pid(first)}.1)")


@FAMILIES
def test_http_server_fetched_through_a_pipeline(netns, family: int, tmp_path: Path) -> None:
    KERNEL, _STACK = ADDRS[family]
    (tmp_path / "index.html").write_bytes(b"<h1>pytcp</h1>\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "::" if family == 6 else "0.0.0.0",
         "8000"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        StderrLines(server)  # drained so the server never blocks on its log
        for _ in range(200):  # bounded wait for the server to listen
            probe = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET)
            if probe.connect_ex(("::1" if family == 6 else "127.0.0.1", 8000)) == 0:
                probe.close()
                break
            probe.close()
            threading.Event().wait(0.05)
        out = subprocess.run(
            f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | {PYTCP} connect {KERNEL} 8000",
            shell=True,
            capture_output=True,
            timeout=TIMEOUT,
        )
    finally:
        server.terminate()
        server.wait(TIMEOUT)
    assert (out.returncode, out.stderr) == (0, b"")
    head, body = out.stdout.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert body == b"<h1>pytcp</h1>\n"


@FAMILIES
def test_megabytes_of_binary_both_ways(netns, family: int, tmp_path: Path) -> None:
    KERNEL, _STACK = ADDRS[family]
    data = os.urandom(4 * 1024 * 1024 + 123)
    (tmp_path / "in.bin").write_bytes(data)

    def echo(conn: socket.socket) -> str:
        h = hashlib.sha256()
        # Echo as it arrives (full duplex), so neither side can wait for the other's EOF.
        while chunk := conn.recv(1 << 16):
            h.update(chunk)
            conn.sendall(chunk)
        return h.hexdigest()

    server = KernelServer(7001, echo, family=family)
    with open(tmp_path / "in.bin", "rb") as stdin, open(tmp_path / "out.bin", "wb") as stdout:
        proc = subprocess.run(
            [PYTCP, "connect", KERNEL, "7001"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=200,
        )
    assert (proc.returncode, proc.stderr) == (0, b"")
    digest = hashlib.sha256(data).hexdigest()
    assert server.wait() == [digest]
    assert hashlib.sha256((tmp_path / "out.bin").read_bytes()).hexdigest() == digest


@FAMILIES
def test_peer_fin_closes_stdout_while_stdin_stays_open(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    def greet_then_read(conn: socket.socket) -> bytes:
        conn.sendall(b"hello\n")
        conn.shutdown(socket.SHUT_WR)
        return recv_all(conn)

    server = KernelServer(7002, greet_then_read, family=family)
    proc = pytcp("connect", KERNEL, "7002")
    assert proc.stdout is not None and proc.stdin is not None
    # The next stage of a pipeline sees EOF although pytcp's stdin is still open.
    assert proc.stdout.read() == b"hello\n"
    assert proc.poll() is None
    proc.stdin.write(b"still sending\n")
    proc.stdin.close()
    assert proc.wait(TIMEOUT) == 0
    assert server.wait() == [b"still sending\n"]


@FAMILIES
def test_pipeline_finishes_when_the_data_is_done(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    KernelServer(7003, upper_echo, family=family)
    out = subprocess.run(
        f"seq 1 20000 | {PYTCP} connect {KERNEL} 7003 | tail -n 1",
        shell=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, b"20000\n", b"")


@FAMILIES
def test_refused_exits_1(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    # The kernel answers a SYN to a closed port with RST: refused.
    out = run("connect", KERNEL, "9")
    assert (out.returncode, out.stdout) == (1, b"")
    assert (
        out.stderr
        == (
            f"pytcp: connection to {KERNEL} port 9 refused; check that something listens there\n"
        ).encode()
    )


@FAMILIES
def test_connect_timeout_exits_1(netns, family: int) -> None:
    # Nobody is 10.77.0.3 (fd77::3): the kernel, not forwarding, drops the SYNs.
    nobody = NOBODY[family]
    out = run("connect", "-w", "1s", nobody, "80")
    assert (out.returncode, out.stdout) == (1, b"")
    assert out.stderr.decode() == (
        f"pytcp: connection to {nobody} port 80 timed out after 1s; "
        "check the address and route, or raise -w\n"
    )


def test_usage_error_exits_2(netns) -> None:
    out = run("connect", KERNEL)
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        b"",
        b"pytcp: missing argument 'PORT'; see 'pytcp connect --help'\n",
    )


def test_bad_interface_setting_exits_2(netns) -> None:
    out = run("connect", "--addr", "10.77.0.300", KERNEL, "80")
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        b"",
        b"pytcp: bad --addr '10.77.0.300': expected an IPv4 address such as 10.77.0.2\n",
    )


def test_environment_error_exits_3(netns) -> None:
    # An existing TUN is used as it is; one without an address cannot carry pytcp.
    netns.run("ip", "tuntap", "add", "ptx", "mode", "tun")
    out = run("connect", "--tun", "ptx", KERNEL, "80")
    assert (out.returncode, out.stdout, out.stderr) == (
        3,
        b"",
        b"pytcp: interface ptx has no IPv4 address, and pytcp uses an existing interface as "
        b"it is: add one (ip addr add 10.77.0.1/24 dev ptx)\n",
    )


def test_not_a_tun_device_exits_2(netns) -> None:
    out = run("connect", "--tun", "lo", KERNEL, "80")
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        b"",
        b"pytcp: interface lo exists but is not a TUN device without packet info "
        b"(pick another name with --tun)\n",
    )


@FAMILIES
def test_zero_io_open_and_closed(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(7004, recv_all, family=family)
    out = run("connect", "-z", KERNEL, "7004")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert server.wait() == [b""]
    assert run("connect", "-z", KERNEL, "7005").returncode == 1
    # A scan over a range, nc style: one open port is enough for exit 0, -v reports
    # every port in one format, the single port too.
    scan = run("connect", "-z", "-v", KERNEL, "7003-7005")
    assert (scan.returncode, scan.stderr) == (
        0,
        f"pytcp: connection to {KERNEL} port 7003 refused: closed\n"
        f"pytcp: connection to {KERNEL} port 7004 succeeded: open\n"
        f"pytcp: connection to {KERNEL} port 7005 refused: closed\n".encode(),
    )
    one = run("connect", "-z", "-v", KERNEL, "7004")
    assert (one.returncode, one.stderr) == (
        0,
        f"pytcp: connection to {KERNEL} port 7004 succeeded: open\n".encode(),
    )


@FAMILIES
def test_recv_only_never_reads_stdin(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    def send_and_close(conn: socket.socket) -> bytes:
        conn.sendall(b"data for you")
        conn.shutdown(socket.SHUT_WR)
        return recv_all(conn)

    server = KernelServer(7006, send_and_close, family=family)
    out = run("connect", "-d", KERNEL, "7006", input=b"must not be sent")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"data for you", b"")
    assert server.wait() == [b""]


@FAMILIES
def test_send_only_discards_what_arrives(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(7007, upper_echo, family=family)
    out = run("connect", "--send-only", KERNEL, "7007", input=b"quiet")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert server.wait() == [b"quiet"]


@FAMILIES
def test_crlf(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(7008, recv_all, family=family)
    out = run("connect", "-C", KERNEL, "7008", input=b"a\nb\r\nc\n")
    assert out.returncode == 0
    assert server.wait() == [b"a\r\nb\r\nc\r\n"]


@FAMILIES
def test_no_shutdown_keeps_writing_side_open_until_the_peer_closes(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    def wait_then_close(conn: socket.socket) -> tuple[bytes, bool, bytes]:
        data = b""
        while len(data) < 3:
            data += conn.recv(10)
        # pytcp must not have sent FIN: the socket has no EOF pending (poll would say so).
        conn.setblocking(False)
        try:
            early_eof = conn.recv(10) == b""
        except BlockingIOError:
            early_eof = False
        conn.setblocking(True)
        conn.sendall(b"bye")
        conn.shutdown(socket.SHUT_WR)
        return data, early_eof, recv_all(conn)

    server = KernelServer(7009, wait_then_close, family=family)
    out = run("connect", "--no-shutdown", KERNEL, "7009", input=b"abc")
    assert (out.returncode, out.stdout) == (0, b"bye")
    assert server.wait() == [(b"abc", False, b"")]


@FAMILIES
def test_quit_after_stdin_eof(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    def hold(conn: socket.socket) -> tuple[bytes, str]:
        data = recv_all(conn)  # pytcp's FIN ends this; the kernel then never closes
        conn.sendall(b"late")
        # -q is over: pytcp aborts. The kernel never closes this socket itself, so only
        # an RST takes it from CLOSE-WAIT to CLOSE (tcpi_state 7; Linux then sets EPIPE).
        for _ in range(TIMEOUT * 20):
            if conn.getsockopt(socket.SOL_TCP, socket.TCP_INFO, 1)[0] == 7:
                return data, os.strerror(conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            threading.Event().wait(0.05)
        return data, "still open"

    server = KernelServer(7010, hold, family=family)
    out = run("connect", "-q", "1s", KERNEL, "7010", input=b"x")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"late", b"")
    assert server.wait() == [(b"x", os.strerror(errno.EPIPE))]


def test_quit_resets_only_once_what_stdin_gave_is_acknowledged(netns) -> None:
    # -q 0 and a reader with a small buffer: at stdin EOF, the deadline, the tail of
    # stdin is still queued in pytcp, and an RST then discarded it (exit 0 all the same).
    # The reset waits until the peer has acknowledged every byte.
    data = os.urandom(3_000_000)

    def small_reader(conn: socket.socket) -> tuple[int, str, str]:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        got = bytearray()
        try:
            while len(got) < len(data):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            return len(got), hashlib.sha256(got).hexdigest(), "reset early"
        return len(got), hashlib.sha256(got).hexdigest(), "whole"

    server = KernelServer(7012, small_reader)
    out = run("connect", "-q", "0", KERNEL, "7012", input=data)
    assert (out.returncode, out.stderr) == (0, b"")
    assert server.wait() == [(len(data), hashlib.sha256(data).hexdigest(), "whole")]


@FAMILIES
def test_idle_timeout_exits_1(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    def silent(conn: socket.socket) -> bytes:
        return recv_all(conn)

    KernelServer(7011, silent, family=family)
    keep_open, writer = os.pipe()  # stdin stays open and silent: idle both ways
    proc = pytcp("connect", "-i", "1s", KERNEL, "7011", stdin=keep_open)
    os.close(keep_open)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        os.close(writer)
    assert (proc.returncode, out) == (1, b"")
    assert err == b"pytcp: no data either way for 1s (-i); closed the connection\n"


def test_an_established_connection_that_times_out_says_so_without_a_w_hint(
    netns, tmp_path: Path
) -> None:
    # Keepalive probes go unanswered (pytcp impair drops all that comes back): the
    # connection times out after the handshake, which -w has nothing to do with.
    KernelServer(7013, recv_all)
    env = {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path / "rt")}  # this test's only
    keep_open, writer = os.pipe()
    # INTERVAL above 500 ms: Linux answers at most one probe per 500 ms (tcp_invalid_ratelimit)
    proc = pytcp("connect", "-v", "--keepalive", "300ms,600ms,2", KERNEL, "7013",
                 stdin=keep_open, env=env)  # fmt: skip
    os.close(keep_open)
    try:
        err = StderrLines(proc)
        connected = err.wait_for("pytcp: connected to ")
        conn_id = connected.rsplit(" id ", 1)[1].rstrip(")\n")
        impair = subprocess.run([PYTCP, "impair", conn_id, "drop-next", "100"], env=env,
                                capture_output=True, timeout=TIMEOUT)  # fmt: skip
        assert impair.returncode == 0, impair.stderr
        assert proc.wait(TIMEOUT) == 1
    finally:
        os.close(writer)
    assert f"pytcp: connection to {KERNEL} port 7013 timed out: the peer stopped answering " \
        "(retransmissions or keepalive probes went unacknowledged)\n" in err.rest()


@FAMILIES
def test_reset_by_peer_exits_1(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]

    def reset(conn: socket.socket) -> None:
        conn.recv(1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        conn.close()  # linger 0: RST

    KernelServer(7012, reset, family=family)
    proc = pytcp("connect", KERNEL, "7012")
    assert proc.stdin is not None
    proc.stdin.write(b"x")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (1, b"")
    assert err == f"pytcp: connection to {KERNEL} port 7012 reset by the peer\n".encode()


@FAMILIES
def test_trace_prints_segments_and_state_changes(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    KernelServer(7013, upper_echo, family=family)
    out = run("connect", "--trace", KERNEL, "7013", input=b"hi")
    assert (out.returncode, out.stdout) == (0, b"HI")
    lines = out.stderr.decode().splitlines()
    # "seconds PID.N: OLD -> NEW", N = 1: the stack's first connection
    assert re.fullmatch(r"0\.\d{6} \d+\.1: CLOSED -> SYN-SENT", lines[0])
    # pytcp0 is made without IPv6 address generation: no router solicitations or MLD
    # reports reach the stack, so no host-level drop lines ("drop: REASON", no PID.N).
    # (A connection's own drops may happen: under load the kernel's tail-loss probe can
    # resend its FIN before our ACK reaches it, out of window by then.)
    assert not [line for line in lines if " drop: " in line], "\n".join(lines)
    first = next(line for line in lines if " Out " in line).split(" ", 2)
    assert first[1] == "Out"
    assert first[2].startswith(f"{STACK}.")
    assert f" > {KERNEL}.7013: Flags [S], seq " in first[2]
    assert any(line.endswith("SYN-SENT -> ESTABLISHED") for line in lines)
    assert any("Flags [P.], seq 1:3, ack 1, win" in line for line in lines)
    assert any(line.endswith("-> TIME-WAIT") for line in lines)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump to read the pcap")
@FAMILIES
def test_pcap_readable_by_tcpdump(netns, tmp_path: Path, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    KernelServer(7014, upper_echo, family=family)
    pcap = tmp_path / "run.pcap"
    out = run("connect", "--pcap", str(pcap), KERNEL, "7014", input=b"hi")
    assert out.returncode == 0
    read = subprocess.run(
        ["tcpdump", "-nn", "-r", str(pcap)], capture_output=True, text=True, timeout=TIMEOUT
    )
    flags = [
        line.split("Flags [")[1].split("]")[0]
        for line in read.stdout.splitlines()
        if f"{KERNEL}.7014" in line  # not the kernel's router solicitations
    ]
    assert flags[:3] == ["S", "S.", "."]
    assert "F." in flags


@pytest.mark.parametrize(
    ("signals", "status"),
    [
        ((signal.SIGINT,), 130),
        ((signal.SIGTERM,), 143),
        ((signal.SIGINT, signal.SIGINT), 130),
        ((signal.SIGHUP,), 129),  # ssh -o ProxyCommand ends its proxy with SIGHUP
        ((signal.SIGHUP, signal.SIGHUP), 129),
        ((signal.SIGUSR1,), 138),  # any catchable terminating signal: FIN, then 128 + N
    ],
)
@FAMILIES
def test_signals_lose_no_received_byte(
    netns, family: int, signals: tuple[int, ...], status: int
) -> None:
    KERNEL, _STACK = ADDRS[family]
    data = os.urandom(300 * 1024)
    acked = threading.Event()
    release = threading.Event()
    close_wait = threading.Event()

    def push_then_hold(conn: socket.socket) -> bytes | tuple[str, str]:
        conn.sendall(data)
        for _ in range(TIMEOUT * 100):  # until pytcp acknowledged every byte
            if unacked(conn) == 0:
                break
            threading.Event().wait(0.01)
        acked.set()
        if len(signals) > 1:
            # The first signal's FIN arrives; the kernel socket stays in CLOSE-WAIT (8),
            # never closing itself, so only pytcp's RST takes it to CLOSE (7; Linux then
            # sets EPIPE, as for a reset in CLOSE-WAIT).
            states = []
            for _ in range(TIMEOUT * 100):
                states.append(conn.getsockopt(socket.SOL_TCP, socket.TCP_INFO, 1)[0])
                if states[-1] == 8:
                    close_wait.set()
                if states[-1] == 7:
                    error = os.strerror(conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                    return ("close-wait" if 8 in states else "never close-wait", error)
                threading.Event().wait(0.01)
            return ("still open", "")
        release.wait(TIMEOUT)  # only now may the kernel read pytcp's FIN and close
        try:
            return recv_all(conn)
        except ConnectionResetError:
            return b"reset"

    server = KernelServer(7015, push_then_hold, family=family)
    # stdout is a pipe nobody reads until after the signals: the bytes sit in pytcp.
    # stdin stays open until pytcp is gone (communicate() would close it, and its EOF
    # could close the connection before the signal is read).
    stdin_r, stdin_w = os.pipe()
    proc = pytcp("connect", KERNEL, "7015", stdin=stdin_r)
    os.close(stdin_r)
    assert acked.wait(TIMEOUT)
    proc.send_signal(signals[0])
    if len(signals) == 1:
        release.set()
    else:
        assert close_wait.wait(TIMEOUT)  # the first signal's FIN is in
        proc.send_signal(signals[1])
    out, err = proc.communicate(timeout=TIMEOUT)
    os.close(stdin_w)
    release.set()
    # The first signal finds the connection open: pytcp always says what it waits for.
    first = (
        f"pytcp: {signal.Signals(signals[0]).name}: closing (FIN), waiting up to 2s for "
        "the peer to close; send it again to reset (RST)\n"
    ).encode()
    assert err.startswith(first)
    err = err[len(first) :]
    if len(signals) == 1:
        assert (proc.returncode, err) == (status, b"")
        assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest()
        # The first signal sends FIN: the kernel reads EOF.
        assert server.wait() == [b""]
    else:
        # A second signal ends pytcp at once: stdout gets what it takes without blocking,
        # the rest is counted on stderr (tests/cli/test_stop.py checks the count).
        assert proc.returncode == status
        assert out == data[: len(out)]
        assert err == b"" if len(out) == len(data) else err.endswith(b" came)\n")
        # FIN on the first signal, RST on the second: the kernel socket left CLOSE-WAIT
        # for CLOSE.
        assert server.wait() == [("close-wait", os.strerror(errno.EPIPE))]


def out_pid(line: str) -> str:
    """The PID in `... id PID.N)`: the id pytcp inspect shows."""
    return line.rsplit(" id ", 1)[1].split(".")[0]


@FAMILIES
def test_closed_stdin_and_stdout_are_not_the_tun_device(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    def greet(conn: socket.socket) -> bytes | str:
        conn.sendall(b"hi")
        try:
            return recv_all(conn)
        except ConnectionResetError:
            return "reset"

    server = KernelServer(7016, greet, family=family)
    out = subprocess.run(
        f"{PYTCP} connect {KERNEL} 7016 <&-", shell=True, capture_output=True, timeout=TIMEOUT
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, b"hi", b"")
    # A closed stdout loses what arrives: exit 1 and one line, as nc exits 1 (EBADF).
    out = subprocess.run(
        f"echo x | {PYTCP} connect {KERNEL} 7016 >&-",
        shell=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (out.returncode, out.stderr) == (
        1,
        b"pytcp: stdout was closed before every received byte was written\n",
    )
    assert server.wait(2)[0] == b""


@FAMILIES
def test_closed_stdout_with_nothing_received_exits_0(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    server = KernelServer(7029, recv_all, family=family)
    out = subprocess.run(
        f"echo x | {PYTCP} connect {KERNEL} 7029 >&-",
        shell=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (out.returncode, out.stderr) == (0, b"")
    assert server.wait() == [b"x\n"]


@FAMILIES
def test_stdout_reader_gone_is_reported(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    def flood(conn: socket.socket) -> str:
        try:
            conn.sendall(os.urandom(4 * 1024 * 1024))
        except (ConnectionResetError, BrokenPipeError):  # EPIPE: the RST came mid-send
            return "reset"
        # On a loaded machine head exits late: pytcp's window, the pipe and the send
        # buffer hold all 4 MiB, sendall returns, pytcp's FIN (stdin /dev/null) is in
        # and the RST is yet to come, so a recv() here would read EOF and call it
        # closed. The handler waits for the RST itself.
        return "reset" if reset_by_peer(conn) else "closed"

    server = KernelServer(7017, flood, family=family)
    out = subprocess.run(
        f"{PYTCP} connect {KERNEL} 7017 </dev/null | head -c 10 | wc -c; "
        'echo "pytcp exit ${PIPESTATUS[0]}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert out.stdout == b"10\npytcp exit 1\n"
    assert out.stderr == b"pytcp: stdout was closed before every received byte was written\n"
    # pytcp cannot take more: it resets the connection rather than pretend to read it.
    assert server.wait() == ["reset"]


@FAMILIES
def test_stdout_reader_gone_after_our_fin_is_still_reset(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    # The order the test above meets under load, made certain: pytcp's FIN reaches the
    # peer first (stdin /dev/null), what the peer sends fits in its send buffer, and
    # only then does pytcp find stdout's reader gone (closed before pytcp started).
    # Its FIN said "no more from me", not "I read everything": the RST must still come.
    def fin_then_send(conn: socket.socket) -> tuple[bytes, str]:
        request = recv_all(conn)  # pytcp's FIN
        conn.sendall(b"late\n" * 100)
        return request, "reset" if reset_by_peer(conn) else "closed"

    server = KernelServer(7030, fin_then_send, family=family)
    r, w = os.pipe()
    os.close(r)
    try:
        out = subprocess.run(
            [PYTCP, "connect", KERNEL, "7030"],
            stdin=subprocess.DEVNULL,
            stdout=w,
            stderr=subprocess.PIPE,
            timeout=TIMEOUT,
        )
    finally:
        os.close(w)
    assert (out.returncode, out.stderr) == (
        1,
        b"pytcp: stdout was closed before every received byte was written\n",
    )
    assert server.wait() == [(b"", "reset")]


@FAMILIES
def test_closing_first_lingers_briefly_not_two_msl(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    KernelServer(7018, upper_echo, family=family)
    # TIME-WAIT lasts 2·MSL = 60 s; the default linger is 1 s, so this finishes well within
    # the subprocess bound (a hung or 60 s linger fails the test by timing out).
    out = run("connect", "-vv", KERNEL, "7018", input=b"bye", timeout=30)
    assert (out.returncode, out.stdout) == (0, b"BYE")
    states = [
        line.split(": ", 1)[1]
        for line in out.stderr.decode().splitlines()
        if re.fullmatch(r"\d+\.\d{6} \d+\.\d+: .* -> .*", line)
    ]
    assert states == [
        "CLOSED -> SYN-SENT",
        "SYN-SENT -> ESTABLISHED",
        "ESTABLISHED -> FIN-WAIT-1",
        "FIN-WAIT-1 -> FIN-WAIT-2",
        "FIN-WAIT-2 -> TIME-WAIT",
    ]


@FAMILIES
def test_impaired_link_still_delivers_every_byte(netns, family: int) -> None:
    KERNEL, _STACK = ADDRS[family]
    data = os.urandom(512 * 1024)

    def digest(conn: socket.socket) -> str:
        got = recv_all(conn)
        conn.sendall(hashlib.sha256(got).hexdigest().encode())
        return hashlib.sha256(got).hexdigest()

    server = KernelServer(7019, digest, family=family)
    out = run(
        "connect",
        "--impair",
        "loss=2%,dup=1%,reorder=2%,seed=7",
        KERNEL,
        "7019",
        input=data,
        timeout=200,
    )
    assert (out.returncode, out.stderr) == (0, b"")
    assert out.stdout == hashlib.sha256(data).hexdigest().encode()
    assert server.wait() == [hashlib.sha256(data).hexdigest()]


@FAMILIES
def test_stdout_and_stderr_into_one_slow_pipe(netns, tmp_path: Path, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    data = os.urandom(1024 * 1024)

    def send(conn: socket.socket) -> bytes:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        return recv_all(conn)

    server = KernelServer(7020, send, family=family)
    pcap = tmp_path / "run.pcap"
    # 2>&1: stdout and stderr are one open file, and its reader starts late; neither the
    # trace lines nor the data may be lost or crash pytcp.
    out = subprocess.run(
        f"{PYTCP} connect -v --trace --pcap {pcap} {KERNEL} 7020 </dev/null 2>&1 | (sleep 1; cat)",
        shell=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (out.returncode, out.stderr) == (0, b"")
    assert out.stdout.count(b"pytcp: 0 bytes sent, 1048576 received in ") == 1
    traced = out.stdout.count(f" In  {KERNEL}.7020 > ".encode())
    traced += out.stdout.count(f" Out {STACK}.".encode())
    # Every TCP segment of the run has its trace line: tcpdump counts them in the pcap.
    read = subprocess.run(
        ["tcpdump", "-nn", "-r", str(pcap), "tcp"], capture_output=True, timeout=TIMEOUT
    )
    assert traced == len(read.stdout.splitlines()) > 1048576 // 65536
    assert server.wait() == [b""]


@FAMILIES
def test_sigint_during_the_handshake_exits_130_quietly(netns, family: int) -> None:
    # Nobody is 10.77.0.3 (fd77::3): the SYN goes unanswered and pytcp waits in SYN-SENT.
    proc = pytcp("connect", "--trace", NOBODY[family], "80")
    err = StderrLines(proc)
    err.wait_for("")  # the first trace line: the stack is up and connecting
    proc.send_signal(signal.SIGINT)
    assert proc.wait(TIMEOUT) == 130
    rest = err.rest()
    assert [line for line in rest if not re.match(r"\d+\.\d{6} ", line)] == []
    # The interface pytcp made is gone with it.
    assert subprocess.run(["ip", "link", "show", "pytcp0"], capture_output=True).returncode != 0
