"""What reconcile jobs produce: per-address, per-server and per-router outcomes, with a reason code."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from eemwatchd.adapters.alerts import Alert
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.desired import is_confirmed
from eemwatchd.core.lint import Finding
from eemwatchd.core.plan import RouterPlan
from eemwatchd.core.prestage import Readiness
from eemwatchd.core.reason import Reason
from eemwatchd.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandRefused,
    EemwatchdError,
    HostKeyRejected,
    ParseError,
    RouterTimeout,
    RouterUnreachable,
)

# Each router's steps as they happen (INFO): `plan -v`/`apply -v` show them live; the daemon tells them in its
# narrative after each job, so `eemwatchd run` shows these only with -v.
steps_log = logging.getLogger("eemwatchd.steps")


class RunProgress(Protocol):
    """Who follows a run router by router (the progress line of plan and apply on a terminal)."""

    def router_started(self, name: str) -> None: ...

    def router_finished(self, result: RouterResult) -> None: ...


class ApplyFailed(EemwatchdError):
    """A step of apply failed; what was done so far is in the router's steps."""

    reason = Reason.FAILED

    def __init__(self, message: str, *, reason: Reason = Reason.FAILED) -> None:
        super().__init__(message)
        self.reason = reason


class Interrupted(ApplyFailed):
    """Apply stopped between two steps: a signal, or the router's `timeouts.total` ran out."""

    def __init__(self, message: str, *, reason: Reason = Reason.INTERRUPTED) -> None:
        super().__init__(message, reason=reason)


def without_router(error: str, router: str) -> str:
    """``error`` without the ``router NAME: `` a RouterError's text starts with: for lines that name the router
    already (the one place that strips it)."""
    return error.removeprefix(f"router {router}: ")


def reason_for(exc: BaseException) -> Reason:
    """The reason code of an error that ended a router's job (order: most specific first)."""
    if isinstance(exc, ApplyFailed):
        return exc.reason
    for kind, reason in (
        (HostKeyRejected, Reason.HOST_KEY_REJECTED),
        (AuthenticationFailed, Reason.AUTH_FAILED),
        (RouterTimeout, Reason.TIMEOUT),
        (RouterUnreachable, Reason.UNREACHABLE),
        (CommandRefused, Reason.REFUSED),
        (CommandFailed, Reason.COMMAND_FAILED),
        (ParseError, Reason.PARSE_ERROR),
    ):
        if isinstance(exc, kind):
            return reason
    return Reason.FAILED


@dataclass(frozen=True)
class AddressOutcome:
    address: str
    chain: tuple[str, ...]
    verified: bool
    error: str | None
    times_seen: int = 0
    pinned: bool = True  # False: verified, but no certificate matches the server's pins (a security event)
    changed_from: tuple[str, ...] = ()  # the last verified chain before this one, when this one is new here
    certificates: tuple[Certificate, ...] = ()  # the chain as sent (for status pages and metrics)

    def is_confirmed(self, confirmations: int) -> bool:
        """This address's chain is acted on (core.desired.is_confirmed)."""
        return is_confirmed(verified=self.verified, pinned=self.pinned, times_seen=self.times_seen,
                            confirmations=confirmations)


@dataclass(frozen=True)
class ServerOutcome:
    name: str
    addresses: tuple[AddressOutcome, ...]
    error: str | None = None

    @property
    def trusted(self) -> bool:
        """Every address answered with a verified chain that matches the pins."""
        return self.error is None and bool(self.addresses) and all(
            a.verified and a.pinned for a in self.addresses
        )


class StepKind(StrEnum):
    """What one step of a router's job did (the words of the audit, the log and `--json`)."""

    ADD = "add"
    RETIRE = "retire"
    TEST_FIRE = "test-fire"
    ROLLBACK = "rollback"  # a retired certificate put back after a failed test-fire
    SAVE = "save"
    OBSERVED = "observed"  # a change the router shows that the audit did not explain


CHANGE_STEPS = frozenset({StepKind.ADD, StepKind.RETIRE})


