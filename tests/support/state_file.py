"""eemwatchd's state file read with plain sqlite3, as a person would: an oracle apart from the Store that writes it."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class RouterOutcome:
    router: str
    at: datetime
    ok: bool
    summary: str
    error: str | None


def router_outcomes(path: Path) -> list[RouterOutcome]:
    """The last outcome the store recorded per router (table router_outcomes), by router name; a read-only
    connection of its own, so it sees committed rows only."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT router, at, ok, summary, error FROM router_outcomes ORDER BY router").fetchall()
    return [RouterOutcome(r, datetime.fromisoformat(at), bool(ok), s, e) for r, at, ok, s, e in rows]
