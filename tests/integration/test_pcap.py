"""stack/io/pcap.py: the files it writes are read back by scapy and tcpdump as the same packets."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from stack.io.pcap import LINKTYPE_RAW, PcapWriter


def packets() -> list[bytes]:
    from scapy.layers.inet import IP, TCP

    syn = IP(src="10.77.0.2", dst="10.77.0.1", id=1) / TCP(
        sport=40000, dport=5000, seq=1000, flags="S", window=64240, options=[("MSS", 1460)]
    )
    data = (
        IP(src="10.77.0.1", dst="10.77.0.2", id=2)
        / TCP(sport=5000, dport=40000, seq=7, ack=1001, flags="PA", window=512)
        / (b"x" * 3000)
    )
    return [bytes(syn), bytes(data)]


T0 = 1_700_000_000_123_456_789  # ns after the epoch


def write(path: Path) -> list[bytes]:
    pkts = packets()
    with PcapWriter(str(path)) as w:
        w.write(pkts[0], T0)
        w.write(pkts[1], T0 + 2_500_000_000)
        assert w.count == 2
    return pkts


def test_header_and_records_are_exact(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    pkts = write(path)
    raw = path.read_bytes()
    assert raw[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    assert raw[24:40] == struct.pack("<IIII", 1_700_000_000, 123_456, len(pkts[0]), len(pkts[0]))
    assert raw[40 : 40 + len(pkts[0])] == pkts[0]
    second = 40 + len(pkts[0])
    assert raw[second : second + 16] == struct.pack(
        "<IIII", 1_700_000_002, 623_456, len(pkts[1]), len(pkts[1])
    )
    assert len(raw) == second + 16 + len(pkts[1])


def test_scapy_reads_it(tmp_path: Path) -> None:
    from scapy.utils import PcapReader

    path = tmp_path / "a.pcap"
    pkts = write(path)
    with PcapReader(str(path)) as reader:
        assert reader.linktype == LINKTYPE_RAW
        read = list(reader)
    assert [bytes(p) for p in read] == pkts
    # scapy keeps pcap times as Decimal seconds: exact.
    assert [round(p.time * 1_000_000) for p in read] == [
        1_700_000_000_123_456,
        1_700_000_002_623_456,
    ]
    assert read[0]["TCP"].options == [("MSS", 1460)]
    assert bytes(read[1]["TCP"].payload) == b"x" * 3000


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_tcpdump_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    write(path)
    out = subprocess.run(
        ["tcpdump", "-r", str(path), "-n", "-tt", "-S"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.splitlines() == [
        "1700000000.123456 IP 10.77.0.2.40000 > 10.77.0.1.5000: Flags [S], seq 1000, win 64240, "
        "options [mss 1460], length 0",
        "1700000002.623456 IP 10.77.0.1.5000 > 10.77.0.2.40000: Flags [P.], seq 7:3007, ack 1001, "
        "win 512, length 3000",
    ]
    assert "link-type RAW (Raw IP)" in out.stderr


def test_open_file_is_left_open_and_snaplen_cuts() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, snaplen=10)
    w.write(b"0123456789abcdef", 1_000_000)
    w.close()
    assert not buf.closed
    raw = buf.getvalue()
    assert raw[16:20] == struct.pack("<I", 10)
    assert raw[24:] == struct.pack("<IIII", 0, 1000, 10, 16) + b"0123456789"
