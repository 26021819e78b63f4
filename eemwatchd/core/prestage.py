"""Pre-staged certificates: CA certificates a provider announced, installed before its chains move to them.

Two pure judgements, the clock and the trust store as arguments:

- ``judge_prestaged``: may this certificate be pre-staged at all? A CA that can sign certificates, within its
  validity, and trusted: it matches the pin its file was given, or it is a self-signed root present in the
  server's trust store, or it verifies to that store (cryptography's X.509 path building, as served chains do;
  a cross-signed root or an intermediate verifies through its signer).
- ``prestage_readiness``: which shapes of the provider's future chain would the router accept today, with what
  it holds? IOS validates the chain as sent (docs/field-notes.md sec. 1b), so the answer depends on how the
  provider will send the pre-staged CA: not at all (the top sent certificate is signed by it), itself on top, or
  a cross-sign of it on top (which needs its cross-signer held, or the cross-sign itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.chain import issuer_common_name
from eemwatchd.core.ios.trust import validate_as_ios


@dataclass(frozen=True)
class Prestaged:
    """A CA certificate pre-staged for ``server``: desired on every router that mails through it."""

    server: str
    certificate: Certificate
    source: str  # the file it was read from, for reasons and messages


@dataclass(frozen=True)
class PrestageVerdict:
    """Whether a certificate may be pre-staged: ``ok`` with how it is trusted, or the reason it is refused."""

    ok: bool
    reason: str
    trust_store: bool = False  # refused by the trust store (the others do not depend on the server)


def _ca_problem(cert: Certificate) -> str | None:
    if not cert.is_ca:
        return "is not a CA certificate (no basicConstraints CA:TRUE); pre-stage the provider's root or " \
               "intermediate, not a server certificate"
    if not cert.can_sign_certificates:
        return "is a CA certificate whose keyUsage lacks keyCertSign: it cannot sign the certificates a router " \
               "would check with it"
    return None


def _time_problem(cert: Certificate, now: datetime) -> str | None:
    if now > cert.not_after:
        return f"expired on {cert.not_after:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_before:
        return f"is not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC"
    return None


def verify_ca(
    cert: Certificate, *, anchors: Sequence[Certificate], intermediates: Sequence[Certificate], now: datetime
) -> tuple[Certificate, ...] | str:
    """The path from CA certificate ``cert`` to one of ``anchors`` (``cert`` first), or why there is none.

    The same path building as a served chain's (cryptography's x509.verification), with the web PKI's CA rules
    applied to ``cert`` too: it is checked as the CA it is, not as a server certificate (no host name).
    """
    ca_rules = ExtensionPolicy.webpki_defaults_ca()
    try:
        verifier = (PolicyBuilder().store(Store([a.x509 for a in anchors])).time(now)
                    .extension_policies(ca_policy=ca_rules, ee_policy=ca_rules).build_client_verifier())
        built = verifier.verify(cert.x509, [c.x509 for c in intermediates if c != cert and not c.is_self_signed])
    except (VerificationError, ValueError) as exc:
        text = str(exc).split(" (encountered processing", 1)[0]
        return text.removeprefix("validation failed: ") or "no path to a trust anchor"
    known = {c.der: c for c in (*anchors, *intermediates, cert)}
    out = []
    for item in built.chain:
        der = item.public_bytes(Encoding.DER)
        out.append(known.get(der) or Certificate(der))
    return tuple(out)


def judge_prestaged(
    cert: Certificate,
    *,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate] = (),
    pin: str | None = None,
    now: datetime,
) -> PrestageVerdict:
    """May ``cert`` be pre-staged? ``anchors``: the server's trust store; ``intermediates``: the other pre-staged
    certificates of the server (a cross-sign may verify through another); ``pin``: the SHA-256 its file was
    pinned to (then it need not chain to the trust store, but must match)."""
    for problem in (_ca_problem(cert), _time_problem(cert, now)):
        if problem is not None:
            return PrestageVerdict(False, problem)
    if pin is not None:
        wanted = pin.replace(":", "").strip().lower()
        if cert.sha256 != wanted:
            return PrestageVerdict(False, f"has SHA-256 {cert.sha256}, not the pinned {wanted}: this is not the "
                                          "certificate the pin names (check the file and the fingerprint you "
                                          "copied from the provider)")
        return PrestageVerdict(True, "matches its pinned SHA-256")
    if cert.is_self_signed and cert in anchors:
        return PrestageVerdict(True, "a self-signed root present in the trust store")
    path = verify_ca(cert, anchors=anchors, intermediates=intermediates, now=now)
    if isinstance(path, str):
        what = "is a self-signed root that is not in the trust store" if cert.is_self_signed else \
            f"does not verify to the trust store ({path})"
        return PrestageVerdict(False, f"{what}, and no sha256 pins it: add the root to the trust store "
                                      "(servers[].ca_file or policy.trust_store), or pin the file with "
                                      "{file: PATH, sha256: HEX} after checking its fingerprint with the provider",
                               trust_store=True)
    steps = " -> ".join(c.common_name for c in path[1:])
    return PrestageVerdict(True, f"verifies to the trust store via {steps}")


# --- which future chains the router would accept today ------------------------------------------------------

Shape = Literal["signed-by", "on-top", "cross-signed-on-top"]


@dataclass(frozen=True)
class ChainShape:
    """One way the provider may send a chain that uses the pre-staged CA; ``accepted`` None: cannot tell."""

    shape: Shape
    description: str
    accepted: bool | None
    why: str


@dataclass(frozen=True)
class Readiness:
    """What a router holding ``held_in`` (None: not held) would accept of one pre-staged certificate's chains."""

    server: str
    certificate: Certificate
    source: str
    held_in: str | None
    shapes: tuple[ChainShape, ...]


