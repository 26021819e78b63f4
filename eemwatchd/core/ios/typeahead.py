"""Several IOS commands written at once (type-ahead), read back as one reply per command.

IOS reads type-ahead one line at a time: it prints the prompt, then echoes the next line it takes from its
input, runs it and prints the output (field notes sec. 6: the echo comes after the prompt). So the text that
comes back for `a\\nb\\nc\\n` is

    a <newline> output of a <newline> PROMPT b <newline> output of b <newline> PROMPT c <newline> ... PROMPT

and it splits at each prompt that is followed by the echo of the next command; the last reply ends at a
prompt with nothing after it (or, for a dialogue, at the question the last command asked). A prompt inside
some output is never taken for a boundary unless the next command's echo follows it. The prompt a reply
ends with tells the mode its command left the session in (`R1#`, `R1(config)#`, `R1(ca-trustpoint)#`).

Text comes in with CR removed (scrapli's channel does that).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Prompts as scrapli's IOS XE driver defines them: a hostname of up to 63 characters, a mode in parentheses
# of up to 32, then `#` (privileged) or `>` (user EXEC).
HOST = r"[\w.\-@/:]{1,63}"
MODE = r"\([\w.\-@/:+]{0,32}\)"


def prompt_pattern(hostname: str | None = None) -> str:
    """A prompt of ``hostname`` (any hostname when None) in any mode."""
    host = re.escape(hostname) if hostname else HOST
    return rf"{host}(?:{MODE})?[#>]"


def hostname_of(prompt: str) -> str:
    """`R1(config)#` -> `R1`."""
    return re.sub(rf"(?:{MODE})?[#>]$", "", prompt.strip())


def is_config_prompt(prompt: str) -> bool:
    return prompt.rstrip().endswith(")#")


@dataclass(frozen=True)
class Reply:
    """One command's answer: the device's lines after the echo, and the prompt that followed (empty when the
    command asked a question instead)."""

    command: str
    output: str
    prompt: str

    @property
    def mode(self) -> str:
        """`exec`, `config` (any configuration mode) or `question`."""
        if not self.prompt:
            return "question"
        return "config" if is_config_prompt(self.prompt) else "exec"


@dataclass(frozen=True)
class ReadBack:
    """The replies split so far; ``complete`` once every command answered (``asked``: the last one with a
    question); ``echo_missing``: a reply whose first line is not its command's echo (out of step)."""

    replies: tuple[Reply, ...]
    complete: bool
    asked: bool = False
    echo_missing: str | None = None


def output_of(segment: str) -> str:
    """A command's output as scrapli returns it: the lines after the echo, each without trailing space,
    without leading blank lines and trailing whitespace."""
    lines = segment.split("\n")[1:]
    return "\n".join(line.rstrip() for line in lines).lstrip("\n").rstrip()


@dataclass(frozen=True)
class _Prompts:
    line: re.Pattern[str]  # a whole prompt (fullmatch on the text between a line start and an echo)
    last: re.Pattern[str]  # a prompt at the end of the text, after a newline


@functools.lru_cache(maxsize=4096)
def _prompts(hostname: str | None) -> _Prompts:
    """Compiled once per hostname: compiling per read was a quarter of a fleet apply's CPU (BENCHMARKS.md)."""
    prompt = prompt_pattern(hostname)
    return _Prompts(re.compile(prompt), re.compile(rf"\n(?P<prompt>{prompt})[ \t]*$"))


def ends_with_prompt(text: str, hostname: str | None = None) -> bool:
    """Cheap test on the tail of what was read: does it end with a prompt (a reply may be complete)?"""
    return _prompts(hostname).last.search("\n" + text[-200:]) is not None


def _boundary(text: str, start: int, echo: str, line: re.Pattern[str]) -> tuple[int, int] | None:
    """The first prompt at a line start, at or after ``start``, followed on its line by ``echo`` and then the
    line's end: (where the prompt starts, where the echo starts)."""
    at = start
    while (found := text.find(echo, at)) >= 0:
        at = found + 1
        line_start = text.rfind("\n", 0, found) + 1
        after = text[found + len(echo):found + len(echo) + 64].lstrip(" \t")
        if line_start > start and (not after or after[0] == "\n") and line.fullmatch(text, line_start, found):
            return line_start, found
    return None


def split_replies(
    text: str, commands: tuple[str, ...] | list[str], *, hostname: str | None = None,
    question: re.Pattern[str] | None = None,
) -> ReadBack:
    """Split what came back for ``commands`` (written at once, in order) into one Reply per command."""
    prompts = _prompts(hostname)
    replies: list[Reply] = []
    start = len(text) - len(text.lstrip("\n"))  # a blank line before the first echo is not a reply
    for index, command in enumerate(commands):
        line_end = text.find("\n", start)
        if line_end < 0:
            return ReadBack(tuple(replies), False)
        if text[start:line_end].strip() != command.strip():
            return ReadBack(tuple(replies), False, echo_missing=command)
        if index + 1 < len(commands):
            found = _boundary(text, line_end, commands[index + 1], prompts.line)
            if found is None:
                return ReadBack(tuple(replies), False)
            prompt_start, next_start = found
            replies.append(Reply(command, output_of(text[start:prompt_start]), text[prompt_start:next_start]))
            start = next_start
            continue
        tail = text[line_end:]
        last = prompts.last.search(tail)
        if last is not None:
            replies.append(Reply(command, output_of(text[start:line_end + last.start("prompt")]),
                                 last.group("prompt")))
            return ReadBack(tuple(replies), True)
        if question is not None and question.search(tail):
            replies.append(Reply(command, output_of(text[start:]), ""))
            return ReadBack(tuple(replies), True, asked=True)
    return ReadBack(tuple(replies), False)
