"""Session pacing: back off per router and fleet-wide when routers refuse sessions or time out.

The decisions (eemwatchd.core.pacing) table-driven with a fixed clock; the waiting (reconcile/pacing.py) with
the Reconciler against lab routers over real SSH whose vty lines are all taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, parse_config
from eemwatchd.core.pacing import Opening, Pacer, PacingPolicy
from eemwatchd.core.reason import Reason
from eemwatchd.reconcile import Reconciler
from eemwatchd_lab.router import DeviceSpec, Fleet, User
from tests.test_lab_router_ssh import RawClient
from tests.test_reconcile import ROUTER_PASSWORD, fast_connector

POLICY = PacingPolicy(max_parallel=64, retry_base=2.0, retry_max=60.0, attempts=3, cooldown=2.0)


def test_a_refused_router_is_tried_again_after_a_doubling_delay_then_given_up() -> None:
    pacer = Pacer(POLICY)
    assert pacer.record("r1", Opening.REFUSED, 100.0, attempt=1) == 2.0
    assert pacer.wait_before("r1", 100.5) == 1.5
    assert pacer.wait_before("r2", 100.5) == 0.0  # other routers are not held back by r1's record
    assert pacer.record("r1", Opening.REFUSED, 102.0, attempt=2) == 4.0
    assert pacer.record("r1", Opening.REFUSED, 106.0, attempt=3) is None  # the job's last attempt
    assert pacer.wait_before("r1", 106.0) == 8.0  # the next job waits out the back-off too
    pacer.record("r1", Opening.OPENED, 120.0)
    assert pacer.wait_before("r1", 120.0) == 0.0


def test_the_per_router_delay_is_capped_and_jittered() -> None:
    pacer = Pacer(POLICY)
    for _ in range(10):
        pacer.record("r1", Opening.REFUSED, 0.0, attempt=1)
    assert pacer.wait_before("r1", 0.0) == 60.0
    assert pacer.record("r2", Opening.REFUSED, 0.0, attempt=1, jitter=0.999) == pytest.approx(2.0 * 1.24975)


def test_an_open_timeout_is_not_retried_in_the_job_but_backs_off() -> None:
    pacer = Pacer(POLICY)
    assert pacer.record("r1", Opening.TIMED_OUT, 10.0, attempt=1) is None
    assert pacer.wait_before("r1", 10.0) == 2.0
    assert pacer.allowed == 32


@pytest.mark.parametrize(
    ("events", "allowed"),
    [
        pytest.param([], 64, id="untouched"),
        pytest.param([("REFUSED", 0.0)], 32, id="halved"),
        pytest.param([("REFUSED", 0.0), ("REFUSED", 0.5), ("TIMED_OUT", 1.9)], 32, id="one-burst-counts-once"),
        pytest.param([("REFUSED", 0.0), ("REFUSED", 2.0)], 16, id="a-second-burst-halves-again"),
        pytest.param([("REFUSED", float(t)) for t in range(0, 40, 2)], 1, id="floor"),
    ],
)
def test_the_fleet_limit_halves_once_per_burst(events: list[tuple[str, float]], allowed: int) -> None:
    pacer = Pacer(POLICY)
    for n, (outcome, at) in enumerate(events):
        pacer.record(f"r{n}", Opening[outcome], at)
    assert pacer.allowed == allowed


def test_the_fleet_limit_grows_back_by_about_one_per_round_of_sessions() -> None:
    pacer = Pacer(POLICY)
    pacer.record("r1", Opening.REFUSED, 0.0)
    assert pacer.allowed == 32
    for n in range(32):
        pacer.record(f"ok{n}", Opening.OPENED, 1.0)
    assert 32.9 < pacer.limit <= 33.0  # + 1/limit per session: about one more after a round of 32
    for n in range(5000):
        pacer.record(f"ok{n}", Opening.OPENED, 2.0)
    assert pacer.allowed == 64  # never above max_parallel


def test_policy_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="pacing"):
        PacingPolicy(max_parallel=0)
    with pytest.raises(ValueError, match="pacing"):
        PacingPolicy(max_parallel=4, floor=5)


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
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
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


async def test_a_refused_session_is_tried_again_later_and_then_succeeds(fleet: Fleet, tmp_path: Path) -> None:
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
    fleet: Fleet, tmp_path: Path
) -> None:
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
