"""The `pytcp-tun` target of `pytcp script`: pytcp's Host over a real TUN device in
real time, in the throwaway namespace `script_linux.run_in_namespace` makes. Imports
the standard library, stack.io.tun and stack.script.

The stack owns tun0 (it is 10.77.250.2, the kernel side 10.77.250.1) and runs in a
thread of its own: packets from the TUN, timers, packets to the TUN, as pytcp's
event loop does. The script's peer is 10.77.250.9 (fd77:250::9), an address nobody
owns: its < segments are put on tun0 through an AF_PACKET socket (the kernel hands
them to the TUN, so pytcp reads them), and what pytcp writes to the TUN is read back
from the same kind of socket with the kernel's timestamp. The kernel, not forwarding,
drops pytcp's segments to .9 after that; nothing answers them but the script. The
socket calls are the pytcp target's model, under the thread's lock.
"""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pytcpcli.scripting import CaptureQueue, RealTimeTarget, capture_socket, kernel_stamp
from stack.io.tun import TunLink
from stack.script.calls import CallOutcome
from stack.script.model import Syscall
from stack.script.packets import parse_tcp_packet
from stack.script.parser import ScriptError
from stack.script.pytcp_target import PytcpTarget
from stack.script.runner import Captured, Config
from stack.wire.checksum import pseudo_header_sum
from stack.wire.packet import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_TCPV4,
    GSO_TCPV6,
    TCP_CSUM_OFFSET,
    VNET_HDR,
    Packet,
)

TUN_NAME = "tun0"
LOCAL_V4, KERNEL_V4, PEER_V4 = "10.77.250.2", "10.77.250.1/24", IPv4Address("10.77.250.9")
LOCAL_V6, KERNEL_V6, PEER_V6 = "fd77:250::2", "fd77:250::1/64", IPv6Address("fd77:250::9")
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_HOST = 0
SOL_PACKET = 263
PACKET_VNET_HDR = 15  # linux/if_packet.h: a virtio-net header before each packet sent
TCP_CWR = 0x80
TICK = 0.01  # seconds the stack thread sleeps at most between looks at its timers


