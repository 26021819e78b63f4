"""An independent prober: a test mail from every lab router every few seconds, counted where it lands.

It is not eemwatchd's test-fire: it runs its own applet (``PROBE``, the same mail action as the operator's applet,
configured by the lab) with `event manager run` through the lab device, and judges each run by what the lab saw:
the router's own mail outcome (the TLS handshake with its trustpoints, the SMTP dialogue) and the message that
arrived at the lab SMTP server. So it says whether the routers could mail at each moment of a rotation, whatever
eemwatchd believes. At most one probe per router is in flight; a probe still running at the next tick is waited
for, not doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from eemwatchd_lab.router.server import LabDevice

PROBE_APPLET = "PROBE"
PROBE_SUBJECT = "lab probe"


def probe_applet(smtp_port: int, *, maxrun: int = 20) -> list[str]:
    """The probe applet's config lines: mail through the router's `_email_server`, like the operator's applet."""
    return [
        f"event manager applet {PROBE_APPLET}",
        f" event none maxrun {maxrun}",
        f' action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" subject "{PROBE_SUBJECT}" '
        f'body "a probe mail from the lab" secure tls port {smtp_port}',
    ]


@dataclass(frozen=True)
class ProbeResult:
    router: str
    fired: float  # loop time the probe was started
    ended: float  # loop time the router's job ended
    ok: bool  # the router's job ran to its end and its mail was delivered


@dataclass
class Prober:
    """Fires ``PROBE`` on each device every ``every`` seconds while running; ``results`` in the order they ended."""

    devices: Sequence[LabDevice]
    every: float = 1.0
    on_result: Callable[[ProbeResult], None] | None = None
    results: list[ProbeResult] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _busy: set[str] = field(default_factory=set)

    def start(self) -> Prober:
        if self._task is not None:
            return self
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lab-prober")
        return self

    async def stop(self, *, drain: float = 30.0) -> None:
        """Stop firing; wait (up to ``drain`` seconds) for the probes in flight to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while self._busy and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            tick = loop.time()
            for device in self.devices:
                self._fire(device)
            await asyncio.sleep(max(0.0, tick + self.every - loop.time()))

    def _fire(self, device: LabDevice) -> None:
        name = device.name
        if name in self._busy:
            return
        loop = asyncio.get_running_loop()
        fired = loop.time()

        def done(ok: bool) -> None:
            self._busy.discard(name)
            result = ProbeResult(name, fired, loop.time(), ok)
            self.results.append(result)
            if self.on_result is not None:
                self.on_result(result)

        refused = device.state.run_applet(PROBE_APPLET, on_done=done)
        if refused is not None:  # no probe applet: a failure, said once per tick like any other
            self.results.append(ProbeResult(name, fired, fired, False))
            return
        self._busy.add(name)

    # --- what they show ---------------------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)

    def since(self, moment: float) -> list[ProbeResult]:
        return [r for r in self.results if r.fired >= moment]

    def largest_gap(self, router: str, start: float, end: float) -> float:
        """The longest time between two probes of ``router`` fired within [start, end] (and the ends)."""
        fired = sorted(r.fired for r in self.results if r.router == router and start <= r.fired <= end)
        points = [start, *fired, end]
        return max(b - a for a, b in itertools.pairwise(points))

    def failure_windows(self) -> dict[str, tuple[float, float]]:
        """Per router, from the first failed probe's start to the start of the first successful probe after its
        last failure (or that failure's end when none followed): how long its mail did not work, to within one
        probe interval."""
        out: dict[str, tuple[float, float]] = {}
        for name in sorted({r.router for r in self.results}):
            mine = sorted((r for r in self.results if r.router == name), key=lambda r: r.fired)
            failures = [r for r in mine if not r.ok]
            if not failures:
                continue
            last = failures[-1]
            after = next((r.fired for r in mine if r.ok and r.fired > last.fired), last.ended)
            out[name] = (failures[0].fired, after)
        return out
