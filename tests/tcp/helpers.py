"""Test helpers for the sans-IO Connection (STYLE.md §2.4, after smoltcp's tcp.rs tests).

Segment templates, `send`/`recv`/`recv_nothing` with time in every call, state builders
that drive a real handshake with pinned ISS values, and `Pair`, two connections wired
back to back through an optional lossy in-memory path.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address

from stack.tcp.clock import MS
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.state import State
from stack.wire.tcp import Flags, TcpSegment

ACK = Flags.ACK
SYN = Flags.SYN
FIN = Flags.FIN
RST = Flags.RST
PSH = Flags.PSH

LOCAL = (IPv4Address("10.77.0.2"), 5000)
REMOTE = (IPv4Address("10.77.0.1"), 40000)
LOCAL_ISS = 10_000
REMOTE_ISS = 20_000
BUF = 4096  # small buffers keep window arithmetic readable
MSS = 1460  # 1500 - 40

# Plain TCP: no options, no congestion control; tests of those features turn them on.
CONFIG = TcpConfig(
    rcv_buf=BUF, snd_buf=BUF, wscale=False, sack=False, timestamps=False, cc="none", nodelay=True
)

# What the remote sends us (time in every call; fields replaced per test).
SEND = TcpSegment(
    src_port=REMOTE[1],
    dst_port=LOCAL[1],
    seq=REMOTE_ISS + 1,
    ack=LOCAL_ISS + 1,
    flags=ACK,
    window=BUF,
)
# What we send to the remote.
RECV = TcpSegment(
    src_port=LOCAL[1],
    dst_port=REMOTE[1],
    seq=LOCAL_ISS + 1,
    ack=REMOTE_ISS + 1,
    flags=ACK,
    window=BUF,
)


def connection(
    config: TcpConfig = CONFIG, *, iss: int = LOCAL_ISS, mtu: int = 1500, tracer=None
) -> Connection:
    return Connection(
        id=1, local=LOCAL, remote=REMOTE, iss=iss, config=config, link_mtu=mtu, tracer=tracer
    )


def send(conn: Connection, seg: TcpSegment, now: int) -> None:
    conn.receive_segment(seg, now)


def recv_all(conn: Connection, now: int) -> list[TcpSegment]:
    conn.handle_timers(now)
    return conn.segments_to_send(now)


def recv(conn: Connection, now: int) -> TcpSegment:
    """Exactly one segment goes out at `now` (timers due at `now` fire first)."""
    out = recv_all(conn, now)
    assert len(out) == 1, f"expected one segment, got {out}"
    return out[0]


def recv_nothing(conn: Connection, now: int) -> bool:
    out = recv_all(conn, now)
    assert out == [], f"expected nothing, got {out}"
    return True


def events(conn: Connection) -> list[object]:
    out: list[object] = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def syn(seq: int = REMOTE_ISS, **kw: object) -> TcpSegment:
    """The peer's SYN, announcing MSS 1460 unless told otherwise."""
    kw.setdefault("mss", MSS)
    return replace(SEND, seq=seq, ack=0, flags=SYN, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- state builders
# Each drives the real exchange with exact segments, so a builder that drifts from
# the protocol fails here first.


def syn_sent(config: TcpConfig = CONFIG, *, iss: int = LOCAL_ISS, now: int = 0) -> Connection:
    c = connection(config, iss=iss)
    c.open_active(now)
    out = recv(c, now)
    assert out.flags == SYN and out.seq == iss
    return c


def syn_received(
    config: TcpConfig = CONFIG, *, iss: int = LOCAL_ISS, irs: int = REMOTE_ISS, now: int = 0
) -> Connection:
    c = connection(config, iss=iss)
    c.open_passive(now)
    send(c, syn(irs), now)
    out = recv(c, now)
    assert out.flags == SYN | ACK and out.seq == iss and out.ack == (irs + 1) % 2**32
    return c


def established(
    config: TcpConfig = CONFIG, *, iss: int = LOCAL_ISS, irs: int = REMOTE_ISS, now: int = 0
) -> Connection:
    """Passive open completed: SYN in, SYN-ACK out, ACK in."""
    c = syn_received(config, iss=iss, irs=irs, now=now)
    send(c, replace(SEND, seq=(irs + 1) % 2**32, ack=(iss + 1) % 2**32), now)
    assert c.state is State.ESTABLISHED
    events(c)
    return c


def fin_wait_1(now: int = 0) -> Connection:
    c = established(now=now)
    c.shutdown(now)
    assert recv(c, now) == replace(RECV, flags=FIN | ACK)
    return c


def fin_wait_2(now: int = 0) -> Connection:
    c = fin_wait_1(now)
    send(c, replace(SEND, ack=LOCAL_ISS + 2), now)
    assert c.state is State.FIN_WAIT_2
    return c


def close_wait(now: int = 0) -> Connection:
    c = established(now=now)
    send(c, replace(SEND, flags=FIN | ACK), now)
    assert recv(c, now) == replace(RECV, ack=REMOTE_ISS + 2)
    assert c.state is State.CLOSE_WAIT
    return c


def last_ack(now: int = 0) -> Connection:
    c = close_wait(now)
    c.shutdown(now)
    assert recv(c, now) == replace(RECV, flags=FIN | ACK, ack=REMOTE_ISS + 2)
    return c


def closing(now: int = 0) -> Connection:
    c = fin_wait_1(now)
    send(c, replace(SEND, flags=FIN | ACK), now)  # their FIN, not acking ours
    assert c.state is State.CLOSING
    assert recv(c, now) == replace(RECV, seq=LOCAL_ISS + 2, ack=REMOTE_ISS + 2)
    return c


def time_wait(now: int = 0) -> Connection:
    c = fin_wait_2(now)
    send(c, replace(SEND, ack=LOCAL_ISS + 2, flags=FIN | ACK), now)
    assert c.state is State.TIME_WAIT
    assert recv(c, now) == replace(RECV, seq=LOCAL_ISS + 2, ack=REMOTE_ISS + 2)
    return c


def closed(now: int = 0) -> Connection:
    return connection()


def listen(now: int = 0) -> Connection:
    c = connection()
    c.open_passive(now)
    return c


BUILDERS: dict[State, Callable[[], Connection]] = {
    State.CLOSED: closed,
    State.LISTEN: listen,
    State.SYN_SENT: syn_sent,
    State.SYN_RECEIVED: syn_received,
    State.ESTABLISHED: established,
    State.FIN_WAIT_1: fin_wait_1,
    State.FIN_WAIT_2: fin_wait_2,
    State.CLOSE_WAIT: close_wait,
    State.CLOSING: closing,
    State.LAST_ACK: last_ack,
    State.TIME_WAIT: time_wait,
}


# ---------------------------------------------------------------- two connections


class Pair:
    """A client and a server Connection joined by an in-memory path that can lose,
    duplicate and reorder segments (seeded), driven by a virtual clock that jumps to
    the next deadline (aioquic's client/server pair tests)."""

    def __init__(
        self,
        client_config: TcpConfig = CONFIG,
        server_config: TcpConfig = CONFIG,
        *,
        client_iss: int = LOCAL_ISS,
        server_iss: int = REMOTE_ISS,
        loss: float = 0.0,
        dup: float = 0.0,
        reorder: float = 0.0,
        delay: int = 10 * MS,
        seed: int = 1,
    ) -> None:
        self.client = Connection(
            id=1, local=REMOTE, remote=LOCAL, iss=client_iss, config=client_config
        )
        self.server = Connection(
            id=2, local=LOCAL, remote=REMOTE, iss=server_iss, config=server_config
        )
        self.rng = random.Random(seed)
        self.loss, self.dup, self.reorder, self.delay = loss, dup, reorder, delay
        self.now = 0
        # (deliver_at, order, destination, segment)
        self.flight: list[tuple[int, int, Connection, TcpSegment]] = []
        self._order = 0
        self.server.open_passive(self.now)
        self.client.open_active(self.now)

    def _ship(self, src: Connection, dst: Connection) -> None:
        for seg in src.segments_to_send(self.now):
            seg = replace(seg, payload=bytes(seg.payload))
            if self.rng.random() < self.loss:
                continue
            copies = 2 if self.rng.random() < self.dup else 1
            for _ in range(copies):
                at = self.now + self.delay
                if self.rng.random() < self.reorder:
                    at += self.delay * 2
                self._order += 1
                self.flight.append((at, self._order, dst, seg))

    def step(self) -> bool:
        """Deliver or fire whatever is due next; False when nothing is left to do."""
        for c in (self.client, self.server):
            c.handle_timers(self.now)
        self._ship(self.client, self.server)
        self._ship(self.server, self.client)
        deadlines = [d for c in (self.client, self.server) if (d := c.next_deadline()) is not None]
        if self.flight:
            deadlines.append(min(f[0] for f in self.flight))
        if not deadlines:
            return False
        self.now = max(self.now, min(deadlines))
        due = sorted(f for f in self.flight if f[0] <= self.now)
        self.flight = [f for f in self.flight if f[0] > self.now]
        for _, _, dst, seg in due:
            dst.receive_segment(seg, self.now)
        return True

    def run_until(self, done: Callable[[], bool], max_steps: int = 200_000) -> None:
        for _ in range(max_steps):
            if done():
                return
            if not self.step():
                break
        assert done(), f"not done at {self.now} ns: {self.client.state}, {self.server.state}"
