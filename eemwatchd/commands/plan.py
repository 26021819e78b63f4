"""`eemwatchd plan -c FILE [--router NAME] [--json]`: observe the servers and show what apply would change."""

from __future__ import annotations

import argparse
import asyncio
import sys

from eemwatchd.commands.arguments import add_common_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fetch every server's chain from every address (a sighting counts towards policy.confirmations), read "
        "every router's trustpoints and EEM setup over SSH, and show what apply would change and why, with the "
        "lint findings. Changes no router and sends no alert. Exit 0 when every router is in sync, 3 when one "
        "only awaits a chain's confirmation, 1 otherwise. On a terminal, a progress line shows the routers "
        "done, in flight and failed."
    )
    add_common_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at module level: scrapli, asyncssh and pydantic are not needed for `--help`.
    from eemwatchd.commands.progress import router_progress
    from eemwatchd.commands.report import emit, exit_code
    from eemwatchd.commands.runtime import load, open_store
    from eemwatchd.errors import StateLocked
    from eemwatchd.reconcile import Reconciler

    scope = load(args)
    if scope is None:
        return 2
    config = scope.config
    # plan never changes a router and sends no alerts (the daemon and apply do). It records its sightings and
    # the audit's observed rows only when no other writer holds the store or any of its routers; otherwise it
    # reads, and writes nothing.
    lock = scope.lock(purpose="plan", routers=[args.router] if args.router else None)
    try:
        lock.acquire()
    except StateLocked:
        readonly = True
    else:
        readonly = False
    try:
        with open_store(config) as store, \
                router_progress("plan", routers=1 if args.router else len(config.routers), as_json=args.json) as shown:
            reconciler = Reconciler(config, store, readonly=readonly)
            report = asyncio.run(reconciler.run(apply=False, router=args.router, notify=False, progress=shown))
    finally:
        lock.release()
    if readonly:
        print("plan: another eemwatchd holds the state; showing its view, recording nothing", file=sys.stderr)
    emit(report, as_json=args.json)
    return exit_code(report)
