"""pytcp against the Linux kernel's TCP over a real TUN device (issue 4).

Each test has its own network namespace (the `netns` fixture): the stack runs in a
thread of the test (harness.StackThread) on `pytcp0` (kernel 10.77.0.1 and fd77::1,
stack 10.77.0.2 and fd77::2), and the kernel's side is Python's `socket` module in the
same namespace. Every wait is bounded (harness.BOUND).

The tests whose behaviour differs by family run over IPv4 and IPv6 (`family`): the
bulk transfers and both close orders, half-closes, refusals, resets, an unreachable
destination (ICMP vs ICMPv6), seeded impairment, pcap and offload (TSO4 vs TSO6), and
the many-client echo (200 clients over IPv4, 50 over IPv6: there the point is the
family). The interface choice and the unprivileged run stay IPv4: nothing in them
depends on the family.
"""

from __future__ import annotations

import functools
import json
import os
import random
import selectors
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from stack.api import Socket, Stack
from stack.io.tun import TunLink
from stack.trace import DROP, SEGMENT_IN, STATE, TraceLog
from tests.conftest import Netns
from tests.integration.harness import (
    BOUND,
    FirstSegments,
    StackThread,
    flags_of,
    kernel_duplex,
    pytcp_duplex,
    sha256,
    ss_time_wait,
)

PORT = 5000
KERNEL = "10.77.0.1"
PYTCP = "10.77.0.2"
ADDRS = {4: (KERNEL, PYTCP), 6: ("fd77::1", "fd77::2")}  # (kernel, pytcp) on pytcp0
FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
BULK = 8 << 20  # 8 MiB each way
HALF = 1 << 20  # 1 MiB after the EOF of a half-close

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def kernel_server(family: int = 4) -> socket.socket:
    # On every address of the family: bound before the stack's TUN (and so 10.77.0.1 or
    # fd77::1) exists. IPv6 only for IPv6, so ss shows no IPv4-mapped addresses.
    if family == 4:
        srv = socket.create_server(("0.0.0.0", PORT), backlog=512)
    else:
        srv = socket.create_server(("::", PORT), family=socket.AF_INET6, backlog=512)
    srv.settimeout(BOUND)
    return srv


