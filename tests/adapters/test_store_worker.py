"""The state store's worker thread (issue 17 finding 6), on a real SQLite store: a call that does not answer times out
at the deadline while the event loop keeps running, later calls fail at once instead of queueing behind it, the
health says so until a write succeeds, and an idle thread ends by itself."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.store import Store
from eemwatchd.adapters.store_worker import StoreWorker
from eemwatchd.errors import StateError

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def test_a_call_that_hangs_times_out_and_the_loop_runs_on(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.db") as store:
        worker = StoreWorker(store, deadline=0.5, idle=0.5)
        release = threading.Event()

        def record_outcome(**_kwargs: object) -> None:  # a write whose disk does not answer (named as one)
            release.wait(10)

        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.05)

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        with pytest.raises(StateError, match=r"no answer within 0\.5 s"):
            await worker.call(record_outcome)
        assert 0.45 < time.monotonic() - started < 1.5
        assert ticks >= 8  # the event loop ran all along
        assert not worker.health.writable and worker.health.write_failures == 1

        await asyncio.sleep(0.2)  # the hung call has now run longer than the deadline
        started = time.monotonic()
        with pytest.raises(StateError, match="not queueing more"):
            await worker.call(store.alert_states)
        assert time.monotonic() - started < 0.1  # at once, not after another deadline
        assert worker.stuck

        release.set()  # the disk answers again
        await asyncio.sleep(0.1)
        assert not worker.stuck
        assert await worker.call(store.alert_states) == {}
        assert not worker.health.writable  # a read says nothing about writes
        await worker.call(store.record_outcome, "r1", at=NOW, ok=True, summary="in-sync", error=None)
        assert worker.health.writable and worker.health.reason is None
        ticker.cancel()


async def test_the_thread_ends_when_idle_and_comes_back(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.db") as store:
        worker = StoreWorker(store, idle=0.2)
        assert await worker.call(store.last_proof, "r1") is None
        assert any(t.name == "eemwatchd-store" for t in threading.enumerate())
        await asyncio.sleep(0.6)
        assert worker._thread is None
        assert await worker.call(store.last_proof, "r1") is None
        assert StoreWorker.of(store) is StoreWorker.of(store)
