"""Option types: durations, ports, --time-wait, --impair, and the StackOptions they make."""

from __future__ import annotations

import socket

import click
import pytest

from pytcpcli.options import (
    DURATION,
    PORT,
    PORTS,
    Duration,
    StackOptions,
    TimeWait,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1.5", 1.5),
        ("3", 3.0),
        ("1h", 3600.0),
        (".25s", 0.25),
        (" 2s ", 2.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert DURATION.convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["", "2x", "-1s", "s", "1 s", "1e3", "ms"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert str(err.value) == f"{text!r} is not a duration such as 500ms, 2s, 1.5 or 1m"


def test_zero_duration_only_where_allowed() -> None:
    with pytest.raises(click.BadParameter) as err:
        DURATION.convert("0s", None, None)
    assert err.value.message == "'0s' is zero; give a positive duration"
    assert Duration(allow_zero=True).convert("0", None, None) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (2.0, "2s"), (1.5, "1.5s"), (60.0, "1m"), (0.0, "0s"), (90.0, "90s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_ports() -> None:
    assert PORT.convert("80", None, None) == 80
    assert PORT.convert("65535", None, None) == 65535
    assert PORT.convert("http", None, None) == socket.getservbyname("http", "tcp")
    assert PORTS.convert("22", None, None) == [22]
    assert PORTS.convert("20-23", None, None) == [20, 21, 22, 23]
    assert PORTS.convert("ssh", None, None) == [socket.getservbyname("ssh", "tcp")]
    for bad, message in [
        ("0", "0 is out of range; a port is 1-65535"),
        ("65536", "65536 is out of range; a port is 1-65535"),
        (
            "no-such-service",
            "'no-such-service' is neither a port number (1-65535) nor a TCP service name",
        ),
        ("-1", "'-1' is neither a port number (1-65535) nor a TCP service name"),
    ]:
        with pytest.raises(click.BadParameter) as err:
            PORT.convert(bad, None, None)
        assert err.value.message == message


def test_port_ranges() -> None:
    for bad, message in [
        ("30-20", "'30-20' is an empty range; write LOW-HIGH"),
        ("0-20", "0 is out of range; a port is 1-65535"),
    ]:
        with pytest.raises(click.BadParameter) as err:
            PORTS.convert(bad, None, None)
        assert err.value.message == message


def test_time_wait() -> None:
    tw = TimeWait()
    assert tw.convert("full", None, None) is None
    assert tw.convert("1s", None, None) == 1.0
    assert tw.convert("0", None, None) == 0.0
    with pytest.raises(click.BadParameter) as err:
        tw.convert("forever", None, None)
    assert err.value.message == "'forever' is neither 'full' nor a duration such as 1s"


def test_stack_options_to_tcp_config() -> None:
    assert StackOptions().tcp_overrides() == {}
    opts = StackOptions(mss=1000, cc="cubic", sack=False, wscale=False, timestamps=False)
    assert opts.tcp_overrides() == {
        "mss": 1000,
        "cc": "cubic",
        "sack": False,
        "wscale": False,
        "timestamps": False,
    }
