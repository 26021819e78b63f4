"""Lint of a router's EEM mail setup: ordered pure checks, each finding with a rule id, severity and fix."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from eemwatchd.core.ios.tokens import check_trustpoint_name, show_value
from eemwatchd.core.router_state import (
    Applet,
    ConfigProblem,
    MailAction,
    MailServer,
    RouterSnapshot,
    mask_server,
)

Severity = Literal["error", "warning", "info"]
ServerMode = Literal["starttls", "tls", "plain"]

APPLET_MISSING = "EEM000-applet-missing"
AT_IN_USERNAME = "EEM001-at-in-username"
FROM_NOT_ACCOUNT = "EEM002-from-not-account"
NO_SECURE_TLS = "EEM003-no-secure-tls"
PORT_MISMATCH = "EEM004-port-mismatch"
NOT_EVENT_NONE = "EEM005-not-event-none"
MAXRUN_SHORT = "EEM006-maxrun-short"
CERTIFICATE_EXPIRED = "EEM007-certificate-expired"
CERTIFICATE_EXPIRING = "EEM008-certificate-expiring"
CLOCK_SKEW = "EEM009-clock-skew"
UNKNOWN_SERVER = "EEM010-unknown-server"
UNDEFINED_VARIABLE = "EEM011-undefined-variable"
NO_MAIL_ACTION = "EEM012-no-mail-action"
REVOCATION_CHECK = "EEM013-revocation-check"
IMPLICIT_TLS = "EEM014-implicit-tls-unsupported"
UNREADABLE_CONFIG = "EEM015-unreadable-config"
UNSENDABLE_TRUSTPOINT = "EEM016-unsendable-trustpoint"

# Implicit TLS (SMTPS). EEM's mail action offers `secure none` and `secure tls`; `secure tls` is STARTTLS
# (Cisco's tech note runs it on 587, docs/field-notes.md sec. 1) and no source shows the action wrapping TLS at
# connect, so a mail action aimed at 465 is treated as unable to work (inferred; docs/lab-router.md).
IMPLICIT_TLS_PORT = 465

# EEM's mail action uses port 25 when none is given.
EEM_DEFAULT_PORT = 25
# A TLS mail exchange (DNS, TCP, STARTTLS, handshake with a 3-certificate chain, AUTH, DATA) on a
# busy router; an unreachable server alone took ~10 s to fail in the IOSv capture
# (eem_applet_mail_fmpd_smtp_error__gh_iosv.txt).
DEFAULT_MIN_MAXRUN = 30.0
DEFAULT_MAX_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    fix: str


@dataclass(frozen=True)
class KnownServer:
    """An SMTP server from our config: the router's mail action should point at one of these."""

    host: str
    port: int
    mode: ServerMode = "starttls"


def lint_router(
    snapshot: RouterSnapshot,
    *,
    servers: Sequence[KnownServer],
    applet_name: str,
    now: datetime,
    our_clock: datetime,
    soon: timedelta,
    min_maxrun: float = DEFAULT_MIN_MAXRUN,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    trustpoint_prefix: str | None = None,
    adopt: Collection[str] = (),
) -> list[Finding]:
    """Every finding for the applet ``applet_name`` and the router's trustpoints and clock.

    ``now`` is the time certificates are judged at; ``our_clock`` is our time when the router's
    clock was read (compared with ``snapshot.clock``). Messages never contain a password.
    ``trustpoint_prefix`` and ``adopt`` name the trustpoints eemwatchd manages or adopted: only those
    are checked for `revocation-check none` (none are when both are left out).
    """
    findings: list[Finding] = [_unreadable(problem) for problem in snapshot.problems]
    applet = snapshot.applet(applet_name)
    unreadable_applet = any(p.applet == applet_name for p in snapshot.problems)  # EEM015 above says why
    if applet is None and not unreadable_applet:
        findings.append(
            Finding(
                APPLET_MISSING,
                "error",
                f"applet {applet_name!r} is not configured "
                f"(applets: {', '.join(a.name for a in snapshot.applets) or 'none'})",
                f"configure `event manager applet {applet_name}` with `event none` and a mail action, "
                "or point the router's config at the right applet name",
            )
        )
    elif applet is not None:
        findings.extend(_lint_applet(snapshot, applet, servers=servers, min_maxrun=min_maxrun))
    findings.extend(_lint_revocation(snapshot, prefix=trustpoint_prefix, adopt=adopt))
    findings.extend(_lint_unsendable(snapshot, prefix=trustpoint_prefix, adopt=adopt))
    findings.extend(_lint_certificates(snapshot, now=now, soon=soon))
    findings.extend(_lint_clock(snapshot, our_clock=our_clock, max_skew=max_skew))
    return findings


