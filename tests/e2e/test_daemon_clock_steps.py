"""Issue 17 finding 1: a step of the wall clock (a day ahead and back, 15 days ahead) neither stops the daemon's jobs
nor hides it. A real `eemwatchd run` under libfaketime (its wall clock only; the monotonic clock is real) over lab
routers on 127.0.0.1: fetches and router checks keep their interval through every step, the timestamps it exports
never lie in the future of the clock it runs on, and /healthz stays 200 because the jobs run on time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from eemwatchd_lab.environment import SteppedClock, faketime_library
from eemwatchd_lab.scenario import Lab
from tests.support.daemon import all_in_sync, daemon_process, get, live_lab_document, metrics, wait_until

pytestmark = [pytest.mark.timeout(150),
              pytest.mark.skipif(faketime_library() is None, reason="libfaketime is not installed (./dev installs "
                                                                    "Debian's faketime)")]

DAY = 86400.0


def counts(base: str) -> tuple[float, float]:
    """(fetch jobs run, router sessions that read a router) since the daemon started."""
    values = metrics(base)
    fetches = sum(v for (name, _labels), v in values.items() if name == "eemwatchd_server_fetch_duration_seconds_count")
    reads = sum(v for (name, labels), v in values.items()
                if name == "eemwatchd_router_operation_duration_seconds_count" and dict(labels)["operation"] == "read")
    return fetches, reads


def newest_timestamp(base: str) -> float:
    values = metrics(base)
    stamps = [v for (name, _labels), v in values.items() if name in (
        "eemwatchd_server_last_fetch_timestamp_seconds", "eemwatchd_router_last_check_timestamp_seconds")]
    return max(stamps)


async def test_jobs_keep_their_interval_through_wall_clock_steps_both_ways(live_lab: Lab, tmp_path: Path) -> None:
    lab = live_lab
    names = [d.name for d in lab.fleet]
    document, base = live_lab_document(lab.config_path, server_interval="2s", router_interval="5s")
    lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    clock = SteppedClock(tmp_path)
    log = tmp_path / "daemon.log"
    with daemon_process(lab.config_path, log, env=clock.env()) as daemon:
        await wait_until("routers in sync", lambda: get(f"{base}/readyz")[0] == 200 and all_in_sync(base, names),
                         90, daemon, log)

        async def progress(what: str, seconds: float) -> tuple[float, float]:
            """Fetches and router reads during ``seconds`` of real time, /healthz 200 all along."""
            before = await asyncio.to_thread(counts, base)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                code, body = await asyncio.to_thread(get, f"{base}/healthz")
                assert code == 200, f"{what}: /healthz {code}: {body}\n{log.read_text()[-3000:]}"
                await asyncio.sleep(1.0)
            after = await asyncio.to_thread(counts, base)
            return after[0] - before[0], after[1] - before[1]

        # A day ahead: the jobs go on (2 s fetches, 5 s router checks: ~5 and ~4 in 11 s; the bounds leave room
        # for a busy machine, a stalled schedule makes 0).
        clock.step_to(DAY)
        fetched, read = await progress("a day ahead", 11)
        assert fetched >= 2 and read >= len(names), (fetched, read, log.read_text()[-3000:])

        # And back: APScheduler's wall-clock schedule waited a whole day here; nothing may wait at all.
        clock.step_to(0)
        fetched, read = await progress("back to now", 11)
        assert fetched >= 2 and read >= len(names), (fetched, read, log.read_text()[-3000:])
        # Timestamps recorded while the clock was ahead do not stay a day in the future (the stale-fetch alert
        # rule compares them with time()); what is exported is at most now.
        assert newest_timestamp(base) <= time.time() + 2

        # Fifteen days ahead: counting every missed run one by one froze the loop for ~40 s.
        clock.step_to(15 * DAY)
        fetched, read = await progress("15 days ahead", 11)
        assert fetched >= 2 and read >= len(names), (fetched, read, log.read_text()[-3000:])
        clock.step_to(0)
        fetched, _read = await progress("back again", 5)
        assert fetched >= 1
        assert "the wall clock stepped" in log.read_text()  # said once per step, as a warning
