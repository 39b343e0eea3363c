"""Bulk throughput of pytcp against the kernel, and of the kernel against itself.

Run as root:  .venv/bin/python benchmarks/bulk.py [--size MIB] [--mtu N]... [--runs K]

In a throwaway network namespace (created and removed here; the host's own network is
never touched) it measures, per MTU:
  kernel -> pytcp   a kernel client sends SIZE MiB to a pytcp listener over the TUN
    ... offload     the same with Stack(offload=True): TSO/GSO super-segments from the kernel
  pytcp -> kernel   a pytcp client sends SIZE MiB to a kernel listener over the TUN
and once:
  kernel -> kernel  the same transfer between two kernel sockets over loopback,
and prints MB/s (10^6 bytes per second, best of --runs) and each pytcp figure as a
ratio of the kernel's. The stack runs in a thread of this process, the kernel's side
in the main thread: both compete for one Python interpreter, as `pytcp` and a Python
peer would.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from stack.api import Socket, Stack

CLONE_NEWNET = 0x40000000
PORT = 5001
CHUNK = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def kernel_drain(sock: socket.socket, total: int) -> int:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got = 0
    while got < total:
        n = sock.recv_into(view)
        if n == 0:
            break
        got += n
    return got


def pytcp_drain(sock: Socket, total: int) -> int:
    got = 0
    while got < total:
        chunk = sock.recv(CHUNK)
        if not chunk:
            break
        got += len(chunk)
    return got


def timed(run: Callable[[], int], size: int) -> float:
    start = time.perf_counter()
    got = run()
    elapsed = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"transfer incomplete: {got} of {size} bytes")
    return size / elapsed / 1e6


def kernel_to_kernel(data: bytes) -> float:
    with socket.create_server(("127.0.0.1", PORT + 1)) as srv:
        client = socket.create_connection(("127.0.0.1", PORT + 1))
        server, _ = srv.accept()
        with client, server:
            sender = threading.Thread(target=client.sendall, args=(data,))

            def run() -> int:
                sender.start()
                got = kernel_drain(server, len(data))
                sender.join()
                return got

            return timed(run, len(data))


def with_stack(mtu: int, body: Callable[[Stack], float], offload: bool = False) -> float:
    """Run body(stack) on a fresh Stack in a thread (a Stack belongs to one thread)."""
    result: list[float] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            with Stack(mtu=mtu, offload=offload) as stack:
                result.append(body(stack))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(600)
    if errors:
        raise errors[0]
    if not result:
        raise RuntimeError("the stack thread did not finish")
    return result[0]


def kernel_to_pytcp(data: bytes, mtu: int, offload: bool = False) -> float:
    listening = threading.Event()

    def body(stack: Stack) -> float:
        listener = stack.listen(PORT)
        listening.set()
        sock = listener.accept(timeout=30)
        assert sock is not None
        sock.settimeout(60)
        rate = timed(lambda: pytcp_drain(sock, len(data)), len(data))
        sock.close()
        return rate

    def kernel_side() -> None:
        listening.wait(30)
        with socket.create_connection(("10.77.0.2", PORT), timeout=60) as k:
            k.sendall(data)
            k.shutdown(socket.SHUT_WR)
            k.recv(1)

    sender = threading.Thread(target=kernel_side)
    sender.start()
    try:
        return with_stack(mtu, body, offload)
    finally:
        sender.join(60)


def pytcp_to_kernel(data: bytes, mtu: int) -> float:
    with socket.create_server(("0.0.0.0", PORT)) as srv:
        srv.settimeout(60)
        rates: list[float] = []

        def kernel_side() -> None:
            server, _ = srv.accept()
            with server:
                rates.append(timed(lambda: kernel_drain(server, len(data)), len(data)))

        receiver = threading.Thread(target=kernel_side)
        receiver.start()

        def body(stack: Stack) -> float:
            sock = stack.connect("10.77.0.1", PORT, timeout=30)
            sock.sendall(data)
            sock.close()
            stack.run_until(lambda: not receiver.is_alive(), 60)
            return 0.0

        with_stack(mtu, body)
        receiver.join(60)
        return rates[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="MiB per transfer (default 64)")
    parser.add_argument(
        "--mtu",
        type=int,
        action="append",
        help="TUN MTU to measure (repeatable; default 1500 and 65000)",
    )
    parser.add_argument("--runs", type=int, default=3, help="best of this many (default 3)")
    parser.add_argument(
        "--no-offload",
        action="store_true",
        help="skip the kernel -> pytcp rows with TSO/GSO offload (Stack(offload=True))",
    )
    args = parser.parse_args()
    mtus = args.mtu or [1500, 65000]
    if os.geteuid() != 0:
        print("bulk.py: needs root (a network namespace and a TUN device)", file=sys.stderr)
        return 3
    data = os.urandom(args.size << 20)
    name = f"pytcp-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        setns(target)
        os.close(target)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        kernel = max(kernel_to_kernel(data) for _ in range(args.runs))
        print(f"size {args.size} MiB, best of {args.runs}")
        print(f"{'path':<18}{'MTU':>7}{'MB/s':>10}{'vs kernel':>11}")
        print(f"{'kernel -> kernel':<18}{'lo':>7}{kernel:>10.1f}{1.0:>11.4f}")
        for mtu in mtus:
            down = max(kernel_to_pytcp(data, mtu) for _ in range(args.runs))
            print(f"{'kernel -> pytcp':<18}{mtu:>7}{down:>10.1f}{down / kernel:>11.4f}")
            if not args.no_offload:
                gso = max(kernel_to_pytcp(data, mtu, offload=True) for _ in range(args.runs))
                print(f"{'  ... offload':<18}{mtu:>7}{gso:>10.1f}{gso / kernel:>11.4f}")
            up = max(pytcp_to_kernel(data, mtu) for _ in range(args.runs))
            print(f"{'pytcp -> kernel':<18}{mtu:>7}{up:>10.1f}{up / kernel:>11.4f}")
    finally:
        setns(original)
        os.close(original)
        subprocess.run(["ip", "netns", "del", name], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
