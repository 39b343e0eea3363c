"""Spoofed SYNs from a raw socket: `python -m benchmarks.synflood DST PORT COUNT SECONDS`.

Run only inside a benchmark namespace (the `flood` figure does so) and only toward
pytcp's own address: it sends at most COUNT IPv4 SYNs to DST:PORT within SECONDS, each
from a random source in 10.77.128.0/17 (no interface holds those, so SYN-ACKs to them
are dropped by the namespace's kernel: nothing leaves it) and a random source port, with
a random ISN and an MSS option, checksums computed here. Prints the number sent.
Imports the standard library only.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import sys
import time

IPPROTO_TCP = 6


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn(src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> bytes:
    options = struct.pack("!BBH", 2, 4, 1460)  # MSS 1460
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + 1) << 4, 0x02, 64240, 0, 0)
    tcp += options
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0x4000,
                     64, IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def flood(dst: str, port: int, count: int, seconds: float) -> int:
    if ipaddress.IPv4Address(dst) not in ipaddress.IPv4Network("10.77.0.0/16"):
        raise SystemExit("synflood: only toward 10.77.0.0/16 (pytcp's address)")
    target = socket.inet_aton(dst)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    base = int(ipaddress.IPv4Address("10.77.128.0"))
    sent = 0
    deadline = time.monotonic() + seconds
    with sock:
        while sent < count and time.monotonic() < deadline:
            for _ in range(64):
                src = struct.pack("!I", base + random.getrandbits(15))
                packet = syn(src, target, random.randint(1024, 65535), port,
                             random.getrandbits(32))
                try:
                    sock.sendto(packet, (dst, 0))
                    sent += 1
                except (BlockingIOError, OSError):
                    time.sleep(0.0005)  # the TUN's queue is full: pytcp is behind
    return sent


def main() -> int:
    dst, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(flood(dst, port, count, seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
