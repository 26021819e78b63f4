"""The audit log's hash chain: appending rows, chaining an old log once, and verifying it against its heads.

Each row holds ``prev_hash`` (the previous row's ``hash``; 64 zeros for the first) and ``hash`` = SHA-256 of
``prev_hash + "\\n" + canonical JSON of the row's fields`` (the values exactly as stored, id included). The row
count and the newest hash are kept twice more: in the ``audit_head`` table (same transaction as the row) and in
the sidecar file ``<state_path>.audit-head`` (0600, replaced atomically just after the commit).

What this catches, with plain ``sqlite3`` access to the file: an edited row (its hash no longer matches), a
deleted row (the next row's ``prev_hash`` points at a row that is not there), a row replaced or added with
``INSERT OR REPLACE`` (refused by a trigger; with the trigger dropped, its hash or its link breaks), a dropped
trigger (the triggers are compared with their expected text), ``DROP TABLE`` and a re-created empty table (the
head table still counts the rows), and dropping the head table too (the sidecar file still counts them).

What it cannot catch, and nothing stored beside the log can: someone who can write both the database and the
sidecar file and who recomputes the hashes (they are not keyed; a key on the same host would be readable by
the same person) can rewrite or truncate history consistently, and deleting the database together with its
sidecar leaves nothing to compare with. To notice that, copy the head that ``eemwatchd audit --verify`` prints
to another machine from time to time (or ship the log off the host); a rewritten history no longer contains it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eemwatchd.adapters.private_files import write_private

log = logging.getLogger(__name__)

GENESIS = "0" * 64

# The actions written today. ``action`` stays free text (an old log may hold others), these are documented:
#   add, add-failed            a trustpoint installed (or the attempt that failed)
#   retire, retire-failed      a trustpoint removed (or the attempt that failed)
#   rollback                   a change undone after a failed step
#   save, save-failed          ``write memory`` after a proven test-fire (or its failure)
#   test-fire                  ``event manager run``; ``test_fire`` holds the verdict, ``evidence`` its proof
#   observed-add, observed-retire
#                              the router differs from what the log says it holds (a change made elsewhere or
#                              an interrupted step): the row explains the router's state
#   eem-configure              onboarding sent EEM configuration (environment, applet), masked
AUDIT_ACTIONS = frozenset({
    "add", "add-failed", "retire", "retire-failed", "rollback", "save", "save-failed", "test-fire",
    "observed-add", "observed-retire", "eem-configure",
})

_FIELDS = ("id", "at", "router", "action", "trustpoint", "sha256_before", "sha256_after", "test_fire", "reason",
           "evidence")

# The triggers that keep the log append-only; verify compares their stored text with these.
TRIGGERS: dict[str, str] = {
    "audit_no_update": "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
                       "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "audit_no_delete": "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
                       "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    # INSERT OR REPLACE deletes the old row without firing delete triggers: refuse any id that is not new,
    # and any row that does not extend the chain's head.
    "audit_append_only": "CREATE TRIGGER audit_append_only BEFORE INSERT ON audit "
                         "WHEN NEW.id IS NULL OR NEW.id <= (SELECT coalesce(max(id), 0) FROM audit) "
                         "OR NEW.prev_hash IS NOT (SELECT head FROM audit_head WHERE id = 1) "
                         "BEGIN SELECT RAISE(ABORT, 'audit rows must extend the hash chain'); END",
    "audit_head_no_delete": "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
                            "BEGIN SELECT RAISE(ABORT, 'the audit head cannot be removed'); END",
    "audit_head_grows": "CREATE TRIGGER audit_head_grows BEFORE UPDATE ON audit_head "
                        "WHEN NEW.rows < OLD.rows OR NEW.last_id < OLD.last_id "
                        "BEGIN SELECT RAISE(ABORT, 'the audit head only moves forward'); END",
}

HEAD_TABLE = (
    "CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), rows INTEGER NOT NULL, "
    "head TEXT NOT NULL, last_id INTEGER NOT NULL)"
)


@dataclass(frozen=True)
class AuditVerdict:
    """The result of checking the chain: ``first_broken_id`` is the first row that fails (None when the
    problem is not a row, e.g. a dropped trigger), ``reason`` says why (every problem, ``; ``-joined)."""

    ok: bool
    rows: int
    first_broken_id: int | None
    reason: str
    head: str


@dataclass(frozen=True)
class Head:
    rows: int
    head: str
    last_id: int


def sidecar_path(state_path: Path) -> Path:
    return Path(f"{state_path}.audit-head")


def row_hash(prev_hash: str, row: dict[str, object]) -> str:
    """SHA-256 over the previous hash and the canonical encoding of the row's stored values."""
    canonical = json.dumps({k: row.get(k) for k in _FIELDS}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _head(db: sqlite3.Connection) -> Head | None:
    row = db.execute("SELECT rows, head, last_id FROM audit_head WHERE id = 1").fetchone()
    return None if row is None else Head(int(row[0]), str(row[1]), int(row[2]))


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def create_chain(db: sqlite3.Connection) -> None:
    """The head table (at genesis) and the triggers of a new store; call inside the schema transaction."""
    db.execute(HEAD_TABLE)
    db.execute("INSERT OR IGNORE INTO audit_head (id, rows, head, last_id) VALUES (1, 0, ?, 0)", (GENESIS,))
    for sql in TRIGGERS.values():
        db.execute(sql.replace("CREATE TRIGGER ", "CREATE TRIGGER IF NOT EXISTS ", 1))


def chain_existing(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2, once, inside the migration transaction: hash the rows already there, in id order.

    The append-only triggers are dropped for these UPDATEs and created again (with the new ones) after. The
    old rows were never chained, so this vouches only for their state at migration time.
    """
    db.execute("DROP TRIGGER IF EXISTS audit_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    db.execute(HEAD_TABLE)
    prev, count, last_id = GENESIS, 0, 0
    rows = db.execute(f"SELECT {', '.join(_FIELDS)} FROM audit ORDER BY id").fetchall()  # noqa: S608
    for values in rows:
        row = dict(zip(_FIELDS, values, strict=True))
        digest = row_hash(prev, row)
        db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, row["id"]))
        prev, count, last_id = digest, count + 1, int(values[0])
    db.execute("INSERT OR REPLACE INTO audit_head (id, rows, head, last_id) VALUES (1, ?, ?, ?)",
               (count, prev, last_id))
    for sql in TRIGGERS.values():
        db.execute(sql)


def append_row(db: sqlite3.Connection, row: dict[str, object]) -> tuple[int, Head]:
    """Insert ``row`` (without id/hashes) as the chain's next row; call inside a write transaction.

    The next row chains from the head table, not from the table's last row, so a log whose rows were dropped
    keeps showing the gap instead of starting a fresh, clean-looking chain.
    """
    tables = _tables(db)
    if "audit" not in tables or "audit_head" not in tables:
        missing = " and ".join(t for t in ("audit", "audit_head") if t not in tables)
        raise sqlite3.IntegrityError(
            f"the {missing} table is missing (dropped?): the audit log was tampered with; run "
            "`eemwatchd audit --verify`, keep the file as evidence and move it (with its .audit-head) aside")
    head = _head(db)
    if head is None:
        raise sqlite3.IntegrityError("the audit head record is missing: the audit log was tampered with; run "
                                     "`eemwatchd audit --verify`")
    top = db.execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()[0]
    new_id = max(int(top), head.last_id) + 1
    full = {**row, "id": new_id}
    digest = row_hash(head.head, full)
    db.execute(
        f"INSERT INTO audit ({', '.join(_FIELDS)}, prev_hash, hash) "  # noqa: S608
        f"VALUES ({', '.join('?' * len(_FIELDS))}, ?, ?)",
        (*(full.get(k) for k in _FIELDS), head.head, digest),
    )
    new_head = Head(head.rows + 1, digest, new_id)
    db.execute("UPDATE audit_head SET rows = ?, head = ?, last_id = ? WHERE id = 1",
               (new_head.rows, new_head.head, new_head.last_id))
    return new_id, new_head


def read_sidecar(path: Path) -> tuple[Head | None, str | None]:
    """The sidecar's head, or None and why not (None, None when the file does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"the audit head file {path} cannot be read ({exc.strerror})"
    try:
        data = json.loads(raw.decode("utf-8"))
        head = Head(int(data["rows"]), str(data["head"]), int(data["last_id"]))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None, f"the audit head file {path} is not readable (edited or damaged)"
    return head, None


def _is_prefix(db: sqlite3.Connection, head: Head) -> bool:
    """Does the chain in the table contain ``head`` as its ``head.rows``-th row?"""
    if head.rows == 0:
        return head.head == GENESIS
    row = db.execute("SELECT id, hash FROM audit ORDER BY id LIMIT 1 OFFSET ?", (head.rows - 1,)).fetchone()
    return row is not None and int(row[0]) == head.last_id and row[1] == head.head


def update_sidecar(db: sqlite3.Connection, path: Path, head: Head) -> None:
    """Write the new head to the sidecar, unless the sidecar records rows this log no longer has.

    A sidecar that disagrees is evidence: it stays as it is (``audit --verify`` reports it) and we log why.
    """
    old, problem = read_sidecar(path)
    if problem is not None or (old is not None and not _is_prefix(db, old)):
        log.error("the audit log does not match %s (%s); not updating it: run `eemwatchd audit --verify`",
                  path, problem or f"it records {old.rows if old else 0} rows up to another head")
        return
    data = json.dumps({"rows": head.rows, "head": head.head, "last_id": head.last_id}).encode() + b"\n"
    try:
        write_private(path, data)
    except OSError as exc:
        # the row is committed; a sidecar left behind still names a row of the chain, so verify accepts it
        log.warning("cannot update the audit head file %s (%s); it lags behind the log", path, exc.strerror)


def write_initial_sidecar(db: sqlite3.Connection, path: Path) -> None:
    """After chaining an old log: the sidecar starts at its head (an existing sidecar is left alone)."""
    head = _head(db)
    if head is not None and not path.exists():
        update_sidecar(db, path, head)


def _norm(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _check_triggers(db: sqlite3.Connection) -> list[str]:
    stored = {name: sql for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")}
    problems = []
    for name, sql in TRIGGERS.items():
        if name not in stored:
            problems.append(f"trigger {name} is missing (dropped)")
        elif _norm(stored[name]) != _norm(sql):
            problems.append(f"trigger {name} was changed")
    return problems


def _walk(db: sqlite3.Connection) -> tuple[int, str, int, int | None, str | None]:
    """Rows, head hash and last id of the chain in the table, plus the first broken row and why."""
    prev, count, prev_id = GENESIS, 0, 0
    query = f"SELECT {', '.join(_FIELDS)}, prev_hash, hash FROM audit ORDER BY id"  # noqa: S608
    for values in db.execute(query):
        row = dict(zip(_FIELDS, values[: len(_FIELDS)], strict=True))
        row_id, stored_prev, stored_hash = int(values[0]), values[-2], values[-1]
        count += 1
        if stored_hash is None or stored_prev is None:
            return count, prev, prev_id, row_id, "it has no hash (inserted past eemwatchd)"
        if stored_prev != prev:
            gap = f"rows {prev_id + 1}..{row_id - 1} are missing (deleted)" if row_id > prev_id + 1 else \
                "the row before it was replaced or removed"
            return count, prev, prev_id, row_id, f"its prev_hash does not match the row before it: {gap}"
        if row_hash(prev, row) != stored_hash:
            return count, prev, prev_id, row_id, "its contents do not match its hash (edited or replaced)"
        prev, prev_id = stored_hash, row_id
    return count, prev, prev_id, None, None


def verify(db: sqlite3.Connection, sidecar: Path) -> AuditVerdict:
    """Check the chain, the head table, the sidecar file and the triggers (one read transaction)."""
    side, side_problem = read_sidecar(sidecar)  # before the snapshot: a writer only moves the sidecar forward
    db.execute("BEGIN")
    try:
        tables = _tables(db)
        if "audit" not in tables:
            return AuditVerdict(False, 0, None, "the audit table is missing (dropped)", GENESIS)
        try:
            rows, head, last_id, broken_id, why = _walk(db)
        except sqlite3.OperationalError as exc:  # a table re-created by hand, without our columns
            return AuditVerdict(False, 0, None, f"the audit table has another shape ({exc}): re-created by hand",
                                GENESIS)
        problems = [f"row {broken_id}: {why}"] if broken_id is not None else []
        stored = _head(db) if "audit_head" in tables else None
        if stored is None:
            problems.append("the audit head record is missing (its table was dropped or emptied)")
        elif broken_id is None and (stored.rows, stored.head) != (rows, head):
            lost = stored.rows - rows
            what = f"{lost} row(s) are missing (deleted, or the table dropped and re-created)" if lost > 0 else \
                "it does not match the rows"
            problems.append(f"the audit head records {stored.rows} rows ending in {stored.head[:12]}: {what}")
            broken_id = last_id + 1 if lost > 0 else broken_id
        if side_problem:
            problems.append(side_problem)
        elif side is None and rows:
            problems.append(f"the audit head file {sidecar} is missing")
        elif side is not None and broken_id is None and not _is_prefix(db, side):
            problems.append(f"the audit head file records {side.rows} rows ending in {side.head[:12]}, which this "
                            "log does not contain (rows deleted, or the tables dropped)")
            if side.rows > rows:
                broken_id = last_id + 1
        problems.extend(_check_triggers(db))
    finally:
        db.execute("COMMIT")
    return AuditVerdict(not problems, rows, broken_id, "; ".join(problems), head)


def scrubbed(scrub: Callable[[str | None], str | None], row: dict[str, object]) -> dict[str, object]:
    """The free-text fields of ``row`` with secrets replaced (what is hashed is what is stored)."""
    return {k: scrub(v) if k in {"test_fire", "reason", "evidence"} and isinstance(v, str) else v
            for k, v in row.items()}

