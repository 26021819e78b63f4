"""The lab's commands: `eemwatchd lab` and `eemwatchd lab-router` (entry points in the eemwatchd.commands group)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eemwatchd_lab.wan import Wan


def add_wan_arguments(parser: argparse.ArgumentParser) -> None:
    """`--rtt MS [--jitter MS]`: a WAN in front of every lab router (shared with `eemwatchd lab`)."""
    parser.add_argument("--rtt", type=float, default=0.0, metavar="MS",
                        help="put a WAN in front of every router: each byte is delayed by half this round-trip "
                             "time each way (order kept) and a TCP connect costs a round trip (default 0: none)")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="MS",
                        help="with --rtt: up to this much extra delay per direction, uniform (order still kept)")


def wan_from_arguments(args: argparse.Namespace, command: str) -> tuple[Wan | None, str | None]:
    """The Wan for --rtt/--jitter, or None; a problem names the option and the fix."""
    from eemwatchd_lab.wan import Wan

    if args.jitter and not args.rtt:
        return None, f"eemwatchd {command}: --jitter needs --rtt"
    if not args.rtt:
        return None, None
    if not 0 < args.rtt <= 10000 or not 0 <= args.jitter <= 10000:
        return None, f"eemwatchd {command}: --rtt must be 0-10000 ms and --jitter 0-10000 ms"
    return Wan.from_ms(args.rtt, args.jitter), None
