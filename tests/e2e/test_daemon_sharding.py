"""Two daemon instances over one lab: every router has exactly one owner, each instance its own state file."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eemwatchd_lab.scenario import Lab
from tests.support.daemon import free_port, get, metrics, series, wait_until

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def live_lab_routers() -> int:
    return 4


@contextlib.contextmanager
def instances(config: Path, ports: list[int], logs: list[Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for k, (port, log) in enumerate(zip(ports, logs, strict=True)):
            with log.open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "eemwatchd.cli", "run", "-c", str(config), "--shard", f"{k}/{len(ports)}",
                     "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


async def test_two_instances_own_every_router_exactly_once(live_lab: Lab, tmp_path: Path) -> None:
    names = {d.name for d in live_lab.fleet}
    ports = [free_port(), free_port()]
    logs = [tmp_path / "shard0.log", tmp_path / "shard1.log"]
    with instances(live_lab.config_path, ports, logs) as procs:
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for base, proc, log in zip(bases, procs, logs, strict=True):
            await wait_until(f"{base}/readyz", lambda b=base: get(f"{b}/readyz")[0] == 200, 60, proc, log)  # type: ignore[misc]

        def owned() -> list[dict[str, float]]:
            return [series(metrics(b), "eemwatchd_router_in_sync") for b in bases]

        def all_in_sync() -> bool:
            return all(v == 1.0 for shares in owned() for v in shares.values())

        await wait_until("every router in sync", all_in_sync, 60, procs[0], logs[0])
        shares = [set(s) for s in owned()]
        assert shares[0] | shares[1] == names
        assert not shares[0] & shares[1]
        assert shares[0] and shares[1]  # 4 routers: each instance has some (this split is fixed by the names)
        labels = {dict(key[1]).get("shard") for key in metrics(bases[1]) if key[0] == "eemwatchd_router_up"}
        assert labels == {"1/2"}
        assert all(live_lab.mailing_now(list(live_lab.pki.served)) for _ in [0])
        for proc in procs:
            proc.terminate()
        assert [await asyncio.to_thread(p.wait, 60) for p in procs] == [0, 0]
    state = live_lab.config_path.parent
    assert (state / "state.0-of-2.db").is_file() and (state / "state.1-of-2.db").is_file()
