"""`make generate`: man pages and shell completions from the click definitions.

Writes man/pytcp.1, man/pytcp-<command>.1 for every command of the `pytcp` group,
and completions/pytcp.bash, completions/_pytcp (zsh), completions/pytcp.fish from
click's shell completion. The help text is the single source: NAME, SYNOPSIS,
DESCRIPTION and OPTIONS come from click; EXIT STATUS, EXAMPLES and NOTES come
from the command's module (`EXIT_STATUS`, `EXAMPLES`, `NOTES` strings beside the
command), with the DESIGN §4 statuses when a module has none. An EXAMPLES string is
blocks of a description at the margin (one sentence, over as many lines as it needs)
followed by its indented commands; anything else stops generation with an error.
A page's references to itself (`pytcp-inspect(1)` on pytcp-inspect(1)) read "below".

`python scripts/generate.py --check` writes nothing and exits 1 when a file is stale
(tests/cli/test_generated.py does the same check).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import click
from click.shell_completion import get_completion_class

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytcpcli import __version__  # noqa: E402
from pytcpcli.main import cli  # noqa: E402
from pytcpcli.options import CLOSE_NOTES  # noqa: E402

PROG = "pytcp"
# pytcp(1) EXAMPLES, in the order a newcomer meets the commands.
EXAMPLE_ORDER = ("connect", "listen", "send", "inspect", "close", "impair", "timer",
                 "script", "plot")
COMPLETE_VAR = "_PYTCP_COMPLETE"
COMPLETIONS = {"bash": "pytcp.bash", "zsh": "_pytcp", "fish": "pytcp.fish"}

DEFAULT_EXIT_STATUS = """\
0  success.
1  the connection failed: refused, reset, timed out, unreachable (each command's page
   says what else it counts here).
2  usage error.
3  environment: no permission for /dev/net/tun, interface busy, ...
129  ended by SIGHUP (its terminal or ssh session went away), after closing what it
     held: FIN, or RST on a second signal or before a connection is established.
130  interrupted by SIGINT (Ctrl-C), closing as for SIGHUP.
141  stdout's reader went away (EPIPE) while pytcp printed help or a table.
143  terminated by SIGTERM, closing as for SIGHUP.
128+N  ended by another signal N whose default action ends a process (SIGQUIT 131,
       SIGUSR1 138, SIGALRM 142, ...): caught and closing as for SIGHUP. A signal
       ignored when pytcp started stays ignored (nohup), except SIGINT and SIGTERM.
"""

GROUP_NOTES = """\
Every pytcp process that runs a stack creates the first free TUN interface pytcpN,
gives the kernel 10.77.N.1/24 on it and uses 10.77.N.2 itself; --tun, --addr and
--gateway (and PYTCP_TUN, PYTCP_ADDR) change that. An interface that already exists
is attached to as it is, which is how pytcp runs without root. Interfaces pytcp
created are removed when it exits.

Shell completion: source completions/pytcp.bash in bash, put completions/_pytcp on
$fpath in zsh, copy completions/pytcp.fish to ~/.config/fish/completions/ in fish.
"""

ENVIRONMENT = """\
PYTCP_TUN  the TUN interface to create or attach to (--tun).
PYTCP_ADDR  pytcp's own address on it (--addr).
"""

# Every command serves (connect, listen, send, the inspect probe) or asks (inspect, send
# --conn, close) the control sockets in this directory.
CONTROL_ENVIRONMENT = """\
PYTCP_RUNTIME_DIR  the directory of the control sockets (PID.sock) pytcp serves and the
    inspect, send --conn and close commands ask; default /run/pytcp for root,
    $XDG_RUNTIME_DIR/pytcp otherwise, or /tmp/pytcp-UID without XDG_RUNTIME_DIR.
XDG_RUNTIME_DIR  the user's runtime directory, where the control sockets go when
    PYTCP_RUNTIME_DIR is not set (not for root).
