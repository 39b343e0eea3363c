"""Exit statuses (DESIGN §4) and the one error type commands raise. Imports click only
(and os)."""

from __future__ import annotations

import os
from typing import IO, Any

import click

EXIT_OK = 0
EXIT_CONN = 1  # the connection failed: refused, reset, timed out, unreachable
EXIT_USAGE = 2
EXIT_ENV = 3  # environment: no permission for /dev/net/tun, interface busy, ...
EXIT_SIGINT = 130


class CliError(click.ClickException):
    """A failure reported as one line on stderr, `pytcp: <message>`, with an exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_CONN) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it a ClassVar

    def show(self, file: IO[Any] | None = None) -> None:
        try:
            click.echo(f"pytcp: {self.format_message()}", err=True)
        except (OSError, ValueError):
            # stderr cannot be written (2>/dev/full): the exit status still tells. Its fd
            # goes to /dev/null so the interpreter's final flush does not fail (exit 120).
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            except OSError:
                pass
