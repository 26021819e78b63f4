"""`eemwatchd run`: the long-running daemon. A schedule, metrics, health and signals around the same
reconcile jobs `plan` and `apply` use.

- A first pass observes every server, then reconciles every router; `/readyz` turns 200 after it.
- Per-server fetch jobs at `servers[].interval`, per-router jobs at `routers[].interval` (APScheduler 3.11,
  jittered, `max_instances=1`, coalesced). A chain that becomes confirmed (or stops being) reconciles
  every router that mails through that server at once; a router never runs two jobs at once.
- SIGHUP reloads the config (a bad one is reported and the running one kept); SIGTERM/SIGINT stop taking
  work, let the router steps under way finish (nothing unproven is saved) and exit 0 within a bound.
- The state lock is held for the daemon's lifetime: a manual `apply` meanwhile is told the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from eemwatchd import __version__
from eemwatchd.adapters.lock import StateLock
from eemwatchd.adapters.store import Store
from eemwatchd.adapters.systemd import SystemdNotifier
from eemwatchd.config import Config, RouterConfig, ServerConfig, load_config
from eemwatchd.core.shard import Claim, Shard
from eemwatchd.daemon.control import ControlServer, control_path_for
from eemwatchd.daemon.http_endpoint import HttpEndpoint, start_http
from eemwatchd.daemon.metrics import Metrics
from eemwatchd.daemon.status import FleetStatus
from eemwatchd.daemon.status_view import audit_lines, narrate_router, narrate_server, router_status, server_status
from eemwatchd.daemon.timed_session import timed_connector
from eemwatchd.errors import ConfigError, EemwatchdError
from eemwatchd.reconcile import (
    Reconciler,
    RouterConnector,
    RouterResult,
    RunReport,
    ServerFetcher,
    ServerOutcome,
    config_secrets,
    default_connector,
    utc_now,
)

log = logging.getLogger("eemwatchd.daemon")
say = logging.getLogger("eemwatchd.narrative")

RECENT_AUDIT = 50


@dataclass
class DaemonOptions:
    config_path: Path
    plan_only: bool = False  # observe and report, never change a router
    stop_timeout: float = 90.0  # how long SIGTERM waits for router steps under way
    heartbeat_every: float = 1.0
    connect: RouterConnector | None = None
    fetch: ServerFetcher | None = None
    clock: Callable[[], datetime] = utc_now
    on_ready: Callable[[str], None] | None = None  # called with the HTTP endpoint's URL after the first pass
    shard: str | None = None  # "K/N": overrides the config's shard
    listen: str | None = None  # overrides metrics.listen (several instances on one machine)


@dataclass
class _Jobs:
    """The daemon's own tasks: the scheduler's job coroutines register here so a stop can wait for them."""

    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    queued: set[str] = field(default_factory=set)  # routers with an immediate reconcile already queued


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        self.notifier = SystemdNotifier.from_environment()
        self.status = FleetStatus(version=__version__, started_at=options.clock())
        self.registry = CollectorRegistry()
        self.metrics: Metrics | None = None  # built once the shard is known (it labels every series)
        self._jobs = _Jobs()
        self._stop = asyncio.Event()
        self._stop_reason: str | None = None
        self._beat: float | None = None
        self._confirmed: dict[str, frozenset[tuple[str, ...]]] = {}
        self._served: dict[str, frozenset[tuple[str, tuple[str, ...]]]] = {}  # (address, chain) per server
        self.config: Config | None = None
        self._claim: Claim | None = None
        self._base_state_path: Path | None = None
        self.store: Store | None = None
        self.reconciler: Reconciler | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.http: HttpEndpoint | None = None
        self.control: ControlServer | None = None  # `eemwatchd onboard` hands this daemon a router (control.py)

    # --- life ------------------------------------------------------------------------------------

    def _load(self) -> Config:
        """The config this instance runs: its shard of the routers, the listen address it was given."""
        loaded = load_config(self.options.config_path)
        for warning in loaded.warnings:
            log.warning("config: %s", warning)
        config = loaded.config
        text = self.options.shard or config.shard
        try:
            shard = Shard.parse(text) if text else None
        except ValueError as exc:
            raise ConfigError([f"--shard: {exc}"], source="command line") from exc
        if self.options.listen:
            config = config.model_copy(update={"metrics": config.metrics.model_copy(
                update={"listen": self.options.listen})})
        self._claim = Claim(tuple(r.name for r in config.routers), shard)
        self._base_state_path = config.state_path
        return config.sharded(shard)

    async def run(self) -> int:
        try:
            self.config = self._load()
        except ConfigError as exc:
            log.error("%s", exc)  # noqa: TRY400 - our error says it all; no traceback
            return 2
        self.status.shard = self.config.shard
        self.metrics = Metrics(self.registry, status=self.status)
        # One writer per router: this instance's claim (its shard of the whole fleet) is checked against every
        # live writer's, whatever shard it runs, before the lock is taken (and held for the daemon's life).
        lock = StateLock(self.config.state_path, purpose="daemon", claim=self._claim,
                         base_state_path=self._base_state_path)
        try:
            lock.acquire()
        except EemwatchdError as exc:
            log.error("%s", exc)  # noqa: TRY400 - our error says it all; no traceback
            return int(getattr(exc, "exit_code", 75))
        try:
            with Store.open(self.config.state_path, secrets=config_secrets(self.config)) as store:
                self.store = store
                return await self._serve()
        finally:
            lock.release()

    async def _serve(self) -> int:
        assert self.config is not None
        loop = asyncio.get_running_loop()
        self.status.record_reload(ok=True, at=self.options.clock())
        self.reconciler = self._reconciler(self.config)
        try:
            self.http = await start_http(self.config.metrics.listen, status=self.status, registry=self.registry,
                                         heartbeat=lambda: self._beat, now=self.options.clock)
            self.control = await ControlServer.start(control_path_for(self.config.state_path), self,
                                                     after=self._reconcile_soon, plan_only=self.options.plan_only)
        except EemwatchdError as exc:
            log.error("%s", exc)  # noqa: TRY400 - our error says it all; no traceback
            return 2
        for sig, handler in ((signal.SIGHUP, self._on_hup), (signal.SIGTERM, self._on_stop),
                             (signal.SIGINT, self._on_stop)):
            loop.add_signal_handler(sig, handler, sig)
        beat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        # READY as soon as we serve (a first pass over hundreds of routers may outlast a start timeout);
        # /readyz turns 200 only after that first pass.
        self.notifier.ready(status="first pass under way")
        self._load_recent_changes()
        say.info("eemwatchd %s running: status page %s/ , metrics %s/metrics", __version__, self.http.url,
                 self.http.url)
        try:
            await self._first_pass()
            if self._stop.is_set():
                return 0
            self.status.ready = True
            self.notifier.status(self._summary())
            if self.options.on_ready is not None:
                self.options.on_ready(self.http.url)
            self.scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
            self._schedule(self.config)
            self.scheduler.start()
            await self._stop.wait()
            return 0
        finally:
            await self._shutdown(beat)

    async def _shutdown(self, beat: asyncio.Task[Any]) -> None:
        self.notifier.stopping(status=f"stopping ({self._stop_reason or 'end'})")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()
        if self.reconciler is not None:
            self.reconciler.request_stop(self._stop_reason or "daemon stopping")
        pending = {t for t in self._jobs.inflight if not t.done()}
        if pending:
            say.info("stopping: waiting up to %.0fs for %d job(s) under way to finish their step",
                     self.options.stop_timeout, len(pending))
            _done, late = await asyncio.wait(pending, timeout=self.options.stop_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        if self.control is not None:
            await self.control.close()
        if self.http is not None:
            await self.http.close()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        say.info("eemwatchd stopped")

    async def _heartbeat(self) -> None:
        watchdog = self.notifier.watchdog_interval()
        last_ping = 0.0
        while True:
            self._beat = time.monotonic()
            if watchdog is not None and self._beat - last_ping >= watchdog:
                self.notifier.watchdog()
                last_ping = self._beat
            await asyncio.sleep(min(self.options.heartbeat_every, watchdog or self.options.heartbeat_every))

    def _on_stop(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            say.info("%s again: cancelling the jobs under way", sig.name)
            for task in self._jobs.inflight:
                task.cancel()
            return
        say.info("%s received: stopping (router steps under way finish; nothing unproven is saved)", sig.name)
        self._stop_reason = sig.name
        if self.reconciler is not None:
            self.reconciler.request_stop(sig.name)
        self._stop.set()

    def _on_hup(self, _sig: signal.Signals) -> None:
        self._track(self.reload())

    # --- reload ----------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load the config again; a bad one is reported and the running one kept."""
        assert self.config is not None
        self.notifier.reloading(status="reloading the configuration")
        try:
            config = self._load()
            self._check_reloadable(config)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)  # noqa: TRY400 - our error says it all; no traceback
            self.status.record_reload(ok=False, at=self.options.clock())
            self.notifier.ready(status="reload FAILED; running configuration kept")
            return False
        self.config = config
        assert self.store is not None
        self.store.add_secrets(config_secrets(self.config))
        self.reconciler = self._reconciler(self.config)
        self.status.retain(servers={s.name for s in self.config.servers}, routers={r.name for r in self.config.routers})
        if self.scheduler is not None:
            self.scheduler.remove_all_jobs()
            self._schedule(self.config)
        self.status.record_reload(ok=True, at=self.options.clock())
        say.info("configuration reloaded: %d server(s), %d router(s)", len(self.config.servers),
                 len(self.config.routers))
        self.notifier.ready(status=self._summary())
        # what changed may need work now (a new router, a new server)
        await self._first_pass()
        return True

    def _check_reloadable(self, new: Config) -> None:
        assert self.config is not None
        problems = []
        if new.state_path != self.config.state_path:
            problems.append(f"state_path: changing it ({self.config.state_path} -> {new.state_path}) needs a "
                            "restart (the daemon holds the store and its lock)")
        if new.shard != self.config.shard:
            problems.append(f"shard: changing it ({self.config.shard} -> {new.shard}) needs a restart")
        if new.metrics.listen != self.config.metrics.listen:
            problems.append(f"metrics.listen: changing it ({self.config.metrics.listen} -> {new.metrics.listen}) "
                            "needs a restart")
        if problems:
            raise ConfigError(problems, source=str(self.options.config_path))

    # --- jobs ------------------------------------------------------------------------------------

    def _reconciler(self, config: Config) -> Reconciler:
        assert self.store is not None
        assert self.metrics is not None
        connect = timed_connector(self.options.connect or default_connector, self.metrics.observe_router_operation)
        return Reconciler(config, self.store, connect=connect, fetch=self.options.fetch, clock=self.options.clock)

    def _schedule(self, config: Config) -> None:
        assert self.scheduler is not None
        for server in config.servers:
            self._add_job(f"server:{server.name}", self._server_job, server.name, server.interval)
        for router in config.routers:
            self._add_job(f"router:{router.name}", self._router_job, router.name, _router_interval(router))

    def _add_job(self, job_id: str, func: Callable[[str], Coroutine[Any, Any, Any]], name: str,
                 interval: float) -> None:
        assert self.scheduler is not None
        jitter = min(interval * 0.1, 300.0)
        first = datetime.now(UTC) + timedelta(seconds=interval + random.uniform(0, jitter))  # noqa: S311
        self.scheduler.add_job(func, IntervalTrigger(seconds=interval, jitter=jitter), args=[name], id=job_id,
                               max_instances=1, coalesce=True, next_run_time=first, misfire_grace_time=None,
                               replace_existing=True)

    def _track(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._jobs.inflight.add(task)
        task.add_done_callback(self._jobs.inflight.discard)
        return task

    async def _server_job(self, name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._jobs.inflight.add(task)
        try:
            await self._observe(name, trigger=True)
        finally:
            self._jobs.inflight.discard(task)

    async def _router_job(self, name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._jobs.inflight.add(task)
        try:
            await self._reconcile(name)
        finally:
            self._jobs.inflight.discard(task)

    async def _first_pass(self) -> None:
        assert self.config is not None
        say.info("first pass: observing %d server(s), then checking %d router(s)", len(self.config.servers),
                 len(self.config.routers))
        observed = [self._track(self._observe(s.name, trigger=False)) for s in self.config.servers]
        await asyncio.gather(*observed, return_exceptions=True)
        if self._stop.is_set():
            return
        routers = [self._track(self._reconcile(r.name)) for r in self.config.routers]
        await asyncio.gather(*routers, return_exceptions=True)

    async def _observe(self, name: str, *, trigger: bool) -> ServerOutcome | None:
        if self._stop.is_set() or self.config is None or self.reconciler is None:
            return None
        try:
            server = self.config.server(name)
        except KeyError:
            return None  # removed by a reload
        reconciler = self.reconciler
        started = time.monotonic()
        outcome = await reconciler.observe_server(server)
        if self.metrics is not None:
            self.metrics.observe_fetch(name, time.monotonic() - started)
        self._publish_server(server, outcome)
        await self._alert(reconciler, RunReport([outcome], [], []))
        confirmed = frozenset(a.chain for a in outcome.addresses
                              if a.verified and a.pinned and a.times_seen >= self.config.policy.confirmations)
        served = frozenset((a.address, a.chain) for a in outcome.addresses if a.chain)
        before, served_before = self._confirmed.get(name), self._served.get(name)
        self._confirmed[name] = confirmed
        if outcome.addresses:  # a failed fetch says nothing about what the server sends
            self._served[name] = served
        why = None
        if before is not None and confirmed - before:
            why = "the confirmed chains changed"  # act on the new chain now
        elif served_before is not None and outcome.addresses and served != served_before:
            # First sighting of a new chain (confirmed or not): the routers may no longer accept what the server
            # sends, so they must not stay "in sync" until their own interval (docs/design.md "Invariants").
            why = "the chains it sends changed"
        if trigger and why is not None:
            routers = [r.name for r in self.config.routers if name in r.servers]
            say.info("server %s: %s; checking %d router(s) now", name, why, len(routers))
            for router in routers:
                self._reconcile_soon(router)
        return outcome

    def _reconcile_soon(self, router: str) -> None:
        """Reconcile ``router`` now, outside its interval; at most one such run waits behind a running job."""
        if router in self._jobs.queued or self._stop.is_set():
            return
        self._jobs.queued.add(router)

        async def job() -> None:
            try:
                await self._reconcile(router, queued=True)
            finally:
                self._jobs.queued.discard(router)

        self._track(job())

    async def _reconcile(self, name: str, *, queued: bool = False) -> RouterResult | None:
        if self._stop.is_set() or self.config is None or self.reconciler is None:
            return None
        try:
            router = self.config.router(name)
        except KeyError:
            return None
        reconciler = self.reconciler
        result = await reconciler.reconcile_router(router, apply=not self.options.plan_only)
        self._publish_router(router, result)
        await self._alert(reconciler, RunReport([], [result], []))
        return result

    async def _alert(self, reconciler: Reconciler, report: RunReport) -> None:
        try:
            await reconciler.notify(report)
        except Exception:  # an alert sink must never stop a job
            log.exception("alerts could not be sent")
        for error in report.alert_errors:
            log.warning("alert not delivered: %s", error)

    # --- status ----------------------------------------------------------------------------------

    def _publish_server(self, server: ServerConfig, outcome: ServerOutcome) -> None:
        assert self.config is not None
        for line in narrate_server(outcome, confirmations=self.config.policy.confirmations):
            say.info("%s", line)
        for address in outcome.addresses:
            if address.changed_from:
                self.status.count_chain_change(server.name)
        self.status.set_server(server_status(server, outcome, confirmations=self.config.policy.confirmations,
                                             at=self.options.clock()))

    def _publish_router(self, router: RouterConfig, result: RouterResult) -> None:
        assert self.store is not None
        for line in narrate_router(result, previous=self.status.routers.get(router.name),
                                   config=str(self.options.config_path)):
            say.info("%s", line)
        if result.result is not None and result.plan is not None and result.plan.needs_test_fire:
            rolled = any(s.kind == "rollback" for s in result.steps)
            self.status.count_refresh(router.name, "success" if result.in_sync and result.applied
                                      else "rolled-back" if rolled else "failure")
        proof = self.store.last_proof(router.name, ok_only=True)
        self.status.set_router(router_status(router.host, result, at=self.options.clock(), proof=proof,
                                             previous=self.status.routers.get(router.name)))
        changes = [s for s in result.steps if s.kind in ("add", "retire", "rollback", "save", "test-fire",
                                                         "observed")]
        if changes:
            self.status.add_changes(audit_lines(self.store.audit(router=router.name)[-len(changes):]))

    def _load_recent_changes(self) -> None:
        assert self.store is not None
        self.status.add_changes(audit_lines(self.store.audit()[-RECENT_AUDIT:]))

    def _summary(self) -> str:
        routers = self.status.routers.values()
        synced = sum(1 for r in routers if r.in_sync)
        return f"{synced}/{len(self.status.routers)} routers in sync"


def _router_interval(router: RouterConfig) -> float:
    return float(getattr(router, "interval", 3600.0))
