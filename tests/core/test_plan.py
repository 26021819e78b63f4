"""The planner: adds, retention-gated retires, unmanaged and adopted trustpoints, the IOS safety check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.desired import DesiredTrust, SeenChain, TrustPolicy, compute_desired
from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd.core.plan import managed_trust, plan_router, trustpoint_name
from eemwatchd_lab.pki import GmailShapedPki, make_intermediate, make_leaf, make_root

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PKI = GmailShapedPki.create(now=NOW - timedelta(days=5))
OLD_ROOT = PKI.old_root.cert
NEW_ROOT = PKI.new_root.cert
CROSS = PKI.new_root_cross
INTER = PKI.intermediate.cert
LEAF = PKI.leaf.cert
INTER2 = make_intermediate("Lab WR2", by=PKI.new_root, now=NOW - timedelta(days=2))
LEAF2 = make_leaf(PKI.hostnames, by=INTER2, now=NOW - timedelta(days=2))
SERVED2 = [LEAF2.cert, INTER2.cert, CROSS]
OTHER = make_root("Someone Else Root", now=NOW - timedelta(days=5)).cert
EXPIRING = make_root("Expiring Root", now=NOW, days=10).cert
EXPIRED = make_root("Expired Root", now=NOW - timedelta(days=400), days=100).cert

NAMES = {
    c.sha256: n
    for n, c in {
        "old_root": OLD_ROOT,
        "new_root": NEW_ROOT,
        "cross": CROSS,
        "inter": INTER,
        "inter2": INTER2.cert,
        "other": OTHER,
        "expiring": EXPIRING,
        "expired": EXPIRED,
        "leaf": LEAF,
    }.items()
}
POLICY = TrustPolicy()
LONG_AGO = NOW - timedelta(days=8)


def tp(cert: Certificate) -> str:
    return "EEMW-" + cert.short_fingerprint


def desired_for(
    chain: list[Certificate],
    path: list[Certificate],
    *,
    extra: list[SeenChain] | None = None,
    policy: TrustPolicy = POLICY,
) -> DesiredTrust:
    observations = [
        SeenChain(
            "gmail",
            "10.0.0.1",
            tuple(chain),
            True,
            tuple(path),
            None,
            NOW - timedelta(hours=2),
            NOW - timedelta(minutes=1),
            3,
        ),
        *(extra or []),
    ]
    return compute_desired(observations, servers=["gmail"], policy=policy, anchors=PKI.anchors, now=NOW)


ORIGINAL = desired_for(PKI.served, [LEAF, INTER, NEW_ROOT])
ROTATED = desired_for(SERVED2, [LEAF2.cert, INTER2.cert, NEW_ROOT])
ROTATED_BUT_INTERCEPTED = desired_for(
    SERVED2,
    [LEAF2.cert, INTER2.cert, NEW_ROOT],
    extra=[SeenChain("gmail", "10.0.0.2", (OTHER,), False, (), "unknown issuer", NOW, NOW, 1)],
)
FULL = {tp(OLD_ROOT): [OLD_ROOT], tp(NEW_ROOT): [NEW_ROOT], tp(INTER): [INTER]}


@dataclass(frozen=True)
class Case:
    trustpoints: dict[str, list[Certificate]]
    desired: DesiredTrust
    actions: list[tuple[str, str]]  # (kind, certificate name); trustpoint names are checked separately
    reports: set[str] = field(default_factory=set)  # report kinds that must appear
    unneeded: dict[str, datetime] = field(default_factory=dict)
    adopt: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "fresh-router-gets-roots-then-intermediate": Case(
        {}, ORIGINAL, [("add", "old_root"), ("add", "new_root"), ("add", "inter")]
    ),
    "all-held-is-in-sync": Case(FULL, ORIGINAL, []),
    "held-by-unmanaged-is-not-installed-again": Case(
        {"CA-GlobalSign-Root": [OLD_ROOT]},
        ORIGINAL,
        [("add", "new_root"), ("add", "inter")],
        reports={"held", "unmanaged"},
    ),
    "rotation-adds-new-keeps-old-within-retention": Case(
        FULL, ROTATED, [("add", "inter2")], reports={"unneeded"}
    ),
    "rotation-retires-old-after-retention": Case(
        FULL, ROTATED, [("add", "inter2"), ("retire", "inter")], unneeded={INTER.sha256: LONG_AGO}
    ),
    "retention-not-yet-over": Case(
        FULL,
        ROTATED,
        [("add", "inter2")],
        reports={"unneeded"},
        unneeded={INTER.sha256: NOW - timedelta(days=6)},
    ),
    "unverified-chain-holds-every-retire": Case(
        FULL,
        ROTATED_BUT_INTERCEPTED,
        [("add", "inter2")],
        reports={"kept", "event"},
        unneeded={INTER.sha256: LONG_AGO},
    ),
    "adopted-trustpoint-is-managed": Case(
        {**FULL, "CA-Old-Inter": [OTHER]},
        ORIGINAL,
        [("retire", "other")],
        unneeded={OTHER.sha256: LONG_AGO},
        adopt=("CA-Old-Inter",),
    ),
    "unmanaged-trustpoint-never-retired": Case(
        {**FULL, "CA-Old-Inter": [OTHER]},
        ORIGINAL,
        [],
        reports={"unmanaged"},
        unneeded={OTHER.sha256: LONG_AGO},
    ),
    "empty-managed-trustpoint-is-cleaned-up": Case({**FULL, "EEMW-DEADBEEF": []}, ORIGINAL, [("retire", "")]),
    "empty-trustpoint-with-the-wanted-name-is-removed-then-reused": Case(
        {tp(OLD_ROOT): [], tp(NEW_ROOT): [NEW_ROOT], tp(INTER): [INTER]},
        ORIGINAL,
        [("add", "old_root"), ("retire", "")],
    ),
    "never-retire-the-trust-a-used-chain-needs": Case(
        {tp(OLD_ROOT): [OLD_ROOT]},
        DesiredTrust(certificates=(), chains_in_use=(tuple(PKI.served),)),
        [],
        reports={"kept"},
        unneeded={OLD_ROOT.sha256: LONG_AGO},
    ),
    "expiring-and-expired-are-reported": Case(
        {**FULL, "CA-A": [EXPIRING], "CA-B": [EXPIRED]}, ORIGINAL, [], reports={"expiring", "expired"}
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_plan(case: Case) -> None:
    plan = plan_router(
        case.trustpoints, case.desired, policy=POLICY, adopt=case.adopt, now=NOW, unneeded_since=case.unneeded,
        proven=managed_trust(case.trustpoints, prefix=POLICY.trustpoint_prefix),
    )
    got = [(a.kind, NAMES.get(a.sha256, a.sha256)) for a in plan.actions]
    assert got == case.actions
    assert case.reports <= {r.kind for r in plan.reports}, plan.reports
    assert plan.in_sync == (not case.actions)
    for action in plan.actions:
        assert action.reason
        assert re.fullmatch(r"[A-Za-z0-9_\-]{1,32}", action.trustpoint)
        if action.kind == "add":
            assert action.certificate is not None
            assert action.certificate.sha256 == action.sha256
        assert not case.trustpoints.get(action.trustpoint) or action.kind == "retire"


def test_add_names_are_prefix_and_short_fingerprint() -> None:
    plan = plan_router({}, ORIGINAL, policy=POLICY, now=NOW, unneeded_since={})
    assert [a.trustpoint for a in plan.actions] == [tp(OLD_ROOT), tp(NEW_ROOT), tp(INTER)]


def test_name_collision_takes_a_longer_fingerprint() -> None:
    plan = plan_router({tp(OLD_ROOT): [OTHER]}, ORIGINAL, policy=POLICY, now=NOW, unneeded_since={})
    add = next(a for a in plan.actions if a.sha256 == OLD_ROOT.sha256)
    assert add.trustpoint == "EEMW-" + OLD_ROOT.sha256[:12].upper()


def test_longest_prefix_stays_within_ios_limit() -> None:
    name = trustpoint_name(
        OLD_ROOT, prefix="P" * 16, taken={"P" * 16 + OLD_ROOT.sha256[:n].upper() for n in (8, 12)}
    )
    assert len(name) == 32


def test_unneeded_state_starts_now_and_keeps_older() -> None:
    plan = plan_router(FULL, ROTATED, policy=POLICY, now=NOW, unneeded_since={})
    assert plan.unneeded == {INTER.sha256: NOW}
    earlier = NOW - timedelta(days=2)
    plan = plan_router(FULL, ROTATED, policy=POLICY, now=NOW, unneeded_since={INTER.sha256: earlier})
    assert plan.unneeded == {INTER.sha256: earlier}


def test_plan_after_rotation_keeps_router_validating_both_chains() -> None:
    """The rotation plan (before retention) leaves a router that accepts the old and the new chain."""
    plan = plan_router(FULL, ROTATED, policy=POLICY, now=NOW, unneeded_since={})
    after = dict(FULL)
    for action in plan.adds:
        assert action.certificate is not None
        after[action.trustpoint] = [action.certificate]
    assert validate_as_ios(PKI.served, after, NOW).ok
    assert validate_as_ios(SERVED2, after, NOW).ok


def test_original_plan_lets_ios_validate_the_served_chain_strictly() -> None:
    for policy in (TrustPolicy(), TrustPolicy(install="anchor_only")):
        desired = desired_for(PKI.served, [LEAF, INTER, NEW_ROOT], policy=policy)
        plan = plan_router({}, desired, policy=policy, now=NOW, unneeded_since={})
        installed = {a.trustpoint: [a.certificate] for a in plan.adds if a.certificate is not None}
        assert validate_as_ios(PKI.served, installed, NOW).ok, policy


def test_empty_trustpoint_name_is_reused_by_the_add() -> None:
    plan = plan_router({tp(OLD_ROOT): []}, ORIGINAL, policy=POLICY, now=NOW, unneeded_since={})
    assert [(a.kind, a.trustpoint) for a in plan.actions if a.trustpoint == tp(OLD_ROOT)] == [
        ("add", tp(OLD_ROOT)),
        ("retire", tp(OLD_ROOT)),
    ]


def _pending(chain: list[Certificate], path: list[Certificate]) -> DesiredTrust:
    """ORIGINAL confirmed, plus ``chain`` seen once (policy wants 2 sightings)."""
    once = SeenChain("gmail", "10.0.0.2", tuple(chain), True, tuple(path), None, NOW - timedelta(minutes=5),
                     NOW - timedelta(minutes=5), 1)
    return desired_for(PKI.served, [LEAF, INTER, NEW_ROOT], extra=[once])


@pytest.mark.parametrize(
    ("held", "accepts"),
    [
        # IOS does not substitute the self-signed twin for the sent cross-sign: without the cross-signing
        # old root the new chain fails, whatever else is held.
        pytest.param("twin+inter", False, id="router-cannot-accept-the-new-chain-yet"),
        # The cross-signer validates the sent cross-sign, which validates the new intermediate.
        pytest.param("old-root", True, id="router-already-accepts-the-new-chain"),
    ],
)
def test_pending_chain_makes_the_router_not_in_sync_only_when_it_cannot_accept_it(
    held: str, accepts: bool
) -> None:
    desired = _pending(SERVED2, [LEAF2.cert, INTER2.cert, NEW_ROOT])
    held_certs = (NEW_ROOT, INTER) if held == "twin+inter" else (OLD_ROOT,)
    trustpoints = {tp(c): [c] for c in held_certs}
    plan = plan_router(trustpoints, desired, policy=POLICY, now=NOW, unneeded_since={},
                       proven=managed_trust(trustpoints, prefix=POLICY.trustpoint_prefix))
    assert all(a.sha256 not in {LEAF2.cert.sha256, INTER2.cert.sha256} for a in plan.actions)  # not yet
    assert bool(plan.waiting) is (not accepts)
    if not accepts:
        assert not plan.in_sync
    pending = [r.message for r in plan.reports if r.kind == "pending"]
    assert len(pending) == 1
    assert ("not accepted by the router yet" in pending[0]) is (not accepts)


# --- states that keep a router out of "in sync" without any action (issue 8: positive evidence only) ------

SERIALS = {name: [c.serial_ios for c in certs] for name, certs in FULL.items()}


@pytest.mark.parametrize(
    ("proven", "saved", "desired", "state"),
    [
        pytest.param("held", "same", ORIGINAL, "in-sync", id="proven-and-saved-is-in-sync"),
        pytest.param(None, "same", ORIGINAL, "unproven", id="never-test-fired-is-unproven"),
        pytest.param("one-less", "same", ORIGINAL, "unproven", id="trust-added-after-the-last-proof"),
        pytest.param("held", None, ORIGINAL, "in-sync", id="startup-not-read-is-not-a-difference"),
        pytest.param("held", "missing-one", ORIGINAL, "unsaved", id="trustpoint-missing-from-startup"),
        pytest.param("held", "extra-one", ORIGINAL, "unsaved", id="retired-but-still-in-startup"),
        pytest.param("held", "same", DesiredTrust(certificates=(), unconfirmed=("smtp",)), "unconfirmed",
                     id="a-server-without-confirmed-chain-is-never-in-sync"),
    ],
)
def test_states_without_actions(proven: str | None, saved: str | None, desired: DesiredTrust, state: str) -> None:
    held = managed_trust(FULL, prefix=POLICY.trustpoint_prefix)
    proofs = {"held": held, "one-less": held - {sorted(held)[0]}, None: None}
    names = sorted(SERIALS)
    startup = {
        "same": SERIALS,
        "missing-one": {n: SERIALS[n] for n in names[1:]},
        "extra-one": {**SERIALS, "EEMW-0123456789": ["01"]},
        None: None,
    }
    plan = plan_router(FULL, desired, policy=POLICY, now=NOW, unneeded_since={}, proven=proofs[proven],
                       saved=startup[saved])
    assert [a for a in plan.actions if a.kind == "add"] == []
    assert plan.state == state
    assert plan.in_sync is (state == "in-sync")
    assert plan.needs_test_fire is (state in ("unproven", "unsaved"))
    if state != "in-sync":
        assert state in {r.kind for r in plan.reports}
