"""plan and apply over lab routers behind a WAN (eemwatchd_lab.wan), each against a bare asyncssh client through
the same delay, with the turns per session beside the wall time.

Run: .venv/bin/python benchmarks/bench_wan.py [--rtts 0 50 150] [--sizes 100 1000] [--concurrency N]
                                              [--kinds floor plan floor-apply apply] [--deadline 3600]
     .venv/bin/python benchmarks/bench_wan.py --scaling 8 16 32 64 128 256 --rtts 150 --sizes 1000 --kinds plan
     .venv/bin/python benchmarks/bench_wan.py --client-root DIR ...   (an earlier eemwatchd against the same lab)

The lab routers (each behind its own WAN link: every byte delayed by RTT/2 each way, a connect costing a round
trip) and the lab SMTP server run in one process of their own for the whole run; the links' round trip is
changed between passes. Every client pass runs in a fresh interpreter (imports excluded from wall and CPU) and
reports its wall time, CPU seconds, peak RSS and peak open file descriptors. The lab counts, per SSH
connection, the turns: the client speaking again after the router answered (each costs a round trip).

- floor:        asyncssh alone: connect, a shell with a pty, the commands `eemwatchd plan` sends (terminal
                length 0, terminal width 512, show running-config, show clock, show startup-config | section
                crypto pki), each written alone and read up to the prompt, exit (bench_fleet.py's floor).
- plan:         `Reconciler(config, store).run(apply=False)`, what `eemwatchd plan` runs.
- floor-apply:  asyncssh alone doing what apply does on a fresh router, each command written alone and read up
                to the prompt: the plan's reads; per certificate (the same three apply installs) the name
                check, `configure terminal` and the six definition lines, `crypto pki authenticate` with the
                paste, `end` and the read-back; the history, the log marker and `event manager run`; the
                history and log until this run's job shows `success`; `write memory`; exit.
- apply:        `Reconciler(config, store).run(apply=True)` on the same routers, fresh again (the lab removes
                the managed trustpoints and saves before each apply pass).

Concurrency: the same for every pass (default: policy.max_parallel_routers' default). 127.0.0.1 only; every
pass is bounded (--pass-timeout) and the whole run by --deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fleet

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "EEMW-"


# --- the lab process ---------------------------------------------------------------------------------------


def _serve_lab(count: int, state: str, ready: Queue[Any], commands: Queue[Any], answers: Queue[Any],
               stop: Any) -> None:
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
                                   users=(User(bench_fleet.USER, bench_fleet.PASSWORD),), wan=Wan(0.0))
            async with fleet:
                for device in fleet:
                    device.state.apply_config(bench_fleet._router_config(smtp.port))
                    device.state.save()
                installs = [c for c in [*pki.served[1:], *pki.anchors]]
                ready.put({"smtp_port": smtp.port, "anchors_pem": "".join(c.pem for c in pki.anchors),
                           "installs": [(f"{PREFIX}{c.short_fingerprint}", c.pem, c.sha1_hex) for c in installs],
                           "routers": [(d.name, d.port, d.known_hosts_line()) for d in fleet]})
                while not stop.is_set():
                    await asyncio.sleep(0.02)
                    if commands.empty():
                        continue
                    what, arg = commands.get()
                    if what == "wan":
                        fleet.set_wan(Wan(arg / 1000.0))
                        fleet.clear_link_sessions()
                        answers.put("ok")
                    elif what == "fresh":  # no managed trustpoint, saved: every router fresh again
                        for device in fleet:
                            for name in [n for n in device.state.trustpoints if n.startswith(PREFIX)]:
                                del device.state.trustpoints[name]
                            device.state.save()
                        answers.put("ok")
                    elif what == "stats":
                        sessions = fleet.link_sessions()
                        answers.put({"turns": [s.turns for s in sessions],
                                     "refused": sum(d.refused_logins for d in fleet)})
                        fleet.clear_link_sessions()

    asyncio.run(main())


# --- the client passes (each in its own interpreter) --------------------------------------------------------

_HISTORY_ROW = re.compile(rf"^\d+\s+(\d+)\s+\S+\s+(\S+)\s+.*applet: {bench_fleet.APPLET}\s*$", re.M)


class _Shell:
    """A bare asyncssh shell: one command per write, read up to the prompt."""

    def __init__(self, proc: Any, prompt_host: str) -> None:
        self.proc = proc
        self.host = prompt_host

    async def read_until(self, pattern: re.Pattern[str]) -> str:
        buffer = ""
        while not pattern.search(buffer):
            chunk = await self.proc.stdout.read(65536)
            if not chunk:
                raise EOFError(f"router closed the session; got {buffer[-200:]!r}")
            buffer += chunk
        return buffer

    async def cmd(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        return await self.read_until(re.compile(rf"\n{re.escape(self.host)}(\([\w-]+\))?#$"))


async def _floor_apply_session(port: int, known_hosts: Any, installs: list[tuple[str, str, str]]) -> None:
    import secrets

    import asyncssh

    conn = await asyncssh.connect("127.0.0.1", port, username=bench_fleet.USER, password=bench_fleet.PASSWORD,
                                  known_hosts=known_hosts, client_keys=None, agent_path=None, config=None,
                                  encryption_algs=bench_fleet.FLOOR_CIPHERS)
    try:
        proc = await conn.create_process(encoding="utf-8", term_type="xterm")
        first = await _Shell(proc, "").read_until(re.compile(r"[\w.-]+#$"))
        shell = _Shell(proc, first.rsplit("\n", 1)[-1][:-1])
        for command in bench_fleet.SESSION_COMMANDS:
            await shell.cmd(command)
        for name, pem, sha1 in installs:
            await shell.cmd(f"show running-config | section ^hostname |^crypto pki (trustpoint|certificate chain) "
                            f"{name}")
            for line in ("configure terminal", f"crypto pki trustpoint {name}", "enrollment terminal",
                         "revocation-check none", "chain-validation stop", f"fingerprint {sha1}", "exit"):
                out = await shell.cmd(line)
                if "%" in out:
                    raise RuntimeError(f"{line}: {out}")
            proc.stdin.write(f"crypto pki authenticate {name}\n")
            await shell.read_until(re.compile("on a line by itself"))
            out = await shell.cmd(pem.rstrip("\n") + "\nquit")
            if "successfully imported" not in out:
                raise RuntimeError(f"authenticate {name}: {out[-300:]}")
            await shell.cmd("end")
            await shell.cmd(f"show running-config | section ^hostname |^crypto pki (trustpoint|certificate chain) "
                            f"{name}")
        history = await shell.cmd("show event manager history events")
        baseline = max((int(job) for job, _status in _HISTORY_ROW.findall(history)), default=0)
        await shell.cmd(f"send log 6 floor-{secrets.token_hex(6)}")
        await shell.cmd(f"event manager run {bench_fleet.APPLET}")
        deadline = time.monotonic() + 60
        while True:
            rows = [(int(j), s) for j, s in _HISTORY_ROW.findall(await shell.cmd("show event manager history events"))]
            await shell.cmd("show logging")
            done = [s for j, s in rows if j > baseline]
            if done:
                if done[-1] != "success":
                    raise RuntimeError(f"test-fire: {done[-1]}")
                break
            if time.monotonic() > deadline:
                raise TimeoutError("test-fire: no job")
        if "[OK]" not in await shell.cmd("write memory"):
            raise RuntimeError("write memory")
        proc.stdin.write("exit\n")
    finally:
        conn.close()
        await conn.wait_closed()


async def _floor_apply(spec: dict[str, Any], count: int, concurrency: int) -> tuple[int, list[str]]:
    async def session(port: int, known_hosts: Any) -> None:
        await _floor_apply_session(port, known_hosts, spec["installs"])

    return await bench_fleet.floor_pass(spec, count, concurrency, session, timeout=300)


def run_pass(kind: str, spec_path: Path, count: int, concurrency: int) -> None:
    """One pass in this (fresh) interpreter; prints one JSON line."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    spec = json.loads(spec_path.read_text())
    import asyncssh  # noqa: F401 - imports before the clock starts

    from eemwatchd.reconcile import Reconciler  # noqa: F401

    peak_fds = 0

    async def sample_fds() -> None:
        nonlocal peak_fds
        while True:
            peak_fds = max(peak_fds, len(os.listdir("/proc/self/fd")))
            await asyncio.sleep(0.25)  # cheap: a faster sampler shows up in the pass's CPU

    async def measured(work: Any) -> tuple[int, list[str]]:
        sampler = asyncio.create_task(sample_fds())
        try:
            result: tuple[int, list[str]] = await work
            return result
        finally:
            sampler.cancel()

    with tempfile.TemporaryDirectory(prefix="bench-wan-pass-") as tmp:
        config_path = bench_fleet._write_config(spec, count, concurrency, Path(tmp))
        started_cpu = time.process_time()
        started = time.perf_counter()
        if kind == "floor":
            ok, failures = asyncio.run(measured(bench_fleet._floor(spec, count, concurrency)))
        elif kind == "floor-apply":
            ok, failures = asyncio.run(measured(_floor_apply(spec, count, concurrency)))
        elif kind in ("plan", "apply"):
            ok, failures = asyncio.run(measured(bench_fleet._reconcile(config_path, apply=kind == "apply")))
        else:
            raise SystemExit(f"unknown pass {kind!r}")
        wall = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": cpu, "ok": ok, "failures": failures[:5], "peak_mib": peak,
                      "peak_fds": peak_fds}))


