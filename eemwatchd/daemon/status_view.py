"""From reconcile outcomes to the daemon's status model, and the one-line narrative of each job."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from eemwatchd.adapters.store import AuditEntry, Proof
from eemwatchd.config import ServerConfig
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.fingerprints import chain_text
from eemwatchd.core.reason import Reason
from eemwatchd.daemon.status import (
    AddressStatus,
    AuditLine,
    CertStatus,
    FindingStatus,
    PrestagedStatus,
    RouterStatus,
    ServerStatus,
    TrustpointStatus,
)
from eemwatchd.reconcile import RouterResult, ServerOutcome
from eemwatchd.reconcile.alerting import onboard_command
from eemwatchd.reconcile.results import CHANGE_STEPS, StepKind


def cert_status(position: int, cert: Certificate, *, role: str = "") -> CertStatus:
    return CertStatus(position=position, subject=cert.subject, issuer=cert.issuer, sha256=cert.sha256,
                      not_after=cert.not_after, is_ca=cert.is_ca, role=role)


def server_status(server: ServerConfig, outcome: ServerOutcome, *, confirmations: int, at: datetime) -> ServerStatus:
    addresses = tuple(
        AddressStatus(
            address=a.address,
            fetch_ok=bool(a.chain),
            verified=a.verified and a.pinned,
            error=a.error if a.error else (None if a.pinned else "no certificate matches the configured pins"),
            chain=tuple(cert_status(i, c) for i, c in enumerate(a.certificates)),
            times_seen=a.times_seen,
            confirmed=a.is_confirmed(confirmations),
        )
        for a in outcome.addresses
    )
    if outcome.error is not None and not addresses:
        addresses = (AddressStatus(address=server.host, fetch_ok=False, verified=False, error=outcome.error),)
    return ServerStatus(name=server.name, host=server.host, port=server.effective_port, mode=server.mode,
                        addresses=addresses, last_fetch=at,
                        prestaged=tuple(cert_status(i, c) for i, c in enumerate(server.prestaged_certificates)))


def router_status(
    host: str, result: RouterResult, *, at: datetime, proof: Proof | None, previous: RouterStatus | None
) -> RouterStatus:
    """The router's row after a job. A router that could not be read keeps what was last seen of its trust."""
    reason = result.reason
    state = Reason.IN_SYNC.value if reason is Reason.APPLIED else reason.value
    fired = result.last_test_fire
    last_ok = fired.ok if fired is not None else (previous.last_testfire_ok if previous else None)
    last_at = at if fired is not None else (previous.last_testfire_at if previous else None)
    trustpoints = tuple(
        TrustpointStatus(name=held.name, managed=held.managed, certificates=tuple(
            cert_status(i, c, role=result.roles.get(c.sha256, "none")) for i, c in enumerate(held.certificates)))
        for held in result.trustpoints
    ) if result.reachable else (previous.trustpoints if previous else ())
    prestaged = tuple(
        PrestagedStatus(server=r.server, sha256=r.certificate.sha256, trustpoint=r.held_in,
                        accepted=tuple((s.shape, s.accepted) for s in r.shapes))
        for r in result.prestaged
    ) if result.plan is not None else (previous.prestaged if previous else ())
    return RouterStatus(
        name=result.name,
        host=host,
        up=result.reachable,
        in_sync=result.in_sync,
        state=state,
        detail=describe(result),
        last_check=at,
        last_testfire_ok=last_ok,
        last_testfire_at=last_at,
        last_proven_at=proof.at if proof is not None else None,
        trustpoints=trustpoints,
        lint=tuple(FindingStatus(f.rule, f.severity, f.message) for f in result.lint) if result.reachable
        else (previous.lint if previous else ()),
        prestaged=prestaged,
    )


