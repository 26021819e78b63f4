"""The onboard step: check, read the router, set up its EEM mail, then the trust path apply uses."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from eemwatchd.adapters.router import RouterSession
from eemwatchd.adapters.store import AuditEntry, Store
from eemwatchd.config import Config, RouterConfig, ServerConfig
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.onboarding import (
    EMAIL_TO,
    MASK,
    NO_ACCOUNT,
    NO_VERIFIED_CHAIN,
    UNKNOWN_SERVER,
    MailSetup,
    OnboardPlan,
    Refusal,
    check_clock,
    check_request,
    check_setup,
    mask_line,
    plan_onboarding,
    render_applet,
    render_environment,
)
from eemwatchd.core.plan import RouterPlan, managed_trust
from eemwatchd.core.router_state import DEFAULT_MAXRUN, RouterSnapshot
from eemwatchd.core.secrets import mail_passwords
from eemwatchd.errors import EemwatchdError
from eemwatchd.reconcile.applier import Applier, StoreAudit
from eemwatchd.reconcile.connect import RouterSessionLike, target_from_config
from eemwatchd.reconcile.results import CHANGE_STEPS, RouterResult, ServerOutcome, StepKind, reason_for, summarize
from eemwatchd.reconcile.service import Reconciler, utc_now

log = logging.getLogger("eemwatchd.onboard")


class OnboardSession(RouterSessionLike, Protocol):
    """What onboarding needs from a router session beyond apply's (RouterSession fits)."""

    async def read_running_config(self) -> str: ...

    async def configure(self, lines: Sequence[str]) -> None: ...


OnboardConnector = Callable[[RouterConfig], contextlib.AbstractAsyncContextManager[OnboardSession]]


@contextlib.asynccontextmanager
async def ssh_connector(router: RouterConfig) -> AsyncIterator[OnboardSession]:
    """An SSH session through eemwatchd.adapters.router."""
    async with RouterSession(target_from_config(router)) as session:
        yield session


@dataclass(frozen=True)
class OnboardRequest:
    """What the operator asked for. Empty ``to``: keep the router's `_email_to`. ``wait``: when the server's
    chain is not confirmed yet, fetch it again at the spacing the policy requires until it is, for at most
    ``wait_max`` seconds (None: ``default_wait``), before touching the router."""

    router: str
    server: str | None = None
    to: tuple[str, ...] = ()
    mail_from: str | None = None
    applet: str | None = None
    dry_run: bool = False
    replace: bool = False
    wait: bool = True
    wait_max: float | None = None


@dataclass(frozen=True)
class WaitStatus:
    """Where the wait for a chain's confirmations stands (what a progress line shows)."""

    server: str
    seen: int  # sightings of the least-seen verified chain the server sends
    needed: int  # policy.confirmations
    next_fetch_in: float  # seconds; 0 while fetching
    waited: float
    limit: float

    def describe(self) -> str:
        fetch = "fetching" if self.next_fetch_in <= 0 else f"next fetch in {self.next_fetch_in:.0f}s"
        return f"seen {self.seen} of {self.needed}, {fetch}"


OnWait = Callable[[WaitStatus], None]
# The wait sleeps in ticks this long, so a progress line counts down and a stop is heard soon.
_WAIT_TICK = 0.5
# A sighting counts once the last counted one is half the server's interval old; fetch just after that.
_SPACING_MARGIN = 0.05


def default_wait(server: ServerConfig, confirmations: int) -> float:
    """How long onboard waits for ``server``'s chain by default: every confirmation at the policy's spacing
    (half the server's interval), plus one fetch's time. The first sighting usually counts already."""
    return confirmations * server.interval / 2 + server.timeouts.total


def is_confirmed(outcome: ServerOutcome, confirmations: int) -> bool:
    """Every verified chain the server sends was seen often enough to be acted on."""
    verified = [a for a in outcome.addresses if a.verified and a.pinned and a.chain]
    return bool(verified) and all(a.is_confirmed(confirmations) for a in verified)


