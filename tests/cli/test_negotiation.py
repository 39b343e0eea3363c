"""Each TCP option as both ends see it, over IPv4 and IPv6 (issue 13): the kernel's view
from `ss -tie`, pytcp's from `pytcp inspect --json`, of the one connection between them.

`pytcp connect` (all options offered, ECN asked for with --ecn, and --nodelay and
--keepalive, which only inspect shows; or none with --no-sack
--no-wscale --no-timestamps and no --ecn) holds a connection to a kernel server while
the test reads both sides. What must agree: timestamps, SACK and ECN (RFC 3168 §6.1.1:
the kernel's default tcp_ecn = 2 accepts a request) on or off alike; the window scale each
side applies (ss `wscale:SND,RCV` is the shift the kernel sends with, ours, and the one
it receives with, its own); each side's send MSS is the other's announced MSS less the
timestamps option (ss `mss` is the kernel's, `advmss` its own); the path MTU; and the
window the kernel may use is the one pytcp announced.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.cli.netcat import ADDRS, FAMILIES, PYTCP, TIMEOUT, KernelServer, StderrLines, pytcp

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

PORT = 7400
TS = 12  # RFC 7323 §3: the timestamps option on every segment


def ss_view(port: int) -> dict[str, Any]:
    """The kernel's side of the one established connection on `port`, from ss -tie:
    bare words ("ts", "sack") as True, key:value pairs as strings."""
    out = subprocess.run(
        ["ss", "-tieHn", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    ).stdout  # fmt: skip
    fields: dict[str, Any] = {}
    for word in out.split():
        key, colon, value = word.partition(":")
        if colon and key and value and not key.startswith("["):
            fields.setdefault(key, value)
        elif not colon:
            fields.setdefault(word, True)
    return fields


@FAMILIES
@pytest.mark.parametrize("offer", ["all", "none"])
def test_every_option_as_ss_and_inspect_see_it(
    netns: Any, tmp_path: Path, family: int, offer: str
) -> None:
    kernel, stack = ADDRS[family]
    env = {**os.environ, "PYTCP_RUNTIME_DIR": str(tmp_path)}
    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        release.wait(TIMEOUT)  # keep it established while both sides are read

    server = KernelServer(PORT, hold, family=family)
    flags = (
        ["--ecn", "--nodelay", "--keepalive", "30,5,3"]
        if offer == "all"
        else ["--no-sack", "--no-wscale", "--no-timestamps"]
    )
    proc = pytcp("connect", "-v", *flags, kernel, str(PORT), env=env)
    try:
        line = StderrLines(proc).wait_for("pytcp: connected to ")
        conn_id = line.rsplit("id ", 1)[1].rstrip(")\n")
        ours = json.loads(
            subprocess.run(
                [PYTCP, "inspect", conn_id, "--json"],
                capture_output=True,
                timeout=TIMEOUT,
                env=env,
                check=True,
            ).stdout
        )
        theirs = ss_view(PORT)
    finally:
        release.set()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(TIMEOUT)
        server.close()
    opt = ours["options"]
    assert (ours["state"], ours["local"]["addr"], ours["remote"]["addr"]) == (
        "ESTABLISHED", stack, kernel
    )  # fmt: skip
    on = offer == "all"
    # RFC 7323 §3 timestamps and RFC 2018 SACK: on both sides, or off on both.
    assert (opt["timestamps"], theirs.get("ts", False)) == (on, on)
    assert (opt["sack"], theirs.get("sack", False)) == (on, on)
    assert (opt["ecn"], theirs.get("ecn", False)) == (on, on)  # RFC 3168 §6.1.1
    # Our own socket options (no wire option: only inspect shows them): Nagle off and
    # keepalive (RFC 1122 §4.2.3.6) as asked, off by default.
    assert opt["nodelay"] is on
    assert opt["keepalive"] == ({"idle": 30 * 10**9, "interval": 5 * 10**9, "count": 3}
                                if on else None)  # fmt: skip
    # RFC 7323 §2: the kernel sends with our shift and receives with its own.
    if on:
        snd, rcv = (int(v) for v in theirs["wscale"].split(","))
        assert (snd, rcv) == (opt["wscale_local"], opt["wscale_remote"])
        assert opt["wscale_local"] > 0
    else:
        assert "wscale" not in theirs and opt["wscale_remote"] in (None, 0)
    # MSS (RFC 9293 §3.7.1; RFC 8200 §5 for IPv6): each side sends the other's, less TS.
    link_mss = 1500 - (40 if family == 4 else 60)
    ts = TS if on else 0
    assert (opt["mss_local"], opt["mss_remote"]) == (link_mss, link_mss)
    assert int(theirs["mss"]) == opt["mss_local"] - ts  # what the kernel sends us
    assert int(theirs["advmss"]) == opt["snd_mss"] == opt["mss_remote"] - ts  # what we send
    assert int(theirs["pmtu"]) == opt["path_mtu"] == 1500
    # The window the kernel may fill is the one pytcp announced (scaled back by its shift).
    shift = opt["wscale_local"] if on else 0
    window = min(ours["receive"]["rcv_wnd"], 0xFFFF << shift) >> shift << shift
    assert int(theirs["snd_wnd"]) == window
