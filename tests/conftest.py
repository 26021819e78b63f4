"""Fixtures every test shares. The lab routers check eemwatchd's invariants in every test (save only what a
test-fire proved, never below, one writer; docs/design.md "Invariants"): a violation fails the test that
caused it, whatever that test checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eemwatchd_lab.router import invariants


@pytest.fixture(autouse=True)
def lab_invariants(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test when a lab router saw eemwatchd break an invariant during it. A test that drives the router
    adapter below the reconciler on purpose names what it breaks: `@pytest.mark.breaks_invariants("save")`."""
    invariants.take_violations()  # a violation belongs to the test that caused it
    yield
    allowed = {kind for mark in request.node.iter_markers("breaks_invariants") for kind in mark.args}
    broken = [v for v in invariants.take_violations() if v.invariant not in allowed]
    if broken:
        pytest.fail("the lab routers saw eemwatchd break its promises:\n" + "\n".join(f"  {v}" for v in broken),
                    pytrace=False)
