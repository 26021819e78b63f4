"""Chain fetch speed on loopback: latency per fetch and fetches/s at 50 concurrent, vs a bare TLS connect.

The lab servers run in a child process so client and server do not share one event loop.
Run: .venv/bin/python benchmarks/bench_fetch.py [--rounds N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable
from multiprocessing.queues import Queue
from typing import Any

from eemwatchd.adapters.smtp import FetchTimeouts, fetch_chain


def _serve(ports: Queue[Any], stop: Any) -> None:
    from eemwatchd_lab.pki import GmailShapedPki
    from eemwatchd_lab.smtp import LabSmtpServer

    async def main() -> None:
        pki = GmailShapedPki.create()
        async with (
            LabSmtpServer(mode="starttls", certs=pki.served, key=pki.leaf.key) as starttls,
            LabSmtpServer(mode="implicit", certs=pki.served, key=pki.leaf.key) as implicit,
        ):
            ports.put((starttls.port, implicit.port))
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


async def bare_tls_connect(port: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.transport.abort()


async def measure(name: str, one: Callable[[], Awaitable[object]], rounds: int, concurrency: int) -> float:
    for _ in range(5):  # warm up
        await one()
    latencies = []
    for _ in range(rounds):
        started = time.perf_counter()
        await one()
        latencies.append((time.perf_counter() - started) * 1000)
    gate = asyncio.Semaphore(concurrency)
    total = concurrency * 10

    async def gated() -> None:
        async with gate:
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(total)))
    rate = total / (time.perf_counter() - started)
    print(f"{name:28s} median {statistics.median(latencies):6.2f} ms  p90 "
          f"{statistics.quantiles(latencies, n=10)[-1]:6.2f} ms  {rate:7.1f}/s at {concurrency} concurrent")
    return statistics.median(latencies)


async def run(starttls_port: int, implicit_port: int, rounds: int, concurrency: int) -> None:
    timeouts = FetchTimeouts(connect=10, step=10, total=30)
    base = await measure("bare TLS connect (implicit)", lambda: bare_tls_connect(implicit_port), rounds,
                         concurrency)
    imp = await measure("fetch_chain implicit", lambda: fetch_chain(
        "127.0.0.1", implicit_port, mode="implicit", timeouts=timeouts), rounds, concurrency)
    st = await measure("fetch_chain starttls", lambda: fetch_chain(
        "127.0.0.1", starttls_port, mode="starttls", timeouts=timeouts), rounds, concurrency)
    print(f"ratio implicit/bare {imp / base:.2f}; starttls/bare {st / base:.2f} (median latency)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    ports: Queue[Any] = mp.Queue()
    stop = mp.Event()
    child = mp.Process(target=_serve, args=(ports, stop), daemon=True)
    child.start()
    try:
        starttls_port, implicit_port = ports.get(timeout=30)
        asyncio.run(run(starttls_port, implicit_port, args.rounds, args.concurrency))
    finally:
        stop.set()
        child.join(10)


if __name__ == "__main__":
    main()
