"""`pytcp script FILE.pkt...`: packetdrill scenarios against pytcp (virtual clock) and
the Linux kernel. Imports click, `pytcpcli.errors`, `pytcpcli.scripting` (targets that
need I/O) and `stack.script` (language, runner, report); no protocol logic lives here.
"""

from __future__ import annotations

import json
import sys

import click

from pytcpcli.errors import EXIT_CONN, EXIT_OK, CliError
from pytcpcli.scripting import TARGETS, run_script

EXIT_STATUS = """\
0  every script passed on every target.
1  a script failed (or could not be read or run) on a target.
2  usage error.
3  environment: the linux target needs root (CAP_NET_ADMIN) for its namespace.
130  interrupted by SIGINT.
143  terminated by SIGTERM (129 SIGHUP; 128 + N for any signal that ends a process).
"""

EXAMPLES = """\
Run the corpus against pytcp's stack on a virtual clock, a line per script:
  pytcp script tests/scripts/*.pkt
Show every line of one scenario with the TCB fields it changed:
  pytcp script -v --tcb tests/scripts/rto-backoff.pkt
The same script against pytcp and the Linux kernel, side by side:
  pytcp script --against pytcp,linux tests/scripts/fast-retransmit.pkt
The corpus scenario on pytcp's stack over a real TUN, in real time:
  pytcp script --against pytcp-tun tests/scripts/keepalive.pkt
JUnit XML for a dashboard, JSON for a script:
  pytcp script --junit results.xml --json tests/scripts/*.pkt
"""

