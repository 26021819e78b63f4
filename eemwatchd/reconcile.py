"""The reconcile service: observe servers, compute desired trust, plan and apply it router by router."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from eemwatchd.adapters.aia import complete_chain
from eemwatchd.adapters.alerts import Alert, Alerter
from eemwatchd.adapters.router import FireResult, RouterSession, RouterTarget, RouterTimeouts
from eemwatchd.adapters.smtp import AddressResult, FetchTimeouts, fetch_server
from eemwatchd.adapters.store import AuditEntry, Store
from eemwatchd.adapters.truststore import load_anchors
from eemwatchd.config import Config, RouterConfig, ServerConfig
from eemwatchd.core.certificate import Certificate, unique
from eemwatchd.core.chain import verify_chain
from eemwatchd.core.desired import DesiredTrust, TrustPolicy, compute_desired, is_pinned_match
from eemwatchd.core.ios_trust import validate_as_ios
from eemwatchd.core.lint import Finding, KnownServer, lint_router
from eemwatchd.core.plan import Action, ChainValidator, RouterPlan, is_managed, plan_router
from eemwatchd.core.router_state import MailServer, RouterSnapshot
from eemwatchd.errors import AiaError, EemwatchdError

log = logging.getLogger("eemwatchd.reconcile")


# --- what a router session must offer (eemwatchd.adapters.router.RouterSession fits) ------------------


class RouterSessionLike(Protocol):
    async def read_snapshot(self) -> RouterSnapshot: ...

    async def install_certificate(self, trustpoint: str, certificate: Certificate) -> object: ...

    async def retire_trustpoint(self, name: str) -> object: ...

    async def save_config(self) -> object: ...

    async def fire_applet(
        self, applet: str, *, maxrun: float, success_messages: Sequence[str] = ()
    ) -> FireResult: ...


RouterConnector = Callable[[RouterConfig], contextlib.AbstractAsyncContextManager[RouterSessionLike]]
ServerFetcher = Callable[[ServerConfig], Awaitable[list[AddressResult]]]


# --- results -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddressOutcome:
    address: str
    chain: tuple[str, ...]
    verified: bool
    error: str | None
    times_seen: int = 0
    pinned: bool = True  # False: verified, but no certificate matches the server's pins (a security event)
    changed_from: tuple[str, ...] = ()  # the last verified chain before this one, when this one is new here


@dataclass(frozen=True)
class ServerOutcome:
    name: str
    addresses: tuple[AddressOutcome, ...]
    error: str | None = None


@dataclass(frozen=True)
class AppliedStep:
    kind: str  # add | retire | test-fire | rollback | save
    trustpoint: str | None
    sha256: str | None
    ok: bool
    detail: str


@dataclass
class RouterResult:
    """Everything one router's run produced. ``result`` is set by apply only."""

    name: str
    reachable: bool = False
    error: str | None = None
    trustpoints: list[tuple[str, bool, tuple[Certificate, ...]]] = field(default_factory=list)
    plan: RouterPlan | None = None
    lint: list[Finding] = field(default_factory=list)
    steps: list[AppliedStep] = field(default_factory=list)
    result: str | None = None

    @property
    def in_sync(self) -> bool:
        return self.error is None and self.plan is not None and self.plan.in_sync

    @property
    def applied(self) -> bool:
        """Apply reached its goal: no error and every step succeeded."""
        return self.error is None and self.plan is not None and all(s.ok for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "reachable": self.reachable,
            "error": self.error,
            "trustpoints": [
                {
                    "name": name,
                    "managed": managed,
                    "certs": [
                        {"sha256": c.sha256, "not_after": c.not_after.isoformat(), "subject": c.subject}
                        for c in certs
                    ],
                }
                for name, managed, certs in self.trustpoints
            ],
            "actions": [
                {"kind": a.kind, "trustpoint": a.trustpoint, "sha256": a.sha256, "reason": a.reason}
                for a in (self.plan.actions if self.plan else ())
            ],
            "reports": [
                {"kind": r.kind, "trustpoint": r.trustpoint, "message": r.message}
                for r in (self.plan.reports if self.plan else ())
            ],
            "in_sync": self.in_sync,
            "lint": [
                {"rule": f.rule, "severity": f.severity, "message": f.message, "fix": f.fix}
                for f in self.lint
            ],
        }
        if self.result is not None:
            out["result"] = self.result
            out["steps"] = [
                {
                    "kind": s.kind,
                    "trustpoint": s.trustpoint,
                    "sha256": s.sha256,
                    "ok": s.ok,
                    "detail": s.detail,
                }
                for s in self.steps
            ]
        return out


