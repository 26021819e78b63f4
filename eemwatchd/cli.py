"""The command line: `eemwatchd <command>`. Each command lives in eemwatchd/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from eemwatchd import __version__
from eemwatchd.errors import EemwatchdError
from eemwatchd.logformat import configure_logging

# Each module has `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS: tuple[str, ...] = (
    "eemwatchd.commands.fetch",
    "eemwatchd.commands.check_config",
    "eemwatchd.commands.lab",
    "eemwatchd.commands.lab_router",
    "eemwatchd.commands.plan",
    "eemwatchd.commands.apply",
    "eemwatchd.commands.audit",
    "eemwatchd.commands.run",
    "eemwatchd.commands.onboard",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eemwatchd",
        description="Keeps the EEM e-mail alerts of Cisco IOS XE routers working.",
    )
    parser.add_argument("--version", action="version", version=f"eemwatchd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbosity=args.verbose, fmt="text")
    try:
        code: int = args.func(args)
    except EemwatchdError as exc:
        print(f"eemwatchd {args.command}: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `eemwatchd audit | head`: the reader left; say nothing more (and nothing on stderr at exit)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