def describe(result: RouterResult) -> str:
    """One line: why the router is in its state."""
    if result.error_text is not None:
        return result.error_text.splitlines()[0]
    plan = result.plan
    if plan is None:
        return ""
    if result.reason is Reason.APPLIED:
        fired = result.last_test_fire
        changes = sum(1 for s in result.steps if s.ok and s.kind in CHANGE_STEPS)
        return f"{changes} change(s) applied; test-fire proved mail ({fired.evidence if fired else ''})"
    for report in plan.reports:
        if report.kind == "not-onboarded":
            return report.message
    if plan.actions:
        return f"{len(plan.adds)} add(s), {len(plan.retires)} retire(s) needed"
    for report in plan.reports:
        if report.kind in ("chain-unverified", "clock-skew", "unconfirmed", "pending", "unproven", "unsaved"):
            return report.message
    return "holds what the served chains need; proven by a test-fire; saved"


def audit_lines(entries: Iterable[AuditEntry]) -> list[AuditLine]:
    return [
        AuditLine(at=e.at, router=e.router, action=e.action, trustpoint=e.trustpoint,
                  sha256=e.sha256_after or e.sha256_before,
                  detail=(e.test_fire + ": " if e.test_fire else "") + e.reason)
        for e in entries
    ]


def narrate_server(outcome: ServerOutcome, *, confirmations: int) -> list[str]:
    """What a person watching wants to read about one server job."""
    if outcome.error is not None:
        return [f"server {outcome.name}: fetch failed: {outcome.error}"]
    lines: list[str] = []
    for a in outcome.addresses:
        chain = chain_text(a.chain) or "-"
        if not a.chain:
            lines.append(f"server {outcome.name} {a.address}: fetch failed: {a.error}")
        elif not a.verified:
            lines.append(f"server {outcome.name} {a.address}: SECURITY: chain {chain} does not verify: {a.error}")
        elif not a.pinned:
            lines.append(f"server {outcome.name} {a.address}: SECURITY: chain {chain} matches no pin")
        elif a.times_seen < confirmations:
            lines.append(f"server {outcome.name} {a.address}: new chain {chain} seen {a.times_seen} of "
                         f"{confirmations} times (waiting for confirmation)")
        elif a.times_seen == confirmations:
            lines.append(f"server {outcome.name} {a.address}: chain {chain} confirmed")
        if a.changed_from:
            lines.append(f"server {outcome.name} {a.address}: chain CHANGED from "
                         f"{chain_text(a.changed_from)} to {chain}")
    return lines


def narrate_router(result: RouterResult, *, previous: RouterStatus | None = None, config: str = "FILE") -> list[str]:
    """What a person watching wants to read about one router job. A state that is not an error is told once,
    when the router enters it (``previous``: its row before this job), not on every check: a router that is
    not onboarded is reported once, with the command that onboards it (``config``: the daemon's file)."""
    lines: list[str] = []
    for step in result.steps:
        if step.kind is StepKind.TEST_FIRE:
            lines.append(f"router {result.name}: test-fire {'PROVED mail works' if step.ok else 'FAILED'}: "
                         f"{step.evidence or step.detail}")
        elif step.kind in (StepKind.ADD, StepKind.RETIRE, StepKind.ROLLBACK, StepKind.OBSERVED):
            lines.append(f"router {result.name}: {step.kind} {step.trustpoint or ''} "
                         f"{'ok' if step.ok else 'FAILED'}: {step.detail}")
        elif step.kind is StepKind.SAVE:
            lines.append(f"router {result.name}: {'saved (write memory)' if step.ok else step.detail}")
    state = result.reason
    if state in (Reason.IN_SYNC,) and not result.steps:
        return lines
    detail = describe(result)
    unchanged = previous is not None and previous.state == state.value and previous.detail == detail
    if unchanged and not state.is_error and not result.steps:
        return lines
    if state is Reason.NOT_ONBOARDED:
        detail += f"; onboard it with: {onboard_command(result.name, config)}"
    lines.append(f"router {result.name}: {state}: {detail}")
    return lines
