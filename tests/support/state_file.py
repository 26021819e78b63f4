"""eemwatchd's state file read with plain sqlite3, as a person would: an oracle apart from the Store that writes it."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eemwatchd.adapters.store import AuditEntry


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


# When the made-up audit history below starts (the store tests' pinned NOW).
AUDIT_START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def audit_entry(n: int) -> AuditEntry:
    """Audit row number ``n`` of a made-up history (an add on r0 or r1), AUDIT_START + n minutes."""
    return AuditEntry(at=AUDIT_START + timedelta(minutes=n), router=f"r{n % 2}", action="add",
                      trustpoint=f"EEMW-{n:04d}", sha256_before=None, sha256_after=f"{n:02x}" * 32, test_fire=None,
                      reason=f"change {n}")
