"""`eemwatchd lab`: watch eemwatchd keep simulated IOS XE routers mailing through rotations, on 127.0.0.1."""

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

from eemwatchd_lab.commands import add_wan_arguments, wan_from_arguments

if TYPE_CHECKING:
    from eemwatchd_lab.wan import Wan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start a lab SMTP server (STARTTLS, its own Gmail-shaped PKI) and simulated IOS XE routers "
        "over real SSH on 127.0.0.1, write a ready config and run the eemwatchd daemon on it in the foreground: "
        "watch it install the CAs, prove mail by test-fires, and follow the provider's rotations (a new "
        "intermediate, then a move to the root the provider announced). `lab rotate --dir DIR` rotates now from "
        "another shell. A probe mail from every router every few seconds counts the mails that fail; with "
        "--prestage the announced root is pre-staged and none does. "
        "With --once: the scripted story (install, rotate, repair, retire), exit 0 when every router mailed "
        "after every step."
    )
    parser.add_argument("action", nargs="?", choices=("run", "rotate"), default="run",
                        help="run the lab (default), or ask a running lab (--dir) to rotate now")
    parser.add_argument("--routers", type=int, default=3, metavar="N", help="number of lab routers (default 3)")
    parser.add_argument("--dir", "--state-dir", dest="state_dir", type=Path, metavar="DIR",
                        help="the lab's files (config, state, router configs); default: a fresh temporary "
                             "directory, kept and printed (removed at the end with --once)")
    parser.add_argument("--rotate-every", type=float, default=60.0, metavar="SECONDS",
                        help="the provider rotates its chain this often (default 60; 0: only on `lab rotate`)")
    parser.add_argument("--bare", type=int, default=0, metavar="N",
                        help="the last N routers start with no EEM setup at all, for `eemwatchd onboard` "
                             "(with --once the story onboards them first)")
    parser.add_argument("--prestage", action="store_true",
                        help="pre-stage the provider's announced next root (servers[].prestage): the routers hold "
                             "it before the provider moves to it, and keep mailing through the move")
    parser.add_argument("--probe-every", type=float, default=2.0, metavar="SECONDS",
                        help="a probe mail from every router this often, counted as delivered or failed "
                             "(default 2; 0: no probe)")
    parser.add_argument("--once", action="store_true",
                        help="run the scripted rotation story and exit (for tests and CI)")
    parser.add_argument("--serve", action="store_true",
                        help="with --once: afterwards keep the SMTP server and routers up for SSH until Ctrl-C")
    add_wan_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "rotate":
        return _rotate(args.state_dir)
    if not 1 <= args.routers <= 50:
        print("eemwatchd lab: --routers must be 1-50", file=sys.stderr)
        return 2
    if not 0 <= args.bare <= args.routers:
        print(f"eemwatchd lab: --bare must be 0-{args.routers} (the number of routers)", file=sys.stderr)
        return 2
    if args.probe_every != 0 and not 0.5 <= args.probe_every <= 3600:
        print("eemwatchd lab: --probe-every must be 0 (no probe) or 0.5-3600 seconds", file=sys.stderr)
        return 2
    wan, problem = wan_from_arguments(args, "lab")
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    if args.once:
        return _once(args, wan)
    from eemwatchd.logformat import configure_logging
    from eemwatchd_lab.live import run_live

    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="eemwatchd-lab-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    print(f"lab directory: {state_dir} (kept)", flush=True)
    configure_logging(verbosity=max(args.verbose, 0), fmt="text")
    return asyncio.run(run_live(state_dir, routers=args.routers, rotate_every=args.rotate_every,
                                say=lambda text: print(text, flush=True), bare=args.bare, wan=wan,
                                prestage=args.prestage, probe_every=args.probe_every))


def _rotate(state_dir: Path | None) -> int:
    from eemwatchd_lab.live import request_rotation

    if state_dir is None or not (state_dir / "eemwatchd.yaml").is_file():
        print("eemwatchd lab rotate: give --dir DIR of a running lab (it holds eemwatchd.yaml)", file=sys.stderr)
        return 2
    print(f"asked the lab in {state_dir} to rotate: {request_rotation(state_dir)}")
    return 0


def _once(args: argparse.Namespace, wan: Wan | None) -> int:
    from eemwatchd_lab.scenario import LabRun, run_lab

    temporary = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="eemwatchd-lab-")) if temporary else args.state_dir

    async def main() -> LabRun:
        stop: asyncio.Event | None = None
        if args.serve:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
        return await run_lab(state_dir, routers=args.routers, say=lambda text: print(text, flush=True), serve=stop,
                             bare=args.bare, wan=wan, prestage=args.prestage)

    try:
        result = asyncio.run(main())
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
