"""What `pytcp plot` draws, worked out without matplotlib: packets from a pcap (pytcp's
own --pcap or any tcpdump capture) or a --record file, grouped into connections, and for
one of them the time-sequence data (tcptrace's "Stevens" graph) and the congestion and
RTT series. Imports the standard library and stack.wire (the parsers).

Time-sequence, for the direction that carried the most data, numbers relative to its
ISN and seconds from the connection's first packet: `data` (a vertical stroke per
segment, from seq to seq+len; `retransmission` when it ends at or below what was sent
already), `acks` (the receiver's cumulative ACK), `window` (ACK + its advertised window,
scaled when both SYNs carried window scale), `sacks` (each SACK block), `dupacks` (an
ACK with no data, SYN or FIN repeating the last ACK and window while data is out).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from stack.wire import Ipv4Header, TcpSegment, WireError
from stack.wire.ipv6 import Ipv6Header

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
              b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}  # fmt: skip
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_SLL2 = 0, 1, 101, 113, 276
LINK_IPV4, LINK_IPV6 = 228, 229
SYN, FIN, RST, ACK = 2, 1, 4, 16
BIG = 1 << 30  # an ssthresh this large is "not set yet": not drawn


class PlotError(Exception):
    """Input that cannot be plotted; the message is one line."""


@dataclass
class Packet:
    t: float  # seconds
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    win: int
    length: int
    sack: list[tuple[int, int]] = field(default_factory=list)
    wscale: int | None = None

    @property
    def sender(self) -> tuple[str, int]:
        return (self.src, self.sport)


@dataclass
class Connection:
    key: frozenset[tuple[str, int]]
    first: tuple[str, int]  # the endpoint that sent the first packet seen
    ident: str  # "1", "2", ... in order of appearance, or the record's PID.N
    packets: list[Packet] = field(default_factory=list)
    tcb: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        a = self.first
        (b,) = [e for e in self.key if e != a] or [a]
        return f"{_ep(a)} <-> {_ep(b)}"


@dataclass
class TimeSequence:
    sender: tuple[str, int]
    receiver: tuple[str, int]
    data: list[tuple[float, int, int, bool]] = field(default_factory=list)
    acks: list[tuple[float, int]] = field(default_factory=list)
    window: list[tuple[float, int]] = field(default_factory=list)
    sacks: list[tuple[float, int, int]] = field(default_factory=list)
    dupacks: list[tuple[float, int]] = field(default_factory=list)

    @property
    def retransmissions(self) -> list[tuple[float, int, int, bool]]:
        return [d for d in self.data if d[3]]


def _ep(ep: tuple[str, int]) -> str:
    return f"[{ep[0]}]:{ep[1]}" if ":" in ep[0] else f"{ep[0]}:{ep[1]}"


# --------------------------------------------------------------------------- input


def load(path: str) -> list[Connection]:
    """The connections in a pcap or record file, in order of appearance."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head in PCAP_MAGIC:
                return _group(_read_pcap(f.read()), None)
            if head == b"\x0a\x0d\x0d\x0a":
                raise PlotError(f"{path} is pcapng; convert it: tcpdump -r {path} -w out.pcap")
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise PlotError(f"cannot read {path}: {exc.strerror}") from None
    return _read_record(text, path)


def _read_pcap(data: bytes) -> list[Packet]:
    if len(data) < 24:
        raise PlotError("truncated pcap header")
    order, unit = PCAP_MAGIC[data[:4]]
    linktype = struct.unpack(order + "I", data[20:24])[0] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    packets: list[Packet] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        off += 16
        frame = data[off : off + incl]
        off += incl
        ip = _ip_of(frame, linktype, order)
        if ip is None:
            continue
        pkt = _parse_ip(ip, sec + frac * unit)
        if pkt is not None:
            packets.append(pkt)
    return packets