def hostport(addr: str, port: int) -> str:
    """As ss prints an endpoint: [fd77::1]:5000 for IPv6."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


# -- handshake, 8 MiB each way, four-way close --------------------------------------------


@FAMILIES
@pytest.mark.parametrize("first", ["pytcp", "kernel"])
def test_kernel_client_to_pytcp_listener(netns: Netns, first: str, family: int) -> None:
    KERNEL, PYTCP = ADDRS[family]
    up, down = payload(1, BULK), payload(2, BULK)  # kernel -> pytcp, pytcp -> kernel
    tracer = FirstSegments(limit=3)

    def body(t: StackThread, stack: Stack) -> dict[str, Any]:
        listener = stack.listen(PORT)
        t.marker.set()
        sock = listener.accept(timeout=BOUND)
        assert sock is not None
        digest, count = pytcp_duplex(stack, sock, down, BULK)
        conn = sock.connection
        if first == "pytcp":
            sock.close()
            assert stack.run_until(lambda: sock.state == "TIME-WAIT", BOUND)
        else:
            sock.setblocking(True)
            assert sock.recv(1) == b""  # the kernel's FIN
            sock.close()
            assert stack.run_until(lambda: conn.is_closed, BOUND)
        return {"digest": digest, "count": count, "info": sock.info()}

    t = StackThread(body, tracer=tracer).start()
    assert t.marker.wait(BOUND)
    with socket.create_connection((PYTCP, PORT), timeout=BOUND) as k:
        kernel_port = k.getsockname()[1]
        digest, count = kernel_duplex(k, up, BULK)
        if first == "kernel":
            k.close()
        else:
            assert k.recv(1) == b""  # pytcp's FIN
    result = t.result()

    assert (count, digest) == (BULK, sha256(down))
    assert (result["count"], result["digest"]) == (BULK, sha256(up))
    assert tracer.segments == [("in", "S"), ("out", "S."), ("in", ".")]
    assert [s[1:] for s in tracer.states[:3]] == [
        ("CLOSED", "LISTEN"),  # the listener's child starts as a passive OPEN
        ("LISTEN", "SYN-RECEIVED"),
        ("SYN-RECEIVED", "ESTABLISHED"),
    ]
    info = result["info"]
    assert info["local"]["addr"] == PYTCP and info["remote"]["addr"] == KERNEL
    pair = (hostport(KERNEL, kernel_port), hostport(PYTCP, PORT))
    if first == "pytcp":
        assert info["state"] == "TIME-WAIT"
        timers = {tm["name"]: tm for tm in info["timers"]}
        assert timers["time-wait"]["armed"] is True
        assert pair not in ss_time_wait()
    else:
        assert info["state"] == "CLOSED"
        assert pair in ss_time_wait()


@FAMILIES
@pytest.mark.parametrize("first", ["pytcp", "kernel"])
def test_pytcp_client_to_kernel_listener(netns: Netns, first: str, family: int) -> None:
    KERNEL, PYTCP = ADDRS[family]
    up, down = payload(3, BULK), payload(4, BULK)  # pytcp -> kernel, kernel -> pytcp
    tracer = FirstSegments(limit=3)

    def body(t: StackThread, stack: Stack) -> dict[str, Any]:
        sock = stack.connect(KERNEL, PORT, timeout=BOUND)
        digest, count = pytcp_duplex(stack, sock, up, BULK)
        conn = sock.connection
        if first == "pytcp":
            sock.close()
            assert stack.run_until(lambda: sock.state == "TIME-WAIT", BOUND)
        else:
            sock.setblocking(True)
            assert sock.recv(1) == b""
            sock.close()
            assert stack.run_until(lambda: conn.is_closed, BOUND)
        return {"digest": digest, "count": count, "info": sock.info(), "local": sock.local}

    with kernel_server(family) as srv:
        t = StackThread(body, tracer=tracer).start()
        k, _ = srv.accept()
        with k:
            digest, count = kernel_duplex(k, down, BULK)
            if first == "kernel":
                k.close()
            else:
                assert k.recv(1) == b""
        result = t.result()

    assert (count, digest) == (BULK, sha256(up))
    assert (result["count"], result["digest"]) == (BULK, sha256(down))
    assert tracer.segments == [("out", "S"), ("in", "S."), ("out", ".")]
    assert [s[1:] for s in tracer.states[:2]] == [
        ("CLOSED", "SYN-SENT"),
        ("SYN-SENT", "ESTABLISHED"),
    ]
    assert result["local"][0] == PYTCP
    pair = (hostport(KERNEL, PORT), hostport(PYTCP, result["local"][1]))
    if first == "pytcp":
        assert result["info"]["state"] == "TIME-WAIT"
        assert pair not in ss_time_wait()
    else:
        assert result["info"]["state"] == "CLOSED"
        assert pair in ss_time_wait()


# -- half-close -----------------------------------------------------------------------------


@FAMILIES
def test_kernel_half_closes_pytcp_keeps_sending(netns: Netns, family: int) -> None:
    _KERNEL, PYTCP = ADDRS[family]
    after = payload(5, HALF)

    def body(t: StackThread, stack: Stack) -> tuple[bytes, str]:
        listener = stack.listen(PORT)
        t.marker.set()
        sock = listener.accept(timeout=BOUND)
        assert sock is not None
        sock.settimeout(BOUND)
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
        state = sock.state  # EOF seen: CLOSE-WAIT, and still free to send
        sock.sendall(after)
        sock.close()
        assert stack.run_until(lambda: sock.connection.is_closed, BOUND)
        return bytes(got), state

    t = StackThread(body).start()
    assert t.marker.wait(BOUND)
    with socket.create_connection((PYTCP, PORT), timeout=BOUND) as k:
        k.sendall(b"before the FIN")
        k.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := k.recv(1 << 20):
            received += chunk
    got, state = t.result()
    assert (got, state) == (b"before the FIN", "CLOSE-WAIT")
    assert sha256(bytes(received)) == sha256(after) and len(received) == HALF


@FAMILIES
def test_pytcp_half_closes_kernel_keeps_sending(netns: Netns, family: int) -> None:
    KERNEL, _PYTCP = ADDRS[family]
    after = payload(6, HALF)
    log = TraceLog()

    def body(t: StackThread, stack: Stack) -> tuple[bytes, str, int]:
        sock = stack.connect(KERNEL, PORT, timeout=BOUND)
        sock.settimeout(BOUND)
        sock.sendall(b"before the FIN")
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
        sock.close()
        return bytes(got), sock.state, len(log.events)

    with kernel_server(family) as srv:
        t = StackThread(body, tracer=log).start()
        k, _ = srv.accept()
        with k:
            k.settimeout(BOUND)
            received = bytearray()
            while chunk := k.recv(65536):
                received += chunk
            assert received == b"before the FIN"  # then EOF: pytcp's FIN
            k.sendall(after)
        got, closed_in, seen = t.result()
    assert sha256(got) == sha256(after) and len(got) == HALF
    events = log.events[:seen]  # up to the application's close, not the stack's own end
    states = [(str(e.fields["old"]), str(e.fields["new"])) for e in events if e.kind == STATE]
    # Its FIN was acked, then the kernel's arrived: it closed first, into TIME-WAIT.
    assert ("FIN-WAIT-2", "TIME-WAIT") in states
    entered = states.index(("FIN-WAIT-2", "TIME-WAIT"))
    assert states[entered - 1] == ("FIN-WAIT-1", "FIN-WAIT-2")
    if entered == len(states) - 1:
        assert closed_in == "TIME-WAIT"  # closing the socket keeps TIME-WAIT's 2·MSL
        return
    # Else TIME-WAIT ended early, and only this way: the kernel retransmitted its data and
    # FIN before our ACK reached it (a loaded machine: pytcp read both in one batch);
    # pytcp ACKed the FIN, then answered the retransmission with an ACK again (RFC 9293
    # §3.10.7.4 first and eighth); the kernel, CLOSED by the first, answered the second
    # with a RST, and a RST at RCV.NXT ends TIME-WAIT (§3.10.7.4 second; Linux's default,
    # tcp_rfc1337=0, does the same).
    assert (states[entered + 1 :], closed_in) == ([("TIME-WAIT", "CLOSED")], "CLOSED")
    begun = [i for i, e in enumerate(events) if e.kind == STATE][entered]
    tail = events[begun:]
    arrived = [flags_of(e.fields["segment"]) for e in tail if e.kind == SEGMENT_IN]
    assert len(arrived) >= 2 and arrived[-1] == "R"  # a retransmission, then the RST
    assert any(e.kind == DROP for e in tail)  # the retransmission: old, ACKed and dropped


# -- refused ---------------------------------------------------------------------------------


@FAMILIES
def test_pytcp_connect_to_closed_kernel_port_is_refused(netns: Netns, family: int) -> None:
    KERNEL, _PYTCP = ADDRS[family]

    def body(t: StackThread, stack: Stack) -> str:
        with pytest.raises(ConnectionRefusedError) as exc:
            stack.connect(KERNEL, 9, timeout=BOUND)
        return str(exc.value)

    t = StackThread(body).start()
    assert t.result() == f"[Errno 111] connection to {KERNEL}:9 refused"


@FAMILIES
def test_kernel_connect_to_closed_pytcp_port_is_refused(netns: Netns, family: int) -> None:
    _KERNEL, PYTCP = ADDRS[family]

    def body(t: StackThread, stack: Stack) -> int:
        t.run_until_stopped(stack)
        return stack.host.counters["rst_sent"]

    t = StackThread(body).start()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((PYTCP, 9), timeout=BOUND)
    assert t.result() == 1


# -- reset -----------------------------------------------------------------------------------


@FAMILIES
def test_kernel_linger_zero_close_resets_pytcp(netns: Netns, family: int) -> None:
    KERNEL, _PYTCP = ADDRS[family]

    def body(t: StackThread, stack: Stack) -> tuple[str, str | None]:
        sock = stack.connect(KERNEL, PORT, timeout=BOUND)
        sock.settimeout(BOUND)
        with pytest.raises(ConnectionResetError) as exc:
            sock.recv(100)
        return str(exc.value), sock.connection.error

    with kernel_server(family) as srv:
        t = StackThread(body).start()
        k, _ = srv.accept()
        k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        k.close()  # SO_LINGER 0: RST instead of FIN
        message, error = t.result()
    assert error == "reset"
    assert message.endswith(f"connection to {KERNEL}:{PORT} reset by peer")


@FAMILIES
def test_pytcp_abort_resets_kernel(netns: Netns, family: int) -> None:
    KERNEL, _PYTCP = ADDRS[family]

    def body(t: StackThread, stack: Stack) -> None:
        sock = stack.connect(KERNEL, PORT, timeout=BOUND)
        sock.sendall(b"hello")
        t.wait_go(stack)
        sock.abort()
        stack.run_once(0)  # the RST leaves now

    with kernel_server(family) as srv:
        t = StackThread(body).start()
        k, _ = srv.accept()
        with k:
            k.settimeout(BOUND)
            assert k.recv(5) == b"hello"
            t.proceed()
            with pytest.raises(ConnectionResetError):
                while k.recv(100):
                    pass
        t.result()


# -- many connections ------------------------------------------------------------------------

CLIENTS = 200
CLIENTS6 = 50  # over IPv6: many concurrent IPv6 flows demultiplexed by one listener
ECHO = 64 << 10


def echo_server(t: StackThread, stack: Stack) -> int:
    """Echo every connection on PORT until the test stops; returns connections served."""
    listener = stack.listen(PORT, backlog=CLIENTS + 56)
    backlog: dict[str, bytearray] = {}
    served = 0

    def pump(sock: Socket) -> None:
        buf = backlog[sock.id]
        while sock.readable and len(buf) < (1 << 20):
            buf += sock.recv(1 << 20)
        while buf and sock.writable:
            n = sock.send(bytes(buf[: sock.writable]))
            del buf[:n]
        if (sock.at_eof and not buf) or sock.error is not None:
            sock.close()

    def on_accept() -> None:
        nonlocal served
        while (sock := listener.accept(timeout=0)) is not None:
            served += 1
            sock.setblocking(False)
            backlog[sock.id] = bytearray()
            sock.on_change(functools.partial(pump, sock))
            pump(sock)

    listener.on_change(on_accept)
    t.marker.set()
    t.run_until_stopped(stack)
    return served


@pytest.mark.parametrize(
    ("family", "clients"), [(4, CLIENTS), (6, CLIENTS6)], ids=["ipv4", "ipv6"]
)
def test_200_kernel_clients_echo_through_pytcp_listener(
    netns: Netns, family: int, clients: int
) -> None:
    t = StackThread(echo_server).start()
    assert t.marker.wait(BOUND)
    data = [payload(100 + i, ECHO) for i in range(clients)]
    sel = selectors.DefaultSelector()
    state: dict[int, dict[str, Any]] = {}
    socks = []
    for i in range(clients):
        s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET)
        s.setblocking(False)
        s.connect_ex((ADDRS[family][1], PORT))
        socks.append(s)
        state[s.fileno()] = {"i": i, "sent": 0, "got": bytearray(), "sock": s, "done": False}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    deadline = threading.Event()
    timer = threading.Timer(BOUND * 2, deadline.set)
    timer.start()
    try:
        remaining = clients
        while remaining and not deadline.is_set():
            for key, events in sel.select(1.0):
                st = state[key.fd]
                s, i = st["sock"], st["i"]
                if events & selectors.EVENT_WRITE and st["sent"] < ECHO:
                    try:
                        st["sent"] += s.send(data[i][st["sent"] : st["sent"] + 65536])
                    except BlockingIOError:
                        pass
                    if st["sent"] == ECHO:
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    if chunk:
                        st["got"] += chunk
                    else:
                        sel.unregister(s)
                        st["done"] = True
                        remaining -= 1
    finally:
        timer.cancel()
        sel.close()
    served = t.result()
    intact = [st["i"] for st in state.values() if st["done"] and st["got"] == data[st["i"]]]
    for s in socks:
        s.close()
    assert served == clients
    assert sorted(intact) == list(range(clients))


# -- environment, impairment, unreachable, pcap over the TUN ----------------------------------


def test_env_and_kwargs_choose_the_interface(netns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTCP_TUN", "envtun")
    monkeypatch.setenv("PYTCP_ADDR", "10.77.3.9")
    with Stack() as stack:
        assert (stack.tun_name, str(stack.address), str(stack.peer_address)) == (
            "envtun",
            "10.77.3.9",
            "10.77.3.1",
        )
        # The IPv6 side follows the IPv4 subnet: fd77:3::/64 (DESIGN §3).
        assert (str(stack.address6), str(stack.peer_address6)) == ("fd77:3::2", "fd77:3::1")
        assert stack.host.address6 == stack.address6
    with Stack(tun="kwtun", addr="10.77.4.7", mtu=9000) as stack:
        assert (stack.tun_name, str(stack.address), stack.mtu) == ("kwtun", "10.77.4.7", 9000)
        assert stack.host.mtu == 9000
    # One address of each family, comma-separated, as PYTCP_ADDR or repeated --addr give it.
    monkeypatch.setenv("PYTCP_ADDR", "10.77.5.9, fd77:5::99")
    with Stack() as stack:
        assert (str(stack.address), str(stack.address6), str(stack.peer_address6)) == (
            "10.77.5.9",
            "fd77:5::99",
            "fd77:5::1",
        )
    with Stack(addr="fd77:6::7", gateway="10.77.6.1/24,fd77:6::1/64") as stack:
        assert (str(stack.address), str(stack.address6)) == ("10.77.6.2", "fd77:6::7")


@FAMILIES
def test_transfer_survives_impairment(netns: Netns, family: int) -> None:
    KERNEL, _PYTCP = ADDRS[family]
    up, down = payload(7, HALF), payload(8, HALF)
    spec = "loss=3%,dup=1%,reorder=3%,delay=2ms,seed=7"

    def body(t: StackThread, stack: Stack) -> dict[str, Any]:
        sock = stack.connect(KERNEL, PORT, timeout=BOUND)
        digest, count = pytcp_duplex(stack, sock, up, HALF)
        info = sock.info()
        sock.close()
        assert stack.impairers is not None
        out, _ = stack.impairers
        return {"digest": digest, "count": count, "info": info, "lost": out.counters["lost"]}

    with kernel_server(family) as srv:
        t = StackThread(body, impair=spec).start()
        k, _ = srv.accept()
        with k:
            digest, count = kernel_duplex(k, down, HALF)
        result = t.result()
    assert (count, digest) == (HALF, sha256(up))
    assert (result["count"], result["digest"]) == (HALF, sha256(down))
    assert result["lost"] > 0  # seeded: the same packets are lost every run
    assert result["info"]["counters"]["retransmissions"] > 0  # ... and recovered from


@FAMILIES
def test_unreachable_destination(netns: Netns, family: int) -> None:
    # Forwarding on (in this namespace only) and no route to 10.99.0.0/16 (fd99::/16):
    # the kernel answers the SYN with ICMP network unreachable (ICMPv6 destination
    # unreachable, no route), a hard error in SYN-SENT.
    netns.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")  # this namespace's own
    netns.run("sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
    target = "10.99.0.1" if family == 4 else "fd99::1"

    def body(t: StackThread, stack: Stack) -> str:
        with pytest.raises(OSError) as exc:
            stack.connect(target, 80, timeout=BOUND)
        assert exc.type is OSError
        return str(exc.value)

    # "unreachable", not "timed out": the ICMP(v6) error ended it. (A router's MLD
    # report for ff02::2 may arrive too, once forwarding is on: ICMP in is not 1.)
    assert StackThread(body).start().result() == f"[Errno 113] {target}:80 unreachable"


@FAMILIES
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_pcap_of_a_kernel_connection_reads_in_tcpdump(
    netns: Netns, tmp_path: Path, family: int
) -> None:
    KERNEL, PYTCP = ADDRS[family]
    path = tmp_path / "c.pcap"

    def body(t: StackThread, stack: Stack) -> int:
        sock = stack.connect(KERNEL, PORT, timeout=BOUND)
        sock.sendall(b"ping")
        sock.close()
        assert stack.run_until(lambda: sock.state == "TIME-WAIT", BOUND)
        return sock.local[1]

    with kernel_server(family) as srv:
        t = StackThread(body, pcap=str(path)).start()
        k, _ = srv.accept()
        with k:
            k.settimeout(BOUND)
            assert k.recv(10) == b"ping"
            assert k.recv(10) == b""
        port = t.result()
    out = subprocess.run(
        ["tcpdump", "-r", str(path), "-n", "-q", "tcp"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = [line.split(" ", 1)[1] for line in out.stdout.splitlines()]
    print(out.stdout)
    me, them = f"{PYTCP}.{port}", f"{KERNEL}.{PORT}"
    ip = "IP" if family == 4 else "IP6"
    assert lines[0] == f"{ip} {me} > {them}: tcp 0"  # SYN
    assert lines[1] == f"{ip} {them} > {me}: tcp 0"  # SYN-ACK
    assert f"{ip} {me} > {them}: tcp 4" in lines  # the data
    assert len(lines) >= 6  # ... and the two FINs and their ACKs


def test_ordinary_user_runs_pytcp_on_own_persistent_tun(netns: Netns) -> None:
    """pytcp without root: uid 65534 attaches to a persistent TUN root made for it, as is,
    and serves a kernel client through it."""
    import stack.host  # noqa: F401 - loaded before the fork: the child cannot read root's files
    from tests.integration.test_tun import _kernel_addresses_loaded

    _kernel_addresses_loaded()
    with tempfile.TemporaryDirectory(prefix="pytcp-tun-") as tmp:
        os.chmod(tmp, 0o755)
        node = os.path.join(tmp, "tun")
        try:
            os.mknod(node, 0o20666, os.makedev(10, 200))
            os.chmod(node, 0o666)
        except OSError as exc:
            pytest.skip(f"cannot create a tun device node here: {exc}")
        netns.run("ip", "tuntap", "add", "dev", "usertun", "mode", "tun", "user", "65534")
        netns.run("ip", "addr", "add", "10.77.7.1/24", "dev", "usertun")
        netns.run("ip", "link", "set", "usertun", "up")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe and exit status
            status = 1
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                from stack.io import tun

                tun.TUN_PATH = node
                with Stack(tun="usertun") as st:
                    listener = st.listen(PORT)
                    os.write(w, f"{st.address} {os.getuid()}\n".encode())
                    sock = listener.accept(timeout=BOUND)
                    assert sock is not None
                    sock.settimeout(BOUND)
                    sock.sendall(sock.recv(100).upper())
                    sock.shutdown(socket.SHUT_WR)
                    assert sock.recv(1) == b""
                    sock.close()
                status = 0
            finally:
                os._exit(status)
        os.close(w)
        try:
            with os.fdopen(r, "rb") as f:
                assert f.readline() == b"10.77.7.2 65534\n"
            with socket.create_connection(("10.77.7.2", PORT), timeout=BOUND) as k:
                k.sendall(b"no root needed")
                k.settimeout(BOUND)
                assert k.recv(100) == b"NO ROOT NEEDED"
                k.shutdown(socket.SHUT_WR)
        finally:
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    info = json.loads(netns.run("ip", "-j", "addr", "show", "dev", "usertun").stdout)[0]
    assert [a["local"] for a in info["addr_info"] if a["family"] == "inet"] == ["10.77.7.1"]


@FAMILIES
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_offloads_bulk_both_ways_byte_exact(netns: Netns, family: int, offload: bool) -> None:
    """8 MiB each way at once, SHA-256 exact, with offloads (the default) and without.
    With them the kernel hands the TUN GRO'd super-packets far above the 1500 MTU with
    checksums it vouches for, and takes pytcp's super-segments (TSO): both are counted,
    and nothing fails a checksum. Without them no packet exceeds the MTU either way."""
    _KERNEL, PYTCP = ADDRS[family]
    up, down = payload(9, BULK), payload(10, BULK)

    def body(t: StackThread, stack: Stack) -> dict[str, Any]:
        listener = stack.listen(PORT)
        t.marker.set()
        sock = listener.accept(timeout=BOUND)
        assert sock is not None
        digest, count = pytcp_duplex(stack, sock, down, BULK)
        sock.close()
        link = stack.link
        assert isinstance(link, TunLink)
        return {
            "digest": digest,
            "count": count,
            "mean_rx": link.counters["rx_bytes"] / link.counters["rx_packets"],
            "mean_tx": link.counters["tx_bytes"] / link.counters["tx_packets"],
            "drops": dict(stack.host.counters["drops"]),
            "offloads": stack.offloads,
            "counted": dict(stack.host.offload_counters),
            "tx_dropped": link.counters["tx_dropped"],
        }

    t = StackThread(body, offload=offload).start()
    assert t.marker.wait(BOUND)
    with socket.create_connection((PYTCP, PORT), timeout=BOUND) as k:
        digest, count = kernel_duplex(k, up, BULK)
    result = t.result()
    assert (result["count"], result["digest"]) == (BULK, sha256(up))
    assert (count, digest) == (BULK, sha256(down))
    assert "bad-checksum" not in result["drops"] and result["tx_dropped"] == 0
    counted = result["counted"]
    if offload:
        assert result["offloads"] == {"rx": ["csum", "tso4", "tso6"], "tx": ["csum", "tso"]}
        assert counted["gso_packets_in"] > 0 and counted["gso_packets_out"] > 0
        assert counted["gso_segments_in"] > counted["gso_packets_in"]
        assert counted["gso_segments_out"] > counted["gso_packets_out"]
        assert counted["csum_trusted_in"] > 0
        assert result["mean_rx"] > 1500 and result["mean_tx"] > 1500  # super-packets
    else:
        assert result["offloads"] == {"rx": [], "tx": []}
        assert set(counted.values()) == {0}
        assert result["mean_rx"] <= 1500 and result["mean_tx"] <= 1500
