"""Onboarding end to end: lab routers over real SSH, the lab SMTP server receiving the routers' mail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.lock import StateLock
from eemwatchd.core import onboarding as ob
from eemwatchd.reconcile.onboard import Onboarder, OnboardRequest
from eemwatchd_lab.router.clock import ticking_clock
from tests.support.onboarding_lab import (
    ACCOUNT,
    APPLET,
    NOW,
    SMTP_PASSWORD,
    SMTP_USER,
    OnboardingLab,
    config_text,
    make_onboarding_lab,
    routers_yaml,
    run_cli,
    write_config,
)
from tests.support.reconcile_lab import fast_connector


@pytest.fixture
async def onboarding_lab(tmp_path: Path) -> AsyncIterator[OnboardingLab]:
    """Everything on a pinned date: the PKI, the routers' clocks, our clock."""
    async with make_onboarding_lab(tmp_path, now=NOW, clock=ticking_clock(NOW)) as made:
        yield made


@pytest.fixture
async def onboarding_cli_lab(tmp_path: Path) -> AsyncIterator[OnboardingLab]:
    """For the command run as a process, which reads the host's clock: the PKI is minted at that moment and
    the routers read that clock too, so only relative times matter, never the date."""
    async with make_onboarding_lab(tmp_path, now=datetime.now(UTC), clock=None) as made:
        yield made


async def test_a_bare_router_sends_a_proven_test_mail_after_one_onboard_and_a_second_changes_nothing(
    onboarding_lab: OnboardingLab,
) -> None:
    device = onboarding_lab.device("bare").state
    assert not device.env and not device.applets  # no EEM setup at all

    result = await onboarding_lab.onboard(to=("noc@lab.example",))

    assert result.ok, (result.refusals, result.error, result.trust and result.trust.error)
    assert result.trust is not None and result.trust.result == "applied"
    fired = [s for s in result.trust.steps if s.kind == "test-fire"]
    assert fired and fired[-1].ok and fired[-1].evidence
    # the evidence is this run's history row or the success line the onboarded applet logs after its mail
    assert "success" in fired[-1].evidence or ob.SUCCESS_MESSAGE in fired[-1].evidence
    # the lab SMTP server really received the router's mail, over TLS, logged in with the account
    (message,) = onboarding_lab.smtp.messages
    assert message.tls and message.login == SMTP_USER
    assert message.mail_from == "alerts@lab.example" and message.rcpt_tos == ("noc@lab.example",)
    # everything, EEM and trust, was saved only after the proof
    startup = device.startup_config() or ""
    assert f"event manager applet {APPLET}" in startup and "crypto pki trustpoint EEMW-" in startup
    # the secret is in the router (where it must be) but in none of our output or our store
    assert SMTP_PASSWORD in device.env["_email_server"]
    assert SMTP_PASSWORD not in json.dumps(result.to_json())
    assert SMTP_PASSWORD not in (onboarding_lab.tmp / "state.db").read_bytes().decode("latin-1")
    assert any(e.action == "eem-configure" for e in onboarding_lab.store.audit(router="bare"))

    before = onboarding_lab.state_of("bare")
    again = await onboarding_lab.onboard(to=("noc@lab.example",))

    assert again.ok and not again.changed and again.sent == []
    assert again.plan is not None and not again.plan.needed
    assert again.trust is not None and again.trust.steps == [] and again.trust.in_sync
    assert onboarding_lab.state_of("bare")[0] == before[0] and onboarding_lab.state_of("bare")[2] == before[2]
    assert len(onboarding_lab.smtp.messages) == 1


async def test_dry_run_prints_exact_lines_masked_and_changes_nothing(onboarding_lab: OnboardingLab) -> None:
    before = onboarding_lab.state_of("bare")
    result = await onboarding_lab.onboard(to=("noc@lab.example",), dry_run=True)
    assert result.ok and result.dry_run and result.sent == [] and result.trust is None
    assert f"event manager environment _email_server {SMTP_USER}:****@127.0.0.1" in result.lines
    assert f"event manager applet {APPLET}" in result.lines
    assert all(SMTP_PASSWORD not in line for line in result.lines + result.diff)
    assert onboarding_lab.state_of("bare") == before

    shown = await Onboarder(onboarding_lab.config, onboarding_lab.store, connect=fast_connector,
                            clock=onboarding_lab.clock,
                            show_secrets=True).onboard(OnboardRequest(router="bare", to=("n@lab.example",),
                                                                      dry_run=True))
    assert f"event manager environment _email_server {SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1" in shown.lines


OTHER_SETUP = [
    "event manager environment _email_server alerts:older-pw@127.0.0.1",
    "event manager environment _email_to boss@lab.example",
    f"event manager applet {APPLET}",
    " event none maxrun 20",
    ' action 0010 syslog msg "hello"',
    ' action 0030 cli command "show version"',
]


