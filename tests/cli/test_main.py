"""The root command: --help, --version, and that only working commands are listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pytcpcli import __version__
from pytcpcli.main import cli, tidy_usage


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"pytcp, version {__version__}\n"


def test_help_lists_usage() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="pytcp")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: pytcp [OPTIONS] COMMAND [ARGS]...")


def test_installed_console_script_runs() -> None:
    exe = sys.executable.rsplit("/", 1)[0] + "/pytcp"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"pytcp, version {__version__}\n"


PYTCP = sys.executable.rsplit("/", 1)[0] + "/pytcp"


def test_stdout_full_is_one_line_and_exit_1() -> None:
    for args in (["connect", "--help"], ["--help"], ["inspect", "--json"]):
        with open("/dev/full", "wb") as full:
            out = subprocess.run([PYTCP, *args], stdout=full, stderr=subprocess.PIPE, timeout=60)
        assert (out.returncode, out.stderr) == (
            1,
            b"pytcp: cannot write to stdout: No space left on device\n",
        ), args


def test_stdout_reader_gone_is_quiet_exit_141() -> None:
    import os

    for args in (["connect", "--help"], ["inspect", "--json"]):
        r, w = os.pipe()
        os.close(r)  # the reader is gone before pytcp writes: EPIPE
        try:
            out = subprocess.run([PYTCP, *args], stdout=w, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(w)
        assert (out.returncode, out.stderr) == (141, b""), args


def test_missing_option_value_names_the_command_to_ask() -> None:
    exe = sys.executable.rsplit("/", 1)[0] + "/pytcp"
    for args, expected in [
        (
            ["send", "--conn"],
            "pytcp: option '--conn' requires an argument; see 'pytcp send --help'\n",
        ),
        (["close", "-w"], "pytcp: option '-w' requires an argument; see 'pytcp close --help'\n"),
    ]:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
        assert (out.returncode, out.stdout, out.stderr) == (2, "", expected)


def test_bare_pytcp_is_one_line_and_a_typo_one_clause() -> None:
    exe = str(Path(sys.executable).parent / "pytcp")
    out = subprocess.run([exe], capture_output=True, timeout=60)
    assert (out.returncode, out.stdout) == (2, b"")
    assert out.stderr == (
        b"pytcp: give a command (connect, listen, send, close, inspect, impair, timer, script, "
        b"plot); see 'pytcp --help'\n"
    )
    out = subprocess.run([exe, "connect", "--ms", "1"], capture_output=True, timeout=60)
    assert (out.returncode, out.stderr) == (
        2,
        b"pytcp: no such option '--ms' (did you mean '--mss' or '--mtu'?); "
        b"see 'pytcp connect --help'\n",
    )


def test_tidy_usage() -> None:
    assert tidy_usage("No such option '--x'.") == "No such option '--x'"
    assert tidy_usage("No such command 'c'. (Did you mean 'cat'?)") == (
        "No such command 'c' (did you mean 'cat'?)"
    )
    assert tidy_usage("No such option '--t'. (Did you mean one of: '--a', '--b', '--c'?)") == (
        "No such option '--t' (did you mean '--a', '--b' or '--c'?)"
    )
