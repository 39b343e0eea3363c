"""Running one script file on one target for `pytcp script`: reading the file, the
shell commands, and the targets that need real I/O. Imports `stack.script` and the
standard library; the linux target lives in `pytcpcli.script_linux` (imported when used).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable

from stack.script.parser import ScriptError, parse
from stack.script.pytcp_target import PytcpTarget
from stack.script.runner import Config, Runner, ScriptResult

TARGETS = ("pytcp", "linux", "pytcp-tun")
SHELL_TIMEOUT = 60.0  # seconds a script's shell command may take


def read_script(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(
            path, 0, f"cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def shell_runner(cwd: str, *, isolate: bool) -> Callable[[str], tuple[int, str]]:
    """Runs a script's backquoted command with sh in the script's directory, bounded in
    time; `isolate` runs it in a network namespace of its own (unshare -n) so that its
    sysctls and interfaces never reach the host."""

    def run(command: str) -> tuple[int, str]:
        argv = ["sh", "-c", command]
        if isolate:
            unshare = shutil.which("unshare")
            if unshare is None or os.geteuid() != 0:
                return 0, "skipped: needs root and unshare(1) for a private network namespace"
            argv = [unshare, "--net", "--", *argv]
        # packetdrill's helpers (set_sysctls.py) name their restore file by this.
        env = {**os.environ, "PACKETDRILL_PID": str(os.getpid())}
        try:
            done = subprocess.run(
                argv,
                cwd=cwd or ".",
                env=env,
                capture_output=True,
                text=True,
                timeout=SHELL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {SHELL_TIMEOUT:g} s"
        except OSError as exc:
            return 127, str(exc)
        return done.returncode, (done.stdout + done.stderr)

    return run


def run_script(
    path: str,
    target: str,
    *,
    overrides: dict[str, str] | None = None,
    skip_shell: bool = False,
    tcb: bool = False,
    seed: int = 1,
) -> tuple[ScriptResult, float]:
    """One script on one target: its result (a script that cannot be read or parsed is
    a failed result naming the line) and the seconds it took."""
    started = time.monotonic()
    try:
        script = parse(read_script(path), path)
        config = Config.from_script(script, overrides)
    except ScriptError as exc:
        return ScriptResult(path, target, ok=False, error=str(exc)), time.monotonic() - started
    if target in ("linux", "pytcp-tun"):
        from pytcpcli.script_linux import run_in_namespace

        here = os.path.dirname(path)
        result = run_in_namespace(
            script,
            config,
            lambda: None if skip_shell else shell_runner(here, isolate=False),
            target=target,
            tcb=tcb,
        )
        return result, time.monotonic() - started
    shell = None if skip_shell else shell_runner(os.path.dirname(path), isolate=True)
    rng = random.Random(seed)
    pytcp = PytcpTarget(config, rng=rng, isn_secret=rng.randbytes(16))
    try:
        if shell is not None and script.init is not None:
            status, output = shell(script.init.command)
            if status != 0:
                return (
                    ScriptResult(
                        path,
                        target,
                        ok=False,
                        error=f"{path}: init command failed "
                        f"with status {status}: {output.strip()[-200:]}",
                    ),
                    time.monotonic() - started,
                )
        result = Runner(script, pytcp, config=config, shell=shell, tcb=tcb).run()
    finally:
        pytcp.close()
        if shell is not None and script.cleanup is not None:
            shell(script.cleanup.command)
    return result, time.monotonic() - started
