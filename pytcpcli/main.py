"""The `pytcp` click group and `main()`, which maps failures to exit statuses.

Imports click, the command modules and `pytcpcli.errors`; protocol logic lives in `stack/`.
"""

from __future__ import annotations

import sys

import click

from pytcpcli import __version__
from pytcpcli.errors import EXIT_SIGINT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="pytcp")
def cli() -> None:
    """netcat on a userspace TCP/IP stack of its own, over a Linux TUN device.

    Every connection pytcp makes or accepts runs end to end in pytcp's own TCP:
    the handshake, the data, the four-way close and every timer.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="pytcp", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)


if __name__ == "__main__":
    main()
