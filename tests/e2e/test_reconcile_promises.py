"""Issue 16 findings 1, 2 and 4 against the lab routers: save only what a test-fire proved, "in sync" only when the
router can mail now, and a config the parser cannot fully read never ends the router."""

from __future__ import annotations

from datetime import timedelta

from eemwatchd.core.ios.parsers import parse_running_config
from eemwatchd.core.reason import Reason
from eemwatchd.reconcile import Reconciler, StepKind
from eemwatchd_lab.pki import GmailShapedPki
from tests.support.audit_check import audit_differences
from tests.support.reconcile_lab import APPLET, applet_config, cli, fast_connector
from tests.support.reconcile_lab import ReconcileLab as Lab
from tests.support.transcripts import transcript


async def confirm_chain(lab: Lab) -> None:
    """Two sightings of the server's chain, spaced like the daemon would, without touching a router."""
    service = Reconciler(lab.config, lab.store, connect=fast_connector, clock=lab.clock)
    for _ in range(2):
        await service.observe()
        lab.clock.advance(timedelta(minutes=10))


def saves(lab: Lab, router: str) -> list[str]:
    return [e.reason for e in lab.store.audit(router=router) if e.action == "save"]


def break_mail(lab: Lab, router: str) -> None:
    """The applet stays, but its mail action points at a port where no SMTP server listens: every test-fire fails."""
    dead_port = lab.smtp.port + 1 if lab.smtp.port < 65535 else lab.smtp.port - 1
    lab.fleet[router].state.apply_config(applet_config(dead_port))


async def test_a_failed_test_fire_is_never_followed_by_a_save_in_a_later_run(lab: Lab) -> None:
    """Finding 1: the first apply adds trust and fails its test-fire (nothing saved); the second finds the
    config unsaved and unproven, test-fires, fails again, and must still save nothing."""
    break_mail(lab, "r1")
    await confirm_chain(lab)
    first = await lab.run(router="r1")
    [result] = first.routers
    assert result.reason is Reason.TESTFIRE_FAILED
    assert [s.kind for s in result.steps if s.ok and s.kind == "add"] == ["add"] * 3

    lab.clock.advance(timedelta(minutes=10))
    planned = await lab.run(apply=False, router="r1")
    [plan] = planned.routers
    assert plan.plan is not None and plan.plan.unsaved and plan.plan.unproven and not plan.in_sync

    second = await lab.run(router="r1")
    [again] = second.routers
    fires = [s for s in again.steps if s.kind == "test-fire"]
    assert fires and not fires[-1].ok  # it did try to prove the unsaved trust, and failed
    assert again.reason is Reason.TESTFIRE_FAILED and not again.in_sync
    assert saves(lab, "r1") == []
    assert "EEMW-" not in (lab.fleet["r1"].state.startup_config() or "")
    assert any(s.kind == "save" and not s.ok for s in again.steps)  # says why it did not save


async def test_after_a_failed_test_fire_the_router_is_not_in_sync_even_with_an_older_proof(lab: Lab) -> None:
    """In sync needs the LAST test-fire to have succeeded: a later failure with the same trust is evidence that
    mail does not work now."""
    await confirm_chain(lab)
    [done] = (await lab.run(router="r1")).routers
    assert done.reason is Reason.APPLIED
    [synced] = (await lab.run(apply=False, router="r1")).routers
    assert synced.in_sync

    break_mail(lab, "r1")
    # an apply with nothing to change does not fire; record a failed proof the way a failed test-fire does
    lab.store.record_proof("r1", at=lab.clock(), ok=False, evidence="%HA_EM-3-FMPD_SMTP: Error occurred when sending "
                           "mail to SMTP server: 127.0.0.1 : error in connecting to SMTP server",
                           trust=lab.store.last_proof("r1", ok_only=True).trust)  # type: ignore[union-attr]
    [plan] = (await lab.run(apply=False, router="r1")).routers
    assert plan.reason is Reason.UNPROVEN and not plan.in_sync
    assert plan.plan is not None
    assert any("the last test-fire failed" in r.message for r in plan.plan.reports)


async def test_a_router_without_its_applet_is_never_in_sync_and_is_neither_changed_nor_fired_nor_saved(
    lab: Lab,
) -> None:
    """Finding 1 (the daemon's variant) and 2 (plan said `in sync` with lint EEM000-applet-missing and exit 0)."""
    await confirm_chain(lab)
    [done] = (await lab.run(router="r1")).routers
    assert done.reason is Reason.APPLIED  # proven and saved once, with its applet
    saved_before = saves(lab, "r1")
    del lab.fleet["r1"].state.applets[APPLET]  # as `no event manager applet` over SSH would

    for _ in range(2):  # the daemon checks it again and again
        lab.clock.advance(timedelta(minutes=10))
        [result] = (await lab.run(router="r1")).routers
        assert result.reason is Reason.NOT_ONBOARDED and not result.in_sync
        assert [s.kind for s in result.steps if s.kind is not StepKind.OBSERVED] == []  # nothing changed, nothing fired
    assert saves(lab, "r1") == saved_before
    assert "EEM000-applet-missing" in {f.rule for f in result.lint}

    code, out, _err = await cli(lab, "plan", "--router", "r1")
    assert code == 1
    assert "not onboarded" in out and "in sync" not in out.replace("not in sync", "")


