"""Pure renderers for `pytcp inspect`, `send` and `close`: snapshot dicts in, text out.

Snapshots have the shape docs/internals.md gives for `Connection.snapshot()` (plus the
`id`, `pid` and `tun` the control endpoint adds). Nothing here does I/O or reads a clock.
Imports the standard library, and tabulate when a table is drawn.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SEQ_MOD = 1 << 32

LIST_HEADERS = ("ID", "STATE", "LOCAL", "REMOTE", "SEND-Q", "RECV-Q", "CWND", "SRTT", "RTO",
                "TIMERS")  # fmt: skip


def duration(ns: int | None) -> str:
    """A nanosecond duration in the unit that reads best, 4 significant digits: 1.25s,
    40ms, 875us, 312.5us, 750ns; "0" only for zero itself (a sub-millisecond RTT keeps its
    microseconds)."""
    if ns is None:
        return "-"
    if ns == 0:
        return "0"
    sign = "-" if ns < 0 else ""
    a = abs(ns)
    if a >= 1_000_000_000:
        return f"{sign}{a / 1e9:.4g}s"
    if a >= 1_000_000:
        return f"{sign}{a / 1e6:.4g}ms"
    if a >= 1_000:
        return f"{sign}{a / 1e3:.4g}us"
    return f"{sign}{a}ns"


def remaining(ns: int | None) -> str:
    """Time left on a timer: `in 59.5s`, `overdue 3ms` (it fires on the owner's next
    iteration), `-` when not armed."""
    if ns is None:
        return "-"
    if ns < 0:
        return f"overdue {duration(-ns)}"
    return f"in {duration(ns)}"


def monotonic_seconds(ns: int | None) -> str:
    """A deadline on the stack's clock (CLOCK_MONOTONIC, shared by every process on the
    host) in seconds with millisecond precision: `81234.567s`."""
    if ns is None:
        return "-"
    return f"{ns / 1e9:.3f}s"


def endpoint(ep: Mapping[str, Any] | None) -> str:
    """`addr:port`, `*:port` for a wildcard listener, `-` when absent."""
    if not ep:
        return "-"
    addr = ep.get("addr") or "*"
    if addr in ("0.0.0.0", "::"):
        addr = "*"
    if ":" in str(addr) and addr != "*":
        return f"[{addr}]:{ep.get('port')}"
    return f"{addr}:{ep.get('port')}"


def path_mtu(opt: Mapping[str, Any]) -> str:
    """`1500`, or `552, learned (raised again in 9.98m)` while an ICMP-learned estimate
    holds (RFC 1191 §6.3)."""
    mtu = _v(opt.get("path_mtu"))
    expires = opt.get("path_mtu_expires")
    if expires is None:
        return mtu
    return f"{mtu}, learned (raised again in {duration(expires)})"


def rel(value: int | None, base: int | None) -> str:
    """`value` relative to `base` modulo 2**32 (RFC 9293 sequence space), or `-`."""
    if value is None or base is None:
        return "-"
    return str((value - base) % SEQ_MOD)


def _keepalive(ka: Any) -> str:
    if not isinstance(ka, Mapping):
        return "off"
    return (
        f"idle {duration(ka.get('idle'))}, every {duration(ka.get('interval'))}, "
        f"{_v(ka.get('count'))} probes"
    )


def _flat(d: Any, prefix: str = "") -> str:
    """`a 1, b.c 2`: a nested mapping on one line."""
    if not isinstance(d, Mapping) or not d:
        return "-"
    parts = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            parts.append(_flat(v, f"{prefix}{k}."))
        else:
            parts.append(f"{prefix}{k} {_v(v)}")
    return ", ".join(parts)


def _v(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def armed_timers(entry: Mapping[str, Any]) -> str:
    """`name remaining` for each armed timer, comma separated; `-` when none is armed."""
    parts = [
        f"{t['name']} {duration(t.get('remaining'))}"
        for t in entry.get("timers", [])
        if t.get("armed")
    ]
    return ", ".join(parts) if parts else "-"


def list_row(entry: Mapping[str, Any]) -> list[str]:
    """One `pytcp inspect` row: the columns of LIST_HEADERS."""
    buffers = entry.get("buffers", {})
    cc = entry.get("congestion", {})
    rtt = entry.get("rtt", {})
    if entry.get("state") == "LISTEN":
        # As ss(8) shows listeners: RECV-Q the accept queue, SEND-Q the backlog.
        queues = [_v(entry.get("backlog")), _v(entry.get("accept_queue"))]
        return [str(entry.get("id")), "LISTEN", endpoint(entry.get("local")), "*:*",
                *queues, "-", "-", "-", "-"]  # fmt: skip
    return [
        str(entry.get("id")),
        _v(entry.get("state")),
        endpoint(entry.get("local")),
        endpoint(entry.get("remote")),
        _v(buffers.get("send_queued")),
        _v(buffers.get("unread")),
        _v(cc.get("cwnd")),
        duration(rtt.get("srtt")),
        duration(rtt.get("rto")),
        armed_timers(entry),
    ]


ELLIPSIS = ".."  # ASCII: what a shortened cell or line lost (any terminal, any locale)
LIST_GAP = 2  # spaces between the list's columns
LIST_MAIN = 6  # ID, STATE, LOCAL, REMOTE, SEND-Q, RECV-Q: the first line of a narrow list
LIST_LOCAL, LIST_REMOTE = 2, 3  # their indexes in LIST_HEADERS
ENDPOINT_MIN = 12  # narrowest an address column gets: `[fd..:2]:5000`


def clip(text: str, width: int | None) -> str:
    """`text` cut to `width` columns, ending in `..` when anything was cut."""
    if width is None or len(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return text[:width]
    return text[: width - len(ELLIPSIS)] + ELLIPSIS


def elide_endpoint(text: str, width: int) -> str:
    """`addr:port` in at most `width` columns: the port is kept whole and the middle of
    the address gives way (`[2001:db8:..:7334]:443`), its start and end still there to
    tell it from its neighbours."""
    if len(text) <= width:
        return text
    head, sep, port = text.rpartition(":")
    if not sep or not head:
        return clip(text, width)
    room = width - len(port) - 1 - len(ELLIPSIS)  # what the address itself may keep
    if head.startswith("[") and head.endswith("]"):
        inner, room = head[1:-1], room - 2
        fmt = "[{}]"
    else:
        inner, fmt = head, "{}"
    if room < 2:
        return clip(text, width)
    front = (room + 1) // 2
    back = room - front
    return fmt.format(inner[:front] + ELLIPSIS + (inner[-back:] if back else "")) + ":" + port


def _table(rows: list[list[str]]) -> list[str]:
    """Rows as lines: each column as wide as its widest cell, LIST_GAP apart."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    gap = " " * LIST_GAP
    return [
        gap.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _narrow_list(rows: list[list[str]], width: int) -> list[str]:
    """The list for a terminal narrower than its one-line table (every IPv4 row with
    an armed timer passes 80 columns): each connection's first line holds who it is
    and its queues, the columns ss(8) puts first; the next, indented as `ss -i`
    indents, names the rest (cwnd, srtt, rto, then the timers, on a third line when
    they do not fit on the second), cut at the width. Addresses
    too long for their column are shortened in the middle, the port kept."""
    main = [r[:LIST_MAIN] for r in rows]
    widths = [max(len(r[c]) for r in main) for c in range(LIST_MAIN)]
    over = sum(widths) + LIST_GAP * (LIST_MAIN - 1) - width
    local, remote = widths[LIST_LOCAL], widths[LIST_REMOTE]
    while over > 0 and max(local, remote) > ENDPOINT_MIN:
        if local >= remote:
            local -= 1
        else:
            remote -= 1
        over -= 1
    for row in main[1:]:
        row[LIST_LOCAL] = elide_endpoint(row[LIST_LOCAL], local)
        row[LIST_REMOTE] = elide_endpoint(row[LIST_REMOTE], remote)
    firsts = _table(main)
    lines = [firsts[0]]
    for first, row in zip(firsts[1:], rows[1:], strict=True):
        lines.append(first)
        cwnd, srtt, rto, timers = row[LIST_MAIN:]
        if row[1] == "LISTEN":
            continue
        indent = " " * LIST_GAP
        info, armed = f"cwnd {cwnd}  srtt {srtt}  rto {rto}", f"timers {timers}"
        if len(indent + info + indent + armed) <= width:
            lines.append(indent + info + indent + armed)
        else:  # the timers on a line of their own rather than cut
            lines += [indent + info, indent + armed]
    return [clip(line, width) for line in lines]


def render_list(entries: Iterable[Mapping[str, Any]], width: int | None = None) -> str:
    """The `pytcp inspect` table (newline-terminated), one line per connection, columns
    two spaces apart; a one-line note when it is empty. With `width` (a terminal's
    columns) no line is wider: a table that does not fit takes two lines per
    connection (_narrow_list)."""
    rows = [list(LIST_HEADERS), *(list_row(e) for e in entries)]
    if len(rows) == 1:
        return "no live pytcp connections\n"
    lines = _table(rows)
    if width is not None and max(len(line) for line in lines) > width:
        lines = _narrow_list(rows, width)
    return "".join(line + "\n" for line in lines)


def _challenge_budget(budget: Mapping[str, Any] | None) -> str:
    """The host-wide challenge-ACK budget (stack.host.ChallengeAckBudget) in one line."""
    if not budget:
        return "-"
    if budget.get("limit") is None:
        return "no host-wide limit"
    left = budget.get("left") if budget.get("second") is not None else None
    drawn = "none drawn yet" if left is None else f"{left} left of the last allowance"
    return f"host-wide limit {budget['limit']}/s (randomized allowance), {drawn}"


def render_hosts(hosts: Iterable[Mapping[str, Any]]) -> str:
    """`pytcp inspect --host`: per process, the host's packet counters, its host-wide
    challenge-ACK budget, the packets it dropped before any connection saw them (by
    reason), and its control endpoint's."""
    out = []
    for h in hosts:
        host = h.get("host") or {}
        c = host.get("counters") or {}
        drops = c.get("drops") or {}
        control = h.get("control") or {}
        ccounters = control.get("counters") or {}
        addresses = ", ".join(a for a in (host.get("address"), host.get("address6")) if a)
        rows = [
            ["address", addresses or "-"],
            ["packets", f"in {_v(c.get('packets_in'))}, out {_v(c.get('packets_out'))}"],
            ["RST sent", _v(c.get("rst_sent"))],
            ["challenge ACKs", _challenge_budget(host.get("challenge_acks"))],
            ["ICMP", f"in {_v(c.get('icmp_in'))}, out {_v(c.get('icmp_out'))}"],
            ["dropped", ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"],
            ["connections", f"{_v(host.get('connections'))} live, "
                            f"{_v(host.get('time_waits'))} in TIME-WAIT records, "
                            f"{_v(host.get('listeners'))} listening"],
            ["control", f"{_v(control.get('clients'))} clients; "
                        + (", ".join(f"{k} {v}" for k, v in sorted(ccounters.items()))
                           or "no refusals")],
        ]  # fmt: skip
        out.append(_section(f"process {h.get('pid')} ({h.get('tun') or '-'})", rows))
    if not out:
        return "no live pytcp processes\n"
    return "\n".join(out)


def matches(
    entry: Mapping[str, Any], *, states: Iterable[str] = (), port: int | None = None
) -> bool:
    """The `-s/--state` and `--port` filters: state is one of `states` (any when empty;
    case-insensitive, `_` for `-`) and `port` is the local or remote port."""
    wanted = {s.upper().replace("_", "-") for s in states}
    if wanted and str(entry.get("state")).upper() not in wanted:
        return False
    if port is not None:
        ports = {(entry.get("local") or {}).get("port"), (entry.get("remote") or {}).get("port")}
        if port not in ports:
            return False
    return True


def _tabulate(rows: list[list[str]], headers: list[str]) -> str:
    # Imported on first use: tabulate loads importlib.metadata and email (~25 ms), which
    # connect, listen and send do not need for their data path.
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True)


def _section(title: str, rows: list[list[str]], headers: Iterable[str] = ()) -> str:
    table = _tabulate(rows, list(headers))
    body = "\n".join("  " + line for line in table.splitlines())
    return f"{title}\n{body}\n"


def render_tcb(entry: Mapping[str, Any]) -> str:
    """`pytcp inspect ID`: the whole control block in sections, then the timers table."""
    out = [
        _section(
            "Connection",
            [
                ["id", _v(entry.get("id"))],
                ["state", _v(entry.get("state"))],
                ["local", endpoint(entry.get("local"))],
                ["remote", endpoint(entry.get("remote"))],
                ["process", _v(entry.get("pid"))],
                ["tun", _v(entry.get("tun"))],
            ],
        )
    ]
    if entry.get("state") == "LISTEN":
        known = {"id", "state", "local", "remote", "pid", "tun"}
        extra = [
            [k, ", ".join(f"{a} {b}" for a, b in sorted(v.items())) or "none"]
            if isinstance(v, Mapping)
            else [k, _v(v)]
            for k, v in sorted(entry.items())
            if k not in known
        ]
        if extra:
            out.append(_section("Listener", extra))
        return "\n".join(out)
    link = entry.get("link")
    if isinstance(link, Mapping):
        out.append(
            _section(
                "Link (offloads, for the whole interface)",
                [
                    ["offloads rx", "+".join(link.get("offloads_rx") or []) or "none"],
                    ["offloads tx", "+".join(link.get("offloads_tx") or []) or "none"],
                    [
                        "GSO in",
                        f"{_v(link.get('gso_packets_in'))} super-packets, "
                        f"{_v(link.get('gso_segments_in'))} segments",
                    ],
                    [
                        "GSO out",
                        f"{_v(link.get('gso_packets_out'))} super-packets, "
                        f"{_v(link.get('gso_segments_out'))} segments",
                    ],
                    ["checksums trusted", _v(link.get("csum_trusted_in"))],
                    ["TSO refused", _tso_refused(link)],
                ],
            )
        )
    snd = entry.get("send", {})
    rcv = entry.get("receive", {})
    iss, irs = snd.get("iss"), rcv.get("irs")
    seq_headers = ("", "raw", "relative")
    out.append(
        _section(
            "Send sequence space (relative to ISS; SND.WL1 to IRS)",
            [
                ["ISS", _v(iss), rel(iss, iss)],
                ["SND.UNA", _v(snd.get("snd_una")), rel(snd.get("snd_una"), iss)],
                ["SND.NXT", _v(snd.get("snd_nxt")), rel(snd.get("snd_nxt"), iss)],
                ["SND.MAX", _v(snd.get("snd_max")), rel(snd.get("snd_max"), iss)],
                ["SND.WND", _v(snd.get("snd_wnd")), ""],
                ["SND.WL1", _v(snd.get("snd_wl1")), rel(snd.get("snd_wl1"), irs)],
                ["SND.WL2", _v(snd.get("snd_wl2")), rel(snd.get("snd_wl2"), iss)],
                ["SND.UP", _v(snd.get("snd_up")), rel(snd.get("snd_up"), iss)],
                ["MAX.SND.WND", _v(snd.get("max_snd_wnd")), ""],
                ["SND.SML", _v(snd.get("snd_sml")), rel(snd.get("snd_sml"), iss)],
            ],
            seq_headers,
        )
    )
    out.append(
        _section(
            "Receive sequence space (relative to IRS)",
            [
                ["IRS", _v(irs), rel(irs, irs)],
                ["RCV.NXT", _v(rcv.get("rcv_nxt")), rel(rcv.get("rcv_nxt"), irs)],
                ["RCV.WND", _v(rcv.get("rcv_wnd")), ""],
                ["RCV.UP", _v(rcv.get("rcv_up")), rel(rcv.get("rcv_up"), irs)],
            ],
            seq_headers,
        )
    )
    opt = entry.get("options", {})
    out.append(
        _section(
            "Options",
            [
                [
                    "MSS",
                    f"local {_v(opt.get('mss_local'))}, remote {_v(opt.get('mss_remote'))}, "
                    f"sending {_v(opt.get('snd_mss'))}",
                ],
                [
                    "window scale",
                    f"local {_v(opt.get('wscale_local'))}, remote {_v(opt.get('wscale_remote'))}",
                ],
                ["SACK", _v(opt.get("sack"))],
                ["timestamps", _v(opt.get("timestamps"))],
                ["ECN", _v(opt.get("ecn"))],
                ["path MTU", path_mtu(opt)],
                ["Nagle", "off (nodelay)" if opt.get("nodelay") else "on"],
                ["keepalive", _keepalive(opt.get("keepalive"))],
            ],
        )
    )
    cc = entry.get("congestion", {})
    out.append(
        _section(
            "Congestion",
            [
                ["algorithm", _v(cc.get("algorithm"))],
                ["cwnd", _v(cc.get("cwnd"))],
                ["ssthresh", _v(cc.get("ssthresh"))],
                ["state", _flat(cc.get("state"))],
                [
                    "in flight",
                    f"{_v(cc.get('in_flight'))} (window's largest {_v(cc.get('max_flight'))}, "
                    f"cwnd-limited {_v(cc.get('cwnd_limited'))})",
                ],
                ["phase", _v(cc.get("phase"))],
                ["recover", _v(cc.get("recover"))],
                ["dup ACKs", _v(cc.get("dup_acks"))],
                [
                    "ECN",
                    f"echo {_v(cc.get('ecn_echo'))}, CWR pending {_v(cc.get('cwr_pending'))}, "
                    f"next cut after {_v(cc.get('ecn_recover'))}",
                ],
                [
                    "CWV",
                    f"pipeACK {_v(cc.get('pipe_ack'))}, "
                    + (
                        "validated"
                        if cc.get("nvp_since") is None
                        else f"non-validated since {monotonic_seconds(cc.get('nvp_since'))}"
                    ),
                ],
            ],
        )
    )
    rec = entry.get("recovery", {})
    sacked = (
        ", ".join(f"{a}-{b} (+{rel(a, iss)}..+{rel(b, iss)})" for a, b in rec.get("sacked") or [])
        or "none"
    )
    high_rxt = rec.get("high_rxt")
    out.append(
        _section(
            "Recovery",
            [
                ["scoreboard", f"{sacked} ({_v(rec.get('segments'))} records)"],
                [
                    "pipe",
                    f"{_v(rec.get('pipe'))} ({_v(rec.get('sacked_bytes'))} SACKed, "
                    f"{_v(rec.get('lost_bytes'))} lost)",
                ],
                [
                    "HighRxt",
                    f"{_v(high_rxt)} (+{rel(high_rxt, iss)}), rescue {_v(rec.get('rescue_rxt'))}"
                    if high_rxt is not None
                    else f"-, rescue {_v(rec.get('rescue_rxt'))}",
                ],
                [
                    "PRR",
                    f"delivered {_v(rec.get('prr_delivered'))}, out {_v(rec.get('prr_out'))}, "
                    f"RecoverFS {_v(rec.get('recover_fs'))}",
                ],
                [
                    "RACK",
                    f"{'on' if rec.get('rack') else 'off'}, rtt {duration(rec.get('rack_rtt'))}, "
                    f"reo_wnd x{_v(rec.get('reo_wnd_mult'))}, "
                    f"reordering {_v(rec.get('reordering_seen'))}",
                ],
                ["TLP out to", _v(rec.get("tlp_end"))],
                [
                    "undo",
                    "-"
                    if rec.get("undo_retrans") is None
                    else f"{rec.get('undo_retrans')} retransmissions not D-SACKed",
                ],
                ["timer", _v(rec.get("timer_mode"))],
                [
                    "retries",
                    f"{_v(rec.get('retries'))} RTOs, {_v(rec.get('syn_timeouts'))} SYN timeouts, "
                    f"{_v(rec.get('probes_unanswered'))} probes and "
                    f"{_v(rec.get('keepalives_unanswered'))} keepalives unanswered",
                ],
            ],
        )
    )
    rtt = entry.get("rtt", {})
    out.append(
        _section(
            "RTT",
            [
                ["srtt", duration(rtt.get("srtt"))],
                ["rttvar", duration(rtt.get("rttvar"))],
                ["rto", duration(rtt.get("rto"))],
                ["min rtt", duration(rtt.get("min_rtt"))],
                ["samples", _v(rtt.get("samples"))],
                ["backoff", _v(rtt.get("backoff"))],
                [
                    "timing",
                    "-"
                    if rtt.get("timed_seq") is None
                    else f"{rtt.get('timed_seq')} (+{rel(rtt.get('timed_seq'), iss)})",
                ],
                ["Karn", _v(rtt.get("karn"))],
                ["TSfloor", _v(rtt.get("ts_floor"))],
            ],
        )
    )
    buf = entry.get("buffers", {})
    ooo = buf.get("out_of_order") or []
    ooo_text = ", ".join(f"{a}-{b} (+{rel(a, irs)}..+{rel(b, irs)})" for a, b in ooo) or "none"
    out.append(
        _section(
            "Buffers",
            [
                [
                    "send",
                    f"{_v(buf.get('send_queued'))} queued of {_v(buf.get('send_capacity'))}: "
                    f"{_v(buf.get('unacked'))} unacknowledged, {_v(buf.get('unsent'))} unsent",
                ],
                ["receive", f"{_v(buf.get('unread'))} unread of {_v(buf.get('recv_capacity'))}"],
                ["out of order", ooo_text],
                ["SACK order", ", ".join(str(q) for q in rcv.get("sack_order") or []) or "none"],
                ["D-SACK next", "-" if not rcv.get("dsack") else "{}-{}".format(*rcv["dsack"])],
                ["FIN ahead", _v(rcv.get("peer_fin_seq"))],
                [
                    "delayed ACK",
                    f"{_v(rcv.get('unacked_rx'))} bytes unacknowledged, peer MSS "
                    f"{_v(rcv.get('rcv_mss'))}",
                ],
            ],
        )
    )
    cnt = entry.get("counters", {})
    drops = cnt.get("drops") or {}
    drop_text = ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"
    out.append(
        _section(
            "Counters",
            [
                ["segments", f"in {_v(cnt.get('segments_in'))}, out {_v(cnt.get('segments_out'))}"],
                ["bytes", f"in {_v(cnt.get('bytes_in'))}, out {_v(cnt.get('bytes_out'))}"],
                [
                    "retransmissions",
                    f"{_v(cnt.get('retransmissions'))} "
                    f"({_v(cnt.get('retransmitted_bytes'))} bytes)",
                ],
                ["duplicate ACKs", _v(cnt.get("dup_acks"))],
                [
                    "recovery",
                    f"{_v(cnt.get('fast_recoveries'))} fast, {_v(cnt.get('rtos'))} RTOs, "
                    f"{_v(cnt.get('tlp_probes'))} TLPs ({_v(cnt.get('tlp_recoveries'))} "
                    f"repaired), {_v(cnt.get('undos'))} undone",
                ],
                [
                    "D-SACKs",
                    f"sent {_v(cnt.get('dsacks_sent'))}, received {_v(cnt.get('dsacks_received'))}",
                ],
                [
                    "ECN",
                    f"CE {_v(cnt.get('ce_received'))}, ECE {_v(cnt.get('ece_received'))}, "
                    f"reductions {_v(cnt.get('ecn_reductions'))}",
                ],
                ["receive buffer", f"grown {_v(cnt.get('rcv_buf_grown'))} times (autotuning)"],
                ["cwnd validation", f"{_v(cnt.get('cwv_reductions'))} reductions (RFC 7661)"],
                ["challenge ACKs", _v(cnt.get("challenge_acks"))],
                [
                    "invalid ACKs",
                    f"{_v(cnt.get('invalid_acks'))} sent, "
                    f"{_v(cnt.get('invalid_acks_limited'))} held back by the rate limit",
                ],
                ["drops", drop_text],
            ],
        )
    )
    close = entry.get("close", {})
    out.append(
        _section(
            "Close",
            [
                ["FIN sent", _v(close.get("fin_sent"))],
                ["FIN acknowledged", _v(close.get("fin_acked"))],
                ["FIN received", _v(close.get("fin_received"))],
                ["application closed", _v(close.get("app_closed"))],
            ],
        )
    )
    impairments = entry.get("impairments") or []
    if impairments:
        out.append(
            _section("Impairments (pytcp impair)", [[describe_fault(f)] for f in impairments])
        )
    out.append(render_timers(entry))
    return "\n".join(out)


COMPACT_LABEL = 10  # the label column of the compact view
COMPACT_LINES = 22  # an 80x24 terminal less the two lines of the --watch header
INFINITE_SSTHRESH = 0x7FFFFFFF  # the stack's initial "arbitrarily high" ssthresh (RFC 5681 §3.1)


def _plus(value: int | None, base: int | None) -> str:
    """`+N`, relative to `base` (ISS or IRS), or `-` while either is unknown (SYN-SENT
    has no IRS yet)."""
    return "-" if value is None or base is None else f"+{rel(value, base)}"


def _ssthresh(value: Any) -> str:
    return "inf" if value == INFINITE_SSTHRESH else _v(value)


def _plural(n: Any, word: str) -> str:
    return f"{_v(n)} {word}" + ("" if n == 1 else "s")


def render_compact(entry: Mapping[str, Any], width: int | None = 80) -> str:
    """`pytcp inspect --watch ID`: the protocol variables one watches change, in at most
    22 lines (an 80x24 terminal less the --watch header) of at most `width` columns:
    state, the send and receive sequence space relative to ISS and IRS, the windows,
    cwnd/ssthresh/pipe, the recovery state, RTT and RTO, bytes, retransmissions,
    queues, the negotiated options and each armed timer. A long address is shortened
    in its middle. `render_tcb` is the whole TCB (`--full`)."""
    if entry.get("state") == "LISTEN":
        lines = render_tcb(entry).splitlines()[:COMPACT_LINES]
        return "".join(clip(line, width) + "\n" for line in lines)
    label_room = None if width is None else max(width - COMPACT_LABEL, ENDPOINT_MIN)
    rows: list[tuple[str, str]] = []
    where = f"pid {_v(entry.get('pid'))}"
    if entry.get("tun"):
        where = f"on {entry.get('tun')}, {where}"
    rows.append((str(entry.get("id")), f"{_v(entry.get('state'))}  {where}"))
    for side in ("local", "remote"):
        text = endpoint(entry.get(side))
        rows.append((side, text if label_room is None else elide_endpoint(text, label_room)))
    snd, rcv = entry.get("send", {}), entry.get("receive", {})
    iss, irs = snd.get("iss"), rcv.get("irs")
    send = (f"una {_plus(snd.get('snd_una'), iss)}  nxt {_plus(snd.get('snd_nxt'), iss)}  "
            f"max {_plus(snd.get('snd_max'), iss)}")  # fmt: skip
    if "snd_wnd" in snd:
        send += f"  wnd {_v(snd.get('snd_wnd'))}"
    rows.append(("send", f"{send}  (ISS {_v(iss)})"))
    rows.append(("receive", f"nxt {_plus(rcv.get('rcv_nxt'), irs)}  wnd {_v(rcv.get('rcv_wnd'))}"
                            f"  (IRS {_v(irs)})"))  # fmt: skip
    cc, rec = entry.get("congestion"), entry.get("recovery")
    if isinstance(cc, Mapping):
        pipe = rec.get("pipe") if isinstance(rec, Mapping) else None
        rows.append(("cwnd", f"{_v(cc.get('cwnd'))}  ssthresh {_ssthresh(cc.get('ssthresh'))}  "
                             f"pipe {_v(pipe)}  in flight {_v(cc.get('in_flight'))}  "
                             f"({_v(cc.get('algorithm'))})"))  # fmt: skip
        phase = f"{_v(cc.get('phase'))}"
        if cc.get("phase") in ("recovery", "loss"):
            phase += f" until {_plus(cc.get('recover'), iss)}"
        phase += f", {_v(cc.get('dup_acks'))} dup ACKs"
        if isinstance(rec, Mapping):
            phase += (f", SACKed {_v(rec.get('sacked_bytes'))}, lost {_v(rec.get('lost_bytes'))}"
                      f", RACK {'on' if rec.get('rack') else 'off'}")  # fmt: skip
        rows.append(("recovery", phase))
    rtt = entry.get("rtt")
    if isinstance(rtt, Mapping):
        rows.append(("rtt", f"srtt {duration(rtt.get('srtt'))}  rttvar "
                            f"{duration(rtt.get('rttvar'))}  rto {duration(rtt.get('rto'))}  "
                            f"min {duration(rtt.get('min_rtt'))}  backoff "
                            f"{_v(rtt.get('backoff'))}"))  # fmt: skip
    cnt = entry.get("counters")
    if isinstance(cnt, Mapping):
        rows.append(("bytes", f"in {_v(cnt.get('bytes_in'))}  out {_v(cnt.get('bytes_out'))}  "
                              f"(segments in {_v(cnt.get('segments_in'))}, "
                              f"out {_v(cnt.get('segments_out'))})"))  # fmt: skip
        rows.append(("retrans", f"{_v(cnt.get('retransmissions'))} "
                                f"({_v(cnt.get('retransmitted_bytes'))} bytes): "
                                f"{_v(cnt.get('fast_recoveries'))} fast, "
                                f"{_plural(cnt.get('rtos'), 'RTO')}, "
                                f"{_plural(cnt.get('tlp_probes'), 'TLP')}, "
                                f"{_v(cnt.get('undos'))} undone"))  # fmt: skip
    buf = entry.get("buffers")
    if isinstance(buf, Mapping):
        ooo = len(buf.get("out_of_order") or [])
        rows.append(("queues", f"send {_v(buf.get('send_queued'))} ({_v(buf.get('unacked'))} "
                               f"unacked, {_v(buf.get('unsent'))} unsent)  receive "
                               f"{_v(buf.get('unread'))} unread, {ooo} out of order"))  # fmt: skip
    opt = entry.get("options", {})
    if "mss_local" in opt:
        words = [f"MSS {_v(opt.get('snd_mss'))}",
                 f"wscale {_v(opt.get('wscale_local'))}/{_v(opt.get('wscale_remote'))}"]
        words += [name for name, key in (("SACK", "sack"), ("TS", "timestamps"), ("ECN", "ecn"))
                  if opt.get(key)]  # fmt: skip
        words.append(f"path MTU {_v(opt.get('path_mtu'))}")
        if opt.get("nodelay"):
            words.append("nodelay")
        if isinstance(opt.get("keepalive"), Mapping):
            words.append("keepalive")
        rows.append(("options", "  ".join(words)))
    drops = (cnt or {}).get("drops") if isinstance(cnt, Mapping) else None
    if drops:
        rows.append(("drops", ", ".join(f"{k} {v}" for k, v in sorted(drops.items()))))
    armed = [t for t in entry.get("timers", []) if t.get("armed")]
    if not armed:
        rows.append(("timers", "none armed"))
    for n, t in enumerate(armed):
        text = f"{t.get('name')} {remaining(t.get('remaining'))}"
        if t.get("backoff"):
            text += f" (backoff {t.get('backoff')})"
        if t.get("reason"):
            text += f": {t.get('reason')}"
        rows.append(("timers" if n == 0 else "", text))
    if entry.get("impairments"):
        rows.append(("impaired", ", ".join(describe_fault(f) for f in entry["impairments"])))
    head = f"{rows[0][0]}  {rows[0][1]}"  # the ID may be wider than a label
    lines = [clip(head, width)]
    lines += [clip(f"{label:<{COMPACT_LABEL}}{text}".rstrip(), width) for label, text in rows[1:]]
    return "\n".join(lines[:COMPACT_LINES]) + "\n"


_JOURNAL_FROM_ISS = {"snd_una", "snd_nxt", "snd_max", "snd_wl2"}
_JOURNAL_FROM_IRS = {"snd_wl1", "rcv_nxt"}


def render_journal(journal: Mapping[str, Any]) -> str:
    """`pytcp inspect ID --journal`: each segment in and out, oldest first, with the
    acceptability test it met or failed, its verdict and what it changed in the TCB.
    Sequence numbers relative to each side's ISN; times in seconds before now."""
    now = journal.get("now") or 0
    iss, irs = journal.get("iss"), journal.get("irs")
    entries = journal.get("entries") or []
    head = (f"Segment journal of {journal.get('id')}: the last {len(entries)} of "
            f"{journal.get('recorded')} segments (ring of {journal.get('size')})")  # fmt: skip
    lines = [head]
    for e in entries:
        ago = (now - e["time"]) / 1e9
        seq = str(e["rel_seq"])
        if e["len"]:
            seq = f"{e['rel_seq']}:{e['rel_seq'] + e['len']}"
        what = f"{e['flags'] or '-'} seq {seq}"
        if e.get("rel_ack") is not None:
            what += f" ack {e['rel_ack']}"
        what += f" win {e['window']} len {e['len']}"
        if e.get("sack"):
            base = irs if e["direction"] == "out" else iss
            what += " sack " + " ".join(
                f"{rel(a, base)}:{rel(b, base)}" for a, b in e["sack"]
            )
        lines.append(f"-{ago:.6f}s {e['direction']:<3} {what}")
        test = e.get("test")
        if test is not None:
            met = "met" if test["met"] else "FAILED"
            lines.append(f"    test ({test['case']}): {test['rule']} [{test['values']}]: {met}")
        verdict = e["verdict"]
        if e.get("reason"):
            verdict += f": {e['reason']}"
        lines.append(f"    verdict: {verdict}")
        changes = e.get("changes") or {}
        if changes:
            parts = []
            for name, (old, new) in changes.items():
                base = iss if name in _JOURNAL_FROM_ISS else None
                if name in _JOURNAL_FROM_IRS:
                    base = irs
                if base is not None:
                    parts.append(f"{name} +{rel(old, base)} -> +{rel(new, base)}")
                else:
                    parts.append(f"{name} {old} -> {new}")
            lines.append("    changed: " + ", ".join(parts))
    return "\n".join(lines) + "\n"


def describe_fault(fault: Mapping[str, Any]) -> str:
    """One active impairment in words: `drop-next in: 2 segments left`, `window 0`."""
    kind = fault.get("fault")
    if kind == "window":
        return f"window {fault.get('bytes')} (advertised window clamped)"
    if kind == "delay":
        return f"delay {fault.get('direction')}: {fault.get('ms')} ms"
    return f"{kind} {fault.get('direction')}: {fault.get('left')} segments left"


def render_timers(entry: Mapping[str, Any]) -> str:
    """The timers table: every timer, armed or not (DESIGN §2 "Timers are data"). The
    deadline is in seconds of CLOCK_MONOTONIC (raw nanoseconds only in --json)."""
    rows = [
        [
            str(t.get("name")),
            _v(bool(t.get("armed"))),
            remaining(t.get("remaining")) if t.get("armed") else "-",
            monotonic_seconds(t.get("deadline")) if t.get("armed") else "-",
            _v(t.get("backoff")),
            _v(t.get("reason") or None),
        ]
        for t in entry.get("timers", [])
    ]
    headers = ("timer", "armed", "fires", "deadline (monotonic)", "backoff", "reason")
    return _section("Timers", rows, headers)


def render_json(obj: Any) -> str:
    """`--json`: sorted keys, two-space indent, newline-terminated."""
    import json  # here: connect and listen import this module, not its JSON

    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- probe timeline


def flatten(snapshot: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"send": {"snd_nxt": 5}}` -> `{"send.snd_nxt": 5}`; timers and the clock-driven
    `remaining` are left out (they change with time, not with the connection)."""
    flat: dict[str, Any] = {}
    for key, value in snapshot.items():
        if key in ("timers", "pid", "tun"):
            continue
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def changed_fields(
    before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for every flattened field that differs, in field order."""
    old = flatten(before) if before is not None else {}
    new = flatten(after)
    return [(k, old.get(k), new[k]) for k in sorted(new) if old.get(k) != new[k]]


@dataclass
class TimelineItem:
    """One line of the probe's timeline: a segment, or a state change with its TCB delta."""

    offset: int  # ns since the probe started
    kind: str  # "in", "out" or "state"
    text: str  # the segment (tcpdump style) or "OLD -> NEW"
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    timers: list[Mapping[str, Any]] = field(default_factory=list)
    # On the step into SYN-SENT: the options our SYN carried, {mss, wscale, sack,
    # timestamps}. The snapshot shows what is negotiated, which stays no/0 until the
    # SYN-ACK; this is what was offered.
    offered: dict[str, Any] | None = None


def syn_offer(mss: int | None, wscale: int | None, sack: bool, timestamps: bool) -> dict[str, Any]:
    """`TimelineItem.offered` from the options of an outgoing SYN."""
    return {"mss": mss, "wscale": wscale, "sack": sack, "timestamps": timestamps}


# Negotiated snapshot field -> the key of `offered` that says what our SYN proposed.
OFFERED_FIELDS = {
    "options.sack": "sack",
    "options.timestamps": "timestamps",
    "options.wscale_local": "wscale",
}


def _offer_text(offered: Mapping[str, Any], key: str) -> str:
    value = offered.get(key)
    if key == "wscale":
        return "not offered" if value is None else f"offered {value}"
    return "offered" if value else "not offered"


def _state_changes(
    item: TimelineItem, offer: Mapping[str, Any] | None, known: dict[str, Any]
) -> list[str]:
    """The `field: old -> new` lines of a state change. On the step into SYN-SENT the
    negotiated options read as what the SYN offered; on the step that settles them
    (ESTABLISHED) each offered option shows what became of it, changed or not."""
    shown: dict[str, str] = {}
    for name, old, new in item.changes:
        known[name] = new
        if item.offered is not None and name in OFFERED_FIELDS:
            new_text = _offer_text(item.offered, OFFERED_FIELDS[name])
            shown[name] = f"{field_value(name, old)} -> {new_text}"
        elif offer is not None and name in OFFERED_FIELDS:
            shown[name] = f"{_offer_text(offer, OFFERED_FIELDS[name])} -> {field_value(name, new)}"
        else:
            shown[name] = f"{field_value(name, old)} -> {field_value(name, new)}"
    if offer is not None:
        for name, key in OFFERED_FIELDS.items():
            if name not in shown and offer.get(key) is not None and offer.get(key) is not False:
                # Offered, and still as before the SYN-ACK: the peer declined it.
                shown[name] = f"{_offer_text(offer, key)} -> {field_value(name, known.get(name))}"
    return [f"{'':15}{name}: {text}" for name, text in sorted(shown.items())]


DURATION_FIELDS = frozenset({"rtt.srtt", "rtt.rttvar", "rtt.rto", "rtt.min_rtt"})  # ns


def field_value(name: str, value: Any) -> str:
    """One flattened snapshot field as the timeline shows it: times as durations."""
    if name in DURATION_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return duration(value)
    return _v(value)


def render_timeline(items: Iterable[TimelineItem]) -> str:
    """The probe's timeline, one segment per line; state changes with their TCB delta."""
    lines = []
    offer: dict[str, Any] | None = None  # what the SYN offered, until the handshake ends
    known: dict[str, Any] = {}  # the latest value of every field seen changing
    for item in items:
        stamp = f"{item.offset / 1e6:10.3f} ms"
        if item.kind == "state":
            lines.append(f"{stamp}  == {item.text}")
            settles = offer is not None and item.text.endswith("-> ESTABLISHED")
            lines += _state_changes(item, offer if settles else None, known)
            if item.offered is not None:
                offer = item.offered
            elif offer is not None:
                offer = None  # settled (or the handshake failed): shown once
            armed = [t for t in item.timers if t.get("armed")]
            timers = ", ".join(
                f"{t['name']} {remaining(t.get('remaining'))}"
                + (f" ({t['reason']})" if t.get("reason") else "")
                for t in armed
            )
            lines.append(f"{'':15}timers armed: {timers or 'none'}")
        else:
            arrow = "<" if item.kind == "in" else ">"
            lines.append(f"{stamp}  {arrow} {item.text}")
    return "\n".join(lines) + "\n"


def render_probe_summary(final: Mapping[str, Any]) -> str:
    """What the peer negotiated and the RTT measured, from the last snapshot of the probe."""
    opt = final.get("options", {})
    rtt = final.get("rtt", {})
    cnt = final.get("counters", {})
    rows = [
        ["peer", endpoint(final.get("remote"))],
        ["peer MSS", _v(opt.get("mss_remote"))],
        ["peer window scale", _v(opt.get("wscale_remote"))],
        ["SACK", _v(opt.get("sack"))],
        ["timestamps", _v(opt.get("timestamps"))],
        ["RTT", f"srtt {duration(rtt.get('srtt'))}, min {duration(rtt.get('min_rtt'))}, "
                f"{_v(rtt.get('samples'))} samples, rto {duration(rtt.get('rto'))}"],
        ["segments", f"{_v(cnt.get('segments_out'))} sent, {_v(cnt.get('segments_in'))} received, "
                     f"{_v(cnt.get('retransmissions'))} retransmitted"],
        ["final state", _v(final.get("state"))],
    ]  # fmt: skip
    return _section("Summary", rows)


def stdout_trouble(err: int | None) -> str:
    """The one line for connection data that stdout did not take (connect, listen, send):
    a closed stdout or a reader that went away (EPIPE, EBADF; None: closed at start),
    or a write error that names itself (a full disk: ENOSPC)."""
    if err is None or err in (errno.EPIPE, errno.EBADF, errno.ECONNRESET):
        return "stdout was closed before every received byte was written"
    return f"cannot write to stdout: {os.strerror(err)}; received bytes were lost"


def send_report(entry: Mapping[str, Any], written: int | None = None) -> str:
    """`pytcp send -v`: byte counts, RTT and retransmissions, one line; `written`: the
    bytes of the reply that reached stdout, said when that is not all of it."""
    cnt = entry.get("counters", {})
    rtt = entry.get("rtt", {})
    received = f"{_v(cnt.get('bytes_in'))} received"
    if written is not None and written != cnt.get("bytes_in"):
        received += f" ({written} written to stdout)"
    return (
        f"{_v(cnt.get('bytes_out'))} bytes sent, {received}, "
        f"srtt {duration(rtt.get('srtt'))}, "
        f"{_v(cnt.get('retransmissions'))} retransmissions\n"
    )


def _tso_refused(link: Mapping[str, Any]) -> str:
    """The link row of refused TSO writes: "no", or how often, why, and what was cut
    into segments in Python instead (TSO is off for the link since)."""
    refused = link.get("tso_refused") or 0
    if not refused:
        return "no"
    return (
        f"{refused} write{'s' if refused != 1 else ''} ({link.get('tso_refused_error')}); "
        f"{_v(link.get('gso_resegmented'))} super-packets cut in Python; TSO off since"
    )
