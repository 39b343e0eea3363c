"""Renderers of pytcp inspect/send/close: snapshot dicts in, exact text out (no stack needed)."""

from __future__ import annotations

import json
from typing import Any

from pytcpcli.output import (
    TimelineItem,
    changed_fields,
    clip,
    duration,
    elide_endpoint,
    endpoint,
    flatten,
    list_row,
    matches,
    monotonic_seconds,
    rel,
    remaining,
    render_compact,
    render_json,
    render_list,
    render_probe_summary,
    render_tcb,
    render_timeline,
    render_timers,
    send_report,
    syn_offer,
)

# A snapshot in the shape docs/internals.md documents for Connection.snapshot(), with the
# id/pid/tun the control endpoint adds. ISS sits just below 2**32 so SND.NXT has wrapped.
# Fields a renderer could confuse (window scale each way, the two dup-ACK counts, SACK and
# timestamps) hold different values, so a swap shows in the exact comparisons below.
_UNARMED = {"armed": False, "deadline": None, "remaining": None, "backoff": 0, "reason": ""}

SAMPLE: dict[str, Any] = {
    "id": "4242.3",
    "pid": 4242,
    "tun": "pytcp0",
    "state": "ESTABLISHED",
    "local": {"addr": "10.77.0.2", "port": 5000},
    "remote": {"addr": "10.77.0.1", "port": 40000},
    "send": {"iss": 4294967000, "snd_una": 4294967201, "snd_nxt": 105, "snd_max": 105,
             "snd_wnd": 64240, "snd_wl1": 1001, "snd_wl2": 4294967201, "snd_up": 4294967000,
             "max_snd_wnd": 64240, "snd_sml": 4294967201},
    "receive": {"irs": 1000, "rcv_nxt": 1013, "rcv_wnd": 65535, "rcv_up": 1000,
                "sack_order": [1100], "dsack": [1010, 1013], "peer_fin_seq": None,
                "unacked_rx": 12, "rcv_mss": 1460},
    "options": {"mss_local": 1460, "mss_remote": 1400, "snd_mss": 1388, "wscale_local": 7,
                "wscale_remote": 9, "sack": True, "timestamps": False, "ecn": True,
                "path_mtu": 1400, "path_mtu_expires": 599_500_000_000, "nodelay": True,
                "keepalive": {"idle": 60_000_000_000, "interval": 10_000_000_000, "count": 5}},
    "congestion": {"algorithm": "newreno", "cwnd": 14600, "ssthresh": 2147483647,
                   "state": {"bytes_acked": 700},
                   "in_flight": 200, "phase": "recovery", "recover": 105, "dup_acks": 3,
                   "ecn_echo": False, "cwr_pending": True, "ecn_recover": 4294967201,
                   "pipe_ack": 100, "nvp_since": 4_000_000_000, "cwnd_limited": True,
                   "max_flight": 300},
    "recovery": {"sacked": [[4294967251, 5]], "segments": 4, "sacked_bytes": 50,
                 "lost_bytes": 100, "pipe": 50, "retries": 0, "high_rxt": 4294967251,
                 "rescue_rxt": None, "prr_delivered": 50, "prr_out": 100, "recover_fs": 200,
                 "rack": True, "rack_rtt": 1_500_000, "rack_xmit_ts": 5_000_000_000,
                 "reo_wnd_mult": 2, "reordering_seen": True, "tlp_end": None,
                 "undo_retrans": 1, "timer_mode": "rto", "syn_timeouts": 1,
                 "probes_unanswered": 0, "keepalives_unanswered": 2},
    "rtt": {"srtt": 1_250_000, "rttvar": 500_000, "rto": 200_000_000, "min_rtt": 900_000,
            "samples": 4, "backoff": 0, "timed_seq": 4294967201, "karn": False,
            "ts_floor": None},
    "buffers": {"send_capacity": 262144, "send_queued": 300, "unacked": 200, "unsent": 100,
                "recv_capacity": 262144, "unread": 12, "out_of_order": [[1100, 1200]]},
    "counters": {"segments_in": 6, "segments_out": 7, "bytes_in": 12, "bytes_out": 400,
                 "retransmissions": 1, "retransmitted_bytes": 100, "dup_acks": 4,
                 "challenge_acks": 1, "invalid_acks": 3, "invalid_acks_limited": 5,
                 "zero_window_probes": 0, "keepalive_probes": 0,
                 "dsacks_sent": 0, "dsacks_received": 1, "rtos": 0, "fast_recoveries": 1,
                 "tlp_probes": 2, "tlp_recoveries": 0, "lost_marked_bytes": 100, "undos": 0,
                 "ce_received": 0, "ece_received": 3, "ecn_reductions": 1, "rcv_buf_grown": 2,
                 "cwv_reductions": 0,
                 "drops": {"bad-checksum": 2}},
    "timers": [
        {"name": "retransmission", "armed": True, "deadline": 5_180_000_000,
         "remaining": 180_000_000, "backoff": 1, "reason": "data in flight"},
        {"name": "syn", **_UNARMED},
        {"name": "delayed-ack", "armed": True, "deadline": 5_020_000_000,
         "remaining": 20_000_000, "backoff": 0, "reason": "in-order data"},
        {"name": "persist", **_UNARMED},
        {"name": "keepalive", **_UNARMED},
        {"name": "time-wait", **_UNARMED},
        {"name": "fin-wait-2", **_UNARMED},
    ],
    "close": {"fin_sent": False, "fin_acked": False, "fin_received": False, "app_closed": False},
}  # fmt: skip
LISTENER: dict[str, Any] = {
    "id": "4242.1", "pid": 4242, "tun": "pytcp0", "state": "LISTEN",
    "local": {"addr": "0.0.0.0", "port": 5000}, "backlog": 128, "syn_queue": 1,
    "accept_queue": 2, "counters": {"accepted": 3, "syn_dropped": 0},
}  # fmt: skip


