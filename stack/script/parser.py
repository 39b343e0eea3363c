"""The packetdrill script language: tokens and a recursive-descent parser into
`stack.script.model`. Imports the standard library and stack.script.model.

The grammar is packetdrill's (gtests/net/packetdrill/parser.y), read from its source
and scripts, written anew here: options lines first, an optional init command in
backquotes, then events, each a time and an action, and an optional cleanup command.
`ScriptError` names the file and line of anything it cannot read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stack.script.model import (
    ABSOLUTE,
    ABSOLUTE_RANGE,
    ANY,
    RELATIVE,
    RELATIVE_RANGE,
    Action,
    Code,
    Event,
    Expr,
    IcmpPacket,
    Script,
    Shell,
    Syscall,
    TcpOption,
    TcpPacket,
    Time,
)


class ScriptError(Exception):
    """A script that cannot be read or run: `str()` is "FILE:LINE: what".

    `line` is 0 when the problem is not on one line.
    """

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "int", "float", "hex", "word", "string", "backquote", "code", "option",
    #            "ellipsis", "ipv4", "punct", "eof"
    text: str
    line: int


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<cpp>//[^\n]*)
  | (?P<c>/\*(?:[^*]|\*(?!/))*\*/)
  | (?P<code>%\{(?:[^}]|\}(?!%))*\}%)
  | (?P<string>"(?:\\[\s\S]|[^"\\])*")
  | (?P<backquote>`(?:\\[\s\S]|[^`\\])*`)
  | (?P<option>--[A-Za-z0-9_]+)
  | (?P<ellipsis>\.\.\.)
  | (?P<ipv4>[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)
  | (?P<hex>0x[0-9a-fA-F]+)
  | (?P<float>-?[0-9]*\.[0-9]+)
  | (?P<int>-?[0-9]+)
  | (?P<word>[A-Za-z0-9_#]+)
  | (?P<punct>[^ \t\r\n])
    """,
    re.VERBOSE,
)


def tokenize(path: str, text: str) -> list[Token]:
    """The script's tokens, comments and white space dropped, with line numbers."""
    out: list[Token] = []
    line = 1
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the punct branch matches any character
            raise ScriptError(path, line, f"unreadable text {text[pos : pos + 10]!r}")
        kind = m.lastgroup or "punct"
        tok = m.group()
        if kind not in ("ws", "cpp", "c"):
            if kind == "string" or kind == "backquote":
                tok = tok[1:-1]
            elif kind == "code":
                tok = tok[2:-2].strip(" \t")
            out.append(Token(kind, tok, line))
        line += m.group().count("\n")
        pos = m.end()
    out.append(Token("eof", "", line))
    return out


# Flags letters packetdrill knows in a TCP segment's flags word (E: ECE, W: CWR).
FLAG_LETTERS = set("FSRPUEWA")
ICMP_TYPES = {"unreachable", "packet_too_big", "time_exceeded", "source_quench"}
ECN_WORDS = {"ect0", "ect1", "ce", "noecn", "ect01"}


