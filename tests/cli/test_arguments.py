"""Argument handling of connect and listen through CliRunner, with an injected stack.

The fake stack records how the command built it and fails the way the real one does
(builtins for connection failures, StackEnvironmentError for the machine); the
relay itself is exercised in test_relay.py and against real peers in test_netcat.py.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from click.testing import CliRunner

from pytcpcli.app import App
from pytcpcli.main import cli
from pytcpcli.options import StackOptions
from stack.api import StackEnvironmentError


class FakeStack:
    """Enough of stack.api.Stack for commands that fail before relaying anything."""

    def __init__(self, opts: StackOptions, tracer: Any, failure: BaseException | None) -> None:
        self.opts = opts
        self.tracer = tracer
        self.failure = failure
        self.calls: list[tuple[Any, ...]] = []
        self.exited: tuple[Any, ...] | None = None

    def __enter__(self) -> FakeStack:
        if isinstance(self.failure, StackEnvironmentError):
            raise self.failure
        return self

    def __exit__(self, *exc: Any) -> None:
        self.exited = exc

    def connect(self, host: str, port: int, **kw: Any) -> Any:
        self.calls.append(("connect", host, port, kw))
        assert self.failure is not None
        raise self.failure

    def listen(self, port: int, **kw: Any) -> Any:
        self.calls.append(("listen", port, kw))
        assert self.failure is not None
        raise self.failure


def run(
    args: list[str], failure: BaseException | None = None, **app_kw: Any
) -> tuple[Any, list[FakeStack]]:
    made: list[FakeStack] = []

    def factory(opts: StackOptions, tracer: Any) -> FakeStack:
        made.append(FakeStack(opts, tracer, failure))
        return made[-1]

    app = App(stack_factory=factory, serve_control=False, **app_kw)
    result = CliRunner().invoke(cli, args, obj=app, prog_name="pytcp")
    return result, made


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["connect", "10.77.0.1"], "missing argument 'PORT'; see 'pytcp connect --help'"),
        (
            ["connect", "10.77.0.1", "0"],
            "invalid value for 'PORT': 0 is out of range; a port is 1-65535; "
            "see 'pytcp connect --help'",
        ),
        (
            ["connect", "-w", "2x", "h", "1"],
            "invalid value for '-w' / '--timeout': '2x' is not a duration such as 500ms, "
            "2s, 1.5 or 1m; see 'pytcp connect --help'",
        ),
        (
            ["connect", "--frobnicate", "h", "1"],
            "no such option '--frobnicate'; see 'pytcp connect --help'",
        ),
        (
            ["connect", "--recv-only", "--send-only", "h", "1"],
            "--recv-only and --send-only exclude each other; pick one",
        ),
        (
            ["connect", "-n", "example.org", "80"],
            "'example.org' is not an IP address and -n forbids name lookups; give an address",
        ),
        (
            ["connect", "-4", "fd77::1", "80"],
            "fd77::1 is an IPv6 address but -4 asks for IPv4; drop -4 or give an IPv4 address",
        ),
        (
            ["connect", "-6", "10.77.0.1", "80"],
            "10.77.0.1 is an IPv4 address but -6 asks for IPv6; drop -6 or give an IPv6 address",
        ),
        (
            ["send", "-6", "[10.77.0.1]", "80"],
            "[10.77.0.1] is an IPv4 address but -6 asks for IPv6; drop -6 or give an IPv6 address",
        ),
        (
            ["connect", "-4", "-6", "h", "80"],
            "-4 and -6 exclude each other; give one or neither; see 'pytcp connect --help'",
        ),
        (
            ["connect", "fe80::1%pytcp0", "80"],
            "fe80::1%pytcp0: pytcp has no link-local address (no %zone); give its fd77 address "
            "or a global one",
        ),
        (["inspect", "-6"], "-4 and -6 are for a probe: pytcp inspect -6 HOST PORT"),
        (
            ["listen", "-4", "fd77::2", "80"],
            "fd77::2 is not an IPv4 address; drop -4 or give one",
        ),
        (
            ["connect", "--impair", "loss=5%,x=1", "h", "1"],
            "invalid value for '--impair': unknown key 'x' (known: loss, dup, reorder, corrupt, "
            "delay, jitter, gap, seed, seed-in); see 'pytcp connect --help'",
        ),
        (
            ["connect", "--cc", "vegas", "h", "1"],
            "invalid value for '--cc': 'vegas' is not one of 'newreno', 'cubic'; "
            "see 'pytcp connect --help'",
        ),
        (["listen"], "give PORT, or ADDR and PORT; see 'pytcp listen --help'"),
        (["listen", "a", "b", "c"], "got 3 arguments; see 'pytcp listen --help'"),
        (
            ["listen", "nowhere", "80"],
            "'nowhere' is not an IPv4 or IPv6 address; see 'pytcp listen --help'",
        ),
        (
            ["listen", "99999"],
            "invalid value for 'PORT': 99999 is out of range; a port is 1-65535; "
            "see 'pytcp listen --help'",
        ),
        (
            ["listen", "-m", "2", "80"],
            "--max-conns needs -k/--keep-open (without it there is one client)",
        ),
        (["listen", "-e", "cat", "-c", "cat", "80"], "-e and -c exclude each other; pick one"),
        (
            ["listen", "-e", "'cat", "80"],
            'cannot split -e "\'cat": No closing quotation; check the quotes',
        ),
        (["listen", "-e", "", "80"], "-e needs a command; give one"),
        (
            ["listen", "-e", "no-such-command-xyz --flag", "80"],
            "cannot find 'no-such-command-xyz' for -e; give a path or a command on PATH",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result, made = run(args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"pytcp: {message}\n")
    assert made == []  # no stack was built for a command line that cannot run


def test_refused_exits_1_with_cause_and_remedy() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "connection to 10.77.0.1:9 refused")
    result, made = run(["connect", "-p", "4000", "-w", "3s", "10.77.0.1", "9"], refused)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "pytcp: connection to 10.77.0.1 port 9 refused; check that something listens there\n"
    )
    assert made[0].calls == [("connect", "10.77.0.1", 9, {"timeout": 3.0, "source_port": 4000})]
    assert made[0].exited is not None and made[0].exited[0] is not None  # left by the error


def test_timeout_names_the_limit() -> None:
    result, _ = run(["connect", "-w", "500ms", "10.77.0.1", "80"], TimeoutError(110, "timed out"))
    assert (result.exit_code, result.stderr) == (
        1,
        "pytcp: connection to 10.77.0.1 port 80 timed out after 500ms; "
        "check the address and route, or raise -w\n",
    )


def test_unreachable() -> None:
    result, _ = run(["connect", "10.9.9.9", "80"], OSError(errno.EHOSTUNREACH, "unreachable"))
    assert (result.exit_code, result.stderr) == (
        1,
        "pytcp: 10.9.9.9 port 80 is unreachable; check the address and the routes\n",
    )


def test_environment_failure_exits_3() -> None:
    failure = StackEnvironmentError(errno.EPERM, "no permission for /dev/net/tun; run as root")
    result, _ = run(["connect", "10.77.0.1", "80"], failure)
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr == f"pytcp: {failure}\n"


def test_bad_interface_option_is_a_usage_error() -> None:
    failure = StackEnvironmentError(errno.EINVAL, "bad --addr '10.77.0.300': expected an IPv4")
    result, _ = run(["connect", "--addr", "10.77.0.300", "10.77.0.1", "80"], failure)
    assert (result.exit_code, result.stderr) == (2, f"pytcp: {failure}\n")


def test_listen_port_in_use_exits_3() -> None:
    result, made = run(
        ["listen", "--backlog", "4", "10.77.0.2", "80"],
        OSError(errno.EADDRINUSE, "Address already in use"),
    )
    assert (result.exit_code, result.stderr) == (
        3,
        "pytcp: cannot listen on port 80: Address already in use; choose another port\n",
    )
    assert made[0].calls == [
        ("listen", 80,
         {"address": "10.77.0.2", "backlog": 4, "family": None, "syn_cookies": "auto"})
    ]  # fmt: skip


def test_names_resolve_through_the_resolver_and_options_reach_the_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTCP_TUN", "tunx")
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    result, made = run(
        [
            "connect",
            "--mss",
            "1000",
            "--cc",
            "cubic",
            "--no-sack",
            "--trace",
            "--addr",
            "10.77.5.2",
            "--gateway",
            "10.77.5.1/24",
            "--mtu",
            "9000",
            "--impair",
            "loss=1%,seed=3",
            "-vv",
            "web.test",
            "8080",
        ],
        refused,
        resolver={"web.test": "10.77.0.1"}.__getitem__,
    )
    assert result.exit_code == 1
    stack = made[0]
    assert stack.calls[0][1:3] == ("10.77.0.1", 8080)
    assert stack.opts == StackOptions(
        tun="tunx",
        addr="10.77.5.2",
        gateway="10.77.5.1/24",
        mtu=9000,
        mss=1000,
        trace=True,
        verbose=2,
        impair="loss=1%,seed=3",
        cc="cubic",
        sack=False,
    )
    assert stack.tracer is not None


def test_no_tracer_unless_asked() -> None:
    _, made = run(["connect", "-v", "10.77.0.1", "80"], ConnectionRefusedError(111, "refused"))
    assert made[0].tracer is None


def test_a_name_that_does_not_resolve_is_one_line_and_exit_1() -> None:
    # The real system resolver (no resolver injected). RFC 6761: .invalid never resolves;
    # the reason is glibc's own words, taken from the same call.
    import socket

    name = "no-such-host.invalid"
    with pytest.raises(socket.gaierror) as failed:
        socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    result, made = run(["connect", "-z", "-w", "2s", name, "80"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"pytcp: cannot resolve {name!r} ({failed.value.strerror}); "
        "check the name or give an address\n",
    )
    assert made == []  # no stack was built for a name that does not resolve


def test_localhost_resolves_to_loopback_through_the_system_resolver() -> None:
    assert App().resolve("localhost", False) == "127.0.0.1"


def test_keep_open_help_says_where_data_goes() -> None:
    result = CliRunner().invoke(cli, ["listen", "--help"], prog_name="pytcp")
    assert result.exit_code == 0
    # click wraps the help to the terminal width, breaking lines after hyphens too
    text = " ".join(result.output.split()).replace("- ", "-")
    assert (
        "-k, --keep-open Serve connections concurrently and keep listening: data of all "
        "clients goes to stdout, stdin goes to every connected client (after stdin ends, "
        "each client gets FIN: a half-close, it can still send). A client that closes its "
        "side gets what is already queued for it, then FIN: it is not kept in CLOSE-WAIT."
    ) in text
