"""The state store for async code: every call runs on one thread of its own, with a deadline, so a slow, frozen or
full disk never blocks the event loop (metrics, health checks, router sessions go on), and the store's health for
metrics, /readyz and an alert.

With the state file system frozen, SQLite's write() blocks in the kernel until it is thawed: called on the event
loop, that froze /healthz and /metrics for as long (issue 17). Here the call times out after ``deadline`` seconds
with a StateError; later calls fail at once while the thread is still stuck (nothing queues up behind it); the
stuck call finishes when the disk comes back (SQLite's transaction makes it all or nothing).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from eemwatchd.adapters.store import Store
from eemwatchd.errors import StateError

P = ParamSpec("P")
T = TypeVar("T")

# The Store methods that write; a failure of one of them (or any call that does not answer) makes the store
# "not writable" until the next write succeeds.
WRITES = frozenset({"record_observation", "set_unneeded", "record_outcome", "record_proof", "save_alert_state",
                    "append_audit", "begin_test_fire"})


@dataclass
class StoreHealth:
    writable: bool = True
    reason: str | None = None  # why it is not writable (a StateError's text)
    write_failures: int = 0  # failed or unanswered writes since the process started


_Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


_WORKERS: weakref.WeakKeyDictionary[Store, StoreWorker] = weakref.WeakKeyDictionary()


class StoreWorker:
    """Runs ``store``'s methods on its own thread: ``await worker.call(store.audit, router="r1")``.

    The thread is a daemon thread (a process that exits while the disk is frozen does not wait for it), started at
    the first call and ended after ``idle`` seconds without one.
    """

    def __init__(self, store: Store, *, deadline: float = 10.0, idle: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.deadline = deadline
        self.health = StoreHealth()
        self._idle = idle
        self._clock = clock
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None  # when the call under way started (monotonic)

    @classmethod
    def of(cls, store: Store) -> StoreWorker:
        """The one worker of ``store`` (every reconciler on one store shares its thread)."""
        worker = _WORKERS.get(store)
        if worker is None:
            worker = _WORKERS[store] = cls(store)
        return worker

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the store's thread; StateError when it fails or does not answer in time."""
        write = getattr(fn, "__name__", "") in WRITES
        busy = self._busy_since
        if busy is not None and self._clock() - busy > self.deadline:
            error = StateError(f"state store {self.store.path}: still waiting for a call started "
                               f"{self._clock() - busy:.0f} s ago (its file system may be frozen or failing); "
                               "not queueing more")
            self._failed(write, error)
            raise error
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, kwargs, future, loop))
        self._start()  # after the put: a thread ending for idleness sees the job, or a new one starts
        try:
            result = await asyncio.wait_for(asyncio.shield(future), timeout=self.deadline)
        except TimeoutError:
            future.cancel()  # not started yet: it never will be
            error = StateError(f"state store {self.store.path}: no answer within {self.deadline:g} s (its file "
                               "system may be frozen or very slow); eemwatchd keeps running and tries again")
            self._failed(write, error)
            raise error from None
        except StateError as exc:
            self._failed(write, exc)
            raise
        if write:
            self.health.writable, self.health.reason = True, None
        return result

    def _failed(self, write: bool, error: StateError) -> None:
        if write or "no answer" in str(error) or "still waiting" in str(error):
            self.health.writable, self.health.reason = False, str(error)
            self.health.write_failures += 1 if write else 0

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="eemwatchd-store", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            fn, args, kwargs, future, loop = job
            if future.cancelled():  # its caller gave up before it started
                continue
            self._busy_since = self._clock()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller, whatever it is
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)
            finally:
                self._busy_since = None

    @property
    def stuck(self) -> bool:
        """A call has been running longer than the deadline (closing the store now would block too)."""
        busy = self._busy_since
        return busy is not None and self._clock() - busy > self.deadline


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
