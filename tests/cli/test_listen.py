"""`pytcp listen` as a user runs it: the installed command against kernel clients, in a netns."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from typing import Any

import pytest

from tests.cli.netcat import (
    ADDRS,
    FAMILIES,
    PYTCP,
    STACK,
    STACK6,
    TIMEOUT,
    connect_kernel,
    recv_all,
    start_listener,
    unacked,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]


@FAMILIES
def test_one_connection_relayed_then_exit(netns, family: int) -> None:
    kernel, stack = ADDRS[family]
    proc, err = start_listener("9000")  # both families by default
    assert proc.stdin is not None and proc.stdout is not None
    client = connect_kernel(9000, stack)
    port = client.getsockname()[1]
    line = err.wait_for(f"pytcp: connection from {kernel} port ")
    assert line == f"pytcp: connection from {kernel} port {port} (id {proc.pid}.2)\n"
    proc.stdin.write(b"reply\x00\xff")
    proc.stdin.close()
    client.sendall(b"request\x00\xff")
    client.shutdown(socket.SHUT_WR)
    assert recv_all(client) == b"reply\x00\xff"
    client.close()
    assert proc.stdout.read() == b"request\x00\xff"
    assert proc.wait(TIMEOUT) == 0
    rest = err.rest()
    assert re.fullmatch(
        rf"pytcp: {re.escape(kernel)} port {port}: 7 bytes sent, 9 received in \d+\.\d\d s\n",
        rest[-1],
    )


@FAMILIES
def test_second_client_is_refused_without_keep_open(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]
    proc, err = start_listener("9001", stdin=subprocess.DEVNULL)
    first = connect_kernel(9001, STACK)
    err.wait_for("pytcp: connection from ")
    with pytest.raises(ConnectionRefusedError):
        connect_kernel(9001, STACK)
    first.sendall(b"one")
    first.shutdown(socket.SHUT_WR)
    assert recv_all(first) == b""
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (0, b"one")


@FAMILIES
def test_curl_fetches_from_a_shell_child(netns, family: int) -> None:
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    reply = 'printf "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello from sh\\n"'
    proc, _ = start_listener("8080", "-c", reply, stdin=subprocess.DEVNULL)
    host = STACK if family == 4 else f"[{STACK6}]"
    got = subprocess.run(
        ["curl", "-sS", "-g", "--max-time", "30", f"http://{host}:8080/"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (got.returncode, got.stdout, got.stderr) == (0, b"hello from sh\n", b"")
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (0, b"")


@FAMILIES
def test_exec_child_sees_the_connection_in_its_environment(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]
    show = 'echo "$PYTCP_REMOTE_ADDR $PYTCP_REMOTE_PORT $PYTCP_LOCAL_ADDR $PYTCP_LOCAL_PORT"'
    proc, _ = start_listener("9002", "-c", show, stdin=subprocess.DEVNULL)
    client = connect_kernel(9002, STACK)
    me = client.getsockname()
    # The child exits after one line: pytcp sends it, then FIN (a clean close, no RST).
    assert recv_all(client) == f"{me[0]} {me[1]} {STACK} 9002\n".encode()
    client.close()
    assert proc.wait(TIMEOUT) == 0


@FAMILIES
def test_exec_argv_echo_of_megabytes(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]
    proc, _ = start_listener("9003", "-e", "cat", stdin=subprocess.DEVNULL)
    data = os.urandom(3 * 1024 * 1024 + 7)
    client = connect_kernel(9003, STACK)

    def send() -> None:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    echoed = recv_all(client)
    sender.join(TIMEOUT)
    client.close()
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(data).hexdigest()
    assert proc.wait(TIMEOUT) == 0


@FAMILIES
def test_keep_open_serves_clients_concurrently_and_broadcasts_stdin(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    proc, err = start_listener("-k", "9004")
    assert proc.stdin is not None
    clients = [connect_kernel(9004, STACK) for _ in range(3)]
    for _ in clients:
        err.wait_for("pytcp: connection from ")
    proc.stdin.write(b"to everyone\n")
    proc.stdin.flush()
    for client in clients:
        got = b""
        while len(got) < 12:
            got += client.recv(64)
        assert got == b"to everyone\n"
    for i, client in enumerate(clients):
        client.sendall(f"client {i}\n".encode())
        client.shutdown(socket.SHUT_WR)
    for _ in clients:
        err.wait_for(f"pytcp: {KERNEL} port ")  # the per-connection summary: all three ended
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130
    assert sorted(out.splitlines()) == [b"client 0", b"client 1", b"client 2"]
    for client in clients:
        client.close()


@FAMILIES
def test_max_conns_makes_later_clients_wait(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    proc, err = start_listener("-k", "-m", "1", "9005", "-e", "cat", stdin=subprocess.DEVNULL)
    first = connect_kernel(9005, STACK)
    err.wait_for("pytcp: connection from ")
    second = connect_kernel(9005, STACK)  # completes in the backlog, not accepted yet
    second.sendall(b"second")
    second.shutdown(socket.SHUT_WR)
    first.sendall(b"first")
    first.shutdown(socket.SHUT_WR)
    assert recv_all(first) == b"first"
    assert recv_all(second) == b"second"
    first_port, second_port = first.getsockname()[1], second.getsockname()[1]
    err.wait_for(f"pytcp: connection from {KERNEL} port {second_port} (id ")
    # The second client was accepted only after the first had ended.
    assert any(line.startswith(f"pytcp: {KERNEL} port {first_port}: ") for line in err.lines)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143


def test_sigint_while_listening_exits_130(netns) -> None:
    proc, err = start_listener("9006", stdin=subprocess.DEVNULL)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(TIMEOUT) == 130
    # No connection: nothing to close with FIN or reset with RST.
    assert err.rest()[1:] == ["pytcp: SIGINT: no connection open; exiting\n"]


@FAMILIES
def test_half_close_from_another_pytcp_process(netns, family: int, tmp_path) -> None:
    _KERNEL, STACK = ADDRS[family]
    # `pytcp close --half ID` sends our FIN through the control endpoint; the relay goes
    # on receiving and ends cleanly when the peer closes, though its stdin never ended.
    env = dict(os.environ, PYTCP_RUNTIME_DIR=str(tmp_path))
    keep_open, writer = os.pipe()
    proc, err = start_listener("9007", stdin=keep_open, env=env)
    os.close(keep_open)
    try:
        client = connect_kernel(9007, STACK)
        err.wait_for("pytcp: connection from ")
        listing = subprocess.run(
            [PYTCP, "inspect", "--json"], capture_output=True, env=env, timeout=TIMEOUT
        )
        assert listing.returncode == 0, listing.stderr
        conn_id = next(
            row["id"]
            for row in json.loads(listing.stdout)
            if row["state"] == "ESTABLISHED" and row["remote"]["port"] == client.getsockname()[1]
        )
        closed = subprocess.run(
            [PYTCP, "close", "--half", conn_id], capture_output=True, env=env, timeout=TIMEOUT
        )
        assert closed.returncode == 0, closed.stderr
        assert recv_all(client) == b""  # our FIN arrived
        client.sendall(b"after our FIN")
        client.close()
        out, _ = proc.communicate(timeout=TIMEOUT)
        assert (proc.returncode, out) == (0, b"after our FIN")
    finally:
        os.close(writer)


@FAMILIES
def test_sigterm_loses_no_received_byte(netns, family: int) -> None:
    _KERNEL, STACK = ADDRS[family]
    data = os.urandom(300 * 1024)
    proc, err = start_listener("9008")  # stdout: a pipe nobody reads until the end
    client = connect_kernel(9008, STACK)
    err.wait_for("pytcp: connection from ")
    client.sendall(data)
    for _ in range(TIMEOUT * 100):  # until pytcp acknowledged every byte
        if unacked(client) == 0:
            break
        threading.Event().wait(0.01)
    assert unacked(client) == 0
    proc.send_signal(signal.SIGTERM)
    assert recv_all(client) == b""  # the graceful close: pytcp's FIN
    client.close()
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest()


@FAMILIES
def test_keep_open_after_stdin_ended_half_closes_each_client(netns, family: int) -> None:
    KERNEL, STACK = ADDRS[family]
    proc, err = start_listener("-k", "9009", stdin=subprocess.DEVNULL)
    for i in range(2):
        client = connect_kernel(9009, STACK)
        err.wait_for("pytcp: connection from ")
        assert recv_all(client) == b""  # FIN at once: stdin has nothing more for anyone
        client.sendall(f"still heard {i}\n".encode())
        client.close()
        err.wait_for(f"pytcp: {KERNEL} port ")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (130, b"still heard 0\nstill heard 1\n")


def test_an_address_that_is_not_pytcps_is_a_usage_error(netns) -> None:
    proc = subprocess.run(
        [PYTCP, "listen", "10.77.0.9", "9010"], capture_output=True, timeout=TIMEOUT
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        b"",
        b"pytcp: cannot listen on 10.77.0.9: pytcp's address is 10.77.0.2 and fd77::2; "
        b"give one of those or no ADDR\n",
    )


def tcp_state(conn: socket.socket) -> int:
    """The kernel socket's TCP_INFO tcpi_state: 8 CLOSE-WAIT, 7 CLOSE."""
    return conn.getsockopt(socket.SOL_TCP, socket.TCP_INFO, 1)[0]


