"""Socket calls in scripts: the outcome of one call, the symbols scripts use (Linux's
values, so every target reads them alike) and helpers to read arguments. Imports the
standard library and stack.script (model, parser's ScriptError).
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass, field
from typing import Any

from stack.script.model import Expr
from stack.script.parser import ScriptError

# Linux values (x86-64 and arm64 alike for these).
SYMBOLS: dict[str, int] = {
    "AF_INET": 2,
    "AF_INET6": 10,
    "PF_INET": 2,
    "PF_INET6": 10,
    "SOCK_STREAM": 1,
    "SOCK_NONBLOCK": 0o4000,
    "SOCK_CLOEXEC": 0o2000000,
    "IPPROTO_TCP": 6,
    "IPPROTO_IP": 0,
    "SOL_SOCKET": 1,
    "SOL_TCP": 6,
    "SOL_IP": 0,
    "SOL_IPV6": 41,
    "IP_TOS": 1,
    "IP_MTU_DISCOVER": 10,
    "IP_PMTUDISC_DONT": 0,
    "IP_PMTUDISC_WANT": 1,
    "IP_PMTUDISC_DO": 2,
    "IP_PMTUDISC_PROBE": 3,
    "IPV6_TCLASS": 67,
    "SO_REUSEADDR": 2,
    "SO_REUSEPORT": 15,
    "SO_ERROR": 4,
    "SO_KEEPALIVE": 9,
    "SO_LINGER": 13,
    "SO_SNDBUF": 7,
    "SO_RCVBUF": 8,
    "SO_TYPE": 3,
    "TCP_NODELAY": 1,
    "TCP_MAXSEG": 2,
    "TCP_CORK": 3,
    "TCP_KEEPIDLE": 4,
    "TCP_KEEPINTVL": 5,
    "TCP_KEEPCNT": 6,
    "TCP_LINGER2": 8,
    "TCP_INFO": 11,
    "TCP_QUICKACK": 12,
    "TCP_CONGESTION": 13,
    "TCP_USER_TIMEOUT": 18,
    "TCP_INQ": 36,  # linux/tcp.h: bytes left to read, as a cmsg on each recvmsg()
    "TCP_CM_INQ": 36,  # its cmsg type (= TCP_INQ)
    "F_GETFL": 3,
    "F_SETFL": 4,
    "O_RDONLY": 0,
    "O_WRONLY": 1,
    "O_RDWR": 2,
    "O_NONBLOCK": 0o4000,
    "MSG_PEEK": 2,
    "MSG_DONTWAIT": 0x40,
    "MSG_WAITALL": 0x100,
    "MSG_NOSIGNAL": 0x4000,
    "MSG_MORE": 0x8000,
    "MSG_ZEROCOPY": 0x4000000,
    "MSG_FASTOPEN": 0x20000000,
    "SHUT_RD": 0,
    "SHUT_WR": 1,
    "SHUT_RDWR": 2,
    "POLLIN": 0x001,
    "POLLPRI": 0x002,
    "POLLOUT": 0x004,
    "POLLERR": 0x008,
    "POLLHUP": 0x010,
    "POLLNVAL": 0x020,
    "POLLRDNORM": 0x040,
    "POLLRDBAND": 0x080,
    "POLLWRNORM": 0x100,
    "POLLRDHUP": 0x2000,
    "SIOCINQ": 0x541B,
    "SIOCOUTQ": 0x5411,
    "FIONREAD": 0x541B,
}


def symbol(e: Expr) -> int:
    """An integer expression's value: a number, a known symbol, or an OR of them."""
    if e.kind == "int":
        return e.value
    if e.kind == "word":
        if e.name in SYMBOLS:
            return SYMBOLS[e.name]
        code = getattr(errno_mod, e.name, None)
        if e.name.startswith("E") and isinstance(code, int):
            return code  # [ECONNREFUSED] as getsockopt(SO_ERROR)'s value
        raise ScriptError("", 0, f"unknown symbol {e.name}")
    if e.kind == "or":
        v = 0
        for item in e.items:
            v |= symbol(item)
        return v
    raise ScriptError("", 0, f"expected a number but found {e}")


def list_int(e: Expr) -> int | None:
    """The value in an "[N]" argument (getsockopt's out value, setsockopt's in value),
    None for "..."."""
    if e.kind == "ellipsis":
        return None
    if e.kind == "list" and len(e.items) == 1:
        return symbol(e.items[0])
    if e.kind == "struct" and e.names and "onoff" in e.names:
        raise ScriptError("", 0, "a struct where [N] was expected")
    return symbol(e)


