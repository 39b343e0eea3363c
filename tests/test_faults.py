"""Per-connection faults (stack.io.faults, `pytcp impair`): the spec grammar and what
Faults.apply does to each packet of one 4-tuple, sans-IO with exact packets."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from stack.io.faults import REORDER_MAX_HOLD, Faults, FaultSpec
from stack.trace import TraceLog
from stack.wire import Flags, Ipv4Header, TcpSegment
from stack.wire.checksum import ones_sum, pseudo_header_sum

LOCAL = (IPv4Address("10.77.0.2"), 40000)
REMOTE = (IPv4Address("10.77.0.1"), 7)
OTHER = (IPv4Address("10.77.0.1"), 8)


def packet(seq: int, *, outgoing: bool = False, payload: bytes = b"", flags: Flags = Flags.ACK,
           remote: tuple[IPv4Address, int] = REMOTE) -> bytes:  # fmt: skip
    src, dst = (LOCAL, remote) if outgoing else (remote, LOCAL)
    seg = TcpSegment(src[1], dst[1], seq, 1, flags, 1000, payload=payload)
    return Ipv4Header(src[0], dst[0], 6).build(seg.build(src[0], dst[0]))


def faults(*specs: str, tracer: TraceLog | None = None) -> Faults:
    f = Faults(tracer)
    for spec in specs:
        f.set("3", LOCAL, REMOTE, FaultSpec.parse(spec))
    return f


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("drop-next 3", FaultSpec("drop-next", 3, "in")),
        ("drop-acks 2 out", FaultSpec("drop-acks", 2, "out")),
        ("dup-next=1 both", FaultSpec("dup-next", 1, "both")),
        ("delay 50", FaultSpec("delay", 50, "in")),
        ("window 0", FaultSpec("window", 0, "out")),
        ("clear", FaultSpec("clear", 0, "both")),
    ],
)
def test_spec_grammar(text: str, spec: FaultSpec) -> None:
    assert FaultSpec.parse(text) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "impair: empty fault"),
        ("drop 3", "impair: unknown fault 'drop'"),
        ("drop-next", "impair: drop-next needs a number"),
        ("drop-next x", "impair: drop-next x: not a non-negative integer"),
        ("drop-next 0", "impair: drop-next 0: N must be 1-1000000"),
        ("drop-next 3 sideways", "impair: direction 'sideways' is not in, out or both"),
        ("window 0 in", "impair: window clamps the window pytcp advertises; no direction"),
        ("clear now", "impair: clear takes no argument"),
        ("delay 60001", "impair: delay 60001: at most 60000 ms"),
    ],
)
def test_bad_specs_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        FaultSpec.parse(text)
    assert str(info.value).startswith(message)


def test_nothing_set_passes_everything_untouched() -> None:
    f = Faults()
    assert not f.active
    assert f.apply(packet(1), 0, False) is None


def test_drop_next_drops_exactly_n_in_one_direction_and_one_connection() -> None:
    log = TraceLog()
    f = faults("drop-next 3", tracer=log)
    assert f.describe("3") == [{"fault": "drop-next", "direction": "in", "left": 3}]
    assert f.apply(packet(1, outgoing=True), 0, True) is None  # other direction
    assert f.apply(packet(1, remote=OTHER), 0, False) is None  # other connection
    fates = [f.apply(packet(seq), seq, False) for seq in (1, 2, 3, 4)]
    assert fates == [[], [], [], None]
    assert f.describe("3") == []
    assert not f.active
    events = log.of_kind("impair")
    assert [(e.conn, e.fields["action"], e.fields["left"], e.fields["segment"].seq)
            for e in events] == [("3", "dropped", 2, 1), ("3", "dropped", 1, 2),
                                 ("3", "dropped", 0, 3)]  # fmt: skip


def test_drop_acks_takes_pure_acks_only() -> None:
    f = faults("drop-acks 1 out")
    data = packet(1, outgoing=True, payload=b"x")
    fin = packet(2, outgoing=True, flags=Flags.FIN | Flags.ACK)
    assert f.apply(data, 0, True) is None
    assert f.apply(fin, 0, True) is None
    assert f.apply(packet(3, outgoing=True), 0, True) == []
    assert f.apply(packet(4, outgoing=True), 0, True) is None


def test_dup_corrupt_delay() -> None:
    p = packet(1, payload=b"abc")
    assert faults("dup-next 1").apply(p, 5, False) == [(5, p), (5, p)]
    ((at, damaged),) = faults("corrupt-next 1").apply(p, 5, False) or []
    assert at == 5 and len(damaged) == len(p) and damaged != p
    ip, payload = Ipv4Header.parse(damaged)  # the IP header is intact...
    assert ones_sum(payload, pseudo_header_sum(ip.src, ip.dst, 6, len(payload))) != 0xFFFF
    f = faults("delay 50 both")
    assert f.apply(p, 5, False) == [(5 + 50_000_000, p)]
    assert f.apply(p, 6, False) == [(6 + 50_000_000, p)]  # until cleared
    f.set("3", LOCAL, REMOTE, FaultSpec.parse("clear"))
    assert f.apply(p, 7, False) is None


def test_reorder_next_lets_the_next_segment_overtake() -> None:
    f = faults("reorder-next 1")
    first, second = packet(1, payload=b"a"), packet(2, payload=b"b")
    assert f.apply(first, 0, False) == []
    assert f.next_deadline() == REORDER_MAX_HOLD
    assert f.apply(second, 10, False) == [(10, second), (10, first)]
    assert f.next_deadline() is None
    assert not f.active


def test_reorder_next_releases_after_the_hold_when_nothing_overtakes() -> None:
    f = faults("reorder-next 1")
    first = packet(1, payload=b"a")
    assert f.apply(first, 0, False) == []
    assert f.due(REORDER_MAX_HOLD - 1) == []
    assert f.due(REORDER_MAX_HOLD) == [(False, first)]
    assert not f.active