class Parser:
    def __init__(self, path: str, text: str, defines: dict[str, str] | None = None) -> None:
        self.path = path
        self.defines = dict(defines or {})  # -D / --define=NAME=VALUE symbols
        self.lines = text.splitlines()
        self.toks = tokenize(path, text)
        self.i = 0

    # -- token helpers -------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, n: int = 1) -> Token:
        return self.toks[min(self.i + n, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def error(self, message: str, tok: Token | None = None) -> ScriptError:
        t = tok or self.tok
        return ScriptError(self.path, t.line, message)

    def is_punct(self, ch: str, tok: Token | None = None) -> bool:
        t = tok or self.tok
        return t.kind == "punct" and t.text == ch

    def expect_punct(self, ch: str) -> Token:
        if not self.is_punct(ch):
            raise self.error(f"expected '{ch}' but found {self.describe(self.tok)}")
        return self.next()

    def expect_word(self, word: str) -> Token:
        if not (self.tok.kind == "word" and self.tok.text == word):
            raise self.error(f"expected '{word}' but found {self.describe(self.tok)}")
        return self.next()

    @staticmethod
    def describe(t: Token) -> str:
        return "end of file" if t.kind == "eof" else f"'{t.text}'"

    def integer(self, what: str) -> int:
        t = self.tok
        if t.kind == "int":
            self.next()
            return int(t.text)
        if t.kind == "hex":
            self.next()
            return int(t.text, 16)
        if t.kind == "word" and t.text in self.defines:
            try:
                value = int(self.defines[t.text], 0)
            except ValueError:
                raise self.error(
                    f"{t.text} is defined as {self.defines[t.text]!r}, not a number"
                ) from None
            self.next()
            return value
        raise self.error(f"expected {what} (an integer) but found {self.describe(t)}")

    # -- script ---------------------------------------------------------------------

    def script(self) -> Script:
        options: dict[str, str] = {}
        while self.tok.kind == "option":
            self.option(options)
        init = None
        if self.tok.kind == "backquote":
            init = Shell(self.next().text)
        events: list[Event] = []
        cleanup = None
        while self.tok.kind != "eof":
            if self.tok.kind == "backquote":
                t = self.next()
                if self.tok.kind != "eof":
                    raise self.error("a shell command needs a time unless it ends the script", t)
                cleanup = Shell(t.text)
                break
            events.append(self.event())
        if not events:
            raise ScriptError(self.path, 0, "no events")
        first = events[0]
        if first.time.kind in (ABSOLUTE, RELATIVE) and first.time.usecs != 0:
            raise ScriptError(self.path, first.line, "first event should be at time 0")
        return Script(self.path, options, init, tuple(events), cleanup)

    def option(self, options: dict[str, str]) -> None:
        t = self.next()
        name = t.text[2:]
        value = ""
        if self.is_punct("="):
            self.next()
            parts: list[str] = []
            # A value is everything up to the end of its line (--define=X=Y too).
            while self.tok.kind != "eof" and self.tok.line == t.line:
                v = self.next()
                parts.append(f'"{v.text}"' if v.kind == "string" else v.text)
            value = "".join(parts)
        options[name] = value
        if name == "define" and "=" in value:
            key, _, val = value.partition("=")
            self.defines[key] = val

    def event(self) -> Event:
        start = self.tok
        time = self.event_time()
        action = self.action(time)
        last_line = self.toks[self.i - 1].line
        text = "\n".join(s.strip() for s in self.lines[start.line - 1 : last_line])
        if time.kind in (ANY, ABSOLUTE_RANGE, RELATIVE_RANGE):
            outbound = isinstance(action, (TcpPacket, IcmpPacket)) and action.direction == ">"
            if not outbound:
                kind = "<star>" if time.kind == ANY else "range"
                raise ScriptError(
                    self.path,
                    start.line,
                    f"event time {kind} can only be used with outbound packets",
                )
        if time.end_usecs is not None and time.end_usecs < time.usecs:
            raise ScriptError(self.path, start.line, "time range is backwards")
        return Event(start.line, time, action, text)

    def time_value(self) -> int:
        t = self.tok
        if t.kind not in ("int", "float"):
            raise self.error(f"expected a time but found {self.describe(t)}")
        self.next()
        if t.text.startswith("-"):
            raise self.error("negative time", t)
        return round(float(t.text) * 1_000_000)

    def event_time(self) -> Time:
        if self.is_punct("*"):
            self.next()
            return Time(ANY, 0)
        relative = self.is_punct("+")
        if relative:
            self.next()
        usecs = self.time_value()
        if self.is_punct("~"):
            self.next()
            if relative:
                self.expect_punct("+")
            end = self.time_value()
            return Time(RELATIVE_RANGE if relative else ABSOLUTE_RANGE, usecs, end)
        return Time(RELATIVE if relative else ABSOLUTE, usecs)

    def action(self, time: Time) -> Action:
        t = self.tok
        if self.is_punct("<") or self.is_punct(">"):
            return self.packet()
        if t.kind == "backquote":
            self.next()
            return Shell(t.text)
        if t.kind == "code":
            self.next()
            return Code(t.text)
        if t.kind in ("ellipsis", "word"):
            return self.syscall()
        raise self.error(f"expected a segment, a call or a command but found {self.describe(t)}")

    # -- packets --------------------------------------------------------------------

    def packet(self) -> TcpPacket | IcmpPacket:
        dir_tok = self.next()
        direction = dir_tok.text
        ecn = None
        if self.is_punct("[") or self.is_punct("("):
            close = "]" if self.tok.text == "[" else ")"
            self.next()
            w = self.tok
            if w.kind == "word" and w.text in ECN_WORDS:
                ecn = w.text
                self.next()
            else:
                raise self.error(f"IP header details {self.describe(w)} are not supported")
            self.expect_punct(close)
        if self.tok.kind == "word" and self.tok.text in ("ipv4", "ipv6", "gre", "mpls", "udp"):
            raise self.error(f"'{self.tok.text}' packets are not supported (TCP and ICMP only)")
        if self.tok.kind == "word" and self.tok.text == "icmp":
            self.next()
            return self.icmp(direction)
        ports = None
        if self.tok.kind == "int" and self.is_punct(">", self.peek()):
            src = self.integer("source port")
            self.next()
            dst = self.integer("destination port")
            ports = (src, dst)
        flags = self.flags()
        start, end, length = self.seq_range()
        ack = None
        window = None
        urgent = 0
        if self.tok.kind == "word" and self.tok.text == "ack":
            self.next()
            ack = self.integer("ack number")
        if self.tok.kind == "word" and self.tok.text == "win":
            self.next()
            window = self.integer("window")
            if not 0 <= window <= 0xFFFF:
                raise self.error("TCP window value out of range")
        if self.tok.kind == "word" and self.tok.text == "urg":
            self.next()
            urgent = self.integer("urgent pointer")
        options: tuple[TcpOption, ...] | None = ()
        if self.is_punct("<"):
            self.next()
            if self.tok.kind == "ellipsis":
                self.next()
                options = None
            else:
                options = self.tcp_options()
            self.expect_punct(">")
        if direction == "<" and options is None:
            raise self.error(
                "<...> for TCP options can only be used with outbound packets", dir_tok
            )
        if direction == "<" and window is None:
            raise self.error("window must be specified for inbound packets", dir_tok)
        return TcpPacket(
            direction, flags, start, end, length, ack, window, urgent, options, ports, ecn
        )

    def flags(self) -> str:
        t = self.tok
        if self.is_punct("."):
            self.next()
            return "."
        if self.is_punct("-"):
            self.next()
            return ""
        if t.kind == "word" and set(t.text) <= FLAG_LETTERS:
            self.next()
            text = t.text
            if self.is_punct("."):
                self.next()
                text += "."
            return text
        if t.kind == "float" and t.text.startswith("."):
            # "S.1" style ACE fields (AccECN) are not modelled.
            raise self.error("AccECN flag fields are not supported")
        raise self.error(f"expected TCP flags but found {self.describe(t)}")

    def seq_range(self) -> tuple[int, int, int]:
        begin = self.integer("start sequence number")
        self.expect_punct(":")
        end = self.integer("end sequence number")
        self.expect_punct("(")
        length = self.integer("payload length")
        self.expect_punct(")")
        for v, what in ((begin, "start"), (end, "end")):
            if not 0 <= v <= 0xFFFFFFFF:
                raise self.error(f"TCP {what} sequence number out of range")
        if not 0 <= length <= 0xFFFF:
            raise self.error("TCP payload size out of range")
        if end != (begin + length) & 0xFFFFFFFF:
            raise self.error("inconsistent TCP sequence numbers and payload size")
        return begin, end, length

    def tcp_options(self) -> tuple[TcpOption, ...]:
        out = [self.tcp_option()]
        while self.is_punct(","):
            self.next()
            out.append(self.tcp_option())
        return tuple(out)

    def tcp_option(self) -> TcpOption:
        t = self.tok
        if t.kind != "word":
            raise self.error(f"expected a TCP option but found {self.describe(t)}")
        self.next()
        kind = t.text
        if kind in ("nop", "eol", "sackOK"):
            return TcpOption(kind)
        if kind == "mss":
            v = self.integer("mss value")
            if not 0 <= v <= 0xFFFF:
                raise self.error("mss value out of range", t)
            return TcpOption(kind, value=v)
        if kind == "wscale":
            v = self.integer("window scale shift count")
            if not 0 <= v <= 0xFF:
                raise self.error("window scale shift count out of range", t)
            return TcpOption(kind, value=v)
        if kind == "sack":
            blocks = []
            while self.tok.kind == "int" and self.is_punct(":", self.peek()):
                left = self.integer("SACK left edge")
                self.next()
                right = self.integer("SACK right edge")
                blocks.append((left, right))
            if not blocks:
                raise self.error("expected SACK blocks (left:right)")
            return TcpOption(kind, blocks=tuple(blocks))
        if kind == "TS":
            self.expect_word("val")
            val = self.integer("TS val")
            self.expect_word("ecr")
            ecr = self.integer("TS ecr")
            return TcpOption(kind, val=val, ecr=ecr)
        if kind in ("md5", "FO", "FOEXP"):
            text = ""  # a hex blob may lex as several tokens (3021b9d8...)
            while self.tok.kind in ("word", "int", "hex") and self.tok.line == t.line:
                text += self.next().text
            return TcpOption(kind, text=text)
        raise self.error(f"unknown TCP option '{kind}'", t)

    def icmp(self, direction: str) -> IcmpPacket:
        t = self.tok
        if t.kind != "word":
            raise self.error("expected an ICMP type")
        self.next()
        if t.text not in ICMP_TYPES:
            raise self.error(f"ICMP type '{t.text}' is not supported", t)
        code = None
        if self.tok.kind == "word" and self.tok.text not in ("mtu", "id"):
            code = self.next().text
        mtu = None
        if self.tok.kind == "word" and self.tok.text == "mtu":
            self.next()
            mtu = self.integer("mtu")
        if self.tok.kind == "word" and self.tok.text == "id":
            raise self.error("ICMP echo ids are not supported")
        echoed = None
        if self.is_punct("["):
            self.next()
            if self.tok.kind == "word":
                raise self.error(f"ICMP quoting '{self.tok.text}' is not supported (TCP only)")
            echoed = self.seq_range()
            self.expect_punct("]")
        return IcmpPacket(direction, t.text, code, mtu, echoed)

    # -- calls ----------------------------------------------------------------------

    def syscall(self) -> Syscall:
        end = None
        if self.tok.kind == "ellipsis":
            self.next()
            end = self.time_value()
        name_tok = self.tok
        if name_tok.kind != "word":
            raise self.error(f"expected a call but found {self.describe(name_tok)}")
        self.next()
        self.expect_punct("(")
        args: list[Expr] = []
        if not self.is_punct(")"):
            args = self.expr_list(")")
        self.expect_punct(")")
        self.expect_punct("=")
        result = self.expr()
        errno = None
        note = None
        if self.tok.kind == "word":  # the next event starts with a time, never a word
            errno = self.next().text
        if self.is_punct("("):
            self.next()
            words = []
            while not self.is_punct(")"):
                if self.tok.kind == "eof":
                    raise self.error("unterminated note")
                words.append(self.next().text)
            self.next()
            note = " ".join(words)
        return Syscall(name_tok.text, tuple(args), result, errno, note, end)

    def expr_list(self, close: str) -> list[Expr]:
        items = [self.expr()]
        while self.is_punct(","):
            self.next()
            items.append(self.expr())
        if not self.is_punct(close):
            raise self.error(f"expected ',' or '{close}' but found {self.describe(self.tok)}")
        return items

    def expr(self) -> Expr:
        e = self.primary()
        if self.is_punct("|"):
            items = [e]
            while self.is_punct("|"):
                self.next()
                items.append(self.primary())
            return Expr("or", items=tuple(items))
        return e

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "ellipsis":
            self.next()
            return Expr("ellipsis")
        if t.kind in ("int", "hex"):
            return Expr("int", value=self.integer("a number"))
        if t.kind == "string":
            self.next()
            text = t.text
            while self.tok.kind == "string":
                text += self.next().text
            if self.tok.kind == "ellipsis":
                self.next()
            return Expr("string", name=text)
        if t.kind == "word":
            self.next()
            if self.is_punct("("):
                self.next()
                items: list[Expr] = []
                if not self.is_punct(")"):
                    items = self.expr_list(")")
                self.expect_punct(")")
                if self.is_punct("="):
                    # msg_iov(1)=[...] / msg_name(...)=...: a sized field
                    self.next()
                    return Expr("assign", name=t.text, items=(self.expr(), *items))
                return Expr("call", name=t.text, items=tuple(items))
            if self.is_punct("="):
                self.next()
                return Expr("assign", name=t.text, items=(self.expr(),))
            return Expr("word", name=t.text)
        if self.is_punct("["):
            self.next()
            items = [] if self.is_punct("]") else self.expr_list("]")
            self.expect_punct("]")
            return Expr("list", items=tuple(items))
        if self.is_punct("{"):
            self.next()
            raw = [] if self.is_punct("}") else self.expr_list("}")
            self.expect_punct("}")
            names = tuple(e.name if e.kind == "assign" else "" for e in raw)
            values = tuple(e.items[0] if e.kind == "assign" else e for e in raw)
            return Expr("struct", items=values, names=names)
        raise self.error(f"expected an expression but found {self.describe(t)}")


def parse(text: str, path: str = "<script>", defines: dict[str, str] | None = None) -> Script:
    """Parse a whole script; ScriptError names the line of the first problem. `defines`
    are packetdrill's -D NAME=VALUE symbols, usable where a number goes."""
    return Parser(path, text, defines).script()