NOTES = """\
The language is packetdrill's (gtests/net/packetdrill in google/packetdrill). A script
starts with option lines (--tolerance_usecs=N, --tolerance_percent=P, --ip_version=ipv4|
ipv6, --tcp_ts_tick_usecs=N, --bind_port=N, --connect_port=N, --mtu=N,
--strict_segments, --define=NAME=VALUE), then an optional init command in backquotes,
then events, one per line: a time and an action, then an optional cleanup command.

Times: 0.100 is absolute (seconds from the first event, which must be at 0); +0.1 is
relative to the end of the previous event (an outbound segment: the time it left, as
stamped, however late the runner got it; an inbound segment after an inbound segment: to
that segment's time); * is any time; 0.1~0.2 and +0.1~+0.2 are ranges (outbound
segments only). A call with +0...0.2 starts at +0 and must return at 0.2 (it may block
meanwhile; later lines run while it does). An event is on time within the larger of
--tolerance_usecs (default 4000) and --tolerance_percent (12.5) of the gap since the
previous event; a blocking call's return within the larger of --tolerance_usecs and
--tolerance_percent of the call's own span (start to end time), as packetdrill.

Segments: < is injected into the stack under test, > is expected from it:
  < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
  > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
Flags are letters F S R P U E (ECE) W (CWR) and . (ACK), - for none. start:end(len)
are sequence numbers relative to the sender's ISN (the peer's ISN is what its SYN says;
the stack's is learned from its SYN or SYN-ACK) and must agree. ack N, win N (required
on < lines; on > lines checked only when written), urg N. SRC>DST before the flags
(< 48001>8080 S ...) names the connection's ports, for scripts with several. Options,
in order and compared in order: nop, eol, mss N, wscale N, sackOK, sack L:R..., TS val N
ecr N; <...> on > lines is "any options"; md5, FO and FOEXP are read but not modelled
(the line fails).
An inbound TS ecr names an outbound TS val seen before and is sent as the stack's real
value; an outbound ecr is checked exactly (packetdrill does not check it); an outbound
TS val only with --tcp_ts_tick_usecs. A > segment may arrive as several consecutive
segments that add up to it (what TSO would have sent as one), unless --strict_segments.
[ect0] [ect1] [ce] [noecn] after the direction set or check the IP ECN bits ([ect01] on
> lines: either ECT); other IP header details ((tos ...), ipv4/ipv6/gre/mpls/udp
encapsulation) are errors at their line.
  < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]
injects an ICMP error quoting the stack's segment 1:1461; types unreachable (codes
net_unreachable, host_unreachable, protocol_unreachable, port_unreachable,
frag_needed, ...), packet_too_big (IPv6), time_exceeded.

Calls, written NAME(ARG, ...) = RESULT [ERRNO [(note)]], where ... is any argument
or result and {name=value, ...} a struct: socket, bind and connect (... or
{sa_family=AF_INET, sin_port=htons(N), sin_addr=inet_addr("A")}: pytcp binds only its
own address or 0.0.0.0, else EADDRNOTAVAIL, and connects only to the script's peer),
listen, accept, accept4 (SOCK_NONBLOCK, SOCK_CLOEXEC), connect (EINPROGRESS with
O_NONBLOCK set by fcntl F_SETFL or SOCK_NONBLOCK), setsockopt and getsockopt
(SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_ERROR, SO_LINGER {onoff=1, linger=0},
SO_SNDBUF and SO_RCVBUF (before listen() or connect() on pytcp), TCP_NODELAY,
TCP_MAXSEG, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_LINGER2 (0 or more
seconds), TCP_INQ), write, send, writev, sendmsg (linux target only), read, recv
(MSG_PEEK, MSG_DONTWAIT), recvmsg (msg_iov's lengths; msg_flags and msg_control
checked when written, e.g. TCP_INQ's {cmsg_level=SOL_TCP,
cmsg_type=TCP_CM_INQ, cmsg_data=N}: the bytes left to read, the FIN counting one),
shutdown, close, poll (POLLIN, POLLRDNORM, POLLOUT, POLLWRNORM, POLLRDHUP; POLLERR,
POLLHUP and POLLNVAL always), ioctl (SIOCINQ, SIOCOUTQ), fcntl. The return value and errno
(= -1 ECONNREFUSED) are checked; [N] arguments of getsockopt, ioctl and poll's
revents too. A shell command in backquotes runs with sh;
a failing one fails the script (--skip-shell skips them). Anything pytcp cannot model
(another call, option or flag, %{ }% code blocks, UDP, MSG_MORE, TCP_CORK, fast open)
fails the script at its line: nothing is passed over silently.

Targets (--against, comma-separated, default pytcp):
pytcp  pytcp's own stack, sans-IO, on a virtual clock: a 3 s RTO costs no time and
    every run is the same. The stack is 10.77.250.2 (fd77:250::2), the script's peer
    10.77.250.1 (fd77:250::1), port 8080 (--bind_port/--connect_port). Shell lines
    run in a network namespace of their own (unshare -n), so a script's sysctls never
    touch the host; without root they are skipped with a note. With --tcb every line
    shows the TCB fields it changed (sequence numbers relative to the ISNs) and a
    failure shows the whole TCB; injected segments the stack dropped say why.
linux  the Linux kernel's TCP in a throwaway network namespace (needs root): the
    script's calls are made on real sockets there, its < segments are written into a
    TUN (tun0, 10.77.250.2/24, peer 10.77.250.1) and its > segments read from it, in
    real time, as packetdrill does. tun0 has TSO and checksum offload on, as
    packetdrill's: the kernel's segments are read as it sends them, TSO
    super-packets included (consecutive segments add up to a larger > line, a larger
    one does not match a smaller). Outbound segments are stamped by the kernel
    (SO_TIMESTAMPNS on an AF_PACKET socket). Shell lines run inside that namespace.
    A %{ }% block reads the socket's tcp_info at its line's time; its Python runs
    with python3 after the script's last event, as packetdrill does (a failing
    assert fails the block's line), so it never holds up the lines after it.
pytcp-tun  pytcp's stack in real time over a real TUN (tun0, pytcp 10.77.250.2, the
    kernel side 10.77.250.1) in a throwaway namespace (needs root), its loop in a
    thread of its own; the script's peer is 10.77.250.9, whose segments are put on
    tun0 and read back through AF_PACKET sockets; a < segment longer than the MTU
    goes in as a GSO super-packet (virtio-net header, TSO4/TSO6) and reaches pytcp
    whole, as receive offload would hand it; anything else that large fails its line.
    The calls are the pytcp target's model; --tcb works here too.
The linux target makes each call in a thread of its own; past a blocking call (one
with an end time) the script goes on once that thread has returned or sleeps in the
kernel, as packetdrill's does, and the return is stamped as the call comes back.
Several targets print one verdict each, then line by line where they agree and where
they differ: for each line they part on (the first five), what each target did
there (ok, what came or what the call returned; FAIL and why; not reached). The real-time
targets take the script's times as they are; their runner runs at the lowest
real-time priority (SCHED_RR), as packetdrill does, so that it acts on time on a busy
machine. A stack busy elsewhere can still make a line late: raise --tolerance-usecs
there.

Output: a line per script (PASS or FAIL and the first failure: FILE:LINE, what was
expected and what came; against pytcp also "tcb involved:", the TCB fields the failed
check is about, e.g. rcv_nxt for a bad ack, snd_una/snd_nxt/snd_max for a bad seq,
rto, srtt, backoff and the timers for a segment that came late or never, then "tcb
now:", the main fields); -v every line with what happened; --json one object per script
and target on stdout; --junit FILE a JUnit XML report.
"""


