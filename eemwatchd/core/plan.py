"""The pure planner: from a router's trustpoints and its desired trust, the add/retire actions and reports."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.desired import DesiredTrust, TrustPolicy
from eemwatchd.core.ios.tokens import TRUSTPOINT_NAME_MAX, check_trustpoint_name
from eemwatchd.core.ios.trust import validate_as_ios

ActionKind = Literal["add", "retire"]
ReportKind = Literal[
    "unmanaged", "expired", "expiring", "held", "kept", "unneeded", "event", "pending", "unconfirmed",
    "unproven", "unsaved", "not-onboarded", "chain-unverified", "clock-skew",
]
# Why a router is or is not in sync; one small vocabulary shared by output, metrics labels, alerts, audit.
PlanState = Literal[
    "in-sync", "drift", "waiting", "unconfirmed", "unproven", "unsaved", "not-onboarded", "chain-unverified",
    "clock-skew",
]


# Decides whether the router, holding ``trustpoints``, accepts ``chain`` as served (the IOS rule).
ChainValidator = Callable[[Sequence[Certificate], Mapping[str, Sequence[Certificate]], datetime], bool]


def is_accepted_strict(
    chain: Sequence[Certificate], trustpoints: Mapping[str, Sequence[Certificate]], now: datetime
) -> bool:
    """The default validator: IOS's strict rule (core.ios_trust)."""
    return validate_as_ios(chain, trustpoints, now).ok


@dataclass(frozen=True)
class Action:
    """One change to a router. ``certificate`` is what an add installs, or what a retire removes (if any)."""

    kind: ActionKind
    trustpoint: str
    sha256: str
    reason: str
    certificate: Certificate | None = None
    role: str | None = None  # an add: the desired role of what it installs (core.desired.Role)


@dataclass(frozen=True)
class Report:
    """Something a person should know that needs no change (or that we refuse to change)."""

    kind: ReportKind
    trustpoint: str | None
    message: str


@dataclass(frozen=True)
class RouterPlan:
    """The plan for one router. ``unneeded`` is the new "unneeded since" state the shell should store."""

    actions: tuple[Action, ...]
    reports: tuple[Report, ...]
    unneeded: Mapping[str, datetime] = field(default_factory=dict)
    # Verified chains a server sends now that the router does not accept yet, waiting for confirmation:
    # nothing to do in this run, but the router is not in sync (its mail may fail meanwhile).
    waiting: tuple[str, ...] = ()
    # Servers this router mails through that have no confirmed verified chain: nothing proves what the
    # router needs, so it is never "in sync" (its mail may fail and we could not tell what to install).
    unconfirmed: tuple[str, ...] = ()
    # The managed trust it holds was never proven by a successful test-fire (e.g. added, then the session
    # dropped): apply test-fires before calling the router in sync.
    unproven: bool = False
    # Managed trustpoints whose running-config differs from the startup-config (a `write memory` that
    # did not happen or did not finish): apply test-fires, then saves.
    unsaved: tuple[str, ...] = ()
    # Why no test-fire of the router's applet can prove mail (the applet is missing or has no mail action):
    # the router is never in sync, and apply changes nothing and fires nothing until it is onboarded.
    unprovable: str | None = None
    # Chains a server sends now that do not verify (or miss their pins) and that the router does not accept.
    untrusted: tuple[str, ...] = ()
    # Servers whose last fetch failed entirely (with why): what they send now is unknown, so the router is
    # never in sync meanwhile (state `unconfirmed`); the server's own failure is the news, not drift.
    unfetched: tuple[str, ...] = ()
    # Chains a server sends now that the router accepts at eemwatchd's clock but rejects at its own (a
    # certificate not yet valid or expired there): its mail fails until its clock is right.
    clock_skew: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return self.state == "in-sync"

    @property
    def state(self) -> PlanState:
        """The first reason, in order of what matters most, that the router is not in sync."""
        if self.unprovable is not None:
            return "not-onboarded"
        if self.actions:
            return "drift"
        if self.untrusted:
            return "chain-unverified"
        if self.clock_skew:
            return "clock-skew"
        if self.unconfirmed or self.unfetched:
            return "unconfirmed"
        if self.waiting:
            return "waiting"
        if self.unproven:
            return "unproven"
        if self.unsaved:
            return "unsaved"
        return "in-sync"

    @property
    def needs_test_fire(self) -> bool:
        """Apply has something to prove: changes to make, or trust (or a config) not yet proven.

        Not while a chain awaits confirmation or a server has none and nothing is to change: the router's
        state is known to be incomplete, and a test-fire (a real mail when it works) would prove nothing new.
        Never when the applet cannot prove mail (``unprovable``): changes that cannot be proven cannot be saved.
        """
        if self.unprovable is not None:
            return False
        if self.actions:
            return True
        return ((self.unproven or bool(self.unsaved)) and not self.waiting and not self.unconfirmed
                and not self.untrusted and not self.unfetched and not self.clock_skew)

    @property
    def adds(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "add")

    @property
    def retires(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "retire")


