"""`python -m benchmarks [FIGURE...]`: run the figures, print the tables, write the JSON.

Needs root (namespaces and TUN devices). Knobs (environment): BENCH_QUICK=1 small sizes
and one run; BENCH_RUNS=K runs per figure; BENCH_OUT=PATH where the JSON goes (default
benchmarks/results/latest.json); BENCH_FIGURES="bulk rr" same as naming them; BENCH_PYTCP
the pytcp command to measure (default: the one installed next to this Python);
BENCH_DEADLINE_MIN (default 25): a figure that would start later than this many minutes
into the run is skipped and listed under "skipped" in the JSON (`make bench` also ends the
whole run after 30 minutes, cleaning up). Per-figure
size knobs are in each module's docstring. Exit 0 when every figure ran (rows that could
not be measured say why in their note), 2 on usage, 3 when the environment is missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from benchmarks.netns import Namespaces
from benchmarks.proc import Bench, BenchError, machine
from benchmarks.report import Figure, markdown

# Figure name -> its module (benchmarks.NAME), in the order `make bench` runs them.
FIGURES = ("bulk", "rr", "connrate", "oneshot", "scale", "flood", "loss")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
TOOLS = ("ip", "ss", "iperf3", "ncat", "nc", "head", "cat")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `with`: processes, namespaces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "figures", nargs="*", help=f"figures to run (default all: {' '.join(FIGURES)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (BENCH_QUICK=1)")
    parser.add_argument("--runs", type=int, help="runs per figure (BENCH_RUNS; default 3, quick 1)")
    parser.add_argument("--out", type=Path, help="JSON output path (BENCH_OUT)")
    args = parser.parse_args(argv)
    names = args.figures or os.environ.get("BENCH_FIGURES", "").split() or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {' '.join(unknown)} (choose from {' '.join(FIGURES)})")
    quick = args.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    runs = args.runs or (int(os.environ["BENCH_RUNS"]) if os.environ.get("BENCH_RUNS") else None)
    out = args.out or Path(os.environ.get("BENCH_OUT") or DEFAULT_OUT)
    if os.geteuid() != 0:
        print("benchmarks: needs root (network namespaces and TUN devices)", file=sys.stderr)
        return 3
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"benchmarks: missing tools: {' '.join(missing)} (make bench installs them)",
              file=sys.stderr)
        return 3
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the scale figure's sockets
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        bench = Bench.create(quick, runs)
    except BenchError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 3
    started = time.time()
    info = machine(bench)
    print(f"machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, "
          f"Python {info['python']}, {info['pytcp']} ({info['commit']})")
    print(f"features: {info['features']}; runs {bench.runs}; quick {quick}\n", flush=True)
    figures: list[Figure] = []
    skipped: list[str] = []
    deadline = time.monotonic() + 60 * float(os.environ.get("BENCH_DEADLINE_MIN", 25))
    try:
        for name in names:
            if time.monotonic() > deadline:
                print(f"{name}: skipped (BENCH_DEADLINE_MIN reached)\n", flush=True)
                skipped.append(name)
                continue
            t0 = time.monotonic()
            with Namespaces() as ns:
                run: Callable[[Bench, Namespaces], Figure] = importlib.import_module(
                    f"benchmarks.{name}"
                ).run
                try:
                    fig = run(bench, ns)
                except (BenchError, OSError, subprocess.SubprocessError, KeyError,
                        ValueError) as exc:  # one figure's failure does not end the run
                    fig = Figure(name, f"{name}: failed", "")
                    fig.extra["failed"] = f"{type(exc).__name__}: {exc}"[:500]
            fig.extra["elapsed_s"] = round(time.monotonic() - t0, 1)
            figures.append(fig)
            print(fig.table(), f"\n({name}: {fig.extra['elapsed_s']} s)\n", flush=True)
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
        doc = {
            "version": 1,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "elapsed_s": round(time.time() - started, 1),
            "quick": quick,
            "runs": bench.runs,
            "machine": info,
            "figures": {f.name: f.to_json() for f in figures},
            "skipped": skipped,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
    print(markdown(figures))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
