"""`eemwatchd check-config -c FILE`: validate the configuration and exit non-zero on errors."""

from __future__ import annotations

import argparse
import json
import sys

from eemwatchd.commands.arguments import add_config_argument
from eemwatchd.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Validate a configuration file as the daemon will run it: every problem at once, each with its key "
        "path and the fix; warnings (a secret written in clear) too. Contacts no server or router. Exit 0 when "
        "it is usable, 2 when the file is missing or invalid."
    )
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eemwatchd.config import load_config  # pydantic: not needed for `--help`

    try:
        # Strict about windows: what is checked here is what the daemon will run with.
        loaded = load_config(args.config, strict_windows=True)
    except ConfigError as exc:
        if args.json:
            _emit_json(args.config, ok=False, problems=exc.problems)
        else:
            print(exc, file=sys.stderr)
        return 2
    cfg = loaded.config
    # what passed the pre-staging checks, so the operator sees what the routers will get
    staged = [{"server": server.name, "file": str(entry.file), "sha256": cert.sha256, "subject": cert.subject,
               "not_after": cert.not_after.isoformat(), "text": cert.describe()}
              for server in cfg.servers for entry in server.prestage for cert in entry.certificates]
    if args.json:
        _emit_json(args.config, ok=True, warnings=loaded.warnings, servers=len(cfg.servers),
                   routers=len(cfg.routers), prestaged=[{k: v for k, v in s.items() if k != "text"} for s in staged])
        return 0
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK ({len(cfg.servers)} servers, {len(cfg.routers)} routers)")
    for item in staged:
        print(f"  pre-staged for {item['server']}: {item['text']} ({item['file']})")
    return 0


def _emit_json(path: str, *, ok: bool, problems: list[str] | None = None, warnings: list[str] | None = None,
               servers: int | None = None, routers: int | None = None,
               prestaged: list[dict[str, str]] | None = None) -> None:
    document = {"config": path, "ok": ok, "problems": problems or [], "warnings": warnings or [],
                "servers": servers, "routers": routers, "prestaged": prestaged or []}
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
