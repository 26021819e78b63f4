"""Session pacing with the Reconciler (reconcile/pacing.py) against lab routers over real SSH whose vty lines are
all taken: refused sessions are tried again after a back-off, never counted as drift."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, parse_config
from eemwatchd.core.reason import Reason
from eemwatchd.reconcile import Reconciler
from eemwatchd_lab.router import DeviceSpec, Fleet, User
from tests.support.reconcile_lab import ROUTER_PASSWORD, fast_connector
from tests.support.ssh import RawClient

# --- the Reconciler against lab routers whose vty lines are taken -----------------------------------------


def _config(tmp: Path, fleet: Fleet, *, parallel: int) -> Config:
    (tmp / "router.pw").write_text(ROUTER_PASSWORD + "\n")
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text("".join(d.known_hosts_line() + "\n" for d in fleet))
    routers = "\n".join(f"""  - name: {d.name}
    host: 127.0.0.1
    port: {d.port}
    username: admin
    password_file: router.pw
    known_hosts: known_hosts
    applet: MAILTEST
    servers: [lab]""" for d in fleet)
    text = f"""
state_path: state.db
servers:
  - name: lab
    host: 127.0.0.1
    port: 9
    mode: starttls
routers:
{routers}
policy:
  max_parallel_routers: {parallel}
"""
    return parse_config(text, base=tmp).config


@pytest.fixture
async def vty_fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    specs = [DeviceSpec(name=f"v{i}", state_dir=tmp_path / f"v{i}", users=(User("admin", ROUTER_PASSWORD),),
                        vty_lines=1) for i in range(4)]
    async with Fleet(specs) as fleet:
        yield fleet


async def _hold_lines(fleet: Fleet) -> list[RawClient]:
    """An operator on every router's only vty line."""
    clients = []
    for device in fleet:
        client = await RawClient.open(device, password=ROUTER_PASSWORD)
        await client.read_until("#")
        clients.append(client)
    return clients


async def test_a_refused_session_is_tried_again_later_and_then_succeeds(vty_fleet: Fleet, tmp_path: Path) -> None:
    fleet = vty_fleet
    config = _config(tmp_path, fleet, parallel=8)
    held = await _hold_lines(fleet)

    async def operators_log_out() -> None:
        await asyncio.sleep(0.5)
        for client in held:
            await client.close()

    with Store.open(config.state_path, secrets=[ROUTER_PASSWORD]) as store:
        reconciler = Reconciler(config, store, connect=fast_connector)
        logout = asyncio.create_task(operators_log_out())
        report = await asyncio.wait_for(reconciler.run(apply=False, observe=False, notify=False), 30)
        await logout
    assert sum(d.refused_logins for d in fleet) == 4  # one refused login per router, then in
    assert all(r.error is None and r.reachable for r in report.routers), [r.error for r in report.routers]
    assert reconciler.pacing.pacer.refusals == 4
    assert reconciler.pacing.pacer.allowed == 4  # halved once for the burst, growing back


async def test_routers_that_keep_refusing_end_as_unreachable_not_drift_and_slow_the_fleet(
    vty_fleet: Fleet, tmp_path: Path
) -> None:
    fleet = vty_fleet
    config = _config(tmp_path, fleet, parallel=8)
    held = await _hold_lines(fleet)
    try:
        with Store.open(config.state_path, secrets=[ROUTER_PASSWORD]) as store:
            reconciler = Reconciler(config, store, connect=fast_connector)
            report = await asyncio.wait_for(reconciler.run(apply=True, observe=False, notify=False), 40)
            for result in report.routers:
                assert result.error_reason is Reason.UNREACHABLE, result.error
                assert "vty lines" in (result.error or "")
                assert result.plan is None  # nothing planned, so nothing reported as drift
                assert result.result == "unreachable"
                assert result.reason is not Reason.DRIFT
    finally:
        for client in held:
            await client.close()
    # every router was tried `attempts` times, no more; and the fleet-wide limit came down
    assert [d.refused_logins for d in fleet] == [3, 3, 3, 3]
    assert reconciler.pacing.pacer.allowed < 8
