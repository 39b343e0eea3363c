"""Offloads between the host and the link: super-segments out (TSO) and in (GRO), checksums
the kernel vouches for, and the TUN's fallback when the kernel refuses offloads.
Sans-IO for the host (time in every call); the TUN part fakes the two ioctls."""

from __future__ import annotations

import errno
import os
import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from stack.host import TSO_MAX_PAYLOAD, Host
from stack.io import tun
from stack.tcp.clock import MS
from stack.tcp.connection import Connection
from stack.trace import SEGMENT_IN, TraceLog
from stack.wire import PROTO_TCP, Flags, Ipv4Header, TcpSegment
from stack.wire.packet import GSO_NONE, GSO_TCPV4, Packet

LOCAL = IPv4Address("10.77.0.2")
PEER = IPv4Address("10.77.0.1")
LOCAL_ISS = 10_000
PEER_ISS = 50_000
PORT = 5000
PEER_PORT = 40_000
MSS = 1460
S, A, P = Flags.SYN, Flags.ACK, Flags.PSH


def plain(seg: TcpSegment) -> bytes:
    return Ipv4Header(PEER, LOCAL, PROTO_TCP).build(seg.build(PEER, LOCAL))


def offloaded(seg: TcpSegment, gso_size: int) -> Packet:
    """What the kernel hands a TUN with offloads: GRO'd, checksum left partial."""
    tcp = seg.build_header(PEER, LOCAL, partial=True)
    ip = Ipv4Header(PEER, LOCAL, PROTO_TCP).build_header(20 + len(tcp) + len(seg.payload))
    return Packet(ip + tcp + bytes(seg.payload), gso_type=GSO_TCPV4, gso_size=gso_size,
                  needs_csum=True, csum_start=20, csum_offset=16)  # fmt: skip


def established(offload: bool) -> tuple[Host, Connection, TraceLog]:
    log = TraceLog()
    host = Host(address=LOCAL, isn_secret=b"s", rng=random.Random(1), tracer=log,
                isn=lambda local, remote, now: LOCAL_ISS, offload=offload)  # fmt: skip
    listener = host.listen(PORT)
    host.receive_packet(plain(TcpSegment(PEER_PORT, PORT, PEER_ISS, 0, S, 65535, mss=MSS)), 0)
    host.packets_to_send(0)  # the SYN-ACK
    handshake_ack = TcpSegment(PEER_PORT, PORT, PEER_ISS + 1, LOCAL_ISS + 1, A, 65535)
    host.receive_packet(plain(handshake_ack), 1)
    conn = listener.accept()
    assert conn is not None
    return host, conn, log


def test_a_connection_of_an_offloading_host_builds_one_super_segment() -> None:
    host, conn, _ = established(offload=True)
    assert conn.tso_max == TSO_MAX_PAYLOAD
    data = bytes(range(256)) * 40  # 10240 bytes: 7 MSS-sized segments on the wire and a tail
    conn.cc.cwnd = 1 << 20  # neither cwnd nor the peer's window (65535) limits
    conn.send(data, 2 * MS)
    [pkt] = host.packets_to_send(2 * MS)
    assert isinstance(pkt, Packet)
    assert (pkt.gso_type, pkt.gso_size, pkt.needs_csum) == (GSO_TCPV4, MSS, True)
    assert (pkt.csum_start, pkt.csum_offset, len(pkt.body)) == (20, 16, len(data))
    # No copy on the way out: the payload is a view into the connection's send ring,
    # written after the headers with one writev.
    assert isinstance(pkt.body, memoryview) and pkt.body.obj is conn.sendbuf._buf
    ip, _ = Ipv4Header.parse(bytes(pkt))  # the IP header checksum is ours, and right
    assert ip.total_length == len(pkt)
    wires = pkt.segments()
    segs = [TcpSegment.parse(Ipv4Header.parse(w)[1], LOCAL, PEER) for w in wires]  # verified
    assert [len(s.payload) for s in segs] == [MSS] * 7 + [len(data) - 7 * MSS]
    assert b"".join(bytes(s.payload) for s in segs) == data
    assert [s.seq for s in segs] == [LOCAL_ISS + 1 + i * MSS for i in range(8)]
    assert host.offload_counters["gso_packets_out"] == 1
    assert host.offload_counters["gso_segments_out"] == 8


