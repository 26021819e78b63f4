"""Rotation under the daemon: N lab routers in sync, the provider rotates its chain, time until all are in sync again.

Run: .venv/bin/python benchmarks/bench_rotation.py [--routers 100] [--interval 10] [--confirmations 2]
                                                   [--soak 120] [--deadline 900] [--rtt MS]
                                                   [--concurrency N] [--router-interval 1m|default]

The lab SMTP server and N lab routers (fresh: no trustpoints yet; the tech note's EEM mail applet) run in one
process of their own (with --rtt, each router behind a WAN link of that round trip: eemwatchd_lab.wan);
`eemwatchd run` runs as another process on a config with `servers[].interval` = --interval,
`policy.confirmations` = --confirmations, `routers[].interval` 1m (--router-interval; `default`: not set) and
`policy.max_parallel_routers` = --concurrency (not set when omitted: the default). This script only reads the
daemon's /metrics, at most every 0.5 s:

1. initial sync: until every router has `eemwatchd_router_in_sync` 1;
2. rotation: the provider serves a new intermediate (GmailShapedPki.rotate_intermediate + LabSmtpServer.set_chain,
   as `eemwatchd lab`'s rotate()); then until every router is in sync again with proof after the change:
   in sync, `eemwatchd_router_testfire_success` 1, `eemwatchd_router_last_check_timestamp_seconds` and
   `eemwatchd_router_testfire_last_success_timestamp_seconds` after the rotation, and the new intermediate among
   its certificates (`eemwatchd_router_cert_not_after_timestamp_seconds{sha256=...}`). Reported against the
   bound confirmations x interval + one apply pass, with the time the new chain became confirmed
   (`eemwatchd_server_chain_confirmed` 1 for the new chain) and the apply pass after it measured apart.
   During the apply pass (--watch store, the default) the same condition is read from the daemon's state file
   (read-only: the job's in-sync outcome and a successful test-fire after the rotation whose trust holds the
   new intermediate), then confirmed once on /metrics: rendering /metrics for 1000 routers twice a second
   cost the daemon more CPU than the pass it measured;
3. soak: the daemon's RSS and open file descriptors (from /proc) sampled through every phase and --soak
   seconds more (router jobs every 1m, server fetches every --interval): flat or not.

127.0.0.1 only; every wait is bounded (--deadline for the whole run); only the processes started here are
stopped, by their PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fleet  # noqa: E402 - the lab's router config and users are shared with the fleet benchmark

_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


# --- the lab process ---------------------------------------------------------------------------------------


def _serve_lab(count: int, state: str, ready: Queue[Any], commands: Queue[Any], answers: Queue[Any],
               stop: Any, rtt_ms: float = 0.0) -> None:
    import asyncio
    import logging

    logging.getLogger("asyncio").setLevel(logging.ERROR)
    from eemwatchd_lab.pki import GmailShapedPki
    from eemwatchd_lab.router import Fleet, User
    from eemwatchd_lab.smtp import LabSmtpServer
    from eemwatchd_lab.wan import Wan

    async def main() -> None:
        pki = GmailShapedPki.create()
        async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key,
                                 username=bench_fleet.MAIL_USER, password=bench_fleet.MAIL_PASSWORD) as smtp:
            fleet = Fleet.numbered(count, Path(state) / "routers",
                                   users=(User(bench_fleet.USER, bench_fleet.PASSWORD),),
                                   wan=Wan.from_ms(rtt_ms) if rtt_ms else None)
            async with fleet:
                for device in fleet:
                    device.state.apply_config(bench_fleet._router_config(smtp.port))
                    device.state.save()
                ready.put({"smtp_port": smtp.port, "anchors_pem": "".join(c.pem for c in pki.anchors),
                           "intermediate": pki.intermediate.cert.sha256,
                           "routers": [(d.name, d.port, d.known_hosts_line()) for d in fleet]})
                number = 0
                while not stop.is_set():
                    await asyncio.sleep(0.05)
                    if commands.empty():
                        continue
                    if commands.get() == "stats":
                        sessions = fleet.link_sessions()
                        turns = sorted(x.turns for x in sessions) or [0]
                        answers.put({"refused": sum(d.refused_logins for d in fleet), "sessions": len(sessions),
                                     "turns_median": turns[len(turns) // 2], "turns_max": turns[-1]})
                        continue
                    number += 1
                    # what `eemwatchd lab` does on an odd rotation (eemwatchd/lab/live.py rotate())
                    pki.rotate_intermediate(f"Lab WR{number}")
                    smtp.set_chain(pki.served, pki.leaf.key)
                    answers.put({"at": time.time(), "intermediate": pki.intermediate.cert.sha256,
                                 "served": [c.common_name for c in pki.served]})

    asyncio.run(main())


# --- the daemon and its metrics ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(spec: dict[str, Any], state: Path, *, interval: int, confirmations: int, concurrency: int | None,
                  metrics_port: int, router_interval: str | None = "1m") -> Path:
    import yaml

    (state / "router.password").write_text(bench_fleet.PASSWORD + "\n")
    (state / "router.password").chmod(0o600)
    (state / "anchors.pem").write_text(spec["anchors_pem"])
    document = {
        "state_path": str(state / "state.db"),
        "servers": [{"name": "lab-smtp", "host": "127.0.0.1", "port": spec["smtp_port"], "mode": "starttls",
                     "interval": f"{interval}s", "servername": "smtp.lab.example"}],
        "defaults": {"routers": {"username": bench_fleet.USER, "password_file": "router.password",
                                 "known_hosts": spec["known_hosts"], "applet": bench_fleet.APPLET,
                                 "servers": ["lab-smtp"],
                                 **({"interval": router_interval} if router_interval else {}),
                                 "timeouts": {"connect": "30s", "step": "60s", "total": "10m"}}},
        "routers": [{"name": name, "host": "127.0.0.1", "port": port} for name, port, _l in spec["routers"]],
        "policy": {"trust_store": "anchors.pem", "confirmations": confirmations, "aia": False,
                   "recent": "1h", **({"max_parallel_routers": concurrency} if concurrency else {})},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "alerts": [],
    }
    path = state / "eemwatchd.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of every labelled sample on the page."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match["labels"]))
            out.setdefault(match["name"], []).append((labels, float(match["value"])))
    return out


def _by_router(page: dict[str, list[tuple[dict[str, str], float]]], name: str) -> dict[str, float]:
    return {labels["router"]: value for labels, value in page.get(name, []) if "router" in labels}


def in_sync(page: dict[str, list[tuple[dict[str, str], float]]], routers: Sequence[str]) -> int:
    synced = _by_router(page, "eemwatchd_router_in_sync")
    return sum(1 for r in routers if synced.get(r) == 1.0)


def proven_after(page: dict[str, list[tuple[dict[str, str], float]]], routers: Sequence[str], *, since: float,
                 holds: str) -> int:
    """Routers in sync, with a successful test-fire and a check after ``since``, holding certificate ``holds``."""
    synced = _by_router(page, "eemwatchd_router_in_sync")
    fired = _by_router(page, "eemwatchd_router_testfire_success")
    checked = _by_router(page, "eemwatchd_router_last_check_timestamp_seconds")
    proven = _by_router(page, "eemwatchd_router_testfire_last_success_timestamp_seconds")
    holding = {labels["router"] for labels, _v in page.get("eemwatchd_router_cert_not_after_timestamp_seconds", [])
               if labels.get("sha256") == holds}
    return sum(1 for r in routers if synced.get(r) == 1.0 and fired.get(r) == 1.0 and checked.get(r, 0) > since
               and proven.get(r, 0) > since and r in holding)


def proven_in_store(db: Path, routers: Sequence[str], *, since: float, holds: str) -> int:
    """What proven_after checks, read from the daemon's state file (read-only) instead of /metrics: routers
    whose last job after ``since`` ended in sync and that have a successful test-fire after ``since`` with
    certificate ``holds`` among the trust it ran with. Rendering /metrics for 1000 routers twice a second
    cost the daemon more CPU than the apply pass it measured (BENCHMARKS.md)."""
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(since, UTC).isoformat()
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(
                "SELECT DISTINCT p.router FROM proofs p JOIN router_outcomes o ON o.router = p.router "
                "WHERE p.ok = 1 AND p.at > ? AND instr(p.trust, ?) > 0 AND o.ok = 1 AND o.at > ?",
                (stamp, holds, stamp)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    wanted = set(routers)
    return sum(1 for (router,) in rows if router in wanted)


def confirmed_chain_holds(page: dict[str, list[tuple[dict[str, str], float]]], sha256: str) -> bool:
    """The server's confirmed chain (every address) holds certificate ``sha256``."""
    confirmed = {labels["address"] for labels, v in page.get("eemwatchd_server_chain_confirmed", []) if v == 1.0}
    holding = {labels["address"] for labels, _v in page.get("eemwatchd_server_cert_not_after_timestamp_seconds", [])
               if labels.get("sha256") == sha256}
    return bool(confirmed) and confirmed <= holding


