"""commands/runtime.py: SIGINT/SIGTERM around a run, as a process receives them."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A run that finishes, then a SIGTERM while the command prints its report (the fault schedules sent it as the
# router ran the session's last line, `exit`: the run was over, the handlers were gone, and `apply` died with -15
# before printing its report).
LATE_SIGNAL = """
import asyncio, os, signal, time
from eemwatchd.commands.runtime import run_stoppable

async def work():
    return "done"

result, code = asyncio.run(run_stoppable(lambda reason: None, work(), announce=print))
os.kill(os.getpid(), signal.{sig})
time.sleep(0.2)
print("report printed", result, code, flush=True)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_after_the_run_finished_does_not_lose_the_report(sig: str) -> None:
    done = subprocess.run([sys.executable, "-c", LATE_SIGNAL.format(sig=sig)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert (done.returncode, done.stdout) == (0, "report printed done None\n"), done.stderr
