"""`eemwatchd check-config -c FILE`: validate the configuration and exit non-zero on errors."""

from __future__ import annotations

import argparse
import sys

from eemwatchd.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eemwatchd.config import load_config  # pydantic: not needed for `--help`

    try:
        # Strict about windows: what is checked here is what the daemon will run with.
        loaded = load_config(args.config, strict_windows=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    cfg = loaded.config
    print(f"{args.config}: OK ({len(cfg.servers)} servers, {len(cfg.routers)} routers)")
    return 0
