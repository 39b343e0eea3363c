"""One host: IPv4 (and IPv6 when given an address) in and out, TCP demultiplexing,
listeners, ports, RSTs and ICMP.

`Host` turns IP packets into calls on `Connection` objects and their segments back into
IP packets, sans-IO: time (`now`, ns) and randomness (`rng`, `isn_secret`) are handed in.
Imports `stack.wire`, `stack.tcp`, `stack.trace` and the standard library (no I/O).

What the host decides, and where the rule comes from:
- demultiplexing by 4-tuple, then by listening port (RFC 9293 §3.10.7);
- a segment nobody owns draws a RST as if to a CLOSED connection, never a RST in reply
  to a RST (§3.10.7.1); a segment to a listener follows §3.10.7.2 (RST ignored, any ACK
  answered with a RST, SYN opens a connection);
- listeners bound two queues, like Linux: the SYN backlog (embryonic connections in
  SYN-RECEIVED) and the accept queue (ESTABLISHED, not yet accepted). A SYN finding
  either full is dropped ("syn-backlog-full", "accept-queue-full"): the peer retries.
  SYN cookies (RFC 4987 §3.6), per listener: "auto" (the default, as Linux's
  net.ipv4.tcp_syncookies=1) answers a SYN the full SYN backlog cannot hold with a
  cookie, and accepts cookies only within two cookie periods of the last one sent;
  "always" (tcp_syncookies=2) answers every SYN so; "never" drops. With timestamps the
  cookie keeps window scale and SACK-permitted in the low bits of its TSval, as Linux.
  Under pressure (the SYN backlog over half full) embryonic connections get fewer
  SYN-ACK retransmissions, the older ones first (Linux reqsk_timer_handler), so spoofed
  SYNs cannot hold the backlog for the minute that synack_retries would allow.
  While the accept queue is full, the ACK that would complete a handshake is dropped
  ("accept-queue-full") and the connection stays SYN-RECEIVED, as Linux does with
  tcp_abort_on_overflow=0: our SYN-ACK retransmission and the peer's data retransmission
  finish the handshake once the application accepts, and nothing is reset;
- a SYN for a 4-tuple in TIME-WAIT, on a listening port, starts a new incarnation when
  it is newer (by timestamps, RFC 6191, else by sequence number, RFC 1122 §4.2.2.13);
- ephemeral ports by RFC 6056 §3.3.4 (Algorithm 4, "double-hash"), 32768-60999 as Linux;
- ICMP destination unreachable goes to the connection whose segment it quotes (RFC 5927:
  the quoted 4-tuple finds it here, the connection checks the quoted sequence number is
  in flight); echo requests are answered (RFC 1122 §3.2.2.6); other
  transports (UDP, ...) get Protocol Unreachable, rate-limited (RFC 1122 §3.2.2.1);
- IPv6 (RFC 8200) the same way when the host has an IPv6 address: ICMPv6 echo (RFC 4443
  §4.1), destination unreachable and packet too big (RFC 8201) to the quoted connection,
  MSS 20 bytes smaller; listeners on 0.0.0.0 or :: hear both families. Without an IPv6
  address IPv6 packets are dropped as "ipv6-unsupported".
- path MTU (RFC 1191, RFC 8201) per destination, as Linux keeps it with its routes: a
  validated fragmentation-needed or packet-too-big lowers the estimate for that peer
  and every connection to it (the quoted one resends what was lost at the new size),
  never below Linux's floors, 552 bytes for IPv4 (ip_rt_min_pmtu; a smaller report
  sets 552 and clears DF towards that peer, as Linux "locks" the MTU) and 1280 for IPv6
  (RFC 8200 §5); new connections start from it. After PMTU_EXPIRES (10 min, Linux
  ip_rt_mtu_expires, RFC 1191 §6.3) the estimate is forgotten and the connections go
  back to the link MTU: if the path is still narrow, the next full-sized segment draws
  a new report.
- challenge ACKs (RFC 5961 §7) have a host-wide budget after each connection's own
  limit: limit/2 + random(limit) per second (ChallengeAckBudget, Linux 4.7-5.x's
  answer to CVE-2016-5696); connections and TIME-WAIT records ask the host for each.

Bad input is a counted, traced drop (`counters["drops"][reason]`); nothing but a bug in
the stack makes `receive_packet` raise.
"""

from __future__ import annotations

import errno
import functools
import heapq
import inspect
import itertools
import struct
import weakref
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol, TypedDict, cast

from stack.fragments import TIMEOUT_V4, TIMEOUT_V6, Reassembler
from stack.tcp.clock import MS, SECOND
from stack.tcp.config import TcpConfig
from stack.tcp.connection import (
    MIN_IPV4_MTU,
    PAWS_IDLE,
    Connection,
    _wscale_for,
    invalid_ack_limited,
)
from stack.tcp.errors import InvalidStateError
from stack.tcp.isn import (
    COOKIE_PERIOD,
    IsnGenerator,
    SynCookies,
    cookie_options,
    cookie_tsval,
)
from stack.tcp.reassembly import RingPool
from stack.tcp.sender import CE, ECT0, MAX_WINDOW_FIELD, EctSegment
from stack.tcp.seq import MASK, in_window, seq_add, seq_ge, seq_gt, seq_lt
from stack.tcp.state import State
from stack.trace import DROP, SEGMENT_IN, SEGMENT_OUT, STATE, TraceEvent, Tracer, null_tracer
from stack.wire import PROTO_ICMP, PROTO_TCP, Flags, Ipv4Header, TcpSegment, WireError
from stack.wire.icmp import (
    CODE_PROTOCOL_UNREACHABLE,
    ND_HOP_LIMIT,
    TYPE6_PACKET_TOO_BIG,
    TYPES6_LINK,
    IcmpEcho,
    IcmpError,
    Icmpv6Error,
    build_neighbour_advert,
    build_unreachable,
    parse_link_message,
    parse_v6,
)
from stack.wire.icmp import parse as parse_icmp
from stack.wire.ipv6 import PROTO_ICMPV6, Ipv6Header
from stack.wire.packet import GSO_NONE, GSO_TCPV4, GSO_TCPV6, TCP_CSUM_OFFSET, Packet
from stack.wire.template import HeaderTemplate

try:  # hashlib.blake2s itself, without hashlib's loading of OpenSSL (2 ms of start-up)
    from _blake2 import blake2s
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2s

Address = IPv4Address | IPv6Address
Endpoint = tuple[Address, int]
Key = tuple[Address, int, Address, int]  # local addr, local port, remote addr, port
IpHeader = Ipv4Header | Ipv6Header

ANY = IPv4Address(0)  # a listener on ANY (or ANY6) hears both of the host's addresses
ANY6 = IPv6Address(0)
BROADCAST = IPv4Address("255.255.255.255")
TTL = 64  # RFC 1700 / Linux ip_default_ttl
TEMPLATES = 256  # connections' header templates kept (Host._templates)
IPV4_HEADER_LEN = 20  # what we send: no IP options
DEFAULT_MSS = 536  # RFC 9293 §3.7.1: the MSS of a SYN without the option
IP_TCP_HEADERS = 40  # IPv4 + TCP without options: MSS = MTU - 40 (RFC 9293 §3.7.1)
IPV6_EXTRA = 20  # IPv6's fixed header is 20 bytes longer: MSS = MTU - 60 (RFC 8200 §5)
PMTU_FLOOR = 552  # Linux net.ipv4.route.min_pmtu: no IPv4 path MTU estimate below this
PMTU_FLOOR6 = 1280  # RFC 8200 §5 / RFC 8201 §4: the IPv6 minimum link MTU
PMTU_EXPIRES = 600 * SECOND  # Linux net.ipv4.route.mtu_expires; RFC 1191 §6.3's 10 minutes
ICMP_ERRORS_PER_SECOND = 1000  # Linux net.ipv4.icmp_msgs_per_sec
ICMP_ERROR_BURST = 50  # Linux net.ipv4.icmp_msgs_burst
# RSTs to segments nobody owns, host-wide: a token bucket as FreeBSD's icmplim ("limiting
# closed port RST response"), so a scan or a spoofed flood cannot make us a reflector.
RST_PER_SECOND = 1000
RST_BURST = 50
# Challenge ACKs (RFC 5961 §7), host-wide, after each connection's own limit: Linux
# 4.7-5.x's net.ipv4.tcp_challenge_ack_limit, a per-second allowance drawn at random.
CHALLENGE_ACK_LIMIT = 1000
EPHEMERAL_MIN = 32768  # Linux net.ipv4.ip_local_port_range
EPHEMERAL_MAX = 60999
PORT_TABLE_LENGTH = 256  # RFC 6056 §3.3.4 TABLE_LENGTH
# The largest payload of one super-segment the link cuts for us (TSO): an IP packet is at
# most 65535 bytes, less room for an IPv6 header and a TCP header with 40 option bytes.
TSO_MAX_PAYLOAD = 0xFFFF - 40 - 60
IP_IDENTS = 2048  # IPv4 ID counters (Linux IP_IDENTS_SZ), one per flow by keyed hash



def is_martian_source(src: Address) -> bool:
    """A source no packet from the link may carry (RFC 1122 §3.2.1.3, RFC 6890; Linux
    drops them as martians, silently). IPv4: 0.0.0.0/8 ("this network"), 127.0.0.0/8
    (loopback), 224.0.0.0/4 (multicast), 255.255.255.255. IPv6 (RFC 4291): ::, ::1
    (§2.5.3), ff00::/8 (§2.7), ::ffff:0:0/96 (IPv4-mapped, §2.5.5.2, as Linux
    ip6_rcv_core). Integer tests: this runs for every packet."""
    v = int(src)
    if src.version == 4:
        first = v >> 24
        return first == 0 or first == 127 or 224 <= first < 240 or v == 0xFFFFFFFF
    return v <= 1 or v >> 120 == 0xFF or v >> 32 == 0xFFFF


SYN_COOKIE_MODES = ("auto", "always", "never")  # Linux tcp_syncookies 1, 2, 0
COOKIE_WINDOW = 2 * COOKIE_PERIOD  # "auto" accepts cookies this long after the last sent
PRUNE_MIN_THRESH = 2  # Linux: under pressure no fewer SYN-ACK retries than this

_IPV4 = struct.Struct("!BBHHHBBH4s4s")  # RFC 791 §3.1, for fragments the parser held back
_IPV6 = struct.Struct("!IHBB16s16s")  # RFC 8200 §3
_IPV6_FRAGMENT = struct.Struct("!BBHI")  # RFC 8200 §4.5
# Bytes of the upper-layer header a first IPv6 fragment must hold (RFC 7112): TCP's fixed
# header, ICMPv6's; one byte of anything else (Linux ipv6_frag_thdr_truncated).
_UPPER_HEADER = {PROTO_TCP: 20, PROTO_ICMPV6: 8}
_SYN = int(Flags.SYN)
_ACK = int(Flags.ACK)
_RST = int(Flags.RST)
_SYN_ACK_RST = int(Flags.SYN | Flags.ACK | Flags.RST)
_ECE_CWR = int(Flags.ECE | Flags.CWR)
_NO_SEGMENT = TcpSegment(0, 0, 0, 0, Flags.ACK, 0)  # what a timer's SYN-ACK answers


class RandomSource(Protocol):
    """What the host draws from: a `random.Random` handed in (never imported here)."""

    def getrandbits(self, k: int, /) -> int: ...


class ChallengeAckBudget:
    """The host-wide budget of challenge ACKs (RFC 5961 §7: "a system-wide" limit), as
    Linux's tcp_send_challenge_ack after CVE-2016-5696 (4.7 to 5.x): each clock second
    (now // SECOND) allows limit/2 + random(limit) challenge ACKs, drawn afresh when the
    first one of that second is asked for. A fixed global count was the CVE's off-path
    side channel (an attacker counts the challenge ACKs a victim connection still gets
    and learns whether its probe hit the window); a randomized allowance hides it.

    A connection or TIME-WAIT record asks only once its own limit let the ACK through
    (challenge_ack_interval). `limit` None or 0: no host-wide limit (Linux 6.0 on, whose
    per-namespace default is INT_MAX)."""

    __slots__ = ("_left", "_rng", "_second", "limit")

    def __init__(self, limit: int | None, rng: RandomSource) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"challenge_ack_limit must be 0 (off) or more, not {limit}")
        self.limit = limit or None
        self._rng = rng
        self._second: int | None = None
        self._left = 0

    def allow(self, now: int) -> bool:
        """Whether one more challenge ACK may leave at `now`; takes it from the budget."""
        limit = self.limit
        if limit is None:
            return True
        second = now // SECOND
        if second != self._second:
            self._second = second
            # Linux: (limit + 1) / 2 + prandom_u32_max(limit), a 32-bit draw scaled
            # into [0, limit) (reciprocal_scale).
            self._left = (limit + 1) // 2 + ((self._rng.getrandbits(32) * limit) >> 32)
        if self._left <= 0:
            return False
        self._left -= 1
        return True

    def snapshot(self) -> dict[str, Any]:
        """The limit (None: off), the clock second of the last allowance drawn (None:
        none yet) and what was left of it."""
        return {"limit": self.limit, "second": self._second, "left": self._left}


class HostCounters(TypedDict):
    packets_in: int
    packets_out: int
    rst_sent: int
    icmp_in: int
    icmp_out: int
    fragments_in: int  # IP fragments taken for reassembly (stack/fragments.py)
    reassembled: int  # datagrams completed from them
    drops: dict[str, int]


_QUOTED_V4_PLACEHOLDER = Ipv4Header(ANY, ANY, PROTO_TCP)


