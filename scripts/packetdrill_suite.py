"""Real scripts from packetdrill's own Linux suite, run unmodified against the Linux
kernel with `pytcp script --against linux`, beside packetdrill's own verdict (issue 11).

    .venv/bin/python scripts/packetdrill_suite.py TREE                # pytcp's verdicts
    .venv/bin/python scripts/packetdrill_suite.py TREE --packetdrill BIN   # and packetdrill's

TREE is a checkout of google/packetdrill's gtests/net/tcp (its scripts are read there,
never copied here; their helper files, ../common/defaults.sh, beside them). BIN is a
packetdrill binary built from that checkout: each script then runs under it too, in a
network namespace of its own (unshare -n, root) with the addresses in 10.77.251.0/24
and 10.77.252.1 as the peer, and the two verdicts are compared: both pass, or both fail
at the same line. Without BIN the expected verdict is a pass (the suite's scripts pass
on the kernels packetdrill targets). Exit 0 when every script gives the expected verdict.

The scripts chosen test RFC behaviour (handshake, close, shutdown, RFC 5681 slow
start, RFC 6675/6937 recovery, RFC 3042, RFC 7323, RFC 3168, RFC 5482, MSS, blocking
calls, Nagle) through the calls the linux target makes; left out are the directories
of Linux features and interfaces rather than TCP's behaviour (fastopen, zerocopy,
epoll, md5, timestamping, splice, sendfile, eor, notsent_lowat, tcp_info,
cwnd_moderation, gro, mtu_probe, syscall_bad_arg).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pytcpcli.scripting import run_script

# The chosen scripts, by their path under gtests/net/tcp.
SCRIPTS = [
    "blocking/blocking-accept.pkt",
    "blocking/blocking-connect.pkt",
    "blocking/blocking-read.pkt",
    "blocking/blocking-write.pkt",
    "close/close-local-close-then-remote-fin.pkt",
    "close/close-on-syn-sent.pkt",
    "close/close-remote-fin-then-close.pkt",
    "cubic/cubic-bulk-166k-idle-restart.pkt",
    "cubic/cubic-bulk-166k.pkt",
    "cubic/cubic-hystart-delay-min-rtt-jumps-downward.pkt",
    "cubic/cubic-hystart-delay-rtt-jumps-upward.pkt",
    "cubic/cubic-rack-reo-timeout-retrans-failed-incoming-data.pkt",
    "cubic/cubic-rto-ss-ca-cwnd-bump.pkt",
    "ecn/ecn-uses-ect0.pkt",
    "fast_recovery/prr-ss-10pkt-lost-1.pkt",
    "fast_recovery/prr-ss-30pkt-lost-1_4-11_16.pkt",
    "fast_recovery/prr-ss-30pkt-lost1_4.pkt",
    "fast_recovery/prr-ss-ack-below-snd_una-cubic.pkt",
    "fast_retransmit/fr-4pkt-fack-last-byte.pkt",
    "fast_retransmit/fr-4pkt-fack-last-mss.pkt",
    "fast_retransmit/fr-4pkt-sack.pkt",
    "fast_retransmit/fr-4pkt.pkt",
    "inq/client.pkt",
    "inq/server.pkt",
    "ioctl/ioctl-siocinq-fin.pkt",
    "limited_transmit/limited-transmit-no-sack.pkt",
    "limited_transmit/limited-transmit-sack.pkt",
    "mss/mss-getsockopt-tcp_maxseg-server.pkt",
    "mss/mss-setsockopt-tcp_maxseg-client.pkt",
    "mss/mss-setsockopt-tcp_maxseg-server.pkt",
    "nagle/https_client.pkt",
    "nagle/sendmsg_msg_more.pkt",
    "nagle/sockopt_cork_nodelay.pkt",
    "sack/sack-route-refresh-ip-tos.pkt",
    "sack/sack-shift-sacked-2-6-8-3-9-nofack.pkt",
    "sack/sack-shift-sacked-7-3-4-8-9-fack.pkt",
    "sack/sack-shift-sacked-7-5-6-8-9-fack.pkt",
    "shutdown/shutdown-rd-close.pkt",
    "shutdown/shutdown-rd-wr-close.pkt",
    "shutdown/shutdown-rdwr-close.pkt",
    "shutdown/shutdown-rdwr-send-queue-ack-close.pkt",
    "shutdown/shutdown-rdwr-write-queue-close.pkt",
    "shutdown/shutdown-wr-close.pkt",
    "slow_start/slow-start-ack-per-1pkt.pkt",
    "slow_start/slow-start-ack-per-2pkt-send-5pkt.pkt",
    "slow_start/slow-start-ack-per-2pkt-send-6pkt.pkt",
    "slow_start/slow-start-ack-per-2pkt.pkt",
    "slow_start/slow-start-ack-per-4pkt.pkt",
    "slow_start/slow-start-after-idle.pkt",
    "slow_start/slow-start-after-win-update.pkt",
    "slow_start/slow-start-app-limited-9-packets-out.pkt",
    "slow_start/slow-start-app-limited.pkt",
    "slow_start/slow-start-fq-ack-per-2pkt.pkt",
    "ts_recent/fin_tsval.pkt",
    "ts_recent/invalid_ack.pkt",
    "ts_recent/reset_tsval.pkt",
    "user_timeout/user-timeout-probe.pkt",
    "user_timeout/user_timeout.pkt",
    "validate/validate-established-no-flags.pkt",
]
PACKETDRILL_ADDRESSES = [
    "--local_ip=10.77.251.2",
    "--gateway_ip=10.77.251.1",
    "--netmask_ip=255.255.255.0",
    "--remote_ip=10.77.252.1",
]
PACKETDRILL_TIMEOUT = 300  # seconds one script may take under packetdrill


@dataclass
class Verdict:
    ok: bool
    line: int | None  # the failing line, when packetdrill or pytcp names one
    text: str

    def show(self) -> str:
        return "PASS" if self.ok else f"FAIL at {self.line}" if self.line else "FAIL"


def _line_of(text: str, name: str) -> int | None:
    m = re.search(re.escape(name) + r":(\d+):", text)
    return int(m.group(1)) if m else None


def pytcp_verdict(path: Path) -> Verdict:
    result, _ = run_script(str(path), "linux")
    return Verdict(result.ok, _line_of(result.error, path.name), result.error)


def packetdrill_verdict(binary: str, path: Path) -> Verdict:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("packetdrill_suite: unshare(1) is needed to run packetdrill")
    inner = "ip link set lo up && exec " + " ".join(
        ["timeout", str(PACKETDRILL_TIMEOUT), binary, *PACKETDRILL_ADDRESSES, path.name]
    )
    try:
        done = subprocess.run(
            [unshare, "--net", "--", "sh", "-c", inner],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=PACKETDRILL_TIMEOUT + 30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Verdict(False, None, "timed out")
    out = done.stdout + done.stderr
    return Verdict(done.returncode == 0, _line_of(out, path.name), out.strip())


def agree(ours: Verdict, theirs: Verdict) -> bool:
    return ours.ok == theirs.ok and (ours.ok or ours.line == theirs.line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", type=Path, help="google/packetdrill's gtests/net/tcp")
    ap.add_argument("--packetdrill", metavar="BIN", help="packetdrill binary to compare with")
    ap.add_argument("scripts", nargs="*", help="run these of the chosen scripts only")
    args = ap.parse_intermixed_args(argv)
    if os.geteuid() != 0:
        print("packetdrill_suite: the linux target needs root", file=sys.stderr)
        return 3
    names = args.scripts or SCRIPTS
    matched = 0
    for name in names:
        path = args.tree / name
        if not path.is_file():
            print(f"{name}: missing from {args.tree}", file=sys.stderr)
            return 2
        ours = pytcp_verdict(path)
        if args.packetdrill:
            theirs = packetdrill_verdict(args.packetdrill, path)
        else:
            theirs = Verdict(True, None, "")
        same = agree(ours, theirs)
        matched += same
        print(
            f"{'same' if same else 'DIFF'}  {name}: packetdrill {theirs.show()}, "
            f"pytcp --against linux {ours.show()}",
            flush=True,
        )
        if not same:
            for who, v in (("packetdrill", theirs), ("pytcp", ours)):
                lines = v.text.splitlines()
                if lines:
                    said = next((ln for ln in lines if f"{path.name}:" in ln), lines[-1])
                    print(f"      {who}: {said[:200]}")
    print(f"{matched} of {len(names)} scripts give packetdrill's verdict")
    return 0 if matched == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