def trustpoint_name(cert: Certificate, *, prefix: str, taken: Collection[str] = ()) -> str:
    """prefix + short fingerprint; longer fingerprint when that name is taken by another trustpoint."""
    room = TRUSTPOINT_NAME_MAX - len(prefix)
    for length in sorted({min(n, room) for n in (8, 12, 16, 24, 32)}):
        name = prefix + cert.sha256[:length].upper()
        if name not in taken:
            return name
    raise ValueError(f"no free trustpoint name for {cert.describe()} with prefix {prefix!r}")


def is_managed(name: str, *, prefix: str, adopt: Collection[str]) -> bool:
    return name.startswith(prefix) or name in adopt


def _expiry_reports(
    trustpoints: Mapping[str, Sequence[Certificate]], policy: TrustPolicy, now: datetime
) -> list[Report]:
    out: list[Report] = []
    for name in sorted(trustpoints):
        for cert in trustpoints[name]:
            if cert.is_expired(now):
                out.append(Report("expired", name, f"{cert.describe()} expired"))
            elif cert.not_after - now <= policy.expiry_warning:
                days = (cert.not_after - now).days
                out.append(Report("expiring", name, f"{cert.describe()} expires in {days} days"))
    return out


def _would_break(
    validate: ChainValidator | None,
    chains: Sequence[Sequence[Certificate]],
    before: Mapping[str, Sequence[Certificate]],
    after: Mapping[str, Sequence[Certificate]],
    now: datetime,
) -> Sequence[Certificate] | None:
    """The first chain in use the router validates with ``before`` but not with ``after``."""
    if validate is None:
        return None
    for chain in chains:
        if validate(chain, before, now) and not validate(chain, after, now):
            return chain
    return None


def _plan_adds(
    trustpoints: Mapping[str, Sequence[Certificate]],
    desired: DesiredTrust,
    *,
    prefix: str,
    adopt: Collection[str],
    reports: list[Report],
) -> list[Action]:
    held: dict[str, str] = {}
    for name in sorted(trustpoints):
        for cert in trustpoints[name]:
            held.setdefault(cert.sha256, name)
    actions: list[Action] = []
    taken = set(trustpoints)
    for item in desired.certificates:
        cert = item.certificate
        holder = held.get(cert.sha256)
        if holder is not None:
            if not is_managed(holder, prefix=prefix, adopt=adopt):
                reports.append(
                    Report(
                        "held",
                        holder,
                        f"{cert.describe()} is already held by unmanaged "
                        f"trustpoint {holder}; not installed again",
                    )
                )
            continue
        # An empty trustpoint of ours with the wanted name is left by an interrupted install: reuse it.
        name = prefix + cert.short_fingerprint
        if not (name in trustpoints and not trustpoints[name]):
            name = trustpoint_name(cert, prefix=prefix, taken=taken)
        taken.add(name)
        held[cert.sha256] = name
        actions.append(Action("add", name, cert.sha256, f"{item.role}: {'; '.join(item.reasons)}", cert, item.role))
    return actions


