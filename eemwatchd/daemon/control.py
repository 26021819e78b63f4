"""The daemon's control socket: `eemwatchd onboard` hands a running daemon the router to onboard.

The daemon holds the writer lock for its whole life, so an onboard beside it cannot take the lock, and waiting for
it would never end. Instead the daemon listens on a Unix socket beside its state database
(``<state_path>.control``, mode 0600, only its own user or root may connect: SO_PEERCRED) and onboards the router
itself with the same Onboarder the command runs, on its own store and router locks: one writer per router and
per store (docs/design.md "Onboarding beside a running daemon").

The protocol is JSON lines. The client sends one request::

    {"op": "onboard", "request": {"router": ..., "to": [...], "wait": true, ...}, "show_secrets": false}

and reads events until the last: ``{"event": "wait", "status": {...}}`` while the chain awaits its
confirmations, then ``{"event": "result", "result": <onboard --json document>}``, or
``{"event": "refused", "message": ...}``. A client that closes its side (Ctrl-C) stops the onboarding between
steps, as SIGINT stops a local one; the result still comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eemwatchd.adapters.private_files import PRIVATE_MODE, private_umask
from eemwatchd.errors import EXIT_LOCKED, EemwatchdError

if TYPE_CHECKING:
    from eemwatchd.adapters.store import Store
    from eemwatchd.config import Config
    from eemwatchd.reconcile import Reconciler
    from eemwatchd.reconcile.onboard import OnboardRequest, WaitStatus

log = logging.getLogger("eemwatchd.daemon")
say = logging.getLogger("eemwatchd.narrative")

CONTROL_SUFFIX = ".control"
_MAX_REQUEST_BYTES = 64 * 1024
_READ_TIMEOUT = 10.0
# sun_path holds 108 bytes with its NUL; a longer path is reached through the directory's /proc/self/fd link
_MAX_SUN_PATH = 100
# how long a stopping daemon waits for an onboarding under way to finish its step
_STOP_WAIT = 60.0
_REQUEST_FIELDS = {"router": str, "server": str, "mail_from": str, "applet": str, "replace": bool, "wait": bool,
                   "wait_max": float}


class BadRequest(ValueError):
    """A client's message is not a request we take."""


class ControlError(EemwatchdError):
    """The daemon's control socket could not be used, or the daemon refused the request."""

    exit_code = EXIT_LOCKED


def control_path_for(state_path: str | Path) -> Path:
    return Path(f"{state_path}{CONTROL_SUFFIX}")


def control_path_of_lock(lock_path: str | Path) -> Path:
    """The control socket beside the state database whose writer lock is ``lock_path`` (``state.db.lock``)."""
    text = str(lock_path)
    return control_path_for(text[: -len(".lock")] if text.endswith(".lock") else text)


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """A name for ``path`` short enough for a Unix socket address."""
    if len(os.fsencode(str(path))) <= _MAX_SUN_PATH:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


class Host(Protocol):
    """What the control socket needs of the daemon (eemwatchd.daemon.service.RunningDaemon fits)."""

    config: Config
    store: Store
    reconciler: Reconciler


class ControlServer:
    """The daemon's side: accepts onboard requests and runs them with the daemon's config, store and locks."""

    def __init__(self, path: Path, host: Host, *, after: Callable[[str], None], plan_only: bool) -> None:
        self.path = path
        self._host = host
        self._after = after
        self._plan_only = plan_only
        self._server: asyncio.AbstractServer | None = None
        self._active: dict[asyncio.Task[Any], Reconciler] = {}

    @classmethod
    async def start(cls, path: Path, host: Host, *, after: Callable[[str], None],
                    plan_only: bool = False) -> ControlServer:
        """Listen on ``path`` (a stale socket from an earlier daemon is replaced: this one holds the lock)."""
        server = cls(path, host, after=after, plan_only=plan_only)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        try:
            with _reachable(path) as name, private_umask():
                server._server = await asyncio.start_unix_server(server._client, path=name,
                                                                 limit=_MAX_REQUEST_BYTES)
            os.chmod(path, PRIVATE_MODE)
        except OSError as exc:
            raise ControlError(f"control socket {path}: cannot listen ({exc.strerror}); `eemwatchd onboard` "
                               "cannot reach this daemon") from exc
        return server

    async def close(self) -> None:
        """Stop listening; an onboarding under way is asked to stop between steps and given time to."""
        if self._server is not None:
            self._server.close()
        for reconciler in self._active.values():
            reconciler.request_stop("daemon stopping")
        if self._active:
            await asyncio.wait(list(self._active), timeout=_STOP_WAIT)
        if self._server is not None:
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; an onboarding it started was stopped between steps
        except Exception:  # a bad request must never take the daemon down
            log.exception("control socket: request failed")
            with contextlib.suppress(ConnectionError):
                await _send(writer, {"event": "refused", "message": "the daemon failed to serve the request (see "
                                                                    "its log)"})
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        if peer is None or peer[1] not in (os.getuid(), 0):
            await _send(writer, {"event": "refused", "message": "only the daemon's own user (or root) may use its "
                                                                "control socket"})
            return
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=_READ_TIMEOUT)
            request, show_secrets = parse_request(json.loads(line))
        except (ValueError, TimeoutError, asyncio.LimitOverrunError) as exc:
            await _send(writer, {"event": "refused", "message": f"not a valid request: {exc}"})
            return
        refusal = self._refusal(request.router)
        if refusal is not None:
            await _send(writer, {"event": "refused", "message": refusal})
            return
        await self._onboard(request, show_secrets, reader, writer, pid=peer[0])

    def _refusal(self, router: str) -> str | None:
        host = self._host
        if self._plan_only:
            return "the daemon runs with --plan-only: it changes no router; stop it to onboard, or run it without"
        names = [r.name for r in host.config.routers]
        if router not in names:
            shard = f" (shard {host.config.shard})" if host.config.shard else ""
            return f"router {router!r} is not one of this daemon's routers{shard}: {', '.join(names) or '(none)'}"
        return None

    async def _onboard(self, request: OnboardRequest, show_secrets: bool, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, *, pid: int) -> None:
        from eemwatchd.reconcile.onboard import Onboarder

        host = self._host
        reconciler = host.reconciler.fork()  # the daemon's router locks; a stop of its own

        def on_wait(status: WaitStatus) -> None:
            writer.write(_line({"event": "wait", "status": dataclasses.asdict(status)}))

        onboarder = Onboarder(host.config, host.store, reconciler=reconciler, show_secrets=show_secrets,
                              on_wait=on_wait)
        say.info("router %s: onboarding for `eemwatchd onboard` (pid %d)", request.router, pid)
        work = asyncio.create_task(onboarder.onboard(request))
        self._active[work] = reconciler
        gone = asyncio.create_task(reader.read())  # EOF: the client closed its side (Ctrl-C) or went away
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                reconciler.request_stop("the onboard command was stopped")
            result = await work
        finally:
            self._active.pop(work, None)
            gone.cancel()
        say.info("router %s: onboarding %s", request.router,
                 "done: in sync, proven by a test mail" if result.ok else "ended: " + (
                     result.error or result.unconfirmed or "; ".join(r.reason for r in result.refusals)
                     or (result.trust.result if result.trust is not None else None) or "not in sync"))
        self._after(request.router)  # its status, metrics and narrative now, not at its next interval
        with contextlib.suppress(ConnectionError):
            await _send(writer, {"event": "result", "result": result.to_json()})


