"""Random fault schedules, many of them: `./dev soak --schedules N [--seed S]` (or
`.venv/bin/python -m benchmarks.soak_schedules --schedules N`).

Runs N seeded random schedules (tests/support/fault_schedule.py) against one fault lab: two lab routers, a lab SMTP
server, eemwatchd in process and as processes (`apply --yes`, `run`), with drops, hangs, refusals, slow and failing
test-fires, log noise, SIGTERM and kill -9 at exact steps, concurrent writers, provider rotations, outages, router
reloads and clock skew; every promise is checked after every step and at the end of every schedule. Schedules run
in chunks of one seed each; a failing chunk is shrunk by Hypothesis and reported with its seed, and the soak goes on
with the next seed. Prints a summary table: schedules, steps by kind, faults armed and taking effect by kind,
violations. Exit 1 when any schedule broke a promise.

`run_soak(schedules, seed=...)` returns the summary rows, so `./dev soak` can print them beside other soaks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.fault_harness import Harness
from tests.support.fault_schedule import STEPS_PER_SCHEDULE, ScheduleRun, run_schedules
from tests.support.fault_steps import Tally

Row = tuple[str, str, str]  # (section, name, value)


@dataclass
class SoakResult:
    tally: Tally
    runs: list[ScheduleRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[ScheduleRun]:
        return [r for r in self.runs if r.failure is not None]

    def rows(self) -> list[Row]:
        """The summary as (section, name, value) rows."""
        t = self.tally
        seeds = [r.seed for r in self.runs]
        rate = t.schedules / (self.seconds / 60) if self.seconds else 0.0
        out: list[Row] = [
            ("fault schedules", "schedules run", str(t.schedules)),
            ("fault schedules", "seeds", ", ".join(map(str, seeds))),
            ("fault schedules", "steps per schedule", str(STEPS_PER_SCHEDULE)),
            ("fault schedules", "wall time", f"{self.seconds:.0f} s ({rate:.0f} schedules/min)"),
            ("fault schedules", "violations", str(t.violations)),
        ]
        out += [("steps", kind, f"{count} ({t.time[kind]:.1f} s)") for kind, count in sorted(t.steps.items())]
        for kind, count in sorted(t.faults.items()):
            took = t.hit.get(kind)
            out.append(("faults injected", kind, f"{count}" + (f" (took effect {took})" if took is not None else "")))
        out += [("checks", what, str(n)) for what, n in sorted(t.checks.items())]
        out += [("end of schedule", f"converged after {runs} apply run(s)", str(n))
                for runs, n in sorted(t.convergence_runs.items())]
        return out


def run_soak(schedules: int, *, seed: int | None = None, chunk: int = 100, shrink_seconds: int = 300,
             root: Path | None = None) -> SoakResult:
    """``schedules`` random schedules in chunks of ``chunk``, seeds ``seed``, ``seed + 1``, ...
    (default: a random first seed)."""
    first = seed if seed is not None else int.from_bytes(os.urandom(3), "big")
    with tempfile.TemporaryDirectory(prefix="eemwatchd-soak-", dir=root) as tmp:
        harness = Harness(Path(tmp))
        started = time.monotonic()
        result = SoakResult(harness.tally)
        try:
            done, n = 0, 0
            while done < schedules:
                count = min(chunk, schedules - done)
                run = run_schedules(harness, seed_value=first + n, count=count, shrink_seconds=shrink_seconds)
                result.runs.append(run)
                if run.failure is not None:
                    print(run.describe(), file=sys.stderr, flush=True)
                done += count
                n += 1
        finally:
            result.seconds = time.monotonic() - started
            harness.close()
    return result


def format_rows(rows: list[Row]) -> str:
    width = max((len(name) for _section, name, _value in rows), default=10)
    lines: list[str] = []
    section = None
    for sec, name, value in rows:
        if sec != section:
            lines.append(f"\n{sec}")
            section = sec
        lines.append(f"  {name:<{width}}  {value}")
    return "\n".join(lines).lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=500, help="how many schedules (default 500)")
    parser.add_argument("--seed", type=int, help="the first seed (default: random); chunks use seed, seed+1, ...")
    parser.add_argument("--chunk", type=int, default=100, help="schedules per seed (default 100)")
    parser.add_argument("--shrink-seconds", type=int, default=300, help="how long to shrink a failure (default 300)")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # eemwatchd's alerts and narrative, the lab's violation log: the table says it
    result = run_soak(args.schedules, seed=args.seed, chunk=args.chunk, shrink_seconds=args.shrink_seconds)
    print(format_rows(result.rows()))
    for run in result.failures:
        print(f"\n{run.describe()}")
    return 1 if result.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
