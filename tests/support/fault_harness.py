"""The harness that runs fault schedules (tests/support/fault_steps.py) against one fault lab, started once and reset
between schedules, and checks every promise after every step and at the end of every schedule.

Steps are called from the caller's thread (Hypothesis's); the lab, and eemwatchd in process, run on the lab's loop;
eemwatchd as a process is forked beside them (fault_processes.py); the faults are armed on the routers by
fault_arming.py. A broken promise raises ScheduleFailed naming the schedule, the step and every promise it broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path

from eemwatchd.adapters.router import RouterSession, RouterTimeouts
from eemwatchd.adapters.store import Store
from eemwatchd.commands.runtime import Scope
from eemwatchd.config import Config, RouterConfig, ServerConfig
from eemwatchd.core.reason import Reason
from eemwatchd.errors import FetchError
from eemwatchd.reconcile import Reconciler, RouterSessionLike, RunReport, target_from_config
from eemwatchd_lab.router import invariants
from tests.support.fault_arming import RouterFaults
from tests.support.fault_lab import APPLET, MAXRUN, ROUTERS, FaultLab, LabLoop, LabTime
from tests.support.fault_processes import Processes, no_secret
from tests.support.fault_steps import (
    Advance,
    Apply,
    Concurrent,
    Daemon,
    Plan,
    Reload,
    Rotate,
    ScheduleFailed,
    Skew,
    Step,
    StepState,
    Tally,
)

CONFIRMATIONS = 2
STEP_PACE = timedelta(minutes=6)  # lab time between two steps: more than half a server interval (a new sighting)

# Tight, to keep hangs cheap (a spurious timeout under load is one more fault); calm for the final convergence.
TIGHT = RouterTimeouts(connect=2.0, command=1.0, running_config=1.5, change=1.5, poll_interval=0.05, fire_grace=0.5)
CALM = RouterTimeouts(connect=5.0, command=10.0, running_config=10.0, change=10.0, poll_interval=0.05, fire_grace=2.0)


class Harness:
    """Runs schedules against one fault lab: ``begin``, ``step`` for each step, ``finish``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = LabLoop()
        self.clock = LabTime()
        self.lab = FaultLab(root, self.clock)
        self.loop.run(self.lab.start())
        self.tally = Tally()
        self.faults = RouterFaults(self.lab, self.loop, self.tally)
        self.processes = Processes(self.lab, self.loop, self.clock, self.tally, self._judge_claims)
        self.label = ""
        self.number = 0
        self.failed = False
        self.state = StepState()
        self._index = 0
        self._owed: dict[str, str] = {}  # routers whose audit a cut session left behind, until their next contact

    def close(self) -> None:
        self.processes.close()
        with contextlib.suppress(Exception):
            self.loop.run(self.lab.stop(), timeout=30)
        self.loop.close()

    @property
    def config(self) -> Config:
        assert self.lab.config is not None
        return self.lab.config

    # --- a schedule ---------------------------------------------------------------------------------------

    def begin(self, label: str) -> None:
        self.number += 1
        self.label = f"{label} schedule {self.number}"
        self.failed = False
        self._index = 0
        self._owed.clear()
        self.tally.schedules += 1
        started = time.monotonic()
        self.loop.run(self.lab.reset(self.root / "schedules" / f"{self.number:05d}"))
        invariants.take_violations()
        self.tally.time["reset"] += time.monotonic() - started

    def step(self, step: Step) -> None:
        self._index += 1
        self._new_state()
        self.faults.listen()
        kind = type(step).__name__.lower() + ("-process" if isinstance(step, Apply | Plan) and step.process else "")
        self.tally.steps[kind] += 1
        started = time.monotonic()
        try:
            self._run(step)
            self._check(f"step {self._index}: {step!r}")
        finally:
            self.tally.seconds += time.monotonic() - started
            self.tally.time[kind] += time.monotonic() - started
            self.clock.advance(STEP_PACE)

    def finish(self) -> None:
        """With every fault off: converge, then the audit and the lab's own test-fire."""
        if self.failed:
            return
        started = time.monotonic()
        self._new_state()
        self.loop.run(self.faults.all_off())
        runs, report = self._converge(CONFIRMATIONS + 2)
        if not _in_sync(report):
            self.state.problems.append("did not converge with every fault off: " + "; ".join(
                f"{r.name} {r.reason}{': ' + r.error if r.error else ''}" for r in report.routers if not r.in_sync))
        self.tally.convergence_runs[runs] += 1
        for name in ROUTERS:
            self.tally.checks["mails proven by the lab's own test-fire at the end"] += 1
            problem = self.loop.run(self._lab_fire(name), timeout=MAXRUN + 10)
            if problem:
                self.state.problems.append(f"router {name}: mail not proven by the lab's own test-fire: {problem}")
        self._check("the end (every fault off)", strict=True)
        self.tally.seconds += time.monotonic() - started
        self.tally.time["finish"] += time.monotonic() - started

    def _new_state(self) -> None:
        self.state = StepState()
        self.faults.state = self.processes.state = self.state

    def _converge(self, attempts: int) -> tuple[int, RunReport]:
        """Apply with every fault off until every router is in sync or ``attempts`` runs were made."""
        for runs in range(1, attempts + 1):
            report = self.loop.run(self._in_process(apply=True, router=None, timeouts=CALM))
            if _in_sync(report) or runs == attempts:
                return runs, report
            self.clock.advance(STEP_PACE)
        raise AssertionError("unreachable")

    # --- running steps -----------------------------------------------------------------------------------

    def _run(self, step: Step) -> None:
        if isinstance(step, Apply | Plan):
            self._job_step(step)
        elif isinstance(step, Daemon):
            self.faults.arm(step.faults, step.stop)
            try:
                self.processes.daemon()
            finally:
                self.faults.disarm()
        elif isinstance(step, Concurrent):
            self._concurrent(step)
        elif isinstance(step, Rotate):
            self.tally.faults[f"rotate-{step.kind}"] += 1
            self.loop.call(self.lab.rotate, step.kind, step.back)
        elif isinstance(step, Advance):
            self.clock.advance(timedelta(minutes=step.minutes))
        elif isinstance(step, Skew):
            self.tally.faults["clock-skew"] += 1
            self.loop.call(self._skew, step)
        elif isinstance(step, Reload):
            self.tally.faults["reload"] += 1
            self.state.disturbed.add(step.router)
            self.loop.run(self.lab.device(step.router).restart())

    def _skew(self, step: Skew) -> None:
        self.lab.device(step.router).spec.clock_offset = timedelta(seconds=step.seconds)

    def _job_step(self, step: Apply | Plan) -> None:
        apply = isinstance(step, Apply)
        outage = step.outage if isinstance(step, Apply) else None
        self.faults.arm(step.faults, step.stop if isinstance(step, Apply) else None)
        self.state.job.outage = outage
        if outage:
            self.tally.faults[f"{outage}-outage"] += 1
        if outage == "provider":
            self.loop.run(self.lab.provider_down())
        try:
            if step.process:
                self.processes.command("apply" if apply else "plan", step.router)
            else:
                self.loop.run(self._in_process(apply=apply, router=step.router, timeouts=TIGHT,
                                               fetch_outage=outage == "fetch"))
        finally:
            self.faults.disarm()
            if outage == "provider":
                self.loop.run(self.lab.provider_up())

    def _concurrent(self, step: Concurrent) -> None:
        """The writer lock held by an apply in process (as `apply` takes it); a second writer as a process must be
        refused (75) and open no session."""
        self.tally.faults[f"second-writer-{step.second}"] += 1
        config = self.config
        lock = Scope(config, config, None).lock(purpose="apply")
        lock.acquire()
        try:
            first = self.loop.submit(self._in_process(apply=True, router=None, timeouts=TIGHT))
            self.processes.second_writer(step.second)
            first.result(120)
        finally:
            lock.release()
        self.faults.quiet()
        extra = {name: count - 1 for name, count in self.state.sessions.items() if count > 1}
        if extra:
            self.state.problems.append(f"ONE WRITER broken: the second writer opened sessions on {extra}")

    async def _in_process(self, *, apply: bool, router: str | None, timeouts: RouterTimeouts,
                          fetch_outage: bool = False) -> RunReport:
        """eemwatchd's Reconciler on the lab's loop; every in-sync it reports is checked against the lab."""
        config = self.config
        with Store.open(config.state_path, secrets=config.secrets()) as store:
            reconciler = Reconciler(config, store, connect=_connector(timeouts),
                                    fetch=_unreachable if fetch_outage else None, clock=self.clock.now)
            self.state.job.on_stop = lambda: reconciler.request_stop("SIGTERM")
            report = await asyncio.wait_for(reconciler.run(apply=apply, router=router), 90)
        no_secret(self.state, self.tally, "the run report", json.dumps(report.to_json()))
        for result in report.routers:
            if result.error_reason in (Reason.TIMEOUT, Reason.UNREACHABLE, Reason.FAILED):
                self.state.disturbed.add(result.name)
        said = f"{'apply' if apply else 'plan'} (in process) said in sync"
        self._judge_claims([r.name for r in report.routers if r.in_sync], said)
        return report

    # --- checks ----------------------------------------------------------------------------------------------

    def _judge_claims(self, names: Sequence[str], said: str) -> None:
        """On the lab's thread, right after the product said routers ``names`` are in sync: the lab's verdict."""
        for name in names:
            self.tally.checks["in-sync claims judged by the lab"] += 1
            verdict = self.lab.mail_verdict(name)
            if verdict is not None:
                self.state.problems.append(f"IN SYNC MEANS MAIL WORKS broken: {said} for router {name}, but {verdict}")

    def _check(self, where: str, *, strict: bool = False) -> None:
        self.faults.quiet()
        problems = self.state.problems
        problems += [str(v) for v in invariants.take_violations()]
        self.tally.checks["lab invariant checks (steps and ends)"] += 1
        for name in ROUTERS:
            difference = self._audit_difference(name)
            self.tally.checks["audit replays against a router"] += 1
            if difference is None:
                if self._owed.pop(name, None) is not None:
                    self.tally.checks["audit gaps of cut sessions explained at the next contact"] += 1
            elif name in self.state.disturbed and not strict:
                # A cut session may leave a change without its row: the next contact must explain it.
                self._owed[name] = difference
            elif name in self._owed and not self.state.sessions[name] and not strict:
                pass  # not contacted since the cut: still owed
            elif name in self._owed:
                problems.append(f"AUDIT broken: router {name}: {difference}, after the next contact (left by a cut "
                                f"session: {self._owed.pop(name)})")
            else:
                problems.append(f"AUDIT broken: router {name}: {difference}, after a step that cut no session")
        if problems:
            self.failed = True
            self.tally.violations += 1
            raise ScheduleFailed(f"{self.label}, {where}:\n" + "\n".join(f"  - {p}" for p in problems))

    def _audit_difference(self, name: str) -> str | None:
        config = self.config
        rows = []
        if config.state_path.exists():
            with Store.open(config.state_path, secrets=config.secrets()) as store:
                rows = store.audit(router=name)
        return self.loop.run(_on_loop(lambda: self.lab.audit_difference(name, rows)))

    async def _lab_fire(self, name: str) -> str | None:
        """The lab's own test-fire (not over SSH, not eemwatchd's): the applet must deliver a mail now."""
        state = self.lab.state(name)
        before = len(self.lab.smtp.messages)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        refusal = state.run_applet(APPLET, on_done=lambda ok: done.set_result(ok) if not done.done() else None)
        if refusal is not None:
            return refusal
        try:
            ok = await asyncio.wait_for(done, MAXRUN + 5)
        except TimeoutError:
            return "the applet did not end"
        if not ok:
            outcome = state.mail_outcomes[-1][1] if state.mail_outcomes else None
            return f"the mail failed: {outcome.detail if outcome else 'no mail action ran'}"
        try:
            await self.lab.smtp.wait_for_messages(before + 1, timeout=3)
        except TimeoutError:
            return "the applet ended well but no mail reached the lab SMTP server"
        return None


def run_schedule(harness: Harness, steps: Sequence[Step], *, label: str = "regression") -> None:
    """One schedule, step by step, then the end with every fault off (a regression test's body)."""
    harness.begin(label)
    for step in steps:
        harness.step(step)
    harness.finish()


def _in_sync(report: RunReport) -> bool:
    return bool(report.routers) and all(r.in_sync for r in report.routers)


async def _on_loop(func: Callable[[], str | None]) -> str | None:
    return func()


async def _unreachable(server: ServerConfig) -> list[object]:
    """A fetch outage: eemwatchd cannot reach the server (the routers still can)."""
    raise FetchError("connection refused (fault schedule: fetch outage)", address=f"{server.host}:{server.port}",
                     step="connect")


def _connector(timeouts: RouterTimeouts) -> Callable[[RouterConfig],
                                                     contextlib.AbstractAsyncContextManager[RouterSessionLike]]:
    @contextlib.asynccontextmanager
    async def connect(router: RouterConfig) -> AsyncIterator[RouterSessionLike]:
        target = dataclasses.replace(target_from_config(router), timeouts=timeouts)
        async with RouterSession(target) as session:
            yield session

    return connect
