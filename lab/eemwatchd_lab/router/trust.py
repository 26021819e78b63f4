"""The lab router's own verdict on a server's chain, IOS's rule on an independent verifier.

The lab must not borrow the product's rule (`eemwatchd.core.ios.trust`): a wrong rule would then pass
every test by construction. Here the rule is only the outer shape, read from the one real IOS debug log
(docs/field-notes.md sec. 1b); every path, signature, validity, basicConstraints, keyUsage and path-length
decision is made by cryptography's X.509 path validation (`cryptography.x509.verification`, Rust).

Strict (IOS, the default): the chain is validated as the server sent it, and EVERY sent certificate must
validate on its own. For each one the verifier is asked for a path from it to the installed
certificates, all of them trust anchors (so an installed intermediate ends a path, as a trustpoint does),
with the other sent certificates as the only untrusted intermediates. A sent certificate identical to an
installed one is a path of length one ("Check for identical certs"); otherwise an installed certificate
or a sent one that itself validates must have signed it. An installed look-alike (same subject and key)
may end the path of a sent certificate's child, but never stands in for the sent certificate itself,
because that one is asked about too: the self-signed GTS Root R1 alone does not validate the sent
cross-signed R1 ("No trust point for cert issuer").

Lenient: one question, for the leaf only: any path to an installed certificate, installed first
(OpenSSL's "trusted first"), so a look-alike may replace a sent certificate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from eemwatchd.core.certificate import Certificate


@dataclass(frozen=True)
class ChainVerdict:
    """``ok``, the trustpoint the chain was anchored to, and a one-line reason in IOS's words."""

    ok: bool
    anchor_trustpoint: str | None
    reason: str


def _issuer_is_ca(_policy: Policy, _cert: x509.Certificate, value: x509.BasicConstraints) -> None:
    if not value.ca:
        raise ValueError("basicConstraints says CA:FALSE")


def _issuer_signs_certificates(_policy: Policy, _cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    # RFC 5280 4.2.1.3: without keyUsage any use is allowed; with it, keyCertSign must be set.
    if value is not None and not value.key_cert_sign:
        raise ValueError("keyUsage without keyCertSign")


# Issuers (installed or sent): basicConstraints CA:TRUE required, keyCertSign if keyUsage is present; the
# verifier itself adds validity, signature algorithm, key size and path length. No other extension is
# required (webpki's defaults would also demand critical basicConstraints and keyUsage on every CA).
_ISSUER_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _issuer_is_ca)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _issuer_signs_certificates)
)
# The certificate asked about may be a leaf or a CA (every sent certificate is asked about in turn);
# the verifier still checks its validity period.
_TARGET_POLICY = ExtensionPolicy.permit_all()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@dataclass(frozen=True)
class _Installed:
    names: Mapping[bytes, str]  # DER -> the first trustpoint holding it
    subjects: frozenset[x509.Name]
    verifier: ClientVerifier | None  # None: nothing installed, nothing can validate


def _installed(trustpoints: Mapping[str, Sequence[Certificate]], now: datetime) -> _Installed:
    names: dict[bytes, str] = {}
    anchors: list[x509.Certificate] = []
    for name, certs in trustpoints.items():
        for cert in certs:
            if cert.der not in names:
                names[cert.der] = name
                anchors.append(cert.x509)
    verifier = None
    if anchors:
        verifier = (
            PolicyBuilder()
            .store(Store(anchors))
            .time(now)
            .extension_policies(ca_policy=_ISSUER_POLICY, ee_policy=_TARGET_POLICY)
            .build_client_verifier()
        )
    return _Installed(names, frozenset(a.subject for a in anchors), verifier)


def _path(installed: _Installed, target: Certificate, sent: Sequence[Certificate]) -> list[x509.Certificate] | str:
    """The verifier's path from ``target`` to an installed certificate (target first), or its error."""
    if installed.verifier is None:
        return "no certificate is installed in any trustpoint"
    others = [c.x509 for c in sent if c != target]
    try:
        return installed.verifier.verify(target.x509, others).chain
    except VerificationError as exc:
        return str(exc)


def _ios_time(moment: datetime) -> str:
    return f"{moment:%H:%M:%S} UTC {moment:%b} {moment.day} {moment:%Y}"  # `11:53:58 UTC Jun 1 2025`


# The wording of %PKI-3-CERTIFICATE_INVALID_EXPIRED ("... The certificate (SN: 1DF9761C0000001C9621) has
# expired. Validity period ended on 11:53:58 UTC Jun 1 2025", an AP console quoted in a public repository)
# and %PKI-3-CERTIFICATE_INVALID_NOT_YET_VALID ("... is not yet valid   Validity period starts on 00:51:51 UTC
# Feb 23 2026", a lab's notes); "No trust point for cert issuer" is the debug log's (docs/field-notes.md sec. 1b).
_INVALID = "Certificate chain validation has failed. The certificate (SN: {serial})"


def _explain(
    index: int, error: str, sent: Sequence[Certificate], installed: _Installed, now: datetime
) -> tuple[int, str]:
    """(rank, reason) for a sent certificate the verifier refused; lower ranks are the likelier cause."""
    cert = sent[index]
    what = f"sent certificate {index + 1} {cert.common_name!r}"
    invalid = _INVALID.format(serial=cert.serial_ios)
    if now > cert.not_after:
        return 0, f"{invalid} has expired. Validity period ended on {_ios_time(cert.not_after)} ({what})"
    if now < cert.not_before:
        return 0, f"{invalid} is not yet valid   Validity period starts on {_ios_time(cert.not_before)} ({what})"
    issuer = cert.x509.issuer
    if issuer not in installed.subjects and all(c.x509.subject != issuer for c in sent if c != cert):
        return 1, f"No trust point for cert issuer {cert.issuer or '(empty issuer)'} ({what})"
    return 2, f"Certificate chain validation has failed for {what}: {error}"


def _anchor_name(installed: _Installed, path: list[x509.Certificate]) -> str:
    return installed.names[_der(path[-1])]


def validate_chain(
    sent: Sequence[Certificate],
    trustpoints: Mapping[str, Sequence[Certificate]],
    now: datetime,
    *,
    lenient: bool = False,
) -> ChainVerdict:
    """Whether the lab router accepts ``sent`` (leaf first) with these trustpoint certificates at ``now``.

    Strict: the anchor reported is the one the top-most sent certificate's path ends at (what IOS logs
    as "chain cert was anchored to trustpoint X").
    """
    if not sent:
        return ChainVerdict(False, None, "the server sent no certificate")
    installed = _installed(trustpoints, now)
    if lenient:
        path = _path(installed, sent[0], sent)
        if isinstance(path, str):
            return ChainVerdict(False, None, _explain(0, path, sent, installed, now)[1] + " (lenient)")
        name = _anchor_name(installed, path)
        return ChainVerdict(True, name, f"chain was anchored to trustpoint {name} (lenient)")
    paths = [_path(installed, cert, sent) for cert in sent]
    refused = [
        _explain(index, path, sent, installed, now) for index, path in enumerate(paths) if isinstance(path, str)
    ]
    if refused:
        return ChainVerdict(False, None, min(refused, key=lambda r: r[0])[1])
    top = paths[-1]
    assert not isinstance(top, str)
    name = _anchor_name(installed, top)
    return ChainVerdict(True, name, f"chain cert was anchored to trustpoint {name}")
