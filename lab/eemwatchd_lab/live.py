"""`eemwatchd lab` (live): the daemon keeps the lab's routers mailing while the provider rotates its chain.

The lab SMTP server and routers run here; `eemwatchd run`'s daemon runs on the lab's config in this process,
with its status page and /metrics. The provider rotates every ``rotate_every`` seconds (first a new
intermediate, then a new root cross-signed by the old one, and so on), or when `eemwatchd lab rotate --dir DIR`
drops a request file into the lab's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from eemwatchd.daemon.service import Daemon, DaemonOptions
from eemwatchd_lab.scenario import Lab, Say, wan_note
from eemwatchd_lab.wan import Wan

ROTATE_REQUEST = "rotate.request"


def request_rotation(state_dir: Path) -> Path:
    """Ask a running live lab in ``state_dir`` to rotate now (it polls for this file)."""
    path = state_dir / ROTATE_REQUEST
    path.write_text("rotate\n", encoding="ascii")
    return path


def rotate(lab: Lab, number: int) -> str:
    """Odd rotations bring a new intermediate, even ones a new root; the lab serves the new chain."""
    if number % 2:
        lab.pki.rotate_intermediate(f"Lab WR{number}")
        what = f"a new intermediate (Lab WR{number})"
    else:
        lab.pki.rotate_root(f"Lab Root R{number}", f"Lab WE{number}")
        what = f"a new root (Lab Root R{number}, cross-signed by the old one)"
    lab.serve()
    return what


async def _rotations(lab: Lab, say: Say, every: float) -> None:
    request = lab.state_dir / ROTATE_REQUEST
    number = 0
    waited = 0.0
    while True:
        await asyncio.sleep(0.5)
        waited += 0.5
        asked = request.exists()
        if not asked and (every <= 0 or waited < every):
            continue
        with contextlib.suppress(FileNotFoundError):
            request.unlink()
        number += 1
        waited = 0.0
        say(f"\n== rotation {number}: the provider now serves {rotate(lab, number)}: "
            + " <- ".join(c.common_name for c in lab.pki.served))


async def run_live(state_dir: Path, *, routers: int, rotate_every: float, say: Say, bare: int = 0,
                   wan: Wan | None = None) -> int:
    """Run the lab and the daemon until SIGINT/SIGTERM; the daemon's exit code."""
    async with Lab(state_dir, routers=routers, say=say, live=True, bare=bare, wan=wan) as lab:
        say(f"lab SMTP server (STARTTLS, AUTH) on 127.0.0.1:{lab.smtp.port}, serving "
            + " <- ".join(c.common_name for c in lab.pki.served))
        for device in lab.fleet:
            say(f"lab router {device.name} (IOS XE simulator) on 127.0.0.1:{device.port}{wan_note(device.wan)}, "
                f"password in {state_dir / 'router.password'}")
        say(f"eemwatchd config: {lab.config_path}")
        when = f"every {rotate_every:g}s" if rotate_every > 0 else "never by itself"
        say(f"the provider rotates {when}; rotate now with: eemwatchd lab rotate --dir {state_dir}")
        for name in lab.bare_routers:
            say(f"router {name} has no EEM setup at all; watch it onboarded with: "
                f"eemwatchd onboard -c {lab.config_path} --router {name} --to noc@lab.example --yes")
        say("Ctrl-C stops the daemon and the lab\n")

        def ready(url: str) -> None:
            say(f"\nstatus page {url}/   metrics {url}/metrics   (first pass done)\n")

        rotations = asyncio.create_task(_rotations(lab, say, rotate_every))
        for name in ("eemwatchd.narrative", "eemwatchd.alerts"):  # the story and the alerts it raises
            logging.getLogger(name).setLevel(logging.INFO)
        try:
            return await Daemon(DaemonOptions(config_path=lab.config_path, on_ready=ready)).run()
        finally:
            rotations.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rotations
