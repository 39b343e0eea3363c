"""A spoofed SYN flood against `pytcp listen -k` in a namespace (issue 14): with SYN
cookies on by default, legitimate kernel clients still connect while tens of thousands
of SYNs from addresses that never answer arrive, and the process's memory stays bounded
before, during and after."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import threading
from ipaddress import IPv4Address

import pytest

from stack.wire import PROTO_TCP, Flags, Ipv4Header, TcpSegment
from tests.cli.netcat import STACK, TIMEOUT, recv_all, run, start_listener

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

FLOOD = 30_000  # spoofed SYNs
CLIENTS = 20
MEMORY_BOUND = 32 * 1024 * 1024  # bytes of RSS the flood may add (it was 1.1 GB)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def spoofed_syns(port: int, count: int, seed: int) -> list[bytes]:
    """SYNs from 10.77.200.0/22, addresses nobody holds: their SYN-ACKs go nowhere."""
    rng = random.Random(seed)
    dst = IPv4Address(STACK)
    out = []
    for _ in range(count):
        src = IPv4Address(f"10.77.{rng.randrange(200, 204)}.{rng.randrange(1, 255)}")
        syn = TcpSegment(
            rng.randrange(1024, 65536), port, rng.getrandbits(32), 0, Flags.SYN, 64240,
            mss=1460, wscale=7, sack_permitted=True, timestamps=(rng.getrandbits(32), 0),
        )  # fmt: skip
        out.append(Ipv4Header(src, dst, PROTO_TCP, 64, 0, rng.getrandbits(16)).build(
            syn.build(src, dst)))  # fmt: skip
    return out


def test_legitimate_clients_connect_during_a_spoofed_syn_flood(netns) -> None:
    port = 7400
    proc, _err = start_listener("-k", str(port), stdin=subprocess.DEVNULL)
    try:
        before = rss(proc.pid)
        packets = spoofed_syns(port, FLOOD, seed=14)
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        peak = [before]
        flooding = threading.Event()

        def flood() -> None:
            flooding.set()
            for i, p in enumerate(packets):
                try:
                    raw.sendto(p, (STACK, 0))
                except OSError:  # ENOBUFS: the TUN queue is full; the flood goes on
                    pass
                if i % 1000 == 0:
                    peak[0] = max(peak[0], rss(proc.pid))

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        assert flooding.wait(TIMEOUT)
        replies: list[bytes] = []
        for i in range(CLIENTS):
            # The kernel retransmits a SYN lost in the flood (1 s, 3 s, ...): bounded.
            with socket.create_connection((STACK, port), timeout=TIMEOUT) as c:
                c.settimeout(TIMEOUT)
                c.sendall(b"client %d\n" % i)
                c.shutdown(socket.SHUT_WR)
                replies.append(recv_all(c))  # FIN: stdin is at EOF, nothing to say
            peak[0] = max(peak[0], rss(proc.pid))
        flooder.join(TIMEOUT)
        assert not flooder.is_alive()
        raw.close()
        during = max(peak[0], rss(proc.pid))
        entry = json.loads(run("inspect", f"{proc.pid}.1", "--json").stdout)
        assert entry["state"] == "LISTEN" and entry["syn_cookies"] == "auto"
        counters = entry["counters"]
        assert counters["cookies_sent"] > 0  # the backlog overflowed: cookies answered
        assert counters["accepted"] == CLIENTS
        assert replies == [b""] * CLIENTS
        after = rss(proc.pid)
        assert during - before < MEMORY_BOUND, (before, during)
        assert after - before < MEMORY_BOUND, (before, after)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=TIMEOUT)
    lines = sorted(out.splitlines())
    assert lines == sorted(b"client %d" % i for i in range(CLIENTS))