class TunTarget(RealTimeTarget, PytcpTarget):
    name = "pytcp-tun"

    def __init__(self, config: Config) -> None:
        self.t0 = time.monotonic_ns()
        rng = random.Random()
        super().__init__(config, rng=rng, isn_secret=os.urandom(16))
        v6 = config.ip_version == "ipv6"
        self.remote_ip = PEER_V6 if v6 else PEER_V4
        self.lock = threading.RLock()
        self.link = TunLink.open(
            TUN_NAME,
            addr=LOCAL_V4,
            gateway=KERNEL_V4,
            mtu=config.mtu,
            addr6=LOCAL_V6,
            gateway6=KERNEL_V6,
        )
        self.cap = capture_socket(TUN_NAME)
        # Segments longer than the MTU go in as GSO super-packets through a raw
        # AF_PACKET socket with a virtio-net header (a plain send is EMSGSIZE); the
        # TUN, opened with TSO, hands them to pytcp whole, as GRO would.
        self.gso = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.gso.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        self.gso.bind((TUN_NAME, 0))
        self.captured = CaptureQueue(self.now)
        self.stop = False
        self.threads = [
            threading.Thread(target=self._run_stack, name="stack", daemon=True),
            threading.Thread(target=self._capture, name="capture", daemon=True),
        ]
        for th in self.threads:
            th.start()

    # Real time replaces the virtual clock: `ns` is read, never set.
    @property
    def ns(self) -> int:
        return time.monotonic_ns() - self.t0

    @ns.setter
    def ns(self, value: int) -> None:
        pass

    def start_clock(self) -> None:
        with self.lock:
            self.captured.clear()
            self.t0 = time.monotonic_ns()

    def _emit(self, packet: bytes | Packet) -> None:
        self.link.send(packet)

    def _run_stack(self) -> None:
        fd = self.link.fileno()
        while not self.stop:
            with self.lock:
                self._take_in()
                self.host.handle_timers(self.ns)
                self._flush()
                deadline = self.host.next_deadline()
                wakeups = [w for w in self.wakeups if w > self.ns]
                if self.wakeups and len(wakeups) != len(self.wakeups):
                    self.wakeups = wakeups
                    self._poll()
                nearest = min([d for d in (deadline, *wakeups) if d is not None], default=None)
                wait = TICK if nearest is None else max(0.0, min(TICK, (nearest - self.ns) / 1e9))
            if fd is not None:
                select.select([fd], [], [], wait)
            else:
                time.sleep(wait)

    def _capture(self) -> None:
        while not self.stop:
            ready, _, _ = select.select([self.cap.fileno()], [], [], 0.05)
            if not ready:
                continue
            try:
                data, ancillary, _, addr = self.cap.recvmsg(65535, 256)
            except OSError:
                return
            if addr[2] != PACKET_HOST:
                continue  # our own injections, seen leaving
            at = kernel_stamp(ancillary, self.t0)
            seg = parse_tcp_packet(data)
            if seg is None or seg.dst != self.remote_ip:
                continue
            self.captured.put(Captured(self.now() if at is None else at, data))

    # -- the Target interface in real time -----------------------------------------

    def now(self) -> int:
        return self.ns // 1000

    def inject(self, packet: bytes) -> list[str]:
        proto = ETH_P_IPV6 if packet[0] >> 4 == 6 else ETH_P_IP
        with self.lock:
            before = self._drops()
            if len(packet) > self.cfg.mtu:
                self.gso.sendto(gso_frame(packet, self.cfg.mtu), (TUN_NAME, proto))
            else:
                self.cap.sendto(packet, (TUN_NAME, proto))
            # The kernel hands an AF_PACKET send to the TUN at once: take it in here,
            # under the lock, so the drop reasons (if any) belong to this segment.
            self._take_in()
            after = self._drops()
        return [k for k in after for _ in range(after[k] - before.get(k, 0))]

    def _take_in(self) -> None:
        while (pkt := self.link.recv()) is not None:
            self.host.receive_packet(pkt, self.ns)
        self._flush()

    def _drops_locked(self) -> dict[str, int]:
        with self.lock:
            return self._drops()

    def call(self, call: Syscall, fds: dict[int, Any], blocking_ok: bool) -> CallOutcome | None:
        with self.lock:
            # A call sees every segment already in the TUN, as a kernel socket call
            # sees what softirq took in before it.
            self._take_in()
            return super().call(call, fds, blocking_ok)

    def completed(self) -> list[tuple[Syscall, CallOutcome]]:
        with self.lock:
            return super().completed()

    def tcb(self) -> dict[str, Any] | None:
        with self.lock:
            return super().tcb()

    def close(self) -> None:
        self.stop = True
        for th in self.threads:
            th.join(1.0)
        self.cap.close()
        self.gso.close()
        self.link.close()


def gso_frame(packet: bytes, mtu: int) -> bytes:
    """`packet`, a TCP segment longer than `mtu`, behind the virtio-net header that
    makes it a GSO super-packet: cut at the MSS the MTU leaves (TSO4/TSO6, ECN when it
    carries CWR), its checksum left partial (NEEDS_CSUM: the field holds the
    pseudo-header sum, as the virtio spec §5.1.6.2 asks). Anything else that large
    cannot be put on the link: a ScriptError."""
    v6 = packet[0] >> 4 == 6
    ip_len = 40 if v6 else (packet[0] & 0x0F) * 4
    proto = packet[6] if v6 else packet[9]
    if proto != 6 or len(packet) < ip_len + 20:
        raise ScriptError(
            "", 0, f"a {len(packet)}-byte packet that is not TCP exceeds the MTU ({mtu})"
        )
    tcp_len = (packet[ip_len + 12] >> 4) * 4
    mss = mtu - ip_len - tcp_len
    if mss <= 0:
        raise ScriptError("", 0, f"TCP headers of {ip_len + tcp_len} bytes leave no MSS")
    src, dst = (packet[8:24], packet[24:40]) if v6 else (packet[12:16], packet[16:20])
    family = IPv6Address if v6 else IPv4Address
    partial = pseudo_header_sum(family(bytes(src)), family(bytes(dst)), 6, len(packet) - ip_len)
    frame = bytearray(packet)
    at = ip_len + TCP_CSUM_OFFSET
    frame[at : at + 2] = partial.to_bytes(2, "big")
    gso_type = GSO_TCPV6 if v6 else GSO_TCPV4
    if packet[ip_len + 13] & TCP_CWR:
        gso_type |= GSO_ECN
    header = VNET_HDR.pack(F_NEEDS_CSUM, gso_type, ip_len + tcp_len, mss, ip_len, TCP_CSUM_OFFSET)
    return header + bytes(frame)
