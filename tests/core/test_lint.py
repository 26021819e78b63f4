"""Lint of the EEM mail setup: one table row per situation, fixed clock, real parsed config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core import lint
from eemwatchd.core.ios.formats import render_certificate_block
from eemwatchd.core.ios.parsers import parse_running_config
from eemwatchd.core.lint import Finding, KnownServer, lint_router
from eemwatchd.core.router_state import RouterSnapshot, mask_server
from eemwatchd_lab.pki import make_root

NOW = datetime(2026, 11, 26, 22, 0, 0, tzinfo=UTC)
PASSWORD = "app-pass-9876"
GMAIL = KnownServer("smtp.gmail.com", 587, "starttls")
SERVERS = (GMAIL, KnownServer("smtp.example.net", 465, "tls"), KnownServer("relay.lab", 25, "plain"))

GOOD = f"""\
hostname edge-1
event manager environment _email_server alerts:{PASSWORD}@smtp.gmail.com
event manager environment _email_to noc@example.com
event manager environment _email_from alerts
event manager applet MAIL
 event none maxrun 60
 action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" subject t body b \
 secure tls port 587
"""


def _snapshot(config: str, *, clock: datetime | None = NOW, extra: str = "") -> RouterSnapshot:
    parsed = parse_running_config(config + extra)
    trustpoints, env, applets, hostname = parsed.trustpoints, parsed.environment, parsed.applets, parsed.hostname
    return RouterSnapshot(hostname, trustpoints, env, applets, clock)


def _rules(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.rule, f.severity) for f in findings]


def _lint(snapshot: RouterSnapshot, **kwargs: object) -> list[Finding]:
    args: dict[str, object] = {
        "servers": SERVERS,
        "applet_name": "MAIL",
        "now": NOW,
        "our_clock": NOW,
        "soon": timedelta(days=30),
    }
    args.update(kwargs)
    return lint_router(snapshot, **args)  # type: ignore[arg-type]


def test_good_setup_has_no_findings() -> None:
    assert _lint(_snapshot(GOOD)) == []


def _swap(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            _swap(f"alerts:{PASSWORD}@smtp", f"alerts@gmail.com:{PASSWORD}@smtp"),
            [(lint.AT_IN_USERNAME, "error"), (lint.FROM_NOT_ACCOUNT, "error")],
            id="at-in-username",
        ),
        pytest.param(
            _swap("_email_from alerts", "_email_from someone-else@example.com"),
            [(lint.FROM_NOT_ACCOUNT, "error")],
            id="from-differs",
        ),
        pytest.param(
            _swap("_email_from alerts", "_email_from Alerts@gmail.com"), [], id="from-local-part-matches"
        ),
        pytest.param(
            _swap(" secure tls port 587", " port 587"), [(lint.NO_SECURE_TLS, "error")], id="no-secure-tls"
        ),
        pytest.param(
            _swap(" secure tls port 587", " secure none port 587"),
            [(lint.NO_SECURE_TLS, "error")],
            id="secure-none",
        ),
        pytest.param(
            _swap("port 587", "port 465"),
            [(lint.IMPLICIT_TLS, "error"), (lint.PORT_MISMATCH, "error")],
            id="port-465-for-starttls",
        ),
        pytest.param(
            _swap("smtp.gmail.com", "smtp.example.net").replace("port 587", "port 465"),
            [(lint.IMPLICIT_TLS, "error")],
            id="implicit-tls-server-465",
        ),
        pytest.param(
            _swap("smtp.gmail.com", "smtp.office365.com").replace("port 587", "port 465"),
            [(lint.IMPLICIT_TLS, "error"), (lint.UNKNOWN_SERVER, "warning")],
            id="port-465-unknown-server",
        ),
        pytest.param(_swap(" port 587", ""), [(lint.PORT_MISMATCH, "error")], id="default-port-25"),
        pytest.param(
            _swap("smtp.gmail.com", "relay.lab").replace("port 587", "port 25"),
            [(lint.PORT_MISMATCH, "error")],
            id="tls-to-plain-server",
        ),
        pytest.param(
            _swap("event none maxrun 60", "event timer watchdog time 3600 maxrun 60"),
            [(lint.NOT_EVENT_NONE, "warning")],
            id="not-event-none",
        ),
        pytest.param(
            _swap("event none maxrun 60", "event tag e1 none maxrun 60"), [], id="tagged-event-none"
        ),
        pytest.param(
            _swap("event none maxrun 60", "event none"),
            [(lint.MAXRUN_SHORT, "warning")],
            id="default-maxrun-20",
        ),
        pytest.param(_swap("maxrun 60", "maxrun 10.5"), [(lint.MAXRUN_SHORT, "warning")], id="maxrun-10"),
        pytest.param(
            _swap("smtp.gmail.com", "smtp.office365.com"),
            [(lint.UNKNOWN_SERVER, "warning")],
            id="unknown-server",
        ),
        pytest.param(
            _swap("event manager environment _email_to noc@example.com\n", ""),
            [(lint.UNDEFINED_VARIABLE, "error")],
            id="undefined-variable",
        ),
        pytest.param(_swap("MAIL\n", "OTHER\n"), [(lint.APPLET_MISSING, "error")], id="applet-missing"),
        pytest.param(GOOD.split(" action 0010")[0], [(lint.NO_MAIL_ACTION, "error")], id="no-mail-action"),
    ],
)
def test_applet_rules(config: str, expected: list[tuple[str, str]]) -> None:
    findings = _lint(_snapshot(config))
    assert _rules(findings) == expected
    for finding in findings:
        assert PASSWORD not in finding.message
        assert PASSWORD not in finding.fix
        assert finding.fix


def _chain(name: str, days_left: float, *, kind: str = "ca") -> str:
    root = make_root(
        f"{name} root", now=NOW + timedelta(days=days_left) - timedelta(days=3650), days=3650, back_days=0
    )
    lines = [f"crypto pki trustpoint {name}", " enrollment terminal", f"crypto pki certificate chain {name}"]
    lines += render_certificate_block(root.cert, kind=kind)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(_chain("OLD-CA", -3), [(lint.CERTIFICATE_EXPIRED, "warning")], id="expired-ca"),
        pytest.param(_chain("SOON-CA", 10), [(lint.CERTIFICATE_EXPIRING, "warning")], id="expiring-ca"),
        pytest.param(_chain("FINE-CA", 31), [], id="valid-ca"),
        pytest.param(
            _chain("TP-self-signed-1", -400, kind="self-signed"),
            [(lint.CERTIFICATE_EXPIRED, "info")],
            id="expired-self-signed-is-info",
        ),
    ],
)
def test_certificate_rules(extra: str, expected: list[tuple[str, str]]) -> None:
    assert _rules(_lint(_snapshot(GOOD, extra=extra))) == expected


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        pytest.param(NOW + timedelta(minutes=4), [], id="4-min-ahead-ok"),
        pytest.param(NOW - timedelta(minutes=6), [(lint.CLOCK_SKEW, "error")], id="6-min-behind"),
        pytest.param(NOW + timedelta(days=400), [(lint.CLOCK_SKEW, "error")], id="a-year-ahead"),
        pytest.param(None, [(lint.CLOCK_SKEW, "info")], id="unread"),
    ],
)
def test_clock_rule(clock: datetime | None, expected: list[tuple[str, str]]) -> None:
    findings = _lint(_snapshot(GOOD, clock=clock))
    assert _rules(findings) == expected
    if clock is not None and expected:
        assert ("ahead of" in findings[0].message) == (clock > NOW)


def test_rule_ids_are_unique_and_named() -> None:
    ids = [v for k, v in vars(lint).items() if k.isupper() and isinstance(v, str) and v.startswith("EEM")]
    assert len(ids) == len(set(ids)) >= 8
    assert lint.AT_IN_USERNAME == "EEM001-at-in-username"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        pytest.param("user:secret@smtp.gmail.com", "user:****@smtp.gmail.com", id="user-password"),
        pytest.param("a@b.c:secret@smtp.gmail.com", "a@b.c:****@smtp.gmail.com", id="at-in-username"),
        pytest.param("user@smtp.gmail.com", "user@smtp.gmail.com", id="no-password"),
        pytest.param("smtp.gmail.com", "smtp.gmail.com", id="host-only"),
    ],
)
def test_mask_server(value: str, masked: str) -> None:
    assert mask_server(value) == masked
    assert "secret" not in mask_server(value)


def _trustpoint(name: str, *settings: str) -> str:
    return "\n".join([f"crypto pki trustpoint {name}", *(f" {line}" for line in settings)]) + "\n"


# eemwatchd's own trustpoints: enrollment terminal, revocation-check none, chain-validation stop, fingerprint
OURS = ("enrollment terminal", "fingerprint " + "AB" * 20, "revocation-check none", "chain-validation stop")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(_trustpoint("EEMW-GTS-R1", *OURS), [], id="created-by-eemwatchd"),
        pytest.param(
            _trustpoint("EEMW-GTS-R1", "enrollment terminal"),
            [(lint.REVOCATION_CHECK, "error")],
            id="managed-default-crl",
        ),
        pytest.param(
            _trustpoint("EEMW-GTS-R1", "enrollment terminal", "revocation-check crl"),
            [(lint.REVOCATION_CHECK, "error")],
            id="managed-crl",
        ),
        pytest.param(
            _trustpoint("EEMW-GTS-R1", "enrollment terminal", "revocation-check ocsp"),
            [(lint.REVOCATION_CHECK, "error")],
            id="managed-ocsp",
        ),
        pytest.param(
            _trustpoint("EEMW-GTS-R1", "enrollment terminal", "revocation-check crl none"), [], id="crl-none-fallback"
        ),
        pytest.param(
            _trustpoint("CA-GlobalSign-Root", "enrollment terminal", "revocation-check crl"),
            [(lint.REVOCATION_CHECK, "error")],
            id="adopted-crl",
        ),
        # not ours: SLA-TrustPoint has `revocation-check crl` on every box and is none of our business
        pytest.param(_trustpoint("SLA-TrustPoint", "enrollment pkcs12", "revocation-check crl"), [], id="foreign"),
    ],
)
def test_revocation_rule(extra: str, expected: list[tuple[str, str]]) -> None:
    findings = _lint(_snapshot(GOOD, extra=extra), trustpoint_prefix="EEMW-", adopt=("CA-GlobalSign-Root",))
    assert _rules(findings) == expected
    for finding in findings:
        assert "revocation-check none" in finding.fix


def test_revocation_rule_is_off_without_a_prefix_or_adopt_list() -> None:
    extra = _trustpoint("EEMW-GTS-R1", "enrollment terminal", "revocation-check crl")
    assert _lint(_snapshot(GOOD, extra=extra)) == []
