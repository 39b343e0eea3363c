"""Option types: durations, ports, --time-wait, --impair, and the StackOptions they make."""

from __future__ import annotations

import socket

import click
import pytest
from click.testing import CliRunner

from pytcpcli.main import cli
from pytcpcli.options import (
    DURATION,
    PORT,
    PORTS,
    Duration,
    Keepalive,
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
    # As nc users write them: a range, a reversed range (counted down), comma lists.
    assert PORTS.convert("20-22", None, None) == [20, 21, 22]
    assert PORTS.convert("22-20", None, None) == [22, 21, 20]
    assert PORTS.convert("22,80,8000-8002", None, None) == [22, 80, 8000, 8001, 8002]
    assert PORTS.convert("ssh", None, None) == [22]
    for bad, message in [
        ("0-20", "0 is out of range; a port is 1-65535"),
        ("22,,80", "'22,,80' has an empty entry; write 22,80 or 20-30"),
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


def test_recovery_and_socket_options_to_tcp_config() -> None:
    opts = StackOptions(rack=False, ecn=True, nodelay=True, keepalive=(60.0, 10.0, 5))
    assert opts.tcp_overrides() == {
        "rack": False,
        "ecn": True,
        "nodelay": True,
        "keepalive_idle": 60 * 10**9,
        "keepalive_interval": 10 * 10**9,
        "keepalive_probes": 5,
    }


def test_keepalive_spec() -> None:
    ka = Keepalive()
    assert ka.convert("60", None, None) == (60.0, 75.0, 9)  # Linux's interval and count
    assert ka.convert("2m,5s", None, None) == (120.0, 5.0, 9)
    assert ka.convert("30,500ms,3", None, None) == (30.0, 0.5, 3)
    for bad, why in (
        ("", "is not IDLE[,INTERVAL[,COUNT]] (such as 60,10,5)"),
        ("1,2,3,4", "is not IDLE[,INTERVAL[,COUNT]] (such as 60,10,5)"),
        ("0", "'0': IDLE and INTERVAL must be positive"),
        ("10,x", "'x' is not a duration such as 500ms, 2s, 1.5 or 1m"),
        ("10,1,0", "'10,1,0': COUNT must be a whole number of probes, at least 1"),
    ):
        with pytest.raises(click.BadParameter) as err:
            ka.convert(bad, None, None)
        assert err.value.message.endswith(why), (bad, err.value.message)


def test_options_reach_the_connection_config() -> None:
    result = CliRunner().invoke(cli, ["connect", "--keepalive", "0", "h", "1"])
    assert result.exit_code == 2
    assert "IDLE and INTERVAL must be positive" in result.output


def test_overrides_build_a_tcp_config() -> None:
    from pytcpcli.app import tcp_config

    config = tcp_config(StackOptions(rack=False, ecn=True, nodelay=True, keepalive=(1.0, 2.0, 3)))
    assert (config.rack, config.ecn, config.nodelay) == (False, True, True)
    assert (config.keepalive_idle, config.keepalive_interval, config.keepalive_probes) == (
        10**9,
        2 * 10**9,
        3,
    )
    assert config.cc == "cubic"  # the default, as Linux
