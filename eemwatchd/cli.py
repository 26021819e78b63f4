"""The command line: `eemwatchd <command>`. Each command lives in eemwatchd/commands/<name>.py; the lab's commands
(`lab`, `lab-router`) come from the separate `eemwatchd-lab` distribution through the `eemwatchd.commands` entry
points, so the product never imports the lab."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eemwatchd import __version__
from eemwatchd.errors import EemwatchdError
from eemwatchd.logformat import configure_logging

# The entry-point group through which another distribution (the lab) adds commands.
PLUGIN_GROUP = "eemwatchd.commands"
LAB_INSTALL = "pip install 'eemwatchd[lab]' (from a checkout: ./dev installs it)"


@dataclass(frozen=True)
class Command:
    """A command as `eemwatchd --help` lists it. Its module is imported only when the command is parsed: it has
    `add_arguments(parser)` (which sets `func(args) -> int`) and imports its heavy libraries inside `run`.
    ``module`` None: the command comes from the entry point of the same name in PLUGIN_GROUP."""

    name: str
    help: str
    module: str | None


# A static table, so `eemwatchd --help` imports no command module (the lab pulls in asyncssh and aiosmtpd,
# plan scrapli, check-config pydantic: 0.6 s before the parser was built lazily; BENCHMARKS.md).
COMMANDS: tuple[Command, ...] = (
    Command("fetch", "show and verify the certificate chain an SMTP server sends", "eemwatchd.commands.fetch"),
    Command("check-config", "validate a configuration file and list every problem", "eemwatchd.commands.check_config"),
    Command("lab", "a lab SMTP server, simulated IOS XE routers and the daemon keeping them mailing through rotations "
            "(needs the eemwatchd-lab extra)", None),
    Command("lab-router", "run simulated IOS XE routers over SSH on 127.0.0.1 (needs the eemwatchd-lab extra)", None),
    Command("plan", "show the trustpoint changes each router needs (reads routers only)", "eemwatchd.commands.plan"),
    Command("apply", "add and retire trustpoints on the routers (blue-green, test-fired)", "eemwatchd.commands.apply"),
    Command("audit", "print the audit log of router changes", "eemwatchd.commands.audit"),
    Command("run", "run as a daemon: fetch chains, keep routers in sync, serve metrics and a status page",
            "eemwatchd.commands.run"),
    Command("onboard", "set up a router's EEM mail (environment, applet, trust), test-fire it and save",
            "eemwatchd.commands.onboard"),
)


class CommandParser(argparse.ArgumentParser):
    """A command's parser that adds its arguments (importing the command's module) the first time it is used:
    when argparse hands it the command's arguments, or prints its help or usage."""

    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def _load(self) -> None:
        add, self.add_arguments = self.add_arguments, None
        if add is not None:
            add(self)

    def parse_known_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        self._load()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._load()
        return super().format_usage()

    def format_help(self) -> str:
        self._load()
        return super().format_help()


def _adder(command: Command) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        module = command.module or _plugin_module(command.name)
        if module is None:
            parser.set_defaults(func=lambda _args: _not_installed(command.name))
            parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            return
        importlib.import_module(module).add_arguments(parser)

    return add


def _plugin_module(name: str) -> str | None:
    """The module of the command ``name`` another installed distribution provides, if any."""
    from importlib.metadata import entry_points

    found = entry_points(group=PLUGIN_GROUP, name=name)
    return next((ep.value for ep in found), None)


def _not_installed(name: str) -> int:
    print(f"eemwatchd {name}: the lab is not installed; install it with: {LAB_INSTALL}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eemwatchd",
        description="Keeps the EEM e-mail alerts of Cisco IOS XE routers working.",
    )
    parser.add_argument("--version", action="version", version=f"eemwatchd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for command in COMMANDS:
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        # -v after the command too (`eemwatchd plan -v`): counted apart, added to the one before it in main()
        command_parser.add_argument("-v", "--verbose", dest="command_verbose", action="count", default=0,
                                    help="more log output (-vv for debug)")
        command_parser.add_arguments = _adder(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose += getattr(args, "command_verbose", 0)
    configure_logging(verbosity=args.verbose, fmt="text")
    try:
        code: int = args.func(args)
    except EemwatchdError as exc:
        print(f"eemwatchd {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
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
