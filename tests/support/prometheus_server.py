"""A real Prometheus (/usr/bin/prometheus) for tests: scrapes one target every second on 127.0.0.1, optionally
evaluates rule files, answers queries over its HTTP API, and is stopped (by the PID it was started with).

Synchronous on purpose (it also serves tests that run the daemon as a subprocess). A test whose target is
served on its own event loop calls the blocking methods through ``asyncio.to_thread`` so the loop keeps
answering the scrapes.

    with running_prometheus("127.0.0.1:9810", tmp_path) as prom:
        rows = prom.wait_for('eemwatchd_router_in_sync{router="r1"}')
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMETHEUS = "/usr/bin/prometheus"


def prometheus_binary() -> str | None:
    """The Prometheus server binary, or None where the system package is not installed."""
    return shutil.which("prometheus") or (PROMETHEUS if Path(PROMETHEUS).exists() else None)


@dataclass(frozen=True)
class Row:
    """One element of an instant-vector result."""

    labels: dict[str, str]
    value: float


class PrometheusError(AssertionError):
    """Prometheus did not start, answer or show what was waited for; carries its log tail."""


class PrometheusServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def _get(self, path: str, params: dict[str, str] | None = None, *, timeout: float = 5.0) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return json.loads(reply.read())

    def query(self, expr: str) -> list[Row]:
        """An instant query at the server's now; raises on an invalid expression."""
        try:
            answer = self._get("/api/v1/query", {"query": expr})
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"query {expr!r} failed: {exc.read().decode(errors='replace')}") from exc
        data = answer["data"]
        if data["resultType"] != "vector":
            raise PrometheusError(f"query {expr!r} gave a {data['resultType']}, not a vector")
        return [Row(labels=r["metric"], value=float(r["value"][1])) for r in data["result"]]

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets")["data"]["activeTargets"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["data"]["alerts"])

    def wait_for(self, expr: str, *, timeout: float = 30.0,
                 check: Callable[[list[Row]], bool] = bool) -> list[Row]:
        """Query until ``check(rows)`` holds (default: a non-empty result); bounded by ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        rows: list[Row] = []
        while time.monotonic() < deadline:
            rows = self.query(expr)
            if check(rows):
                return rows
            time.sleep(0.25)
        targets = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError")) for t in self.targets()]
        raise PrometheusError(f"{expr!r} did not show what was expected within {timeout:.0f} s "
                              f"(last result {rows}; targets {targets})\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the process this helper started (by its PID): SIGTERM, then SIGKILL after ``timeout``."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(target: str, job: str, rule_files: Sequence[Path]) -> str:
    # JSON is YAML: no YAML writer needed
    return json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
    }, indent=2)


def start_prometheus(target: str, workdir: Path, *, job: str = "eemwatchd", rule_files: Sequence[Path] = (),
                     timeout: float = 30.0) -> PrometheusServer:
    """Start Prometheus scraping ``target`` (HOST:PORT, path /metrics) and wait until it is ready."""
    binary = prometheus_binary()
    if binary is None:
        raise PrometheusError("prometheus is not installed (Debian package 'prometheus')")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_config(target, job, rule_files))
    for attempt in range(3):  # the free port may be taken between probe and bind: try another
        port = _free_port()
        log_path = workdir / f"prometheus-{attempt}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            )
        server = PrometheusServer(process, port, log_path)
        if _wait_ready(server, timeout):
            return server
        server.stop()
        if "address already in use" not in server.log_tail():
            break
    raise PrometheusError(f"prometheus did not become ready within {timeout:.0f} s\n{server.log_tail()}")


def _wait_ready(server: PrometheusServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(server.url + "/-/ready", timeout=2) as reply:
            if reply.status == 200:
                return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def running_prometheus(target: str, workdir: Path, *, job: str = "eemwatchd", rule_files: Sequence[Path] = (),
                       timeout: float = 30.0) -> Iterator[PrometheusServer]:
    server = start_prometheus(target, workdir, job=job, rule_files=rule_files, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
