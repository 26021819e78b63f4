"""A fleet's status as the daemon holds it (two servers, three routers in different states), served over real HTTP
by the daemon's endpoint for the metrics, status page and Prometheus tests."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from eemwatchd.daemon.http_endpoint import HttpEndpoint, start_http
from eemwatchd.daemon.metrics import Metrics
from eemwatchd.daemon.status import (
    AddressStatus,
    CertStatus,
    FindingStatus,
    FleetStatus,
    PrestagedStatus,
    RouterStatus,
    ServerStatus,
    TrustpointStatus,
)
from tests.support.clock import NOW

SECRET = "app-pw-Zq81"  # must never reach an exposition, even when it is in an error text of the model
SHA = {name: (name * 64)[:64] for name in ("a", "b", "c", "d", "e", "f")}


def cert(position: int, sha: str, days: float, *, subject: str = "CN=x", is_ca: bool = True,
         role: str = "") -> CertStatus:
    return CertStatus(position=position, subject=subject, issuer="CN=issuer", sha256=sha,
                      not_after=NOW + timedelta(days=days), is_ca=is_ca, role=role)


def fleet(*, shard: str | None = None) -> FleetStatus:
    """Two servers (one address unverified, one server unreachable; gmail with a pre-staged root) and three routers
    in different states (r1 holds the pre-staged root)."""
    status = FleetStatus(version="0.1.0", started_at=NOW - timedelta(hours=3), shard=shard)
    chain = (cert(0, SHA["a"], 60, subject="CN=smtp.lab.test", is_ca=False), cert(1, SHA["b"], 400, subject="CN=WR2"),
             cert(2, SHA["c"], 700, subject="CN=GTS Root R1"))
    status.set_server(ServerStatus(
        name="gmail", host="smtp.lab.test", port=587, mode="starttls", last_fetch=NOW - timedelta(minutes=5),
        addresses=(
            AddressStatus("127.0.0.1", fetch_ok=True, verified=True, chain=chain, times_seen=4, confirmed=True),
            AddressStatus("::1", fetch_ok=True, verified=False, chain=chain[:1], times_seen=1,
                          error=f"unable to get issuer (for user:{SECRET}@smtp.lab.test)"),
        ),
        prestaged=(cert(0, SHA["e"], 3000, subject="CN=GTS Root R4"),),
    ))
    status.set_server(ServerStatus(
        name="office", host="smtp.office.test", port=465, mode="implicit", last_fetch=NOW - timedelta(minutes=1),
        addresses=(AddressStatus("127.0.0.2", fetch_ok=False, verified=False, error="connection refused"),),
    ))
    status.count_chain_change("gmail")
    status.count_chain_change("gmail")
    tp = TrustpointStatus("EEMW-b1b1b1b1", managed=True,
                          certificates=(cert(0, SHA["b"], 400, subject="CN=WR2", role="intermediate"),))
    hand = TrustpointStatus("TP-self-signed-1", managed=False, certificates=(cert(0, SHA["d"], -30, role="none"),))
    staged = TrustpointStatus("EEMW-e1e1e1e1", managed=True,
                              certificates=(cert(0, SHA["e"], 3000, subject="CN=GTS Root R4", role="prestaged"),))
    status.set_router(RouterStatus(
        name="r1", host="127.0.0.1", up=True, in_sync=True, state="in-sync", detail="holds what gmail needs",
        last_check=NOW - timedelta(minutes=2), last_testfire_ok=True, last_testfire_at=NOW - timedelta(hours=1),
        last_proven_at=NOW - timedelta(hours=1), trustpoints=(tp, hand, staged),
        prestaged=(PrestagedStatus("gmail", SHA["e"], "EEMW-e1e1e1e1", (("signed-by", True), ("on-top", True),
                                                                         ("cross-signed-on-top", None))),),
    ))
    status.set_router(RouterStatus(
        name="r2", host="127.0.0.1", up=True, in_sync=False, state="drift", detail="misses WR2",
        last_check=NOW - timedelta(minutes=3), last_testfire_ok=False, last_testfire_at=NOW - timedelta(minutes=3),
        lint=(FindingStatus("maxrun-short", "warning", "maxrun 5 s"), FindingStatus("maxrun-short", "warning", "x"),
              FindingStatus("at-in-user", "error", "user name holds @")),
        prestaged=(PrestagedStatus("gmail", SHA["e"], None, (("signed-by", False), ("on-top", False),
                                                             ("cross-signed-on-top", None))),),
    ))
    status.set_router(RouterStatus(name="r3", host="127.0.0.3", up=False, in_sync=False, state="unreachable",
                                   detail="connection refused", last_check=NOW - timedelta(minutes=4)))
    status.count_refresh("r1", "success")
    status.count_refresh("r2", "failure")
    status.count_refresh("r2", "failure")
    status.record_reload(ok=True, at=NOW - timedelta(hours=3))
    status.ready = True
    return status


@dataclass
class Served:
    status: FleetStatus
    metrics: Metrics
    endpoint: HttpEndpoint

    async def get(self, path: str, *, accept: str | None = None) -> tuple[int, str, str]:
        """A real HTTP GET with the standard library (an independent client), off the loop."""
        url = self.endpoint.url + path
        headers = {"Accept": accept} if accept else {}

        def fetch() -> tuple[int, str, str]:
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    return reply.status, reply.headers["Content-Type"], reply.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers["Content-Type"], exc.read().decode()

        return await asyncio.to_thread(fetch)

    async def families(self) -> dict[str, list[Sample]]:
        code, _, text = await self.get("/metrics")
        assert code == 200
        return {f.name: f.samples for f in text_string_to_metric_families(text)}


async def serve(status: FleetStatus) -> Served:
    registry = CollectorRegistry()
    metrics = Metrics(registry, status=status)
    endpoint = await start_http("127.0.0.1:0", status=status, registry=registry, heartbeat=lambda: 0.0,
                                clock=lambda: 1.0, now=lambda: NOW)
    return Served(status, metrics, endpoint)


def exported_sample_names() -> set[str]:
    """Every sample name the exposition carries for a full fleet (histograms observed once), as PromQL sees it."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, status=fleet())
    metrics.observe_fetch("gmail", 0.1)
    metrics.observe_router_operation("read", 0.1)
    metrics.observe_job_delay("server", 0.01)
    text = generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
