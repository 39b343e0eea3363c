"""The benchmark harness's plumbing (never its timings): rows, ratios, tables, the JSON.

`make bench` itself is not part of `make test`. Here: the report module's medians, ratios
and markdown escaping with made-up numbers, and one tiny figure (oneshot, quick mode, one
command per run) through `python -m benchmarks` as root, asserting the JSON's documented
keys and that the harness removed its namespaces — no assertion on any measured value.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import FIGURE_KEYS, ROW_KEYS, TOP_KEYS, Figure, markdown

ROOT = Path(__file__).resolve().parent.parent


def test_rows_take_the_median_and_the_ratio_against_their_baseline() -> None:
    fig = Figure("f", "title", "about")
    fig.row("kernel", "kernel", "MB/s").runs.extend([10.0, 30.0, 20.0])
    fig.row("pytcp", "pytcp | cat", "MB/s", baseline="kernel").runs.extend([4.0, 2.0, 3.0])
    fig.row("missing", "not measured", "MB/s", baseline="kernel").note = "n/a here"
    doc = fig.to_json()
    assert set(doc) == set(FIGURE_KEYS)
    rows = {r["key"]: r for r in doc["rows"]}
    assert all(set(r) == set(ROW_KEYS) for r in rows.values())
    assert rows["kernel"]["median"] == 20.0 and rows["kernel"]["ratio"] is None
    assert rows["pytcp"]["median"] == 3.0 and rows["pytcp"]["ratio"] == 3.0 / 20.0
    assert rows["missing"]["median"] is None and rows["missing"]["ratio"] is None
    table = markdown([fig])
    assert "| f | pytcp \\| cat | 3.00 MB/s | kernel: 20.00 MB/s | 0.15× | higher |" in table
    assert "| f | not measured | n/a | kernel: 20.00 MB/s | n/a | higher |" in table
    assert "n/a" in fig.table() and "0.15×" in fig.table()


@pytest.mark.netns
def test_one_quick_figure_writes_the_documented_json_and_removes_its_namespaces(
    tmp_path: Path,
) -> None:
    if shutil.which("nc") is None:
        pytest.skip("needs OpenBSD nc (make test installs it)")
    out = tmp_path / "bench.json"
    env = dict(os.environ, BENCH_QUICK="1", BENCH_ONESHOT_COUNT="1", BENCH_OUT=str(out),
               BENCH_PYTCP=str(Path(sys.executable).parent / "pytcp"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "oneshot"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert not Path(f"/run/netns/pytcp-bench-{proc.pid}").exists()
    doc = json.loads(out.read_text())
    assert set(doc) == set(TOP_KEYS)
    assert doc["quick"] is True and doc["runs"] == 1
    machine = {"cpu", "cores", "kernel", "python", "pytcp", "commit", "features"}
    assert machine <= set(doc["machine"])
    assert list(doc["figures"]) == ["oneshot"]
    fig = doc["figures"]["oneshot"]
    assert set(fig) == set(FIGURE_KEYS)
    rows = {r["key"]: r for r in fig["rows"]}
    assert list(rows) == ["nc", "pytcp"]
    for row in rows.values():
        assert set(row) == set(ROW_KEYS)
        assert len(row["runs"]) == 1, row["note"]
        assert row["median"] == row["runs"][0] and row["better"] == "lower"
    assert rows["pytcp"]["baseline"] == "nc"
    assert rows["pytcp"]["ratio"] == rows["pytcp"]["median"] / rows["nc"]["median"]
    assert "echo x | pytcp connect" in stdout and f"wrote {out}" in stdout