# What Host's TimeWait.snapshot gives once a connection in TIME-WAIT was closed by its
# application (stack/host.py), with what the control endpoint adds.
TIME_WAIT_RECORD: dict[str, Any] = {
    "id": "4242.9", "pid": 4242, "tun": "pytcp0", "state": "TIME-WAIT",
    "time_wait_record": True,
    "local": {"addr": "fd77::2", "port": 5000}, "remote": {"addr": "fd77::1", "port": 40000},
    "send": {"iss": 7, "snd_una": 8, "snd_nxt": 8, "snd_max": 8},
    "receive": {"irs": 1000, "rcv_nxt": 1001, "rcv_wnd": 65535},
    "options": {"timestamps": True, "ts_recent": 5},
    "timers": [{"name": "time-wait", "armed": True, "deadline": 60_000_000_000,
                "remaining": 59_500_000_000, "backoff": 0, "reason": "2MSL"}],
    "close": {"fin_sent": True, "fin_acked": True, "fin_received": True, "app_closed": True},
}  # fmt: skip


def test_duration_units() -> None:
    assert duration(None) == "-"
    assert duration(0) == "0"
    assert duration(1_250_000) == "1.25ms"
    assert duration(200_000_000) == "200ms"
    assert duration(900_000) == "900us"
    assert duration(60_000_000_000) == "60s"
    assert duration(1_500_000_000) == "1.5s"
    assert duration(-3_000_000) == "-3ms"
    # Sub-millisecond RTTs keep their microseconds; nothing non-zero reads as 0.
    assert duration(875_000) == "875us"
    assert duration(312_456) == "312.5us"
    assert duration(1_000) == "1us"
    assert duration(750) == "750ns"
    assert duration(1) == "1ns"
    assert remaining(59_500_000_000) == "in 59.5s"
    assert remaining(-3_000_000) == "overdue 3ms"
    assert remaining(None) == "-"
    assert monotonic_seconds(81_234_567_890_123) == "81234.568s"


