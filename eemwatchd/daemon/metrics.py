"""Prometheus metrics: a collector that reads the FleetStatus at scrape time, and the duration histograms.

The metric names and labels are a contract (issue 9, docs/metrics.md). Label values are names, addresses,
fingerprints, positions, rule ids and reason codes only: never a secret, never free text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from eemwatchd.daemon.status import HTTP_CLOSE_REASONS, REFRESH_RESULTS, ROUTER_STATES, FleetStatus

ROUTER_OPERATIONS: tuple[str, ...] = ("read", "install", "retire", "test_fire", "save")

# A fetch is milliseconds on a LAN and up to the fetch timeout (default 10 s) when a server stalls.
FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A router read is ~0.1 s; an import can take ~60 s on a busy box (docs/field-notes.md sec. 8); a test-fire: maxrun.
ROUTER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# How late a scheduled job starts: milliseconds normally; seconds when the loop is busy; more is a problem.
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
JOB_KINDS: tuple[str, ...] = ("server", "router")
# What became of an alert batch handed to a sink (the daemon's queue: daemon/alert_queue.py).
DELIVERY_RESULTS: tuple[str, ...] = ("sent", "failed", "dropped")


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Families:
    """Builds the families of one scrape, adding the ``shard`` label to every sample when one is set."""

    def __init__(self, shard: str | None) -> None:
        self._extra = ("shard",) if shard is not None else ()
        self._extra_values = (shard,) if shard is not None else ()
        self.all: list[Metric] = []

    def gauge(self, name: str, doc: str, labels: Sequence[str]) -> _Family:
        family = _Family(GaugeMetricFamily(name, doc, labels=[*labels, *self._extra]), self._extra_values)
        self.all.append(family.metric)
        return family

    def counter(self, name: str, doc: str, labels: Sequence[str]) -> _Family:
        family = _Family(CounterMetricFamily(name, doc, labels=[*labels, *self._extra]), self._extra_values)
        self.all.append(family.metric)
        return family

    def info(self, name: str, doc: str, value: dict[str, str]) -> None:
        shard = dict(zip(self._extra, self._extra_values, strict=True))
        family = InfoMetricFamily(name, doc, labels=[])
        family.add_metric([], {**value, **shard})
        self.all.append(family)


class _Family:
    def __init__(self, metric: GaugeMetricFamily | CounterMetricFamily, extra: tuple[str, ...]) -> None:
        self.metric = metric
        self._extra = extra

    def add(self, values: Sequence[str], value: float) -> None:
        self.metric.add_metric([*values, *self._extra], value)


class FleetCollector(Collector):
    """Reads a FleetStatus at scrape time; registers on the registry it is given, never the global one."""

    def __init__(self, status: FleetStatus, *, now: Callable[[], datetime] = _utc_now) -> None:
        self._status = status
        self._now = now

    def _event(self, moment: datetime) -> float:
        """When something happened in this process: never later than now, whatever the wall clock did between
        (a time recorded while the clock ran ahead would keep an age-based alert rule from ever firing)."""
        return min(moment.timestamp(), self._now().timestamp())

    def describe(self) -> list[Metric]:
        # the registry refuses a second collector exporting the same names; the families are cheap to build
        return self._families().all

    def collect(self) -> Iterator[Metric]:
        yield from self._families().all

    def _families(self) -> _Families:
        status = self._status
        out = _Families(status.shard)
        self._collect_servers(out)
        self._collect_routers(out)
        reload_ok = out.gauge("eemwatchd_config_last_reload_successful",
                              "1 if the last load or reload of the configuration succeeded.", [])
        reload_ok.add([], 1.0 if status.config_reload_ok else 0.0)
        reload_at = out.gauge("eemwatchd_config_last_reload_success_timestamp_seconds",
                              "When the configuration was last loaded successfully.", [])
        if status.config_reload_at is not None:
            reload_at.add([], self._event(status.config_reload_at))
        out.info("eemwatchd_build", "The running eemwatchd version.", {"version": status.version})
        out.gauge("eemwatchd_ready", "1 once the first pass over every server and router finished.", []).add(
            [], 1.0 if status.ready else 0.0)
        out.gauge("eemwatchd_start_time_seconds", "When this eemwatchd process started.", []).add(
            [], self._event(status.started_at))
        overdue = out.gauge("eemwatchd_job_overdue_seconds",
                            "How long the most overdue job of each kind is past its bound (0: every job on time).",
                            ["kind"])
        for kind in JOB_KINDS:
            late = [s for job, s in status.overdue.items() if job.split(":", 1)[0] == kind]
            overdue.add([kind], max(late, default=0.0))
        out.counter("eemwatchd_clock_steps", "Steps of the wall clock seen since the process started.", []).add(
            [], float(status.clock_steps))
        out.gauge("eemwatchd_http_connections", "Connections to this HTTP endpoint open now.", []).add(
            [], float(status.http_open))
        closed = out.counter("eemwatchd_http_connections_closed",
                             "Connections the endpoint closed itself: over-limit, header-timeout, request-timeout.",
                             ["reason"])
        for reason in sorted({*HTTP_CLOSE_REASONS, *status.http_closed}):
            closed.add([reason], float(status.http_closed.get(reason, 0)))
        deliveries = out.counter("eemwatchd_alert_deliveries",
                                 "Alert batches handed to each kind of sink, by result: sent, failed, dropped.",
                                 ["sink", "result"])
        kinds = sorted({"log", "webhook", "email", *(sink for sink, _result in status.alert_deliveries)})
        for sink in kinds:
            for result in DELIVERY_RESULTS:
                deliveries.add([sink, result], float(status.alert_deliveries.get((sink, result), 0)))
        out.gauge("eemwatchd_store_writable", "1 while the state store takes writes; 0 after a failed or unanswered "
                  "write, until one succeeds.", []).add([], 1.0 if status.store_writable else 0.0)
        out.counter("eemwatchd_store_write_failures", "Writes to the state store that failed or did not answer in "
                    "time, since the process started.", []).add([], float(status.store_write_failures))
        return out

    def _collect_servers(self, out: _Families) -> None:
        status = self._status
        fetch_ok = out.gauge("eemwatchd_server_fetch_success",
                             "1 if the last fetch of the chain from this address succeeded.", ["server", "address"])
        verified = out.gauge("eemwatchd_server_chain_verified",
                             "1 if the chain last fetched from this address verified against the trust store.",
                             ["server", "address"])
        confirmed = out.gauge("eemwatchd_server_chain_confirmed",
                              "1 if the chain last fetched from this address was seen often enough to act on.",
                              ["server", "address"])
        not_after = out.gauge("eemwatchd_server_cert_not_after_timestamp_seconds",
                              "notAfter of each certificate of the chain as sent (position 0 = leaf).",
                              ["server", "address", "position", "sha256"])
        changes = out.counter("eemwatchd_server_chain_changes",
                              "Confirmed changes of the chain a server serves, since the process started.",
                              ["server"])
        last_fetch = out.gauge("eemwatchd_server_last_fetch_timestamp_seconds",
                               "When the server's chain was last fetched.", ["server"])
        prestaged = out.gauge("eemwatchd_server_prestaged_cert_not_after_timestamp_seconds",
                              "notAfter of each certificate pre-staged for the server (servers[].prestage).",
                              ["server", "sha256"])
        for name in sorted(set(status.servers) | set(status.chain_changes)):
            changes.add([name], float(status.chain_changes.get(name, 0)))
        for name, server in sorted(status.servers.items()):
            if server.last_fetch is not None:
                last_fetch.add([name], self._event(server.last_fetch))
            for cert in server.prestaged:
                prestaged.add([name, cert.sha256], _ts(cert.not_after))
            for address in server.addresses:
                labels = [name, address.address]
                fetch_ok.add(labels, 1.0 if address.fetch_ok else 0.0)
                verified.add(labels, 1.0 if address.verified else 0.0)
                confirmed.add(labels, 1.0 if address.confirmed else 0.0)
                for cert in address.chain:
                    not_after.add([*labels, str(cert.position), cert.sha256], _ts(cert.not_after))

    def _collect_routers(self, out: _Families) -> None:
        status = self._status
        up = out.gauge("eemwatchd_router_up", "1 if the last session logged in to the router and read it.",
                       ["router"])
        in_sync = out.gauge("eemwatchd_router_in_sync",
                            "1 if the router holds what the served chains need and a test-fire proved mail.",
                            ["router"])
        state = out.gauge("eemwatchd_router_state", "1 for the router's current reason code, 0 for the others.",
                          ["router", "state"])
        refreshes = out.counter("eemwatchd_router_refreshes",
                                "Refreshes (apply runs that changed the router) by result, since the process started.",
                                ["router", "result"])
        testfire = out.gauge("eemwatchd_router_testfire_success",
                             "1 if the last test-fire of the EEM applet proved mail, 0 if it failed.", ["router"])
        proven = out.gauge("eemwatchd_router_testfire_last_success_timestamp_seconds",
                           "When a test-fire last proved that the router's mail arrives.", ["router"])
        last_check = out.gauge("eemwatchd_router_last_check_timestamp_seconds",
                               "When the router was last read.", ["router"])
        managed = out.gauge("eemwatchd_router_trustpoint_managed",
                            "1 for a trustpoint eemwatchd created, 0 for one it found.", ["router", "trustpoint"])
        not_after = out.gauge("eemwatchd_router_cert_not_after_timestamp_seconds",
                              "notAfter of each certificate in the router's trustpoints; role: why it is desired "
                              "(anchor, intermediate, ..., prestaged) or none.",
                              ["router", "trustpoint", "sha256", "role"])
        findings = out.gauge("eemwatchd_router_lint_findings", "Lint findings of the EEM mail setup, per rule.",
                             ["router", "rule"])
        for name in sorted(set(status.routers) | set(status.refreshes)):
            counts = status.refreshes.get(name, {})
            for result in sorted(set(REFRESH_RESULTS) | set(counts)):
                refreshes.add([name, result], float(counts.get(result, 0)))
        for name, router in sorted(status.routers.items()):
            up.add([name], 1.0 if router.up else 0.0)
            in_sync.add([name], 1.0 if router.in_sync else 0.0)
            states = ROUTER_STATES if router.state in ROUTER_STATES else (*ROUTER_STATES, router.state)
            for code in states:
                state.add([name, code], 1.0 if code == router.state else 0.0)
            if router.last_testfire_ok is not None:
                testfire.add([name], 1.0 if router.last_testfire_ok else 0.0)
            if router.last_proven_at is not None:
                proven.add([name], self._event(router.last_proven_at))
            if router.last_check is not None:
                last_check.add([name], self._event(router.last_check))
            for trustpoint in router.trustpoints:
                managed.add([name, trustpoint.name], 1.0 if trustpoint.managed else 0.0)
                for cert in trustpoint.certificates:
                    not_after.add([name, trustpoint.name, cert.sha256, cert.role or "none"], _ts(cert.not_after))
            rules: dict[str, int] = {}
            for finding in router.lint:
                rules[finding.rule] = rules.get(finding.rule, 0) + 1
            for rule, count in sorted(rules.items()):
                findings.add([name, rule], float(count))


class Metrics:
    """The daemon's metrics on one registry: the fleet collector and the duration histograms it observes."""

    def __init__(self, registry: CollectorRegistry, *, status: FleetStatus,
                 now: Callable[[], datetime] = _utc_now) -> None:
        self.registry = registry
        shard = status.shard
        extra = ["shard"] if shard is not None else []
        self._extra = [shard] if shard is not None else []
        registry.register(FleetCollector(status, now=now))
        self._fetch = Histogram(
            "eemwatchd_server_fetch_duration_seconds", "Duration of a chain fetch from one server (all addresses).",
            ["server", *extra], registry=registry, buckets=FETCH_BUCKETS,
        )
        self._router = Histogram(
            "eemwatchd_router_operation_duration_seconds",
            "Duration of a router operation: read, install, retire, test_fire, save.",
            ["operation", *extra], registry=registry, buckets=ROUTER_BUCKETS,
        )
        self._delay = Histogram(
            "eemwatchd_job_start_delay_seconds", "How long after it was due a scheduled job started.",
            ["kind", *extra], registry=registry, buckets=DELAY_BUCKETS,
        )

    def observe_fetch(self, server: str, seconds: float) -> None:
        self._fetch.labels(server, *self._extra).observe(seconds)

    def observe_job_delay(self, kind: str, seconds: float) -> None:
        if kind not in JOB_KINDS:
            raise ValueError(f"job kind {kind!r} is not one of {', '.join(JOB_KINDS)}")
        self._delay.labels(kind, *self._extra).observe(max(seconds, 0.0))

    def observe_router_operation(self, operation: str, seconds: float) -> None:
        if operation not in ROUTER_OPERATIONS:
            # a fixed label set: an unexpected value is a bug in the caller, not a new series
            raise ValueError(f"router operation {operation!r} is not one of {', '.join(ROUTER_OPERATIONS)}")
        self._router.labels(operation, *self._extra).observe(seconds)