def test_a_super_segment_is_a_whole_number_of_mss_until_the_queue_ends() -> None:
    host, conn, _ = established(offload=True)
    # The peer's window (65535) is the limit: 44 full segments, the rest waits (SWS).
    conn.send(bytes(100_000), 2 * MS)
    conn.cc.cwnd = 1 << 20
    out = host.packets_to_send(2 * MS)
    sizes = [len(p.body) if isinstance(p, Packet) else None for p in out]
    assert sizes == [44 * MSS]


def test_without_offload_no_segment_exceeds_the_mss() -> None:
    host, conn, _ = established(offload=False)
    assert conn.tso_max == 0
    conn.cc.cwnd = 1 << 20
    conn.send(bytes(10_240), 2 * MS)
    out = host.packets_to_send(2 * MS)
    assert all(isinstance(p, bytes) for p in out)
    sizes = [len(TcpSegment.parse(Ipv4Header.parse(bytes(p))[1], LOCAL, PEER).payload) for p in out]
    # The 20-byte tail goes too: no earlier short segment is unacknowledged (Nagle as
    # Linux, Minshall's variant).
    assert sizes == [MSS] * 7 + [20]


def test_a_gro_super_segment_arrives_as_the_segments_it_carries() -> None:
    host, conn, log = established(offload=True)
    payload = b"y" * (5 * MSS + 100)
    seg = TcpSegment(PEER_PORT, PORT, PEER_ISS + 1, LOCAL_ISS + 1, A | P, 65535, payload=payload)
    host.receive_packet(offloaded(seg, MSS), 3 * MS)
    assert conn.readable == len(payload)
    [arrived] = [e.fields["segment"] for e in log.of_kind(SEGMENT_IN)][-1:]
    assert (arrived.gso_size, arrived.gso_segs) == (MSS, 6)
    assert host.offload_counters == {
        "gso_packets_in": 1,
        "gso_segments_in": 6,
        "gso_packets_out": 0,
        "gso_segments_out": 0,
        "csum_trusted_in": 1,
    }
    # More than two full-sized segments: acknowledged at once (RFC 5681 §4.2), no delay.
    [ack] = host.packets_to_send(3 * MS)
    assert isinstance(ack, Packet) and not ack.is_gso and ack.gso_type == GSO_NONE
    reply = TcpSegment.parse(Ipv4Header.parse(ack.finished())[1], LOCAL, PEER)
    assert (reply.ack, reply.flags) == (PEER_ISS + 1 + len(payload), A)
    assert host.counters["drops"] == {}


def test_a_partial_checksum_counts_only_when_the_link_says_so() -> None:
    host, conn, _ = established(offload=True)
    seg = TcpSegment(PEER_PORT, PORT, PEER_ISS + 1, LOCAL_ISS + 1, A, 65535, payload=b"z" * 100)
    pkt = offloaded(seg, 0)
    host.receive_packet(bytes(pkt), 3 * MS)  # the same bytes, no facts: a bad checksum
    assert host.counters["drops"] == {"bad-checksum": 1} and conn.readable == 0
    host.receive_packet(pkt, 4 * MS)  # NEEDS_CSUM: never crossed a wire, not verified
    assert conn.readable == 100
    assert host.offload_counters["csum_trusted_in"] == 1
    assert host.offload_counters["gso_packets_in"] == 0  # one ordinary segment


# ------------------------------------------------------------------ TUN fallback


class FakeIoctl:
    """fcntl.ioctl for TUNSETIFF/TUNSETOFFLOAD that refuses what it is told to."""

    def __init__(self, *, vnet: bool = True, offloads: tuple[int, ...] = ()) -> None:
        self.vnet = vnet
        self.offloads = offloads  # the TUNSETOFFLOAD arguments it accepts
        self.calls: list[tuple[int, Any]] = []

    def __call__(self, fd: int, request: int, arg: Any) -> Any:
        self.calls.append((request, arg))
        if request == tun.TUNSETIFF:
            flags = tun._IFREQ.unpack(arg)[1]
            if flags & tun.IFF_VNET_HDR and not self.vnet:
                raise OSError(errno.EINVAL, "Invalid argument")
            return arg
        if request == tun.TUNSETOFFLOAD:
            if arg not in self.offloads:
                raise OSError(errno.EINVAL, "Invalid argument")
            return 0
        raise AssertionError(f"unexpected ioctl {request:#x}")


