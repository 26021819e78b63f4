"""Desired trust: which certificates a router needs, from the recent verified chains of its servers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from eemwatchd.core.certificate import Certificate
from eemwatchd.core.chain import top_of_sent_path
from eemwatchd.core.prestage import Prestaged

InstallPolicy = Literal["path", "anchor_only"]
Role = Literal["anchor", "cross-anchor", "twin", "intermediate", "leaf", "served-top", "prestaged"]

# Order in which desired certificates are listed (and so installed): roots before what they sign. A certificate
# wanted for several reasons shows its first role: a pre-staged one that lands on a path in use shows its path
# role, so `prestaged` is last.
_ROLE_ORDER: dict[str, int] = {
    "cross-anchor": 0,
    "anchor": 1,
    "twin": 2,
    "served-top": 3,
    "intermediate": 4,
    "leaf": 5,
    "prestaged": 6,
}


@dataclass(frozen=True)
class TrustPolicy:
    """The policy keys the pure core needs (the shell builds it from config.PolicyConfig)."""

    install: InstallPolicy = "path"
    include_leaf: bool = False
    confirmations: int = 2
    recent: timedelta = timedelta(days=14)
    retention: timedelta = timedelta(days=7)
    expiry_warning: timedelta = timedelta(days=30)
    trustpoint_prefix: str = "EEMW-"


@dataclass(frozen=True)
class SeenChain:
    """One chain one address of a server presented, with its verification and sighting counters.

    ``chain`` is exactly as served (leaf first); ``path`` is the verified path, leaf first and anchor
    last, empty when the chain did not verify.
    """

    server: str
    address: str
    chain: tuple[Certificate, ...]
    verified: bool
    path: tuple[Certificate, ...]
    error: str | None
    first_seen: datetime
    last_seen: datetime
    times_seen: int

    @property
    def chain_id(self) -> str:
        """A short id for messages: the short fingerprints of the served chain."""
        return "/".join(c.short_fingerprint for c in self.chain) or "(empty chain)"

    def where(self) -> str:
        return f"{self.server} {self.address} chain {self.chain_id}"


@dataclass(frozen=True)
class DesiredCertificate:
    """A certificate the router should hold, with every reason it is wanted."""

    certificate: Certificate
    role: Role
    reasons: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return self.certificate.sha256


@dataclass(frozen=True)
class SecurityEvent:
    """A chain that did not verify (or missed its pins): possible interception. It changes nothing."""

    server: str
    address: str
    chain_sha256: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class DesiredTrust:
    """What one router should trust, and why retiring anything now would be unsafe (``holds``)."""

    certificates: tuple[DesiredCertificate, ...]
    events: tuple[SecurityEvent, ...] = ()
    pending: tuple[str, ...] = ()  # chains seen but not yet confirmed often enough
    pending_chains: tuple[tuple[Certificate, ...], ...] = ()  # those chains, as served (same order)
    holds: tuple[str, ...] = ()  # reasons that forbid retiring anything in this run
    chains_in_use: tuple[tuple[Certificate, ...], ...] = ()  # recent verified chains, as served
    unconfirmed: tuple[str, ...] = ()  # servers with no confirmed verified chain seen recently
    # Chains an address sends NOW (``sent_now``) that do not verify or miss their pins, with a text
    # naming them: nothing is installed for them, and a router that does not accept them cannot mail.
    untrusted_now: tuple[tuple[str, tuple[Certificate, ...]], ...] = ()
    # Verified, pinned chains an address sends now (confirmed or not): the router must accept each to mail.
    chains_now: tuple[tuple[Certificate, ...], ...] = ()
    # Servers whose last fetch failed entirely, with a text saying why: what they send now is unknown.
    unfetched: tuple[tuple[str, str], ...] = ()

    @property
    def sha256s(self) -> frozenset[str]:
        return frozenset(d.sha256 for d in self.certificates)

    def get(self, sha256: str) -> DesiredCertificate | None:
        for d in self.certificates:
            if d.sha256 == sha256:
                return d
        return None


@dataclass
class _Collector:
    items: dict[str, tuple[Certificate, Role, list[str]]] = field(default_factory=dict)

    def add(self, cert: Certificate, role: Role, reason: str) -> None:
        current = self.items.get(cert.sha256)
        if current is None:
            self.items[cert.sha256] = (cert, role, [reason])
            return
        _, old_role, reasons = current
        if reason not in reasons:
            reasons.append(reason)
        if _ROLE_ORDER[role] < _ROLE_ORDER[old_role]:
            self.items[cert.sha256] = (cert, role, reasons)

    def result(self) -> tuple[DesiredCertificate, ...]:
        ordered = sorted(
            self.items.values(), key=lambda item: (_ROLE_ORDER[item[1]], item[0].subject, item[0].sha256)
        )
        return tuple(DesiredCertificate(cert, role, tuple(reasons)) for cert, role, reasons in ordered)


def normalize_pin(pin: str) -> str:
    return pin.replace(":", "").strip().lower()


def is_pinned_match(observation: SeenChain, pins: Iterable[str]) -> bool:
    """True without pins, or when a certificate served or on the verified path has a pinned SHA-256."""
    wanted = {normalize_pin(p) for p in pins}
    if not wanted:
        return True
    return any(c.sha256 in wanted for c in (*observation.chain, *observation.path))


def find_twins(cert: Certificate, candidates: Iterable[Certificate]) -> list[Certificate]:
    """Self-signed certificates with the same subject and public key as ``cert`` (other than itself)."""
    return [
        c
        for c in candidates
        if c.der != cert.der
        and c.is_self_signed
        and c.x509.subject == cert.x509.subject
        and c.public_key_der == cert.public_key_der
    ]


def find_issuer(cert: Certificate, candidates: Iterable[Certificate]) -> Certificate | None:
    """A candidate whose key verifies ``cert``'s signature (subject = cert's issuer)."""
    for c in candidates:
        if c.der != cert.der and cert.is_signed_by(c):
            return c
    return None


def is_confirmed(*, verified: bool, pinned: bool, times_seen: int, confirmations: int) -> bool:
    """The rule for a chain eemwatchd acts on: it verified against the trust store, matches the server's pins
    (if any), and was seen ``confirmations`` times, sightings spaced at least half the server's interval apart
    (the store counts them so). A chain that is not confirmed changes nothing."""
    return verified and pinned and times_seen >= confirmations


def is_usable(observation: SeenChain, policy: TrustPolicy, now: datetime) -> bool:
    return observation.last_seen >= now - policy.recent


def sent_now(observations: Sequence[SeenChain], within: Mapping[str, timedelta]) -> list[SeenChain]:
    """The chains the servers send now: per address, the chain of its latest sighting and every chain seen within
    ``within[server]`` before it (a server behind one address may present several chains in turn; the shell passes
    1.5 x the server's interval, so a chain the server stopped sending drops out after two more fetches)."""
    latest: dict[tuple[str, str], datetime] = {}
    for obs in observations:
        key = (obs.server, obs.address)
        if key not in latest or obs.last_seen > latest[key]:
            latest[key] = obs.last_seen
    return [o for o in observations
            if o.last_seen >= latest[(o.server, o.address)] - within.get(o.server, timedelta(0))]


def desired_from_chain(
    observation: SeenChain,
    *,
    policy: TrustPolicy,
    anchors: Sequence[Certificate],
    extra: Sequence[Certificate] = (),
) -> list[tuple[Certificate, Role, str]]:
    """The certificates one verified chain asks for, each with its role and a reason.

    ``anchors`` are trust-store certificates (trusted); ``extra`` are AIA results, used only to find a
    self-signed twin (same key as a certificate that verified, so it adds no new trust).
    """
    where = observation.where()
    path = observation.path
    out: list[tuple[Certificate, Role, str]] = []
    top = top_of_sent_path(observation.chain) if observation.chain else None
    # IOS validates the chain as sent (docs/field-notes.md sec. 1b): its anchor is the top sent certificate's issuer.
    ios_anchor: Certificate | None = None
    if top is not None:
        ios_anchor = top if top.is_self_signed else find_issuer(top, [*path, *anchors])
    twins = find_twins(top, [*path, *anchors, *extra]) if top is not None and not top.is_self_issued else []

    if policy.install == "path":
        for cert in path[1:-1]:
            out.append((cert, "intermediate", f"{where}: CA on the verified path"))
        if len(path) >= 2:
            out.append((path[-1], "anchor", f"{where}: anchor of the verified path"))
        if twins and top is not None:
            if ios_anchor is not None:
                out.append(
                    (
                        ios_anchor,
                        "cross-anchor",
                        f"{where}: cross-signed the top served certificate {top.common_name}",
                    )
                )
            for twin in twins:
                out.append((twin, "twin", f"{where}: self-signed twin of the cross-signed {top.common_name}"))
    elif ios_anchor is not None:
        out.append((ios_anchor, "anchor", f"{where}: issuer of the top served certificate (anchor_only)"))
    elif top is not None:
        # The issuer is not in our trust store (only the twin is): IOS trusts a sent certificate that is
        # installed identically, and this one carries the same key as the verified twin.
        out.append(
            (
                top,
                "served-top",
                f"{where}: top served certificate; its issuer is not in the trust store (anchor_only)",
            )
        )
    if policy.include_leaf and path:
        out.append((path[0], "leaf", f"{where}: leaf (include_leaf)"))
    return out


def compute_desired(
    observations: Iterable[SeenChain],
    *,
    servers: Sequence[str],
    policy: TrustPolicy,
    anchors: Sequence[Certificate],
    extra: Sequence[Certificate] = (),
    pins: Mapping[str, Sequence[str]] | None = None,
    prestaged: Sequence[Prestaged] = (),
    sent_within: Mapping[str, timedelta] | None = None,
    unfetched: Mapping[str, str] | None = None,
    now: datetime,
) -> DesiredTrust:
    """Desired trust for a router that mails through ``servers``.

    Counts every chain of every address seen within ``policy.recent`` and at least ``policy.confirmations``
    times, verified and matching the server's pins. An unverified chain is a security event: it adds
    nothing and holds every retirement. A server without a confirmed verified chain also holds retirement,
    so a failing or intercepted server never makes the router lose trust.

    ``prestaged``: CA certificates configured for a server (checked when the config was loaded), desired with
    the role ``prestaged`` once that server has a confirmed chain: installed beside what the chain needs and
    proven by the same test-fire (before that, a test-fire could not prove anything, and retirement is held
    anyway). They stay desired while configured, whatever the chains do.

    Only chains a server sends now (``sent_now`` with ``sent_within``) are pending or untrusted now: a chain
    seen once and no longer sent keeps no router waiting. ``unfetched``: servers whose last fetch failed
    entirely, with why; what they send now is unknown, so they hold retirement and no router is in sync.
    """
    pins = pins or {}
    wanted = set(servers)
    collector = _Collector()
    events: list[SecurityEvent] = []
    pending: list[str] = []
    pending_chains: list[tuple[Certificate, ...]] = []
    holds: list[str] = []
    in_use: list[tuple[Certificate, ...]] = []
    confirmed_servers: set[str] = set()
    observations = [o for o in observations if o.server in wanted and is_usable(o, policy, now)]
    current = sent_now(observations, sent_within or {})
    current_ids = {id(o) for o in current}
    untrusted_now = [(f"{o.where()}: {o.error or 'does not verify'}" if not o.verified or not o.path
                      else f"{o.where()}: no certificate matches the configured pins", o.chain)
                     for o in current
                     if o.chain and (not o.verified or not o.path or not is_pinned_match(o, pins.get(o.server, ())))]
    chains_now = [o.chain for o in current
                  if o.chain and o.verified and o.path and is_pinned_match(o, pins.get(o.server, ()))]
    for obs in observations:
        if not obs.verified or not obs.path:
            reason = obs.error or "did not verify against the trust store"
            events.append(
                SecurityEvent(
                    obs.server, obs.address, tuple(c.sha256 for c in obs.chain), f"{obs.where()}: {reason}"
                )
            )
            holds.append(f"{obs.where()} does not verify")
            continue
        if not is_pinned_match(obs, pins.get(obs.server, ())):
            events.append(
                SecurityEvent(
                    obs.server,
                    obs.address,
                    tuple(c.sha256 for c in obs.chain),
                    f"{obs.where()}: no certificate matches the configured pins",
                )
            )
            holds.append(f"{obs.where()} misses its pins")
            continue
        if not is_confirmed(verified=True, pinned=True, times_seen=obs.times_seen,
                            confirmations=policy.confirmations):
            if id(obs) not in current_ids:
                continue  # seen too few times and no longer sent: nothing to wait for
            pending.append(f"{obs.where()}: seen {obs.times_seen} of {policy.confirmations} times")
            pending_chains.append(obs.chain)
            continue
        confirmed_servers.add(obs.server)
        in_use.append(obs.chain)
        for cert, role, reason in desired_from_chain(obs, policy=policy, anchors=anchors, extra=extra):
            collector.add(cert, role, reason)
    for item in prestaged:
        if item.server in confirmed_servers:
            collector.add(item.certificate, "prestaged", f"pre-staged for {item.server} ({item.source})")
    unconfirmed = tuple(s for s in servers if s not in confirmed_servers)
    for server in unconfirmed:
        holds.append(f"{server}: no confirmed verified chain seen recently")
    fetch_failed = unfetched or {}
    failed = tuple((s, fetch_failed[s]) for s in servers if s in fetch_failed)
    for server, why in failed:
        holds.append(f"{server}: the last fetch failed ({why})")
    return DesiredTrust(
        certificates=collector.result(),
        events=tuple(events),
        pending=tuple(pending),
        pending_chains=tuple(pending_chains),
        holds=tuple(dict.fromkeys(holds)),
        chains_in_use=tuple(dict.fromkeys(in_use)),
        unconfirmed=unconfirmed,
        untrusted_now=tuple(untrusted_now),
        chains_now=tuple(dict.fromkeys(chains_now)),
        unfetched=failed,
    )
