"""Apply one router's plan, blue-green: add and confirm, test-fire, only then retire; save only proven changes.

Until the retirements the router holds everything it held before, so a failure, a signal or a crash there
leaves it sending mail as before. A failed test-fire after retirements puts the retired certificates back.
Nothing is saved (`write memory`) that a successful test-fire did not prove: unproven changes stay in the
running-config only, and the next run sees them as "unproven"/"unsaved", test-fires and saves them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from eemwatchd.adapters.store import AuditEntry
from eemwatchd.adapters.store_worker import StoreWorker
from eemwatchd.config import RouterConfig
from eemwatchd.core.plan import Action, RouterPlan
from eemwatchd.core.reason import Reason
from eemwatchd.core.testfire import FireResult
from eemwatchd.errors import EemwatchdError
from eemwatchd.reconcile.connect import RouterSessionLike
from eemwatchd.reconcile.results import AppliedStep, ApplyFailed, HeldTrustpoint, RouterResult, StepKind

log = logging.getLogger("eemwatchd.reconcile")
# How long after its maxrun an applet job surely ended (the router's history row and log follow its end).
FIRE_GRACE = 5.0  # as the router adapter's own wait for evidence after maxrun (RouterTimeouts.fire_grace)


class AuditWriter:
    """Where apply writes its audit rows and proofs (the service binds it to the store and the clock)."""

    async def change(self, action: str, *, trustpoint: str | None = None, before: str | None = None,
                     after: str | None = None, reason: str) -> None:
        raise NotImplementedError

    async def test_fire(self, ok: bool, *, detail: str, evidence: str | None, reason: str,
                        trust: frozenset[str]) -> None:
        raise NotImplementedError

    async def fire_started(self) -> None:
        """A test-fire starts (until its verdict is recorded it counts as under way)."""
        raise NotImplementedError

    async def earlier_fire_unjudged(self) -> bool:
        """An earlier session's test-fire was never judged (the session was cut): its job may still run."""
        raise NotImplementedError


class StoreAudit(AuditWriter):
    """Audit rows and proofs for one router, in the store (through its worker thread), stamped by the clock."""

    def __init__(self, io: StoreWorker, router: str, clock: Callable[[], datetime]) -> None:
        self.io, self.router, self.clock = io, router, clock

    async def change(self, action: str, *, trustpoint: str | None = None, before: str | None = None,
                     after: str | None = None, reason: str) -> None:
        await self.io.call(self.io.store.append_audit, AuditEntry(
            at=self.clock(), router=self.router, action=action, trustpoint=trustpoint, sha256_before=before,
            sha256_after=after, test_fire=None, reason=reason))

    async def test_fire(self, ok: bool, *, detail: str, evidence: str | None, reason: str,
                        trust: frozenset[str]) -> None:
        at = self.clock()
        await self.io.call(self.io.store.append_audit, AuditEntry(
            at=at, router=self.router, action="test-fire", trustpoint=None, sha256_before=None, sha256_after=None,
            test_fire="ok" if ok else f"failed: {detail}", reason=reason, evidence=evidence))
        await self.io.call(self.io.store.record_proof, self.router, at=at, ok=ok, evidence=evidence or detail,
                           trust=trust)

    async def fire_started(self) -> None:
        await self.io.call(self.io.store.begin_test_fire, self.router, at=self.clock())

    async def earlier_fire_unjudged(self) -> bool:
        return await self.io.call(self.io.store.test_fire_under_way, self.router) is not None


