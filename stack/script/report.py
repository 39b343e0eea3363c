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
        shown = [f"{k}={t[k]}" for k in FAILURE_TCB if k in t]
        shown += [f"{k}={v}" for k, v in t.items() if k.startswith("timer.")]
        out.append("      tcb now: " + " ".join(shown))
    verdict = "PASS" if result.ok else "FAIL"
    head = f"{result.path}: {verdict} ({result.target})"
    if not result.ok:
        head += f"\n{result.error}"
    return "\n".join([head, *out])


def side_by_side(results: list[ScriptResult]) -> str:
    """The same script on several targets: one verdict per target and, where they
    differ, each target's first failing line."""
    path = results[0].path
    lines = [f"{path}:"]
    for r in results:
        verdict = "SKIP" if r.skipped else ("PASS" if r.ok else "FAIL")
        lines.append(
            f"  {r.target:10s} {verdict}" + ("" if r.ok else f"  {r.error.split(': ', 1)[-1]}")
        )
    verdicts = {(r.ok, r.skipped) for r in results}
    if len(verdicts) > 1:
        lines.append("  the targets differ")
    else:
        fails = {r.error.split(":", 2)[1] if r.error.count(":") >= 2 else "" for r in results}
        if len(fails) > 1:
            lines.append("  the targets fail at different lines")
    return "\n".join(lines)


def to_json(result: ScriptResult) -> dict[str, Any]:
    return {
        "path": result.path,
        "target": result.target,
        "ok": result.ok,
        "skipped": result.skipped,
        "error": result.error,
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
