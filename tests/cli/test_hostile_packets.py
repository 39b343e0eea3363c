"""Crafted packets at the installed `pytcp listen -k`, in a namespace (issue 14).

The test plays hosts on the link: it writes IP packets into pytcp0 through a packet
socket (they reach pytcp as if the kernel had routed them) and reads what pytcp sends
back on the same interface, before the kernel drops it (nobody holds 10.77.0.50). Each
case is judged by the real process: what it answers, what its stdout receives, and the
host drops `pytcp inspect --host --json` counts.

"Nothing came back" is bounded by an event, not a sleep: after the packets under test
a sentinel follows (an ACK to a closed port, which pytcp answers with a RST); pytcp
handles packets in order, so once the sentinel's RST is here, any answer to what went
before would have come already.
"""

from __future__ import annotations

import json
import random
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cli.netcat import TIMEOUT, run, start_listener

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

PORT = 7500
CLOSED = 7501  # nothing listens: a sentinel ACK to it draws a RST
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23  # Linux 4.20: our own packets not read back


class Link:
    """Packets into pytcp0 (towards pytcp) and the ones pytcp sends out of it."""

    def __init__(self, dev: str = "pytcp0") -> None:
        self.dev = dev
        self.tx = {
            4: socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)),
            6: socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6)),
        }
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.rx.bind((dev, 0))
        # What the test sends would fill the receive queue (and push pytcp's answers out).
        self.rx.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        self.rx.setblocking(False)
        self.sentinels = 0

    def close(self) -> None:
        for s in (*self.tx.values(), self.rx):
            s.close()

    def send(self, packet: bytes) -> None:
        version = packet[0] >> 4
        self.tx[version].sendto(packet, (self.dev, ETH_P_IP if version == 4 else ETH_P_IPV6))

    def _received(self) -> Iterator[Any]:
        from scapy.layers.inet import IP
        from scapy.layers.inet6 import IPv6

        while True:
            try:
                data, addr = self.rx.recvfrom(1 << 17)
            except BlockingIOError:
                return
            if addr[2] == socket.PACKET_OUTGOING:  # ours, on the way to pytcp
                continue
            yield IP(data) if data[0] >> 4 == 4 else IPv6(data)

    def until(self, want: Callable[[Any], bool], timeout: float = 10.0) -> list[Any]:
        """Every packet pytcp sent, up to and including the first `want` accepts
        (AssertionError when none came within `timeout`: a failing test)."""
        seen: list[Any] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            select.select([self.rx], [], [], 0.1)
            for pkt in self._received():
                seen.append(pkt)
                if want(pkt):
                    return seen
        raise AssertionError(f"no awaited packet from pytcp; got {[p.summary() for p in seen]}")

    def sentinel(self, family: int) -> list[Any]:
        """What pytcp sent before it answered an ACK to a closed port (the RST excluded)."""
        from scapy.layers.inet import IP, TCP
        from scapy.layers.inet6 import IPv6

        self.sentinels += 1
        sport = 40000 + self.sentinels
        ip = IP(src="10.77.0.99", dst="10.77.0.2") if family == 4 else IPv6(
            src="fd77::99", dst="fd77::2")  # fmt: skip
        self.send(bytes(ip / TCP(sport=sport, dport=CLOSED, flags="A", seq=1, ack=1)))
        seen = self.until(lambda p: TCP in p and p[TCP].dport == sport and "R" in p[TCP].flags)
        return seen[:-1]