@dataclass
class Applier:
    """Apply one plan over one open session. ``checkpoint(step)`` raises Interrupted to stop between steps."""

    session: RouterSessionLike
    router: RouterConfig
    result: RouterResult
    audit: AuditWriter
    checkpoint: Callable[[str], None]
    held: set[str]  # SHA-256 of the managed certificates the router holds now (kept current)
    maxrun: float
    success_messages: Sequence[str] = ()
    # Why a test-fire of this router's applet cannot prove mail whatever it shows (no applet, no mail
    # action): then every test-fire is a failure with this reason, and the router is never called in sync.
    unprovable: str | None = None

    async def apply(self, plan: RouterPlan) -> None:
        """Make ``plan``'s changes and prove them; save only what this session's last test-fire proved.

        The save invariant (docs/design.md "Invariants"): `write memory` runs only when this session's
        last test-fire succeeded and nothing changed on the router since. ``proven`` starts False: trust
        that was unsaved or unproven before this session is not proven until a test-fire here says so.
        """
        changed = False
        proven = False  # this session's last test-fire succeeded and nothing changed since
        empties = [a for a in plan.retires if a.certificate is None]
        retires = [a for a in plan.retires if a.certificate is not None]
        try:
            # Empty trustpoints hold no trust; removing them first frees their names for the adds.
            for action in empties:
                self.checkpoint(f"retire {action.trustpoint}")
                await self._retire(action)
                changed = True
            for action in plan.adds:
                self.checkpoint(f"add {action.trustpoint}")
                await self._add(action)
                changed = True
            self.checkpoint("test-fire")
            why = (f"after {len(plan.adds)} add(s), before {len(retires)} retire(s)" if plan.actions
                   else "prove the trust the router holds" + (" before saving" if plan.unsaved else ""))
            if not await self._fire(why):
                if retires:
                    self.result.add_step(AppliedStep(
                        StepKind.RETIRE, None, None, False,
                        "retirements skipped: the test-fire failed; old trust kept"))
                raise ApplyFailed("test-fire failed: could not prove mail works; nothing retired",
                                  reason=Reason.TESTFIRE_FAILED)
            proven = True
            retired: list[Action] = []
            for action in retires:
                self.checkpoint(f"retire {action.trustpoint}")
                proven = False  # from here on the router no longer holds what the test-fire proved
                await self._retire(action)
                changed = True
                retired.append(action)
            if retired:
                if not await self._fire(f"after {len(retired)} retire(s)"):
                    await self._rollback(retired)
                    raise ApplyFailed("test-fire failed after retiring; retired trust put back",
                                      reason=Reason.TESTFIRE_FAILED)
                proven = True
        finally:
            if proven and (changed or plan.unsaved):
                await self._save()
            elif changed or plan.unsaved:
                self.result.add_step(AppliedStep(
                    StepKind.SAVE, None, None, False,
                    "not saved: no successful test-fire proved the running-config; the changes stay in the "
                    "running-config only (the next run test-fires and saves them)"))

    async def _wait_out_an_earlier_fire(self) -> None:
        """A session cut during its test-fire (kill -9, a dropped connection) may have left its applet job running:
        when that job ends, its history row is newer than our baseline and would be taken for our own test-fire's
        (a success that proves nothing, or a failure that is not ours). Before firing, wait until such a job has
        surely ended: its maxrun plus the grace, measured here (monotonic: neither our clock nor the router's can
        say how long it has run). Once per cut session; checkpoints in between."""
        if not await self.audit.earlier_fire_unjudged():
            return
        wait = self.maxrun + FIRE_GRACE
        log.info("router %s: an interrupted session's test-fire was never judged; waiting %.0f s (maxrun + grace) "
                 "for its job to end before firing", self.router.name, wait)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (remaining := deadline - loop.time()) > 0:
            self.checkpoint("test-fire (an interrupted session's test-fire may still run)")
            await asyncio.sleep(min(remaining, 1.0))

    async def _fire(self, why: str) -> bool:
        if self.unprovable is not None:
            outcome = FireResult(False, "", (), reason=f"could not prove mail works: {self.unprovable}")
        else:
            await self._wait_out_an_earlier_fire()
            await self.audit.fire_started()
            try:
                outcome = await self.session.fire_applet(
                    self.router.applet, maxrun=self.maxrun, success_messages=self.success_messages)
            except EemwatchdError as exc:
                # refused or broken on the way (AAA, a dropped session): a failed test-fire, in the audit too
                detail = str(exc)
                self.result.add_step(AppliedStep(StepKind.TEST_FIRE, None, None, False, detail, detail))
                await self.audit.test_fire(False, detail=detail, evidence=detail, reason=why,
                                           trust=frozenset(self.held))
                # the session broke, not the job: it may still run, and the next session must wait it out
                await self.audit.fire_started()
                raise
        detail = fire_detail(outcome)
        evidence = outcome.evidence or None
        self.result.add_step(AppliedStep(StepKind.TEST_FIRE, None, None, outcome.ok, detail, evidence))
        await self.audit.test_fire(outcome.ok, detail=detail, evidence=evidence, reason=why,
                             trust=frozenset(self.held))
        return outcome.ok

    async def _retire(self, action: Action) -> None:
        try:
            await self.session.retire_trustpoint(action.trustpoint)
        except EemwatchdError as exc:
            self.result.add_step(AppliedStep(StepKind.RETIRE, action.trustpoint, action.sha256 or None, False,
                                             str(exc)))
            await self.audit.change("retire-failed", trustpoint=action.trustpoint, before=action.sha256 or None,
                              reason=f"{exc} (for: {action.reason})")
            raise
        if action.sha256:
            self.held.discard(action.sha256)
        self.result.trustpoints = [t for t in self.result.trustpoints if t.name != action.trustpoint]
        self.result.add_step(AppliedStep(StepKind.RETIRE, action.trustpoint, action.sha256 or None, True,
                                         action.reason))
        await self.audit.change("retire", trustpoint=action.trustpoint, before=action.sha256 or None,
                                reason=action.reason)

    async def _add(self, action: Action) -> None:
        assert action.certificate is not None
        try:
            await self.session.install_certificate(action.trustpoint, action.certificate)
        except EemwatchdError as exc:
            self.result.add_step(AppliedStep(StepKind.ADD, action.trustpoint, action.sha256, False, str(exc)))
            await self.audit.change("add-failed", trustpoint=action.trustpoint, after=action.sha256,
                              reason=f"{exc} (for: {action.reason})")
            raise
        self.held.add(action.sha256)
        self.result.trustpoints.append(HeldTrustpoint(action.trustpoint, True, (action.certificate,)))
        self.result.add_step(AppliedStep(StepKind.ADD, action.trustpoint, action.sha256, True, action.reason))
        await self.audit.change("add", trustpoint=action.trustpoint, after=action.sha256, reason=action.reason)

    async def _rollback(self, retired: Sequence[Action]) -> None:
        for action in retired:
            if action.certificate is None:
                continue
            try:
                await self.session.install_certificate(action.trustpoint, action.certificate)
            except EemwatchdError as exc:
                self.result.add_step(AppliedStep(StepKind.ROLLBACK, action.trustpoint, action.sha256, False, str(exc)))
                continue
            self.held.add(action.sha256)
            self.result.trustpoints.append(HeldTrustpoint(action.trustpoint, True, (action.certificate,)))
            self.result.add_step(AppliedStep(StepKind.ROLLBACK, action.trustpoint, action.sha256, True, "put back"))
            await self.audit.change("rollback", trustpoint=action.trustpoint, after=action.sha256,
                              reason="test-fire failed after retiring")

    async def _save(self) -> None:
        try:
            await self.session.save_config()
        except EemwatchdError as exc:
            self.result.add_step(AppliedStep(StepKind.SAVE, None, None, False, str(exc)))
            await self.audit.change("save-failed", reason=str(exc))
            if self.result.error is None:
                self.result.error = f"saving the configuration failed: {exc}"
                self.result.error_reason = Reason.COMMAND_FAILED
            return
        self.result.add_step(AppliedStep(StepKind.SAVE, None, None, True, "write memory"))
        await self.audit.change("save", reason="configuration saved after a successful test-fire")


def fire_detail(outcome: FireResult) -> str:
    if outcome.reason:
        return outcome.reason
    if outcome.lines:
        return "; ".join(outcome.lines)[:500]
    return "mail sent" if outcome.ok else "failed"
