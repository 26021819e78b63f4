"""The waiting side of session pacing (eemwatchd.core.pacing decides): a connector that opens a router's
session only when the router's back-off is over and a fleet-wide slot is free, and tries a refused session
again after the back-off instead of failing the job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable

from eemwatchd.config import RouterConfig
from eemwatchd.core.pacing import Opening, Pacer, PacingPolicy
from eemwatchd.errors import RouterTimeout, SessionRefused
from eemwatchd.reconcile.connect import RouterConnector, RouterSessionLike

log = logging.getLogger("eemwatchd.reconcile")


class SessionPacing:
    """One per Reconciler: ``connector(inner)`` wraps how sessions are opened."""

    def __init__(self, policy: PacingPolicy, *, clock: Callable[[], float] | None = None,
                 jitter: Callable[[], float] = random.random) -> None:
        self.pacer = Pacer(policy)
        self._clock = clock
        self._jitter = jitter
        self._open = 0
        self._changed = asyncio.Condition()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def open_sessions(self) -> int:
        return self._open

    async def _take_slot(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._open < self.pacer.allowed)
            self._open += 1

    async def _free_slot(self) -> None:
        async with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def connector(self, inner: RouterConnector) -> RouterConnector:
        @contextlib.asynccontextmanager
        async def paced(router: RouterConfig) -> AsyncIterator[RouterSessionLike]:
            attempt = 0
            while True:
                attempt += 1
                await asyncio.sleep(self.pacer.wait_before(router.name, self._now()))
                await self._take_slot()
                stack = contextlib.AsyncExitStack()
                try:
                    session = await stack.enter_async_context(inner(router))
                except (SessionRefused, RouterTimeout) as exc:
                    await self._free_slot()
                    outcome = Opening.REFUSED if isinstance(exc, SessionRefused) else Opening.TIMED_OUT
                    before = self.pacer.allowed
                    retry = self.pacer.record(router.name, outcome, self._now(), attempt=attempt,
                                              jitter=self._jitter())
                    if self.pacer.allowed < before:
                        log.warning("router %s: session %s; routers in parallel lowered to %d for now",
                                    router.name, outcome.value, self.pacer.allowed)
                    if retry is None:
                        raise
                    log.info("router %s: session %s; trying again in %.1f s (attempt %d)", router.name,
                             outcome.value, retry, attempt + 1)
                    continue
                except BaseException:
                    await self._free_slot()
                    raise
                self.pacer.record(router.name, Opening.OPENED, self._now())
                try:
                    async with stack:
                        yield session
                finally:
                    await self._free_slot()
                return

        return paced