class Peer:
    """A TCP client the test crafts itself, segment by segment."""

    def __init__(self, link: Link, family: int, src: str | None = None) -> None:
        self.link = link
        self.family = family
        self.src = src or ("10.77.0.50" if family == 4 else "fd77::50")
        self.dst = "10.77.0.2" if family == 4 else "fd77::2"
        self.sport = random.randrange(20000, 40000)
        self.seq = random.getrandbits(32)
        self.ack = 0

    def ip(self) -> Any:
        from scapy.layers.inet import IP
        from scapy.layers.inet6 import IPv6

        return IP(src=self.src, dst=self.dst) if self.family == 4 else IPv6(
            src=self.src, dst=self.dst)  # fmt: skip

    def mine(self, pkt: Any) -> bool:
        from scapy.layers.inet import TCP

        return TCP in pkt and pkt[TCP].dport == self.sport and pkt.dst == self.src

    def connect(self) -> None:
        from scapy.layers.inet import TCP

        self.link.send(bytes(self.ip() / TCP(sport=self.sport, dport=PORT, flags="S",
                                             seq=self.seq, window=65535,
                                             options=[("MSS", 1460)])))  # fmt: skip
        synack = self.link.until(lambda p: self.mine(p) and p[TCP].flags == "SA")[-1]
        self.seq = (self.seq + 1) % 2**32
        self.ack = (synack[TCP].seq + 1) % 2**32
        self.link.send(bytes(self.ip() / TCP(sport=self.sport, dport=PORT, flags="A",
                                             seq=self.seq, ack=self.ack, window=65535)))

    def segment(self, data: bytes) -> Any:
        from scapy.layers.inet import TCP

        return self.ip() / TCP(sport=self.sport, dport=PORT, flags="PA", seq=self.seq,
                               ack=self.ack, window=65535) / data  # fmt: skip

    def acked(self, pkts: list[Any], n: int) -> bool:
        """Whether one of `pkts` acknowledges the next `n` bytes (and then counts them sent)."""
        from scapy.layers.inet import TCP

        end = (self.seq + n) % 2**32
        if any(self.mine(p) and p[TCP].ack == end for p in pkts):
            self.seq = end
            return True
        return False

    def wait_acked(self, n: int) -> None:
        from scapy.layers.inet import TCP

        end = (self.seq + n) % 2**32
        self.link.until(lambda p: self.mine(p) and p[TCP].ack == end)
        self.seq = end


def fragments4(peer: Peer, tcp: bytes, pieces: list[tuple[int, int]], ident: int) -> list[bytes]:
    """IPv4 fragments of the TCP bytes `tcp`: one per (start, end) byte range (MF set
    on all but the one that ends `tcp`)."""
    from scapy.layers.inet import IP

    last = len(tcp)
    return [bytes(IP(src=peer.src, dst=peer.dst, proto=6, id=ident, frag=start // 8,
                     flags="MF" if end < last else 0) / tcp[start:end])
            for start, end in pieces]  # fmt: skip


