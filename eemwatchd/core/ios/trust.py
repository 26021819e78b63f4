"""How IOS decides whether a TLS server's chain is trusted by its trustpoints (docs/field-notes.md sec. 1b).

The only real evidence is the debug log of the original tech note: the router looked up every certificate
the server sent ("Check for identical certs"), trusted a sent certificate only when the identical one was
installed, and otherwise validated it with the trustpoint of ITS issuer ("Suitable trustpoints are:
CA-GlobalSign-Root" ... "chain cert was anchored to trustpoint CA-GlobalSign-Root"). An installed
certificate with the same subject and key but another serial (the self-signed GTS Root R1 twin) was NOT
used in place of the sent cross-signed one. With no trustpoints it failed: "No trust point for cert issuer".

Strict mode (the default) therefore requires EVERY sent certificate to validate, each one either
identical to an installed certificate, or signed by an installed certificate, or signed by another sent
certificate that itself validated. Lenient mode only requires a path from the leaf to any installed
certificate, allowing an installed look-alike (same subject and key) to stand in for a sent certificate,
as OpenSSL's "trusted first" does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from eemwatchd.core.certificate import Certificate


@dataclass(frozen=True)
class IosValidation:
    """The outcome: ``ok``, the trustpoint the chain was anchored to, and a one-line reason."""

    ok: bool
    anchor_trustpoint: str | None
    reason: str


@dataclass(frozen=True)
class _Verdict:
    ok: bool
    anchor: str | None
    reason: str


def _installed(trustpoints: Mapping[str, Sequence[Certificate]]) -> list[tuple[str, Certificate]]:
    return [(name, cert) for name, certs in trustpoints.items() for cert in certs]


def _time_problem(cert: Certificate, now: datetime, what: str) -> str | None:
    if now > cert.not_after:
        return f"{what} {cert.common_name!r} expired at {cert.not_after:%Y-%m-%d %H:%M:%S} UTC"
    if now < cert.not_before:
        return f"{what} {cert.common_name!r} is not valid before {cert.not_before:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _issuer_text(cert: Certificate) -> str:
    return cert.issuer or "(empty issuer)"


def _too_deep(issuer: Certificate, below: int) -> bool:
    """``issuer`` would sign a path with more intermediate CA certificates under it than its pathLenConstraint
    allows (RFC 5280 6.1.4 (l), (m))."""
    return issuer.path_length is not None and below > issuer.path_length


def _validate_sent(
    index: int,
    sent: Sequence[Certificate],
    installed: list[tuple[str, Certificate]],
    now: datetime,
    memo: dict[tuple[int, int | None], _Verdict],
    visiting: set[int],
    below: int | None = None,
) -> _Verdict:
    """Whether sent certificate ``index`` validates. ``below``: how many intermediate CA certificates lie between
    it and the certificate whose path is being built; None when it is that certificate."""
    key = (index, below)
    if key in memo:
        return memo[key]
    cert = sent[index]
    what = f"sent certificate {index + 1}"
    problem = _time_problem(cert, now, what)
    if problem:
        verdict = _Verdict(False, None, problem)
        memo[key] = verdict
        return verdict
    # 1. "Check for identical certs": the very same DER installed in a trustpoint (its own constraints apply).
    for name, candidate in installed:
        if candidate == cert and not _too_deep(cert, below or 0):
            verdict = _Verdict(True, name, f"{what} {cert.common_name!r} is installed in trustpoint {name}")
            memo[key] = verdict
            return verdict
    # Intermediates between the certificate being validated and this one's issuer (a self-issued one does not
    # count, RFC 5280 6.1.4 (l)).
    under = 0 if below is None else below + (0 if cert.is_self_issued else 1)
    # 2. "Suitable trustpoints are: X": an installed CA certificate that signed it.
    expired_issuer: str | None = None
    for name, candidate in installed:
        if candidate.can_sign_certificates and not _too_deep(candidate, under) and cert.is_signed_by(candidate):
            issue = _time_problem(candidate, now, f"installed issuer in trustpoint {name}")
            if issue:
                expired_issuer = issue
                continue
            verdict = _Verdict(True, name, f"{what} {cert.common_name!r} was anchored to trustpoint {name}")
            memo[key] = verdict
            return verdict
    # 3. Another sent certificate that signed it and itself validated.
    visiting.add(index)
    upper_failure: str | None = None
    for other_index, other in enumerate(sent):
        if other_index == index or other_index in visiting:
            continue
        if other.can_sign_certificates and not _too_deep(other, under) and cert.is_signed_by(other):
            upper = _validate_sent(other_index, sent, installed, now, memo, visiting, under)
            if upper.ok:
                visiting.discard(index)
                verdict = _Verdict(True, upper.anchor, upper.reason)
                memo[key] = verdict
                return verdict
            upper_failure = upper_failure or upper.reason
    visiting.discard(index)
    reason = (
        upper_failure
        or expired_issuer
        or (f"No trust point for cert issuer {_issuer_text(cert)} ({what} {cert.common_name!r})")
    )
    verdict = _Verdict(False, None, reason)
    memo[key] = verdict
    return verdict


def _validate_lenient(
    sent: Sequence[Certificate], installed: list[tuple[str, Certificate]], now: datetime
) -> IosValidation:
    """A path from the leaf to any installed certificate; installed look-alikes may replace sent ones."""
    leaf = sent[0]
    problem = _time_problem(leaf, now, "leaf")
    if problem:
        return IosValidation(False, None, problem)
    pool = list(sent[1:])
    current = leaf
    seen: set[bytes] = {leaf.der}
    below = 0  # intermediate CA certificates walked through so far
    for _ in range(len(sent) + len(installed) + 1):
        for name, candidate in installed:
            if candidate == current and (current is leaf or not _too_deep(current, below - 1)):
                return IosValidation(True, name, f"chain was anchored to trustpoint {name} (lenient)")
        # Installed issuers first ("trusted first"), then sent ones.
        for name, candidate in installed:
            if (candidate.can_sign_certificates and not _too_deep(candidate, below) and current.is_signed_by(candidate)
                    and candidate.is_valid_at(now)):
                return IosValidation(True, name, f"chain was anchored to trustpoint {name} (lenient)")
        nxt = next(
            (
                c
                for c in pool
                if c.der not in seen and c.can_sign_certificates and not _too_deep(c, below)
                and current.is_signed_by(c) and c.is_valid_at(now)
            ),
            None,
        )
        if nxt is None:
            return IosValidation(
                False, None, f"No trust point for cert issuer {_issuer_text(current)} (lenient)"
            )
        seen.add(nxt.der)
        below += 0 if nxt.is_self_issued else 1
        current = nxt
    return IosValidation(False, None, "chain too long or looping (lenient)")


def validate_as_ios(
    sent: Sequence[Certificate],
    trustpoints: Mapping[str, Sequence[Certificate]],
    now: datetime,
    *,
    lenient: bool = False,
) -> IosValidation:
    """Whether IOS would accept the chain ``sent`` (leaf first) with these trustpoint certificates at ``now``.

    Strict (default): every sent certificate must validate; the anchor reported is the one of the
    top-most sent certificate (the one IOS logs as "chain cert was anchored to trustpoint X").
    """
    if not sent:
        return IosValidation(False, None, "the server sent no certificate")
    installed = _installed(trustpoints)
    if lenient:
        return _validate_lenient(sent, installed, now)
    memo: dict[tuple[int, int | None], _Verdict] = {}
    for index in range(len(sent)):
        verdict = _validate_sent(index, sent, installed, now, memo, set())
        if not verdict.ok:
            return IosValidation(False, None, verdict.reason)
    top = memo[(len(sent) - 1, None)]
    return IosValidation(True, top.anchor, f"chain cert was anchored to trustpoint {top.anchor}")