def test_sub_millisecond_rtt_in_every_view() -> None:
    fast = json.loads(json.dumps(SAMPLE))
    fast["rtt"].update(srtt=875_000, rttvar=437_500, min_rtt=238_806)
    assert list_row(fast)[7] == "875us"
    lines = render_tcb(fast).splitlines()
    assert "  srtt     875us" in lines
    assert "  min rtt  238.8us" in lines
    assert "srtt 875us, min 238.8us," in render_probe_summary(fast)
    assert "srtt 875us" in send_report(fast)
    changes = [("rtt.min_rtt", None, 238_806), ("rtt.rto", 10**9, 2 * 10**8)]
    item = TimelineItem(0, "state", "SYN-SENT -> ESTABLISHED", changes=changes)
    assert render_timeline([item]).splitlines()[1:3] == [
        "               rtt.min_rtt: - -> 238.8us",
        "               rtt.rto: 1s -> 200ms",
    ]


def test_endpoint_and_relative_sequence_numbers() -> None:
    assert endpoint({"addr": "10.77.0.2", "port": 5000}) == "10.77.0.2:5000"
    assert endpoint({"addr": "0.0.0.0", "port": 80}) == "*:80"
    assert endpoint({"addr": "fd77::2", "port": 80}) == "[fd77::2]:80"
    assert endpoint(None) == "-"
    assert rel(105, 4294967000) == "401"  # across the 2**32 wrap (RFC 9293 3.4)
    assert rel(None, 5) == "-"


def test_list_rows() -> None:
    assert list_row(SAMPLE) == [
        "4242.3", "ESTABLISHED", "10.77.0.2:5000", "10.77.0.1:40000", "300", "12", "14600",
        "1.25ms", "200ms", "retransmission 180ms, delayed-ack 20ms",
    ]  # fmt: skip
    assert list_row(LISTENER) == [
        "4242.1", "LISTEN", "*:5000", "*:*", "128", "2", "-", "-", "-", "-",
    ]  # fmt: skip


def test_render_list_table() -> None:
    assert render_list([LISTENER, SAMPLE]) == (
        "ID      STATE        LOCAL           REMOTE           SEND-Q  RECV-Q  CWND   SRTT    RTO"
        "    TIMERS\n"
        "4242.1  LISTEN       *:5000          *:*              128     2       -      -       -"
        "      -\n"
        "4242.3  ESTABLISHED  10.77.0.2:5000  10.77.0.1:40000  300     12      14600  1.25ms  200ms"
        "  retransmission 180ms, delayed-ack 20ms\n"
    )
    assert render_list([]) == "no live pytcp connections\n"
    # As wide as a terminal allows: one line each where the table fits.
    assert render_list([LISTENER, SAMPLE], width=130) == render_list([LISTENER, SAMPLE])


def _ipv6_worst_case() -> dict[str, Any]:
    """A realistic IPv6 connection at its widest and tallest: full-length addresses, a
    7-digit PID, the longest state name, every timer armed with the longest numbers, five
    drop reasons and two impairments."""
    v6 = json.loads(json.dumps(SAMPLE))
    v6.update(id="4194303.12", state="SYN-RECEIVED",
              local={"addr": "fd77:1234:5678:9abc:def0:1234:5678:9abc", "port": 65535},
              remote={"addr": "2001:db8:85a3:1234:5678:8a2e:370:7334", "port": 40000})  # fmt: skip
    for t in v6["timers"]:
        t.update(armed=True, remaining=119_999_000_000, deadline=10**15, backoff=15,
                 reason="a reason long enough to pass the width")  # fmt: skip
    v6["counters"]["drops"] = {"bad-checksum": 2, "out-of-window": 1234567, "paws": 3,
                               "rst-in-window": 9, "syn-in-window": 1}  # fmt: skip
    v6["impairments"] = [{"fault": "drop-next", "direction": "in", "left": 3},
                         {"fault": "delay", "direction": "both", "ms": 200}]  # fmt: skip
    v6["send"].update(snd_wnd=1073725440)
    v6["counters"].update(bytes_in=10**12, bytes_out=10**12, segments_in=10**9,
                          segments_out=10**9, retransmissions=10**8,
                          retransmitted_bytes=10**11)  # fmt: skip
    return v6


