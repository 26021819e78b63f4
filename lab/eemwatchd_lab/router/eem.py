"""EEM of the lab router: environment, applets with `event none`, mail/syslog actions, run and history."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from eemwatchd.core.certificate import Certificate
from eemwatchd_lab.router.clock import UTC_ZONE, Zone, history_time, registered_time
from eemwatchd_lab.router.mailer import TIMEOUT_ERROR, MailOutcome, MailRequest, send_mail

DEFAULT_MAXRUN = 20.0
_VAR = re.compile(r"\$(_[A-Za-z0-9_]+)")


class ActionSyntaxError(Exception):
    """An `action` line is invalid; ``column`` is the caret offset within the line, -1 for incomplete."""

    def __init__(self, column: int) -> None:
        super().__init__(f"invalid at {column}")
        self.column = column


def tokenize(text: str, base: int = 0) -> list[tuple[str, int]]:
    """Words with their column; a double-quoted string is one word (quotes removed)."""
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        start = i
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                end = len(text)
            out.append((text[i + 1 : end], base + start))
            i = end + 1
        else:
            while i < len(text) and not text[i].isspace():
                i += 1
            out.append((text[start:i], base + start))
    return out


MAIL_KEYS = ("server", "to", "from", "cc", "subject", "body", "port", "secure", "source-address",
             "source-interface", "vrf")
_REQUIRED_MAIL = ("server", "to", "from", "subject", "body")


@dataclass
class Action:
    """One `action LABEL ...` line; ``kind`` is mail, syslog or other (kept, not executed)."""

    label: str
    kind: str
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def render(self) -> str:
        if self.kind == "mail":
            parts = [f"action {self.label} mail"]
            for key in ("server", "to", "from", "cc", "subject", "body"):
                if key in self.fields:
                    parts.append(f'{key} "{self.fields[key]}"')
            for key in ("secure", "port", "source-address", "source-interface", "vrf"):
                if key in self.fields:
                    parts.append(f"{key} {self.fields[key]}")
            return " ".join(parts)
        if self.kind == "syslog":
            parts = [f"action {self.label} syslog"]
            if "priority" in self.fields:
                parts.append(f"priority {self.fields['priority']}")
            parts.append(f'msg "{self.fields.get("msg", "")}"')
            if "facility" in self.fields:
                parts.append(f'facility "{self.fields["facility"]}"')
            return " ".join(parts)
        return f"action {self.label} {self.text}"


def _expand_key(word: str, keys: Sequence[str]) -> str | None:
    low = word.lower()
    if low in keys:
        return low
    hits = [k for k in keys if k.startswith(low)]
    return hits[0] if len(hits) == 1 else None


ACTION_KINDS = ("mail", "syslog", "cli", "puts", "set", "wait", "comment", "info", "regexp", "string",
                "if", "else", "end", "exit", "append", "increment", "decrement", "policy", "reload")


def parse_action(rest: str, base: int) -> Action:
    """Parse what follows `action` (label first); columns in errors are offsets in the whole line."""
    words = tokenize(rest, base)
    if len(words) < 2:
        raise ActionSyntaxError(-1)
    label, (kind_word, kind_col) = words[0][0], words[1]
    kind = _expand_key(kind_word, ACTION_KINDS)
    if kind is None:
        raise ActionSyntaxError(kind_col)
    args = words[2:]
    if kind == "mail":
        fields: dict[str, str] = {}
        i = 0
        while i < len(args):
            key = _expand_key(args[i][0], MAIL_KEYS)
            if key is None or i + 1 >= len(args):
                raise ActionSyntaxError(args[i][1] if key is None else -1)
            value, col = args[i + 1]
            if key == "secure":
                secure = _expand_key(value, ("tls", "none"))
                if secure is None:
                    raise ActionSyntaxError(col)
                value = secure
            if key == "port" and not (value.isdigit() and 1 <= int(value) <= 65535):
                raise ActionSyntaxError(col)
            fields[key] = value
            i += 2
        if any(k not in fields for k in _REQUIRED_MAIL):
            raise ActionSyntaxError(-1)
        return Action(label, "mail", fields)
    if kind == "syslog":
        fields = {}
        i = 0
        while i < len(args):
            key = _expand_key(args[i][0], ("priority", "msg", "facility"))
            if key is None or i + 1 >= len(args):
                raise ActionSyntaxError(args[i][1] if key is None else -1)
            fields[key] = args[i + 1][0]
            i += 2
        if "msg" not in fields:
            raise ActionSyntaxError(-1)
        return Action(label, "syslog", fields)
    text_start = kind_col - base
    return Action(label, kind, text=rest[text_start:].strip())


@dataclass
class Applet:
    name: str
    authorization_bypass: bool = False
    event: str | None = None
    maxrun: float | None = None
    actions: list[Action] = field(default_factory=list)
    registered_at: datetime | None = None

    @property
    def effective_maxrun(self) -> float:
        return self.maxrun if self.maxrun is not None else DEFAULT_MAXRUN

    def config_lines(self) -> list[str]:
        head = f"event manager applet {self.name}" + (" authorization bypass" if self.authorization_bypass else "")
        lines = [head]
        if self.event:
            event = f" event {self.event}"
            if self.maxrun is not None:
                event += f" maxrun {_maxrun_text(self.maxrun)}"
            lines.append(event)
        lines.extend(" " + a.render() for a in sorted(self.actions, key=lambda a: _label_key(a.label)))
        return lines

    def set_action(self, action: Action) -> None:
        self.actions = [a for a in self.actions if a.label != action.label] + [action]


def _maxrun_text(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _label_key(label: str) -> tuple[int, ...]:
    """IOS sorts action labels as dotted numbers (1.0 < 2.0 < 10.0), text labels lexically after."""
    try:
        return tuple(int(p) for p in label.split("."))
    except ValueError:
        return (1 << 30, *[ord(c) for c in label])


def parse_event(applet: Applet, words: list[tuple[str, int]]) -> None:
    """`event none [maxrun N] [sync yes|no]`; other event types are stored as text (not triggered)."""
    if not words:
        raise ActionSyntaxError(-1)
    kind = words[0][0].lower()
    rest = words[1:]
    if _expand_key(kind, ("none",)) == "none":
        i = 0
        while i < len(rest):
            key = _expand_key(rest[i][0], ("maxrun", "sync", "default"))
            if key is None or i + 1 >= len(rest):
                raise ActionSyntaxError(rest[i][1] if key is None else -1)
            if key == "maxrun":
                applet.maxrun = parse_maxrun(rest[i + 1])
            i += 2
        applet.event = "none"
    else:
        applet.event = " ".join(w for w, _ in words)


def parse_maxrun(word: tuple[str, int]) -> float:
    try:
        value = float(word[0])
    except ValueError:
        raise ActionSyntaxError(word[1]) from None
    if not 0 < value <= 31536000:
        raise ActionSyntaxError(word[1])
    return value


# --- show commands --------------------------------------------------------------------------------


POLICY_HEADER = "No.  Class     Type    Event Type          Trap  Time Registered           Name"


def show_policy_registered(applets: Sequence[Applet], zone: Zone = UTC_ZONE) -> list[str]:
    """show_event_manager_policy_registered_applets_cron__gh_switch.txt layout."""
    rows = [a for a in applets if a.event and a.registered_at is not None]
    if not rows:
        return []
    out = [POLICY_HEADER]
    for number, applet in enumerate(rows, start=1):
        if number > 1:
            out.append("")
        assert applet.registered_at is not None
        event_type = applet.event if applet.event == "none" else (applet.event or "").split()[0]
        out.append(
            f"{number:<5}{'applet':<10}{'user':<8}{event_type:<20}{'Off':<6}"
            f"{registered_time(applet.registered_at, zone):<26}{applet.name}"
        )
        out.append(f" maxrun {applet.effective_maxrun:.3f}")
        out.extend(" " + a.render() for a in sorted(applet.actions, key=lambda a: _label_key(a.label)))
    return out


ENV_HEADER = "No.  Name                          Value                         "


def show_environment(env: Mapping[str, str]) -> list[str]:
    """show_event_manager_environment_all_and_policy_registered__gh_r1.txt header and 30-column fields."""
    out = [ENV_HEADER]
    for number, (name, value) in enumerate(env.items(), start=1):
        out.append(f"{number:<5}{name:<30}{value}")
    return out


@dataclass(frozen=True)
class HistoryEntry:
    job_id: int
    status: str
    at: datetime
    event_type: str
    name: str


HISTORY_HEADER = "No.  Job Id Proc Status   Time of Event            Event Type        Name"


def show_history(entries: Sequence[HistoryEntry], zone: Zone = UTC_ZONE) -> list[str]:
    """show_event_manager_history_events__gh_rolling_pcap_iosxe.txt: `Wed Mar10 13:22:46 2021` (no space);
    a one-digit day is space-padded (`Tue Dec 1 ...`, inferred: see clock.history_time)."""
    out = [HISTORY_HEADER]
    for number, e in enumerate(entries, start=1):
        when = history_time(e.at, zone)
        out.append(
            f"{number:<5}{e.job_id:<7}{'Actv':<5}{e.status:<9}{when:<25}{e.event_type:<18}applet: {e.name}"
        )
    return out


def not_registered(name: str) -> str:
    """event_manager_run_error_not_event_none__gh_netmiko_comment.txt (quoted in a comment; no % seen)."""
    return f"EEM policy {name} not registered with event none Event Detector"


# --- running an applet ------------------------------------------------------------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace `$_name` with the environment value; raise KeyError(name) for an unknown one."""

    def sub(match: re.Match[str]) -> str:
        return env[match.group(1)]

    return _VAR.sub(sub, text)