def errno_name(code: int) -> str:
    return errno_mod.errorcode.get(code, f"errno {code}")


def errno_code(name: str) -> int:
    code = getattr(errno_mod, name, None)
    if not isinstance(code, int):
        raise ScriptError("", 0, f"unknown errno {name}")
    return code


@dataclass
class CallOutcome:
    """What a call returned: `ret` and, on failure (ret -1), `errno` by name; `handle`
    is a new socket's (socket, accept); `problems` are argument checks that failed (a
    getsockopt value that differs); `at` is when it returned (µs script time)."""

    ret: int
    errno: str | None = None
    at: int = 0
    handle: Any = None
    problems: list[str] = field(default_factory=list)
    detail: str = ""

    def describe(self) -> str:
        text = f"{self.ret}" + (f" {self.errno}" if self.errno else "")
        return text + (f" ({self.detail})" if self.detail else "")


def fail(code: int, at: int) -> CallOutcome:
    return CallOutcome(-1, errno_name(code), at)


def struct_field(e: Expr, name: str) -> Expr | None:
    if e.kind != "struct":
        return None
    for n, item in zip(e.names, e.items, strict=True):
        if n == name:
            return item
    return None


@dataclass(frozen=True)
class RecvmsgSpec:
    """What a recvmsg() line asks and expects: bytes to read (the iovecs' sum), the
    call's flags, and -- None where the script says "..." or leaves it out -- the
    msg_flags and the control messages (level, type, int data) it must return."""

    length: int
    flags: int
    msg_flags: int | None
    cmsgs: tuple[tuple[int, int, int], ...] | None


def recvmsg_spec(args: tuple[Expr, ...]) -> RecvmsgSpec:
    """recvmsg(fd, {msg_name(...)=..., msg_iov(1)=[{..., N}], msg_flags=F,
    msg_control=[{cmsg_level=L, cmsg_type=T, cmsg_data=D}, ...]}, flags)."""
    if len(args) < 2 or args[1].kind != "struct":
        raise ScriptError("", 0, "recvmsg() takes (fd, {msg_iov=[...], ...}, flags)")
    msg = args[1]
    iov = struct_field(msg, "msg_iov")
    if iov is None or iov.kind != "list":
        raise ScriptError("", 0, "recvmsg() needs msg_iov=[{..., N}, ...]")
    length = 0
    for vec in iov.items:
        if vec.kind != "struct" or not vec.items:
            raise ScriptError("", 0, "recvmsg() msg_iov entries are {..., N}")
        length += symbol(vec.items[-1])
    flags_e = struct_field(msg, "msg_flags")
    msg_flags = None if flags_e is None or flags_e.kind == "ellipsis" else symbol(flags_e)
    control = struct_field(msg, "msg_control")
    cmsgs: tuple[tuple[int, int, int], ...] | None = None
    if control is not None and control.kind != "ellipsis":
        if control.kind != "list":
            raise ScriptError("", 0, "msg_control is [{cmsg_level=.., cmsg_type=.., ...}]")
        found = []
        for c in control.items:
            level, kind = struct_field(c, "cmsg_level"), struct_field(c, "cmsg_type")
            data = struct_field(c, "cmsg_data")
            if level is None or kind is None or data is None:
                raise ScriptError("", 0, "a cmsg is {cmsg_level=L, cmsg_type=T, cmsg_data=D}")
            found.append((symbol(level), symbol(kind), symbol(data)))
        cmsgs = tuple(found)
    flags = symbol(args[2]) if len(args) > 2 and args[2].kind != "ellipsis" else 0
    return RecvmsgSpec(length, flags, msg_flags, cmsgs)


def recvmsg_problems(
    spec: RecvmsgSpec, msg_flags: int, cmsgs: list[tuple[int, int, int]]
) -> list[str]:
    """How what recvmsg() returned differs from what the script expects."""
    problems = []
    if spec.msg_flags is not None and msg_flags != spec.msg_flags:
        problems.append(f"msg_flags is {msg_flags:#x}, expected {spec.msg_flags:#x}")
    if spec.cmsgs is not None and tuple(cmsgs) != spec.cmsgs:

        def show(items: tuple[tuple[int, int, int], ...] | list[tuple[int, int, int]]) -> str:
            return ", ".join(f"{{level {a}, type {b}, data {c}}}" for a, b, c in items) or "none"

        problems.append(f"control messages are {show(cmsgs)}, expected {show(spec.cmsgs)}")
    return problems
