"""Two Connections back to back (no Host): data both ways, through loss, duplication
and reordering, then a clean close -- byte-exact, on a virtual clock."""

from __future__ import annotations

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.state import State
from tests.tcp.helpers import Pair

FULL = TcpConfig(rcv_buf=64 * 1024, snd_buf=64 * 1024)  # every option, NewReno, Nagle


def transfer(
    pair: Pair, a_data: bytes, b_data: bytes, *, read_limit: int = 1 << 20
) -> tuple[bytes, bytes]:
    """Client sends a_data, server sends b_data; both shut down after sending.  Each
    side reads at most read_limit bytes per step (a slow reader when small)."""
    client, server = pair.client, pair.server
    got_at_server = bytearray()
    got_at_client = bytearray()
    a_off = b_off = 0
    shut_a = shut_b = False

    def pump() -> bool:
        nonlocal a_off, b_off, shut_a, shut_b
        if client.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            a_off += client.send(a_data[a_off : a_off + 65536], pair.now)
            if a_off == len(a_data) and not shut_a:
                client.shutdown(pair.now)
                shut_a = True
        if server.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            b_off += server.send(b_data[b_off : b_off + 65536], pair.now)
            if b_off == len(b_data) and not shut_b:
                server.shutdown(pair.now)
                shut_b = True
        got_at_server.extend(server.receive(read_limit, pair.now))
        got_at_client.extend(client.receive(read_limit, pair.now))
        # A connection may reach CLOSED with bytes still unread: keep reading them.
        return client.is_closed and server.is_closed and not (client.readable or server.readable)

    for _ in range(400_000):
        if pump():
            break
        if not pair.step() and not (client.readable or server.readable):
            break
    assert client.error is None and server.error is None
    assert client.is_closed and server.is_closed
    return bytes(got_at_server), bytes(got_at_client)


def payload(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def test_pair_transfers_both_ways_and_closes() -> None:
    pair = Pair(FULL, FULL)
    a, b = payload(200_000, 1), payload(150_000, 2)
    assert transfer(pair, a, b) == (a, b)


@pytest.mark.parametrize(("seed", "cc"), [(1, "newreno"), (2, "newreno"), (3, "cubic")])
def test_pair_through_loss_duplication_and_reordering(seed: int, cc: str) -> None:
    config = TcpConfig(rcv_buf=64 * 1024, snd_buf=64 * 1024, cc=cc)
    pair = Pair(config, config, loss=0.05, dup=0.02, reorder=0.05, seed=seed)
    a, b = payload(100_000, seed), payload(80_000, seed + 1)
    assert transfer(pair, a, b) == (a, b)
    assert pair.client.counters["retransmissions"] + pair.server.counters["retransmissions"] > 0


def test_pair_across_the_sequence_wrap_with_plain_options() -> None:
    plain = TcpConfig(
        rcv_buf=16 * 1024, snd_buf=16 * 1024, wscale=False, sack=False, timestamps=False
    )
    pair = Pair(plain, plain, client_iss=2**32 - 300, server_iss=2**32 - 100, loss=0.05, seed=9)
    a, b = payload(50_000, 5), payload(40_000, 6)
    assert transfer(pair, a, b) == (a, b)


def test_pair_slow_reader_small_buffers_through_loss() -> None:
    small = TcpConfig(rcv_buf=2048, snd_buf=8192)
    pair = Pair(small, small, loss=0.05, seed=4)
    a, b = payload(30_000, 7), payload(20_000, 8)
    assert transfer(pair, a, b, read_limit=100) == (a, b)