def _ip_of(frame: bytes, linktype: int, order: str) -> bytes | None:
    if linktype in (LINK_RAW, LINK_IPV4, LINK_IPV6):
        return frame
    if linktype == LINK_ETHERNET:
        off, ethertype = 14, int.from_bytes(frame[12:14], "big")
        while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:  # VLAN tags
            ethertype = int.from_bytes(frame[off + 2 : off + 4], "big")
            off += 4
        return frame[off:] if ethertype in (0x0800, 0x86DD) else None
    if linktype == LINK_SLL:
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == LINK_SLL2:
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == LINK_NULL:
        return frame[4:]
    return None


def _parse_ip(raw: bytes, t: float) -> Packet | None:
    try:
        if not raw:
            return None
        hdr: Ipv4Header | Ipv6Header
        if raw[0] >> 4 == 4:
            hdr, payload = Ipv4Header.parse(raw)
        elif raw[0] >> 4 == 6:
            hdr, payload = Ipv6Header.parse(raw)
        else:
            return None
        if hdr.protocol != 6:
            return None
        seg = TcpSegment.parse(payload, hdr.src, hdr.dst, verify_checksum=False)
    except (WireError, ValueError):
        return None
    return Packet(t, str(hdr.src), seg.src_port, str(hdr.dst), seg.dst_port, seg.seq, seg.ack,
                  int(seg.flags), seg.window, len(seg.payload), list(seg.sack),
                  seg.wscale)  # fmt: skip


def _read_record(text: str, path: str) -> list[Connection]:
    packets: list[tuple[str, Packet]] = []
    tcbs: dict[str, list[dict[str, Any]]] = {}
    lines = text.splitlines()
    try:
        first = json.loads(lines[0]) if lines else None
    except ValueError:
        first = None
    if not isinstance(first, dict) or first.get("kind") != "record":
        raise PlotError(f"{path} is neither a pcap nor a pytcp --record file")
    for n, line in enumerate(lines[1:], 2):
        try:
            obj = json.loads(line)
        except ValueError:
            if n == len(lines):
                break  # a last line cut short by a crash
            raise PlotError(f"{path}:{n}: not a JSON line") from None
        kind, conn = obj.get("kind"), obj.get("conn")
        if kind in ("segment-in", "segment-out") and conn:
            pkt = Packet(obj["t"] / 1e9, obj["src"], obj["sport"], obj["dst"], obj["dport"],
                         obj["seq"], obj["ack"], obj["flags"], obj["win"], obj["len"],
                         [(b[0], b[1]) for b in obj.get("sack") or []],
                         obj.get("wscale"))  # fmt: skip
            packets.append((conn, pkt))
        elif kind == "tcb" and conn:
            tcbs.setdefault(conn, []).append(obj)
    conns = _group([p for _, p in packets], [c for c, _ in packets])
    for conn in conns:
        conn.tcb = tcbs.get(conn.ident, [])
    known = {c.ident for c in conns}
    for ident, rows in tcbs.items():
        if ident not in known:
            conns.append(Connection(frozenset(), ("?", 0), ident, [], rows))
    return conns


def _group(packets: list[Packet], idents: list[str] | None) -> list[Connection]:
    conns: dict[frozenset[tuple[str, int]], Connection] = {}
    for n, pkt in enumerate(packets):
        key = frozenset({(pkt.src, pkt.sport), (pkt.dst, pkt.dport)})
        conn = conns.get(key)
        if conn is None:
            ident = idents[n] if idents is not None else str(len(conns) + 1)
            conn = conns[key] = Connection(key, pkt.sender, ident)
        conn.packets.append(pkt)
    return list(conns.values())


def choose(conns: list[Connection], wanted: str | None) -> Connection:
    """The connection `wanted` names (an ID, or ADDR:PORT[,ADDR:PORT]); the only one
    when None. PlotError lists them when the choice is not clear."""
    listing = "; ".join(f"{c.ident}: {c.describe()}" for c in conns)
    if not conns:
        raise PlotError("no TCP connection in the input")
    if wanted is None:
        if len(conns) == 1:
            return conns[0]
        raise PlotError(f"{len(conns)} connections; choose one with --conn ({listing})")
    for conn in conns:
        if conn.ident == wanted:
            return conn
    endpoints = [_parse_ep(part) for part in wanted.replace("-", ",").split(",") if part]
    found = [c for c in conns if all(e in c.key for e in endpoints)] if endpoints else []
    if len(found) == 1:
        return found[0]
    raise PlotError(f"--conn {wanted} matches {len(found)} connections ({listing})")