@dataclass
class RunReport:
    servers: list[ServerOutcome]
    routers: list[RouterResult]
    events: list[str]
    alerts: list[Alert] = field(default_factory=list)  # as sent: de-duplicated, scrubbed of secrets
    alert_errors: list[str] = field(default_factory=list)  # one line per sink that could not deliver

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


class ApplyFailed(EemwatchdError):
    """A step of apply failed; what was done so far is in the router's steps."""


# --- the service ---------------------------------------------------------------------------------------


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
    """Every secret value in the config, so the store can scrub them from anything it writes."""
    out: list[str] = []
    for router in config.routers:
        for secret in (router.password, router.enable_secret):
            if secret is not None:
                out.append(secret.reveal())
    for alert in config.alerts:
        if alert.password is not None:
            out.append(alert.password.reveal())
    return out


class Reconciler:
    """One reconcile pass over the configured routers. One worker per router, a bounded number at once."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        connect: RouterConnector | None = None,
        fetch: ServerFetcher | None = None,
        clock: Callable[[], datetime] = utc_now,
        alerter: Alerter | None = None,
    ) -> None:
        self.config = config
        self.alerter = alerter or Alerter.from_config(config.alerts, secrets=config_secrets(config))
        self._router_secrets: set[str] = set()  # mail passwords read from routers, kept out of alerts
        self.store = store
        self.policy = trust_policy(config)
        self._connect = connect or default_connector
        self._fetch = fetch or default_fetcher
        self._clock = clock
        self._extra: list[Certificate] = []  # issuers fetched via AIA in this run (twin candidates)
        self._anchor_cache: dict[str, list[Certificate]] = {}

    # --- servers ---------------------------------------------------------------------------------

    def anchors_for(self, server: ServerConfig) -> list[Certificate]:
        source = str(server.ca_file) if server.ca_file is not None else self.config.policy.trust_store
        if source not in self._anchor_cache:
            self._anchor_cache[source] = load_anchors(source)
        return self._anchor_cache[source]

    async def observe(self, names: Collection[str] | None = None) -> list[ServerOutcome]:
        """Fetch and verify every address of the named servers (all by default) and record each chain."""
        servers = [s for s in self.config.servers if names is None or s.name in names]
        return list(await asyncio.gather(*(self._observe_server(s) for s in servers)))

    async def _observe_server(self, server: ServerConfig) -> ServerOutcome:
        try:
            results = await self._fetch(server)
            anchors = self.anchors_for(server)
        except EemwatchdError as exc:  # FetchError, or a trust store that cannot be read (ConfigError)
            log.warning("server %s: %s", server.name, exc)
            return ServerOutcome(server.name, (), str(exc).splitlines()[0])
        hostname = server.servername or server.host
        out: list[AddressOutcome] = []
        for result in results:
            if result.error is not None or not result.chain:
                reason = str(result.error) if result.error is not None else "no certificate sent"
                log.warning("server %s %s: %s", server.name, result.address, reason)
                out.append(AddressOutcome(result.address, (), False, reason))
                continue
            now = self._clock()
            chain = tuple(result.chain)
            verdict = verify_chain(chain, hostname=hostname, anchors=anchors, now=now)
            if not verdict.verified and self.config.policy.aia:
                fetched = await self._complete(chain, anchors)
                if fetched:
                    self._extra.extend(fetched)
                    verdict = verify_chain((*chain, *fetched), hostname=hostname, anchors=anchors, now=now)
            changed_from = self._changed_from(server, result.address, chain, now) if verdict.verified else ()
            seen = self.store.record_observation(
                server=server.name,
                address=result.address,
                chain=chain,
                verified=verdict.verified,
                path=verdict.path if verdict.verified else (),
                error=verdict.error,
                now=now,
            )
            if not verdict.verified:
                log.warning(
                    "SECURITY: server %s %s sent a chain that does not verify (%s); nothing changes",
                    server.name,
                    result.address,
                    verdict.error,
                )
            pinned = is_pinned_match(seen, server.pins)
            out.append(
                AddressOutcome(
                    result.address,
                    tuple(c.sha256 for c in chain),
                    verdict.verified,
                    verdict.error,
                    seen.times_seen,
                    pinned=pinned,
                    changed_from=changed_from if pinned else (),
                )
            )
        return ServerOutcome(server.name, tuple(out))

    def _changed_from(
        self, server: ServerConfig, address: str, chain: Sequence[Certificate], now: datetime
    ) -> tuple[str, ...]:
        """The last verified chain of ``address`` when ``chain`` differs from it, else ().

        Call before recording ``chain``. A chain this address already presented, verified, within
        ``recent`` is no change: a provider may serve old and new chains side by side during a rollout,
        and alternating between them must not alert on every run. The very first sighting is no change.
        """
        last = self.store.last_verified(server=server.name, address=address)
        key = tuple(c.sha256 for c in chain)
        if last is None or tuple(c.sha256 for c in last.chain) == key:
            return ()
        earlier = self.store.observations(servers=[server.name], address=address, chain=",".join(key))
        if any(e.verified and e.last_seen >= now - self.policy.recent for e in earlier):
            return ()
        return tuple(c.sha256 for c in last.chain)

    async def _complete(
        self, chain: Sequence[Certificate], anchors: Sequence[Certificate]
    ) -> list[Certificate]:
        try:
            return list(await complete_chain(chain, anchors=anchors))
        except AiaError as exc:
            log.info("AIA completion failed: %s", exc)
            return []

    # --- desired and plan ---------------------------------------------------------------------------

    def desired_for(self, router: RouterConfig, now: datetime) -> DesiredTrust:
        servers = [self.config.server(n) for n in router.servers]
        anchors = unique(c for s in servers for c in self.anchors_for(s))
        observations = self.store.observations(servers=router.servers, since=now - self.policy.recent)
        return compute_desired(
            observations,
            servers=router.servers,
            policy=self.policy,
            anchors=anchors,
            extra=self._extra,
            pins={s.name: s.pins for s in servers},
            now=now,
        )

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

    async def run(self, *, apply: bool, router: str | None = None, observe: bool = True) -> RunReport:
        """Observe the routers' servers, then plan (and with ``apply`` change) every selected router."""
        routers = self._routers(router)
        needed = {name for r in routers for name in r.servers}
        servers = await self.observe(needed) if observe else []
        gate = asyncio.Semaphore(self.config.policy.max_parallel_routers)
        results = await asyncio.gather(*(self._guarded(r, gate, apply=apply) for r in routers))
        events: list[str] = []
        for result in results:
            for report in result.plan.reports if result.plan else ():
                if report.kind == "event" and report.message not in events:
                    events.append(report.message)
        run_report = RunReport(servers, list(results), events)
        await self.notify(run_report)
        return run_report

    async def notify(self, report: RunReport) -> None:
        """Send the alerts ``report`` calls for; the one place alerts leave a run (failures land in the report).

        A caller that runs ``observe`` alone passes ``RunReport(servers, [], [])``.
        """
        alerts = build_alerts(report, at=self._clock())
        secrets = set(self._router_secrets)
        report.alerts = self.alerter.prepare(alerts, secrets=secrets)
        errors = await self.alerter.send(report.alerts, secrets=secrets)
        report.alert_errors = [str(e) for e in errors]

    async def _guarded(self, router: RouterConfig, gate: asyncio.Semaphore, *, apply: bool) -> RouterResult:
        """The one place that turns a router's exception into its result: one bad router never stops a run."""
        result = RouterResult(router.name)
        async with gate:
            try:
                await self._run_router(router, result, apply=apply)
            except EemwatchdError as exc:
                result.error = str(exc)
            except Exception as exc:
                log.exception("router %s: unexpected error", router.name)
                result.error = f"unexpected error: {exc!r}"
        if apply:
            result.result = _summarize(result)
            with contextlib.suppress(EemwatchdError):
                self.store.record_outcome(
                    router.name,
                    at=self._clock(),
                    ok=result.applied,
                    summary=result.result,
                    error=result.error,
                )
        if result.error:
            log.warning("%s", result.error if result.error.startswith(f"router {router.name}:")
                        else f"router {router.name}: {result.error}")
        return result

    async def _run_router(self, router: RouterConfig, result: RouterResult, *, apply: bool) -> None:
        prefix = self.policy.trustpoint_prefix
        async with self._connect(router) as session:
            snapshot = await session.read_snapshot()
            result.reachable = True
            self._router_secrets.update(mail_passwords(snapshot))
            now = self._clock()
            trustpoints = {tp.name: tp.ca_certificates for tp in snapshot.trustpoints}
            result.trustpoints = [
                (name, is_managed(name, prefix=prefix, adopt=router.adopt), certs)
                for name, certs in trustpoints.items()
            ]
            desired = self.desired_for(router, now)
            plan = plan_router(
                trustpoints,
                desired,
                policy=self.policy,
                adopt=router.adopt,
                now=now,
                unneeded_since=self.store.unneeded_since(router.name),
                validate=self._validator(),
            )
            result.plan = plan
            result.lint = lint_router(
                snapshot,
                servers=self._known_servers(),
                applet_name=router.applet,
                now=now,
                our_clock=now,
                soon=self.policy.expiry_warning,
            )
            self.store.set_unneeded(router.name, plan.unneeded)
            if apply and plan.actions:
                applet = snapshot.applet(router.applet)
                maxrun = applet.effective_maxrun if applet is not None else 20.0
                success = applet.syslog_messages_after_mail() if applet is not None else ()
                await self._apply(session, router, plan, result, maxrun=maxrun, success=success)

    # --- apply --------------------------------------------------------------------------------------

    def _audit(
        self,
        router: str,
        action: str,
        *,
        trustpoint: str | None = None,
        before: str | None = None,
        after: str | None = None,
        test_fire: str | None = None,
        reason: str,
    ) -> None:
        self.store.append_audit(
            AuditEntry(
                at=self._clock(),
                router=router,
                action=action,
                trustpoint=trustpoint,
                sha256_before=before,
                sha256_after=after,
                test_fire=test_fire,
                reason=reason,
            )
        )

    async def _fire(
        self,
        session: RouterSessionLike,
        router: RouterConfig,
        result: RouterResult,
        *,
        maxrun: float,
        success: Sequence[str] = (),
        why: str,
    ) -> bool:
        outcome = await session.fire_applet(router.applet, maxrun=maxrun, success_messages=success)
        ok = bool(getattr(outcome, "ok", False))
        detail = _fire_detail(outcome)
        result.steps.append(AppliedStep("test-fire", None, None, ok, detail))
        self._audit(router.name, "test-fire", test_fire="ok" if ok else f"failed: {detail}", reason=why)
        return ok

    async def _apply(
        self,
        session: RouterSessionLike,
        router: RouterConfig,
        plan: RouterPlan,
        result: RouterResult,
        *,
        maxrun: float,
        success: Sequence[str] = (),
    ) -> None:
        """Blue-green: add and confirm new trustpoints, test-fire, only then retire; save once at the end.

        Until the retirements the router holds everything it held before, so a failure or a crash there
        leaves it sending mail as before. A failed test-fire after retirements puts the retired
        certificates back.
        """
        changed = False
        empties = [a for a in plan.retires if a.certificate is None]
        retires = [a for a in plan.retires if a.certificate is not None]
        try:
            # Empty trustpoints hold no trust; removing them first frees their names for the adds.
            for action in empties:
                await self._retire(session, router, action, result)
                changed = True
            for action in plan.adds:
                await self._add(session, router, action, result)
                changed = True
            fired = await self._fire(
                session,
                router,
                result,
                maxrun=maxrun,
                success=success,
                why=f"after {len(plan.adds)} add(s), before {len(retires)} retire(s)",
            )
            if not fired:
                if retires:
                    result.steps.append(
                        AppliedStep(
                            "retire",
                            None,
                            None,
                            False,
                            "retirements skipped: the test-fire failed; old trust kept",
                        )
                    )
                raise ApplyFailed("test-fire failed; nothing retired")
            retired: list[Action] = []
            for action in retires:
                await self._retire(session, router, action, result)
                changed = True
                retired.append(action)
            if retired and not await self._fire(
                session, router, result, maxrun=maxrun, success=success, why=f"after {len(retired)} retire(s)"
            ):
                await self._rollback(session, router, retired, result)
                raise ApplyFailed("test-fire failed after retiring; retired trust put back")
        finally:
            if changed:
                await self._save(session, router, result)

    async def _retire(
        self, session: RouterSessionLike, router: RouterConfig, action: Action, result: RouterResult
    ) -> None:
        try:
            await session.retire_trustpoint(action.trustpoint)
        except EemwatchdError as exc:
            result.steps.append(
                AppliedStep("retire", action.trustpoint, action.sha256 or None, False, str(exc))
            )
            raise
        result.steps.append(
            AppliedStep("retire", action.trustpoint, action.sha256 or None, True, action.reason)
        )
        self._audit(
            router.name,
            "retire",
            trustpoint=action.trustpoint,
            before=action.sha256 or None,
            reason=action.reason,
        )

    async def _add(
        self, session: RouterSessionLike, router: RouterConfig, action: Action, result: RouterResult
    ) -> None:
        assert action.certificate is not None
        try:
            await session.install_certificate(action.trustpoint, action.certificate)
        except EemwatchdError as exc:
            result.steps.append(AppliedStep("add", action.trustpoint, action.sha256, False, str(exc)))
            self._audit(
                router.name,
                "add-failed",
                trustpoint=action.trustpoint,
                after=action.sha256,
                reason=f"{exc} (for: {action.reason})",
            )
            raise
        result.steps.append(AppliedStep("add", action.trustpoint, action.sha256, True, action.reason))
        self._audit(
            router.name, "add", trustpoint=action.trustpoint, after=action.sha256, reason=action.reason
        )

    async def _rollback(
        self,
        session: RouterSessionLike,
        router: RouterConfig,
        retired: Sequence[Action],
        result: RouterResult,
    ) -> None:
        for action in retired:
            if action.certificate is None:
                continue
            try:
                await session.install_certificate(action.trustpoint, action.certificate)
            except EemwatchdError as exc:
                result.steps.append(
                    AppliedStep("rollback", action.trustpoint, action.sha256, False, str(exc))
                )
                continue
            result.steps.append(AppliedStep("rollback", action.trustpoint, action.sha256, True, "put back"))
            self._audit(
                router.name,
                "rollback",
                trustpoint=action.trustpoint,
                after=action.sha256,
                reason="test-fire failed after retiring",
            )

    async def _save(self, session: RouterSessionLike, router: RouterConfig, result: RouterResult) -> None:
        try:
            await session.save_config()
        except EemwatchdError as exc:
            result.steps.append(AppliedStep("save", None, None, False, str(exc)))
            self._audit(router.name, "save-failed", reason=str(exc))
            if result.error is None:
                result.error = f"saving the configuration failed: {exc}"
            return
        result.steps.append(AppliedStep("save", None, None, True, "write memory"))
        self._audit(router.name, "save", reason="configuration saved once after the changes")


