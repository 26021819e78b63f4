"""Sharding a fleet across instances: each router has exactly one owner, by rendezvous (highest random weight)
hashing of its name. Adding an instance moves only the routers the new one wins (about 1/N of them)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SHARD = re.compile(r"^\s*(\d{1,4})\s*[/-]\s*(\d{1,4})\s*$")


def _weight(instance: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{instance}\0{name}".encode()).digest()[:8], "big")


def owner(name: str, count: int) -> int:
    """The instance (0..count-1) that owns ``name``."""
    if count < 1:
        raise ValueError("a fleet is split into at least one shard")
    return max(range(count), key=lambda k: _weight(k, name))


@dataclass(frozen=True)
class Shard:
    """Instance ``index`` of ``count`` (written ``K/N``; ``K-N`` where a slash cannot go, as in a systemd
    instance name)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"shard {text!r}: write K/N, e.g. 0/3 for the first of three instances")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {text!r}: K must be 0 to N-1 and N at least 1 (e.g. 0/3, 1/3, 2/3)")
        return cls(index, count)

    def owns(self, name: str) -> bool:
        return owner(name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        """For file names: ``0-of-3``."""
        return f"{self.index}-of-{self.count}"


@dataclass(frozen=True)
class Claim:
    """The routers one writer (the daemon, apply, onboard) may change: those its shard owns (every router
    of the fleet without a shard), narrowed to ``routers`` when it acts on some only (``--router``).

    ``fleet`` is every router name of the whole, unsharded configuration: ownership by rendezvous hashing is
    computed over it, so writers with different shard counts (or none) can still tell whether they overlap.
    """

    fleet: tuple[str, ...]
    shard: Shard | None = None
    routers: frozenset[str] | None = None

    def owned(self) -> frozenset[str]:
        """The router names this writer may change."""
        mine = frozenset(r for r in self.fleet if self.shard is None or self.shard.owns(r))
        return mine if self.routers is None else mine & self.routers

    def overlap(self, shard: Shard | None, routers: frozenset[str] | None) -> frozenset[str]:
        """The routers this writer may change that another writer's claim (``shard``, ``routers``) covers too."""
        return self.owned() & Claim(self.fleet, shard, routers).owned()
