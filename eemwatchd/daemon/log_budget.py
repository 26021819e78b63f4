"""Log lines that a misbehaving peer could repeat without end (bad HTTP clients, accept errors, alert queues that
overflow): at most one per key and interval, the next one counting what was left out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogBudget:
    """At most one log line per ``key`` every ``every`` seconds; the next one says how many were left out."""

    def __init__(self, logger: logging.Logger, *, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        suffix = f" ({skipped} more like it in the last {self._every:.0f} s)" if skipped else ""
        self._log.warning(message + suffix, *args)
        return True
