"""The corpus in tests/scripts/ against the Linux kernel (`--against linux`): each
script runs in a network namespace of its own (needs root). A script Linux fails is
either wrong or a Linux deviation documented here with the RFC text it departs from;
a deviation must fail exactly at its line, so it is known, not hidden."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytcpcli.scripting import run_script

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "scripts").glob("*.pkt"))
# Under a loaded test machine the kernel's answers cross Python threads and a TUN:
# the scripts' own timings are 10 ms apart or more, so 8 ms of slack keeps them apart.
TOLERANCE = {"tolerance_usecs": "8000"}

# script -> (line Linux fails at, what it does, the RFC text)
DEVIATIONS = {
    "close-linger-zero.pkt": (
        12,
        "bad flags: expected R but got R.",
        "RFC 9293 §3.10.5 ABORT: 'send a reset segment: <SEQ=SND.NXT><CTL=RST>'; Linux "
        "(tcp_send_active_reset) sets ACK on it too.",
    ),
    "close-unread-data.pkt": (
        14,
        "bad flags: expected R but got R.",
        "RFC 9293 §3.10.5 / RFC 2525 §2.17: the reset is <SEQ=SND.NXT><CTL=RST>; Linux "
        "sends RST|ACK.",
    ),
    "zero-window-probe.pkt": (
        14,
        "bad seq: expected 1 but got 0",
        "RFC 9293 §3.8.6.1: 'the sending TCP peer must regularly transmit at least one "
        "octet of new data (if available)'; Linux probes with an empty segment at "
        "SND.UNA - 1 (tcp_xmit_probe_skb), like a keepalive.",
    ),
}


def can_unshare() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/net/tun")


@pytest.mark.skipif(not can_unshare(), reason="the linux target needs root and /dev/net/tun")
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_against_linux(path: Path) -> None:
    result, _ = run_script(str(path), "linux", overrides=TOLERANCE)
    assert not result.skipped
    if path.name in DEVIATIONS:
        line, what, _rfc = DEVIATIONS[path.name]
        assert not result.ok, f"{path.name} passes on Linux now: drop its deviation"
        assert result.error.startswith(f"{path}:{line}: {what}"), result.error
    else:
        assert result.ok, result.error


def test_every_deviation_names_a_corpus_script() -> None:
    assert set(DEVIATIONS) <= {p.name for p in CORPUS}