def test_list_fits_80_columns_with_long_ipv6_addresses() -> None:
    """On an 80-column terminal a table too wide takes two or three lines per
    connection, as ss -i does, and a long address gives up its middle, never its port."""
    v6 = _ipv6_worst_case()
    text = render_list([LISTENER, SAMPLE, v6], width=80)
    assert text == (
        "ID          STATE         LOCAL               REMOTE              SEND-Q  RECV-Q\n"
        "4242.1      LISTEN        *:5000              *:*                 128     2\n"
        "4242.3      ESTABLISHED   10.77.0.2:5000      10.77.0.1:40000     300     12\n"
        "  cwnd 14600  srtt 1.25ms  rto 200ms\n"
        "  timers retransmission 180ms, delayed-ack 20ms\n"
        "4194303.12  SYN-RECEIVED  [fd77..9abc]:65535  [2001..7334]:40000  300     12\n"
        "  cwnd 14600  srtt 1.25ms  rto 200ms\n"
        "  timers retransmission 120s, syn 120s, delayed-ack 120s, persist 120s, keepal..\n"
    )
    for width in (80, 72, 60, 40):
        lines = render_list([LISTENER, SAMPLE, v6], width=width).splitlines()
        assert max(len(line) for line in lines) <= width, width
        assert any(line.startswith("4194303.12 ") for line in lines)
    # A pipe or a file (no width) gets whole lines: grep finds the whole address.
    assert "[fd77:1234:5678:9abc:def0:1234:5678:9abc]:65535" in render_list([v6])


def test_elide_endpoint_keeps_the_port() -> None:
    addr = "[2001:db8:85a3:1234:5678:8a2e:370:7334]:443"
    assert elide_endpoint(addr, 60) == addr
    assert elide_endpoint(addr, 24) == "[2001:db8..370:7334]:443"
    assert len(elide_endpoint(addr, 24)) == 24
    assert elide_endpoint("10.77.123.234:54321", 16) == "10.7...234:54321"
    assert elide_endpoint("10.77.123.234:54321", 5) == "10..."  # no room: cut
    assert clip("abcdef", 4) == "ab.." and clip("abc", 4) == "abc" and clip("abc", None) == "abc"


def test_compact_view_of_one_connection() -> None:
    """`inspect --watch ID`: the variables one watches change, one line each."""
    assert render_compact(SAMPLE).splitlines() == [
        "4242.3  ESTABLISHED  on pytcp0, pid 4242",
        "local     10.77.0.2:5000",
        "remote    10.77.0.1:40000",
        "send      una +201  nxt +401  max +401  wnd 64240  (ISS 4294967000)",
        "receive   nxt +13  wnd 65535  (IRS 1000)",
        "cwnd      14600  ssthresh inf  pipe 50  in flight 200  (newreno)",
        "recovery  recovery until +401, 3 dup ACKs, SACKed 50, lost 100, RACK on",
        "rtt       srtt 1.25ms  rttvar 500us  rto 200ms  min 900us  backoff 0",
        "bytes     in 12  out 400  (segments in 6, out 7)",
        "retrans   1 (100 bytes): 1 fast, 0 RTOs, 2 TLPs, 0 undone",
        "queues    send 300 (200 unacked, 100 unsent)  receive 12 unread, 1 out of order",
        "options   MSS 1388  wscale 7/9  SACK  ECN  path MTU 1400  nodelay  keepalive",
        "drops     bad-checksum 2",
        "timers    retransmission in 180ms (backoff 1): data in flight",
        "          delayed-ack in 20ms: in-order data",
    ]


