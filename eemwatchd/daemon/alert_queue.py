"""The daemon's alert delivery, in the background: no job waits for a sink, and a slow sink slows only itself.

One bounded queue and one worker per sink; each batch is bounded by the sink's own whole-request deadline
(alerts.timeout). A full queue drops the batch (counted, a warning a minute). The alert states of a report are
stored only once every sink delivered its batch, so an alert that failed or was dropped is tried again next run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eemwatchd.adapters.alerts import Alert, Alerter, AlertSink, sink_kind
from eemwatchd.daemon.log_budget import LogBudget
from eemwatchd.errors import AlertError

Done = Callable[[list[AlertError]], Awaitable[None]]


@dataclass
class _Ticket:
    """One report's batches across sinks; ``on_done`` runs once all of them were delivered, failed or dropped."""

    pending: int
    on_done: Done
    spawn: Callable[[Awaitable[None]], None]
    errors: list[AlertError] = field(default_factory=list)

    def finish(self, error: AlertError | None) -> None:
        if error is not None:
            self.errors.append(error)
        self.pending -= 1
        if self.pending == 0:
            self.spawn(self.on_done(self.errors))


@dataclass
class _Item:
    alerter: Alerter
    sink: AlertSink
    batch: Sequence[Alert]
    secrets: frozenset[str]
    ticket: _Ticket


class AlertQueue:
    def __init__(self, *, budget: LogBudget, capacity: int = 32,
                 on_result: Callable[[str, str], None] | None = None) -> None:
        """``on_result(sink_kind, result)`` counts each batch: sent, failed or dropped."""
        self._budget = budget
        self._capacity = capacity
        self._on_result = on_result or (lambda _kind, _result: None)
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._callbacks: set[asyncio.Task[None]] = set()

    def submit(self, alerter: Alerter, alerts: Sequence[Alert], *, secrets: frozenset[str], on_done: Done) -> None:
        """Queue ``alerts`` for every sink they are routed to; returns at once."""
        batches = alerter.batches(alerts, secrets=secrets)
        ticket = _Ticket(len(batches), on_done, self._spawn)
        if not batches:
            self._spawn(on_done([]))
            return
        for sink, batch in batches:
            queue = self._queue(sink.name)
            try:
                queue.put_nowait(_Item(alerter, sink, batch, secrets, ticket))
            except asyncio.QueueFull:
                self._on_result(sink_kind(sink), "dropped")
                self._budget.warn(f"alert-queue {sink.name}", "alerts for %s dropped: %d batches already wait for "
                                  "it (a slow or dead sink); they are tried again at the next run", sink.name,
                                  self._capacity)
                ticket.finish(AlertError(f"{sink.name}: dropped, {self._capacity} batches already waiting"))

    def _queue(self, name: str) -> asyncio.Queue[_Item]:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = asyncio.Queue(self._capacity)
            worker = asyncio.create_task(self._work(queue), name=f"alerts {name}")
            self._workers.add(worker)
        return queue

    async def _work(self, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            try:
                error = await item.alerter.deliver(item.sink, item.batch, secrets=item.secrets)
            except Exception as exc:  # deliver() turns a sink's errors into AlertError; this is our own bug
                error = AlertError(f"{item.sink.name}: unexpected error {exc!r}")
            self._on_result(sink_kind(item.sink), "sent" if error is None else "failed")
            item.ticket.finish(error)
            queue.task_done()

    def _spawn(self, awaitable: Awaitable[None]) -> None:
        async def run() -> None:
            await awaitable

        task = asyncio.create_task(run())
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    @property
    def waiting(self) -> int:
        return sum(q.qsize() for q in self._queues.values())

    async def close(self, *, timeout: float) -> None:
        """Give what is queued ``timeout`` seconds to leave, then stop the workers."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(q.join() for q in self._queues.values()))
        tasks: list[asyncio.Task[Any]] = [*self._workers, *self._callbacks]
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
