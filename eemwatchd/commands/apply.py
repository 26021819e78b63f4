"""`eemwatchd apply -c FILE [--router NAME] [--yes] [--json]`: bring routers' trustpoints to the plan."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from eemwatchd.commands.plan import add_common_arguments, emit, load, open_store, print_report, run_reconcile


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "apply", help="add and retire trustpoints on the routers (blue-green, test-fired)"
    )
    add_common_arguments(parser)
    parser.add_argument("--yes", action="store_true", help="apply without asking")
    parser.set_defaults(func=run)


def confirm(prompt: str) -> bool:
    print(prompt, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    if not args.yes and not sys.stdin.isatty():
        print(
            "apply: stdin is not a terminal; run `eemwatchd plan` to review, then `apply --yes`",
            file=sys.stderr,
        )
        return 2
    with open_store(config) as store:
        observe = True
        if not args.yes:
            preview = asyncio.run(run_reconcile(config, store, apply=False, router=args.router))
            print_report(preview, out=sys.stderr)
            if all(r.in_sync for r in preview.routers):
                emit(preview, as_json=args.json)
                return 0
            if not confirm("Apply these changes? [y/N] "):
                print("apply: nothing changed", file=sys.stderr)
                return 1
            observe = False  # the preview observed already; observing again would count a sighting twice
        report = asyncio.run(run_reconcile(config, store, apply=True, router=args.router, observe=observe))
    emit(report, as_json=args.json)
    return 0 if report.routers and all(r.applied for r in report.routers) else 1
