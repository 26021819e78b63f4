"""`eemwatchd lab` (live): the daemon keeps the lab's routers mailing while the provider rotates its chain.

The lab SMTP server and routers run here; `eemwatchd run`'s daemon runs on the lab's config in this process,
with its status page and /metrics. The provider rotates every ``rotate_every`` seconds (odd rotations: a new
intermediate; even ones: the provider moves to the root it announced, which nothing the routers hold signed), or
when `eemwatchd lab rotate --dir DIR` drops a request file into the lab's directory. An independent prober
(probe.py) sends a test mail from every router every ``probe_every`` seconds and counts the failures: with
``prestage`` the routers hold the announced root before the move and none fails; without, they cannot mail from
the moment the new chain is served until eemwatchd confirmed it and installed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from eemwatchd.daemon.service import Daemon, DaemonOptions
from eemwatchd_lab.probe import Prober, ProbeResult
from eemwatchd_lab.scenario import Lab, Say, wan_note
from eemwatchd_lab.wan import Wan

ROTATE_REQUEST = "rotate.request"


def request_rotation(state_dir: Path) -> Path:
    """Ask a running live lab in ``state_dir`` to rotate now (it polls for this file)."""
    path = state_dir / ROTATE_REQUEST
    path.write_text("rotate\n", encoding="ascii")
    return path


def rotate(lab: Lab, number: int) -> str:
    """Odd rotations bring a new intermediate, even ones move to the announced root; the lab serves the new chain.
    With pre-staging, the file then names the provider's next announced root and the daemon reloads its config."""
    if number % 2:
        lab.pki.rotate_intermediate(f"Lab WR{number}")
        what = f"a new intermediate (Lab WR{number})"
    else:
        moved = lab.pki.move_to_next_root(f"Lab WE{number}")
        what = (f"a chain under its announced root {moved.common_name}, sent on top (nothing the routers held "
                "before signed it)")
    lab.serve()
    if number % 2 == 0 and lab.prestage:
        what += f"; it announces {lab.pki.next_root.cert.common_name}, now in {lab.prestage_path.name}"
        _reload_daemon()
    return what


def _reload_daemon() -> None:
    """SIGHUP to this process: the daemon running here reloads its config (and so reads the pre-staged file)."""
    if signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        os.kill(os.getpid(), signal.SIGHUP)


class ProbeNarrative:
    """Tells what the prober sees: a router that stops mailing, one that mails again, and the count per rotation."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.failing: dict[str, list[ProbeResult]] = {}
        self.sent = self.failed = 0  # since the last rotation (or the start)
        self.rotating = False  # the first rotation happened
        self.rotations_sent = self.rotations_failed = 0  # since the first rotation

    def heard(self, result: ProbeResult) -> None:
        self.sent += 1
        self.rotations_sent += self.rotating
        if not result.ok:
            self.failed += 1
            self.rotations_failed += self.rotating
            if result.router not in self.failing:
                self.say(f"probe: {result.router} CANNOT MAIL (its test mail was not delivered)")
            self.failing.setdefault(result.router, []).append(result)
        elif result.router in self.failing:
            failures = self.failing.pop(result.router)
            self.say(f"probe: {result.router} mails again after {result.fired - failures[0].fired:.0f}s, "
                     f"{len(failures)} probe mail(s) failed")

    def period(self, what: str) -> None:
        self.say(f"probe mails {what}: {self.sent} sent, {self.failed} failed")
        self.sent = self.failed = 0
        self.rotating = True

    def summary(self, prestage: bool) -> str:
        if not self.rotating:
            return f"probe mails: {self.sent} sent, {self.failed} failed (no rotation yet)"
        why = ""
        if prestage:
            why = " (the routers held each announced root before the provider moved to it)"
        elif self.rotations_failed:
            why = (" (a move to a root the routers did not hold stops their mail until eemwatchd has confirmed the "
                   "new chain and installed it; --prestage avoids that)")
        return f"probe mails through the rotations: {self.rotations_sent} sent, {self.rotations_failed} failed{why}"


async def _rotations(lab: Lab, say: Say, every: float, narrative: ProbeNarrative | None = None) -> None:
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
        if narrative is not None:
            narrative.period("before rotation" if number == 1 else f"since rotation {number - 1}")
        say(f"\n== rotation {number}: the provider now serves {rotate(lab, number)}: "
            + " <- ".join(c.common_name for c in lab.pki.served))


async def run_live(state_dir: Path, *, routers: int, rotate_every: float, say: Say, bare: int = 0,
                   wan: Wan | None = None, prestage: bool = False, probe_every: float = 2.0) -> int:
    """Run the lab and the daemon until SIGINT/SIGTERM; the daemon's exit code."""
    async with Lab(state_dir, routers=routers, say=say, live=True, bare=bare, wan=wan, prestage=prestage) as lab:
        say(f"lab SMTP server (STARTTLS, AUTH) on 127.0.0.1:{lab.smtp.port}, serving "
            + " <- ".join(c.common_name for c in lab.pki.served))
        announced = lab.pki.next_root.cert
        say(f"the provider announced its next root {announced.common_name} [{announced.short_fingerprint}] "
            + (f"and eemwatchd pre-stages it ({lab.prestage_path.name} in servers[0].prestage)" if prestage else
               "(not pre-staged: run with --prestage to install it on the routers before the move)"))
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

        narrative = ProbeNarrative(say)
        mailing = [d for d in lab.fleet if d.name not in lab.bare_routers]
        prober = Prober(mailing, every=probe_every, on_result=narrative.heard) if probe_every > 0 else None

        def ready(url: str) -> None:
            say(f"\nstatus page {url}/   metrics {url}/metrics   (first pass done)\n")
            if prober is not None:
                say(f"from now on a probe mail from every router every {probe_every:g}s (`event manager run PROBE`, "
                    "independent of eemwatchd's test-fires)")
                prober.start()

        rotations = asyncio.create_task(_rotations(lab, say, rotate_every, narrative if prober else None))
        for name in ("eemwatchd.narrative", "eemwatchd.alerts"):  # the story and the alerts it raises
            logging.getLogger(name).setLevel(logging.INFO)
        try:
            return await Daemon(DaemonOptions(config_path=lab.config_path, on_ready=ready)).run()
        finally:
            rotations.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rotations
            if prober is not None:
                await prober.stop(drain=5.0)
                say(narrative.summary(prestage))
