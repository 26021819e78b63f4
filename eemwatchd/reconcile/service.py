"""The reconcile service: job-sized entry points (observe one server, reconcile one router) and a whole run.

`plan`, `apply`, the lab and the daemon all drive this one service; the daemon only schedules its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eemwatchd.adapters.alerts import Alerter
from eemwatchd.adapters.store import Store
from eemwatchd.adapters.store_worker import StoreWorker
from eemwatchd.adapters.truststore import load_anchors
from eemwatchd.config import Config, RouterConfig, ServerConfig
from eemwatchd.core.audit_replay import AuditedChange, expected_holdings, observed_differences
from eemwatchd.core.certificate import Certificate, unique
from eemwatchd.core.chain import ChainObservation
from eemwatchd.core.desired import (
    DesiredTrust,
    SeenChain,
    TrustPolicy,
    compute_desired,
    is_pinned_match,
    is_usable,
)
from eemwatchd.core.ios.parsers import RUNNING_CONFIG
from eemwatchd.core.ios.trust import validate_as_ios
from eemwatchd.core.lint import KnownServer, lint_router
from eemwatchd.core.pacing import PacingPolicy
from eemwatchd.core.plan import ChainValidator, after_changes, is_managed, managed_trust, plan_router
from eemwatchd.core.prestage import Prestaged, prestage_readiness
from eemwatchd.core.reason import Reason
from eemwatchd.core.router_state import DEFAULT_MAXRUN, RouterSnapshot
from eemwatchd.core.secrets import mail_passwords, scrub_text
from eemwatchd.errors import EemwatchdError, ParseError, ResolveError, StateError
from eemwatchd.reconcile.alerting import GatedAlerts, build_alerts, gate_alerts, report_subjects
from eemwatchd.reconcile.applier import Applier, StoreAudit
from eemwatchd.reconcile.connect import (
    RouterConnector,
    RouterSessionLike,
    ServerFetcher,
    default_connector,
    default_fetcher,
)
from eemwatchd.reconcile.observe import judge_results
from eemwatchd.reconcile.pacing import SessionPacing
from eemwatchd.reconcile.results import (
    AddressOutcome,
    AppliedStep,
    HeldTrustpoint,
    Interrupted,
    RouterResult,
    RunProgress,
    RunReport,
    ServerOutcome,
    StepKind,
    reason_for,
    steps_log,
    summarize,
)

log = logging.getLogger("eemwatchd.reconcile")
# Desired trust kept per distinct input (server set, sightings, policy, anchors, pins): a few per pass.
_DESIRED_CACHE_SIZE = 64


def trust_policy(config: Config) -> TrustPolicy:
    p = config.policy
    return TrustPolicy(
        install=p.install,
        include_leaf=p.include_leaf,
        confirmations=p.confirmations,
        recent=timedelta(seconds=p.recent),
        retention=timedelta(seconds=p.retention),
        expiry_warning=timedelta(seconds=p.expiry_warning),
        trustpoint_prefix=p.trustpoint_prefix,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def config_secrets(config: Config) -> list[str]:
    """Every secret value in the config, so the store and alerts can scrub them from anything they write."""
    return config.secrets()


class Reconciler:
    """Observe servers and reconcile routers. One job per router at a time, a bounded number at once."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        connect: RouterConnector | None = None,
        fetch: ServerFetcher | None = None,
        clock: Callable[[], datetime] = utc_now,
        alerter: Alerter | None = None,
        readonly: bool = False,
        io: StoreWorker | None = None,
        router_locks: dict[str, asyncio.Lock] | None = None,
        gate: asyncio.Semaphore | None = None,
        fetch_failures: dict[str, str] | None = None,
    ) -> None:
        """``readonly``: write nothing to the store (another process holds the writer lock): chains are
        judged against what is stored, nothing is recorded, and apply is refused.

        ``router_locks`` and ``gate``: the one-job-per-router locks and the bound on routers at once, when they
        must outlive this reconciler (the daemon builds a new one at every reload while jobs of the old one
        still run: both must share them, or a reload mid-install runs a second job on the router).
        ``io``: how the store is reached (its own thread, with a deadline); the daemon shares one across reloads.
        ``fetch_failures``: server name -> why its last fetch failed entirely (no address gave a chain); while a
        server is in it, what it sends now is unknown and none of its routers is in sync. The daemon shares it
        across reloads."""
        self.config = config
        self.readonly = readonly
        self.alerter = alerter or Alerter.from_config(config.alerts, secrets=config_secrets(config))
        self._router_secrets: set[str] = set()  # mail passwords read from routers, kept out of alerts
        self.store = store
        self.io = io if io is not None else StoreWorker.of(store)
        self.policy = trust_policy(config)
        # sessions paced per router and fleet-wide (back-off when routers refuse sessions or time out)
        self.pacing = SessionPacing(PacingPolicy(max_parallel=config.policy.max_parallel_routers))
        self._connect = self.pacing.connector(connect or default_connector)
        self._fetch = fetch or default_fetcher
        self._clock = clock
        self._extra: list[Certificate] = []  # issuers fetched via AIA (twin candidates)
        self._anchor_cache: dict[str, list[Certificate]] = {}
        self._desired_cache: dict[tuple[object, ...], DesiredTrust] = {}  # see desired_for
        self._gate = gate if gate is not None else asyncio.Semaphore(config.policy.max_parallel_routers)
        self._router_locks: dict[str, asyncio.Lock] = router_locks if router_locks is not None else {}
        self._router_holders: dict[str, asyncio.Task[object]] = {}  # see router_held
        self._stop_reason: str | None = None
        self.fetch_failures: dict[str, str] = fetch_failures if fetch_failures is not None else {}

    def fork(self) -> Reconciler:
        """A reconciler on the same config, store, connections and router locks, with its own stop: an onboarding
        the daemon runs for a client stops when that client goes, and the daemon's jobs go on."""
        twin = Reconciler(self.config, self.store, connect=self._connect, fetch=self._fetch, clock=self._clock,
                          alerter=self.alerter, readonly=self.readonly, io=self.io, router_locks=self._router_locks,
                          gate=self._gate, fetch_failures=self.fetch_failures)
        twin._router_holders = self._router_holders
        twin._router_secrets = self._router_secrets
        return twin

    @contextlib.asynccontextmanager
    async def router_held(self, name: str) -> AsyncIterator[None]:
        """Hold ``name``'s job lock across several steps (onboarding: configure EEM, reconcile, prove): its
        scheduled jobs wait meanwhile, and reconcile_router in the same task does not wait for itself."""
        task = asyncio.current_task()
        if task is not None and self._router_holders.get(name) is task:
            yield
            return
        async with self._router_locks.setdefault(name, asyncio.Lock()):
            if task is not None:
                self._router_holders[name] = task
            try:
                yield
            finally:
                self._router_holders.pop(name, None)

    # --- stopping -------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop between steps: the step under way finishes, nothing new starts, nothing unproven is saved."""
        self._stop_reason = self._stop_reason or reason

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    # --- servers ---------------------------------------------------------------------------------

    def anchors_for(self, server: ServerConfig) -> list[Certificate]:
        """The trust store for ``server``; a CA file is read again when it changed (a long-running daemon
        must see the root an operator or the OS added)."""
        source = str(server.ca_file) if server.ca_file is not None else self.config.policy.trust_store
        try:
            stamp = Path(source).stat().st_mtime_ns if source not in ("system", "certifi") else 0
        except OSError:
            stamp = -1
        key = f"{source}@{stamp}"
        if key not in self._anchor_cache:
            self._anchor_cache = {k: v for k, v in self._anchor_cache.items() if not k.startswith(f"{source}@")}
            self._anchor_cache[key] = load_anchors(source)
        return self._anchor_cache[key]

    async def observe(self, names: Collection[str] | None = None) -> list[ServerOutcome]:
        """Fetch and verify every address of the named servers (all by default) and record each chain."""
        servers = [s for s in self.config.servers if names is None or s.name in names]
        return list(await asyncio.gather(*(self.observe_server(s) for s in servers)))

    async def observe_server(self, server: ServerConfig) -> ServerOutcome:
        """The server job: fetch every address, judge each chain, record it. Never raises EemwatchdError."""
        try:
            results = await self._fetch(server)
            anchors = self.anchors_for(server)
        except EemwatchdError as exc:  # FetchError/ResolveError, or an unreadable trust store (ConfigError)
            log.warning("server %s: %s", server.name, exc)
            return self._fetched(ServerOutcome(server.name, (), str(exc).splitlines()[0]))
        if not results:
            return self._fetched(ServerOutcome(server.name, (), str(ResolveError(f"{server.host}: no address"))))
        now = self._clock()
        observations = await judge_results(results, hostname=server.servername or server.host, anchors=anchors,
                                           now=now, aia=self.config.policy.aia)
        outcome = ServerOutcome(server.name, tuple([await self._record(server, o, now) for o in observations]))
        return self._fetched(outcome)

    def _fetched(self, outcome: ServerOutcome) -> ServerOutcome:
        """Note whether ``outcome`` tells what the server sends now: a fetch in which no address gave a chain
        does not (the routers may meanwhile get a chain they reject), so its routers are not in sync until one
        does."""
        if any(a.chain for a in outcome.addresses):
            self.fetch_failures.pop(outcome.name, None)
        else:
            why = outcome.error or next((a.error for a in outcome.addresses if a.error), None) or "no chain"
            self.fetch_failures[outcome.name] = why
        return outcome

    async def _record(self, server: ServerConfig, obs: ChainObservation, now: datetime) -> AddressOutcome:
        """The outcome of one address; a chain the store could not record is reported as fetched but not counted
        (its confirmations wait for the store), never as an exception that ends the server's job."""
        try:
            return await self._recorded(server, obs, now)
        except StateError as exc:
            log.warning("server %s %s: %s", server.name, obs.address, exc)
            return AddressOutcome(obs.address, tuple(c.sha256 for c in obs.chain), obs.verified,
                                  f"fetched, not recorded: {exc}", 0, certificates=obs.chain)

    async def _recorded(self, server: ServerConfig, obs: ChainObservation, now: datetime) -> AddressOutcome:
        if obs.error is not None or not obs.chain:
            log.warning("server %s %s: %s", server.name, obs.address, obs.reason)
            return AddressOutcome(obs.address, (), False, obs.reason)
        self._extra.extend(c for c in obs.aia_fetched if c not in self._extra)
        verification = obs.verification
        verified = obs.verified
        path = verification.path if verification is not None and verified else ()
        error = verification.error if verification is not None else "not verified"
        changed_from = await self._changed_from(server, obs.address, obs.chain, now) if verified else ()
        if self.readonly:
            key = ",".join(c.sha256 for c in obs.chain)
            stored = await self.io.call(self.store.observations, servers=[server.name], address=obs.address,
                                        chain=key)
            seen = stored[0] if stored else SeenChain(server=server.name, address=obs.address, chain=obs.chain,
                                                        path=path, verified=verified, error=error, first_seen=now,
                                                        last_seen=now, times_seen=0)
        else:
            seen = await self.io.call(
                self.store.record_observation, server=server.name, address=obs.address, chain=obs.chain,
                verified=verified, path=path, error=None if verified else error, now=now,
                min_spacing=timedelta(seconds=server.interval / 2),
            )
        if not verified:
            log.warning("SECURITY: server %s %s sent a chain that does not verify (%s); nothing changes",
                        server.name, obs.address, error)
        pinned = is_pinned_match(seen, server.pins)
        return AddressOutcome(
            obs.address, tuple(c.sha256 for c in obs.chain), verified, None if verified else error, seen.times_seen,
            pinned=pinned, changed_from=changed_from if pinned else (), certificates=obs.chain,
        )

    async def _changed_from(
        self, server: ServerConfig, address: str, chain: Sequence[Certificate], now: datetime
    ) -> tuple[str, ...]:
        """The last verified chain of ``address`` when ``chain`` differs from it, else ().

        Call before recording ``chain``. A chain this address already presented, verified, within
        ``recent`` is no change: a provider may serve old and new chains side by side during a rollout,
        and alternating between them must not alert on every run. The very first sighting is no change.
        """
        last = await self.io.call(self.store.last_verified, server=server.name, address=address)
        key = tuple(c.sha256 for c in chain)
        if last is None or tuple(c.sha256 for c in last.chain) == key:
            return ()
        earlier = await self.io.call(self.store.observations, servers=[server.name], address=address,
                                     chain=",".join(key))
        if any(e.verified and e.last_seen >= now - self.policy.recent for e in earlier):
            return ()
        return tuple(c.sha256 for c in last.chain)

    # --- desired and plan ---------------------------------------------------------------------------

    async def desired_for(self, router: RouterConfig, now: datetime) -> DesiredTrust:
        """What ``router`` should trust now; computed once for all routers that share every input.

        Every router of a server set wants the same trust, and computing it checks signatures (9 % of a
        500-router plan, BENCHMARKS.md). The cache key holds every input of compute_desired: the router's
        servers, each usable observation with its counters and last sighting (a new sighting or chain is a
        new key), the policy, the anchors, the AIA certificates, the pins and the pre-staged certificates. `now`
        enters compute_desired only through which observations are usable, and those are in the key.
        """
        servers = [self.config.server(n) for n in router.servers]
        anchors = unique(c for s in servers for c in self.anchors_for(s))
        stored = await self.io.call(self.store.observations, servers=router.servers, since=now - self.policy.recent)
        observations = [o for o in stored if is_usable(o, self.policy, now)]
        pins = {s.name: s.pins for s in servers}
        prestaged = self.prestaged_for(router)
        # a chain counts as sent now when seen within 1.5 server intervals of its address's latest sighting
        sent_within = {s.name: timedelta(seconds=1.5 * s.interval) for s in servers}
        unfetched = {s.name: self.fetch_failures[s.name] for s in servers if s.name in self.fetch_failures}
        key = (
            tuple(router.servers),
            tuple((o.server, o.address, tuple(c.sha256 for c in o.chain), tuple(c.sha256 for c in o.path),
                   o.verified, o.error, o.times_seen, o.first_seen, o.last_seen) for o in observations),
            self.policy,
            tuple(c.sha256 for c in anchors),
            tuple(c.sha256 for c in self._extra),
            tuple((name, tuple(p)) for name, p in pins.items()),
            tuple((p.server, p.certificate.sha256, p.source) for p in prestaged),
            tuple(sorted(sent_within.items())),
            tuple(sorted(unfetched.items())),
        )
        cached = self._desired_cache.get(key)
        if cached is not None:
            return cached
        desired = compute_desired(
            observations,
            servers=router.servers,
            policy=self.policy,
            anchors=anchors,
            extra=self._extra,
            pins=pins,
            prestaged=prestaged,
            sent_within=sent_within,
            unfetched=unfetched,
            now=now,
        )
        if len(self._desired_cache) >= _DESIRED_CACHE_SIZE:  # older sightings' entries: drop the oldest
            del self._desired_cache[next(iter(self._desired_cache))]
        self._desired_cache[key] = desired
        return desired

    def prestaged_for(self, router: RouterConfig) -> list[Prestaged]:
        """The certificates pre-staged for the servers ``router`` mails through (read and checked at config load)."""
        return [Prestaged(server.name, cert, str(entry.file))
                for server in (self.config.server(n) for n in router.servers)
                for entry in server.prestage for cert in entry.certificates]

    def _validator(self) -> ChainValidator:
        lenient = not self.config.policy.strict_ios_validation

        def validate(
            chain: Sequence[Certificate], trustpoints: Mapping[str, Sequence[Certificate]], now: datetime
        ) -> bool:
            return validate_as_ios(chain, trustpoints, now, lenient=lenient).ok

        return validate

    def _known_servers(self) -> list[KnownServer]:
        return [
            KnownServer(s.host, s.effective_port, "starttls" if s.mode == "starttls" else "tls")
            for s in self.config.servers
        ]

    # --- runs ---------------------------------------------------------------------------------------

    def _routers(self, only: str | None) -> list[RouterConfig]:
        if only is None:
            return list(self.config.routers)
        return [self.config.router(only)]

    async def run(
        self, *, apply: bool, router: str | None = None, observe: bool = True, notify: bool = True,
        progress: RunProgress | None = None,
    ) -> RunReport:
        """Observe the routers' servers, then plan (and with ``apply`` change) every selected router;
        ``progress`` hears of each router as it starts and ends."""
        if apply and self.readonly:
            raise ValueError("a read-only reconciler cannot apply")
        routers = self._routers(router)
        needed = {name for r in routers for name in r.servers}
        servers = await self.observe(needed) if observe else []
        results = await asyncio.gather(*(self.reconcile_router(r, apply=apply, progress=progress)
                                         for r in routers))
        events: list[str] = []
        for result in results:
            for report in result.plan.reports if result.plan else ():
                if report.kind == "event" and report.message not in events:
                    events.append(report.message)
        run_report = RunReport(servers, list(results), events)
        if notify:
            await self.notify(run_report)
        return run_report

    async def gate(self, report: RunReport) -> GatedAlerts | None:
        """The alerts ``report`` calls for, and the alert states to store once they are delivered (None for a
        reader: another process holds the writer lock and sends them)."""
        now = self._clock()
        built = build_alerts(report, at=now)
        if self.readonly:
            return None
        stored = await self.io.call(self.store.alert_states, subjects=report_subjects(report))  # only these
        alerts, states = gate_alerts(built, report, stored, now=now,
                                     remind_after=timedelta(seconds=self.config.policy.alert_reminder))
        secrets = frozenset(self._router_secrets)
        return GatedAlerts(self.alerter.prepare(alerts, secrets=secrets), states, secrets)

    async def record_sent(self, gated: GatedAlerts) -> None:
        """Store the alert states of alerts that were delivered (a failed delivery is tried again next time)."""
        for state in gated.states:
            await self.io.call(self.store.save_alert_state, state)

    async def notify(self, report: RunReport) -> None:
        """Send the alerts ``report`` calls for and wait for them; failures land in the report. (The daemon gates
        and hands them to its background queue instead: no job waits for a sink.)"""
        gated = await self.gate(report)
        if gated is None:
            return
        report.alerts = gated.alerts
        errors = await self.alerter.send(report.alerts, secrets=gated.secrets)
        report.alert_errors = [str(e) for e in errors]
        if not errors:
            await self.record_sent(gated)

    async def reconcile_router(self, router: RouterConfig, *, apply: bool,
                               progress: RunProgress | None = None) -> RouterResult:
        """The router job (plan, or apply with ``apply``). The one place that turns a router's exception
        into its result: one bad router never stops a run. Never two jobs on one router at once."""
        result = RouterResult(router.name, applying=apply)
        async with self.router_held(router.name), self._gate:
            if progress is not None:
                progress.router_started(router.name)
            if self._stop_reason is not None:
                result.error, result.error_reason = f"not started: {self._stop_reason}", Reason.INTERRUPTED
            else:
                steps_log.info("router %s: %s", router.name, "applying" if apply else "reading",
                               extra={"event": "router_started", "router": router.name})
                await self._audit_batched(self._guarded(router, result, apply=apply))
        if apply:
            result.result = summarize(result)
            try:
                await self.io.call(self.store.record_outcome, router.name, at=self._clock(), ok=result.in_sync,
                                   summary=result.result, error=result.error)
            except EemwatchdError as exc:
                log.warning("router %s: outcome not stored: %s", router.name, exc)
        if result.error:
            log.info("router %s: %s", router.name, result.error_text)
        if progress is not None:
            progress.router_finished(result)
        return result

    async def _audit_batched(self, job: Awaitable[None]) -> None:
        """Run ``job`` with the audit head file written once at its end, not per row (Store.audit_batch), on the
        store's own thread like every store call; a store that fails here is the store's alert, not the job's."""
        try:
            await self.io.call(self.store.begin_audit_batch)
        except StateError as exc:  # the job finds out about the store itself, with its own reason
            log.warning("the audit head file is written per row in this job: %s", exc)
            await job
            return
        try:
            await job
        finally:
            try:
                await self.io.call(self.store.end_audit_batch)
            except StateError as exc:
                log.warning("the audit head file was not brought up to date: %s", exc)

    async def _guarded(self, router: RouterConfig, result: RouterResult, *, apply: bool) -> None:
        total = router.timeouts.total
        deadline = asyncio.get_running_loop().time() + total

        def checkpoint(step: str) -> None:
            if self._stop_reason is not None:
                raise Interrupted(f"interrupted ({self._stop_reason}) before {step}")
            if asyncio.get_running_loop().time() > deadline:
                raise Interrupted(f"timeouts.total ({total:g}s) exceeded before {step}", reason=Reason.TIMEOUT)

        try:
            # A hard bound one step beyond the soft one: a step under way normally finishes first.
            async with asyncio.timeout(total + router.timeouts.step):
                await self._run_router(router, result, apply=apply, checkpoint=checkpoint)
        except EemwatchdError as exc:
            # before TimeoutError: RouterTimeout is one, and it names the timeout that fired (connect, login, a
            # command); only the hard bound above is "timeouts.total"
            # a router's words may quote its `_email_server` (user:password@host): scrubbed before it goes anywhere
            result.error, result.error_reason = scrub_text(str(exc), self._router_secrets), reason_for(exc)
        except TimeoutError:
            result.error = f"timeouts.total ({total:g}s) exceeded; the session was closed"
            result.error_reason = Reason.TIMEOUT
        except Exception as exc:
            log.exception("router %s: unexpected error", router.name)
            result.error, result.error_reason = scrub_text(f"unexpected error: {exc!r}", self._router_secrets), \
                Reason.FAILED

    async def _run_router(
        self, router: RouterConfig, result: RouterResult, *, apply: bool, checkpoint: Callable[[str], None]
    ) -> None:
        prefix = self.policy.trustpoint_prefix
        async with self._connect(router) as session:
            result.reachable = True  # the session is open: what fails from here is not "unreachable"
            snapshot = await session.read_snapshot()
            _require_readable_managed(snapshot, prefix=prefix, adopt=router.adopt)
            passwords = mail_passwords(snapshot)
            self._router_secrets.update(passwords)
            self.store.add_secrets(passwords)  # the router's mail password never reaches the audit or state
            saved = await session.read_saved_trustpoints()
            now = self._clock()
            trustpoints = {tp.name: tp.ca_certificates for tp in snapshot.trustpoints}
            result.trustpoints = [
                HeldTrustpoint(name, is_managed(name, prefix=prefix, adopt=router.adopt), certs)
                for name, certs in trustpoints.items()
            ]
            result.certificates = {tp.name: tp.certificates_with_kind for tp in snapshot.trustpoints}
            others = {tp.name: [c for kind, c in tp.certificates_with_kind if kind != "ca"]
                      for tp in snapshot.trustpoints}
            await self._explain_differences(router, trustpoints, result)
            # In sync needs the LAST test-fire to have succeeded: a failure after an earlier success is
            # evidence that mail does not work now (docs/design.md "Invariants").
            proof = await self.io.call(self.store.last_proof, router.name)
            desired = await self.desired_for(router, now)
            plan = plan_router(
                trustpoints,
                desired,
                policy=self.policy,
                adopt=router.adopt,
                now=now,
                unneeded_since=await self.io.call(self.store.unneeded_since, router.name),
                validate=self._validator(),
                proven=proof.trust if proof is not None and proof.ok else None,
                saved=saved,
                other_certificates={name: certs for name, certs in others.items() if certs},
                unprovable=unprovable_reason(snapshot, router.applet),
                last_fire_failed=proof.evidence if proof is not None and not proof.ok else None,
                router_clock=snapshot.clock,
            )
            result.plan = plan
            result.lint = lint_router(snapshot, servers=self._known_servers(), applet_name=router.applet, now=now,
                                      our_clock=now, soon=self.policy.expiry_warning, trustpoint_prefix=prefix,
                                      adopt=router.adopt)
            result.roles = {d.sha256: d.role for d in desired.certificates}
            prestaged = self.prestaged_for(router)
            lenient = not self.config.policy.strict_ios_validation
            result.prestaged = prestage_readiness(prestaged, trustpoints, now, lenient=lenient)
            if self.readonly:
                return
            await self.io.call(self.store.set_unneeded, router.name, plan.unneeded)
            if apply and plan.needs_test_fire:
                try:
                    await self._apply(session, router, snapshot, result, checkpoint=checkpoint,
                                      held=set(managed_trust(trustpoints, prefix=prefix)))
                finally:
                    # what the router accepts now, with the trust apply left it (added, or put back)
                    after = {held.name: held.certificates for held in result.trustpoints}
                    result.prestaged = prestage_readiness(prestaged, after, now, lenient=lenient)
                if result.error is None and plan.waiting:
                    result.plan = after_changes(plan, desired, after, validate=self._validator(), now=now)

    async def _apply(self, session: RouterSessionLike, router: RouterConfig, snapshot: RouterSnapshot,
                     result: RouterResult, *, checkpoint: Callable[[str], None], held: set[str]) -> None:
        assert result.plan is not None
        applet = snapshot.applet(router.applet)
        applier = Applier(
            session=session, router=router, result=result, audit=StoreAudit(self.io, router.name, self._clock),
            checkpoint=checkpoint, held=held,
            maxrun=applet.effective_maxrun if applet is not None else DEFAULT_MAXRUN,
            success_messages=applet.syslog_messages_after_mail() if applet is not None else (),
            unprovable=unprovable_reason(snapshot, router.applet),
        )
        await applier.apply(result.plan)

    async def _explain_differences(
        self, router: RouterConfig, trustpoints: Mapping[str, Sequence[Certificate]], result: RouterResult
    ) -> None:
        """Audit rows for every difference between what the audit says the router holds and what it holds."""
        prefix = self.policy.trustpoint_prefix
        rows = [AuditedChange(e.action, e.trustpoint, e.sha256_before, e.sha256_after)
                for e in await self.io.call(self.store.audit, router=router.name)]
        actual = {name: tuple(c.sha256 for c in certs) for name, certs in trustpoints.items()}
        audit = StoreAudit(self.io, router.name, self._clock)
        for diff in observed_differences(expected_holdings(rows, prefix=prefix), actual, prefix=prefix):
            if not self.readonly:
                await audit.change(diff.action, trustpoint=diff.trustpoint, before=diff.sha256_before,
                             after=diff.sha256_after, reason=diff.reason)
            result.add_step(AppliedStep(StepKind.OBSERVED, diff.trustpoint, diff.sha256_after or diff.sha256_before,
                                        True, f"{diff.action}: {diff.reason}"))


