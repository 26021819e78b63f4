"""A fleet pass over 100 / 500 / 1000 lab routers: `plan` (the Reconciler) vs a bare asyncssh client vs Netmiko.

Run: .venv/bin/python benchmarks/bench_fleet.py [--sizes 100 500 1000] [--concurrency 8] [--netmiko-max 500]
                                                [--apply 100] [--deadline 1500]

The lab routers (and the lab SMTP server they mail through) run in their own process for the whole run, each
router with the EEM mail applet of the tech note. Every client pass runs in a fresh interpreter of its own,
which reports the pass's wall time, CPU seconds and peak RSS (interpreter start and imports excluded from
wall and CPU; the whole process's peak RSS). Passes, same routers, same concurrency:

- floor:   asyncssh alone: connect (host keys from the same known_hosts file, read once; AES-GCM as the
           adapter prefers), a shell with a pty,
           the commands `eemwatchd plan` sends (terminal length 0, terminal width 512, show running-config,
           show clock, show startup-config | section crypto pki), each read up to the prompt, exit.
- plan:    `Reconciler(config, store).run(apply=False)`, what `eemwatchd plan` runs: observe the lab SMTP
           server, then read, judge and plan every router (max_parallel_routers = --concurrency).
- netmiko: what a network engineer writes otherwise: a thread pool of --concurrency, ConnectHandler
           (cisco_xe) + the three show commands + disconnect.
- apply:   `run(apply=True)` on the first --apply routers, fresh (nothing installed yet), against `plan` on
           the same routers just before.

The lab process's CPU seconds are read from /proc during each pass: when they come close to the pass's wall
time, the lab routers (one event loop, one core) are the bottleneck, and the figure says so.
127.0.0.1 only; every pass is bounded (--pass-timeout) and the whole run by --deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "bench", "bench-pw-not-secret"
MAIL_USER, MAIL_PASSWORD = "alerts", "mail-pw-not-secret"
APPLET = "MAIL-ALERT"
SHOW_COMMANDS = ("show running-config", "show clock", "show startup-config | section crypto pki")
SESSION_COMMANDS = ("terminal length 0", "terminal width 512", *SHOW_COMMANDS)
# The floor negotiates what the router adapter prefers (AES-GCM), so the ratio compares session handling,
# not ciphers; asyncssh's default would pick ChaCha20-Poly1305.
FLOOR_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]


# --- the lab process ---------------------------------------------------------------------------------------


def _router_config(smtp_port: int) -> list[str]:
    """The EEM mail setup of the tech note (the same as `eemwatchd lab`)."""
    return [
        f"event manager environment _email_server {MAIL_USER}:{MAIL_PASSWORD}@127.0.0.1",
        "event manager environment _email_from alerts@lab.example",
        "event manager environment _email_to noc@lab.example",
        f"event manager applet {APPLET}",
        " event none maxrun 60",
        f' action 0010 mail server "$_email_server" to "$_email_to" from "$_email_from" subject '
        f'"EEM test mail" body "sent by the {APPLET} applet" secure tls port {smtp_port}',
        ' action 0020 syslog msg "test mail handed to the SMTP server"',
    ]


def _serve_lab(count: int, state: str, ready: Queue[Any], stop: Any) -> None:
    import logging

    # Netmiko drops its sessions without a goodbye; asyncio then warns once per write to the dead socket.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    from eemwatchd_lab.pki import GmailShapedPki
    from eemwatchd_lab.router import Fleet, User
    from eemwatchd_lab.smtp import LabSmtpServer

    async def main() -> None:
        pki = GmailShapedPki.create()
        async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key,
                                 username=MAIL_USER, password=MAIL_PASSWORD) as smtp:
            fleet = Fleet.numbered(count, Path(state) / "routers", users=(User(USER, PASSWORD),))
            async with fleet:
                for device in fleet:
                    device.state.apply_config(_router_config(smtp.port))
                    device.state.save()
                ready.put({"smtp_port": smtp.port, "anchors_pem": "".join(c.pem for c in pki.anchors),
                           "routers": [(d.name, d.port, d.known_hosts_line()) for d in fleet]})
                while not stop.is_set():
                    await asyncio.sleep(0.05)

    asyncio.run(main())


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (so a running process can be measured)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the client passes (each in its own interpreter) --------------------------------------------------------


async def _floor_session(port: int, known_hosts: Any) -> None:
    import asyncssh

    conn = await asyncssh.connect("127.0.0.1", port, username=USER, password=PASSWORD, known_hosts=known_hosts,
                                  client_keys=None, agent_path=None, config=None, encryption_algs=FLOOR_CIPHERS)
    try:
        proc = await conn.create_process(encoding="utf-8", term_type="xterm")
        prompt = ""
        while not prompt.endswith("#"):
            chunk = await proc.stdout.read(65536)
            if not chunk:
                raise EOFError("router closed the session")
            prompt += chunk
        prompt = prompt.rsplit("\n", 1)[-1]
        for command in SESSION_COMMANDS:
            proc.stdin.write(command + "\n")
            buffer = ""
            while not buffer.endswith("\n" + prompt):
                chunk = await proc.stdout.read(65536)
                if not chunk:
                    raise EOFError(f"router closed the session during {command!r}")
                buffer += chunk
        proc.stdin.write("exit\n")
    finally:
        conn.close()
        await conn.wait_closed()


async def floor_pass(spec: dict[str, Any], count: int, concurrency: int,
                     session: Callable[[int, Any], Awaitable[None]], *, timeout: float) -> tuple[int, list[str]]:
    """``session(port, known_hosts)`` on the first ``count`` routers, ``concurrency`` at once, each bounded by
    ``timeout``: (sessions that succeeded, what failed). The bare client's passes (plan here, apply in bench_wan)."""
    import asyncssh

    known_hosts = asyncssh.read_known_hosts(spec["known_hosts"])
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def one(name: str, port: int) -> None:
        async with gate:
            try:
                await asyncio.wait_for(session(port, known_hosts), timeout)
            except (OSError, asyncssh.Error, EOFError, TimeoutError, RuntimeError) as exc:
                failures.append(f"{name}: {exc!r}")

    routers = spec["routers"][:count]
    await asyncio.gather(*(one(name, port) for name, port, _line in routers))
    return len(routers) - len(failures), failures


