"""Environment failures through the installed `pytcp`: one line on stderr, exit status 3.

Issue 4: no /dev/net/tun, no permission, device busy, address in use. Each test runs the
real command as a subprocess inside the test's network namespace; the ones that need a
different /dev/net or an unprivileged user get them in a private mount namespace
(`unshare -m`), so the host's /dev and mounts are never touched.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile

import pytest

from tests.cli.netcat import PYTCP, TIMEOUT, start_listener
from tests.conftest import Netns

NOBODY = 65534
HINT = (
    "run as root, or have root create a persistent device for you once: "
    "ip tuntap add dev pytcp0 mode tun user $USER && ip addr add 10.77.0.1/24 dev pytcp0 "
    "&& ip link set pytcp0 up (then use --tun pytcp0)"
)


def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)


def in_private_mounts(script: str, *args: str) -> list[str]:
    """argv running `sh -c script args...` in a private mount namespace of its own."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh", *args]


def unsearchable(path: str) -> list[tuple[str, str]]:
    """The directories above `path` that others may not search (/root is often 0700),
    each with its child on the way to `path`."""
    parts = os.path.realpath(path).split(os.sep)[1:]
    out = []
    for i in range(1, len(parts)):
        directory = os.sep + os.path.join(*parts[:i])
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            out.append((directory, parts[i]))
    return out


@pytest.mark.netns
def test_device_busy_exits_3(netns: Netns) -> None:
    holder, _ = start_listener("5000")
    try:
        out = run([PYTCP, "listen", "--tun", "pytcp0", "5001"])
        assert holder.poll() is None  # the holder was not disturbed
    finally:
        holder.kill()
        holder.wait(TIMEOUT)
    assert (out.returncode, out.stdout, out.stderr) == (
        3,
        b"",
        b"pytcp: interface pytcp0 is busy: another process has it open (pick another with --tun)\n",
    )


@pytest.mark.netns
@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        (
            "10.77.5.1/24",
            "address 10.77.5.1 is already in use on d0: choose others with --addr/--gateway",
        ),
        (
            "10.77.5.9/24",
            "subnet 10.77.5.0/24 is already in use on d0 (10.77.5.1/24): "
            "choose another with --gateway",
        ),
    ],
    ids=["same-address", "same-subnet"],
)
def test_address_in_use_exits_3(netns: Netns, gateway: str, message: str) -> None:
    # Another interface of the namespace holds 10.77.5.1/24 (a veth pair: the dummy
    # driver is not always there).
    netns.run("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    netns.run("ip", "addr", "add", "10.77.5.1/24", "dev", "d0")
    out = run([PYTCP, "connect", "--gateway", gateway, "10.77.5.1", "80"])
    assert (out.returncode, out.stdout, out.stderr) == (3, b"", f"pytcp: {message}\n".encode())
    # No TUN interface was left behind.
    links = netns.run("ip", "-o", "link", "show").stdout.splitlines()
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links) == ["d0", "d1", "lo"]


@pytest.mark.netns
def test_no_permission_exits_3(netns: Netns) -> None:
    # uid/gid 65534 with no groups, as an ordinary user would run it. The interpreter may
    # live under a directory such a user cannot search (/root is 0700): in a private mount
    # namespace a world-searchable tmpfs covers that directory, with only the way to the
    # interpreter bound back into it.
    hidden = unsearchable(sys.executable)
    script = 'exec setpriv --reuid="$1" --regid="$1" --clear-groups -- "$2" connect 10.77.0.1 80'
    args = [str(NOBODY), PYTCP]
    with tempfile.TemporaryDirectory(prefix="pytcp-env-") as keep:
        if len(hidden) > 1:
            pytest.skip(f"the interpreter is {len(hidden)} closed directories deep")
        if hidden:
            [(directory, child)] = hidden
            way = os.path.join(directory, child)
            script = (
                'mount --bind "$3" "$4"; mount -t tmpfs -o mode=0755 none "$5"; '
                'mkdir "$5/$6"; mount --bind "$4" "$5/$6"; ' + script
            )
            args += [way, keep, directory, child]
        out = run(in_private_mounts(script, *args))
    assert (out.returncode, out.stdout, out.stderr) == (
        3,
        b"",
        f"pytcp: no permission to open /dev/net/tun: {HINT}\n".encode(),
    )
    assert os.path.exists("/dev/net/tun")  # the host's own device is still there


@pytest.mark.netns
def test_no_dev_net_tun_exits_3(netns: Netns) -> None:
    # An empty directory over /dev/net, only in a private mount namespace.
    with tempfile.TemporaryDirectory(prefix="pytcp-env-") as empty:
        script = (
            'mount --bind "$1" /dev/net; test ! -e /dev/net/tun; exec "$2" connect 10.77.0.1 80'
        )
        out = run(in_private_mounts(script, empty, PYTCP))
    assert (out.returncode, out.stdout, out.stderr) == (
        3,
        b"",
        b"pytcp: no /dev/net/tun: load the tun module (modprobe tun) or, in a container, "
        b"pass the device in (--device /dev/net/tun)\n",
    )
    assert os.path.exists("/dev/net/tun")  # the host's own device is still there
