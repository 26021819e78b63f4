"""A pseudo-terminal for tests of what eemwatchd draws on one (progress, countdowns)."""

from __future__ import annotations

import errno
import os
import re

# The escape sequences rich draws with (cursor moves, colours, line clears).
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def drain(fd: int) -> bytes:
    """Everything written to the pseudo-terminal until its last writer closed it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:  # EIO: the slave side is closed (Linux)
            if exc.errno == errno.EIO:
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
