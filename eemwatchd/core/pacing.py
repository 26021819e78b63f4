"""When to open the next router session: back off per router and for the whole fleet when routers refuse
sessions or time out, so a high `max_parallel_routers` cannot turn into a storm of failed logins.

Pure: the caller says what happened and when (its clock), and waits as told (reconcile/pacing.py).

- Per router: a refused session (every vty line taken: the router closed the connection before the SSH
  banner) is tried again after ``retry_base`` seconds, doubling per refusal up to ``retry_max``, at most
  ``attempts`` sessions per job. A session that timed out while opening is not tried again in the same job (a
  router that is down would hold a slot for every attempt), but the router's next job waits the same
  back-off. An opened session clears the router's record.
- The fleet: every refusal or open timeout halves the number of sessions open at once (at most once per
  ``cooldown`` seconds, so one burst of refusals counts once), down to ``floor``; every opened session adds
  ``1 / limit``, so the limit grows back by about one per round of sessions (additive increase,
  multiplicative decrease, as TCP does) up to ``max_parallel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Opening(Enum):
    OPENED = "opened"
    REFUSED = "refused"  # closed before the SSH banner: every vty line taken
    TIMED_OUT = "timed out"  # no login within timeouts.connect


@dataclass(frozen=True)
class PacingPolicy:
    max_parallel: int
    retry_base: float = 2.0
    retry_max: float = 60.0
    attempts: int = 3
    floor: int = 1
    cooldown: float = 2.0

    def __post_init__(self) -> None:
        if self.max_parallel < 1 or not 1 <= self.floor <= self.max_parallel or self.attempts < 1:
            raise ValueError(f"pacing policy out of range: {self!r}")


@dataclass
class _RouterRecord:
    failures: int = 0
    not_before: float = 0.0


@dataclass
class Pacer:
    """The pacing state of one process (one Reconciler)."""

    policy: PacingPolicy
    limit: float = 0.0
    lowered_at: float | None = None
    refusals: int = 0  # refused sessions and open timeouts, since the start (for logs and benchmarks)
    _routers: dict[str, _RouterRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limit = float(self.policy.max_parallel)

    @property
    def allowed(self) -> int:
        """Sessions that may be open at once now."""
        return max(self.policy.floor, min(self.policy.max_parallel, int(self.limit)))

    def wait_before(self, router: str, now: float) -> float:
        """Seconds until ``router`` may be logged into again (0: now)."""
        record = self._routers.get(router)
        return max(0.0, record.not_before - now) if record is not None else 0.0

    def record(
        self, router: str, outcome: Opening, now: float, *, attempt: int = 1, jitter: float = 0.0
    ) -> float | None:
        """Note how opening ``router``'s ``attempt``-th session of a job went; the seconds to wait before
        trying again within the job, or None when the job should not try again. ``jitter`` in [0, 1) spreads
        the retries of routers refused at the same moment (up to a quarter of the delay)."""
        if outcome is Opening.OPENED:
            self._routers.pop(router, None)
            self.limit = min(float(self.policy.max_parallel), self.limit + 1.0 / max(self.limit, 1.0))
            return None
        self.refusals += 1
        record = self._routers.setdefault(router, _RouterRecord())
        record.failures += 1
        delay = min(self.policy.retry_max, self.policy.retry_base * 2.0 ** (record.failures - 1))
        delay *= 1.0 + 0.25 * min(max(jitter, 0.0), 1.0)
        record.not_before = now + delay
        if self.lowered_at is None or now - self.lowered_at >= self.policy.cooldown:
            self.limit = max(float(self.policy.floor), self.limit / 2)
            self.lowered_at = now
        if outcome is Opening.TIMED_OUT or attempt >= self.policy.attempts:
            return None
        return delay