@pytest.fixture
def fake_device(monkeypatch: pytest.MonkeyPatch) -> Any:
    real_open = os.open

    def fake_open(path: str, flags: int, *args: Any) -> int:
        assert path == tun.TUN_PATH
        return real_open(os.devnull, os.O_RDWR)

    monkeypatch.setattr(tun.os, "open", fake_open)

    def install(ioctl: FakeIoctl) -> FakeIoctl:
        monkeypatch.setattr(tun.fcntl, "ioctl", ioctl)
        return ioctl

    return install


def test_the_kernel_takes_every_offload(fake_device: Any) -> None:
    ioctl = fake_device(FakeIoctl(offloads=(tun.TUN_F_CSUM | tun.TUN_F_TSO4 | tun.TUN_F_TSO6,)))
    fd, name, vnet, accepted = tun._open_device("t0", exclusive=True, offload=True)
    os.close(fd)
    assert (name, vnet, accepted) == ("t0", True, tun.TUN_F_CSUM | tun.TUN_F_TSO4 | tun.TUN_F_TSO6)
    assert tun.describe_offloads(vnet, accepted) == {"rx": ["csum", "tso4", "tso6"],
                                                     "tx": ["csum", "tso"]}  # fmt: skip
    assert [r for r, _ in ioctl.calls] == [tun.TUNSETIFF, tun.TUNSETOFFLOAD]


def test_refused_offload_flags_fall_back_to_what_the_kernel_takes(fake_device: Any) -> None:
    ioctl = fake_device(FakeIoctl(offloads=(tun.TUN_F_CSUM,)))
    fd, _, vnet, accepted = tun._open_device("t0", exclusive=True, offload=True)
    os.close(fd)
    assert (vnet, accepted) == (True, tun.TUN_F_CSUM)
    assert [a for r, a in ioctl.calls if r == tun.TUNSETOFFLOAD] == list(tun.OFFLOAD_TRIES[:3])
    assert tun.describe_offloads(vnet, accepted) == {"rx": ["csum"], "tx": ["csum", "tso"]}
    fake_device(FakeIoctl(offloads=(0,)))
    fd, _, vnet, accepted = tun._open_device("t0", exclusive=True, offload=True)
    os.close(fd)
    assert (vnet, accepted) == (True, 0)  # the header stays: our own packets still go TSO'd


def test_a_kernel_refusing_the_virtio_header_gets_a_plain_device(fake_device: Any) -> None:
    ioctl = fake_device(FakeIoctl(vnet=False))
    fd, _, vnet, accepted = tun._open_device("t0", exclusive=True, offload=True)
    os.close(fd)
    assert (vnet, accepted) == (False, 0)
    flags = [tun._IFREQ.unpack(a)[1] for r, a in ioctl.calls if r == tun.TUNSETIFF]
    assert [bool(f & tun.IFF_VNET_HDR) for f in flags] == [True, False]
    assert tun.describe_offloads(vnet, accepted) == {"rx": [], "tx": []}


def test_no_offload_asks_for_nothing(fake_device: Any) -> None:
    ioctl = fake_device(FakeIoctl())
    fd, _, vnet, accepted = tun._open_device("t0", exclusive=True, offload=False)
    os.close(fd)
    assert (vnet, accepted) == (False, 0)
    assert [r for r, _ in ioctl.calls] == [tun.TUNSETIFF]


def test_another_ioctl_error_is_not_taken_for_a_refusal(fake_device: Any) -> None:
    class Busy(FakeIoctl):
        def __call__(self, fd: int, request: int, arg: Any) -> Any:
            raise OSError(errno.EBUSY, "Device or resource busy")

    fake_device(Busy())
    with pytest.raises(OSError) as exc:
        tun._open_device("t0", exclusive=True, offload=True)
    assert exc.value.errno == errno.EBUSY


# ------------------------------------------------------------------ TSO refused at run time