def test_compact_view_fits_80x24_with_ipv6() -> None:
    """With the --watch header's two lines the frame fits an 80x24 terminal, at the widest
    and tallest a connection gets; nothing but the reasons and the long lists is cut."""
    v6 = _ipv6_worst_case()
    lines = render_compact(v6, width=80).splitlines()
    assert len(lines) + 2 <= 24
    assert max(len(line) for line in lines) <= 80
    assert lines[:3] == [
        "4194303.12  SYN-RECEIVED  on pytcp0, pid 4242",
        "local     [fd77:1234:5678:9abc:def0:1234:5678:9abc]:65535",
        "remote    [2001:db8:85a3:1234:5678:8a2e:370:7334]:40000",
    ]
    assert "send      una +201  nxt +401  max +401  wnd 1073725440  (ISS 4294967000)" in lines
    assert [ln.split()[0] for ln in lines if ln.startswith("          ")] == [
        "syn", "delayed-ack", "persist", "keepalive", "time-wait", "fin-wait-2",
    ]  # fmt: skip
    assert lines[-1] == "impaired  drop-next in: 3 segments left, delay both: 200 ms"
    # A narrower terminal: the addresses give up their middle, the ports stay.
    narrow = render_compact(v6, width=40).splitlines()
    assert max(len(line) for line in narrow) <= 40
    assert narrow[1].endswith("]:65535") and narrow[2].endswith("]:40000")
    # A listener and a TIME-WAIT record fit too.
    for entry in (LISTENER, TIME_WAIT_RECORD):
        lines = render_compact(entry, width=80).splitlines()
        assert len(lines) <= 22 and max(len(line) for line in lines) <= 80


def test_compact_view_in_syn_sent_has_no_irs_yet() -> None:
    syn_sent = json.loads(json.dumps(SAMPLE))
    syn_sent["state"] = "SYN-SENT"
    syn_sent["receive"].update(irs=None, rcv_nxt=None)
    lines = render_compact(syn_sent).splitlines()
    assert lines[4] == "receive   nxt -  wnd 65535  (IRS -)"


def test_compact_view_of_a_time_wait_record() -> None:
    assert render_compact(TIME_WAIT_RECORD).splitlines() == [
        "4242.9  TIME-WAIT  on pytcp0, pid 4242",
        "local     [fd77::2]:5000",
        "remote    [fd77::1]:40000",
        "send      una +1  nxt +1  max +1  (ISS 7)",
        "receive   nxt +1  wnd 65535  (IRS 1000)",
        "timers    time-wait in 59.5s: 2MSL",
    ]


def test_filters() -> None:
    assert matches(SAMPLE, states=["established"])
    assert matches(SAMPLE, states=["time_wait", "ESTABLISHED"])
    assert not matches(SAMPLE, states=["LISTEN"])
    assert matches(SAMPLE, port=40000)
    assert matches(SAMPLE, port=5000)
    assert not matches(SAMPLE, port=5001)
    assert matches(LISTENER, states=["listen"], port=5000)
    assert matches(SAMPLE)


