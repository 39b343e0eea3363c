"""`pytcp listen -k` with a silent stdin: clients that close their side leave (issue 14)
instead of waiting in CLOSE-WAIT until stdin speaks."""

from __future__ import annotations

import json
import socket

import pytest

from tests.cli.netcat import ADDRS, FAMILIES, TIMEOUT, recv_all, run, start_listener

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

CLIENTS = 200


@FAMILIES
def test_departed_clients_are_closed_not_kept_in_close_wait(netns, family: int) -> None:
    port = 7500 + family
    proc, _err = start_listener("-k", str(port))  # stdin: a pipe that stays silent
    assert proc.stdin is not None and proc.stdout is not None
    try:
        clients = []
        for i in range(CLIENTS):
            c = socket.create_connection((ADDRS[family][1], port), timeout=TIMEOUT)
            c.settimeout(TIMEOUT)
            c.sendall(b"bye %d\n" % i)
            c.shutdown(socket.SHUT_WR)  # the client leaves: FIN
            clients.append(c)
        # Each gets pytcp's FIN back while stdin stays open and silent.
        assert [recv_all(c) for c in clients] == [b""] * CLIENTS
        for c in clients:
            c.close()
        # Nothing of theirs is left: at most the last ACKs of LAST-ACK still on the way.
        states: list[str] = []
        for _ in range(50):  # bounded: each round asks the process once
            listing = json.loads(run("inspect", "--json").stdout)
            states = [e["state"] for e in listing if e.get("pid") == proc.pid]
            if states == ["LISTEN"] or "CLOSE-WAIT" in states:
                break
        assert states == ["LISTEN"]
    finally:
        proc.terminate()  # -k listens on: end it (its stdin is still open and silent)
        out, _ = proc.communicate(timeout=TIMEOUT)
    assert sorted(out.splitlines()) == sorted(b"bye %d" % i for i in range(CLIENTS))
