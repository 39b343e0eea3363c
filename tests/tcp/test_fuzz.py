"""Any segment in any state: the connection drops or answers, never raises (h11's rule:
an exception on network input is a bug).  Hypothesis drives the inputs."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.tcp.clock import MS
from stack.tcp.state import State
from stack.wire.tcp import Flags, TcpSegment
from tests.tcp.helpers import BUILDERS, LOCAL, LOCAL_ISS, REMOTE, REMOTE_ISS

u32 = st.integers(0, 2**32 - 1)


def near(base: int) -> st.SearchStrategy[int]:
    return st.one_of(u32, st.integers(-5000, 5000).map(lambda d: (base + d) % 2**32))


segments = st.builds(
    TcpSegment,
    src_port=st.just(REMOTE[1]),
    dst_port=st.just(LOCAL[1]),
    seq=near(REMOTE_ISS + 1),
    ack=near(LOCAL_ISS + 1),
    flags=st.integers(0, 255).map(Flags),
    window=st.integers(0, 0xFFFF),
    urgent=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=3000),
    mss=st.one_of(st.none(), st.integers(0, 0xFFFF)),
    wscale=st.one_of(st.none(), st.integers(0, 255)),
    sack_permitted=st.booleans(),
    sack=st.lists(st.tuples(u32, u32), max_size=4).map(tuple),
    timestamps=st.one_of(st.none(), st.tuples(u32, u32)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=st.sampled_from(list(State)),
    segs=st.lists(segments, min_size=1, max_size=8),
    steps=st.lists(st.integers(0, 3000 * MS), min_size=1, max_size=8),
)
def test_any_segments_in_any_state_never_raise(
    state: State, segs: list[TcpSegment], steps: list[int]
) -> None:
    c = BUILDERS[state]()
    now = 0
    for i, seg in enumerate(segs):
        now += steps[i % len(steps)]
        c.receive_segment(seg, now)
        c.handle_timers(now)
        out = c.segments_to_send(now)
        if seg.flags & Flags.RST:
            assert not [o for o in out if o.flags & Flags.RST], "never a RST for a RST"
        if c.state not in (State.CLOSED, State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED):
            c.receive(1 << 16, now)
        c.snapshot(now)
    # whatever happened, time alone brings the connection to rest
    for _ in range(200):
        deadline = c.next_deadline()
        if deadline is None:
            break
        now = max(now, deadline)
        c.handle_timers(now)
        c.segments_to_send(now)
    assert c.next_deadline() is None
