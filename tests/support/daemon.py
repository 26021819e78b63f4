"""Talking to a daemon run as a process: a free port, plain HTTP GETs, its /metrics as samples, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_lab_document(config_path: Path, *, server_interval: str | None = None, router_interval: str | None = None,
                      recent: str = "10m") -> tuple[dict[str, Any], str]:
    """The live lab's config (``config_path``) as a document to edit, with /metrics on a free port of its own, and
    that endpoint's base URL. The caller writes it back (yaml.safe_dump) once edited."""
    port = free_port()
    document = yaml.safe_load(config_path.read_text())
    document["metrics"] = {"listen": f"127.0.0.1:{port}"}
    if server_interval is not None:
        document["servers"][0]["interval"] = server_interval
    if router_interval is not None:
        document["defaults"]["routers"]["interval"] = router_interval
    document["policy"]["recent"] = recent
    return document, f"http://127.0.0.1:{port}"


def all_in_sync(base: str, names: list[str]) -> bool:
    """Every router of ``names`` has `eemwatchd_router_in_sync 1` on the daemon's /metrics at ``base``."""
    values = series(metrics(base), "eemwatchd_router_in_sync")
    return all(values.get(n) == 1.0 for n in names)


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = get(f"{base}/metrics")
    assert code == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def series(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[str, float]:
    """``name``'s samples keyed by their router/server label."""
    return {dict(labels).get("router") or dict(labels).get("server", ""): v for (n, labels), v in values.items()
            if n == name}


async def wait_until(what: str, check: Callable[[], Any], timeout: float, daemon: subprocess.Popen[bytes],
                     log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if daemon.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}; daemon log tail:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def daemon_process(config: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "eemwatchd.cli", "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
