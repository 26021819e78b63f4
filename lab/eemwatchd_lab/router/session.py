"""One SSH shell session on a lab router: input with echo and type-ahead, prompts, paging, modes, and the
dispatch of each line to the command tables of its mode (exec_commands, config_commands)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable

from eemwatchd_lab.router import eem, pki
from eemwatchd_lab.router.config_commands import CONFIG_TABLES
from eemwatchd_lab.router.device import Device, User
from eemwatchd_lab.router.exec_commands import EXEC_TABLE
from eemwatchd_lab.router.grammar import (
    AUTHORIZATION_FAILED,
    FILTER_KINDS,
    INCOMPLETE,
    INVALID,
    Call,
    CommandError,
    CommandTable,
    Handler,
    OutputFilter,
    is_command_allowed,
)

MORE = " --More-- "
# inferred: IOS erases the --More-- marker with backspaces, spaces, backspaces after a key.
MORE_ERASE = "\b" * len(MORE) + " " * len(MORE) + "\b" * len(MORE)
MODE_TABLES: dict[str, CommandTable] = {"exec": EXEC_TABLE, **CONFIG_TABLES}


class Session:
    """One SSH shell session on a lab device. ``send`` writes output; ``close(abort)`` ends the connection."""

    def __init__(
        self,
        device: Device,
        user: User,
        *,
        vty: int,
        peer: str,
        send: Callable[[str], None],
        close: Callable[[bool], None],
        sleep: Callable[[float], Awaitable[None]],
        client_version: str = "",
    ) -> None:
        self.device = device
        self.watch = device.invariants.opened(client_version)  # what the invariant checks know of it
        self.user = user
        self.vty = vty
        self.peer = peer
        self.priv = user.privilege
        self.mode = "exec"
        self.length = 24
        self.width = 80
        self.trustpoint: pki.Trustpoint | None = None
        self.applet: eem.Applet | None = None
        self.executed = 0
        self._send = send
        self._close = close
        self._sleep = sleep
        self._inbuf = ""
        self._eof = False
        self._skip_lf = False
        self._ctrl_z = False
        self._filter: OutputFilter | None = None
        self._configured = False
        self._data = asyncio.Event()

    # --- input -------------------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        self._inbuf += text
        self._data.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._data.set()

    async def _has_input(self) -> bool:
        while not self._inbuf:
            if self._eof:
                return False
            self._data.clear()
            await self._data.wait()
        return True

    async def read_line(self, *, echo: bool = True) -> str | None:
        """One line. Characters are echoed only now, after the prompt was printed (type-ahead waits)."""
        chars: list[str] = []
        self._ctrl_z = False
        while True:
            if not await self._has_input():
                return None
            echo_out: list[str] = []
            done = False
            consumed = 0
            for ch in self._inbuf:
                consumed += 1
                done = self._take(ch, chars, echo_out if echo else None)
                if done:
                    break
            self._inbuf = self._inbuf[consumed:]
            if done:
                echo_out.append("\r\n")
            if echo_out:
                await self.write("".join(echo_out))
            if done:
                return "".join(chars)

    def _take(self, ch: str, chars: list[str], echo_out: list[str] | None) -> bool:
        """Add one input character to the line; True when it ends the line (CR, LF, CR LF, Ctrl-Z/C)."""
        if ch == "\n" and self._skip_lf:
            self._skip_lf = False
            return False
        self._skip_lf = ch == "\r"
        if ch in "\r\n":
            return True
        if ch in "\x1a\x03":  # Ctrl-Z / Ctrl-C end the line and leave config mode
            self._ctrl_z = True
            if echo_out is not None:
                echo_out.append("^Z" if ch == "\x1a" else "^C")  # inferred echo
            return True
        if ch in "\x7f\x08":
            if chars:
                chars.pop()
                if echo_out is not None:
                    echo_out.append("\b \b")
        elif ch >= " ":
            chars.append(ch)
            if echo_out is not None:
                echo_out.append(ch)
        return False

    async def _hang(self) -> None:
        """A stuck vty (Faults.hang_after_commands): whatever comes is read and dropped, nothing is answered,
        until the client goes."""
        while await self._has_input():
            self._inbuf = ""
            self._data.clear()

    async def read_key(self) -> str | None:
        if not await self._has_input():
            return None
        ch = self._inbuf[0]
        self._inbuf = self._inbuf[1:]
        if ch == "\n" and self._skip_lf:
            self._skip_lf = False
            return await self.read_key()
        self._skip_lf = ch == "\r"
        return ch

    # --- output ------------------------------------------------------------------------------------

    async def write(self, text: str) -> None:
        delay = self.device.spec.faults.output_delay
        if delay > 0:
            await self._sleep(delay)
        self._send(text)

    async def write_lines(self, lines: Iterable[str]) -> None:
        await self.write("".join(f"{line}\r\n" for line in lines))

    async def emit(self, lines: list[str]) -> None:
        """Command output: the `|` filter, then ` --More-- ` paging when `terminal length` is not 0."""
        if self._filter is not None:
            lines = self._filter.apply(lines)
        page = self.length - 1
        if self.length == 0 or len(lines) <= page:
            await self.write_lines(lines)
            return
        i = 0
        chunk = page
        while i < len(lines):
            await self.write_lines(lines[i : i + chunk])
            i += chunk
            if i >= len(lines):
                return
            await self.write(MORE)
            key = await self.read_key()
            await self.write(MORE_ERASE)
            if key == " ":
                chunk = page
            elif key in ("\r", "\n"):
                chunk = 1
            else:
                return

    def prompt(self) -> str:
        host = self.device.hostname
        if self.mode == "exec":
            return f"{host}#" if self.priv > 1 else f"{host}>"
        return f"{host}({self.mode})#"

    # --- main loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.write("\r\n" + self.prompt())
        while True:
            line = await self.read_line()
            if line is None:
                break
            ctrl_z = self._ctrl_z
            if line.strip():
                faults = self.device.spec.faults
                if faults.before_command is not None:
                    faults.before_command(self.executed + 1, line)
                if faults.log_noise:
                    self.device.log_noise(faults.log_noise)
                if faults.should_drop(line, self.executed):
                    self._close(True)
                    return
                if faults.should_hang(self.executed):
                    await self._hang()
                    self._close(True)
                    return
            keep = await self.execute(line)
            if keep is False:
                self._close(False)
                return
            if ctrl_z and self.mode != "exec":
                self.leave_config()
            await self.write(self.prompt())
        self._close(False)

    async def execute(self, line: str, base: int = 0) -> bool | None:
        """Run one line in the current mode; False ends the session."""
        if not line.strip():
            return True
        self.executed += 1
        if self.device.spec.faults.is_refused(line, self.executed):
            await self.write_lines([AUTHORIZATION_FAILED, ""])
            return True
        error = self.device.spec.faults.error_for(line)
        if error is not None:
            await self.write_lines([*error.splitlines(), ""])
            return True
        self._filter = None
        try:
            command = self._split_pipe(line, base)
            handler, call = self._match(command, base)
            if not await self.authorize(call):
                return True
            return await handler(self, call)
        except CommandError as exc:
            await self._report(exc, line)
            return True
        finally:
            self._filter = None

    def _match(self, line: str, base: int) -> tuple[Handler, Call]:
        table = MODE_TABLES[self.mode]
        try:
            return table.match(line, base, self.priv)
        except CommandError:
            if self.mode in ("ca-trustpoint", "config-applet"):
                # IOS runs a global command typed in a sub-mode and drops back to (config).
                handler, call = MODE_TABLES["config"].match(line, base, self.priv)
                self.close_submode()
                self.mode = "config"
                return handler, call
            raise

    def _split_pipe(self, line: str, base: int) -> str:
        bar = line.find("|")
        if bar < 0:
            return line
        head = line[:bar]
        first = head.split()[:2]
        is_show = bool(first) and (
            ("show".startswith(first[0].lower()) and len(first[0]) >= 2)
            or (first[0].lower() == "do" and len(first) > 1 and "show".startswith(first[1].lower()))
        )
        if not is_show:
            raise CommandError("invalid", base + bar)
        tail = line[bar + 1 :]
        words = [(m.group(0), m.start()) for m in re.finditer(r"\S+", tail)]
        if not words:
            raise CommandError("incomplete")
        kind_word, kind_col = words[0]
        hits = [k for k in FILTER_KINDS if k.startswith(kind_word.lower())]
        if len(hits) != 1:
            raise CommandError("invalid", base + bar + 1 + kind_col)
        if len(words) < 2:
            raise CommandError("incomplete")
        regex = tail[words[1][1] :].strip()
        try:
            pattern = re.compile(regex)
        except re.error:
            raise CommandError("invalid", base + bar + 1 + words[1][1]) from None
        self._filter = OutputFilter(hits[0], pattern)
        return head

    async def _report(self, exc: CommandError, line: str) -> None:
        if exc.kind == "invalid":
            # The caret sits under the bad character of the echoed `prompt + line`.
            await self.write_lines([" " * (len(self.prompt()) + exc.column) + "^", INVALID, ""])
        elif exc.kind == "incomplete":
            await self.write_lines([INCOMPLETE, ""])
        else:
            await self.write_lines([f'% Ambiguous command:  "{line.strip()}"', ""])  # inferred blank line

    async def authorize(self, call: Call) -> bool:
        """AAA command authorization: a parsed command the user's rules do not allow is refused, and
        nothing runs. The refusal has no `%`: `Command authorization failed.` (see docs/lab-router.md)."""
        if is_command_allowed(self.user, call.keywords, call.command):
            return True
        await self.write_lines([AUTHORIZATION_FAILED, ""])  # inferred: blank line as after other errors
        return False

    async def ask(self, question: str) -> str | None:
        await self.write(question)
        return await self.read_line()

    # --- mode changes ------------------------------------------------------------------------------

    def close_submode(self) -> None:
        if self.mode == "config-applet" and self.applet is not None:
            self.applet.registered_at = self.device.now()  # IOS registers the applet on leaving it
        self.trustpoint = None
        self.applet = None

    def leave_config(self) -> None:
        self.close_submode()
        self.mode = "exec"
        self.device.invariants.left_config(self.watch)
        if self._configured:
            self.device.log(
                f"%SYS-5-CONFIG_I: Configured from console by {self.user.name} on vty{self.vty} ({self.peer})"
            )
        self._configured = False

    def changed(self) -> None:
        self._configured = True
        self.device.mark_changed(self.user.name)
        self.device.invariants.changed(self.watch)

    def ended(self) -> None:
        """The session is over (logout, a dropped connection, the router stopping): the end-of-session checks."""
        if self.watch.ended:
            return
        self.device.invariants.closed(self.watch)
        for listener in list(self.device.session_listeners):
            listener(self.watch)


