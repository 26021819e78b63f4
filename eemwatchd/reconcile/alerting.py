"""The alerts a reconcile run calls for: chains that changed or are not trusted, drift, refreshes, expiry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from eemwatchd.adapters.alerts import Alert, AlertEvent
from eemwatchd.core.alert_state import AlertState, decide_alert
from eemwatchd.core.fingerprints import chain_text
from eemwatchd.core.reason import Reason
from eemwatchd.reconcile.results import CHANGE_STEPS, AddressOutcome, RouterResult, RunReport, StepKind


@dataclass(frozen=True)
class GatedAlerts:
    """What a run's report calls for, after the alert state decided what is news: the alerts to send (prepared:
    scrubbed, de-duplicated), the alert states to store once they were delivered, and the secrets to scrub from
    delivery errors."""

    alerts: list[Alert]
    states: list[AlertState]
    secrets: frozenset[str]


def build_alerts(report: RunReport, *, at: datetime) -> list[Alert]:
    """The alerts a run calls for: chains that changed or do not verify, drift, refresh results, expiry."""
    alerts: list[Alert] = []
    for server in report.servers:
        for address in server.addresses:
            alert = _chain_alert(server.name, address, at)
            if alert is not None:
                alerts.append(alert)
    for result in report.routers:
        alerts.extend(_router_alerts(result, at))
    return alerts


def _chain_alert(server: str, address: AddressOutcome, at: datetime) -> Alert | None:
    if not address.chain:  # nothing was served (fetch failed): not a chain event
        return None
    facts: dict[str, Any] = {"server": server, "address": address.address, "chain_sha256": list(address.chain)}
    if not address.verified or not address.pinned:
        reason = (address.error or "did not verify against the trust store") if not address.verified else (
            "no certificate matches the configured pins")
        return Alert(
            event="chain_unverified",
            subject=server,
            summary=f"SECURITY: {server} {address.address} sent a chain that is not trusted ({reason}); "
            "nothing changed",
            details={**facts, "reason": reason},
            at=at,
        )
    if address.changed_from:
        return Alert(
            event="chain_changed",
            subject=server,
            summary=f"{server} {address.address} now sends chain {chain_text(address.chain)} "
            f"(was {chain_text(address.changed_from)})",
            details={**facts, "previous_chain_sha256": list(address.changed_from)},
            at=at,
        )
    return None


def onboard_command(router: str, config: str = "FILE") -> str:
    """The command that onboards ``router`` (said wherever a router is reported "not onboarded")."""
    return f"`eemwatchd onboard -c {config} --router {router} --to ADDRESS --yes`"


def _router_alerts(result: RouterResult, at: datetime) -> list[Alert]:
    name = result.name
    mode = "apply" if result.result is not None else "plan"
    out: list[Alert] = []
    if result.reason is Reason.INTERRUPTED:
        return out  # stopped between steps (a signal, a daemon stopping): a state, not a fault of the router
    if result.error is not None:
        failed = [
            {"kind": s.kind, "trustpoint": s.trustpoint, "sha256": s.sha256, "detail": s.detail}
            for s in result.steps
            if not s.ok
        ]
        what = str(result.reason) if not result.reachable else f"{mode} failed ({result.reason})"
        out.append(Alert(
            event="refresh_failed",
            subject=name,
            summary=f"router {name}: {what}: {(result.error_text or '').splitlines()[0]}",
            details={"router": name, "mode": mode, "reachable": result.reachable, "error": result.error,
                     "reason": str(result.reason), "summary": result.result, "failed_steps": failed},
            at=at,
        ))
    plan = result.plan
    # an apply that brought the router in sync leaves no drift to report (its refresh is the news); a chain on
    # its way to confirmation is a state that ends by itself (first start, a rotation), not drift
    # (a server that cannot be fetched is the news of its own fetch, not drift of each router; a router whose
    # clock rejects a chain is, since only the router can be fixed)
    drifting = plan is not None and (plan.unprovable is not None or plan.actions or plan.clock_skew or (
        (plan.waiting or plan.unconfirmed) and not result.awaiting_confirmation)) and not (
        result.applying and result.in_sync)
    if plan is not None and plan.unprovable is not None:
        out.append(Alert(
            event="router_drift",
            subject=name,
            summary=f"router {name} is not onboarded: {plan.unprovable}; nothing is changed or test-fired on it "
            f"until it is: run {onboard_command(name)}",
            details={"router": name, "mode": mode, "reason": plan.state, "unprovable": plan.unprovable},
            at=at,
        ))
    elif plan is not None and drifting:
        summary = (f"router {name} needs {len(plan.adds)} add(s) and {len(plan.retires)} retire(s)" if plan.actions
                   else f"router {name} is not in sync")
        if plan.waiting:
            summary += f"; it does not accept {len(plan.waiting)} new chain(s) yet (awaiting confirmation)"
        if plan.unconfirmed:
            summary += f"; no confirmed verified chain for {', '.join(plan.unconfirmed)}"
        if plan.clock_skew:
            summary += (f"; its clock makes it reject chain(s) {', '.join(plan.clock_skew)} that are valid at ours: "
                        "configure NTP or set its clock")
        out.append(Alert(
            event="router_drift",
            subject=name,
            summary=summary,
            details={"router": name, "mode": mode, "reason": plan.state, "waiting": list(plan.waiting),
                     "unconfirmed": list(plan.unconfirmed), "clock_skew": list(plan.clock_skew), "actions": [
                {"kind": a.kind, "trustpoint": a.trustpoint, "sha256": a.sha256, "reason": a.reason}
                for a in plan.actions
            ]},
            at=at,
        ))
    changes = [s for s in result.steps if s.ok and s.kind in CHANGE_STEPS]
    fired = [s for s in result.steps if s.kind is StepKind.TEST_FIRE]
    if result.result is not None and result.applied and changes and fired and all(s.ok for s in fired):
        out.append(Alert(
            event="refresh_succeeded",
            subject=name,
            summary=f"router {name}: {len(changes)} change(s) applied; test mail sent",
            details={"router": name, "changes": [
                {"kind": s.kind, "trustpoint": s.trustpoint, "sha256": s.sha256} for s in changes
            ], "test_fire": fired[-1].detail, "evidence": fired[-1].evidence},
            at=at,
        ))
    expiring = [r for r in (plan.reports if plan is not None else ()) if r.kind in ("expired", "expiring")]
    if expiring:
        expired = sum(1 for r in expiring if r.kind == "expired")
        out.append(Alert(
            event="expiry",
            subject=name,
            summary=f"router {name}: {expired} expired and {len(expiring) - expired} expiring certificate(s) "
            f"({expiring[0].trustpoint}: {expiring[0].message})",
            details={"router": name, "certificates": [
                {"kind": r.kind, "trustpoint": r.trustpoint, "message": r.message} for r in expiring
            ]},
            at=at,
        ))
    return out




# Conditions hold over time: they alert once when they start, again after the reminder interval, and
# "resolved" when they end. The others (a chain change, a successful refresh) are news, sent each time.
_CONDITION_EVENTS: dict[str, AlertEvent] = {
    "chain_unverified": "chain_unverified", "router_drift": "router_drift", "refresh_failed": "refresh_failed",
    "expiry": "expiry",
}
CONDITIONS = frozenset(_CONDITION_EVENTS)


def gate_alerts(
    built: Sequence[Alert],
    report: RunReport,
    states: Mapping[tuple[str, str], AlertState],
    *,
    now: datetime,
    remind_after: timedelta,
) -> tuple[list[Alert], list[AlertState]]:
    """The alerts to send now and the alert states to store once they went out.

    A condition that was open and is not seen any more in this report resolves, but only where the report
    could have seen it: a server that served no chain says nothing about chain_unverified, and a router that
    could not be read says nothing about its drift or expiry.
    """
    active = {(a.subject, a.event): a for a in built if a.event in CONDITIONS}
    out = [a for a in built if a.event not in CONDITIONS]
    save: list[AlertState] = []
    for (subject, event), alert in active.items():
        decision = decide_alert(states.get((subject, event)), active=True, now=now, remind_after=remind_after,
                                subject=subject, event=event, summary=alert.summary)
        if decision.send is not None:
            out.append(replace(alert, state=decision.send.value))
        if decision.changed and decision.state is not None:
            save.append(decision.state)
    for subject, judged in _judged(report):
        previous = states.get((subject, judged))
        if (subject, judged) in active or previous is None or not previous.is_open:
            continue
        decision = decide_alert(previous, active=False, now=now, remind_after=remind_after)
        if decision.state is not None:
            save.append(decision.state)
        out.append(Alert(event=_CONDITION_EVENTS[judged], subject=subject, summary=f"resolved: {previous.summary}",
                         details={"resolved": True, "opened_at": previous.opened_at.isoformat()}, at=now,
                         state="resolved"))
    return out, save


def report_subjects(report: RunReport) -> set[str]:
    """The subjects ``report``'s alerts can be about (its servers and routers): gate_alerts needs only their
    stored states."""
    return {s.name for s in report.servers} | {r.name for r in report.routers}


def _judged(report: RunReport) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for server in report.servers:
        if any(a.chain for a in server.addresses):
            out.append((server.name, "chain_unverified"))
    for router in report.routers:
        if router.reason is Reason.INTERRUPTED:
            continue  # stopped before it was judged: it says nothing about its conditions
        out.append((router.name, "refresh_failed"))
        if router.plan is not None:
            out += [(router.name, "router_drift"), (router.name, "expiry")]
    return out
