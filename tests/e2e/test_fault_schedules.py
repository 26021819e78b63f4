"""Random fault schedules (issue 16 sec. 4): plan, apply and the daemon against lab routers under seeded random
faults, every promise checked after every step (tests/support/fault_steps.py says which and how).

CI runs a fixed set of seeds; a failure prints its seed and the schedule Hypothesis shrank it to, as Python to paste
into a regression test below. `./dev soak --schedules N` runs more (benchmarks/soak_schedules.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eemwatchd.adapters.lock import StateLock
from eemwatchd.reconcile.applier import StoreAudit
from eemwatchd.reconcile.results import RouterResult
from tests.support.fault_harness import Harness, run_schedule
from tests.support.fault_schedule import run_schedules
from tests.support.fault_steps import Apply, Concurrent, Fault, Plan, Rotate, ScheduleFailed, Skew, Stop

CI_SEEDS = (1, 2, 3)
SCHEDULES_PER_SEED = 80


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One fault lab for the module (started once, reset between schedules)."""
    made = Harness(Path(tmp_path_factory.mktemp("fault-schedules")))
    yield made
    made.close()


# ~80 schedules take ~80 s on an idle 2-core machine; the bound leaves room for a loaded one and for shrinking a
# failure (at most 120 s) so that its short schedule is printed.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_random_fault_schedules_keep_every_promise(harness: Harness, seed: int) -> None:
    run = run_schedules(harness, seed_value=seed, count=SCHEDULES_PER_SEED, shrink_seconds=120)
    assert run.failure is None, run.describe()


# --- regression schedules: every failing seed found, as the schedule it shrank to ------------------------------


@pytest.mark.timeout(60)
def test_routers_in_sync_after_a_rotation_confirmed_across_runs(harness: Harness) -> None:
    """The plain path every other schedule starts from: install, rotate to a root the routers lack, converge."""
    run_schedule(harness, [Apply(), Apply(), Rotate(kind="root"), Apply(), Apply(faults=(Fault("drop", "r1", 12),))])


@pytest.mark.timeout(60)
def test_a_chain_the_server_no_longer_sends_keeps_no_router_waiting(harness: Harness) -> None:
    """Seed 1: a chain seen fewer than `confirmations` times kept every router that did not accept it `waiting` until
    that sighting left `policy.recent` (14 days by default), although the server no longer sent it. Only chains an
    address sends now count (core/desired.py `sent_now`)."""
    run_schedule(harness, [Apply(), Apply(outage="provider"), Rotate(kind="anchor")])


@pytest.mark.timeout(60)
def test_no_router_is_in_sync_while_its_server_cannot_be_fetched(harness: Harness) -> None:
    """Seed 2: while eemwatchd could not fetch a server it planned from the chains it saw before, so when the provider
    had meanwhile moved to a chain the routers reject, they were called in sync. A server whose last fetch failed
    leaves its routers `unconfirmed` (Reconciler.fetch_failures)."""
    run_schedule(harness, [Apply(), Apply(), Plan(), Rotate(kind="anchor"), Apply(outage="fetch")])


@pytest.mark.timeout(60)
def test_a_router_whose_clock_rejects_the_chain_is_not_in_sync(harness: Harness) -> None:
    """Seed 10: a router whose clock is 3 days behind rejects the fresh leaf (not yet valid at its clock) and cannot
    mail, yet it was called in sync on its last proof. Chains are judged at the router's clock too: `clock-skew`."""
    run_schedule(harness, [Apply(), Apply(), Apply(), Skew(router="r1", seconds=-3 * 86400), Concurrent()])


@pytest.mark.timeout(60)
def test_a_test_fire_never_takes_an_earlier_killed_session_job_for_its_own(harness: Harness) -> None:
    """Found by a hand-made schedule after the harness showed kill -9 during a test-fire: a job of a session killed
    mid-fire still ran and ended after the next session's run started, and its `success` row was taken for the next
    session's proof (core/testfire.job_after takes the first newer row). Now a test-fire is recorded as under way
    until its verdict, and the next session waits such a job out (at most maxrun + grace) before firing its own."""
    run_schedule(harness, [
        Apply(router="r1"),
        Apply(router="r1", faults=(Fault("mail-refused", "r1"),)),  # trust added, its test-fire failed: unproven
        Apply(router="r1", process=True, faults=(Fault("mail-slow", "r1", 1000),),
              stop=Stop("SIGKILL", "r1", 9)),  # killed while polling for its job (line 9), which runs on for 1 s
        Apply(router="r1", faults=(Fault("mail-silent", "r1"),)),  # its own job hangs; the killed one's succeeds
    ])


@pytest.mark.timeout(60)
def test_a_refused_terminal_length_ends_the_job_at_once(harness: Harness) -> None:
    """Seed 13: AAA refusing the session's first line (`terminal length 0`) left paging on; `eemwatchd apply` then
    waited at the pager until timeouts.total (30 s) and reported a timeout. Now a refusal, at once."""
    started = time.monotonic()
    run_schedule(harness, [Apply(), Apply(process=True, faults=(Fault("refuse", "r1", 1),))])
    assert time.monotonic() - started < 15


# --- the harness can fail: each check catches the broken promise it is for -----------------------------------


@pytest.mark.timeout(60)
def test_the_harness_catches_an_apply_that_writes_no_audit_row_for_an_add(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    change = StoreAudit.change

    async def forget_adds(self: StoreAudit, action: str, **kwargs: Any) -> None:
        if action != "add":
            await change(self, action, **kwargs)

    monkeypatch.setattr(StoreAudit, "change", forget_adds)
    with pytest.raises(ScheduleFailed, match="AUDIT broken: router r1: the audit says nothing, the router holds EEMW-"):
        run_schedule(harness, [Apply(), Apply()])


@pytest.mark.timeout(60)
def test_the_harness_catches_an_in_sync_that_the_lab_refutes(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RouterResult, "in_sync", property(lambda self: True))
    with pytest.raises(ScheduleFailed, match=r"IN SYNC MEANS MAIL WORKS broken: apply .* router r1, but it rejects"):
        run_schedule(harness, [Apply()])


@pytest.mark.timeout(60)
def test_the_harness_catches_a_second_writer_that_is_not_refused(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StateLock, "acquire", lambda self, wait=0.0: None)  # the first apply "holds" no lock
    monkeypatch.setattr(StateLock, "release", lambda self: None)
    with pytest.raises(ScheduleFailed, match="ONE WRITER broken: `eemwatchd apply` started beside a running apply"):
        run_schedule(harness, [Apply(), Apply(), Concurrent(second="apply")])
