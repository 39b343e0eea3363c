"""Path MTU through the installed command, in a namespace (issues 13 and 14).

`pytcp connect` sends to a kernel server over pytcp0 while the test plays a router: it
writes ICMP "fragmentation needed" (ICMPv6 "packet too big") with a next-hop MTU of 68
through a raw socket, so the kernel carries it into the TUN like any packet from the
link. One quotes a sequence number that is not in flight (what a blind attacker
sends): `pytcp inspect --json` shows the MSS untouched. The other quotes SND.UNA as
`inspect` reported it (what a router would quote): the path MTU goes to the floor, not
to 68 (552 for IPv4, Linux's min_pmtu; 1280 for IPv6, RFC 8201), the MSS follows, and
the transfer completes byte-exact; the pcap shows every later data segment at the
new size, and IPv4 ones without DF (Linux's locked MTU: routers may fragment them).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from stack.wire import PROTO_TCP, Ipv4Header, Ipv6Header
from stack.wire.icmp import TYPE6_PACKET_TOO_BIG, TYPE_DEST_UNREACHABLE, IcmpError, Icmpv6Error
from tests.cli.netcat import ADDRS, FAMILIES, PYTCP, TIMEOUT, KernelServer, StderrLines, pytcp

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

PORT = 7300
FIRST = 256 << 10  # sent before the ICMP, acknowledged whole when it comes
SECOND = 1 << 20  # sent after it, at the new size
TS = 12  # the timestamps option on every segment (RFC 7323 §3)


def inspect(env: dict[str, str], conn_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [PYTCP, "inspect", conn_id, "--json"], capture_output=True, timeout=TIMEOUT, env=env
    )
    assert out.returncode == 0, out.stderr
    snap: dict[str, Any] = json.loads(out.stdout)
    return snap


def router_says_too_big(family: int, snap: dict[str, Any], seq: int, mtu: int) -> None:
    """ICMP from the kernel's address (a router on the path) quoting a segment of ours."""
    kernel, stack = ADDRS[family]
    local, remote = snap["local"], snap["remote"]
    if family == 4:
        quoted = Ipv4Header(IPv4Address(stack), IPv4Address(kernel), PROTO_TCP, 64,
                            total_length=1500, dont_fragment=True)  # fmt: skip
        err = IcmpError(TYPE_DEST_UNREACHABLE, 4, mtu, quoted, local["port"], remote["port"], seq)
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        message = err.build()
    else:
        quoted6 = Ipv6Header(IPv6Address(stack), IPv6Address(kernel), PROTO_TCP,
                             payload_length=1460)  # fmt: skip
        err6 = Icmpv6Error(TYPE6_PACKET_TOO_BIG, 0, mtu, quoted6, local["port"], remote["port"],
                           seq)  # fmt: skip
        raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        message = err6.build(IPv6Address(kernel), IPv6Address(stack))
    with raw:
        raw.sendto(message, (stack, 0))


