"""Per-connection tunables with Linux-like defaults. Imports tcp.clock."""

from __future__ import annotations

from dataclasses import dataclass

from stack.tcp.clock import MS, SECOND


@dataclass(frozen=True)
class TcpConfig:
    mss: int | None = None  # None: link MTU - 40 (RFC 9293 §3.7.1)
    rcv_buf: int = 256 * 1024
    # Receive autotuning (Linux tcp_moderate_rcvbuf) grows the buffer up to this, so the
    # window never limits a fast path; the window scale is chosen for it.  <= rcv_buf: off.
    rcv_buf_max: int = 6 * 1024 * 1024  # Linux tcp_rmem[2]
    snd_buf: int = 256 * 1024
    wscale: bool = True  # RFC 7323 §2
    sack: bool = True  # RFC 2018 SACK-permitted; we generate SACK blocks as receiver
    timestamps: bool = True  # RFC 7323 §3
    cc: str = "cubic"  # RFC 9438, Linux's default
    rack: bool = True  # RFC 8985 RACK-TLP loss detection (Linux tcp_recovery & 1)
    ecn: bool = False  # ask for ECN (RFC 3168) in our SYN; a peer's request is always
    # accepted, as Linux's default net.ipv4.tcp_ecn = 2
    nodelay: bool = False  # Nagle on, as a Linux socket without TCP_NODELAY (RFC 9293 3.7.4)
    rto_initial: int = 1 * SECOND  # RFC 6298 (2.1)
    rto_min: int = 200 * MS  # Linux; RFC 6298 (2.4) says 1 s
    rto_max: int = 120 * SECOND  # RFC 6298 (2.5)
    syn_retries: int = 6  # Linux tcp_syn_retries: ~127 s
    synack_retries: int = 5  # Linux tcp_synack_retries
    retries: int = 15  # Linux tcp_retries2: data RTOs before "timed out"
    msl: int = 30 * SECOND  # TIME-WAIT = 2·MSL = 60 s, as Linux
    fin_wait_2_timeout: int = 60 * SECOND  # Linux tcp_fin_timeout
    delayed_ack: int = 40 * MS  # Linux's minimum delayed-ACK time; RFC 9293 3.8.6.3 < 0.5 s
    keepalive_idle: int | None = None  # off unless asked (RFC 1122 4.2.3.6)
    keepalive_interval: int = 75 * SECOND
    keepalive_probes: int = 9
    challenge_ack_interval: int = 500 * MS  # one challenge ACK per interval (RFC 5961 §7)
    # One ACK per interval in reply to unacceptable segments without data (out of window,
    # PAWS, a SYN again in SYN-RECEIVED): Linux net.ipv4.tcp_invalid_ratelimit.
    invalid_ack_interval: int = 500 * MS
    journal: int = 64  # segments the journal keeps (`inspect ID --journal`); 0: none
