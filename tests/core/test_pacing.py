"""Session pacing decisions (eemwatchd.core.pacing): back off per router and fleet-wide when routers refuse
sessions or time out; table-driven with a fixed clock. The waiting against real lab routers:
tests/e2e/test_reconcile_pacing.py."""

from __future__ import annotations

import pytest

from eemwatchd.core.pacing import Opening, Pacer, PacingPolicy

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
