"""The error tree: every error eemwatchd raises on purpose derives from EemwatchdError.

Adapters turn library errors into these at their edge (``raise RouterUnreachable(...) from exc``),
so the shell can turn any of them into a per-target result with a one-line reason.
``temporary`` says whether trying again later may help (kopf's retry axis).
"""

from __future__ import annotations

# Exit codes the commands share: 2 a bad config or usage (any of our errors by default), 75 (EX_TEMPFAIL)
# another eemwatchd holds the state or the router: try again later.
EXIT_USAGE = 2
EXIT_LOCKED = 75


class EemwatchdError(Exception):
    """Root of our errors. ``str(err)`` is a one-line reason a person understands; ``exit_code`` is what a
    command that ends on it exits with."""

    temporary: bool = False
    exit_code: int = EXIT_USAGE


# --- configuration -------------------------------------------------------------------------------


class ConfigError(EemwatchdError):
    """The configuration cannot be used; ``problems`` lists every problem with its key path."""

    def __init__(self, problems: list[str], *, source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        count = len(self.problems)
        head = f"{source}: {count} problem{'s' if count != 1 else ''}"
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in self.problems))


# --- certificates and device text (pure core) ----------------------------------------------------


class CertificateError(EemwatchdError):
    """Bytes that should be a certificate are not one (bad PEM, DER, hex or base64)."""


class ParseError(EemwatchdError):
    """Device output did not have the shape we expect; names the command and the offending line."""

    def __init__(self, what: str, reason: str, *, line: str | None = None) -> None:
        self.what = what
        self.reason = reason
        self.line = line
        text = f"cannot parse {what}: {reason}"
        if line is not None:
            text += f" (line: {line.strip()[:120]!r})"
        super().__init__(text)


# --- fetching a chain from an SMTP server --------------------------------------------------------


class FetchError(EemwatchdError):
    """Fetching a certificate chain failed. Names the address and the step."""

    temporary = True

    def __init__(self, reason: str, *, address: str | None = None, step: str | None = None) -> None:
        self.reason = reason
        self.address = address
        self.step = step
        where = ""
        if address:
            where += f"{address}: "
        if step:
            where += f"{step}: "
        super().__init__(where + reason)


class ResolveError(FetchError):
    """The server name did not resolve."""


class FetchTimeout(FetchError, TimeoutError):
    """A step of the fetch took longer than allowed."""


class SmtpProtocolError(FetchError):
    """The SMTP dialogue went wrong (no STARTTLS offered, 454, garbage, oversized line, injection)."""

    temporary = False


class TlsHandshakeError(FetchError):
    """The TLS handshake failed (alert name in the reason)."""


class AiaError(EemwatchdError):
    """Completing a chain from an AIA caIssuers URL failed."""

    temporary = True


# --- routers --------------------------------------------------------------------------------------


class RouterError(EemwatchdError):
    """Talking to a router failed. ``router`` is the configured name."""

    def __init__(self, router: str, reason: str) -> None:
        self.router = router
        self.reason = reason
        super().__init__(f"router {router}: {reason}")


class RouterUnreachable(RouterError):
    temporary = True


class SessionRefused(RouterUnreachable):
    """The router closed the connection before the SSH banner: every vty line is taken. Try again later."""


class AuthenticationFailed(RouterError):
    pass


class HostKeyRejected(RouterError):
    pass


class RouterTimeout(RouterError, TimeoutError):
    temporary = True

    def __init__(self, router: str, step: str) -> None:
        self.step = step
        super().__init__(router, f"timed out during {step}")


class CommandFailed(RouterError):
    """The device refused a command; carries the command and the device's own text."""

    def __init__(self, router: str, command: str, output: str) -> None:
        self.command = command
        self.output = output
        super().__init__(router, f"command {command!r} failed: {device_words(output, command)}")


class CommandRefused(CommandFailed):
    """The router refused to run a command (AAA command authorization); nothing was changed by it."""

    def __init__(self, router: str, command: str, output: str) -> None:
        self.command = command
        self.output = output
        RouterError.__init__(
            self, router, f"the router refused {command!r}: {device_words(output, command)} (AAA command "
            "authorization: give the eemwatchd user this command, see docs/deploy.md)")


def device_words(output: str, command: str = "") -> str:
    """The router's own message, whole: its lines without the echoed command and the caret line, joined."""
    lines = []
    for line in output.splitlines():
        text = line.strip()
        if not text or (command and text.endswith(command)) or set(text) <= {"^"}:
            continue
        lines.append(text)
    return " / ".join(lines)[:400] or "(no output)"


# --- state, alerts ---------------------------------------------------------------------------------


class StateError(EemwatchdError):
    """The state store cannot be opened, read or written."""


class AlertError(EemwatchdError):
    """An alert could not be delivered."""

    temporary = True


class StateLocked(StateError):
    """Another eemwatchd holds the state lock (one writer at a time). Exit code 75 (EX_TEMPFAIL): try later.

    One message whoever holds the lock (the README and docs quote it): ``another eemwatchd (pid N, started T)
    is applying; try again later``, then in parentheses what is known of the holder and what to do.
    """

    temporary = True
    exit_code = EXIT_LOCKED

    def __init__(self, path: str, *, pid: int | None, started: str | None, purpose: str | None,
                 detail: str | None = None) -> None:
        self.path = path
        self.pid = pid
        self.started = started
        self.purpose = purpose
        who = f" (pid {pid}, started {started})" if pid is not None and started is not None else ""
        notes = [detail] if detail else []
        if pid is None or started is None:
            notes.append(f"lock {path}; if no eemwatchd runs, it is free again by itself: the kernel releases it")
        elif purpose == "daemon":
            notes.append("it is the daemon, which applies changes itself while it runs; `eemwatchd onboard` "
                         "hands it the router; to apply by hand, stop it first: systemctl stop eemwatchd")
        elif purpose not in (None, "apply"):
            notes.append(f"it holds the state for {purpose}")
        tail = f" ({'; '.join(notes)})" if notes else ""
        super().__init__(f"another eemwatchd{who} is applying; try again later{tail}")