def _retire_candidates(
    trustpoints: Mapping[str, Sequence[Certificate]],
    desired: DesiredTrust,
    *,
    policy: TrustPolicy,
    adopt: Collection[str],
    now: datetime,
    unneeded_since: Mapping[str, datetime],
    reports: list[Report],
    unneeded: dict[str, datetime],
) -> list[tuple[str, Certificate | None, str]]:
    wanted = desired.sha256s
    out: list[tuple[str, Certificate | None, str]] = []
    retention = _human(policy.retention.total_seconds())
    for name in sorted(trustpoints):
        certs = list(trustpoints[name])
        if not is_managed(name, prefix=policy.trustpoint_prefix, adopt=adopt):
            listing = ", ".join(c.describe() for c in certs) or "no certificate"
            reports.append(
                Report(
                    "unmanaged",
                    name,
                    f"unmanaged trustpoint {name} ({listing}); never "
                    "touched (list it under adopt: to manage it)",
                )
            )
            continue
        unsendable = check_trustpoint_name(name)
        if unsendable is not None:
            # Ours by its prefix, but no command can name it: retiring it would fail on every run. A finding
            # (lint EEM016) tells the operator; the plan leaves it alone.
            reports.append(Report("kept", name, f"not retired: {unsendable}; eemwatchd names it in no command "
                                                "(remove it by hand)"))
            continue
        if not certs:
            # Holds no trust: always safe to remove. Apply removes these before its adds, so an add may
            # reuse the name.
            out.append((name, None, "empty trustpoint (left by an interrupted install)"))
            continue
        if any(c.sha256 in wanted for c in certs):
            continue
        # The oldest "unneeded since" of the trustpoint's certificates counts.
        for c in certs:
            unneeded[c.sha256] = unneeded_since.get(c.sha256, now)
        since = min(unneeded[c.sha256] for c in certs)
        age = now - since
        first = certs[0].describe()
        if age >= policy.retention:
            out.append(
                (
                    name,
                    certs[0],
                    f"{first} no longer needed (on no chain in use, not pre-staged); unneeded since "
                    f"{since:%Y-%m-%d %H:%M} UTC (retention {retention})",
                )
            )
        else:
            left = _human((policy.retention - age).total_seconds())
            reports.append(
                Report("unneeded", name, f"{first} is no longer needed; retired after retention, in {left}")
            )
    return out