async def _floor(spec: dict[str, Any], count: int, concurrency: int) -> tuple[int, list[str]]:
    return await floor_pass(spec, count, concurrency, _floor_session, timeout=60)


def _write_config(spec: dict[str, Any], count: int, concurrency: int, state: Path) -> Path:
    import yaml

    (state / "router.password").write_text(PASSWORD + "\n")
    (state / "router.password").chmod(0o600)
    (state / "anchors.pem").write_text(spec["anchors_pem"])
    document = {
        "state_path": str(state / "state.db"),
        "servers": [{"name": "lab-smtp", "host": "127.0.0.1", "port": spec["smtp_port"], "mode": "starttls",
                     "interval": "10s", "servername": "smtp.lab.example"}],
        "defaults": {"routers": {"username": USER, "password_file": "router.password",
                                 "known_hosts": spec["known_hosts"], "applet": APPLET, "servers": ["lab-smtp"],
                                 "timeouts": {"connect": "30s", "step": "60s", "total": "10m"}}},
        "routers": [{"name": name, "host": "127.0.0.1", "port": port} for name, port, _l in spec["routers"][:count]],
        "policy": {"trust_store": "anchors.pem", "confirmations": 1, "aia": False,
                   "max_parallel_routers": concurrency},
        "alerts": [],
    }
    path = state / "eemwatchd.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def _reconcile(config_path: Path, *, apply: bool) -> tuple[int, list[str]]:
    from eemwatchd.commands.runtime import open_store
    from eemwatchd.config import load_config
    from eemwatchd.reconcile import Reconciler

    config = load_config(config_path).config
    with open_store(config) as store:
        report = await Reconciler(config, store).run(apply=apply, notify=False)
    failures = [f"{r.name}: {r.error}" for r in report.routers if r.error]
    if apply:
        failures += [f"{r.name}: not in sync: {r.result}" for r in report.routers if not r.error and not r.in_sync]
    return len(report.routers) - len(failures), failures


