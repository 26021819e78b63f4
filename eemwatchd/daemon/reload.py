"""Reloading the daemon's configuration: what a new config changes, whether it can be taken without a restart, and
SIGHUPs coalesced so a storm of them costs one or two reloads, never one per signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from eemwatchd.config import Config, load_config
from eemwatchd.core.shard import Claim, Shard
from eemwatchd.errors import ConfigError

log = logging.getLogger("eemwatchd.daemon")


def load_instance(path: Path, *, shard: str | None, listen: str | None,
                  running: Config | None = None) -> tuple[Config, Claim, Path]:
    """The config this instance runs (its shard of the routers, the listen address it was given), the claim of its
    writer lock, and the state path of the whole fleet. With ``running``: a ConfigError for what needs a restart.
    Reads files only: safe in a thread."""
    loaded = load_config(path)
    for warning in loaded.warnings:
        log.warning("config: %s", warning)
    config = loaded.config
    text = shard or config.shard
    try:
        parsed = Shard.parse(text) if text else None
    except ValueError as exc:
        raise ConfigError([f"--shard: {exc}"], source="command line") from exc
    if listen:
        config = config.model_copy(update={"metrics": config.metrics.model_copy(update={"listen": listen})})
    claim = Claim(tuple(r.name for r in config.routers), parsed)
    instance = config.sharded(parsed)
    if running is not None:
        problems = restart_needed(running, instance)
        if problems:
            raise ConfigError(problems, source=str(path))
    return instance, claim, config.state_path


@dataclass(frozen=True)
class ConfigChanges:
    """Servers and routers a reload added or changed: they get work at once, the others keep their schedule."""

    servers: tuple[str, ...]
    routers: tuple[str, ...]


def config_changes(old: Config, new: Config) -> ConfigChanges:
    """New or changed servers and routers of ``new``; every router when the policy changed (it changes plans)."""
    before_servers = {s.name: s for s in old.servers}
    before_routers = {r.name: r for r in old.routers}
    servers = tuple(s.name for s in new.servers if before_servers.get(s.name) != s)
    if new.policy != old.policy:
        routers = tuple(r.name for r in new.routers)
    else:
        routers = tuple(r.name for r in new.routers if before_routers.get(r.name) != r
                        or any(name in servers for name in r.servers))
    return ConfigChanges(servers, routers)


def restart_needed(old: Config, new: Config) -> list[str]:
    """What ``new`` changes that a running daemon cannot take (it holds the store, its lock and its port)."""
    problems = []
    if new.state_path != old.state_path:
        problems.append(f"state_path: changing it ({old.state_path} -> {new.state_path}) needs a restart (the "
                        "daemon holds the store and its lock)")
    if new.shard != old.shard:
        problems.append(f"shard: changing it ({old.shard} -> {new.shard}) needs a restart")
    if new.metrics.listen != old.metrics.listen:
        problems.append(f"metrics.listen: changing it ({old.metrics.listen} -> {new.metrics.listen}) needs a restart")
    return problems


class Reloads:
    """Runs ``reload`` when requested, coalescing: requests that arrive while one runs, or within ``spacing``
    seconds of its start, make one more run, never more (100 SIGHUPs in a second cost two reloads; each reload
    builds a reconciler and gives work to what changed). A lone request runs at once. ``request()`` is safe to
    call from a signal handler."""

    def __init__(self, reload: Callable[[], Awaitable[object]], *, spacing: float = 1.0) -> None:
        self._reload = reload
        self._spacing = spacing
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.requested = 0
        self.done = 0

    def request(self) -> None:
        self.requested += 1
        self._wanted.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reloads")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            started = loop.time()
            await self._reload()
            self.done += 1
            await asyncio.sleep(max(0.0, started + self._spacing - loop.time()))
