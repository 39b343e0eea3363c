"""TcpSegment: real Linux segments parse to exact fields and build back to the same bytes;
every malformation raises WireError with its exact reason; build lays options out like Linux."""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import pytest

from stack.wire import Flags, Ipv4Header, TcpSegment, WireError
from stack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum
from tests.wire.vectors import CLIENT, LINUX_DATA, LINUX_SYN, LINUX_SYN_ACK, SERVER

A = IPv4Address("10.77.0.2")
B = IPv4Address("10.77.0.1")


def tcp_part(packet: bytes) -> bytes:
    return packet[20:]


def with_checksum(segment: bytes | bytearray, src=A, dst=B) -> bytes:
    """segment with its TCP checksum recomputed (for hand-made malformed segments)."""
    buf = bytearray(segment)
    buf[16:18] = b"\0\0"
    csum = internet_checksum(buf, pseudo_header_sum(src, dst, 6, len(buf)))
    buf[16:18] = csum.to_bytes(2, "big")
    return bytes(buf)


def raw_segment(options: bytes, *, doff: int | None = None, payload: bytes = b"") -> bytes:
    """A SYN from A:40000 to B:5000 with the given raw option bytes, checksum valid."""
    if doff is None:
        doff = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", 40000, 5000, 100, 0, doff << 4, 0x02, 1000, 0, 0)
    return with_checksum(header + options + payload)


# --- real Linux segments -------------------------------------------------------------------


def test_linux_syn_parses_to_exact_fields() -> None:
    seg = TcpSegment.parse(tcp_part(LINUX_SYN), CLIENT, SERVER)
    assert seg == TcpSegment(
        src_port=40000,
        dst_port=5000,
        seq=1792775970,
        ack=0,
        flags=Flags.SYN,
        window=65495,
        urgent=0,
        payload=b"",
        mss=65495,
        wscale=10,
        sack_permitted=True,
        sack=(),
        timestamps=(2880921809, 0),
    )
    assert seg.seg_len == 1


def test_linux_syn_ack_parses_to_exact_fields() -> None:
    seg = TcpSegment.parse(tcp_part(LINUX_SYN_ACK), SERVER, CLIENT)
    assert seg == TcpSegment(
        src_port=5000,
        dst_port=40000,
        seq=4254408396,
        ack=1792775971,
        flags=Flags.SYN | Flags.ACK,
        window=65483,
        mss=65495,
        wscale=10,
        sack_permitted=True,
        timestamps=(3942130038, 2880921809),
    )


def test_linux_data_segment_parses_with_payload() -> None:
    seg = TcpSegment.parse(tcp_part(LINUX_DATA), CLIENT, SERVER)
    assert seg == TcpSegment(
        src_port=40000,
        dst_port=5000,
        seq=1792775971,
        ack=4254408397,
        flags=Flags.PSH | Flags.ACK,
        window=64,
        payload=b"hello\n",
        timestamps=(2880921809, 3942130038),
    )
    assert bytes(seg.payload) == b"hello\n"
    assert seg.seg_len == 6


@pytest.mark.parametrize(
    ("packet", "src", "dst"),
    [(LINUX_SYN, CLIENT, SERVER), (LINUX_SYN_ACK, SERVER, CLIENT), (LINUX_DATA, CLIENT, SERVER)],
    ids=["syn", "syn-ack", "data"],
)
def test_linux_segments_build_back_to_the_same_bytes(packet: bytes, src, dst) -> None:
    seg = TcpSegment.parse(tcp_part(packet), src, dst)
    assert seg.build(src, dst) == tcp_part(packet)


def test_parse_payload_is_a_view_not_a_copy() -> None:
    buf = bytearray(tcp_part(LINUX_DATA))
    seg = TcpSegment.parse(buf, CLIENT, SERVER)
    assert isinstance(seg.payload, memoryview)
    buf[-1] = ord("!")  # the view sees the caller's buffer
    assert bytes(seg.payload) == b"hello!"


