"""The `pytcp` click group and `main()`, which maps failures to exit statuses.

Imports click, `pytcpcli.app` and `pytcpcli.errors`, and each command module only when
its command is looked up (`LazyCommands`): `pytcp connect` loads connect's module alone,
not inspect's tables or script's packetdrill parser. Protocol logic lives in `stack/`.
A command is added with one line in `COMMANDS`.
"""

from __future__ import annotations

import atexit
import errno
import importlib
import os
import re
import signal
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, NoReturn

import click

from pytcpcli import __version__
from pytcpcli.app import App
from pytcpcli.errors import EXIT_CONN, EXIT_OK, EXIT_SIGINT, EXIT_USAGE
from pytcpcli.signals import Interrupted, exit_status
from pytcpcli.signals import install as install_signals

# Every command: name -> the module (pytcpcli/commands/NAME.py) whose function NAME it is.
COMMANDS = {
    name: f"pytcpcli.commands.{name}"
    for name in ("connect", "listen", "send", "close", "inspect", "impair", "timer", "script",
                 "plot")
}  # fmt: skip


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands by name, as click's `Group.commands`; a command's module is
    imported the first time the command is looked up (to run it, or for --help, man
    pages and completion, which look them all up). Names, `in` and `len` import nothing."""

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        command = self._loaded.get(name)
        if command is None:
            command = getattr(importlib.import_module(self._modules[name]), name)
            self._loaded[name] = command
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command
        self._modules.setdefault(name, type(command).__module__)

    def __delitem__(self, name: str) -> None:
        del self._modules[name]
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


class PytcpGroup(click.Group):
    """A click group whose every failure is one line on stderr (DESIGN §4).

    click's own usage errors print the usage block and `Error: ...`; pytcp prints
    `pytcp: <cause>; see 'pytcp CMD --help'` and exits 2, like every other error.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name or "pytcp", complete_var, False, **extra)
        except SystemExit:
            # click answers EPIPE on stdout by wrapping stdout and exiting 1: pytcp's
            # choice for EPIPE is a quiet 141 (stdout_failed).
            if type(sys.stdout).__name__ == "_PacifyFlushWrapper":
                sys.exit(stdout_failed(OSError(errno.EPIPE, os.strerror(errno.EPIPE))))
            raise
        except click.UsageError as e:
            path = e.ctx.command_path if e.ctx is not None else "pytcp"
            if e.ctx is None:  # click reports a missing option value without its command
                words = list(sys.argv[1:] if args is None else args)
                name = next((w for w in words if w in self.commands), None)
                path = f"pytcp {name}" if name else path
            words = list(sys.argv[1:] if args is None else args)
            if not words:
                # A bare `pytcp`: one line, not the whole help as an error.
                names = ", ".join(self.commands)
                click.echo(f"pytcp: give a command ({names}); see 'pytcp --help'", err=True)
                sys.exit(EXIT_USAGE)
            cause = tidy_usage(e.format_message())
            click.echo(f"pytcp: {cause[:1].lower()}{cause[1:]}; see '{path} --help'", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except Interrupted as e:
            sys.exit(exit_status(e.signum))
        except (click.Abort, KeyboardInterrupt):
            sys.exit(EXIT_SIGINT)
        except OSError as e:
            if e.errno not in STDOUT_ERRNOS:
                raise
            sys.exit(stdout_failed(e))
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def tidy_usage(message: str) -> str:
    """click's usage message as one clause: "No such option '--ms'. (Did you mean one
    of: '--mss', '--mtu'?)" -> "No such option '--ms' (did you mean '--mss' or '--mtu'?)"."""
    m = re.fullmatch(r"(.*?)\.? \(Did you mean (?:one of: )?(.*)\?\)", message.strip(), re.S)
    if m is not None:
        options = [o.strip() for o in m.group(2).split(",")]
        head, last = options[:-1], options[-1]
        choice = f"{', '.join(head)} or {last}" if head else last
        return f"{m.group(1)} (did you mean {choice}?)"
    return message.strip().rstrip(".")


# Errors of a write to stdout outside the relay (help, inspect's tables, ...).
STDOUT_ERRNOS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
EXIT_SIGPIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for a tool SIGPIPE killed


def stdout_failed(error: OSError) -> int:
    """stdout cannot be written: EPIPE (the reader went away, `pytcp --help | head -1`)
    ends pytcp quietly with 141, as a coreutils tool killed by SIGPIPE; any other error
    (ENOSPC: `>/dev/full`) is one line on stderr and exit 1. stdout is pointed at
    /dev/null so the interpreter's final flush cannot fail again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass
    if error.errno == errno.EPIPE:
        return EXIT_SIGPIPE
    try:
        sys.stderr.write(f"pytcp: cannot write to stdout: {os.strerror(error.errno or 0)}\n")
        sys.stderr.flush()
    except (OSError, AttributeError, ValueError):
        pass
    return EXIT_CONN


def flush_stdout(code: int) -> int:
    """Flush what Python buffered for stdout now, where a failure can still be reported."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as e:
        if e.errno not in STDOUT_ERRNOS:
            raise
        return stdout_failed(e) if code == EXIT_OK else code
    return code


@click.group(
    cls=PytcpGroup,
    commands=LazyCommands(COMMANDS),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "-V", "--version", prog_name="pytcp")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """netcat on a userspace TCP/IP stack of its own, over a Linux TUN device.

    Every connection pytcp makes or accepts runs end to end in pytcp's own TCP:
    the handshake, the data, the four-way close and every timer. stdout carries
    connection data only; messages go to stderr.

    When stdout's reader goes away (EPIPE) while pytcp prints help or inspect's
    tables, pytcp exits 141 quietly, as a tool killed by SIGPIPE; another stdout
    error (a full disk) is one line on stderr and exit 1. (Connection data that
    cannot be written is reported by connect and listen, exit 1.)
    """
    if ctx.obj is None:
        ctx.obj = App(stdout_closed=1 in CLOSED_AT_START)


CLOSED_AT_START: set[int] = set()  # std fds the caller had closed (`>&-`)


def ensure_std_fds() -> set[int]:
    """Open /dev/null on stdin, stdout or stderr if the caller closed them (`<&-`);
    returns those fds.

    Otherwise the TUN device would get fd 0 or 1, and connection data would be read
    from, or written into, the interface itself. A closed stdout is still reported as
    one when data arrives for it (App.stdout_closed): nc exits 1 there too.
    """
    closed = set()
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    return closed


def exit_now(code: int) -> NoReturn:
    """End the process with `code` without the interpreter's teardown: the atexit
    handlers run (the control socket's unlink), stdout and stderr are flushed, then
    os._exit. Tearing down every module and object is CPU a short command's user waits
    for (about 10 ms of a one-shot `connect`) and changes nothing the kernel does not
    do at exit anyway. A flush that fails makes the status 120, as the interpreter's own
    final flush does. With another thread still running, the usual sys.exit (which
    waits for non-daemon threads)."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = 120
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    CLOSED_AT_START.update(ensure_std_fds())
    install_signals()
    try:
        cli.main(args=argv, prog_name="pytcp")
        code: Any = EXIT_OK
    except SystemExit as e:
        code = e.code
    if isinstance(code, int) or code is None:
        exit_now(flush_stdout(code or EXIT_OK))
    sys.exit(code)


if __name__ == "__main__":
    main()
