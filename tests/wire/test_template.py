"""HeaderTemplate against the general builders: byte for byte, over any field values."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from stack.wire import PROTO_TCP, Ipv4Header, TcpSegment
from stack.wire.template import HeaderTemplate

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
addresses = st.integers(0, 2**32 - 1).map(IPv4Address)


@given(src=addresses, dst=addresses, ports=st.tuples(u16, u16), ttl=st.integers(1, 255),
       df=st.booleans(), ts=st.one_of(st.none(), st.tuples(u32, u32)),
       payload_len=st.integers(0, 65535 - 52), ident=u16, seq=u32, ack=u32,
       flags=st.integers(0, 255), window=u16, tos=st.sampled_from([0, 1, 2, 3]))  # fmt: skip
def test_a_template_builds_the_bytes_the_builders_build(
    src: IPv4Address, dst: IPv4Address, ports: tuple[int, int], ttl: int, df: bool,
    ts: tuple[int, int] | None, payload_len: int, ident: int, seq: int, ack: int, flags: int,
    window: int, tos: int,
) -> None:  # fmt: skip
    template = HeaderTemplate(src, dst, *ports, ttl=ttl, dont_fragment=df,
                              timestamps=ts is not None)  # fmt: skip
    seg = TcpSegment(*ports, seq, ack, flags, window, payload=bytes(payload_len), timestamps=ts)
    tcp = seg.build_header(src, dst, partial=True)
    ip = Ipv4Header(src, dst, PROTO_TCP, ttl, tos, ident, df).build_header(
        20 + len(tcp) + payload_len
    )
    built = template.build(payload_len, ident, seq, ack, flags, window, ts, tos)
    assert built == ip + tcp
    assert template.header_len == len(ip + tcp)


def test_the_zero_sums_fold_as_the_builders_fold_them() -> None:
    # Addresses whose words sum with the rest to a multiple of 0xFFFF: the ones'
    # complement "negative zero" cases of RFC 1071.
    for src, dst in [(IPv4Address(0), IPv4Address(0)),
                     (IPv4Address("255.255.255.255"), IPv4Address("0.0.255.249"))]:  # fmt: skip
        template = HeaderTemplate(src, dst, 0, 0, ttl=64, dont_fragment=True, timestamps=False)
        seg = TcpSegment(0, 0, 0, 0, 0, 0)
        tcp = seg.build_header(src, dst, partial=True)
        ip = Ipv4Header(src, dst, PROTO_TCP, 64, 0, 0, True).build_header(40)
        assert template.build(0, 0, 0, 0, 0, 0) == ip + tcp