@dataclass(frozen=True)
class HeldTrustpoint:
    """A trustpoint the router holds: its name, whether eemwatchd manages it, and its CA certificates."""

    name: str
    managed: bool
    certificates: tuple[Certificate, ...]


@dataclass(frozen=True)
class AppliedStep:
    kind: StepKind
    trustpoint: str | None
    sha256: str | None
    ok: bool
    detail: str
    evidence: str | None = None  # test-fire: what proved it (or the router's words refusing it)


@dataclass
class RouterResult:
    """Everything one router's job produced. ``result`` is set by apply only."""

    name: str
    reachable: bool = False
    applying: bool = False  # an apply job (it may change the router), not a plan
    error: str | None = None
    error_reason: Reason | None = None
    # as read, kept current by apply's adds and retires
    trustpoints: list[HeldTrustpoint] = field(default_factory=list)
    # every certificate each trustpoint holds with its kind (ca, identity, self-signed), as read
    certificates: dict[str, tuple[tuple[str, Certificate], ...]] = field(default_factory=dict)
    plan: RouterPlan | None = None
    lint: list[Finding] = field(default_factory=list)
    steps: list[AppliedStep] = field(default_factory=list)
    result: str | None = None
    # the desired role of each certificate it should hold (SHA-256 -> core.desired.Role): `prestaged` and the
    # path roles; a held certificate without one is not desired now
    roles: dict[str, str] = field(default_factory=dict)
    # per pre-staged certificate of its servers: which chains that use it the router accepts today
    prestaged: list[Readiness] = field(default_factory=list)

    @property
    def reason(self) -> Reason:
        """Where the router stands after this job."""
        if self.error is not None:
            return self.error_reason or (Reason.UNREACHABLE if not self.reachable else Reason.FAILED)
        if self.plan is None:
            return Reason.FAILED
        planned = Reason(self.plan.state)
        if not self.applying or not self.plan.needs_test_fire:
            return planned
        # apply made changes (or proved and saved what was there) and every step succeeded
        if self.plan.untrusted:
            return Reason.CHAIN_UNVERIFIED
        if self.plan.clock_skew:
            return Reason.CLOCK_SKEW
        if self.plan.unconfirmed or self.plan.unfetched:
            return Reason.UNCONFIRMED
        if self.plan.waiting:
            return Reason.WAITING
        return Reason.APPLIED

    @property
    def in_sync(self) -> bool:
        """After this job: nothing to change, the trust proven by a test-fire, saved, every chain confirmed."""
        return self.reason in (Reason.IN_SYNC, Reason.APPLIED)

    def add_step(self, step: AppliedStep) -> None:
        """Record a step, and log it as it happens (INFO: `-v` shows each router's steps live)."""
        self.steps.append(step)
        verdict = "" if step.kind is StepKind.OBSERVED else "ok" if step.ok else "FAILED"
        words = [step.kind, step.trustpoint or "", verdict]
        steps_log.info("router %s: %s: %s", self.name, " ".join(w for w in words if w), step.evidence or step.detail,
                       extra={"event": f"step_{step.kind}", "router": self.name, "trustpoint": step.trustpoint,
                              "ok": step.ok})

    @property
    def awaiting_confirmation(self) -> bool:
        """Not in sync only because a chain it needs is seen but not confirmed yet (policy.confirmations): a
        state that ends by itself within confirmations x half the server's interval, not a fault."""
        plan = self.plan
        return (self.error is None and plan is not None and self.reason in (Reason.WAITING, Reason.UNCONFIRMED)
                and any(r.kind == "pending" for r in plan.reports))

    @property
    def error_text(self) -> str | None:
        """The error without the leading ``router NAME: `` our errors carry (for lines that name the router)."""
        return None if self.error is None else without_router(self.error, self.name)

    @property
    def applied(self) -> bool:
        """Apply reached its goal: no error and every step succeeded."""
        return self.error is None and self.plan is not None and all(s.ok for s in self.steps)

    @property
    def last_test_fire(self) -> AppliedStep | None:
        fired = [s for s in self.steps if s.kind is StepKind.TEST_FIRE]
        return fired[-1] if fired else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "reachable": self.reachable,
            "error": self.error,
            "trustpoints": [
                {
                    "name": held.name,
                    "managed": held.managed,
                    "certs": [
                        {"kind": kind, "sha256": c.sha256, "not_after": c.not_after.isoformat(), "subject": c.subject,
                         "role": self.roles.get(c.sha256)}
                        for kind, c in self.certificates.get(held.name, tuple(("ca", c) for c in held.certificates))
                    ],
                }
                for held in self.trustpoints
            ],
            "actions": [
                {"kind": a.kind, "trustpoint": a.trustpoint, "sha256": a.sha256, "reason": a.reason,
                 "role": a.role}
                for a in (self.plan.actions if self.plan else ())
            ],
            "reports": [
                {"kind": r.kind, "trustpoint": r.trustpoint, "message": r.message}
                for r in (self.plan.reports if self.plan else ())
            ],
            "in_sync": self.in_sync,
            "prestaged": [readiness_json(r) for r in self.prestaged],
            "lint": [
                {"rule": f.rule, "severity": f.severity, "message": f.message, "fix": f.fix}
                for f in self.lint
            ],
        }
        # One field per meaning. plan: `reason`, where the router stands. apply: `result`, the same reason code
        # after apply (the words of metrics' `state`), and `summary`, what apply did in words
        # (`failed after 1 change(s)`).
        if self.result is None:
            out["reason"] = self.reason.value
        else:
            out["result"] = self.reason.value
            out["summary"] = self.result
        if self.steps or self.result is not None:  # plan: the differences it found (observed); apply: every step
            out["steps"] = [
                {
                    "kind": s.kind,
                    "trustpoint": s.trustpoint,
                    "sha256": s.sha256,
                    "ok": s.ok,
                    "detail": s.detail,
                    "evidence": s.evidence,
                }
                for s in self.steps
            ]
        return out


