"""An IP packet with its offload facts (the virtio-net header's), and software GSO.

Imports the standard library and stack.wire (WireError, checksum).

Between the host and a link a packet is either plain `bytes` (an IP packet, checksums
done, at most one MTU) or a `Packet`, which also says what the virtio-net header of a
TUN opened with IFF_VNET_HDR says (virtio spec §5.1.6, struct virtio_net_hdr):

- `gso_type`/`gso_size`: a TCP super-packet (GSO_TCPV4, GSO_TCPV6) whose payload is cut
  into `gso_size`-byte segments on the way (by the kernel on send, as TSO does; the
  kernel's GRO made it from such segments on receive);
- `needs_csum` with `csum_start`/`csum_offset`: the checksum field at csum_start +
  csum_offset holds only the pseudo-header sum, and the ones' complement sum from
  csum_start to the end is still to be folded in (CHECKSUM_PARTIAL);
- `data_valid`: the kernel already verified the checksum.

The bytes are `head + body`: a received packet is all `head` (a memoryview into the
read buffer, no copy); one the host builds keeps its headers in `head` and the payload
in `body`, a memoryview into the send buffer, so the link writes both with one writev
and the payload is never joined to its headers in Python.
"""

from __future__ import annotations

import struct

from stack.wire import WireError
from stack.wire.checksum import ones_sum

VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size  # 10: no mergeable receive buffers
F_NEEDS_CSUM = 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM
F_DATA_VALID = 2  # VIRTIO_NET_HDR_F_DATA_VALID
GSO_NONE = 0  # VIRTIO_NET_HDR_GSO_NONE
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_ECN = 0x80  # flag bit: the segments carry ECN (CWR only on the first)
TCP_CSUM_OFFSET = 16  # the checksum field's offset in the TCP header (RFC 9293 §3.1)
NO_OFFLOAD_HDR = bytes(VNET_HDR_LEN)  # a whole packet, checksums done

_U16 = struct.Struct("!H")
_IPV4_FIXED = 20
_IPV6_FIXED = 40
_TCP_FIN_PSH = 0x09
_TCP_CWR = 0x80


