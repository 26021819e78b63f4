"""The steps of a fault schedule (frozen dataclasses whose repr is the Python that builds them, so a failing
schedule, as Hypothesis prints it, pastes into a regression test: `run_schedule(harness, [Apply(...), ...])`), and
what a step records while it runs. The harness (tests/support/fault_harness.py) runs them against the fault lab and
checks every promise after each one (docs/design.md "Invariants").

After every step:
- the lab routers saw no broken invariant (save only what this session's test-fire proved, never below, one writer);
- every "in sync" the product said during the step (apply and plan reports in process, `apply --json` of a process,
  the daemon's `eemwatchd_router_in_sync`) agrees with the lab's verdict: the router accepts every chain the SMTP
  server sends now, its applet has a mail action, and the startup-config holds the trust the running-config holds;
- the audit explains each router: replaying the store's audit rows (`core.audit_replay.expected_holdings`) gives
  the managed trustpoints it holds. A step that cut a session between a change and its audit row (a drop, a hang,
  a refusal, a reboot, kill -9, a reload) may leave a difference: the next step that contacts the router without
  cutting it again (apply, plan, the daemon) must explain it with its observed rows. After an undisturbed step
  there is no difference to explain;
- a second writer started while another holds the lock exited 75 and opened no session;
- no password (the routers', the SMTP account's) in any report, output or log.
At the end, with every fault off: apply (as many runs as the confirmations need) brings every router to in sync,
the audit explains every router, and the lab's own test-fire delivers a mail from each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Fault:
    """One fault on one router for one job. ``at`` is the session's line number for `drop`, `hang`, `refuse` and
    `reboot` (the router reloads under the session: what was not saved is gone), the line from which the SMTP server
    refuses (`mail-refused`) or never answers (`mail-silent`) the router's mail, noise lines per command for
    `noise`, milliseconds per write for `slow` (the router's output) and before the greeting for `mail-slow`;
    `login` (every login refused) ignores it."""

    kind: str
    router: str
    at: int = 1


@dataclass(frozen=True)
class Stop:
    """Stop eemwatchd when ``router`` is about to run line ``at`` of its session: `request` (in process:
    Reconciler.request_stop, what SIGTERM does), `SIGTERM` or `SIGKILL` (to the process)."""

    kind: str
    router: str
    at: int


@dataclass(frozen=True)
class Apply:
    """`apply` of one router or all: in process (the Reconciler) or as a process (`eemwatchd apply --yes`).
    ``outage``: `provider` (the SMTP server is down for everyone) or `fetch` (eemwatchd cannot reach it; in process)."""

    router: str | None = None
    process: bool = False
    faults: tuple[Fault, ...] = ()
    stop: Stop | None = None
    outage: str | None = None


@dataclass(frozen=True)
class Plan:
    """`plan` in process or as a process (`eemwatchd plan --json`): it contacts the routers (and writes observed audit
    rows) but changes nothing."""

    router: str | None = None
    faults: tuple[Fault, ...] = ()
    process: bool = False


@dataclass(frozen=True)
class Daemon:
    """`eemwatchd run` as a process: its first pass, then its in-sync claims read from /metrics, then SIGTERM;
    or ``stop`` during the pass."""

    faults: tuple[Fault, ...] = ()
    stop: Stop | None = None


@dataclass(frozen=True)
class Concurrent:
    """An apply holds the writer lock (in process, as `apply` takes it) while ``second`` (`apply` or `run`) starts as
    a process beside it: the second must exit 75 and open no session."""

    second: str = "apply"


@dataclass(frozen=True)
class Rotate:
    """The provider changes its chain (FaultLab.rotate): intermediate, root, anchor, back, untrusted."""

    kind: str
    back: int = 0


@dataclass(frozen=True)
class Advance:
    minutes: int


@dataclass(frozen=True)
class Skew:
    """Router ``router``'s clock runs ``seconds`` off from then on (until the end of the schedule)."""

    router: str
    seconds: int


@dataclass(frozen=True)
class Reload:
    """Router ``router`` reloads: what was not saved is gone."""

    router: str


Step = Apply | Plan | Daemon | Concurrent | Rotate | Advance | Skew | Reload

# Faults that may cut a session between a change and its audit row (the audit may lag until the next contact).
CUTTING = frozenset({"drop", "hang", "refuse", "slow", "login", "reboot"})


class ScheduleFailed(AssertionError):
    """A promise broke; the message names the schedule, the step and every broken promise."""


@dataclass
class Tally:
    """What the schedules did: steps by kind, faults armed by kind (and how many took effect), violations."""

    schedules: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    hit: Counter[str] = field(default_factory=Counter)
    violations: int = 0
    convergence_runs: Counter[int] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)  # what was checked, how often
    time: Counter[str] = field(default_factory=Counter)  # seconds spent, by step kind (and reset, finish)
    seconds: float = 0.0


@dataclass
class Job:
    """The faults and the stop of the job under way (read by the routers' line hook on the lab's thread)."""

    faults: tuple[Fault, ...] = ()
    stop: Stop | None = None
    outage: str | None = None
    stop_fired: bool = False
    signalled: bool = False  # the process was sent its one signal
    on_stop: Callable[[], None] | None = None
    lines: Counter[str] = field(default_factory=Counter)  # the highest line number each router reached
    rebooted: set[str] = field(default_factory=set)


@dataclass
class StepState:
    """What the step under way has seen: its job, the promises it broke, the routers whose sessions it may have cut
    (their audit may lag until the next contact), and the eemwatchd sessions that ended on each router."""

    job: Job = field(default_factory=Job)
    problems: list[str] = field(default_factory=list)
    disturbed: set[str] = field(default_factory=set)
    sessions: Counter[str] = field(default_factory=Counter)