def test_render_tcb_sections() -> None:
    """Every line of `pytcp inspect ID`, exactly: each field under its own label, each
    sequence number raw and relative to ISS (IRS for the peer's)."""
    assert render_tcb(SAMPLE) == (
        "Connection\n"
        "  id       4242.3\n"
        "  state    ESTABLISHED\n"
        "  local    10.77.0.2:5000\n"
        "  remote   10.77.0.1:40000\n"
        "  process  4242\n"
        "  tun      pytcp0\n"
        "\n"
        "Send sequence space (relative to ISS; SND.WL1 to IRS)\n"
        "               raw         relative\n"
        "  ISS          4294967000  0\n"
        "  SND.UNA      4294967201  201\n"
        "  SND.NXT      105         401\n"  # across the 2**32 wrap
        "  SND.MAX      105         401\n"
        "  SND.WND      64240\n"
        "  SND.WL1      1001        1\n"  # WL1 is a peer sequence number: from IRS
        "  SND.WL2      4294967201  201\n"
        "  SND.UP       4294967000  0\n"
        "  MAX.SND.WND  64240\n"
        "  SND.SML      4294967201  201\n"
        "\n"
        "Receive sequence space (relative to IRS)\n"
        "           raw    relative\n"
        "  IRS      1000   0\n"
        "  RCV.NXT  1013   13\n"
        "  RCV.WND  65535\n"
        "  RCV.UP   1000   0\n"
        "\n"
        "Options\n"
        "  MSS           local 1460, remote 1400, sending 1388\n"
        "  window scale  local 7, remote 9\n"
        "  SACK          yes\n"
        "  timestamps    no\n"
        "  ECN           yes\n"
        "  path MTU      1400, learned (raised again in 599.5s)\n"
        "  Nagle         off (nodelay)\n"
        "  keepalive     idle 60s, every 10s, 5 probes\n"
        "\n"
        "Congestion\n"
        "  algorithm  newreno\n"
        "  cwnd       14600\n"
        "  ssthresh   2147483647\n"
        "  state      bytes_acked 700\n"
        "  in flight  200 (window's largest 300, cwnd-limited yes)\n"
        "  phase      recovery\n"
        "  recover    105\n"
        "  dup ACKs   3\n"
        "  ECN        echo no, CWR pending yes, next cut after 4294967201\n"
        "  CWV        pipeACK 100, non-validated since 4.000s\n"
        "\n"
        "Recovery\n"
        "  scoreboard  4294967251-5 (+251..+301) (4 records)\n"
        "  pipe        50 (50 SACKed, 100 lost)\n"
        "  HighRxt     4294967251 (+251), rescue -\n"
        "  PRR         delivered 50, out 100, RecoverFS 200\n"
        "  RACK        on, rtt 1.5ms, reo_wnd x2, reordering yes\n"
        "  TLP out to  -\n"
        "  undo        1 retransmissions not D-SACKed\n"
        "  timer       rto\n"
        "  retries     0 RTOs, 1 SYN timeouts, 0 probes and 2 keepalives unanswered\n"
        "\n"
        "RTT\n"
        "  srtt     1.25ms\n"
        "  rttvar   500us\n"
        "  rto      200ms\n"
        "  min rtt  900us\n"
        "  samples  4\n"
        "  backoff  0\n"
        "  timing   4294967201 (+201)\n"
        "  Karn     no\n"
        "  TSfloor  -\n"
        "\n"
        "Buffers\n"
        "  send          300 queued of 262144: 200 unacknowledged, 100 unsent\n"
        "  receive       12 unread of 262144\n"
        "  out of order  1100-1200 (+100..+200)\n"
        "  SACK order    1100\n"
        "  D-SACK next   1010-1013\n"
        "  FIN ahead     -\n"
        "  delayed ACK   12 bytes unacknowledged, peer MSS 1460\n"
        "\n"
        "Counters\n"
        "  segments         in 6, out 7\n"
        "  bytes            in 12, out 400\n"
        "  retransmissions  1 (100 bytes)\n"
        "  duplicate ACKs   4\n"
        "  recovery         1 fast, 0 RTOs, 2 TLPs (0 repaired), 0 undone\n"
        "  D-SACKs          sent 0, received 1\n"
        "  ECN              CE 0, ECE 3, reductions 1\n"
        "  receive buffer   grown 2 times (autotuning)\n"
        "  cwnd validation  0 reductions (RFC 7661)\n"
        "  challenge ACKs   1\n"
        "  invalid ACKs     3 sent, 5 held back by the rate limit\n"
        "  drops            bad-checksum 2\n"
        "\n"
        "Close\n"
        "  FIN sent            no\n"
        "  FIN acknowledged    no\n"
        "  FIN received        no\n"
        "  application closed  no\n"
        "\n" + render_timers(SAMPLE)
    )