@dataclass
class OnboardResult:
    """What onboarding found and did. ``sent``: the configuration lines sent, masked."""

    router: str
    server: str | None = None
    applet: str | None = None
    refusals: list[Refusal] = field(default_factory=list)
    plan: OnboardPlan | None = None
    lines: list[str] = field(default_factory=list)  # the full configuration, masked unless asked otherwise
    sent: list[str] = field(default_factory=list)
    trust: RouterResult | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    diff: list[str] = field(default_factory=list)  # the plan's line-by-line difference, masked
    # the wait for the chain's confirmations ended unconfirmed (bound reached): nothing was sent
    unconfirmed: str | None = None
    waited: float = 0.0  # seconds onboard waited for confirmations

    @property
    def changed(self) -> bool:
        """The router's configuration was changed (EEM lines, trustpoints or a save)."""
        steps = self.trust.steps if self.trust is not None else []
        return bool(self.sent) or any(s.ok and s.kind in (*CHANGE_STEPS, StepKind.SAVE) for s in steps)

    @property
    def ok(self) -> bool:
        """Refused nothing, failed nothing, and (unless a dry run) the router is in sync and proven."""
        if self.refusals or self.error is not None or self.unconfirmed is not None:
            return False
        if self.dry_run:
            return True
        return self.trust is not None and self.trust.in_sync

    @property
    def awaiting_confirmation(self) -> bool:
        """Not done only because the server's chain is not confirmed yet (the wait ran out, or --no-wait)."""
        if self.refusals or self.error is not None:
            return False
        return self.unconfirmed is not None or (self.trust is not None and self.trust.awaiting_confirmation)

    def to_json(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "server": self.server,
            "applet": self.applet,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "refusals": [dataclasses.asdict(r) for r in self.refusals],
            "changes": [
                {"what": c.what, "state": c.state} for c in (self.plan.changes if self.plan else ())
            ],
            "diff": self.diff,
            "lines": list(self.lines),
            "sent": list(self.sent),
            "trust": self.trust.to_json() if self.trust is not None else None,
            "error": self.error,
            "awaiting_confirmation": self.awaiting_confirmation,
            "unconfirmed": self.unconfirmed,
            "waited_seconds": round(self.waited, 1),
            "notes": list(self.notes),
        }