def test_parse_accepts_a_memoryview_slice() -> None:
    _, payload = Ipv4Header.parse(memoryview(LINUX_SYN))
    assert TcpSegment.parse(payload, CLIENT, SERVER).mss == 65495


# --- build ---------------------------------------------------------------------------------


def test_build_lays_out_syn_options_like_linux() -> None:
    seg = TcpSegment(
        40000,
        5000,
        1,
        0,
        Flags.SYN,
        64240,
        mss=1460,
        wscale=7,
        sack_permitted=True,
        timestamps=(1, 0),
    )
    assert seg.options_bytes() == bytes.fromhex("020405b40402080a000000010000000001030307")


def test_build_timestamps_without_sack_permitted_uses_two_nops() -> None:
    seg = TcpSegment(1, 2, 0, 0, Flags.ACK, 0, timestamps=(7, 9))
    assert seg.options_bytes() == bytes.fromhex("0101080a0000000700000009")


def test_build_sack_permitted_without_timestamps() -> None:
    seg = TcpSegment(1, 2, 0, 0, Flags.SYN, 0, mss=536, sack_permitted=True)
    assert seg.options_bytes() == bytes.fromhex("0204021801010402")


def test_build_sack_blocks_after_two_nops() -> None:
    seg = TcpSegment(1, 2, 0, 0, Flags.ACK, 0, timestamps=(1, 2), sack=((10, 20), (30, 40)))
    assert seg.options_bytes() == bytes.fromhex(
        "0101080a0000000100000002"  # nop, nop, TS val 1 ecr 2
        "01010512"  # nop, nop, SACK length 18
        "0000000a00000014"  # {10:20}
        "0000001e00000028"  # {30:40}
    )


def test_build_no_options_is_a_20_byte_header() -> None:
    seg = TcpSegment(1234, 80, 0xFFFFFFFF, 5, Flags.RST | Flags.ACK, 0)
    data = seg.build(A, B)
    assert len(data) == 20
    assert data[12] == 5 << 4
    assert TcpSegment.parse(data, A, B) == seg


def test_build_too_many_options_raises_value_error() -> None:
    seg = TcpSegment(
        1, 2, 0, 0, Flags.ACK, 0, timestamps=(1, 2), sack=((1, 2), (3, 4), (5, 6), (7, 8))
    )
    with pytest.raises(ValueError, match="TCP options need 48 bytes > 40"):
        seg.build(A, B)


def test_build_field_out_of_range_raises_value_error() -> None:
    with pytest.raises(ValueError, match="TCP field out of range"):
        TcpSegment(70000, 2, 0, 0, Flags.ACK, 0).build(A, B)


@pytest.mark.parametrize(
    "fields",
    [{"mss": 70000}, {"wscale": 256}, {"timestamps": (1 << 32, 0)}, {"sack": ((-1, 2),)}],
)
def test_build_option_out_of_range_raises_value_error(fields: dict) -> None:
    with pytest.raises(ValueError, match="TCP option out of range"):
        TcpSegment(1, 2, 0, 0, Flags.ACK, 0, **fields).build(A, B)


def test_build_takes_a_memoryview_payload() -> None:
    data = bytes(range(256)) * 4
    seg = TcpSegment(1, 2, 3, 4, Flags.ACK | Flags.PSH, 5, payload=memoryview(data)[1:])
    built = seg.build(A, B)
    assert built[20:] == data[1:]
    assert TcpSegment.parse(built, A, B) == seg


def test_build_checksum_is_valid_over_odd_payload() -> None:
    seg = TcpSegment(1, 2, 3, 4, Flags.ACK, 5, payload=b"abc")
    built = seg.build(A, B)
    assert ones_sum(built, pseudo_header_sum(A, B, 6, len(built))) == 0xFFFF


def test_build_and_parse_over_ipv6_pseudo_header() -> None:
    s, d = IPv6Address("fd77::2"), IPv6Address("fd77::1")
    seg = TcpSegment(1, 2, 3, 4, Flags.ACK, 5, payload=b"six")
    built = seg.build(s, d)
    assert TcpSegment.parse(built, s, d) == seg
    with pytest.raises(WireError) as err:
        TcpSegment.parse(built, s, IPv6Address("fd77::3"))
    assert err.value.reason == "bad-checksum"


