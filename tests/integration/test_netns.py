"""The netns fixture itself: private, with lo up, and gone afterwards."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.conftest import Netns


@pytest.mark.netns
def test_netns_is_private_and_removed(netns: Netns) -> None:
    links = netns.run("ip", "-o", "link", "show").stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    name = netns.name
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name in listed
