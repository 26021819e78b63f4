"""The SQLite state store: observations and debounce, unneeded state, outcomes, append-only audit, errors."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eemwatchd.adapters.lock import StateLock
from eemwatchd.adapters.store import SCHEMA_VERSION, AuditEntry, Proof, Store
from eemwatchd.adapters.store_audit import AUDIT_ACTIONS
from eemwatchd.core.alert_state import AlertState
from eemwatchd.errors import StateError
from eemwatchd_lab.pki import GmailShapedPki
from tests.support.repo import REPO
from tests.support.state_file import router_outcomes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PKI = GmailShapedPki.create(now=NOW - timedelta(days=5))
PATH = [PKI.leaf.cert, PKI.intermediate.cert, PKI.new_root.cert]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state" / "state.db", secrets=["s3cr3t-pass"]) as opened:
        yield opened


def test_opens_in_wal_with_foreign_keys_and_version(store: Store) -> None:
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        raw.close()
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_observation_debounce_counts_sightings(store: Store) -> None:
    first = store.record_observation(server="gmail", address="127.0.0.1", chain=PKI.served, verified=True,
                                     path=PATH, error=None, now=NOW)
    assert first.times_seen == 1
    second = store.record_observation(server="gmail", address="127.0.0.1", chain=PKI.served, verified=True,
                                      path=PATH, error=None, now=NOW + timedelta(hours=1))
    assert second.times_seen == 2
    assert second.first_seen == NOW
    assert second.last_seen == NOW + timedelta(hours=1)
    assert list(second.chain) == PKI.served
    assert list(second.path) == PATH
    other = store.record_observation(server="gmail", address="::1", chain=PKI.served, verified=True,
                                     path=PATH, error=None, now=NOW)
    assert other.times_seen == 1  # per address


def test_observation_keeps_latest_verification(store: Store) -> None:
    store.record_observation(server="gmail", address="a", chain=PKI.served, verified=True, path=PATH,
                             error=None, now=NOW)
    again = store.record_observation(server="gmail", address="a", chain=PKI.served, verified=False, path=[],
                                     error="unknown issuer", now=NOW + timedelta(minutes=1))
    assert (again.verified, again.path, again.error, again.times_seen) == (False, (), "unknown issuer", 2)


def test_observations_filter_by_server_and_time(store: Store) -> None:
    store.record_observation(server="gmail", address="a", chain=PKI.served, verified=True, path=PATH,
                             error=None, now=NOW - timedelta(days=20))
    store.record_observation(server="m365", address="b", chain=PKI.served[:2], verified=True, path=PATH,
                             error=None, now=NOW)
    assert [o.server for o in store.observations()] == ["gmail", "m365"]
    assert [o.server for o in store.observations(servers=["gmail"])] == ["gmail"]
    assert [o.server for o in store.observations(since=NOW - timedelta(days=14))] == ["m365"]


def test_unneeded_is_replaced_per_router(store: Store) -> None:
    store.set_unneeded("r1", {"aa": NOW, "bb": NOW - timedelta(days=1)})
    store.set_unneeded("r2", {"cc": NOW})
    store.set_unneeded("r1", {"bb": NOW - timedelta(days=1)})
    assert store.unneeded_since("r1") == {"bb": NOW - timedelta(days=1)}
    assert store.unneeded_since("r2") == {"cc": NOW}


def test_outcome_is_last_per_router(store: Store) -> None:
    store.record_outcome("r1", at=NOW, ok=False, summary="failed", error="timeout")
    store.record_outcome("r1", at=NOW + timedelta(minutes=5), ok=True, summary="2 added", error=None)
    [outcome] = router_outcomes(store.path)
    assert (outcome.router, outcome.ok, outcome.summary, outcome.error) == ("r1", True, "2 added", None)


def _entry(reason: str = "x") -> AuditEntry:
    return AuditEntry(at=NOW, router="r1", action="add", trustpoint="EEMW-AAAA", sha256_before=None,
                      sha256_after="ab" * 32, test_fire=None, reason=reason)


def test_audit_appends_and_reads_in_order(store: Store) -> None:
    first = store.append_audit(_entry("one"))
    second = store.append_audit(_entry("two"))
    assert second > first
    assert [e.reason for e in store.audit()] == ["one", "two"]
    assert store.audit(router="other") == []


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE audit SET reason = 'forged'", id="update"),
        pytest.param("DELETE FROM audit", id="delete"),
    ],
)
def test_audit_is_append_only(store: Store, statement: str) -> None:
    store.append_audit(_entry())
    raw = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(statement)
    finally:
        raw.close()
    assert [e.reason for e in store.audit()] == ["x"]


def test_test_fire_evidence_round_trips(store: Store) -> None:
    evidence = "history: 12  Mar  1 12:00:03  none  applet: EEM-MAIL  success"
    store.append_audit(AuditEntry(at=NOW, router="r1", action="test-fire", trustpoint=None, sha256_before=None,
                                  sha256_after=None, test_fire="ok", reason="mail proven", evidence=evidence))
    store.append_audit(_entry())
    fired, added = store.audit()
    assert (fired.action, fired.test_fire, fired.evidence) == ("test-fire", "ok", evidence)
    assert added.evidence is None
    assert fired.hash and added.hash and fired.hash != added.hash


def test_documented_actions() -> None:
    assert {"add", "add-failed", "retire", "retire-failed", "rollback", "save", "save-failed", "test-fire",
            "observed-add", "observed-retire", "eem-configure"} == AUDIT_ACTIONS


def test_secrets_never_reach_the_file(store: Store) -> None:
    store.append_audit(AuditEntry(at=NOW, router="r1", action="test-fire", trustpoint=None, sha256_before=None,
                                  sha256_after=None, test_fire="failed: user:s3cr3t-pass@smtp",
                                  reason="refused", evidence="%HA_EM-3-FMPD_SMTP: user:s3cr3t-pass@smtp.lab"))
    store.append_audit(_entry("login as admin:s3cr3t-pass failed"))
    store.record_outcome("r1", at=NOW, ok=False, summary="x", error="server said s3cr3t-pass")
    store.close()
    data = b"".join(p.read_bytes() for p in store.path.parent.iterdir())
    assert b"s3cr3t-pass" not in data
    assert b"admin:****" in data
    assert b"FMPD_SMTP: user:****@smtp.lab" in data
    with Store.open(store.path) as again:
        assert again.verify_audit().ok  # the scrubbed text is what was hashed


def test_not_a_database_is_a_state_error_with_a_fix(tmp_path: Path) -> None:
    bad = tmp_path / "state.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match=r"state\.db.*move the file aside"):
        Store.open(bad)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="newer eemwatchd"):
        Store.open(path)


def test_unwritable_directory_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create its directory"):
        Store.open(blocker / "sub" / "state.db")


def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store.open(path) as first:
        first.append_audit(_entry("kept"))
    with Store.open(path) as second:
        assert [e.reason for e in second.audit()] == ["kept"]


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


def test_every_file_of_the_store_is_private(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    with Store.open(directory / "state.db") as store, StateLock(store.path, purpose="apply"):
        store.append_audit(_entry("one"))
        store.record_outcome("r1", at=NOW, ok=True, summary="ok", error=None)
        modes = _modes(directory)
        assert {"state.db", "state.db-wal", "state.db-shm", "state.db.lock"} <= set(modes)
        assert modes == dict.fromkeys(modes, 0o600)
    assert _modes(directory) == dict.fromkeys(_modes(directory), 0o600)


def test_looser_files_are_tightened_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        store.append_audit(_entry())
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (tmp_path / name).chmod(0o644)
    with caplog.at_level(logging.WARNING), Store.open(path) as store:
        assert [e.reason for e in store.audit()] == ["x"]
        assert _modes(tmp_path) == dict.fromkeys(_modes(tmp_path), 0o600)
    assert "state.db was mode 0644 (readable by others); tightened to 0600" in caplog.text


def test_the_store_is_private_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        with Store.open(tmp_path / "state.db") as store:
            store.append_audit(_entry())
            modes = _modes(tmp_path)
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(modes, 0o600)


def test_proofs_keep_the_latest_and_the_latest_success(store: Store) -> None:
    assert store.last_proof("r1") is None
    store.record_proof("r1", at=NOW, ok=True, evidence="history: success", trust=["bb", "aa", "aa"])
    store.record_proof("r1", at=NOW + timedelta(hours=1), ok=False,
                       evidence="%HA_EM-3-FMPD_SMTP: user:s3cr3t-pass@smtp bad_certificate", trust=["aa", "cc"])
    store.record_proof("r2", at=NOW + timedelta(hours=2), ok=True, evidence="other router", trust=[])
    latest = store.last_proof("r1")
    assert latest == Proof("r1", NOW + timedelta(hours=1), False,
                           "%HA_EM-3-FMPD_SMTP: user:****@smtp bad_certificate", frozenset({"aa", "cc"}))
    assert store.last_proof("r1", ok_only=True) == Proof("r1", NOW, True, "history: success",
                                                         frozenset({"aa", "bb"}))
    assert store.last_proof("r2") == Proof("r2", NOW + timedelta(hours=2), True, "other router", frozenset())


def test_proofs_order_by_time_not_by_insertion(store: Store) -> None:
    store.record_proof("r1", at=NOW + timedelta(minutes=5), ok=True, evidence="later", trust=["aa"])
    store.record_proof("r1", at=NOW, ok=False, evidence="earlier, recorded late", trust=["aa"])
    proof = store.last_proof("r1")
    assert proof is not None
    assert proof.evidence == "later"


def test_alert_states_of_some_subjects_only(store: Store) -> None:
    for n in range(5):
        store.save_alert_state(AlertState(f"r{n}", "router_drift", NOW, NOW, None, f"drift {n}"))
        store.save_alert_state(AlertState(f"r{n}", "expiry", NOW, NOW, None, f"expiry {n}"))
    assert set(store.alert_states(subjects={"r1", "r3", "nobody"})) == {
        ("r1", "router_drift"), ("r1", "expiry"), ("r3", "router_drift"), ("r3", "expiry")}
    assert store.alert_states(subjects=()) == {}
    assert len(store.alert_states()) == 10
    assert len(store.alert_states(subjects=[f"r{n}" for n in range(2000)])) == 10  # many: one read of all


def test_alert_states_round_trip_and_replace(store: Store) -> None:
    assert store.alert_states() == {}
    opened = AlertState("router r1", "testfire_failed", NOW, NOW, None, "mail via user:s3cr3t-pass failed")
    store.save_alert_state(opened)
    store.save_alert_state(AlertState("server gmail", "chain_changed", NOW, NOW, NOW, "new root"))
    resolved = AlertState("router r1", "testfire_failed", NOW, NOW + timedelta(hours=2),
                          NOW + timedelta(hours=2), "mail via user:**** failed")
    assert store.alert_states()[("router r1", "testfire_failed")].summary == "mail via user:**** failed"
    store.save_alert_state(resolved)
    assert store.alert_states() == {
        ("router r1", "testfire_failed"): resolved,
        ("server gmail", "chain_changed"): AlertState("server gmail", "chain_changed", NOW, NOW, NOW, "new root"),
    }


# A writer that holds the state lock and an open write transaction (as apply does mid-step) until killed.
WRITER = """
import sys, time
from eemwatchd.adapters.lock import StateLock
from eemwatchd.adapters.store import Store
StateLock(sys.argv[1], purpose="apply").acquire()
store = Store.open(sys.argv[1])
store._db.execute("BEGIN IMMEDIATE")
store._db.execute("INSERT INTO router_outcomes (router, at, ok, summary) VALUES ('r9', 'x', 1, 'uncommitted')")
print("writing", flush=True)
time.sleep(60)
"""


@pytest.fixture
def busy_writer(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        store.append_audit(_entry("committed"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        yield path
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_readers_do_not_wait_behind_a_writer(busy_writer: Path) -> None:
    start = time.monotonic()
    with Store.open(busy_writer, busy_timeout=10.0) as store:
        assert [e.reason for e in store.audit()] == ["committed"]
        assert router_outcomes(busy_writer) == []  # the writer's open transaction is invisible
        assert store.verify_audit().ok
        assert store.last_proof("r1") is None
        assert store.alert_states() == {}
    assert time.monotonic() - start < 1.0


def test_a_second_writer_gives_up_after_the_busy_timeout(busy_writer: Path) -> None:
    start = time.monotonic()
    with Store.open(busy_writer, busy_timeout=0.3) as store, pytest.raises(StateError, match="holds the store"):
        store.record_outcome("r1", at=NOW, ok=True, summary="x", error=None)
    assert time.monotonic() - start < 5.0


def test_sightings_within_half_an_interval_count_once(tmp_path: Path) -> None:
    """Issue 8 sec. 5: confirmations count distinct observations spaced at least half the interval apart."""
    from eemwatchd_lab.pki import GmailShapedPki

    chain = tuple(GmailShapedPki.create(now=datetime(2026, 3, 1, tzinfo=UTC)).served)
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    spacing = timedelta(minutes=30)
    with Store.open(tmp_path / "state.db") as store:
        seen = [store.record_observation(server="s", address="a", chain=chain, verified=True, path=(), error=None,
                                         now=at + timedelta(minutes=m), min_spacing=spacing).times_seen
                for m in (0, 1, 29, 30, 31, 61)]
    assert seen == [1, 1, 1, 2, 2, 3]


def test_a_user_password_at_host_form_is_scrubbed_even_when_the_password_is_unknown(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.db") as store:
        store.record_outcome("r1", at=datetime(2026, 3, 1, tzinfo=UTC), ok=False, summary="failed",
                             error="cannot parse: event manager environment _email_server "
                                   "alerts:Xy9-secret@smtp.example")
        [outcome] = router_outcomes(store.path)
    assert outcome.error is not None and "Xy9-secret" not in outcome.error and "alerts:****@smtp" in outcome.error
