"""The lab router's own invariant checks (lab/eemwatchd_lab/router/invariants.py) catch what they promise to catch:
a save without a proving test-fire, a lost chain, two writers; and only in eemwatchd's sessions."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import LabDevice, invariants
from eemwatchd_lab.smtp import LabSmtpServer
from tests.support.lab_router import PASSWORD, SMTP_PASSWORD


def kinds() -> list[str]:
    return [v.invariant for v in invariants.take_violations()]


def mailing(router: LabDevice, server: LabSmtpServer) -> None:
    router.state.apply_config([
        f"event manager environment _email_server user:{SMTP_PASSWORD}@127.0.0.1",
        "event manager applet CERTCHECK",
        " event none maxrun 8",
        f' action 0010 mail server "$_email_server" to "ops@lab.example" from "user@lab.example" subject "t" '
        f'body "b" secure tls port {server.port}',
    ])


async def ended(router: LabDevice) -> None:
    """Wait until the router saw every session end (its end-of-session checks run then)."""
    async with asyncio.timeout(5):
        while router.active_sessions:
            await asyncio.sleep(0.01)


async def test_a_save_without_a_test_fire_is_a_violation(router: LabDevice, router_target: RouterTarget) -> None:
    async with RouterSession(router_target) as session:
        await session.save_config()
    await ended(router)
    [violation] = invariants.take_violations()
    assert violation.invariant == invariants.SAVE and "without a test-fire" in violation.detail
    assert str(violation).startswith("INVARIANT save violated on r1")


async def test_a_save_after_a_failed_test_fire_or_a_later_change_is_a_violation(
    router: LabDevice, router_target: RouterTarget, mail_server: tuple[LabSmtpServer, GmailShapedPki]
) -> None:
    server, pki = mail_server
    mailing(router, server)
    async with RouterSession(router_target) as session:
        failed = await session.fire_applet("CERTCHECK", maxrun=8.0)  # no trust yet: the mail fails
        assert not failed.ok
        await session.save_config()
        assert kinds() == [invariants.SAVE]
        await session.install_certificate("EEMW-OLD", pki.old_root.cert)
        proved = await session.fire_applet("CERTCHECK", maxrun=8.0)
        assert proved.ok
        await session.save_config()
        assert kinds() == []  # proven, nothing changed since: the one good save
        await session.retire_trustpoint("EEMW-OLD")
        await session.save_config()
        assert kinds() == [invariants.SAVE]


async def test_losing_a_chain_the_server_still_sends_is_a_violation_at_the_end_of_the_session(
    router: LabDevice, router_target: RouterTarget, mail_server: tuple[LabSmtpServer, GmailShapedPki]
) -> None:
    _server, pki = mail_server
    async with RouterSession(router_target) as session:
        await session.install_certificate("EEMW-OLD", pki.old_root.cert)
    await ended(router)
    assert kinds() == []
    async with RouterSession(router_target) as session:
        await session.retire_trustpoint("EEMW-OLD")  # the router accepted the served chain through it
    await ended(router)
    [violation] = invariants.take_violations()
    assert violation.invariant == invariants.NEVER_BELOW and "still sends it" in violation.detail


async def test_no_loss_is_counted_for_a_chain_the_server_stopped_sending(
    router: LabDevice, router_target: RouterTarget, mail_server: tuple[LabSmtpServer, GmailShapedPki]
) -> None:
    server, pki = mail_server
    async with RouterSession(router_target) as session:
        await session.install_certificate("EEMW-OLD", pki.old_root.cert)
    other = GmailShapedPki.create(prefix="Other")
    server.set_chain(other.served, other.leaf.key)  # the provider moved on
    async with RouterSession(router_target) as session:
        await session.retire_trustpoint("EEMW-OLD")
    await ended(router)
    assert kinds() == []


async def test_two_eemwatchd_sessions_in_configuration_mode_at_once_are_a_violation(
    router: LabDevice, router_target: RouterTarget, mail_server: tuple[LabSmtpServer, GmailShapedPki]
) -> None:
    _server, pki = mail_server
    async with RouterSession(router_target) as first, RouterSession(router_target) as second:
        await first.configure(["crypto pki trustpoint EEMW-A", " enrollment terminal"])
        await second.configure(["crypto pki trustpoint EEMW-B", " enrollment terminal"])
    assert invariants.ONE_WRITER not in kinds()  # one after the other is fine: configure leaves config mode

    async with RouterSession(router_target) as first, RouterSession(router_target) as second:
        await asyncio.gather(first.install_certificate("EEMW-C", pki.old_root.cert),
                             second.install_certificate("EEMW-D", pki.new_root.cert))
    await ended(router)
    assert invariants.ONE_WRITER in kinds()


async def test_a_session_of_another_ssh_client_is_not_judged(router: LabDevice) -> None:
    async with asyncssh.connect(router.host, router.port, username="admin", password=PASSWORD, known_hosts=None) as c:
        process = await c.create_process(term_type="vt100")
        process.stdin.write("configure terminal\ncrypto pki trustpoint X\nend\nwrite memory\nexit\n")
        await asyncio.wait_for(process.wait_closed(), 10)
    await ended(router)
    assert kinds() == []
    assert "X" in router.state.trustpoints


@pytest.mark.parametrize("invariant", [invariants.SAVE, invariants.NEVER_BELOW, invariants.ONE_WRITER])
def test_every_invariant_has_its_words(invariant: str) -> None:
    violation = invariants.Violation(invariant, "r9", 3, "what happened")
    assert str(violation) == f"INVARIANT {invariant} violated on r9 (session 3): what happened"
