"""The daemon's in-memory status model: what the last jobs saw, read by metrics, health and the status page.

The daemon fills one ``FleetStatus`` on its event loop after every job (``set_server``, ``set_router``,
``count_refresh``, ``count_chain_change``, ``add_changes``, ``record_reload``); the HTTP side only reads it, on
the same loop, so the SQLite connection is never shared with another thread and a scrape never waits for a
router. Snapshots (``ServerStatus``, ``RouterStatus``, ...) are frozen and replaced whole; the counters live
on ``FleetStatus`` itself so they survive a snapshot being replaced and only grow while the process runs.
Nothing here may hold a secret: texts (``error``, ``detail``, ``message``) must already be scrubbed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from eemwatchd.core.reason import Reason

# The router reason codes (shared with alerts and the audit): exactly one is current per router.
# "pending" is the state before the first check of a router finished.
ROUTER_STATES: tuple[str, ...] = ("pending", *(r.value for r in Reason if r is not Reason.APPLIED))

# What a refresh (one apply on one router) ended as; the ``result`` label of eemwatchd_router_refreshes_total.
REFRESH_RESULTS: tuple[str, ...] = ("success", "failure", "rolled-back")

# Why the HTTP endpoint closed a connection itself (over-limit: refused, or the one waiting longest for its
# request headers closed to make room): the ``reason`` label of eemwatchd_http_connections_closed_total.
HTTP_CLOSE_REASONS: tuple[str, ...] = ("over-limit", "header-timeout", "request-timeout")

RECENT_CHANGES = 50  # audit lines kept for the status page


@dataclass(frozen=True)
class CertStatus:
    """One certificate: in a served chain (``position`` 0 = leaf, as sent) or in a router's trustpoint."""

    position: int
    subject: str
    issuer: str
    sha256: str  # lowercase hex of the DER's SHA-256 (our identity of a certificate)
    not_after: datetime  # timezone-aware
    is_ca: bool
    # in a router's trustpoint: the role it is desired in now (core.desired.Role: anchor, intermediate, ...,
    # prestaged), "none" when it is not desired now (unmanaged, or awaiting retirement); "" in a served chain
    role: str = ""


@dataclass(frozen=True)
class AddressStatus:
    """The last fetch from one address of a server, and how often that chain has been seen."""

    address: str
    fetch_ok: bool
    verified: bool
    error: str | None = None  # why the fetch failed or the chain did not verify
    chain: tuple[CertStatus, ...] = ()
    times_seen: int = 0
    confirmed: bool = False  # seen policy.confirmations times: it is acted on


@dataclass(frozen=True)
class ServerStatus:
    name: str
    host: str
    port: int
    mode: str  # starttls | implicit
    addresses: tuple[AddressStatus, ...] = ()
    last_fetch: datetime | None = None
    prestaged: tuple[CertStatus, ...] = ()  # configured in servers[].prestage (position: order in the config)


@dataclass(frozen=True)
class TrustpointStatus:
    name: str
    managed: bool  # created (and retired) by eemwatchd
    certificates: tuple[CertStatus, ...] = ()


@dataclass(frozen=True)
class FindingStatus:
    """One lint finding of a router's EEM mail setup (message already masked)."""

    rule: str
    severity: str
    message: str


@dataclass(frozen=True)
class PrestagedStatus:
    """One pre-staged certificate on one router: where it is held and which chains using it the router accepts
    today (shape -> True, False, or None when it cannot tell; core.prestage)."""

    server: str
    sha256: str
    trustpoint: str | None
    accepted: tuple[tuple[str, bool | None], ...] = ()


@dataclass(frozen=True)
class RouterStatus:
    name: str
    host: str
    up: bool  # the last session logged in and read the router
    in_sync: bool  # it holds what the served chains need and a test-fire proved mail since
    state: str = "pending"  # a reason code from ROUTER_STATES
    detail: str = ""  # one line: why it is in that state
    last_check: datetime | None = None
    last_testfire_ok: bool | None = None  # None: never test-fired by this process
    last_testfire_at: datetime | None = None
    last_proven_at: datetime | None = None  # last test-fire whose mail was proven to arrive
    trustpoints: tuple[TrustpointStatus, ...] = ()
    lint: tuple[FindingStatus, ...] = ()
    prestaged: tuple[PrestagedStatus, ...] = ()


@dataclass(frozen=True)
class AuditLine:
    """One line of the audit log as the status page shows it."""

    at: datetime
    router: str
    action: str
    trustpoint: str | None = None
    sha256: str | None = None
    detail: str = ""


