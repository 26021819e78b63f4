"""`eemwatchd audit -c FILE [--router NAME] [--json]`: print the append-only log of changes to routers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from eemwatchd.commands.plan import load, open_store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("audit", help="print the audit log of router changes")
    parser.add_argument("-c", "--config", required=True, metavar="FILE")
    parser.add_argument("--router", metavar="NAME", help="only this router")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    with open_store(config) as store:
        entries = store.audit(router=args.router)
    if args.json:
        print(
            json.dumps(
                {
                    "entries": [
                        {
                            "id": e.id,
                            "at": e.at.isoformat(),
                            "router": e.router,
                            "action": e.action,
                            "trustpoint": e.trustpoint,
                            "sha256_before": e.sha256_before,
                            "sha256_after": e.sha256_after,
                            "test_fire": e.test_fire,
                            "reason": e.reason,
                        }
                        for e in entries
                    ]
                },
                indent=2,
            )
        )
        return 0
    if not entries:
        print("audit log is empty", file=sys.stderr)
    for e in entries:
        change = ""
        if e.sha256_before or e.sha256_after:
            before = (e.sha256_before or "")[:8].upper() or "(none)"
            after = (e.sha256_after or "")[:8].upper() or "(none)"
            change = f" {before} -> {after}"
        trustpoint = f" {e.trustpoint}" if e.trustpoint else ""
        fire = ""
        if e.test_fire:
            fire = f" {e.test_fire}" if e.action == "test-fire" else f" [test-fire {e.test_fire}]"
        print(f"{e.at:%Y-%m-%d %H:%M:%S} {e.router} {e.action}{trustpoint}{change}{fire}: {e.reason}")
    return 0
