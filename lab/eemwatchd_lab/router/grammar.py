"""The lab router's command grammar: keyword tables matched with IOS's unique-prefix abbreviations, AAA command
authorization, the `| include/exclude/begin/section/count` filters, and the errors IOS prints for a bad line."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eemwatchd_lab.router.device import User

if TYPE_CHECKING:
    from eemwatchd_lab.router.session import Session

INVALID = "% Invalid input detected at '^' marker."
INCOMPLETE = "% Incomplete command."
# AAA refusals. Neither is in a captured transcript; both are matched verbatim by independent tools that
# drive IOS over SSH (see docs/lab-router.md "AAA"): the command refusal has no `%`, the exec (session)
# refusal has one.
AUTHORIZATION_FAILED = "Command authorization failed."
EXEC_AUTHORIZATION_FAILED = "% Authorization failed."
# Leaving a mode is never refused in the lab (inferred: IOS authorizes these privilege-0 commands only
# with `aaa authorization commands 0`, which is rare).
_NEVER_AUTHORIZED = frozenset({("exit",), ("logout",), ("end",), ("disable",)})


class CommandError(Exception):
    """A command line is wrong; rendered like IOS (caret, incomplete, ambiguous)."""

    def __init__(self, kind: str, column: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.column = column


@dataclass
class Call:
    """A matched command: its arguments (word, column), the raw text after the keywords and its column."""

    args: list[tuple[str, int]]
    rest: str
    rest_column: int
    line: str
    keywords: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The command as AAA sees it: keywords expanded, arguments as typed (`show running-config`)."""
        return " ".join([*self.keywords, *(w for w, _ in self.args)])


Handler = Callable[["Session", Call], Awaitable[bool | None]]


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    handler: Handler | None = None
    takes_args: bool = False
    priv: int = 16  # lowest privilege that reaches a handler at or below this node


class CommandTable:
    """Keyword paths -> handlers, matched with IOS's unique-prefix abbreviations."""

    def __init__(self) -> None:
        self.root = _Node()

    def add(self, path: str, handler: Handler, *, priv: int = 15, args: bool = False) -> None:
        node = self.root
        node.priv = min(node.priv, priv)
        for word in path.split():
            node = node.children.setdefault(word, _Node())
            node.priv = min(node.priv, priv)
        node.handler = handler
        node.takes_args = args

    def match(self, line: str, base: int, priv: int) -> tuple[Handler, Call]:
        words = [(m.group(0), m.start()) for m in re.finditer(r"\S+", line)]
        node = self.root
        path: list[str] = []
        for index, (word, column) in enumerate(words):
            low = word.lower()
            visible = {k: v for k, v in node.children.items() if v.priv <= priv}
            if low in visible:
                node = visible[low]
                path.append(low)
                continue
            hits = [k for k in visible if k.startswith(low)]
            if len(hits) == 1:
                node = visible[hits[0]]
                path.append(hits[0])
                continue
            if node.handler is not None and node.takes_args:
                args = [(w, base + col) for w, col in words[index:]]
                return node.handler, Call(args, line[column:], base + column, line, tuple(path))
            if len(hits) > 1:
                raise CommandError("ambiguous")
            raise CommandError("invalid", base + column)
        if node.handler is None:
            raise CommandError("incomplete")
        return node.handler, Call([], "", base + len(line), line, tuple(path))


def is_command_allowed(user: User, keywords: tuple[str, ...], command: str) -> bool:
    """True when ``user`` has no command rules, or one rule is the command or a word-prefix of it."""
    if user.allowed_commands is None or keywords in _NEVER_AUTHORIZED:
        return True
    text = " ".join(command.lower().split())
    for rule in user.allowed_commands:
        prefix = " ".join(rule.lower().split())
        if text == prefix or text.startswith(prefix + " "):
            return True
    return False


def words_of(call: Call) -> list[str]:
    return [w for w, _ in call.args]


@dataclass
class OutputFilter:
    kind: str
    pattern: re.Pattern[str]

    def apply(self, lines: list[str]) -> list[str]:
        if self.kind == "include":
            return [ln for ln in lines if self.pattern.search(ln)]
        if self.kind == "exclude":
            return [ln for ln in lines if not self.pattern.search(ln)]
        if self.kind == "begin":
            for i, ln in enumerate(lines):
                if self.pattern.search(ln):
                    return lines[i:]
            return []
        if self.kind == "count":
            return [f"Number of lines which match regexp = {sum(1 for ln in lines if self.pattern.search(ln))}"]
        # section: a top-level line and its indented children, when the parent or a child matches
        # (inferred: IOS prints the whole section for a matching child too).
        out: list[str] = []
        i = 0
        while i < len(lines):
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):
                j += 1
            block = lines[i:j]
            if any(self.pattern.search(ln) for ln in block):
                out.extend(block)
            i = j
        return out


FILTER_KINDS = ("include", "exclude", "begin", "section", "count")

