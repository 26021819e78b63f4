"""The daemon's schedule: interval jobs on the monotonic clock, so a step of the wall clock moves no job.

Each job runs every ``interval`` seconds plus a random jitter, never twice at once (a run due while the last one
is still going is skipped, and the next run is at the next interval after it ends: missed runs coalesce), and
has a ``bound``: how long one run may take. A run that has not finished ``bound`` seconds after it was due makes
the job overdue; ``overdue()`` feeds /healthz and the metrics, so jobs that stop running on time are seen.

Why not APScheduler 3: it schedules on ``datetime.now()``; after a step back it slept until the wall clock caught
up (a day for a day), and after a step forward it counted every missed run one by one on the event loop (15 days
of a 4 s interval froze the loop for ~40 s). docs/design.md, "Libraries".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("eemwatchd.daemon")

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass
class _Job:
    job_id: str
    run: Callable[[], Awaitable[object]]
    interval: float
    jitter: float
    bound: float
    base: float  # monotonic: the interval boundary of the pending (or running) run, before jitter
    due: float  # monotonic: when the pending (or running) run was due (base + its jitter)
    running: bool = False
    started: float | None = None  # monotonic start of the running run
    loop_task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class Overdue:
    job_id: str
    seconds: float  # beyond the job's bound


class Schedule:
    """Interval jobs; ``spawn`` starts each run as a task of the caller's (so a stop can wait for runs under way)."""

    def __init__(self, *, spawn: Spawn, clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[float], float] | None = None,
                 on_start: Callable[[str, float], None] | None = None) -> None:
        """``on_start(job_id, delay)`` is told how late (seconds after it was due) each run started."""
        self._spawn = spawn
        self._on_start = on_start
        self._clock = clock
        self._jitter = jitter or (lambda most: random.uniform(0.0, most))  # noqa: S311 - spreading load, not secrets
        self._jobs: dict[str, _Job] = {}
        self._running = False
        self._wake = asyncio.Event()

    # --- jobs ------------------------------------------------------------------------------------------------

    def set_job(self, job_id: str, run: Callable[[], Awaitable[object]], *, interval: float, jitter: float,
                bound: float, first: float | None = None) -> None:
        """Add ``job_id``, or update it. A job already scheduled with the same interval keeps its timer (a reload
        must not postpone work that is due); a new interval starts the job's timer again. ``first``: seconds
        until the first run (default: one interval plus jitter)."""
        now = self._clock()
        job = self._jobs.get(job_id)
        if job is not None and job.interval == interval:
            job.run, job.jitter, job.bound = run, jitter, bound
            return
        delay = first if first is not None else interval + self._jitter(jitter)
        if job is not None:
            job.run, job.interval, job.jitter, job.bound = run, interval, jitter, bound
            if not job.running:
                job.base = job.due = now + delay
            self._wake.set()
            return
        job = _Job(job_id, run, interval, jitter, bound, base=now + delay, due=now + delay)
        self._jobs[job_id] = job
        if self._running:
            job.loop_task = asyncio.create_task(self._loop(job), name=f"schedule {job_id}")

    def keep_only(self, job_ids: set[str]) -> None:
        """Remove every job not in ``job_ids`` (a run under way finishes; it is not cancelled)."""
        for job_id in [j for j in self._jobs if j not in job_ids]:
            job = self._jobs.pop(job_id)
            if job.loop_task is not None:
                job.loop_task.cancel()

    @property
    def job_ids(self) -> set[str]:
        return set(self._jobs)

    # --- life ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        for job in self._jobs.values():
            if job.loop_task is None:
                job.loop_task = asyncio.create_task(self._loop(job), name=f"schedule {job.job_id}")

    async def stop(self) -> None:
        """Start no more runs. Runs under way are the caller's tasks: they are not cancelled here."""
        self._running = False
        tasks = [j.loop_task for j in self._jobs.values() if j.loop_task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in self._jobs.values():
            job.loop_task = None

    async def _loop(self, job: _Job) -> None:
        while self._running and self._jobs.get(job.job_id) is job:
            wait = job.due - self._clock()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    # woken early when set_job moved the due time
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            started = self._clock()
            if self._on_start is not None:
                self._on_start(job.job_id, started - job.due)
            job.running, job.started = True, started
            task = self._spawn(_call(job.run))
            try:
                # asyncio.wait does not cancel ``task`` when this loop is cancelled (a stop lets runs finish)
                await asyncio.wait({task})
            finally:
                job.running, job.started = False, None
                ended = self._clock()
                # the next interval boundary after the run ended: runs missed meanwhile coalesce into that one
                missed = max(0, int((ended - job.base) // job.interval))
                job.base += (missed + 1) * job.interval
                job.due = job.base + self._jitter(job.jitter)
            if not task.cancelled() and task.exception() is not None:
                log.error("job %s failed: %r", job.job_id, task.exception())

    # --- how late ----------------------------------------------------------------------------------------------

    def overdue(self) -> list[Overdue]:
        """Jobs whose due run has not finished within its bound (a stuck loop, a hung run, too little capacity)."""
        if not self._running:
            return []  # before the first pass ends (/readyz says so) and while stopping
        now = self._clock()
        return [Overdue(j.job_id, now - j.due - j.bound) for j in self._jobs.values() if now - j.due > j.bound]


async def _call(run: Callable[[], Awaitable[object]]) -> None:
    await run()


class WallClockWatch:
    """Notices steps of the wall clock: it moves against the monotonic clock by more than ``threshold`` seconds
    between two looks (NTP slews by at most 0.5 ms/s; a step is `date -s`, an NTP step, a resumed VM)."""

    def __init__(self, *, threshold: float = 2.0, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._wall = wall
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def step(self) -> float | None:
        """The step (seconds, negative: back) since the last look, or None."""
        offset = self._wall() - self._monotonic()
        moved, self._offset = offset - self._offset, offset
        return moved if abs(moved) > self._threshold else None
