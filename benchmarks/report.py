"""Rows, medians and ratios of one figure; the tables printed and the JSON written.

A `Figure` holds `Row`s. A row is one thing measured `runs` times (the median is what is
reported); a row with a `baseline` (the key of another row of the same figure, measured
in the same run) also gets `ratio` = median / baseline's median. `better` says which
direction is good ("higher" for rates, "lower" for times and bytes; "neither" for a row
that describes the path rather than a goal, as the loss figure's ACK counts), so a ratio
reads the same way in every figure: pytcp's value over the kernel's (or ncat's / nc's).
A row that could not be measured carries `note` and no median ("n/a" in the table).
Imports the standard library and tabulate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

# The JSON document's keys (docs: README "Benchmarks"; tests/test_bench.py holds them).
ROW_KEYS = ("key", "what", "unit", "better", "runs", "median", "baseline", "ratio", "note")
FIGURE_KEYS = ("title", "about", "rows", "extra")
TOP_KEYS = ("version", "started", "elapsed_s", "quick", "runs", "machine", "figures", "skipped")


@dataclass
class Row:
    key: str
    what: str
    unit: str
    better: str = "higher"
    runs: list[float] = field(default_factory=list)
    baseline: str | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None


@dataclass
class Figure:
    name: str
    title: str
    about: str
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self, key: str, what: str, unit: str, *, better: str = "higher",
            baseline: str | None = None) -> Row:
        """The row `key`, created on first use (so runs accumulate across repetitions)."""
        for row in self.rows:
            if row.key == key:
                return row
        row = Row(key, what, unit, better, baseline=baseline)
        self.rows.append(row)
        return row

    def ratio(self, row: Row) -> float | None:
        if row.baseline is None or row.median is None:
            return None
        base = next((r for r in self.rows if r.key == row.baseline), None)
        if base is None or not base.median:
            return None
        return row.median / base.median

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "about": self.about,
            "rows": [
                {
                    "key": r.key, "what": r.what, "unit": r.unit, "better": r.better,
                    "runs": r.runs, "median": r.median, "baseline": r.baseline,
                    "ratio": self.ratio(r), "note": r.note,
                }
                for r in self.rows
            ],
            "extra": self.extra,
        }

    def table(self) -> str:
        lines = []
        for r in self.rows:
            base = next((b for b in self.rows if b.key == r.baseline), None)
            ratio = self.ratio(r)
            lines.append([
                r.what,
                fmt(r.median) if r.median is not None else "n/a",
                r.unit,
                len(r.runs),
                base.what if base is not None else "",
                shown_ratio(ratio, base),
                " ".join(r.note.split()),
            ])
        head = ["what", "median", "unit", "runs", "ratio against", "ratio", "note"]
        return f"{self.title}\n" + tabulate(lines, head, disable_numparse=True)


def shown_ratio(ratio: float | None, base: Row | None) -> str:
    """The ratio column: `0.25×`; n/a without one, saying so when the reference is 0."""
    if ratio is not None:
        return times(ratio)
    if base is None:
        return ""
    return "n/a (reference 0)" if base.median == 0 else "n/a"


def times(ratio: float) -> str:
    """A ratio as `0.25×`, `3.1×`, `2,120×`."""
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.3g}×"


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def markdown(figures: list[Figure]) -> str:
    """The README's table: every row with a ratio, one line each."""
    lines = ["| figure | what | pytcp | against | ratio | better |", "|---|---|---|---|---|---|"]
    for fig in figures:
        for r in fig.rows:
            if r.baseline is None:
                continue
            base = next((b for b in fig.rows if b.key == r.baseline), None)
            ratio = fig.ratio(r)
            value = f"{fmt(r.median)} {r.unit}" if r.median is not None else "n/a"
            against = (
                f"{base.what}: {fmt(base.median)} {base.unit}"
                if base is not None and base.median is not None else "n/a"
            )
            shown = shown_ratio(ratio, base)
            cells = [fig.name, r.what, value, against, shown, r.better]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
