"""Which signals pytcp catches, and how the process is set up for them. Standard library only.

The whole TCP stack lives in the process, so a signal whose default action would end
it must never do so silently: every catchable terminating signal (`TERMINATING`:
SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1/2, SIGALRM, ...) is caught. Inside a relay
session it arrives through the loop (`pytcpcli.relay.SignalWatch`): the first one
closes gracefully, a second one resets. Outside a session (setting up, a handshake,
`send`) it raises `Interrupted`, so the stack's context manager resets what it holds
and pytcp exits 128 + the signal number (129 SIGHUP, 130 SIGINT, 143 SIGTERM).

Terminal job control never stops the stack: SIGTTIN and SIGTTOU are ignored (a read of
a terminal pytcp does not own in the foreground then fails with EIO instead of stopping
the process, and relay.FdReader does not read it until pytcp is in the foreground).
The faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS) are bugs, not
requests, and keep their default; SIGKILL and SIGSTOP cannot be caught (a non-persistent
TUN vanishes with the process, so the kernel's peers see the interface go). SIGTSTP
(^Z) keeps its default: the user asked to suspend pytcp, and its connections wait
with it (peers retransmit) until `fg`/`bg`.
"""

from __future__ import annotations

import os
import signal
from typing import Any

# SIG_IGN inherited for these is kept (nohup's SIGHUP, a script's background SIGQUIT):
# whoever started pytcp asked for it. SIGINT and SIGTERM are always caught.
_NAMES = (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM",
    "SIGPROF", "SIGXCPU", "SIGIO", "SIGPWR", "SIGSTKFLT",
)  # fmt: skip
TERMINATING: tuple[int, ...] = tuple(
    [int(getattr(signal, n)) for n in _NAMES if hasattr(signal, n)]
    + list(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
)
ALWAYS_CAUGHT = frozenset({signal.SIGINT, signal.SIGTERM})
JOB_CONTROL = (signal.SIGTTIN, signal.SIGTTOU)


def exit_status(signum: int) -> int:
    """What a shell reports for a process a signal ended: 128 + the signal number."""
    return 128 + signum


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(BaseException):
    """A terminating signal outside a relay session: exit 128 + signum with no message.

    Not KeyboardInterrupt, which click answers with a blank line on stderr.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


CAUGHT: set[int] = set()  # the signals install() took over (SignalWatch watches these)


def install() -> None:
    """At start-up: catch every terminating signal not deliberately ignored, and ignore
    terminal job-control stops (inherited by -e/-c children, which run in a background
    process group of their own and so must not be stopped by them either)."""
    for signum in TERMINATING:
        try:
            if signum not in ALWAYS_CAUGHT and signal.getsignal(signum) == signal.SIG_IGN:
                continue
            signal.signal(signum, _raise)
        except (OSError, ValueError):
            continue
        CAUGHT.add(signum)
    for signum in JOB_CONTROL:
        signal.signal(signum, signal.SIG_IGN)


def in_background(fd: int) -> bool:
    """Whether fd is a terminal whose foreground process group is not ours: reading it
    would stop pytcp (SIGTTIN) or, with SIGTTIN ignored, fail with EIO."""
    try:
        if not os.isatty(fd):
            return False
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        return False  # not our controlling terminal, or hung up: a read says what it is
