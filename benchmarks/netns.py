"""Network namespaces for the benchmarks: created here, entered with pyroute2, always removed.

`Namespaces` is a context manager: it creates a main namespace (the harness's own threads
and every command it starts run there: pytcp's TUN devices, kernel peers, ncat) and, on
request, peers joined by a veth pair (the kernel↔kernel baseline). On exit, on every
path, it returns the process to the namespace it came from, kills whatever still runs in
its namespaces and deletes them. Addresses are 10.77.0.0/16 only; nothing on the host's
own interfaces, routes or sysctls is touched (the sysctls set here are the namespace's).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from pyroute2 import netns as pyroute2_netns

RUN_DIR = Path("/run/netns")
# The veth baseline's subnet: above any pytcpN subnet the harness hands out.
VETH_SUBNET = "10.77.250"


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=20)


class Namespaces:
    """The benchmark's namespaces; the calling process lives in `main` while inside."""

    def __init__(self, prefix: str = "pytcp-bench") -> None:
        self.main = f"{prefix}-{os.getpid()}"
        self.peers: list[str] = []
        self._original: int | None = None

    def __enter__(self) -> Namespaces:
        self._original = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            pyroute2_netns.create(self.main)
            pyroute2_netns.setns(self.main, flags=0)
            _ip("link", "set", "lo", "up")
            # The namespace's own sysctls: enough ports for the connection-rate figure.
            Path("/proc/sys/net/ipv4/ip_local_port_range").write_text("10000 65000\n")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def veth_peer(self) -> tuple[str, str, str]:
        """A namespace joined to main by a veth pair: (name, main's address, peer's address)."""
        name = f"{self.main}-peer{len(self.peers)}"
        pyroute2_netns.create(name)
        self.peers.append(name)
        here, there = f"vb{len(self.peers)}a", f"vb{len(self.peers)}b"
        near, far = f"{VETH_SUBNET}.1", f"{VETH_SUBNET}.2"
        _ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", name)
        _ip("addr", "add", f"{near}/24", "dev", here)
        _ip("link", "set", here, "up")
        _ip("link", "set", "lo", "up", ns=name)
        _ip("addr", "add", f"{far}/24", "dev", there, ns=name)
        _ip("link", "set", there, "up", ns=name)
        return name, near, far

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._original is not None:
            try:
                pyroute2_netns.setns(self._original, flags=0)
            finally:
                os.close(self._original)
                self._original = None
        for name in [*self.peers, self.main]:
            remove(name)
        self.peers = []


def remove(name: str) -> None:
    """Kill every process left in namespace `name`, then delete it (quietly if it is gone)."""
    if not (RUN_DIR / name).exists():
        return
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=20
    ).stdout.split()
    for pid in pids:
        if pid == str(os.getpid()):
            continue  # the harness itself, should it still be inside
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=20)
