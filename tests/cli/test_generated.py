"""man/ and completions/ equal what scripts/generate.py makes from the click definitions."""

from __future__ import annotations

import importlib.util
import os
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


def _section(page: str, name: str) -> list[str]:
    lines = page.splitlines()
    start = lines.index(f".SH {name}") + 1
    end = next((n for n in range(start, len(lines)) if lines[n].startswith(".SH ")), len(lines))
    return lines[start:end]


def test_rendered_pages_have_no_fragments_or_self_references() -> None:
    """Every EXAMPLES paragraph is one whole sentence followed by its commands; no page
    points the reader to itself; pytcp(1) documents every variable and status."""
    from pytcpcli.main import cli

    files = generate.render_all()
    for path, page in files.items():
        if path.parent.name != "man":
            continue
        examples = _section(page, "EXAMPLES")
        blocks = 0
        n = 0
        while n < len(examples):
            # .PP, the description, .PP, .RS 4, .nf, commands..., .fi, .RE
            assert examples[n] == ".PP", (path, examples[n:])
            description = examples[n + 1]
            assert description[:1].isupper() and description.endswith((":", ".")), (
                path, description,
            )  # fmt: skip
            assert examples[n + 2 : n + 5] == [".PP", ".RS 4", ".nf"], (path, description)
            end = examples.index(".fi", n + 5)
            assert end > n + 5, (path, description)  # at least one command
            assert all(c.startswith("pytcp") or " pytcp " in c for c in examples[n + 5 : end])
            assert examples[end + 1] == ".RE"
            n = end + 2
            blocks += 1
        assert blocks >= 1, path
        name = path.stem  # pytcp-inspect
        own = generate.roff_escape(name)
        body = "\n".join(ln for ln in page.splitlines() if not ln.startswith((".TH", '.\\"')))
        body = body.replace(f"{own} \\- ", "")  # NAME
        assert f"{own}\\fR(1)" not in body and f"{own}(1)" not in body, path
    group = files[Path("man/pytcp.1")]
    tags = [line for line in _section(group, "ENVIRONMENT") if line.startswith("\\fB")]
    variables = ("PYTCP_TUN", "PYTCP_ADDR", "PYTCP_RUNTIME_DIR", "XDG_RUNTIME_DIR")
    assert tags == [f"\\fB{generate.roff_escape(v)}\\fR" for v in variables]
    statuses = [line for line in _section(group, "EXIT STATUS") if line.startswith("\\fB")]
    codes = ("0", "1", "2", "3", "129", "130", "141", "143", "128+N")
    assert statuses == [f"\\fB{c}\\fR" for c in codes]
    # Every command runs under the same signal handling (pytcpcli.signals): each page
    # names the statuses of the three signals that end pytcp most often.
    for path, page in files.items():
        if path.suffix == ".1":
            text = " ".join(_section(page, "EXIT STATUS"))
            for code, signame in (("129", "SIGHUP"), ("130", "SIGINT"), ("143", "SIGTERM")):
                assert code in text and signame in text, (path, code)
    # The group's examples: the first of each command, whole, connect first.
    first = [ln for ln in _section(group, "EXAMPLES") if "pytcp " in ln and ln[:1] != "."]
    first = [ln for ln in first if not ln[:1].isupper()]  # the commands, not descriptions
    used = [ln.split("pytcp ", 1)[1].split()[0] for ln in first]
    assert used == ["connect", "listen", "send", "inspect", "close", "impair", "timer", "script",
                    "plot"]
    assert len(first) == len(cli.commands)
    for command in ("inspect", "send", "close", "connect", "listen"):
        env = _section(files[Path(f"man/pytcp-{command}.1")], "ENVIRONMENT")
        assert "\\fBPYTCP_RUNTIME_DIR\\fR" in env, command


def test_examples_are_parsed_into_whole_sentences() -> None:
    text = (
        "Half-close: send FIN after the queued data; the connection keeps receiving and\n"
        "the owner keeps writing:\n"
        "  pytcp close --half 4242.3\n"
        "Two commands:\n"
        "  pytcp inspect\n"
        "  pytcp inspect --json\n"
    )
    assert generate.example_blocks(text) == [
        (
            "Half-close: send FIN after the queued data; the connection keeps receiving and "
            "the owner keeps writing:",
            ["pytcp close --half 4242.3"],
        ),
        ("Two commands:", ["pytcp inspect", "pytcp inspect --json"]),
    ]
    with pytest.raises(ValueError, match="has no command after it"):
        generate.example_blocks("A sentence:\n  pytcp x\nA dangling sentence:\n")
    with pytest.raises(ValueError, match="has no description"):
        generate.example_blocks("  pytcp x\n")


def test_a_page_refers_to_itself_as_below() -> None:
    assert (
        generate.without_self_reference(
            "The JSON fields are listed under NOTES in pytcp-inspect(1); see pytcp-send(1).",
            "pytcp-inspect",
        )
        == "The JSON fields are listed under NOTES below; see pytcp-send(1)."
    )


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
    # -e: commands on PATH; --tun: this namespace's TUN devices, then the next pytcpN.
    assert "plain,cat" in complete("pytcp listen -e ca")
    assert all(c.startswith("plain,ca") for c in complete("pytcp listen -e ca"))
    tuns = complete("pytcp connect --tun pytcp")
    assert tuns and all(c.startswith("plain,pytcp") for c in tuns)
    assert not os.path.exists(f"/sys/class/net/{tuns[-1].split(',', 1)[1]}")  # the free one


def test_pip_install_puts_man_pages_and_completions_where_they_are_found() -> None:
    # pyproject's data-files: PREFIX/share/man/man1 (man-db finds it from PREFIX/bin on
    # PATH) and the shells' completion directories; every page and script is listed.
    import glob
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    files = config["tool"]["setuptools"]["data-files"]

    def expand(key: str) -> list[str]:
        return sorted(p for pattern in files[key] for p in glob.glob(str(ROOT / pattern)))

    assert expand("share/man/man1") == sorted(str(p) for p in (ROOT / "man").glob("*.1"))
    assert expand("share/bash-completion/completions") == [str(ROOT / "completions/pytcp.bash")]
    assert expand("share/zsh/site-functions") == [str(ROOT / "completions/_pytcp")]
    assert expand("share/fish/vendor_completions.d") == [str(ROOT / "completions/pytcp.fish")]