async def test_existing_values_that_differ_are_kept_without_replace_and_shown_line_by_line(
    onboarding_lab: OnboardingLab,
) -> None:
    onboarding_lab.device("bare").state.apply_config(OTHER_SETUP)
    before = onboarding_lab.state_of("bare")

    result = await onboarding_lab.onboard(to=("noc@lab.example",))

    assert [r.reason for r in result.refusals] == [ob.EXISTING_DIFFERS]
    assert onboarding_lab.state_of("bare") == before  # nothing was sent
    assert "  -  event none maxrun 20" in result.diff and "  +  event none maxrun 60" in result.diff
    assert '  -  action 0030 cli command "show version"' in result.diff
    assert "  - event manager environment _email_server alerts:****@127.0.0.1" in result.diff
    assert not any("older-pw" in line or SMTP_PASSWORD in line for line in result.diff)

    replaced = await onboarding_lab.onboard(to=("noc@lab.example",), replace=True)

    assert replaced.ok, (replaced.refusals, replaced.error, replaced.trust and replaced.trust.error)
    applet = onboarding_lab.device("bare").state.applets[APPLET]
    assert [a.label for a in applet.actions] == [ob.MAIL_LABEL, ob.SUCCESS_LABEL]  # 0030 gone
    assert len(onboarding_lab.smtp.messages) == 1


async def test_a_new_setup_on_a_router_whose_trust_is_proven_is_test_fired_and_saved(
    onboarding_lab: OnboardingLab,
) -> None:
    first = await onboarding_lab.onboard(to=("noc@lab.example",))
    assert first.ok
    second = await onboarding_lab.onboard(to=("other@lab.example",), replace=True)

    assert second.ok, (second.error, second.trust and second.trust.error)
    assert second.trust is not None
    kinds = [(s.kind, s.ok) for s in second.trust.steps]
    assert kinds == [("test-fire", True), ("save", True)]  # no trust to add: the new setup proven, then saved
    assert onboarding_lab.smtp.messages[-1].rcpt_tos == ("other@lab.example",)
    assert "_email_to other@lab.example" in (onboarding_lab.device("bare").state.startup_config() or "")


async def assert_refused_untouched(
    onboarding_lab: OnboardingLab, reason: str, router: str = "bare", **request: object
) -> None:
    before = onboarding_lab.state_of(router)
    result = await onboarding_lab.onboard(router, **request)
    assert reason in [r.reason for r in result.refusals], result.refusals
    assert result.sent == [] and result.trust is None and not result.ok
    assert onboarding_lab.state_of(router) == before  # running-config, log and startup-config unchanged
    assert onboarding_lab.fleet[router].state.last_change is None
    assert onboarding_lab.smtp.messages == []


async def test_refuses_a_from_that_is_not_the_account(onboarding_lab: OnboardingLab) -> None:
    await assert_refused_untouched(onboarding_lab, ob.FROM_NOT_ACCOUNT, to=("noc@lab.example",),
                                   mail_from="ceo@lab.example")
    ok = await onboarding_lab.onboard(to=("noc@lab.example",), mail_from="ALERTS@lab.example", dry_run=True)
    assert ok.refusals == []  # the same address in other case is the account's


async def test_refuses_a_server_not_in_the_config(onboarding_lab: OnboardingLab) -> None:
    await assert_refused_untouched(onboarding_lab, ob.UNKNOWN_SERVER, to=("noc@lab.example",), server="gmail")


async def test_refuses_a_router_clock_too_far_off_for_the_certificates(onboarding_lab: OnboardingLab) -> None:
    await assert_refused_untouched(onboarding_lab, ob.CLOCK_OFF, router="skewed", to=("noc@lab.example",))


async def test_refuses_bad_tokens_before_touching_the_router(onboarding_lab: OnboardingLab) -> None:
    await assert_refused_untouched(onboarding_lab, ob.BAD_VALUE, to=("noc@lab.example\nhostname PWNED",))
    await assert_refused_untouched(onboarding_lab, ob.BAD_VALUE, to=("noc@lab.example",), applet='X"Y')


async def test_refuses_without_recipients_when_the_router_has_none(onboarding_lab: OnboardingLab) -> None:
    await assert_refused_untouched(onboarding_lab, ob.NO_RECIPIENT)


async def test_refuses_implicit_tls(onboarding_lab: OnboardingLab) -> None:
    implicit = config_text(onboarding_lab.smtp.port, routers_yaml(onboarding_lab.fleet), account=ACCOUNT).replace(
        "mode: starttls", "mode: implicit")
    onboarding_lab.config = write_config(onboarding_lab.tmp, implicit)
    await assert_refused_untouched(onboarding_lab, ob.IMPLICIT_TLS, to=("noc@lab.example",))


