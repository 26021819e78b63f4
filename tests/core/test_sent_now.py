"""What a server sends NOW decides "in sync": only chains sent now keep a router waiting, a server whose last fetch
failed leaves no router in sync, and a chain is judged at the router's own clock (issue 16, the fault schedules'
seeds 1, 2 and 10, each also a regression schedule in tests/e2e/test_fault_schedules.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.desired import SeenChain, TrustPolicy, compute_desired, sent_now
from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd.core.plan import plan_router
from eemwatchd_lab.pki import GmailShapedPki, make_intermediate, make_leaf, make_root

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PKI = GmailShapedPki.create(now=NOW - timedelta(days=5))
LEAF, INTER, NEW_ROOT, OLD_ROOT = PKI.leaf.cert, PKI.intermediate.cert, PKI.new_root.cert, PKI.old_root.cert
OTHER_ROOT = make_root("Other Root X1", now=NOW - timedelta(days=5))
OTHER_INTER = make_intermediate("Other CA 1", by=OTHER_ROOT, now=NOW - timedelta(days=5))
OTHER_LEAF = make_leaf(PKI.hostnames, by=OTHER_INTER, now=NOW - timedelta(hours=1))  # valid from 11:00 today
OTHER_SERVED = (OTHER_LEAF.cert, OTHER_INTER.cert)
INTERVAL = timedelta(minutes=10)
WITHIN = {"gmail": 1.5 * INTERVAL}
POLICY = TrustPolicy()
HELD = {"EEMW-old": [OLD_ROOT], "EEMW-new": [NEW_ROOT], "EEMW-inter": [INTER]}
ALL_HELD_PROVEN = frozenset(c.sha256 for certs in HELD.values() for c in certs)


def seen(chain: tuple[Certificate, ...], path: tuple[Certificate, ...], *, ago: timedelta, times: int,
         address: str = "10.0.0.1") -> SeenChain:
    return SeenChain("gmail", address, chain, True, path, None, NOW - ago - timedelta(hours=1), NOW - ago, times)


CONFIRMED = seen(tuple(PKI.served), (LEAF, INTER, NEW_ROOT), ago=timedelta(minutes=1), times=5)


def validate(chain: object, trustpoints: object, at: datetime) -> bool:
    return validate_as_ios(chain, trustpoints, at).ok  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    other_ago: timedelta  # when the other provider's chain (seen once, not confirmed) was last seen
    waiting: bool


CASES = {
    # the address's latest sighting: the server sends it now, the router does not accept it
    "seen-last-is-sent-now": Case(timedelta(seconds=0), waiting=True),
    # seen one fetch before the latest (within 1.5 intervals): a server may present chains in turn
    "seen-one-fetch-ago-is-sent-now": Case(INTERVAL, waiting=True),
    # two fetches ago and not since: the server stopped sending it, nothing to wait for
    "seen-two-fetches-ago-is-gone": Case(2 * INTERVAL, waiting=False),
    "seen-a-day-ago-is-gone": Case(timedelta(days=1), waiting=False),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_only_a_chain_sent_now_keeps_the_router_waiting(case: Case) -> None:
    latest = seen(tuple(PKI.served), (LEAF, INTER, NEW_ROOT), ago=timedelta(0), times=5)
    other = seen(OTHER_SERVED, (*OTHER_SERVED, OTHER_ROOT.cert), ago=case.other_ago, times=1)
    desired = compute_desired([latest, other], servers=["gmail"], policy=POLICY, anchors=[*PKI.anchors,
                              OTHER_ROOT.cert], sent_within=WITHIN, now=NOW)
    plan = plan_router(HELD, desired, policy=POLICY, now=NOW, unneeded_since={}, validate=validate,
                       proven=ALL_HELD_PROVEN, saved=None)
    assert bool(plan.waiting) is case.waiting
    assert plan.in_sync is not case.waiting
    assert (OTHER_SERVED in desired.chains_now) is case.waiting


def test_sent_now_is_per_address() -> None:
    a = seen(tuple(PKI.served), (LEAF, INTER, NEW_ROOT), ago=timedelta(days=1), times=5, address="10.0.0.1")
    b = seen(OTHER_SERVED, (*OTHER_SERVED, OTHER_ROOT.cert), ago=timedelta(0), times=1, address="10.0.0.2")
    # each address's own latest sighting counts, however old the other's
    assert sent_now([a, b], WITHIN) == [a, b]
    assert sent_now([a, b], {}) == [a, b]


def test_a_server_whose_last_fetch_failed_leaves_no_router_in_sync() -> None:
    desired = compute_desired([CONFIRMED], servers=["gmail"], policy=POLICY, anchors=PKI.anchors,
                              sent_within=WITHIN, unfetched={"gmail": "connection refused"}, now=NOW)
    assert desired.unfetched == (("gmail", "connection refused"),)
    assert any("last fetch failed" in h for h in desired.holds)  # nothing is retired while it is unknown
    plan = plan_router(HELD, desired, policy=POLICY, now=NOW, unneeded_since={}, validate=validate,
                       proven=ALL_HELD_PROVEN, saved=None)
    assert plan.state == "unconfirmed" and not plan.in_sync
    assert plan.unfetched == ("gmail: the last fetch failed (connection refused)",)
    assert not plan.unconfirmed  # the server has a confirmed chain: the fetch, not the chain, is the news
    assert not plan.needs_test_fire
    assert any(r.kind == "unconfirmed" and "what it sends now is unknown" in r.message for r in plan.reports)


def test_a_fetch_of_another_server_changes_nothing() -> None:
    desired = compute_desired([CONFIRMED], servers=["gmail"], policy=POLICY, anchors=PKI.anchors,
                              sent_within=WITHIN, unfetched={"office365": "timeout"}, now=NOW)
    plan = plan_router(HELD, desired, policy=POLICY, now=NOW, unneeded_since={}, validate=validate,
                       proven=ALL_HELD_PROVEN, saved=None)
    assert plan.in_sync


@dataclass(frozen=True)
class ClockCase:
    router_clock: datetime | None
    state: str


# The other provider's leaf is valid from NOW - 1 h; OTHER_ROOT is held, so at NOW the router accepts its chain.
CLOCK_CASES = {
    "same-clock": ClockCase(NOW, "in-sync"),
    "clock-not-read": ClockCase(None, "in-sync"),
    "minutes-behind-still-valid": ClockCase(NOW - timedelta(minutes=30), "in-sync"),
    "three-days-behind-leaf-not-yet-valid": ClockCase(NOW - timedelta(days=3), "clock-skew"),
    "years-ahead-root-expired": ClockCase(NOW + timedelta(days=20 * 365), "clock-skew"),
}


@pytest.mark.parametrize("case", list(CLOCK_CASES.values()), ids=list(CLOCK_CASES))
def test_chains_are_judged_at_the_router_clock(case: ClockCase) -> None:
    other = seen(OTHER_SERVED, (*OTHER_SERVED, OTHER_ROOT.cert), ago=timedelta(minutes=1), times=5)
    desired = compute_desired([other], servers=["gmail"], policy=POLICY, anchors=[OTHER_ROOT.cert],
                              sent_within=WITHIN, now=NOW)
    held = {"EEMW-other": [OTHER_ROOT.cert], "EEMW-other-ca": [OTHER_INTER.cert]}
    proven = frozenset({OTHER_ROOT.cert.sha256, OTHER_INTER.cert.sha256})
    plan = plan_router(held, desired, policy=POLICY, now=NOW, unneeded_since={}, validate=validate,
                       proven=proven, saved=None, router_clock=case.router_clock)
    assert plan.state == case.state
    if case.state == "clock-skew":
        assert not plan.needs_test_fire  # a test-fire cannot succeed until the clock is right
        assert any(r.kind == "clock-skew" and "NTP" in r.message for r in plan.reports)
