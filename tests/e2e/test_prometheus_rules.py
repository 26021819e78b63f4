"""Prometheus rules and dashboard: promtool checks and unit tests, every alert tested both ways and annotated,
every query naming only exported metrics; and a real Prometheus scraping the endpoint and evaluating the rules."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from eemwatchd.daemon.http_endpoint import start_http
from eemwatchd.daemon.metrics import Metrics
from tests.support.metrics_fleet import NOW, exported_sample_names, fleet
from tests.support.prometheus_server import Row, prometheus_binary, running_prometheus
from tests.support.repo import REPO

RULES = REPO / "config" / "prometheus-rules.yml"
RULE_TESTS = REPO / "config" / "prometheus-rules.test.yml"
DASHBOARD = REPO / "config" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\beemwatchd_[a-z0-9_]+")
# Daemon-level alerts have no server or router to name.
DAEMON_ALERTS = {"EemwatchdConfigReloadFailed", "EemwatchdDown", "EemwatchdAbsent", "EemwatchdJobsOverdue",
                 "EemwatchdStateStoreNotWritable", "EemwatchdAlertsNotDelivered"}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False, cwd=REPO)


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_every_alert() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    firing: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names == firing, f"alerts without a firing test: {names - firing}"
    assert names == silent, f"alerts without a not-firing test: {names - silent}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_is_annotated_and_names_its_subject(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook"}
    if rule["alert"] not in DAEMON_ALERTS:
        subject = "{{ $labels.router }}" if "router" in rule["expr"] else "{{ $labels.server }}"
        assert subject in annotations["summary"]
        assert subject in annotations["description"]


def test_rules_and_dashboard_query_only_exported_metrics() -> None:
    exported = exported_sample_names()
    rule_names = {name for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
    rule_names |= {name for rule in alert_rules() for text in rule["annotations"].values()
                   for name in METRIC_NAME.findall(text)}
    assert rule_names - exported == set()
    assert len(rule_names) >= 10
    dashboard_names = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    assert dashboard_names - exported == set()


def dashboard_exprs() -> Iterator[str]:
    doc = json.loads(DASHBOARD.read_text())
    for panel in _panels(doc["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in doc.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if variable.get("type") == "query":
            yield str(query)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_dashboard_shape() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] >= 36
    assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
    assert doc["__inputs"][0]["pluginId"] == "prometheus"
    panels = [p for p in _panels(doc["panels"]) if p["type"] != "row"]
    assert len({p["id"] for p in _panels(doc["panels"])}) == len(list(_panels(doc["panels"])))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["w"] <= 24
    # the contract's families all have a panel
    queried = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    for family in ("eemwatchd_router_in_sync", "eemwatchd_router_state", "eemwatchd_server_chain_verified",
                   "eemwatchd_server_cert_not_after_timestamp_seconds", "eemwatchd_router_refreshes_total",
                   "eemwatchd_server_fetch_duration_seconds_bucket",
                   "eemwatchd_router_operation_duration_seconds_bucket",
                   "eemwatchd_router_cert_not_after_timestamp_seconds", "eemwatchd_router_lint_findings",
                   "eemwatchd_config_last_reload_successful", "eemwatchd_build_info",
                   "eemwatchd_server_chain_changes_total", "eemwatchd_router_testfire_success"):
        assert family in queried, family


async def test_real_prometheus_scrapes_the_endpoint_and_evaluates_the_rules(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        pytest.skip("prometheus not installed (Debian package 'prometheus')")
    status = fleet()
    registry = CollectorRegistry()
    Metrics(registry, status=status).observe_fetch("gmail", 0.05)
    endpoint = await start_http("127.0.0.1:0", status=status, registry=registry, heartbeat=lambda: 0.0,
                                now=lambda: NOW)
    try:
        with running_prometheus(f"127.0.0.1:{endpoint.port}", tmp_path / "prom", rule_files=[RULES]) as prom:
            rows = await asyncio.to_thread(prom.wait_for, "eemwatchd_router_in_sync",
                                           check=lambda rows: len(rows) == 3)
            assert {r.labels["router"]: r.value for r in rows} == {"r1": 1.0, "r2": 0.0, "r3": 0.0}
            assert {r.labels["job"] for r in rows} == {"eemwatchd"}
            # the state set and a histogram survive the real parser (OpenMetrics, as Prometheus asks for it)
            state = await asyncio.to_thread(prom.query, "eemwatchd_router_state == 1")
            assert {r.labels["router"]: r.labels["state"] for r in state} == {
                "r1": "in-sync", "r2": "drift", "r3": "unreachable"}
            fetches = await asyncio.to_thread(prom.query, "eemwatchd_server_fetch_duration_seconds_count")
            assert [(r.labels["server"], r.value) for r in fetches] == [("gmail", 1.0)]
            # the model changes, the next scrape shows it
            status.set_router(replace(status.routers["r2"], in_sync=True))
            await asyncio.to_thread(prom.wait_for, 'eemwatchd_router_in_sync{router="r2"} == 1')
            # EemwatchdChainUnverified has no `for`: it fires on the real data (gmail ::1 does not verify)
            firing = await asyncio.to_thread(
                prom.wait_for, 'ALERTS{alertname="EemwatchdChainUnverified",alertstate="firing"}')
            assert [(r.labels["server"], r.labels["address"]) for r in firing] == [("gmail", "::1")]
            pending = await asyncio.to_thread(
                prom.wait_for, 'ALERTS{alertname="EemwatchdRouterTestFireFailing"}', check=_one_row)
            assert pending[0].labels["alertstate"] == "pending"  # `for: 15m` has not elapsed
            # every dashboard query is valid PromQL for this Prometheus, and the histograms show data
            for expr in dashboard_exprs():
                if expr.startswith("label_values("):
                    continue  # a Grafana function, not PromQL
                promql = expr.replace("$job", "eemwatchd").replace("$__rate_interval", "1m")
                await asyncio.to_thread(prom.query, promql)
    finally:
        await endpoint.close()


def _one_row(rows: list[Row]) -> bool:
    return len(rows) == 1