class Onboarder:
    """Onboard one router: refuse what cannot work before touching it, set up EEM, then reconcile its trust."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        connect: OnboardConnector | None = None,
        reconciler: Reconciler | None = None,
        clock: Callable[[], datetime] = utc_now,
        show_secrets: bool = False,
        readonly: bool = False,
        on_wait: OnWait | None = None,
    ) -> None:
        """``readonly``: another process holds the writer lock; only a dry run may run, recording nothing.
        ``on_wait``: hears how the wait for the chain's confirmations goes (a progress line)."""
        self._on_wait = on_wait
        self.config = config
        self.store = store
        self._connect: OnboardConnector = connect or ssh_connector
        self._clock = clock
        self.reconciler = reconciler or Reconciler(config, store, connect=self._connect, clock=clock,
                                                   readonly=readonly)
        self.show_secrets = show_secrets

    async def onboard(self, request: OnboardRequest) -> OnboardResult:
        result = OnboardResult(request.router, dry_run=request.dry_run)
        router = self.config.router(request.router)
        applet = request.applet or router.applet
        result.applet = applet
        server, refusals = self._server(router, request.server)
        if server is None:
            result.refusals = refusals
            return result
        result.server = server.name
        if server.account is None:
            result.refusals = [Refusal(
                NO_ACCOUNT, f"server {server.name} has no SMTP account to put into _email_server",
                f"add servers[].account (username, password or password_file, from) to server {server.name}")]
            return result
        account = server.account
        refusals = check_request(mode=server.mode, port=server.effective_port, username=account.username,
                                 account_from=account.mail_from, mail_from=request.mail_from,
                                 to=request.to or None)
        if refusals:
            result.refusals = refusals
            return result
        # The server's chain: its certificates must be valid by the router's clock. This sighting also
        # counts towards policy.confirmations, as plan's and apply's do.
        outcome = await self.reconciler.observe_server(server)
        chains = [a.certificates for a in outcome.addresses if a.verified and a.certificates]
        if not chains:
            why = outcome.error or "; ".join(f"{a.address}: {a.error}" for a in outcome.addresses) or "no address"
            result.refusals = [Refusal(
                NO_VERIFIED_CHAIN, f"server {server.name} ({server.host}:{server.effective_port}) sent no chain that "
                f"verifies ({why}): nothing could tell which CAs the router needs",
                "check the server with `eemwatchd fetch` and the trust store (policy.trust_store, servers[].ca_file)")]
            return result
        effective = router if applet == router.applet else router.model_copy(update={"applet": applet})
        confirmations = self.config.policy.confirmations
        if not request.dry_run and request.wait and not is_confirmed(outcome, confirmations):
            # Refuse what cannot work before waiting (a dry run: nothing is sent), then wait with the router
            # untouched: a wait that ends unconfirmed leaves nothing half-done on it.
            try:
                await self._configure(effective, server, dataclasses.replace(request, dry_run=True), chains, result)
            except EemwatchdError as exc:
                result.error = str(exc)
                return result
            if result.refusals:
                return result
            outcome = await self._wait_for_confirmation(server, outcome, request, result)
            if not is_confirmed(outcome, confirmations):
                return result
            chains = [a.certificates for a in outcome.addresses if a.verified and a.certificates] or chains
        async with self.reconciler.router_held(router.name):  # the daemon's jobs on it wait meanwhile
            try:
                await self._configure(effective, server, request, chains, result)
            except EemwatchdError as exc:
                result.error = str(exc)
                return result
            if result.refusals or request.dry_run:
                return result
            if applet != router.applet:
                result.notes.append(f"routers[].applet of {router.name} is {router.applet}; set it to {applet} "
                                    "so apply and the daemon test-fire the onboarded applet")
            result.trust = await self.reconciler.reconcile_router(effective, apply=True)
            if result.sent:
                await self._audit_eem(router.name, result)
                await self._prove_and_save(effective, result)
        return result

    async def _wait_for_confirmation(self, server: ServerConfig, outcome: ServerOutcome, request: OnboardRequest,
                                     result: OnboardResult) -> ServerOutcome:
        """Fetch ``server``'s chain again each time a sighting can count (half its interval after the last
        counted one) until every verified chain it sends is confirmed, the bound is reached or a stop is
        asked; sets ``result.unconfirmed`` (why) unless confirmed."""
        confirmations = self.config.policy.confirmations
        limit = request.wait_max if request.wait_max is not None else default_wait(server, confirmations)
        spacing = timedelta(seconds=server.interval / 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        beyond: float | None = None  # the next sighting that counts is due after the bound, in this many seconds
        log.info("server %s: chain not confirmed yet (policy.confirmations %d, sightings at least %gs apart); "
                 "waiting up to %.0fs", server.name, confirmations, spacing.total_seconds(), limit)
        while not is_confirmed(outcome, confirmations) and not self.reconciler.stopping:
            due = await self._next_sighting(server, outcome, spacing)
            delay = max((due - self._clock()).total_seconds(), 0.0) + _SPACING_MARGIN
            if loop.time() + delay - started > limit:
                beyond = delay
                break
            fetch_at = loop.time() + delay
            while (left := fetch_at - loop.time()) > 0 and not self.reconciler.stopping:
                self._report_wait(server, outcome, next_fetch_in=left, waited=loop.time() - started, limit=limit)
                await asyncio.sleep(min(_WAIT_TICK, left))
            if self.reconciler.stopping:
                break
            self._report_wait(server, outcome, next_fetch_in=0, waited=loop.time() - started, limit=limit)
            outcome = await self.reconciler.observe_server(server)
        result.waited = loop.time() - started
        if not is_confirmed(outcome, confirmations):
            seen = _least_seen(outcome)
            why = (f"interrupted ({self.reconciler.stop_reason})" if self.reconciler.stopping
                   else f"the next sighting that counts is due in {beyond:.0f}s, beyond the wait bound ({limit:.0f}s, "
                   "--wait-max)" if beyond is not None
                   else f"the wait bound ({limit:.0f}s, --wait-max) was reached")
            result.unconfirmed = (
                f"server {server.name}'s chain was seen {seen} of {confirmations} times in {result.waited:.0f}s "
                f"(sightings count at least {spacing.total_seconds():g}s apart, half servers[].interval): {why}; "
                "nothing was sent to the router. Run onboard again (the sightings so far count), or give "
                "--no-wait to configure EEM now and leave trust and the test mail to apply or the daemon")
        return outcome

    async def _next_sighting(self, server: ServerConfig, outcome: ServerOutcome, spacing: timedelta) -> datetime:
        """When the next fetch of ``server`` can count for every chain still short of its confirmations; a fetch
        that brought no verified chain (the server down meanwhile) is tried again a spacing later, not at once."""
        confirmations = self.config.policy.confirmations
        now = self._clock()
        due: datetime | None = None
        for address in outcome.addresses:
            if not (address.verified and address.pinned and address.chain) or address.is_confirmed(confirmations):
                continue
            seen = await self.reconciler.io.call(self.store.observations, servers=[server.name],
                                                 address=address.address, chain=",".join(address.chain))
            if seen:
                due = max(due or now, seen[0].last_seen + spacing)
        return due if due is not None else now + spacing

    def _report_wait(self, server: ServerConfig, outcome: ServerOutcome, *, next_fetch_in: float, waited: float,
                     limit: float) -> None:
        if self._on_wait is not None:
            self._on_wait(WaitStatus(server.name, _least_seen(outcome), self.config.policy.confirmations,
                                     next_fetch_in, waited, limit))

    def _server(self, router: RouterConfig, name: str | None) -> tuple[ServerConfig | None, list[Refusal]]:
        known = [s.name for s in self.config.servers]
        if name is None:
            if len(router.servers) == 1:
                name = router.servers[0]
            else:
                return None, [Refusal(UNKNOWN_SERVER, f"router {router.name} mails through "
                                      f"{', '.join(router.servers)}; say which one the applet uses",
                                      "give --server NAME")]
        if name not in known:
            return None, [Refusal(UNKNOWN_SERVER, f"server {name!r} is not in the configuration (servers: "
                                  f"{', '.join(known)})", "add it under servers: or give one of those names")]
        if name not in router.servers:
            return None, [Refusal(UNKNOWN_SERVER, f"server {name!r} is not one of router {router.name}'s servers "
                                  f"({', '.join(router.servers)}): eemwatchd would not keep its trust on the router",
                                  f"add {name} to routers[].servers of {router.name}")]
        return self.config.server(name), []

    async def _configure(self, router: RouterConfig, server: ServerConfig, request: OnboardRequest,
                         chains: Sequence[Sequence[Certificate]], result: OnboardResult) -> None:
        """Read the router, check it, and unless refused or a dry run send the EEM lines it needs."""
        assert server.account is not None
        async with self._connect(router) as session:
            snapshot = await session.read_snapshot()
            running = await session.read_running_config()
            our_clock = self._clock()
            to = request.to or _addresses(snapshot.environment.get(EMAIL_TO, ""))
            setup = MailSetup(applet=router.applet, router=router.name, host=server.host,
                              port=server.effective_port, username=server.account.username,
                              password=server.account.password.reveal(),
                              mail_from=request.mail_from or server.account.mail_from, to=to)
            refusals = check_request(mode=server.mode, port=server.effective_port,
                                     username=server.account.username, account_from=server.account.mail_from,
                                     mail_from=request.mail_from, to=to)
            refusals += check_setup(setup)
            refusals += check_clock(snapshot.clock, our_clock=our_clock, chains=chains)
            secrets = self._secrets(setup, snapshot)
            plan = plan_onboarding(setup, running)
            result.plan = plan
            result.diff = plan.diff(secrets=() if self.show_secrets else secrets)
            shown = setup if self.show_secrets else dataclasses.replace(setup, password=MASK)
            result.lines = [f"event manager environment {n} {v}" for n, v in render_environment(shown)]
            result.lines += render_applet(shown)
            if plan.conflicts and not request.replace:
                refusals.append(Refusal(
                    "existing-differs",
                    "the router already has " + ", ".join(c.what for c in plan.conflicts) + " with other values "
                    "(see the difference)", "give --replace to overwrite them, or --applet NAME for a new applet"))
            result.refusals = refusals
            if refusals or request.dry_run or not plan.needed:
                return
            lines = plan.lines()
            await session.configure(lines)
            result.sent = [line if self.show_secrets else mask_line(line, secrets) for line in lines]
            log.info("router %s: EEM mail setup configured (%d lines)", router.name, len(lines),
                     extra={"event": "eem_configured", "router": router.name})

    def _secrets(self, setup: MailSetup, snapshot: RouterSnapshot) -> list[str]:
        return [setup.password, *mail_passwords(snapshot), *self.config.secrets()]

    async def _audit_eem(self, router: str, result: OnboardResult) -> None:
        assert result.plan is not None
        changed = [f"{c.what} ({'added' if c.state == 'add' else 'replaced'})"
                   for c in result.plan.changes if c.state != "same"]
        await self.reconciler.io.call(self.store.append_audit, AuditEntry(
            at=self._clock(), router=router, action="eem-configure", trustpoint=None, sha256_before=None,
            sha256_after=None, test_fire=None, reason="onboard: " + "; ".join(changed)))

    async def _prove_and_save(self, router: RouterConfig, result: OnboardResult) -> None:
        """The EEM lines are in the running-config only. When reconciling made no successful test-fire (the
        router's trust was in place and proven already), prove the new setup and save it the way apply
        does: the same Applier on a plan with nothing to change but something to prove."""
        trust = result.trust
        assert trust is not None
        if any(s.kind is StepKind.TEST_FIRE and s.ok for s in trust.steps) or trust.error is not None:
            return
        plan = trust.plan
        if plan is None or plan.waiting or plan.unconfirmed:
            result.notes.append(
                "the EEM setup is in the running-config but not saved: the server's chain is not confirmed yet "
                "(policy.confirmations); run `eemwatchd apply` (or onboard again) once it is, to install the "
                "trust, test-fire and save")
            return
        # Nothing to add or retire, the new EEM setup to prove; `unsaved` names what differs from the
        # startup-config, so the Applier saves after a successful test-fire (and only then).
        assert result.plan is not None
        prove = RouterPlan(actions=(), reports=(), unproven=True,
                           unsaved=tuple(c.what for c in result.plan.changes if c.state != "same"))
        try:
            async with self._connect(router) as session:
                snapshot = await session.read_snapshot()
                applet = snapshot.applet(router.applet)
                held = managed_trust({tp.name: tp.ca_certificates for tp in snapshot.trustpoints},
                                     prefix=self.config.policy.trustpoint_prefix)
                applier = Applier(
                    session=session, router=router, result=trust,
                    audit=StoreAudit(self.reconciler.io, router.name, self._clock),
                    checkpoint=lambda step: None, held=set(held),
                    maxrun=applet.effective_maxrun if applet is not None else DEFAULT_MAXRUN,
                    success_messages=applet.syslog_messages_after_mail() if applet is not None else ())
                await applier.apply(prove)
        except EemwatchdError as exc:
            trust.error, trust.error_reason = str(exc), reason_for(exc)
        trust.plan = dataclasses.replace(plan, unproven=True, unsaved=prove.unsaved)
        trust.result = summarize(trust)


def _least_seen(outcome: ServerOutcome) -> int:
    counts = [a.times_seen for a in outcome.addresses if a.verified and a.pinned and a.chain]
    return min(counts) if counts else 0


def _addresses(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())
