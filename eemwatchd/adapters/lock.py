"""The state lock: one writer (apply, the daemon) at a time, an flock on ``<state_path>.lock``."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from eemwatchd.adapters.private_files import PRIVATE_MODE, private_umask, tighten
from eemwatchd.errors import StateError, StateLocked

# How often a waiting acquire() retries, and how long a contender waits for the holder's details to appear
# (the holder writes them just after taking the lock).
_POLL_SECONDS = 0.05
_DETAILS_GRACE_SECONDS = 0.2
_MAX_DETAILS_BYTES = 4096


def lock_path_for(state_path: str | Path) -> Path:
    return Path(f"{state_path}.lock")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StateLock:
    """An exclusive lock beside the state database, for the writers (``apply``, the daemon).

    ``fcntl.flock`` on an open file: the kernel drops it when the process exits or dies, so a lock is never
    stale, and the lock file is never deleted (deleting it would let two processes lock two different files).
    The holder writes ``{"pid", "started", "purpose"}`` into the file so a contender can say who holds it.
    Readers (``plan``, ``audit``) do not take it: SQLite's WAL lets them read beside the writer.

    Use as a context manager (acquires at once, no waiting) or call :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, state_path: str | Path, *, purpose: str,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.path = lock_path_for(state_path)
        self.purpose = purpose
        self._clock = clock
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for the holder to finish.

        Raises StateLocked (exit code 75) naming the holder when it is still held, StateError when the lock
        file cannot be opened.
        """
        if self._fd is not None:
            raise StateError(f"state lock {self.path}: already held by this process")
        fd = self._open()
        try:
            self._wait_for(fd, wait)
            started = self._clock().astimezone(UTC).isoformat(timespec="seconds")
            details = json.dumps({"pid": os.getpid(), "started": started, "purpose": self.purpose})
            os.ftruncate(fd, 0)
            os.pwrite(fd, details.encode() + b"\n", 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)  # closing drops the flock too
            raise
        self._fd = fd

    def _wait_for(self, fd: int, wait: float) -> None:
        deadline = time.monotonic() + max(wait, 0.0)
        while not self._try_flock(fd):
            if time.monotonic() >= deadline:
                raise self._locked(fd)
            time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def _try_flock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise StateError(f"state lock {self.path}: cannot lock ({exc.strerror})") from exc
        return True

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays, emptied, for the next holder."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the kernel still drops the lock on close; stale details are overwritten by the next holder
        finally:
            os.close(fd)

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with private_umask():
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
        except OSError as exc:
            raise StateError(f"state lock {self.path}: cannot open ({exc.strerror}); make its directory "
                             "writable for this user, or set state_path to another place") from exc
        tighten([self.path])
        return fd

    def _locked(self, fd: int) -> StateLocked:
        """The error naming the holder, from the details it wrote (waiting briefly for a fresh holder's)."""
        deadline = time.monotonic() + _DETAILS_GRACE_SECONDS
        raw = b""
        while True:
            try:
                raw = os.pread(fd, _MAX_DETAILS_BYTES, 0)
            except OSError as exc:
                return StateLocked(str(self.path), pid=None, started=None, purpose=None,
                                   detail=f"its details cannot be read: {exc.strerror}")
            if raw.strip() or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_SECONDS / 2)
        return holder_error(str(self.path), raw)


def holder_error(path: str, raw: bytes) -> StateLocked:
    """StateLocked from the lock file's bytes; empty or garbage content still gives a clear message."""
    if not raw.strip():
        return StateLocked(path, pid=None, started=None, purpose=None, detail="it has not written its details")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return StateLocked(path, pid=None, started=None, purpose=None,
                           detail="its lock file holds no readable details")
    if not isinstance(data, dict):
        return StateLocked(path, pid=None, started=None, purpose=None,
                           detail="its lock file holds no readable details")
    pid, started, purpose = data.get("pid"), data.get("started"), data.get("purpose")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(started, str):
        return StateLocked(path, pid=None, started=None, purpose=None,
                           detail="its lock file holds no readable details")
    # the details are another process's words: keep them short and printable in our message
    started = "".join(ch for ch in started[:40] if ch.isprintable())
    purpose = "".join(ch for ch in purpose[:40] if ch.isprintable()) if isinstance(purpose, str) else "unknown"
    return StateLocked(path, pid=pid, started=started, purpose=purpose)