def parse_request(message: Any) -> tuple[OnboardRequest, bool]:
    """(the request, show_secrets) from a client's message; BadRequest naming what is wrong."""
    from eemwatchd.reconcile.onboard import OnboardRequest

    if not isinstance(message, dict) or message.get("op") != "onboard":
        raise BadRequest('expected {"op": "onboard", "request": {...}}')
    raw = message.get("request")
    if not isinstance(raw, dict) or not isinstance(raw.get("router"), str):
        raise BadRequest("request.router is required")
    fields: dict[str, Any] = {}
    for key, kind in _REQUEST_FIELDS.items():
        value = raw.get(key)
        if value is None:
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise BadRequest(f"request.{key} must be a {kind.__name__}")
        fields[key] = value
    to = raw.get("to", [])
    if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
        raise BadRequest("request.to must be a list of addresses")
    show = message.get("show_secrets", False)
    if not isinstance(show, bool):
        raise BadRequest("show_secrets must be true or false")
    return OnboardRequest(**fields, to=tuple(to)), show


def request_message(request: OnboardRequest, *, show_secrets: bool) -> dict[str, Any]:
    body = {k: v for k, v in dataclasses.asdict(request).items() if k in (*_REQUEST_FIELDS, "to")}
    body["to"] = list(request.to)
    return {"op": "onboard", "request": body, "show_secrets": show_secrets}


async def onboard_through(path: Path, request: OnboardRequest, *, show_secrets: bool,
                          on_wait: Callable[[dict[str, Any]], None],
                          stop: asyncio.Event | None = None) -> dict[str, Any]:
    """The client's side: ask the daemon listening on ``path`` to onboard, follow its wait, return the result
    document. ``stop`` set: close our side, so the daemon stops between steps (and still answers)."""
    async with _connection(path) as (reader, writer):
        writer.write(_line(request_message(request, show_secrets=show_secrets)))
        await writer.drain()
        stopping = asyncio.create_task(stop.wait()) if stop is not None else None
        try:
            while True:
                reading = asyncio.create_task(reader.readline())
                waiting = {reading} | ({stopping} if stopping is not None and not stopping.done() else set())
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if stopping is not None and stopping.done() and writer.can_write_eof() and not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                line = await reading
                if not line:
                    raise ControlError(f"the daemon closed {path} without an answer (see its log)")
                event = json.loads(line)
                if event.get("event") == "wait":
                    on_wait(event["status"])
                elif event.get("event") == "result":
                    result: dict[str, Any] = event["result"]
                    return result
                elif event.get("event") == "refused":
                    raise ControlError(f"the daemon refused: {event.get('message')}")
        finally:
            if stopping is not None:
                stopping.cancel()


@contextlib.asynccontextmanager
async def _connection(path: Path) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    try:
        with _reachable(path) as name:
            reader, writer = await asyncio.open_unix_connection(name, limit=1 << 20)
    except OSError as exc:
        raise ControlError(f"cannot reach the daemon's control socket {path} ({exc.strerror})") from exc
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _peer(writer: asyncio.StreamWriter) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end (SO_PEERCRED), or None when unknown."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode("utf-8") + b"\n"


async def _send(writer: asyncio.StreamWriter, event: dict[str, Any]) -> None:
    writer.write(_line(event))
    await writer.drain()
