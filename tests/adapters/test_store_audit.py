"""`eemwatchd audit --verify` against a real state file tampered with by plain sqlite3, the way a person would."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.store import Store
from eemwatchd.adapters.store_audit import GENESIS, TRIGGERS
from eemwatchd.cli import main
from eemwatchd.errors import StateError
from tests.support.config_texts import STATE_CONFIG
from tests.support.state_file import audit_entry

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
V2_AUDIT_TABLE = """CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, router TEXT NOT NULL,
    action TEXT NOT NULL, trustpoint TEXT, sha256_before TEXT, sha256_after TEXT, test_fire TEXT,
    reason TEXT NOT NULL, evidence TEXT, prev_hash TEXT, hash TEXT)"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    (tmp_path / "eemwatchd.yaml").write_text(STATE_CONFIG)
    with Store.open(tmp_path / "state.db") as store:
        for n in range(1, 6):
            store.append_audit(audit_entry(n))
    return tmp_path / "state.db"


def _verify(state: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "-c", str(state.parent / "eemwatchd.yaml"), "--verify", *extra])
    out = capsys.readouterr().out.strip()
    return code, out


def _sql(state: Path, *statements: str) -> None:
    raw = sqlite3.connect(state)
    try:
        for statement in statements:
            raw.execute(statement)
        raw.commit()
    finally:
        raw.close()


def _restore(name: str) -> str:
    return TRIGGERS[name]  # what someone covering their tracks would run afterwards


def test_an_intact_log_verifies(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(state) as store:
        head = store.audit()[-1].hash
    assert head is not None
    code, out = _verify(state, capsys)
    assert (code, out) == (0, f"audit log verified: 5 rows, head {head[:12]}")
    code, out = _verify(state, capsys, "--json")
    assert (code, json.loads(out)) == (0, {"ok": True, "rows": 5, "head": head, "first_broken_id": None,
                                           "reason": ""})


def test_an_empty_log_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "eemwatchd.yaml").write_text(STATE_CONFIG)
    with Store.open(tmp_path / "state.db"):
        pass  # a store nothing was written to yet (a missing one is no store: exit 2, test_operator_output.py)
    assert _verify(tmp_path / "state.db", capsys) == (0, f"audit log verified: 0 rows, head {GENESIS[:12]}")


Tamper = Callable[[Path], None]