def _as_icmpv4(err: Icmpv6Error) -> IcmpError:
    """An ICMPv6 error in the terms Connection.receive_icmp reads (type 3, code, mtu, seq):
    packet too big (RFC 4443 §3.2) is "fragmentation needed" with the MTU less the 20
    bytes IPv6's header adds (the connection subtracts 40 for IPv4 and TCP); unreachable
    code 4, port unreachable (RFC 4443 §3.1), is port unreachable; any other code says
    the host cannot be reached. The quoted IPv6 header stays with the host, which used it
    to find the connection."""
    if err.type == TYPE6_PACKET_TOO_BIG:
        code, mtu = 4, (err.mtu - IPV6_EXTRA if err.mtu else None)
    else:
        code, mtu = (3 if err.code == 4 else 1), None
    return IcmpError(3, code, mtu, _QUOTED_V4_PLACEHOLDER, err.src_port, err.dst_port, err.seq)


@dataclass(slots=True)
class PathMtu:
    """The path MTU learned for one destination (a Linux route exception): `mtu` in
    IPv4 terms (Connection's: IPv6 paths 20 bytes less), when it `expires`, and whether
    it is `locked` (a report below the floor: DF is cleared towards that peer)."""

    mtu: int
    expires: int
    locked: bool = False


class PortAllocator:
    """Ephemeral ports by RFC 6056 §3.3.4, Algorithm 4 ("double-hash port selection").

    offset = F(local, remote, secret1) spreads 4-tuples over the range; table[G(...)]
    is a per-bucket counter so that successive connections to one remote walk forward
    from the offset (no reuse soon after a close) while the sequence seen by one remote
    says nothing about the ports used towards another.
    """

    def __init__(
        self,
        secret: bytes,
        rng: RandomSource,
        low: int = EPHEMERAL_MIN,
        high: int = EPHEMERAL_MAX,
    ) -> None:
        # Two keys derived from the one secret: F and G must be independent (§3.3.4).
        self._key_f = blake2s(secret, person=b"port-F").digest()
        self._key_g = blake2s(secret, person=b"port-G").digest()
        self.low, self.high = low, high
        # "table[i] = random() % 65536" at boot.
        self._table = [rng.getrandbits(16) for _ in range(PORT_TABLE_LENGTH)]

    def _hash(self, key: bytes, local: Address, remote: Endpoint) -> int:
        data = local.packed + remote[0].packed + remote[1].to_bytes(2, "big")
        return int.from_bytes(blake2s(data, key=key, digest_size=4).digest(), "big")

    def pick(self, local: Address, remote: Endpoint, suitable: Callable[[int], bool]) -> int | None:
        """The first suitable port of this 4-tuple's sequence; None when all are taken."""
        num_ephemeral = self.high - self.low + 1
        offset = self._hash(self._key_f, local, remote)
        index = self._hash(self._key_g, local, remote) % PORT_TABLE_LENGTH
        table = self._table
        for _ in range(num_ephemeral):
            port = self.low + (offset + table[index]) % num_ephemeral
            table[index] += 1
            if suitable(port):
                return port
        return None


class Listener:
    """A passive open on one port: its SYN backlog and accept queue.

    `backlog` bounds both queues (at least 1, as Linux turns listen(0) into one slot).
    """

    def __init__(
        self,
        *,
        id: int,
        local: Endpoint,
        backlog: int,
        config: TcpConfig,
        on_close: Callable[[Listener, int], None],
        family: int | None = None,
        syn_cookies: str = "auto",
    ) -> None:
        if syn_cookies not in SYN_COOKIE_MODES:
            raise ValueError(f"syn_cookies must be one of {', '.join(SYN_COOKIE_MODES)}")
        self.id = id
        self.local = local
        self.family = family  # 4 or 6: that family only; None: both (on ANY)
        self.backlog = max(1, backlog)
        self.config = config
        self.syn_cookies = syn_cookies
        self.last_cookie: int | None = None  # when the last cookie was sent (ns)
        self.closed = False
        self._embryonic: dict[int, HalfOpen] = {}  # by id: the SYN backlog
        self._accept_queue: deque[Connection] = deque()
        self._on_close = on_close
        self.counters = {
            "syn_received": 0,
            "accepted": 0,
            "syn_dropped": 0,
            "ack_dropped": 0,
            "cookies_sent": 0,
            "cookies_accepted": 0,
            "synack_pruned": 0,
        }

    def accept(self) -> Connection | None:
        """The oldest connection that completed its handshake, or None. It may have
        failed since (a RST before accept): its error and events say so, as a socket
        accepted on Linux then reports ECONNRESET."""
        if not self._accept_queue:
            return None
        self.counters["accepted"] += 1
        return self._accept_queue.popleft()

    @property
    def pending(self) -> int:
        """Connections waiting in accept()."""
        return len(self._accept_queue)

    @property
    def embryonic(self) -> int:
        """Connections in SYN-RECEIVED (the SYN backlog)."""
        return len(self._embryonic)

    @property
    def accept_queue_full(self) -> bool:
        return len(self._accept_queue) >= self.backlog

    @property
    def syn_backlog_full(self) -> bool:
        return len(self._embryonic) >= self.backlog

    def matches(self, address: Address) -> bool:
        if self.family is not None and address.version != self.family:
            return False
        return self.local[0] in (ANY, ANY6) or self.local[0] == address

    def close(self, now: int) -> None:
        """Stop listening: half-open and unaccepted connections are aborted (RST)."""
        if self.closed:
            return
        self.closed = True
        self._on_close(self, now)  # the host aborts the half-open records
        doomed = list(self._accept_queue)
        self._accept_queue.clear()
        for conn in doomed:
            if not conn.is_closed:
                conn.abort(now)

    def _local_text(self) -> str:
        """The bound address as `ss` prints it: `*` for both families, else the address."""
        if self.local[0] in (ANY, ANY6):
            return {4: str(ANY), 6: str(ANY6)}.get(self.family or 0, "*")
        return str(self.local[0])

    def snapshot(self, now: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": "LISTEN",
            "local": {"addr": self._local_text(), "port": self.local[1]},
            "backlog": self.backlog,
            "syn_cookies": self.syn_cookies,
            "syn_queue": len(self._embryonic),
            "accept_queue": len(self._accept_queue),
            "counters": dict(self.counters),
        }


class _Record:
    """What the host's compact records (TimeWait, HalfOpen) share with a Connection's
    face to the host and `inspect`: the endpoints of their 4-tuple `key` (local
    address, local port, remote address, remote port), and no room to send."""

    __slots__ = ()
    key: Key
    send_space = 0

    @property
    def local(self) -> Endpoint:
        return self.key[0], self.key[1]

    @property
    def remote(self) -> Endpoint:
        return self.key[2], self.key[3]