class RefusingTun(tun.TunLink):
    """A TUN whose kernel takes the virtio-net header but refuses every GSO write with
    `refusal` (EINVAL: virtio_net_hdr_to_skb() said no), as an older or stricter kernel
    may. What it takes is kept in `written` as the wire would carry it (checksums
    finished, as the kernel completes a NEEDS_CSUM packet) and, with a `peer`, handed
    to that PairLink end; packets from the peer are read from `inner`."""

    def __init__(self, refusal: int = errno.EINVAL, inner: Any = None) -> None:
        super().__init__(os.open(os.devnull, os.O_RDWR), name="t0", address=LOCAL,
                         peer_address=PEER, network=IPv4Network("10.77.0.0/24"), mtu=1500,
                         created=False, offload=True, accepted=7)  # fmt: skip
        self.refusal = refusal
        self.inner = inner
        self.attempts = 0  # GSO writes tried
        self.written: list[bytes] = []

    def _write(self, parts: Any) -> None:
        raw = b"".join(bytes(p) for p in parts)
        pkt = Packet.from_vnet(raw)
        if pkt.is_gso:
            self.attempts += 1
            raise OSError(self.refusal, os.strerror(self.refusal))
        wire = pkt.finished()
        self.written.append(wire)
        if self.inner is not None:
            self.inner.send(wire)

    def fileno(self) -> int | None:
        return self.inner.fileno() if self.inner is not None else super().fileno()

    def recv(self) -> Any:
        return self.inner.recv() if self.inner is not None else None


