"""One-line, tcpdump-style text for a TCP segment (used by --trace). Imports stack.wire.

    10.77.0.2.5000 > 10.77.0.1.40000: Flags [S.], seq 1, ack 2, win 64240,
    options [mss 1460,sackOK,TS val 1 ecr 2,nop,wscale 7], length 0

Options are listed in the order `TcpSegment.build` lays them out (Linux's), NOPs
included: the parsed view keeps option values, not their order on the wire.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from stack.wire.tcp import Flags, TcpSegment

# tcpdump's tcp_flag_values order (print-tcp.c): FIN SYN RST PSH ACK URG ECE CWR.
_FLAG_CHARS = (
    (Flags.FIN, "F"),
    (Flags.SYN, "S"),
    (Flags.RST, "R"),
    (Flags.PSH, "P"),
    (Flags.ACK, "."),
    (Flags.URG, "U"),
    (Flags.ECE, "E"),
    (Flags.CWR, "W"),
)
_MASK = 0xFFFFFFFF


def format_flags(flags: int) -> str:
    """tcpdump's flag letters, e.g. "S." for SYN+ACK, "none" for no flags."""
    return "".join(char for flag, char in _FLAG_CHARS if flags & flag) or "none"


def format_options(seg: TcpSegment, ack_base: int = 0) -> list[str]:
    """The options as tcpdump names them, in build order; SACK edges relative to ack_base."""
    items: list[str] = []
    if seg.mss is not None:
        items.append(f"mss {seg.mss}")
    if seg.timestamps is not None:
        items.extend(["sackOK"] if seg.sack_permitted else ["nop", "nop"])
        items.append(f"TS val {seg.timestamps[0]} ecr {seg.timestamps[1]}")
    elif seg.sack_permitted:
        items.extend(["nop", "nop", "sackOK"])
    if seg.wscale is not None:
        items.extend(["nop", f"wscale {seg.wscale}"])
    if seg.sack:
        blocks = "".join(
            f"{{{(left - ack_base) & _MASK}:{(right - ack_base) & _MASK}}}"
            for left, right in seg.sack
        )
        items.extend(["nop", "nop", f"sack {len(seg.sack)} {blocks}"])
    return items


def format_segment(
    seg: TcpSegment,
    src: IPv4Address | IPv6Address,
    dst: IPv4Address | IPv6Address,
    *,
    isn: tuple[int, int] | None = None,
) -> str:
    """tcpdump's line for seg sent from src to dst.

    `isn` = (the sender's ISN, the receiver's ISN) prints sequence and acknowledgment
    numbers (and SACK edges) relative to them, as tcpdump does after the handshake.
    """
    seq_base, ack_base = isn if isn is not None else (0, 0)
    seq = (seg.seq - seq_base) & _MASK
    length = len(seg.payload)
    parts = [f"{src}.{seg.src_port} > {dst}.{seg.dst_port}: Flags [{format_flags(seg.flags)}]"]
    # tcpdump shows seq for data ("first:end") and for SYN/FIN/RST; a bare ACK has none.
    if length:
        parts.append(f"seq {seq}:{(seq + length) & _MASK}")
    elif seg.flags & (Flags.SYN | Flags.FIN | Flags.RST):
        parts.append(f"seq {seq}")
    if seg.flags & Flags.ACK:
        parts.append(f"ack {(seg.ack - ack_base) & _MASK}")
    parts.append(f"win {seg.window}")
    if seg.flags & Flags.URG:
        parts.append(f"urg {seg.urgent}")
    options = format_options(seg, ack_base)
    if options:
        parts.append(f"options [{','.join(options)}]")
    parts.append(f"length {length}")
    return ", ".join(parts)
