"""Soak: a real `eemwatchd run` over lab routers while its environment misbehaves, all at once (issue 17).

Run: ./dev soak [--duration 120] [--routers 4] [--skip clock,hup,webhook,clients,disk]
     (or .venv/bin/python benchmarks/soak_daemon.py ...; root for the state disk faults)

The lab SMTP server and the lab routers run in this process (127.0.0.1); the daemon is its own process with the
SMTP server, the routers (plus two that refuse connections, so refresh_failed alerts never stop), a webhook and
its state on a small loop-mounted file system. During --duration seconds it meets, on a fixed timeline:

- wall clock steps (libfaketime on the daemon only): a day ahead, back, fifteen days ahead, back;
- SIGHUP storms: 50 signals in half a second, the config flipping between two versions that change every router;
- a webhook that answers one byte every 5 s, for the whole run;
- slow HTTP clients: 300 half-sent requests held open, twice;
- the state file system frozen (fsfreeze) for 12 s, and full for 10 s (root and loop devices only);
- two provider rotations (a new intermediate), so routers install while all of that happens.

It reports, as a table: job starts later than 1 s and the most overdue job, /healthz answers, SSH sessions at once
per lab router (one writer: never more than 1), the daemon's RSS and open files (flat), its log growth, and whether
every router ends in sync. ``run_soak(SoakOptions(...))`` returns those rows, for a caller that runs several soaks
(the fault schedules of issue 16) and prints them together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from eemwatchd_lab.environment import (
    ProcessSample,
    SlowClients,
    SlowWebhook,
    StateDisk,
    SteppedClock,
    faketime_library,
    sample_process,
)
from eemwatchd_lab.scenario import Lab

DAY = 86400.0
FAULTS = ("clock", "hup", "webhook", "clients", "disk")


@dataclass(frozen=True)
class SummaryRow:
    check: str
    measured: str
    bound: str
    ok: bool | None  # None: not measured (skipped, with the reason in ``measured``)


@dataclass
class SoakOptions:
    duration: float = 120.0
    routers: int = 4
    skip: frozenset[str] = frozenset()
    say: Callable[[str], None] = print
    workdir: Path | None = None


@dataclass
class _Observed:
    health: list[tuple[int, float]] = field(default_factory=list)  # (HTTP code, seconds)
    overdue: float = 0.0
    samples: list[tuple[str, ProcessSample]] = field(default_factory=list)  # (phase, sample)
    store_unwritable_seen: bool = False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def _scrape(base: str) -> list[tuple[str, dict[str, str], float]]:
    code, text = _get(f"{base}/metrics", timeout=5.0)
    if code != 200:
        return []
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            out.append((match["name"], labels, float(match["value"])))
    return out


def _config_variants(lab: Lab, *, port: int, webhook: str | None, state_path: Path | None) -> list[str]:
    document = yaml.safe_load(lab.config_path.read_text())
    document["metrics"] = {"listen": f"127.0.0.1:{port}"}
    document["servers"][0]["interval"] = "2s"
    document["policy"].update({"recent": "10m", "confirmations": 2})
    document["defaults"]["routers"]["interval"] = "10s"
    document["routers"] += [{"name": f"gone{i}", "host": "127.0.0.1", "port": _free_port()} for i in range(2)]
    document["alerts"] = [{"kind": "log"}]
    if webhook is not None:
        document["alerts"].append({"kind": "webhook", "url": webhook, "timeout": "10s"})
    if state_path is not None:
        document["state_path"] = str(state_path)
    variants = []
    for step in ("20s", "21s"):  # differ in every router: each reload gives every router work
        document["defaults"]["routers"]["timeouts"]["step"] = step
        variants.append(yaml.safe_dump(document, sort_keys=False))
    return variants


async def run_soak(options: SoakOptions) -> list[SummaryRow]:
    """Run the soak; the summary rows (see the module's docstring)."""
    say = options.say
    skipped: dict[str, str] = {f: "skipped (--skip)" for f in options.skip}
    if "clock" not in skipped and faketime_library() is None:
        skipped["clock"] = "libfaketime is not installed (Debian: faketime)"
    if "disk" not in skipped:
        why = await asyncio.to_thread(StateDisk.unavailable)
        if why is not None:
            skipped["disk"] = why
    with contextlib.ExitStack() as stack:
        work = options.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eemwatchd-soak-")))
        webhook = stack.enter_context(SlowWebhook(every=5.0)) if "webhook" not in skipped else None
        disk = stack.enter_context(StateDisk(work / "disk", size_mb=32)) if "disk" not in skipped else None
        clock = SteppedClock(work) if "clock" not in skipped else None
        async with Lab(work / "lab", routers=options.routers, say=lambda _t: None, live=True) as lab:
            port = _free_port()
            variants = _config_variants(lab, port=port, webhook=webhook.url if webhook else None,
                                        state_path=disk.mountpoint / "state.db" if disk else None)
            lab.config_path.write_text(variants[0])
            log = work / "daemon.log"
            env = {**os.environ, **(clock.env() if clock else {})}
            with log.open("wb") as out:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "eemwatchd.cli", "run", "-c", str(lab.config_path)], stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            try:
                return await _drive(options, lab, daemon, log, port, variants, clock, disk, skipped, say)
            finally:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.to_thread(daemon.wait, 60)
                    except subprocess.TimeoutExpired:
                        daemon.kill()
                        daemon.wait(10)
                if disk is not None:
                    disk.thaw()
                    disk.free()
    raise AssertionError("unreachable")