def data_segments(pcap: Path, family: int) -> list[tuple[int, bool, int]]:
    """(payload length, DF, new bytes) of every data segment pytcp sent, in order; new
    bytes are those no earlier segment carried, 0 for a retransmission (a tail loss probe
    may resend one). Scapy reads the pcap: an independent parser."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    stack = ADDRS[family][1]
    out = []
    first_seq: int | None = None
    sent_end = 0  # relative to the first data byte's sequence number
    for pkt in rdpcap(str(pcap)):
        ip = pkt.getlayer(IP) if family == 4 else pkt.getlayer(IPv6)
        if ip is None or ip.src != stack or not pkt.haslayer(TCP):
            continue
        length = len(pkt[TCP].payload)
        if length:
            if first_seq is None:
                first_seq = pkt[TCP].seq
            end = (pkt[TCP].seq - first_seq) % 2**32 + length
            new = max(0, end - sent_end)
            sent_end = max(sent_end, end)
            out.append((length, bool(ip.flags.DF) if family == 4 else False, new))
    return out


@FAMILIES
def test_forged_mtu_68_changes_nothing_a_genuine_one_floors_the_path_mtu(
    netns: Any, tmp_path: Path, family: int
) -> None:
    kernel, _ = ADDRS[family]
    env = {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path)}
    first, second = os.urandom(FIRST), os.urandom(SECOND)
    received = bytearray()

    def sink(conn: socket.socket) -> None:
        while chunk := conn.recv(1 << 16):
            received.extend(chunk)

    server = KernelServer(PORT, sink, family=family)
    pcap = tmp_path / "run.pcap"
    # --no-offload: the pcap then holds the segments as they go on the wire (with TSO,
    # super-segments the kernel cuts at the MSS).
    proc = pytcp("connect", "-v", "--no-offload", "--pcap", str(pcap), kernel, str(PORT), env=env)
    try:
        err = StderrLines(proc)
        line = err.wait_for("pytcp: connected to ")
        conn_id = line.rsplit("id ", 1)[1].rstrip(")\n")
        assert proc.stdin is not None
        proc.stdin.write(first)
        proc.stdin.flush()
        # Bounded wait (an event, not a time): everything sent so far is acknowledged.
        for _ in range(TIMEOUT * 20):
            snap = inspect(env, conn_id)
            send = snap["send"]
            if len(received) == FIRST and send["snd_una"] == send["snd_nxt"]:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        else:
            raise AssertionError(f"never all acknowledged: {len(received)} {snap}")
        full = snap["options"]["snd_mss"]
        link_mss = 1500 - (40 if family == 4 else 60)
        assert full == link_mss - TS and snap["options"]["path_mtu"] == 1500

        # Forged: a sequence number nowhere near SND.UNA..SND.NXT (RFC 5927 §4.1).
        router_says_too_big(family, snap, (send["snd_una"] + 5_000_000) % 2**32, 68)
        for _ in range(TIMEOUT * 20):
            after = inspect(env, conn_id)
            if after["counters"]["drops"].get("icmp-stale-seq"):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert after["counters"]["drops"]["icmp-stale-seq"] == 1
        assert (after["options"]["snd_mss"], after["options"]["path_mtu"]) == (full, 1500)
        assert after["options"]["path_mtu_expires"] is None

        # Genuine: it quotes SND.UNA. 68 is below every floor: 552 (IPv4), 1280 (IPv6).
        router_says_too_big(family, snap, send["snd_una"], 68)
        floor = 552 if family == 4 else 1280
        for _ in range(TIMEOUT * 20):
            after = inspect(env, conn_id)
            if after["options"]["path_mtu"] != 1500:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert after["options"]["path_mtu"] == floor
        assert after["options"]["snd_mss"] == floor - (40 if family == 4 else 60) - TS
        assert 0 < after["options"]["path_mtu_expires"] <= 600 * 10**9  # RFC 1191 §6.3

        proc.stdin.write(second)
        proc.stdin.close()
        assert proc.stdout is not None
        assert (proc.stdout.read(), proc.wait(TIMEOUT)) == (b"", 0)
        server.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        server.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(first + second).digest()
    sizes = data_segments(pcap, family)
    new_mss = floor - (40 if family == 4 else 60) - TS
    # The first part went at the link's MSS (DF set); everything from the ICMP on at the
    # floor's, IPv4 without DF (Linux's locked MTU).
    # Retransmissions (new = 0) count in neither part's bytes but obey its sizes.
    cut = next(i for i in range(len(sizes) + 1) if sum(new for *_, new in sizes[:i]) >= FIRST)
    assert max(n for n, *_ in sizes[:cut]) == full
    assert all(df for _, df, _ in sizes[:cut]) is (family == 4)
    assert max(n for n, *_ in sizes[cut:]) == new_mss
    assert sum(new for *_, new in sizes[cut:]) == SECOND
    assert not any(df for _, df, _ in sizes[cut:])