def _unreadable(problem: ConfigProblem) -> Finding:
    what = (f"trustpoint {problem.trustpoint}" if problem.trustpoint is not None
            else f"applet {problem.applet}" if problem.applet is not None else f"`{problem.block}`")
    return Finding(
        UNREADABLE_CONFIG,
        "error" if problem.applet is not None else "warning",
        f"{what}: this block of the running-config could not be read ({problem.reason}; line: {problem.line!r}); "
        "eemwatchd leaves it alone",
        f"check `{problem.block}` in the running-config; if the router shows it this way, report the lines "
        "(without secrets) so the parser learns them",
    )


def _lint_applet(
    snapshot: RouterSnapshot, applet: Applet, *, servers: Sequence[KnownServer], min_maxrun: float
) -> list[Finding]:
    findings: list[Finding] = []
    if not applet.is_event_none:
        findings.append(
            Finding(
                NOT_EVENT_NONE,
                "warning",
                f"applet {applet.name} has `event {applet.event}`: `event manager run` cannot test-fire it",
                "use `event none` for the alert applet, or add a separate `event none` applet "
                "with the same mail action",
            )
        )
    if applet.effective_maxrun < min_maxrun:
        shown = f"maxrun {applet.maxrun:g}" if applet.maxrun is not None else "the default maxrun of 20 s"
        findings.append(
            Finding(
                MAXRUN_SHORT,
                "warning",
                f"applet {applet.name} has {shown}: a TLS mail exchange may need longer and is then killed",
                f"set `event {applet.event} maxrun {min_maxrun:g}` (or more) in applet {applet.name}",
            )
        )
    if not applet.mail_actions:
        findings.append(
            Finding(
                NO_MAIL_ACTION,
                "error",
                f"applet {applet.name} has no mail action",
                'add `action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" '
                'subject "..." body "..." secure tls port 587`',
            )
        )
    for action in applet.mail_actions:
        findings.extend(_lint_mail_action(snapshot, applet, action, servers=servers))
    return findings