def _require_readable_managed(snapshot: RouterSnapshot, *, prefix: str, adopt: Collection[str]) -> None:
    """ParseError when a trustpoint eemwatchd manages could not be read, or shows a CA certificate without its
    content: what it holds is unknown, so planning would be guessing (an "empty" trustpoint would be retired).
    Blocks of the config we do not manage are findings (lint EEM015), never the end of the router."""
    for problem in snapshot.problems:
        if problem.trustpoint is not None and is_managed(problem.trustpoint, prefix=prefix, adopt=adopt):
            raise ParseError(f"{RUNNING_CONFIG} (managed trustpoint {problem.trustpoint})", problem.reason,
                             line=problem.line)
    for tp in snapshot.trustpoints:
        if is_managed(tp.name, prefix=prefix, adopt=adopt) and any(
                h.kind == "ca" and h.certificate is None and h.storage is None for h in tp.certificates):
            raise ParseError(f"{RUNNING_CONFIG} (managed trustpoint {tp.name})",
                             "a CA certificate is shown without its content (no hex, no file reference)")


def unprovable_reason(snapshot: RouterSnapshot, applet_name: str) -> str | None:
    """Why no test-fire of ``applet_name`` on this router can prove mail, or None when one can."""
    applet = snapshot.applet(applet_name)
    unreadable = next((p for p in snapshot.problems if p.applet == applet_name), None)
    if unreadable is not None:
        return f"applet {applet_name} could not be read ({unreadable.reason})"
    if applet is None:
        return f"applet {applet_name} is not configured on the router"
    if not applet.mail_actions:
        return f"applet {applet_name} has no mail action; running it proves nothing about mail"
    return None