@dataclass
class FleetStatus:
    """Everything the HTTP side shows. Mutated only on the event loop, by the daemon."""

    version: str
    started_at: datetime
    servers: dict[str, ServerStatus] = field(default_factory=dict)
    routers: dict[str, RouterStatus] = field(default_factory=dict)
    recent_changes: list[AuditLine] = field(default_factory=list)  # newest first
    ready: bool = False  # the first pass finished
    config_reload_ok: bool = True  # the last load or reload of the config succeeded
    config_reload_at: datetime | None = None  # when the config was last loaded successfully
    shard: str | None = None  # set once at start; adds a ``shard`` label to every metric
    chain_changes: dict[str, int] = field(default_factory=dict)  # per server, since start
    refreshes: dict[str, dict[str, int]] = field(default_factory=dict)  # per router, per result, since start
    # Jobs whose due run has not finished within its bound: job id ("server:NAME", "router:NAME") -> seconds
    # beyond the bound. Refreshed every second by the daemon; /healthz fails while it is not empty.
    overdue: dict[str, float] = field(default_factory=dict)
    clock_steps: int = 0  # steps of the wall clock seen since start (NTP steps, `date -s`, a VM resumed)
    http_open: int = 0  # connections to the HTTP endpoint open now
    http_closed: dict[str, int] = field(default_factory=dict)  # connections we closed, by reason, since start
    alert_deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # (sink kind, result) -> batches
    store_writable: bool = True  # the last write to the state store succeeded (and no call is stuck)
    store_problem: str | None = None  # why not
    store_write_failures: int = 0  # failed or unanswered writes since start

    def set_server(self, status: ServerStatus) -> None:
        self.servers[status.name] = status
        self.chain_changes.setdefault(status.name, 0)

    def set_router(self, status: RouterStatus) -> None:
        self.routers[status.name] = status
        self.refreshes.setdefault(status.name, {})

    def count_refresh(self, router: str, result: str) -> None:
        if result not in REFRESH_RESULTS:
            raise ValueError(f"refresh result {result!r} is not one of {', '.join(REFRESH_RESULTS)}")
        counts = self.refreshes.setdefault(router, {})
        counts[result] = counts.get(result, 0) + 1

    def count_alert_delivery(self, sink: str, result: str) -> None:
        key = (sink, result)
        self.alert_deliveries[key] = self.alert_deliveries.get(key, 0) + 1

    def count_chain_change(self, server: str) -> None:
        self.chain_changes[server] = self.chain_changes.get(server, 0) + 1

    def add_changes(self, lines: Iterable[AuditLine]) -> None:
        """Newest first, at most RECENT_CHANGES kept."""
        merged = sorted([*lines, *self.recent_changes], key=lambda line: line.at, reverse=True)
        self.recent_changes = merged[:RECENT_CHANGES]

    def record_reload(self, *, ok: bool, at: datetime) -> None:
        """A failed reload keeps the time of the last good one (the running config is still that one)."""
        self.config_reload_ok = ok
        if ok:
            self.config_reload_at = at

    def shift_times(self, step: timedelta) -> None:
        """The wall clock stepped by ``step``: move every time this process recorded by as much, so each keeps
        its age (a fetch 5 s ago stays 5 s ago) and none lies in the future of the clock it is compared with.
        Certificate dates are not moved: they are not this process's times."""
        self.clock_steps += 1
        self.started_at += step
        if self.config_reload_at is not None:
            self.config_reload_at += step
        for name, server in self.servers.items():
            if server.last_fetch is not None:
                self.servers[name] = replace(server, last_fetch=server.last_fetch + step)
        for name, router in self.routers.items():
            self.routers[name] = replace(
                router,
                last_check=None if router.last_check is None else router.last_check + step,
                last_testfire_at=None if router.last_testfire_at is None else router.last_testfire_at + step,
                last_proven_at=None if router.last_proven_at is None else router.last_proven_at + step,
            )

    def retain(self, *, servers: Collection[str], routers: Collection[str]) -> None:
        """After a reload: forget servers and routers no longer configured (their series disappear)."""
        for name in [n for n in self.servers if n not in servers]:
            del self.servers[name]
        for name in [n for n in self.chain_changes if n not in servers]:
            del self.chain_changes[name]
        for name in [n for n in self.routers if n not in routers]:
            del self.routers[name]
        for name in [n for n in self.refreshes if n not in routers]:
            del self.refreshes[name]
