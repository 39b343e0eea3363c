"""Script results as text (packetdrill's style), JSON-ready data and JUnit XML. Pure:
results in, strings out. Imports the standard library and stack.script.runner.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from stack.script.runner import LineResult, ScriptResult

# The TCB fields a failure shows (sequence numbers relative to the ISNs).
FAILURE_TCB = (
    "state", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "rcv_nxt", "rcv_wnd", "snd_mss",
    "cwnd", "ssthresh", "in_flight", "phase", "srtt", "rto", "backoff",
)  # fmt: skip


# What a failure says -> the TCB fields that decide it (first match order kept).
INVOLVED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bad flags", ("state", "fin_sent", "fin_received", "unacked_rx")),
    ("bad seq", ("snd_una", "snd_nxt", "snd_max")),
    ("bad ack", ("rcv_nxt", "fin_received")),
    ("bad payload length", ("snd_mss", "cwnd", "in_flight", "snd_wnd", "nodelay")),
    ("bad window", ("rcv_wnd", "wscale_local")),
    ("options", ("mss_local", "mss_remote", "wscale_local", "wscale_remote", "sack")),
    ("bad mss", ("mss_local", "snd_mss", "path_mtu")),
    ("bad wscale", ("wscale_local",)),
    ("SACK", ("sack", "rcv_nxt")),
    ("TS", ("timestamps",)),
    ("ECN", ("ecn", "ecn_echo", "cwr_pending")),
    ("timing error", ("rto", "srtt", "backoff", "retransmissions", "unacked_rx")),
    ("none within tolerance", ("rto", "srtt", "backoff", "retransmissions", "unacked_rx")),
    ("still blocked", ("state", "rcv_nxt", "snd_una", "snd_wnd")),
    ("returned", ("state", "rcv_nxt", "snd_una", "snd_nxt", "fin_received")),
    ("connection the script does not know", ("state",)),
)
TIMING = ("timing error", "none within tolerance", "still blocked")


def involved(message: str, tcb: dict[str, Any]) -> list[str]:
    """The TCB fields a failure's message concerns, as NAME=VALUE, in the order the
    checks named them (timers too, for a timing failure)."""
    names: list[str] = []
    for phrase, fields in INVOLVED:
        if phrase in message:
            names += [f for f in fields if f in tcb and f not in names]
    if any(phrase in message for phrase in TIMING):
        names += [k for k in tcb if k.startswith("timer.") and k not in names]
    return [f"{k}={tcb[k]}" for k in names]


def _value(v: Any) -> str:
    return "-" if v is None else str(v)


def tcb_lines(rec: LineResult) -> list[str]:
    return [f"      tcb {k}: {_value(old)} -> {_value(new)}" for k, (old, new) in rec.tcb.items()]


def render_text(result: ScriptResult, *, verbose: bool = False, tcb: bool = False) -> str:
    """One script's outcome: every line with -v (and its TCB changes with --tcb), else
    only what failed, packetdrill style: the line, the script's segment and the actual
    one, or the call and what it returned."""
    out: list[str] = []
    if result.skipped:
        return f"{result.path}: SKIP ({result.target}): {result.error}"
    for rec in result.lines:
        if not verbose and not tcb and rec.ok and not rec.drops:
            continue
        mark = "ok  " if rec.ok else "FAIL"
        first = rec.text.splitlines()[0] if rec.text else ""
        out.append(f"  {mark} {rec.line:4d} {rec.time:10.6f} {first}")
        if rec.ok and verbose and rec.actual and rec.kind in ("outbound", "call"):
            out.append(f"      actual: {rec.actual}")
        for reason in rec.drops:
            out.append(f"      dropped by the stack: {reason}")
        if not rec.ok:
            out.append(f"      {rec.message}")
            if rec.expected:
                out.append(f"      script: {rec.expected}")
            if rec.actual:
                out.append(f"      actual: {rec.actual}")
        if tcb or not rec.ok:
            out.extend(tcb_lines(rec))
    if not result.ok and result.tcb_at_failure:
        t = result.tcb_at_failure
        failed = next((rec for rec in result.lines if not rec.ok), None)
        fields = involved(failed.message, t) if failed is not None else []
        if fields:
            out.append("      tcb involved: " + " ".join(fields))
        shown = [f"{k}={t[k]}" for k in FAILURE_TCB if k in t]
        shown += [f"{k}={v}" for k, v in t.items() if k.startswith("timer.")]
        out.append("      tcb now: " + " ".join(shown))
    verdict = "PASS" if result.ok else "FAIL"
    head = f"{result.path}: {verdict} ({result.target})"
    if not result.ok:
        head += f"\n{result.error}"
    return "\n".join([head, *out])


SHOWN_DIFFERENCES = 5  # lines side_by_side details where the targets part ways


def _status(rec: LineResult | None) -> str:
    return "not reached" if rec is None else ("ok" if rec.ok else "FAIL")


def _outcome(rec: LineResult | None) -> str:
    """What one target did at a line: its status, what came or what it returned, and
    why it failed."""
    if rec is None:
        return "not reached"
    parts = [_status(rec) + (":" if rec.actual else "")]
    if rec.actual:
        parts.append(rec.actual)
    if not rec.ok and rec.message:
        parts.append(f"({rec.message})")
    return " ".join(parts)


def side_by_side(results: list[ScriptResult]) -> str:
    """The same script on several targets: one verdict per target, then line by line
    where they agree (the same outcome: ok, failed, or not reached) and where they
    differ, with what each target did there (what came, what the call returned, why
    the line failed), the first SHOWN_DIFFERENCES of them."""
    path = results[0].path
    lines = [f"{path}:"]
    for r in results:
        verdict = "SKIP" if r.skipped else ("PASS" if r.ok else "FAIL")
        lines.append(
            f"  {r.target:10s} {verdict}" + ("" if r.ok else f"  {r.error.split(': ', 1)[-1]}")
        )
    ran = [r for r in results if not r.skipped]
    if len(ran) < 2:
        return "\n".join(lines)
    by_line = [{rec.line: rec for rec in r.lines} for r in ran]
    order = sorted({n for recs in by_line for n in recs})
    text = {n: rec.text for recs in by_line for n, rec in recs.items()}
    agree = [n for n in order if len({_status(recs.get(n)) for recs in by_line}) == 1]
    differ = [n for n in order if n not in agree]
    if not differ:
        if all(r.ok for r in ran):
            lines.append(f"  the targets agree on all {len(order)} lines")
        else:
            n = next(rec for rec in ran[0].lines if not rec.ok).line
            how = {(recs[n].message, recs[n].actual) for recs in by_line}
            lines.append(
                f"  the targets agree on all {len(order)} lines; all fail at line {n}"
                + (", differently:" if len(how) > 1 else "")
            )
            if len(how) > 1:
                for r, recs in zip(ran, by_line, strict=True):
                    lines.append(f"      {r.target:10s} {_outcome(recs[n])}")
        return "\n".join(lines)
    lines.append(
        f"  the targets agree on {len(agree)} of {len(order)} lines and differ on "
        f"{len(differ)}, from line {differ[0]}:"
    )
    for n in differ[:SHOWN_DIFFERENCES]:
        first = text[n].splitlines()[0].strip() if text[n] else ""
        lines.append(f"    line {n}: {first}")
        for r, recs in zip(ran, by_line, strict=True):
            lines.append(f"      {r.target:10s} {_outcome(recs.get(n))}")
    if len(differ) > SHOWN_DIFFERENCES:
        lines.append(f"    ... and {len(differ) - SHOWN_DIFFERENCES} more lines")
    return "\n".join(lines)


def to_json(result: ScriptResult) -> dict[str, Any]:
    return {
        "path": result.path,
        "target": result.target,
        "ok": result.ok,
        "skipped": result.skipped,
        "error": result.error,
        "tcb_at_failure": result.tcb_at_failure,
        "lines": [
            {
                "line": r.line,
                "text": r.text,
                "kind": r.kind,
                "ok": r.ok,
                "time": r.time,
                "message": r.message,
                "expected": r.expected,
                "actual": r.actual,
                "drops": r.drops,
                "tcb": {k: [o, n] for k, (o, n) in r.tcb.items()},
            }
            for r in result.lines
        ],
    }


def to_junit(results: list[ScriptResult], seconds: dict[str, float] | None = None) -> str:
    """A JUnit XML document: one testsuite per target, one testcase per script."""
    root = ET.Element("testsuites", name="pytcp script")
    by_target: dict[str, list[ScriptResult]] = {}
    for r in results:
        by_target.setdefault(r.target, []).append(r)
    for target, rs in by_target.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=target,
            tests=str(len(rs)),
            failures=str(sum(1 for r in rs if not r.ok and not r.skipped)),
            skipped=str(sum(1 for r in rs if r.skipped)),
        )
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=target, name=r.path)
            if seconds and (key := f"{target}:{r.path}") in seconds:
                case.set("time", f"{seconds[key]:.3f}")
            if r.skipped:
                ET.SubElement(case, "skipped", message=r.error)
            elif not r.ok:
                fail = ET.SubElement(case, "failure", message=r.error)
                fail.text = render_text(r)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
