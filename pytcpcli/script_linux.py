"""The `linux` target of `pytcp script`: the Linux kernel's TCP in a throwaway network
namespace, driven as packetdrill drives it. Imports the standard library and
stack.script; it uses sockets, a TUN device, threads and real time.

`run_in_namespace` forks a child that unshares its network namespace (so the namespace
dies with it: nothing to clean up, even on SIGKILL), creates tun0 there with the
kernel at 10.77.250.2/24 (fd77:250::2/64) and the script's peer at 10.77.250.1 beyond
it, and runs the script: calls on real sockets, `<` segments written into the TUN (the
kernel receives them), `>` segments read from it. The result comes back over a pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as E
import fcntl
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pytcpcli.scripting import CaptureQueue, RealTimeTarget, capture_socket, kernel_stamp
from stack.script.calls import (
    CallOutcome,
    errno_name,
    list_int,
    recvmsg_problems,
    recvmsg_spec,
    struct_field,
    symbol,
)
from stack.script.model import Expr, Script, Syscall
from stack.script.packets import parse_tcp_packet
from stack.script.parser import ScriptError
from stack.script.runner import Captured, Config, Runner, ScriptResult

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
# What packetdrill's tun0 offers (netdev.c set_device_offload_flags), "like a typical
# ethernet device": the kernel then sends TSO super-packets, which scripts written for
# packetdrill expect (and the runner joins consecutive segments into, as packetdrill).
TUN_OFFLOADS = 0x01 | 0x02 | 0x04 | 0x08  # TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
VNET_HDR = bytes(10)  # struct virtio_net_hdr of an injected packet: no GSO, checksum done
LOCAL_V4 = IPv4Address("10.77.250.2")  # the kernel under test
REMOTE_V4 = IPv4Address("10.77.250.1")  # the script's peer, on the TUN's far side
LOCAL_V6 = IPv6Address("fd77:250::2")
REMOTE_V6 = IPv6Address("fd77:250::1")
PACKET_OUTGOING = 4
TUN_NAME = "tun0"  # packetdrill's name: scripts' shell lines say `tc ... dev tun0`
CALL_WAIT = 1.0  # seconds a call without an end time may take before it "blocks"
BLOCK_POLL = 0.0001  # seconds between looks at whether a blocking call's thread sleeps
BLOCK_FALLBACK = 0.002  # seconds a blocking call is given when /proc cannot say
CHILD_TIMEOUT = 300.0  # seconds one script may run in its namespace


class LinuxTarget(RealTimeTarget):
    """The kernel of the current (private) network namespace, through tun0."""

    name = "linux"

    def __init__(self, config: Config) -> None:
        self.cfg = config
        v6 = config.ip_version == "ipv6"
        self.local_ip: IPv4Address | IPv6Address = LOCAL_V6 if v6 else LOCAL_V4
        self.remote_ip: IPv4Address | IPv6Address = REMOTE_V6 if v6 else REMOTE_V4
        self.family = socket.AF_INET6 if v6 else socket.AF_INET
        self.tun = open_tun(TUN_NAME)
        configure(TUN_NAME, config.mtu)
        # What the kernel sends is read from an AF_PACKET socket on tun0, stamped by the
        # kernel (SO_TIMESTAMPNS) as it leaves: the time is the kernel's, not when a busy
        # machine got round to running the reader thread. The TUN is drained beside it.
        self.cap = capture_socket(TUN_NAME)
        self.t0 = time.monotonic_ns()
        self.captured = CaptureQueue(self.now)
        self.stop = False
        self.reader = threading.Thread(target=self._read, name="tun-reader", daemon=True)
        self.reader.start()
        self.pending: list[tuple[Syscall, threading.Thread, list[CallOutcome]]] = []

    # -- time and packets -----------------------------------------------------------

    def start_clock(self) -> None:
        self.captured.clear()  # what the kernel said while tun0 came up is no script's
        self.t0 = time.monotonic_ns()

    def now(self) -> int:
        return (time.monotonic_ns() - self.t0) // 1000

    def _read(self) -> None:
        while not self.stop:
            ready, _, _ = select.select([self.tun, self.cap.fileno()], [], [], 0.05)
            if self.tun in ready:
                try:
                    os.read(self.tun, 65535)
                except OSError:
                    return
            if self.cap.fileno() not in ready:
                continue
            try:
                data, ancillary, _, addr = self.cap.recvmsg(65535, 256)
            except OSError:
                return
            if addr[2] != PACKET_OUTGOING:
                continue  # what we injected, seen coming in
            at = kernel_stamp(ancillary, self.t0)
            seg = parse_tcp_packet(data)
            if seg is None or seg.src != self.local_ip:
                continue  # neighbour discovery, MLD, ...
            self.captured.put(Captured(self.now() if at is None else at, data))

    def inject(self, packet: bytes) -> list[str]:
        os.write(self.tun, VNET_HDR + packet)
        return []

    def tcb(self) -> dict[str, Any] | None:
        return None

    def tcp_info(self, handle: Any) -> dict[str, int]:
        """The socket's struct tcp_info (linux/tcp.h) by packetdrill's variable names."""
        raw = handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)
        return parse_tcp_info(raw)

    def close(self) -> None:
        self.stop = True
        self.reader.join(1.0)
        self.cap.close()
        os.close(self.tun)

    # -- calls ----------------------------------------------------------------------

    def call(self, call: Syscall, fds: dict[int, Any], blocking_ok: bool) -> CallOutcome | None:
        handler = getattr(self, "_call_" + call.name, None)
        if handler is None:
            raise ScriptError("", 0, f"{call.name}() is not supported by the linux target")
        box: list[CallOutcome] = []
        entered = threading.Event()

        def work() -> None:
            entered.set()
            try:
                out = handler(call.args, fds)
            except ScriptError as exc:
                out = CallOutcome(-2, detail=exc.message)
            except OSError as exc:
                out = CallOutcome(-1, errno_name(exc.errno or E.EIO))
            out.at = self.now()
            box.append(out)

        th = threading.Thread(target=work, name=call.name, daemon=True)
        th.start()
        if blocking_ok:
            await_block_or_return(th, entered)
        else:
            th.join(CALL_WAIT)
        if th.is_alive():
            if not blocking_ok:
                raise ScriptError(
                    "", 0, f"{call.name}() blocked; give it an end time (+0...T) if it should"
                )
            self.pending.append((call, th, box))
            return None
        out = box[0]
        if out.ret == -2:
            raise ScriptError("", 0, out.detail)
        return out

    def completed(self) -> list[tuple[Syscall, CallOutcome]]:
        done = []
        for item in list(self.pending):
            call, th, box = item
            if not th.is_alive():
                self.pending.remove(item)
                done.append((call, box[0]))
        return done

    def _sock(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> socket.socket:
        s = fds.get(symbol(args[0]))
        if not isinstance(s, socket.socket):
            raise OSError(E.EBADF, "bad fd")
        return s

    def _addr(self, e: Expr | None, default_port: int, default_ip: Any) -> tuple[str, int]:
        port = default_port
        ip = str(default_ip)
        if e is not None and e.kind == "struct":
            p = struct_field(e, "sin_port") or struct_field(e, "sin6_port")
            if p is not None:
                port = symbol(p.items[0]) if p.kind == "call" and p.items else symbol(p)
            a = struct_field(e, "sin_addr") or struct_field(e, "sin6_addr")
            if a is not None and a.kind == "call" and a.items and a.items[0].kind == "string":
                ip = a.items[0].name
        return ip, port

    def _call_socket(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        family = self.family if args[0].kind == "ellipsis" else symbol(args[0])
        kind = symbol(args[1])
        proto = symbol(args[2]) if args[2].kind != "ellipsis" else 0
        s = socket.socket(family, kind, proto)
        return CallOutcome(0, handle=s)

    def _call_fcntl(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        cmd = symbol(args[1])
        if len(args) > 2:
            return CallOutcome(fcntl.fcntl(s.fileno(), cmd, symbol(args[2])))
        return CallOutcome(fcntl.fcntl(s.fileno(), cmd))

    def _call_setsockopt(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        level, name, value = symbol(args[1]), symbol(args[2]), args[3]
        if value.kind == "struct" and struct_field(value, "onoff") is not None:
            onoff, linger = struct_field(value, "onoff"), struct_field(value, "linger")
            assert onoff is not None and linger is not None
            s.setsockopt(level, name, struct.pack("ii", symbol(onoff), symbol(linger)))
        elif value.kind == "string":
            s.setsockopt(level, name, value.name.encode())
        else:
            v = list_int(value)
            if v is None:
                raise ScriptError("", 0, "setsockopt() needs a value [N]")
            s.setsockopt(level, name, v)
        return CallOutcome(0)

    def _call_getsockopt(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        level, name = symbol(args[1]), symbol(args[2])
        value = s.getsockopt(level, name)
        want = list_int(args[3]) if args[3].kind != "struct" else None
        problems = [] if want is None or want == value else [f"value is {value}, expected {want}"]
        return CallOutcome(0, problems=problems, detail=f"[{value}]")

    def _call_bind(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        s.bind(self._addr(args[1] if len(args) > 1 else None, self.cfg.bind_port, self.local_ip))
        return CallOutcome(0)

    def _call_listen(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        self._sock(args, fds).listen(symbol(args[1]))
        return CallOutcome(0)

    def _call_accept(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        conn, _ = self._sock(args, fds).accept()
        return CallOutcome(0, handle=conn)

    def _call_accept4(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        """accept4(fd, addr, len, flags): SOCK_NONBLOCK makes the new socket
        non-blocking (Python's accept() takes no flags; SOCK_CLOEXEC it sets anyway)."""
        flags = symbol(args[3]) if len(args) > 3 and args[3].kind != "ellipsis" else 0
        conn, _ = self._sock(args, fds).accept()
        if flags & socket.SOCK_NONBLOCK:
            conn.setblocking(False)
        return CallOutcome(0, handle=conn)

    def _call_connect(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        code = s.connect_ex(
            self._addr(args[1] if len(args) > 1 else None, self.cfg.connect_port, self.remote_ip)
        )
        return CallOutcome(0) if code == 0 else CallOutcome(-1, errno_name(code))

    def _call_write(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        return CallOutcome(os.write(s.fileno(), bytes(symbol(args[2]))))

    def _call_send(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        flags = symbol(args[3]) if len(args) > 3 and args[3].kind != "ellipsis" else 0
        return CallOutcome(s.send(bytes(symbol(args[2])), flags))

    def _iov(self, e: Expr) -> list[bytes]:
        if e.kind != "list":
            raise ScriptError("", 0, "expected [{..., N}, ...]")
        return [bytes(symbol(iov.items[-1])) for iov in e.items]

    def _call_writev(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        return CallOutcome(os.writev(s.fileno(), self._iov(args[1])))

    def _call_sendmsg(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        iov = struct_field(args[1], "msg_iov")
        if iov is None:
            raise ScriptError("", 0, "sendmsg() needs msg_iov")
        return CallOutcome(s.sendmsg(self._iov(iov), [], symbol(args[2])))

    def _call_read(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        return CallOutcome(len(os.read(s.fileno(), symbol(args[2]))))

    def _call_recv(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        flags = symbol(args[3]) if len(args) > 3 and args[3].kind != "ellipsis" else 0
        return CallOutcome(len(s.recv(symbol(args[2]), flags)))

    def _call_recvmsg(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        spec = recvmsg_spec(args)
        data, ancillary, msg_flags, _ = s.recvmsg(spec.length, socket.CMSG_SPACE(4) * 8, spec.flags)
        cmsgs = [
            (level, kind, int.from_bytes(raw[:4], sys.byteorder, signed=True))
            for level, kind, raw in ancillary
        ]
        return CallOutcome(len(data), problems=recvmsg_problems(spec, msg_flags, cmsgs))

    def _call_shutdown(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        self._sock(args, fds).shutdown(symbol(args[1]))
        return CallOutcome(0)

    def _call_close(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        fd = symbol(args[0])
        s = self._sock(args, fds)
        del fds[fd]
        s.close()
        return CallOutcome(0)

    def _call_ioctl(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        s = self._sock(args, fds)
        raw = fcntl.ioctl(s.fileno(), symbol(args[1]), b"\0\0\0\0")
        value = struct.unpack("i", raw)[0]
        want = list_int(args[2])
        problems = [] if want is None or want == value else [f"value is {value}, expected {want}"]
        return CallOutcome(0, problems=problems, detail=f"[{value}]")

    def _call_poll(self, args: tuple[Expr, ...], fds: dict[int, Any]) -> CallOutcome:
        p = select.poll()
        wanted = []
        for pfd in args[0].items:
            fd_e, ev_e = struct_field(pfd, "fd"), struct_field(pfd, "events")
            if fd_e is None or ev_e is None:
                raise ScriptError("", 0, "poll() entries are {fd=N, events=...}")
            s = fds.get(symbol(fd_e))
            rev = struct_field(pfd, "revents")
            if isinstance(s, socket.socket):
                p.register(s.fileno(), symbol(ev_e))
            wanted.append((s, None if rev is None else symbol(rev)))
        got = dict(p.poll(symbol(args[2])))
        problems = []
        for i, (s, want) in enumerate(wanted):
            r = got.get(s.fileno(), 0) if isinstance(s, socket.socket) else 0
            if want is not None and r != want:
                problems.append(f"revents of fd {i} is {r:#x}, expected {want:#x}")
        return CallOutcome(len(got), problems=problems)


def await_block_or_return(th: threading.Thread, entered: threading.Event) -> None:
    """Return once the call's thread `th` has finished, or is asleep in the kernel in
    its call -- what packetdrill's main thread waits for before it goes on past a
    blocking call (run_system_call.c enqueue_system_call: yield until the syscall
    thread is idle or sleeping). A thread asleep on a futex is waiting for the
    interpreter lock, not in the call: that is not blocking yet. Bounded by CALL_WAIT;
    while /proc cannot say, BLOCK_FALLBACK is given at most."""
    started = time.monotonic()
    while (waited := time.monotonic() - started) < CALL_WAIT:
        th.join(BLOCK_POLL)
        if not th.is_alive():
            return
        if not entered.is_set():
            continue
        asleep = asleep_in_call(th.native_id)
        if asleep or (asleep is None and waited >= BLOCK_FALLBACK):
            return


def asleep_in_call(tid: int | None) -> bool | None:
    """Whether thread `tid` of this process sleeps in a system call other than a futex
    wait (/proc/self/task/TID/stat and wchan). The files are not read at one instant:
    wchan is read before and after the state, and a thread that moved in between is
    not asleep yet. None when /proc cannot say (no tid, no files, or a kernel that
    names no wait channel)."""
    if tid is None:
        return None
    task = f"/proc/self/task/{tid}"
    try:
        with open(f"{task}/wchan", encoding="ascii") as f:
            before = f.read()
        with open(f"{task}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"{task}/wchan", encoding="ascii") as f:
            after = f.read()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    if state != "S" or before != after:
        return False
    if before in ("", "0"):
        return None
    return "futex" not in before


# struct tcp_info (linux/tcp.h), in order: (name, struct code); the two bit-field
# bytes are split in parse_tcp_info.
_U8 = ["state", "ca_state", "retransmits", "probes", "backoff", "options", "_wscale", "_flags"]
_U32_A = [
    "rto",
    "ato",
    "snd_mss",
    "rcv_mss",
    "unacked",
    "sacked",
    "lost",
    "retrans",
    "fackets",
    "last_data_sent",
    "last_ack_sent",
    "last_data_recv",
    "last_ack_recv",
    "pmtu",
    "rcv_ssthresh",
    "rtt",
    "rttvar",
    "snd_ssthresh",
    "snd_cwnd",
    "advmss",
    "reordering",
    "rcv_rtt",
    "rcv_space",
    "total_retrans",
]
_U64_A = ["pacing_rate", "max_pacing_rate", "bytes_acked", "bytes_received"]
_U32_B = ["segs_out", "segs_in", "notsent_bytes", "min_rtt", "data_segs_in", "data_segs_out"]
_U64_B = ["delivery_rate", "busy_time", "rwnd_limited", "sndbuf_limited"]
_TAIL = [
    ("delivered", "I"),
    ("delivered_ce", "I"),
    ("bytes_sent", "Q"),
    ("bytes_retrans", "Q"),
    ("dsack_dups", "I"),
    ("reord_seen", "I"),
    ("rcv_ooopack", "I"),
    ("snd_wnd", "I"),
    ("rcv_wnd", "I"),
    ("rehash", "I"),
    ("total_rto", "H"),
    ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"),
]
TCP_INFO_FIELDS = [
    (n if n.startswith("_") else f"tcpi_{n}", code)
    for group, code in ((_U8, "B"), (_U32_A, "I"), (_U64_A, "Q"), (_U32_B, "I"), (_U64_B, "Q"))
    for n in group
] + [(f"tcpi_{n}", code) for n, code in _TAIL]

# What packetdrill's code blocks may name besides tcpi_* (linux/tcp.h, linux/tcp_states.h).
CODE_CONSTANTS = {
    "TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3, "TCP_FIN_WAIT1": 4,
    "TCP_FIN_WAIT2": 5, "TCP_TIME_WAIT": 6, "TCP_CLOSE": 7, "TCP_CLOSE_WAIT": 8,
    "TCP_LAST_ACK": 9, "TCP_LISTEN": 10, "TCP_CLOSING": 11,
    "TCP_CA_Open": 0, "TCP_CA_Disorder": 1, "TCP_CA_CWR": 2, "TCP_CA_Recovery": 3,
    "TCP_CA_Loss": 4,
    "TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
    "TCPI_OPT_ECN_SEEN": 16, "TCPI_OPT_SYN_DATA": 32, "TCPI_OPT_USEC_TS": 64,
    "TCPI_OPT_TFO_CHILD": 128,
}  # fmt: skip


def parse_tcp_info(raw: bytes) -> dict[str, int]:
    """As many fields as the kernel filled in (older kernels give fewer)."""
    out: dict[str, int] = {}
    offset = 0
    for name, code in TCP_INFO_FIELDS:
        size = struct.calcsize(code)
        offset = (offset + size - 1) // size * size  # natural alignment
        if offset + size > len(raw):
            break
        (out[name],) = struct.unpack_from(code, raw, offset)
        offset += size
    wscale = out.pop("_wscale", 0)
    flags = out.pop("_flags", 0)
    out["tcpi_snd_wscale"] = wscale & 0x0F
    out["tcpi_rcv_wscale"] = wscale >> 4
    out["tcpi_delivery_rate_app_limited"] = flags & 1
    out["tcpi_fastopen_client_fail"] = (flags >> 1) & 3
    return out


def code_runner(block: str, variables: dict[str, int]) -> tuple[int, str]:
    """Run a %{ }% block with python3 in a process of its own, as packetdrill does."""
    lines = [f"{k} = {v}" for k, v in {**CODE_CONSTANTS, **variables}.items()]
    program = "\n".join([*lines, block.replace("\\\n", " "), ""])
    try:
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return 124, "code block timed out after 30 s"
    return done.returncode, done.stdout + done.stderr


def open_tun(name: str) -> int:
    """tun0 as packetdrill opens it: a virtio-net header on every packet, and TSO and
    checksum offload on, so the kernel's segments leave it as they would a NIC."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_OFFLOADS)
    return fd


def configure(name: str, mtu: int) -> None:
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{LOCAL_V4}/24", "dev", name],
        ["ip", "-6", "addr", "add", f"{LOCAL_V6}/64", "dev", name, "nodad"],
        ["ip", "link", "set", name, "mtu", str(mtu), "up"],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=10)


def realtime() -> None:
    """Run this process (and the threads and commands it starts) at the lowest
    real-time round-robin priority, as packetdrill does (run.c set_scheduling_priority):
    a script's times are real, and on a machine busy elsewhere an ordinary process
    wakes late enough to miss them -- its own injections and calls late, not the stack
    under test. The runner sleeps between events, so it takes the CPU only when it
    has to act; the kernel's real-time throttling keeps the rest of the machine
    running even so. One CPU: nothing to gain, and the machine is left alone."""
    if (os.cpu_count() or 1) <= 1:
        return
    with contextlib.suppress(OSError, AttributeError):  # not permitted: ordinary timing
        policy = os.SCHED_RR
        os.sched_setscheduler(0, policy, os.sched_param(os.sched_get_priority_min(policy)))


def unshare_net() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def run_in_namespace(
    script: Script,
    config: Config,
    shell_factory: Callable[[], Callable[[str], tuple[int, str]] | None],
    *,
    target: str = "linux",
    timeout: float = CHILD_TIMEOUT,
    tcb: bool = False,
) -> ScriptResult:
    """Run `script` in a child process, in a fresh network namespace, against the kernel
    there (`linux`) or a pytcp stack over a TUN there (`pytcp-tun`)."""
    if os.geteuid() != 0:
        return ScriptResult(
            script.path, target, ok=False, skipped=True,
            error=f"the {target} target needs root (CAP_NET_ADMIN) for its network namespace",
        )  # fmt: skip
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(rfd)
        code = 0
        try:
            result = _child(script, config, shell_factory, target, tcb)
        except BaseException as exc:
            result = ScriptResult(script.path, target, ok=False, error=f"{script.path}: {exc}")
            code = 1
        try:
            with os.fdopen(wfd, "wb") as f:
                pickle.dump(result, f)
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    deadline = time.monotonic() + timeout
    with os.fdopen(rfd, "rb") as f:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return ScriptResult(
                    script.path,
                    target,
                    ok=False,
                    error=f"{script.path}: timed out after {timeout:g} s",
                )
            ready, _, _ = select.select([f], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(f.fileno(), 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        result = pickle.loads(b"".join(chunks))
    except (pickle.UnpicklingError, EOFError) as exc:
        return ScriptResult(
            script.path, target, ok=False, error=f"{script.path}: no result ({exc})"
        )
    assert isinstance(result, ScriptResult)
    return result


def _child(
    script: Script,
    config: Config,
    shell_factory: Callable[[], Callable[[str], tuple[int, str]] | None],
    name: str,
    tcb: bool,
) -> ScriptResult:
    unshare_net()
    realtime()
    target: Any
    if name == "pytcp-tun":
        from pytcpcli.script_tun import TunTarget

        target = TunTarget(config)
    else:
        target = LinuxTarget(config)
    shell = shell_factory()
    try:
        if shell is not None and script.init is not None:
            status, output = shell(script.init.command)
            if status != 0:
                return ScriptResult(
                    script.path, name, ok=False,
                    error=f"{script.path}: init command failed with status {status}: "
                    f"{output.strip()[-200:]}",
                )  # fmt: skip
        code = code_runner if name == "linux" else None
        return Runner(script, target, config=config, shell=shell, tcb=tcb, code=code).run()
    finally:
        if shell is not None and script.cleanup is not None:
            shell(script.cleanup.command)
        target.close()
