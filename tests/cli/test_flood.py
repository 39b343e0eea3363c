"""A spoofed SYN flood against `pytcp listen -k` in a namespace (issue 14), over IPv4 and
IPv6: with SYN cookies on by default, legitimate kernel clients still connect while tens
of thousands of SYNs from addresses that never answer arrive, and the process's memory
stays bounded before, during and after."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import threading
from ipaddress import IPv4Address, IPv6Address

import pytest

from stack.wire import PROTO_TCP, Flags, Ipv4Header, Ipv6Header, TcpSegment
from tests.cli.netcat import ADDRS, FAMILIES, TIMEOUT, recv_all, run, start_listener

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


def spoofed_syns(port: int, count: int, seed: int, family: int = 4) -> list[bytes]:
    """SYNs from 10.77.200.0/22 (fd77:200::/64 over IPv6), addresses nobody holds: their
    SYN-ACKs go nowhere."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        syn = TcpSegment(
            rng.randrange(1024, 65536), port, rng.getrandbits(32), 0, Flags.SYN, 64240,
            mss=1460 if family == 4 else 1440, wscale=7, sack_permitted=True,
            timestamps=(rng.getrandbits(32), 0),
        )  # fmt: skip
        if family == 4:
            src = IPv4Address(f"10.77.{rng.randrange(200, 204)}.{rng.randrange(1, 255)}")
            dst = IPv4Address(ADDRS[4][1])
            out.append(Ipv4Header(src, dst, PROTO_TCP, 64, 0, rng.getrandbits(16)).build(
                syn.build(src, dst)))  # fmt: skip
        else:
            src6 = IPv6Address(f"fd77:200::{rng.randrange(1, 1 << 16):x}")
            dst6 = IPv6Address(ADDRS[6][1])
            out.append(Ipv6Header(src6, dst6, PROTO_TCP).build(syn.build(src6, dst6)))
    return out


@FAMILIES
def test_legitimate_clients_connect_during_a_spoofed_syn_flood(netns, family: int) -> None:
    STACK = ADDRS[family][1]
    port = 7400
    proc, _err = start_listener("-k", str(port), stdin=subprocess.DEVNULL)
    try:
        before = rss(proc.pid)
        packets = spoofed_syns(port, FLOOD, seed=14, family=family)
        af = socket.AF_INET6 if family == 6 else socket.AF_INET
        raw = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_RAW)  # the header included
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
