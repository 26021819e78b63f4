"""`eemwatchd onboard -c FILE --router NAME ...`: set up a router's EEM mail, install its trust, prove it works."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from eemwatchd.commands.arguments import add_config_argument, add_shard_argument
from eemwatchd.errors import StateLocked

if TYPE_CHECKING:
    from eemwatchd.adapters.store import Store
    from eemwatchd.commands.progress import WaitProgress
    from eemwatchd.commands.runtime import Scope
    from eemwatchd.config import Config
    from eemwatchd.reconcile.onboard import OnboardRequest, OnboardResult, WaitStatus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render the EEM mail setup a router needs (`_email_server`, `_email_to`, `_email_from`, an "
        "`event none` applet with a `secure tls` mail action and a success line), refuse setups that cannot "
        "work before touching the router, configure it, then install the server's CAs, test-fire and save "
        "exactly as `apply` does. Existing values that differ are kept unless --replace. When the server's chain "
        "is not confirmed yet (policy.confirmations), it says so and fetches the chain again at the spacing the "
        "policy requires until it is (a countdown on a terminal), for at most --wait-max, before touching the "
        "router. While the daemon runs (it holds the state), the daemon does the onboarding, through its control "
        "socket beside the state database. Exit 0 when the router mails (proven, saved), 3 when the chain is "
        "still unconfirmed (nothing wrong: run it again later), 1 when refused or failed, 75 when another "
        "eemwatchd applies."
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
    parser.add_argument("--no-wait", action="store_true",
                        help="when the server's chain is not confirmed yet, configure EEM at once and leave its "
                             "trust and the test mail to apply or the daemon (exit 3), instead of waiting")
    parser.add_argument("--wait-max", type=_wait_seconds, metavar="DURATION",
                        help="wait at most this long (e.g. 90s, 45m) for the chain's confirmations; default: "
                             "policy.confirmations x half servers[].interval, plus the server's timeouts.total")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_shard_argument(parser)
    parser.set_defaults(func=run)


def _say(text: str) -> None:
    print(f"eemwatchd onboard: {text}", file=sys.stderr, flush=True)


def _wait_seconds(text: str) -> float:
    from eemwatchd.config.model import parse_duration

    try:
        seconds = float(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("--wait-max must be more than 0")
    return seconds


def _request(args: argparse.Namespace, *, dry_run: bool) -> OnboardRequest:
    from eemwatchd.reconcile.onboard import OnboardRequest

    return OnboardRequest(router=args.router, server=args.server, to=tuple(args.to), mail_from=args.mail_from,
                          applet=args.applet, dry_run=dry_run, replace=args.replace, wait=not args.no_wait,
                          wait_max=args.wait_max)


def _progress_wanted(*, as_json: bool) -> bool:
    from eemwatchd.commands.progress import progress_wanted  # not for `--help`: no command imports another

    return progress_wanted(as_json=as_json)


class WaitView:
    """How the wait for a chain's confirmations looks: on its first news a line on stderr says why and for how
    long; on a terminal (not with --json) a live countdown follows (rich), elsewhere nothing more."""

    def __init__(self, *, live: bool) -> None:
        self._live = live
        self._stack = contextlib.ExitStack()
        self._progress: WaitProgress | None = None
        self._told = False

    def __call__(self, status: WaitStatus) -> None:
        if not self._told:
            self._told = True
            _say(f"server {status.server}'s chain is not confirmed yet (seen {status.seen} of {status.needed} "
                 f"times; policy.confirmations, sightings at least half servers[].interval apart): fetching it "
                 f"again when a sighting counts, for at most {status.limit:.0f}s (--wait-max; --no-wait skips "
                 "the wait); the router is not touched until then")
            if self._live:
                from eemwatchd.commands.progress import WaitProgress

                self._progress = self._stack.enter_context(
                    WaitProgress.shown(f"waiting for {status.server}'s chain:", seconds=status.limit))
        if self._progress is not None:
            self._progress.update(status.describe())

    def remote(self, status: Mapping[str, Any]) -> None:
        from eemwatchd.reconcile.onboard import WaitStatus

        self(WaitStatus(**status))

    def close(self) -> None:
        self._stack.close()


async def _onboard(config: Config, store: Store, request: OnboardRequest, *, show_secrets: bool,
                   readonly: bool = False, on_wait: WaitView | None = None) -> tuple[OnboardResult, int | None]:
    from eemwatchd.commands.runtime import run_stoppable
    from eemwatchd.reconcile.onboard import Onboarder

    onboarder = Onboarder(config, store, show_secrets=show_secrets, readonly=readonly, on_wait=on_wait)
    return await run_stoppable(onboarder.reconciler.request_stop, onboarder.onboard(request), announce=_say)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at module level: scrapli, asyncssh and pydantic are not needed for `--help`.
    from eemwatchd.commands.runtime import confirm, load, lock_held, open_store
    from eemwatchd.errors import EXIT_LOCKED

    scope = load(args)
    if scope is None:
        return 2
    config = scope.config
    if args.dry_run:
        return _dry_run(args, scope)
    if not args.yes and not sys.stdin.isatty():
        _say("stdin is not a terminal; review with --dry-run, then run with --yes")
        return 2
    writer = scope.lock(purpose="onboard", routers=[args.router])
    try:
        writer.acquire()
    except StateLocked as held:
        from eemwatchd.daemon.control import control_path_of_lock

        control = control_path_of_lock(held.path)
        if held.purpose != "daemon" or not control.exists():
            _say(str(held))
            return EXIT_LOCKED
        return _through_daemon(args, scope, control, held)
    view = WaitView(live=_progress_wanted(as_json=args.json))
    try:
        with lock_held(writer), open_store(config) as store:
            if not args.yes:
                preview, _ = asyncio.run(_onboard(config, store, _request(args, dry_run=True),
                                                  show_secrets=args.show_secrets))
                print_result(preview, out=sys.stderr)
                if not preview.ok:
                    return _emit(preview.to_json(), as_json=args.json, printed=True)
                if not confirm("Configure the router? [y/N] "):
                    _say("nothing changed")
                    return 1
            result, stopped = asyncio.run(_onboard(config, store, _request(args, dry_run=False),
                                                   show_secrets=args.show_secrets, on_wait=view))
    finally:
        view.close()
    code = _emit(result.to_json(), as_json=args.json)
    return stopped if stopped is not None else code


def _dry_run(args: argparse.Namespace, scope: Scope) -> int:
    """Like plan: it records the server's chain only when it can take the writer lock; it never changes the
    router, and under another writer it waits for nobody (the lock is not needed to read)."""
    from eemwatchd.commands.runtime import open_store

    lock = scope.lock(purpose="onboard --dry-run", routers=[args.router])
    try:
        lock.acquire()
    except StateLocked:
        readonly = True
        _say("another eemwatchd holds the state: showing what would be sent; nothing recorded")
    else:
        readonly = False
    try:
        with open_store(scope.config) as store:
            result, _ = asyncio.run(_onboard(scope.config, store, _request(args, dry_run=True),
                                             show_secrets=args.show_secrets, readonly=readonly))
    finally:
        lock.release()
    return _emit(result.to_json(), as_json=args.json)


def _through_daemon(args: argparse.Namespace, scope: Scope, control: Path, held: StateLocked) -> int:
    """The daemon holds the state for its life: hand it the router (its control socket), follow its wait and
    print its result as a local run would."""
    from eemwatchd.commands.runtime import EXIT_SIGNAL, confirm
    from eemwatchd.daemon.control import ControlError

    if not args.yes:
        if _dry_run(args, scope) != 0:
            return 1
        if not confirm("Have the daemon configure the router? [y/N] "):
            _say("nothing changed")
            return 1
    _say(f"the eemwatchd daemon (pid {held.pid}) holds the state: it onboards router {args.router} (control "
         f"socket {control}); Ctrl-C stops it between steps")
    view = WaitView(live=_progress_wanted(as_json=args.json))
    try:
        document, stopped = asyncio.run(_ask_daemon(control, _request(args, dry_run=False),
                                                    show_secrets=args.show_secrets, on_wait=view.remote))
    except ControlError as exc:
        _say(str(exc))
        return exc.exit_code
    finally:
        view.close()
    code = _emit(document, as_json=args.json)
    return EXIT_SIGNAL[stopped] if stopped is not None else code


async def _ask_daemon(control: Path, request: OnboardRequest, *, show_secrets: bool,
                      on_wait: Callable[[Mapping[str, Any]], None]) -> tuple[dict[str, Any], signal.Signals | None]:
    """The daemon's answer, and the signal that asked it to stop (if one did)."""
    from eemwatchd.commands.runtime import EXIT_SIGNAL
    from eemwatchd.daemon.control import onboard_through

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not received:
            _say(f"{sig.name} received: the daemon finishes the step under way, then stops onboarding (nothing "
                 "that was not test-fired is saved)")
        received.append(sig)
        stop.set()

    for sig in EXIT_SIGNAL:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        document = await onboard_through(control, request, show_secrets=show_secrets, on_wait=on_wait, stop=stop)
    finally:
        for sig in EXIT_SIGNAL:
            loop.remove_signal_handler(sig)
    return document, received[0] if received else None


