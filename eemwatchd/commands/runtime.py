"""What the commands and the daemon share to run: the config, the store, the writer lock, stop signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TypeVar

from eemwatchd.adapters.lock import StateLock
from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, load_config
from eemwatchd.core.shard import Claim, Shard
from eemwatchd.errors import ConfigError, StateLocked

T = TypeVar("T")

# Exit codes when stopped by a signal: 128 + its number (the others: errors.EXIT_*, report.EXIT_*).
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass(frozen=True)
class Scope:
    """What a command acts on: ``config`` is this instance's part of the fleet (its shard's routers and state
    file), ``whole`` the configuration as written (every router, the unsharded state file)."""

    config: Config
    whole: Config
    shard: Shard | None

    def claim(self, routers: Collection[str] | None = None) -> Claim:
        return Claim(tuple(r.name for r in self.whole.routers), self.shard,
                     frozenset(routers) if routers is not None else None)

    def lock(self, *, purpose: str, routers: Collection[str] | None = None) -> StateLock:
        """The writer lock of this instance's state, with its claim checked against every live writer of the
        fleet (one writer per router, whatever shard each runs)."""
        return StateLock(self.config.state_path, purpose=purpose, claim=self.claim(routers),
                         base_state_path=self.whole.state_path)


def load(args: argparse.Namespace) -> Scope | None:
    """The configuration and this instance's shard of it, warnings on stderr; None (after a message) when it,
    --shard or --router is unusable."""
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    whole = loaded.config
    text = getattr(args, "shard", None) or whole.shard
    try:
        shard = Shard.parse(text) if text else None
    except ValueError as exc:
        print(f"--shard: {exc}", file=sys.stderr)
        return None
    config = whole.sharded(shard)
    name = getattr(args, "router", None)
    if name is not None and name not in {r.name for r in config.routers}:
        if shard is not None and name in {r.name for r in whole.routers}:
            print(f"router {name!r} belongs to another shard than {shard} (its instance manages it); use that "
                  "instance's --shard", file=sys.stderr)
            return None
        known = ", ".join(r.name for r in config.routers) or "(none)"
        print(f"unknown router {name!r}; known: {known}", file=sys.stderr)
        return None
    return Scope(config, whole, shard)


@contextlib.contextmanager
def lock_held(lock: StateLock) -> Iterator[StateLock]:
    """Release an acquired writer lock at the end of the block, whatever happens in it."""
    try:
        yield lock
    finally:
        lock.release()


def take_writer_lock(scope: Scope, *, purpose: str, say: Callable[[str], None],
                     routers: Collection[str] | None = None) -> StateLock | None:
    """The writer lock beside the state database, taken at once; None (after saying who holds it) when
    another eemwatchd has it or owns one of the routers (``routers``: all of this shard): the caller exits
    EXIT_LOCKED."""
    lock = scope.lock(purpose=purpose, routers=routers)
    try:
        lock.acquire()
    except StateLocked as exc:
        say(str(exc))
        return None
    return lock


def confirm(prompt: str) -> bool:
    """Ask on stderr, read one answer from stdin: only y/yes is a yes."""
    print(prompt, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def open_store(config: Config) -> Store:
    return Store.open(config.state_path, secrets=config.secrets())


class StopSignals:
    """SIGINT/SIGTERM while a run is under way: the first asks ``on_stop`` to stop between steps (the step
    under way finishes; nothing unproven is saved); a second one cancels ``task`` outright."""

    def __init__(self, on_stop: Callable[[str], None], *, announce: Callable[[str], None] | None = None) -> None:
        self._on_stop = on_stop
        self._announce = announce
        self.received: signal.Signals | None = None
        self.late: signal.Signals | None = None  # received after the run finished
        self._task: asyncio.Task[object] | None = None

    def install(self, task: asyncio.Task[object] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._task = task
        for sig in EXIT_SIGNAL:
            loop.add_signal_handler(sig, self._handle, sig)

    def remove(self) -> None:
        """The run is over. A signal from now on (while the command prints its report and exits) must neither kill the
        process nor lose the report: it is noted in ``late`` and otherwise ignored, since the run it would have
        stopped has finished."""
        loop = asyncio.get_running_loop()
        for sig in EXIT_SIGNAL:
            loop.remove_signal_handler(sig)
            signal.signal(sig, self._late)

    def _late(self, signum: int, _frame: object) -> None:
        self.late = signal.Signals(signum)

    def _handle(self, sig: signal.Signals) -> None:
        if self.received is not None:
            if self._task is not None:
                self._task.cancel()
            return
        self.received = sig
        if self._announce is not None:
            self._announce(f"{sig.name} received: finishing the step under way, then stopping "
                           "(nothing that was not test-fired is saved); send it again to abort at once")
        self._on_stop(sig.name)

    @property
    def exit_code(self) -> int | None:
        return EXIT_SIGNAL.get(self.received) if self.received is not None else None


async def run_stoppable(request_stop: Callable[[str], None], work: Awaitable[T], *,
                        announce: Callable[[str], None]) -> tuple[T, int | None]:
    """Await ``work`` with SIGINT/SIGTERM asking ``request_stop`` to stop between steps; (its result, the exit
    code of the signal that stopped it, or None)."""
    signals = StopSignals(request_stop, announce=announce)
    signals.install(asyncio.current_task())
    try:
        result = await work
    finally:
        signals.remove()
    return result, signals.exit_code
