"""`eemwatchd apply -c FILE [--router NAME] [--yes] [--json]`: bring routers' trustpoints to the plan."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from eemwatchd.commands.arguments import add_common_arguments

if TYPE_CHECKING:
    from eemwatchd.adapters.store import Store
    from eemwatchd.config import Config
    from eemwatchd.reconcile import RunReport
    from eemwatchd.reconcile.results import RunProgress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Bring every router's trustpoints to the plan: add what the servers' confirmed chains need into new "
        "trustpoints, test-fire the EEM applet and call mail working only on the router's evidence, retire what "
        "is no longer needed, save what a test-fire proved. Asks first unless --yes. Takes the writer lock "
        "(exit 75 while another eemwatchd holds it). Exit 0 when every router is in sync, 3 when one only "
        "awaits a chain's confirmation, 1 otherwise. On a terminal, a progress line shows the routers done, "
        "in flight and failed."
    )
    add_common_arguments(parser)
    parser.add_argument("--yes", action="store_true", help="apply without asking")
    parser.set_defaults(func=run)


def _say(text: str) -> None:
    print(f"eemwatchd apply: {text}", file=sys.stderr, flush=True)


async def _apply(config: Config, store: Store, *, router: str | None, observe: bool,
                 progress: RunProgress | None, fetch_failures: dict[str, str]) -> tuple[RunReport, int | None]:
    from eemwatchd.commands.runtime import run_stoppable
    from eemwatchd.reconcile import Reconciler

    reconciler = Reconciler(config, store, fetch_failures=fetch_failures)
    work = reconciler.run(apply=True, router=router, observe=observe, progress=progress)
    return await run_stoppable(reconciler.request_stop, work, announce=_say)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at module level: scrapli, asyncssh and pydantic are not needed for `--help`.
    from eemwatchd.commands.progress import router_progress
    from eemwatchd.commands.report import emit, exit_code, print_report
    from eemwatchd.commands.runtime import confirm, load, lock_held, open_store, take_writer_lock
    from eemwatchd.errors import EXIT_LOCKED
    from eemwatchd.reconcile import Reason, Reconciler
    from eemwatchd.reconcile.results import StepKind

    scope = load(args)
    if scope is None:
        return 2
    config = scope.config
    if not args.yes and not sys.stdin.isatty():
        _say("stdin is not a terminal; run `eemwatchd plan` to review, then `apply --yes`")
        return 2
    lock = take_writer_lock(scope, purpose="apply", say=_say, routers=[args.router] if args.router else None)
    if lock is None:
        return EXIT_LOCKED
    routers = 1 if args.router else len(config.routers)
    with lock_held(lock), open_store(config) as store:
        observe = True
        fetch_failures: dict[str, str] = {}  # what the preview's fetch could not tell, for the apply that follows
        if not args.yes:
            previewer = Reconciler(config, store, fetch_failures=fetch_failures)
            with router_progress("plan", routers=routers, as_json=args.json) as shown:
                preview = asyncio.run(previewer.run(apply=False, router=args.router, notify=False, progress=shown))
            print_report(preview, out=sys.stderr)
            if all(r.in_sync for r in preview.routers):
                emit(preview, as_json=args.json)
                return exit_code(preview)
            if not confirm("Apply these changes? [y/N] "):
                _say("nothing changed")
                return 1
            observe = False  # the preview observed already; observing again would count a sighting twice
        with router_progress("apply", routers=routers, as_json=args.json) as shown:
            report, stopped = asyncio.run(_apply(config, store, router=args.router, observe=observe,
                                                 progress=shown, fetch_failures=fetch_failures))
    emit(report, as_json=args.json)
    if stopped is not None:
        for result in report.routers:
            if result.reason is Reason.INTERRUPTED or not result.in_sync:
                acted = any(s.kind is not StepKind.OBSERVED for s in result.steps)
                print(f"router {result.name}: interrupted: {result.result}"
                      f"{'; nothing unproven was saved' if acted else ''}", file=sys.stderr)
        return stopped
    return exit_code(report)
