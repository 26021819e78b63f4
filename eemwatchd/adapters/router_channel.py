"""A router SSH session at the level of commands and dialogues (scrapli classic + asyncssh): open with the
host key pinned, send commands and check each answer for refusals, expect a prompt or a question, close;
every library error becomes ours.

Round trips are what a session costs over a WAN, so commands go out as IOS takes them from a keyboard: one
write of `command\n` per command and one read to the prompt, and several commands that cannot depend on each
other's answer in one write (type-ahead, eemwatchd.core.ios.typeahead splits the answer). scrapli opens the
session (asyncssh transport, authentication, `enable`) and carries the bytes; its send_command is not used:
it writes a command, waits for the echo and then sends Enter as a second write (docs/design.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import asyncssh
from scrapli.driver.core import AsyncIOSXEDriver
from scrapli.exceptions import (
    ScrapliAuthenticationFailed,
    ScrapliConnectionError,
    ScrapliConnectionNotOpened,
    ScrapliException,
    ScrapliPrivilegeError,
    ScrapliTimeout,
)

from eemwatchd import __version__
from eemwatchd.adapters.router_access import (
    RouterTarget,
    host_key_rejection,
    read_known_hosts,
    record_first_host_key,
    ssh_algorithms,
)
from eemwatchd.core.ios.tokens import check_ios_token
from eemwatchd.core.ios.typeahead import (
    Reply,
    ends_with_prompt,
    hostname_of,
    prompt_pattern,
    split_replies,
)
from eemwatchd.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandRefused,
    HostKeyRejected,
    RouterError,
    RouterTimeout,
    RouterUnreachable,
    SessionRefused,
)

logger = logging.getLogger("eemwatchd.router")

# scrapli logs every byte it reads at DEBUG, and `show running-config` holds the mail password in
# `event manager environment _email_server`; at INFO it logs every command. Our own `eemwatchd.router`
# events say what changed; keep scrapli at WARNING unless someone chose a level.
if logging.getLogger("scrapli").level == logging.NOTSET:
    logging.getLogger("scrapli").setLevel(logging.WARNING)

# Prompts as scrapli's IOS XE driver defines them; `(ca-trustpoint)#` is a configuration prompt.
CONFIG_PROMPT = re.compile(r"^[\w.\-@/:]{1,63}\([\w.\-@/:+]{0,32}\)#\s*$", re.M)
EXEC_PROMPT = re.compile(r"^[\w.\-@/:]{1,63}[#>]\s*$", re.M)
_ANY_PROMPT_END = re.compile(rf"(?:^|\n)(?P<prompt>{prompt_pattern()})[ \t]*$")
# Set up once per session, in one write: no paging, lines as wide as IOS allows.
TERMINAL_SETUP = ("terminal length 0", "terminal width 512")
# A look at the EEM history is never sooner than this after the previous one (on loopback the round trip
# is ~1 ms; a short mail job ends in ~50 ms).
MIN_POLL_GAP = 0.02
# AAA command authorization refusals (tests/transcripts/ and docs/lab-router.md cite their sources): the exec
# refusal has no `%`. Checked in the output of EVERY command before it is parsed, so a refused
# `show running-config` is an error naming the command, never an empty router.
_REFUSALS = ("Command authorization failed", "% Authorization failed")
# scrapli's IOS XE failure strings plus the refusals; a command whose output holds one of them failed.
_FAILED_WHEN_CONTAINS = ["% Ambiguous command", "% Incomplete command", "% Invalid input detected",
                         "% Unknown command", *_REFUSALS]

# --- the session -----------------------------------------------------------------------------------


class _Driver(AsyncIOSXEDriver):
    """scrapli's IOS XE driver, failing fast when `enable` needs a secret we do not have."""

    def _pre_escalate(self, escalate_priv: Any) -> None:
        # scrapli would warn (a Python warning) and then wait out timeout_ops on the `Password:` prompt.
        if escalate_priv.escalate_auth is True and not self.auth_secondary:
            raise ScrapliPrivilegeError("no enable secret to answer the `enable` password prompt")


