"""Live progress on a terminal: routers done / total, in flight, failures, time left; onboard's countdown.

rich draws it (a well-kept library: terminal widths, redraws, cursor codes and a refresh thread are its job, not
ours; docs/design.md). Only on a terminal and never with --json: ``progress_wanted`` decides, and a command that
does not want it gets ``None`` and prints exactly what it printed before. While the display is up, log lines
(`-v`) and messages on stderr go above it instead of tearing it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from eemwatchd.reconcile.results import RouterResult


def progress_wanted(*, as_json: bool, stream: TextIO | None = None) -> bool:
    """A live display only for a person: stderr is a terminal and the output is not JSON."""
    stream = sys.stderr if stream is None else stream
    try:
        return not as_json and stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _live(progress: Progress) -> Iterator[Progress]:
    """Start ``progress``; our log handler writes through rich's stderr proxy meanwhile (lines above the bar)."""
    from eemwatchd.logformat import log_stream

    with progress, log_stream(sys.stderr):
        yield progress


class RouterProgress:
    """The progress of a plan or apply run: one line, updated as each router starts and ends."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task
        self._inflight: set[str] = set()
        self._failed = 0

    @classmethod
    @contextlib.contextmanager
    def shown(cls, what: str, *, routers: int) -> Iterator[RouterProgress]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TextColumn("routers, {task.fields[inflight]} in flight, {task.fields[failed]} failed,"),
            TextColumn("left:"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True, refresh_per_second=4,
        )
        task = progress.add_task(what, total=routers, inflight=0, failed=0)
        with _live(progress):
            yield cls(progress, task)

    def router_started(self, name: str) -> None:
        self._inflight.add(name)
        self._progress.update(self._task, inflight=len(self._inflight))

    def router_finished(self, result: RouterResult) -> None:
        self._inflight.discard(result.name)
        if result.error is not None:
            self._failed += 1
        self._progress.update(self._task, advance=1, inflight=len(self._inflight), failed=self._failed)


@contextlib.contextmanager
def router_progress(what: str, *, routers: int, as_json: bool) -> Iterator[RouterProgress | None]:
    """A RouterProgress when a person watches (``progress_wanted``), else None: nothing is drawn."""
    if not progress_wanted(as_json=as_json):
        yield None
        return
    with RouterProgress.shown(what, routers=routers) as progress:
        yield progress


class WaitProgress:
    """onboard's wait for a chain's confirmations: sightings so far, the next fetch, the time left."""

    def __init__(self, progress: Progress, task: TaskID, *, started: float) -> None:
        self._progress = progress
        self._task = task
        self._started = started

    @classmethod
    @contextlib.contextmanager
    def shown(cls, what: str, *, seconds: float) -> Iterator[WaitProgress]:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=24), TextColumn("{task.fields[status]}"),
            TextColumn("at most"), TimeRemainingColumn(compact=True),
            console=Console(stderr=True), transient=True, refresh_per_second=2,
        )
        task = progress.add_task(what, total=max(seconds, 1.0), status="")
        with _live(progress):
            yield cls(progress, task, started=time.monotonic())

    def update(self, status: str) -> None:
        """``status``: where the wait stands, e.g. `seen 1 of 2, next fetch in 12 s`."""
        self._progress.update(self._task, completed=time.monotonic() - self._started, status=status)
