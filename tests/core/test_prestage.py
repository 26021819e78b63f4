"""Pre-staged certificates (issue 20): who may be pre-staged, what the routers would accept, desired trust and plan.

The oracle for "the router accepts the chain" in the plan tests is the lab's own trust rule
(eemwatchd_lab/router/trust.py), never the product's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.desired import SeenChain, TrustPolicy, compute_desired
from eemwatchd.core.plan import managed_trust, plan_router
from eemwatchd.core.prestage import Prestaged, judge_prestaged, prestage_readiness
from eemwatchd_lab.pki import GmailShapedPki, cross_sign, make_ca, make_intermediate, make_leaf, make_root
from eemwatchd_lab.router.trust import validate_chain

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINTED = NOW - timedelta(days=5)
PKI = GmailShapedPki.create(now=MINTED)
OLD_ROOT, NEW_ROOT, CROSS, INTER, LEAF = (PKI.old_root.cert, PKI.new_root.cert, PKI.new_root_cross,
                                          PKI.intermediate.cert, PKI.leaf.cert)
NEXT = make_root("Next Root R5", now=MINTED)  # announced by the provider, not used yet
NEXT_CROSS = cross_sign(NEXT, by=PKI.old_root, now=MINTED)  # the same key, vouched for by the old root
NEXT_INTER = make_intermediate("Next CA 5A", by=NEXT, now=MINTED)  # pathLenConstraint 0
STRANGER = make_root("Stranger Root", now=MINTED)
STRANGER_INTER = make_intermediate("Stranger CA", by=STRANGER, now=MINTED)
NOT_CA = make_ca("Not A CA", by=PKI.new_root, now=MINTED, is_ca=False).cert
NO_CERT_SIGN = make_ca("No keyCertSign", by=PKI.new_root, now=MINTED, cert_sign=False).cert
EXPIRED = make_root("Expired Root", now=NOW - timedelta(days=400), days=100).cert
NOT_YET = make_root("Future Root", now=NOW + timedelta(days=30), back_days=1).cert
STORE = [OLD_ROOT, NEW_ROOT]


@dataclass(frozen=True)
class Judged:
    cert: Certificate
    ok: bool
    words: str  # in the reason
    anchors: list[Certificate] = field(default_factory=lambda: list(STORE))
    intermediates: list[Certificate] = field(default_factory=list)
    pin: str | None = None


JUDGED: dict[str, Judged] = {
    "a-root-present-in-the-trust-store": Judged(NEW_ROOT, True, "present in the trust store"),
    "a-cross-signed-root-verifies-through-its-signer": Judged(
        CROSS, True, "verifies to the trust store via Lab GlobalSign Root CA", anchors=[OLD_ROOT]),
    "an-intermediate-verifies-through-its-root": Judged(INTER, True, "via Lab GTS Root R1"),
    "a-new-root-verifies-through-its-pre-staged-cross-sign": Judged(NEXT.cert, True, "via Next Root R5 -> Lab Glob",
                                                                    intermediates=[NEXT_CROSS]),
    "a-root-missing-from-the-trust-store-without-pin": Judged(NEXT.cert, False, "self-signed root that is not in "
                                                                                "the trust store"),
    "another-ca-s-intermediate-without-pin": Judged(STRANGER_INTER.cert, False, "does not verify to the trust store"),
    "a-server-certificate-is-refused": Judged(LEAF, False, "is not a CA certificate"),
    "ca-false-is-refused": Judged(NOT_CA, False, "is not a CA certificate"),
    "a-ca-that-cannot-sign-certificates-is-refused": Judged(NO_CERT_SIGN, False, "lacks keyCertSign"),
    "an-expired-root-is-refused-even-in-the-store": Judged(EXPIRED, False, "expired on", anchors=[EXPIRED]),
    "a-root-not-valid-yet-is-refused": Judged(NOT_YET, False, "is not valid before", anchors=[NOT_YET]),
    "a-pin-accepts-a-root-outside-the-trust-store": Judged(NEXT.cert, True, "matches its pinned SHA-256",
                                                           pin=NEXT.cert.sha256),
    "a-pin-is-compared-without-colons-or-case": Judged(
        NEXT.cert, True, "matches its pinned", pin=":".join(NEXT.cert.sha256.upper()[i:i + 2] for i in range(0, 64, 2)),
    ),
    "a-pin-that-does-not-match-refuses-even-a-trusted-root": Judged(NEW_ROOT, False, "not the pinned",
                                                                    pin=OLD_ROOT.sha256),
    "a-pin-does-not-excuse-a-server-certificate": Judged(LEAF, False, "is not a CA certificate", pin=LEAF.sha256),
    "a-pin-does-not-excuse-an-expired-root": Judged(EXPIRED, False, "expired on", pin=EXPIRED.sha256),
}


@pytest.mark.parametrize("case", JUDGED.values(), ids=JUDGED.keys())
def test_judge_prestaged(case: Judged) -> None:
    verdict = judge_prestaged(case.cert, anchors=case.anchors, intermediates=case.intermediates, pin=case.pin,
                              now=NOW)
    assert verdict.ok is case.ok, verdict.reason
    assert case.words in verdict.reason


# --- which shapes of the provider's future chains the router accepts today --------------------------------------


def staged(*certs: Certificate) -> list[Prestaged]:
    return [Prestaged("gmail", c, "announced.pem") for c in certs]


@dataclass(frozen=True)
class Shapes:
    prestaged: list[Prestaged]
    held: list[Certificate]
    expected: dict[str, bool | None]  # shape -> accepted, for the first pre-staged certificate
    now: datetime = NOW
    words: str = ""  # in the signed-by answer's why


SHAPES: dict[str, Shapes] = {
    "not-held-yet-accepts-nothing": Shapes(
        staged(NEXT.cert), [], {"signed-by": False, "on-top": False, "cross-signed-on-top": None}),
    "held-accepts-chains-it-signs-and-itself-on-top-but-a-cross-sign-is-unknown": Shapes(
        staged(NEXT.cert), [NEXT.cert], {"signed-by": True, "on-top": True, "cross-signed-on-top": None}),
    "a-known-cross-sign-needs-its-signer": Shapes(
        staged(NEXT.cert, NEXT_CROSS), [NEXT.cert], {"signed-by": True, "on-top": True, "cross-signed-on-top": False}),
    "a-known-cross-sign-with-its-signer-held": Shapes(
        staged(NEXT.cert, NEXT_CROSS), [NEXT.cert, OLD_ROOT],
        {"signed-by": True, "on-top": True, "cross-signed-on-top": True}),
    "the-cross-sign-held-itself-carries-the-root-s-key": Shapes(
        staged(NEXT.cert, NEXT_CROSS), [NEXT_CROSS],
        {"signed-by": True, "on-top": True, "cross-signed-on-top": True}),
    "only-the-cross-signer-held": Shapes(
        staged(NEXT.cert, NEXT_CROSS), [OLD_ROOT],
        {"signed-by": False, "on-top": False, "cross-signed-on-top": True}),
    "an-intermediate-held-signs-leaves-only": Shapes(
        staged(NEXT_INTER.cert), [NEXT_INTER.cert], {"signed-by": True, "on-top": True},
        words="pathLenConstraint 0"),
    "an-intermediate-not-held-on-top-validates-through-its-held-root": Shapes(
        staged(NEXT_INTER.cert), [NEXT.cert], {"signed-by": False, "on-top": True}),
    "held-but-expired-by-then": Shapes(
        staged(NEXT.cert), [NEXT.cert], {"signed-by": False, "on-top": False, "cross-signed-on-top": None},
        now=NEXT.cert.not_after + timedelta(days=1), words="not valid now"),
}


@pytest.mark.parametrize("case", SHAPES.values(), ids=SHAPES.keys())
def test_prestage_readiness(case: Shapes) -> None:
    trustpoints = {f"TP{i}": [c] for i, c in enumerate(case.held)}
    first = prestage_readiness(case.prestaged, trustpoints, case.now)[0]
    assert {s.shape: s.accepted for s in first.shapes} == case.expected
    assert first.held_in == next((name for name, certs in trustpoints.items() if first.certificate in certs), None)
    signed_by = next(s for s in first.shapes if s.shape == "signed-by")
    assert case.words in signed_by.why


@pytest.mark.parametrize(("held", "shape"), [
    pytest.param([NEXT.cert], "signed-by", id="a-chain-the-pre-staged-root-signs"),
    pytest.param([NEXT.cert], "on-top", id="the-pre-staged-root-sent-on-top"),
    pytest.param([OLD_ROOT], "cross-signed-on-top", id="the-cross-sign-sent-on-top"),
    pytest.param([NEXT.cert], "cross-signed-on-top", id="the-cross-sign-sent-on-top-without-its-signer"),
])
def test_readiness_agrees_with_the_lab_rule_on_real_chains_of_each_shape(held: list[Certificate], shape: str) -> None:
    """We hold the lab provider's keys, so each shape can be built for real and judged by the lab's own rule."""
    leaf = make_leaf(PKI.hostnames, by=NEXT_INTER, now=MINTED).cert
    chains = {"signed-by": [leaf, NEXT_INTER.cert], "on-top": [leaf, NEXT_INTER.cert, NEXT.cert],
              "cross-signed-on-top": [leaf, NEXT_INTER.cert, NEXT_CROSS]}
    trustpoints = {f"TP{i}": [c] for i, c in enumerate(held)}
    readiness = prestage_readiness(staged(NEXT.cert, NEXT_CROSS), trustpoints, NOW)[0]
    answer = next(s.accepted for s in readiness.shapes if s.shape == shape)
    assert answer is validate_chain(chains[shape], trustpoints, NOW).ok


# --- desired trust and the plan ------------------------------------------------------------------------------

POLICY = TrustPolicy()


def seen(chain: list[Certificate], path: list[Certificate], *, times: int = 3, address: str = "10.0.0.1") -> SeenChain:
    return SeenChain("gmail", address, tuple(chain), True, tuple(path), None, NOW - timedelta(hours=2),
                     NOW - timedelta(minutes=1), times)


CONFIRMED = seen(PKI.served, [LEAF, INTER, NEW_ROOT])


def test_pre_staged_certificates_are_desired_last_with_their_role_once_the_server_is_confirmed() -> None:
    desired = compute_desired([CONFIRMED], servers=["gmail"], policy=POLICY, anchors=STORE,
                              prestaged=[*staged(NEXT.cert), Prestaged("other", STRANGER.cert, "x.pem")], now=NOW)
    roles = [(d.certificate, d.role) for d in desired.certificates]
    assert roles[-1] == (NEXT.cert, "prestaged")
    assert STRANGER.cert not in desired.sha256s and len(roles) == 4  # another server's pre-staged root: not ours
    assert desired.certificates[-1].reasons == ("pre-staged for gmail (announced.pem)",)


def test_nothing_is_pre_staged_before_the_server_has_a_confirmed_chain() -> None:
    desired = compute_desired([seen(PKI.served, [LEAF, INTER, NEW_ROOT], times=1)], servers=["gmail"], policy=POLICY,
                              anchors=STORE, prestaged=staged(NEXT.cert), now=NOW)
    assert not desired.certificates
    assert desired.holds  # and nothing is retired meanwhile


def test_a_pre_staged_certificate_on_the_path_shows_its_path_role() -> None:
    desired = compute_desired([CONFIRMED], servers=["gmail"], policy=POLICY, anchors=STORE,
                              prestaged=staged(NEW_ROOT), now=NOW)
    item = desired.get(NEW_ROOT.sha256)
    assert item is not None and item.role == "anchor"
    assert "pre-staged for gmail (announced.pem)" in item.reasons


NEXT_LEAF = make_leaf(PKI.hostnames, by=NEXT_INTER, now=MINTED).cert
MOVED = [NEXT_LEAF, NEXT_INTER.cert, NEXT.cert]  # the provider moves to its announced root, sent on top
HELD = {"EEMW-" + c.short_fingerprint: [c] for c in (OLD_ROOT, NEW_ROOT, INTER)}


@pytest.mark.parametrize(("prestage", "state"), [
    pytest.param(True, "in-sync", id="pre-staged-the-router-accepts-the-new-chain-at-its-first-sighting"),
    pytest.param(False, "waiting", id="not-pre-staged-the-router-waits-for-confirmation-and-cannot-mail"),
])
def test_a_move_to_the_pre_staged_root_keeps_the_router_in_sync(prestage: bool, state: str) -> None:
    trustpoints = dict(HELD)
    if prestage:
        trustpoints["EEMW-" + NEXT.cert.short_fingerprint] = [NEXT.cert]
    assert validate_chain(MOVED, trustpoints, NOW).ok is prestage  # the lab's rule: can it mail right now?
    observations = [CONFIRMED, seen(MOVED, MOVED, times=1, address="10.0.0.2")]
    desired = compute_desired(observations, servers=["gmail"], policy=POLICY, anchors=[*STORE, NEXT.cert],
                              prestaged=staged(NEXT.cert) if prestage else [], now=NOW)
    plan = plan_router(trustpoints, desired, policy=POLICY, now=NOW, unneeded_since={},
                       proven=managed_trust(trustpoints, prefix=POLICY.trustpoint_prefix))
    assert not plan.actions
    assert plan.state == state


def test_after_confirmation_the_path_is_installed_beside_the_pre_staged_root() -> None:
    trustpoints = {**HELD, "EEMW-" + NEXT.cert.short_fingerprint: [NEXT.cert]}
    observations = [CONFIRMED, seen(MOVED, MOVED, times=2, address="10.0.0.2")]
    desired = compute_desired(observations, servers=["gmail"], policy=POLICY, anchors=[*STORE, NEXT.cert],
                              prestaged=staged(NEXT.cert), now=NOW)
    plan = plan_router(trustpoints, desired, policy=POLICY, now=NOW, unneeded_since={},
                       proven=managed_trust(trustpoints, prefix=POLICY.trustpoint_prefix))
    assert [(a.kind, a.certificate, a.role) for a in plan.actions] == [("add", NEXT_INTER.cert, "intermediate")]
    assert desired.get(NEXT.cert.sha256) is not None and desired.get(NEXT.cert.sha256).role == "anchor"  # type: ignore[union-attr]


def test_a_pre_staged_certificate_is_installed_with_its_role_and_never_retired_while_configured() -> None:
    trustpoints = dict(HELD)
    desired = compute_desired([CONFIRMED], servers=["gmail"], policy=POLICY, anchors=STORE,
                              prestaged=staged(NEXT.cert), now=NOW)
    plan = plan_router(trustpoints, desired, policy=POLICY, now=NOW, unneeded_since={})
    assert [(a.kind, a.certificate, a.role) for a in plan.actions] == [("add", NEXT.cert, "prestaged")]
    assert plan.actions[0].reason.startswith("prestaged: pre-staged for gmail")
    held = {**trustpoints, plan.actions[0].trustpoint: [NEXT.cert]}
    long_ago = {NEXT.cert.sha256: NOW - timedelta(days=365)}
    again = plan_router(held, desired, policy=POLICY, now=NOW, unneeded_since=long_ago)
    assert not again.actions and not again.unneeded


def test_removed_from_the_config_it_retires_after_retention_like_any_unneeded_trust() -> None:
    held = {**HELD, "EEMW-" + NEXT.cert.short_fingerprint: [NEXT.cert]}
    desired = compute_desired([CONFIRMED], servers=["gmail"], policy=POLICY, anchors=STORE, prestaged=[], now=NOW)
    first = plan_router(held, desired, policy=POLICY, now=NOW, unneeded_since={})
    assert not first.actions and first.unneeded == {NEXT.cert.sha256: NOW}
    later = NOW + POLICY.retention
    retire = plan_router(held, desired, policy=POLICY, now=later, unneeded_since=first.unneeded)
    assert [(a.kind, a.certificate) for a in retire.actions] == [("retire", NEXT.cert)]
    assert "no longer needed (on no chain in use, not pre-staged)" in retire.actions[0].reason


def test_what_a_pending_chain_the_router_accepts_needs_is_never_retired() -> None:
    """The provider moves to the pre-staged root and, before the new chain is confirmed, the root leaves the config
    (the operator pre-stages the next one): retiring it would stop the mail the pre-staging kept going."""
    held = {**HELD, "EEMW-" + NEXT.cert.short_fingerprint: [NEXT.cert]}
    observations = [CONFIRMED, seen(MOVED, MOVED, times=1, address="10.0.0.2")]
    desired = compute_desired(observations, servers=["gmail"], policy=POLICY, anchors=[*STORE, NEXT.cert],
                              prestaged=[], now=NOW)
    long_ago = {NEXT.cert.sha256: NOW - timedelta(days=365)}
    plan = plan_router(held, desired, policy=POLICY, now=NOW, unneeded_since=long_ago,
                       proven=managed_trust(held, prefix=POLICY.trustpoint_prefix))
    assert not plan.retires
    assert any(r.kind == "kept" and "needs it to accept chain" in r.message for r in plan.reports)
    assert plan.state == "in-sync"
    assert validate_chain(MOVED, held, NOW).ok
