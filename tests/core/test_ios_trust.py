"""validate_as_ios: the chain as sent must validate; identical certs only; no look-alike substitution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd_lab.pki import GmailShapedPki, make_intermediate, make_leaf, make_root

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PKI = GmailShapedPki.create(now=NOW)
OTHER_ROOT = make_root("Unrelated Root", now=NOW)

# (id, trustpoints by name -> which certs, lenient, expected ok, expected anchor)
CASES = [
    ("nothing-installed", {}, False, False, None),
    ("old-root-cross-signer", {"CA-OLD": ["old_root"]}, False, True, "CA-OLD"),
    ("self-signed-twin-alone-strict", {"CA-NEW": ["new_root"]}, False, False, None),
    ("self-signed-twin-alone-lenient", {"CA-NEW": ["new_root"]}, True, True, "CA-NEW"),
    ("twin-and-old-root", {"CA-NEW": ["new_root"], "CA-OLD": ["old_root"]}, False, True, "CA-OLD"),
    ("identical-cross-sign-installed", {"CA-X": ["cross"]}, False, True, "CA-X"),
    ("intermediate-only", {"CA-INT": ["intermediate"]}, False, False, None),
    ("intermediate-and-old-root", {"CA-INT": ["intermediate"], "CA-OLD": ["old_root"]}, False, True, "CA-OLD"),
    ("leaf-only-pinned", {"LEAF": ["leaf"]}, False, False, None),
    ("unrelated-root", {"OTHER": ["other"]}, False, False, None),
    ("unrelated-root-lenient", {"OTHER": ["other"]}, True, False, None),
]


def _cert(label: str):  # type: ignore[no-untyped-def]
    return {
        "old_root": PKI.old_root.cert,
        "new_root": PKI.new_root.cert,
        "cross": PKI.new_root_cross,
        "intermediate": PKI.intermediate.cert,
        "leaf": PKI.leaf.cert,
        "other": OTHER_ROOT.cert,
    }[label]


@pytest.mark.parametrize(("installed", "lenient", "ok", "anchor"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gmail_shaped_chain(installed: dict[str, list[str]], lenient: bool, ok: bool, anchor: str | None) -> None:
    trustpoints = {name: [_cert(x) for x in labels] for name, labels in installed.items()}
    result = validate_as_ios(PKI.served, trustpoints, NOW, lenient=lenient)
    assert result.ok is ok, result.reason
    assert result.anchor_trustpoint == anchor
    if ok and not lenient:
        assert result.reason == f"chain cert was anchored to trustpoint {anchor}"
    if not ok and not installed:
        assert result.reason.startswith("No trust point for cert issuer")


def test_expired_leaf_is_rejected_even_with_the_right_root() -> None:
    later = NOW + timedelta(days=400)
    result = validate_as_ios(PKI.served, {"CA-OLD": [PKI.old_root.cert]}, later)
    assert not result.ok
    assert "expired" in result.reason


def test_expired_installed_anchor_is_rejected() -> None:
    root = make_root("Short Root", now=NOW, days=10)
    inter = make_intermediate("Short CA", by=root, now=NOW)
    leaf = make_leaf(["smtp.lab.example"], by=inter, now=NOW, days=5)
    result = validate_as_ios([leaf.cert, inter.cert], {"R": [root.cert]}, NOW + timedelta(days=11))
    assert not result.ok


def test_no_certificates_sent() -> None:
    result = validate_as_ios([], {"CA-OLD": [PKI.old_root.cert]}, NOW)
    assert not result.ok
    assert result.reason == "the server sent no certificate"


def test_chain_without_the_cross_sign_validates_with_the_twin() -> None:
    """A server that sends leaf + intermediate only: the self-signed new root is then enough."""
    result = validate_as_ios(PKI.served[:2], {"CA-NEW": [PKI.new_root.cert]}, NOW)
    assert result.ok
    assert result.anchor_trustpoint == "CA-NEW"
