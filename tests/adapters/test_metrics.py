"""Metrics: the FleetStatus collector and histograms, scraped over real HTTP from the endpoint and parsed
with prometheus_client's own parsers; the exposition is checked by `promtool check metrics`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.samples import Sample

from eemwatchd.daemon.metrics import Metrics
from eemwatchd.daemon.status import RECENT_CHANGES, ROUTER_STATES, AuditLine
from tests.support.metrics_fleet import NOW, SECRET, SHA, Served, fleet, serve


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = await serve(fleet())
    yield s
    await s.endpoint.close()


# The contract of issue 9 (+ the additions documented in docs/metrics.md): family -> its labels.
CONTRACT: dict[str, tuple[str, ...]] = {
    "eemwatchd_server_fetch_success": ("server", "address"),
    "eemwatchd_server_chain_verified": ("server", "address"),
    "eemwatchd_server_cert_not_after_timestamp_seconds": ("server", "address", "position", "sha256"),
    "eemwatchd_server_chain_changes": ("server",),  # the parser strips _total from a counter family's name
    "eemwatchd_server_last_fetch_timestamp_seconds": ("server",),
    "eemwatchd_router_up": ("router",),
    "eemwatchd_router_in_sync": ("router",),
    "eemwatchd_router_refreshes": ("router", "result"),
    "eemwatchd_router_testfire_success": ("router",),
    "eemwatchd_router_last_check_timestamp_seconds": ("router",),
    "eemwatchd_router_cert_not_after_timestamp_seconds": ("router", "trustpoint", "sha256", "role"),
    "eemwatchd_router_lint_findings": ("router", "rule"),
    "eemwatchd_config_last_reload_successful": (),
    "eemwatchd_config_last_reload_success_timestamp_seconds": (),
    "eemwatchd_build_info": ("version",),
    "eemwatchd_router_state": ("router", "state"),
    "eemwatchd_server_fetch_duration_seconds": ("server",),
    "eemwatchd_router_operation_duration_seconds": ("operation",),
    # additions
    "eemwatchd_server_chain_confirmed": ("server", "address"),
    "eemwatchd_router_testfire_last_success_timestamp_seconds": ("router",),
    "eemwatchd_router_trustpoint_managed": ("router", "trustpoint"),
    "eemwatchd_ready": (),
    "eemwatchd_start_time_seconds": (),
    # issue 17: the daemon's environment
    "eemwatchd_job_overdue_seconds": ("kind",),
    "eemwatchd_job_start_delay_seconds": ("kind",),
    "eemwatchd_clock_steps": (),
    "eemwatchd_http_connections": (),
    "eemwatchd_http_connections_closed": ("reason",),
    "eemwatchd_alert_deliveries": ("sink", "result"),
    "eemwatchd_store_writable": (),
    "eemwatchd_store_write_failures": (),
    # issue 20: pre-staged certificates
    "eemwatchd_server_prestaged_cert_not_after_timestamp_seconds": ("server", "sha256"),
}
HISTOGRAM_LABELS = {"le"}


def value(samples: list[Sample], **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, samples)
    return found[0]


async def test_every_contract_family_is_exported_with_exactly_its_labels(served: Served) -> None:
    served.metrics.observe_fetch("gmail", 0.01)
    served.metrics.observe_router_operation("read", 0.2)
    served.metrics.observe_job_delay("router", 0.02)
    families = await served.families()
    assert set(CONTRACT) <= set(families)
    # prometheus_client adds a <histogram>_created gauge in the text format (the start of each series)
    created = {f"{name}_created" for name in CONTRACT
               if name.endswith(("_duration_seconds", "_start_delay_seconds"))}
    assert {name for name in families if name.startswith("eemwatchd_")} == set(CONTRACT) | created
    for name, labels in CONTRACT.items():
        assert families[name], f"{name} has no sample"
        for sample in families[name]:
            assert set(sample.labels) - HISTOGRAM_LABELS == set(labels), (name, sample)


async def test_server_values_per_address_and_chain_position(served: Served) -> None:
    f = await served.families()
    assert value(f["eemwatchd_server_fetch_success"], server="gmail", address="::1") == 1
    assert value(f["eemwatchd_server_fetch_success"], server="office", address="127.0.0.2") == 0
    assert value(f["eemwatchd_server_chain_verified"], server="gmail", address="127.0.0.1") == 1
    assert value(f["eemwatchd_server_chain_verified"], server="gmail", address="::1") == 0
    assert value(f["eemwatchd_server_chain_confirmed"], server="gmail", address="::1") == 0
    not_after = f["eemwatchd_server_cert_not_after_timestamp_seconds"]
    assert value(not_after, server="gmail", address="127.0.0.1", position="1", sha256=SHA["b"]) == (
        (NOW + timedelta(days=400)).timestamp())
    assert len([s for s in not_after if s.labels["address"] == "::1"]) == 1  # only what that address sent
    assert value(f["eemwatchd_server_chain_changes"], server="gmail") == 2
    assert value(f["eemwatchd_server_chain_changes"], server="office") == 0
    assert value(f["eemwatchd_server_last_fetch_timestamp_seconds"], server="office") == (
        (NOW - timedelta(minutes=1)).timestamp())


async def test_router_values_state_set_refreshes_testfire_and_lint(served: Served) -> None:
    f = await served.families()
    assert value(f["eemwatchd_router_up"], router="r3") == 0
    assert value(f["eemwatchd_router_in_sync"], router="r1") == 1
    assert value(f["eemwatchd_router_in_sync"], router="r2") == 0
    states = [s for s in f["eemwatchd_router_state"] if s.labels["router"] == "r2"]
    assert {s.labels["state"] for s in states} == set(ROUTER_STATES)
    assert [s.labels["state"] for s in states if s.value == 1] == ["drift"]
    assert value(f["eemwatchd_router_refreshes"], router="r2", result="failure") == 2
    assert value(f["eemwatchd_router_refreshes"], router="r2", result="success") == 0
    assert value(f["eemwatchd_router_refreshes"], router="r3", result="failure") == 0
    assert value(f["eemwatchd_router_testfire_success"], router="r1") == 1
    assert value(f["eemwatchd_router_testfire_success"], router="r2") == 0
    assert not [s for s in f["eemwatchd_router_testfire_success"] if s.labels["router"] == "r3"]  # never fired
    assert value(f["eemwatchd_router_lint_findings"], router="r2", rule="maxrun-short") == 2
    assert value(f["eemwatchd_router_lint_findings"], router="r2", rule="at-in-user") == 1
    assert value(f["eemwatchd_router_trustpoint_managed"], router="r1", trustpoint="TP-self-signed-1") == 0
    assert value(f["eemwatchd_router_cert_not_after_timestamp_seconds"], router="r1", trustpoint="EEMW-b1b1b1b1",
                 sha256=SHA["b"], role="intermediate") == (NOW + timedelta(days=400)).timestamp()
    assert value(f["eemwatchd_router_last_check_timestamp_seconds"], router="r3") == (
        (NOW - timedelta(minutes=4)).timestamp())


async def test_pre_staged_certificates_carry_their_role_and_expiry(served: Served) -> None:
    f = await served.families()
    held = f["eemwatchd_router_cert_not_after_timestamp_seconds"]
    assert value(held, router="r1", trustpoint="EEMW-e1e1e1e1", sha256=SHA["e"], role="prestaged") == (
        (NOW + timedelta(days=3000)).timestamp())
    assert value(held, router="r1", trustpoint="TP-self-signed-1", role="none") == (
        (NOW - timedelta(days=30)).timestamp())
    assert value(f["eemwatchd_server_prestaged_cert_not_after_timestamp_seconds"], server="gmail", sha256=SHA["e"]) \
        == (NOW + timedelta(days=3000)).timestamp()
    assert not [s for s in f["eemwatchd_server_prestaged_cert_not_after_timestamp_seconds"]
                if s.labels["server"] == "office"]


async def test_an_unknown_state_code_is_still_exported_as_current(served: Served) -> None:
    served.status.set_router(replace(served.status.routers["r3"], state="locked-out"))
    f = await served.families()
    current = [s.labels["state"] for s in f["eemwatchd_router_state"] if s.labels["router"] == "r3" and s.value == 1]
    assert current == ["locked-out"]


async def test_a_failed_reload_keeps_the_last_success_time(served: Served) -> None:
    served.status.record_reload(ok=False, at=NOW)
    f = await served.families()
    assert value(f["eemwatchd_config_last_reload_successful"]) == 0
    assert value(f["eemwatchd_config_last_reload_success_timestamp_seconds"]) == (NOW - timedelta(hours=3)).timestamp()
    served.status.record_reload(ok=True, at=NOW)
    f = await served.families()
    assert value(f["eemwatchd_config_last_reload_successful"]) == 1
    assert value(f["eemwatchd_config_last_reload_success_timestamp_seconds"]) == NOW.timestamp()
    assert value(f["eemwatchd_build_info"], version="0.1.0") == 1


async def test_histograms_count_observations_in_buckets(served: Served) -> None:
    served.metrics.observe_fetch("gmail", 0.02)
    served.metrics.observe_fetch("gmail", 3.0)
    for op in ("read", "install", "retire", "test_fire", "save"):
        served.metrics.observe_router_operation(op, 0.3)
    f = await served.families()
    fetch = f["eemwatchd_server_fetch_duration_seconds"]
    assert value(fetch, server="gmail", le="0.025") == 1
    assert value(fetch, server="gmail", le="+Inf") == 2
    assert [s.value for s in fetch if s.name.endswith("_sum")] == [pytest.approx(3.02)]
    ops = {s.labels["operation"] for s in f["eemwatchd_router_operation_duration_seconds"]}
    assert ops == {"read", "install", "retire", "test_fire", "save"}
    with pytest.raises(ValueError, match="reload"):
        served.metrics.observe_router_operation("reload", 1.0)


async def test_shard_label_on_every_sample() -> None:
    s = await serve(fleet(shard="eu-1"))
    try:
        s.metrics.observe_fetch("gmail", 0.01)
        s.metrics.observe_router_operation("save", 0.1)
        families = await s.families()
    finally:
        await s.endpoint.close()
    samples = [sample for name, group in families.items() if name.startswith("eemwatchd_") for sample in group]
    assert samples
    assert all(sample.labels.get("shard") == "eu-1" for sample in samples)


async def test_no_error_text_or_secret_reaches_the_exposition(served: Served) -> None:
    _, _, text = await served.get("/metrics")
    assert SECRET not in text
    assert "unable to get issuer" not in text
    assert "connection refused" not in text


async def test_content_type_and_openmetrics_negotiation(served: Served) -> None:
    code, ctype, text = await served.get("/metrics")
    assert code == 200
    assert ctype.startswith("text/plain; version=")
    code, ctype, text = await served.get("/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert code == 200
    assert ctype.startswith("application/openmetrics-text")
    names = {f.name for f in openmetrics_families(text)}
    assert {"eemwatchd_router_in_sync", "eemwatchd_server_chain_changes", "eemwatchd_build"} <= names


async def test_promtool_accepts_the_exposition(served: Served) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    served.metrics.observe_fetch("gmail", 0.01)
    served.metrics.observe_router_operation("read", 0.2)
    _, _, text = await served.get("/metrics")
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "", done.stdout  # no lint warnings either


def test_registry_passed_in_never_the_global_one() -> None:
    before = set(REGISTRY._names_to_collectors)
    registry = CollectorRegistry()
    Metrics(registry, status=fleet())
    assert set(REGISTRY._names_to_collectors) == before
    Metrics(CollectorRegistry(), status=fleet())  # a second daemon (test) on its own registry is fine
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(registry, status=fleet())


def test_model_rejects_an_unknown_refresh_result() -> None:
    with pytest.raises(ValueError, match="'maybe' is not one of"):
        fleet().count_refresh("r1", "maybe")


def test_model_keeps_recent_changes_newest_first_and_bounded() -> None:
    status = fleet()
    status.add_changes([AuditLine(at=NOW - timedelta(minutes=i), router="r1", action="add") for i in range(40)])
    status.add_changes([AuditLine(at=NOW - timedelta(minutes=100 + i), router="r2", action="retire")
                        for i in range(40)])
    status.add_changes([AuditLine(at=NOW + timedelta(minutes=1), router="r3", action="save")])
    assert len(status.recent_changes) == RECENT_CHANGES
    assert status.recent_changes[0].router == "r3"
    assert [c.at for c in status.recent_changes] == sorted((c.at for c in status.recent_changes), reverse=True)


async def test_retain_drops_series_of_removed_servers_and_routers(served: Served) -> None:
    served.status.retain(servers={"gmail"}, routers={"r1"})
    f = await served.families()
    assert {s.labels["router"] for s in f["eemwatchd_router_refreshes"]} == {"r1"}
    assert {s.labels["router"] for s in f["eemwatchd_router_state"]} == {"r1"}
    assert {s.labels["server"] for s in f["eemwatchd_server_chain_changes"]} == {"gmail"}
    assert {s.labels["server"] for s in f["eemwatchd_server_fetch_success"]} == {"gmail"}
