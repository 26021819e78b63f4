"""Issue 17 finding 3: a slow webhook cannot starve the daemon. A real `eemwatchd run` whose webhook answers one
byte every 5 s, with six unreachable routers whose `refresh_failed` alerts are never delivered (so every run sends
them again), and its SMTP server given by name: the server keeps resolving and fetching on schedule, the reachable
routers stay in sync, the daemon's threads stay few, and the webhook gets one request at a time."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
import yaml

from eemwatchd_lab.environment import SlowWebhook, sampling
from eemwatchd_lab.scenario import Lab
from tests.support.daemon import daemon_process, free_port, get, live_lab_document, metrics, series, wait_until

pytestmark = pytest.mark.timeout(150)

WATCH = 30.0  # seconds of slow webhook watched


def fetch_of(base: str, address: str) -> tuple[float | None, float]:
    """(fetch_success of ``address``, fetch jobs run so far)."""
    values = metrics(base)
    ok = next((v for (name, labels), v in values.items() if name == "eemwatchd_server_fetch_success"
               and dict(labels).get("address") == address), None)
    runs = sum(v for (name, _labels), v in values.items() if name == "eemwatchd_server_fetch_duration_seconds_count")
    return ok, runs


async def test_a_slow_webhook_starves_neither_dns_nor_routers(live_lab: Lab, tmp_path: Path) -> None:
    lab = live_lab
    good = [d.name for d in lab.fleet]
    document, base = live_lab_document(lab.config_path, server_interval="2s", router_interval="5s")
    document["servers"][0]["host"] = "localhost"  # resolved by the daemon at every fetch
    document["routers"] += [{"name": f"gone{i}", "host": "127.0.0.1", "port": free_port()} for i in range(6)]
    with SlowWebhook(every=5.0) as webhook:
        document["alerts"] = [{"kind": "log"}, {"kind": "webhook", "url": webhook.url, "timeout": "10s"}]
        lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        log = tmp_path / "daemon.log"
        with daemon_process(lab.config_path, log) as daemon:
            await wait_until("reachable routers in sync", lambda: get(f"{base}/readyz")[0] == 200 and all(
                series(metrics(base), "eemwatchd_router_in_sync").get(n) == 1.0 for n in good), 90, daemon, log)
            address = "127.0.0.1"  # the address "localhost" resolves to (::1 too on some machines)
            _ok, runs_before = fetch_of(base, address)
            with sampling(daemon.pid, every=1.0) as samples:
                end = time.monotonic() + WATCH
                while time.monotonic() < end:
                    ok, _runs = await asyncio.to_thread(fetch_of, base, address)
                    synced = series(await asyncio.to_thread(metrics, base), "eemwatchd_router_in_sync")
                    assert ok == 1.0, f"fetch of {address} failed meanwhile:\n{log.read_text()[-3000:]}"
                    assert all(synced.get(n) == 1.0 for n in good), (synced, log.read_text()[-3000:])
                    assert webhook.held <= 2, webhook.held  # one batch at a time per sink (and one closing)
                    await asyncio.sleep(1.0)
            _ok, runs_after = fetch_of(base, address)
            assert runs_after - runs_before >= WATCH / 4, (runs_before, runs_after)  # every 2 s (~15), on time
            assert webhook.requests >= 2  # it was tried, and cut off at its deadline each time
            threads = max(s.threads for s in samples)
            assert threads <= 12, f"{threads} threads"
            page = get(f"{base}/metrics")[1]
            failed = re.search(r'eemwatchd_alert_deliveries_total\{result="failed",sink="webhook"\} (\S+)', page)
            assert failed is not None and float(failed.group(1)) >= 2, page[-2000:]
            assert "no answer within 10 s" in log.read_text()
