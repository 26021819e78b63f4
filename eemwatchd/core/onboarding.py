"""Onboarding a router: the EEM mail setup it needs, the difference with what it has, and the refusals."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.parsers import parse_running_config
from eemwatchd.core.ios.tokens import check_applet_name, check_ios_token
from eemwatchd.core.router_state import mask_server

# Refusal reasons: constants shared by the command's output, its JSON and the tests.
UNKNOWN_SERVER = "unknown-server"
NO_ACCOUNT = "no-account"
AT_IN_USERNAME = "at-in-username"
FROM_NOT_ACCOUNT = "from-not-account"
IMPLICIT_TLS = "implicit-tls"
NO_RECIPIENT = "no-recipient"
BAD_VALUE = "bad-value"
NO_VERIFIED_CHAIN = "no-verified-chain"
CLOCK_UNKNOWN = "clock-unknown"
CLOCK_OFF = "clock-off"
EXISTING_DIFFERS = "existing-differs"

# Sized for one TLS mail exchange (DNS, TCP, STARTTLS, a 3-certificate handshake, AUTH, DATA) on a busy
# router, with room above lint's minimum (core.lint.DEFAULT_MIN_MAXRUN, 30 s): EEM kills the job at maxrun.
ONBOARD_MAXRUN = 60
MAIL_LABEL = "0010"
SUCCESS_LABEL = "0020"
# Logged by the applet after its mail action: `%HA_EM-6-LOG: <applet>: <this>` is the test-fire's evidence
# that the mail action completed (event_manager_run_syslog_msg__gh_freeztp_c3850.txt shows the log format).
SUCCESS_MESSAGE = "eemwatchd: test mail handed to the SMTP server"
# The EEM variables the applet reads; `_email_*` as in Cisco's tech note (docs/field-notes.md sec. 1).
EMAIL_SERVER, EMAIL_TO, EMAIL_FROM = "_email_server", "_email_to", "_email_from"
MASK = "****"

_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@.\s]+")


@dataclass(frozen=True)
class Refusal:
    """Why onboarding cannot work as asked, and how to fix it. Never holds a secret."""

    reason: str
    message: str
    fix: str


@dataclass(frozen=True)
class MailSetup:
    """What the router's EEM mail setup should be. ``password`` is revealed here only; never in the repr."""

    applet: str
    router: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    mail_from: str
    to: tuple[str, ...]

    @property
    def email_server(self) -> str:
        return f"{self.username}:{self.password}@{self.host}"

    @property
    def subject(self) -> str:
        return f"EEM mail from {self.router} works"

    @property
    def body(self) -> str:
        return f"Test mail of applet {self.applet} on router {self.router}, configured by eemwatchd onboard."


def check_request(
    *, mode: str, port: int, username: str, account_from: str, mail_from: str | None, to: Sequence[str] | None
) -> list[Refusal]:
    """Every refusal that needs no router: the account, the sender, the recipients, the server's TLS mode.

    ``to`` None: the recipients are not known yet (they may come from the router's `_email_to`)."""
    refusals: list[Refusal] = []
    if "@" in username:
        refusals.append(Refusal(
            AT_IN_USERNAME,
            f"the SMTP login name {username!r} contains '@': EEM splits _email_server at the FIRST '@' "
            "(Cisco bug CSCwe75439, no fix planned), so the router would log in as the part before it and "
            "take the rest as the host",
            "use an account whose login name has no '@' (an app-specific or API login, or a local relay); "
            "Tcl's SMTP library accepts '@' but cannot do TLS"))
    if mail_from is not None and mail_from.strip().lower() != account_from.strip().lower():
        refusals.append(Refusal(
            FROM_NOT_ACCOUNT,
            f"from {mail_from!r} is not the address of the SMTP account ({account_from!r}): the provider "
            "refuses or rewrites mail from another sender",
            f"leave --from out (it defaults to {account_from}) or change servers[].account.from"))
    if mode == "implicit" or port == 465:
        refusals.append(Refusal(
            IMPLICIT_TLS,
            f"the server is configured for implicit TLS (mode {mode}, port {port}): IOS XE EEM mail has only "
            "`secure tls` (STARTTLS), no implicit TLS, so the applet could never send",
            "point the server at the provider's STARTTLS port (mode: starttls, port: 587)"))
    if to is not None and not to:
        refusals.append(Refusal(
            NO_RECIPIENT, "no recipient: the router has no _email_to and none was given",
            "give one or more --to ADDR"))
    for address in to or ():
        if (problem := check_ios_token(address, what="a mail address", max_length=254)) is not None:
            refusals.append(Refusal(BAD_VALUE, f"--to {problem}", "give one plain address per --to"))
        elif not _ADDRESS.fullmatch(address) or "," in address:
            refusals.append(Refusal(BAD_VALUE, f"--to {address!r} is not a mail address",
                                    "give one plain address per --to, like noc@example.net"))
    return refusals


