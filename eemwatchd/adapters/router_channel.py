"""A router SSH session at the level of commands and dialogues (scrapli classic + asyncssh): open with the
host key pinned, send a command and check the answer for refusals, enter and leave config mode, expect a
prompt or a question, close; every library error becomes ours."""

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
from eemwatchd.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandRefused,
    HostKeyRejected,
    RouterError,
    RouterTimeout,
    RouterUnreachable,
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
EXEC_PROMPT_END = re.compile(r"(?:^|\n)[\w.\-@/:]{1,63}[#>]\s*$")
# AAA command authorization refusals (tests/transcripts/ and docs/lab-router.md cite their sources): the exec
# refusal has no `%`. Checked in the output of EVERY command before it is parsed, so a refused
# `show running-config` is an error naming the command, never an empty router.
_REFUSALS = ("Command authorization failed", "% Authorization failed")
# scrapli's IOS XE failure strings plus the refusals; a command whose output holds one of them failed.
_FAILED_WHEN_CONTAINS = ["% Ambiguous command", "% Incomplete command", "% Invalid input detected",
                         "% Unknown command", *_REFUSALS]

# --- the session -----------------------------------------------------------------------------------


async def _on_open(conn: AsyncIOSXEDriver) -> None:
    """scrapli's IOS XE on_open, with paging checked: when AAA refuses `terminal length 0` paging stays on, and every
    long output (`show running-config`) stops at ` --More-- ` and waits for a prompt until the job's timeout. A
    refused `terminal width 512` is harmless (IOS does not wrap show output) and only logged."""
    await conn.acquire_priv(desired_priv=conn.default_desired_privilege_level)
    for command, required in (("terminal length 0", True), ("terminal width 512", False)):
        response = await conn.send_command(command)
        output = str(response.result)
        if not (response.failed or any(text in output for text in _REFUSALS)):
            continue
        if required:
            raise CommandRefused(str(conn.host), command, output) if any(text in output for text in _REFUSALS) \
                else CommandFailed(str(conn.host), command, output)
        logger.info("router %s: %r not accepted (%s); going on", conn.host, command, output.strip()[:200])


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
            # scrapli's own auth_strict_key checks afterwards and ignores [host]:port (field notes sec. 6).
            "known_hosts": known_hosts,
            "agent_path": None,
            # Only the key we loaded (no default ~/.ssh keys behind the operator's back), and no empty
            # password attempt when no password is configured (a failed login in the router's log).
            "client_keys": [client_key] if client_key is not None else None,
            "password": t.password,
            # Say who we are in the SSH version string (`show ssh` and the router's logs show it; the lab
            # router judges the invariants of these sessions only): SSH-2.0-eemwatchd_<version>.
            "client_version": f"eemwatchd_{__version__}",
            **ssh_algorithms(legacy=t.legacy_algorithms),
        }
        longest = max(t.timeouts.command, t.timeouts.running_config, t.timeouts.change)
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
            timeout_transport=longest + 5.0,
            timeout_ops=t.timeouts.command,
            failed_when_contains=list(_FAILED_WHEN_CONTAINS),
            on_open=_on_open,
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

    def _open_error(self, exc: BaseException) -> BaseException:
        t = self.target
        if isinstance(exc, CommandFailed):  # on_open: `terminal length 0` refused; it knew the host, not the name
            return type(exc)(self.name, exc.command, exc.output)
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return host_key_rejection(t)
        if isinstance(exc, ConnectionResetError | asyncssh.ConnectionLost) or (
            isinstance(exc, ScrapliConnectionNotOpened) and "reset" in str(exc).lower()
        ):
            # IOS drops the TCP connection before the SSH banner when every vty line is taken
            # (docs/lab-router.md cites the sources); eemwatchd itself uses one session per router.
            return RouterUnreachable(
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
        """Log out politely when the session is sound; otherwise just drop the connection."""
        conn, self._conn = self._conn, None
        if self._closed_reason is None:
            self._closed_reason = "closed"
        if conn is None:
            return
        try:
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

    async def _guard(self, step: str, awaitable: Any, timeout: float) -> Any:
        """Run one scrapli step; map its errors to ours and abandon the session on any of them."""
        try:
            return await asyncio.wait_for(awaitable, timeout=timeout)
        except (TimeoutError, ScrapliTimeout) as exc:
            self._abandon(f"timeout during {step}")
            raise RouterTimeout(self.name, step) from exc
        except (ScrapliException, OSError, asyncssh.Error) as exc:
            self._abandon(f"{type(exc).__name__} during {step}")
            raise RouterUnreachable(self.name, f"connection lost during {step}: {exc}") from exc

    async def _command(self, command: str, *, timeout: float | None = None) -> str:
        conn = self._live()
        wait = timeout or self.target.timeouts.command
        response = await self._guard(command, conn.send_command(command, timeout_ops=wait), wait + 1.0)
        output = str(response.result)
        _check_refused(self.name, command, output)
        if response.failed:
            raise CommandFailed(self.name, command, output)
        return output

    async def _configure(self, lines: Sequence[str]) -> None:
        await self._enter_config()
        conn = self._live()
        wait = self.target.timeouts.command
        responses = await self._guard(
            "configure terminal",
            conn.send_configs(list(lines), stop_on_failed=True, timeout_ops=wait),
            wait * (len(lines) + 2),
        )
        for response in responses:
            _check_refused(self.name, response.channel_input, str(response.result))
            if response.failed:
                raise CommandFailed(self.name, response.channel_input, response.result)

    async def _enter_config(self) -> None:
        conn = self._live()
        if CONFIG_PROMPT.search(await self._guard("prompt", conn.get_prompt(), self.target.timeouts.command)):
            return
        # Sent by hand (not scrapli's acquire_priv) so a refusal is read, not retried until a timeout.
        self._write("configure terminal\n")
        key, output = await self._expect([("config", CONFIG_PROMPT), ("exec", EXEC_PROMPT_END)],
                                         step="configure terminal", timeout=self.target.timeouts.command)
        if key != "config":
            _check_refused(self.name, "configure terminal", output)
            raise CommandFailed(self.name, "configure terminal", output)
        conn._current_priv_level = conn.privilege_levels["configuration"]  # keep scrapli's view in step

    async def _leave_config(self) -> None:
        conn = self._live()
        await self._guard("end", conn.acquire_priv("privilege_exec"), self.target.timeouts.command)

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
        """Read until one of ``patterns`` matches; (its key, everything read). Checked in order."""
        conn = self._live()
        buffer = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for key, pattern in patterns:
                if pattern.search(buffer):
                    return key, buffer
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._abandon(f"timeout during {step}")
                raise RouterTimeout(self.name, step)
            chunk = await self._guard(step, conn.channel.read(), remaining)
            buffer += chunk.decode("utf-8", "replace")


def _check_refused(router: str, command: str, output: str) -> None:
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
