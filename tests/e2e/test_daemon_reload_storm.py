"""Issue 17 finding 2: a reload mid-job never runs a second job on a router. A real `eemwatchd run` over slow lab
routers gets 100 SIGHUPs in under a second while it installs the server's CAs, the configuration flipping between
two versions that change every router (so each reload has work to give): each lab router counts the SSH sessions
open at once (never more than one), the reloads coalesce, the install finishes without a failed step, and every
router ends in sync with a proven test-fire."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from eemwatchd_lab.scenario import Lab
from tests.support.daemon import daemon_process, get, live_lab_document, metrics, series, wait_until

pytestmark = pytest.mark.timeout(150)


async def test_a_sighup_storm_during_an_install_keeps_one_session_per_router(live_lab: Lab, tmp_path: Path) -> None:
    lab = live_lab
    names = [d.name for d in lab.fleet]
    # only the storm and the confirmed chain make router jobs
    document, base = live_lab_document(lab.config_path, router_interval="10m")
    variants = []
    for step in ("20s", "21s"):  # two configs that differ in every router: each reload gives every router work
        document["defaults"]["routers"]["timeouts"]["step"] = step
        variants.append(yaml.safe_dump(document, sort_keys=False))
    lab.config_path.write_text(variants[0])
    for device in lab.fleet:
        device.spec.faults.output_delay = 0.03  # an install takes seconds: time for a storm mid-install
    log = tmp_path / "daemon.log"
    with daemon_process(lab.config_path, log) as daemon:
        await wait_until("/readyz", lambda: get(f"{base}/readyz")[0] == 200, 60, daemon, log)
        # The first pass found the chain unconfirmed; its second sighting starts the install on every router.
        await wait_until("an install under way on every router",
                         lambda: all(d._connections for d in lab.fleet), 30, daemon, log)
        started = time.monotonic()
        for number in range(100):
            if number % 10 == 0:
                lab.config_path.write_text(variants[(number // 10) % 2])
            os.kill(daemon.pid, signal.SIGHUP)
            await asyncio.sleep(0.007)
        storm = time.monotonic() - started
        assert storm < 1.5

        await wait_until("every router in sync with a proven test-fire", lambda: all(
            series(metrics(base), "eemwatchd_router_in_sync").get(n) == 1.0
            and series(metrics(base), "eemwatchd_router_testfire_success").get(n) == 1.0 for n in names),
                         90, daemon, log)
        await asyncio.sleep(2.0)  # the jobs the storm queued finish too
        peaks = {d.name: d.peak_connections for d in lab.fleet}
        text = log.read_text()
        reloads = text.count("configuration reloaded")
        assert peaks == dict.fromkeys(names, 1), (peaks, text[-3000:])
        assert 1 <= reloads <= 4, reloads  # coalesced: one running, at most one pending, one a second at most
        assert "add-failed" not in text and "retire EEMW" not in text and "FAILED" not in text, text[-3000:]
        assert series(metrics(base), "eemwatchd_config_last_reload_successful").get("") == 1.0
        assert get(f"{base}/healthz")[0] == 200
        assert lab.mailing_now(list(lab.pki.served)) == names