TAMPERINGS: list[tuple[str, Tamper, str]] = [
    ("edited", lambda p: _sql(p, "DROP TRIGGER audit_no_update", "UPDATE audit SET reason = 'forged' WHERE id = 3",
                              _restore("audit_no_update")),
     "audit log BROKEN at row 3: row 3: its contents do not match its hash (edited or replaced)"),
    ("edited-and-rehashed-alone", lambda p: _sql(
        p, "DROP TRIGGER audit_no_update",
        "UPDATE audit SET router = 'r9', hash = (SELECT hash FROM audit WHERE id = 2) WHERE id = 3",
        _restore("audit_no_update")),
     "audit log BROKEN at row 3: row 3: its contents do not match its hash (edited or replaced)"),
    ("deleted-middle", lambda p: _sql(p, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 3",
                                      _restore("audit_no_delete")),
     "audit log BROKEN at row 4: row 4: its prev_hash does not match the row before it: rows 3..3 are missing "
     "(deleted)"),
    ("deleted-first", lambda p: _sql(p, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 1",
                                     _restore("audit_no_delete")),
     "audit log BROKEN at row 2: row 2: its prev_hash does not match the row before it: rows 1..1 are missing "
     "(deleted)"),
    ("deleted-last", lambda p: _sql(p, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 5",
                                    _restore("audit_no_delete")),
     "audit log BROKEN at row 5: the audit head records 5 rows ending in "),
    ("insert-or-replace-past-the-triggers", lambda p: _sql(
        p, "DROP TRIGGER audit_append_only",
        "INSERT OR REPLACE INTO audit (id, at, router, action, reason, prev_hash, hash) "
        "SELECT 2, at, router, 'retire', 'forged', prev_hash, hash FROM audit WHERE id = 2",
        _restore("audit_append_only")),
     "audit log BROKEN at row 2: row 2: its contents do not match its hash (edited or replaced)"),
    ("forged-row-appended", lambda p: _sql(
        p, "INSERT INTO audit (id, at, router, action, reason, prev_hash, hash) "
           "SELECT 6, at, router, 'retire', 'forged', (SELECT head FROM audit_head), 'ab' FROM audit WHERE id = 5"),
     "audit log BROKEN at row 6: row 6: its contents do not match its hash (edited or replaced)"),
    ("row-without-hash", lambda p: _sql(
        p, "DROP TRIGGER audit_append_only",
        "INSERT INTO audit (at, router, action, reason) VALUES ('2026-03-01', 'r1', 'add', 'sneaked in')",
        _restore("audit_append_only")),
     "audit log BROKEN at row 6: row 6: it has no hash (inserted past eemwatchd)"),
    ("drop-trigger", lambda p: _sql(p, "DROP TRIGGER audit_no_update"),
     "audit log BROKEN: trigger audit_no_update is missing (dropped)"),
    ("trigger-made-harmless", lambda p: _sql(
        p, "DROP TRIGGER audit_no_delete",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT 1; END"),
     "audit log BROKEN: trigger audit_no_delete was changed"),
    ("drop-table", lambda p: _sql(p, "DROP TABLE audit"),
     "audit log BROKEN: the audit table is missing (dropped)"),
    ("drop-table-and-recreate", lambda p: _sql(p, "DROP TABLE audit", V2_AUDIT_TABLE),
     "audit log BROKEN at row 1: the audit head records 5 rows ending in "),
    ("drop-table-and-recreate-by-hand", lambda p: _sql(
        p, "DROP TABLE audit", "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT, router TEXT)"),
     "audit log BROKEN: the audit table has another shape (no such column: action): re-created by hand"),
    ("drop-both-tables-and-recreate", lambda p: _sql(
        p, "DROP TABLE audit", "DROP TABLE audit_head", V2_AUDIT_TABLE,
        "CREATE TABLE audit_head (id INTEGER PRIMARY KEY, rows INTEGER, head TEXT, last_id INTEGER)",
        f"INSERT INTO audit_head VALUES (1, 0, '{GENESIS}', 0)"),
     "audit log BROKEN at row 1: the audit head file records 5 rows ending in "),
    ("drop-both-tables", lambda p: _sql(p, "DROP TABLE audit_head", "DROP TABLE audit", V2_AUDIT_TABLE),
     "audit log BROKEN at row 1: the audit head record is missing (its table was dropped or emptied); the audit "
     "head file records 5 rows ending in "),
    ("sidecar-deleted", lambda p: Path(f"{p}.audit-head").unlink(),
     "audit log BROKEN: the audit head file "),
    ("sidecar-garbage", lambda p: Path(f"{p}.audit-head").write_text("{not json"),
     "audit log BROKEN: the audit head file "),
]


@pytest.mark.parametrize(("tamper", "expected"), [pytest.param(t, e, id=i) for i, t, e in TAMPERINGS])
def test_tampering_is_named(state: Path, capsys: pytest.CaptureFixture[str], tamper: Tamper, expected: str) -> None:
    assert _verify(state, capsys)[0] == 0
    tamper(state)
    code, out = _verify(state, capsys)
    assert code == 1
    assert out.startswith(expected), out
    assert "\n" not in out


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("INSERT OR REPLACE INTO audit (id, at, router, action, reason, prev_hash, hash) "
                     "SELECT id, at, router, 'retire', 'forged', prev_hash, hash FROM audit WHERE id = 2",
                     id="replace-an-old-row"),
        pytest.param("INSERT INTO audit (at, router, action, reason) VALUES ('x', 'r1', 'add', 'sneaked in')",
                     id="append-without-chain"),
        pytest.param("INSERT INTO audit (id, at, router, action, reason, prev_hash) "
                     f"VALUES (6, 'x', 'r1', 'add', 'forged', '{GENESIS}')", id="append-off-the-head"),
        pytest.param("DELETE FROM audit_head", id="delete-head"),
        pytest.param("UPDATE audit_head SET rows = 2", id="shrink-head"),
    ],
)
def test_triggers_refuse_the_plain_ways_in(state: Path, statement: str) -> None:
    raw = sqlite3.connect(state)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute(statement)
    finally:
        raw.close()


