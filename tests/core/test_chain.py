"""Judging chains (pure): verification paths for a Gmail-shaped PKI, failure reasons, descriptions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from eemwatchd.core.certificate import Certificate, format_fingerprint_ios, format_serial_ios
from eemwatchd.core.chain import (
    ChainObservation,
    Verification,
    certificate_facts,
    matches_hostname,
    role,
    top_of_sent_path,
    verify_chain,
)
from eemwatchd_lab.pki import GmailShapedPki, make_root
from tests.support.clock import NOW

HOST = "smtp.lab.example"


def _self_signed_server(now: datetime, name: str = HOST) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(4242)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Certificate(cert.public_bytes(Encoding.DER))


Case = Callable[[GmailShapedPki], tuple[list[Certificate], list[Certificate]]]

VERIFIED: list[tuple[str, Case, str, int]] = [
    # (id, (chain, anchors), expected anchor CN, path length)
    ("old-root-only: path ends at the old root via the cross-sign",
     lambda p: (p.served, [p.old_root.cert]), "Lab GlobalSign Root CA", 4),
    ("new-root-only: path ends at the new root, cross-sign skipped",
     lambda p: (p.served, [p.new_root.cert]), "Lab GTS Root R1", 3),
    ("both-roots", lambda p: (p.served, p.anchors), "", 0),
    ("self-signed twin also sent: dropped from intermediates",
     lambda p: ([*p.served, p.new_root.cert], [p.old_root.cert]), "Lab GlobalSign Root CA", 4),
    ("duplicated intermediate in the sent chain",
     lambda p: ([p.leaf.cert, p.intermediate.cert, p.intermediate.cert, p.new_root_cross], [p.old_root.cert]),
     "Lab GlobalSign Root CA", 4),
    ("out of order: cross-sign before the intermediate",
     lambda p: ([p.leaf.cert, p.new_root_cross, p.intermediate.cert], [p.new_root.cert]),
     "Lab GTS Root R1", 3),
]


@pytest.mark.parametrize(
    ("case", "anchor_cn", "path_len"), [pytest.param(c, a, n, id=i) for i, c, a, n in VERIFIED]
)
def test_verified(pki: GmailShapedPki, case: Case, anchor_cn: str, path_len: int) -> None:
    chain, anchors = case(pki)
    result = verify_chain(chain, hostname=HOST, anchors=anchors, now=NOW)
    assert result.verified, result.error
    assert result.error is None
    assert result.path[0] == pki.leaf.cert
    assert result.anchor == result.path[-1]
    assert result.anchor in anchors
    if anchor_cn:
        assert result.anchor.common_name == anchor_cn
        assert len(result.path) == path_len
    assert "verified for smtp.lab.example" in result.describe()


def test_both_roots_prefers_a_path_through_a_store_anchor(pki: GmailShapedPki) -> None:
    result = verify_chain(pki.served, hostname=HOST, anchors=pki.anchors, now=NOW)
    assert result.verified
    assert result.path[:2] == (pki.leaf.cert, pki.intermediate.cert)


FAILING: list[tuple[str, Case, datetime, str, str]] = [
    # (id, (chain, anchors), now, hostname, reason pattern)
    ("leaf expired", lambda p: (p.served, p.anchors), NOW + timedelta(days=200), HOST,
     r"^the leaf 'smtp\.lab\.example' expired on \d{4}-\d\d-\d\d"),
    ("leaf not yet valid", lambda p: (p.served, p.anchors), NOW - timedelta(days=5), HOST,
     r"is not valid before"),
    ("wrong hostname", lambda p: (p.served, p.anchors), NOW, "smtp.other.example",
     r"^the leaf is for smtp\.lab\.example, localhost, 127\.0\.0\.1, ::1; not for smtp\.other\.example$"),
    ("missing intermediate", lambda p: ([p.leaf.cert], p.anchors), NOW, HOST,
     r"^no trust anchor for 'Lab GTS CA 1C3' \(issuer of the leaf\)"),
    ("cross-sign sent, only an unrelated root trusted",
     lambda p: (p.served, [make_root("Other Root", now=NOW).cert]), NOW, HOST,
     r"no trust anchor for 'Lab GlobalSign Root CA' \(issuer of 'Lab GTS Root R1'"),
    ("self-signed twin sent instead of the cross-sign, old root trusted",
     lambda p: ([p.leaf.cert, p.intermediate.cert, p.new_root.cert], [p.old_root.cert]), NOW, HOST,
     r"^the chain ends at the self-signed 'Lab GTS Root R1', which is not in the trust store$"),
    ("self-signed leaf only", lambda p: ([_self_signed_server(NOW)], p.anchors), NOW, HOST,
     r"^the leaf 'smtp\.lab\.example' is self-signed and not in the trust store$"),
    ("nothing sent", lambda p: ([], p.anchors), NOW, HOST, r"^the server sent no certificate$"),
    ("empty trust store", lambda p: (p.served, []), NOW, HOST, r"^the trust store is empty$"),
]


@pytest.mark.parametrize(("case", "now", "hostname", "reason"),
                         [pytest.param(c, t, h, r, id=i) for i, c, t, h, r in FAILING])
def test_not_verified_with_reason(pki: GmailShapedPki, case: Case, now: datetime, hostname: str,
                                  reason: str) -> None:
    chain, anchors = case(pki)
    result = verify_chain(chain, hostname=hostname, anchors=anchors, now=now)
    assert not result.verified
    assert result.path == ()
    assert result.anchor is None
    assert result.error is not None
    assert re.search(reason, result.error), result.error
    assert "encountered processing" not in result.error
    assert result.describe().startswith("NOT verified for ")


def test_expired_cross_sign_is_named(pki: GmailShapedPki) -> None:
    later = NOW + timedelta(days=1150)  # the cross-sign lives 1100 days; a fresh intermediate and leaf
    pki.rotate_intermediate("Lab WR2", now=later)
    result = verify_chain(pki.served, hostname=HOST, anchors=[pki.old_root.cert], now=later)
    assert not result.verified
    assert result.error is not None
    assert result.error.startswith("sent certificate 3 'Lab GTS Root R1' expired on ")
    # with the new root trusted the expired cross-sign is not needed at all
    assert verify_chain(pki.served, hostname=HOST, anchors=[pki.new_root.cert], now=later).verified


@pytest.mark.parametrize(
    ("hostname", "ok"),
    [
        pytest.param("127.0.0.1", True, id="ipv4-literal-in-SAN"),
        pytest.param("::1", True, id="ipv6-literal-in-SAN"),
        pytest.param("[::1]", True, id="bracketed-ipv6"),
        pytest.param("LOCALHOST", True, id="case-insensitive"),
        pytest.param("smtp.lab.example.", True, id="trailing-dot"),
        pytest.param("10.0.0.1", False, id="ip-not-in-SAN"),
    ],
)
def test_hostname_kinds(pki: GmailShapedPki, hostname: str, ok: bool) -> None:
    assert verify_chain(pki.served, hostname=hostname, anchors=pki.anchors, now=NOW).verified is ok


@pytest.mark.parametrize(
    ("name", "hostname", "ok"),
    [
        pytest.param("*.gmail.com", "smtp.gmail.com", True, id="wildcard-one-label"),
        pytest.param("*.gmail.com", "a.b.gmail.com", False, id="wildcard-not-two-labels"),
        pytest.param("*.gmail.com", "gmail.com", False, id="wildcard-not-bare-domain"),
        pytest.param("SMTP.Gmail.com", "smtp.gmail.com", True, id="case"),
        pytest.param("10.0.0.1", "10.0.0.1", True, id="ip"),
        pytest.param("::1", "0:0::1", True, id="ipv6-normalised"),
    ],
)
def test_matches_hostname(name: str, hostname: str, ok: bool) -> None:
    assert matches_hostname(name, hostname) is ok


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        pytest.param(bytes(range(16)), "00010203 04050607 08090A0B 0C0D0E0F", id="md5-16-bytes"),
        pytest.param(bytes.fromhex("ab" * 20), " ".join(["ABABABAB"] * 5), id="sha1-20-bytes"),
    ],
)
def test_ios_fingerprint_format(digest: bytes, expected: str) -> None:
    assert format_fingerprint_ios(digest) == expected


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        pytest.param(0x01, "01", id="small"),
        pytest.param(0x80, "0080", id="high-bit-keeps-leading-00"),
        pytest.param(0x7FFF, "7FFF", id="no-padding"),
        pytest.param(0x00AB_CDEF, "00ABCDEF", id="leading-00-from-DER"),
    ],
)
def test_ios_serial_format(serial: int, expected: str) -> None:
    assert format_serial_ios(serial) == expected


def test_certificate_facts_for_table_and_json(pki: GmailShapedPki) -> None:
    facts = certificate_facts(pki.leaf.cert, 0)
    assert facts["role"] == "leaf"
    assert re.fullmatch(r"[0-9a-f]{64}", facts["sha256"])
    assert re.fullmatch(r"([0-9A-F]{8} ){3}[0-9A-F]{8}", facts["md5_ios"])
    assert re.fullmatch(r"([0-9A-F]{8} ){4}[0-9A-F]{8}", facts["sha1_ios"])
    assert re.fullmatch(r"([0-9A-F]{2})+", facts["serial_ios"])
    assert facts["subject_cn"] == HOST
    assert facts["issuer_cn"] == "Lab GTS CA 1C3"
    assert facts["is_ca"] is False
    assert datetime.fromisoformat(facts["not_after"]) == pki.leaf.cert.not_after
    assert facts["authority_key_id"] == pki.intermediate.cert.subject_key_id
    assert facts["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert certificate_facts(pki.new_root_cross, 2)["role"] == "CA"
    assert certificate_facts(pki.new_root_cross, 2)["self_signed"] is False


@pytest.mark.parametrize(
    ("pick", "position", "expected"),
    [
        pytest.param(lambda p: p.leaf.cert, 0, "leaf", id="leaf"),
        pytest.param(lambda p: p.intermediate.cert, 1, "CA", id="intermediate"),
        pytest.param(lambda p: p.new_root_cross, 2, "CA", id="cross-sign-is-not-a-root"),
        pytest.param(lambda p: p.new_root.cert, 3, "root", id="self-signed-twin"),
    ],
)
def test_role(pki: GmailShapedPki, pick: Callable[[GmailShapedPki], Certificate], position: int,
              expected: str) -> None:
    assert role(pick(pki), position) == expected


def test_top_of_sent_path_follows_signatures_not_order(pki: GmailShapedPki) -> None:
    assert top_of_sent_path([pki.leaf.cert, pki.new_root_cross, pki.intermediate.cert]) == pki.new_root_cross
    assert top_of_sent_path([pki.leaf.cert]) == pki.leaf.cert


def test_observation_reason() -> None:
    failed = ChainObservation("192.0.2.1", 587, error="192.0.2.1:587: connecting: connection refused")
    assert not failed.verified
    assert failed.reason == "192.0.2.1:587: connecting: connection refused"
    judged = ChainObservation("192.0.2.1", 587, verification=Verification(False, HOST, error="nope"))
    assert judged.reason == "nope"
    good = ChainObservation("192.0.2.1", 587, verification=Verification(True, HOST))
    assert good.verified
    assert good.reason is None
