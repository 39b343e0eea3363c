"""The corpus in tests/scripts/ against the real-time targets, each script in a
network namespace of its own (needs root): the Linux kernel (`--against linux`) and
pytcp over a real TUN (`--against pytcp-tun`). A script Linux fails is either wrong
or a Linux deviation documented here with the RFC text it departs from; a deviation
must fail exactly at its line, so it is known, not hidden. pytcp-tun passes them all,
as the virtual-clock target does (tests/test_script.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pytcpcli.script_linux import asleep_in_call, await_block_or_return
from pytcpcli.script_tun import gso_frame
from pytcpcli.scripting import CaptureQueue, run_script
from stack.script.parser import ScriptError
from stack.script.runner import Captured

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "scripts").glob("*.pkt"))
# Real time on a shared, loaded test machine: the runner's own calls and injections
# may start late by tens of ms (packets are stamped by the kernel, so only the
# runner's side is late). The corpus's checks of timing are 40 ms or more apart
# (delayed ACK, Nagle, RTOs), so 30 ms of slack keeps their meaning.
TOLERANCE = {"tolerance_usecs": "30000"}

# script -> (line Linux fails at, what it does, the RFC text)
DEVIATIONS = {
    "close-linger-zero.pkt": (
        12,
        "bad flags: expected R but got R.",
        "RFC 9293 §3.10.5 ABORT: 'send a reset segment: <SEQ=SND.NXT><CTL=RST>'; Linux "
        "(tcp_send_active_reset) sets ACK on it too.",
    ),
    "close-listener-pending.pkt": (
        11,
        "bad flags: expected R but got R.",
        "RFC 9293 §3.10.5: aborting a connection sends <SEQ=SND.NXT><CTL=RST>; Linux "
        "(inet_csk_listen_stop -> tcp_disconnect) sends RST|ACK.",
    ),
    "close-unread-data.pkt": (
        14,
        "bad flags: expected R but got R.",
        "RFC 9293 §3.10.5 / RFC 2525 §2.17: the reset is <SEQ=SND.NXT><CTL=RST>; Linux "
        "sends RST|ACK.",
    ),
    "zero-window-probe.pkt": (
        15,
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


@pytest.mark.skipif(not can_unshare(), reason="the pytcp-tun target needs root and /dev/net/tun")
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_against_pytcp_over_tun(path: Path) -> None:
    result, _ = run_script(str(path), "pytcp-tun", overrides=TOLERANCE)
    assert not result.skipped
    assert result.ok, result.error


def test_capture_queue_gives_packets_sent_by_the_deadline_in_order() -> None:
    clock = [1_000_000]  # µs: far past CAPTURE_LAG, so an empty queue answers at once
    q = CaptureQueue(lambda: clock[0])
    assert q.next_outbound(10) is None
    first, second = Captured(10, b"a"), Captured(30, b"b")
    q.put(first)
    q.put(second)
    assert q.next_outbound(9) is None  # the first one left after the deadline
    assert q.next_outbound(10) is first
    assert q.next_outbound(29) is None
    q.unread(first)  # given back: it comes again, before the later one
    assert q.next_outbound(30) is first
    assert q.next_outbound(30) is second
    q.put(first)
    q.clear()
    assert q.next_outbound(100) is None


def test_capture_queue_waits_for_a_packet_still_on_its_way() -> None:
    clock = [0]
    q = CaptureQueue(lambda: clock[0])
    late = Captured(5, b"x")  # stamped before the deadline, queued after it by a thread

    def capture_thread() -> None:
        clock[0] = 20
        q.put(late)

    th = threading.Thread(target=capture_thread)
    th.start()
    try:
        assert q.next_outbound(10) is late
    finally:
        th.join()


def _wchan(tid: int | None) -> str:
    with open(f"/proc/self/task/{tid}/wchan", encoding="ascii") as f:
        return f.read()


def test_a_call_asleep_in_the_kernel_blocks_one_waiting_on_a_lock_does_not() -> None:
    """The main thread goes on past a blocking call once the call's thread sleeps in
    its call, as packetdrill's does; a thread on a futex (the interpreter lock, any
    lock) is not in its call yet."""
    rfd, wfd = os.pipe()
    lock = threading.Lock()
    lock.acquire()
    entered = threading.Event()
    waiting = threading.Event()

    def read_pipe() -> None:
        entered.set()
        os.read(rfd, 1)

    def take_lock() -> None:
        waiting.set()
        lock.acquire()

    reader = threading.Thread(target=read_pipe, daemon=True)
    waiter = threading.Thread(target=take_lock, daemon=True)
    try:
        reader.start()
        await_block_or_return(reader, entered)
        assert reader.is_alive()  # it went on while the read still blocks
        asleep = False
        for _ in range(10_000):  # the read's sleep is seen as one in a call (bounded)
            if asleep := asleep_in_call(reader.native_id) is True:
                break
            reader.join(0.0001)
        assert asleep
        waiter.start()
        assert waiting.wait(5)
        for _ in range(10_000):  # until it sleeps on the lock for good (bounded)
            if "futex" in _wchan(waiter.native_id):
                break
            waiter.join(0.0001)
        assert asleep_in_call(waiter.native_id) is False
        assert asleep_in_call(None) is None
    finally:
        os.write(wfd, b"x")
        lock.release()
        reader.join(5)
        waiter.join(5)
        os.close(rfd)
        os.close(wfd)
    assert not reader.is_alive() and not waiter.is_alive()
    done = threading.Thread(target=lambda: None)
    done.start()
    await_block_or_return(done, threading.Event())  # a finished call: at once
    assert not done.is_alive()


def test_a_segment_over_the_mtu_goes_in_as_a_gso_super_packet() -> None:
    from ipaddress import IPv4Address, IPv6Address

    from stack.script.packets import build_tcp
    from stack.wire.checksum import pseudo_header_sum
    from stack.wire.packet import VNET_HDR, Packet

    for src, dst, ip_len, gso in (
        (IPv4Address("10.77.250.9"), IPv4Address("10.77.250.2"), 20, 1),
        (IPv6Address("fd77:250::9"), IPv6Address("fd77:250::2"), 40, 4),
    ):
        seg = build_tcp(src, dst, 48000, 8080, 1, 1, 0x18 | 0x80, 1000, 0, b"", bytes(4000))
        frame = gso_frame(seg, 1500)
        flags, gso_type, hdr_len, gso_size, start, offset = VNET_HDR.unpack_from(frame)
        assert (flags, gso_type, hdr_len, gso_size, start, offset) == (
            1,  # NEEDS_CSUM
            gso | 0x80,  # TCPV4/TCPV6, ECN: it carries CWR
            ip_len + 20,
            1500 - ip_len - 20,
            ip_len,
            16,
        )
        body = frame[VNET_HDR.size :]
        partial = pseudo_header_sum(src, dst, 6, len(seg) - ip_len)
        assert body[ip_len + 16 : ip_len + 18] == partial.to_bytes(2, "big")
        assert (
            body[: ip_len + 16] == seg[: ip_len + 16] and body[ip_len + 18 :] == seg[ip_len + 18 :]
        )
        assert Packet.from_vnet(frame).is_gso
    icmp = bytes([0x45]) + bytes(8) + bytes([1]) + bytes(2000)
    with pytest.raises(ScriptError, match="not TCP exceeds the MTU"):
        gso_frame(icmp, 1500)