def test_seg_len_counts_syn_and_fin() -> None:
    assert TcpSegment(1, 2, 0, 0, Flags.SYN | Flags.FIN, 0, payload=b"ab").seg_len == 4
    assert TcpSegment(1, 2, 0, 0, Flags.ACK, 0).seg_len == 0
    assert TcpSegment(1, 2, 0, 0, Flags.FIN | Flags.ACK, 0).seg_len == 1


# --- malformations: exact reasons ----------------------------------------------------------


def reason_of(data: bytes, src=A, dst=B, **kw) -> str:
    with pytest.raises(WireError) as err:
        TcpSegment.parse(data, src, dst, **kw)
    assert type(err.value) is WireError
    return err.value.reason


def test_truncated_header() -> None:
    with pytest.raises(WireError, match=r"^TCP segment of 19 bytes < 20$") as err:
        TcpSegment.parse(tcp_part(LINUX_SYN)[:19], CLIENT, SERVER)
    assert err.value.reason == "truncated"
    assert reason_of(b"") == "truncated"


def test_data_offset_below_five() -> None:
    data = raw_segment(b"", doff=3)
    with pytest.raises(WireError, match=r"^data offset 3 < 5$") as err:
        TcpSegment.parse(data, A, B)
    assert err.value.reason == "bad-data-offset"


def test_data_offset_beyond_segment() -> None:
    data = raw_segment(b"", doff=6)
    with pytest.raises(WireError, match=r"^data offset 6 \(24 bytes\) > segment length 20$") as e:
        TcpSegment.parse(data, A, B)
    assert e.value.reason == "bad-data-offset"


def test_bad_checksum() -> None:
    data = bytearray(tcp_part(LINUX_SYN))
    data[4] ^= 0x01  # one bit of the sequence number
    assert reason_of(bytes(data), CLIENT, SERVER) == "bad-checksum"


def test_wrong_pseudo_header_is_a_bad_checksum() -> None:
    assert reason_of(tcp_part(LINUX_SYN), CLIENT, IPv4Address("10.77.0.3")) == "bad-checksum"


def test_bad_checksum_ignored_when_not_verifying() -> None:
    data = bytearray(tcp_part(LINUX_SYN))
    data[16:18] = b"\0\0"
    seg = TcpSegment.parse(bytes(data), CLIENT, SERVER, verify_checksum=False)
    assert seg.seq == 1792775970


def test_option_kind_without_length_byte() -> None:
    # MSS kind as the very last option byte: no room for its length.
    data = raw_segment(b"\x01\x01\x01\x02")
    with pytest.raises(WireError, match=r"^option kind 2 at offset 3 has no length$") as err:
        TcpSegment.parse(data, A, B)
    assert err.value.reason == "option-overrun"


def test_option_length_past_the_header() -> None:
    data = raw_segment(b"\x08\x0a\x00\x00\x00\x00\x00\x00")  # TS claims 10 in 8 bytes
    with pytest.raises(WireError, match=r"^option kind 8 length 10 at offset 0 overruns 8") as e:
        TcpSegment.parse(data, A, B)
    assert e.value.reason == "option-overrun"


def test_option_overrun_is_judged_by_data_offset_not_by_payload() -> None:
    # The option's length reaches into the payload: still an overrun of the header.
    data = raw_segment(b"\x01\x01\xfe\x08", payload=b"0123456789")
    assert reason_of(data) == "option-overrun"