class TimeWait(_Record):
    """What a connection in TIME-WAIT still needs, once its application has closed it
    (Linux's tcp_timewait_sock): the 4-tuple, the sequence numbers to re-ACK with, the
    window last advertised, TS.Recent for PAWS and the echo, and the 2·MSL deadline.

    It answers segments as RFC 9293 §3.10.7.4 says for TIME-WAIT, with RFC 5961 and
    RFC 7323, as `Connection` does: a retransmitted FIN is ACKed again and restarts the
    2·MSL wait; an unacceptable segment draws an ACK (an out-of-window RST nothing); a
    RST at RCV.NXT ends it, one elsewhere in the window and any SYN that may not reopen
    it (the host decides, RFC 6191) draw a challenge ACK, at most one per
    challenge_ack_interval and within the host's budget (ChallengeAckBudget); text is
    ignored. A few hundred bytes instead of a whole connection with its buffers and
    congestion state.
    """

    __slots__ = ("_conn", "_host", "challenge_interval", "deadline", "id", "invalid_interval",
                 "irs", "is_closed", "iss", "key", "last_challenge", "last_oow", "msl",
                 "rcv_nxt", "rcv_wnd", "snd_nxt", "timestamps", "ts_recent", "ts_recent_age",
                 "wscale")  # fmt: skip

    def __init__(self, conn: Connection, key: Key, deadline: int, host: Host) -> None:
        tcb = conn.tcb
        self._host = host
        # The connection object, while anyone still holds it: it reaches CLOSED when
        # the record ends, as it would have on its own. The reference goes when the
        # object does (nobody held it: the usual case), so it costs nothing after.
        self._conn: weakref.ref[Connection] | None = weakref.ref(conn, self._gone)
        self.is_closed = False
        self.id = conn.id
        self.key = key  # local address, local port, remote address, remote port
        self.iss = tcb.iss
        self.irs = tcb.irs
        self.snd_nxt = tcb.snd_max  # everything sent, our FIN included, is acknowledged
        self.rcv_nxt = tcb.rcv_nxt
        self.rcv_wnd = tcb.rcv_wnd
        self.wscale = tcb.wscale_local
        self.timestamps = tcb.timestamps
        self.ts_recent = tcb.ts_recent
        self.ts_recent_age = tcb.ts_recent_age
        self.msl = conn.config.msl
        self.challenge_interval = conn.config.challenge_ack_interval
        self.invalid_interval = conn.config.invalid_ack_interval
        self.last_challenge: int | None = None
        self.last_oow: int | None = None
        self.deadline = deadline

    state = State.TIME_WAIT

    def _ack(self, now: int) -> TcpSegment:
        ts = ((now // MS) & MASK, self.ts_recent) if self.timestamps else None
        window = min(self.rcv_wnd >> self.wscale, 0xFFFF)  # the field the connection sent
        key = self.key
        return TcpSegment(key[1], key[3], self.snd_nxt, self.rcv_nxt, Flags.ACK, window,
                          timestamps=ts)  # fmt: skip

    def _invalid_ack(
        self, seg: TcpSegment, now: int, what: str
    ) -> tuple[TcpSegment | None, str, bool]:
        """The ACK an unacceptable segment draws, as a Connection's (invalid_ack_limited,
        Linux tcp_timewait_check_oow_rate_limit): a flood of old segments cannot make us
        echo it."""
        limited, self.last_oow = invalid_ack_limited(
            seg, self.last_oow, now, self.invalid_interval
        )
        if limited:
            return None, what + "-rate-limited", False
        return self._ack(now), what, False

    def _challenge(self, now: int) -> tuple[TcpSegment | None, str]:
        last = self.last_challenge
        if last is not None and now - last < self.challenge_interval:
            return None, "challenge-ack-rate-limited"
        self.last_challenge = now  # as Linux: the record's limit is spent either way
        if not self._host._challenge_ack_allowed(now):
            return None, "challenge-ack-host-limited"
        return self._ack(now), "challenge-ack"

    def receive_segment(self, seg: TcpSegment, now: int) -> tuple[TcpSegment | None, str, bool]:
        """One segment for this 4-tuple: (the reply or None, what happened, whether the
        record is done with). Never raises."""
        flags = int(seg.flags)
        rst = flags & int(Flags.RST)
        ts = seg.timestamps
        if (
            self.timestamps
            and ts is not None
            and not rst
            and seq_lt(ts[0], self.ts_recent)
            and now - self.ts_recent_age <= PAWS_IDLE
        ):
            return self._invalid_ack(seg, now, "paws")  # RFC 7323 §5.3 R1
        length = seg.seg_len
        nxt, wnd = self.rcv_nxt, self.rcv_wnd
        if length == 0:
            acceptable = seg.seq == nxt if wnd == 0 else in_window(seg.seq, nxt, wnd)
        else:
            acceptable = wnd > 0 and (
                in_window(seg.seq, nxt, wnd) or in_window(seq_add(seg.seq, length - 1), nxt, wnd)
            )
        if not acceptable:
            if rst:  # RFC 5961 §3.2
                return None, "rst-out-of-window", False
            if flags & int(Flags.FIN):
                # A retransmitted FIN: our last ACK was lost. ACK it again and restart
                # the 2·MSL wait (§3.10.7.4 eighth, TIME-WAIT).
                self.deadline = now + 2 * self.msl
                return self._ack(now), "out-of-window", False
            return self._invalid_ack(seg, now, "out-of-window")
        if ts is not None and self.timestamps and seq_ge(ts[0], self.ts_recent):
            self.ts_recent, self.ts_recent_age = ts[0], now  # RFC 7323 §4.3 (2)
        if rst:
            if seg.seq == nxt:
                return None, "rst", True  # §3.10.7.4 second: TIME-WAIT -> CLOSED
            reply, reason = self._challenge(now)  # RFC 5961 §3.2
            return reply, "rst-in-window:" + reason, False
        if flags & int(Flags.SYN):
            reply, reason = self._challenge(now)  # RFC 5961 §4
            return reply, "syn-in-synchronized:" + reason, False
        if not flags & int(Flags.ACK):
            return None, "no-ack", False
        if seq_gt(seg.ack, self.snd_nxt):
            return self._ack(now), "ack-of-unsent", False  # §3.10.7.4 fifth
        if flags & int(Flags.FIN):
            self.deadline = now + 2 * self.msl  # eighth: restart the 2·MSL wait
            return self._ack(now), "fin-again", False
        return None, "time-wait", False  # seventh: text after the FIN is ignored

    def abort(self, now: int) -> None:
        """ABORT in TIME-WAIT: delete the TCB, send nothing (RFC 9293 §3.10.5)."""
        if not self.is_closed:
            self._host._forget_time_wait(self, now)

    def _gone(self, ref: weakref.ref[Connection]) -> None:
        self._conn = None  # the connection object is gone: nothing to tell at the end

    def end(self, now: int) -> None:
        """The record is done with (2·MSL passed, RST, reopened, aborted): CLOSED, and
        so is the connection object if someone still holds it."""
        self.is_closed = True
        ref, self._conn = self._conn, None
        conn = None if ref is None else ref()
        if conn is not None and not conn.is_closed:
            conn.abort(now)  # ABORT in TIME-WAIT: CLOSED, nothing sent (§3.10.5)

    def close(self, now: int) -> None:
        """CLOSE in TIME-WAIT: "connection closing" (RFC 9293 §3.10.4), nothing to do."""

    def send(self, data: bytes, now: int) -> int:
        raise InvalidStateError("connection closing")  # RFC 9293 §3.10.2, TIME-WAIT

    def set_timer(self, name: str, delay: int, now: int) -> None:
        """Re-arm the 2·MSL timer to run out `delay` ns from now (`pytcp timer ID set`)."""
        if name != "time-wait":
            raise ValueError(f"a TIME-WAIT record has no {name!r} timer, only time-wait")
        self.deadline = now + max(0, delay)
        heapq.heappush(self._host._tw_heap, (self.deadline, self.id))

    def snapshot(self, now: int) -> dict[str, Any]:
        """What TIME-WAIT keeps, in Connection.snapshot's shape where it keeps it (as
        ss shows a timewait socket: addresses, sequence numbers, the timer)."""
        return {
            "id": self.id,
            "state": str(State.CLOSED if self.is_closed else State.TIME_WAIT),
            "time_wait_record": True,
            "local": {"addr": str(self.local[0]), "port": self.local[1]},
            "remote": {"addr": str(self.remote[0]), "port": self.remote[1]},
            "send": {"iss": self.iss, "snd_una": self.snd_nxt, "snd_nxt": self.snd_nxt,
                     "snd_max": self.snd_nxt},
            "receive": {"irs": self.irs, "rcv_nxt": self.rcv_nxt, "rcv_wnd": self.rcv_wnd},
            "options": {"timestamps": self.timestamps, "ts_recent": self.ts_recent},
            "timers": [{"name": "time-wait", "armed": True, "deadline": self.deadline,
                        "remaining": self.deadline - now, "backoff": 0, "reason": "2MSL"}],
            "close": {"fin_sent": True, "fin_acked": True, "fin_received": True,
                      "app_closed": True},
        }  # fmt: skip


class HalfOpen(_Record):
    """A listener's half-open connection in SYN-RECEIVED: only what that state needs
    (Linux's request_sock), not a whole `Connection` with its buffers, congestion and
    loss-recovery state. The 4-tuple, ISS and IRS, what the peer's SYN offered (MSS,
    window scale, SACK-permitted, its TSval as TS.Recent, ECN setup, its window), the
    window our SYN-ACK offered, the SYN-ACK's retransmission count and deadline, and the
    rate-limit clocks of the ACKs it may draw.

    It answers segments as RFC 9293 §3.10.7.4 says for a passive SYN-RECEIVED, with RFC
    5961 and RFC 7323, exactly as `Connection` does in that state: the peer's SYN again
    (SEG.SEQ = IRS) draws the SYN-ACK again (rate-limited as an invalid ACK); PAWS and
    out-of-window segments draw an ACK (rate-limited), an out-of-window RST nothing; a
    RST at RCV.NXT ends it silently, one elsewhere in the window and any other SYN draw a
    challenge ACK (one per challenge_ack_interval); a segment without ACK is dropped; an
    ACK of anything but ISS+1 draws <SEQ=SEG.ACK><CTL=RST>. The ACK of our SYN is the
    one segment it cannot take: the host then promotes it to a `Connection` (which
    replays the SYN this record stands for and takes that ACK, its data and FIN).
    The host keeps its SYN-ACK timer in a heap; drops are counted here and handed to the
    connection on promotion.
    """

    __slots__ = ("deadline", "drops", "ecn", "host", "id", "irs", "is_closed", "iss", "key",
                 "last_challenge", "last_oow", "listener", "peer_mss", "peer_sack",
                 "peer_window", "peer_wscale", "rcv_wnd", "resent", "retransmits", "sent_at",
                 "syn_at", "ts_recent")  # fmt: skip

    def __init__(
        self,
        host: Host,
        id: int,
        key: Key,
        listener: Listener,
        iss: int,
        syn: TcpSegment,
        now: int,
    ) -> None:
        config = listener.config
        self.host = host
        self.id = id
        self.key = key  # local address, local port, remote address, remote port
        self.listener = listener
        self.is_closed = False
        self.iss = iss
        self.irs = syn.seq
        self.peer_mss = syn.mss
        self.peer_wscale = syn.wscale
        self.peer_sack = syn.sack_permitted
        self.peer_window = syn.window
        # RFC 7323: TS.Recent, and its age is the SYN's arrival (it never changes here:
        # only an accepted ACK would update it, and that one promotes).
        self.ts_recent = syn.timestamps[0] if config.timestamps and syn.timestamps else None
        self.ecn = int(syn.flags) & _ECE_CWR == _ECE_CWR  # RFC 3168 §6.1.1 ECN-setup SYN
        self.rcv_wnd = min(config.rcv_buf, MAX_WINDOW_FIELD)  # RFC 7323 §2.2: unscaled
        self.syn_at = now  # the SYN arrived and our first SYN-ACK left
        self.sent_at = now  # the last SYN-ACK left (a timeout's retransmission)
        self.retransmits = 0  # SYN-ACK timeouts so far (the timer's backoff)
        self.resent = False  # the SYN-ACK went again for a retransmitted SYN (Karn)
        self.deadline = now + min(config.rto_initial, config.rto_max)
        self.last_challenge: int | None = None
        self.last_oow: int | None = None
        self.drops: dict[str, int] | None = None  # made on the first drop

    state = State.SYN_RECEIVED

    @property
    def wscale_local(self) -> int:
        """The shift our SYN-ACK offered (as Connection: only if the peer's SYN did)."""
        config = self.listener.config
        if self.peer_wscale is None or not config.wscale:
            return 0
        return _wscale_for(max(config.rcv_buf, config.rcv_buf_max))

    @property
    def counters(self) -> dict[str, Any]:
        return {"drops": dict(self.drops or {})}

    def drop(self, reason: str) -> None:
        drops = self.drops
        if drops is None:
            drops = self.drops = {}
        drops[reason] = drops.get(reason, 0) + 1

    def rto(self) -> int:
        """The SYN-ACK timeout after `retransmits` timeouts (RFC 6298 (2.1), (5.5))."""
        config = self.listener.config
        base = min(config.rto_initial, config.rto_max)
        return min(base << min(self.retransmits, config.rto_max.bit_length()), config.rto_max)

    def synack(self, mss: int, now: int) -> TcpSegment:
        """Our SYN-ACK, as Connection builds it (Sender._send_syn, _make): the options
        offer only what the peer's SYN offered (RFC 7323 §1.3)."""
        config = self.listener.config
        key = self.key
        flags = Flags.SYN | Flags.ACK
        if self.ecn:
            flags |= Flags.ECE  # RFC 3168 §6.1.1: ECN-setup SYN-ACK
        ts = None if self.ts_recent is None else ((now // MS) & MASK, self.ts_recent)
        # RFC 7323 §2.2: a SYN's window is never scaled; it is RCV.WND again (Sender._make).
        self.rcv_wnd = min(config.rcv_buf, MAX_WINDOW_FIELD)
        return TcpSegment(
            key[1], key[3], self.iss, (self.irs + 1) & MASK, flags, self.rcv_wnd, mss=mss,
            wscale=self.wscale_local if self.peer_wscale is not None and config.wscale
            else None,
            sack_permitted=config.sack and self.peer_sack, timestamps=ts,
        )  # fmt: skip

    def syn(self) -> TcpSegment:
        """The SYN this record stands for, for the connection it is promoted to."""
        key = self.key
        flags = Flags.SYN | (Flags.ECE | Flags.CWR if self.ecn else 0)
        ts = None if self.ts_recent is None else (self.ts_recent, 0)
        return TcpSegment(key[3], key[1], self.irs, 0, flags, self.peer_window,
                          mss=self.peer_mss, wscale=self.peer_wscale,
                          sack_permitted=self.peer_sack, timestamps=ts)  # fmt: skip

    def _ack(self, mss: int, now: int) -> TcpSegment:
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, the window as Connection's
        (Sender._window_field): the buffer, scaled, once receiver SWS avoidance lets the
        right edge move past the SYN-ACK's unscaled one (RFC 9293 3.8.6.2.2)."""
        shift = self.wscale_local
        avail = self.listener.config.rcv_buf
        wnd = self.rcv_wnd
        if avail - wnd >= max(min(avail // 2, mss), 1):
            wnd = avail
        field = min(wnd >> shift, MAX_WINDOW_FIELD)
        if field << shift < self.rcv_wnd and field < MAX_WINDOW_FIELD:
            field += 1  # never shrink the right edge (RFC 7323 §2.4)
        self.rcv_wnd = field << shift
        ts = None if self.ts_recent is None else ((now // MS) & MASK, self.ts_recent)
        key = self.key
        return TcpSegment(key[1], key[3], (self.iss + 1) & MASK, (self.irs + 1) & MASK,
                          Flags.ACK, field, timestamps=ts)  # fmt: skip

    def _invalid_ack(self, seg: TcpSegment, now: int, reason: str) -> tuple[str, str | None]:
        """Connection._invalid_ack: the ACK an unacceptable segment draws, limited."""
        self.drop(reason)
        limited, self.last_oow = invalid_ack_limited(
            seg, self.last_oow, now, self.listener.config.invalid_ack_interval
        )
        return reason, None if limited else "ack"

    def _challenge(self, now: int, reason: str) -> tuple[str, str | None]:
        self.drop(reason)
        last = self.last_challenge
        if last is not None and now - last < self.listener.config.challenge_ack_interval:
            self.drop("challenge-ack-rate-limited")
            return reason, None
        self.last_challenge = now  # as Linux: the record's limit is spent either way
        if not self.host._challenge_ack_allowed(now):  # the host-wide budget (counted there)
            return reason, None
        return reason, "ack"

    def receive_segment(self, seg: TcpSegment, now: int) -> tuple[str, str | None]:
        """One segment for this 4-tuple: (what happened, what to send). What happened is
        a drop reason, "reset" (a RST at RCV.NXT: forget the record) or "promote" (the
        ACK of our SYN: a Connection takes it). What to send: None, "synack", "ack" or
        "rst" (<SEQ=SEG.ACK><CTL=RST>). Never raises."""
        flags = int(seg.flags)
        rcv_nxt = (self.irs + 1) & MASK
        if flags & _SYN and not flags & (_ACK | _RST) and seg.seq == self.irs:
            # The peer's SYN again: our SYN-ACK was lost. Send it again (limited as an
            # invalid ACK, Linux tcp_check_req) and time neither copy (Karn).
            reason, reply = self._invalid_ack(seg, now, "retransmitted-syn")
            if reply is None:
                return reason, None
            self.resent = True
            return reason, "synack"
        ts = seg.timestamps
        if (
            self.ts_recent is not None
            and ts is not None
            and not flags & _RST
            and seq_lt(ts[0], self.ts_recent)
            and now - self.syn_at <= PAWS_IDLE
        ):
            return self._invalid_ack(seg, now, "paws")  # RFC 7323 §5.3 R1
        length = seg.seg_len
        wnd = self.rcv_wnd
        if length == 0:
            acceptable = seg.seq == rcv_nxt if wnd == 0 else in_window(seg.seq, rcv_nxt, wnd)
        else:
            acceptable = wnd > 0 and (
                in_window(seg.seq, rcv_nxt, wnd)
                or in_window(seq_add(seg.seq, length - 1), rcv_nxt, wnd)
            )
        if not acceptable and not (wnd == 0 and seg.seq == rcv_nxt):
            if flags & _RST:  # RFC 5961 §3.2
                self.drop("rst-out-of-window")
                return "rst-out-of-window", None
            return self._invalid_ack(seg, now, "out-of-window")
        if flags & _RST:  # second
            if seg.seq == rcv_nxt:
                return "reset", None  # a passive open's SYN-RECEIVED: back to LISTEN
            return self._challenge(now, "rst-in-window")  # RFC 5961 §3.2
        if flags & _SYN:  # fourth, RFC 5961 §4
            return self._challenge(now, "syn-in-synchronized")
        if not flags & _ACK:  # fifth
            self.drop("no-ack")
            return "no-ack", None
        if seg.ack != (self.iss + 1) & MASK:  # SND.UNA < SEG.ACK =< SND.NXT fails
            self.drop("bad-ack-in-syn-received")
            return "bad-ack-in-syn-received", "rst"
        return "promote", None

    def abort(self, now: int) -> None:
        """ABORT in SYN-RECEIVED: <SEQ=SND.NXT><CTL=RST>, then CLOSED (RFC 9293 §3.10.5)."""
        if not self.is_closed:
            self.host._abort_half_open(self, now)

    def close(self, now: int) -> None:
        """CLOSE (`pytcp close ID`): nobody owns a half-open connection yet, and a
        record cannot queue a FIN for after the handshake: it is reset, as ABORT."""
        self.abort(now)

    def shutdown(self, now: int) -> None:
        self.abort(now)

    def send(self, data: bytes, now: int) -> int:
        raise InvalidStateError("connection not yet accepted")

    def set_timer(self, name: str, delay: int, now: int) -> None:
        """Re-arm the SYN-ACK timer to run out `delay` ns from now (`pytcp timer ID set`)."""
        if name != "syn":
            raise ValueError(f"a half-open record has no {name!r} timer, only syn")
        self.deadline = now + max(0, delay)
        heapq.heappush(self.host._ho_heap, (self.deadline, self.id, self))

    def timers(self, now: int) -> list[dict[str, Any]]:
        return [{"name": "syn", "armed": not self.is_closed, "deadline": self.deadline,
                 "remaining": self.deadline - now, "backoff": self.retransmits,
                 "reason": "SYN retransmission"}]  # fmt: skip

    def row(self, now: int) -> dict[str, Any]:
        """A `pytcp inspect` list row, with Connection.row's names where it has them."""
        key = self.key
        return {
            "id": self.id,
            "state": str(State.CLOSED if self.is_closed else State.SYN_RECEIVED),
            "half_open_record": True,
            "local": {"addr": str(key[0]), "port": key[1]},
            "remote": {"addr": str(key[2]), "port": key[3]},
            "buffers": {"send_queued": 0, "unread": 0},
            "timers": self.timers(now),
        }

    def snapshot(self, now: int) -> dict[str, Any]:
        """What SYN-RECEIVED keeps, in Connection.snapshot's shape where it keeps it (as
        ss shows a request socket: addresses, sequence numbers, options, the timer)."""
        snd_nxt = (self.iss + 1) & MASK
        config = self.listener.config
        return {
            **self.row(now),
            "send": {"iss": self.iss, "snd_una": self.iss, "snd_nxt": snd_nxt,
                     "snd_max": snd_nxt, "snd_wnd": self.peer_window},
            "receive": {"irs": self.irs, "rcv_nxt": (self.irs + 1) & MASK,
                        "rcv_wnd": self.rcv_wnd},
            "options": {"mss_remote": self.peer_mss or DEFAULT_MSS,
                        "wscale_local": self.wscale_local,
                        "wscale_remote": min(self.peer_wscale, 14)
                        if self.peer_wscale is not None and config.wscale else 0,
                        "sack": config.sack and self.peer_sack,
                        "timestamps": self.ts_recent is not None, "ts_recent": self.ts_recent,
                        "ecn": self.ecn},
            "recovery": {"syn_timeouts": self.retransmits},
            "counters": self.counters,
            "close": {"fin_sent": False, "fin_acked": False, "fin_received": False,
                      "app_closed": False},
        }  # fmt: skip


# Connection methods that change nothing the host must act on: everything else public
# (user calls, input, timers, the steering verbs) marks the connection for the host.
_READ_ONLY = frozenset(
    {"segments_to_send", "next_deadline", "next_event", "snapshot", "status", "row"}
)


@functools.cache
def _wrapped_methods() -> tuple[tuple[str, Any], ...]:
    """Connection's public methods but _READ_ONLY, as (name, function): looked up once
    per process (dir and inspect.getattr_static over the class cost more than the rest
    of a new Host), which is when Connection is complete."""
    methods = []
    for name in dir(Connection):
        member = inspect.getattr_static(Connection, name)
        if not name.startswith("_") and name not in _READ_ONLY and inspect.isfunction(member):
            methods.append((name, member))
    return tuple(methods)


def _hosted_class(
    dirty: dict[int, Connection], touched: dict[int, Connection]
) -> type[Connection]:
    """A Connection subclass, one per host, whose every public method (but _READ_ONLY)
    records the connection in `dirty` and `touched`: the host then visits only
    connections something happened to (segments_to_send, their timer deadline) instead
    of all of them on every wake-up, and tells its user which ones (`Host.touched`, so
    stack.api notifies only their sockets; issue 14). Wrapping every method, rather than
    a list, keeps user calls added to Connection later from being missed."""
    members: dict[str, Any] = {"__slots__": ()}
    for name, member in _wrapped_methods():

        def wrapped(self: Connection, *args: Any, __m: Any = member, **kw: Any) -> Any:
            try:
                return __m(self, *args, **kw)
            finally:
                dirty[self.id] = self
                touched[self.id] = self

        functools.update_wrapper(wrapped, member)
        members[name] = wrapped
    return type("HostedConnection", (Connection,), members)


class Host:
    """One host's TCP on an IPv4 address and, optionally, an IPv6 one: connections by
    4-tuple, listeners by port.

    Drive it like a connection: receive_packet() for each packet from the link,
    handle_timers(now) when next_deadline() is reached, and packets_to_send(now) after
    any input, timer or user call on one of its connections.
    """

    def __init__(
        self,
        *,
        address: IPv4Address,
        isn_secret: bytes,
        rng: RandomSource,
        config: TcpConfig | None = None,
        mtu: int = 1500,
        tracer: Tracer | None = None,
        isn: Callable[[Endpoint, Endpoint, int], int] | None = None,
        syn_cookies: bool | str = "auto",
        address6: IPv6Address | None = None,
        offload: bool = False,
        broadcast: IPv4Address | None = None,
        challenge_ack_limit: int | None = CHALLENGE_ACK_LIMIT,
    ) -> None:
        self.address = address
        self.address6 = address6
        # The link's directed broadcast (10.77.N.255 on pytcpN): RFC 1122 §3.2.1.3 (c)
        # forbids it as a source, and Linux drops it so (fib_validate_source: the route
        # back is RTN_BROADCAST). None: a link without a subnet (tests, a pair).
        self.broadcast = broadcast
        self.config = config if config is not None else TcpConfig()
        self.mtu = mtu
        self._tracer: Tracer = tracer if tracer is not None else null_tracer
        self._isn: Callable[[Endpoint, Endpoint, int], int] = (
            isn if isn is not None else IsnGenerator(isn_secret)
        )
        self._ports = PortAllocator(isn_secret, rng)
        # RFC 4987 §3.6: the listeners' default ("auto": once a SYN backlog is full).
        if isinstance(syn_cookies, bool):
            syn_cookies = "auto" if syn_cookies else "never"
        if syn_cookies not in SYN_COOKIE_MODES:
            raise ValueError(f"syn_cookies must be one of {', '.join(SYN_COOKIE_MODES)}")
        self.syn_cookies = syn_cookies
        self._cookies = SynCookies(isn_secret)
        self._ids = itertools.count(1)
        # IPv4 identification (RFC 6864, RFC 7739 §5.1): IP_IDENTS counters, each starting
        # at random, one chosen per (source, destination, protocol) by a keyed hash, as
        # Linux's ip_idents. An ID seen by one peer says nothing about the traffic to any
        # other (no idle-scan zombie); with DF set the field has no other use.
        self._ident_key = blake2s(isn_secret, person=b"ip-ident").digest()
        self._idents = array("H", (rng.getrandbits(16) for _ in range(IP_IDENTS)))
        self._ident_bucket: dict[tuple[Address, Address, int], int] = {}
        # Offloaded IPv4 segments of a connection with no options but timestamps are
        # built from its HeaderTemplate (stack/wire/template.py), by connection id, with
        # its identification bucket; at most TEMPLATES kept (a cache: rebuilt when gone).
        self._templates: dict[int, tuple[HeaderTemplate, int]] = {}
        self._live: dict[int, Connection] = {}  # by id: insertion order is id order
        self._by_key: dict[Key, Connection] = {}
        self._listeners: dict[int, Listener] = {}  # by port
        # Half-open records (SYN-RECEIVED, listener children) by 4-tuple, and a heap of
        # (deadline, id, record) for their SYN-ACK timers (lazily revalidated). Their
        # listener holds them by id (its SYN backlog).
        self._half_opens: dict[Key, HalfOpen] = {}
        self._ho_heap: list[tuple[int, int, HalfOpen]] = []
        # TIME-WAIT records of connections their application closed, by 4-tuple and id,
        # and a heap of (deadline, id) for their 2·MSL timers (lazily revalidated).
        self._time_waits: dict[Key, TimeWait] = {}
        self._tw_ids: dict[int, TimeWait] = {}
        self._tw_heap: list[tuple[int, int]] = []
        # Per-packet work independent of the number of connections (issue 14): the
        # connections something happened to since the last packets_to_send, and a heap
        # of (deadline, id) over every connection's next timer, validated against
        # _scheduled (the deadline each connection was last filed under) when popped.
        self._dirty: dict[int, Connection] = {}
        self._scheduled: dict[int, int] = {}
        self._timer_heap: list[tuple[int, int]] = []
        # The connections something happened to since the last touched() (every call
        # but _READ_ONLY), kept only once someone asks: else cleared at each output pass.
        self._touched: dict[int, Connection] = {}
        self._report_touched = False
        self._connection_class = _hosted_class(self._dirty, self._touched)
        self._outbox: list[bytes | Packet] = []  # packets the host itself made (RST, echo reply)
        self._pmtu: dict[Address, PathMtu] = {}  # learned path MTUs by destination
        self._icmp_tokens = float(ICMP_ERROR_BURST)  # token bucket of ICMP errors
        self._icmp_refill = 0
        self._fragments = Reassembler()  # IP datagrams in reassembly (stack/fragments.py)
        self._rst_tokens = float(RST_BURST)  # token bucket of RSTs to orphan segments
        self._rst_refill = 0
        # Challenge ACKs host-wide (RFC 5961 §7), after the per-connection limit.
        self._challenge_budget = ChallengeAckBudget(challenge_ack_limit, rng)
        self._challenge_check = self._challenge_ack_allowed  # one bound method for all
        # The link takes `Packet`s with offload facts (a TUN with a virtio-net header): TCP
        # segments leave with their checksum partial (NEEDS_CSUM) and connections build
        # super-segments of up to TSO_MAX_PAYLOAD that the kernel cuts (TSO).
        self.offload = offload
        # Send and receive rings freed by one connection, reused by the next that needs
        # one of that size (stack.tcp.reassembly.RingPool): a bulk reader empties its
        # ring after nearly every segment, an application-limited sender its own.
        self._rings = RingPool()
        self.tso = offload  # connections build super-segments (off: see disable_tso)
        self.offload_counters = {
            "gso_packets_in": 0,  # super-packets received (GRO'd by the kernel)
            "gso_segments_in": 0,  # the segments they stood for
            "gso_packets_out": 0,  # super-packets sent (TSO)
            "gso_segments_out": 0,
            "csum_trusted_in": 0,  # TCP checksums not verified: NEEDS_CSUM or DATA_VALID
        }
        self._rx_verify = True  # facts of the packet being received (see receive_packet)
        self._rx_gso = 0
        self.counters: HostCounters = {
            "packets_in": 0,
            "packets_out": 0,
            "rst_sent": 0,
            "icmp_in": 0,
            "icmp_out": 0,
            "fragments_in": 0,
            "reassembled": 0,
            "drops": {},
        }

    # ----------------------------------------------------------------- user calls

    def connect(
        self,
        remote: Endpoint,
        now: int,
        *,
        local_port: int | None = None,
        config: TcpConfig | None = None,
    ) -> Connection:
        """Active open towards `remote`: the SYN leaves with the next packets_to_send().

        An explicit `local_port` is refused with EADDRINUSE when a listener holds it or the
        4-tuple is in use (bind() with SO_REUSEADDR, as netcat sets it). Without one the
        port comes from RFC 6056; EADDRNOTAVAIL when the range is exhausted for `remote`.
        """
        raddr, rport = remote
        if not 0 < rport < 65536:
            raise ValueError(f"remote port {rport} out of range 1-65535")
        if raddr.is_unspecified or raddr.is_multicast or raddr == BROADCAST:
            raise OSError(errno.EADDRNOTAVAIL, f"cannot connect to {raddr}")
        own = self._own_address(raddr)
        if own is None:
            raise OSError(errno.EADDRNOTAVAIL, f"no IPv{raddr.version} address to connect from")
        if local_port is None:
            port = self._ports.pick(own, remote, lambda p: not self._port_taken(p, remote))
            if port is None:
                raise OSError(errno.EADDRNOTAVAIL, f"no free local port towards {raddr}:{rport}")
        else:
            if not 0 < local_port < 65536:
                raise ValueError(f"local port {local_port} out of range 1-65535")
            if self._port_taken(local_port, remote):
                raise OSError(errno.EADDRINUSE, f"local port {local_port} is in use")
            port = local_port
        local: Endpoint = (own, port)
        conn = self._new_connection(local, remote, now, config or self.config)
        conn.open_active(now)
        return conn

    def listen(
        self,
        port: int,
        *,
        address: Address | None = None,
        backlog: int = 128,
        config: TcpConfig | None = None,
        family: int | None = None,
        syn_cookies: str | None = None,
    ) -> Listener:
        """Passive open on `port` (0: an ephemeral one), on one of our addresses or on
        all of them (None, 0.0.0.0 or ::, like a dual-stack socket); `family` (4 or 6)
        keeps a listener on all addresses to one family (`listen -4`/`-6`).

        EADDRINUSE when another listener holds the port; established connections using
        it as their local port do not prevent it (SO_REUSEADDR semantics). `syn_cookies`
        ("auto", "always", "never") overrides the host's default for this listener.
        """
        address = ANY if address is None else address
        if address not in (ANY, ANY6, self.address) and address != self.address6:
            raise OSError(errno.EADDRNOTAVAIL, f"{address} is not this host's address")
        if family == 6 and self.address6 is None:
            raise OSError(errno.EADDRNOTAVAIL, "this host has no IPv6 address")
        if address not in (ANY, ANY6):
            family = None  # one address is one family already
        if port == 0:
            found = self._ports.pick(self.address, (ANY, 0), lambda p: p not in self._listeners)
            if found is None:
                raise OSError(errno.EADDRINUSE, "no free port to listen on")
            port = found
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range 0-65535")
        if port in self._listeners:
            raise OSError(errno.EADDRINUSE, f"port {port} is already listening")
        listener = Listener(
            id=next(self._ids),
            local=(address, port),
            backlog=backlog,
            config=config or self.config,
            on_close=self._unlisten,
            family=family,
            syn_cookies=self.syn_cookies if syn_cookies is None else syn_cookies,
        )
        self._listeners[port] = listener
        return listener

    def connections(self) -> list[Connection]:
        """Live connections (not CLOSED), by id."""
        return [c for c in self._live.values() if not c.is_closed]

    def listeners(self) -> list[Listener]:
        """Open listeners, by id."""
        return sorted(self._listeners.values(), key=lambda lst: lst.id)

    def half_opens(self) -> list[HalfOpen]:
        """Half-open records (SYN-RECEIVED, not yet ACKed), by id."""
        return sorted(
            (r for lst in self._listeners.values() for r in lst._embryonic.values()),
            key=lambda r: r.id,
        )

    def time_waits(self) -> list[TimeWait]:
        """TIME-WAIT records (connections closed by their application), by id."""
        return sorted(self._tw_ids.values(), key=lambda r: r.id)

    def touched(self) -> list[Connection]:
        """The connections something happened to since the last call, in the order
        they were first touched: a user call, segment, ICMP error, timer or steering verb
        reached them (their state, data, room or events may have changed); the others
        have not changed since. The first call starts the record. O(connections
        touched), not O(connections): the API notifies only their sockets (issue 14)."""
        self._report_touched = True
        touched = self._touched
        if not touched:
            return []
        found = list(touched.values())
        touched.clear()
        return found

    def expire_time_wait(self, id: int, now: int) -> bool:
        """Fire the 2·MSL timer of TIME-WAIT record `id` now (`pytcp timer ID fire
        time-wait`): the record is deleted, as when its timer runs out. False when there
        is no such record."""
        record = self._tw_ids.get(id)
        if record is None:
            return False
        self._forget_time_wait(record, now)
        return True

    def find(self, id: int) -> tuple[Connection | TimeWait | HalfOpen | Listener, bool] | None:
        """The live connection or open listener with this id, and whether it is a
        listener; None when there is none. O(1) in connections (`inspect ID`)."""
        conn = self._live.get(id)
        if conn is not None:
            return None if conn.is_closed else (conn, False)
        record = self._tw_ids.get(id)
        if record is not None:
            return record, False
        for lst in self._listeners.values():  # a handful, by port
            if lst.id == id:
                return lst, True
            half = lst._embryonic.get(id)
            if half is not None:
                return half, False
        return None

    def snapshot(self) -> dict[str, Any]:
        """The host as plain data: address, counters, listener and connection ids."""
        counters = dict(self.counters)
        counters["drops"] = dict(self.counters["drops"])
        return {
            "address": str(self.address),
            "address6": None if self.address6 is None else str(self.address6),
            "mtu": self.mtu,
            "counters": counters,
            "challenge_acks": self._challenge_budget.snapshot(),
            "listeners": [lst.id for lst in self.listeners()],
            "connections": [c.id for c in self.connections()],
        }

    # ---------------------------------------------------------------- input

    def receive_packet(self, data: bytes | bytearray | memoryview | Packet, now: int) -> None:
        """One IP packet from the link. Never raises on any input: bad packets are dropped,
        counted in counters["drops"] by reason, and traced. Call packets_to_send() next.

        A `Packet` brings the link's facts: a checksum the kernel left partial or verified
        is not verified again (it never crossed a wire), and a GRO'd super-packet reaches
        its connection as one segment whose `gso_size` says how many it stands for."""
        if isinstance(data, Packet):
            self._rx_verify = not data.checksum_trusted
            self._rx_gso = data.gso_size if data.gso_type != GSO_NONE else 0
            try:
                self._receive_ip(data.head if not data.body else bytes(data), now)
            finally:
                self._rx_verify = True
                self._rx_gso = 0
            return
        self._receive_ip(data, now)

    def _receive_ip(self, data: bytes | bytearray | memoryview, now: int) -> None:
        self.counters["packets_in"] += 1
        if len(data) and data[0] >> 4 == 6:
            if self.address6 is not None:
                self._receive_ipv6(self.address6, data, now)
            else:
                # The kernel sends IPv6 router and multicast listener solicitations on a
                # new interface; say what they are rather than counting them as bad IPv4.
                self._drop(now, "ipv6-unsupported")
            return
        try:
            # A packet the link vouches for never crossed a wire (the kernel built it
            # and left its TCP checksum partial, or verified it): its IP header
            # checksum is the kernel's own, not verified again either.
            ip, payload = Ipv4Header.parse(data, verify_checksum=self._rx_verify)
        except WireError as exc:
            if exc.reason == "fragment":
                self._fragment4(data, now)  # a valid header: only the fragment is new
                return
            self._drop(now, exc.reason, detail=str(exc))
            return
        if ip.dst != self.address:
            self._drop(now, "not-for-us", src=ip.src, dst=ip.dst)
            return
        # RFC 1122 §3.2.1.3: a source that is not one host is bogus, and our own address
        # arriving from the link is spoofed (a "martian" to Linux); never answer either.
        src = ip.src
        if src == self.address or src == self.broadcast or is_martian_source(src):
            self._drop(now, "bad-source", src=ip.src, dst=ip.dst)
            return
        if ip.protocol == PROTO_TCP:
            self._receive_tcp(ip, payload, now)
        elif ip.protocol == PROTO_ICMP:
            self._receive_icmp(ip, payload, now)
        else:
            # RFC 1122 §3.2.2.1: a host SHOULD say Protocol Unreachable for a transport it
            # does not implement (UDP included: `nc -u` then fails at once, not silently).
            self._drop(now, "unknown-protocol", src=ip.src, dst=ip.dst, protocol=ip.protocol)
            self._send_unreachable(CODE_PROTOCOL_UNREACHABLE, ip, data, now)

    def _fragment4(self, data: bytes | bytearray | memoryview, now: int) -> None:
        """An IPv4 fragment (its header checked already by Ipv4Header.parse): held for
        reassembly (stack/fragments.py); the whole datagram, once complete, is received
        as if it had come in one packet."""
        ver_ihl, tos, total, ident, frag, ttl, proto, _, src_, dst_ = _IPV4.unpack_from(data)
        src, dst = IPv4Address(src_), IPv4Address(dst_)
        if dst != self.address:
            self._drop(now, "not-for-us", src=src, dst=dst)
            return
        if src == self.address or src == self.broadcast or is_martian_source(src):
            self._drop(now, "bad-source", src=src, dst=dst)
            return
        payload = bytes(data[(ver_ihl & 0x0F) * 4 : total])
        whole, reason = self._fragments.add(
            (src, dst, proto, ident), (frag & 0x1FFF) * 8, bool(frag & 0x2000), payload, now,
            TIMEOUT_V4,
        )  # fmt: skip
        self._reassembled(whole, reason, src, dst, now,
                          lambda p: Ipv4Header(src, dst, proto, ttl, tos, ident, False).build(p))

    def _fragment6(
        self, address6: IPv6Address, data: bytes | bytearray | memoryview, now: int
    ) -> None:
        """An IPv6 fragment (RFC 8200 §4.5) whose fragment header follows the fixed one
        (a fragment behind other extension headers is dropped as "fragment-unsupported")."""
        first, plen, nxt, hops, src_, dst_ = _IPV6.unpack_from(data)
        src, dst = IPv6Address(bytes(src_)), IPv6Address(bytes(dst_))
        if dst != address6:
            self._drop(now, "not-for-us", src=src, dst=dst)
            return
        if src == address6 or is_martian_source(src):
            self._drop(now, "bad-source", src=src, dst=dst)
            return
        if nxt != 44 or len(data) < 48:
            self._drop(now, "fragment-unsupported", src=src, dst=dst)
            return
        following, _, offflags, ident = _IPV6_FRAGMENT.unpack_from(data, 40)
        payload = bytes(data[48 : 40 + plen])
        if offflags & 0xFFF8 == 0 and len(payload) < _UPPER_HEADER.get(following, 1):
            # RFC 8200 §4.5 (RFC 7112): a first fragment must hold the whole upper-layer
            # header; one that does not is discarded (Linux ipv6_frag_thdr_truncated).
            self._drop(now, "fragment-header-incomplete", src=src, dst=dst)
            return
        whole, reason = self._fragments.add(
            (src, dst, ident), offflags & 0xFFF8, bool(offflags & 1), payload, now, TIMEOUT_V6
        )
        self._reassembled(whole, reason, src, dst, now,
                          lambda p: Ipv6Header(src, dst, following, hops, (first >> 20) & 0xFF,
                                               first & 0xFFFFF).build(p))  # fmt: skip

    def _reassembled(
        self,
        whole: bytes | None,
        reason: str | None,
        src: Address,
        dst: Address,
        now: int,
        build: Callable[[bytes], bytes],
    ) -> None:
        if reason is not None:
            self._drop(now, reason, src=src, dst=dst)
            return
        self.counters["fragments_in"] += 1
        if whole is None:
            return
        try:
            packet = build(whole)
        except ValueError:
            self._drop(now, "fragment-too-big", src=src, dst=dst)
            return
        self.counters["reassembled"] += 1
        self._receive_ip(packet, now)
        self.counters["packets_in"] -= 1  # one packet from the link: counted as fragments

    def _receive_ipv6(
        self, address6: IPv6Address, data: bytes | bytearray | memoryview, now: int
    ) -> None:
        try:
            ip6, payload = Ipv6Header.parse(data)
        except WireError as exc:
            if exc.reason == "fragment":
                self._fragment6(address6, data, now)
                return
            self._drop(now, exc.reason, detail=str(exc))
            return
        if (
            ip6.protocol == PROTO_ICMPV6
            and len(payload)
            and payload[0] in TYPES6_LINK
            and (ip6.dst == address6 or ip6.dst.is_multicast)
        ):
            self._receive_link_message(address6, ip6, payload, now)
            return
        if ip6.dst != address6:
            self._drop(now, "not-for-us", src=ip6.src, dst=ip6.dst)
            return
        src = ip6.src
        if src == address6 or is_martian_source(src):
            self._drop(now, "bad-source", src=ip6.src, dst=ip6.dst)
            return
        if ip6.protocol == PROTO_TCP:
            self._receive_tcp(ip6, payload, now)
        elif ip6.protocol == PROTO_ICMPV6:
            self._receive_icmp6(ip6, payload, now)
        else:
            self._drop(now, "unknown-protocol", src=ip6.src, dst=ip6.dst, protocol=ip6.protocol)

    def _receive_tcp(self, ip: IpHeader, payload: memoryview, now: int) -> None:
        verify, gso = self._rx_verify, self._rx_gso
        try:
            seg = TcpSegment.parse(payload, ip.src, ip.dst, verify_checksum=verify, gso_size=gso)
        except WireError as exc:
            self._drop(now, exc.reason, src=ip.src, dst=ip.dst, detail=str(exc))
            return
        if not verify:
            oc = self.offload_counters
            oc["csum_trusted_in"] += 1
            if gso and len(seg.payload) > gso:
                oc["gso_packets_in"] += 1
                oc["gso_segments_in"] += seg.gso_segs
        key = (ip.dst, seg.dst_port, ip.src, seg.src_port)
        conn = self._by_key.get(key)
        if conn is None and self._time_waits:
            record = self._time_waits.get(key)
            if record is not None:
                if self._may_reopen_record(record, seg):
                    # RFC 6191 / RFC 1122 §4.2.2.13, as below for a full connection.
                    self._forget_time_wait(record, now)
                else:
                    self._time_wait_segment(record, ip, seg, now)
                    return
        if conn is not None and not conn.is_closed and self._may_reopen(conn, seg):
            # RFC 9293 §3.10.7.4 note / RFC 1122 §4.2.2.13: a new SYN may reopen a
            # connection in TIME-WAIT. The old incarnation is deleted (ABORT in TIME-WAIT
            # sends nothing) and the SYN goes to the listener as a new connection.
            conn.abort(now)
            self._forget(conn)
            conn = None
        if conn is not None and not conn.is_closed:
            if (ip.tos if isinstance(ip, Ipv4Header) else ip.traffic_class) & CE == CE:
                conn.receive_ce()  # RFC 3168 §5: the IP ECN field says CE
            conn.receive_segment(seg, now)
            return
        if self._half_opens:
            half = self._half_opens.get(key)
            if half is not None:
                self._half_open_segment(half, ip, seg, now)
                return
        listener = self._listeners.get(seg.dst_port)
        if listener is not None and listener.matches(ip.dst):
            self._listener_segment(listener, ip, seg, now)
            return
        self._reset_orphan(ip, seg, now, "no-connection")

    def _listener_segment(
        self, listener: Listener, ip: IpHeader, seg: TcpSegment, now: int
    ) -> None:
        """RFC 9293 §3.10.7.2, LISTEN state, for a segment that matched no connection."""
        flags = seg.flags
        if flags & Flags.RST:  # "first, check for a RST": ignore it
            self._drop(now, "rst-to-listener", src=ip.src, dst=ip.dst, segment=seg)
            return
        if flags & Flags.ACK:  # "second, check for an ACK": <SEQ=SEG.ACK><CTL=RST>
            if not flags & Flags.SYN and self._accept_cookie(listener, ip, seg, now):
                return
            self._reset_orphan(ip, seg, now, "ack-to-listener")
            return
        if not flags & Flags.SYN:  # "fourth, other control or text": drop it
            self._drop(now, "no-syn-to-listener", src=ip.src, dst=ip.dst, segment=seg)
            return
        if listener.accept_queue_full:
            # Linux drops SYNs while the accept queue is full, cookies or not
            # (tcp_conn_request).
            listener.counters["syn_dropped"] += 1
            self._drop(now, "accept-queue-full", src=ip.src, dst=ip.dst, segment=seg)
            return
        mode = listener.syn_cookies
        if mode == "always" or (listener.syn_backlog_full and mode == "auto"):
            self._send_cookie(listener, ip, seg, now)
            return
        if listener.syn_backlog_full:
            listener.counters["syn_dropped"] += 1
            self._drop(now, "syn-backlog-full", src=ip.src, dst=ip.dst, segment=seg)
            return
        # "third, check for a SYN": a half-open record in SYN-RECEIVED, not a whole
        # connection (Linux's request_sock), answers it with our SYN-ACK.
        self._new_half_open(listener, ip, seg, now)

    def _receive_icmp(self, ip: Ipv4Header, payload: memoryview, now: int) -> None:
        self.counters["icmp_in"] += 1
        try:
            message = parse_icmp(payload)
        except WireError as exc:
            self._drop(now, "icmp-" + exc.reason, src=ip.src, dst=ip.dst, detail=str(exc))
            return
        if isinstance(message, IcmpEcho):
            if message.is_request and message.code == 0:
                # RFC 1122 §3.2.2.6: every host implements an echo server.
                self._emit(IPv4Address(ip.dst), ip.src, PROTO_ICMP, message.reply().build())
                self.counters["icmp_out"] += 1
            else:
                self._drop(now, "icmp-echo-reply", src=ip.src, dst=ip.dst)
            return
        if message is None:
            self._drop(now, "icmp-ignored", src=ip.src, dst=ip.dst)
            return
        self._icmp_error(ip, message, now)

    def _receive_icmp6(self, ip6: Ipv6Header, payload: memoryview, now: int) -> None:
        self.counters["icmp_in"] += 1
        try:
            message = parse_v6(payload, ip6.src, ip6.dst)
        except WireError as exc:
            self._drop(now, "icmp-" + exc.reason, src=ip6.src, dst=ip6.dst, detail=str(exc))
            return
        if isinstance(message, IcmpEcho):
            if message.is_request and message.code == 0:
                # RFC 4443 §4.1: every node implements an echo responder.
                reply = message.reply().build(ip6.dst, ip6.src)
                self._emit(ip6.dst, ip6.src, PROTO_ICMPV6, reply)
                self.counters["icmp_out"] += 1
            else:
                self._drop(now, "icmp-echo-reply", src=ip6.src, dst=ip6.dst)
            return
        if message is None:
            self._drop(now, "icmp-ignored", src=ip6.src, dst=ip6.dst)
            return
        self._icmp_error(ip6, _as_icmpv4(message), now, quoted=message.quoted)

    def _receive_link_message(
        self, address6: IPv6Address, ip6: Ipv6Header, payload: memoryview, now: int
    ) -> None:
        """Neighbour discovery and MLD (RFC 4861, RFC 3810). A TUN is point-to-point and
        NOARP, so Linux sends none of it there; an attached interface with a link-local
        address sends router solicitations and MLD reports: taken in quietly (counted as
        ICMP in, no drop). A neighbour solicitation for our address is answered (§7.2.4;
        from ::, duplicate address detection, by defending it to all nodes, RFC 4862
        §5.4.3)."""
        self.counters["icmp_in"] += 1
        try:
            message = parse_link_message(payload, ip6.src, ip6.dst)
        except WireError as exc:
            self._drop(now, "icmp-" + exc.reason, src=ip6.src, dst=ip6.dst, detail=str(exc))
            return
        if message is None or message.target != address6:
            return
        if ip6.hop_limit != ND_HOP_LIMIT:  # RFC 4861 §7.1.1: it crossed a router
            self._drop(now, "icmp-nd-hop-limit", src=ip6.src, dst=ip6.dst)
            return
        dad = ip6.src.is_unspecified
        dst = IPv6Address("ff02::1") if dad else ip6.src
        advert = build_neighbour_advert(address6, address6, dst, solicited=not dad)
        self._outbox.append(Ipv6Header(address6, dst, PROTO_ICMPV6, ND_HOP_LIMIT).build(advert))
        self.counters["icmp_out"] += 1

    def _icmp_error(
        self, ip: IpHeader, err: IcmpError, now: int, *, quoted: IpHeader | None = None
    ) -> None:
        if quoted is None:
            quoted = err.quoted
        # The quoted header is one we sent: its source is us and its ports are ours first.
        key = (quoted.src, err.src_port, quoted.dst, err.dst_port)
        conn = self._by_key.get(key)
        if conn is None and key in self._time_waits:
            self._drop(now, "icmp-time-wait", src=ip.src, dst=ip.dst, icmp=err)
            return
        if conn is None and self._half_opens:
            half = self._half_opens.get(key)
            if half is not None:
                self._half_open_icmp(half, err, quoted, now)
                return
        if conn is None or conn.is_closed:
            self._drop(now, "icmp-no-connection", src=ip.src, dst=ip.dst, icmp=err)
            return
        locked = False
        if err.code == 4 and err.mtu:
            # RFC 1191 / RFC 8201 with Linux's floors: a report below them (a spoofed
            # "MTU 68") cannot take the estimate lower than 552 (IPv4; DF then cleared)
            # or 1280 (IPv6). Connection works in IPv4 terms: IPv6 is 20 bytes less.
            floor = PMTU_FLOOR6 - IPV6_EXTRA if quoted.dst.version == 6 else PMTU_FLOOR
            if err.mtu < floor:
                err = replace(err, mtu=floor)
                locked = quoted.dst.version == 4
        before = conn.path_mtu
        conn.receive_icmp(err, now)  # checks the quoted sequence number (RFC 5927 §4.1)
        if conn.path_mtu < before:
            self._learn_path_mtu(conn.remote[0], conn.path_mtu, locked, now)

    def path_mtus(self) -> dict[Address, PathMtu]:
        """The path MTUs learned by destination (copies), until each expires."""
        return {addr: replace(entry) for addr, entry in self._pmtu.items()}

    def _learn_path_mtu(self, remote: Address, mtu: int, locked: bool, now: int) -> None:
        """A validated, lower path MTU towards `remote`: remembered until it expires and
        applied to every connection to that peer (Linux: each socket syncs its MSS with
        the route's MTU on its next transmission)."""
        entry = PathMtu(mtu, now + PMTU_EXPIRES, locked)
        self._pmtu[remote] = entry
        for other in self._live.values():
            if other.remote[0] == remote and not other.is_closed:
                if other.path_mtu > mtu:
                    other.set_path_mtu(mtu, now)
                other.path_mtu_expires = entry.expires

    def _expire_path_mtus(self, now: int) -> None:
        """RFC 1191 §6.3: forget an estimate after PMTU_EXPIRES; its connections go back
        to the link MTU (and learn again if the path is still narrow)."""
        for remote in [r for r, e in self._pmtu.items() if e.expires <= now]:
            del self._pmtu[remote]
            for conn in self._live.values():
                if conn.remote[0] == remote and not conn.is_closed:
                    conn.path_mtu_expires = None
                    conn.set_path_mtu(self._link_mtu(conn.local[0]), now)

    # --------------------------------------------------------------- output and time

    def packets_to_send(self, now: int) -> list[bytes | Packet]:
        """Every IP packet due now: the host's own and each connection's segments.

        With `offload`, a connection's segments are `Packet`s (checksum partial, super-
        segments marked GSO); everything else is plain bytes.
        Connections that reached CLOSED are forgotten here, after their last segment
        (a RST of abort) went out; the objects stay valid for whoever holds them.
        """
        out = self._outbox
        self._outbox = []
        closed = []
        offload = self.offload
        compact = []
        dirty = self._dirty
        visit = list(dirty.values())
        dirty.clear()
        if len(visit) > 1:
            visit.sort(key=lambda c: c.id)  # the order of a scan: by id
        live = self._live
        for conn in visit:
            if live.get(conn.id) is not conn:
                continue  # forgotten since (pruned, reopened, compacted)
            segments = conn.segments_to_send(now)
            if segments:
                src, dst = conn.local[0], conn.remote[0]
                for seg in segments:
                    if offload:
                        out.append(self._offloaded(src, dst, seg, conn.id))
                    else:
                        # RFC 3168 §6.1.1: new data of an ECN connection is sent ECT(0).
                        ecn = ECT0 if type(seg) is EctSegment else 0
                        out.append(self._ip(src, dst, PROTO_TCP, seg.build(src, dst), ecn))
            if conn.is_closed:
                closed.append(conn)
            elif conn.tcb.app_closed and conn.tcb.state is State.TIME_WAIT:
                compact.append(conn)
            else:
                self._schedule(conn)
        for conn in closed:
            self._forget(conn)
        for conn in compact:
            self._compact(conn, now)
        if not self._report_touched:
            self._touched.clear()  # nobody asks: keep nothing
        self.counters["packets_out"] += len(out)
        return out

    def handle_timers(self, now: int) -> None:
        """Run every connection timer due at `now`, and expire path MTU estimates. Call
        packets_to_send() next."""
        if self._pmtu:
            self._expire_path_mtus(now)
        if self._fragments:
            for _ in range(self._fragments.expire(now)):
                # RFC 1122 §3.3.2: the reassembly timer ran out (no ICMP time exceeded).
                self._drop(now, "fragment-timeout")
        heap = self._tw_heap
        while heap and heap[0][0] <= now:
            _, rid = heapq.heappop(heap)
            record = self._tw_ids.get(rid)
            if record is None:
                continue  # gone already (RST, reopened, aborted)
            if record.deadline <= now:
                self._forget_time_wait(record, now)  # 2·MSL passed: CLOSED (RFC 9293 §3.10.8)
            else:
                heapq.heappush(heap, (record.deadline, rid))  # restarted by a FIN
        if self._ho_heap:
            self._half_open_timers(now)
        self._refresh()
        timers, scheduled, live = self._timer_heap, self._scheduled, self._live
        due = []
        while timers and timers[0][0] <= now:
            deadline, cid = heapq.heappop(timers)
            if scheduled.get(cid) != deadline:
                continue  # filed again under another deadline since, or gone
            del scheduled[cid]
            due.append(cid)
        for cid in sorted(due):  # as a scan would: by id
            conn = live.get(cid)
            if conn is None:
                continue
            current = conn.next_deadline()
            if current is None or current > now:
                self._dirty[cid] = conn  # re-filed by the next refresh
                continue
            conn.handle_timers(now)
        self._refresh()

    def _schedule(self, conn: Connection) -> None:
        """File `conn` in the timer heap under its next deadline, if that changed."""
        deadline = conn.next_deadline()
        cid = conn.id
        if deadline is None:
            self._scheduled.pop(cid, None)
        elif self._scheduled.get(cid) != deadline:
            self._scheduled[cid] = deadline
            heapq.heappush(self._timer_heap, (deadline, cid))
            if len(self._timer_heap) > 4 * len(self._scheduled) + 64:
                # Too many superseded entries: rebuild from what is filed.
                self._timer_heap = [(d, i) for i, d in self._scheduled.items()]
                heapq.heapify(self._timer_heap)

    def _refresh(self) -> None:
        """File the deadlines of the connections touched since the last output pass."""
        live = self._live
        for conn in self._dirty.values():
            if live.get(conn.id) is conn:
                self._schedule(conn)

    def fire_timer(self, conn: Connection | TimeWait | HalfOpen, name: str, now: int) -> None:
        """Fire one armed timer of `conn` now (`pytcp timer ID fire NAME`). Raises what
        Connection.fire_timer raises (not armed, no such timer). A TIME-WAIT record has
        one timer, "time-wait": firing it ends the record (`expire_time_wait`); a
        half-open record one, "syn": the SYN-ACK goes again (or the record gives up)."""
        if isinstance(conn, TimeWait):
            if name != "time-wait":
                raise ValueError(f"a TIME-WAIT record has no {name!r} timer, only time-wait")
            self.expire_time_wait(conn.id, now)
            return
        if isinstance(conn, HalfOpen):
            if name != "syn":
                raise ValueError(f"a half-open record has no {name!r} timer, only syn")
            if not conn.is_closed:
                self._half_open_timeout(conn, now)
            return
        conn.fire_timer(name, now)

    def _prune(
        self, record: HalfOpen, listener: Listener, now: int, thresholds: dict[int, int]
    ) -> bool:
        """Linux reqsk_timer_handler: when the SYN backlog is over half full, a SYN-ACK
        that timed out `thresh` times is not sent again and its half-open record is
        forgotten silently (no RST: the peer may well be spoofed). `thresh` falls from
        synack_retries towards PRUNE_MIN_THRESH as the young (never retransmitted) share
        of the backlog shrinks: half the room stays for young connections."""
        thresh = thresholds.get(listener.id)
        if thresh is None:
            thresh = listener.config.synack_retries
            queued = len(listener._embryonic)
            if queued * 2 > max(8, listener.backlog):
                young = 2 * sum(1 for r in listener._embryonic.values() if r.retransmits == 0)
                while thresh > PRUNE_MIN_THRESH and queued >= young:
                    thresh -= 1
                    young *= 2
            thresholds[listener.id] = thresh
        if record.retransmits < thresh or thresh >= listener.config.synack_retries:
            return False  # within its retries; at the full count the record gives up
        listener.counters["synack_pruned"] += 1
        self._drop(now, "synack-pruned", src=record.key[2], dst=record.key[0])
        self._forget_half_open(record, now)
        return True

    def next_deadline(self) -> int | None:
        """The earliest timer deadline of any connection, TIME-WAIT or half-open record;
        None when no timer is armed. From heaps: O(log n), not a scan of every one."""
        self._refresh()
        heap = self._tw_heap
        while heap:
            deadline, rid = heap[0]
            record = self._tw_ids.get(rid)
            if record is not None and record.deadline == deadline:
                break
            heapq.heappop(heap)  # gone, or superseded: a retransmitted FIN restarted 2·MSL
            if record is not None and record.deadline > deadline:
                heapq.heappush(heap, (record.deadline, rid))
        earliest: int | None = heap[0][0] if heap else None
        half = self._ho_heap
        while half and (half[0][2].is_closed or half[0][2].deadline != half[0][0]):
            heapq.heappop(half)  # gone (promoted, reset, pruned) or re-armed since
        if half and (earliest is None or half[0][0] < earliest):
            earliest = half[0][0]
        frag = self._fragments.next_deadline() if self._fragments else None
        if frag is not None and (earliest is None or frag < earliest):
            earliest = frag
        timers, scheduled = self._timer_heap, self._scheduled
        while timers and scheduled.get(timers[0][1]) != timers[0][0]:
            heapq.heappop(timers)  # superseded or gone
        if timers and (earliest is None or timers[0][0] < earliest):
            earliest = timers[0][0]
        for entry in self._pmtu.values():
            if earliest is None or entry.expires < earliest:
                earliest = entry.expires
        return earliest

    # --------------------------------------------------------------- internals

    def _send_cookie(self, listener: Listener, ip: IpHeader, seg: TcpSegment, now: int) -> None:
        """RFC 4987 §3.6: answer a SYN with a SYN-ACK whose sequence number encodes the
        connection, and keep no state. The MSS is in the cookie; with timestamps, window
        scale and SACK-permitted are in the TSval (Linux cookie_init_timestamp), and the
        SYN-ACK offers what a connection would. Without, only the MSS survives."""
        local, remote = (ip.dst, seg.dst_port), (ip.src, seg.src_port)
        peer_mss = seg.mss if seg.mss is not None else DEFAULT_MSS
        cookie = self._cookies.make(local, remote, seg.seq, peer_mss, now)
        config = listener.config
        wscale: int | None = None
        sack = False
        timestamps = None
        if config.timestamps and seg.timestamps is not None:
            sack = config.sack and seg.sack_permitted
            peer_wscale = seg.wscale if config.wscale else None
            if peer_wscale is not None:
                wscale = _wscale_for(max(config.rcv_buf, config.rcv_buf_max))  # as Connection
            tsval = cookie_tsval((now // MS) & 0xFFFFFFFF, peer_wscale, sack)
            timestamps = (tsval, seg.timestamps[0])
        synack = TcpSegment(
            seg.dst_port,
            seg.src_port,
            cookie,
            (seg.seq + 1) & MASK,
            Flags.SYN | Flags.ACK,
            min(config.rcv_buf, 0xFFFF),  # RFC 7323 §2.2: a SYN's window is never scaled
            mss=config.mss if config.mss is not None else self._link_mtu(ip.dst) - IP_TCP_HEADERS,
            wscale=wscale,
            sack_permitted=sack,
            timestamps=timestamps,
        )
        listener.counters["cookies_sent"] += 1
        listener.last_cookie = now
        self._emit(ip.dst, ip.src, PROTO_TCP, synack.build(ip.dst, ip.src))
        self._tracer(
            TraceEvent(now, SEGMENT_OUT, None, {"segment": synack, "src": ip.dst, "dst": ip.src})
        )

    def _accept_cookie(self, listener: Listener, ip: IpHeader, seg: TcpSegment, now: int) -> bool:
        """An ACK to a listening port that carries one of our SYN cookies (RFC 4987 §3.6)
        becomes a connection: it is opened passively, handed the SYN the cookie stands for
        (the peer's ISN, the MSS the cookie encodes, and with timestamps the window scale
        and SACK-permitted its TSecr echoes), and then this ACK. In "auto" mode only
        while cookies are being sent (COOKIE_WINDOW), as Linux: a blind guess at the
        24-bit hash has nothing to hit on a listener that is not flooded."""
        mode = listener.syn_cookies
        if mode == "never":
            return False
        if mode == "auto" and (
            listener.last_cookie is None or now - listener.last_cookie > COOKIE_WINDOW
        ):
            return False
        local, remote = (ip.dst, seg.dst_port), (ip.src, seg.src_port)
        peer_isn = (seg.seq - 1) & MASK
        iss = (seg.ack - 1) & MASK
        mss = self._cookies.check(local, remote, peer_isn, iss, now)
        if mss is None:
            return False
        wscale: int | None = None
        sack = False
        timestamps = None
        config = listener.config
        if seg.timestamps is not None and config.timestamps:
            wscale, sack = cookie_options(seg.timestamps[1])
            timestamps = (seg.timestamps[0], 0)
        if listener.accept_queue_full:
            # As for a stateful handshake (Linux: ListenOverflows): drop, no RST; the
            # peer's retransmission of this segment brings the cookie back.
            listener.counters["ack_dropped"] += 1
            self._drop(now, "accept-queue-full", src=ip.src, dst=ip.dst, segment=seg)
            return True
        conn = self._new_connection(local, remote, now, config, iss=iss)
        listener.counters["cookies_accepted"] += 1
        conn.open_passive(now)
        syn = TcpSegment(
            seg.src_port,
            seg.dst_port,
            peer_isn,
            0,
            Flags.SYN,
            seg.window,
            mss=mss,
            wscale=wscale,
            sack_permitted=sack,
            timestamps=timestamps,
        )
        conn.receive_segment(syn, now)
        # The SYN-ACK this connection would send already left, statelessly, as the cookie.
        conn.segments_to_send(now)
        # It left when the SYN came, not now: the handshake yields no RTT sample (the
        # first RTO stays at rto_initial).
        conn.skip_rtt_sample()
        conn.receive_segment(seg, now)
        self._adopt(conn, listener, now)
        return True

    # ---------------------------------------------------- half-open records

    def _new_half_open(self, listener: Listener, ip: IpHeader, seg: TcpSegment, now: int) -> None:
        """A SYN to a listener with room in its SYN backlog: a half-open record answers
        it with our SYN-ACK (RFC 9293 §3.10.7.2 third, SYN-RECEIVED)."""
        local = ip.dst
        own = self._own_address(local)
        # Our own address object rather than the copy parsed from the packet.
        key: Key = (own if own == local else local, seg.dst_port, ip.src, seg.src_port)
        iss = self._isn((key[0], key[1]), (key[2], key[3]), now) & MASK
        record = HalfOpen(self, next(self._ids), key, listener, iss, seg, now)
        listener.counters["syn_received"] += 1
        listener._embryonic[record.id] = record
        self._half_opens[key] = record
        heapq.heappush(self._ho_heap, (record.deadline, record.id, record))
        name = str(record.id)
        tracer = self._tracer
        if tracer is not null_tracer:
            fields = {"segment": seg, "src": ip.src, "dst": ip.dst}
            tracer(TraceEvent(now, SEGMENT_IN, name, fields))
            tracer(TraceEvent(now, STATE, name, {"old": "CLOSED", "new": "LISTEN"}))
            tracer(TraceEvent(now, STATE, name, {"old": "LISTEN", "new": "SYN-RECEIVED"}))
        if seg.payload or seg.flags & Flags.FIN:
            record.drop("syn-data-ignored")  # no TCP Fast Open: the peer sends it again
        self._half_open_send(record, "synack", seg, now)

    def _half_open_send(self, record: HalfOpen, what: str, seg: TcpSegment, now: int) -> None:
        """Send what the record's answer asks for: our SYN-ACK, an ACK, or a RST."""
        key = record.key
        config = record.listener.config
        mss = self._link_mtu(key[0]) - IP_TCP_HEADERS  # as Connection's mss_local
        if config.mss is not None:
            mss = min(mss, config.mss)
        if what == "synack":
            reply = record.synack(mss, now)
        elif what == "ack":
            reply = record._ack(mss, now)
        else:  # "rst": <SEQ=SEG.ACK><CTL=RST> (§3.10.7.4 fifth, SYN-RECEIVED)
            reply = TcpSegment(key[1], key[3], seg.ack, 0, Flags.RST, 0)
        self._emit(key[0], key[2], PROTO_TCP, reply.build(key[0], key[2]))
        if self._tracer is not null_tracer:
            self._tracer(TraceEvent(now, SEGMENT_OUT, str(record.id),
                                    {"segment": reply, "src": key[0], "dst": key[2]}))  # fmt: skip

    def _half_open_segment(self, record: HalfOpen, ip: IpHeader, seg: TcpSegment, now: int) -> None:
        """A segment for a half-open record's 4-tuple: answered by the record, or the
        final ACK that promotes it to a connection."""
        listener = record.listener
        flags = int(seg.flags)
        if listener.accept_queue_full and flags & _ACK and not flags & (_RST | _SYN):
            # Linux (tcp_abort_on_overflow=0): drop the handshake-completing ACK and let
            # retransmissions finish the handshake once there is room.
            listener.counters["ack_dropped"] += 1
            self._drop(now, "accept-queue-full", src=ip.src, dst=ip.dst, segment=seg)
            return
        tracer = self._tracer
        name = str(record.id)
        what, reply = record.receive_segment(seg, now)
        if what == "promote":
            ce = (ip.tos if isinstance(ip, Ipv4Header) else ip.traffic_class) & CE == CE
            self._promote(record, seg, ce, now)
            return
        if tracer is not null_tracer:
            fields = {"segment": seg, "src": ip.src, "dst": ip.dst}
            tracer(TraceEvent(now, SEGMENT_IN, name, fields))
            tracer(TraceEvent(now, DROP, name, {"reason": what}))
        if what == "reset":
            self._forget_half_open(record, now)
        elif reply is not None:
            self._half_open_send(record, reply, seg, now)

    def _promote(self, record: HalfOpen, seg: TcpSegment, ce: bool, now: int) -> None:
        """The ACK of our SYN-ACK: the record becomes a Connection (same id and ISS). The
        connection is handed what the record stands for as it happened -- the SYN and
        our SYN-ACK when they came and went, the SYN-ACK's timeouts (RFC 6298 (5.5),
        (5.7)), Karn's rule if the SYN-ACK went again -- untraced (the record traced it),
        then this ACK, with its data and FIN, and joins the accept queue."""
        listener = record.listener
        self._forget_half_open(record, now, closed=False)
        key = record.key
        at = record.syn_at
        conn = self._new_connection(
            (key[0], key[1]), (key[2], key[3]), at, listener.config, iss=record.iss,
            id=record.id, traced=False,
        )  # fmt: skip
        conn.open_passive(at)
        conn.receive_segment(record.syn(), at)
        conn.segments_to_send(at)  # the SYN-ACK that left then
        last = record.sent_at
        for _ in range(record.retransmits):
            conn.set_timer("syn", 0, last)
            conn.handle_timers(last)
            conn.segments_to_send(last)
        if record.resent:
            conn.rtt.on_retransmit()  # Karn: the SYN-ACK went again for a SYN again
        if record.drops:
            conn.count_drops(record.drops)
        conn.tcb.rcv_wnd = record.rcv_wnd  # what the record's ACKs advertised last
        conn.trace_to(self._tracer)
        if ce:
            conn.receive_ce()
        conn.receive_segment(seg, now)
        self._adopt(conn, listener, now)

    def _adopt(self, conn: Connection, listener: Listener, now: int) -> None:
        """A connection whose handshake completed joins its listener's accept queue
        (aborted if the listener closed meanwhile)."""
        if conn.is_closed:
            return
        if listener.closed or conn.state is State.SYN_RECEIVED:
            conn.abort(now)
        else:
            listener._accept_queue.append(conn)

    def _half_open_timers(self, now: int) -> None:
        """The SYN-ACK timers due: retransmit, give up, or prune under pressure."""
        heap = self._ho_heap
        due: dict[int, HalfOpen] = {}
        while heap and heap[0][0] <= now:
            deadline, rid, record = heapq.heappop(heap)
            if record.is_closed or record.deadline != deadline:
                continue  # gone (promoted, reset, pruned), or re-armed since
            due[rid] = record
        thresholds: dict[int, int] = {}
        for _, record in sorted(due.items()):
            if record.is_closed:
                continue
            if self._prune(record, record.listener, now, thresholds):
                continue
            self._half_open_timeout(record, now)

    def _half_open_timeout(self, record: HalfOpen, now: int) -> None:
        """RFC 9293 §3.8.1 / RFC 6298 (5.5): the SYN-ACK again, with a doubled timeout;
        after synack_retries timeouts the record gives up, silently (Linux)."""
        if record.retransmits + 1 > record.listener.config.synack_retries:
            self._forget_half_open(record, now)
            return
        record.retransmits += 1
        record.sent_at = now
        record.deadline = now + record.rto()
        heapq.heappush(self._ho_heap, (record.deadline, record.id, record))
        self._half_open_send(record, "synack", _NO_SEGMENT, now)

    def _abort_half_open(self, record: HalfOpen, now: int) -> None:
        """ABORT in SYN-RECEIVED (a listener closed, `pytcp close ID`): a RST."""
        key = record.key
        rst = TcpSegment(key[1], key[3], (record.iss + 1) & MASK, 0, Flags.RST, 0)
        self._emit(key[0], key[2], PROTO_TCP, rst.build(key[0], key[2]))
        if self._tracer is not null_tracer:
            self._tracer(TraceEvent(now, SEGMENT_OUT, str(record.id),
                                    {"segment": rst, "src": key[0], "dst": key[2]}))  # fmt: skip
        self._forget_half_open(record, now)

    def _forget_half_open(self, record: HalfOpen, now: int, *, closed: bool = True) -> None:
        record.is_closed = True
        record.listener._embryonic.pop(record.id, None)
        if self._half_opens.get(record.key) is record:
            del self._half_opens[record.key]
        heap = self._ho_heap
        if len(heap) > 2 * len(self._half_opens) + 64:
            # Entries of records gone keep them alive until their deadline: rebuild
            # from the live ones (amortized O(1) per record forgotten).
            self._ho_heap = [e for e in heap if not e[2].is_closed and e[2].deadline == e[0]]
            heapq.heapify(self._ho_heap)
        if closed and self._tracer is not null_tracer:
            self._tracer(TraceEvent(now, STATE, str(record.id),
                                    {"old": "SYN-RECEIVED", "new": "CLOSED"}))  # fmt: skip

    def _half_open_icmp(self, record: HalfOpen, err: IcmpError, quoted: IpHeader, now: int) -> None:
        """An ICMP error quoting our SYN-ACK, as Connection.receive_icmp takes it in
        SYN-RECEIVED: only with the quoted sequence number ISS (RFC 5927 §4.1); a
        lower path MTU is learned for the peer (RFC 1191, with the host's floors); any
        other unreachable fails the handshake."""
        if err.type != 3:
            record.drop("icmp-not-unreachable")
            return
        if err.seq != record.iss:
            record.drop("icmp-stale-seq")
            return
        if err.code != 4:
            self._forget_half_open(record, now)
            return
        remote = record.key[2]
        learned = self._pmtu.get(remote)
        current = learned.mtu if learned is not None else self._link_mtu(record.key[0])
        mtu, locked = err.mtu, False
        if mtu:
            floor = PMTU_FLOOR6 - IPV6_EXTRA if quoted.dst.version == 6 else PMTU_FLOOR
            if mtu < floor:
                mtu, locked = floor, quoted.dst.version == 4
        if not mtu:
            record.drop("icmp-no-mtu")
        elif mtu >= current:
            record.drop("icmp-mtu-not-lower")
        elif mtu < MIN_IPV4_MTU:
            record.drop("icmp-mtu-too-small")
        else:
            self._learn_path_mtu(remote, mtu, locked, now)

    def _new_connection(
        self,
        local: Endpoint,
        remote: Endpoint,
        now: int,
        config: TcpConfig,
        *,
        iss: int | None = None,
        id: int | None = None,
        traced: bool = True,
    ) -> Connection:
        conn = self._connection_class(
            id=next(self._ids) if id is None else id,
            # Connection's Endpoint is typed IPv4 (tcp/sender.py); it only stores and
            # prints addresses, so an IPv6 endpoint is as good.
            local=cast("tuple[IPv4Address, int]", local),
            remote=cast("tuple[IPv4Address, int]", remote),
            iss=(self._isn(local, remote, now) if iss is None else iss) & MASK,
            config=config,
            link_mtu=self._link_mtu(local[0]),
            tracer=self._tracer if traced else None,
            rings=self._rings,
            challenge_ack_allowed=self._challenge_check,
        )
        if self.tso:
            conn.tso_max = TSO_MAX_PAYLOAD  # the link cuts our super-segments (TSO)
        self._live[conn.id] = conn
        self._by_key[(local[0], local[1], remote[0], remote[1])] = conn
        learned = self._pmtu.get(remote[0])
        if learned is not None and learned.mtu < conn.path_mtu:
            conn.set_path_mtu(learned.mtu, now)  # the SYN's MSS is the link's; sending obeys it
            conn.path_mtu_expires = learned.expires
        self._dirty[conn.id] = conn
        return conn

    def disable_tso(self) -> None:
        """The link no longer cuts super-segments (the kernel refused one): every
        connection, and every later one, sends MSS-sized segments from now on. Their
        checksums stay partial (NEEDS_CSUM) while the link takes that."""
        self.tso = False
        for conn in self._live.values():
            conn.tso_max = 0

    def _forget(self, conn: Connection) -> None:
        self._live.pop(conn.id, None)
        self._templates.pop(conn.id, None)
        self._scheduled.pop(conn.id, None)
        self._dirty.pop(conn.id, None)
        key = (conn.local[0], conn.local[1], conn.remote[0], conn.remote[1])
        if self._by_key.get(key) is conn:
            del self._by_key[key]

    def _compact(self, conn: Connection, now: int) -> None:
        """Replace a TIME-WAIT connection nobody holds any more by its TimeWait record:
        same id, same 4-tuple, same 2·MSL deadline (Linux inet_twsk)."""
        deadline = conn.timers["time-wait"].deadline
        if deadline is None:
            deadline = now + 2 * conn.config.msl
        local = conn.local[0]
        own = self._own_address(local)
        # Our own address object rather than the copy parsed from a packet: one less each.
        key = (own if own == local else local, conn.local[1], conn.remote[0], conn.remote[1])
        record = TimeWait(conn, cast(Key, key), deadline, self)
        self._forget(conn)
        self._time_waits[record.key] = record
        self._tw_ids[record.id] = record
        heapq.heappush(self._tw_heap, (record.deadline, record.id))

    def _forget_time_wait(self, record: TimeWait, now: int) -> None:
        record.end(now)
        self._tw_ids.pop(record.id, None)
        if self._time_waits.get(record.key) is record:
            del self._time_waits[record.key]

    def _time_wait_segment(
        self, record: TimeWait, ip: IpHeader, seg: TcpSegment, now: int
    ) -> None:
        reply, what, done = record.receive_segment(seg, now)
        if done:
            self._forget_time_wait(record, now)
        else:
            self._drop(now, "time-wait-" + what, src=ip.src, dst=ip.dst, segment=seg)
        if reply is not None:
            self._emit(ip.dst, ip.src, PROTO_TCP, reply.build(ip.dst, ip.src))
            self._tracer(
                TraceEvent(now, SEGMENT_OUT, None, {"segment": reply, "src": ip.dst, "dst": ip.src})
            )

    def _may_reopen_record(self, record: TimeWait, seg: TcpSegment) -> bool:
        """`_may_reopen` for a TimeWait record."""
        if int(seg.flags) & _SYN_ACK_RST != _SYN:
            return False
        listener = self._listeners.get(record.local[1])
        if listener is None or not listener.matches(record.local[0]):
            return False
        if record.timestamps and seg.timestamps is not None:
            return seq_gt(seg.timestamps[0], record.ts_recent)
        return seq_gt(seg.seq, record.rcv_nxt)

    def _may_reopen(self, conn: Connection, seg: TcpSegment) -> bool:
        """A SYN that may start a new incarnation of a 4-tuple in TIME-WAIT: there is a
        listener for it, and it is newer than the old one by timestamps when both sides
        used them (RFC 6191 §2) or else by sequence number (RFC 1122 §4.2.2.13)."""
        if conn.state is not State.TIME_WAIT or int(seg.flags) & _SYN_ACK_RST != _SYN:
            return False
        listener = self._listeners.get(conn.local[1])
        if listener is None or not listener.matches(conn.local[0]):
            return False
        tcb = conn.tcb
        if tcb.timestamps and seg.timestamps is not None:
            return seq_gt(seg.timestamps[0], tcb.ts_recent)
        return seq_gt(seg.seq, tcb.rcv_nxt)

    def _own_address(self, remote: Address) -> Address | None:
        """Our address of the remote's family."""
        return self.address if remote.version == 4 else self.address6

    def _link_mtu(self, local: Address) -> int:
        """The MTU as a connection sees it: Connection takes MSS = link_mtu - 40 (IPv4 and
        TCP headers), so an IPv6 connection is handed 20 bytes less (RFC 8200 §5)."""
        return self.mtu if local.version == 4 else self.mtu - IPV6_EXTRA

    def _port_taken(self, port: int, remote: Endpoint) -> bool:
        if port in self._listeners:
            return True
        own = self._own_address(remote[0])
        if own is None:
            return True
        key = (own, port, remote[0], remote[1])
        if key in self._time_waits or key in self._half_opens:
            return True  # TIME-WAIT (RFC 9293 §3.6.1) or a half-open one holds the 4-tuple
        conn = self._by_key.get(key)
        return conn is not None and not conn.is_closed

    def _unlisten(self, listener: Listener, now: int) -> None:
        """A listener closed: its half-open records are aborted (RST) and it is gone."""
        for record in list(listener._embryonic.values()):
            self._abort_half_open(record, now)
        if self._listeners.get(listener.local[1]) is listener:
            del self._listeners[listener.local[1]]

    def _challenge_ack_allowed(self, now: int) -> bool:
        """The host-wide check of a challenge ACK a connection or TIME-WAIT record is about
        to send, its own limit passed (ChallengeAckBudget); a refusal is a counted drop."""
        if self._challenge_budget.allow(now):
            return True
        self._drop(now, "challenge-ack-host-limited")
        return False

    def _reset_orphan(self, ip: IpHeader, seg: TcpSegment, now: int, reason: str) -> None:
        """RFC 9293 §3.10.7.1: the reply of a CLOSED connection, never a RST to a RST."""
        if seg.flags & Flags.RST:
            self._drop(now, "rst-no-connection", src=ip.src, dst=ip.dst, segment=seg)
            return
        if seg.flags & Flags.ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, Flags.RST, 0)
        else:
            rst = TcpSegment(
                seg.dst_port,
                seg.src_port,
                0,
                (seg.seq + seg.seg_len) & MASK,
                Flags.RST | Flags.ACK,
                0,
            )
        self._drop(now, reason, src=ip.src, dst=ip.dst, segment=seg)
        tokens = min(
            RST_BURST, self._rst_tokens + (now - self._rst_refill) * RST_PER_SECOND / SECOND
        )
        self._rst_refill = now
        if tokens < 1:
            self._rst_tokens = tokens
            self._drop(now, "rst-rate-limited", src=ip.src, dst=ip.dst, segment=seg)
            return
        self._rst_tokens = tokens - 1
        self._emit(ip.dst, ip.src, PROTO_TCP, rst.build(ip.dst, ip.src))
        self.counters["rst_sent"] += 1
        self._tracer(
            TraceEvent(now, SEGMENT_OUT, None, {"segment": rst, "src": ip.dst, "dst": ip.src})
        )

    def _send_unreachable(
        self, code: int, ip: Ipv4Header, data: bytes | bytearray | memoryview, now: int
    ) -> None:
        """An ICMP destination unreachable about `data`, within the error rate limit
        (RFC 1812 §4.3.2.8, Linux icmp_msgs_per_sec and icmp_msgs_burst). Only called for
        a unicast packet to us from a unicast source, never about an ICMP message (RFC
        1122 §3.2.2)."""
        tokens = min(
            ICMP_ERROR_BURST,
            self._icmp_tokens + (now - self._icmp_refill) * ICMP_ERRORS_PER_SECOND / SECOND,
        )
        self._icmp_refill = now
        if tokens < 1:
            self._icmp_tokens = tokens
            self._drop(now, "icmp-rate-limited", src=ip.src, dst=ip.dst)
            return
        self._icmp_tokens = tokens - 1
        self._emit(ip.dst, ip.src, PROTO_ICMP, build_unreachable(code, data))
        self.counters["icmp_out"] += 1

    def _emit(self, src: Address, dst: Address, protocol: int, payload: bytes) -> None:
        self._outbox.append(self._ip(src, dst, protocol, payload))

    def _ip(self, src: Address, dst: Address, protocol: int, payload: bytes, ecn: int = 0) -> bytes:
        if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
            # IPv6 never fragments on the way (RFC 8200 §5): PMTU discovery is the rule.
            return Ipv6Header(src, dst, protocol, TTL, ecn).build(payload)
        assert isinstance(src, IPv4Address) and isinstance(dst, IPv4Address)
        ident = self._next_ident(src, dst, protocol)
        return Ipv4Header(src, dst, protocol, TTL, ecn, ident, self._df(dst)).build(payload)

    def _df(self, dst: IPv4Address) -> bool:
        """DF set: we do path MTU discovery (RFC 1191) and never fragment; towards a peer
        whose path reported less than PMTU_FLOOR, routers may fragment (Linux's lock)."""
        learned = self._pmtu.get(dst) if self._pmtu else None
        return learned is None or not learned.locked

    def _offloaded(
        self, src: Address, dst: Address, seg: TcpSegment, flow: int | None = None
    ) -> Packet:
        """A segment for a link that finishes checksums and cuts super-segments: the
        headers built here (the IP header checksum is ours, the TCP one partial), the
        payload passed on unjoined; GSO when it is larger than its gso_size. `flow`, a
        connection id: its IPv4 segments without options but timestamps (nearly all
        of a transfer: data and ACKs) come from its HeaderTemplate, the same bytes."""
        payload = seg.payload
        gso = seg.gso_size if len(payload) > seg.gso_size > 0 else 0
        ecn = ECT0 if type(seg) is EctSegment else 0  # RFC 3168 §6.1.1
        if (
            flow is not None
            and seg.mss is None
            and seg.wscale is None
            and not seg.sack
            and not seg.sack_permitted
            and not seg.urgent
            and isinstance(src, IPv4Address)
            and isinstance(dst, IPv4Address)
        ):
            head = self._from_template(flow, src, dst, seg, ecn, seg.gso_segs if gso else 1)
            if gso:
                oc = self.offload_counters
                oc["gso_packets_out"] += 1
                oc["gso_segments_out"] += seg.gso_segs
            return Packet(
                head,
                payload,
                gso_type=GSO_TCPV4 if gso else GSO_NONE,
                gso_size=gso,
                needs_csum=True,
                csum_start=IPV4_HEADER_LEN,
                csum_offset=TCP_CSUM_OFFSET,
            )
        tcp = seg.build_header(src, dst, partial=True)
        length = len(tcp) + len(payload)
        if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
            ip = Ipv6Header(src, dst, PROTO_TCP, TTL, ecn).build_header(length)
            gso_type = GSO_TCPV6
        else:
            assert isinstance(src, IPv4Address) and isinstance(dst, IPv4Address)
            # Each segment the kernel cuts takes the next identification (tcp_gso_segment).
            ident = self._next_ident(src, dst, PROTO_TCP, seg.gso_segs if gso else 1)
            df = self._df(dst)
            ip = Ipv4Header(src, dst, PROTO_TCP, TTL, ecn, ident, df).build_header(20 + length)
            gso_type = GSO_TCPV4
        if gso:
            oc = self.offload_counters
            oc["gso_packets_out"] += 1
            oc["gso_segments_out"] += seg.gso_segs
        return Packet(
            ip + tcp,
            payload,
            gso_type=gso_type if gso else GSO_NONE,
            gso_size=gso,
            needs_csum=True,
            csum_start=len(ip),
            csum_offset=TCP_CSUM_OFFSET,
        )

    def _from_template(
        self, flow: int, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, tos: int,
        count: int,
    ) -> bytes:  # fmt: skip
        """Connection `flow`'s headers for `seg` from its template (made, or made again
        when DF or the timestamps option changed); the identification as _next_ident."""
        templates = self._templates
        kept = templates.get(flow)
        has_ts = seg.timestamps is not None
        df = self._df(dst)
        if kept is None or kept[0].timestamps != has_ts or kept[0].dont_fragment != df:
            if len(templates) >= TEMPLATES:
                templates.clear()  # a cache only
            template = HeaderTemplate(src, dst, seg.src_port, seg.dst_port, ttl=TTL,
                                      dont_fragment=df, timestamps=has_ts)  # fmt: skip
            kept = templates[flow] = (template, self._ident_bucket_of(src, dst, PROTO_TCP))
        template, bucket = kept
        idents = self._idents
        ident = idents[bucket]
        idents[bucket] = (ident + count) & 0xFFFF
        return template.build(len(seg.payload), ident, seg.seq, seg.ack, seg.flags, seg.window,
                              seg.timestamps, tos)  # fmt: skip

    def _next_ident(
        self, src: IPv4Address, dst: IPv4Address, protocol: int, count: int = 1
    ) -> int:
        """The IPv4 ID for the next packet of this flow: its bucket's counter, which moves
        on by `count` (the segments a GSO super-segment is cut into take one each)."""
        bucket = self._ident_bucket_of(src, dst, protocol)
        idents = self._idents
        ident = idents[bucket]
        idents[bucket] = (ident + count) & 0xFFFF
        return ident

    def _ident_bucket_of(self, src: IPv4Address, dst: IPv4Address, protocol: int) -> int:
        """The identification counter a flow uses: chosen by a keyed hash of it."""
        flow = (src, dst, protocol)
        bucket = self._ident_bucket.get(flow)
        if bucket is None:
            if len(self._ident_bucket) >= IP_IDENTS:
                self._ident_bucket.clear()  # a cache only: a flood of sources cannot grow it
            digest = blake2s(
                src.packed + dst.packed + bytes((protocol,)), key=self._ident_key, digest_size=4
            ).digest()
            bucket = int.from_bytes(digest, "big") % IP_IDENTS
            self._ident_bucket[flow] = bucket
        return bucket

    def _drop(self, now: int, reason: str, **fields: Any) -> None:
        drops = self.counters["drops"]
        drops[reason] = drops.get(reason, 0) + 1
        self._tracer(TraceEvent(now, DROP, None, {"reason": reason, **fields}))
