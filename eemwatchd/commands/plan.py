"""`eemwatchd plan -c FILE [--router NAME] [--json]`: observe the servers and show what apply would change."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

from eemwatchd.adapters.store import Store
from eemwatchd.config import Config, load_config
from eemwatchd.errors import ConfigError
from eemwatchd.reconcile import Reconciler, RouterResult, RunReport, config_secrets


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


def load(args: argparse.Namespace) -> Config | None:
    """The configuration, warnings on stderr; None (after a message) when it or --router is unusable."""
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    config = loaded.config
    name = getattr(args, "router", None)
    if name is not None and name not in {r.name for r in config.routers}:
        known = ", ".join(r.name for r in config.routers) or "(none)"
        print(f"unknown router {name!r}; known: {known}", file=sys.stderr)
        return None
    return config


def open_store(config: Config) -> Store:
    return Store.open(config.state_path, secrets=config_secrets(config))


async def run_reconcile(
    config: Config, store: Store, *, apply: bool, router: str | None, observe: bool = True
) -> RunReport:
    return await Reconciler(config, store).run(apply=apply, router=router, observe=observe)


def print_report(report: RunReport, *, out: TextIO = sys.stdout) -> None:
    """The human-readable report: per server address, then per router its actions, reports and lint."""
    for server in report.servers:
        if server.error:
            print(f"server {server.name}: {server.error}", file=out)
        for addr in server.addresses:
            state = "verified" if addr.verified else f"NOT verified: {addr.error}"
            chain = "/".join(s[:8].upper() for s in addr.chain) or "-"
            seen = f", seen {addr.times_seen}x" if addr.times_seen else ""
            print(f"server {server.name} {addr.address}: chain {chain} {state}{seen}", file=out)
    for event in report.events:
        print(f"SECURITY: {event}", file=out)
    for router in report.routers:
        print_router(router, out=out)


def print_router(router: RouterResult, *, out: TextIO) -> None:
    if router.error is not None and not router.reachable:
        print(f"router {router.name}: unreachable: {router.error}", file=out)
        return
    plan = router.plan
    state = "in sync" if router.in_sync else f"{len(plan.actions) if plan else 0} action(s)"
    print(f"router {router.name}: {len(router.trustpoints)} trustpoint(s), {state}", file=out)
    for action in plan.actions if plan else ():
        short = action.sha256[:8].upper() or "-"
        print(f"  {action.kind:<6} {action.trustpoint:<24} {short}  {action.reason}", file=out)
    for report in plan.reports if plan else ():
        if report.kind != "event":
            print(f"  note   {report.kind}: {report.message}", file=out)
    for finding in router.lint:
        print(f"  lint   {finding.severity} {finding.rule}: {finding.message}", file=out)
        print(f"         fix: {finding.fix}", file=out)
    for step in router.steps:
        mark = "ok" if step.ok else "FAILED"
        print(f"  done   {step.kind} {step.trustpoint or ''} {mark}: {step.detail}", file=out)
    if router.error is not None:
        print(f"  error: {router.error}", file=out)
    if router.result is not None:
        print(f"  result: {router.result}", file=out)


def emit(report: RunReport, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    with open_store(config) as store:
        report = asyncio.run(run_reconcile(config, store, apply=False, router=args.router))
    emit(report, as_json=args.json)
    return 0 if report.routers and all(r.in_sync for r in report.routers) else 1
