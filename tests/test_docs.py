"""The README and `pytcp --help` say what the foundation issue asks: the two set-up
commands first, every subcommand's usage, requirements, and running without root."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from pytcpcli.main import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMANDS = ["close", "connect", "impair", "inspect", "listen", "plot", "script", "send",
            "timer"]


def test_help_lists_exactly_the_working_commands() -> None:
    out = CliRunner().invoke(cli, ["--help"], prog_name="pytcp").output
    listed = re.findall(r"^  (\w+)\s", out.split("Commands:\n", 1)[1], re.MULTILINE)
    assert listed == COMMANDS
    assert sorted(cli.commands) == COMMANDS


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == [
        "make demo",
        "make test",
    ]


def test_readme_shows_every_subcommand_in_use() -> None:
    usage = README.split("## Usage", 1)[1].split("\n## ", 1)[0]
    blocks = "".join(b.split("```", 1)[0] for b in usage.split("```sh\n")[1:])
    for name in COMMANDS:
        assert re.search(rf"^pytcp {name}\b", blocks, re.MULTILINE), name


def test_readme_has_requirements_and_running_without_root() -> None:
    headings = re.findall(r"^## (.+)$", README, re.MULTILINE)
    assert {"Usage", "Requirements", "Running without root"} <= set(headings)
    without_root = README.split("## Running without root", 1)[1].split("\n## ", 1)[0]
    assert "ip tuntap add dev pytcp0 mode tun user $USER" in without_root
    assert "--tun pytcp0" in without_root