class RouterChannel:
    """One SSH session to one router, at the level of commands and dialogues: open, send, expect, close.

    Any failure in doubt closes it; a closed session is never reused. RouterSession adds what eemwatchd does.
    """

    def __init__(self, target: RouterTarget, *, clock: Callable[[], datetime] | None = None) -> None:
        self.target = target
        self._clock = clock or (lambda: datetime.now(UTC))
        self._conn: AsyncIOSXEDriver | None = None
        self._closed_reason: str | None = None
        self._secrets: set[str] = set()  # mail passwords read from this router: scrubbed from what we return
        self._hostname: str | None = None  # from the first prompt: prompts are matched by this exact name
        self._mode = "exec"  # `exec` or `config` (any configuration mode), from the last prompt seen
        self.round_trip: float | None = None  # the quickest command answer so far (seconds): about one RTT
        self.exchanges = 0  # writes that waited for an answer (each costs a round trip)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def name(self) -> str:
        return self.target.name

    # --- opening and closing ---------------------------------------------------------------------

    def _driver(self, client_key: asyncssh.SSHKey | None, known_hosts: asyncssh.SSHKnownHosts) -> AsyncIOSXEDriver:
        t = self.target
        asyncssh_options: dict[str, Any] = {
            # Host keys are checked by asyncssh during key exchange, before any password is sent;
            # scrapli's own auth_strict_key checks afterwards and ignores [host]:port (docs/field-notes.md sec. 6).
            "known_hosts": known_hosts,
            "agent_path": None,
            # Only the key we loaded (no default ~/.ssh keys behind the operator's back), and no empty
            # password attempt when no password is configured (a failed login in the router's log).
            "client_keys": [client_key] if client_key is not None else None,
            "password": t.password,
            # Say who we are in the SSH version string (`show ssh` and the router's logs show it; the lab
            # router judges the invariants of these sessions only): SSH-2.0-eemwatchd_<version>.
            "client_version": f"eemwatchd_{__version__}",
            # scrapli asks for keyboard-interactive before password: a round trip more wherever the router
            # allows both (IOS does by default); keyboard-interactive stays the fallback.
            "preferred_auth": ("publickey", "password", "keyboard-interactive"),
            **ssh_algorithms(legacy=t.legacy_algorithms),
        }
        return _Driver(
            host=t.host,
            port=t.port,
            auth_username=t.username,
            auth_password=t.password or "",
            auth_secondary=t.enable_secret or "",
            auth_strict_key=False,
            ssh_config_file=False,
            transport="asyncssh",
            transport_options={"asyncssh": asyncssh_options},
            timeout_socket=t.timeouts.connect,
            # 0: scrapli wraps no read in a wait_for of its own; every read here is bounded by its step's
            # deadline (one asyncio.timeout per exchange), and open() by connect + command.
            timeout_transport=0,
            timeout_ops=t.timeouts.command,
            failed_when_contains=list(_FAILED_WHEN_CONTAINS),
            on_open=self._on_open,
            on_close=_leave_quietly,
        )

    async def open(self) -> None:
        if self._conn is not None or self._closed_reason is not None:
            raise RouterError(self.name, "a router session is opened once")
        t = self.target
        if t.trust_on_first_use:
            await record_first_host_key(t)
        elif not t.known_hosts_path.exists():
            raise host_key_rejection(t)
        try:
            known_hosts = read_known_hosts(t.known_hosts_path)
        except (OSError, ValueError) as exc:
            self._closed_reason = "open failed"
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise HostKeyRejected(
                self.name, f"known_hosts file {t.known_hosts_path} cannot be used: {reason}; fix or remove that entry"
            ) from exc
        client_key: asyncssh.SSHKey | None = None
        if t.key_file is not None:
            try:
                client_key = asyncssh.read_private_key(str(t.key_file))
            except (OSError, asyncssh.KeyImportError) as exc:
                self._closed_reason = "open failed"
                raise AuthenticationFailed(self.name, f"cannot use key file {t.key_file}: {exc}") from exc
        conn = self._driver(client_key, known_hosts)
        try:
            await asyncio.wait_for(conn.open(), timeout=t.timeouts.connect + t.timeouts.command)
        except BaseException as exc:
            _drop_transport(conn)
            self._closed_reason = "open failed"
            raise self._open_error(exc) from exc
        self._conn = conn
        logger.debug("router %s: session open", self.name)

    async def _on_open(self, conn: AsyncIOSXEDriver) -> None:
        """Called by scrapli once the shell is open: read the prompt IOS prints by itself (no Enter sent for
        it), `enable` when it is `>`, then set up the terminal in one write."""
        self._conn = conn
        try:
            prompt = await self._first_prompt()
            if prompt.endswith(">"):
                # user EXEC: scrapli's `enable` dialogue (the secret, or a fast failure without one)
                await conn.acquire_priv(desired_priv="privilege_exec")
            self._hostname = hostname_of(prompt)
            replies = await self._exchange(TERMINAL_SETUP, step="terminal setup", timeout=self.target.timeouts.command)
            for reply in replies:
                if not _failure(reply.output):
                    continue
                if reply.command == TERMINAL_SETUP[0]:
                    # AAA refusing `terminal length 0` leaves paging on: every long output (`show running-config`)
                    # would stop at ` --More-- ` and wait until the job's timeout. An error now, naming it.
                    check_refused(self.name, reply.command, reply.output)
                    raise CommandFailed(self.name, reply.command, reply.output)
                # a refused `terminal width 512` is harmless (IOS does not wrap show output)
                logger.info("router %s: %r not accepted (%s); going on", self.name, reply.command,
                            reply.output.strip()[:200])
        finally:
            self._conn = None

    async def _first_prompt(self) -> str:
        conn = self._live()
        buffer = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.target.timeouts.command
        while (found := _ANY_PROMPT_END.search(buffer)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RouterTimeout(self.name, "login (no prompt)")
            try:
                chunk = await asyncio.wait_for(conn.channel.read(), remaining)
            except (ScrapliException, OSError, asyncssh.Error) as exc:
                if any(text in buffer for text in _REFUSALS):  # `aaa authorization exec` refused the session
                    raise AuthenticationFailed(
                        self.name, f"user {self.target.username!r} may log in but not start a session "
                        f"(exec authorization): {device_text(buffer, '')}") from exc
                raise
            buffer += chunk.decode("utf-8", "replace")
        return found.group("prompt")

    def _open_error(self, exc: BaseException) -> BaseException:
        t = self.target
        if isinstance(exc, RouterError):
            return exc
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return host_key_rejection(t)
        if isinstance(exc, ConnectionResetError | asyncssh.ConnectionLost) or (
            isinstance(exc, ScrapliConnectionNotOpened) and "reset" in str(exc).lower()
        ):
            # IOS drops the TCP connection before the SSH banner when every vty line is taken
            # (docs/lab-router.md cites the sources); eemwatchd itself uses one session per router.
            return SessionRefused(
                self.name,
                f"{t.host}:{t.port}: the router closed the connection before the SSH banner (all vty lines "
                "busy? `line vty 0 4` allows five sessions; check `show users`)",
            )
        if isinstance(exc, asyncssh.PermissionDenied):
            return AuthenticationFailed(self.name, f"user {t.username!r} was refused ({self._credentials()})")
        if isinstance(exc, ScrapliAuthenticationFailed):
            if "timed out" in str(exc):
                return RouterTimeout(self.name, "connect")
            if "escalating privilege" in str(exc):
                # scrapli sent the secret once and the device asked again (`Password:`) or never answered.
                return AuthenticationFailed(
                    self.name,
                    f"`enable` failed: the router did not accept the enable secret for user {t.username!r} "
                    "(privileged EXEC not reached)",
                )
            return AuthenticationFailed(self.name, f"user {t.username!r} was refused ({self._credentials()})")
        if isinstance(exc, ScrapliPrivilegeError):
            return AuthenticationFailed(
                self.name,
                f"cannot `enable`: user {t.username!r} lands in user EXEC and no enable secret is set; "
                "set the enable secret or give the user privilege 15",
            )
        if isinstance(exc, (TimeoutError, ScrapliTimeout)):
            return RouterTimeout(self.name, "login")
        if isinstance(exc, asyncssh.DisconnectError):
            return RouterUnreachable(self.name, f"SSH refused: {exc.reason}")
        if isinstance(exc, ConnectionRefusedError):
            return RouterUnreachable(self.name, f"{t.host}:{t.port}: connection refused (is SSH enabled, "
                                                "and is that the right port?)")
        if isinstance(exc, OSError) and exc.strerror:
            return RouterUnreachable(self.name, f"{t.host}:{t.port}: {exc.strerror}")
        if isinstance(exc, (OSError, ScrapliConnectionError, ScrapliConnectionNotOpened)):
            return RouterUnreachable(self.name, f"{t.host}:{t.port}: {exc or type(exc).__name__}")
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
            return exc
        return RouterUnreachable(self.name, f"{type(exc).__name__}: {exc}")

    def _credentials(self) -> str:
        """What we logged in with, for an error message (never the secret itself)."""
        t = self.target
        used = [f"key file {t.key_file}"] if t.key_file is not None else []
        if t.password is not None:
            used.append("password")
        return "tried " + " and ".join(used) if used else "no key file or password configured"

    async def close(self) -> None:
        """Log out politely when the session is sound (`end` when in config mode, `exit`: written, not
        waited for); otherwise just drop the connection."""
        conn, self._conn = self._conn, None
        if self._closed_reason is None:
            self._closed_reason = "closed"
        if conn is None:
            return
        try:
            conn.channel.write(("end\n" if self._mode == "config" else "") + "exit\n")
            await asyncio.wait_for(conn.close(), timeout=self.target.timeouts.command)
        except (ScrapliException, OSError, asyncssh.Error, TimeoutError):
            pass
        finally:
            _drop_transport(conn)

    def _abandon(self, reason: str) -> None:
        """The session is in doubt: close the connection now, refuse any further use."""
        conn, self._conn = self._conn, None
        self._closed_reason = reason
        if conn is not None:
            _drop_transport(conn)
        logger.warning("router %s: session closed: %s", self.name, reason)

    def _live(self) -> AsyncIOSXEDriver:
        if self._conn is None:
            raise RouterError(self.name, f"session not usable ({self._closed_reason or 'not open'})")
        return self._conn

    # --- low-level steps -------------------------------------------------------------------------

    async def _command(self, command: str, *, timeout: float | None = None) -> str:
        """One command, one write, one read to the prompt; its output, checked for refusals and errors."""
        return (await self._commands([command], timeout=timeout))[0]

    async def _commands(self, commands: Sequence[str], *, timeout: float | None = None) -> list[str]:
        """Exec commands that do not depend on each other's answers, in one write; each output checked in
        order (the first refused or failed command raises, naming itself)."""
        replies = await self._exec(commands, timeout=timeout or self.target.timeouts.command)
        for reply in replies:
            self._check(reply)
        return [reply.output for reply in replies]

    async def _exec(self, commands: Sequence[str], *, timeout: float) -> list[Reply]:
        """Exec commands in one write, after `end` in the same write when the session is in config mode."""
        if self._mode == "config":
            return await self._leave_config(*commands, timeout=timeout)
        return await self._exchange(commands, step=commands[0], timeout=timeout)

    def _check(self, reply: Reply) -> None:
        check_refused(self.name, reply.command, reply.output)
        if _failure(reply.output):
            raise CommandFailed(self.name, reply.command, reply.output)

    async def _exchange(
        self, commands: Sequence[str], *, step: str, timeout: float, question: re.Pattern[str] | None = None
    ) -> list[Reply]:
        """Write ``commands`` at once and read until every one answered (the last may ask ``question``).

        A lost connection or a timeout names the command whose answer was awaited and abandons the session.
        """
        conn = self._live()
        commands = tuple(commands)
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._write("".join(f"{c}\n" for c in commands))
        self.exchanges += 1
        buffer = ""
        try:
            async with asyncio.timeout_at(started + timeout):
                while True:
                    if ends_with_prompt(buffer, self._hostname) or (question is not None and question.search(buffer)):
                        read = split_replies(buffer, commands, hostname=self._hostname, question=question)
                        if read.complete:
                            break
                        if read.echo_missing is not None and ends_with_prompt(buffer, self._hostname):
                            self._abandon(f"out of step at {read.echo_missing}")
                            raise CommandFailed(self.name, read.echo_missing, "% the router did not echo this "
                                                f"command; the session is out of step:\n{device_text(buffer, '')}")
                    buffer += (await conn.channel.read()).decode("utf-8", "replace")
        except TimeoutError as exc:
            awaited = self._awaited(buffer, commands, question)
            self._abandon(f"timeout during {awaited}")
            raise RouterTimeout(self.name, awaited) from exc
        except (ScrapliException, OSError, asyncssh.Error) as exc:
            awaited = self._awaited(buffer, commands, question)
            self._abandon(f"{type(exc).__name__} during {awaited}")
            raise RouterUnreachable(self.name, f"connection lost during {awaited}: {exc}") from exc
        elapsed = loop.time() - started
        self.round_trip = elapsed if self.round_trip is None else min(self.round_trip, elapsed)
        if read.replies[-1].prompt:
            self._mode = read.replies[-1].mode
        return list(read.replies)

    def _awaited(self, buffer: str, commands: tuple[str, ...], question: re.Pattern[str] | None) -> str:
        """The command whose answer has not come back yet (to name it in an error)."""
        done = split_replies(buffer, commands, hostname=self._hostname, question=question).replies
        return commands[min(len(done), len(commands) - 1)]

    async def _configure(self, lines: Sequence[str]) -> None:
        """Configuration lines one at a time (one write and one read each), stopping at the first refused or
        rejected line with the router's words; leaves the session in config mode."""
        await self._enter_config()
        for line in lines:
            (reply,) = await self._exchange([line], step=line, timeout=self.target.timeouts.command)
            self._check(reply)

    async def _enter_config(self) -> None:
        if self._mode == "config":
            return
        (reply,) = await self._exchange(["configure terminal"], step="configure terminal",
                                        timeout=self.target.timeouts.command)
        if reply.mode != "config":
            check_refused(self.name, "configure terminal", reply.output)
            raise CommandFailed(self.name, "configure terminal", reply.output or "(no output)")

    async def _leave_config(self, *then: str, timeout: float | None = None) -> list[Reply]:
        """`end` (when in config mode) and the exec commands ``then``, in one write; their replies."""
        commands = (["end"] if self._mode == "config" else []) + list(then)
        if not commands:
            return []
        wait = self.target.timeouts.command + (timeout or self.target.timeouts.running_config * len(then))
        replies = await self._exchange(commands, step=commands[0], timeout=wait)
        if self._mode != "exec":
            raise CommandFailed(self.name, "end", "% the router stayed in configuration mode:\n"
                                + "\n".join(r.output for r in replies))
        return replies[len(replies) - len(then):]

    def _require_token(self, value: str, *, what: str) -> None:
        """A name read from the router or the config goes into a command only as one IOS token."""
        problem = check_ios_token(value, what=what)
        if problem is not None:
            raise CommandFailed(self.name, f"(not sent) {what}", f"% {problem}; nothing was sent to the router")

    def _write(self, text: str) -> None:
        self._live().channel.write(text)

    async def _expect(
        self, patterns: Sequence[tuple[str, re.Pattern[str]]], *, step: str, timeout: float
    ) -> tuple[str, str]:
        """Read until one of ``patterns`` matches; (its key, everything read). Checked in order. For a
        dialogue's answers (one thing written, one thing awaited); a prompt seen sets the mode."""
        conn = self._live()
        buffer = ""
        self.exchanges += 1
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for key, pattern in patterns:
                        if pattern.search(buffer):
                            prompt = _ANY_PROMPT_END.search(buffer)
                            if prompt is not None:
                                self._mode = "config" if prompt.group("prompt").endswith(")#") else "exec"
                            return key, buffer
                    buffer += (await conn.channel.read()).decode("utf-8", "replace")
        except TimeoutError as exc:
            self._abandon(f"timeout during {step}")
            raise RouterTimeout(self.name, step) from exc
        except (ScrapliException, OSError, asyncssh.Error) as exc:
            self._abandon(f"{type(exc).__name__} during {step}")
            raise RouterUnreachable(self.name, f"connection lost during {step}: {exc}") from exc

    def poll_pause(self, gap: float) -> float:
        """How long to wait before the next look when looks should be ``gap`` apart: a look itself takes a
        round trip, so over a WAN the pause shrinks (to nothing when the round trip is longer than the gap)."""
        return max(0.0, gap - (self.round_trip or 0.0))


async def _leave_quietly(conn: AsyncIOSXEDriver) -> None:
    """scrapli's on_close would ask for the prompt first (a round trip); RouterChannel.close writes `exit`."""


def _failure(output: str) -> bool:
    return any(text in output for text in _FAILED_WHEN_CONTAINS)


def check_refused(router: str, command: str, output: str) -> None:
    """AAA refusals are errors wherever they appear; nothing is parsed from a refused command."""
    if any(text in output for text in _REFUSALS):
        raise CommandRefused(router, command, output)


def device_text(output: str, command: str, *, empty: str = "(no output)") -> str:
    """The device's own lines: without the echoed command, prompts and blank lines."""
    lines = []
    for line in output.splitlines():
        stripped = line.strip()
        if (
            not stripped
            or stripped.endswith(command)
            or CONFIG_PROMPT.match(stripped)
            or EXEC_PROMPT.match(stripped)
        ):
            continue
        lines.append(stripped)
    return "\n".join(lines) or empty


def _drop_transport(conn: AsyncIOSXEDriver) -> None:
    with contextlib.suppress(ScrapliException, OSError, AttributeError):
        conn.transport.close()