def plan_router(
    trustpoints: Mapping[str, Sequence[Certificate]],
    desired: DesiredTrust,
    *,
    policy: TrustPolicy,
    adopt: Collection[str] = (),
    now: datetime,
    unneeded_since: Mapping[str, datetime],
    validate: ChainValidator | None = is_accepted_strict,
    proven: Collection[str] | None = frozenset(),
    saved: Mapping[str, Sequence[str]] | None = None,
    other_certificates: Mapping[str, Sequence[Certificate]] | None = None,
    unprovable: str | None = None,
    last_fire_failed: str | None = None,
    router_clock: datetime | None = None,
) -> RouterPlan:
    """Plan one router: add what is desired and not held, retire managed trust unneeded beyond retention.

    A certificate is held when its identical DER is in any trustpoint, managed or not (never installed
    twice). Unmanaged trustpoints are only reported. Nothing is retired while ``desired.holds`` names a
    reason, nor when ``validate`` says the router would stop accepting a chain it uses (checked against the
    trustpoints as they will be after the adds). ``unneeded_since`` is keyed by certificate SHA-256.

    ``proven``: the SHA-256 of every managed certificate the router held at its last test-fire, when that
    test-fire succeeded (None: never proven, or the last test-fire failed: ``last_fire_failed`` says how).
    The router is "unproven" unless that equals what it holds now.
    ``unprovable``: why no test-fire of its applet can prove mail (missing applet, no mail action): the router
    is "not-onboarded" whatever it holds.
    ``other_certificates``: identity and self-signed certificates the trustpoints hold (expiry reports only).
    ``saved``: trustpoint name -> its certificates' IOS serials as the startup-config lists them (serials,
    because a startup-config may show `nvram:` references instead of the certificate; None: not read).
    Any difference from the running-config makes the router "unsaved".
    ``router_clock``: the router's own time (`show clock`, None: not read). IOS judges validity at its own clock,
    so a chain sent now that the router accepts at ``now`` but not at its clock makes it "clock-skew".
    """
    reports: list[Report] = []
    actions = _plan_adds(trustpoints, desired, prefix=policy.trustpoint_prefix, adopt=adopt, reports=reports)
    after: dict[str, Sequence[Certificate]] = dict(trustpoints)
    for add in actions:
        assert add.certificate is not None
        after[add.trustpoint] = [add.certificate]

    unneeded: dict[str, datetime] = {}
    candidates = _retire_candidates(
        trustpoints,
        desired,
        policy=policy,
        adopt=adopt,
        now=now,
        unneeded_since=unneeded_since,
        reports=reports,
        unneeded=unneeded,
    )
    if desired.holds:
        for name, cert, _ in candidates:
            if cert is not None:
                reports.append(Report("kept", name, f"not retired: {'; '.join(desired.holds)}"))
        candidates = [c for c in candidates if c[1] is None]
    # Chains served now that the router must keep accepting: the confirmed ones in use, and the new ones awaiting
    # confirmation (verified and pinned: a router that accepts one already, e.g. through a pre-staged root, keeps
    # mailing through the confirmation window only while it keeps what that chain needs).
    protected = [*desired.chains_in_use, *desired.pending_chains]
    for name, cert, reason in candidates:
        if cert is None:
            actions.append(Action("retire", name, "", reason, None))
            continue
        trial = {k: v for k, v in after.items() if k != name}
        broken = _would_break(validate, protected, after, trial, now)
        if broken is not None:
            ids = "/".join(c.short_fingerprint for c in broken)
            reports.append(Report("kept", name, f"not retired: the router needs it to accept chain {ids}"))
            continue
        after = trial
        actions.append(Action("retire", name, cert.sha256, reason, cert))

    for event in desired.events:
        reports.append(Report("event", None, f"security event: {event.reason}; nothing changed for it"))
    untrusted = _not_accepted(desired.untrusted_now, trustpoints, validate, now)
    for text in untrusted:
        reports.append(Report("chain-unverified", None, f"the server sends a chain that the router does not "
                                                        f"accept and that eemwatchd does not trust: {text}; "
                                                        "its mail fails, nothing is installed for it"))
    waiting = _not_accepted(tuple(zip(desired.pending, desired.pending_chains, strict=True)), trustpoints,
                            validate, now)
    reports.extend(_pending_reports(desired, waiting))
    reports.extend(_expiry_reports(trustpoints, policy, now))
    reports.extend(_expiry_reports(other_certificates or {}, policy, now))
    skewed = _rejected_at_router_clock(desired.chains_now, after, validate, now, router_clock)
    at_clock = router_clock.isoformat() if router_clock is not None else "?"
    for text in skewed:
        reports.append(Report("clock-skew", None, f"the router's clock ({at_clock}) makes it reject chain {text}, "
                                                  "valid at ours; its mail fails until its clock is right: "
                                                  "configure NTP or `clock set`"))
    for server in desired.unconfirmed:
        reports.append(Report("unconfirmed", None, f"{server}: no confirmed verified chain seen recently; "
                                                   "the router cannot be called in sync"))
    unfetched = tuple(f"{server}: the last fetch failed ({why})" for server, why in desired.unfetched)
    for text in unfetched:
        reports.append(Report("unconfirmed", None, f"{text}; what it sends now is unknown, so the router cannot "
                                                   "be called in sync"))
    managed = managed_trust(trustpoints, prefix=policy.trustpoint_prefix)
    unproven = proven is None or frozenset(proven) != managed
    proof_report = _proof_report(unprovable=unprovable, unproven=unproven and not actions, proven=proven,
                                 last_fire_failed=last_fire_failed)
    if proof_report is not None:
        reports.append(proof_report)
    unsaved = _unsaved(trustpoints, saved, prefix=policy.trustpoint_prefix)
    for name in unsaved:
        reports.append(Report("unsaved", name, f"trustpoint {name} differs between the running-config and "
                                               "the startup-config; apply test-fires, then saves"))
    return RouterPlan(tuple(actions), tuple(reports), unneeded, tuple(waiting), desired.unconfirmed,
                      unproven, unsaved, unprovable, tuple(untrusted), unfetched, tuple(skewed))