@pytest.mark.parametrize("length", [0, 1])
def test_option_length_below_two(length: int) -> None:
    data = raw_segment(bytes((0xFE, length, 0, 0)))
    with pytest.raises(WireError, match=rf"^option kind 254 length {length} < 2$") as err:
        TcpSegment.parse(data, A, B)
    assert err.value.reason == "bad-option-length"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (b"\x02\x03\x05\x01", "MSS option length 3 != 4"),
        (b"\x02\x05\x05\xb4\x00\x01\x01\x01", "MSS option length 5 != 4"),
        (b"\x03\x04\x07\x00", "window scale option length 4 != 3"),
        (b"\x04\x03\x00\x01", "SACK-permitted option length 3 != 2"),
        (b"\x08\x08" + bytes(6), "timestamps option length 8 != 10"),
        (b"\x05\x02\x01\x01", "SACK option length 2 != 2 + 8n"),
        (b"\x05\x06" + bytes(4) + b"\x01\x01", "SACK option length 6 != 2 + 8n"),
        (b"\x05\x0b" + bytes(9) + b"\x01", "SACK option length 11 != 2 + 8n"),
    ],
)
def test_known_option_with_wrong_length(option: bytes, message: str) -> None:
    data = raw_segment(option)
    with pytest.raises(WireError) as err:
        TcpSegment.parse(data, A, B)
    assert (err.value.reason, str(err.value)) == ("bad-option-length", message)


# --- options: parsing details --------------------------------------------------------------


def test_unknown_options_are_skipped_by_their_length() -> None:
    # kind 30 (MPTCP) length 6, kind 254 length 4 (experimental), then MSS.
    data = raw_segment(b"\x1e\x06abcd" + b"\xfe\x04xy" + b"\x02\x04\x05\xb4" + b"\x01\x01")
    seg = TcpSegment.parse(data, A, B)
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.timestamps) == (1460, None, False, None)


def test_eol_ends_the_option_list() -> None:
    # After EOL the rest is padding: garbage there must not be read as options.
    data = raw_segment(b"\x02\x04\x05\xb4" + b"\x00\xff\x01\x02")
    assert TcpSegment.parse(data, A, B).mss == 1460


def test_sack_blocks_parse_in_order() -> None:
    blocks = struct.pack("!IIIIII", 1, 2, 0xFFFFFFF0, 5, 100, 200)
    data = raw_segment(b"\x01\x01\x05\x1a" + blocks)
    assert TcpSegment.parse(data, A, B).sack == ((1, 2), (0xFFFFFFF0, 5), (100, 200))


def test_window_scale_is_kept_as_sent() -> None:
    # RFC 7323 §2.3 clamps a shift > 14; that is the connection's job, the view keeps 15.
    data = raw_segment(b"\x01\x03\x03\x0f")
    assert TcpSegment.parse(data, A, B).wscale == 15


def test_flags_include_ece_and_cwr() -> None:
    seg = TcpSegment(1, 2, 0, 0, Flags.SYN | Flags.ECE | Flags.CWR, 0)
    assert TcpSegment.parse(seg.build(A, B), A, B).flags == Flags.SYN | Flags.ECE | Flags.CWR


def test_replace_keeps_the_dataclass_frozen() -> None:
    seg = TcpSegment.parse(tcp_part(LINUX_SYN), CLIENT, SERVER)
    assert replace(seg, seq=5).seq == 5
    with pytest.raises(AttributeError):
        seg.seq = 5  # type: ignore[misc]


def test_repr_shows_payload_bytes_and_present_options() -> None:
    seg = TcpSegment.parse(tcp_part(LINUX_DATA), CLIENT, SERVER)
    assert repr(seg) == (
        "TcpSegment(src_port=40000, dst_port=5000, seq=1792775971, ack=4254408397, "
        "flags=Flags.PSH|ACK, window=64, payload=b'hello\\n', "
        "timestamps=(2880921809, 3942130038))"
    )
    big = TcpSegment(
        1, 2, 3, 4, Flags(0), 5, urgent=1, payload=bytes(100), sack=((1, 2),), sack_permitted=True
    )
    assert repr(big) == (
        "TcpSegment(src_port=1, dst_port=2, seq=3, ack=4, flags=Flags(0), window=5, urgent=1, "
        f"payload={bytes(64)!r}+36 bytes, sack_permitted=True, sack=((1, 2),))"
    )