def readiness_json(item: Readiness) -> dict[str, Any]:
    cert = item.certificate
    return {
        "server": item.server,
        "file": item.source,
        "sha256": cert.sha256,
        "subject": cert.subject,
        "subject_cn": cert.common_name,
        "not_after": cert.not_after.isoformat(),
        "trustpoint": item.held_in,
        "chains": [{"shape": s.shape, "description": s.description, "accepted": s.accepted, "why": s.why}
                   for s in item.shapes],
    }


@dataclass
class RunReport:
    servers: list[ServerOutcome]
    routers: list[RouterResult]
    events: list[str]
    alerts: list[Alert] = field(default_factory=list)  # as sent: de-duplicated, scrubbed of secrets
    alert_errors: list[str] = field(default_factory=list)  # one line per sink that could not deliver

    @property
    def untrusted_servers(self) -> list[str]:
        """Servers with an address that sent a chain we do not trust (possible interception)."""
        return [s.name for s in self.servers if any(a.chain and not (a.verified and a.pinned) for a in s.addresses)]

    def to_json(self) -> dict[str, Any]:
        return {
            "routers": [r.to_json() for r in self.routers],
            "servers": [
                {
                    "name": s.name,
                    "error": s.error,
                    "addresses": [
                        {
                            "address": a.address,
                            "chain": list(a.chain),
                            "verified": a.verified,
                            "pinned": a.pinned,
                            "error": a.error,
                            "times_seen": a.times_seen,
                        }
                        for a in s.addresses
                    ],
                }
                for s in self.servers
            ],
            "events": list(self.events),
            "alerts": [a.to_json() for a in self.alerts],
            "alert_errors": list(self.alert_errors),
        }


def summarize(result: RouterResult) -> str:
    """The one word apply prints per router (`result`): what happened, never more than happened."""
    if not result.reachable:
        return "unreachable" if result.error_reason in (None, Reason.UNREACHABLE) else str(result.reason)
    if result.plan is None:
        return str(result.reason)
    if result.error is not None:
        done = sum(1 for s in result.steps if s.ok and s.kind in CHANGE_STEPS)
        word = "interrupted" if result.reason is Reason.INTERRUPTED else "failed"
        return f"{word} after {done} change(s)" if done else word
    return str(result.reason)
