"""Rendezvous sharding of routers across instances (pure)."""

from __future__ import annotations

import pytest

from eemwatchd.core.shard import Shard, owner

NAMES = [f"edge-{i:04d}" for i in range(3000)]


@pytest.mark.parametrize(("text", "shard"), [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 1 - 4 ", Shard(1, 4))])
def test_parse(text: str, shard: Shard) -> None:
    assert Shard.parse(text) == shard
    assert str(shard) == f"{shard.index}/{shard.count}"


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "a/b", "1", "1/3/5", ""])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_router_has_exactly_one_owner_and_the_shares_are_even(count: int) -> None:
    shards = [Shard(k, count) for k in range(count)]
    owners = [[s for s in shards if s.owns(name)] for name in NAMES]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o[0] == s) for s in shards]
    assert max(sizes) - min(sizes) < 0.15 * len(NAMES) / count + 10


@pytest.mark.parametrize("count", [1, 2, 4])
def test_adding_an_instance_moves_only_its_share(count: int) -> None:
    moved = [n for n in NAMES if owner(n, count) != owner(n, count + 1)]
    assert all(owner(n, count + 1) == count for n in moved)  # only to the new instance
    assert abs(len(moved) - len(NAMES) / (count + 1)) < 0.15 * len(NAMES) / (count + 1)