# --- the orchestrator ---------------------------------------------------------------------------------------


class Bench:
    def __init__(self, spec_path: Path, lab_pid: int, commands: Queue[Any], answers: Queue[Any],
                 pass_timeout: float, deadline: float, client_root: Path | None = None) -> None:
        self.spec_path, self.lab_pid = spec_path, lab_pid
        self.client_root = client_root
        self.commands, self.answers = commands, answers
        self.pass_timeout, self.deadline = pass_timeout, deadline

    def ask(self, what: str, arg: Any = None) -> Any:
        self.commands.put((what, arg))
        return self.answers.get(timeout=300)

    def measure(self, kind: str, count: int, concurrency: int, rtt: float) -> dict[str, Any] | None:
        remaining = self.deadline - time.monotonic()
        if remaining < 5:
            print(f"  {kind} x{count}: skipped (the run's --deadline is reached)")
            return None
        if kind in ("apply", "floor-apply"):
            self.ask("fresh")
        self.ask("stats")  # clears the counters
        lab_before = bench_fleet._cpu_seconds(self.lab_pid)
        proc = subprocess.run(
            [sys.executable, __file__, "--pass", kind, "--spec", str(self.spec_path), "--count", str(count),
             "--concurrency", str(concurrency)],
            capture_output=True, text=True, timeout=min(self.pass_timeout, remaining), check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [*([str(self.client_root)] if self.client_root else []), str(ROOT)])},
        )
        lab_cpu = bench_fleet._cpu_seconds(self.lab_pid) - lab_before
        stats = self.ask("stats")
        if proc.returncode != 0 or not proc.stdout.strip():
            print(f"  {kind} x{count}: FAILED (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
            return None
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        turns = stats["turns"] or [0]
        result.update(kind=kind, count=count, rtt=rtt, lab_cpu=lab_cpu, turns_median=statistics.median(turns),
                      turns_max=max(turns), sessions=len(stats["turns"]), refused=stats["refused"])
        wall = result["wall"]
        note = "  <- lab-bound" if lab_cpu > 0.85 * wall else ""
        print(f"  {kind:11s} x{count:<5d} rtt {rtt:4.0f} ms  wall {wall:7.2f} s  {1000 * wall / count:7.1f} ms/rtr  "
              f"turns/session {result['turns_median']:5.1f} (max {result['turns_max']})  cpu {result['cpu']:6.2f} s  "
              f"RSS {result['peak_mib']:6.1f} MiB  fds {result['peak_fds']:4d}  lab cpu {lab_cpu:6.2f} s "
              f"({lab_cpu / wall:4.0%}){note}", flush=True)
        if result["ok"] != count:
            print(f"    {count - result['ok']} of {count} FAILED, e.g. {result['failures'][:2]}")
        if result["refused"]:
            print(f"    {result['refused']} session(s) refused by the lab routers (vty lines busy)")
        return result


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> str:
    if a is None or b is None or not b[key]:
        return "n/a"
    return f"{a[key] / b[key]:.2f}x"


def orchestrate(args: argparse.Namespace) -> int:
    from eemwatchd.config.model import PolicyConfig

    default = PolicyConfig.model_fields["max_parallel_routers"].default
    concurrency = args.concurrency or default
    count = max(args.sizes)
    started = time.monotonic()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load {load[0]:.2f}; "
          f"concurrency {concurrency if not args.scaling else args.scaling} (policy default {default})", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-wan-") as tmp:
        ready: Queue[Any] = mp.Queue()
        commands: Queue[Any] = mp.Queue()
        answers: Queue[Any] = mp.Queue()
        stop = mp.Event()
        lab = mp.Process(target=_serve_lab, args=(count, tmp, ready, commands, answers, stop), daemon=True)
        lab.start()
        try:
            spec = ready.get(timeout=600)
            print(f"{count} lab routers behind WAN links + lab SMTP up in {time.monotonic() - started:.1f} s "
                  f"(pid {lab.pid})", flush=True)
            known_hosts = Path(tmp) / "known_hosts"
            known_hosts.write_text("".join(line + "\n" for _n, _p, line in spec["routers"]))
            spec["known_hosts"] = str(known_hosts)
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec))
            assert lab.pid is not None
            bench = Bench(spec_path, lab.pid, commands, answers, args.pass_timeout, started + args.deadline,
                          args.client_root)
            for rtt in args.rtts:
                bench.ask("wan", rtt)
                for size in sorted(args.sizes):
                    print(f"RTT {rtt:g} ms, {size} routers", flush=True)
                    for parallel in args.scaling or [concurrency]:
                        for kind in args.kinds:
                            result = bench.measure(kind, size, parallel, rtt)
                            if result is not None:
                                result["concurrency"] = parallel
                                rows.append(result)
        finally:
            stop.set()
            lab.join(30)
            if lab.is_alive():
                lab.terminate()
                lab.join(10)
    _summary(rows)
    print(f"total {time.monotonic() - started:.1f} s; load at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _summary(rows: list[dict[str, Any]]) -> None:
    def find(kind: str, rtt: float, count: int, parallel: int) -> dict[str, Any] | None:
        return next((r for r in rows if (r["kind"], r["rtt"], r["count"], r["concurrency"]) ==
                     (kind, rtt, count, parallel)), None)

    print("\nsummary (ratios measured in this run)")
    print(f"{'rtt':>5s} {'routers':>7s} {'par':>4s}  {'pass':11s} {'wall':>8s} {'bare wall':>9s} {'ratio':>6s} "
          f"{'turns':>5s} {'bare':>5s}  {'cpu':>6s} {'RSS MiB':>7s} {'fds':>4s}")
    for row in rows:
        if row["kind"] not in ("plan", "apply"):
            continue
        bare = find("floor" if row["kind"] == "plan" else "floor-apply", row["rtt"], row["count"], row["concurrency"])
        print(f"{row['rtt']:5.0f} {row['count']:7d} {row['concurrency']:4d}  {row['kind']:11s} {row['wall']:7.2f}s "
              f"{(bare['wall'] if bare else float('nan')):8.2f}s {_ratio(row, bare, 'wall'):>6s} "
              f"{row['turns_median']:5.1f} {(bare['turns_median'] if bare else float('nan')):5.1f}  "
              f"{row['cpu']:6.2f} {row['peak_mib']:7.1f} {row['peak_fds']:4d}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtts", type=float, nargs="+", default=[0, 50, 150], metavar="MS")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--concurrency", type=int, default=0, help="routers at once (default: the default of "
                        "policy.max_parallel_routers)")
    parser.add_argument("--scaling", type=int, nargs="+", metavar="N", help="run every pass at each of these "
                        "concurrencies instead (memory, fds and CPU per session)")
    parser.add_argument("--kinds", nargs="+", default=["floor", "plan", "floor-apply", "apply"],
                        choices=["floor", "plan", "floor-apply", "apply"])
    parser.add_argument("--pass-timeout", type=float, default=1200.0)
    parser.add_argument("--deadline", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument("--json", type=Path, help="also write every pass's figures to this file")
    parser.add_argument("--client-root", type=Path, metavar="DIR",
                        help="run plan and apply with the eemwatchd package found in DIR (e.g. an earlier "
                             "version: git archive REV eemwatchd | tar -x -C DIR); the lab stays this one")
    parser.add_argument("--pass", dest="pass_kind", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pass_kind:
        run_pass(args.pass_kind, args.spec, args.count, args.concurrency)
        return 0
    if not 1 <= max(args.sizes) <= 1000:
        parser.error("--sizes must be 1-1000")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
