"""A schedule's faults on the lab routers: armed for one job, fired at an exact line of a session (the routers' line
hook), taken off again; the sessions that ended on each router; waiting until every session is over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta

from eemwatchd_lab.router.faults import MAIL_REFUSED, MAIL_SILENT, Faults
from eemwatchd_lab.router.invariants import SessionWatch
from tests.support.fault_lab import ROUTERS, FaultLab, LabLoop
from tests.support.fault_steps import CUTTING, Fault, StepState, Stop, Tally

LINE_FAULTS = ("drop", "hang", "refuse")  # counted as having taken effect when a session reached their line


class RouterFaults:
    """Arms a job's faults on the routers and fires its stop at the exact line. ``state`` is the step under way (the
    harness sets it at each step): the hook and the session listener, on the lab's thread, report into it."""

    def __init__(self, lab: FaultLab, loop: LabLoop, tally: Tally) -> None:
        self.lab = lab
        self.loop = loop
        self.tally = tally
        self.state = StepState()

    def arm(self, faults: Sequence[Fault], stop: Stop | None) -> None:
        job = self.state.job
        job.faults, job.stop = tuple(faults), stop
        for fault in faults:
            self.tally.faults[fault.kind] += 1
            if fault.kind in CUTTING:
                self.state.disturbed.add(fault.router)
        if stop is not None:
            self.tally.faults[f"stop-{stop.kind}"] += 1
        self.loop.call(self._arm_routers)

    def disarm(self) -> None:
        job = self.state.job
        for fault in job.faults:
            if fault.kind in LINE_FAULTS and job.lines[fault.router] >= fault.at:
                self.tally.hit[fault.kind] += 1
        if job.stop is not None and job.stop_fired:
            self.tally.hit[f"stop-{job.stop.kind}"] += 1
        self.loop.call(self.clear)

    def clear(self) -> None:
        """No fault on any router (on the lab's thread)."""
        for name in ROUTERS:
            self.lab.device(name).spec.faults = Faults()

    async def all_off(self) -> None:
        """The end of a schedule: no fault, no skew, the provider up and serving a chain the trust store verifies."""
        self.clear()
        for name in ROUTERS:
            self.lab.device(name).spec.clock_offset = timedelta(0)
        await self.lab.provider_up()
        self.lab.serve_trusted()

    def _arm_routers(self) -> None:
        for name in ROUTERS:
            kw: dict[str, object] = {}
            refused: set[int] = set()
            for fault in self.state.job.faults:
                if fault.router != name:
                    continue
                if fault.kind == "drop":
                    kw["drop_after_commands"] = fault.at - 1
                elif fault.kind == "hang":
                    kw["hang_after_commands"] = fault.at - 1
                elif fault.kind == "refuse":
                    refused.add(fault.at)
                elif fault.kind == "slow":
                    kw["output_delay"] = fault.at / 1000
                elif fault.kind == "noise":
                    kw["log_noise"] = fault.at
                elif fault.kind in ("mail-refused", "mail-silent") and fault.at <= 1:
                    kw["mail"] = MAIL_REFUSED if fault.kind == "mail-refused" else MAIL_SILENT
                elif fault.kind == "mail-slow":
                    kw["mail_delay"] = fault.at / 1000
                elif fault.kind == "login":
                    kw["refuse_login"] = True
            self.lab.device(name).spec.faults = Faults(refuse_commands=frozenset(refused),
                                                       before_command=self._hook(name), **kw)  # type: ignore[arg-type]

    def _hook(self, name: str) -> Callable[[int, str], None]:
        """Before each line of router ``name``: the faults that start at a line, and the job's stop."""
        state = self.state

        def before(number: int, _line: str) -> None:
            job = state.job
            job.lines[name] = max(job.lines[name], number)
            for fault in job.faults:
                if fault.router != name or number < fault.at:
                    continue
                if fault.kind in ("mail-refused", "mail-silent"):  # the server fails from this line on
                    self.lab.device(name).spec.faults.mail = (MAIL_REFUSED if fault.kind == "mail-refused"
                                                               else MAIL_SILENT)
                elif fault.kind == "reboot" and name not in job.rebooted:  # power lost under the session
                    job.rebooted.add(name)
                    self.tally.hit["reboot"] += 1
                    asyncio.get_running_loop().create_task(self.lab.device(name).restart())
            stop = job.stop
            if stop is not None and not job.stop_fired and stop.router == name and number >= stop.at:
                job.stop_fired = True
                if job.on_stop is not None:
                    job.on_stop()

        return before

    # --- sessions ------------------------------------------------------------------------------------------------

    def listen(self) -> None:
        """Count the eemwatchd sessions that end on each router (once per lab device: a reload makes a new one)."""

        def listen() -> None:
            for name in ROUTERS:
                listeners = self.lab.state(name).session_listeners
                if not any(getattr(f, "fault_harness", False) for f in listeners):
                    listeners.append(self._listener(name))

        self.loop.call(listen)

    def _listener(self, name: str) -> Callable[[SessionWatch], None]:
        def ended(watch: SessionWatch) -> None:
            if watch.eemwatchd:
                self.state.sessions[name] += 1

        ended.fault_harness = True  # type: ignore[attr-defined]
        return ended

    def quiet(self) -> None:
        """Wait until every session on the routers ended (a killed client's socket closes a moment later)."""

        async def quiet() -> bool:
            for _ in range(200):
                if all(d.connections == 0 and d.sessions == 0 for d in self.lab.fleet):
                    return True
                await asyncio.sleep(0.02)
            return False

        if not self.loop.run(quiet()):
            self.state.problems.append("sessions on the lab routers did not end within 4s of the step")