def mail_passwords(snapshot: RouterSnapshot) -> set[str]:
    """The SMTP passwords a router's applets use (``_email_server`` and mail actions), to scrub from alerts."""
    texts = [snapshot.environment.get("_email_server", "")]
    texts += [snapshot.expand(m.server)[0] for a in snapshot.applets for m in a.mail_actions]
    out: set[str] = set()
    for text in texts:
        password = MailServer.from_text(text).password if text else None
        if password:
            out.add(password)
    return out


# --- alerts --------------------------------------------------------------------------------------------


def build_alerts(report: RunReport, *, at: datetime) -> list[Alert]:
    """The alerts a run calls for: chains that changed or do not verify, drift, refresh results, expiry."""
    alerts: list[Alert] = []
    for server in report.servers:
        for address in server.addresses:
            alert = _chain_alert(server.name, address, at)
            if alert is not None:
                alerts.append(alert)
    for result in report.routers:
        alerts.extend(_router_alerts(result, at))
    return alerts


def _chain_alert(server: str, address: AddressOutcome, at: datetime) -> Alert | None:
    if not address.chain:  # nothing was served (fetch failed): not a chain event
        return None
    facts: dict[str, Any] = {"server": server, "address": address.address, "chain_sha256": list(address.chain)}
    if not address.verified or not address.pinned:
        reason = (address.error or "did not verify against the trust store") if not address.verified else (
            "no certificate matches the configured pins")
        return Alert(
            event="chain_unverified",
            subject=server,
            summary=f"SECURITY: {server} {address.address} sent a chain that is not trusted ({reason}); "
            "nothing changed",
            details={**facts, "reason": reason},
            at=at,
        )
    if address.changed_from:
        return Alert(
            event="chain_changed",
            subject=server,
            summary=f"{server} {address.address} now sends chain {_short(address.chain)} "
            f"(was {_short(address.changed_from)})",
            details={**facts, "previous_chain_sha256": list(address.changed_from)},
            at=at,
        )
    return None