def check_setup(setup: MailSetup) -> list[Refusal]:
    """Every value that goes into a command: one IOS token where it is a token, no '"' in a quoted string."""
    refusals: list[Refusal] = []

    def token(value: str, what: str, *, show: bool = True, max_length: int = 64) -> None:
        problem = check_ios_token(value, what=what, max_length=max_length, show=show)
        if problem is not None:
            refusals.append(Refusal(BAD_VALUE, problem + ("" if show else " (value not shown)"),
                                    f"change {what} in the configuration or the command line"))

    if (problem := check_applet_name(setup.applet)) is not None:
        refusals.append(Refusal(BAD_VALUE, problem, "choose another --applet or routers[].applet"))
    token(setup.host, "the SMTP server's host", max_length=253)
    token(setup.email_server, "user:password@host in _email_server", show=False, max_length=255)
    token(setup.mail_from, "the from address", max_length=254)
    token(",".join(setup.to), "the recipients in _email_to", max_length=255)
    for what, text in (("subject", setup.subject), ("body", setup.body), ("success message", SUCCESS_MESSAGE)):
        if '"' in text or "\n" in text or "\r" in text:
            refusals.append(Refusal(BAD_VALUE, f"the applet's {what} would hold a quote or a line break",
                                    "use a router name without quotes"))
    return refusals


def check_clock(
    router_clock: datetime | None, *, our_clock: datetime, chains: Sequence[Sequence[Certificate]]
) -> list[Refusal]:
    """The router judges the server's certificates by its own clock: each must be valid at that time."""
    if router_clock is None:
        return [Refusal(CLOCK_UNKNOWN, "the router's clock could not be read (`show clock`), so whether it "
                        "accepts the server's certificates cannot be told",
                        "check `show clock`, configure NTP (`ntp server ...`) and `clock timezone`")]
    skew = router_clock - our_clock
    refusals: list[Refusal] = []
    seen: set[str] = set()
    for chain in chains:
        for cert in chain:
            if cert.sha256 in seen or cert.is_valid_at(router_clock):
                continue
            seen.add(cert.sha256)
            when = "not valid before" if router_clock < cert.not_before else "expired at"
            edge = cert.not_before if router_clock < cert.not_before else cert.not_after
            refusals.append(Refusal(
                CLOCK_OFF,
                f"the router's clock says {router_clock.isoformat()} ({_offset(skew)} ours): by it, "
                f"{cert.describe()} is {when} {edge.isoformat()}, so the TLS handshake would fail",
                "configure NTP (`ntp server ...`) or set the clock (`clock set ...`) and `clock timezone`, "
                "then onboard again"))
    return refusals


def _offset(skew: timedelta) -> str:
    seconds = int(skew.total_seconds())
    size = abs(seconds)
    text = f"{size // 86400} days" if size >= 2 * 86400 else f"{size // 3600} hours" if size >= 7200 \
        else f"{size // 60} minutes" if size >= 120 else f"{size} seconds"
    return f"{text} {'ahead of' if seconds >= 0 else 'behind'}"


# --- what the router needs ------------------------------------------------------------------------


def render_environment(setup: MailSetup) -> list[tuple[str, str]]:
    """(name, value) of each `event manager environment` variable; `_email_to` lists addresses with ','."""
    return [(EMAIL_SERVER, setup.email_server), (EMAIL_TO, ",".join(setup.to)), (EMAIL_FROM, setup.mail_from)]


def render_applet(setup: MailSetup) -> list[str]:
    """The applet as `show running-config` shows it (mail action as in the tech note, docs/field-notes.md sec. 1).

    `event none` so `event manager run` can test-fire it; the syslog action after the mail action runs only
    when the mail action completed, so its line is evidence that mail works (issue 8).
    """
    return [
        f"event manager applet {setup.applet}",
        f" event none maxrun {ONBOARD_MAXRUN}",
        f' action {MAIL_LABEL} mail server "${EMAIL_SERVER}" to "${EMAIL_TO}" from "${EMAIL_FROM}" '
        f'subject "{setup.subject}" body "{setup.body}" secure tls port {setup.port}',
        f' action {SUCCESS_LABEL} syslog msg "{SUCCESS_MESSAGE}"',
    ]


ChangeState = Literal["add", "same", "differs"]


@dataclass(frozen=True)
class Change:
    """One environment variable or the applet: absent (add), equal (same), or holding other values."""

    what: str
    state: ChangeState
    old: tuple[str, ...]
    new: tuple[str, ...]
    applet: str | None = None  # set for the applet block

    def lines(self) -> list[str]:
        """What to send for this change; an applet is removed first, since IOS keeps the actions of an
        applet that is entered again (only labels given anew are replaced)."""
        if self.state == "same":
            return []
        if self.applet is not None and self.state == "differs":
            return [f"no event manager applet {self.applet}", *self.new]
        return list(self.new)