def _targets(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in TARGETS:
            raise click.BadParameter(f"unknown target {n!r} (choose from {', '.join(TARGETS)})")
    if not names:
        raise click.BadParameter("no target given")
    return list(dict.fromkeys(names))


@click.command(short_help="Run packetdrill scripts against pytcp and the Linux kernel.")
@click.argument(
    "files", metavar="FILE.pkt...", nargs=-1, required=True, type=click.Path(dir_okay=False)
)
@click.option(
    "--against",
    "against",
    default="pytcp",
    metavar="TARGET[,TARGET]",
    help=f"Where to run: {', '.join(TARGETS)} (comma-separated; default pytcp).",
)
@click.option("--tcb", is_flag=True, help="Show the TCB fields each line changed (pytcp target).")
@click.option("-v", "--verbose", is_flag=True, help="Show every line, not only failures.")
@click.option("--skip-shell", is_flag=True, help="Do not run the scripts' shell commands.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per script and target on stdout."
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Write a JUnit XML report to FILE.",
)
@click.option(
    "--tolerance-usecs",
    type=click.IntRange(min=0),
    metavar="N",
    help="Override the scripts' --tolerance_usecs.",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="pytcp target: the stack's random seed."
)
def script(
    files: tuple[str, ...],
    against: str,
    tcb: bool,
    verbose: bool,
    skip_shell: bool,
    as_json: bool,
    junit: str | None,
    tolerance_usecs: int | None,
    seed: int,
) -> int:
    """Run packetdrill-syntax scripts FILE.pkt... against pytcp's TCP on a virtual clock,
    or the Linux kernel's in a throwaway namespace, or both side by side.

    Each script is socket calls with their expected returns, segments injected into
    the stack (<) and segments it must send (>), each at a time. A script passes when
    every line happens as written, within the tolerance. The grammar and what each
    target does are in pytcp-script(1).
    """
    from stack.script.report import render_text, side_by_side, to_json, to_junit

    try:
        targets = _targets(against)
    except click.BadParameter as exc:
        raise click.UsageError(f"--against: {exc.message}") from None
    overrides = {} if tolerance_usecs is None else {"tolerance_usecs": str(tolerance_usecs)}
    results = []
    seconds: dict[str, float] = {}
    failed = False
    for path in files:
        per = []
        for target in targets:
            result, took = run_script(
                path, target, overrides=overrides, skip_shell=skip_shell, tcb=tcb, seed=seed
            )
            seconds[f"{target}:{path}"] = took
            per.append(result)
            results.append(result)
            failed |= not result.ok and not result.skipped
            if as_json:
                click.echo(json.dumps(to_json(result)))
            else:
                click.echo(render_text(result, verbose=verbose, tcb=tcb), err=False)
        if len(per) > 1 and not as_json:
            click.echo(side_by_side(per))
    if junit:
        try:
            with open(junit, "w", encoding="utf-8") as f:
                f.write(to_junit(results, seconds))
        except OSError as exc:
            raise CliError(f"cannot write {junit}: {exc.strerror}", EXIT_CONN) from None
    sys.stdout.flush()
    return EXIT_CONN if failed else EXIT_OK
