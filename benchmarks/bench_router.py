"""Router session speed on loopback: RouterSession open + read_snapshot + close vs a bare asyncssh session.

Baseline: asyncssh connect + shell + one `show clock` (read up to the prompt) + close, against the same lab
router. Ours: RouterSession open (scrapli: login, `terminal length 0`, `terminal width 512`) + read_snapshot
(`show running-config`, `show clock`) + close. Both measured in this process, same routers, same run:
1 router sequential (median/p90), then 20 and 100 routers concurrently (one session each: wall time,
sessions/s). The lab routers run in a child process so client and server do not share one event loop.
Peak RSS is this (client) process's; the lab child's is printed after it exits.
Run: .venv/bin/python benchmarks/bench_router.py [--runs N] [--fleet 20 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import asyncssh

from eemwatchd.adapters.router import RouterSession, RouterTarget

USER, PASSWORD = "bench", "bench-pw-not-secret"
DEADLINE = 55.0  # the whole script stays under a minute


def _serve(count: int, ports: Queue[Any], stop: Any) -> None:
    from eemwatchd_lab.router import Fleet, User

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-router-") as state:
            async with Fleet.numbered(count, Path(state), users=(User(USER, PASSWORD),)) as fleet:
                ports.put([(d.name, d.port, d.known_hosts_line()) for d in fleet])
                while not stop.is_set():
                    await asyncio.sleep(0.05)

    asyncio.run(main())


async def bare_show_clock(port: int, known_hosts: str) -> None:
    conn = await asyncssh.connect(
        "127.0.0.1", port, username=USER, password=PASSWORD, known_hosts=known_hosts,
        client_keys=None, agent_path=None, config=None,
    )
    try:
        proc = await conn.create_process(encoding="utf-8", term_type="xterm")
        buffer = ""
        while not buffer.endswith("#"):
            buffer += await proc.stdout.read(4096)
        proc.stdin.write("show clock\n")
        buffer = ""
        while " UTC " not in buffer or not buffer.endswith("#"):
            chunk = await proc.stdout.read(4096)
            if not chunk:
                raise EOFError("router closed the session")
            buffer += chunk
    finally:
        conn.close()
        await conn.wait_closed()


async def ours_snapshot(target: RouterTarget) -> None:
    async with RouterSession(target) as session:
        snapshot = await session.read_snapshot()
    assert snapshot.clock is not None


def _p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


async def sequential(one: Callable[[], Awaitable[None]], runs: int) -> list[float]:
    for _ in range(3):  # warm up
        await one()
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        await one()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def concurrent(jobs: Sequence[Callable[[], Awaitable[None]]]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(job() for job in jobs))
    return time.perf_counter() - started


async def run(routers: list[tuple[str, int, str]], known_hosts: str, runs: int, fleets: Sequence[int]) -> None:
    targets = [
        RouterTarget(name, "127.0.0.1", port, USER, password=PASSWORD, known_hosts=Path(known_hosts))
        for name, port, _line in routers
    ]
    port0 = routers[0][1]
    base = await sequential(lambda: bare_show_clock(port0, known_hosts), runs)
    ours = await sequential(lambda: ours_snapshot(targets[0]), runs)
    print(f"1 router sequential, {runs} runs (ms)")
    for label, values in (("bare asyncssh + show clock", base), ("RouterSession + read_snapshot", ours)):
        print(f"  {label:31s} median {statistics.median(values):6.2f} ms  p90 {_p90(values):6.2f} ms")
    print(f"  ratio ours/bare                 median {statistics.median(ours) / statistics.median(base):6.2f}x"
          f"    p90 {_p90(ours) / _p90(base):6.2f}x")
    for count in fleets:
        chosen = routers[:count]
        base_wall = await concurrent(
            [lambda p=port: bare_show_clock(p, known_hosts) for _n, port, _l in chosen]  # type: ignore[misc]
        )
        ours_wall = await concurrent([lambda t=t: ours_snapshot(t) for t in targets[:count]])  # type: ignore[misc]
        print(f"{count} routers concurrently (one session each)")
        print(f"  bare asyncssh + show clock      wall {base_wall * 1000:7.1f} ms  {count / base_wall:7.1f} sessions/s")
        print(f"  RouterSession + read_snapshot   wall {ours_wall * 1000:7.1f} ms  {count / ours_wall:7.1f} sessions/s")
        print(f"  ratio ours/bare                 wall {ours_wall / base_wall:6.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS of this (client) process: {peak / 1024:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--fleet", type=int, nargs="+", default=[20, 100])
    args = parser.parse_args()
    count = max([1, *args.fleet])
    ports: Queue[Any] = mp.Queue()
    stop = mp.Event()
    child = mp.Process(target=_serve, args=(count, ports, stop), daemon=True)
    started = time.perf_counter()
    child.start()
    code = 0
    try:
        routers = ports.get(timeout=30)
        print(f"{len(routers)} lab routers up in {time.perf_counter() - started:.1f} s (child process)")
        with tempfile.TemporaryDirectory(prefix="bench-router-kh-") as tmp:
            known_hosts = Path(tmp) / "known_hosts"
            known_hosts.write_text("".join(line + "\n" for _n, _p, line in routers))
            remaining = DEADLINE - (time.perf_counter() - started)
            try:
                asyncio.run(asyncio.wait_for(run(routers, str(known_hosts), args.runs, args.fleet), remaining))
            except TimeoutError:
                print(f"benchmark stopped at its {DEADLINE:.0f} s bound", file=sys.stderr)
                code = 1
    finally:
        stop.set()
        child.join(10)
        if child.is_alive():
            child.terminate()
            child.join(5)
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"peak RSS of the lab child ({count} routers): {child_peak / 1024:.1f} MiB")
    print(f"total {time.perf_counter() - started:.1f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
