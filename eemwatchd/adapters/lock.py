"""The state lock: one writer (apply, the daemon) at a time, an flock on ``<state_path>.lock``; and one writer per
router across shards: a writer's claim is checked against every live writer's before it takes its lock."""

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
from eemwatchd.core.shard import Claim, Shard
from eemwatchd.errors import StateError, StateLocked

# How often a waiting acquire() retries, and how long a contender waits for the holder's details to appear
# (the holder writes them just after taking the lock).
_POLL_SECONDS = 0.05
_DETAILS_GRACE_SECONDS = 0.2
_MAX_DETAILS_BYTES = 1 << 20  # a claim may list the routers of an `apply --router` (a few) or none
# How long a writer waits for another one's claim check (a few file operations) to finish.
_REGISTRY_WAIT_SECONDS = 10.0


def lock_path_for(state_path: str | Path) -> Path:
    return Path(f"{state_path}.lock")


def claims_path_for(base_state_path: str | Path) -> Path:
    """Where writers of every shard of one fleet serialize their claim checks (beside the unsharded state)."""
    return Path(f"{base_state_path}.claims.lock")


def _writer_locks(base_state_path: Path) -> list[Path]:
    """The lock files of every state database of this fleet: unsharded (``state.db.lock``) and per shard
    (``state.0-of-3.db.lock``)."""
    stem, suffix = base_state_path.stem, base_state_path.suffix
    found = {p for p in base_state_path.parent.glob(f"{stem}.*{suffix}.lock") if not p.name.endswith(".claims.lock")}
    found.add(lock_path_for(base_state_path))
    return sorted(p for p in found if p.exists())


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
                 clock: Callable[[], datetime] = _utc_now, claim: Claim | None = None,
                 base_state_path: str | Path | None = None) -> None:
        """``claim``: the routers this writer may change; with it, acquire() first checks every live writer of
        the same fleet (``base_state_path``: the unsharded state database) and refuses when one covers any of
        them, whatever shard either runs (one writer per router)."""
        self.path = lock_path_for(state_path)
        self.purpose = purpose
        self._clock = clock
        self._claim = claim
        self._base = Path(base_state_path) if base_state_path is not None else Path(state_path)
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
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                self._acquire_once()
            except StateLocked:
                if time.monotonic() >= deadline:
                    raise
            else:
                return
            time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def _acquire_once(self) -> None:
        registry = self._open(claims_path_for(self._base)) if self._claim is not None else None
        try:
            if registry is not None:
                self._wait_for(registry, _REGISTRY_WAIT_SECONDS, what="claims")
                self._check_claims()
            fd = self._open(self.path)
            try:
                self._wait_for(fd, 0.0)
                self._write_details(fd)
            except BaseException:
                os.close(fd)  # closing drops the flock too
                raise
            self._fd = fd
        finally:
            if registry is not None:
                os.close(registry)

    def _write_details(self, fd: int) -> None:
        started = self._clock().astimezone(UTC).isoformat(timespec="seconds")
        details: dict[str, object] = {"pid": os.getpid(), "started": started, "purpose": self.purpose}
        if self._claim is not None:
            details["shard"] = str(self._claim.shard) if self._claim.shard is not None else None
            details["routers"] = sorted(self._claim.routers) if self._claim.routers is not None else None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(details).encode() + b"\n", 0)
        os.fsync(fd)

    def _check_claims(self) -> None:
        """StateLocked when a live writer of this fleet (another state file's lock holder) claims a router this
        writer would change. Called with the claims registry held, so two writers never check at once."""
        assert self._claim is not None
        for path in _writer_locks(self._base):
            if path == self.path:
                continue  # our own state file: its flock below decides
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if self._try_flock(fd):
                    continue  # nobody holds it (closing the fd drops our flock again)
                raw = os.pread(fd, _MAX_DETAILS_BYTES, 0)
            finally:
                os.close(fd)
            shard, routers = _claim_of(raw)
            shared = self._claim.overlap(shard, routers)
            if shared:
                names = sorted(shared)
                listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                error = holder_error(str(path), raw)
                where = f"shard {shard}" if shard is not None else "the whole fleet"
                raise StateLocked(str(path), pid=error.pid, started=error.started, purpose=error.purpose,
                                  detail=f"it runs {where} and owns router(s) this would change: {listed}")

    def _wait_for(self, fd: int, wait: float, *, what: str = "state") -> None:
        deadline = time.monotonic() + max(wait, 0.0)
        while not self._try_flock(fd):
            if time.monotonic() >= deadline:
                if what == "claims":
                    raise StateLocked(str(claims_path_for(self._base)), pid=None, started=None, purpose=None,
                                      detail="another writer's claim check did not finish in time")
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

    def _open(self, path: Path) -> int:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with private_umask():
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
        except OSError as exc:
            raise StateError(f"state lock {path}: cannot open ({exc.strerror}); make its directory "
                             "writable for this user, or set state_path to another place") from exc
        tighten([path])
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


def _claim_of(raw: bytes) -> tuple[Shard | None, frozenset[str] | None]:
    """The shard and routers a lock holder claims, from its details; a holder that wrote none (an older
    eemwatchd, or details still being written) is taken to claim every router: the safe side."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    shard: Shard | None = None
    if isinstance(data.get("shard"), str):
        try:
            shard = Shard.parse(data["shard"])
        except ValueError:
            shard = None
    routers = data.get("routers")
    if isinstance(routers, list) and all(isinstance(r, str) for r in routers):
        return shard, frozenset(routers)
    return shard, None


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
