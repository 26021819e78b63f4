"""Issue 17 finding 6: a frozen or full state disk. A real `eemwatchd run` keeps its state on a small loop-mounted ext4
(root only; skipped with the reason where the machine cannot mount one). Frozen (`fsfreeze`): /healthz and /metrics
keep answering (store calls no longer block the event loop), `eemwatchd_store_writable` turns 0 and /readyz 503
within the store's deadline, one `state_store` alert; thawed, all of it turns back. Full: the same, at once, and no
traceback per interval."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from eemwatchd_lab.environment import StateDisk
from eemwatchd_lab.scenario import Lab
from tests.support.daemon import all_in_sync, daemon_process, free_port, get, metrics, series, wait_until

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def disk_kinds() -> dict[str, str | None]:
    """Why each kind of state disk cannot be made here (None: it can)."""
    return {kind: StateDisk.unavailable(kind) for kind in ("loop", "tmpfs")}


@pytest.fixture
def frozen_disk(disk_kinds: dict[str, str | None], tmp_path: Path) -> Iterator[StateDisk]:
    if disk_kinds["loop"] is not None:
        pytest.skip(f"no freezable state disk on this machine: {disk_kinds['loop']}")
    with StateDisk(tmp_path / "disk", size_mb=16) as disk:
        yield disk


@pytest.fixture
def full_disk(disk_kinds: dict[str, str | None], tmp_path: Path) -> Iterator[StateDisk]:
    """A loop-mounted ext4 where the machine allows it, else the closest real fault: a tmpfs with a size limit."""
    kind = "loop" if disk_kinds["loop"] is None else "tmpfs"
    if disk_kinds[kind] is not None:
        pytest.skip(f"no state disk to fill on this machine: {disk_kinds['loop']}; {disk_kinds['tmpfs']}")
    with StateDisk(tmp_path / "disk", size_mb=16, kind=kind) as disk:
        yield disk


def store_writable(base: str) -> float | None:
    return series(metrics(base), "eemwatchd_store_writable").get("")


def configure(lab: Lab, disk: StateDisk) -> str:
    """The lab's config with its state on ``disk``; the daemon's base URL."""
    port = free_port()
    document = yaml.safe_load(lab.config_path.read_text())
    document["metrics"] = {"listen": f"127.0.0.1:{port}"}
    document["state_path"] = str(disk.mountpoint / "state.db")
    document["servers"][0]["interval"] = "2s"  # every fetch records its sighting: a write every 2 s
    document["policy"]["recent"] = "10m"
    document["defaults"]["routers"]["interval"] = "5s"
    lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    return f"http://127.0.0.1:{port}"


async def in_sync(base: str, names: list[str], daemon: subprocess.Popen[bytes], log: Path) -> None:
    await wait_until("routers in sync", lambda: get(f"{base}/readyz")[0] == 200 and all_in_sync(base, names),
                     90, daemon, log)


async def answers_quickly(base: str, seconds: float, log: Path) -> None:
    """/healthz 200 and /metrics 200, each within 2 s, every second for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path, code_wanted in (("/healthz", 200), ("/metrics", 200)):
            started = time.monotonic()
            code, _body = await asyncio.to_thread(get, base + path, 2.0)
            assert code == code_wanted and time.monotonic() - started < 2.0, \
                f"{path}: {code} after {time.monotonic() - started:.1f} s\n{log.read_text()[-3000:]}"
        await asyncio.sleep(1.0)


async def test_a_frozen_state_disk_blocks_nothing_and_is_reported(live_lab: Lab, frozen_disk: StateDisk,
                                                                   tmp_path: Path) -> None:
    lab = live_lab
    disk = frozen_disk
    names = [d.name for d in lab.fleet]
    base = configure(lab, disk)
    log = tmp_path / "daemon.log"
    with daemon_process(lab.config_path, log) as daemon:
        try:
            await in_sync(base, names, daemon, log)
            disk.freeze()
            frozen = time.monotonic()
            await answers_quickly(base, 8, log)
            await wait_until("store not writable", lambda: store_writable(base) == 0.0, 20, daemon, log)
            noticed = time.monotonic() - frozen
            code, body = get(f"{base}/readyz")
            assert code == 503 and "state store" in body, body
            await answers_quickly(base, 6, log)
            assert noticed < 16.0  # the store's deadline (10 s) after the first write that hung
        finally:
            disk.thaw()
        await wait_until("store writable again", lambda: store_writable(base) == 1.0, 30, daemon, log)
        await wait_until("/readyz 200 again", lambda: get(f"{base}/readyz")[0] == 200, 10, daemon, log)
        await wait_until("routers in sync", lambda: all_in_sync(base, names), 30, daemon, log)
        text = log.read_text()
        assert text.count("ALERT state_store state-store: the state store") == 1, text[-3000:]
        assert text.count("ALERT state_store state-store: resolved") == 1, text[-3000:]
        assert "Traceback" not in text, text[-3000:]


async def test_a_full_state_disk_is_reported_once_without_tracebacks(live_lab: Lab, full_disk: StateDisk,
                                                                      tmp_path: Path) -> None:
    lab = live_lab
    disk = full_disk
    names = [d.name for d in lab.fleet]
    base = configure(lab, disk)
    log = tmp_path / "daemon.log"
    with daemon_process(lab.config_path, log) as daemon:
        await in_sync(base, names, daemon, log)
        disk.fill()
        try:
            await wait_until("store not writable", lambda: store_writable(base) == 0.0, 30, daemon, log)
            code, body = get(f"{base}/readyz")
            assert code == 503 and "full" in body, body
            await answers_quickly(base, 10, log)  # several server and router jobs meet the full disk
            failures = series(metrics(base), "eemwatchd_store_write_failures_total").get("")
            assert failures is not None and failures >= 2
        finally:
            disk.free()
        await wait_until("store writable again", lambda: store_writable(base) == 1.0, 30, daemon, log)
        text = log.read_text()
        assert text.count("ALERT state_store state-store: the state store") == 1, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