def _lint_mail_action(
    snapshot: RouterSnapshot, applet: Applet, action: MailAction, *, servers: Sequence[KnownServer]
) -> list[Finding]:
    findings: list[Finding] = []
    where = f"applet {applet.name} action {action.label}"
    undefined: list[str] = []

    def expand(value: str | None) -> str | None:
        if value is None:
            return None
        text, missing = snapshot.expand(value)
        undefined.extend(m for m in missing if m not in undefined)
        return text

    server_text = expand(action.server) or ""
    from_text = expand(action.from_)
    expand(action.to)
    if undefined:
        findings.append(
            Finding(
                UNDEFINED_VARIABLE,
                "error",
                f"{where} uses {', '.join('$' + n for n in undefined)} but the router has no such "
                "`event manager environment` variable",
                "; ".join(f"configure `event manager environment {n} <value>`" for n in undefined),
            )
        )
    server = MailServer.from_text(server_text)
    masked = mask_server(server_text)

    if server.at_count > 1:
        findings.append(
            Finding(
                AT_IN_USERNAME,
                "error",
                f"{where}: mail server {masked!r} has more than one '@'; EEM splits at the first one, so "
                f"the login name {server.intended_username!r} is cut short and the rest is taken as the host",
                "use an account whose login name has no '@' (a relay or provider alias), or a local relay "
                "without authentication; Tcl's SMTP library accepts '@' but cannot do TLS "
                "(Cisco bug CSCwe75439)",
            )
        )
    if server.intended_username is not None and from_text is not None:
        account = server.intended_username
        sender = from_text.strip().strip("<>")
        local = sender.partition("@")[0]
        same = sender.lower() == account.lower() or ("@" not in account and local.lower() == account.lower())
        if not same:
            findings.append(
                Finding(
                    FROM_NOT_ACCOUNT,
                    "error",
                    f"{where}: from {sender!r} differs from the authenticated account {account!r}; "
                    "the provider refuses or rewrites such mail",
                    f"set the from address (e.g. `event manager environment _email_from {account}`) "
                    "to the account "
                    "that logs in",
                )
            )

    known = _match_server(server.host_as_intended, servers)
    secure = (action.secure or "none").lower()
    port = action.port if action.port is not None else EEM_DEFAULT_PORT
    if port == IMPLICIT_TLS_PORT or (known is not None and known.mode == "tls" and port == known.port):
        findings.append(
            Finding(
                IMPLICIT_TLS,
                "error",
                f"{where} mails to port {port}, which expects TLS from the first byte (implicit TLS); "
                "EEM's mail action speaks plain SMTP and upgrades only with STARTTLS (`secure tls`), "
                "so the handshake never starts and the mail fails",
                f"use the provider's STARTTLS port: `secure tls port 587` in action {action.label} "
                "(and configure the server in our config as starttls on 587)",
            )
        )
    if secure != "tls":
        findings.append(
            Finding(
                NO_SECURE_TLS,
                "error",
                f"{where} sends without `secure tls`: the password and the alert travel in clear text "
                "and providers refuse the login",
                f"append `secure tls port {known.port if known else 587}` to action {action.label}",
            )
        )
    if known is not None:
        if port != known.port:
            findings.append(
                Finding(
                    PORT_MISMATCH,
                    "error",
                    f"{where} uses port {port}{'' if action.port is not None else ' (the default)'} but "
                    f"{known.host} is configured as {known.mode} on port {known.port}",
                    f"set `port {known.port}` in action {action.label}",
                )
            )
        elif secure == "tls" and known.mode == "plain":
            findings.append(
                Finding(
                    PORT_MISMATCH,
                    "error",
                    f"{where} uses `secure tls` but {known.host}:{known.port} is configured as plain SMTP",
                    f"point action {action.label} at a TLS port of {known.host}, "
                    "or fix the server's mode in our config",
                )
            )
    elif server.host_as_intended and "$" not in server.host_as_intended:
        names = ", ".join(f"{s.host}:{s.port}" for s in servers) or "none"
        findings.append(
            Finding(
                UNKNOWN_SERVER,
                "warning",
                f"{where} mails via {server.host_as_intended!r}, "
                f"which is not a server in our config ({names}); "
                "its certificate chain is not watched",
                f"add {server.host_as_intended} to the servers in our config, "
                "or point the applet at a watched server",
            )
        )
    return findings


def _match_server(host: str, servers: Sequence[KnownServer]) -> KnownServer | None:
    wanted = host.strip().rstrip(".").lower()
    return next((s for s in servers if s.host.rstrip(".").lower() == wanted), None)


def _lint_revocation(snapshot: RouterSnapshot, *, prefix: str | None, adopt: Collection[str]) -> list[Finding]:
    """IOS checks revocation by CRL unless a trustpoint says `revocation-check none` (`crl` is the default,
    SLA-TrustPoint shows it). A CRL the router cannot fetch fails the mail's TLS check with
    `%PKI-3-CRL_FETCH_FAIL` (show_logging_PKI-3-CRL_FETCH_FAIL__gh_dnac_switch.txt). `none` as a fallback
    method (`revocation-check crl none`) lets the check pass when the fetch fails.
    """
    findings: list[Finding] = []
    for tp in snapshot.trustpoints:
        managed = (prefix is not None and tp.name.startswith(prefix)) or tp.name in adopt
        if not managed:
            continue
        methods = (tp.revocation_check or "crl").split()
        if "none" in methods:
            continue
        shown = f"`revocation-check {tp.revocation_check}`" if tp.revocation_check else "no `revocation-check`"
        findings.append(
            Finding(
                REVOCATION_CHECK,
                "error",
                f"trustpoint {tp.name} has {shown} (IOS then checks a CRL): when the mail's chain is anchored "
                "to it, the router tries to fetch a CRL, logs %PKI-3-CRL_FETCH_FAIL if it cannot, and the mail "
                "fails",
                f"configure `crypto pki trustpoint {tp.name}` / ` revocation-check none` "
                "(eemwatchd creates its trustpoints that way)",
            )
        )
    return findings


