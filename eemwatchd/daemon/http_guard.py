"""Bounds on the HTTP endpoint's clients: how many connections at once, how long a client may take to send its
request headers and to be answered; beyond them a connection is refused or closed. Bad clients cost a counter and a
rate-limited log line, never a traceback each (2000 half-sent requests once held every file descriptor, and asyncio
logged the accept error 1.28 million times in 110 s).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from eemwatchd.daemon.log_budget import LogBudget
from eemwatchd.daemon.status import FleetStatus

log = logging.getLogger("eemwatchd.http")


_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 46\r\n"
            b"Connection: close\r\n\r\ntoo many connections to eemwatchd; try again\r\n")


@dataclass(frozen=True)
class HttpLimits:
    """``max_connections`` well below the open-file limit (the unit sets LimitNOFILE=65536; 1024 is the usual
    default elsewhere), so routers, SMTP servers and the state store always get their file descriptors."""

    max_connections: int = 256
    header_timeout: float = 10.0  # from the connection (or the last answer) to complete request headers
    request_timeout: float = 30.0  # from complete headers to the answer handed to the client

    @classmethod
    def for_this_process(cls) -> HttpLimits:
        """The defaults, with at most a quarter of this process's open-file limit for HTTP connections."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return cls()
        return cls(max_connections=max(8, min(cls.max_connections, soft // 4)))


class ConnectionGuard:
    """Counts the endpoint's connections into ``status`` and enforces ``limits`` on each of them.

    When ``max_connections`` are open, a new connection takes the place of the one that has waited longest for
    its request headers (a slow client's), so a flood of half-sent requests cannot lock out a health check or a
    scrape; only when every connection is busy with a request is the new one refused (503).
    """

    def __init__(self, limits: HttpLimits, status: FleetStatus, budget: LogBudget) -> None:
        self.limits = limits
        self.status = status
        self.budget = budget
        self.waiting: dict[_Guarded, None] = {}  # connections waiting for request headers, longest first

    def make_room(self) -> bool:
        """Close the connection that has waited longest for its headers; False when none waits."""
        for oldest in self.waiting:
            oldest.evict()
            return True
        return False

    def factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(inner, self)

    def closed(self, reason: str, peer: object) -> None:
        self.status.http_closed[reason] = self.status.http_closed.get(reason, 0) + 1
        why = {"over-limit": f"{self.limits.max_connections} connections already open",
               "header-timeout": f"no complete request within {self.limits.header_timeout:g} s",
               "request-timeout": f"not answered within {self.limits.request_timeout:g} s"}[reason]
        self.budget.warn(reason, "HTTP: closed a connection from %s: %s", _peer_text(peer), why)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind a deadline: headers due, then the answer due."""

    def __init__(self, inner: Callable[[], asyncio.BaseProtocol], guard: ConnectionGuard) -> None:
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        status = self._guard.status
        if status.http_open >= self._guard.limits.max_connections and not self._guard.make_room():
            self._guard.closed("over-limit", transport.get_extra_info("peername"))
            self._transport.write(_REFUSAL)
            self._transport.close()
            return
        status.http_open += 1
        self._counted = True
        self._inner = cast(asyncio.Protocol, self._make_inner())
        self._inner.connection_made(transport)
        self._guard.waiting[self] = None
        self._arm(self._guard.limits.header_timeout, "header-timeout")

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.waiting.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._counted_out()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    # --- the deadline ----------------------------------------------------------------------------------------

    def request_started(self) -> None:
        self._guard.waiting.pop(self, None)
        self._arm(self._guard.limits.request_timeout, "request-timeout")

    def request_finished(self) -> None:
        # the answer is being written; the client then has header_timeout for its next request (keep-alive)
        self._arm(self._guard.limits.header_timeout, "header-timeout")

    def evict(self) -> None:
        """Make room for a new connection: this one has waited longest for its request headers."""
        self._guard.waiting.pop(self, None)
        self._counted_out()
        if self._transport is not None and not self._transport.is_closing():
            self._guard.closed("over-limit", self._transport.get_extra_info("peername"))
            self._transport.abort()

    def _counted_out(self) -> None:
        if self._counted:
            self._guard.status.http_open -= 1
            self._counted = False

    def _arm(self, seconds: float, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire, reason)

    def _expire(self, reason: str) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._guard.closed(reason, self._transport.get_extra_info("peername"))
            self._transport.abort()


@web.middleware
async def guard_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Tells the connection's guard that its request headers arrived, and when the handler is done."""
    transport = request.transport
    guarded = transport.get_protocol() if transport is not None else None
    if not isinstance(guarded, _Guarded):
        return await handler(request)
    guarded.request_started()
    try:
        return await handler(request)
    finally:
        guarded.request_finished()


class QuietServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log: a malformed request is one rate-limited WARNING line naming the client, never an ERROR
    with a traceback (anyone who can reach the port can send one); our own handlers' errors keep theirs."""

    def __init__(self, logger: logging.Logger, budget: LogBudget) -> None:
        super().__init__(logger, {})
        self._budget = budget

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            peer = args[0] if args else "?"
            text = " ".join(str(getattr(exc_info, "message", "") or exc_info).split())[:160]
            self._budget.warn("malformed", "HTTP: malformed request from %s answered 400: %s", peer, text)
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kwargs)


_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Listener:
    """The endpoint's listening socket, accepted by hand: up to 64 connections per loop turn, each handed to
    ``factory`` through ``loop.connect_accepted_socket``. Out of file descriptors (EMFILE and kin), it stops
    accepting for a second and says so in one warning a minute.

    asyncio's own accept loop (3.11) keeps trying after EMFILE, calls the exception handler and schedules one more
    retry per failed attempt, up to the backlog each time: thousands of attempts and log records a second.
    """

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.BaseProtocol], budget: LogBudget) -> None:
        self.sock = sock
        self._factory = factory
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        sock.setblocking(False)

    @classmethod
    def bind(cls, host: str, port: int, factory: Callable[[], asyncio.BaseProtocol], budget: LogBudget) -> Listener:
        """Listen on ``host:port`` (an IPv6 literal listens on IPv6 only; a name binds its first IPv4 address)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128)
        return cls(sock, factory, budget)

    def start(self) -> None:
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._budget.warn("accept", "HTTP: cannot accept connections: %s (out of file descriptors: "
                                      "raise LimitNOFILE=, or look for what holds them); trying again in 1 s",
                                      exc.strerror or exc)
                    self._loop.remove_reader(self.sock.fileno())
                    self._retry = self._loop.call_later(1.0, self.start)
                    return
                self._budget.warn("accept-error", "HTTP: accept() failed: %s", exc)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as exc:
            conn.close()
            self._budget.warn("accept-error", "HTTP: a connection could not be set up: %s", exc)


def _peer_text(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "?"
