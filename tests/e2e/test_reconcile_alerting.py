"""The reconcile service alerting over the lab routers and the lab SMTP server: an untrusted chain is alerted and
changes nothing, a rotated chain is alerted once, a dead webhook never stops the run."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from eemwatchd.adapters.alerts import EVENTS, Alerter, Route
from eemwatchd.config import AlertConfig
from eemwatchd.core.reason import Reason
from eemwatchd.reconcile import Reconciler, RunReport, config_secrets
from eemwatchd_lab.pki import GmailShapedPki
from tests.support.alert_sinks import RecordingSink, assert_no_secrets
from tests.support.reconcile_lab import ReconcileLab, fast_connector
from tests.support.webhook import Receiver


def reconciler(lab: ReconcileLab, webhook_receiver: Receiver, recorder: RecordingSink) -> Reconciler:
    """The config's own alerter (a real webhook) plus a recorder; the lab routers over real SSH."""
    config = lab.config.model_copy(
        update={"alerts": (AlertConfig(kind="webhook", url=webhook_receiver.url, timeout=3, events=EVENTS),)}
    )
    built = Reconciler(config, lab.store, connect=fast_connector, clock=lab.clock)
    alerter = Alerter([*built.alerter.routes, Route(recorder, frozenset(EVENTS))], secrets=config_secrets(config))
    return Reconciler(config, lab.store, connect=fast_connector, clock=lab.clock, alerter=alerter)


async def converge(lab: ReconcileLab, service: Reconciler) -> list[RunReport]:
    first = await service.run(apply=True)
    lab.clock.advance(timedelta(minutes=10))
    second = await service.run(apply=True)
    assert all(r.result == "applied" for r in second.routers), [r.error for r in second.routers]
    return [first, second]


def events_of(report: RunReport) -> list[tuple[str, str]]:
    return [(a.event, a.subject) for a in report.alerts]


@pytest.mark.timeout(30)
async def test_unverified_chain_is_alerted_and_changes_nothing(lab: ReconcileLab, webhook_receiver: Receiver) -> None:
    recorder = RecordingSink()
    service = reconciler(lab, webhook_receiver, recorder)
    first, second = await converge(lab, service)
    # First sighting: nothing is acted on yet, and no router is in sync while the chain is unconfirmed
    # (r1 cannot accept it yet; r2 already does, through its own trustpoint). Awaiting confirmation is a
    # state that ends by itself, not drift: no alert.
    assert [r.reason for r in first.routers] == [Reason.UNCONFIRMED, Reason.UNCONFIRMED]
    assert events_of(first) == []
    # The refreshes are news; they brought both routers in sync.
    assert set(events_of(second)) == {("refresh_succeeded", "r1"), ("refresh_succeeded", "r2")}
    before = {n: lab.trustpoints(n) for n in ("r1", "r2")}
    audit_before = lab.store.audit()

    intruder = GmailShapedPki.create(prefix="Intruder")
    lab.smtp.set_chain(intruder.served, intruder.leaf.key)
    lab.clock.advance(timedelta(minutes=10))
    report = await service.run(apply=True)

    # the intruder's chain is a security event, and nothing changed on the routers
    assert events_of(report) == [("chain_unverified", "lab")]
    [security] = report.alerts
    assert security.state == "firing"
    assert security.details["address"] == "127.0.0.1"
    assert security.details["chain_sha256"] == [c.sha256 for c in intruder.served]
    assert security.details["reason"]
    assert report.alert_errors == []
    assert {n: lab.trustpoints(n) for n in ("r1", "r2")} == before
    assert lab.store.audit() == audit_before
    # the webhook got each run's alerts; nothing it got holds a secret
    assert [a["event"] for a in webhook_receiver.bodies[-1]["alerts"]] == ["chain_unverified"]
    assert_no_secrets(json.dumps(webhook_receiver.bodies))
    assert_no_secrets(json.dumps([a.to_json() for a in recorder.alerts]))
    assert_no_secrets(json.dumps(report.to_json()))


@pytest.mark.timeout(30)
async def test_chain_changed_after_rotation_once(lab: ReconcileLab, webhook_receiver: Receiver) -> None:
    recorder = RecordingSink()
    service = reconciler(lab, webhook_receiver, recorder)
    await converge(lab, service)
    original = [c.sha256 for c in lab.pki.served]
    lab.pki.rotate_intermediate("Lab WR2")
    lab.smtp.set_chain(lab.pki.served, lab.pki.leaf.key)
    lab.clock.advance(timedelta(hours=1))

    report = await service.run(apply=False)
    [changed] = [a for a in report.alerts if a.event == "chain_changed"]
    assert changed.subject == "lab"
    assert changed.details["chain_sha256"] == [c.sha256 for c in lab.pki.served]
    assert changed.details["previous_chain_sha256"] == original
    assert [a["event"] for a in webhook_receiver.bodies[-1]["alerts"]] == [a.event for a in report.alerts]

    lab.clock.advance(timedelta(minutes=10))
    again = await service.run(apply=True)  # same chain again: no change alert; now it is acted on
    assert "chain_changed" not in [e for e, _ in events_of(again)]
    assert ("refresh_succeeded", "r1") in events_of(again)
    assert_no_secrets(json.dumps(webhook_receiver.bodies))


@pytest.mark.timeout(30)
async def test_default_alerter_logs_and_a_dead_webhook_does_not_stop_the_run(
    lab: ReconcileLab, caplog: pytest.LogCaptureFixture
) -> None:
    config = lab.config.model_copy(
        update={
            "alerts": (
                AlertConfig(kind="webhook", url="http://127.0.0.1:9/hook", timeout=1),
                AlertConfig(kind="log", events=EVENTS),
            )
        }
    )
    service = Reconciler(config, lab.store, connect=fast_connector, clock=lab.clock)
    with caplog.at_level(logging.INFO, logger="eemwatchd.alerts"):
        first = await service.run(apply=True)
        lab.clock.advance(timedelta(minutes=10))
        second = await service.run(apply=True)
        intruder = GmailShapedPki.create(prefix="Intruder")
        lab.smtp.set_chain(intruder.served, intruder.leaf.key)
        lab.clock.advance(timedelta(minutes=10))
        third = await service.run(apply=True)
    assert all(r.result == "applied" for r in second.routers)
    # the first run awaits confirmation (no alert), the second brings both routers in sync (its refreshes are
    # not among the hook's events): the hook has nothing to miss until the intruder's chain, which reaches the
    # log but not the dead hook, and the run goes on
    assert first.alert_errors == [] and second.alert_errors == []
    assert len(third.alert_errors) == 1
    assert third.alert_errors[0].startswith("webhook http://127.0.0.1:9: ")
    logged = [r.getMessage() for r in caplog.records if r.name == "eemwatchd.alerts"]
    assert any(line.startswith("ALERT chain_unverified lab:") for line in logged)
    assert any(line.startswith("ALERT refresh_succeeded r1:") for line in logged)
    assert_no_secrets("\n".join(logged))
