"""The root command: --help, --version, and that only working commands are listed."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from pytcpcli import __version__
from pytcpcli.main import cli


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