def _netmiko(spec: dict[str, Any], count: int, concurrency: int) -> tuple[int, list[str]]:
    from concurrent.futures import ThreadPoolExecutor

    from netmiko import ConnectHandler

    def one(port: int) -> None:
        conn = ConnectHandler(device_type="cisco_xe", host="127.0.0.1", port=port, username=USER, password=PASSWORD,
                              timeout=60, conn_timeout=30)
        try:
            for command in SHOW_COMMANDS:
                conn.send_command(command, read_timeout=60)
        finally:
            conn.disconnect()

    routers = spec["routers"][:count]
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [(name, pool.submit(one, port)) for name, port, _line in routers]
        for name, future in futures:
            try:
                future.result(timeout=600)
            except Exception as exc:
                failures.append(f"{name}: {exc!r}")
    return len(routers) - len(failures), failures


def run_pass(kind: str, spec_path: Path, count: int, concurrency: int, profile: Path | None = None) -> None:
    """One pass in this (fresh) interpreter; prints one JSON line."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    spec = json.loads(spec_path.read_text())
    # imports before the clock starts: start-up is bench_cli.py's subject, not this one's
    import asyncssh  # noqa: F401

    from eemwatchd.reconcile import Reconciler  # noqa: F401

    if kind == "netmiko":
        import netmiko  # noqa: F401
    with tempfile.TemporaryDirectory(prefix="bench-fleet-pass-") as tmp:
        config_path = _write_config(spec, count, concurrency, Path(tmp))
        profiler = cProfile.Profile() if profile is not None else None
        if profiler is not None:
            profiler.enable()
        started_cpu = time.process_time()
        started = time.perf_counter()
        if kind == "floor":
            ok, failures = asyncio.run(_floor(spec, count, concurrency))
        elif kind in ("plan", "apply"):
            ok, failures = asyncio.run(_reconcile(config_path, apply=kind == "apply"))
        elif kind == "netmiko":
            ok, failures = _netmiko(spec, count, concurrency)
        else:
            raise SystemExit(f"unknown pass {kind!r}")
        wall = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile / f"{kind}-{count}.prof")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": cpu, "ok": ok, "failures": failures[:5], "peak_mib": peak}))


# --- the orchestrator ---------------------------------------------------------------------------------------


class Bench:
    def __init__(self, spec_path: Path, lab_pid: int, concurrency: int, pass_timeout: float, deadline: float,
                 profile: Path | None, client_root: Path | None = None) -> None:
        self.spec_path = spec_path
        self.client_root = client_root
        self.profile = profile
        self.lab_pid = lab_pid
        self.concurrency = concurrency
        self.pass_timeout = pass_timeout
        self.deadline = deadline

    def measure(self, kind: str, count: int) -> dict[str, Any] | None:
        remaining = self.deadline - time.monotonic()
        if remaining < 5:
            print(f"  {kind} x{count}: skipped (the run's --deadline is reached)")
            return None
        lab_before = _cpu_seconds(self.lab_pid)
        proc = subprocess.run(
            [sys.executable, __file__, "--pass", kind, "--spec", str(self.spec_path), "--count", str(count),
             "--concurrency", str(self.concurrency),
             *(["--profile", str(self.profile)] if self.profile is not None else [])],
            capture_output=True, text=True, timeout=min(self.pass_timeout, remaining), check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [*([str(self.client_root)] if self.client_root else []), str(ROOT)])},
        )
        lab_cpu = _cpu_seconds(self.lab_pid) - lab_before
        if proc.returncode != 0 or not proc.stdout.strip():
            print(f"  {kind} x{count}: FAILED (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
            return None
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["lab_cpu"] = lab_cpu
        result["kind"] = kind
        result["count"] = count
        wall = result["wall"]
        note = "  <- lab-bound" if lab_cpu > 0.85 * wall else ""
        print(f"  {kind:8s} x{count:<5d} wall {wall:7.2f} s  cpu {result['cpu']:7.2f} s  "
              f"{count / wall:7.1f} routers/s  {1000 * wall / count:6.1f} ms/router  "
              f"peak RSS {result['peak_mib']:6.1f} MiB  lab cpu {lab_cpu:6.2f} s ({lab_cpu / wall:4.0%}){note}")
        if result["ok"] != count:
            print(f"    {count - result['ok']} of {count} FAILED, e.g. {result['failures'][:2]}")
        return result


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> str:
    if a is None or b is None or b[key] <= 0:
        return "   n/a"
    return f"{a[key] / b[key]:5.2f}x"


def orchestrate(args: argparse.Namespace) -> int:
    sizes = sorted(set(args.sizes))
    count = max(sizes)
    started = time.monotonic()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; concurrency {args.concurrency}")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        ready: Queue[Any] = mp.Queue()
        stop = mp.Event()
        lab = mp.Process(target=_serve_lab, args=(count, tmp, ready, stop), daemon=True)
        lab.start()
        try:
            spec = ready.get(timeout=300)
            print(f"{count} lab routers + lab SMTP up in {time.monotonic() - started:.1f} s (pid {lab.pid})")
            known_hosts = Path(tmp) / "known_hosts"
            known_hosts.write_text("".join(line + "\n" for _n, _p, line in spec["routers"]))
            spec["known_hosts"] = str(known_hosts)
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec))
            assert lab.pid is not None
            bench = Bench(spec_path, lab.pid, args.concurrency, args.pass_timeout, started + args.deadline,
                          args.profile, args.client_root)
            table: dict[tuple[str, int], dict[str, Any] | None] = {}
            for size in sizes:
                print(f"{size} routers")
                for kind in ("floor", "plan", "netmiko"):
                    if kind == "netmiko" and size > args.netmiko_max:
                        continue
                    table[kind, size] = bench.measure(kind, size)
            if args.apply:
                print(f"apply on {args.apply} fresh routers vs plan on the same routers")
                before = bench.measure("plan", args.apply)
                applied = bench.measure("apply", args.apply)
                after = bench.measure("plan", args.apply)
                print(f"  apply/plan (fresh) wall {_ratio(applied, before, 'wall')}"
                      f"  cpu {_ratio(applied, before, 'cpu')};  plan after apply (in sync) "
                      f"{after['wall'] if after else float('nan'):.2f} s")
            print("\nsummary (ratios measured in this run)")
            print(f"{'routers':>8s} {'plan/floor wall':>16s} {'plan/floor cpu':>15s} {'netmiko/plan wall':>18s}"
                  f" {'floor ms/rtr':>13s} {'plan ms/rtr':>12s}")
            for size in sizes:
                floor, plan = table.get(("floor", size)), table.get(("plan", size))
                netmiko = table.get(("netmiko", size))
                per = [f"{1000 * r['wall'] / size:13.1f}" if r else f"{'n/a':>13s}" for r in (floor,)]
                per += [f"{1000 * r['wall'] / size:12.1f}" if r else f"{'n/a':>12s}" for r in (plan,)]
                print(f"{size:8d} {_ratio(plan, floor, 'wall'):>16s} {_ratio(plan, floor, 'cpu'):>15s}"
                      f" {_ratio(netmiko, plan, 'wall'):>18s} {per[0]} {per[1]}")
            plans = [(s, r) for s in sizes if (r := table.get(("plan", s))) is not None]
            if len(plans) >= 2:
                slopes = [1000 * (b["wall"] - a["wall"]) / (sb - sa) for (sa, a), (sb, b) in itertools.pairwise(plans)]
                print("plan: extra wall per extra router " + ", ".join(f"{x:.1f} ms" for x in slopes)
                      + f" (median {statistics.median(slopes):.1f} ms)")
        finally:
            lab_peak = _peak_rss_mib(lab.pid) if lab.pid is not None and lab.is_alive() else float("nan")
            stop.set()
            lab.join(30)
            if lab.is_alive():
                lab.terminate()
                lab.join(10)
    print(f"peak RSS of the lab process ({count} routers + SMTP): {lab_peak:.1f} MiB")
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--concurrency", type=int, default=8, help="routers at once (the default of "
                        "policy.max_parallel_routers)")
    parser.add_argument("--netmiko-max", type=int, default=500, help="largest fleet the Netmiko pass runs on")
    parser.add_argument("--apply", type=int, default=100, help="fresh routers for apply vs plan (0: skip)")
    parser.add_argument("--pass-timeout", type=float, default=900.0)
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run every pass under cProfile, stats to DIR/<pass>-<count>.prof (slower)")
    parser.add_argument("--client-root", type=Path, metavar="DIR",
                        help="run plan and apply with the eemwatchd package in DIR (an earlier version: "
                             "git archive REV eemwatchd | tar -x -C DIR); the lab and the floor stay the same")
    parser.add_argument("--pass", dest="pass_kind", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pass_kind:
        run_pass(args.pass_kind, args.spec, args.count, args.concurrency, args.profile)
        return 0
    if not 1 <= max(args.sizes) <= 1000 or args.apply > max(args.sizes):
        parser.error("--sizes must be 1-1000 and --apply at most the largest size")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
