"""`eemwatchd audit -c FILE [--router NAME] [--json] [--verify]`: print or verify the log of changes to routers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from eemwatchd.commands.arguments import add_config_argument, add_shard_argument
from eemwatchd.core.fingerprints import short_fingerprint

if TYPE_CHECKING:
    from eemwatchd.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the audit log: every change eemwatchd made to a router (add, retire, rollback, save, EEM "
        "configuration), every test-fire with its evidence, and every difference it found on a router. The log "
        "is append-only and hash-chained; --verify checks the chain. Reads only (no lock needed)."
    )
    add_config_argument(parser)
    parser.add_argument("--router", metavar="NAME", help="only this router")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--verify", action="store_true",
                        help="check the log's hash chain; exit 1 naming the first broken row")
    add_shard_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eemwatchd.commands.runtime import load, open_store  # pydantic and the store: not needed for `--help`

    scope = load(args)
    if scope is None:
        return 2
    config = scope.config
    if args.verify:
        if not config.state_path.exists():
            # nothing to verify, and a reader creates nothing: an empty new store would "verify" and hide a
            # wrong state_path or a deleted database
            print(f"eemwatchd audit: no state store at {config.state_path} (state_path): nothing has run with "
                  "this configuration, or the path is wrong; nothing was created", file=sys.stderr)
            return 2
        return verify(config, as_json=args.json)
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
                            "evidence": e.evidence,
                            "hash": e.hash,
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
            before = short_fingerprint(e.sha256_before or "") or "(none)"
            after = short_fingerprint(e.sha256_after or "") or "(none)"
            change = f" {before} -> {after}"
        trustpoint = f" {e.trustpoint}" if e.trustpoint else ""
        fire = ""
        if e.test_fire:
            fire = f" {e.test_fire}" if e.action == "test-fire" else f" [test-fire {e.test_fire}]"
        evidence = f" (evidence: {e.evidence})" if e.evidence else ""
        print(f"{e.at:%Y-%m-%d %H:%M:%S} {e.router} {e.action}{trustpoint}{change}{fire}: {e.reason}{evidence}")
    return 0


def verify(config: Config, *, as_json: bool) -> int:
    """Exit 0 when the chain, its heads and the triggers are intact; 1 naming the first broken row."""
    from eemwatchd.commands.runtime import open_store

    with open_store(config) as store:
        verdict = store.verify_audit()
    if as_json:
        print(json.dumps({"ok": verdict.ok, "rows": verdict.rows, "head": verdict.head,
                          "first_broken_id": verdict.first_broken_id, "reason": verdict.reason}, indent=2))
    elif verdict.ok:
        print(f"audit log verified: {verdict.rows} rows, head {verdict.head[:12]}")
    else:
        where = f" at row {verdict.first_broken_id}" if verdict.first_broken_id is not None else ""
        print(f"audit log BROKEN{where}: {verdict.reason}")
    return 0 if verdict.ok else 1