def _same_key(a: Certificate, b: Certificate) -> bool:
    return a.x509.subject == b.x509.subject and a.public_key_der == b.public_key_der


def _signed_by(cert: Certificate, held: Sequence[tuple[str, Certificate]], now: datetime) -> ChainShape:
    """The top sent certificate was issued by ``cert``, which is not sent: IOS needs an installed certificate whose
    key verifies that signature ("Suitable trustpoints are: ..."), i.e. ``cert`` or one with its subject and key."""
    description = f"the top sent certificate is signed by {cert.common_name} (not sent)"
    signers = [(name, h) for name, h in held if _same_key(h, cert) and h.can_sign_certificates]
    valid = [(name, h) for name, h in signers if h.is_valid_at(now)]
    if valid:
        name, holder = valid[0]
        limit = "; pathLenConstraint 0: only a leaf it signs itself" if holder.path_length == 0 else ""
        return ChainShape("signed-by", description, True, f"trustpoint {name} holds its key{limit}")
    if signers:
        return ChainShape("signed-by", description, False, f"trustpoint {signers[0][0]} holds its key, but that "
                                                          "certificate is not valid now")
    return ChainShape("signed-by", description, False, "no trustpoint holds it (apply installs it)")


def _sent_on_top(cert: Certificate, what: str, shape: Shape, description: str,
                 trustpoints: Mapping[str, Sequence[Certificate]], now: datetime, lenient: bool) -> ChainShape:
    # IOS checks every sent certificate (docs/field-notes.md sec. 1b); what lies below a validated one validates
    # through it, so the chain's fate is the top sent certificate's.
    verdict = validate_as_ios([cert], trustpoints, now, lenient=lenient)
    if verdict.ok:
        return ChainShape(shape, description, True, verdict.reason.replace("sent certificate 1", what))
    return ChainShape(shape, description, False, verdict.reason.replace("sent certificate 1", what))


def prestage_readiness(
    prestaged: Sequence[Prestaged], trustpoints: Mapping[str, Sequence[Certificate]], now: datetime, *,
    lenient: bool = False,
) -> list[Readiness]:
    """For each pre-staged certificate, the shapes of the provider's future chains and whether the router, holding
    ``trustpoints``, would accept each today (the IOS rule; ``lenient`` as policy.strict_ios_validation: false). A
    cross-sign that is not pre-staged itself is unknown: its signer decides, and nothing here names it."""
    held = [(name, c) for name, certs in trustpoints.items() for c in certs]
    out: list[Readiness] = []
    for item in prestaged:
        cert = item.certificate
        holder = next((name for name, c in held if c == cert), None)
        shapes = [_signed_by(cert, held, now),
                  _sent_on_top(cert, cert.common_name, "on-top", f"{cert.common_name} itself sent on top",
                               trustpoints, now, lenient)]
        if cert.is_self_signed:
            crosses = [p.certificate for p in prestaged
                       if p.server == item.server and p.certificate != cert and _same_key(p.certificate, cert)]
            for cross in crosses:
                signer = issuer_common_name(cross)
                shapes.append(_sent_on_top(
                    cross, f"the cross-sign by {signer}", "cross-signed-on-top",
                    f"{cert.common_name} cross-signed by {signer} [{cross.short_fingerprint}] sent on top",
                    trustpoints, now, lenient))
            if not crosses:
                shapes.append(ChainShape(
                    "cross-signed-on-top", f"a cross-sign of {cert.common_name} by another CA sent on top", None,
                    "accepted only if the router holds the cross-signer (IOS does not use the self-signed root in "
                    "its place); pre-stage the cross-sign, or its signer, to know"))
        out.append(Readiness(item.server, cert, item.source, holder, tuple(shapes)))
    return out