async def _drive(options: SoakOptions, lab: Lab, daemon: subprocess.Popen[bytes], log: Path, port: int,
                 variants: Sequence[str], clock: SteppedClock | None, disk: StateDisk | None,
                 skipped: dict[str, str], say: Callable[[str], None]) -> list[SummaryRow]:
    base = f"http://127.0.0.1:{port}"
    names = [d.name for d in lab.fleet]
    if not set(names) <= await _in_sync(base, names, timeout=120, daemon=daemon):
        raise RuntimeError(f"the daemon did not bring the lab in sync:\n{log.read_text()[-3000:]}")
    say(f"soak: {len(names)} lab routers in sync; {options.duration:.0f} s of faults begin "
        f"(skipped: {', '.join(f'{k} ({v})' for k, v in skipped.items()) or 'none'})")
    for device in lab.fleet:
        device.peak_connections = 1 if device.peak_connections else 0
    observed = _Observed()
    log_start, started = log.stat().st_size, time.monotonic()
    duration = options.duration
    # (fraction of the run, fault, what): applied once each, in order
    timeline = [
        (0.10, "hup", "storm"), (0.15, "clock", "+1d"), (0.25, "rotation", "WR8"), (0.30, "clients", "open"),
        (0.35, "clock", "0"), (0.40, "hup", "storm"), (0.45, "clients", "close"), (0.50, "disk", "freeze"),
        (0.55, "clock", "+15d"), (0.60, "disk", "thaw"), (0.62, "hup", "storm"), (0.65, "rotation", "WR9"),
        (0.68, "clock", "0"), (0.70, "clients", "open"), (0.72, "disk", "fill"), (0.80, "disk", "free"),
        (0.82, "clients", "close"), (0.85, "hup", "storm"),
    ]
    faults = _Faults(lab, daemon, port, variants, clock, disk)
    while time.monotonic() - started < duration:
        elapsed = (time.monotonic() - started) / duration
        while timeline and timeline[0][0] <= elapsed:
            _at, fault, what = timeline.pop(0)
            if fault not in skipped:
                await faults.apply(fault, what)
                say(f"  {time.monotonic() - started:6.1f} s  {fault} {what}")
        await _observe_once(base, daemon.pid, observed, "steady" if faults.clients is None else "clients")
        await asyncio.sleep(1.0)
    if faults.clients is not None:
        faults.clients.close()
    if clock is not None:
        clock.step_to(0)
    if disk is not None:
        disk.thaw()
        disk.free()
    # settle: every router back in sync (rotations done, the disk back), then a last look at the process
    in_sync = await _in_sync(base, names, timeout=60, daemon=daemon)
    await asyncio.sleep(3.0)
    await _observe_once(base, daemon.pid, observed, "end")
    minutes = (time.monotonic() - started) / 60
    log_growth = (log.stat().st_size - log_start) / minutes
    page = await asyncio.to_thread(_scrape, base)
    return _summarize(observed, page, lab, names, in_sync, log_growth, skipped, daemon)