class Sampler:
    """The daemon's RSS and open file descriptors, from /proc, with the phase they were taken in."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, str, float, int]] = []

    def take(self, phase: str) -> None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return
        rss = next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
        self.samples.append((time.monotonic(), phase, rss, fds))

    def report(self) -> None:
        phases = list(dict.fromkeys(s[1] for s in self.samples))
        print("daemon RSS and open fds by phase (first / max / last sample):")
        for phase in phases:
            rows = [s for s in self.samples if s[1] == phase]
            rss, fds = [r[2] for r in rows], [r[3] for r in rows]
            print(f"  {phase:14s} RSS {rss[0]:6.1f} / {max(rss):6.1f} / {rss[-1]:6.1f} MiB   "
                  f"fds {fds[0]:4d} / {max(fds):4d} / {fds[-1]:4d}   ({len(rows)} samples)")
        soak = [s for s in self.samples if s[1] == "soak"]
        if len(soak) >= 4:
            half = len(soak) // 2
            first, second = soak[:half], soak[half:]
            print(f"  soak: RSS mean {sum(s[2] for s in first) / len(first):.1f} MiB (first half) -> "
                  f"{sum(s[2] for s in second) / len(second):.1f} MiB (second half); fds max "
                  f"{max(s[3] for s in first)} -> {max(s[3] for s in second)}")


SCRAPES: list[float] = []  # seconds per /metrics scrape (the daemon renders every router's metrics)


def wait_for(label: str, url: str, sampler: Sampler, deadline: float, check: Any, *, total: int,
             every: float = 0.5) -> float | None:
    """Poll /metrics until ``check(page)`` reaches ``total``; the time it did, or None at the deadline."""
    last = -1
    while time.monotonic() < deadline:
        sampler.take(label)
        try:
            before = time.perf_counter()
            page = scrape(url)
            SCRAPES.append(time.perf_counter() - before)
        except OSError:
            time.sleep(every)
            continue
        done = check(page)
        if done != last:
            print(f"    {label}: {done}/{total} at {time.strftime('%H:%M:%S')}", flush=True)
            last = done
        if done >= total:
            return time.time()
        time.sleep(every)
    print(f"  {label}: NOT reached before the deadline ({last}/{total})")
    return None


def wait_for_store(label: str, db: Path, sampler: Sampler, deadline: float, check: Any, *,
                   total: int) -> float | None:
    """Poll the daemon's state file until ``check(db)`` reaches ``total``; the time it did, or None."""
    last = -1
    while time.monotonic() < deadline:
        sampler.take(label)
        done = check(db)
        if done != last:
            print(f"    {label}: {done}/{total} at {time.strftime('%H:%M:%S')}", flush=True)
            last = done
        if done >= total:
            return time.time()
        time.sleep(0.2)
    print(f"  {label}: NOT reached before the deadline ({last}/{total})")
    return None


