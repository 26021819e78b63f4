"""Seeded random fault schedules as a Hypothesis stateful test: each example is one schedule (a fresh lab state, a few
random steps, the end with every fault off), each rule call one step (tests/support/fault_steps.py, run by
tests/support/fault_harness.py).

A failure is shrunk by Hypothesis to a short schedule and reported with its seed and the steps as Python
(`state = FaultSchedule()`, `state.step(step=Apply(...))`, ...): paste them into `run_schedule(harness, [...])`
for a regression test. `run_schedules(harness, seed=S, count=N)` runs N schedules of one seed; CI runs a fixed set
of seeds (tests/e2e/test_fault_schedules.py), `./dev soak --schedules N` more (benchmarks/soak_schedules.py).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine
from hypothesis.reporting import with_reporter
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from tests.support.fault_harness import Harness
from tests.support.fault_lab import ROUTERS
from tests.support.fault_steps import (
    Advance,
    Apply,
    Concurrent,
    Daemon,
    Fault,
    Plan,
    Reload,
    Rotate,
    Skew,
    Step,
    Stop,
)

STEPS_PER_SCHEDULE = 5

ROUTER = st.sampled_from(ROUTERS)
# Line numbers of a session: a router with nothing to do runs 6 lines, a test-fire ~6 more, an add 11.
LINE = st.integers(min_value=1, max_value=12) | st.integers(min_value=1, max_value=48)

_LINE_FAULTS = ("drop", "refuse", "hang", "reboot", "mail-refused", "mail-silent")
_KINDS_IN_PROCESS = ("drop", "drop", "drop", "refuse", "refuse", "refuse", "hang", "reboot", "slow", "noise", "noise",
                     "mail-refused", "mail-silent", "mail-slow", "login")
_KINDS_PROCESS = tuple(k for k in _KINDS_IN_PROCESS if k != "hang")  # a process waits 60 s for a hung config read


def _fault(kinds: tuple[str, ...]) -> st.SearchStrategy[Fault]:
    def build(kind: str) -> st.SearchStrategy[Fault]:
        if kind in _LINE_FAULTS:
            at = LINE
        elif kind == "noise":
            at = st.integers(1, 12)  # noise lines per command
        elif kind == "slow":
            at = st.integers(1, 6)  # ms per write of the router's output
        elif kind == "mail-slow":
            at = st.integers(100, 1200)  # ms before the SMTP greeting (maxrun is 2 s)
        else:
            at = st.just(1)
        return st.builds(Fault, kind=st.just(kind), router=ROUTER, at=at)

    return st.sampled_from(kinds).flatmap(build)


def _faults(kinds: tuple[str, ...]) -> st.SearchStrategy[tuple[Fault, ...]]:
    return st.lists(_fault(kinds), max_size=2).map(tuple)


def _stop(kinds: tuple[str, ...]) -> st.SearchStrategy[Stop | None]:
    return st.none() | st.builds(Stop, kind=st.sampled_from(kinds), router=ROUTER, at=LINE)


_APPLY = st.builds(Apply, router=st.none() | ROUTER, process=st.just(False), faults=_faults(_KINDS_IN_PROCESS),
                   stop=_stop(("request",)), outage=st.none() | st.sampled_from(("provider", "fetch")))
_APPLY_PROCESS = st.builds(Apply, router=st.none() | ROUTER, process=st.just(True), faults=_faults(_KINDS_PROCESS),
                           stop=_stop(("SIGTERM", "SIGKILL")), outage=st.none() | st.just("provider"))
_PLAN = st.builds(Plan, router=st.none() | ROUTER, faults=_faults(_KINDS_IN_PROCESS), process=st.just(False)) | \
    st.builds(Plan, router=st.none() | ROUTER, faults=_faults(_KINDS_PROCESS), process=st.just(True))
_DAEMON = st.builds(Daemon, faults=_faults(_KINDS_PROCESS), stop=_stop(("SIGTERM", "SIGKILL")))
_CONCURRENT = st.builds(Concurrent, second=st.sampled_from(("apply", "run")))
_ROTATE = st.builds(Rotate, kind=st.sampled_from(("intermediate", "root", "anchor", "back", "untrusted")),
                    back=st.integers(0, 3))
_ADVANCE = st.builds(Advance, minutes=st.sampled_from((20, 45, 90)))
_SKEW = st.builds(Skew, router=ROUTER, seconds=st.sampled_from((0, 90, -3600, -3 * 86400, 5 * 365 * 86400,
                                                                -20 * 365 * 86400)))
_RELOAD = st.builds(Reload, router=ROUTER)

# Weights: how often each kind of step is drawn.
WEIGHTS: tuple[tuple[st.SearchStrategy[Step], int], ...] = (
    (_APPLY, 8), (_APPLY_PROCESS, 4), (_PLAN, 2), (_DAEMON, 2), (_CONCURRENT, 1), (_ROTATE, 4), (_ADVANCE, 2),
    (_SKEW, 1), (_RELOAD, 1),
)
STEP: st.SearchStrategy[Step] = st.sampled_from(
    [i for i, (_s, weight) in enumerate(WEIGHTS) for _ in range(weight)]).flatmap(lambda i: WEIGHTS[i][0])


class FaultSchedule(RuleBasedStateMachine):
    """One schedule per example; ``harness`` is bound by run_schedules (a subclass per run)."""

    harness: ClassVar[Harness]
    seed_label: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.harness.begin(self.seed_label)

    @rule(step=STEP)
    def step(self, step: Step) -> None:
        self.harness.step(step)

    def teardown(self) -> None:
        self.harness.finish()


@dataclass
class ScheduleRun:
    """What run_schedules saw: the seed, the failure (None: every schedule kept every promise) and what Hypothesis
    reported about it (the shrunk schedule as Python, the reproduce_failure blob)."""

    seed: int
    count: int
    failure: str | None = None
    report: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.failure is None:
            return f"seed {self.seed}: {self.count} schedules, every promise kept"
        return "\n".join([f"seed {self.seed} FAILED:", self.failure, *self.report])


def schedule_settings(count: int, *, shrink: bool = True) -> settings:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(max_examples=count, stateful_step_count=STEPS_PER_SCHEDULE, deadline=None, database=None,
                    derandomize=False, print_blob=True, suppress_health_check=list(HealthCheck), phases=phases,
                    report_multiple_bugs=False)


@contextlib.contextmanager
def _shrinking_for(seconds: int) -> Iterator[None]:
    """Hypothesis shrinks a failure for up to five minutes; a schedule costs ~0.5 s, so bound it (an internal knob:
    hypothesis.internal.conjecture.engine.MAX_SHRINKING_SECONDS)."""
    old = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = seconds
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = old


def run_schedules(harness: Harness, *, seed_value: int, count: int, shrink_seconds: int = 120) -> ScheduleRun:
    """``count`` schedules drawn from ``seed_value``; on a failure, the shrunk schedule and its seed (shrinking
    stops after ``shrink_seconds``; 0: no shrinking)."""
    machine = type("FaultSchedule", (FaultSchedule,), {"harness": harness, "seed_label": f"seed {seed_value}"})
    seeded = seed(seed_value)(machine)
    lines: list[str] = []
    run = ScheduleRun(seed_value, count)
    try:
        with with_reporter(lines.append), _shrinking_for(shrink_seconds):
            run_state_machine_as_test(seeded, settings=schedule_settings(count, shrink=shrink_seconds > 0))
    except Exception as exc:  # a broken promise (ScheduleFailed) or anything the harness did not expect
        out = io.StringIO()
        _describe(exc, out, "")
        run.failure = out.getvalue().rstrip()
        run.report = lines
    return run


def _describe(exc: BaseException, out: io.StringIO, indent: str) -> None:
    """The exception, its notes (Hypothesis's failing schedule) and, for a group (Hypothesis's FlakyFailure: the
    failure did not repeat when replayed), each of its exceptions."""
    print(indent + f"{type(exc).__name__}: {exc}".replace("\n", "\n" + indent), file=out)
    for note in getattr(exc, "__notes__", ()):
        print(indent + str(note).replace("\n", "\n" + indent), file=out)
    for sub in getattr(exc, "exceptions", ()):
        _describe(sub, out, indent + "    ")
