"""`eemwatchd lab-router --count N --state-dir DIR`: run simulated IOS XE routers on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from eemwatchd_lab.commands import add_wan_arguments, wan_from_arguments

if TYPE_CHECKING:
    from eemwatchd_lab.router import Fleet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=1, help="number of routers (default 1)")
    parser.add_argument("--state-dir", required=True, type=Path, metavar="DIR",
                        help="one sub-directory per router: host key and startup-config")
    parser.add_argument("--base-port", type=int, default=0, metavar="P",
                        help="router i listens on P+i (default 0: any free port, printed at start)")
    parser.add_argument("--username", default="admin", help="privilege 15 user (default admin)")
    parser.add_argument("--password-env", default="EEMWATCHD_LAB_PASSWORD", metavar="VAR",
                        help="environment variable holding the password (default EEMWATCHD_LAB_PASSWORD; "
                             "falls back to 'admin')")
    parser.add_argument("--lenient", action="store_true",
                        help="accept a chain the way OpenSSL would, not the strict IOS way")
    add_wan_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 1000:
        print("eemwatchd lab-router: --count must be 1-1000", file=sys.stderr)
        return 2
    if args.base_port and not 1024 <= args.base_port <= 65535 - args.count:
        print("eemwatchd lab-router: --base-port must leave room for --count ports above 1024", file=sys.stderr)
        return 2
    wan, problem = wan_from_arguments(args, "lab-router")
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    from eemwatchd_lab.router import Fleet, User  # asyncssh: not needed for `--help`

    password = os.environ.get(args.password_env, "admin")
    fleet = Fleet.numbered(args.count, args.state_dir, base_port=args.base_port,
                           users=(User(args.username, password),), lenient=args.lenient, wan=wan)
    return asyncio.run(_serve(fleet))


async def _serve(fleet: Fleet) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with fleet:
        for lab in fleet:
            print(f"{lab.name}\t127.0.0.1:{lab.port}\t{lab.spec.state_dir}", flush=True)
        if fleet.devices and (wan := next(iter(fleet)).wan) is not None:
            print(f"every router behind a WAN link: round trip {wan.rtt * 1000:g} ms, jitter up to "
                  f"{wan.jitter * 1000:g} ms each way", flush=True)
        print("lab routers running; Ctrl-C stops them (unsaved config is lost, like a reload)", flush=True)
        await stop.wait()
    return 0