def fragments6(peer: Peer, tcp: bytes, pieces: list[tuple[int, int]], ident: int) -> list[bytes]:
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

    last = len(tcp)
    return [bytes(IPv6(src=peer.src, dst=peer.dst)
                  / IPv6ExtHdrFragment(nh=6, offset=start // 8, m=int(end < last), id=ident)
                  / tcp[start:end])
            for start, end in pieces]  # fmt: skip


def tcp_bytes(peer: Peer, data: bytes) -> bytes:
    """The TCP header and payload of the next segment, checksum filled in."""
    from scapy.layers.inet import TCP

    pkt = peer.ip().__class__(bytes(peer.segment(data)))
    return bytes(pkt[TCP])


def host_drops(pid: int) -> dict[str, int]:
    """Process `pid`'s host drops (other pytcp processes of the machine are listed too)."""
    out = run("inspect", "--host", "--json")
    assert out.returncode == 0, out.stderr
    (entry,) = [e for e in json.loads(out.stdout) if e["pid"] == pid]
    drops: dict[str, int] = entry["host"]["counters"]["drops"]
    return drops


@pytest.fixture
def listener(netns: Any) -> Iterator[tuple[subprocess.Popen[bytes], Link]]:
    proc, _err = start_listener("-k", str(PORT), stdin=subprocess.DEVNULL)
    link = Link()
    try:
        yield proc, link
    finally:
        link.close()
        proc.kill()
        proc.communicate(timeout=TIMEOUT)


MARTIANS4 = ["127.0.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "255.255.255.255",
             "10.77.0.255", "10.77.0.2"]  # fmt: skip
MARTIANS6 = ["::1", "::", "ff02::1", "::ffff:10.77.0.1", "fd77::2"]


def test_syns_from_martian_sources_get_no_answer_and_are_counted(listener: Any) -> None:
    # RFC 1122 §3.2.1.3 MUST: loopback, "this network", multicast, the limited and the
    # link's directed broadcast, and pytcp's own address, dropped silently (as Linux).
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    proc, link = listener
    for family, sources in ((4, MARTIANS4), (6, MARTIANS6)):
        for src in sources:
            dst = "10.77.0.2" if family == 4 else "fd77::2"
            ip = IP(src=src, dst=dst) if family == 4 else IPv6(src=src, dst=dst)
            link.send(bytes(ip / TCP(sport=4444, dport=PORT, flags="S", seq=1)))
            answers = [p for p in link.sentinel(family) if TCP in p]
            assert answers == [], (src, [p.summary() for p in answers])
    assert host_drops(proc.pid).get("bad-source") == len(MARTIANS4) + len(MARTIANS6)
    out = run("inspect", "--json")
    mine = [e["state"] for e in json.loads(out.stdout) if e["pid"] == proc.pid]
    assert mine == ["LISTEN"]  # no embryonic connection


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_a_segment_in_fragments_reaches_the_connection_overlaps_do_not(
    listener: Any, family: int
) -> None:
    proc, link = listener
    frag = fragments4 if family == 4 else fragments6
    peer = Peer(link, family)
    peer.connect()
    # RFC 1122 §3.3.2 MUST: reassembled, acknowledged, delivered. Three fragments, the
    # last first.
    first = b"A" * 1000
    for p in reversed(frag(peer, tcp_bytes(peer, first), [(0, 400), (400, 800), (800, 1020)], 7)):
        link.send(p)
    peer.wait_acked(len(first))
    # An overlap rewriting bytes already received drops the whole datagram (RFC 5722;
    # Linux does so for IPv4 too), and a later fragment of it is dropped as well.
    good = tcp_bytes(peer, b"B" * 100)
    forged = bytearray(good)
    forged[40:60] = b"X" * 20
    link.send(frag(peer, good, [(0, 48)], 8)[0])
    link.send(frag(peer, bytes(forged), [(32, len(forged))], 8)[0])  # 32..48 overlaps
    link.send(frag(peer, good, [(48, len(good))], 8)[0])
    assert not peer.acked(link.sentinel(family), 100)
    # A tiny first fragment (the ports alone): IPv4 reassembles it like any other (as
    # Linux; the overlap rule already stops RFC 1858's attack); IPv6 discards a first
    # fragment without the whole TCP header (RFC 8200 §4.5, RFC 7112; as Linux).
    for p in frag(peer, good, [(0, 8), (8, len(good))], 9):
        link.send(p)
    if family == 6:
        assert not peer.acked(link.sentinel(family), 100)
        for p in frag(peer, good, [(0, 24), (24, len(good))], 10):
            link.send(p)
    peer.wait_acked(100)
    drops = host_drops(proc.pid)
    assert drops.get("fragment-overlap") == 1, drops
    assert drops.get("fragment-of-overlapped") == 1, drops
    assert drops.get("fragment-header-incomplete") == (1 if family == 6 else None), drops
    proc.kill()
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert out == first + b"B" * 100


def test_a_fragment_flood_holds_bounded_memory_and_the_connection_goes_on(
    listener: Any,
) -> None:
    proc, link = listener
    peer = Peer(link, 4)
    peer.connect()

    def rss() -> int:
        with open(f"/proc/{proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    from scapy.layers.inet import IP

    before = rss()
    flood = 5000  # first fragments of datagrams that never complete, 1400 bytes each
    for i in range(flood):
        link.send(bytes(IP(src=f"10.77.0.{60 + i % 100}", dst="10.77.0.2", proto=6, id=i,
                           flags="MF") / (b"x" * 1400)))  # fmt: skip
        if i % 100 == 99:
            link.sentinel(4)  # paced by pytcp's own answers: the TUN queue drops none
    link.send(bytes(peer.segment(b"after the flood")))
    peer.wait_acked(len(b"after the flood"))
    drops = host_drops(proc.pid)
    # At most 64 datagrams held (README); the rest dropped and counted, ~7 MB refused.
    assert drops.get("fragment-limit", 0) >= flood - 64, drops
    assert rss() - before < 4 * 1024, (before, rss())  # KiB: well under what was sent