def _lint_unsendable(snapshot: RouterSnapshot, *, prefix: str | None, adopt: Collection[str]) -> list[Finding]:
    """A trustpoint named like ours (or adopted) whose name is not one IOS word: no command eemwatchd sends may
    name it, so it is never retired or changed; once a finding, not a failed refresh on every run."""
    findings: list[Finding] = []
    for tp in snapshot.trustpoints:
        managed = (prefix is not None and tp.name.startswith(prefix)) or tp.name in adopt
        problem = check_trustpoint_name(tp.name) if managed else None
        if problem is None:
            continue
        findings.append(Finding(
            UNSENDABLE_TRUSTPOINT, "warning",
            f"trustpoint {show_value(tp.name)} is named as eemwatchd's own, but {problem}: eemwatchd never names it "
            "in a command, so it is never retired",
            f"remove it by hand (`no crypto pki trustpoint {tp.name}` at the console) or rename it",
        ))
    return findings


def _lint_certificates(snapshot: RouterSnapshot, *, now: datetime, soon: timedelta) -> list[Finding]:
    findings: list[Finding] = []
    for tp in snapshot.trustpoints:
        for held in tp.certificates:
            cert = held.certificate
            if cert is None:
                continue
            # The router's own (self-signed or identity) certificates play no part in trusting an SMTP
            # server: report them, but only as information.
            own = held.kind != "ca"
            if cert.is_expired(now):
                findings.append(
                    Finding(
                        CERTIFICATE_EXPIRED,
                        "info" if own else "warning",
                        f"trustpoint {tp.name} holds {held.kind} certificate {cert.describe()}, expired "
                        f"{(now - cert.not_after).days} days ago",
                        f"retire trustpoint {tp.name} once its replacement is installed "
                        f"(`no crypto pki trustpoint {tp.name}`)"
                        if not own
                        else f"renew the router's own certificate in {tp.name} if anything uses it",
                    )
                )
            elif cert.not_after - now <= soon:
                findings.append(
                    Finding(
                        CERTIFICATE_EXPIRING,
                        "info" if own else "warning",
                        f"trustpoint {tp.name} holds {held.kind} certificate {cert.describe()}, expiring in "
                        f"{(cert.not_after - now).days} days",
                        "install its successor into a new trustpoint before it expires, then retire this one",
                    )
                )
    return findings


def _lint_clock(snapshot: RouterSnapshot, *, our_clock: datetime, max_skew: timedelta) -> list[Finding]:
    if snapshot.clock is None:
        return [
            Finding(
                CLOCK_SKEW,
                "info",
                "the router's clock could not be read, so its offset is unknown",
                "check `show clock` and configure NTP (`ntp server ...`)",
            )
        ]
    skew = snapshot.clock - our_clock
    if abs(skew) <= max_skew:
        return []
    direction = "ahead of" if skew > timedelta(0) else "behind"
    return [
        Finding(
            CLOCK_SKEW,
            "error",
            f"the router's clock is {_duration(abs(skew))} {direction} ours ({snapshot.clock.isoformat()}): "
            "certificate validity checks fail or pass at the wrong time",
            "configure NTP (`ntp server ...`) or set the clock (`clock set ...`), "
            "and `clock timezone` to match",
        )
    ]


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 7200:
        return f"{seconds // 3600} hours"
    return f"{seconds // 60} minutes"
