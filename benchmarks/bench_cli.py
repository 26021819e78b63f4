"""The CLI as whole processes: `eemwatchd --help`, `check-config` and `fetch` vs `openssl s_client -starttls smtp`.

Run: .venv/bin/python benchmarks/bench_cli.py [--runs 15]

Every command is a fresh process (what an operator or a cron job pays), started in round-robin so the
machine's load falls on all of them alike; medians and p90 in milliseconds, and ratios measured in this run:
- `python -c pass`: the interpreter's own start-up, the floor of any Python CLI;
- `eemwatchd --help` (target < 120 ms) and `eemwatchd check-config -c config/eemwatchd.example.yaml` (< 300 ms);
- `eemwatchd fetch 127.0.0.1:PORT --servername smtp.lab.example --ca-file ANCHORS` and
  `openssl s_client -starttls smtp -connect 127.0.0.1:PORT -servername smtp.lab.example -CAfile ANCHORS
  -showcerts` on the same lab SMTP server (STARTTLS, a Gmail-shaped chain), in a process of its own
  (target: fetch within 8x of openssl);
- `python -c "import <what fetch imports>"`: how much of fetch is importing;
- fetch with eemwatchd/reconcile/__init__.py skipped: what a lazy package init would give.
eemwatchd runs from this tree (`python -m eemwatchd.cli`, PYTHONPATH set to it). 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FETCH_IMPORTS = "import eemwatchd.cli, eemwatchd.commands.fetch, eemwatchd.reconcile.observe"
# `eemwatchd fetch` with eemwatchd/reconcile/__init__.py skipped (an empty package stands in for it): what
# fetch would cost if that package did not import the router side (scrapli, asyncssh, pydantic) eagerly.
FETCH_WITHOUT_RECONCILE_INIT = f"""
import sys, types
package = types.ModuleType("eemwatchd.reconcile")
package.__path__ = [{str(ROOT / "eemwatchd" / "reconcile")!r}]
sys.modules["eemwatchd.reconcile"] = package
from eemwatchd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _serve(ready: Queue[Any], stop: Any) -> None:
    from eemwatchd_lab.pki import GmailShapedPki
    from eemwatchd_lab.smtp import LabSmtpServer

    async def main() -> None:
        pki = GmailShapedPki.create()
        async with LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key) as smtp:
            ready.put((smtp.port, "".join(c.pem for c in pki.anchors)))
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


def _time_one(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False, env=env)
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if not 3 <= args.runs <= 200:
        parser.error("--runs must be 3-200")
    openssl = shutil.which("openssl")
    if openssl is None:
        print("openssl is not installed (apt-get install openssl)", file=sys.stderr)
        return 2
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EEMWATCHD_ROUTER_PASSWORD": "not-a-secret"}
    python = sys.executable
    ready: Queue[Any] = mp.Queue()
    stop = mp.Event()
    server = mp.Process(target=_serve, args=(ready, stop), daemon=True)
    server.start()
    try:
        port, anchors_pem = ready.get(timeout=60)
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            anchors = Path(tmp) / "anchors.pem"
            anchors.write_text(anchors_pem)
            eemwatchd = [python, "-m", "eemwatchd.cli"]
            commands: dict[str, list[str]] = {
                "python -c pass": [python, "-c", "pass"],
                "eemwatchd --help": [*eemwatchd, "--help"],
                "eemwatchd check-config": [*eemwatchd, "check-config", "-c",
                                           str(ROOT / "config" / "eemwatchd.example.yaml")],
                "openssl s_client -starttls smtp": [
                    openssl, "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
                    "-servername", "smtp.lab.example", "-CAfile", str(anchors), "-showcerts"],
                "eemwatchd fetch": [*eemwatchd, "fetch", f"127.0.0.1:{port}", "--servername", "smtp.lab.example",
                                    "--ca-file", str(anchors)],
                "python -c 'import (fetch's modules)'": [python, "-c", FETCH_IMPORTS],
                "fetch, reconcile/__init__ skipped": [
                    python, "-c", FETCH_WITHOUT_RECONCILE_INIT, "fetch", f"127.0.0.1:{port}",
                    "--servername", "smtp.lab.example", "--ca-file", str(anchors)],
            }
            for argv in commands.values():  # warm the page cache and .pyc files
                _time_one(argv, env)
            times: dict[str, list[float]] = {name: [] for name in commands}
            deadline = time.monotonic() + 240
            for _ in range(args.runs):
                if time.monotonic() > deadline:
                    print("stopped at the 240 s bound", file=sys.stderr)
                    break
                for name, argv in commands.items():
                    times[name].append(_time_one(argv, env))
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.terminate()
            server.join(5)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; {len(times['eemwatchd --help'])} runs "
          "of each, round-robin; whole processes (ms)")
    for name, values in times.items():
        print(f"  {name:38s} median {median[name]:7.1f}  p90 {_p90(values):7.1f}  min {min(values):7.1f}")
    base = median["python -c pass"]
    fetch_ratio = median["eemwatchd fetch"] / median["openssl s_client -starttls smtp"]
    print("ratios (medians)")
    print(f"  eemwatchd --help / python -c pass        {median['eemwatchd --help'] / base:5.1f}x   "
          f"target < 120 ms: {'met' if median['eemwatchd --help'] < 120 else 'MISSED'}")
    print(f"  check-config / python -c pass            {median['eemwatchd check-config'] / base:5.1f}x   "
          f"target < 300 ms: {'met' if median['eemwatchd check-config'] < 300 else 'MISSED'}")
    print(f"  eemwatchd fetch / openssl s_client       {fetch_ratio:5.1f}x   "
          f"target <= 8x: {'met' if fetch_ratio <= 8 else 'MISSED'}")
    share = median["python -c 'import (fetch's modules)'"] / median["eemwatchd fetch"]
    print(f"  importing fetch's modules / fetch        {share:5.0%}")
    lean = median["fetch, reconcile/__init__ skipped"] / median["openssl s_client -starttls smtp"]
    print(f"  fetch, reconcile/__init__ skipped / openssl  {lean:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