class _Faults:
    """The faults of the timeline, applied to the daemon and its world."""

    def __init__(self, lab: Lab, daemon: subprocess.Popen[bytes], port: int, variants: Sequence[str],
                 clock: SteppedClock | None, disk: StateDisk | None) -> None:
        self.lab, self.daemon, self.port, self.variants = lab, daemon, port, variants
        self.clock, self.disk = clock, disk
        self.clients: SlowClients | None = None
        self._flip = 0

    async def apply(self, fault: str, what: str) -> None:
        if fault == "hup":
            await self._storm()
        elif fault == "clock" and self.clock is not None:
            self.clock.step_to({"+1d": DAY, "+15d": 15 * DAY}.get(what, 0.0))
        elif fault == "rotation":
            self.lab.pki.rotate_intermediate(f"Lab {what}")
            self.lab.serve()
        elif fault == "clients" and what == "open":
            self.clients = await asyncio.to_thread(SlowClients("127.0.0.1", self.port, 300).open)
        elif fault == "clients" and self.clients is not None:
            self.clients.close()
            self.clients = None
        elif fault == "disk" and self.disk is not None:
            {"freeze": self.disk.freeze, "thaw": self.disk.thaw, "fill": self.disk.fill, "free": self.disk.free}[what]()

    async def _storm(self) -> None:
        """50 SIGHUPs in half a second, the config flipping every 10."""
        for number in range(50):
            if number % 10 == 0:
                self._flip += 1
                self.lab.config_path.write_text(self.variants[self._flip % 2])
            os.kill(self.daemon.pid, signal.SIGHUP)
            await asyncio.sleep(0.01)