def _pending_reports(desired: DesiredTrust, waiting: Collection[str]) -> list[Report]:
    return [Report("pending", None, f"new chain not yet confirmed and not accepted by the router yet: {text}; it "
                                     "is installed once confirmed" if text in waiting
                   else f"new chain not yet confirmed: {text}") for text in desired.pending]


def after_changes(
    plan: RouterPlan, desired: DesiredTrust, trustpoints: Mapping[str, Sequence[Certificate]], *,
    validate: ChainValidator | None, now: datetime,
) -> RouterPlan:
    """``plan`` with its waiting chains judged again against ``trustpoints`` as they are after apply changed the
    router: a new chain that the trust just added accepts is no longer waiting (the router would otherwise show
    `waiting` from the plan made before the apply until its next job)."""
    waiting = tuple(_not_accepted(tuple(zip(desired.pending, desired.pending_chains, strict=True)), trustpoints,
                                  validate, now))
    if waiting == plan.waiting:
        return plan
    first = next((i for i, r in enumerate(plan.reports) if r.kind == "pending"), len(plan.reports))
    others = [r for r in plan.reports if r.kind != "pending"]
    reports = [*others[:first], *_pending_reports(desired, waiting), *others[first:]]
    return replace(plan, waiting=waiting, reports=tuple(reports))


def _proof_report(
    *, unprovable: str | None, unproven: bool, proven: Collection[str] | None, last_fire_failed: str | None
) -> Report | None:
    if unprovable is not None:
        return Report("not-onboarded", None, f"{unprovable}; no test-fire can prove mail, so nothing is changed "
                                             "or fired until the router is onboarded")
    if not unproven:
        return None
    if last_fire_failed is not None and proven is None:
        return Report("unproven", None, f"the last test-fire failed ({last_fire_failed}); apply test-fires again")
    return Report("unproven", None, "the trust it holds was never proven by a successful test-fire; apply "
                                    "test-fires it")


def _rejected_at_router_clock(
    chains: Sequence[Sequence[Certificate]], trustpoints: Mapping[str, Sequence[Certificate]],
    validate: ChainValidator | None, now: datetime, router_clock: datetime | None,
) -> list[str]:
    """The short ids of the chains the router, holding ``trustpoints``, accepts at ``now`` but not at its clock."""
    if validate is None or router_clock is None or router_clock == now:
        return []
    return ["/".join(c.short_fingerprint for c in chain) for chain in chains
            if validate(chain, trustpoints, now) and not validate(chain, trustpoints, router_clock)]


def _not_accepted(
    chains: Sequence[tuple[str, Sequence[Certificate]]], trustpoints: Mapping[str, Sequence[Certificate]],
    validate: ChainValidator | None, now: datetime,
) -> list[str]:
    """The texts of the chains the router does not accept with the trust it holds now."""
    return [text for text, chain in chains if validate is not None and not validate(chain, trustpoints, now)]


def managed_trust(trustpoints: Mapping[str, Sequence[Certificate]], *, prefix: str) -> frozenset[str]:
    """The SHA-256 of every certificate in trustpoints named with our prefix (what a test-fire proves)."""
    return frozenset(c.sha256 for name, certs in trustpoints.items() if name.startswith(prefix) for c in certs)


def _unsaved(
    trustpoints: Mapping[str, Sequence[Certificate]], saved: Mapping[str, Sequence[str]] | None, *, prefix: str
) -> tuple[str, ...]:
    if saved is None:
        return ()
    running = {n: sorted(c.serial_ios for c in certs) for n, certs in trustpoints.items() if n.startswith(prefix)}
    stored = {n: sorted(shas) for n, shas in saved.items() if n.startswith(prefix)}
    return tuple(sorted(n for n in running.keys() | stored.keys() if running.get(n) != stored.get(n)))


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{max(seconds, 0) / 60:.0f} minutes"