# --- the command ----------------------------------------------------------------------------------


async def test_cli_refuses_an_at_in_the_smtp_user_name_before_touching_the_router(
    onboarding_cli_lab: OnboardingLab,
) -> None:
    text = config_text(onboarding_cli_lab.smtp.port, routers_yaml(onboarding_cli_lab.fleet), account=ACCOUNT.replace(
        f"username: {SMTP_USER}", "username: alerts@gmail.com"))
    (onboarding_cli_lab.tmp / "eemwatchd.yaml").write_text(text)
    before = onboarding_cli_lab.state_of("bare")
    ran = await run_cli("onboard", "-c", str(onboarding_cli_lab.tmp / "eemwatchd.yaml"), "--router", "bare",
                        "--to", "noc@lab.example", "--yes")
    assert ran.code == 2
    assert "contains '@'" in ran.err and "CSCwe75439" in ran.err
    assert onboarding_cli_lab.state_of("bare") == before


async def test_cli_dry_run_json_and_text(onboarding_cli_lab: OnboardingLab) -> None:
    path = str(onboarding_cli_lab.tmp / "eemwatchd.yaml")
    before = onboarding_cli_lab.state_of("bare")
    ran = await run_cli("onboard", "-c", path, "--router", "bare", "--to", "noc@lab.example", "--dry-run")
    assert ran.code == 0, ran.err
    assert f"event manager environment _email_server {SMTP_USER}:****@127.0.0.1" in ran.out
    assert "dry run: nothing was changed" in ran.out and SMTP_PASSWORD not in ran.out + ran.err
    ran = await run_cli("onboard", "-c", path, "--router", "bare", "--to", "noc@lab.example", "--dry-run", "--json")
    document = json.loads(ran.out)
    assert ran.code == 0 and document["ok"] and document["sent"] == [] and SMTP_PASSWORD not in ran.out
    ran = await run_cli("onboard", "-c", path, "--router", "bare", "--to", "noc@lab.example", "--dry-run",
                        "--show-secrets")
    assert ran.code == 0 and f"{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1" in ran.out
    assert onboarding_cli_lab.state_of("bare") == before


async def test_cli_exits_75_while_another_writer_holds_the_lock(onboarding_cli_lab: OnboardingLab) -> None:
    lock = StateLock(onboarding_cli_lab.config.state_path, purpose="apply")
    lock.acquire()
    try:
        before = onboarding_cli_lab.state_of("bare")
        ran = await run_cli("onboard", "-c", str(onboarding_cli_lab.tmp / "eemwatchd.yaml"), "--router", "bare",
                            "--to", "noc@lab.example", "--yes")
    finally:
        lock.release()
    assert ran.code == 75
    assert "try again later" in ran.err
    assert onboarding_cli_lab.state_of("bare") == before


async def test_cli_without_yes_and_no_terminal_changes_nothing(onboarding_cli_lab: OnboardingLab) -> None:
    before = onboarding_cli_lab.state_of("bare")
    ran = await run_cli("onboard", "-c", str(onboarding_cli_lab.tmp / "eemwatchd.yaml"), "--router", "bare",
                        "--to", "n@lab.example")
    assert ran.code == 2 and "--dry-run" in ran.err
    assert onboarding_cli_lab.state_of("bare") == before


async def test_cli_onboards_and_a_second_run_changes_nothing(onboarding_cli_lab: OnboardingLab) -> None:
    path = str(onboarding_cli_lab.tmp / "eemwatchd.yaml")
    ran = await run_cli("onboard", "-c", path, "--router", "bare", "--to", "noc@lab.example", "--yes")
    assert ran.code == 0, ran.out + ran.err
    assert "sent 7 EEM configuration line(s)" in ran.out and "result: applied" in ran.out
    assert len(onboarding_cli_lab.smtp.messages) == 1
    ran = await run_cli("onboard", "-c", path, "--router", "bare", "--yes")  # keeps the router's _email_to
    assert ran.code == 0, ran.out + ran.err
    assert "EEM setup: nothing to change" in ran.out and SMTP_PASSWORD not in ran.out + ran.err
    assert len(onboarding_cli_lab.smtp.messages) == 1


async def test_the_lab_story_onboards_its_bare_router_first(tmp_path: Path) -> None:
    from eemwatchd_lab.scenario import run_lab

    said: list[str] = []
    run = await asyncio.wait_for(run_lab(tmp_path, routers=1, bare=1, say=said.append), timeout=55)
    text = "\n".join(said)
    assert run.onboarded and run.ok, text
    assert "0b. eemwatchd onboard" in text and "lab-rtr-01: onboarded, 1 test mail(s) delivered" in text
    assert "alerts:****@127.0.0.1" in text
