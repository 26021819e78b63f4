"""The state lock between real processes: contention names the holder, SIGKILL frees it, waiting is bounded."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.lock import StateLock, holder_error, lock_path_for
from eemwatchd.errors import StateError, StateLocked
from tests.support.repo import REPO

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# A second process that takes the lock, says so, then holds it for `hold` seconds (or until killed).
HOLDER = """
import sys, time
from datetime import UTC, datetime
from eemwatchd.adapters.lock import StateLock
lock = StateLock(sys.argv[1], purpose=sys.argv[2], clock=lambda: datetime(2026, 3, 1, 11, 58, tzinfo=UTC))
lock.acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def _hold(spawn: list[subprocess.Popen[str]], state: Path, *, purpose: str = "apply",
          hold: float = 30.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), purpose, str(hold)],
                            stdout=subprocess.PIPE, text=True, env=env)
    spawn.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_told_who_applies(tmp_path: Path, spawn: list[subprocess.Popen[str]]) -> None:
    state = tmp_path / "state.db"
    holder = _hold(spawn, state)
    with pytest.raises(StateLocked) as caught:
        StateLock(state, purpose="apply").acquire()
    err = caught.value
    assert str(err) == (f"another eemwatchd (pid {holder.pid}, started 2026-03-01T11:58:00+00:00) is applying; "
                        "try again later")
    assert (err.pid, err.purpose, err.exit_code) == (holder.pid, "apply", 75)
    assert isinstance(err, StateError)


def test_a_running_daemon_is_named_with_advice(tmp_path: Path, spawn: list[subprocess.Popen[str]]) -> None:
    state = tmp_path / "state.db"
    holder = _hold(spawn, state, purpose="daemon")
    with pytest.raises(StateLocked, match=rf"^another eemwatchd \(pid {holder.pid}, started "
                                          r"2026-03-01T11:58:00\+00:00\) is applying; try again later "
                                          r"\(it is the daemon, .*stop it first: systemctl stop eemwatchd\)$"):
        StateLock(state, purpose="apply").acquire()


def test_killed_holder_frees_the_lock(tmp_path: Path, spawn: list[subprocess.Popen[str]]) -> None:
    state = tmp_path / "state.db"
    holder = _hold(spawn, state)
    with pytest.raises(StateLocked):
        StateLock(state, purpose="apply").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    lock = StateLock(state, purpose="apply", clock=lambda: NOW)
    lock.acquire(wait=5.0)  # the kernel dropped the dead holder's flock: no stale lock to clean up
    try:
        assert f'"pid": {os.getpid()}' in lock_path_for(state).read_text()
        assert '"started": "2026-03-01T12:00:00+00:00"' in lock_path_for(state).read_text()
    finally:
        lock.release()


def test_waiting_gets_the_lock_when_the_holder_finishes(tmp_path: Path,
                                                       spawn: list[subprocess.Popen[str]]) -> None:
    state = tmp_path / "state.db"
    holder = _hold(spawn, state, hold=0.6)
    start = time.monotonic()
    with pytest.raises(StateLocked):
        StateLock(state, purpose="apply").acquire()  # no waiting by default
    lock = StateLock(state, purpose="apply")
    lock.acquire(wait=10.0)
    try:
        assert 0.3 < time.monotonic() - start < 10.0
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "released"
    finally:
        lock.release()


def test_wait_is_bounded(tmp_path: Path, spawn: list[subprocess.Popen[str]]) -> None:
    state = tmp_path / "state.db"
    _hold(spawn, state)
    start = time.monotonic()
    with pytest.raises(StateLocked):
        StateLock(state, purpose="apply").acquire(wait=0.4)
    elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 3.0


def test_one_lock_per_process_too_and_release_frees_it(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with StateLock(state, purpose="daemon", clock=lambda: NOW) as first:
        assert first.held
        with pytest.raises(StateLocked, match=rf"\(pid {os.getpid()}, started 2026-03-01T12:00:00.*it is the daemon"):
            StateLock(state, purpose="apply").acquire()
        with pytest.raises(StateError, match="already held"):
            first.acquire()
    assert not first.held
    assert lock_path_for(state).read_text() == ""  # emptied, never deleted
    first.release()  # idempotent
    with StateLock(state, purpose="apply"):
        pass


def test_lock_file_is_private_even_when_it_was_not(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    lock_path_for(state).write_text("")
    lock_path_for(state).chmod(0o644)
    with StateLock(state, purpose="apply"):
        assert stat.S_IMODE(lock_path_for(state).stat().st_mode) == 0o600
    fresh = tmp_path / "other" / "state.db"
    with StateLock(fresh, purpose="apply"):
        assert stat.S_IMODE(lock_path_for(fresh).stat().st_mode) == 0o600


def test_lock_in_an_unusable_place_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot open"):
        StateLock(blocker / "state.db", purpose="apply").acquire()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"", r"^another eemwatchd is applying; try again later \(it has not written its details; "
                          r"lock /x/state\.db\.lock; ",
                     id="empty"),
        pytest.param(b"\xff\xfe garbage", r"is applying; try again later \(its lock file holds no readable details",
                     id="binary"),
        pytest.param(b"[1, 2]", r"holds no readable details", id="not-an-object"),
        pytest.param(b'{"pid": "12", "started": "x"}', r"holds no readable details", id="pid-not-int"),
        pytest.param(b'{"pid": 12, "started": "T", "purpose": "lab"}',
                     r"^another eemwatchd \(pid 12, started T\) is applying; try again later "
                     r"\(it holds the state for lab\)$",
                     id="other-purpose"),
        pytest.param(b'{"pid": 12, "started": "T\\u001b[2J", "purpose": "apply"}',
                     r"^another eemwatchd \(pid 12, started T\[2J\) is applying", id="control-chars-dropped"),
    ],
)
def test_lock_file_content_always_gives_a_clear_message(content: bytes, expected: str) -> None:
    err = holder_error("/x/state.db.lock", content)
    assert err.exit_code == 75
    assert re.search(expected, str(err)), str(err)