async def _in_sync(base: str, names: Sequence[str], *, timeout: float,
                   daemon: subprocess.Popen[bytes]) -> set[str | None]:
    """The routers in sync once all of ``names`` are, or at ``timeout`` (or when the daemon is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        page = await asyncio.to_thread(_scrape, base)
        synced = {labels.get("router") for n, labels, v in page if n == "eemwatchd_router_in_sync" and v == 1}
        if set(names) <= synced or daemon.poll() is not None or time.monotonic() > deadline:
            return synced
        await asyncio.sleep(1.0)


async def _observe_once(base: str, pid: int, observed: _Observed, phase: str) -> None:
    started = time.monotonic()
    code, _body = await asyncio.to_thread(_get, f"{base}/healthz", 5.0)
    observed.health.append((code, time.monotonic() - started))
    page = await asyncio.to_thread(_scrape, base)
    for name, _labels, value in page:
        if name == "eemwatchd_job_overdue_seconds":
            observed.overdue = max(observed.overdue, value)
        if name == "eemwatchd_store_writable" and value == 0:
            observed.store_unwritable_seen = True
    sample = sample_process(pid)
    if sample is not None:
        observed.samples.append((phase, sample))


def _summarize(observed: _Observed, page: list[tuple[str, dict[str, str], float]], lab: Lab, names: list[str],
               in_sync: set[str | None], log_growth: float, skipped: dict[str, str],
               daemon: subprocess.Popen[bytes]) -> list[SummaryRow]:
    rows: list[SummaryRow] = []
    starts = sum(v for n, _l, v in page if n == "eemwatchd_job_start_delay_seconds_count")
    buckets: dict[float, float] = {}
    for n, labels, v in page:
        if n == "eemwatchd_job_start_delay_seconds_bucket":
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    late = starts - buckets.get(1.0, 0.0)
    latest = min((le for le, count in buckets.items() if count >= starts), default=float("inf"))
    rows.append(SummaryRow("job starts later than 1 s (a shared, busy machine)", f"{late:.0f} of {starts:.0f}",
                           "<= 10 %", starts > 0 and late <= 0.10 * starts))
    rows.append(SummaryRow("every job start within (histogram bucket)", f"{latest:g} s", "<= 5 s", latest <= 5.0))
    rows.append(SummaryRow("most overdue job (beyond its bound)", f"{observed.overdue:.1f} s", "0 s",
                           observed.overdue == 0))
    answered = [t for code, t in observed.health if code == 200]
    rows.append(SummaryRow("/healthz 200 within 5 s", f"{len(answered)} of {len(observed.health)} "
                           f"(slowest {max((t for _c, t in observed.health), default=0):.2f} s)",
                           "all", len(answered) == len(observed.health)))
    peaks = {d.name: d.peak_connections for d in lab.fleet}
    rows.append(SummaryRow("SSH sessions at once per lab router (max)", f"{max(peaks.values())} "
                           f"({', '.join(f'{k}={v}' for k, v in sorted(peaks.items()))})", "1",
                           max(peaks.values()) <= 1))
    steady = [s for phase, s in observed.samples if phase != "clients"]
    if len(steady) >= 8:
        quarter = len(steady) // 4
        early = sum(s.rss_mib for s in steady[quarter:2 * quarter]) / quarter
        late_rss = sum(s.rss_mib for s in steady[-quarter:]) / quarter
        rows.append(SummaryRow("RSS, 2nd quarter -> last quarter (mean)", f"{early:.1f} -> {late_rss:.1f} MiB",
                               "+20 % at most", late_rss <= early * 1.2))
        first, last = steady[quarter].fds, steady[-1].fds
        rows.append(SummaryRow("open files, after warm-up -> end", f"{first} -> {last} "
                               f"(max {max(s.fds for _p, s in observed.samples)} with slow clients)",
                               "+10 at most", last <= first + 10))
        threads = max(s.threads for _p, s in observed.samples)
        rows.append(SummaryRow("threads (max)", f"{threads}", "<= 16", threads <= 16))
    rows.append(SummaryRow("log growth", f"{log_growth / 1024:.0f} KiB/min", "<= 1024 KiB/min",
                           log_growth <= 1024 * 1024))
    rows.append(SummaryRow("lab routers in sync at the end", f"{len(set(names) & in_sync)} of {len(names)}",
                           "all", set(names) <= in_sync))
    if "disk" in skipped:
        rows.append(SummaryRow("state disk frozen/full reported", skipped["disk"], "-", None))
    else:
        rows.append(SummaryRow("state disk frozen/full reported (store_writable 0 seen)",
                               str(observed.store_unwritable_seen), "True", observed.store_unwritable_seen))
    for fault in ("clock", "hup", "webhook", "clients"):
        if fault in skipped:
            rows.append(SummaryRow(f"fault {fault}", skipped[fault], "-", None))
    rows.append(SummaryRow("daemon still running", str(daemon.poll() is None), "True", daemon.poll() is None))
    return rows


def print_rows(title: str, rows: Sequence[SummaryRow], say: Callable[[str], None] = print) -> bool:
    """The rows as a table; True when none failed."""
    width = max(len(r.check) for r in rows)
    measured = max(len(r.measured) for r in rows)
    say(f"\n{title}")
    say(f"  {'check':{width}}  {'measured':{measured}}  {'bound':16}  verdict")
    for row in rows:
        verdict = "skipped" if row.ok is None else "ok" if row.ok else "FAILED"
        say(f"  {row.check:{width}}  {row.measured:{measured}}  {row.bound:16}  {verdict}")
    return all(r.ok is not False for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of faults (default 120)")
    parser.add_argument("--routers", type=int, default=4, help="lab routers (default 4)")
    parser.add_argument("--skip", default="", help=f"comma-separated faults to leave out: {', '.join(FAULTS)}")
    args = parser.parse_args(argv)
    skip = frozenset(s for s in args.skip.split(",") if s)
    unknown = skip - set(FAULTS)
    if unknown or args.duration < 30 or not 1 <= args.routers <= 200:
        parser.error(f"unknown faults {sorted(unknown)}" if unknown else "--duration >= 30, --routers 1-200")
    options = SoakOptions(duration=args.duration, routers=args.routers, skip=skip)
    rows = asyncio.run(asyncio.wait_for(run_soak(options), timeout=args.duration + 300))
    return 0 if print_rows("eemwatchd soak: the daemon's environment (issue 17)", rows) else 1


if __name__ == "__main__":
    sys.exit(main())