def super_packet(nbytes: int) -> tuple[Host, Connection, Packet]:
    host, conn, _ = established(offload=True)
    conn.cc.cwnd = 1 << 20
    conn.send(bytes(range(256)) * (nbytes // 256), 2 * MS)
    [pkt] = host.packets_to_send(2 * MS)
    assert isinstance(pkt, Packet) and pkt.is_gso
    return host, conn, pkt


def test_a_refused_gso_write_goes_out_as_its_segments_and_turns_tso_off() -> None:
    _, _, pkt = super_packet(10_240)
    link = RefusingTun()
    told: list[str] = []
    link.on_tso_refused = told.append
    assert (link.tso, link.offloads["tx"]) == (True, ["csum", "tso"])
    link.send(pkt)
    assert link.attempts == 1
    assert link.written == pkt.segments()  # MSS-sized, checksums done in Python
    segs = [TcpSegment.parse(Ipv4Header.parse(w)[1], LOCAL, PEER) for w in link.written]
    assert [len(s.payload) for s in segs] == [MSS] * 7 + [10_240 - 7 * MSS]
    assert (link.tso, link.offloads) == (False, {"rx": ["csum", "tso4", "tso6"], "tx": ["csum"]})
    assert (link.tso_refused, link.tso_refused_error, link.gso_resegmented) == (
        1, "EINVAL (Invalid argument)", 1)  # fmt: skip
    assert told == ["the kernel refused a TSO write on t0 (EINVAL (Invalid argument)): "
                    "TSO off, segments cut in Python from now on"]  # fmt: skip
    assert link.counters["tx_packets"] == 8 and link.counters["tx_dropped"] == 0
    # A super-packet built before the host heard of it is cut here without a try.
    link.send(pkt)
    assert (link.attempts, link.gso_resegmented, len(link.written)) == (1, 2, 16)
    assert told[1:] == []
    link.close()


def test_a_full_queue_is_a_drop_not_a_refusal_of_tso() -> None:
    _, _, pkt = super_packet(10_240)
    link = RefusingTun(refusal=errno.ENOBUFS)
    link.send(pkt)
    assert (link.attempts, link.written, link.tso) == (1, [], True)
    assert (link.tso_refused, link.gso_resegmented, link.counters["tx_dropped"]) == (0, 0, 1)
    link.close()


def test_a_host_told_tso_is_off_sends_mss_sized_segments() -> None:
    host, conn, _ = super_packet(10_240)
    host.disable_tso()
    assert (host.tso, conn.tso_max) == (False, 0)
    conn.send(bytes(2 * MSS), 3 * MS)
    out = host.packets_to_send(3 * MS)
    assert [isinstance(p, Packet) and not p.is_gso and len(p.body) for p in out] == [MSS, MSS]
    later = host.connect((PEER, 7), 4 * MS)
    assert later.tso_max == 0


def test_a_stack_whose_kernel_refuses_tso_delivers_every_byte(tmp_path: Any) -> None:
    from stack import Stack
    from stack.io.link import PairLink
    from stack.io.loop import Loop

    a, b = PairLink.pair()
    link = RefusingTun(inner=a)
    loop = Loop()
    client = Stack(link=link, loop=loop, addr=str(LOCAL), gateway=f"{PEER}/24", seed=1)
    server = Stack(link=b, loop=loop, addr=str(PEER), gateway=f"{LOCAL}/24", seed=2)
    notes: list[str] = []
    data = os.urandom(300_000)
    with client, server:
        client.on_link_note = notes.append
        listener = server.listen(PORT)
        sock = client.connect(str(PEER), PORT, timeout=10)
        accepted = listener.accept(timeout=10)
        assert accepted is not None
        sock.sendall(data)
        sock.shutdown()
        got = bytearray()
        while chunk := accepted.recv(65536):
            got += chunk
        assert bytes(got) == data
        assert link.attempts == 1 and notes == [
            "the kernel refused a TSO write on t0 (EINVAL (Invalid argument)): "
            "TSO off, segments cut in Python from now on"]  # fmt: skip
        assert (client.host.tso, sock.connection.tso_max) == (False, 0)
        assert client.offloads == {"rx": ["csum", "tso4", "tso6"], "tx": ["csum"]}
        # Every super-packet the host built was cut in Python; none after it knew.
        resegmented = client.host.offload_counters["gso_packets_out"]
        assert client.tso_fallback == {"tso_refused": 1,
                                       "tso_refused_error": "EINVAL (Invalid argument)",
                                       "gso_resegmented": resegmented}  # fmt: skip
        assert resegmented >= 1
        assert all(len(w) <= 1500 for w in link.written)
        accepted.close()
        sock.close()
    link.close()
    a.close()
    b.close()
    loop.close()


def test_a_connections_template_builds_what_the_general_path_builds() -> None:
    # Host._offloaded with a connection id takes the flow's HeaderTemplate for segments
    # without options but timestamps: the packet, its offload facts, the IP
    # identification counters and the GSO counters must be what the general path makes.
    from array import array

    from stack.tcp.sender import EctSegment

    host, conn, _ = established(offload=True)
    segments = [
        TcpSegment(PORT, PEER_PORT, 1, 2, int(A), 100),
        TcpSegment(PORT, PEER_PORT, 1, 2, int(A), 100, timestamps=(7, 9)),
        TcpSegment(PORT, PEER_PORT, 5, 6, int(A | P), 300, payload=b"z" * 10, timestamps=(1, 2)),
        EctSegment(PORT, PEER_PORT, 5, 6, int(A), 300, payload=b"e" * 100),
        TcpSegment(PORT, PEER_PORT, 9, 9, int(A), 9, payload=bytes(5 * MSS), gso_size=MSS,
                   timestamps=(3, 4)),
    ]
    for seg in segments:
        idents = array("H", host._idents)
        counters = dict(host.offload_counters)
        general = host._offloaded(LOCAL, PEER, seg)
        after = (array("H", host._idents), dict(host.offload_counters))
        host._idents[:] = idents
        host.offload_counters.clear()
        host.offload_counters.update(counters)
        templated = host._offloaded(LOCAL, PEER, seg, conn.id)
        assert bytes(templated) == bytes(general)
        assert templated.vnet_header() == general.vnet_header()
        assert (array("H", host._idents), dict(host.offload_counters)) == after
    assert conn.id in host._templates


def test_a_packet_the_link_vouches_for_has_its_ip_checksum_trusted_too() -> None:
    host, conn, _ = established(offload=True)
    seg = TcpSegment(PEER_PORT, PORT, PEER_ISS + 1, LOCAL_ISS + 1, A | P, 65535, payload=b"hi")
    pkt = offloaded(seg, 0)
    head = bytearray(pkt.head)
    head[10:12] = b"\x00\x00"  # not the kernel's IP checksum: never crossed a wire anyway
    host.receive_packet(Packet(bytes(head), gso_type=GSO_NONE, needs_csum=True,
                               csum_start=20, csum_offset=16), 3 * MS)  # fmt: skip
    assert conn.readable == 2 and host.counters["drops"] == {}
    # The same bytes as a plain packet (no virtio-net facts) are checked, and dropped.
    plain_bad = bytearray(plain(replace(seg, seq=PEER_ISS + 3)))
    plain_bad[10:12] = b"\x00\x00"
    host.receive_packet(bytes(plain_bad), 4 * MS)
    assert conn.readable == 2 and host.counters["drops"] == {"bad-header-checksum": 1}
