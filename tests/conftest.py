"""Shared fixtures: the `netns` marker's private network namespace, and skips without root."""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

CLONE_NEWNET = 0x40000000
CAP_NET_ADMIN = 12
_counter = itertools.count()


def _has_cap_net_admin() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def netns_unavailable_reason() -> str | None:
    """Why netns tests cannot run here, or None when they can."""
    if not _has_cap_net_admin():
        return "needs CAP_NET_ADMIN (run as root) to create network namespaces and TUN devices"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (load the tun module)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` (make test installs it with apt-get)"
    return None


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class Netns:
    """A private network namespace; the test's thread runs inside it while the fixture lives."""

    name: str

    def run(self, *cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (the calling thread is already in it)."""
        return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = netns_unavailable_reason()
    if reason is None:
        return
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def netns() -> Iterator[Netns]:
    """Create a network namespace, move this thread into it with lo up, and remove it after;
    PYTCP_RUNTIME_DIR points at a directory of the test's own meanwhile.

    Sockets, TUN devices and child processes created while the test runs live in the
    namespace; the host's own interfaces are never touched. Removal happens on every path.
    """
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"pytcp-test-{os.getpid()}-{next(_counter)}"
    runtime: str | None = None
    subprocess.run(["ip", "netns", "add", name], check=True)
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        # Control sockets of its own: `pytcp inspect` in the test lists the test's
        # processes only, not those of other suites running on the machine (one of them
        # not answering would make the list exit 1), and theirs do not see ours.
        runtime = tempfile.mkdtemp(prefix="pytcp-rt-")
        saved = os.environ.get("PYTCP_RUNTIME_DIR")
        os.environ["PYTCP_RUNTIME_DIR"] = runtime
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield Netns(name)
        finally:
            _setns(original)
            if saved is None:
                os.environ.pop("PYTCP_RUNTIME_DIR", None)
            else:
                os.environ["PYTCP_RUNTIME_DIR"] = saved
    finally:
        os.close(original)
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)
