"""A router session that times each operation for the duration histograms (read, install, retire, ...)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from eemwatchd.config import RouterConfig
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.router_state import RouterSnapshot
from eemwatchd.core.testfire import FireResult
from eemwatchd.reconcile import RouterConnector, RouterSessionLike

Observe = Callable[[str, float], None]


class TimedSession:
    """Delegates to ``inner`` and reports each operation's duration to ``observe(operation, seconds)``."""

    def __init__(self, inner: RouterSessionLike, observe: Observe) -> None:
        self._inner = inner
        self._observe = observe

    def _done(self, operation: str, started: float) -> None:
        self._observe(operation, time.monotonic() - started)

    async def read_snapshot(self) -> RouterSnapshot:
        started = time.monotonic()
        try:
            return await self._inner.read_snapshot()
        finally:
            self._done("read", started)

    async def read_saved_trustpoints(self) -> Mapping[str, Sequence[str]]:
        started = time.monotonic()
        try:
            return await self._inner.read_saved_trustpoints()
        finally:
            self._done("read", started)

    async def install_certificate(self, trustpoint: str, certificate: Certificate) -> object:
        started = time.monotonic()
        try:
            return await self._inner.install_certificate(trustpoint, certificate)
        finally:
            self._done("install", started)

    async def retire_trustpoint(self, name: str) -> object:
        started = time.monotonic()
        try:
            return await self._inner.retire_trustpoint(name)
        finally:
            self._done("retire", started)

    async def save_config(self) -> object:
        started = time.monotonic()
        try:
            return await self._inner.save_config()
        finally:
            self._done("save", started)

    async def fire_applet(self, applet: str, *, maxrun: float, success_messages: Sequence[str] = ()) -> FireResult:
        started = time.monotonic()
        try:
            return await self._inner.fire_applet(applet, maxrun=maxrun, success_messages=success_messages)
        finally:
            self._done("test_fire", started)


def timed_connector(connect: RouterConnector, observe: Observe) -> RouterConnector:
    @contextlib.asynccontextmanager
    async def connector(router: RouterConfig) -> AsyncIterator[RouterSessionLike]:
        async with connect(router) as session:
            yield TimedSession(session, observe)

    return connector
