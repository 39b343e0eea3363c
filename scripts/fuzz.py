"""Coverage-guided fuzzing of what pytcp takes from the outside (issue 14), with atheris.

    .venv/bin/python scripts/fuzz.py host [libFuzzer flags] [corpus dir...]
    .venv/bin/python scripts/fuzz.py control [libFuzzer flags] [corpus dir...]
    make fuzz                       # both targets, 60 s each, over tests/fuzz_corpus/

`host`: each input is a sequence of IP packets (2-byte big-endian length, then the
packet) fed to a Host with a listener and a live connection, on a fake clock that
advances with every packet; the host's output and timers are run after each. The
contract checked is DESIGN's: receive_packet never raises, whatever the bytes.
`control`: each input is one request line for ControlServer.handle_line over a real
Host: it must always answer with a Response and never raise.

Any exception is a crash atheris reports with the input that caused it (saved as
crash-*). `make test` runs a bounded pass of both (tests/test_fuzz_targets.py).
"""

from __future__ import annotations

import random
import struct
import sys
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import atheris

with atheris.instrument_imports():
    from stack.control import ControlServer
    from stack.host import Host
    from stack.tcp.clock import MS
    from stack.wire import PROTO_TCP, Flags, Ipv4Header, TcpSegment

LOCAL, PEER = IPv4Address("10.77.0.2"), IPv4Address("10.77.0.1")
LOCAL6 = IPv6Address("fd77::2")
_LEN = struct.Struct("!H")


def _host() -> Host:
    host = Host(address=LOCAL, address6=LOCAL6, isn_secret=b"fuzz", rng=random.Random(1),
                isn=lambda local, remote, now: 10_000)  # fmt: skip
    host.listen(5000, backlog=4)
    host.connect((PEER, 7000), 0)
    host.packets_to_send(0)
    # The peer answers: one live ESTABLISHED connection for segments to hit.
    synack = TcpSegment(7000, 0, 50_000, 10_001, Flags.SYN | Flags.ACK, 65535, mss=1460)
    conn = host.connections()[0]
    synack = TcpSegment(7000, conn.local[1], 50_000, 10_001, synack.flags, 65535, mss=1460)
    host.receive_packet(Ipv4Header(PEER, LOCAL, PROTO_TCP).build(synack.build(PEER, LOCAL)), 0)
    host.packets_to_send(0)
    return host


def fuzz_host(data: bytes) -> None:
    host = _host()
    now = 1 * MS
    view = memoryview(data)
    while len(view) >= 2:
        (n,) = _LEN.unpack_from(view)
        packet = bytes(view[2 : 2 + n])
        view = view[2 + n :]
        host.receive_packet(packet, now)
        host.handle_timers(now)
        host.packets_to_send(now)
        host.next_deadline()
        now += 37 * MS


class _Loop:
    def now(self) -> int:
        return 0


class _Stack:
    def __init__(self) -> None:
        self.loop: Any = _Loop()
        self.host: Any = _host()


def fuzz_control(data: bytes) -> None:
    server = ControlServer(_Stack(), directory="/nonexistent")  # never started: no socket
    server.pid = 1  # connection ids are "1.N" whatever process runs this
    response = server.handle_line(data)
    assert response.ok in (True, False)


TARGETS = {"host": fuzz_host, "control": fuzz_control}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags] [corpus...]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