class Packet:
    """One IP packet (`head + body`) and its offload facts; see the module docstring."""

    __slots__ = (
        "body",
        "csum_offset",
        "csum_start",
        "data_valid",
        "gso_size",
        "gso_type",
        "head",
        "needs_csum",
    )

    def __init__(
        self,
        head: bytes | bytearray | memoryview,
        body: bytes | bytearray | memoryview = b"",
        *,
        gso_type: int = GSO_NONE,
        gso_size: int = 0,
        needs_csum: bool = False,
        csum_start: int = 0,
        csum_offset: int = 0,
        data_valid: bool = False,
    ) -> None:
        self.head = head
        self.body = body
        self.gso_type = gso_type
        self.gso_size = gso_size
        self.needs_csum = needs_csum
        self.csum_start = csum_start
        self.csum_offset = csum_offset
        self.data_valid = data_valid

    @classmethod
    def from_vnet(cls, raw: bytes | bytearray | memoryview) -> Packet:
        """A packet read from a TUN with IFF_VNET_HDR: the header, then the IP packet (a
        memoryview into `raw`, no copy). Raises WireError when the header is cut short."""
        if len(raw) < VNET_HDR_LEN:
            raise WireError("truncated", f"virtio-net header of {len(raw)} bytes < {VNET_HDR_LEN}")
        flags, gso_type, _, gso_size, start, offset = VNET_HDR.unpack_from(raw)
        return cls(
            memoryview(raw)[VNET_HDR_LEN:],
            gso_type=gso_type & ~GSO_ECN,
            gso_size=gso_size if gso_type & ~GSO_ECN else 0,
            needs_csum=bool(flags & F_NEEDS_CSUM),
            csum_start=start,
            csum_offset=offset,
            data_valid=bool(flags & F_DATA_VALID),
        )

    def vnet_header(self) -> bytes:
        """The virtio-net header to write before this packet (hdr_len: the headers)."""
        flags = (F_NEEDS_CSUM if self.needs_csum else 0) | (F_DATA_VALID if self.data_valid else 0)
        if not flags and not self.gso_type:
            return NO_OFFLOAD_HDR
        hdr_len = len(self.head) if self.body else 0
        if self.needs_csum:
            hdr_len = max(hdr_len, self.csum_start + self.csum_offset + 2)
        return VNET_HDR.pack(
            flags, self.gso_type, hdr_len, self.gso_size, self.csum_start, self.csum_offset
        )

    @property
    def is_gso(self) -> bool:
        return self.gso_type != GSO_NONE and self.gso_size > 0

    @property
    def checksum_trusted(self) -> bool:
        """The transport checksum need not be verified: the kernel verified it
        (DATA_VALID), or the packet never crossed a wire and its checksum was left for
        the device to finish (NEEDS_CSUM)."""
        return self.needs_csum or self.data_valid

    def __len__(self) -> int:
        return len(self.head) + len(self.body)

    def __bytes__(self) -> bytes:
        """The IP packet as it stands (a partial checksum stays partial)."""
        return b"".join((self.head, self.body)) if self.body else bytes(self.head)

    def finished(self) -> bytes:
        """The IP packet with its transport checksum completed, as a device with checksum
        offload puts it on the wire (what a capture of that wire shows)."""
        data = bytes(self)
        if not self.needs_csum:
            return data
        field = self.csum_start + self.csum_offset
        if self.csum_start > len(data) or field + 2 > len(data):
            return data  # malformed facts: leave the packet to the receiver to drop
        buf = bytearray(data)
        _U16.pack_into(buf, field, ~ones_sum(memoryview(buf)[self.csum_start :]) & 0xFFFF)
        return bytes(buf)

    def segments(self) -> list[bytes]:
        """Software GSO: the wire packets a super-packet stands for, each with its IP and
        TCP checksums done, as the kernel's tcp_gso_segment() cuts it (each segment the
        headers with SEQ advanced; FIN and PSH only on the last, CWR only on the first;
        IPv4 identification counting up). A packet that is not GSO is returned whole
        (its checksum finished)."""
        data = self.finished() if not self.is_gso else bytes(self)
        if not self.is_gso:
            return [data]
        version = data[0] >> 4
        if version == 4:
            ip_len = (data[0] & 0x0F) * 4
        elif version == 6:
            ip_len = _IPV6_FIXED
        else:
            raise WireError("bad-version", f"IP version {version} in a GSO packet")
        if len(data) < ip_len + 20:
            raise WireError("truncated", "GSO packet shorter than its headers")
        tcp_len = (data[ip_len + 12] >> 4) * 4
        hdr = ip_len + tcp_len
        if tcp_len < 20 or hdr > len(data):
            raise WireError("bad-data-offset", "GSO packet's TCP header overruns it")
        payload = memoryview(data)[hdr:]
        size = self.gso_size
        seq0 = int.from_bytes(data[ip_len + 4 : ip_len + 8], "big")
        flags0 = data[ip_len + 13]
        src_dst = data[12:20] if version == 4 else data[8:40]
        ident0 = int.from_bytes(data[4:6], "big") if version == 4 else 0
        out: list[bytes] = []
        count = -(-len(payload) // size)
        for i in range(count):
            chunk = payload[i * size : (i + 1) * size]
            ip = bytearray(data[:ip_len])
            tcp = bytearray(data[ip_len:hdr])
            tcp_length = tcp_len + len(chunk)
            if version == 4:
                _U16.pack_into(ip, 2, ip_len + tcp_length)
                _U16.pack_into(ip, 4, (ident0 + i) & 0xFFFF)
                _U16.pack_into(ip, 10, 0)
                _U16.pack_into(ip, 10, ~ones_sum(ip) & 0xFFFF)
            else:
                _U16.pack_into(ip, 4, tcp_length)
            struct.pack_into("!I", tcp, 4, (seq0 + i * size) & 0xFFFFFFFF)
            flags = flags0
            if i != count - 1:
                flags &= ~_TCP_FIN_PSH
            if i:
                flags &= ~_TCP_CWR
            tcp[13] = flags
            _U16.pack_into(tcp, TCP_CSUM_OFFSET, 0)
            pseudo = _pseudo_sum(src_dst, tcp_length)
            total = ones_sum(chunk, ones_sum(tcp, pseudo))
            _U16.pack_into(tcp, TCP_CSUM_OFFSET, ~total & 0xFFFF)
            out.append(b"".join((ip, tcp, chunk)))
        return out

    def __repr__(self) -> str:
        facts = []
        if self.is_gso:
            facts.append(f"gso_type={self.gso_type}, gso_size={self.gso_size}")
        if self.needs_csum:
            facts.append(f"needs_csum@{self.csum_start}+{self.csum_offset}")
        if self.data_valid:
            facts.append("data_valid")
        return f"Packet({len(self)} bytes{', ' if facts else ''}{', '.join(facts)})"


def _pseudo_sum(src_dst: bytes, tcp_length: int) -> int:
    """The TCP pseudo-header sum from the packed addresses (IPv4 or IPv6) and length."""
    return ones_sum(src_dst, 6 + tcp_length)
