"""`eemwatchd plan -c FILE [--router NAME] [--json]`: observe the servers and show what apply would change."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from eemwatchd.adapters.lock import StateLock
from eemwatchd.errors import StateLocked
from eemwatchd.reconcile import Reconciler
from eemwatchd.report import emit, exit_code
from eemwatchd.runtime import load, open_store


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="FILE")
    parser.add_argument("--router", metavar="NAME", help="only this router")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "plan", help="show the trustpoint changes each router needs (reads routers only)"
    )
    add_common_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    # plan never changes a router and sends no alerts (the daemon and apply do). It records its sightings and
    # the audit's observed rows only when no other writer holds the store; otherwise it reads, and writes nothing.
    lock = StateLock(config.state_path, purpose="plan")
    try:
        lock.acquire()
    except StateLocked:
        readonly = True
    else:
        readonly = False
    try:
        with open_store(config) as store:
            reconciler = Reconciler(config, store, readonly=readonly)
            report = asyncio.run(reconciler.run(apply=False, router=args.router, notify=False))
    finally:
        lock.release()
    if readonly:
        print("plan: another eemwatchd holds the state; showing its view, recording nothing", file=sys.stderr)
    emit(report, as_json=args.json)
    return exit_code(report)
