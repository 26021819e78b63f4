"""The product's IOS trust rule against the lab's independent one, on every lab PKI shape.

Both judge the same chain as sent, the same trustpoints and the same pinned instant, strict and lenient:
`eemwatchd.core.ios.trust.validate_as_ios` (the planner's rule) and `eemwatchd_lab.router.trust.
validate_chain` (the lab router's, on cryptography's X.509 path validation). They must agree on the
verdict and, when the chain is accepted, on the anchoring trustpoint. The few shapes where they differ
are in DISAGREEMENTS with both verdicts pinned and the resolution (docs/lab-router.md, "The lab's trust
rule and the product's: where they differ"): a change on either side fails here until the table is
revised. Where the field notes (sec. 1b, the tech note's debug log) say what the router did, the lab's
verdict is also held to that.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd_lab.pki import (
    GmailShapedPki,
    Issued,
    cross_sign,
    make_ca,
    make_intermediate,
    make_leaf,
    make_root,
    new_key,
    resign_sha1,
)
from eemwatchd_lab.router.trust import validate_chain

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOSTS = ["smtp.lab.example"]


@dataclass(frozen=True)
class Case:
    id: str
    sent: tuple[Certificate, ...]
    installed: Mapping[str, tuple[Certificate, ...]]
    at: datetime = NOW
    # What the router did, where field notes sec. 1b says it: (ok, anchoring trustpoint), strict.
    field_notes: tuple[bool, str | None] | None = None


@dataclass
class _Corpus:
    cases: list[Case] = field(default_factory=list)

    def add(self, case_id: str, sent: Sequence[Certificate], installed: Mapping[str, Sequence[Certificate]],
            *, at: datetime = NOW, field_notes: tuple[bool, str | None] | None = None) -> None:
        self.cases.append(Case(case_id, tuple(sent), {k: tuple(v) for k, v in installed.items()}, at, field_notes))


def _gmail(c: _Corpus) -> None:
    """Gmail's shape: leaf <- GTS CA 1C3 <- GTS Root R1 cross-signed by GlobalSign (+ R1's self-signed twin)."""
    g = GmailShapedPki.create(now=NOW, hostnames=HOSTS, prefix="Gmail")
    leaf, inter, cross, old, twin = g.leaf.cert, g.intermediate.cert, g.new_root_cross, g.old_root.cert, g.new_root.cert
    served = g.served
    c.add("gmail/nothing-installed", served, {}, field_notes=(False, None))
    c.add("gmail/cross-signer", served, {"CA-GLOBALSIGN": [old]}, field_notes=(True, "CA-GLOBALSIGN"))
    c.add("gmail/self-signed-twin-only", served, {"CA-GTS-R1": [twin]}, field_notes=(False, None))
    # what the tech note installed: 1C3, the self-signed R1, GlobalSign and the leaf itself
    c.add("gmail/tech-note-setup", served,
          {"CA-GTS-1C3": [inter], "CA-GTS-R1": [twin], "CA-GlobalSign-Root": [old], "SMTP-LEAF": [leaf]},
          field_notes=(True, "CA-GlobalSign-Root"))
    c.add("gmail/twin-and-cross-signer", served, {"CA-GTS-R1": [twin], "CA-GLOBALSIGN": [old]})
    c.add("gmail/identical-cross-sign", served, {"CA-X": [cross]})
    c.add("gmail/intermediate-only", served, {"CA-1C3": [inter]})
    c.add("gmail/intermediate-and-cross-signer", served, {"CA-1C3": [inter], "CA-GLOBALSIGN": [old]})
    c.add("gmail/leaf-only-pinned", served, {"SMTP-LEAF": [leaf]})
    c.add("gmail/unrelated-root", served, {"OTHER": [make_root("Unrelated Root", now=NOW).cert]})
    impostor = make_ca("Gmail GlobalSign Root CA", by=None, now=NOW, days=3000)  # same subject, other key
    c.add("gmail/same-subject-other-key", served, {"CA-FAKE": [impostor.cert]})
    c.add("gmail/root-in-two-trustpoints", served, {"CA-A": [old], "CA-B": [old]})
    reissued = make_ca("Gmail GlobalSign Root CA", by=None, now=NOW, key=g.old_root.key, days=-1, back_days=50)
    c.add("gmail/expired-reissue-first", served, {"CA-EXPIRED": [reissued.cert], "CA-GLOBALSIGN": [old]})
    c.add("gmail/served-without-cross-sign", [leaf, inter], {"CA-GTS-R1": [twin]})
    c.add("gmail/reordered", [leaf, cross, inter], {"CA-GLOBALSIGN": [old]})
    c.add("gmail/duplicates", [leaf, inter, inter, cross, cross], {"CA-GLOBALSIGN": [old]})
    c.add("gmail/root-sent-too", [*served, old], {"CA-GLOBALSIGN": [old]})
    c.add("gmail/root-sent-not-installed", [*served, old], {"CA-GTS-R1": [twin]})
    c.add("gmail/leaf-twice", [leaf, leaf], {"CA-1C3": [inter]})
    c.add("gmail/missing-intermediate", [leaf, cross], {"CA-GLOBALSIGN": [old]})
    c.add("gmail/leaf-alone-root-installed", [leaf], {"CA-GLOBALSIGN": [old], "CA-GTS-R1": [twin]})
    c.add("gmail/leaf-alone-intermediate-installed", [leaf], {"CA-1C3": [inter]})
    c.add("gmail/leaf-alone-leaf-installed", [leaf], {"SMTP-LEAF": [leaf]})
    # time: the leaf lives 84 days from NOW - 1 day; the cross-sign 1100 days from NOW - 20 days
    c.add("time/leaf-expired", served, {"CA-GLOBALSIGN": [old]}, at=NOW + 90 * DAY)
    c.add("time/leaf-at-its-last-second", served, {"CA-GLOBALSIGN": [old]}, at=leaf.not_after)
    c.add("time/leaf-one-second-late", served, {"CA-GLOBALSIGN": [old]}, at=leaf.not_after + timedelta(seconds=1))
    future_leaf = make_leaf(HOSTS, by=g.intermediate, now=NOW + 5 * DAY).cert
    c.add("time/leaf-not-yet-valid", [future_leaf, inter, cross], {"CA-GLOBALSIGN": [old]})
    expired_cross = cross_sign(g.new_root, by=g.old_root, now=NOW - 1200 * DAY, days=1100)
    c.add("time/cross-sign-expired", [leaf, inter, expired_cross], {"CA-GLOBALSIGN": [old]})
    c.add("time/cross-sign-expired-twin-installed", [leaf, inter, expired_cross],
          {"CA-GTS-R1": [twin], "CA-GLOBALSIGN": [old]})
    old_inter = make_intermediate("Gmail GTS CA 1O1", by=g.new_root, now=NOW - 1005 * DAY)
    old_inter_leaf = make_leaf(HOSTS, by=old_inter, now=NOW).cert
    c.add("time/intermediate-expired", [old_inter_leaf, old_inter.cert, cross], {"CA-GLOBALSIGN": [old]})
    c.add("time/intermediate-expired-identical-installed", [old_inter_leaf, old_inter.cert],
          {"CA-1O1": [old_inter.cert], "CA-GTS-R1": [twin]})
    next_inter = make_intermediate("Gmail WR2", by=g.new_root, now=NOW + 20 * DAY)
    c.add("time/intermediate-not-yet-valid", [make_leaf(HOSTS, by=next_inter, now=NOW).cert, next_inter.cert, cross],
          {"CA-GLOBALSIGN": [old]})


def _rotation(c: _Corpus) -> None:
    """A new anchor: the provider moves to a new root, served cross-signed by the old one, then alone."""
    r = GmailShapedPki.create(now=NOW - 400 * DAY, hostnames=HOSTS, prefix="Rot")
    previous_root = r.new_root.cert
    r.rotate_root("Rot Root R2", "Rot CA 2A", now=NOW)
    old, new = r.old_root.cert, r.new_root.cert
    c.add("new-anchor/old-root-installed", r.served, {"CA-OLD": [old]})
    c.add("new-anchor/previous-root-only", r.served, {"CA-PREVIOUS": [previous_root]})
    c.add("new-anchor/new-root-only", r.served, {"CA-NEW": [new]})
    c.add("new-anchor/served-alone-new-root", r.served[:2], {"CA-NEW": [new]})
    c.add("new-anchor/served-alone-old-root", r.served[:2], {"CA-OLD": [old], "CA-PREVIOUS": [previous_root]})


def _anchors(c: _Corpus) -> None:
    """Installed anchors out of their validity, and an installed intermediate as the anchor."""
    dead_root = make_root("Dead Root", now=NOW - 4000 * DAY, days=3000)
    dead_inter = make_intermediate("Dead Root CA", by=dead_root, now=NOW)
    c.add("time/anchor-expired", [make_leaf(HOSTS, by=dead_inter, now=NOW).cert, dead_inter.cert],
          {"CA-DEAD": [dead_root.cert]})
    early_root = make_root("Early Root", now=NOW + 100 * DAY)  # valid from NOW + 70 days
    early_inter = make_intermediate("Early CA", by=early_root, now=NOW)
    c.add("time/anchor-not-yet-valid", [make_leaf(HOSTS, by=early_inter, now=NOW).cert, early_inter.cert],
          {"CA-EARLY": [early_root.cert]})

    root = make_root("Anchor Root", now=NOW)
    inter = make_intermediate("Anchor CA", by=root, now=NOW)
    leaf = make_leaf(HOSTS, by=inter, now=NOW).cert
    c.add("intermediate-anchor/leaf-and-intermediate-sent", [leaf, inter.cert], {"CA-INT": [inter.cert]})
    c.add("intermediate-anchor/leaf-alone-sent", [leaf], {"CA-INT": [inter.cert]})
    c.add("intermediate-anchor/both-installed", [leaf, inter.cert], {"CA-INT": [inter.cert], "CA-ROOT": [root.cert]})
    # the installed intermediate has expired; the server sends its renewal (same subject and key)
    stale = make_ca("Renewed CA", by=root, now=NOW - 900 * DAY, days=800)
    renewed = make_ca("Renewed CA", by=root, now=NOW, key=stale.key, path_length=0)
    renewed_leaf = make_leaf(HOSTS, by=renewed, now=NOW).cert
    c.add("time/installed-intermediate-expired-renewal-sent", [renewed_leaf, renewed.cert],
          {"CA-STALE": [stale.cert], "CA-ROOT": [root.cert]})
    c.add("time/installed-intermediate-expired-leaf-alone", [renewed_leaf], {"CA-STALE": [stale.cert]})
    other = make_root("Brand New Root", now=NOW)
    other_inter = make_intermediate("Brand New CA", by=other, now=NOW)
    c.add("new-anchor/unrelated-new-root-not-installed", [make_leaf(HOSTS, by=other_inter, now=NOW).cert,
                                                          other_inter.cert], {"CA-ROOT": [root.cert]})


def _extensions(c: _Corpus) -> None:
    """keyUsage, basicConstraints and path length on intermediates and installed roots."""
    root = make_root("Ext Root", now=NOW)

    def under(issuer: Issued) -> Certificate:
        return make_leaf(HOSTS, by=issuer, now=NOW).cert

    no_kcs = make_ca("Ext CA without keyCertSign", by=root, now=NOW, cert_sign=False, path_length=0)
    c.add("key-usage/intermediate-without-keyCertSign", [under(no_kcs), no_kcs.cert], {"CA-ROOT": [root.cert]})
    no_ku = make_ca("Ext CA without keyUsage", by=root, now=NOW, key_usage=False)
    c.add("key-usage/intermediate-without-keyUsage", [under(no_ku), no_ku.cert], {"CA-ROOT": [root.cert]})
    kcs_root = make_ca("Ext Root without keyCertSign", by=None, now=NOW, cert_sign=False)
    kcs_inter = make_intermediate("Ext CA under it", by=kcs_root, now=NOW)
    c.add("key-usage/installed-root-without-keyCertSign", [under(kcs_inter), kcs_inter.cert],
          {"CA-ROOT": [kcs_root.cert]})

    no_bc = make_ca("Ext CA without basicConstraints", by=root, now=NOW, basic_constraints=False)
    c.add("basic-constraints/intermediate-without-extension", [under(no_bc), no_bc.cert], {"CA-ROOT": [root.cert]})
    not_ca = make_ca("Ext CA with CA:FALSE", by=root, now=NOW, is_ca=False)
    c.add("basic-constraints/intermediate-ca-false", [under(not_ca), not_ca.cert], {"CA-ROOT": [root.cert]})
    bc_root = make_ca("Ext Root without basicConstraints", by=None, now=NOW, basic_constraints=False)
    bc_inter = make_intermediate("Ext CA under a root without basicConstraints", by=bc_root, now=NOW)
    c.add("basic-constraints/installed-root-without-extension", [under(bc_inter), bc_inter.cert],
          {"CA-ROOT": [bc_root.cert]})

    pl0_root = make_ca("Ext Root pathlen 0", by=None, now=NOW, path_length=0)
    pl0_inter = make_intermediate("Ext CA under pathlen 0", by=pl0_root, now=NOW)
    c.add("path-length/root-0-with-intermediate", [under(pl0_inter), pl0_inter.cert], {"CA-ROOT": [pl0_root.cert]})
    c.add("path-length/root-0-leaf-direct", [under(pl0_root)], {"CA-ROOT": [pl0_root.cert]})
    upper = make_intermediate("Ext CA pathlen 0", by=root, now=NOW)  # path_length=0
    sub = make_ca("Ext Sub CA", by=upper, now=NOW, path_length=0)
    c.add("path-length/intermediate-0-with-sub-ca", [under(sub), sub.cert, upper.cert], {"CA-ROOT": [root.cert]})
    c.add("path-length/intermediate-0-sub-ca-installed", [under(sub), sub.cert, upper.cert],
          {"CA-SUB": [sub.cert], "CA-ROOT": [root.cert]})
    pl1_root = make_ca("Ext Root pathlen 1", by=None, now=NOW, path_length=1)
    pl1_inter = make_intermediate("Ext CA under pathlen 1", by=pl1_root, now=NOW)
    c.add("path-length/root-1-with-intermediate", [under(pl1_inter), pl1_inter.cert], {"CA-ROOT": [pl1_root.cert]})


def _weak(c: _Corpus) -> None:
    """SHA-1 signatures and a 1024-bit RSA issuer (old CAs; IOS's own self-signed certificates are SHA-1)."""
    root = make_root("Weak Root", now=NOW, key_kind="rsa")
    inter = make_intermediate("Weak CA", by=root, now=NOW, key_kind="rsa")
    sha1_inter = Issued(resign_sha1(inter.cert, by=root), inter.key)
    c.add("sha1/intermediate-signed-with-sha1", [make_leaf(HOSTS, by=sha1_inter, now=NOW).cert, sha1_inter.cert],
          {"CA-ROOT": [root.cert]})
    sha1_root = resign_sha1(root.cert, by=root)  # self-signed with SHA-1, like GlobalSign Root CA (R1)
    c.add("sha1/self-signed-anchor", [make_leaf(HOSTS, by=inter, now=NOW).cert, inter.cert], {"CA-ROOT": [sha1_root]})
    rsa_leaf = make_leaf(HOSTS, by=inter, now=NOW, key_kind="rsa").cert
    c.add("sha1/leaf-signed-with-sha1", [resign_sha1(rsa_leaf, by=inter), inter.cert], {"CA-ROOT": [root.cert]})
    small = make_ca("Weak CA RSA-1024", by=root, now=NOW, key=new_key("rsa", bits=1024), path_length=0)
    c.add("rsa-1024/intermediate", [make_leaf(HOSTS, by=small, now=NOW).cert, small.cert], {"CA-ROOT": [root.cert]})


def _loops(c: _Corpus) -> None:
    """Two CAs that cross-sign each other, sent as a loop; a self-signed server certificate."""
    a = make_ca("Loop A", by=None, now=NOW)
    b = make_ca("Loop B", by=None, now=NOW)
    a_by_b = make_ca("Loop A", by=b, now=NOW, key=a.key).cert
    b_by_a = make_ca("Loop B", by=a, now=NOW, key=b.key).cert
    loop = [make_leaf(HOSTS, by=a, now=NOW).cert, a_by_b, b_by_a]
    c.add("loop/nothing-installed", loop, {})
    c.add("loop/unrelated-root", loop, {"OTHER": [make_root("Loop Outsider", now=NOW).cert]})
    c.add("loop/b-self-signed-installed", loop, {"CA-B": [b.cert]})
    c.add("loop/a-self-signed-installed", loop, {"CA-A": [a.cert]})
    self_signed = make_ca("smtp.lab.example", by=None, now=NOW, is_ca=False).cert
    c.add("self-signed-server/not-installed", [self_signed], {})
    c.add("self-signed-server/pinned", [self_signed], {"SMTP-SELF": [self_signed]})
    c.add("no-certificate-sent", [], {"OTHER": [a.cert]})


def _build_corpus() -> list[Case]:
    corpus = _Corpus()
    for shapes in (_gmail, _rotation, _anchors, _extensions, _weak, _loops):
        shapes(corpus)
    return corpus.cases


CASES = _build_corpus()
MODES = ("strict", "lenient")


@dataclass(frozen=True)
class Disagreement:
    """Both verdicts pinned (in both modes), what OpenSSL's `verify` says, and who is right for IOS."""

    product_ok: bool
    lab_ok: bool
    openssl_ok: bool
    right: str
    resolution: str


_WEAK = Disagreement(
    product_ok=True, lab_ok=False, openssl_ok=True, right="product (older IOS, Cisco doc 117337); "
    "unknown for IOS XE 17.11+",
    resolution="cryptography's verifier has a fixed algorithm set (no SHA-1 signatures, RSA >= 2048) that "
               "cannot be relaxed; the lab is stricter than the router here; no provider serves such a chain",
)
DISAGREEMENTS: dict[str, Disagreement] = {
    "sha1/intermediate-signed-with-sha1": _WEAK,
    "sha1/leaf-signed-with-sha1": _WEAK,
    "rsa-1024/intermediate": _WEAK,
}


def _cases_and_modes() -> list[pytest.ParameterSet]:
    return [pytest.param(case, mode, id=f"{case.id}-{mode}") for case in CASES for mode in MODES]


@pytest.mark.parametrize(("case", "mode"), _cases_and_modes())
def test_the_product_and_the_lab_agree(case: Case, mode: str) -> None:
    lenient = mode == "lenient"
    product = validate_as_ios(case.sent, case.installed, case.at, lenient=lenient)
    lab = validate_chain(case.sent, case.installed, case.at, lenient=lenient)
    known = DISAGREEMENTS.get(case.id)
    if known is None:
        assert (lab.ok, lab.anchor_trustpoint) == (product.ok, product.anchor_trustpoint), (
            f"lab: {lab.reason} / product: {product.reason}"
        )
    else:
        assert (product.ok, lab.ok) == (known.product_ok, known.lab_ok), (
            f"a known disagreement changed (revise DISAGREEMENTS and docs/lab-router.md): "
            f"lab: {lab.reason} / product: {product.reason}"
        )
    assert lab.reason
    if lab.ok and not lenient:
        assert lab.reason == f"chain cert was anchored to trustpoint {lab.anchor_trustpoint}"


@pytest.mark.parametrize("case", [c for c in CASES if c.field_notes is not None], ids=lambda c: c.id)
def test_the_lab_does_what_the_router_did_in_the_tech_note(case: Case) -> None:
    lab = validate_chain(case.sent, case.installed, case.at)
    assert (lab.ok, lab.anchor_trustpoint) == case.field_notes, lab.reason
    if not lab.ok:
        assert lab.reason.startswith("No trust point for cert issuer")


def test_the_table_names_only_corpus_cases_and_stays_small() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert set(DISAGREEMENTS) <= set(ids)
    assert len(DISAGREEMENTS) * 5 < len(CASES)


def test_the_lab_explains_a_refusal_in_ios_words() -> None:
    by_id = {c.id: c for c in CASES}
    expired = by_id["time/leaf-expired"]
    reason = validate_chain(expired.sent, expired.installed, expired.at).reason
    assert reason.startswith("Certificate chain validation has failed. The certificate (SN: ")
    assert "has expired. Validity period ended on " in reason
    early = by_id["time/leaf-not-yet-valid"]
    assert "is not yet valid   Validity period starts on 12:00:00 UTC Jun 5 2025 (sent certificate 1 " in (
        validate_chain(early.sent, early.installed, NOW).reason
    )
    assert validate_chain((), {}, NOW).reason == "the server sent no certificate"


def _openssl_accepts(target: Certificate, others: Sequence[Certificate], installed: Sequence[Certificate],
                     at: datetime, workdir: Path) -> bool:
    """`openssl verify` as a third opinion: installed certificates as anchors (partial chains), the others
    untrusted, at ``at``, no system store."""
    trusted = workdir / "trusted.pem"
    trusted.write_text("".join(c.pem for c in installed), encoding="ascii")
    untrusted = workdir / "untrusted.pem"
    untrusted.write_text("".join(c.pem for c in others), encoding="ascii")
    leaf = workdir / "target.pem"
    leaf.write_text(target.pem, encoding="ascii")
    command = ["openssl", "verify", "-no-CApath", "-no-CAstore", "-partial_chain", "-attime",
               str(int(at.timestamp())), "-CAfile", str(trusted)]
    if others:
        command += ["-untrusted", str(untrusted)]
    done = subprocess.run([*command, str(leaf)], capture_output=True, text=True, timeout=20, check=False)
    return done.returncode == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed (./dev installs it)")
@pytest.mark.parametrize("case_id", sorted(DISAGREEMENTS))
def test_openssl_verify_gives_the_recorded_third_opinion(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    installed = [cert for certs in case.installed.values() for cert in certs]
    every_sent_validates = all(
        _openssl_accepts(cert, [o for o in case.sent if o != cert], installed, case.at, tmp_path) for cert in case.sent
    )
    assert every_sent_validates is DISAGREEMENTS[case_id].openssl_ok
