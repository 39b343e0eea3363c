"""`make demo`'s script, run as `make demo` runs it (the venv's python, as root), from
inside the test's namespace: it tells the whole story and leaves no namespace behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                    "demo.py")  # fmt: skip
TIMEOUT = 180  # seconds the whole demo may take (each of its steps gives up after 10 s)
TIMERS = ["retransmission", "syn", "delayed-ack", "persist", "keepalive", "time-wait",
          "fin-wait-2"]  # fmt: skip


def _after(lines: list[str], start: int, *needles: str) -> int:
    """The index of the first line after `start` holding every needle; fails if none."""
    for n in range(start + 1, len(lines)):
        if all(needle in lines[n] for needle in needles):
            return n
    raise AssertionError(f"no line after line {start} holds {needles}")


@pytest.mark.netns
@pytest.mark.timeout(TIMEOUT + 60)
def test_demo_tells_the_whole_story_and_removes_its_namespace(netns: Any) -> None:
    proc = subprocess.Popen([sys.executable, DEMO], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    name = f"pytcp-demo-{proc.pid}"  # the demo's namespace is named after its pid
    try:
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.terminate()  # on SIGTERM the demo removes its namespace and says so
            out, err = proc.communicate(timeout=30)
            raise AssertionError(f"the demo took over {TIMEOUT}s:\n{out}{err}") from None
        assert (proc.returncode, err) == (0, ""), out
        lines = out.splitlines()
        assert lines[-1] == f"demo: namespace {name} removed"
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                check=True)  # fmt: skip
        assert name not in [line.split()[0] for line in listed.stdout.splitlines() if line]
    finally:
        proc.kill()
        proc.wait()
        # Whatever went wrong above, the demo's own namespace does not outlive the test.
        if os.path.exists(f"/run/netns/{name}"):
            subprocess.run(["ip", "netns", "del", name], check=False)

    # pytcp's trace, in the order the segments and state changes happened. (Its lines are
    # shown as they arrive, so a step's trace may follow that step's other lines.)
    trace = [ln for ln in lines if ln.startswith("  trace| ")]
    n = _after(trace, -1, " In  10.77.0.1.", "> 10.77.0.2.5000: Flags [S],")  # the handshake
    n = _after(trace, n, " Out 10.77.0.2.5000 > 10.77.0.1.", "Flags [S.],")
    n = _after(trace, n, " In  10.77.0.1.", "Flags [.], ack 1,")
    n = established = _after(trace, n, ": SYN-RECEIVED -> ESTABLISHED")
    n = _after(trace, n, " In  10.77.0.1.", "Flags [P.]", "length 22")  # data both ways
    n = _after(trace, n, " Out 10.77.0.2.5000 > ", "Flags [P.]", "length 17")
    n = _after(trace, n, " Out 10.77.0.2.5000 > ", "Flags [P.]", "length 28")  # send --conn
    conn_id = trace[_after(trace, n, ": ESTABLISHED -> FIN-WAIT-1")].split()[2].rstrip(":")
    n = _after(trace, n, f" {conn_id}: ESTABLISHED -> FIN-WAIT-1")  # close --half
    n = _after(trace, n, " Out 10.77.0.2.5000 > ", "Flags [F.]")
    n = _after(trace, n, f" {conn_id}: FIN-WAIT-1 -> FIN-WAIT-2")
    n = _after(trace, n, " In  10.77.0.1.", "Flags [P.]", "length 29")  # after our FIN
    n = _after(trace, n, " In  10.77.0.1.", "Flags [F.]")  # the kernel's FIN
    n = time_wait = _after(trace, n, f" {conn_id}: FIN-WAIT-2 -> TIME-WAIT")
    _after(trace, n, " Out 10.77.0.2.5000 > ", "Flags [.]")  # the last ACK

    # The story around it, step by step.
    story = [ln for ln in lines if not ln.startswith("  trace| ")]
    n = _after(story, -1, "=== 1.")
    # The demo waits for ESTABLISHED in the trace before step 2.
    n = _after(story, n, "=== 2. data both ways")
    assert lines.index(trace[established]) < lines.index(story[n])
    n = _after(story, n, "pytcp listen stdout| hello from the kernel")
    n = _after(story, n, ">>> kernel received b'hello from pytcp\\n'")

    # 3. The list shows the connection; 4. its whole TCB and the timers section.
    n = _after(story, n, "=== 3.")
    header = _after(story, n, "ID", "STATE", "LOCAL", "REMOTE", "TIMERS")
    row = story[header + 1].split()
    assert row[:3] == [conn_id, "ESTABLISHED", "10.77.0.2:5000"]
    assert re.fullmatch(r"10\.77\.0\.1:[0-9]+", row[3])
    n = _after(story, header, f"=== 4. pytcp inspect {conn_id}")
    assert story[n + 1 : n + 4] == [f"$ pytcp inspect {conn_id}", "Connection",
                                    f"  id       {conn_id}"]  # fmt: skip
    timers = _after(story, n, "Timers")
    assert story[timers] == "Timers"
    assert story[timers + 1].split()[:3] == ["timer", "armed", "fires"]
    assert [ln.split()[0] for ln in story[timers + 2 : timers + 9]] == TIMERS

    # 5. send --conn queues bytes the kernel receives.
    n = _after(story, timers, "=== 5.")
    n = _after(story, n, f"28 bytes queued on {conn_id}")
    n = _after(story, n, ">>> kernel received b'queued by pytcp send --conn\\n'")

    # 6. close --half: done once our FIN is acknowledged; the kernel reads EOF, and what
    # it sends afterwards still reaches the listener's stdout.
    n = _after(story, n, "=== 6.")
    assert story[n + 1 : n + 3] == [f"$ pytcp close --half {conn_id}",
                                    f"{conn_id} FIN-WAIT-2"]  # fmt: skip
    n = _after(story, n, ">>> kernel: recv() -> b''")
    n = _after(story, n, "pytcp listen stdout| one more line after your FIN")

    # 7. The kernel's FIN completes the four-way close: TIME-WAIT, its timer armed.
    n = _after(story, n, "=== 7.")
    n = _after(story, n, f"{conn_id} is TIME-WAIT; its time-wait timer is armed with ")
    # The demo waits for TIME-WAIT in the trace before it asks.
    assert lines.index(trace[time_wait]) < lines.index(story[n])
    header = _after(story, n, "ID", "STATE", "TIMERS")
    assert story[header - 1] == "$ pytcp inspect -s time-wait"
    row = story[header + 1].split()
    assert row[:2] == [conn_id, "TIME-WAIT"] and row[-2] == "time-wait"