def split_server(server: str) -> tuple[str | None, str | None, str]:
    """user:password@host, split at the FIRST `@` (docs/field-notes.md sec. 1: the real IOS quirk, CSCwe75439)."""
    if "@" not in server:
        return None, None, server
    credentials, host = server.split("@", 1)
    user, _, password = credentials.partition(":")
    return user, password, host


def shown_host(host: str) -> str:
    """The host as logged. After a first-@ split of `user@domain:password@host` the "host" still holds
    the password; a real router would log it verbatim, the lab masks everything before the last `@`."""
    if "@" in host:
        return "***@" + host.rsplit("@", 1)[1]
    return host


@dataclass
class RunContext:
    """What an applet run needs from the device (callbacks keep this module free of session code)."""

    env: Mapping[str, str]
    hostname: str
    log: Callable[[str], None]
    trustpoints: Callable[[], Mapping[str, Sequence[Certificate]]]
    now: Callable[[], datetime]
    lenient: bool
    mail_outcomes: list[tuple[str, MailOutcome]]
    crl_check: Callable[[str], bool] | None = None
    # the device's Faults.mail and Faults.mail_delay when a mail action starts (None: no faults)
    mail_fault: Callable[[], tuple[str | None, float]] | None = None


async def run_applet(applet: Applet, ctx: RunContext) -> str:
    """Run the actions in label order within maxrun; returns the history status (success/abort)."""
    current: list[Action] = []
    try:
        async with asyncio.timeout(applet.effective_maxrun):
            return await _run_actions(applet, ctx, current)
    except TimeoutError:
        # inferred: a mail action cut short by maxrun is logged like the smtp_lib timeout.
        if current and current[-1].kind == "mail":
            _, _, host = split_server(_safe_expand(current[-1].fields.get("server", ""), ctx.env))
            ctx.log(
                "%HA_EM-3-FMPD_SMTP: Error occurred when sending mail to SMTP server: "
                f"{shown_host(host)} : {TIMEOUT_ERROR}"
            )
            ctx.log(f"%HA_EM-3-FMPD_ERROR: Error executing applet {applet.name} statement {current[-1].label}")
        return "abort"