def orchestrate(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + args.deadline
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}; "
          f"{args.routers} routers, server interval {args.interval}s, confirmations {args.confirmations}, "
          f"concurrency {args.concurrency or 'default'}, router interval {args.router_interval}, "
          f"WAN round trip {args.rtt:g} ms")
    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as tmp:
        state = Path(tmp)
        ready: Queue[Any] = mp.Queue()
        commands: Queue[Any] = mp.Queue()
        answers: Queue[Any] = mp.Queue()
        stop = mp.Event()
        lab = mp.Process(target=_serve_lab, args=(args.routers, tmp, ready, commands, answers, stop, args.rtt),
                         daemon=True)
        lab.start()
        daemon: subprocess.Popen[bytes] | None = None
        stack = contextlib.ExitStack()
        try:
            spec = ready.get(timeout=300)
            known_hosts = state / "known_hosts"
            known_hosts.write_text("".join(line + "\n" for _n, _p, line in spec["routers"]))
            spec["known_hosts"] = str(known_hosts)
            port = _free_port()
            config = _write_config(spec, state, interval=args.interval, confirmations=args.confirmations,
                                   concurrency=args.concurrency, metrics_port=port,
                                   router_interval=None if args.router_interval == "default" else args.router_interval)
            routers = [name for name, _p, _l in spec["routers"]]
            url = f"http://127.0.0.1:{port}/metrics"
            log = stack.enter_context((state / "daemon.log").open("wb"))
            run = "import sys; from eemwatchd.cli import main; sys.exit(main())"
            if args.profile:  # the daemon under cProfile; the stats are written when it exits (SIGTERM)
                run = (f"import cProfile, sys; from eemwatchd.cli import main; "
                       f"cProfile.run('code = main()', {str(args.profile)!r}); sys.exit(0)")
            daemon = subprocess.Popen(
                [sys.executable, "-c", run, "run", "-c", str(config)],
                stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp)
            sampler = Sampler(daemon.pid)
            lab_cpu0 = bench_fleet._cpu_seconds(lab.pid or 0)
            t0 = time.time()
            print(f"{args.routers} lab routers up; daemon pid {daemon.pid}, lab pid {lab.pid}")
            synced = wait_for("initial sync", url, sampler, deadline, lambda p: in_sync(p, routers),
                              total=len(routers))
            if synced is None:
                return 1
            print(f"  initial sync (fresh routers: {args.confirmations} sightings, then one apply pass): "
                  f"{synced - t0:.1f} s")
            time.sleep(1.0)
            commands.put("rotate")
            rotation = answers.get(timeout=60)
            t_rot = rotation["at"]
            print(f"  rotated: the provider now serves {' <- '.join(rotation['served'])}")
            lab_cpu1 = bench_fleet._cpu_seconds(lab.pid or 0)
            confirmed = wait_for("new chain confirmed", url, sampler, deadline,
                                 lambda p: int(confirmed_chain_holds(p, rotation["intermediate"])), total=1)
            if confirmed is None:
                return 1
            daemon_cpu1 = bench_fleet._cpu_seconds(daemon.pid)
            if args.watch == "store":
                resynced = wait_for_store("re-synced", state / "state.db", sampler, deadline,
                                          lambda db: proven_in_store(db, routers, since=t_rot,
                                                                     holds=rotation["intermediate"]),
                                          total=len(routers))
                # the same, as /metrics shows it (read once the state file says so)
                if resynced is not None and wait_for(
                        "re-synced (metrics)", url, sampler, deadline,
                        lambda p: proven_after(p, routers, since=t_rot, holds=rotation["intermediate"]),
                        total=len(routers)) is None:
                    return 1
            else:
                resynced = wait_for("re-synced", url, sampler, deadline,
                                    lambda p: proven_after(p, routers, since=t_rot, holds=rotation["intermediate"]),
                                    total=len(routers), every=args.scrape_every)
            if resynced is None:
                return 1
            lab_cpu2 = bench_fleet._cpu_seconds(lab.pid or 0)
            daemon_cpu2 = bench_fleet._cpu_seconds(daemon.pid)
            total, to_confirm, apply_pass = resynced - t_rot, confirmed - t_rot, resynced - confirmed
            bound_wait = args.confirmations * args.interval
            print(f"  rotation -> every router re-synced with a proven test-fire: {total:.1f} s")
            print(f"    rotation -> new chain confirmed: {to_confirm:.1f} s (confirmations x interval = "
                  f"{bound_wait} s, + jitter up to 10 % of the interval)")
            print(f"    confirmed -> all re-synced (the apply pass): {apply_pass:.1f} s "
                  f"({1000 * apply_pass / len(routers):.1f} ms/router)")
            print(f"    bound confirmations x interval + one apply pass = {bound_wait + apply_pass:.1f} s: "
                  f"{'within' if total <= bound_wait * 1.1 + apply_pass + 1 else 'OVER'}")
            print(f"    lab process CPU: initial sync {lab_cpu1 - lab_cpu0:.1f} s, "
                  f"rotation {lab_cpu2 - lab_cpu1:.1f} s")
            print(f"    daemon CPU in the apply pass: {daemon_cpu2 - daemon_cpu1:.1f} s "
                  f"({1000 * (daemon_cpu2 - daemon_cpu1) / len(routers):.1f} ms/router); this script's /metrics "
                  f"scrapes took {1000 * sum(SCRAPES) / max(len(SCRAPES), 1):.0f} ms each (x{len(SCRAPES)})")
            page = scrape(url)
            sums = {labels["operation"]: v for labels, v in
                    page.get("eemwatchd_router_operation_duration_seconds_sum", [])}
            counts = {labels["operation"]: v for labels, v in
                      page.get("eemwatchd_router_operation_duration_seconds_count", [])}
            print("    router operations, mean over the run: " + ", ".join(
                f"{op} {1000 * sums[op] / counts[op]:.0f} ms (x{counts[op]:.0f})" for op in sums if counts.get(op)))
            commands.put("stats")
            stats = answers.get(timeout=60)
            log_text = (state / "daemon.log").read_text(errors="replace")
            timeouts = sum(1 for line in log_text.splitlines() if "timed out during" in line)
            refusals = sum(1 for line in log_text.splitlines() if "vty lines" in line)
            print(f"    sessions refused by the lab routers (vty lines): {stats['refused']}; the daemon's log: "
                  f"{refusals} refused, {timeouts} timed out; daemon peak RSS "
                  f"{bench_fleet._peak_rss_mib(daemon.pid):.1f} MiB")
            if args.rtt:
                print(f"    WAN sessions so far {stats['sessions']}, turns per session median "
                      f"{stats['turns_median']} (max {stats['turns_max']})")
            soak_end = min(deadline, time.monotonic() + args.soak)
            while time.monotonic() < soak_end:
                sampler.take("soak")
                time.sleep(2.0)
            page = scrape(url)
            print(f"  after the soak ({args.soak:.0f} s, router jobs every 1m): "
                  f"{in_sync(page, routers)}/{len(routers)} in sync")
            sampler.report()
            print(json.dumps({"routers": args.routers, "interval": args.interval, "confirmations": args.confirmations,
                              "rtt_ms": args.rtt, "concurrency": args.concurrency or None,
                              "initial_sync_s": round(synced - t0, 2), "rotation_s": round(total, 2),
                              "to_confirm_s": round(to_confirm, 2), "apply_pass_s": round(apply_pass, 2),
                              "refused": stats["refused"], "timed_out": timeouts}))
            return 0
        finally:
            if daemon is not None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(timeout=10)
                print(f"daemon exit code {daemon.returncode}")
            stop.set()
            lab.join(30)
            if lab.is_alive():
                lab.terminate()
                lab.join(10)
            stack.close()
            print(f"total {time.monotonic() - started:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routers", type=int, default=100)
    parser.add_argument("--interval", type=int, default=10, help="servers[].interval in seconds (at least 10)")
    parser.add_argument("--confirmations", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=0,
                        help="policy.max_parallel_routers (default: not set, the policy default)")
    parser.add_argument("--rtt", type=float, default=0.0, metavar="MS",
                        help="each lab router behind a WAN link of this round trip (default 0: none)")
    parser.add_argument("--watch", choices=("store", "metrics"), default="store",
                        help="how the re-sync is watched: the daemon's state file, read-only (default), or "
                             "/metrics (which the daemon renders for every router on each read)")
    parser.add_argument("--scrape-every", type=float, default=0.5, metavar="SECONDS",
                        help="with --watch metrics: how often /metrics is read (default 0.5)")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="run the daemon under cProfile (slower)")
    parser.add_argument("--router-interval", default="1m",
                        help="routers[].interval (default 1m; `default`: not set, the default 1h)")
    parser.add_argument("--soak", type=float, default=120.0, help="seconds of sampling after the re-sync")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    if not 1 <= args.routers <= 1000 or args.interval < 10:
        parser.error("--routers must be 1-1000 and --interval at least 10")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
