"""What the daemon shows after each job: the narrative log lines, the status model (metrics, status page) and the
state store's health (its metric, /readyz, one alert when it stops taking writes and one when it takes them again).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from eemwatchd.adapters.alerts import Alert
from eemwatchd.adapters.store import Proof
from eemwatchd.adapters.store_worker import StoreWorker
from eemwatchd.config import RouterConfig, ServerConfig
from eemwatchd.daemon.alert_queue import AlertQueue
from eemwatchd.daemon.status import RECENT_CHANGES, FleetStatus
from eemwatchd.daemon.status_view import audit_lines, narrate_router, narrate_server, router_status, server_status
from eemwatchd.errors import AlertError, EemwatchdError
from eemwatchd.reconcile import Reconciler, RouterResult, ServerOutcome
from eemwatchd.reconcile.results import StepKind

log = logging.getLogger("eemwatchd.daemon")
say = logging.getLogger("eemwatchd.narrative")



class Publisher:
    """Fills ``status`` from job results; reads the store through ``io``."""

    def __init__(self, status: FleetStatus, io: StoreWorker, *, clock: Callable[[], datetime], alerts: AlertQueue,
                 config_path: str = "FILE") -> None:
        self.status = status
        self._config_path = config_path  # named in the onboard command a not-onboarded router is told to run
        self.io = io
        self._clock = clock
        self._alerts = alerts
        self._store_alerted = False  # a state_store alert is open

    def server(self, server: ServerConfig, outcome: ServerOutcome, *, confirmations: int) -> None:
        for line in narrate_server(outcome, confirmations=confirmations):
            say.info("%s", line)
        for address in outcome.addresses:
            if address.changed_from:
                self.status.count_chain_change(server.name)
        self.status.set_server(server_status(server, outcome, confirmations=confirmations, at=self._clock()))

    async def router(self, router: RouterConfig, result: RouterResult) -> None:
        for line in narrate_router(result, previous=self.status.routers.get(router.name), config=self._config_path):
            say.info("%s", line)
        if result.result is not None and result.plan is not None and result.plan.needs_test_fire:
            rolled = any(s.kind is StepKind.ROLLBACK for s in result.steps)
            self.status.count_refresh(router.name, "success" if result.in_sync and result.applied
                                      else "rolled-back" if rolled else "failure")
        previous = self.status.routers.get(router.name)
        try:
            proof = await self.io.call(self.io.store.last_proof, router.name, ok_only=True)
        except EemwatchdError:  # the store is failing (its own metric and alert say so): keep what was shown
            proof = None if previous is None or previous.last_proven_at is None else Proof(
                router.name, previous.last_proven_at, True, "", frozenset())
        self.status.set_router(router_status(router.host, result, at=self._clock(), proof=proof, previous=previous))
        changes = result.steps  # each step wrote the audit row that explains it
        if changes:
            with contextlib.suppress(EemwatchdError):
                entries = await self.io.call(self.io.store.audit, router=router.name)
                self.status.add_changes(audit_lines(entries[-len(changes):]))

    async def recent_changes(self) -> None:
        try:
            entries = await self.io.call(self.io.store.audit)
        except EemwatchdError as exc:
            log.warning("recent changes not shown: %s", exc)
            return
        self.status.add_changes(audit_lines(entries[-RECENT_CHANGES:]))

    def summary(self) -> str:
        routers = self.status.routers.values()
        synced = sum(1 for r in routers if r.in_sync)
        return f"{synced}/{len(self.status.routers)} routers in sync"

    def store_health(self, reconciler: Reconciler) -> None:
        """The store's health into the status (metrics, /readyz); each turn as one alert (through
        ``reconciler``'s sinks) and one log line."""
        health = self.io.health
        was = self.status.store_writable
        writable = health.writable and not self.io.stuck
        self.status.store_writable, self.status.store_write_failures = writable, health.write_failures
        self.status.store_problem = None if writable else (health.reason or "a call did not answer in time")
        if was == writable:
            return
        if not writable:
            summary = f"the state store cannot be written: {self.status.store_problem}"
            log.error("%s; routers are still checked, nothing is recorded until it can", summary,
                      extra={"event": "state_store_failing"})
        else:
            summary = f"resolved: the state store {self.io.store.path} takes writes again"
            log.warning("the state store %s takes writes again", self.io.store.path,
                        extra={"event": "state_store_recovered"})
            if not self._store_alerted:
                return
        self._store_alerted = not writable
        if reconciler is None:
            return
        alert = Alert(event="state_store", subject="state-store", summary=summary,
                      details={"path": str(self.io.store.path), "problem": self.status.store_problem},
                      at=self._clock(), state="firing" if not writable else "resolved")

        async def done(_errors: list[AlertError]) -> None:
            return None

        self._alerts.submit(reconciler.alerter, [alert], secrets=frozenset(), on_done=done)
