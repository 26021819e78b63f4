"""A WAN in front of a lab port: a TCP relay that delays every byte by half a round trip each way, order kept.

Real routers sit behind links of 20-200 ms round trip; on 127.0.0.1 every exchange is free, so a client that
talks in many small turns looks as fast as one that batches. ``WanLink`` makes the link's latency visible:

- every byte in each direction reaches the other side ``rtt / 2`` (plus optional jitter) after it was sent,
  never before a byte sent earlier in the same direction (TCP keeps order);
- a connection reaches the router 1.5 x ``rtt`` after the client connected (SYN, SYN-ACK, ACK), so the first
  byte the router sends arrives at the client 2 x ``rtt`` after its connect, as over a real link (the client's
  connect() itself returns at once: only what it can observe, bytes, is delayed);
- the end of a connection travels like a byte (a reset as a reset);
- no bandwidth limit, no loss.

It also counts, per connection, the **turns**: the times the client speaks again after the router answered
(client bytes that follow bytes delivered from the router). Each turn costs at least one round trip on a real
link, so a session's wall time is about turns x RTT: the number a benchmark prints beside the wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Wan:
    """The link's shape: round-trip time and jitter, in seconds. ``seed`` makes the jitter repeatable."""

    rtt: float
    jitter: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rtt <= 10:
            raise ValueError(f"WAN round-trip time must be 0-10 s, not {self.rtt!r}")
        if not 0 <= self.jitter <= 10:
            raise ValueError(f"WAN jitter must be 0-10 s, not {self.jitter!r}")

    @classmethod
    def from_ms(cls, rtt_ms: float, jitter_ms: float = 0.0, *, seed: int | None = None) -> Wan:
        return cls(rtt_ms / 1000.0, jitter_ms / 1000.0, seed)


@dataclass
class LinkSession:
    """What one connection through the link did. ``turns``: the client spoke again after the router answered."""

    opened: float
    closed: float | None = None
    turns: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    writes_up: int = 0  # client bursts (data_received calls) towards the router
    _answered: bool = field(default=False, repr=False)


class _Direction:
    """One direction of one connection: bytes wait until their due time, then go out in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: Callable[[], float],
                 deliver: Callable[[bytes], None], finish: Callable[[bool], None]) -> None:
        self._loop = loop
        self._delay = delay
        self._deliver = deliver
        self._finish = finish
        self._queue: deque[tuple[float, bytes | bool]] = deque()  # bytes, or the end (True: a reset)
        self._last_due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._ready = False  # the far side exists (upstream connected)
        self.done = False

    def push(self, item: bytes | bool) -> None:
        due = max(self._loop.time() + self._delay(), self._last_due)
        self._last_due = due
        self._queue.append((due, item))
        self._schedule()

    def ready(self) -> None:
        self._ready = True
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or not self._queue or not self._ready or self.done:
            return
        self._timer = self._loop.call_at(self._queue[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = self._loop.time()
        chunks: list[bytes] = []
        while self._queue and self._queue[0][0] <= now + 0.0005:
            _due, item = self._queue.popleft()
            if isinstance(item, bool):
                if chunks:
                    self._deliver(b"".join(chunks))
                    chunks = []
                self.done = True
                self._queue.clear()
                self._finish(item)
                return
            chunks.append(item)
        if chunks:
            self._deliver(b"".join(chunks))
        self._schedule()

    def cancel(self) -> None:
        self.done = True
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Upstream(asyncio.Protocol):
    """The relay's connection to the router."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe

    def data_received(self, data: bytes) -> None:
        self.pipe.down.push(data)

    def eof_received(self) -> bool:
        self.pipe.down.push(False)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.down.push(exc is not None)


