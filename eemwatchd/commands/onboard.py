"""`eemwatchd onboard -c FILE --router NAME ...`: set up a router's EEM mail, install its trust, prove it works."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, TextIO

from eemwatchd.commands.arguments import add_config_argument, add_shard_argument
from eemwatchd.errors import StateLocked

if TYPE_CHECKING:
    from eemwatchd.adapters.store import Store
    from eemwatchd.config import Config
    from eemwatchd.reconcile.onboard import OnboardRequest, OnboardResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render the EEM mail setup a router needs (`_email_server`, `_email_to`, `_email_from`, an "
        "`event none` applet with a `secure tls` mail action and a success line), refuse setups that cannot "
        "work before touching the router, configure it, then install the server's CAs, test-fire and save "
        "exactly as `apply` does. Existing values that differ are kept unless --replace."
    )
    add_config_argument(parser)
    parser.add_argument("--router", required=True, metavar="NAME", help="the router to onboard")
    parser.add_argument("--server", metavar="NAME", help="the server the applet mails through (default: the "
                        "router's only server)")
    parser.add_argument("--to", action="append", default=[], metavar="ADDR",
                        help="a recipient (repeat for more; default: the router's current _email_to)")
    parser.add_argument("--from", dest="mail_from", metavar="ADDR",
                        help="the sender; must be the SMTP account's address (the default)")
    parser.add_argument("--applet", metavar="NAME", help="the applet's name (default: routers[].applet)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the configuration lines and the difference; change nothing")
    parser.add_argument("--replace", action="store_true",
                        help="overwrite an existing applet or _email_* variable that has other values")
    parser.add_argument("--show-secrets", action="store_true",
                        help="show the SMTP password in the printed lines (masked as **** otherwise)")
    parser.add_argument("--yes", action="store_true", help="change the router without asking")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_shard_argument(parser)
    parser.set_defaults(func=run)


def _say(text: str) -> None:
    print(f"eemwatchd onboard: {text}", file=sys.stderr, flush=True)


def _request(args: argparse.Namespace, *, dry_run: bool) -> OnboardRequest:
    from eemwatchd.reconcile.onboard import OnboardRequest

    return OnboardRequest(router=args.router, server=args.server, to=tuple(args.to), mail_from=args.mail_from,
                          applet=args.applet, dry_run=dry_run, replace=args.replace)


async def _onboard(config: Config, store: Store, request: OnboardRequest, *, show_secrets: bool,
                   readonly: bool = False) -> tuple[
        OnboardResult, int | None]:
    from eemwatchd.commands.runtime import run_stoppable
    from eemwatchd.reconcile.onboard import Onboarder

    onboarder = Onboarder(config, store, show_secrets=show_secrets, readonly=readonly)
    return await run_stoppable(onboarder.reconciler.request_stop, onboarder.onboard(request), announce=_say)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at module level: scrapli, asyncssh and pydantic are not needed for `--help`.
    from eemwatchd.commands.runtime import EXIT_LOCKED, confirm, load, lock_held, open_store, take_writer_lock

    scope = load(args)
    if scope is None:
        return 2
    config = scope.config
    if args.dry_run:
        # like plan: it records the server's chain only when it can take the writer lock; it never changes the
        # router, and under another writer it waits for nobody (the lock is not needed to read)
        lock = scope.lock(purpose="onboard --dry-run", routers=[args.router])
        try:
            lock.acquire()
        except StateLocked:
            readonly = True
            _say("another eemwatchd holds the state: showing what would be sent; nothing recorded")
        else:
            readonly = False
        try:
            with open_store(config) as store:
                result, _ = asyncio.run(_onboard(config, store, _request(args, dry_run=True),
                                                 show_secrets=args.show_secrets, readonly=readonly))
        finally:
            lock.release()
        return _emit(result, as_json=args.json)
    if not args.yes and not sys.stdin.isatty():
        _say("stdin is not a terminal; review with --dry-run, then run with --yes")
        return 2
    writer = take_writer_lock(scope, purpose="onboard", say=_say, routers=[args.router])
    if writer is None:
        return EXIT_LOCKED
    with lock_held(writer), open_store(config) as store:
        if not args.yes:
            preview, _ = asyncio.run(_onboard(config, store, _request(args, dry_run=True),
                                              show_secrets=args.show_secrets))
            print_result(preview, out=sys.stderr)
            if not preview.ok:
                return _emit(preview, as_json=args.json, printed=True)
            if not confirm("Configure the router? [y/N] "):
                _say("nothing changed")
                return 1
        result, stopped = asyncio.run(_onboard(config, store, _request(args, dry_run=False),
                                               show_secrets=args.show_secrets))
    code = _emit(result, as_json=args.json)
    return stopped if stopped is not None else code


def _emit(result: OnboardResult, *, as_json: bool, printed: bool = False) -> int:
    if as_json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not printed:
        print_result(result, out=sys.stdout)
    return 0 if result.ok else 1


def print_result(result: OnboardResult, *, out: TextIO) -> None:
    head = f"router {result.router}"
    if result.server:
        head += f", server {result.server}, applet {result.applet}"
    print(head, file=out)
    for refusal in result.refusals:
        print(f"  REFUSED ({refusal.reason}): {refusal.message}\n    fix: {refusal.fix}", file=out)
    if result.plan is not None:
        if result.dry_run or result.refusals:
            print("  configuration the router needs:", file=out)
            for line in result.lines:
                print(f"    {line}", file=out)
        print("  difference with the router:", file=out)
        for line in result.diff:
            print(f"    {line}", file=out)
    if result.refusals:
        print("  nothing was sent to the router", file=out)
    if result.error:
        print(f"  ERROR: {result.error}", file=out)
    if result.sent:
        print(f"  sent {len(result.sent)} EEM configuration line(s)", file=out)
    elif result.plan is not None and not result.refusals and not result.dry_run:
        print("  EEM setup: nothing to change", file=out)
    if result.trust is not None:
        from eemwatchd.commands.report import print_router

        print_router(result.trust, out=out)
    for note in result.notes:
        print(f"  note: {note}", file=out)
    if result.dry_run and not result.refusals and result.error is None:
        print("  dry run: nothing was changed", file=out)