def wait_state(conn: socket.socket, state: int) -> None:
    for _ in range(TIMEOUT * 100):
        if tcp_state(conn) == state:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"the kernel socket never reached TCP state {state}")


def slow_child_with_300k_acked(
    tmp_path, port: int, family: int
) -> tuple[Any, Any, socket.socket, bytes]:
    """`listen -c` with a child that reads nothing until the test opens its gate (a
    FIFO), then writes its stdin to tmp_path/F; 300 KiB sent and acknowledged by pytcp;
    one SIGTERM; the client has read pytcp's FIN and stays in CLOSE-WAIT."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    data = os.urandom(300 * 1024)
    proc, err = start_listener(str(port), "-c", f"cat {gate} >/dev/null; cat > {tmp_path / 'F'}")
    client = connect_kernel(port, ADDRS[family][1])
    err.wait_for("pytcp: connection from ")
    client.sendall(data)
    for _ in range(TIMEOUT * 100):  # until pytcp acknowledged every byte
        if unacked(client) == 0:
            break
        threading.Event().wait(0.01)
    assert unacked(client) == 0
    proc.send_signal(signal.SIGTERM)
    assert recv_all(client) == b""  # the graceful close: pytcp's FIN
    return proc, err, client, data


@FAMILIES
def test_sigterm_hands_a_slow_child_every_acknowledged_byte(netns, tmp_path, family: int) -> None:
    proc, err, client, data = slow_child_with_300k_acked(tmp_path, 9011, family)
    # The client never closes: after its grace pytcp resets the connection (CLOSE-WAIT
    # -> CLOSE), and still the child, neither signalled nor fed EOF early, gets it all.
    wait_state(client, 7)
    assert proc.poll() is None
    with open(tmp_path / "gate", "wb"):
        pass  # the child may read now
    assert proc.wait(TIMEOUT) == 143
    client.close()
    received = (tmp_path / "F").read_bytes()
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not [line for line in err.rest() if "did not reach" in line]


@FAMILIES
def test_second_sigterm_kills_the_slow_child_and_counts_what_it_missed(
    netns, tmp_path, family: int
) -> None:
    proc, err, client, data = slow_child_with_300k_acked(tmp_path, 9012, family)
    line = err.wait_for("pytcp: SIGTERM: ")
    assert line == (
        "pytcp: SIGTERM: closing (FIN), then waiting for 1 child to exit "
        "(up to 10s, then it is killed); send it again to reset (RST) and kill it\n"
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(TIMEOUT) == 143
    client.close()
    lost = [line for line in err.rest() if "did not reach" in line]
    assert len(lost) == 1, err.lines
    m = re.fullmatch(
        r"pytcp: (\d+) received bytes did not reach child (\d+) \(sh -c\): "
        r"it was not reading when the second SIGTERM came\n",
        lost[0],
    )
    assert m is not None, lost
    assert int(m.group(1)) == len(data)  # the child read none of it
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(m.group(2)), 0)
    assert not (tmp_path / "F").exists()


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ([], f"{STACK} and {STACK6}"),  # both families, as ncat listens
        ([STACK], STACK),
        ([f"[{STACK6}]"], STACK6),  # an IPv6 ADDR, bracketed as users type it
        (["-4"], STACK),
        (["-6"], STACK6),
    ],
)
def test_verbose_says_where_it_listens(netns, args: list[str], where: str) -> None:
    proc, err = start_listener(*args, "9013", stdin=subprocess.DEVNULL)
    offloads = "offloads rx csum+tso4+tso6 tx csum+tso"
    assert err.lines == [f"pytcp: listening on pytcp0 {where} port 9013 ({offloads})\n"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(TIMEOUT) == 130


@pytest.mark.parametrize(
    ("flag", "heard", "refused"), [("-4", STACK, STACK6), ("-6", STACK6, STACK)]
)
def test_one_family_listener_refuses_the_other(netns, flag: str, heard: str, refused: str) -> None:
    proc, _ = start_listener(flag, "9014", stdin=subprocess.DEVNULL)
    with pytest.raises(ConnectionRefusedError):  # the stack's RST: nobody listens there
        connect_kernel(9014, refused)
    client = connect_kernel(9014, heard)
    client.sendall(b"only this family")
    client.shutdown(socket.SHUT_WR)
    assert recv_all(client) == b""
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (0, b"only this family")
