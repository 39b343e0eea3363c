"""A bounded pass of the coverage-guided fuzz targets (scripts/fuzz.py, atheris) over
their seed corpus: Host input and control requests never raise. `make fuzz` runs them
longer."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="needs atheris"),
    pytest.mark.timeout(240),
]


@pytest.mark.parametrize("target", ["host", "control"])
def test_fuzz_target_bounded_pass(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "tests" / "fuzz_corpus" / target, corpus)  # grows: keep a copy
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py"), target, "-runs=3000",
         "-max_total_time=120", "-seed=14", str(corpus)],
        cwd=tmp_path, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 3000 runs" in done.stderr
    assert not list(tmp_path.glob("crash-*"))
