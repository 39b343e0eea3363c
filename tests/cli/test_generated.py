"""man/ and completions/ equal what scripts/generate.py makes from the click definitions."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "scripts" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generate()


def test_committed_files_are_fresh() -> None:
    assert generate.stale_files() == [], "man/ or completions/ are stale: run `make generate`"


def test_every_command_has_a_page_with_every_section() -> None:
    from pytcpcli.main import cli

    files = generate.render_all()
    names = ["pytcp.1"] + [f"pytcp-{name}.1" for name in sorted(cli.commands)]
    assert sorted(p.name for p in files if p.parent.name == "man") == sorted(names)
    for name in names:
        page = files[Path("man") / name]
        sections = [line[4:] for line in page.splitlines() if line.startswith(".SH ")]
        required = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"]
        assert [s for s in sections if s in required] == required, name
        assert sections[-1] == "SEE ALSO", name


def test_check_detects_a_stale_page(tmp_path: Path) -> None:
    for path, text in generate.render_all().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert generate.stale_files(tmp_path) == []
    page = tmp_path / "man" / "pytcp-connect.1"
    page.write_text(page.read_text().replace("Connect to HOST PORT", "Connect to HOST"))
    (tmp_path / "man" / "pytcp-gone.1").write_text(".TH GONE 1\n")
    (tmp_path / "completions" / "_pytcp").unlink()
    assert generate.stale_files(tmp_path) == [
        "man/pytcp-connect.1",
        "completions/_pytcp",
        "man/pytcp-gone.1",
    ]


def test_roff_escapes_what_roff_would_interpret() -> None:
    assert generate.roff_escape(".start\n'quote\\x -v 2·MSL") == (
        "\\&.start\n\\&'quote\\ex \\-v 2\\[pc]MSL"
    )


def test_completion_scripts_name_the_command() -> None:
    files = generate.render_all()
    assert "complete -o nosort -F _pytcp_completion pytcp" in files[Path("completions/pytcp.bash")]
    assert files[Path("completions/_pytcp")].startswith("#compdef pytcp\n")
    assert "_PYTCP_COMPLETE=fish_complete" in files[Path("completions/pytcp.fish")]


@pytest.mark.skipif(shutil.which("man") is None, reason="needs man(1) to render the pages")
def test_pages_render_without_warnings() -> None:
    for page in sorted((ROOT / "man").glob("*.1")):
        out = subprocess.run(
            ["man", "--warnings", "-l", str(page)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
        assert out.returncode == 0, out.stderr
        assert out.stderr == "", f"{page.name}: {out.stderr}"


def test_script_check_mode_passes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (out.returncode, out.stderr) == (0, "")


def test_the_installed_command_answers_the_completion_scripts() -> None:
    exe = Path(sys.executable).parent / "pytcp"

    def complete(words: str) -> list[str]:
        env = {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1),
               "_PYTCP_COMPLETE": "bash_complete", "PATH": "/usr/bin:/bin"}  # fmt: skip
        out = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=60)
        return out.stdout.splitlines()

    assert complete("pytcp con") == ["plain,connect"]
    assert complete("pytcp connect --cc ") == ["plain,newreno", "plain,cubic"]
    assert complete("pytcp listen --time") == ["plain,--time-wait"]