def test_render_tcb_link_says_what_the_kernel_refused() -> None:
    link = {"offloads_rx": ["csum", "tso4", "tso6"], "offloads_tx": ["csum"],
            "gso_packets_in": 3, "gso_segments_in": 30, "gso_packets_out": 2,
            "gso_segments_out": 90, "csum_trusted_in": 40, "tso_refused": 1,
            "tso_refused_error": "EINVAL (Invalid argument)", "gso_resegmented": 2}  # fmt: skip
    text = render_tcb({**SAMPLE, "link": link})
    start = text.index("Link (offloads, for the whole interface)\n")
    assert text[start : text.index("\n\n", start)].splitlines()[1:] == [
        "  offloads rx        csum+tso4+tso6",
        "  offloads tx        csum",
        "  GSO in             3 super-packets, 30 segments",
        "  GSO out            2 super-packets, 90 segments",
        "  checksums trusted  40",
        "  TSO refused        1 write (EINVAL (Invalid argument)); 2 super-packets cut in "
        "Python; TSO off since",
    ]


def test_render_timers_lists_every_timer() -> None:
    assert render_timers(SAMPLE) == (
        "Timers\n"
        "  timer           armed    fires     deadline (monotonic)    backoff    reason\n"
        "  retransmission  yes      in 180ms  5.180s                  1          data in flight\n"
        "  syn             no       -         -                       0          -\n"
        "  delayed-ack     yes      in 20ms   5.020s                  0          in-order data\n"
        "  persist         no       -         -                       0          -\n"
        "  keepalive       no       -         -                       0          -\n"
        "  time-wait       no       -         -                       0          -\n"
        "  fin-wait-2      no       -         -                       0          -\n"
    )
    assert "deadline (ns)" not in render_tcb(SAMPLE)
    assert "5180000000" not in render_tcb(SAMPLE)  # raw ns only in --json


def test_render_tcb_of_a_listener() -> None:
    assert render_tcb(LISTENER) == (
        "Connection\n"
        "  id       4242.1\n"
        "  state    LISTEN\n"
        "  local    *:5000\n"
        "  remote   -\n"
        "  process  4242\n"
        "  tun      pytcp0\n"
        "\n"
        "Listener\n"
        "  accept_queue  2\n"
        "  backlog       128\n"
        "  counters      accepted 3, syn_dropped 0\n"
        "  syn_queue     1\n"
    )


def test_json_is_stable_and_round_trips() -> None:
    text = render_json(SAMPLE)
    assert json.loads(text) == SAMPLE
    assert text.endswith("}\n")
    assert text.splitlines()[1] == '  "buffers": {'  # keys sorted


def test_flatten_and_changed_fields() -> None:
    flat = flatten(SAMPLE)
    assert flat["send.snd_nxt"] == 105
    assert flat["counters.drops.bad-checksum"] == 2
    assert "timers" not in flat and "pid" not in flat
    later = json.loads(json.dumps(SAMPLE))
    later["state"] = "FIN-WAIT-1"
    later["send"]["snd_nxt"] = 106
    later["close"]["fin_sent"] = True
    later["timers"][0]["remaining"] = 1  # time passing is not a change of the TCB
    assert changed_fields(SAMPLE, later) == [
        ("close.fin_sent", False, True),
        ("send.snd_nxt", 105, 106),
        ("state", "ESTABLISHED", "FIN-WAIT-1"),
    ]
    assert ("state", None, "ESTABLISHED") in changed_fields(None, SAMPLE)