def _short(chain: Sequence[str]) -> str:
    return "/".join(sha[:8].upper() for sha in chain)


def _router_alerts(result: RouterResult, at: datetime) -> list[Alert]:
    name = result.name
    mode = "apply" if result.result is not None else "plan"
    out: list[Alert] = []
    if result.error is not None:
        failed = [
            {"kind": s.kind, "trustpoint": s.trustpoint, "sha256": s.sha256, "detail": s.detail}
            for s in result.steps
            if not s.ok
        ]
        what = "unreachable" if not result.reachable else f"{mode} failed"
        out.append(Alert(
            event="refresh_failed",
            subject=name,
            summary=f"router {name}: {what}: {result.error.splitlines()[0]}",
            details={"router": name, "mode": mode, "reachable": result.reachable, "error": result.error,
                     "result": result.result, "failed_steps": failed},
            at=at,
        ))
    plan = result.plan
    if plan is not None and (plan.actions or plan.waiting):
        summary = f"router {name} needs {len(plan.adds)} add(s) and {len(plan.retires)} retire(s)"
        if plan.waiting:
            summary += f"; it does not accept {len(plan.waiting)} new chain(s) yet (awaiting confirmation)"
        out.append(Alert(
            event="router_drift",
            subject=name,
            summary=summary,
            details={"router": name, "mode": mode, "waiting": list(plan.waiting), "actions": [
                {"kind": a.kind, "trustpoint": a.trustpoint, "sha256": a.sha256, "reason": a.reason}
                for a in plan.actions
            ]},
            at=at,
        ))
    changes = [s for s in result.steps if s.ok and s.kind in ("add", "retire")]
    fired = [s for s in result.steps if s.kind == "test-fire"]
    if result.result is not None and result.applied and changes and fired and all(s.ok for s in fired):
        out.append(Alert(
            event="refresh_succeeded",
            subject=name,
            summary=f"router {name}: {len(changes)} change(s) applied; test mail sent",
            details={"router": name, "changes": [
                {"kind": s.kind, "trustpoint": s.trustpoint, "sha256": s.sha256} for s in changes
            ], "test_fire": fired[-1].detail},
            at=at,
        ))
    expiring = [r for r in (plan.reports if plan is not None else ()) if r.kind in ("expired", "expiring")]
    if expiring:
        expired = sum(1 for r in expiring if r.kind == "expired")
        out.append(Alert(
            event="expiry",
            subject=name,
            summary=f"router {name}: {expired} expired and {len(expiring) - expired} expiring certificate(s) "
            f"({expiring[0].trustpoint}: {expiring[0].message})",
            details={"router": name, "certificates": [
                {"kind": r.kind, "trustpoint": r.trustpoint, "message": r.message} for r in expiring
            ]},
            at=at,
        ))
    return out


