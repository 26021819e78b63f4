"""Judging a served chain: verify it for a hostname against trust anchors, and describe it for people."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from eemwatchd.core.certificate import Certificate


@dataclass(frozen=True)
class Verification:
    """The verdict on one served chain: the path leaf first, anchor last, or the reason there is none."""

    verified: bool
    hostname: str
    path: tuple[Certificate, ...] = ()
    anchor: Certificate | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.verified and self.anchor is not None:
            steps = " -> ".join(c.common_name for c in self.path)
            return f"verified for {self.hostname}: {steps} (anchor {self.anchor.describe()})"
        return f"NOT verified for {self.hostname}: {self.error}"


@dataclass(frozen=True)
class ChainObservation:
    """What one address of a server sent and how it was judged (or why nothing could be fetched)."""

    address: str
    port: int
    chain: tuple[Certificate, ...] = ()
    verification: Verification | None = None
    error: str | None = None  # the fetch failed: one-line reason
    aia_fetched: tuple[Certificate, ...] = field(default=())  # issuers completed via AIA, not sent

    @property
    def verified(self) -> bool:
        return self.error is None and self.verification is not None and self.verification.verified

    @property
    def reason(self) -> str | None:
        """Why this address is not OK, or None when it is."""
        if self.error is not None:
            return self.error
        if self.verification is None:
            return "not verified"
        return None if self.verification.verified else self.verification.error


def _subject_for(hostname: str) -> DNSName | IPAddress:
    try:
        return IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return DNSName(hostname)


def verify_chain(
    chain: Sequence[Certificate],
    *,
    hostname: str,
    anchors: Sequence[Certificate],
    now: datetime,
) -> Verification:
    """Verify ``chain`` (leaf first, as sent) for ``hostname`` at ``now`` against ``anchors``.

    Self-signed certificates among the sent intermediates are dropped first: they can never be a link
    (only an anchor), and left in they make the verifier report a misleading "exceeds max depth".
    """
    host = hostname.rstrip(".").strip("[]")
    if not chain:
        return Verification(False, host, error="the server sent no certificate")
    if not anchors:
        return Verification(False, host, error="the trust store is empty")
    leaf, *rest = chain
    intermediates = [c.x509 for c in rest if not c.is_self_signed]
    try:
        subject = _subject_for(host)
    except ValueError as exc:
        return Verification(False, host, error=f"{host!r} is not a valid host name ({exc})")
    try:
        store = Store([a.x509 for a in anchors])
        verifier = PolicyBuilder().store(store).time(now).build_server_verifier(subject)
        built = verifier.verify(leaf.x509, intermediates)
    except (VerificationError, ValueError) as exc:
        return Verification(
            False,
            host,
            error=explain_failure(chain, hostname=host, anchors=anchors, now=now, library_reason=str(exc)),
        )
    path = tuple(_as_certificate(c, chain, anchors) for c in built)
    return Verification(True, host, path=path, anchor=path[-1])


def _as_certificate(
    cert: x509.Certificate, chain: Sequence[Certificate], anchors: Sequence[Certificate]
) -> Certificate:
    der = cert.public_bytes(Encoding.DER)
    for known in (*chain, *anchors):
        if known.der == der:
            return known
    return Certificate(der)


_ENCOUNTERED = re.compile(r"\s*\(encountered processing .*\)\s*$", re.DOTALL)


def explain_failure(
    chain: Sequence[Certificate],
    *,
    hostname: str,
    anchors: Sequence[Certificate],
    now: datetime,
    library_reason: str,
) -> str:
    """A one-line reason a network engineer can act on, checked in the order a person would look."""
    leaf = chain[0]
    if now > leaf.not_after:
        return f"the leaf {leaf.common_name!r} expired on {leaf.not_after:%Y-%m-%d %H:%M} UTC"
    if now < leaf.not_before:
        return f"the leaf {leaf.common_name!r} is not valid before {leaf.not_before:%Y-%m-%d %H:%M} UTC"
    names = leaf_names(leaf)
    if not any(matches_hostname(name, hostname) for name in names):
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") if names else "no names at all"
        return f"the leaf is for {shown}; not for {hostname}"
    for position, cert in enumerate(chain[1:], start=2):
        if now > cert.not_after:
            return (
                f"sent certificate {position} {cert.common_name!r} expired on {cert.not_after:%Y-%m-%d} UTC"
            )
    top = top_of_sent_path(chain)
    if top.is_self_signed and top not in anchors:
        if top is leaf:
            return f"the leaf {leaf.common_name!r} is self-signed and not in the trust store"
        return f"the chain ends at the self-signed {top.common_name!r}, which is not in the trust store"
    issuer_anchors = [a for a in anchors if a.x509.subject == top.x509.issuer]
    if not issuer_anchors and not top.is_self_signed:
        issuer_cn = _issuer_cn(top)
        what = "the leaf" if top is leaf else f"{top.common_name!r}, the last sent certificate in the path"
        return (
            f"no trust anchor for {issuer_cn!r} (issuer of {what}): the server does not send it and the "
            "trust store does not hold it"
        )
    expired = [a for a in issuer_anchors if now > a.not_after]
    if expired and len(expired) == len(issuer_anchors):
        return f"the trust anchor {expired[0].common_name!r} expired on {expired[0].not_after:%Y-%m-%d} UTC"
    return _ENCOUNTERED.sub("", library_reason) or "no valid path to a trust anchor"


def top_of_sent_path(chain: Sequence[Certificate]) -> Certificate:
    """Follow issuers from the leaf through the sent certificates (in any order) as far as they go."""
    current = chain[0]
    seen = {current.der}
    while not current.is_self_signed:
        nxt = next((c for c in chain if c.der not in seen and current.is_signed_by(c)), None)
        if nxt is None:
            break
        seen.add(nxt.der)
        current = nxt
    return current


def _issuer_cn(cert: Certificate) -> str:
    attrs = cert.x509.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if attrs:
        value = attrs[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return cert.issuer


def leaf_names(cert: Certificate) -> list[str]:
    """The DNS names and IP addresses in the subjectAltName (what verification matches against)."""
    try:
        san = cert.x509.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    assert isinstance(san, x509.SubjectAlternativeName)
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def matches_hostname(name: str, hostname: str) -> bool:
    """RFC 6125 matching: case-insensitive, a wildcard only as the whole left-most label."""
    try:
        return ipaddress.ip_address(name) == ipaddress.ip_address(hostname)
    except ValueError:
        pass
    name, hostname = name.lower().rstrip("."), hostname.lower().rstrip(".")
    if name.startswith("*."):
        head, _, tail = hostname.partition(".")
        return bool(head) and tail == name[2:]
    return name == hostname


# --- describing certificates for tables and JSON ---------------------------------------------------


def role(cert: Certificate, position: int) -> str:
    """``leaf`` for the first sent certificate, ``root`` for a self-signed CA, else ``CA`` (or ``non-CA``)."""
    if position == 0:
        return "leaf"
    if cert.is_self_signed:
        return "root"
    return "CA" if cert.is_ca else "non-CA"


def certificate_facts(cert: Certificate, position: int) -> dict[str, Any]:
    """Everything a person or a script wants to know about one sent certificate (JSON-ready)."""
    return {
        "position": position,
        "role": role(cert, position),
        "sha256": cert.sha256,
        "sha1_ios": cert.sha1_ios,
        "md5_ios": cert.md5_ios,
        "serial_ios": cert.serial_ios,
        "subject": cert.subject,
        "subject_cn": cert.common_name,
        "issuer": cert.issuer,
        "issuer_cn": _issuer_cn(cert),
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "is_ca": cert.is_ca,
        "self_signed": cert.is_self_signed,
        "subject_key_id": cert.subject_key_id,
        "authority_key_id": cert.authority_key_id,
        "ca_issuer_urls": list(cert.ca_issuer_urls),
        "pem": cert.pem,
    }


def issuer_common_name(cert: Certificate) -> str:
    return _issuer_cn(cert)
