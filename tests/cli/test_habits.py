"""What nc users type, through the installed command in a test namespace: listen's
--recv-only, --no-shutdown, -q, -i, -l/-p, -N, -u, --ready-fd, and a one-shot command
that gives the shell back at once while a child lingers in TIME-WAIT."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    KERNEL,
    PYTCP,
    TIMEOUT,
    KernelServer,
    connect_kernel,
    pytcp,
    recv_all,
    run,
    start_listener,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


@FAMILIES
def test_listen_recv_only_takes_an_upload_with_stdin_at_dev_null(netns, family: int) -> None:
    # As from cron or `&` in a script: stdin is /dev/null, yet the client's upload is
    # taken whole before pytcp closes its side (no FIN at once).
    proc, _err = start_listener("-d", "7501", stdin=subprocess.DEVNULL)
    conn = connect_kernel(7501, ADDRS[family][1])
    conn.settimeout(0.3)
    with pytest.raises(TimeoutError):
        conn.recv(1)  # no FIN from pytcp while the client still sends
    conn.settimeout(TIMEOUT)
    conn.sendall(b"upload " * 1000)
    conn.shutdown(socket.SHUT_WR)
    assert recv_all(conn) == b""  # FIN after the peer's
    assert proc.wait(TIMEOUT) == 0
    assert proc.stdout is not None and proc.stdout.read() == b"upload " * 1000


@FAMILIES
def test_listen_no_shutdown_and_nc_spellings(netns, family: int) -> None:
    # nc -l -p PORT; stdin at EOF at once, yet no FIN until the client's.
    proc = pytcp("listen", "-l", "-p", "7502", "--no-shutdown", "-v", stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith(b"pytcp: listening on pytcp0 10.77.0.2 ")
    conn = connect_kernel(7502, ADDRS[family][1])
    conn.settimeout(0.3)
    with pytest.raises(TimeoutError):
        conn.recv(1)
    conn.settimeout(TIMEOUT)
    conn.sendall(b"x")
    conn.shutdown(socket.SHUT_WR)
    assert recv_all(conn) == b""
    assert proc.wait(TIMEOUT) == 0
    out = run("listen", "-N", "--no-shutdown", "7503")
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: -N and --no-shutdown exclude each other; pick one\n",
    )


@FAMILIES
def test_listen_quit_after_stdin_eof_resets_what_is_open(netns, family: int) -> None:
    proc, err = start_listener("-q", "100ms", "-k", "7504", stdin=subprocess.PIPE)
    conn = connect_kernel(7504, ADDRS[family][1])
    err.wait_for("pytcp: connection from ")
    assert proc.stdin is not None
    proc.stdin.close()  # stdin EOF: FIN, and 100 ms later the end
    assert recv_all(conn) == b""  # the FIN; the client never closes its side
    assert proc.wait(TIMEOUT) == 0  # yet pytcp ends: -q does not wait for the peer


@FAMILIES
def test_listen_idle_timeout(netns, family: int) -> None:
    proc, err = start_listener("-i", "200ms", "7505", stdin=subprocess.PIPE)
    conn = connect_kernel(7505, ADDRS[family][1])
    with pytest.raises(ConnectionResetError):
        conn.recv(64)
    assert proc.wait(TIMEOUT) == 1
    assert re.search(
        r"pytcp: no data either way for 200ms \(-i\); closed the connection from "
        rf"{re.escape(ADDRS[family][0])} port \d+\n",
        "".join(err.rest()),
    )


def test_udp_is_one_line(netns) -> None:
    for command in ("connect", "listen", "send"):
        out = run(command, "-u", KERNEL, "53")
        assert (out.returncode, out.stdout, out.stderr) == (
            2,
            b"",
            b"pytcp: -u: pytcp is a TCP tool (no UDP); for UDP use nc -u or socat\n",
        ), command


@FAMILIES
def test_ready_fd_says_when_listening(netns, family: int) -> None:
    r, w = os.pipe()
    proc = pytcp("listen", "--ready-fd", str(w), "7506", stdin=subprocess.DEVNULL, pass_fds=(w,))
    os.close(w)
    with os.fdopen(r, "rb") as ready:
        assert ready.read() == b"pytcp0 10.77.0.2 7506\n"  # the line, then EOF
    conn = connect_kernel(7506, ADDRS[family][1])  # it listens by then, on both families
    conn.shutdown(socket.SHUT_WR)
    assert recv_all(conn) == b""
    assert proc.wait(TIMEOUT) == 0
    out = run("listen", "--ready-fd", "9", "7507")
    assert out.returncode == 2 and b"--ready-fd 9: file descriptor 9 is not open" in out.stderr


def _holders(name: str) -> list[int]:
    """Processes of this network namespace with /dev/net/tun open (pytcp stacks)."""
    pids = []
    ours = os.readlink("/proc/thread-self/ns/net")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != ours:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/net/tun":
                    pids.append(int(pid))
                    break
            except OSError:
                continue
    return pids


@FAMILIES
def test_one_shot_gives_the_shell_back_while_a_child_lingers(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    def echo_then_close(conn: socket.socket) -> bytes:
        data = recv_all(conn)
        conn.sendall(data.upper())
        return data  # the kernel closes second: pytcp closed first, so it is in TIME-WAIT

    server = KernelServer(7508, echo_then_close, family=family)
    out = subprocess.run(
        [PYTCP, "send", "--time-wait", "30s", KERNEL, "7508", "one"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    # Back at once (it did not wait 30 s: the test's TIMEOUT would not allow twice that),
    # with the reply; stdout and stderr are closed (capture_output saw EOF).
    assert (out.returncode, out.stdout, out.stderr) == (0, b"ONE\n", b"")
    holders = _holders("pytcp0")
    assert len(holders) == 1  # the linger child holds the TUN, and only it
    with open(f"/proc/{holders[0]}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    assert int(fields[3]) == holders[0]  # its own session (setsid): ^C never reaches it
    # The next command in the script takes pytcp0 again at once: same address.
    again = run("send", "-v", "--time-wait", "0", KERNEL, "7508", "two")
    assert again.returncode == 0, again.stderr
    assert again.stdout == b"TWO\n"
    connected = f"pytcp: connected to {KERNEL} port 7508 from {STACK} "
    assert again.stderr.decode().startswith(connected), again.stderr
    assert holders[0] not in _holders("pytcp0")  # the lingering child let go
    assert server.wait(2) == [b"one\n", b"two\n"]


def _ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _config(netns, name: str) -> tuple:
    """Every address on `name` and its MTU (`ip -j addr show`)."""
    info = json.loads(netns.run("ip", "-j", "addr", "show", "dev", name).stdout)[0]
    return (
        info["mtu"],
        sorted(f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"]),
    )


@FAMILIES
def test_the_next_command_takes_the_lingering_interface_over_as_it_is(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    # A script's second one-shot while the first lingers in TIME-WAIT: the lingering
    # pytcp hands its device over and goes, so the interface stays (same index, same
    # addresses, nothing removed and re-made) and the second command runs on it.
    server = KernelServer(7510, lambda conn: recv_all(conn), family=family)
    first = run("send", "--time-wait", "30s", KERNEL, "7510", "one")
    assert first.returncode == 0, first.stderr
    index, config = _ifindex("pytcp0"), _config(netns, "pytcp0")
    lingering = _holders("pytcp0")
    assert len(lingering) == 1
    second = run("send", "-v", "--time-wait", "30s", KERNEL, "7510", "two")
    assert second.returncode == 0, second.stderr
    connected = f"pytcp: connected to {KERNEL} port 7510 from {STACK} "
    assert second.stderr.decode().startswith(connected), second.stderr
    assert (_ifindex("pytcp0"), _config(netns, "pytcp0")) == (index, config)
    now = _holders("pytcp0")
    assert len(now) == 1 and now != lingering  # the second's linger child holds it now
    assert server.wait(2) == [b"one\n", b"two\n"]


@pytest.mark.parametrize(
    ("args", "mtu", "vnet_hdr"),
    [(("--tun", "pytcp0", "--mtu", "9000"), 9000, True), (("--no-offload",), 1500, False)],
    ids=["another-mtu", "no-offload"],
)
def test_a_command_asking_for_another_interface_replaces_the_lingering_one(
    netns, args: tuple[str, ...], mtu: int, vnet_hdr: bool
) -> None:
    # What it asks for differs from what the lingering pytcp made: that interface goes
    # and pytcp0 is made anew as asked (--tun NAME with --mtu was refused before while
    # the name existed), at once.
    server = KernelServer(7511, lambda conn: recv_all(conn))
    first = run("send", "--time-wait", "30s", KERNEL, "7511", "one")
    assert first.returncode == 0, first.stderr
    index = _ifindex("pytcp0")
    second = run("send", "--time-wait", "30s", *args, KERNEL, "7511", "two")
    assert second.returncode == 0, second.stderr
    assert server.wait(2) == [b"one\n", b"two\n"]
    assert _ifindex("pytcp0") not in (index, None)  # made anew; the second lingers on it
    link = json.loads(netns.run("ip", "-d", "-j", "link", "show", "dev", "pytcp0").stdout)[0]
    assert (link["mtu"], link["linkinfo"]["info_data"]["vnet_hdr"]) == (mtu, vnet_hdr)


def test_a_lingering_pytcp_hands_its_device_to_its_own_uid_only(netns) -> None:
    # Anyone in the namespace may ask a lingering pytcp to go (as before), but only a
    # process of its uid (or root) gets the device: a TUN descriptor would let another
    # user inject packets as the stack. Asked by uid 65534, it goes and hands nothing
    # over: the asker sees the interface gone.
    KernelServer(7512, lambda conn: recv_all(conn))
    first = run("send", "--time-wait", "30s", KERNEL, "7512", "one")
    assert first.returncode == 0, first.stderr
    assert len(_holders("pytcp0")) == 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(r)
        try:
            from stack.io.tun import claim_lingering

            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            released, fd = claim_lingering("pytcp0", lambda fd: fd, timeout=TIMEOUT)
            os.write(w, f"{released} {fd}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert answer == b"True None"
    assert _holders("pytcp0") == [] and _ifindex("pytcp0") is None


def test_an_unusable_runtime_dir_is_said_without_v(netns, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the directory should be: no control socket
    env = {**os.environ, "PYTCP_RUNTIME_DIR": str(blocker / "sub")}
    KernelServer(7509, recv_all)
    out = subprocess.run(
        [PYTCP, "connect", "-z", KERNEL, "7509"], capture_output=True, env=env, timeout=TIMEOUT
    )
    assert out.returncode == 0
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pytcp: warning: "), lines
    assert lines[0].endswith("; pytcp inspect will not see this process")
