"""`eemwatchd run`: the long-running daemon. A schedule, metrics, health and signals around the same
reconcile jobs `plan` and `apply` use.

- A first pass observes every server, then reconciles every router; `/readyz` turns 200 after it.
- Per-server fetch jobs at `servers[].interval`, per-router jobs at `routers[].interval` (daemon/schedule.py: the
  monotonic clock, jittered, never two runs of a job at once, missed runs coalesced). A chain that becomes
  confirmed (or stops being) reconciles every router that mails through that server at once; a router never runs
  two jobs at once, across reloads too (the daemon owns the per-router locks).
- SIGHUP reloads the config (a bad one is reported and the running one kept); reloads coalesce, wait for no job,
  and give work at once only to what they added or changed. SIGTERM/SIGINT stop taking work, let the router steps
  under way finish (nothing unproven is saved) and exit 0 within a bound.
- The wall clock is watched: a step is logged once, moves the times the status reports by as much (so none lies
  in the future) and moves no job. /healthz fails while a job is overdue.
- The state lock is held for the daemon's lifetime: a manual `apply` meanwhile is told the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from eemwatchd import __version__
from eemwatchd.adapters.lock import StateLock
from eemwatchd.adapters.store import Store
from eemwatchd.adapters.store_worker import StoreWorker
from eemwatchd.adapters.systemd import SystemdNotifier
from eemwatchd.config import Config
from eemwatchd.daemon.alert_queue import AlertQueue
from eemwatchd.daemon.control import ControlServer, control_path_for
from eemwatchd.daemon.http_endpoint import HttpEndpoint, start_http
from eemwatchd.daemon.log_budget import LogBudget
from eemwatchd.daemon.metrics import Metrics
from eemwatchd.daemon.publish import Publisher
from eemwatchd.daemon.reload import Reloads, config_changes, load_instance
from eemwatchd.daemon.schedule import Schedule, WallClockWatch
from eemwatchd.daemon.status import FleetStatus
from eemwatchd.daemon.timed_session import timed_connector
from eemwatchd.errors import EXIT_USAGE, AlertError, ConfigError, EemwatchdError
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
    """The daemon's own tasks: the schedule's runs register here so a stop can wait for them."""

    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    queued: set[str] = field(default_factory=set)  # routers with an immediate reconcile already queued
    observing: set[str] = field(default_factory=set)  # servers with an immediate fetch already under way


# A run may take this much longer than its own timeouts before its job counts as overdue (a router job waits its
# turn behind policy.max_parallel_routers; a fetch job may fetch AIA issuers after the chain).
_SLACK = 60.0


class Daemon:
    """`eemwatchd run`: load the config, take the writer lock with this instance's claim, open the store, then
    serve (RunningDaemon) until a signal stops it; exit codes as the README says."""

    def __init__(self, options: DaemonOptions) -> None:
        self.options = options

    async def run(self) -> int:
        try:
            config, claim, base_state_path = load_instance(
                self.options.config_path, shard=self.options.shard, listen=self.options.listen)
        except ConfigError as exc:
            log.error("%s", exc)  # noqa: TRY400 - our error says it all; no traceback
            return exc.exit_code
        # One writer per router: this instance's claim (its shard of the whole fleet) is checked against every
        # live writer's, whatever shard it runs, before the lock is taken (and held for the daemon's life).
        lock = StateLock(config.state_path, purpose="daemon", claim=claim, base_state_path=base_state_path)
        try:
            lock.acquire()
        except EemwatchdError as exc:
            log.error("%s", exc)  # noqa: TRY400 - our error says it all; no traceback
            return exc.exit_code
        try:
            store = Store.open(config.state_path, secrets=config_secrets(config))
        except EemwatchdError as exc:
            lock.release()
            log.error("%s", exc)  # noqa: TRY400 - our error says it all; no traceback
            return EXIT_USAGE
        running = RunningDaemon(self.options, config, store)
        try:
            return await running.serve()
        finally:
            running.close_store()
            lock.release()


class RunningDaemon:
    """The daemon once its config is loaded and its store open: the schedule, the jobs, signals, reloads, the
    status and its HTTP side. Everything here exists for its whole life (a reload replaces config and reconciler)."""

    def __init__(self, options: DaemonOptions, config: Config, store: Store) -> None:
        self.options = options
        self.config = config
        self.store = store
        self.io = StoreWorker.of(store)  # the store's own thread: no store call blocks the event loop
        self.notifier = SystemdNotifier.from_environment()
        self.status = FleetStatus(version=__version__, started_at=options.clock())
        self.status.shard = config.shard
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, status=self.status, now=options.clock)  # labelled by the shard
        self._jobs = _Jobs()
        self._stop = asyncio.Event()
        self._stop_reason: str | None = None
        self._beat: float | None = None
        self._confirmed: dict[str, frozenset[tuple[str, ...]]] = {}
        self._served: dict[str, frozenset[tuple[str, tuple[str, ...]]]] = {}  # (address, chain) per server
        # Every reconciler with jobs that may still run (a reload builds a new one): a stop reaches them all.
        self._reconcilers: weakref.WeakSet[Reconciler] = weakref.WeakSet()
        # One job per router across reloads: the locks and the bound on routers at once outlive each reconciler.
        self._router_locks: dict[str, asyncio.Lock] = {}
        # servers whose last fetch failed entirely, shared by every reconciler across reloads (Reconciler)
        self._fetch_failures: dict[str, str] = {}
        self._gate = asyncio.Semaphore(config.policy.max_parallel_routers)
        self._gate_size = config.policy.max_parallel_routers
        self.schedule = Schedule(spawn=self._track, on_start=self._job_started)
        self.reloads = Reloads(self.reload)
        self._budget = LogBudget(logging.getLogger("eemwatchd.daemon"))
        self.alerts = AlertQueue(budget=self._budget, on_result=self._count_delivery)
        self.publish = Publisher(self.status, self.io, clock=options.clock, alerts=self.alerts,
                                 config_path=str(options.config_path))
        self.reconciler = self._reconciler(config)
        self.http: HttpEndpoint | None = None  # serving once serve() started it
        self.control: ControlServer | None = None  # `eemwatchd onboard` hands this daemon a router (control.py)

    # --- life ------------------------------------------------------------------------------------

    def close_store(self) -> None:
        if self.io.stuck:
            # closing would wait for the stuck write, i.e. for the disk to come back; SQLite's journal keeps the
            # store consistent without it
            log.warning("the state store did not answer; exiting without closing it")
            return
        self.store.close()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self.status.record_reload(ok=True, at=self.options.clock())
        budget = LogBudget(logging.getLogger("eemwatchd.http"))
        try:
            self.http = await start_http(self.config.metrics.listen, status=self.status, registry=self.registry,
                                         heartbeat=lambda: self._beat, now=self.options.clock, budget=budget)
            self.control = await ControlServer.start(control_path_for(self.config.state_path), self,
                                                     after=self._reconcile_soon, plan_only=self.options.plan_only)
        except EemwatchdError as exc:
            log.error("%s", exc)  # noqa: TRY400 - our error says it all; no traceback
            return 2
        for sig, handler in ((signal.SIGHUP, self._on_hup), (signal.SIGTERM, self._on_stop),
                             (signal.SIGINT, self._on_stop)):
            loop.add_signal_handler(sig, handler, sig)
        beat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        self.reloads.start()
        # READY as soon as we serve (a first pass over hundreds of routers may outlast a start timeout);
        # /readyz turns 200 only after that first pass.
        self.notifier.ready(status="first pass under way")
        await self.publish.recent_changes()
        say.info("eemwatchd %s running: status page %s/ , metrics %s/metrics", __version__, self.http.url,
                 self.http.url)
        try:
            self._schedule(self.config)
            await self._first_pass()
            if self._stop.is_set():
                return 0
            self.status.ready = True
            self.notifier.status(self.publish.summary())
            if self.options.on_ready is not None:
                self.options.on_ready(self.http.url)
            self.schedule.start()
            await self._stop.wait()
            return 0
        finally:
            await self._shutdown(beat)

    async def _shutdown(self, beat: asyncio.Task[Any]) -> None:
        self.notifier.stopping(status=f"stopping ({self._stop_reason or 'end'})")
        await self.reloads.stop()
        await self.schedule.stop()
        for reconciler in list(self._reconcilers):
            reconciler.request_stop(self._stop_reason or "daemon stopping")
        pending = {t for t in self._jobs.inflight if not t.done()}
        if pending:
            say.info("stopping: waiting up to %.0fs for %d job(s) under way to finish their step",
                     self.options.stop_timeout, len(pending))
            _done, late = await asyncio.wait(pending, timeout=self.options.stop_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        await self.alerts.close(timeout=5.0)  # what the last jobs queued
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
            # Every job is over and the store closes next: another signal (systemd's stop after a timeout, an
            # impatient second Ctrl-C) must not kill the process by the default action mid-close. Ignored by the
            # kernel, not by a Python handler: the interpreter's finalization puts Python handlers back to the
            # default action, and a signal then would still end the process with -15.
            signal.signal(sig, signal.SIG_IGN)
        say.info("eemwatchd stopped")

    async def _heartbeat(self) -> None:
        watchdog = self.notifier.watchdog_interval()
        last_ping = 0.0
        wall = WallClockWatch()
        while True:
            self._beat = time.monotonic()
            if watchdog is not None and self._beat - last_ping >= watchdog:
                self.notifier.watchdog()
                last_ping = self._beat
            step = wall.step()  # a step moves the times the status reports, never a job
            if step is not None:
                log.warning("the wall clock stepped by %+.1f s; jobs keep their schedule (monotonic clock), the "
                            "times the status reports move with it", step,
                            extra={"event": "clock_step", "seconds": round(step, 1)})
                self.status.shift_times(timedelta(seconds=step))
            self.status.overdue = {o.job_id: o.seconds for o in self.schedule.overdue()}
            self.publish.store_health(self.reconciler)
            await asyncio.sleep(min(self.options.heartbeat_every, watchdog or self.options.heartbeat_every))

    def _on_stop(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            say.info("%s again: cancelling the jobs under way", sig.name)
            for task in self._jobs.inflight:
                task.cancel()
            return
        say.info("%s received: stopping (router steps under way finish; nothing unproven is saved)", sig.name)
        self._stop_reason = sig.name
        for reconciler in list(self._reconcilers):
            reconciler.request_stop(sig.name)
        self._stop.set()

    def _on_hup(self, _sig: signal.Signals) -> None:
        self.reloads.request()

    # --- reload ----------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load the config again; a bad one is reported and the running one kept. Waits for no job: the jobs of
        the old config finish with it (holding the same router locks), what changed gets work at once."""
        self.notifier.reloading(status="reloading the configuration")
        try:
            config, _claim, _base = await asyncio.to_thread(
                load_instance, self.options.config_path, shard=self.options.shard, listen=self.options.listen,
                running=self.config)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)  # noqa: TRY400 - our error says it all; no traceback
            self.status.record_reload(ok=False, at=self.options.clock())
            self.notifier.ready(status="reload FAILED; running configuration kept")
            return False
        # (the claim and the state file cannot change without a restart: load_instance refuses such a reload)
        old, self.config = self.config, config
        self.store.add_secrets(config_secrets(config))
        self.reconciler = self._reconciler(config)
        self.status.retain(servers={s.name for s in config.servers}, routers={r.name for r in config.routers})
        self._schedule(config)
        self.status.record_reload(ok=True, at=self.options.clock())
        say.info("configuration reloaded: %d server(s), %d router(s)", len(config.servers), len(config.routers))
        self.notifier.ready(status=self.publish.summary())
        changes = config_changes(old, config)
        for server in changes.servers:
            self._observe_soon(server)
        for router in changes.routers:
            self._reconcile_soon(router)
        return True

    # --- jobs ------------------------------------------------------------------------------------

    def _reconciler(self, config: Config) -> Reconciler:
        size = config.policy.max_parallel_routers
        if size != self._gate_size:
            self._gate, self._gate_size = asyncio.Semaphore(size), size
        connect = timed_connector(self.options.connect or default_connector, self.metrics.observe_router_operation)
        reconciler = Reconciler(config, self.store, connect=connect, fetch=self.options.fetch,
                                clock=self.options.clock, io=self.io, router_locks=self._router_locks, gate=self._gate,
                                fetch_failures=self._fetch_failures)
        self._reconcilers.add(reconciler)
        return reconciler

    def _schedule(self, config: Config) -> None:
        """Jobs for every server and router of ``config``; those already scheduled keep their timers."""
        wanted: set[str] = set()
        for server in config.servers:
            job_id = f"server:{server.name}"
            wanted.add(job_id)
            self.schedule.set_job(job_id, _bind(self._observe_job, server.name), interval=server.interval,
                                  jitter=_jitter(server.interval), bound=2 * server.timeouts.total + _SLACK)
        for router in config.routers:
            job_id = f"router:{router.name}"
            wanted.add(job_id)
            interval = router.interval
            self.schedule.set_job(job_id, _bind(self._reconcile, router.name), interval=interval,
                                  jitter=_jitter(interval), bound=router.timeouts.total + router.timeouts.step + _SLACK)
        self.schedule.keep_only(wanted)

    def _job_started(self, job_id: str, delay: float) -> None:
        self.metrics.observe_job_delay(job_id.split(":", 1)[0], delay)
        if delay > 10.0:
            self._budget.warn("late-job", "job %s started %.0f s after it was due: the event loop was blocked or the "
                              "machine is overloaded", job_id, delay)

    def _track(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._jobs.inflight.add(task)
        task.add_done_callback(self._jobs.inflight.discard)
        return task

    async def _first_pass(self) -> None:
        say.info("first pass: observing %d server(s), then checking %d router(s)", len(self.config.servers),
                 len(self.config.routers))
        observed = [self._track(self._observe(s.name, trigger=False)) for s in self.config.servers]
        await asyncio.gather(*observed, return_exceptions=True)
        if self._stop.is_set():
            return
        routers = [self._track(self._reconcile(r.name)) for r in self.config.routers]
        await asyncio.gather(*routers, return_exceptions=True)

    async def _observe_job(self, name: str) -> None:
        await self._observe(name, trigger=True)

    def _observe_soon(self, server: str) -> None:
        """Fetch ``server`` now (a reload added or changed it); at most one such fetch at a time."""
        if server in self._jobs.observing or self._stop.is_set():
            return
        self._jobs.observing.add(server)

        async def job() -> None:
            try:
                await self._observe(server, trigger=True)
            finally:
                self._jobs.observing.discard(server)

        self._track(job())

    async def _observe(self, name: str, *, trigger: bool) -> ServerOutcome | None:
        if self._stop.is_set():
            return None
        config = self.config
        try:
            server = config.server(name)
        except KeyError:
            return None  # removed by a reload
        reconciler = self.reconciler
        started = time.monotonic()
        failing_before = name in self._fetch_failures
        outcome = await reconciler.observe_server(server)
        if self.metrics is not None:
            self.metrics.observe_fetch(name, time.monotonic() - started)
        self.publish.server(server, outcome, confirmations=config.policy.confirmations)
        self.publish.store_health(reconciler)
        await self._alert(reconciler, RunReport([outcome], [], []))
        confirmed = frozenset(a.chain for a in outcome.addresses
                              if a.is_confirmed(config.policy.confirmations))
        served = frozenset((a.address, a.chain) for a in outcome.addresses if a.chain)
        before, served_before = self._confirmed.get(name), self._served.get(name)
        self._confirmed[name] = confirmed
        fetched = bool(served)  # a fetch in which no address gave a chain says nothing about what the server sends
        if fetched:
            self._served[name] = served
        why = None
        if before is not None and confirmed - before:
            why = "the confirmed chains changed"  # act on the new chain now
        elif served_before is not None and fetched and served != served_before:
            # First sighting of a new chain (confirmed or not): the routers may no longer accept what the server
            # sends, so they must not stay "in sync" until their own interval (docs/design.md "Invariants").
            why = "the chains it sends changed"
        elif failing_before != (name in self._fetch_failures):
            # What it sends became unknown (or known again): its routers are not in sync meanwhile (or may be again).
            why = "its fetch failed" if name in self._fetch_failures else "its fetch works again"
        if trigger and why is not None:
            routers = [r.name for r in config.routers if name in r.servers]
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
                await self._reconcile(router)
            finally:
                self._jobs.queued.discard(router)

        self._track(job())

    async def _reconcile(self, name: str) -> RouterResult | None:
        if self._stop.is_set():
            return None
        try:
            router = self.config.router(name)
        except KeyError:
            return None
        reconciler = self.reconciler
        result = await reconciler.reconcile_router(router, apply=not self.options.plan_only)
        await self.publish.router(router, result)
        self.publish.store_health(reconciler)
        await self._alert(reconciler, RunReport([], [result], []))
        return result

    async def _alert(self, reconciler: Reconciler, report: RunReport) -> None:
        """Decide the alerts ``report`` calls for and hand them to the background queue: no job waits for a sink."""
        try:
            gated = await reconciler.gate(report)
        except EemwatchdError as exc:  # the alert state could not be read (the state store): next run
            log.warning("alerts not decided: %s", exc)
            return
        if gated is None:
            return

        async def delivered(errors: list[AlertError]) -> None:
            if errors:
                return  # not stored as sent: the next run sends them again
            try:
                await reconciler.record_sent(gated)
            except EemwatchdError as exc:
                log.warning("alert state not stored: %s", exc)

        self.alerts.submit(reconciler.alerter, gated.alerts, secrets=gated.secrets, on_done=delivered)

    def _count_delivery(self, sink: str, result: str) -> None:
        self.status.count_alert_delivery(sink, result)


def _jitter(interval: float) -> float:
    return min(interval * 0.1, 300.0)


def _bind(job: Callable[[str], Coroutine[Any, Any, Any]], name: str) -> Callable[[], Coroutine[Any, Any, Any]]:
    async def run() -> None:
        await job(name)

    return run
