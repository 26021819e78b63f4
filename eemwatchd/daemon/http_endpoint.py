"""The daemon's HTTP side on metrics.listen: /metrics, /healthz, /readyz and the status page at /."""

from __future__ import annotations

import errno
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from eemwatchd.daemon.http_guard import (
    ConnectionGuard,
    HttpLimits,
    Listener,
    QuietServerLog,
    guard_middleware,
)
from eemwatchd.daemon.log_budget import LogBudget
from eemwatchd.daemon.status import FleetStatus
from eemwatchd.daemon.status_page import render_status_page
from eemwatchd.errors import EemwatchdError

log = logging.getLogger("eemwatchd.http")

_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Za-z:.%]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>\d{1,5})$")

# The page has inline CSS and nothing else: forbid everything else outright, so even a value that escaped
# escaping could not load or run anything.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class ListenError(EemwatchdError):
    """The HTTP endpoint cannot listen on metrics.listen (bad address, port in use, no permission)."""

    def __init__(self, listen: str, reason: str, fix: str) -> None:
        self.listen = listen
        super().__init__(f"metrics.listen {listen!r}: {reason}; {fix}")


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT`` (port 0: any free port) into host and port."""
    match = _LISTEN.match(listen.strip())
    if match is None:
        raise ListenError(listen, "not HOST:PORT or [IPv6]:PORT", "write it like 127.0.0.1:9810 or [::1]:9810")
    port = int(match["port"])
    if port > 65535:
        raise ListenError(listen, f"port {port} is out of range", "use a port from 1 to 65535, like 127.0.0.1:9810")
    return (match["v6"] or match["host"]), port


@dataclass
class HttpEndpoint:
    """A running endpoint; ``port`` is the bound port (useful when metrics.listen asked for port 0)."""

    host: str
    port: int
    _runner: web.AppRunner
    _listener: Listener | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._runner.cleanup()


async def start_http(
    listen: str,
    *,
    status: FleetStatus,
    registry: CollectorRegistry,
    heartbeat: Callable[[], float | None],
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    stale_after: float = 60.0,
    limits: HttpLimits | None = None,
    budget: LogBudget | None = None,
) -> HttpEndpoint:
    """Serve on the running event loop.

    ``heartbeat`` returns when the daemon's loop last beat, on ``clock``'s scale (``time.monotonic`` by default),
    or None before the first beat; /healthz answers 503 when it is older than ``stale_after`` seconds, or while
    ``status.overdue`` names a job. ``now`` is the wall clock the status page measures ages and expiries against.
    ``limits`` bound the clients (connections at once, header and request deadlines).
    """
    host, port = parse_listen(listen)
    limits = limits or HttpLimits.for_this_process()
    budget = budget or LogBudget(log)
    guard = ConnectionGuard(limits, status, budget)
    app = web.Application(middlewares=[guard_middleware])
    handlers = _Handlers(status=status, registry=registry, heartbeat=heartbeat, clock=clock, now=now,
                         stale_after=stale_after)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/", handlers.page)
    # aiohttp's own keep-alive timer is a second, later bound on idle connections (ours closes them first and
    # counts them); a request body nobody reads is not lingered on.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=limits.header_timeout + 5,
                           lingering_time=0, logger=cast(logging.Logger, QuietServerLog(log, budget)))
    await runner.setup()
    assert runner.server is not None  # set by setup()
    try:
        # Our own listener (not web.TCPSite): every connection goes through the guard, and running out of file
        # descriptors costs a pause and a line, not a storm of retries (see Listener).
        listener = Listener.bind(host, port, guard.factory(runner.server), budget)
    except OSError as exc:
        await runner.cleanup()
        raise _listen_error(listen, exc) from exc
    listener.start()
    bound_host, bound_port = listener.sock.getsockname()[:2]
    log.info("HTTP endpoint on %s:%s (/metrics /healthz /readyz /)", bound_host, bound_port)
    return HttpEndpoint(host=str(bound_host), port=int(bound_port), _runner=runner, _listener=listener)


def _listen_error(listen: str, exc: OSError) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        return ListenError(listen, "the port is already in use",
                           "stop the process holding it or choose another port in metrics.listen")
    if exc.errno == errno.EACCES:
        return ListenError(listen, "permission denied", "use a port above 1023 or grant CAP_NET_BIND_SERVICE")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ListenError(listen, "the address is not on this machine",
                           "use an address of a local interface, 127.0.0.1 or 0.0.0.0")
    reason = exc.strerror or str(exc)
    return ListenError(listen, f"cannot listen ({reason})", "check the host and port in metrics.listen")


class _Handlers:
    def __init__(self, *, status: FleetStatus, registry: CollectorRegistry, heartbeat: Callable[[], float | None],
                 clock: Callable[[], float], now: Callable[[], datetime], stale_after: float) -> None:
        self._status = status
        self._registry = registry
        self._heartbeat = heartbeat
        self._clock = clock
        self._now = now
        self._stale_after = stale_after

    async def metrics(self, request: web.Request) -> web.Response:
        # Prometheus asks for OpenMetrics; curl and promtool get the classic text format.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})

    async def healthz(self, request: web.Request) -> web.Response:
        beat = self._heartbeat()
        if beat is None:
            return _text(503, "unhealthy: the daemon's loop has not beaten yet")
        age = self._clock() - beat
        if age > self._stale_after:
            limit = f"{self._stale_after:.0f} s"
            return _text(503, f"unhealthy: the daemon's loop last beat {age:.0f} s ago (limit {limit})")
        overdue = self._status.overdue
        if overdue:
            worst = sorted(overdue.items(), key=lambda item: -item[1])
            named = ", ".join(f"{job} by {late:.0f} s" for job, late in worst[:5])
            more = f" and {len(worst) - 5} more" if len(worst) > 5 else ""
            return _text(503, f"unhealthy: {len(worst)} job(s) overdue (not finished within their bound): "
                              f"{named}{more}")
        return _text(200, f"ok: the daemon's loop beat {max(age, 0.0):.1f} s ago; every job on time")

    async def readyz(self, request: web.Request) -> web.Response:
        if not self._status.ready:
            return _text(503, "not ready: the first pass over servers and routers has not finished")
        if not self._status.store_writable:
            return _text(503, f"not ready: the state store cannot be written: {self._status.store_problem}")
        return _text(200, "ready")

    async def page(self, request: web.Request) -> web.Response:
        html = render_status_page(self._status, now=self._now())
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


def _text(code: int, text: str) -> web.Response:
    return web.Response(status=code, text=text + "\n", content_type="text/plain", charset="utf-8")