"""


# -- roff ----------------------------------------------------------------------------


def roff_escape(text: str) -> str:
    """Plain text -> roff text: backslashes, hyphens, the middle dot, leading dots."""
    text = text.replace("\\", "\\e").replace("-", "\\-").replace("·", "\\[pc]")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def paragraphs(text: str) -> list[str]:
    """click help text -> paragraphs, each one line (click's \\b markers dropped)."""
    text = inspect.cleandoc(text).replace("\b\n", "")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def roff_paragraphs(text: str) -> list[str]:
    out: list[str] = []
    for para in paragraphs(text):
        out += [".PP", roff_escape(para)]
    return out


def roff_tagged(text: str) -> list[str]:
    """`TAG  text` entries (continuation lines indented) -> .TP items."""
    out: list[str] = []
    for line in inspect.cleandoc(text).splitlines():
        match = re.match(r"(\S+)\s{2,}(.*)", line)
        if match and not line.startswith(" "):
            out += [".TP", f"\\fB{roff_escape(match[1])}\\fR", roff_escape(match[2])]
        elif line.strip():
            out.append(roff_escape(line.strip()))
    return out


def example_blocks(text: str, where: str = "EXAMPLES") -> list[tuple[str, list[str]]]:
    """EXAMPLES text -> (description, commands) pairs. A description is every line at the
    margin up to the commands (one sentence, however many lines it takes); the commands
    are the indented lines after it. Raises ValueError on a description without commands
    or commands without a description, so a broken string fails `make generate` instead
    of leaving a fragment in a page."""
    blocks: list[tuple[str, list[str]]] = []
    description: list[str] = []
    commands: list[str] = []
    for line in text.expandtabs().splitlines():  # as written: at the margin or indented
        if not line.strip():
            continue
        if line.startswith("  "):
            if not description:
                raise ValueError(f"{where}: command {line.strip()!r} has no description")
            commands.append(line[2:].rstrip())
            continue
        if commands:
            blocks.append((" ".join(description), commands))
            description, commands = [], []
        description.append(line.strip())
    if description:
        if not commands:
            raise ValueError(f"{where}: {' '.join(description)!r} has no command after it")
        blocks.append((" ".join(description), commands))
    return blocks


def roff_examples(blocks: list[tuple[str, list[str]]]) -> list[str]:
    """(description, commands) pairs -> a paragraph each, then its commands unfilled."""
    out: list[str] = []
    for description, commands in blocks:
        out += [".PP", roff_escape(description), ".PP", ".RS 4", ".nf"]
        out += [roff_escape(command) for command in commands]
        out += [".fi", ".RE"]
    return out


def without_self_reference(text: str, page: str) -> str:
    """Help text names other pages as `pytcp-inspect(1)`; on that page itself the
    reference points below instead."""
    text = re.sub(rf"\bin {re.escape(page)}\(1\)", "below", text)
    return re.sub(rf"\b{re.escape(page)}\(1\)", "this page", text)


def option_record(param: click.Parameter, ctx: click.Context) -> tuple[str, str] | None:
    if not isinstance(param, click.Option) or param.hidden:
        return None
    record = param.get_help_record(ctx)
    if record is None:
        return None
    names, help_text = record
    parts = []
    for name in names.split(", "):
        flag, _, metavar = name.partition(" ")
        part = f"\\fB{roff_escape(flag)}\\fR"
        if metavar:
            # \: lets a long choice list ([a|b|c...]) break after each bar.
            breakable = roff_escape(metavar).replace("|", "|\\:")
            part += f" \\fI{breakable}\\fR"
        parts.append(part)
    return ", ".join(parts), roff_escape(" ".join(help_text.split()))


def option_name(param: click.Option) -> str:
    """The long name of an option as written on the command line (`--tun`)."""
    return max(param.opts, key=len)


def title(name: str, section: str = "1") -> list[str]:
    return [
        f'.TH "{name.upper()}" "{section}" "" "pytcp {__version__}" "User Commands"',
        '.\\" Generated by scripts/generate.py from the click definitions; do not edit.',
    ]


def see_also(exclude: str) -> list[str]:
    pages = [f"pytcp-{name}" for name in sorted(cli.commands)] + [PROG]
    refs = [f"\\fB{roff_escape(p)}\\fR(1)" for p in sorted(pages) if p != exclude]
    refs += ["\\fBnc\\fR(1)", "\\fBsocat\\fR(1)", "\\fBtcpdump\\fR(8)", "\\fBss\\fR(8)"]
    return [".SH SEE ALSO", ",\n".join(refs)]


def command_module(command: click.Command) -> ModuleType | None:
    callback = inspect.unwrap(command.callback) if command.callback else None
    return sys.modules.get(callback.__module__) if callback is not None else None


def command_page(name: str, command: click.Command) -> str:
    page = f"pytcp-{name}"
    parent = click.Context(cli, info_name=PROG, **cli.context_settings)
    ctx = click.Context(command, info_name=name, parent=parent)
    module = command_module(command)
    short = command.get_short_help_str(limit=200).rstrip(".")
    synopsis = " ".join(command.collect_usage_pieces(ctx))
    lines = [*title(page), ".SH NAME", f"{roff_escape(page)} \\- {roff_escape(short)}"]
    lines += [".SH SYNOPSIS", f"\\fB{PROG} {roff_escape(name)}\\fR {roff_escape(synopsis)}"]
    lines += [
        ".SH DESCRIPTION",
        *roff_paragraphs(without_self_reference(command.help or short, page)),
    ]
    if command.epilog:
        lines += roff_paragraphs(without_self_reference(command.epilog, page))
    lines.append(".SH OPTIONS")
    for param in command.get_params(ctx):
        record = option_record(param, ctx)
        if record is not None:
            lines += [".TP", record[0], record[1]]
    env = [
        f"{param.envvar}  {option_name(param)}: {' '.join((param.help or '').split())}"
        for param in command.get_params(ctx)
        if isinstance(param, click.Option) and isinstance(param.envvar, str)
    ]
    lines += [".SH ENVIRONMENT", *roff_tagged("\n".join(env) + "\n" + CONTROL_ENVIRONMENT)]
    exit_status = getattr(module, "EXIT_STATUS", None) or DEFAULT_EXIT_STATUS
    lines += [".SH EXIT STATUS", *roff_tagged(exit_status)]
    lines += [".SH EXAMPLES", *roff_examples(command_examples(name, command))]
    notes = getattr(module, "NOTES", None)
    if notes:
        lines += [".SH NOTES", *roff_paragraphs(without_self_reference(notes, page))]
    lines += see_also(page)
    return "\n".join(lines) + "\n"


def command_examples(name: str, command: click.Command) -> list[tuple[str, list[str]]]:
    """The (description, commands) examples of a command's module, or one that shows
    --help when it has none."""
    text = getattr(command_module(command), "EXAMPLES", None)
    if not text:
        return [(command.get_short_help_str(limit=200), [f"{PROG} {name} --help"])]
    return example_blocks(text, f"{PROG} {name} EXAMPLES")


def group_page() -> str:
    ctx = click.Context(cli, info_name=PROG, **cli.context_settings)
    short = paragraphs(cli.help or "")[0].rstrip(".")
    lines = [*title(PROG), ".SH NAME", f"{PROG} \\- {roff_escape(short)}"]
    lines += [".SH SYNOPSIS", f"\\fB{PROG}\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]..."]
    lines += [".SH DESCRIPTION", *roff_paragraphs(cli.help or "")]
    lines.append(".SH COMMANDS")
    for name in sorted(cli.commands):
        command = cli.commands[name]
        lines += [
            ".TP",
            f"\\fB{PROG} {roff_escape(name)}\\fR",
            roff_escape(command.get_short_help_str(limit=200)),
            f"See \\fBpytcp\\-{roff_escape(name)}\\fR(1).",
        ]
    lines.append(".SH OPTIONS")
    for param in cli.get_params(ctx):
        record = option_record(param, ctx)
        if record is not None:
            lines += [".TP", record[0], record[1]]
    lines += [".SH ENVIRONMENT", *roff_tagged(ENVIRONMENT + CONTROL_ENVIRONMENT)]
    lines += [".SH EXIT STATUS", *roff_tagged(DEFAULT_EXIT_STATUS)]
    # The first example of each command, in the order a newcomer meets them (DESIGN §4).
    order = [n for n in EXAMPLE_ORDER if n in cli.commands]
    order += sorted(n for n in cli.commands if n not in order)
    examples = [command_examples(n, cli.commands[n])[0] for n in order]
    lines += [".SH EXAMPLES", *roff_examples(examples)]
    lines += [".SH NOTES", *roff_paragraphs(GROUP_NOTES + "\n" + CLOSE_NOTES)]
    lines += see_also(PROG)
    return "\n".join(lines) + "\n"


def completion(shell: str) -> str:
    cls = get_completion_class(shell)
    assert cls is not None, shell
    source = cls(cli, {}, PROG, COMPLETE_VAR).source()
    return source if source.endswith("\n") else source + "\n"


def render_all() -> dict[Path, str]:
    """Every generated file (path relative to the repository) and its content."""
    files = {Path("man") / f"{PROG}.1": group_page()}
    for name, command in sorted(cli.commands.items()):
        files[Path("man") / f"{PROG}-{name}.1"] = command_page(name, command)
    for shell, filename in COMPLETIONS.items():
        files[Path("completions") / filename] = completion(shell)
    return files


def stale_files(root: Path = ROOT) -> list[str]:
    """Generated files that differ from disk, are missing, or are left from a removed
    command."""
    files = render_all()
    stale = [str(p) for p, text in files.items() if _read(root / p) != text]
    for path in sorted((root / "man").glob(f"{PROG}*.1")):
        if path.relative_to(root) not in files:
            stale.append(str(path.relative_to(root)))
    return stale


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {name} (run `make generate`)", file=sys.stderr)
        return 1 if stale else 0
    files = render_all()
    for path, text in files.items():
        target = ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if _read(target) != text:
            target.write_text(text)
            print(f"wrote {path}")
    for old in sorted((ROOT / "man").glob(f"{PROG}*.1")):
        if old.relative_to(ROOT) not in files:
            old.unlink()
            print(f"removed {old.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