def test_timeline_and_summary() -> None:
    items = [
        TimelineItem(0, "out", "10.77.0.2.40000 > 10.77.0.1.5000: Flags [S], seq 0, length 0"),
        TimelineItem(
            1_500_000,
            "state",
            "SYN-SENT -> ESTABLISHED",
            changes=[("state", "SYN-SENT", "ESTABLISHED")],
            timers=SAMPLE["timers"],
        ),
        TimelineItem(2_000_000, "in", "10.77.0.1.5000 > 10.77.0.2.40000: Flags [F.]"),
    ]
    assert render_timeline(items) == (
        "     0.000 ms  > 10.77.0.2.40000 > 10.77.0.1.5000: Flags [S], seq 0, length 0\n"
        "     1.500 ms  == SYN-SENT -> ESTABLISHED\n"
        "               state: SYN-SENT -> ESTABLISHED\n"
        "               timers armed: retransmission in 180ms (data in flight),"
        " delayed-ack in 20ms (in-order data)\n"
        "     2.000 ms  < 10.77.0.1.5000 > 10.77.0.2.40000: Flags [F.]\n"
    )
    assert render_probe_summary(SAMPLE) == (
        "Summary\n"
        "  peer               10.77.0.1:40000\n"
        "  peer MSS           1400\n"
        "  peer window scale  9\n"
        "  SACK               yes\n"
        "  timestamps         no\n"
        "  RTT                srtt 1.25ms, min 900us, 4 samples, rto 200ms\n"
        "  segments           7 sent, 6 received, 1 retransmitted\n"
        "  final state        ESTABLISHED\n"
    )


def test_timeline_shows_what_the_syn_offered_then_what_was_negotiated() -> None:
    syn_sent = TimelineItem(
        0, "state", "CLOSED -> SYN-SENT",
        changes=[("options.mss_local", None, 1460), ("options.sack", None, False),
                 ("options.timestamps", None, False), ("options.wscale_local", None, 0),
                 ("state", None, "SYN-SENT")],
        offered=syn_offer(1460, 7, True, True),
    )  # fmt: skip
    # The peer takes SACK and window scaling but not timestamps.
    established = TimelineItem(
        1_000_000, "state", "SYN-SENT -> ESTABLISHED",
        changes=[("options.sack", False, True), ("options.wscale_local", 0, 7),
                 ("state", "SYN-SENT", "ESTABLISHED")],
    )  # fmt: skip
    closing = TimelineItem(
        2_000_000, "state", "ESTABLISHED -> FIN-WAIT-1",
        changes=[("state", "ESTABLISHED", "FIN-WAIT-1")],
    )  # fmt: skip
    assert render_timeline([syn_sent, established, closing]) == (
        "     0.000 ms  == CLOSED -> SYN-SENT\n"
        "               options.mss_local: - -> 1460\n"
        "               options.sack: - -> offered\n"
        "               options.timestamps: - -> offered\n"
        "               options.wscale_local: - -> offered 7\n"
        "               state: - -> SYN-SENT\n"
        "               timers armed: none\n"
        "     1.000 ms  == SYN-SENT -> ESTABLISHED\n"
        "               options.sack: offered -> yes\n"
        "               options.timestamps: offered -> no\n"
        "               options.wscale_local: offered 7 -> 7\n"
        "               state: SYN-SENT -> ESTABLISHED\n"
        "               timers armed: none\n"
        "     2.000 ms  == ESTABLISHED -> FIN-WAIT-1\n"
        "               state: ESTABLISHED -> FIN-WAIT-1\n"
        "               timers armed: none\n"
    )
    # Nothing offered (--no-sack ...): said so, and nothing to settle.
    syn_sent.offered = syn_offer(1460, None, False, False)
    text = render_timeline([syn_sent, established])
    assert "options.sack: - -> not offered" in text
    assert "options.wscale_local: - -> not offered" in text
    assert "options.timestamps: offered" not in text


def test_send_report() -> None:
    assert send_report(SAMPLE) == "400 bytes sent, 12 received, srtt 1.25ms, 1 retransmissions\n"
