"""`eemwatchd run -c FILE`: the daemon (a schedule, /metrics, /healthz, /readyz, a status page, signals)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from eemwatchd.commands.arguments import add_config_argument
from eemwatchd.logformat import LOG_FORMATS, configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Observe every server and reconcile every router on a schedule (servers[].interval, "
        "routers[].interval), with a first pass at start. SIGHUP reloads the configuration; SIGTERM or SIGINT "
        "stop after the router steps under way. Serves /metrics, /healthz, /readyz and a status page on "
        "metrics.listen. Holds the state lock for its lifetime, and listens on <state_path>.control for "
        "`eemwatchd onboard`, which hands it the routers to onboard."
    )
    add_config_argument(parser, type=Path)
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text", help="text (default) or json lines")
    parser.add_argument("--plan-only", action="store_true",
                        help="observe and report, never change a router (a dry run of the daemon)")
    parser.add_argument("--shard", metavar="K/N",
                        help="run instance K of N: only the routers rendezvous hashing gives it (overrides shard:)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides metrics.listen (instances on one machine)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eemwatchd.daemon.service import Daemon, DaemonOptions  # imported only for this command

    configure_logging(verbosity=max(args.verbose, 1), fmt=args.log_format)
    if args.verbose < 1:
        # the narrative tells each job's steps when it ends; their live log is for -v
        logging.getLogger("eemwatchd.steps").setLevel(logging.WARNING)
    options = DaemonOptions(config_path=args.config, plan_only=args.plan_only, shard=args.shard, listen=args.listen)
    return asyncio.run(Daemon(options).run())