def _safe_expand(text: str, env: Mapping[str, str]) -> str:
    try:
        return expand(text, env)
    except KeyError:
        return text


async def _run_actions(applet: Applet, ctx: RunContext, current: list[Action]) -> str:
    for action in sorted(applet.actions, key=lambda a: _label_key(a.label)):
        current.append(action)
        try:
            fields = {k: expand(v, ctx.env) for k, v in action.fields.items()}
        except KeyError as missing:
            # Recalled from field reports (author's note id=67129484893); exact wording inferred.
            ctx.log(f"%HA_EM-3-FMPD_UNKNOWN_ENV: fh_parse_var: could not find environment variable: {missing.args[0]}")
            ctx.log(f"%HA_EM-3-FMPD_ERROR: Error executing applet {applet.name} statement {action.label}")
            return "abort"
        if action.kind == "syslog":
            sev = {"emergencies": 0, "alerts": 1, "critical": 2, "errors": 3, "warnings": 4,
                   "notifications": 5, "informational": 6, "debugging": 7}.get(fields.get("priority", ""), 6)
            ctx.log(f"%HA_EM-{sev}-LOG: {applet.name}: {fields['msg']}")
        elif action.kind == "mail" and not await _mail(applet, action, fields, ctx):
            return "abort"
        # inferred: other action kinds are accepted in config but do nothing in the lab.
    return "success"


async def _mail(applet: Applet, action: Action, fields: dict[str, str], ctx: RunContext) -> bool:
    user, password, host_part = split_server(fields["server"])
    host, port = host_part, int(fields.get("port", "25"))
    # inferred: a `host:port` after the @ is not IOS syntax; port comes from the `port` keyword only.
    request = MailRequest(
        host=host,
        port=port,
        user=user,
        password=password,
        secure_tls=fields.get("secure") == "tls",
        sender=fields["from"],
        to=tuple(a.strip() for a in fields["to"].split(",") if a.strip()),
        cc=tuple(a.strip() for a in fields.get("cc", "").split(",") if a.strip()),
        subject=fields["subject"],
        body=fields["body"],
        helo=ctx.hostname,
    )
    fault, delay = ctx.mail_fault() if ctx.mail_fault is not None else (None, 0.0)
    outcome = await send_mail(
        request, trustpoints=ctx.trustpoints, now=ctx.now, lenient=ctx.lenient, crl_check=ctx.crl_check,
        timeout=min(applet.effective_maxrun, 30.0), fault=fault, delay=delay,
    )
    ctx.mail_outcomes.append((applet.name, outcome))
    if outcome.ok:
        return True
    for line in outcome.pki_log:
        ctx.log(line)
    # eem_applet_mail_fmpd_smtp_error__gh_iosv.txt: the host only (never the user or password).
    ctx.log(f"%HA_EM-3-FMPD_SMTP: Error occurred when sending mail to SMTP server: {shown_host(host)} : "
            f"{outcome.reason}")
    ctx.log(f"%HA_EM-3-FMPD_ERROR: Error executing applet {applet.name} statement {action.label}")
    return False