async def test_a_chain_that_does_not_verify_and_that_the_router_rejects_is_never_in_sync(lab: Lab) -> None:
    """The server sends a chain that does not verify against the trust store (possible interception): nothing is
    installed for it, and the router, which cannot validate it, cannot mail: not in sync, from the first sighting."""
    await confirm_chain(lab)
    [done] = (await lab.run(router="r1")).routers
    assert done.reason is Reason.APPLIED
    intruder = GmailShapedPki.create(prefix="Intruder")
    lab.smtp.set_chain(intruder.served, intruder.leaf.key)
    lab.clock.advance(timedelta(minutes=10))
    [result] = (await lab.run(router="r1")).routers
    assert result.reason is Reason.CHAIN_UNVERIFIED and not result.in_sync
    assert result.plan is not None and not result.plan.actions
    assert any("eemwatchd does not trust" in r.message for r in result.plan.reports)
    assert not lab.accepts("r1", intruder.served)  # the lab's own verdict: that router cannot mail now

    lab.smtp.set_chain(lab.pki.served, lab.pki.leaf.key)  # the server is trusted again
    lab.clock.advance(timedelta(minutes=10))
    [again] = (await lab.run(router="r1")).routers
    # One fetch (10 min) after the last sighting of the untrusted chain, it still counts as sent now: an address
    # may present chains in turn, so a chain counts until 1.5 server intervals pass without it (core/desired.py).
    assert again.reason is Reason.CHAIN_UNVERIFIED
    lab.clock.advance(timedelta(minutes=10))
    [back] = (await lab.run(router="r1")).routers
    assert back.in_sync


# --- finding 4: what the parser cannot read outside our trustpoints is a finding, never the end of the router ----

SELF_SIGNED_NO_HEX = "show_running-config_head_crypto_pki_self-signed_01_no_hex__genielibs_csr1000v_16_9.txt"


def test_the_csr1000v_16_9_capture_with_a_self_signed_certificate_and_no_hex_is_read() -> None:
    parsed = parse_running_config(transcript(SELF_SIGNED_NO_HEX))
    assert parsed.problems == () and parsed.hostname == "R1_xe"
    [tp] = [t for t in parsed.trustpoints if t.name == "TP-self-signed-2655316104"]
    [held] = tp.certificates
    assert (held.kind, held.serial, held.certificate, held.storage) == ("self-signed", "01", None, None)


async def test_a_router_with_a_self_signed_certificate_shown_without_hex_is_managed_as_usual(lab: Lab) -> None:
    """The CSR1000V 16.9 shape on a lab router: reported `unreachable` with nothing planned before the fix."""
    lab.fleet["r1"].state.apply_config([
        "crypto pki trustpoint TP-self-signed-2655316104", " enrollment selfsigned",
        "crypto pki certificate chain TP-self-signed-2655316104", " certificate self-signed 01", "  \tquit",
    ])
    assert " certificate self-signed 01" in lab.fleet["r1"].state.config_lines()
    await confirm_chain(lab)
    [result] = (await lab.run(router="r1")).routers
    assert result.error is None and result.reason is Reason.APPLIED
    assert not [f for f in result.lint if f.rule == "EEM015-unreadable-config"]


BROKEN_UNMANAGED = ["crypto pki certificate chain VENDOR-TP", " certificate ca 7F", "  30820321 3082Z209", "  \tquit"]


async def test_an_unreadable_block_outside_our_trustpoints_is_a_finding_and_the_router_is_still_managed(
    lab: Lab,
) -> None:
    lab.fleet["r1"].state.verbatim = BROKEN_UNMANAGED
    await confirm_chain(lab)
    [result] = (await lab.run(router="r1")).routers
    assert result.error is None and result.reason is Reason.APPLIED  # planned, installed, test-fired, saved
    [finding] = [f for f in result.lint if f.rule == "EEM015-unreadable-config"]
    assert "trustpoint VENDOR-TP" in finding.message and "3082Z209" in finding.message
    assert "VENDOR-TP" not in {held.name for held in result.trustpoints if held.managed}


async def test_an_unreadable_managed_trustpoint_is_a_parse_error_of_a_reachable_router_and_nothing_changes(
    lab: Lab,
) -> None:
    lab.fleet["r1"].state.verbatim = ["crypto pki certificate chain EEMW-0123ABCD", " certificate ca 7F",
                                      "  30820321 3082Z209", "  \tquit"]
    await confirm_chain(lab)
    before = lab.trustpoints("r1")
    [result] = (await lab.run(router="r1")).routers
    assert result.reason is Reason.PARSE_ERROR and result.reachable and not result.in_sync
    assert "managed trustpoint EEMW-0123ABCD" in (result.error or "")
    assert lab.trustpoints("r1") == before and not [s for s in result.steps if s.kind != "observed"]
    status_words = (await cli(lab, "plan", "--router", "r1"))[1]
    assert "unreachable" not in status_words


async def test_the_audit_check_sees_a_router_changed_behind_eemwatchds_back_until_the_next_contact(lab: Lab) -> None:
    """The fourth invariant's check (tests/support/audit_check.py) can fail, and the product makes it hold again:
    the next contact writes observed rows for what changed."""
    await confirm_chain(lab)
    await lab.run(router="r1")
    prefix = lab.config.policy.trustpoint_prefix
    assert audit_differences(lab.store, lab.fleet, "r1", prefix=prefix) == []
    managed = next(name for name in lab.fleet["r1"].state.trustpoints if name.startswith(prefix))
    del lab.fleet["r1"].state.trustpoints[managed]  # someone ran `no crypto pki trustpoint` by hand
    [difference] = audit_differences(lab.store, lab.fleet, "r1", prefix=prefix)
    assert difference.startswith(f"{managed}: audit says")
    await lab.run(apply=False, router="r1")  # a plan: the contact records what it saw (observed-retire)
    assert audit_differences(lab.store, lab.fleet, "r1", prefix=prefix) == []
    assert "observed-retire" in [e.action for e in lab.store.audit(router="r1")]