def _parse_ep(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not host:
        raise PlotError(f"--conn: {text!r} is neither an ID nor ADDR:PORT")
    return (host, int(port))


# --------------------------------------------------------------------------- analysis


def time_sequence(conn: Connection) -> TimeSequence:
    """The time-sequence data of the direction of `conn` that carried the most bytes."""
    sent: dict[tuple[str, int], int] = {}
    for p in conn.packets:
        sent[p.sender] = sent.get(p.sender, 0) + p.length
    if not sent:
        raise PlotError("the connection has no packets to plot")
    sender = max(sent, key=lambda e: (sent[e], e == conn.first))
    others = [e for e in conn.key if e != sender]
    receiver = others[0] if others else sender
    syn_ws: dict[tuple[str, int], int | None] = {}
    isn: int | None = None
    for p in conn.packets:
        if p.flags & SYN:
            syn_ws[p.sender] = p.wscale
            if p.sender == sender:
                isn = p.seq
    if isn is None:
        isn = next((p.seq for p in conn.packets if p.sender == sender), 0)
    scaled = syn_ws.get(sender) is not None and syn_ws.get(receiver) is not None
    shift = (syn_ws.get(receiver) or 0) if scaled else 0
    t0 = conn.packets[0].t
    ts = TimeSequence(sender, receiver)
    high: int | None = None
    last_ack: tuple[int, int] | None = None
    for p in conn.packets:
        t = p.t - t0
        if p.sender == sender:
            seg_len = p.length + (1 if p.flags & (SYN | FIN) else 0)
            if p.length:
                start = (p.seq - isn) % 2**32
                end = start + p.length
                retrans = high is not None and end <= high
                ts.data.append((t, start, end, retrans))
            if seg_len:
                end = ((p.seq - isn) % 2**32) + seg_len
                high = end if high is None else max(high, end)
        elif p.flags & ACK:
            rel = (p.ack - isn) % 2**32
            if rel > 2**31:
                continue  # an ACK from before our ISN (a wrapped or foreign number)
            win = p.win << shift if not p.flags & SYN else p.win
            if (not p.length and not p.flags & (SYN | FIN) and last_ack == (rel, win)
                    and high is not None and rel < high):  # fmt: skip
                ts.dupacks.append((t, rel))
            last_ack = (rel, win)
            ts.acks.append((t, rel))
            ts.window.append((t, rel + win))
            for left, right in p.sack:
                ts.sacks.append((t, (left - isn) % 2**32, (right - isn) % 2**32))
    return ts


def congestion(conn: Connection) -> dict[str, list[tuple[float, float]]]:
    """From a record's tcb lines: cwnd, ssthresh (while set), flight, the peer's window
    (snd_wnd) and ours (rcv_wnd) in bytes; srtt and rto in ms; seconds from the first."""
    rows = conn.tcb
    if not rows:
        raise PlotError(f"connection {conn.ident} has no TCB lines: record it with --record")
    t0 = rows[0]["t"]
    out: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("cwnd", "ssthresh", "in_flight", "snd_wnd", "rcv_wnd", "srtt", "rto")
    }
    for r in rows:
        t = (r["t"] - t0) / 1e9
        for k in ("cwnd", "in_flight", "snd_wnd", "rcv_wnd"):
            out[k].append((t, r[k]))
        if r["ssthresh"] is not None and r["ssthresh"] < BIG:
            out["ssthresh"].append((t, r["ssthresh"]))
        for k in ("srtt", "rto"):
            if r[k] is not None:
                out[k].append((t, r[k] / 1e6))
    return out