@dataclass(frozen=True)
class OnboardPlan:
    """The EEM changes one router needs, in the order they are sent."""

    changes: tuple[Change, ...]

    @property
    def conflicts(self) -> tuple[Change, ...]:
        """Existing values that differ: overwritten only with --replace."""
        return tuple(c for c in self.changes if c.state == "differs")

    @property
    def needed(self) -> bool:
        return any(c.state != "same" for c in self.changes)

    def lines(self) -> list[str]:
        return [line for change in self.changes for line in change.lines()]

    def diff(self, *, secrets: Collection[str] = ()) -> list[str]:
        """Line by line, `- old` / `+ new` / `  same`, passwords masked."""
        out: list[str] = []
        for change in self.changes:
            word = {"add": "to add", "same": "unchanged", "differs": "differs from what the router has"}[change.state]
            out.append(f"{change.what}: {word}")
            if change.state == "same":
                continue
            # Compared unmasked, shown masked: a changed password is a difference even when it is hidden.
            removed: set[str] = set()
            for sign, line in _line_diff(change.old, change.new):
                shown = mask_line(line, secrets)
                if sign == "-":
                    removed.add(shown)
                elif sign == "+" and shown in removed:
                    shown += "   (the password differs; not shown)"
                out.append(f"  {sign} {shown}")
        return out


def _line_diff(old: Sequence[str], new: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            out += [(" ", line) for line in old[i1:i2]]
            continue
        out += [("-", line) for line in old[i1:i2]]
        out += [("+", line) for line in new[j1:j2]]
    return out


_SERVER_VALUE = re.compile(r'(?P<head>\bserver\s+)(?:"(?P<quoted>[^"]*)"|(?P<word>\S+))')


def mask_line(line: str, secrets: Collection[str] = ()) -> str:
    """A configuration line fit to show: the password of `_email_server` or a mail action's server masked,
    and any of ``secrets`` replaced."""
    stripped = line.strip()
    words = stripped.split(None, 4)
    if words[:4] == ["event", "manager", "environment", EMAIL_SERVER] and len(words) == 5:
        line = line[: line.index(words[4], len(" ".join(words[:4])))] + mask_server(words[4])
    elif stripped.startswith("action ") and " mail " in f" {stripped} ":
        def masked(match: re.Match[str]) -> str:
            if match.group("quoted") is not None:
                return f'{match.group("head")}"{mask_server(match.group("quoted"))}"'
            return match.group("head") + mask_server(match.group("word"))

        line = _SERVER_VALUE.sub(masked, line, count=1)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        line = line.replace(secret, MASK)
    return line


def plan_onboarding(setup: MailSetup, running_config: str) -> OnboardPlan:
    """Compare what ``setup`` needs with the router's running-config, variable by variable and the applet.

    Equality is by meaning (both sides read by the same parser), so quoting or spacing that IOS normalises
    does not count as a difference; the lines shown are the router's own.
    """
    lines = [raw.replace("\r", "").rstrip() for raw in running_config.splitlines()]
    parsed = parse_running_config(running_config)
    environment, applets = parsed.environment, parsed.applets
    changes: list[Change] = []
    for name, value in render_environment(setup):
        line = f"event manager environment {name} {value}"
        old = tuple(x for x in lines if x.split(None, 4)[:4] == ["event", "manager", "environment", name])
        state: ChangeState = "add" if name not in environment else "same" if environment[name] == value \
            else "differs"
        changes.append(Change(f"event manager environment {name}", state, old, (line,)))
    wanted = render_applet(setup)
    desired = parse_running_config("\n".join(wanted)).applets[0]
    existing = next((a for a in applets if a.name == setup.applet), None)
    old_block = tuple(_applet_block(lines, setup.applet))
    unreadable = any(p.applet == setup.applet for p in parsed.problems)  # there, but not readable: never "add"
    state = "differs" if unreadable else "add" if existing is None else "same" if existing == desired else "differs"
    changes.append(Change(f"event manager applet {setup.applet}", state, old_block, tuple(wanted),
                          applet=setup.applet))
    return OnboardPlan(tuple(changes))


def _applet_block(lines: Sequence[str], name: str) -> list[str]:
    block: list[str] = []
    inside = False
    for line in lines:
        if not line.strip():
            continue
        if line[0] in " \t":
            if inside:
                block.append(line)
            continue
        words = line.split()
        inside = words[:3] == ["event", "manager", "applet"] and len(words) >= 4 and words[3].strip('"') == name
        if inside:
            block.append(line)
    return block
