"""The alerts a run report raises (pure): security events, changed chains, drift, refreshes and expiry."""

from __future__ import annotations

from eemwatchd.core.plan import Action, Report, RouterPlan
from eemwatchd.reconcile import (
    AddressOutcome,
    AppliedStep,
    RouterResult,
    RunReport,
    ServerOutcome,
    StepKind,
    build_alerts,
)
from tests.support.clock import NOW


def test_build_alerts_from_a_run_report() -> None:
    shas = ("aa" * 32, "bb" * 32)
    plan = RouterPlan(
        actions=(Action("add", "EEMW-AB", "cc" * 32, "gmail 127.0.0.1: anchor"),),
        reports=(Report("expiring", "EEMW-OLD", "CN=Old expires in 3 days"), Report("unmanaged", "X", "kept")),
    )
    applied = RouterResult(
        "r1",
        reachable=True,
        plan=plan,
        result="applied",
        steps=[
            AppliedStep(StepKind.ADD, "EEMW-AB", "cc" * 32, True, "anchor"),
            AppliedStep(StepKind.TEST_FIRE, None, None, True, "mail sent"),
        ],
    )
    report = RunReport(
        servers=[
            ServerOutcome(
                "gmail",
                (
                    AddressOutcome("127.0.0.1", shas, False, "unknown issuer", 1),
                    AddressOutcome("::1", shas, True, None, 3, changed_from=("dd" * 32,)),
                    AddressOutcome("10.0.0.1", shas, True, None, 3, pinned=False),
                    AddressOutcome("10.0.0.2", (), False, "connection refused"),
                    AddressOutcome("10.0.0.3", shas, True, None, 5),
                ),
            )
        ],
        routers=[applied, RouterResult("r2", error="router r2: connection refused\nmore")],
        events=[],
    )
    alerts = build_alerts(report, at=NOW)
    assert [(a.event, a.subject) for a in alerts] == [
        ("chain_unverified", "gmail"),
        ("chain_changed", "gmail"),
        ("chain_unverified", "gmail"),
        ("router_drift", "r1"),
        ("refresh_succeeded", "r1"),
        ("expiry", "r1"),
        ("refresh_failed", "r2"),
    ]
    unverified, changed, unpinned = alerts[:3]
    assert unverified.details == {
        "server": "gmail",
        "address": "127.0.0.1",
        "chain_sha256": list(shas),
        "reason": "unknown issuer",
    }
    assert unverified.summary.startswith("SECURITY: gmail 127.0.0.1") and "nothing changed" in unverified.summary
    assert changed.details["previous_chain_sha256"] == ["dd" * 32]
    assert unpinned.details["reason"] == "no certificate matches the configured pins"
    assert alerts[3].details["actions"][0]["trustpoint"] == "EEMW-AB"
    assert alerts[5].details["certificates"] == [
        {"kind": "expiring", "trustpoint": "EEMW-OLD", "message": "CN=Old expires in 3 days"}
    ]
    assert alerts[6].summary == "router r2: unreachable: connection refused"  # the router is named once
    assert all(a.at == NOW and "\n" not in a.summary for a in alerts)


def test_failed_apply_is_refresh_failed_not_succeeded() -> None:
    plan = RouterPlan(actions=(Action("retire", "EEMW-OLD", "ee" * 32, "unneeded"),), reports=())
    result = RouterResult(
        "r1",
        reachable=True,
        plan=plan,
        result="failed",
        error="test-fire failed; nothing retired",
        steps=[AppliedStep(StepKind.TEST_FIRE, None, None, False, "535 auth failed")],
    )
    events = [a.event for a in build_alerts(RunReport([], [result], []), at=NOW)]
    assert events == ["refresh_failed", "router_drift"]


def test_a_router_whose_clock_rejects_a_chain_alerts_and_a_server_that_cannot_be_fetched_does_not_per_router() -> None:
    skewed = RouterResult("r1", reachable=True,
                          plan=RouterPlan(actions=(), reports=(), clock_skew=("AAAA1111/BBBB2222",)))
    unfetched = RouterResult("r2", reachable=True, plan=RouterPlan(
        actions=(), reports=(), unfetched=("gmail: the last fetch failed (connection refused)",)))
    alerts = build_alerts(RunReport(servers=[], routers=[skewed, unfetched], events=[]), at=NOW)
    assert [(a.event, a.subject) for a in alerts] == [("router_drift", "r1")]
    assert "its clock makes it reject chain(s) AAAA1111/BBBB2222" in alerts[0].summary
    assert alerts[0].details["reason"] == "clock-skew"