def test_appending_after_tampering_keeps_the_evidence(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(state, "DROP TABLE audit", V2_AUDIT_TABLE)
    sidecar = Path(f"{state}.audit-head").read_text()
    with Store.open(state) as store:
        store.append_audit(audit_entry(6))  # the next apply: chains from the recorded head, not from genesis
    code, out = _verify(state, capsys)
    assert code == 1
    assert out.startswith("audit log BROKEN at row 6: row 6: its prev_hash does not match the row before it: "
                          "rows 1..5 are missing (deleted); ")
    assert "trigger audit_no_update is missing (dropped)" in out  # dropping a table drops its triggers
    assert Path(f"{state}.audit-head").read_text() == sidecar  # not overwritten by the new head


def test_appending_after_both_tables_dropped_keeps_the_sidecar(state: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    _sql(state, "DROP TABLE audit", "DROP TABLE audit_head", V2_AUDIT_TABLE,
         "CREATE TABLE audit_head (id INTEGER PRIMARY KEY, rows INTEGER, head TEXT, last_id INTEGER)",
         f"INSERT INTO audit_head VALUES (1, 0, '{GENESIS}', 0)")
    sidecar = Path(f"{state}.audit-head").read_text()
    with Store.open(state) as store:
        store.append_audit(audit_entry(6))
    assert Path(f"{state}.audit-head").read_text() == sidecar
    code, out = _verify(state, capsys)
    assert (code, out.split(":")[0]) == (1, "audit log BROKEN at row 2")


def test_a_dropped_audit_table_stops_writers_with_a_fix(state: Path) -> None:
    _sql(state, "DROP TABLE audit")
    with Store.open(state) as store, pytest.raises(StateError, match=r"audit table is missing.*audit --verify"):
        store.append_audit(audit_entry(6))


def test_sidecar_is_private_and_follows_the_head(state: Path) -> None:
    sidecar = Path(f"{state}.audit-head")
    assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    with Store.open(state) as store:
        head = store.audit()[-1].hash
    assert json.loads(sidecar.read_text()) == {"rows": 5, "head": head, "last_id": 5}


def test_a_sidecar_one_row_behind_is_an_interrupted_write_not_tampering(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sidecar = Path(f"{state}.audit-head")
    behind = sidecar.read_text()
    with Store.open(state) as store:
        store.append_audit(audit_entry(6))
    sidecar.write_text(behind)  # as if the process died between the commit and the sidecar's replacement
    assert _verify(state, capsys)[0] == 0
    with Store.open(state) as store:
        store.append_audit(audit_entry(7))
    assert json.loads(sidecar.read_text())["rows"] == 7


# The schema of the first release (version 1), as its stores exist on disk.
V1_SCHEMA = [
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (1)",
    """CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, router TEXT NOT NULL,
       action TEXT NOT NULL, trustpoint TEXT, sha256_before TEXT, sha256_after TEXT, test_fire TEXT,
       reason TEXT NOT NULL)""",
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    *(f"INSERT INTO audit (at, router, action, trustpoint, reason) "
      f"VALUES ('2026-02-0{n}T10:00:00+00:00', 'r1', 'add', 'EEMW-{n}', 'old change {n}')" for n in range(1, 4)),
]


def test_a_version_1_log_is_chained_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "eemwatchd.yaml").write_text(STATE_CONFIG)
    state = tmp_path / "state.db"
    _sql(state, *V1_SCHEMA)
    code, out = _verify(state, capsys)
    assert code == 0
    assert out.startswith("audit log verified: 3 rows, head ")
    with Store.open(state) as store:
        entries = store.audit()
        assert [(e.reason, e.evidence) for e in entries] == [(f"old change {n}", None) for n in (1, 2, 3)]
        store.append_audit(audit_entry(4))
    assert stat.S_IMODE(Path(f"{state}.audit-head").stat().st_mode) == 0o600
    assert _verify(state, capsys)[1].startswith("audit log verified: 4 rows")
    _sql(state, "DROP TRIGGER audit_no_update", "UPDATE audit SET reason = 'rewritten' WHERE id = 2",
         _restore("audit_no_update"))
    assert _verify(state, capsys) == (1, "audit log BROKEN at row 2: row 2: its contents do not match its hash "
                                         "(edited or replaced)")


def test_an_unwritable_sidecar_does_not_lose_the_row(state: Path, capsys: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    blocker = Path(f"{state}.audit-head.{os.getpid()}.tmp")
    blocker.mkdir()  # the atomic replacement's temp file cannot be created
    try:
        with Store.open(state) as store:
            store.append_audit(audit_entry(6))
            assert len(store.audit()) == 6
    finally:
        blocker.rmdir()
    assert "cannot update the audit head file" in caplog.text
    assert _verify(state, capsys)[1].startswith("audit log verified: 6 rows")


# --- issue 18: the head file written once per router job (Store.audit_batch) -------------------------------


def _head_file(state: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(Path(f"{state}.audit-head").read_text())
    return data


def test_the_head_file_is_written_once_when_a_batch_ends(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(state) as store:
        before = _head_file(state)
        inode = os.stat(f"{state}.audit-head").st_ino
        with store.audit_batch():
            for n in range(6, 11):
                store.append_audit(audit_entry(n))
            # rows are committed one by one, the file still names the head before the batch
            assert store.verify_audit().rows == 10
            assert _head_file(state) == before
            assert os.stat(f"{state}.audit-head").st_ino == inode  # not rewritten
            with store.audit_batch():  # an overlapping batch (another router's job) ends first
                store.append_audit(audit_entry(11))
            assert _head_file(state)["rows"] == 11
        assert _head_file(state)["rows"] == 11
        assert store.verify_audit().ok
    assert _verify(state, capsys)[0] == 0


def test_a_batch_cut_short_leaves_a_lagging_head_file_that_verify_accepts(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a process dies inside a router job: the block never ends
    script = (
        "import os, sys\n"
        "from tests.support.state_file import audit_entry\n"
        "from eemwatchd.adapters.store import Store\n"
        "store = Store.open(sys.argv[1])\n"
        "with store.audit_batch():\n"
        "    for n in range(6, 9):\n"
        "        store.append_audit(audit_entry(n))\n"
        "    os._exit(0)\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script, str(state)], check=True, timeout=30, cwd=root,
                   env={**os.environ, "PYTHONPATH": str(root)})
    assert _head_file(state)["rows"] == 5
    code, out = _verify(state, capsys)
    assert code == 0, out
    # the rows after the file's head are still protected by the head table: deleting them is seen
    _sql(state, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id > 6")
    assert _verify(state, capsys)[0] != 0
