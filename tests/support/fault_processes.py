"""eemwatchd as real processes in a fault schedule: `apply --yes` and `plan` (with `--json`), `run` (its first pass and
its /metrics), and a second writer; each forked from the preloaded fork server on the lab's clock, signalled by pid.

What a process says is checked here: its exit code (0/1, 143 after a SIGTERM that stopped it, -9 after kill -9, 0
for the daemon after SIGTERM, 75 for a second writer), no traceback, no secret in its output, and every router it
calls in sync is handed to ``judge`` (the lab's verdict, on the lab's thread).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import free_port, get
from tests.support.fault_lab import ROUTER_PASSWORD, ROUTERS, SMTP_PASSWORD, FaultLab, LabLoop, LabTime
from tests.support.fault_steps import StepState, Tally
from tests.support.pinned_clock import Zygote

REPO = Path(__file__).resolve().parents[2]
Judge = Callable[[Sequence[str], str], None]  # (routers said to be in sync, who said it)


class Processes:
    """The processes of a schedule's steps; ``state`` is the step under way (set by the harness)."""

    def __init__(self, lab: FaultLab, loop: LabLoop, clock: LabTime, tally: Tally, judge: Judge) -> None:
        self.lab = lab
        self.loop = loop
        self.clock = clock
        self.tally = tally
        self.judge = judge
        self.state = StepState()
        self.zygote = Zygote(REPO)
        self._count = 0

    def close(self) -> None:
        self.zygote.close()

    def command(self, command: str, router: str | None) -> None:
        """`eemwatchd apply --yes --json` or `eemwatchd plan --json`: its exit code, and each in_sync it prints."""
        args = [command, *(["--yes"] if command == "apply" else []), "--json", "-c", str(self.lab.config_path),
                *(["--router", router] if router else [])]
        code, out, err = self.run(args)
        problems = self.state.problems
        stop, fired = self.state.job.stop, self.state.job.stop_fired
        if "Traceback" in err:
            problems.append(f"`eemwatchd {command}` crashed (exit {code}):\n{err[-2000:]}")
        if fired and stop is not None and stop.kind == "SIGKILL":
            if code != -signal.SIGKILL:
                problems.append(f"`eemwatchd {command}` was killed (-9) but exited {code}")
            return
        # SIGTERM: 143 when it stopped the run; a signal that came once the run was over (the router ran the
        # session's `exit`) leaves the exit code of the finished run.
        # 3: not in sync, nothing wrong (a chain awaits its confirmations)
        expected = {0, 1, 3, 143} if fired else {0, 1, 3}
        if code not in expected:
            problems.append(f"`eemwatchd {command}` exited {code}, expected one of {sorted(expected)}:\n{err[-2000:]}")
        if not out.strip():
            problems.append(f"`eemwatchd {command} --json` printed nothing (exit {code}):\n{err[-2000:]}")
            return
        routers = json.loads(out)["routers"]
        for r in routers:  # apply's reason code is its `result`, plan's its `reason` (README, "Exit codes")
            r["reason"] = r.get("result") or r["reason"]
        if any(r["reason"] == "interrupted" for r in routers) and code != 143:
            problems.append(f"`eemwatchd {command}` was interrupted by SIGTERM but exited {code}, not 143")
        if code == 0 and not all(r["in_sync"] for r in routers):
            problems.append(f"`eemwatchd {command}` exited 0 with a router not in sync")
        for r in routers:
            if r["reason"] in ("timeout", "unreachable", "failed"):
                self.state.disturbed.add(r["name"])
        self.loop.call(self.judge, [r["name"] for r in routers if r["in_sync"]],
                       f"`eemwatchd {command} --json` said in_sync")

    def run(self, args: Sequence[str], *, timeout: float = 90.0) -> tuple[int, str, str]:
        """`eemwatchd ARGS` as a process on the lab's clock; the job's stop signals it. (exit code, stdout, stderr)"""
        self._count += 1
        out = self.lab.directory / f"process-{self._count}.out"
        err = self.lab.directory / f"process-{self._count}.err"
        pid = self.zygote.spawn(self.clock.now().isoformat(), args, out=out, err=err)
        self.state.job.on_stop = self._signaller(pid)
        code = self.zygote.wait(pid, timeout)
        if code is None:
            _signal(pid, signal.SIGKILL)
            code = self.zygote.wait(pid, 10)
            self.state.problems.append(f"`eemwatchd {args[0]}` did not end within {timeout:g}s")
        texts = (out.read_text(errors="replace"), err.read_text(errors="replace"))
        no_secret(self.state, self.tally, f"the output of `eemwatchd {args[0]}`", "\n".join(texts))
        return (code if code is not None else -1, *texts)

    def daemon(self) -> None:
        """`eemwatchd run`: until its first pass is done (its claims read from /metrics, then SIGTERM) or until the
        job's stop ended it."""
        port = free_port()
        self._count += 1
        log = self.lab.directory / f"daemon-{self._count}.log"
        args = ["run", "-c", str(self.lab.config_path), "--listen", f"127.0.0.1:{port}"]
        pid = self.zygote.spawn(self.clock.now().isoformat(), args, out=log, err=log.with_suffix(".err"))
        self.state.job.on_stop = self._signaller(pid)
        code = self._watch_daemon(pid, f"http://127.0.0.1:{port}")
        text = log.read_text(errors="replace") + log.with_suffix(".err").read_text(errors="replace")
        no_secret(self.state, self.tally, "the daemon's log", text)
        if "Traceback" in text:
            self.state.problems.append(f"`eemwatchd run` crashed:\n{text[-2000:]}")
        stop = self.state.job.stop
        killed = self.state.job.stop_fired and stop is not None and stop.kind == "SIGKILL"
        if code != (-signal.SIGKILL if killed else 0):
            self.state.problems.append(f"`eemwatchd run` exited {code}"
                                       f"{' after kill -9' if killed else ' after SIGTERM'}:\n{text[-2000:]}")

    def _watch_daemon(self, pid: int, base: str) -> int | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code = self.zygote.wait(pid, 0.05)
            if code is not None:
                return code
            if get(f"{base}/readyz")[0] == 200:
                status, text = get(f"{base}/metrics")
                if status == 200:
                    claimed = [name for name, value in _router_series(text, "eemwatchd_router_in_sync").items()
                               if value == 1.0]
                    self.loop.call(self.judge, claimed, "the daemon's eemwatchd_router_in_sync is 1")
                self._send_once(pid, signal.SIGTERM)
                break
        code = self.zygote.wait(pid, 30)
        if code is None:
            self.state.problems.append("`eemwatchd run` did not stop within 30s of SIGTERM")
            _signal(pid, signal.SIGKILL)
            code = self.zygote.wait(pid, 10)
        return code

    def second_writer(self, second: str) -> None:
        """`eemwatchd apply` or `eemwatchd run` started while another writer holds the lock: it must exit 75."""
        args = ["apply", "--yes", "--json"] if second == "apply" else ["run", "--listen", f"127.0.0.1:{free_port()}"]
        code, _out, err = self.run([*args, "-c", str(self.lab.config_path)], timeout=30)
        self.tally.checks["second writers refused"] += 1
        if code != 75:
            self.state.problems.append(f"ONE WRITER broken: `eemwatchd {second}` started beside a running apply "
                                       f"exited {code}, not 75:\n{err[-2000:]}")

    def _signaller(self, pid: int) -> Callable[[], None]:
        def send() -> None:
            stop = self.state.job.stop
            assert stop is not None
            if stop.kind == "SIGKILL":
                self.state.disturbed.update(ROUTERS)
            self._send_once(pid, signal.SIGKILL if stop.kind == "SIGKILL" else signal.SIGTERM)

        return send

    def _send_once(self, pid: int, sig: signal.Signals) -> None:
        """One signal per process: an operator's second SIGTERM means "abort at once", not what a schedule tests."""
        if not self.state.job.signalled:
            self.state.job.signalled = True
            _signal(pid, sig)


def no_secret(state: StepState, tally: Tally, where: str, text: str) -> None:
    tally.checks["outputs searched for secrets"] += 1
    leaked = [name for name, secret in (("the SMTP password", SMTP_PASSWORD), ("the router password", ROUTER_PASSWORD))
              if secret in text]
    if leaked:
        state.problems.append(f"NO SECRET broken: {' and '.join(leaked)} in {where}")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _router_series(text: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and "router" in sample.labels:
                out[sample.labels["router"]] = sample.value
    return out
