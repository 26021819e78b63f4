"""Desired trust from observed chains: policies, cross-signs, debounce, pins, unverified chains."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.chain import top_of_sent_path
from eemwatchd.core.desired import (
    SeenChain,
    TrustPolicy,
    compute_desired,
    find_twins,
)
from eemwatchd_lab.pki import GmailShapedPki, make_intermediate, make_leaf, make_root

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PKI = GmailShapedPki.create(now=NOW - timedelta(days=5))
PLAIN_ROOT = make_root("Plain Root", now=NOW - timedelta(days=5))
PLAIN_INTER = make_intermediate("Plain CA 1", by=PLAIN_ROOT, now=NOW - timedelta(days=5))
PLAIN_LEAF = make_leaf(["mail.plain.example"], by=PLAIN_INTER, now=NOW - timedelta(days=5))

LEAF = PKI.leaf.cert
INTER = PKI.intermediate.cert
CROSS = PKI.new_root_cross
NEW_ROOT = PKI.new_root.cert
OLD_ROOT = PKI.old_root.cert

NAMES = {
    LEAF.sha256: "leaf",
    INTER.sha256: "inter",
    CROSS.sha256: "cross",
    NEW_ROOT.sha256: "new_root",
    OLD_ROOT.sha256: "old_root",
    PLAIN_ROOT.cert.sha256: "plain_root",
    PLAIN_INTER.cert.sha256: "plain_inter",
    PLAIN_LEAF.cert.sha256: "plain_leaf",
}


def obs(
    chain: list[Certificate],
    path: list[Certificate],
    *,
    server: str = "gmail",
    address: str = "10.0.0.1",
    times: int = 2,
    age: timedelta = timedelta(minutes=5),
    verified: bool | None = None,
    error: str | None = None,
) -> SeenChain:
    return SeenChain(
        server=server,
        address=address,
        chain=tuple(chain),
        verified=bool(path) if verified is None else verified,
        path=tuple(path),
        error=error,
        first_seen=NOW - age - timedelta(hours=1),
        last_seen=NOW - age,
        times_seen=times,
    )


VIA_TWIN = [LEAF, INTER, NEW_ROOT]  # store holds both roots: cryptography ends at the self-signed new root
VIA_CROSS = [LEAF, INTER, CROSS, OLD_ROOT]  # store holds only the old root


@dataclass(frozen=True)
class Case:
    observations: list[SeenChain]
    expected: set[str]
    policy: TrustPolicy = field(default_factory=TrustPolicy)
    anchors: list[Certificate] = field(default_factory=lambda: [OLD_ROOT, NEW_ROOT])
    extra: list[Certificate] = field(default_factory=list)
    pins: dict[str, list[str]] = field(default_factory=dict)
    events: int = 0
    holds: bool = False
    pending: int = 0


CASES: dict[str, Case] = {
    "path-policy-gmail-shape-both-roots-in-store": Case(
        [obs(PKI.served, VIA_TWIN)], {"inter", "new_root", "old_root"}
    ),
    "path-policy-via-cross-twin-from-aia": Case(
        [obs(PKI.served, VIA_CROSS)],
        {"inter", "cross", "old_root", "new_root"},
        anchors=[OLD_ROOT],
        extra=[NEW_ROOT],
    ),
    "path-policy-via-cross-no-twin-known": Case(
        [obs(PKI.served, VIA_CROSS)], {"inter", "cross", "old_root"}, anchors=[OLD_ROOT]
    ),
    "include-leaf-reproduces-manual-procedure": Case(
        [obs(PKI.served, VIA_TWIN)],
        {"leaf", "inter", "new_root", "old_root"},
        policy=TrustPolicy(include_leaf=True),
    ),
    "anchor-only-is-the-cross-signing-root": Case(
        [obs(PKI.served, VIA_TWIN)], {"old_root"}, policy=TrustPolicy(install="anchor_only")
    ),
    "anchor-only-issuer-unknown-falls-back-to-top-served": Case(
        [obs(PKI.served, VIA_TWIN)], {"cross"}, policy=TrustPolicy(install="anchor_only"), anchors=[NEW_ROOT]
    ),
    "plain-chain-path": Case(
        [obs([PLAIN_LEAF.cert, PLAIN_INTER.cert], [PLAIN_LEAF.cert, PLAIN_INTER.cert, PLAIN_ROOT.cert])],
        {"plain_inter", "plain_root"},
        anchors=[PLAIN_ROOT.cert],
    ),
    "plain-chain-anchor-only": Case(
        [obs([PLAIN_LEAF.cert, PLAIN_INTER.cert], [PLAIN_LEAF.cert, PLAIN_INTER.cert, PLAIN_ROOT.cert])],
        {"plain_root"},
        policy=TrustPolicy(install="anchor_only"),
        anchors=[PLAIN_ROOT.cert],
    ),
    "rollout-old-and-new-chains-side-by-side": Case(
        [
            obs(PKI.served, VIA_TWIN, address="10.0.0.1"),
            obs(
                [PLAIN_LEAF.cert, PLAIN_INTER.cert],
                [PLAIN_LEAF.cert, PLAIN_INTER.cert, PLAIN_ROOT.cert],
                address="10.0.0.2",
            ),
        ],
        {"inter", "new_root", "old_root", "plain_inter", "plain_root"},
        anchors=[OLD_ROOT, NEW_ROOT, PLAIN_ROOT.cert],
    ),
    "unverified-chain-adds-nothing-and-holds": Case(
        [
            obs(PKI.served, VIA_TWIN),
            obs([PLAIN_LEAF.cert, PLAIN_INTER.cert], [], address="10.0.0.9", error="unknown issuer"),
        ],
        {"inter", "new_root", "old_root"},
        events=1,
        holds=True,
    ),
    "pins-match": Case(
        [obs(PKI.served, VIA_TWIN)],
        {"inter", "new_root", "old_root"},
        pins={"gmail": [NEW_ROOT.sha256.upper()]},
    ),
    "pins-miss-is-a-security-event": Case(
        [obs(PKI.served, VIA_TWIN)], set(), pins={"gmail": [PLAIN_ROOT.cert.sha256]}, events=1, holds=True
    ),
    "unconfirmed-chain-is-pending": Case([obs(PKI.served, VIA_TWIN, times=1)], set(), pending=1, holds=True),
    "confirmations-3-needs-three-sightings": Case(
        [obs(PKI.served, VIA_TWIN, times=2)],
        set(),
        policy=TrustPolicy(confirmations=3),
        pending=1,
        holds=True,
    ),
    "stale-chain-is-ignored": Case(
        [
            obs(PKI.served, VIA_TWIN),
            obs(
                [PLAIN_LEAF.cert, PLAIN_INTER.cert],
                [PLAIN_LEAF.cert, PLAIN_INTER.cert, PLAIN_ROOT.cert],
                age=timedelta(days=15),
            ),
        ],
        {"inter", "new_root", "old_root"},
        anchors=[OLD_ROOT, NEW_ROOT, PLAIN_ROOT.cert],
    ),
    "other-servers-are-ignored": Case(
        [
            obs(PKI.served, VIA_TWIN),
            obs(
                [PLAIN_LEAF.cert, PLAIN_INTER.cert],
                [PLAIN_LEAF.cert, PLAIN_INTER.cert, PLAIN_ROOT.cert],
                server="other",
            ),
        ],
        {"inter", "new_root", "old_root"},
        anchors=[OLD_ROOT, NEW_ROOT, PLAIN_ROOT.cert],
    ),
    "no-observation-holds-retirement": Case([], set(), holds=True),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_desired(case: Case) -> None:
    desired = compute_desired(
        case.observations,
        servers=["gmail"],
        policy=case.policy,
        anchors=case.anchors,
        extra=case.extra,
        pins=case.pins,
        now=NOW,
    )
    assert {NAMES[s] for s in desired.sha256s} == case.expected
    assert len(desired.events) == case.events
    assert bool(desired.holds) == case.holds
    assert len(desired.pending) == case.pending
    for item in desired.certificates:
        assert item.reasons
        assert all(r.startswith("gmail 10.0.0.") for r in item.reasons)


def test_desired_lists_roots_before_what_they_sign() -> None:
    desired = compute_desired(
        [obs(PKI.served, VIA_TWIN)],
        servers=["gmail"],
        policy=TrustPolicy(include_leaf=True),
        anchors=PKI.anchors,
        now=NOW,
    )
    assert [NAMES[d.sha256] for d in desired.certificates] == ["old_root", "new_root", "inter", "leaf"]
    assert [d.role for d in desired.certificates] == ["cross-anchor", "anchor", "intermediate", "leaf"]


def test_reasons_name_server_address_and_chain() -> None:
    desired = compute_desired(
        [obs(PKI.served, VIA_TWIN)], servers=["gmail"], policy=TrustPolicy(), anchors=PKI.anchors, now=NOW
    )
    item = desired.get(OLD_ROOT.sha256)
    assert item is not None
    chain_id = "/".join(c.short_fingerprint for c in PKI.served)
    assert item.reasons == (
        f"gmail 10.0.0.1 chain {chain_id}: cross-signed the top served certificate {CROSS.common_name}",
    )


def test_chains_in_use_are_the_confirmed_verified_chains() -> None:
    unverified = obs([PLAIN_LEAF.cert, PLAIN_INTER.cert], [], address="10.0.0.9")
    desired = compute_desired(
        [obs(PKI.served, VIA_TWIN), unverified],
        servers=["gmail"],
        policy=TrustPolicy(),
        anchors=PKI.anchors,
        now=NOW,
    )
    assert desired.chains_in_use == (tuple(PKI.served),)
    assert desired.events[0].chain_sha256 == (PLAIN_LEAF.cert.sha256, PLAIN_INTER.cert.sha256)


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        pytest.param(PKI.served, "cross", id="gmail-shape-top-is-the-cross-sign"),
        pytest.param([LEAF, CROSS, INTER], "cross", id="out-of-order-chain"),
        pytest.param([LEAF, INTER, PLAIN_ROOT.cert], "inter", id="unrelated-extra-cert-ignored"),
        pytest.param([LEAF], "leaf", id="leaf-only"),
        pytest.param([LEAF, INTER, NEW_ROOT], "new_root", id="self-signed-root-sent"),
    ],
)
def test_top_of_sent_path(chain: list[Certificate], expected: str) -> None:
    top = top_of_sent_path(chain)
    assert NAMES[top.sha256] == expected


def test_find_twins_only_self_signed_same_key() -> None:
    assert find_twins(CROSS, [OLD_ROOT, NEW_ROOT, INTER, CROSS]) == [NEW_ROOT]
    assert find_twins(INTER, [OLD_ROOT, NEW_ROOT]) == []
