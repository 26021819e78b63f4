"""Files only this user may read: created 0600 under umask 077; looser existing ones tightened with a warning."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Umask 077 while files are created (SQLite makes its -wal/-shm lazily, with the database's mode).

    The umask is process-wide; eemwatchd creates its files from one thread, so the window is harmless.
    """
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def tighten(paths: Iterable[Path]) -> list[Path]:
    """chmod 0600 every existing file in ``paths`` that grants group or others any access; returns those changed.

    A file we cannot chmod (another owner) is logged, not fatal: opening it fails later with its own clear error.
    """
    changed: list[Path] = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot check the permissions of %s: %s", path, exc.strerror)
            continue
        if not mode & 0o077:
            continue
        try:
            path.chmod(PRIVATE_MODE)
        except OSError as exc:
            log.warning("%s is readable by others (mode %04o) and cannot be tightened: %s; chmod 600 it",
                        path, mode, exc.strerror)
            continue
        log.warning("%s was mode %04o (readable by others); tightened to 0600", path, mode)
        changed.append(path)
    return changed


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename), mode 0600."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with private_umask():
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
