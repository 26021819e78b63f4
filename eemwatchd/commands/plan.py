"""`eemwatchd plan -c FILE [--router NAME] [--json]`: observe the servers and show what apply would change."""

from __future__ import annotations

import argparse
import asyncio


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="FILE")
    parser.add_argument("--router", metavar="NAME", help="only this router")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at module level: scrapli, asyncssh and pydantic are not needed for `--help`.
    from eemwatchd.reconcile import Reconciler
    from eemwatchd.report import emit, exit_code
    from eemwatchd.runtime import load, open_store

    config = load(args)
    if config is None:
        return 2
    # plan reads without the writer lock and sends no alerts (the daemon and apply do)
    with open_store(config) as store:
        report = asyncio.run(Reconciler(config, store).run(apply=False, router=args.router, notify=False))
    emit(report, as_json=args.json)
    return exit_code(report)