class _Pipe(asyncio.Protocol):
    """The client's connection to the relay, and the pair of delayed directions it drives."""

    def __init__(self, link: WanLink) -> None:
        self.link = link
        self.loop = asyncio.get_running_loop()
        self.session = LinkSession(opened=time.monotonic())
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.up = _Direction(self.loop, link.one_way, self._to_server, self._end_server)
        self.down = _Direction(self.loop, link.one_way, self._to_client, self._end_client)
        self.down.ready()
        self._connector: asyncio.Task[None] | None = None
        self._closed = False

    # --- the client side -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        self.link._pipes.add(self)
        self.link.sessions.append(self.session)
        self.loop.call_later(1.5 * self.link.wan.rtt, self._start_connect)

    def _start_connect(self) -> None:
        if self._closed:
            return
        self._connector = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            transport, _ = await self.loop.create_connection(lambda: _Upstream(self), self.link.target_host,
                                                             self.link.target_port)
        except OSError:
            self.down.push(True)  # refused upstream: the client sees a reset
            return
        if self._closed:
            transport.abort()
            return
        assert isinstance(transport, asyncio.Transport)
        self.server = transport
        self.up.ready()

    def data_received(self, data: bytes) -> None:
        s = self.session
        if s._answered:
            s.turns += 1
            s._answered = False
        s.bytes_up += len(data)
        s.writes_up += 1
        self.up.push(data)

    def eof_received(self) -> bool:
        self.up.push(False)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.up.push(exc is not None)
        self._client_gone()

    # --- delivery --------------------------------------------------------------------------------

    def _to_server(self, data: bytes) -> None:
        if self.server is not None and not self.server.is_closing():
            self.server.write(data)

    def _to_client(self, data: bytes) -> None:
        if self.client is not None and not self.client.is_closing():
            self.session.bytes_down += len(data)
            self.session._answered = True
            self.client.write(data)

    def _end_server(self, reset: bool) -> None:
        server = self.server
        if server is None:
            self._maybe_done()
            return
        try:
            if reset:
                server.abort()
            elif server.can_write_eof():
                server.write_eof()
            else:
                server.close()
        except OSError:  # the router's side is gone already
            server.abort()
        self._maybe_done()

    def _end_client(self, reset: bool) -> None:
        client = self.client
        if client is not None:
            if reset:
                client.abort()
            else:
                client.close()
        self._client_gone()

    def _client_gone(self) -> None:
        if self.session.closed is None:
            self.session.closed = time.monotonic()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.session.closed is not None and self.up.done:
            self.close()

    def close(self) -> None:
        """Drop both sides now (the link is taken down)."""
        if self._closed:
            return
        self._closed = True
        self.up.cancel()
        self.down.cancel()
        for transport in (self.client, self.server):
            if transport is not None and not transport.is_closing():
                transport.abort()
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
        if self.session.closed is None:
            self.session.closed = time.monotonic()
        self.link._pipes.discard(self)


class WanLink:
    """A delaying relay on ``host:port`` (0: any free port) in front of ``target_host:target_port``.

    ``async with WanLink(Wan(rtt=0.1), target_port) as link:`` then connect to ``link.port``;
    ``link.sessions`` holds one LinkSession per connection, in order of arrival.
    """

    def __init__(self, wan: Wan, target_port: int, *, target_host: str = "127.0.0.1", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"a lab WAN link listens on loopback only, not {host!r}")
        self.wan = wan
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.sessions: list[LinkSession] = []
        self._pipes: set[_Pipe] = set()
        self._server: asyncio.Server | None = None
        self._random = random.Random(wan.seed)  # noqa: S311 - jitter, not security

    def one_way(self) -> float:
        """The delay of one direction: half the round trip, plus up to ``jitter`` (uniform)."""
        delay = self.wan.rtt / 2
        if self.wan.jitter:
            delay += self._random.uniform(0, self.wan.jitter)
        return delay

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("WAN link already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Pipe(self), self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and drop every connection through the link."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for pipe in list(self._pipes):
            pipe.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def __aenter__(self) -> WanLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def active(self) -> int:
        return len(self._pipes)
