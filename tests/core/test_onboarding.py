"""The pure part of onboarding: the rendered EEM setup, its difference with a running-config, the refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core import onboarding as ob
from eemwatchd.core.onboarding import MailSetup, check_clock, check_request, check_setup, mask_line, plan_onboarding
from eemwatchd_lab.pki import GmailShapedPki

NOW = datetime(2031, 3, 4, 10, 0, tzinfo=UTC)
PASSWORD = "app-pw-Zq81"
SETUP = MailSetup(applet="MAIL-ALERT", router="r1", host="smtp.example.net", port=587, username="relay",
                  password=PASSWORD, mail_from="routers@example.net", to=("noc@example.net", "ops@example.net"))


def running(setup: MailSetup) -> str:
    env = [f"event manager environment {n} {v}" for n, v in ob.render_environment(setup)]
    return "\n".join(["hostname r1", "!", *env, *ob.render_applet(setup), "!", "end"])


REQUEST = {"mode": "starttls", "port": 587, "username": "relay", "account_from": "Routers@Example.NET",
           "mail_from": None, "to": ["noc@example.net"]}


@pytest.mark.parametrize(("change", "reasons"), [
    pytest.param({}, [], id="ok"),
    pytest.param({"mail_from": "routers@example.net"}, [], id="from-same-address-other-case"),
    pytest.param({"username": "me@gmail.com"}, [ob.AT_IN_USERNAME], id="at-in-username"),
    pytest.param({"mail_from": "boss@example.net"}, [ob.FROM_NOT_ACCOUNT], id="from-not-account"),
    pytest.param({"mode": "implicit", "port": 465}, [ob.IMPLICIT_TLS], id="implicit-mode"),
    pytest.param({"port": 465}, [ob.IMPLICIT_TLS], id="port-465"),
    pytest.param({"to": []}, [ob.NO_RECIPIENT], id="no-recipient"),
    pytest.param({"to": None}, [], id="recipients-not-known-yet"),
    pytest.param({"to": ["noc@example.net\nhostname PWNED"]}, [ob.BAD_VALUE], id="line-break-in-address"),
    pytest.param({"to": ["not-an-address"]}, [ob.BAD_VALUE], id="not-an-address"),
    pytest.param({"to": ['a"b@example.net']}, [ob.BAD_VALUE], id="quote-in-address"),
])
def test_check_request(change: dict[str, object], reasons: list[str]) -> None:
    refusals = check_request(**{**REQUEST, **change})  # type: ignore[arg-type]
    assert [r.reason for r in refusals] == reasons
    assert all(r.fix for r in refusals)


def test_at_in_username_names_the_eem_split_and_the_bug() -> None:
    (refusal,) = check_request(**{**REQUEST, "username": "me@gmail.com"})  # type: ignore[arg-type]
    assert "first '@'" in refusal.message.lower() and "CSCwe75439" in refusal.message


@pytest.mark.parametrize(("change", "secret_shown"), [
    pytest.param({"host": "smtp example"}, True, id="space-in-host"),
    pytest.param({"password": "pw with space"}, False, id="space-in-password-not-shown"),
    pytest.param({"applet": "X\nconfigure terminal"}, True, id="line-break-in-applet"),
    pytest.param({"router": 'r"1'}, True, id="quote-in-quoted-subject"),
    pytest.param({"mail_from": "a|b@example.net"}, True, id="pipe-in-from"),
])
def test_check_setup_refuses_values_that_are_not_one_token(change: dict[str, str], secret_shown: bool) -> None:
    import dataclasses

    bad = dataclasses.replace(SETUP, **change)  # type: ignore[arg-type]
    refusals = check_setup(bad)
    assert refusals and {r.reason for r in refusals} == {ob.BAD_VALUE}
    assert all(bad.password not in r.message for r in refusals)
    assert check_setup(SETUP) == []


PKI = GmailShapedPki.create(now=NOW)


@pytest.mark.parametrize(("router_clock", "reasons"), [
    pytest.param(NOW + timedelta(minutes=3), [], id="in-step"),
    pytest.param(NOW + timedelta(days=2), [], id="two-days-off-certificates-still-valid"),
    pytest.param(NOW - timedelta(days=40), [ob.CLOCK_OFF] * 3, id="before-the-leaf-and-intermediate-and-cross"),
    pytest.param(NOW + timedelta(days=3650), [ob.CLOCK_OFF] * 3, id="years-ahead-all-expired"),
    pytest.param(None, [ob.CLOCK_UNKNOWN], id="clock-not-read"),
])
def test_check_clock(router_clock: datetime | None, reasons: list[str]) -> None:
    refusals = check_clock(router_clock, our_clock=NOW, chains=[PKI.served, PKI.served])
    assert [r.reason for r in refusals] == reasons
    if router_clock is not None and reasons:
        assert router_clock.isoformat() in refusals[0].message


def test_a_bare_router_needs_everything() -> None:
    plan = plan_onboarding(SETUP, "hostname r1\n!\nend\n")
    assert [c.state for c in plan.changes] == ["add"] * 4
    assert plan.lines() == [
        f"event manager environment _email_server relay:{PASSWORD}@smtp.example.net",
        "event manager environment _email_to noc@example.net,ops@example.net",
        "event manager environment _email_from routers@example.net",
        "event manager applet MAIL-ALERT",
        " event none maxrun 60",
        ' action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" subject "EEM mail from r1 '
        'works" body "Test mail of applet MAIL-ALERT on router r1, configured by eemwatchd onboard." secure tls '
        "port 587",
        f' action 0020 syslog msg "{ob.SUCCESS_MESSAGE}"',
    ]
    assert not plan.conflicts
    assert all(PASSWORD not in line for line in plan.diff(secrets=[PASSWORD]))


def test_the_same_setup_needs_nothing_even_when_ios_quotes_differently() -> None:
    text = running(SETUP).replace('syslog msg "eemwatchd: test mail handed to the SMTP server"',
                                  'syslog msg "eemwatchd: test mail handed to the SMTP server"  ')
    plan = plan_onboarding(SETUP, text)
    assert not plan.needed and plan.lines() == []


def test_differences_are_shown_line_by_line_with_the_password_masked() -> None:
    router_has = running(SETUP).replace(f"relay:{PASSWORD}@", "relay:old-secret@").replace(
        "event none maxrun 60", "event none maxrun 20")
    plan = plan_onboarding(SETUP, router_has)
    assert [c.what for c in plan.conflicts] == ["event manager environment _email_server",
                                                "event manager applet MAIL-ALERT"]
    diff = plan.diff(secrets=[PASSWORD, "old-secret"])
    text = "\n".join(diff)
    assert PASSWORD not in text and "old-secret" not in text
    assert "  - event manager environment _email_server relay:****@smtp.example.net" in diff
    assert ("  + event manager environment _email_server relay:****@smtp.example.net"
            "   (the password differs; not shown)") in diff
    assert "  -  event none maxrun 20" in diff and "  +  event none maxrun 60" in diff
    assert "    event manager applet MAIL-ALERT" in diff  # unchanged lines are shown as context
    # IOS keeps the actions of an applet entered again: the applet is removed first, then written anew
    lines = plan.lines()
    assert lines[1:3] == ["no event manager applet MAIL-ALERT", "event manager applet MAIL-ALERT"]


def test_an_extra_action_on_the_router_is_a_difference() -> None:
    text = running(SETUP).replace("!\nend", ' action 0030 cli command "reload"\n!\nend')
    plan = plan_onboarding(SETUP, text)
    assert [c.what for c in plan.conflicts] == ["event manager applet MAIL-ALERT"]
    assert '  -  action 0030 cli command "reload"' in plan.diff()


@pytest.mark.parametrize(("line", "shown"), [
    ("event manager environment _email_server u:pw@h", "event manager environment _email_server u:****@h"),
    ('action 1 mail server "u:pw@h" to "a@b.c"', 'action 1 mail server "u:****@h" to "a@b.c"'),
    (" action 1 mail server u:pw@h to x", " action 1 mail server u:****@h to x"),
    ('action 2 syslog msg "pw in text"', 'action 2 syslog msg "**** in text"'),
])
def test_mask_line(line: str, shown: str) -> None:
    assert mask_line(line, ["pw"]) == shown
