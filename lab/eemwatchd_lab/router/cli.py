"""The lab router's command line: modes, IOS abbreviations, echo, paging, `| include/begin/section`, dialogues."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.formats import parse_hex_lines
from eemwatchd_lab.router import clock, eem, pki, settings
from eemwatchd_lab.router.clock import Zone
from eemwatchd_lab.router.device import HISTORY_SIZE, NVRAM_SIZE, Device, User

CONFIG_BANNER = "Enter configuration commands, one per line.  End with CNTL/Z."  # two spaces, IOS
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
MORE = " --More-- "
# inferred: IOS erases the --More-- marker with backspaces, spaces, backspaces after a key.
MORE_ERASE = "\b" * len(MORE) + " " * len(MORE) + "\b" * len(MORE)
SEVERITY_NAMES = ("EMERG", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG")


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


def _words(call: Call) -> list[str]:
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
                self._leave_config()
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
                self._close_submode()
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

    def _close_submode(self) -> None:
        if self.mode == "config-applet" and self.applet is not None:
            self.applet.registered_at = self.device.now()  # IOS registers the applet on leaving it
        self.trustpoint = None
        self.applet = None

    def _leave_config(self) -> None:
        self._close_submode()
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


# --- exec handlers --------------------------------------------------------------------------------------


async def h_enable(s: Session, c: Call) -> bool:
    if s.priv == 15:
        return True
    secret = s.device.spec.enable_secret
    if secret is None:
        await s.write_lines(["% No password set", ""])  # inferred (IOS without an enable secret)
        return True
    for _ in range(3):
        await s.write("Password: ")
        answer = await s.read_line(echo=False)
        if answer is None:
            return False
        if answer == secret:
            s.priv = 15
            return True
    await s.write_lines(["% Bad secrets", ""])  # inferred (IOS after three wrong secrets)
    return True


async def h_disable(s: Session, c: Call) -> bool:
    s.priv = min(s.priv, 1)
    return True


async def h_exit(s: Session, c: Call) -> bool:
    return False


async def h_terminal(s: Session, c: Call) -> bool:
    words = c.args
    if not words:
        raise CommandError("incomplete")
    value, column = words[0]
    if not value.isdigit() or int(value) > 512:  # IOS: length <0-512>, width <0-512>
        raise CommandError("invalid", column)
    if len(words) > 1:
        raise CommandError("invalid", words[1][1])
    return True


def _terminal_setter(attr: str) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        await h_terminal(s, c)
        setattr(s, attr, int(c.args[0][0]))
        return True

    return handler


def _end_of_args(c: Call) -> None:
    if c.args:
        raise CommandError("invalid", c.args[0][1])


async def h_show_clock(s: Session, c: Call) -> bool:
    _end_of_args(c)
    await s.emit([clock.show_clock(s.device.now(), s.device.zone)])
    return True


def _uptime(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return ", ".join(parts)


# The release train IOS XE names in brackets on the second line of `show version`: Everest (16.6,
# show_version__genie_isr4451_16_06_05.txt) and Cupertino (17.7, show_version__genie_c9800cl_17_07.txt) are
# captured; the other names are Cisco's published train names, recalled (inferred).
_TRAINS = (
    ((16, 5), "Everest"), ((16, 8), "Fuji"), ((16, 10), "Gibraltar"), ((16, 13), "Amsterdam"),
    ((17, 1), "Amsterdam"), ((17, 4), "Bengaluru"), ((17, 7), "Cupertino"), ((17, 10), "Dublin"),
    ((17, 13), "IOSXE"),
)


def release_train(major: int, minor: int) -> str:
    name = "Everest"
    for (first_major, first_minor), train in _TRAINS:
        if (major, minor) >= (first_major, first_minor):
            name = train
    return name


async def h_show_version(s: Session, c: Call) -> bool:
    """IOS XE layout of show_version__genie_c9800cl_17_07.txt / isr4451_16_06_05 (release builds): the first
    line keeps the zero-padded version (`17.07.01prd16`), the second drops the padding (`17.7.1prd16`)."""
    _end_of_args(c)
    ver = s.device.spec.version
    major, minor, rest = ver.split(".")
    short = f"{int(major)}.{int(minor)}.{rest.lstrip('0') or '0'}"
    train = release_train(int(major), int(minor))
    now = s.device.now()
    uptime = _uptime(now - s.device.started_at)
    lines = [
        f"Cisco IOS XE Software, Version {ver}",
        f"Cisco IOS Software [{train}], Virtual XE Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), "
        f"Version {short}, RELEASE SOFTWARE (fc3)",
        "Technical Support: http://www.cisco.com/techsupport",
        "Copyright (c) 1986-2023 by Cisco Systems, Inc.",
        "Compiled Fri 20-Oct-23 10:44 by mcpre",
        "",
        "",
        "Cisco IOS-XE software, Copyright (c) 2005-2023 by cisco Systems, Inc.",
        "All rights reserved.  Certain components of Cisco IOS-XE software are",
        'licensed under the GNU General Public License ("GPL") Version 2.0.  The',
        "software code licensed under GPL Version 2.0 is free software that comes",
        "with ABSOLUTELY NO WARRANTY.  You can redistribute and/or modify such",
        "GPL code under the terms of GPL Version 2.0.  For more details, see the",
        'documentation or "License Notice" file accompanying the IOS-XE software,',
        "or the applicable URL provided on the flyer accompanying the IOS-XE",
        "software.",
        "",
        "",
        "ROM: IOS-XE ROMMON",
        "",
        f"{s.device.hostname} uptime is {uptime}",
        f"Uptime for this control processor is {uptime}",
        "System returned to ROM by reload",
        "System image file is \"bootflash:packages.conf\"",
        "Last reload reason: reload",
        "",
        "",
        "",
        "This product contains cryptographic features and is subject to United",
        "States and local country laws governing import, export, transfer and",
        "use. Delivery of Cisco cryptographic products does not imply",
        "third-party authority to import, export, distribute or use encryption.",
        "Importers, exporters, distributors and users are responsible for",
        "compliance with U.S. and local country laws. By using this product you",
        "agree to comply with applicable laws and regulations. If you are unable",
        "to comply with U.S. and local laws, return this product immediately.",
        "",
        "A summary of U.S. laws governing Cisco cryptographic products may be found at:",
        "http://www.cisco.com/wwl/export/crypto/tool/stqrg.html",
        "",
        "If you require further assistance please contact us by sending email to",
        "export@cisco.com.",
        "",
        "License Level: ",
        "License Type: Perpetual",
        "Next reload license Level: ",
        "",
        "The current throughput level is 250000 kbps ",
        "",
        "",
        "Smart Licensing Status: Smart Licensing Using Policy",
        "",
        "cisco C8000V (VXE) processor (revision VXE) with 1900130K/3075K bytes of memory.",
        "Processor board ID 9LAB" + f"{abs(hash(s.device.spec.name)) % 10**7:07d}",
        "Router operating mode: Autonomous",
        "3 Gigabit Ethernet interfaces",
        "32768K bytes of non-volatile configuration memory.",
        "8082280K bytes of physical memory.",
        "14589951K bytes of virtual hard disk at bootflash:.",
        "",
        "Configuration register is 0x2102",
        "",
    ]
    await s.emit(lines)
    return True


async def h_show_logging(s: Session, c: Call) -> bool:
    _end_of_args(c)
    count = s.device.logbuf.total
    # Header inferred from IOS XE; the `Buffer logging:` and `Log Buffer (N bytes):` lines follow
    # send_log_severity_userlog__gh_rt01_iol.txt.
    lines = [
        "Syslog logging: enabled (0 messages dropped, 0 messages rate-limited, 0 flushes, 0 overruns, "
        "xml disabled, filtering disabled)",
        "",
        "No Active Message Discriminator.",
        "",
        "",
        "",
        "No Inactive Message Discriminator.",
        "",
        "",
        "    Console logging: disabled",
        "    Monitor logging: level debugging, 0 messages logged, xml disabled,",
        "                     filtering disabled",
        *s.device.logbuf.header(),
        "    Exception Logging: size (4096 bytes)",
        "    Count and timestamp logging messages: disabled",
        "    Persistent logging: disabled",
        "",
        "No active filter modules.",
        "",
        f"    Trap logging: level informational, {count} message lines logged",
        "        Logging Source-Interface:       VRF Name:",
        "",
    ]
    if s.device.logbuf.enabled:  # inferred: no buffer section while buffered logging is off
        lines += [f"Log Buffer ({s.device.logbuf.size} bytes):", "", *s.device.log_lines]
    await s.emit(lines)
    return True


async def h_show_running(s: Session, c: Call) -> bool:
    _end_of_args(c)
    await s.emit(s.device.running_config())
    return True


def _nvram_refs(lines: list[str]) -> list[str]:
    """17.3 `show config` shows file references instead of hex (gh_ie_switch_17_3): the same file names as the
    `Storage:` lines of `show crypto pki certificates` (pki.storage_file)."""
    out: list[str] = []
    head: str | None = None
    hex_lines: list[str] = []
    seen: dict[bytes, str] = {}
    for line in lines:
        if head is not None:
            if line.strip() != "quit":
                hex_lines.append(line)
                continue
            cert = Certificate.from_der(parse_hex_lines(hex_lines, what="startup-config"), what="startup-config")
            name = seen.setdefault(cert.der, pki.storage_file(cert, len(seen) + 1))
            out.append(f"{head} {name}")
            head = None
            continue
        if line.startswith(" certificate ca "):
            head, hex_lines = line, []
            continue
        out.append(line)
    return out


async def h_show_startup(s: Session, c: Call) -> bool:
    _end_of_args(c)
    text = s.device.startup_config()
    if text is None:
        await s.emit(["startup-config is not present"])  # inferred wording
        return True
    body = text.splitlines()
    await s.emit([f"Using {len(text.encode())} out of {NVRAM_SIZE} bytes", *_nvram_refs(body)])
    return True


async def h_show_certificates(s: Session, c: Call) -> bool:
    words = list(c.args)
    if words and len(words[0][0]) >= 2 and "pem".startswith(words[0][0].lower()):
        if len(words) > 2:
            raise CommandError("invalid", words[2][1])
        only_pem = words[1][0] if len(words) > 1 else None
        await s.emit(pki.show_certificates_pem(list(s.device.trustpoints.values()), only=only_pem))
        return True
    verbose = False
    if words and "verbose".startswith(words[0][0].lower()) and len(words[0][0]) >= 1:
        verbose = True
        words = words[1:]
    only = None
    if words:
        only = words[0][0]
        if len(words) > 1:
            raise CommandError("invalid", words[1][1])
    await s.emit(pki.show_certificates(list(s.device.trustpoints.values()), verbose=verbose, only=only,
                                         zone=s.device.zone))
    return True


async def h_show_trustpoints(s: Session, c: Call) -> bool:
    words = list(c.args)
    status = False
    if words and "status".startswith(words[-1][0].lower()):
        status = True
        words = words[:-1]
    only = None
    if words:
        only = words[0][0]
        if len(words) > 1:
            raise CommandError("invalid", words[1][1])
    await s.emit(pki.show_trustpoints(list(s.device.trustpoints.values()), status=status, only=only))
    return True


async def h_show_trustpool(s: Session, c: Call) -> bool:
    _end_of_args(c)
    await s.emit(pki.show_trustpool(s.device.trustpool, s.device.zone))
    return True


async def h_trustpool_import(s: Session, c: Call) -> bool:
    _end_of_args(c)
    await pki.import_trustpool(s, s.device.trustpool)
    return True


async def h_show_env(s: Session, c: Call) -> bool:
    if c.args and not "all".startswith(c.args[0][0].lower()):
        name = c.args[0][0]
        if name in s.device.env:
            await s.emit(eem.show_environment({name: s.device.env[name]}))
        else:
            await s.emit(["Environment variable not found"])  # code-only evidence (id=41901568354)
        return True
    await s.emit(eem.show_environment(s.device.env))
    return True


async def h_show_policy(s: Session, c: Call) -> bool:
    _end_of_args(c)
    await s.emit(eem.show_policy_registered(list(s.device.applets.values()), s.device.zone))
    return True


async def h_show_history(s: Session, c: Call) -> bool:
    _end_of_args(c)
    await s.emit(eem.show_history(s.device.history, s.device.zone))
    return True


async def h_configure(s: Session, c: Call) -> bool:
    if c.args:
        if not "terminal".startswith(c.args[0][0].lower()):
            raise CommandError("invalid", c.args[0][1])
    else:
        answer = await s.ask("Configuring from terminal, memory, or network [terminal]? ")
        if answer is None:
            return False
        if answer.strip() and not "terminal".startswith(answer.strip().lower()):
            await s.write_lines(["?Must be \"terminal\", \"memory\" or \"network\"", ""])  # inferred
            return True
    await s.write_lines([CONFIG_BANNER])
    s.mode = "config"
    s.device.invariants.entered_config(s.watch)
    return True


async def _build_and_save(s: Session) -> None:
    # write_memory / copy: `Building configuration...` then `[OK]` (C9800, cm-s6-h001)
    await s.write_lines(["Building configuration..."])
    s.device.invariants.saved(s.watch)
    s.device.save()
    await s.write_lines(["[OK]"])


async def h_write(s: Session, c: Call) -> bool:
    await _build_and_save(s)
    return True


async def h_copy_run_start(s: Session, c: Call) -> bool:
    answer = await s.ask("Destination filename [startup-config]? ")
    if answer is None:
        return False
    if answer.strip() not in ("", "startup-config"):
        await s.write_lines([f"%Error opening nvram:{answer.strip()} (Permission denied)", ""])  # inferred
        return True
    await _build_and_save(s)
    return True


async def h_send_log(s: Session, c: Call) -> bool:
    words = c.args
    if not words:
        raise CommandError("incomplete")
    text = c.rest
    tag = f"Message from tty{s.vty + 2}(user id: {s.user.name}): "  # inferred: vty0 = tty2 (lambreca 7200)
    first = words[0][0]
    if first.isdigit():
        sev = int(first)
        if sev > 7:
            raise CommandError("invalid", words[0][1])
        if len(words) < 2:
            raise CommandError("incomplete")
        text = c.rest[words[1][1] - c.rest_column :]
        s.device.log(f"%SYS-{sev}-USERLOG_{SEVERITY_NAMES[sev]}: {tag}{text}")
    else:
        # inferred: without a severity (personal note id=27220129955 claims SYS-2-LOGMSG)
        s.device.log(f"%SYS-2-LOGMSG: {tag}{text}")
    return True


async def h_event_run(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    fire = s.device.invariants.fired(s.watch)

    def done(ok: bool) -> None:
        fire.ok = ok

    refusal = s.device.run_applet(c.args[0][0], on_done=done)
    if refusal is not None:
        fire.ok = False
        await s.write_lines([refusal, ""])  # inferred: printed at the CLI, blank line after
    return True


# --- config handlers --------------------------------------------------------------------------------------


async def h_end(s: Session, c: Call) -> bool:
    s._leave_config()
    return True


async def h_exit_config(s: Session, c: Call) -> bool:
    if s.mode in ("ca-trustpoint", "config-applet"):
        s._close_submode()
        s.mode = "config"
    else:
        s._leave_config()
    return True


async def h_do(s: Session, c: Call) -> bool | None:
    if not c.args:
        raise CommandError("incomplete")
    mode = s.mode
    s.mode = "exec"
    try:
        handler, call = EXEC.match(c.rest, c.rest_column, s.priv)
        if handler in (h_configure, h_exit):
            raise CommandError("invalid", c.rest_column)
        if not await s.authorize(call):  # `do X` is authorized as X
            return True
        return await handler(s, call)
    finally:
        if s.mode == "exec":
            s.mode = mode


async def h_hostname(s: Session, c: Call) -> bool:
    if len(c.args) != 1:
        raise CommandError("incomplete" if not c.args else "invalid", c.args[-1][1] if c.args else 0)
    s.device.hostname = c.args[0][0]
    s.changed()
    return True


async def h_trustpoint(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    tp = s.device.trustpoints.get(name)
    if tp is None:
        tp = pki.Trustpoint(name)
        s.device.trustpoints[name] = tp
    s.trustpoint = tp
    s.mode = "ca-trustpoint"
    s.changed()
    return True


async def h_no_trustpoint(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    tp = s.device.trustpoints.get(name)
    if tp is None:
        await s.write_lines([pki.cannot_find_policy(name), ""])
        return True
    if tp.ca_cert is not None:
        # no_crypto_pki_trustpoint__genielibs_wsim_c9800.txt; without certificates no question (id=60910671649)
        await s.write_lines(pki.REMOVE_WARNING)
        answer = await s.ask(pki.REMOVE_QUESTION)
        if answer is None:
            return False
        if not pki.is_yes(answer):
            return True  # inferred: "no" keeps the trustpoint silently
        await s.write_lines(pki.REMOVE_DONE)
    del s.device.trustpoints[name]
    s.changed()
    return True


async def h_authenticate(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    if await pki.authenticate(s, s.device.trustpoints.get(name), name, s.device.now()):
        s.changed()
    return True


async def h_environment(s: Session, c: Call) -> bool:
    if len(c.args) < 2:
        raise CommandError("incomplete")
    name = c.args[0][0]
    value = c.rest[c.args[1][1] - c.rest_column :].strip()
    s.device.env[name] = value
    s.changed()
    return True


async def h_no_environment(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    s.device.env.pop(c.args[0][0], None)
    s.changed()
    return True


async def h_history_size(s: Session, c: Call) -> bool:
    """`event manager history size events <1-50>` (traps are accepted and ignored)."""
    words = _words(c)
    if len(words) < 2:
        raise CommandError("incomplete")
    kind = [k for k in ("events", "traps") if k.startswith(words[0].lower())]
    if len(kind) != 1:
        raise CommandError("invalid", c.args[0][1])
    if not words[1].isdigit() or not 1 <= int(words[1]) <= 50:
        raise CommandError("invalid", c.args[1][1])
    if len(words) > 2:
        raise CommandError("invalid", c.args[2][1])
    if kind[0] == "events":
        s.device.set_history_size(int(words[1]))
    s.changed()
    return True


async def h_no_history_size(s: Session, c: Call) -> bool:
    if c.args and "events".startswith(c.args[0][0].lower()):
        s.device.history_size = HISTORY_SIZE
    s.changed()
    return True


async def h_applet(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    name = c.args[0][0]
    extra = [w.lower() for w, _ in c.args[1:]]
    bypass = False
    if extra:
        if len(extra) != 2 or not "authorization".startswith(extra[0]) or not "bypass".startswith(extra[1]):
            raise CommandError("invalid", c.args[1][1])
        bypass = True
    applet = s.device.applets.get(name)
    if applet is None:
        applet = eem.Applet(name)
        s.device.applets[name] = applet
    applet.authorization_bypass = bypass or applet.authorization_bypass
    s.applet = applet
    s.mode = "config-applet"
    s.changed()
    return True


async def h_no_applet(s: Session, c: Call) -> bool:
    if not c.args:
        raise CommandError("incomplete")
    s.device.applets.pop(c.args[0][0], None)
    s.changed()
    return True


def _trustpoint_setter(keyword: str) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        assert s.trustpoint is not None
        try:
            pki.apply_trustpoint_command(s.trustpoint, keyword, c.args)
        except pki.SubcommandError as exc:
            raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
        s.changed()
        return True

    return handler


def _trustpoint_unsetter(keyword: str) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        assert s.trustpoint is not None
        pki.remove_trustpoint_setting(s.trustpoint, keyword)
        s.changed()
        return True

    return handler


async def h_applet_event(s: Session, c: Call) -> bool:
    assert s.applet is not None
    try:
        eem.parse_event(s.applet, c.args)
    except eem.ActionSyntaxError as exc:
        raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
    s.changed()
    return True


async def h_applet_action(s: Session, c: Call) -> bool:
    assert s.applet is not None
    try:
        action = eem.parse_action(c.rest, c.rest_column)
    except eem.ActionSyntaxError as exc:
        raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
    s.applet.set_action(action)
    s.changed()
    return True


async def h_applet_no_action(s: Session, c: Call) -> bool:
    assert s.applet is not None
    if not c.args:
        raise CommandError("incomplete")
    label = c.args[0][0]
    s.applet.actions = [a for a in s.applet.actions if a.label != label]
    s.changed()
    return True


async def h_applet_maxrun(s: Session, c: Call) -> bool:
    # inferred: IOS sets maxrun on the `event` line; a bare `maxrun N` is accepted here as a shortcut.
    assert s.applet is not None
    if not c.args:
        raise CommandError("incomplete")
    try:
        s.applet.maxrun = eem.parse_maxrun(c.args[0])
    except eem.ActionSyntaxError as exc:
        raise CommandError("invalid", exc.column) from None
    s.changed()
    return True


def _setting(apply: Callable[[Session, list[tuple[str, int]]], None]) -> Handler:
    async def handler(s: Session, c: Call) -> bool:
        try:
            apply(s, c.args)
        except settings.SettingError as exc:
            raise CommandError("incomplete" if exc.column < 0 else "invalid", exc.column) from None
        s.changed()
        return True

    return handler


def _set_timezone(s: Session, args: list[tuple[str, int]]) -> None:
    zone = settings.clock_timezone(args)
    old = s.device.zone
    s.device.zone = Zone(zone.name, zone.offset, old.summer_name, old.summer_start, old.summer_end, old.summer_extra)


def _set_summer(s: Session, args: list[tuple[str, int]]) -> None:
    s.device.zone, s.device.summer_text = settings.clock_summer_time(s.device.zone, args)


def _no_timezone(s: Session, args: list[tuple[str, int]]) -> None:
    old = s.device.zone
    s.device.zone = Zone("UTC", timedelta(0), old.summer_name, old.summer_start, old.summer_end, old.summer_extra)


def _no_summer(s: Session, args: list[tuple[str, int]]) -> None:
    s.device.zone = Zone(s.device.zone.name, s.device.zone.offset)
    s.device.summer_text = None


def _set_sequence_numbers(on: bool) -> Callable[[Session, list[tuple[str, int]]], None]:
    def apply(s: Session, args: list[tuple[str, int]]) -> None:
        if args:
            raise settings.SettingError(args[0][1])
        s.device.logbuf.sequence_numbers = on

    return apply


async def h_ignore(s: Session, c: Call) -> bool:
    return True


def _build_tables() -> dict[str, CommandTable]:
    exec_table = CommandTable()
    exec_table.add("enable", h_enable, priv=0)
    exec_table.add("disable", h_disable, priv=1)
    exec_table.add("exit", h_exit, priv=0)
    exec_table.add("logout", h_exit, priv=0)
    exec_table.add("terminal length", _terminal_setter("length"), priv=0, args=True)
    exec_table.add("terminal width", _terminal_setter("width"), priv=0, args=True)
    exec_table.add("terminal no monitor", h_ignore, priv=1)
    exec_table.add("terminal monitor", h_ignore, priv=1)
    exec_table.add("show clock", h_show_clock, priv=1)
    exec_table.add("show version", h_show_version, priv=1)
    exec_table.add("show logging", h_show_logging)
    exec_table.add("show running-config", h_show_running)
    exec_table.add("show startup-config", h_show_startup)
    exec_table.add("show crypto pki certificates", h_show_certificates, args=True)
    exec_table.add("show crypto pki trustpoints", h_show_trustpoints, args=True)
    exec_table.add("show crypto pki trustpool", h_show_trustpool)
    exec_table.add("show event manager environment", h_show_env, args=True)
    exec_table.add("show event manager policy registered", h_show_policy)
    exec_table.add("show event manager history events", h_show_history)
    exec_table.add("configure", h_configure, args=True)
    exec_table.add("write", h_write)
    exec_table.add("write memory", h_write)
    exec_table.add("copy running-config startup-config", h_copy_run_start)
    exec_table.add("send log", h_send_log, args=True)
    exec_table.add("event manager run", h_event_run, args=True)

    config = CommandTable()
    config.add("end", h_end)
    config.add("exit", h_exit_config)
    config.add("do", h_do, args=True)
    config.add("hostname", h_hostname, args=True)
    config.add("crypto pki trustpoint", h_trustpoint, args=True)
    config.add("crypto pki authenticate", h_authenticate, args=True)
    # with `trustpool` beside `trustpoint`, `crypto pki trust` is ambiguous, as on a real router
    config.add("crypto pki trustpool import terminal", h_trustpool_import)
    config.add("no crypto pki trustpoint", h_no_trustpoint, args=True)
    config.add("event manager environment", h_environment, args=True)
    config.add("event manager applet", h_applet, args=True)
    config.add("no event manager environment", h_no_environment, args=True)
    config.add("no event manager applet", h_no_applet, args=True)
    config.add("event manager history size", h_history_size, args=True)
    config.add("logging buffered", _setting(lambda s, a: settings.logging_buffered(s.device.logbuf, a)), args=True)
    config.add("no logging buffered", _setting(lambda s, a: s.device.logbuf.disable()), args=True)
    config.add("service timestamps", _setting(lambda s, a: settings.service_timestamps(s.device.logbuf, a)),
               args=True)
    config.add("service sequence-numbers", _setting(_set_sequence_numbers(True)), args=True)
    config.add("no service sequence-numbers", _setting(_set_sequence_numbers(False)), args=True)
    config.add("clock timezone", _setting(_set_timezone), args=True)
    config.add("clock summer-time", _setting(_set_summer), args=True)
    config.add("no clock timezone", _setting(_no_timezone), args=True)
    config.add("no clock summer-time", _setting(_no_summer), args=True)
    config.add("no event manager history size", h_no_history_size, args=True)

    trustpoint = CommandTable()
    trustpoint.add("end", h_end)
    trustpoint.add("exit", h_exit_config)
    trustpoint.add("do", h_do, args=True)
    for keyword in pki.TRUSTPOINT_KEYWORDS:
        if keyword in ("exit", "no"):
            continue
        trustpoint.add(keyword, _trustpoint_setter(keyword), args=True)
        trustpoint.add(f"no {keyword}", _trustpoint_unsetter(keyword), args=True)

    applet = CommandTable()
    applet.add("end", h_end)
    applet.add("exit", h_exit_config)
    applet.add("do", h_do, args=True)
    applet.add("event", h_applet_event, args=True)
    applet.add("action", h_applet_action, args=True)
    applet.add("no action", h_applet_no_action, args=True)
    applet.add("maxrun", h_applet_maxrun, args=True)
    applet.add("description", h_ignore, args=True)
    return {"exec": exec_table, "config": config, "ca-trustpoint": trustpoint, "config-applet": applet}


MODE_TABLES = _build_tables()
EXEC = MODE_TABLES["exec"]

__all__ = ["CommandTable", "Session"]
