"""Connection: one TCP connection (RFC 9293) as a sans-IO state machine over one Tcb.
Imports everything in stack/tcp, stack.wire (TcpSegment, Flags, IcmpError) and stack.trace.

Theory of operation
-------------------
Heads up: read RFC 9293 §3.10 before changing anything here; the method names follow it.

Three sources drive a connection, each taking `now` (integer ns on the caller's clock):
user calls (`open_active`, `open_passive`, `send`, `receive`, `shutdown`, `close`,
`abort`, `status`), segments from the host (`receive_segment`, `receive_icmp`) and time
(`handle_timers`).  After any of them the owner calls `segments_to_send(now)`,
`next_event()` until None, and `next_deadline()` to know when to call `handle_timers`.

RFC section                              where
--------------------------------------   ------------------------------------------------
§3.10.1-6 user calls                     state.USER_CALLS, dispatched by `_call`
§3.10.7.1 CLOSED                         `_on_closed`
§3.10.7.2 LISTEN                         `_on_listen`
§3.10.7.3 SYN-SENT                       `_on_syn_sent`
§3.5 figure 8 simultaneous open          `_on_syn_sent` (SYN), `_on_synchronized` (SYN,ACK)
§3.10.7.4 in one step for the common     `_predicted` (header prediction: a pure ACK of new
          in-order case                  data, or in-order text; the same state after)
§3.10.7.4 first: sequence check          `_is_acceptable` (four cases), PAWS `_paws_reject`;
          the ACK it draws               `_invalid_ack`, `invalid_ack_limited`: one per
          (RFC 5961 §7)                  500 ms, as Linux tcp_invalid_ratelimit
          each segment's outcome         journal.py (`begin`/`tested`/`dropped`/`end`)
          second: RST (RFC 5961 §3)      `_on_rst`
          fourth: SYN (RFC 5961 §4)      `_on_syn`
          challenge ACKs (RFC 5961 §7)   `_challenge_ack`: one per 500 ms, then the host's
                                         budget (`challenge_ack_allowed`, stack/host.py)
          fifth: ACK (RFC 5961 §5)       `_on_ack`, `_ack_advance`, `_on_dup_ack`
          sixth: URG                     `_on_urg` (pointer kept, not delivered)
          seventh: text                  `_on_text` (reassembly.RecvBuffer)
          eighth: FIN                    `_on_fin`, `_accept_fin`
§3.10.8 timeouts, RFC 6298               `handle_timers`, `_on_rto`, `_on_syn_timeout`
§3.8.6.2.1 sender SWS / §3.7.4 Nagle     `Sender._send_data` (sender.py)
§3.8.6.2.2 receiver SWS, RFC 7323 §2.4   `Sender._window_field`, `_maybe_window_update`,
                                         `_retract_to_buffer`
§3.8.6.1 zero-window probing (persist)   `_on_persist`
§3.8.6.3 delayed ACK, RFC 5681 §4.2      `_on_text`, timer "delayed-ack"; `_ack_own`
                                         in `receive_segment` (ACKs within a burst)
Loss recovery: RFC 6675, RFC 6937 PRR,    recovery.py (the retransmit queue, scoreboard,
  RFC 8985 RACK-TLP, RFC 6582 NewReno,     loss detection, episodes); here `_on_ack`,
  RFC 3042, RFC 2883 undo                  `_ack_advance`, `_sack_loss_detection`,
                                         `_on_dup_ack`, `_on_rto`, `_on_reorder_timeout`,
                                         `_on_probe_timeout`; `Sender._send_recovery`
RFC 6298 RTT sampling, Karn              rtt.py (`RttEstimator.on_send/on_ack`)
RFC 7661 cwnd validation                 cwv.py; `Sender._cwnd_validate`
RFC 3168 ECN                             `_negotiate`, `_ecn_receive`, `_on_ece`,
                                         `Sender._make` (ECE/CWR, EctSegment)
RFC 7323 timestamps (RTTM, PAWS)         `Sender._make`, `_paws_reject`, `_update_ts_recent`,
                                         `_ack_advance`
RFC 2018 SACK, RFC 2883 D-SACK           `Sender._sack_blocks`, `_note_ooo` (receiver);
                                         recovery.py (sender)
Receive autotuning (Linux DRS)           `_autotune`, `RecvBuffer.grow`
RFC 1122 4.2.3.6 keepalive               `_on_keepalive`
RFC 1191 / RFC 5927 ICMP                 `receive_icmp`

Sequence space.  The SYN occupies ISS; data byte k of the send buffer lives at
`_buf_seq + k` (the buffer starts at SND.UNA once the SYN is acknowledged); the FIN,
once the application asked for it, sits right after the last byte.  SND.NXT is where
the next transmission starts and may be pulled back to SND.UNA by a timeout (go-back-N);
SND.MAX (BSD's snd_max) is the highest sequence sent, so ACKs for data sent before
the timeout stay acceptable, and pure ACKs carry SND.MAX so the peer never sees them
as old.  `segments_to_send` sends whatever lies between SND.NXT and the usable window:
"retransmit" is "move SND.NXT back".  The SYN is the exception: it is queued at OPEN
(SND.NXT = ISS + 1 at once, §3.10.1) and `_syn_pending` says it is due again.

Choices worth knowing:
- Nagle is on by default, as on a Linux socket without TCP_NODELAY; TcpConfig(nodelay=True)
  turns it off.  It is Minshall's variant, as Linux's (tcp_nagle_check): a short
  segment waits while an earlier *short* segment is unacknowledged (SND.SML, the end
  of the last one sent, is above SND.UNA), not while any data is.  RFC 9293 §3.7.4
  words the rule as RFC 896 did ("while any data is unacknowledged"); the variant
  keeps what the rule is for -- at most one short segment in flight per round trip --
  and does not hold the tail of a write behind its own full-sized segments for a
  delayed ACK.  Sender SWS avoidance applies either way.
- Loss recovery with SACK is RFC 6675's, paced by PRR, with RACK-TLP deciding what is
  lost (TcpConfig.rack, on by default as in Linux; off: DupThresh and NextSeg rules 3
  and 4).  Without SACK it is NewReno (RFC 6582).  An RTO marks everything not SACKed
  lost and goes back N from SND.UNA, skipping what the peer SACKed (RFC 6675 §5.1,
  as Linux); the scoreboard is forgotten (RFC 2018 §8) only when the peer reneged
  (the first outstanding segment is SACKed).
- A connection opened passively that is reset in SYN-RECEIVED goes to CLOSED, not back
  to LISTEN: the host keeps the listener and creates one Connection per SYN.
- A SYN with a new ISN in passive SYN-RECEIVED draws a challenge ACK (RFC 5961 §4),
  not RFC 9293 §3.10.7.4 fourth's "return to LISTEN": a blind in-window SYN could
  otherwise kill a handshake.  Linux's tcp_check_req does the same for a SYN out of
  the window (it ACKs and drops; an in-window one gets a RST).  A peer that really
  restarted answers the ACK with a RST <SEQ=SEG.ACK> that is exact, so this
  connection closes and the peer's next SYN finds the listener: one round trip
  later than "return to LISTEN", with no state a third party can destroy.
- cwnd grows only on ACKs of a window that cwnd limited (in slow start: whose flight
  reached half of cwnd), as Linux tcp_is_cwnd_limited (RFC 7661's spirit): a sender
  held back by the peer's window or the application keeps its cwnd
  (`Sender._cwnd_validate`, the `cwnd_limited` argument of `cc.on_ack`).
- The owner feeds a burst of segments before it collects output.  An ACK owed for
  every second full-sized segment or for out-of-order data still goes out per pair
  (per segment) as if collected in between: the next segment's arrival queues it
  first (`_ack_own`).  Other ACKs (delayed, duplicate data, FIN) merge into the last.
- RTT: one segment per round trip is timed in ns (RFC 6298 §3), timestamps or not, as
  Linux times with its µs clock; the TSecr echo (RFC 7323 §4.1, 1 ms ticks) supplies
  samples only while a retransmission keeps Karn's rule from timing, and never from an
  echo of a segment sent before the last RTO (`RttEstimator.on_ack`, `ts_floor`).
- Zero-window probes carry one new byte (RFC 9293 §3.8.6.1); they back off like the RTO
  and give up only after `config.retries` probes in a row got no answer at all.  A
  peer that shrinks its window to zero with data in flight gets the same: the RTO
  that finds a zero window hands over to the persist timer (`_on_rto`) and counts no
  retry, so a live peer that holds its window shut never times the connection out.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.congestion import CONTROLLERS, CongestionControl, NoControl
from stack.tcp.cwv import CwndValidation
from stack.tcp.errors import InvalidStateError
from stack.tcp.events import (
    Closed,
    ConnectionFailed,
    DataReceived,
    Established,
    Event,
    PeerClosed,
    StateChanged,
)
from stack.tcp.journal import Journal
from stack.tcp.reassembly import RecvBuffer, RingPool
from stack.tcp.recovery import Recovery, reno_enter, reno_exit, reno_inflate, reno_partial_ack
from stack.tcp.rtt import RttEstimator
from stack.tcp.sendbuf import SendBuffer
from stack.tcp.sender import (
    CWR,
    ECE,
    MAX_WINDOW_FIELD,
    RECEIVING,
    SENDING,
    Endpoint,
    Sender,
)
from stack.tcp.seq import (
    MASK,
    between,
    in_window,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_le,
    seq_lt,
)
from stack.tcp.state import SYNCHRONIZED, USER_CALLS, State
from stack.tcp.tcb import Tcb
from stack.tcp.timers import TIMER_NAMES, Timer, TimerSet
from stack.trace import (
    DROP,
    EVENT,
    SEGMENT_IN,
    SEGMENT_OUT,
    STATE,
    TIMER,
    Tracer,
    null_tracer,
)
from stack.wire.icmp import IcmpError
from stack.wire.tcp import Flags, TcpSegment

ACK = int(Flags.ACK)
SYN = int(Flags.SYN)
FIN = int(Flags.FIN)
RST = int(Flags.RST)
PSH = int(Flags.PSH)
URG = int(Flags.URG)
# int forms for tests on every arriving segment: IntFlag arithmetic costs a Python call
F_FIN, F_SYN, F_RST, F_ACK, F_URG = 1, 2, 4, 16, 32
# Header prediction takes a segment whose flags, PSH aside, are ACK alone (no SYN, RST,
# FIN, URG, ECE or CWR): `flags & PREDICTED_MASK == F_ACK`.
PREDICTED_MASK = 0xFF & ~int(Flags.PSH)

DEFAULT_MSS = 536  # RFC 9293 3.7.1 / RFC 1122 4.2.2.6: assumed when the SYN has no MSS
MIN_IPV4_MTU = 68  # RFC 791: every IPv4 module forwards 68-octet datagrams
MIN_MSS = 48  # floor for ICMP-lowered MSS (Linux tcp_min_snd_mss)
IP_TCP_HEADERS = 40  # IPv4 + TCP headers without options (RFC 9293 3.7.1)
TS_OPTION_SPACE = 12  # RFC 7323 §3: 10 bytes + 2 NOP, on every segment once negotiated
MAX_WSCALE = 14  # RFC 7323 §2.3
DUP_ACK_THRESHOLD = 3  # RFC 5681 §3.2
RTO_AFTER_SYN_TIMEOUT = 3 * SECOND  # RFC 6298 (5.7)
PAWS_IDLE = 24 * 24 * 3600 * SECOND  # RFC 7323 §5.5: TS.Recent is invalid after 24 days


def invalid_ack_limited(
    seg: TcpSegment, last: int | None, now: int, interval: int
) -> tuple[bool, int | None]:
    """Linux tcp_oow_rate_limited (net.ipv4.tcp_invalid_ratelimit), after RFC 5961 §7:
    whether the ACK that unacceptable `seg` draws (out of window, PAWS, a SYN again in
    SYN-RECEIVED) is held back, and the time of the last such ACK to remember. At most
    one per `interval`, so spoofed segments cannot make us an ACK reflector or two
    peers an ACK storm; but a segment that carries data or a FIN and no SYN is always
    answered ("data packets without SYNs are not likely part of an ACK loop": a
    retransmission whose ACK was lost needs that ACK) and starts no interval."""
    if seg.seg_len and not int(seg.flags) & F_SYN:
        return False, last
    if last is not None and 0 <= now - last < interval:
        return True, last
    return False, now


COUNTER_NAMES = (
    "segments_in",
    "segments_out",
    "bytes_in",
    "bytes_out",
    "retransmissions",
    "retransmitted_bytes",
    "dup_acks",
    "challenge_acks",
    "invalid_acks",
    "invalid_acks_limited",
    "zero_window_probes",
    "keepalive_probes",
    "dsacks_sent",
    "dsacks_received",
    "rtos",
    "fast_recoveries",
    "tlp_probes",
    "tlp_recoveries",
    "lost_marked_bytes",
    "undos",
    "ce_received",
    "ece_received",
    "ecn_reductions",
    "rcv_buf_grown",
    "cwv_reductions",
)  # Connection.counters, in this order


@functools.lru_cache(maxsize=1024)
def _address_text(address: object) -> str:
    """str() of an address, remembered: ipaddress formats each time, and a list of many
    connections names the same few addresses over and over."""
    return str(address)


def _wscale_for(buffer: int) -> int:
    """The smallest shift that lets the 16-bit window field cover `buffer` (RFC 7323 §2.3)."""
    shift = 0
    while buffer >> shift > MAX_WINDOW_FIELD and shift < MAX_WSCALE:
        shift += 1
    return shift


class Connection(Sender):
    """One TCP connection (RFC 9293), sans-IO.

    Driven by user calls, `receive_segment`/`receive_icmp` and `handle_timers`; after any
    of them call `segments_to_send(now)`, drain `next_event()` and re-arm on
    `next_deadline()`.  `receive_segment` never raises for anything the network sends.
    """

    # Slots, not a __dict__: 60-odd fields cost a few hundred bytes less per connection
    # (issue 14: a half-open or idle connection costs what it holds).
    __slots__ = ("__weakref__", "_buf_seq", "_ce_next", "_challenge_ack_allowed", "_drops",
                 "_events", "_force_probe", "_keepalives_unanswered", "_last_challenge",
                 "_last_invalid_ack", "_n", "_name", "_out", "_passive", "_peer_fin_seq",
                 "_peer_wscale", "_probes_unanswered", "_rcv_mss", "_rcv_space_copied",
                 "_rcv_space_time", "_syn_timeouts", "_tracer", "_window_clamp", "_wscale_offer",
                 "aborted", "cc", "config", "cwv", "ecn_echo", "ecn_recover", "error", "id",
                 "ip_extra", "journal", "link_mtu", "local", "path_mtu", "path_mtu_expires",
                 "recovery", "recvbuf", "remote", "rtt", "sendbuf", "tcb", "timers",
                 "tso_max")  # fmt: skip

    # Header prediction (`_predicted`) on; the tests' slow-path twin turns it off.
    predict = True

    def __init__(
        self,
        *,
        id: int,
        local: Endpoint,
        remote: Endpoint,
        iss: int,
        config: TcpConfig,
        link_mtu: int = 1500,
        tracer: Tracer | None = None,
        rings: RingPool | None = None,
        challenge_ack_allowed: Callable[[int], bool] | None = None,
    ) -> None:
        self.id = id
        # The host's say on a challenge ACK this connection's own limit let through (its
        # host-wide budget, RFC 5961 §7); None: no host, no host-wide limit.
        self._challenge_ack_allowed = challenge_ack_allowed
        self.local = local
        self.remote = remote
        self.tso_max = 0
        self.config = config
        self.link_mtu = link_mtu
        # The null tracer is as good as none: skip building events for it.
        self._tracer = None if tracer is null_tracer else tracer
        self._name = str(id)
        iss &= MASK
        mss = link_mtu - IP_TCP_HEADERS
        if config.mss is not None:
            mss = min(mss, config.mss)
        self.tcb = Tcb(
            iss=iss,
            snd_una=iss,
            snd_nxt=iss,
            snd_max=iss,
            snd_up=iss,
            snd_sml=iss,
            mss_local=mss,
            snd_mss=min(mss, DEFAULT_MSS),
        )
        self.timers = TimerSet()
        self.rtt = RttEstimator(
            rto_initial=config.rto_initial, rto_min=config.rto_min, rto_max=config.rto_max
        )
        self.cc: CongestionControl
        if config.cc == "none":
            self.cc = NoControl(self.tcb.snd_mss)
        elif config.cc in CONTROLLERS:
            self.cc = CONTROLLERS[config.cc](self.tcb.snd_mss)
        else:
            raise ValueError(f"unknown congestion control {config.cc!r}")
        # `rings`: the host's pool of freed rings (stack.tcp.reassembly), both buffers'.
        self.sendbuf = SendBuffer(config.snd_buf, pool=rings)
        self.recvbuf = RecvBuffer(config.rcv_buf, pool=rings)
        self.error: str | None = None
        # This end reset the connection (ABORT, §3.10.5, or a CLOSE with unread data,
        # RFC 1122 4.2.2.13): a fact its owner cannot read from the state, since a
        # peer's RST in CLOSING or LAST-ACK also ends in CLOSED without an error.
        self.aborted = False
        # Counters by COUNTER_NAMES, kept sparse: a name is stored once it counts
        # something (most never do on a quiet connection; issue 14: memory per
        # connection). `counters` shows them all.
        self._n: defaultdict[str, int] = defaultdict(int)
        self._drops: dict[str, int] = {}
        self._events: list[Event] = []  # a few at most between drains: no deque block
        self._out: list[TcpSegment] = []
        self._wscale_offer = (
            _wscale_for(max(config.rcv_buf, config.rcv_buf_max)) if config.wscale else None
        )
        # Receive autotuning (Linux tcp_rcv_space_adjust): bytes the application read
        # since the measurement began at `_rcv_space_time`, once per RTT.
        self._rcv_space_copied = 0
        self._rcv_space_time: int | None = None
        self._passive = False
        self._peer_wscale = False  # the peer's SYN carried a window-scale option
        self._buf_seq = seq_add(iss, 1)  # sequence number of send-buffer byte 0
        self._syn_new = True  # the next SYN we send is not a retransmission
        self._syn_pending = False  # a SYN (or SYN-ACK) is due out
        self._syn_timeouts = 0
        self._ack_now = False  # an ACK must go out with the next segments_to_send
        # ... and may not be merged into the ACK of a later segment (see receive_segment)
        self._ack_own = False
        self._unacked_rx = 0  # in-order bytes received since our last ACK
        self._rcv_mss = DEFAULT_MSS  # largest payload seen from the peer (delayed ACK)
        self._peer_fin_seq: int | None = None  # FIN that arrived ahead of missing data
        # Receiver SACK state: one sequence number per out-of-order block, most
        # recently changed first (RFC 2018 §4), and a duplicate to report (RFC 2883).
        self.sack_order: list[int] = []
        self.dsack: tuple[int, int] | None = None
        self._force = False  # send one segment past SWS avoidance (persist override)
        self._force_probe = False  # a tail loss probe: one segment past cwnd
        # ECN (RFC 3168 §6.1): ECE owed on our ACKs (a CE mark came, no CWR yet); CWR
        # owed on our next new data (we reduced cwnd); no new reduction before SND.UNA
        # passes ecn_recover (once per window of data); the next segment was CE-marked.
        self.ecn_echo = False
        self.cwr_pending = False
        self.ecn_recover = iss
        self._ce_next = False
        # The retransmit queue, scoreboard, loss detection and recovery episodes;
        # "recover" starts at ISS (RFC 6582 §3.2 step 1).
        self.recovery = Recovery(iss, self.cc, self._n, rack=config.rack)
        self.cwv = CwndValidation(self._n)  # RFC 7661: idle and application-limited periods
        self._cwnd_limited = False  # cwnd limited the sender in this window (sender.py)
        self._max_flight = 0  # the largest flight in this window
        self._cwnd_usage_seq = iss  # SND.MAX when the window began
        self._probes_unanswered = 0  # persist probes with no ACK at all
        self._keepalives_unanswered = 0
        self._last_challenge: int | None = None
        self._last_invalid_ack: int | None = None  # invalid_ack_limited's last ACK (ns)
        self.path_mtu = link_mtu  # lowered by ICMP fragmentation-needed (set_path_mtu)
        # When the host's path MTU estimate for the peer expires and is raised again
        # (RFC 1191 §6.3, Host._pmtu); None while the path MTU is the link's.
        self.path_mtu_expires: int | None = None
        # What IP adds beyond IPv4's 20 bytes (20 for IPv6): path_mtu and link_mtu are in
        # IPv4 terms (MSS = MTU - 40); inspect shows the real MTU.
        self.ip_extra = 20 if getattr(local[0], "version", 4) == 6 else 0
        self._window_clamp: int | None = None  # cap on the window we offer (clamp_window)
        # The last segments in and out (journal.py, `inspect ID --journal`); None: off.
        self.journal = Journal(config.journal) if config.journal > 0 else None

    # ------------------------------------------------------------------ properties

    @property
    def counters(self) -> dict[str, Any]:
        """Segments and bytes in/out, retransmissions, duplicate ACKs, challenge ACKs,
        probes, and drops by reason."""
        n = self._n
        return {**{k: n.get(k, 0) for k in COUNTER_NAMES}, **n, "drops": dict(self._drops)}

    @property
    def sacked(self) -> list[tuple[int, int]]:
        """The sender's SACK scoreboard: [left, right) sequence ranges the peer holds
        above SND.UNA (RFC 2018 §4)."""
        return self.recovery.sacked_ranges()

    @property
    def state(self) -> State:
        return self.tcb.state

    @property
    def readable(self) -> int:
        """In-order bytes the application can read now."""
        return self.recvbuf.readable

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and every byte before it was read."""
        return self.tcb.fin_received and self.recvbuf.readable == 0

    @property
    def send_queued(self) -> int:
        """Bytes sent by the application and not yet acknowledged by the peer, sent or
        not (Linux SIOCOUTQ)."""
        return len(self.sendbuf)

    @property
    def send_space(self) -> int:
        """Bytes send() would accept now."""
        if self.tcb.fin_queued or USER_CALLS[(self.tcb.state, "SEND")] not in ("send", "queue"):
            return 0
        return self.sendbuf.free

    @property
    def is_closed(self) -> bool:
        return self.tcb.state is State.CLOSED

    # ------------------------------------------------------------------ user calls
    # RFC 9293 §3.10.1-6; USER_CALLS says what each call does in each state.

    def _call(self, call: str) -> str:
        action = USER_CALLS[(self.tcb.state, call)]
        if action.startswith("error: "):
            raise InvalidStateError(action.removeprefix("error: "))
        return action

    def open_active(self, now: int) -> None:
        """Active OPEN (§3.10.1): CLOSED (or LISTEN) -> SYN-SENT; the SYN goes out with
        the next segments_to_send."""
        self._call("OPEN")
        self._passive = False
        self._set_state(State.SYN_SENT, now)

    def open_passive(self, now: int) -> None:
        """Passive OPEN (§3.10.1): CLOSED -> LISTEN."""
        if self._call("OPEN") != "open":
            raise InvalidStateError("connection already exists")
        self._passive = True
        self._set_state(State.LISTEN, now)

    def send(self, data: bytes | bytearray | memoryview, now: int) -> int:
        """SEND (§3.10.2): queue bytes; returns how many fit (0: buffer full).  They go
        out with segments_to_send once the handshake is done and the windows allow."""
        self._call("SEND")
        if self.tcb.fin_queued:
            raise InvalidStateError("connection closing")
        return self.sendbuf.write(data)

    def receive(self, max_bytes: int, now: int) -> bytes:
        """RECEIVE (§3.10.3): up to max_bytes in-order bytes; b"" when none (see at_eof)."""
        if self._call("RECEIVE") == "queue":
            return b""
        data = self.recvbuf.read(max_bytes)
        if data:
            self._autotune(len(data), now)
            self._maybe_window_update()
        return data

    def _autotune(self, copied: int, now: int) -> None:
        """Receive-buffer autotuning (as Linux's dynamic right-sizing): once per RTT,
        if the application read at least half the buffer in that RTT -- the window,
        not the reader, was the limit -- the buffer grows to four times what was read
        (twice the window the sender could use), up to `rcv_buf_max`, so one fast
        connection is never window-limited.  Only with window scaling: without it the
        window field cannot say more than 64 KiB."""
        cap = self.recvbuf.capacity
        limit = min(self.config.rcv_buf_max, MAX_WINDOW_FIELD << self.tcb.wscale_local)
        if limit <= cap:
            return
        rtt = self.rtt.srtt
        if rtt is None:
            return
        if self._rcv_space_time is None:
            self._rcv_space_time = now
        self._rcv_space_copied += copied
        if now - self._rcv_space_time < max(rtt, MS):
            return
        if 2 * self._rcv_space_copied >= cap:
            self.recvbuf.grow(min(4 * self._rcv_space_copied, limit))
            self._n["rcv_buf_grown"] += 1
        self._rcv_space_copied = 0
        self._rcv_space_time = now

    def shutdown(self, now: int) -> None:
        """CLOSE (§3.10.4): no more sends; a FIN follows the queued data.  The receive
        side stays open (half-close)."""
        action = self._call("CLOSE")
        tcb = self.tcb
        if action == "delete":
            self._set_state(State.CLOSED, now)
        elif action == "queue":
            # SYN-RECEIVED: the FIN waits for ESTABLISHED (§3.10.4).
            tcb.fin_queued = True
        else:  # "fin"
            tcb.fin_queued = True
            new = State.FIN_WAIT_1 if tcb.state is State.ESTABLISHED else State.LAST_ACK
            self._set_state(new, now)

    def close(self, now: int) -> None:
        """The application is gone (RFC 1122 4.2.2.13): RST if received data is unread,
        otherwise CLOSE and answer any data arriving later with RST.  Never raises."""
        tcb = self.tcb
        state = tcb.state
        if state is State.CLOSED:
            return
        if self.recvbuf.readable and state in SYNCHRONIZED:
            # RFC 1122 4.2.2.13 / RFC 2525 §2.17: unread data means data loss: reset.
            self._drop("unread-data-at-close", now)
            self.aborted = True
            self._reset_and_close(now)
            return
        tcb.app_closed = True
        if state in (State.LISTEN, State.SYN_SENT):
            self._set_state(State.CLOSED, now)
        elif state in (State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT):
            if not tcb.fin_queued:
                self.shutdown(now)
        elif state is State.FIN_WAIT_2:
            self._arm_fin_wait_2(now)

    def reconfigure(self, config: TcpConfig, now: int) -> None:
        """Options the application changes on a live connection (setsockopt: TCP_NODELAY,
        SO_KEEPALIVE and its timings) take effect now: Nagle is decided at each send, and
        the keepalive timer is (re)armed or cancelled here (RFC 1122 4.2.3.6)."""
        self.config = config
        if config.keepalive_idle is None:
            self.timers.cancel("keepalive")
        elif self.tcb.state is State.ESTABLISHED:
            self.timers.arm("keepalive", now + config.keepalive_idle, "idle")

    def abort(self, now: int) -> None:
        """ABORT (§3.10.5): RST if synchronized, then CLOSED."""
        if self.tcb.state is not State.CLOSED:
            self.aborted = True
        if self._call("ABORT") == "reset":
            self._reset_and_close(now)
        else:
            self._set_state(State.CLOSED, now)

    def status(self, now: int) -> dict[str, Any]:
        """STATUS (§3.10.6): the snapshot."""
        self._call("STATUS")
        return self.snapshot(now)

    # ------------------------------------------------------------------ outputs

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    def next_deadline(self) -> int | None:
        return self.timers.earliest()

    def trace_to(self, tracer: Tracer | None) -> None:
        """Send trace events to `tracer` from now on (None: to nobody). The host
        replays a half-open record's handshake into a new connection untraced."""
        self._tracer = None if tracer is null_tracer else tracer

    def count_drops(self, drops: dict[str, int]) -> None:
        """Add drops counted before this object existed (its half-open record's)."""
        for reason, n in drops.items():
            self._drops[reason] = self._drops.get(reason, 0) + n

    def skip_rtt_sample(self) -> None:
        """Time nothing that is in flight now: the host calls it when the SYN-ACK this
        connection just built already left earlier, statelessly, as a SYN cookie, so
        its timing would measure nothing (RFC 6298 §3 wants only true samples)."""
        self.rtt.skip()

    def segments_to_send(self, now: int) -> list[TcpSegment]:
        """Everything due now: control segments, the SYN, data within the windows, the
        FIN, and an ACK if one is owed and nothing else carried it."""
        out = self._out
        self._out = []
        tcb = self.tcb
        state = tcb.state
        if state is State.SYN_SENT or state in SYNCHRONIZED:
            if self._syn_pending and state in (State.SYN_SENT, State.SYN_RECEIVED):
                out.append(self._send_syn(now))
            if state in SENDING:
                # RFC 6675 NextSeg order: lost segments, new data, then rules (3)-(4)
                # (once the new data ran out).
                self._send_recovery(now, out)
                self._send_data(now, out)
                self._send_recovery(now, out)
            if self._ack_now and state is not State.SYN_SENT:
                # SND.MAX, not SND.NXT: after a timeout pulled SND.NXT back, an ACK with
                # the old sequence number would be unacceptable to the peer (BSD
                # tcp_output does the same).
                out.append(self._make(ACK, tcb.snd_max, now))
        n = self._n
        journal = self.journal
        for seg in out:
            n["segments_out"] += 1
            n["bytes_out"] += len(seg.payload)
            if self._tracer is not None:
                self._trace(SEGMENT_OUT, now, segment=seg, src=self.local[0], dst=self.remote[0])
            if journal is not None:
                journal.sent(seg, now, tcb, self.cc)
        return out

    # ------------------------------------------------------------------ timers

    def handle_timers(self, now: int) -> None:
        """Fire every timer whose deadline is at or before now (RFC 9293 §3.10.8)."""
        for name in self.timers.due(now):
            timer = self.timers[name]
            if timer.deadline is None or timer.deadline > now:
                continue  # cancelled or re-armed by an earlier one
            self._trace(
                TIMER, now, timer=name, action="fired", deadline=timer.deadline, reason=timer.reason
            )
            backoff = timer.backoff
            self.timers.cancel(name)
            match name:
                case "syn":
                    self._on_syn_timeout(now, backoff)
                case "retransmission":
                    mode = self.recovery.timer_mode
                    if mode == "rack":
                        self._on_reorder_timeout(now)
                    elif mode == "tlp":
                        self._on_probe_timeout(now)
                    else:
                        self._on_rto(now)
                case "delayed-ack":
                    self._ack_now = True
                case "persist":
                    self._on_persist(now, backoff)
                case "keepalive":
                    self._on_keepalive(now)
                case "time-wait":
                    self._set_state(State.CLOSED, now)
                case "fin-wait-2":
                    # Silently, as Linux's FIN-WAIT-2 timewait record expires: the
                    # peer's next segment draws a RST from the host (no connection).
                    self._set_state(State.CLOSED, now)
            if self.tcb.state is State.CLOSED:
                break

    @property
    def window_clamp(self) -> int | None:
        return self._window_clamp

    def clamp_window(self, limit: int | None, now: int) -> None:
        """Offer at most `limit` bytes of receive window (0: a zero window) until called
        with None (`pytcp impair ID window N` / `clear`).  A window that opens again is
        announced at once by a window update, as after the application read."""
        self._window_clamp = None if limit is None else max(limit, 0)
        if self.tcb.state in SYNCHRONIZED:
            self._maybe_window_update()

    def fire_timer(self, name: str, now: int) -> None:
        """Fire the armed timer `name` now, as if its deadline had come (`pytcp timer ID
        fire`); its backoff and reason stay what they were.  InvalidStateError when it is
        not armed, ValueError for a name that is no timer (timers.TIMER_NAMES)."""
        timer = self._armed(name)
        self._trace(TIMER, now, timer=name, action="forced", deadline=timer.deadline,
                    reason=timer.reason)  # fmt: skip
        timer.deadline = now
        self.handle_timers(now)

    def set_timer(self, name: str, delay: int, now: int) -> None:
        """Re-arm the armed timer `name` to expire `delay` ns from now, keeping its backoff
        and reason (`pytcp timer ID set`); errors as fire_timer."""
        timer = self._armed(name)
        self._arm(now, name, max(delay, 0), timer.reason, timer.backoff)

    def _armed(self, name: str) -> Timer:
        if name not in TIMER_NAMES:
            raise ValueError(f"no timer {name!r}; timers are {', '.join(TIMER_NAMES)}")
        timer = self.timers[name]
        if timer.deadline is None:
            raise InvalidStateError(f"the {name} timer is not armed (state {self.tcb.state})")
        return timer

    def _on_syn_timeout(self, now: int, backoff: int) -> None:
        # RFC 9293 §3.8.1 / RFC 6298 (5.5): back off and resend the SYN (or SYN-ACK);
        # give up after syn_retries (synack_retries) timeouts, as Linux does.
        tcb = self.tcb
        limit = (
            self.config.synack_retries
            if tcb.state is State.SYN_RECEIVED
            else self.config.syn_retries
        )
        if backoff + 1 > limit:
            self._fail("timed out", now)
            return
        self.rtt.backoff()
        self.rtt.on_retransmit()  # never time a retransmitted segment
        self._syn_pending = True
        self._syn_timeouts += 1
        self._set_ts_floor(now)  # Karn for timestamps, as in _on_rto
        self._arm(now, "syn", self.rtt.rto, "SYN retransmission", backoff + 1)

    def _on_rto(self, now: int) -> None:
        """RFC 6298 (5.4)-(5.6) and RFC 5681 §3.1: loss window, go-back-N from SND.UNA."""
        tcb = self.tcb
        if tcb.snd_wnd == 0 and tcb.state in SENDING:
            # The peer shrank its window to zero with data in flight (RFC 9293 §3.8.6.1,
            # MUST-34/35, SHLD-17): resending is not possible, and the peer is not
            # unreachable, so this is no retry.  Probe the zero window instead (from
            # SND.UNA, with the persist backoff) and go back to SND.UNA when it opens.
            self.rtt.on_retransmit()
            self._set_ts_floor(now)  # what is resent later is ambiguous
            tcb.snd_nxt = tcb.snd_una
            self.recovery.mark_all_lost()
            self._arm(now, "persist", self.rtt.rto, "zero-window probe")
            return
        rec = self.recovery
        if rec.retries + 1 > self.config.retries:
            self._fail("timed out", now)
            return
        # The loss phase: cwnd = 1 SMSS, "recover" = SND.MAX (RFC 6582 §3.2 step 4),
        # everything outstanding not SACKed lost (RFC 6675 §5.1; the scoreboard is
        # dropped only if the peer reneged, RFC 2018 §8); go-back-N skips SACKed data.
        rec.on_rto(now, tcb.snd_max)
        self._set_ts_floor(now)  # see _ack_advance: older echoes are no samples
        self.rtt.backoff()
        self.rtt.on_retransmit()
        tcb.snd_nxt = tcb.snd_una
        self._arm_rto(now, rec.retries)

    def _on_reorder_timeout(self, now: int) -> None:
        """RFC 8985 §6.3: RACK's reordering window passed for a segment sent before
        one that was delivered: mark it lost, enter recovery, retransmit."""
        rec = self.recovery
        tcb = self.tcb
        rec.detect_loss(now, tcb.snd_mss, self.rtt.srtt, self.rtt.min_rtt)
        if rec.lost_bytes:
            if rec.phase in ("open", "disorder"):
                rec.enter_recovery(now, tcb.snd_max)
                rec.prr_update(now, 0, tcb.snd_mss)
            else:
                # No ACK paces this: what cwnd - pipe allows goes out (Linux
                # tcp_rack_reo_timeout retransmits within cwnd).
                rec.sndcnt = max(rec.sndcnt, self.cc.cwnd - rec.pipe)
        self._rearm(now)

    def _on_probe_timeout(self, now: int) -> None:
        """RFC 8985 §7.3: the tail loss probe.  New data if the windows allow one more
        segment (one MSS at most, Nagle off), else -- or if none could go -- the last
        segment again (as Linux); then the RTO watches."""
        rec = self.recovery
        tcb = self.tcb
        if tcb.state not in SENDING or tcb.snd_una == tcb.snd_max:
            return
        mss = self._payload_mss()
        off = seq_diff(tcb.snd_max, self._buf_seq)
        unsent = len(self.sendbuf) - off
        sent_new = False
        if (
            unsent > 0
            and tcb.snd_nxt == tcb.snd_max
            and seq_diff(seq_add(tcb.snd_una, tcb.snd_wnd), tcb.snd_max) >= min(unsent, mss)
        ):
            before = tcb.snd_max
            self._force_probe = True
            self._send_data(now, self._out)
            self._force_probe = False
            sent_new = tcb.snd_max != before
        if sent_new:
            rec.on_probe_sent(tcb.snd_max, False)
        else:
            last = rec.segs[-1]
            start = max(last.start, last.end - mss)
            self._retransmit(rec.wire(start), rec.wire(last.end), now)
            rec.on_probe_sent(tcb.snd_max, True)
        self._arm_rto(now)

    def _set_ts_floor(self, now: int) -> None:
        """Echoes of TSvals older than now are no RTT samples (see _ack_advance) until
        everything sent so far is acknowledged."""
        self.rtt.on_timeout(now // MS, self.tcb.snd_max)

    def _on_persist(self, now: int, backoff: int) -> None:
        """RFC 9293 §3.8.6.1: probe a zero window; or, for a small nonzero window that
        SWS avoidance blocked, send what fits (the §3.8.6.2.1 override timeout)."""
        tcb = self.tcb
        pending = len(self.sendbuf) - seq_diff(tcb.snd_una, self._buf_seq) > 0 or (
            tcb.fin_queued and not tcb.fin_acked
        )
        if tcb.state not in SENDING or not pending:
            return  # everything was acknowledged meanwhile: nothing to probe with
        if tcb.snd_wnd == 0:
            if self._probes_unanswered >= self.config.retries:
                self._fail("timed out", now)
                return
            # One byte (or the FIN) at SND.UNA; it counts as sent so an ACK covering it
            # stays acceptable, but does not arm the retransmission timer.
            tcb.snd_nxt = tcb.snd_una
            off = seq_diff(tcb.snd_una, self._buf_seq)
            payload = self.sendbuf.peek(off, 1)
            flags = ACK
            if not payload and tcb.fin_queued:
                flags |= FIN
            seg = self._make(flags, tcb.snd_una, now, payload)
            end = seq_add(tcb.snd_una, seg.seg_len)
            self.recovery.on_sent(tcb.snd_una, seg.seg_len, now, fin=bool(flags & FIN))
            tcb.snd_nxt = end
            if seq_gt(end, tcb.snd_max):
                tcb.snd_max = end
            if flags & FIN:
                tcb.fin_sent = True
            self._out.append(seg)
            self._n["zero_window_probes"] += 1
            self._probes_unanswered += 1
            delay = min(self.rtt.rto << min(backoff + 1, 32), self.config.rto_max)
            self._arm(now, "persist", delay, "zero-window probe", backoff + 1)
        else:
            self._force = True

    def _on_keepalive(self, now: int) -> None:
        """RFC 1122 4.2.3.6: an ACK with SEG.SEQ = SND.NXT - 1 draws an ACK from a live peer."""
        tcb = self.tcb
        idle = self.config.keepalive_idle
        if tcb.state is not State.ESTABLISHED or idle is None:
            return
        if tcb.snd_max != tcb.snd_una:
            # Data is outstanding: the retransmission timer watches the peer.
            self._arm(now, "keepalive", idle, "idle")
            return
        if self._keepalives_unanswered >= self.config.keepalive_probes:
            self._fail("timed out", now, rst=True)
            return
        self._keepalives_unanswered += 1
        self._n["keepalive_probes"] += 1
        self._out.append(self._make(ACK, seq_add(tcb.snd_max, -1), now))
        self._arm(
            now,
            "keepalive",
            self.config.keepalive_interval,
            "keepalive probe",
            self._keepalives_unanswered,
        )

    def _arm_fin_wait_2(self, now: int) -> None:
        # Linux tcp_fin_timeout (TCP_LINGER2): an orphaned FIN-WAIT-2 does not wait
        # forever, nor less than 3.5 RTO (Linux tcp_fin_time), so that a FIN the peer
        # sent as we timed out can still be retransmitted once and be answered.
        rto = self.rtt.rto
        wait = max(self.config.fin_wait_2_timeout, (rto << 2) - (rto >> 1))
        self._arm(now, "fin-wait-2", wait, "orphaned FIN-WAIT-2")

    # ------------------------------------------------------------------ ICMP

    def receive_icmp(self, err: IcmpError, now: int) -> None:
        """An ICMP destination-unreachable quoting one of our segments.  Never raises.

        Code 4 (fragmentation needed, RFC 1191) lowers the send MSS and resends;
        any other code fails a connection still in its handshake ("refused" for port
        unreachable, "unreachable" otherwise) and is a soft error afterwards (RFC 5461).
        """
        tcb = self.tcb
        if err.type != 3:
            self._drop("icmp-not-unreachable", now)
            return
        # RFC 5927 §4.1: only believe errors quoting a sequence number in flight.
        if not in_window(err.seq, tcb.snd_una, max(seq_diff(tcb.snd_max, tcb.snd_una), 1)):
            self._drop("icmp-stale-seq", now)
            return
        if err.code == 4:
            if not err.mtu:
                self._drop("icmp-no-mtu", now)
                return
            if err.mtu >= self.path_mtu:
                self._drop("icmp-mtu-not-lower", now)
                return
            if err.mtu < MIN_IPV4_MTU:  # RFC 791 / RFC 1191 §3: no IPv4 path is smaller
                self._drop("icmp-mtu-too-small", now)
                return
            self.set_path_mtu(err.mtu, now)
            return
        if tcb.state in (State.SYN_SENT, State.SYN_RECEIVED):
            self._fail("refused" if err.code == 3 else "unreachable", now)
        else:
            self._drop("icmp-soft-error", now)

    def set_path_mtu(self, mtu: int, now: int) -> None:
        """The path MTU is now `mtu` bytes (RFC 1191 / RFC 8201 discovery, or a probe
        that found it larger).  The caller has validated it; this only applies it.

        The send MSS follows (never above what both SYNs allowed, never below MIN_MSS).
        When it shrank, everything in flight is resent at the new size from SND.UNA
        (RFC 1191 §6.3: the router dropped those segments) at the next
        segments_to_send, with Karn's rule applied; no congestion response (a
        PMTU change is not congestion, RFC 1191 §6.3).  Before the handshake
        completes it is only remembered: `_negotiate` applies it to the SYN's MSS.
        """
        tcb = self.tcb
        self.path_mtu = mtu
        ts = TS_OPTION_SPACE if tcb.timestamps else 0
        mss = max(mtu - IP_TCP_HEADERS - ts, MIN_MSS)
        if mss < tcb.snd_mss:
            tcb.snd_mss = mss
            self.cc.set_mss(mss)
            if tcb.state in SENDING and tcb.snd_max != tcb.snd_una:
                tcb.snd_nxt = tcb.snd_una
                self.recovery.mark_all_lost()
                self.rtt.on_retransmit()
        elif mss > tcb.snd_mss and tcb.state in SYNCHRONIZED:
            # Probed back up (RFC 4821 / RFC 8899 style): up to what the SYNs allowed.
            ceiling = max(min(tcb.mss_remote, tcb.mss_local) - ts, MIN_MSS)
            mss = min(mss, ceiling)
            if mss > tcb.snd_mss:
                tcb.snd_mss = mss
                self.cc.set_mss(mss)

    # ------------------------------------------------------------------ segment arrival

    def receive_segment(self, seg: TcpSegment, now: int) -> None:
        """SEGMENT ARRIVES (RFC 9293 §3.10.7).  Never raises for network input: anything
        wrong is a counted, traced drop."""
        n = self._n
        n["segments_in"] += 1
        n["bytes_in"] += len(seg.payload)
        if self._tracer is not None:
            self._trace(SEGMENT_IN, now, segment=seg, src=self.remote[0], dst=self.local[0])
        journal = self.journal
        if journal is not None:
            journal.begin(seg, now, self.tcb, self.cc)
        if self._ack_own:
            # The owner feeds bursts of segments before it collects output.  An ACK
            # owed for every second full-sized segment (RFC 5681 §4.2, RFC 9293
            # 3.8.6.3 SHLD-19) or for out-of-order data (a duplicate ACK the peer
            # counts) goes out now, as it would have had the owner collected between
            # segments, not merged into one cumulative ACK for the whole burst.
            self._ack_own = False
            if self._ack_now and self.tcb.state in SYNCHRONIZED:
                self._out.append(self._make(ACK, self.tcb.snd_max, now))
        ce = self._ce_next
        self._ce_next = False
        match self.tcb.state:
            case State.CLOSED:
                self._on_closed(seg, now)
            case State.LISTEN:
                self._on_listen(seg, now)
            case State.SYN_SENT:
                self._on_syn_sent(seg, now)
            case _:
                self._on_synchronized(seg, now)
                if self.tcb.ecn:
                    self._ecn_receive(seg, ce)
        if journal is not None:
            journal.end(self.tcb, self.cc)

    def receive_ce(self) -> None:
        """The host saw the IP ECN field of the next segment it will hand over marked
        Congestion Experienced (RFC 3168 §5)."""
        self._ce_next = True

    def _ecn_receive(self, seg: TcpSegment, ce: bool) -> None:
        """RFC 3168 §6.1.3 (receiver): a CWR ends the echo; a CE mark starts it, and is
        ACKed at once (as Linux's quick ACK) so the sender learns of it in time."""
        if seg.flags & CWR:
            self.ecn_echo = False
        if ce:
            self._n["ce_received"] += 1
            if not self.ecn_echo:
                self.ecn_echo = True
                self._ack_now = True

    def _on_ece(self, now: int) -> None:
        """RFC 3168 §6.1.2 (sender): an ECN-Echo reduces cwnd at most once per window
        of data and tells the receiver with CWR.  In a loss episode the loss response
        stands for it."""
        tcb = self.tcb
        self._n["ece_received"] += 1
        if not seq_ge(tcb.snd_una, self.ecn_recover):
            return
        if self.recovery.phase in ("open", "disorder"):
            self.cc.on_ecn(now, seq_diff(tcb.snd_max, tcb.snd_una))
            self._n["ecn_reductions"] += 1
        self.ecn_recover = tcb.snd_max
        self.cwr_pending = True

    def _on_closed(self, seg: TcpSegment, now: int) -> None:
        # §3.10.7.1: an incoming segment not containing a RST causes a RST to be sent.
        self._drop("closed", now)
        if not seg.flags & RST:
            self._out.append(self._reset_for(seg))

    def _on_listen(self, seg: TcpSegment, now: int) -> None:
        # §3.10.7.2
        tcb = self.tcb
        if seg.flags & RST:  # first: ignore a RST
            self._drop("rst-in-listen", now)
            return
        if seg.flags & ACK:  # second: nothing was sent that could be acknowledged
            self._drop("ack-in-listen", now)
            self._out.append(self._rst(seg.ack))
            return
        if not seg.flags & SYN:  # fourth: drop anything else
            self._drop("no-syn-in-listen", now)
            return
        # third: the SYN.  Text and FIN on a SYN are not kept (no TCP Fast Open): the
        # peer retransmits them after the handshake.
        if seg.payload or seg.flags & FIN:
            self._drop("syn-data-ignored", now)
        tcb.irs = seg.seq
        tcb.rcv_nxt = seq_add(seg.seq, 1)
        tcb.rcv_up = tcb.rcv_nxt
        self._negotiate(seg, now)
        # RFC 7323 §2.2: the window of a SYN is never scaled.
        tcb.snd_wnd = seg.window
        tcb.max_snd_wnd = seg.window
        tcb.snd_wl1 = seg.seq
        tcb.snd_wl2 = tcb.iss
        self._set_state(State.SYN_RECEIVED, now)

    def _on_syn_sent(self, seg: TcpSegment, now: int) -> None:
        # §3.10.7.3
        tcb = self.tcb
        flags = seg.flags
        if flags & ACK and (seq_le(seg.ack, tcb.iss) or seq_gt(seg.ack, tcb.snd_max)):
            # first: an ACK for something we never sent
            self._drop("bad-ack-in-syn-sent", now)
            if not flags & RST:
                self._out.append(self._rst(seg.ack))
            return
        if flags & RST:
            # second: RFC 5961 §3 -- in SYN-SENT a RST is valid if it acknowledges the SYN.
            if flags & ACK:
                self._fail("refused", now)
            else:
                self._drop("rst-without-ack-in-syn-sent", now)
            return
        if not flags & SYN:  # fifth
            self._drop("no-syn-in-syn-sent", now)
            return
        # fourth: the SYN
        tcb.irs = seg.seq
        tcb.rcv_nxt = seq_add(seg.seq, 1)
        tcb.rcv_up = tcb.rcv_nxt
        self._negotiate(seg, now)
        tcb.snd_wnd = seg.window  # RFC 7323 §2.2: unscaled in a SYN
        tcb.max_snd_wnd = seg.window
        tcb.snd_wl1 = seg.seq
        tcb.snd_wl2 = seg.ack
        if flags & ACK:
            if seg.timestamps is not None and tcb.timestamps:
                tcb.ts_recent = seg.timestamps[0]
                tcb.ts_recent_age = now
            self.recovery.on_ack(
                seg.ack, (), now, srtt=None, min_rtt=None, duplicate=False, snd_max=tcb.snd_max
            )  # the SYN's: nothing recorded, SND.UNA moves past ISS
            self._ack_advance(seg.ack, seg, now, 0)
            self._set_state(State.ESTABLISHED, now)
            self._ack_now = True
            if seg.payload or flags & FIN:
                # Text on the SYN-ACK: §3.10.7.3 "continue processing at the sixth step".
                rest = replace(seg, seq=seq_add(seg.seq, 1), flags=flags & ~SYN)
                if rest.payload:
                    self._on_text(rest, now)
                if rest.flags & FIN:
                    self._on_fin(rest, now)
        else:
            # Simultaneous open: SYN-RECEIVED, send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
            self._set_state(State.SYN_RECEIVED, now)
            self._syn_new = True
            if seg.payload or flags & FIN:
                self._drop("syn-data-ignored", now)

    def _negotiate(self, syn: TcpSegment, now: int) -> None:
        """Options from the peer's SYN (RFC 9293 3.7.1, RFC 7323 §2-3, RFC 2018 §2)."""
        tcb = self.tcb
        cfg = self.config
        tcb.mss_remote = syn.mss if syn.mss else DEFAULT_MSS
        self._peer_wscale = syn.wscale is not None
        if syn.wscale is not None and self._wscale_offer is not None:
            tcb.wscale_remote = min(syn.wscale, MAX_WSCALE)  # RFC 7323 §2.3: log and use 14
            tcb.wscale_local = self._wscale_offer
        else:
            tcb.wscale_remote = tcb.wscale_local = 0
        tcb.sack = cfg.sack and syn.sack_permitted
        ece_cwr = syn.flags & (ECE | CWR)
        if tcb.state is State.LISTEN:
            # RFC 3168 §6.1.1: an ECN-setup SYN has ECE and CWR; we always accept.
            tcb.ecn = ece_cwr == ECE | CWR
        else:
            # Our ECN-setup SYN answered by an ECN-setup SYN-ACK (ECE without CWR).
            tcb.ecn = cfg.ecn and bool(syn.flags & ACK) and ece_cwr == ECE
        self.recovery.sack = tcb.sack
        tcb.timestamps = cfg.timestamps and syn.timestamps is not None
        if tcb.timestamps and syn.timestamps is not None:
            tcb.ts_recent = syn.timestamps[0]
            tcb.ts_recent_age = now
        ts = TS_OPTION_SPACE if tcb.timestamps else 0
        path = self.path_mtu - IP_TCP_HEADERS
        tcb.snd_mss = max(min(tcb.mss_remote, tcb.mss_local, path) - ts, MIN_MSS)
        self.cc.set_mss(tcb.snd_mss)

    def _on_synchronized(self, seg: TcpSegment, now: int) -> None:
        """§3.10.7.4, SYN-RECEIVED through TIME-WAIT, in the RFC's order."""
        tcb = self.tcb
        flags = int(seg.flags)  # int arithmetic: IntFlag ops are slow
        if (
            flags & PREDICTED_MASK == F_ACK
            and tcb.state is State.ESTABLISHED
            and self.predict
            and self._predicted(seg, now)
        ):
            return
        if (
            tcb.state is State.SYN_RECEIVED
            and flags & F_SYN
            and not flags & (F_ACK | F_RST)
            and seg.seq == tcb.irs
        ):
            # The peer's SYN again: our SYN-ACK was lost.  Resend it now, and time
            # neither copy: its ACK cannot say which one it answers (Karn, RFC 6298 §3).
            self._drop("retransmitted-syn", now)
            if self._invalid_ack(seg, now):  # Linux tcp_check_req: rate-limited too
                self._syn_pending = True
                self.rtt.on_retransmit()
            return
        if (
            tcb.state is State.SYN_RECEIVED
            and not self._passive
            and flags & F_SYN
            and flags & F_ACK
            and not flags & (F_RST | F_FIN)
            and seg.seq == tcb.irs
            and not seg.payload
            and seg.ack == tcb.snd_max
        ):
            # Simultaneous open (RFC 9293 §3.5 figure 8, line 6): the peer answers our
            # SYN with its SYN,ACK while we are in SYN-RECEIVED.  Its SYN is the one we
            # hold (SEG.SEQ = IRS, so the first step would find it old); its ACK is
            # new, and it is what establishes the connection.  Take the ACK (fifth
            # step), as Linux's tcp_validate_incoming does for exactly this segment;
            # a SYN,ACK that fits it less well takes the ordinary path below.  The ACK
            # we send for it (Linux does too) establishes the peer should our
            # SYN,ACK have been lost.
            if self._paws_reject(seg, now):
                return
            if self.journal is not None:
                self.journal.tested(True)
            if self._on_ack(seg, now):
                self._ack_now = True
            return
        if self._paws_reject(seg, now):
            return
        # first: sequence number check (four cases)
        text_ok = True
        acceptable = self._is_acceptable(seg)
        if self.journal is not None:
            self.journal.tested(acceptable)
        if not acceptable:
            if tcb.rcv_wnd == 0 and seg.seq == tcb.rcv_nxt:
                # A zero window still processes valid ACKs, URGs and RSTs (§3.10.7.4);
                # the text is not taken (a zero-window probe) and is answered by an ACK.
                # A bare FIN needs no buffer: take it, as Linux does, rather than make
                # a peer that sends FINs regardless of the window retry forever.
                self._ack_now = True
                if seg.payload:
                    text_ok = False
                    self._drop("zero-window", now)
            else:
                if flags & F_RST:  # RFC 5961 §3.2: out-of-window RST is silently dropped
                    self._drop("rst-out-of-window", now)
                    return
                if flags & F_SYN and tcb.state not in (State.SYN_RECEIVED, State.TIME_WAIT):
                    # RFC 5961 §4.2: a SYN "irrespective of the sequence number" draws a
                    # challenge ACK (Linux's syn_challenge), counted and limited as one.
                    self._on_syn(seg, now)
                    return
                if tcb.state is State.TIME_WAIT and flags & F_FIN:
                    # A retransmitted FIN: our last ACK was lost.  ACK it again and
                    # restart the 2·MSL wait (§3.10.7.4 eighth, TIME-WAIT).
                    self._arm(now, "time-wait", 2 * self.config.msl, "2MSL")
                end = seq_add(seg.seq, len(seg.payload))
                if (
                    tcb.sack
                    and seg.payload
                    and seq_le(end, tcb.rcv_nxt)
                    and seq_diff(tcb.rcv_nxt, seg.seq) <= self.recvbuf.capacity
                ):
                    # Data we hold already: a spurious retransmission, reported in a
                    # D-SACK block (RFC 2883 §4 (1)) so the sender can undo.
                    self.dsack = (seg.seq, end)
                self._drop("out-of-window", now)
                if self._invalid_ack(seg, now):
                    self._ack_now = True
                return
        self._keepalives_unanswered = 0
        if self.config.keepalive_idle is not None and tcb.state is State.ESTABLISHED:
            self.timers.arm("keepalive", now + self.config.keepalive_idle, "idle")
        if flags & F_RST:  # second
            self._on_rst(seg, now)
            return
        if flags & F_SYN:  # fourth (the third, security, is not implemented)
            self._on_syn(seg, now)
            return
        if not flags & F_ACK:  # fifth: "if the ACK bit is off, drop the segment"
            self._drop("no-ack", now)
            return
        if not self._on_ack(seg, now):
            return
        if flags & F_URG:  # sixth
            self._on_urg(seg)
        if not text_ok:
            return
        if seg.payload and not self._on_text(seg, now):  # seventh
            return
        if flags & F_FIN:  # eighth
            self._on_fin(seg, now)

    def _predicted(self, seg: TcpSegment, now: int) -> bool:
        """Header prediction (Van Jacobson's, RFC 1323 appendix; Linux
        tcp_rcv_established's fast path): in ESTABLISHED, a segment with ACK alone (PSH
        aside) that is the next one expected (SEG.SEQ = RCV.NXT), passes PAWS and
        carries no SACK blocks is either
          - a pure ACK for new data (SND.UNA < SEG.ACK <= SND.MAX), or
          - in-order text that fits the window, acknowledging nothing new
            (SEG.ACK = SND.UNA), nothing queued out of order;
        for those the §3.10.7.4 steps reduce to PAWS's TS.Recent update, the ACK and
        window steps and the text step: taken here straight, with the slow path's own
        helpers, so the state after is exactly the slow path's (tests/tcp/
        test_prediction.py drives both and compares). False: nothing was done, take
        the slow path."""
        tcb = self.tcb
        if seg.seq != tcb.rcv_nxt or (seg.sack and tcb.sack):
            return False
        ts = seg.timestamps
        if tcb.timestamps and (ts is None or seq_lt(ts[0], tcb.ts_recent)):
            return False
        ack = seg.ack
        payload = seg.payload
        if payload:
            if (
                ack != tcb.snd_una
                or len(payload) > tcb.rcv_wnd
                or tcb.app_closed
                or self.recvbuf.ooo_ranges()
            ):
                return False
        elif ack == tcb.snd_una or not between(tcb.snd_una, ack, tcb.snd_max):
            return False  # (unsigned: SND.UNA + 2**31 is no ACK of new data)
        # first: acceptable (SEG.SEQ = RCV.NXT, the text within RCV.WND)
        if self.journal is not None:
            self.journal.tested(True)
        self._keepalives_unanswered = 0
        if self.config.keepalive_idle is not None:
            self.timers.arm("keepalive", now + self.config.keepalive_idle, "idle")
        # fifth: the ACK, within SND.UNA - MAX.SND.WND .. SND.MAX (RFC 5961 §5.2)
        self._update_ts_recent(seg, now)
        window = seg.window << tcb.wscale_remote
        self._probes_unanswered = 0
        if not payload:  # SND.UNA advances; a segment with text is no duplicate ACK
            delivered = self.recovery.on_ack(
                ack,
                (),
                now,
                srtt=self.rtt.srtt,
                min_rtt=self.rtt.min_rtt,
                duplicate=False,
                snd_max=tcb.snd_max,
            )
            self._ack_advance(ack, seg, now, delivered)
        self._take_window(seg, ack, window)
        # seventh: the text (no URG, no FIN: the flags said so)
        if payload:
            self._on_text(seg, now)
        return True

    def _update_ts_recent(self, seg: TcpSegment, now: int) -> None:
        """RFC 7323 §4.3 (2): remember the peer's clock for the echo and PAWS, from a
        segment the fifth step accepted.  A segment dropped before it -- out of window,
        a RST or SYN, or one whose ACK is for data never sent (SEG.ACK > SND.NXT) --
        changes nothing, TS.Recent included: otherwise a forged or stray segment with a
        huge TSval would make PAWS drop every good segment after it (Linux updates it
        in tcp_ack "after we are sure that the packet is in window" too)."""
        tcb = self.tcb
        ts = seg.timestamps
        if (
            ts is not None
            and tcb.timestamps
            and seq_le(seg.seq, tcb.last_ack_sent)
            and (seq_ge(ts[0], tcb.ts_recent) or now - tcb.ts_recent_age > PAWS_IDLE)
        ):
            # §5.5: after 24 days idle TS.Recent is invalid and the next TSval
            # replaces it whatever its value (as Linux tcp_paws_check), or the
            # peer's clock, 2**31 ticks on, would never count as newer again.
            tcb.ts_recent = ts[0]
            tcb.ts_recent_age = now

    def _paws_reject(self, seg: TcpSegment, now: int) -> bool:
        """RFC 7323 §5.3 R1: an old TSval marks an old duplicate: ACK and drop."""
        tcb = self.tcb
        if (
            tcb.timestamps
            and seg.timestamps is not None
            and not int(seg.flags) & F_RST
            and seq_lt(seg.timestamps[0], tcb.ts_recent)
            and now - tcb.ts_recent_age <= PAWS_IDLE
        ):
            self._drop("paws", now)
            if self._invalid_ack(seg, now):
                self._ack_now = True
            return True
        return False

    def _invalid_ack(self, seg: TcpSegment, now: int) -> bool:
        """Whether the ACK unacceptable `seg` draws may go (invalid_ack_limited); counted
        either way. Challenge ACKs have their own limit (`_challenge_ack`)."""
        limited, self._last_invalid_ack = invalid_ack_limited(
            seg, self._last_invalid_ack, now, self.config.invalid_ack_interval
        )
        self._n["invalid_acks_limited" if limited else "invalid_acks"] += 1
        return not limited

    def _is_acceptable(self, seg: TcpSegment) -> bool:
        """The four cases of RFC 9293 §3.10.7.4 (first), modulo 2**32."""
        tcb = self.tcb
        length = seg.seg_len
        wnd = tcb.rcv_wnd
        nxt = tcb.rcv_nxt
        if length == 0:
            return seg.seq == nxt if wnd == 0 else in_window(seg.seq, nxt, wnd)
        if wnd == 0:
            return False
        return in_window(seg.seq, nxt, wnd) or in_window(seq_add(seg.seq, length - 1), nxt, wnd)

    def _on_rst(self, seg: TcpSegment, now: int) -> None:
        """§3.10.7.4 second, with RFC 5961 §3.2: only an exact match resets."""
        tcb = self.tcb
        if seg.seq != tcb.rcv_nxt:
            self._drop("rst-in-window", now)
            self._challenge_ack(now)
            return
        match tcb.state:
            case State.SYN_RECEIVED:
                # Passive: the host forgets us (see the module docstring); active
                # (simultaneous open): "connection refused".
                self._fail("reset" if self._passive else "refused", now)
            case State.ESTABLISHED | State.FIN_WAIT_1 | State.FIN_WAIT_2 | State.CLOSE_WAIT:
                self._fail("reset", now)
            case _:  # CLOSING, LAST-ACK, TIME-WAIT
                self._set_state(State.CLOSED, now)

    def _on_syn(self, seg: TcpSegment, now: int) -> None:
        """§3.10.7.4 fourth, RFC 5961 §4: a SYN in a synchronized state draws a challenge
        ACK whatever its sequence number; a live peer ignores it, a restarted one RSTs.
        Passive SYN-RECEIVED too (a SYN with a new ISN): see the module docstring."""
        self._drop("syn-in-synchronized", now)
        self._challenge_ack(now)

    def _challenge_ack(self, now: int) -> None:
        # RFC 5961 §7: at most one challenge ACK per challenge_ack_interval, then the
        # host's budget, as Linux's tcp_send_challenge_ack (the per-socket limit is spent
        # even when the host-wide one refuses).
        last = self._last_challenge
        if last is not None and now - last < self.config.challenge_ack_interval:
            self._drop("challenge-ack-rate-limited", now)
            return
        self._last_challenge = now
        allowed = self._challenge_ack_allowed
        if allowed is not None and not allowed(now):
            self._drop("challenge-ack-host-limited", now)
            return
        self._n["challenge_acks"] += 1
        self._out.append(self._make(ACK, self.tcb.snd_max, now))

    def _on_ack(self, seg: TcpSegment, now: int) -> bool:
        """§3.10.7.4 fifth.  False when the segment is done with."""
        tcb = self.tcb
        ack = seg.ack
        # RFC 7323 §2.2: the window of a SYN (a simultaneous open's SYN,ACK) is not
        # scaled.  (Linux's tcp_rcv_state_process scales this one; the RFC says not to.)
        shift = 0 if int(seg.flags) & F_SYN else tcb.wscale_remote
        if tcb.state is State.SYN_RECEIVED:
            if not (seq_lt(tcb.snd_una, ack) and seq_le(ack, tcb.snd_max)):
                self._drop("bad-ack-in-syn-received", now)
                self._out.append(self._rst(ack))
                return False
            tcb.snd_wnd = seg.window << shift
            # MAX.SND.WND estimates the peer's buffer (sender SWS avoidance, RFC 9293
            # 3.8.6.2.1; RFC 5961 §5).  A passive open's SYN window is no such
            # estimate: unscaled (RFC 7323 §2.2), it says at most 65535 whatever the
            # buffer, and a scaling peer's real windows follow in this ACK.  Start from
            # the ACK's window, as Linux does (tcp_create_openreq_child); an active
            # open's SYN,ACK window was the peer's last word and stays counted.
            if self._passive:
                tcb.max_snd_wnd = tcb.snd_wnd
            else:
                tcb.max_snd_wnd = max(tcb.max_snd_wnd, tcb.snd_wnd)
            tcb.snd_wl1 = seg.seq
            tcb.snd_wl2 = ack
            self._set_state(State.ESTABLISHED, now)
            if tcb.fin_queued:  # a CLOSE issued in SYN-RECEIVED (§3.10.4)
                self._set_state(State.FIN_WAIT_1, now)
        # RFC 5961 §5.2: acceptable if SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
        if not between(seq_add(tcb.snd_una, -tcb.max_snd_wnd), ack, tcb.snd_max):
            self._drop("ack-unacceptable", now)
            self._ack_now = True
            return False
        self._update_ts_recent(seg, now)
        window = seg.window << shift
        self._probes_unanswered = 0
        advances = seq_gt(ack, tcb.snd_una)
        # RFC 5681 §2 duplicate ACK: outstanding data, no data, no SYN/FIN, same ACK
        # number and the same window.
        duplicate = (
            not advances
            and ack == tcb.snd_una
            and self.timers.is_armed("retransmission")
            and not seg.payload
            and not int(seg.flags) & (F_SYN | F_FIN)
            and window == tcb.snd_wnd
        )
        rec = self.recovery
        delivered = 0
        if advances or duplicate or (tcb.sack and seg.sack):
            delivered = rec.on_ack(
                ack,
                seg.sack if tcb.sack else (),
                now,
                srtt=self.rtt.srtt,
                min_rtt=self.rtt.min_rtt,
                duplicate=duplicate,
                snd_max=tcb.snd_max,
            )
        if tcb.ecn and seg.flags & ECE:
            self._on_ece(now)
        if advances:
            self._ack_advance(ack, seg, now, delivered)
        elif duplicate:
            self._on_dup_ack(now, delivered)
        elif delivered and tcb.sack:
            self._sack_loss_detection(now, delivered)
        self._take_window(seg, ack, window)
        match tcb.state:
            case State.FIN_WAIT_1:
                if tcb.fin_acked:
                    self._set_state(State.FIN_WAIT_2, now)
                    if tcb.app_closed:
                        self._arm_fin_wait_2(now)
            case State.CLOSING:
                if tcb.fin_acked:
                    self._enter_time_wait(now)
            case State.LAST_ACK:
                if tcb.fin_acked:
                    self._set_state(State.CLOSED, now)
                    return False
        return True

    def _take_window(self, seg: TcpSegment, ack: int, window: int) -> None:
        """§3.10.7.4 fifth: the SND.WL1/WL2 rule keeps old segments from updating the
        send window (`window`: SEG.WND scaled)."""
        tcb = self.tcb
        if seq_lt(tcb.snd_wl1, seg.seq) or (tcb.snd_wl1 == seg.seq and seq_le(tcb.snd_wl2, ack)):
            if tcb.snd_wnd == 0 and window > 0:
                self.timers.cancel("persist")
                if not self.timers.is_armed("retransmission"):
                    # Only a zero-window probe is out, and the peer's zero window
                    # dropped it: resume from SND.UNA rather than leave a hole.
                    tcb.snd_nxt = tcb.snd_una
                    self.recovery.mark_all_lost()
            tcb.snd_wnd = window
            tcb.snd_wl1 = seg.seq
            tcb.snd_wl2 = ack
            tcb.max_snd_wnd = max(tcb.max_snd_wnd, window)

    def _ack_advance(self, ack: int, seg: TcpSegment, now: int, delivered: int) -> None:
        """SND.UNA moves to `ack`: release acknowledged bytes, take an RTT sample, tell
        congestion control and the recovery episode, restart or stop the timer.
        `delivered` is the ACK's DeliveredData (newly acked + newly SACKed bytes)."""
        tcb = self.tcb
        rec = self.recovery
        data_end = seq_add(self._buf_seq, len(self.sendbuf))
        covered = ack if seq_le(ack, data_end) else data_end
        data_acked = seq_diff(covered, self._buf_seq)
        if data_acked > 0:
            self.sendbuf.consume(data_acked)
            self._buf_seq = covered
        if tcb.fin_sent and seq_gt(ack, data_end):
            tcb.fin_acked = True
        tcb.snd_una = ack
        if seq_lt(tcb.snd_nxt, ack):
            tcb.snd_nxt = ack
        self.timers.cancel("syn")  # the SYN is acknowledged by any advancing ACK
        # RTT: the estimator times one segment per RTT and applies Karn's rule (rtt.py).
        tsecr = seg.timestamps[1] if tcb.timestamps and seg.timestamps is not None else None
        sample = self.rtt.on_ack(ack, now, tsecr)
        self.rtt.reset_backoff()
        self.cwv.on_ack(now, max(data_acked, 0), self.rtt.srtt)
        flight = seq_diff(tcb.snd_max, tcb.snd_una)
        if rec.phase == "recovery":
            if rec.recovered(ack):
                # RFC 6582 §3.2 step 6 / RFC 6675 §5 / RFC 6937: the episode ends.
                if not tcb.sack:
                    reno_exit(self.cc, now, flight)
                rec.exit_recovery(now)
            elif tcb.sack:
                # A partial ACK under RFC 6675: the scoreboard and PRR decide.
                self._sack_loss_detection(now, delivered)
                # RFC 6298 (5.3), as Linux: every ACK of new data restarts the timer. The
                # first-partial-ACK-only rule is RFC 6582's, for NewReno's one hole per RTT;
                # a SACK episode repairing many holes would time out while it progresses.
                if tcb.snd_max != tcb.snd_una:
                    self._arm_rto(now)
                rec.partial_acks += 1
                return
            else:
                # RFC 6582 §3.2 step 5: a partial ACK: retransmit the next hole and
                # stay in recovery.
                reno_partial_ack(self.cc, now, max(data_acked, 0))
                self._retransmit_head(now)
                rec.partial_acks += 1
                if rec.partial_acks == 1 and tcb.snd_max != tcb.snd_una:
                    # "For the first partial ACK ... also reset the retransmit timer."
                    self._arm_rto(now)
                return
        else:
            limited = self._is_cwnd_limited()
            # The controller gets a sample per ACK (HyStart++ needs several a round):
            # the timed segment's, or the newest delivered segment's (RFC 8985 §6.2).
            rtt = sample if sample is not None else rec.ack_rtt
            self.cc.on_ack(now, max(data_acked, 0), flight, rtt, cwnd_limited=limited)
            rec.dup_acks = 0
            rec.limited_bytes = 0
            if rec.phase == "loss" and rec.recovered(ack):
                rec.phase = "open"
            if rec.phase in ("open", "disorder"):
                rec.drag_recover(ack)
                if tcb.sack:
                    self._sack_loss_detection(now, delivered)
                elif rec.phase == "disorder":
                    rec.phase = "open"
        if tcb.snd_una == tcb.snd_max:
            self.timers.cancel("retransmission")  # RFC 6298 (5.2)
        else:
            self._rearm(now, restart=True)  # (5.3)

    def _sack_loss_detection(self, now: int, delivered: int) -> None:
        """After an ACK with SACK: mark losses (RACK, or RFC 6675 IsLost), start fast
        recovery when something is lost, and pace the episode with PRR."""
        tcb = self.tcb
        rec = self.recovery
        if rec.phase == "loss":
            return  # go-back-N after the RTO; SACKs only shrink the pipe
        rec.detect_loss(now, tcb.snd_mss, self.rtt.srtt, self.rtt.min_rtt)
        if (
            not rec.rack_enabled
            and not rec.lost_bytes
            and rec.dup_acks >= DUP_ACK_THRESHOLD
            and rec.phase != "recovery"
            and seq_ge(tcb.snd_una, rec.recover)
        ):
            rec.mark_head_lost()  # RFC 6675 §5 (a): DupAcks >= DupThresh
        if rec.phase in ("open", "disorder"):
            if rec.lost_bytes and seq_ge(tcb.snd_una, rec.recover):
                rec.enter_recovery(now, tcb.snd_max)
            elif rec.sacked_bytes or rec.dup_acks:
                rec.phase = "disorder"
            else:
                rec.phase = "open"
        if rec.phase == "recovery":
            rec.prr_update(now, delivered, tcb.snd_mss)
        # RACK's reordering timer follows each ACK; a probe armed before the episode
        # gives way to the RTO (RFC 8985 §7.2: no tail loss probe in fast recovery).
        if (
            rec.reo_deadline is not None
            or rec.timer_mode == "rack"
            or (rec.timer_mode == "tlp" and rec.phase == "recovery")
        ):
            self._rearm(now)

    def _on_dup_ack(self, now: int, delivered: int) -> None:
        """RFC 5681 §3.2 and RFC 6582 §3.2: fast retransmit on the third duplicate
        (without SACK); with SACK, RFC 6675 and RACK decide (_sack_loss_detection)."""
        tcb = self.tcb
        rec = self.recovery
        if tcb.sack:
            self._sack_loss_detection(now, delivered)
            return
        if rec.phase == "recovery":
            # RFC 6582 step 3: NewReno inflates cwnd by the segment that left.
            reno_inflate(self.cc)
            return
        if rec.phase == "open":
            rec.phase = "disorder"
        if rec.dup_acks != DUP_ACK_THRESHOLD:
            return
        # RFC 6582 §3.2 step 2: enter only if the ACK covers more than "recover", so
        # duplicates caused by retransmissions after a timeout do not trigger it again.
        # `recover` holds SND.MAX, one past the RFC's "highest sequence number
        # transmitted": covering more than that number is reaching it.
        if not seq_ge(tcb.snd_una, rec.recover):
            return
        flight = seq_diff(tcb.snd_max, tcb.snd_una) - rec.limited_bytes  # RFC 3042 §2
        rec.enter_recovery(now, tcb.snd_max, reno=True)
        reno_enter(self.cc, now, flight)
        self._retransmit_head(now)

    def _on_urg(self, seg: TcpSegment) -> None:
        # §3.10.7.4 sixth: urgent data is not delivered separately; keep the pointer.
        up = seq_add(seg.seq, seg.urgent)
        if seq_gt(up, self.tcb.rcv_up):
            self.tcb.rcv_up = up

    def _on_text(self, seg: TcpSegment, now: int) -> bool:
        """§3.10.7.4 seventh: take in-window text into the reassembly buffer.  False when
        the connection was reset because of it."""
        tcb = self.tcb
        if tcb.state not in RECEIVING:
            # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer's FIN came before.
            self._drop("text-after-fin", now)
            return True
        payload = memoryview(seg.payload)
        offset = seq_diff(seg.seq, tcb.rcv_nxt)
        if offset < 0:  # trim what we already have
            if tcb.sack:  # RFC 2883 §4 (1): report the duplicate part in a D-SACK block
                self.dsack = (seg.seq, seq_add(seg.seq, min(-offset, len(payload))))
            payload = payload[-offset:]
            offset = 0
        room = tcb.rcv_wnd - offset
        if len(payload) > room:  # trim what lies beyond the window
            payload = payload[: max(room, 0)]
        if not payload:
            self._ack_now = True  # a pure duplicate: the peer missed our ACK
            return True
        if tcb.app_closed:
            # RFC 1122 4.2.2.13: nobody will read it; tell the peer with a RST.
            self._drop("data-after-close", now)
            self._reset_and_close(now)
            return False
        self._rcv_mss = max(self._rcv_mss, min(len(seg.payload), tcb.mss_local))
        if offset > 0 and tcb.sack:
            for lo, hi in self.recvbuf.ooo_ranges():
                if lo <= offset and offset + len(payload) <= hi:
                    # All held already: a duplicate above RCV.NXT (RFC 2883 §4 (2)).
                    self.dsack = (seg.seq, seq_add(seg.seq, len(payload)))
                    break
        fits = self.recvbuf.window - offset
        short = len(payload) > fits
        if short and fits <= 0:
            self._drop("no-buffer-space", now)  # see _retract_to_buffer
        advanced = self.recvbuf.insert(offset, payload)
        if offset > 0:
            # Out of order: ACK at once (RFC 5681 §4.2, RFC 9293 3.8.6.3) so the
            # sender sees duplicate ACKs, with SACK blocks.
            if tcb.sack:
                self._note_ooo(seg.seq)
            self._ack_now = self._ack_own = True
            if short:
                self._retract_to_buffer()
            return True
        if advanced:
            self._advance_rcv_nxt(advanced)
            self._events.append(DataReceived(advanced))
            if advanced > len(payload) or self.recvbuf.ooo_ranges():
                # a hole filled or one remains: ACK at once
                self._ack_now = self._ack_own = True
            else:
                # Delayed ACK (RFC 9293 3.8.6.3 SHLD-19, RFC 5681 §4.2): at least every
                # second full-sized segment, and within delayed_ack.
                self._unacked_rx += advanced
                if self._unacked_rx >= 2 * self._rcv_mss:
                    self._ack_now = self._ack_own = True
                elif not self.timers.is_armed("delayed-ack"):
                    self._arm(now, "delayed-ack", self.config.delayed_ack, "delayed ACK")
        if short:
            self._retract_to_buffer()
        if self._peer_fin_seq is not None and self._peer_fin_seq == tcb.rcv_nxt:
            self._accept_fin(now)
        return True

    def _retract_to_buffer(self) -> None:
        """Text inside the window we advertised found no room in the buffer: the window
        had been rounded up to its scale unit so as not to pull the right edge back
        (RFC 7323 §2.4, `_window_field`), and such promises add up while the reader
        lags.  What did not fit is lost; the window retracts to what the buffer backs,
        rounded down, and is advertised at once (as Linux's tcp_select_window when a
        segment found no memory), so the peer probes a zero window instead of
        retransmitting into silence until it gives up."""
        shift = self.tcb.wscale_local
        self.tcb.rcv_wnd = (self._rcv_avail() >> shift) << shift
        self._ack_now = self._ack_own = True

    def _advance_rcv_nxt(self, n: int) -> None:
        tcb = self.tcb
        tcb.rcv_nxt = seq_add(tcb.rcv_nxt, n)
        tcb.rcv_wnd = max(tcb.rcv_wnd - n, 0)  # the right edge stays where it was
        if self.sack_order:  # blocks RCV.NXT passed are no longer reported
            nxt = tcb.rcv_nxt
            self.sack_order = [q for q in self.sack_order if seq_gt(q, nxt)]

    def _on_fin(self, seg: TcpSegment, now: int) -> None:
        """§3.10.7.4 eighth."""
        tcb = self.tcb
        if tcb.fin_received:
            self._ack_now = True  # a retransmitted FIN: ACK it again
            return
        fin_seq = seq_add(seg.seq, len(seg.payload))
        if fin_seq == tcb.rcv_nxt:
            self._accept_fin(now)
        elif in_window(fin_seq, tcb.rcv_nxt, tcb.rcv_wnd + 1):
            # Ahead of missing data: remember it, take it when the hole fills.
            self._peer_fin_seq = fin_seq
            self._ack_now = True

    def _accept_fin(self, now: int) -> None:
        tcb = self.tcb
        self._peer_fin_seq = None
        tcb.fin_received = True
        # The FIN takes a sequence number but no buffer space: the right edge moves
        # with RCV.NXT.
        tcb.rcv_nxt = seq_add(tcb.rcv_nxt, 1)
        self._ack_now = True  # a FIN is acknowledged at once
        self._events.append(PeerClosed())
        match tcb.state:
            case State.SYN_RECEIVED | State.ESTABLISHED:
                self._set_state(State.CLOSE_WAIT, now)
            case State.FIN_WAIT_1:
                if tcb.fin_acked:
                    self._enter_time_wait(now)
                else:
                    self._set_state(State.CLOSING, now)
            case State.FIN_WAIT_2:
                self._enter_time_wait(now)
            case _:
                pass

    def _enter_time_wait(self, now: int) -> None:
        self._set_state(State.TIME_WAIT, now)
        for name in ("retransmission", "persist", "keepalive", "fin-wait-2", "delayed-ack"):
            self.timers.cancel(name)
        self._arm(now, "time-wait", 2 * self.config.msl, "2MSL")

    def _reset_and_close(self, now: int) -> None:
        # §3.10.5: <SEQ=SND.NXT><CTL=RST>
        self._out.append(self._rst(self.tcb.snd_max))
        self._set_state(State.CLOSED, now)

    def _fail(self, reason: str, now: int, *, rst: bool = False) -> None:
        self.error = reason
        self._emit(ConnectionFailed(reason), now)
        if rst:
            self._reset_and_close(now)
        else:
            self._set_state(State.CLOSED, now)

    # ------------------------------------------------------------------ state, events

    def _set_state(self, new: State, now: int) -> None:
        """The only writer of tcb.state: emits StateChanged and a STATE trace event."""
        tcb = self.tcb
        old = tcb.state
        if old is new:
            return
        tcb.state = new
        if new in (State.SYN_SENT, State.SYN_RECEIVED):
            # §3.10.1 / §3.10.7.2: the SYN is queued now and SND.NXT = ISS + 1, so an
            # ACK for it is acceptable even before the owner collected the segment.
            self._syn_pending = True
            tcb.snd_nxt = tcb.snd_max = seq_add(tcb.iss, 1)
            self._arm(now, "syn", self.rtt.rto, "SYN retransmission")
        self._trace(STATE, now, old=str(old), new=str(new))
        self._emit(StateChanged(old, new), now)
        if new is State.ESTABLISHED:
            if self._syn_timeouts and self.rtt.samples == 0:
                # RFC 6298 (5.7): the SYN timed out and nothing was measured: start
                # the data phase with an RTO of 3 s, not the 1 s initial value.
                self.rtt.handshake_retransmitted()
            self._emit(Established(), now)
            if self.config.keepalive_idle is not None:
                self._arm(now, "keepalive", self.config.keepalive_idle, "idle")
        elif new is State.CLOSED:
            self.timers.cancel_all()
            self._emit(Closed(), now)

    def _emit(self, event: Event, now: int) -> None:
        self._events.append(event)
        if self._tracer is not None:
            self._trace(EVENT, now, event=event)

    def _drop(self, reason: str, now: int) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + 1
        if self.journal is not None:
            self.journal.dropped(reason)
        if self._tracer is not None:
            self._trace(DROP, now, reason=reason)

    # ------------------------------------------------------------------ snapshot

    def row(self, now: int) -> dict[str, Any]:
        """What a `pytcp inspect` list row shows, with snapshot()'s names and values:
        id, state, local, remote, buffers {send_queued, unread}, congestion {cwnd}, rtt
        {srtt, rto} and the armed timers. A list of many connections costs a fraction
        of their snapshots (issue 14)."""
        rtt = self.rtt
        return {
            "id": self.id,
            "state": str(self.tcb.state),
            "local": {"addr": _address_text(self.local[0]), "port": self.local[1]},
            "remote": {"addr": _address_text(self.remote[0]), "port": self.remote[1]},
            "buffers": {"send_queued": len(self.sendbuf), "unread": self.recvbuf.readable},
            "congestion": {"cwnd": self.cc.cwnd},
            "rtt": {"srtt": rtt.srtt, "rto": rtt.rto},
            "timers": self.timers.snapshot(now, armed_only=True) if self.timers.any_armed() else [],
        }

    def snapshot(self, now: int) -> dict[str, Any]:
        """The whole TCB as plain, JSON-safe data (docs/internals.md)."""
        tcb = self.tcb
        cfg = self.config
        snap = tcb.snapshot()
        queued = len(self.sendbuf)
        data_end = seq_add(self._buf_seq, queued)
        sent_to = tcb.snd_max if seq_le(tcb.snd_max, data_end) else data_end
        unacked = max(seq_diff(sent_to, self._buf_seq), 0)
        nxt = tcb.rcv_nxt
        return {
            "id": self.id,
            "state": str(tcb.state),
            "local": {"addr": _address_text(self.local[0]), "port": self.local[1]},
            "remote": {"addr": _address_text(self.remote[0]), "port": self.remote[1]},
            "send": snap["send"],
            "receive": {
                **snap["receive"],
                # RFC 2018 §4: one sequence number per out-of-order block, newest first
                "sack_order": list(self.sack_order),
                "dsack": None if self.dsack is None else list(self.dsack),  # RFC 2883, next
                "peer_fin_seq": self._peer_fin_seq,  # a FIN ahead of missing data
                "unacked_rx": self._unacked_rx,  # in-order bytes not yet ACKed (RFC 5681 §4.2)
                "rcv_mss": self._rcv_mss,  # the peer's full-sized segment (delayed ACK)
            },
            "options": {
                **snap["options"],
                "path_mtu": self.path_mtu + self.ip_extra,
                "path_mtu_expires": None
                if self.path_mtu_expires is None
                else self.path_mtu_expires - now,
                "nodelay": cfg.nodelay,
                "keepalive": None
                if cfg.keepalive_idle is None
                else {
                    "idle": cfg.keepalive_idle,
                    "interval": cfg.keepalive_interval,
                    "count": cfg.keepalive_probes,
                },
            },
            "congestion": {
                **self.cc.snapshot(),
                "in_flight": seq_diff(tcb.snd_max, tcb.snd_una),
                "phase": self.recovery.phase,
                "recover": self.recovery.recover,
                "dup_acks": self.recovery.dup_acks,
                "ecn_echo": self.ecn_echo,
                "cwr_pending": self.cwr_pending,
                "ecn_recover": self.ecn_recover,  # no new ECN reduction before this is ACKed
                **self.cwv.snapshot(),
                "cwnd_limited": self._cwnd_limited,  # cwnd was full in this window
                "max_flight": self._max_flight,  # the largest flight of this window
            },
            "recovery": {
                **self.recovery.snapshot(),
                "syn_timeouts": self._syn_timeouts,
                "probes_unanswered": self._probes_unanswered,  # zero-window probes
                "keepalives_unanswered": self._keepalives_unanswered,
            },
            "rtt": self.rtt.snapshot(),
            "buffers": {
                "send_capacity": self.sendbuf.capacity,
                "send_queued": queued,
                "unacked": unacked,
                "unsent": queued - unacked,
                "recv_capacity": self.recvbuf.capacity,
                "unread": self.recvbuf.readable,
                # Storage the buffers hold now: allocated on demand (issue 14).
                "send_allocated": self.sendbuf.allocated,
                "recv_allocated": self.recvbuf.allocated,
                "out_of_order": [
                    [seq_add(nxt, s), seq_add(nxt, e)] for s, e in self.recvbuf.ooo_ranges()
                ],
            },
            "counters": self.counters,
            "timers": self.timers.snapshot(now),
            "close": snap["close"],
        }