def _fire_detail(outcome: FireResult) -> str:
    if outcome.reason:
        return outcome.reason
    if outcome.lines:
        return "; ".join(outcome.lines)[:500]
    return "mail sent" if outcome.ok else "failed"


def _summarize(result: RouterResult) -> str:
    if not result.reachable:
        return "unreachable"
    if result.plan is None:
        return "failed"
    if result.error is not None:
        done = sum(1 for s in result.steps if s.ok and s.kind in ("add", "retire"))
        return f"failed after {done} change(s)" if done else "failed"
    if result.plan.in_sync:
        return "in-sync"
    return "applied"


# --- default adapters --------------------------------------------------------------------------------


async def default_fetcher(server: ServerConfig) -> list[AddressResult]:
    t = server.timeouts
    return await fetch_server(
        server.host,
        server.effective_port,
        mode=server.mode,
        servername=server.servername,
        timeouts=FetchTimeouts(connect=t.connect, step=t.step, total=t.total),
    )


def target_from_config(router: RouterConfig) -> RouterTarget:
    """The router adapter's RouterTarget for a configured router (secrets revealed only here)."""
    t = router.timeouts
    return RouterTarget(
        name=router.name,
        host=router.host,
        port=router.port,
        username=router.username,
        password=router.password.reveal() if router.password is not None else None,
        key_file=router.key_file,
        enable_secret=router.enable_secret.reveal() if router.enable_secret is not None else None,
        known_hosts=router.known_hosts,
        trust_on_first_use=router.trust_on_first_use,
        timeouts=RouterTimeouts(connect=t.connect, command=t.step, running_config=max(t.step, 60.0)),
    )


@contextlib.asynccontextmanager
async def default_connector(router: RouterConfig) -> AsyncIterator[RouterSessionLike]:
    """An SSH session through eemwatchd.adapters.router."""
    async with RouterSession(target_from_config(router)) as session:
        yield session