# Exit status (README): 0 onboarded (in sync, proven by a test mail, saved); 3 not yet, and nothing is wrong: the
# server's chain awaits its confirmations (the wait ran out, or --no-wait); 1 refused or failed.
def _emit(document: Mapping[str, Any], *, as_json: bool, printed: bool = False) -> int:
    if as_json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not printed:
        print_result(document, out=sys.stdout)
    if document["ok"]:
        return 0
    return 3 if document.get("awaiting_confirmation") else 1


def print_result(result: OnboardResult | Mapping[str, Any], *, out: TextIO) -> None:
    """The result in words, from its JSON document (a local run's, or the one the daemon sent back)."""
    doc = result.to_json() if not isinstance(result, Mapping) else result
    head = f"router {doc['router']}"
    if doc["server"]:
        head += f", server {doc['server']}, applet {doc['applet']}"
    print(head, file=out)
    refused = bool(doc["refusals"])
    for refusal in doc["refusals"]:
        print(f"  REFUSED ({refusal['reason']}): {refusal['message']}\n    fix: {refusal['fix']}", file=out)
    planned = bool(doc["lines"])  # the router was read and its EEM setup planned
    if planned:
        if doc["dry_run"] or refused:
            print("  configuration the router needs:", file=out)
            for line in doc["lines"]:
                print(f"    {line}", file=out)
        print("  difference with the router:", file=out)
        for line in doc["diff"]:
            print(f"    {line}", file=out)
    if refused:
        print("  nothing was sent to the router", file=out)
    if doc["error"]:
        print(f"  ERROR: {doc['error']}", file=out)
    if doc.get("unconfirmed"):
        print(f"  NOT CONFIRMED: {doc['unconfirmed']}", file=out)
    elif doc["sent"]:
        print(f"  sent {len(doc['sent'])} EEM configuration line(s)", file=out)
    elif planned and not refused and not doc["dry_run"]:
        print("  EEM setup: nothing to change", file=out)
    _print_outcome(doc, refused=refused, out=out)


def _print_outcome(doc: Mapping[str, Any], *, refused: bool, out: TextIO) -> None:
    if doc.get("waited_seconds"):
        print(f"  waited {doc['waited_seconds']:.0f}s for the server's chain to be confirmed", file=out)
    if doc["trust"] is not None:
        from eemwatchd.commands.report import print_router

        print_router(doc["trust"], out=out)
    for note in doc["notes"]:
        print(f"  note: {note}", file=out)
    if doc["dry_run"] and not refused and doc["error"] is None:
        print("  dry run: nothing was changed", file=out)
