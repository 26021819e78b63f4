"""`eemwatchd lab`: watch eemwatchd keep simulated IOS XE routers mailing through a rotation, on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eemwatchd.lab.scenario import LabRun


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start a lab SMTP server (STARTTLS, its own Gmail-shaped PKI) and simulated IOS XE routers "
        "over real SSH on 127.0.0.1, then let eemwatchd install the CAs, follow an intermediate and a "
        "root rotation, and retire what is no longer needed. Every router test-fires its EEM applet "
        "after each step. Exit status 0 when every router mailed after every step."
    )
    parser.add_argument("--routers", type=int, default=3, metavar="N", help="number of lab routers (default 3)")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="keep the lab's files here (config, state, router configs); default: a temporary "
                             "directory removed at the end")
    parser.add_argument("--serve", action="store_true",
                        help="after the scenario, keep the SMTP server and routers up for SSH until Ctrl-C")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.routers <= 50:
        print("eemwatchd lab: --routers must be 1-50", file=sys.stderr)
        return 2
    temporary = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="eemwatchd-lab-")) if temporary else args.state_dir
    try:
        result = asyncio.run(_main(state_dir, args.routers, serve=args.serve))
    finally:
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
    print()
    for step in result.steps:
        print(f"{step.title}: {step.changes} change(s), {step.routers_mailing}/{step.routers} routers mailed")
    if result.ok:
        print("lab: every router kept sending mail through both rotations, and a second apply changed nothing")
        return 0
    print("lab: FAILED (see the steps above)", file=sys.stderr)
    return 1


async def _main(state_dir: Path, routers: int, *, serve: bool) -> LabRun:
    from eemwatchd.lab.scenario import run_lab  # asyncssh, aiosmtpd, scrapli: not needed for `--help`

    stop: asyncio.Event | None = None
    if serve:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    return await run_lab(state_dir, routers=routers, say=lambda text: print(text, flush=True), serve=stop)
