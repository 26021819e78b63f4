"""The state store: SQLite (WAL) with observations, outcomes, "unneeded since", proofs, alert state and the audit."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from eemwatchd.adapters import store_audit
from eemwatchd.adapters.private_files import PRIVATE_MODE, private_umask, tighten
from eemwatchd.adapters.store_audit import AuditVerdict
from eemwatchd.adapters.store_schema import MIGRATE_1_TO_2, MIGRATE_2_TO_3, SCHEMA, SCHEMA_VERSION, fix_for, split_sql
from eemwatchd.core.alert_state import AlertState
from eemwatchd.core.certificate import Certificate
from eemwatchd.core.desired import SeenChain
from eemwatchd.core.secrets import scrub_text
from eemwatchd.errors import StateError


@dataclass(frozen=True)
class Proof:
    """One test-fire's verdict on a router: ``trust`` is the sha256 of every managed certificate it held then.

    Trust added later than the last ``ok`` proof (a sha256 not in its ``trust``) is "unproven".
    """

    router: str
    at: datetime
    ok: bool
    evidence: str
    trust: frozenset[str]


@dataclass(frozen=True)
class AuditEntry:
    """One change made to a router, one test-fire, or one difference observed on it, as the audit log keeps it.

    ``action`` is free text; the actions written are listed in ``store_audit.AUDIT_ACTIONS``. ``evidence`` is
    what proved a test-fire's verdict (the history row or log line, or the router's refusal words). ``hash``
    is filled when read back (the row's link in the hash chain).
    """

    at: datetime
    router: str
    action: str
    trustpoint: str | None
    sha256_before: str | None
    sha256_after: str | None
    test_fire: str | None
    reason: str
    id: int | None = None
    evidence: str | None = None
    hash: str | None = None


def private_paths(state_path: Path) -> list[Path]:
    """Every file of the store that must stay 0600: the database, its WAL files, the audit head sidecar."""
    return [state_path, *(Path(f"{state_path}{suffix}") for suffix in ("-wal", "-shm", ".audit-head"))]


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the state store; use an aware UTC datetime")
    return moment.astimezone(UTC).isoformat()


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# Up to this many subjects are read with one `IN (...)` (SQLite allows 32766 parameters); more: every state.
_MAX_SUBJECTS = 1000


class Store:
    """The one SQLite connection of this process. Text written is scrubbed of the given secrets."""

    def __init__(self, connection: sqlite3.Connection, path: Path, secrets: Collection[str] = ()) -> None:
        self._db = connection
        self.path = path
        self._secrets = tuple(s for s in secrets if s)
        self.audit_head_path = store_audit.sidecar_path(path)
        self._head_file_deferred = 0  # open audit_batch blocks
        self._head_file_pending: store_audit.Head | None = None  # the newest head not yet in the file

    # --- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, secrets: Iterable[str] = (), busy_timeout: float = 10.0) -> Store:
        """Open (creating when missing) the store at ``path``. Raises StateError naming the file and a fix."""
        file = Path(path)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"state store {file}: cannot create its directory ({exc.strerror}); "
                             "create it or set state_path to another place") from exc
        # 0600 from the start: the database exists before SQLite opens it, and SQLite gives its -wal and -shm
        # files the database's mode. The umask covers anything created meanwhile; looser files left by an
        # older eemwatchd (or a copy) are tightened with a warning.
        tighten(private_paths(file))
        try:
            with private_umask():
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
                # one thread at a time uses it, but not always the one that opened it: the daemon's StoreWorker
                db = sqlite3.connect(file, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise StateError(f"state store {file}: cannot create it ({exc.strerror}); make its directory "
                             "writable for this user, or set state_path to another place") from exc
        except sqlite3.Error as exc:
            raise StateError(f"state store {file}: {exc}; {fix_for(exc)}") from exc
        store = cls(db, file, tuple(secrets))
        try:
            with store._errors("open"), private_umask():
                db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA foreign_keys = ON")
                db.execute("PRAGMA synchronous = NORMAL")
                store._migrate()
        except StateError:
            db.close()
            raise
        tighten(private_paths(file))
        return store

    def _version(self) -> int | None:
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                            ).fetchone() is None:
            return None
        row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _migrate(self) -> None:
        # Read first, without a write transaction: an up-to-date store opens at once even while a writer holds
        # one (plan and audit --verify open it beside a running apply). Missing tables or triggers of a current
        # store are NOT re-created: a dropped audit table or trigger stays visible to `audit --verify`.
        if self._version() == SCHEMA_VERSION:
            return
        with self._transaction():
            version = self._version()
            if version is not None and version > SCHEMA_VERSION:
                raise StateError(f"state store {self.path}: schema version {version} was written by a newer "
                                 f"eemwatchd (this one knows {SCHEMA_VERSION}); upgrade eemwatchd or set "
                                 "state_path to another place")
            if version == SCHEMA_VERSION:
                return  # another process migrated it meanwhile
            if version == 2:
                for statement in MIGRATE_2_TO_3:
                    self._db.execute(statement)
                self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
                return
            if version == 1:
                for statement in MIGRATE_1_TO_2:
                    self._db.execute(statement)
            for statement in split_sql(SCHEMA):
                self._db.execute(statement)
            if version == 1:
                store_audit.chain_existing(self._db)
                self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            else:
                store_audit.create_chain(self._db)
                self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        store_audit.write_initial_sidecar(self._db, self.audit_head_path)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self, step: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: {step} failed ({exc}); {fix_for(exc)}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """More values to scrub from everything written (a reloaded config may bring new secrets)."""
        self._secrets = tuple(dict.fromkeys([*self._secrets, *(s for s in secrets if s)]))

    def _scrub(self, text: str | None) -> str | None:
        if text is None:
            return None
        # known secrets, and any `user:password@` (a router's `_email_server` quoted in an error before its
        # password is known)
        return scrub_text(text, self._secrets)

    # --- certificates ------------------------------------------------------------------------------

    def _put_certificates(self, certs: Iterable[Certificate]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO certificates (sha256, der) VALUES (?, ?)",
                             [(c.sha256, c.der) for c in certs])

    def _certificates(self, sha256s: Iterable[str]) -> dict[str, Certificate]:
        wanted = sorted(set(sha256s))
        out: dict[str, Certificate] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT sha256, der FROM certificates WHERE sha256 IN ({marks})"  # noqa: S608
            for sha, der in self._db.execute(query, chunk):
                out[sha] = Certificate(bytes(der))
        return out

    # --- observations ------------------------------------------------------------------------------

    def record_observation(
        self, *, server: str, address: str, chain: Sequence[Certificate], verified: bool,
        path: Sequence[Certificate], error: str | None, now: datetime, min_spacing: timedelta = timedelta(0),
    ) -> SeenChain:
        """Record one sighting of ``chain``: a new row, or times_seen + 1 and the latest verification.

        A sighting counts towards ``times_seen`` only when the last counted one is at least ``min_spacing``
        old (half the server's interval): two fetches in a burst are one observation, not a confirmation.
        A last sighting later than ``now`` (the wall clock was stepped back since) does not hold this one back.
        """
        chain_key = ",".join(c.sha256 for c in chain)
        path_key = ",".join(c.sha256 for c in path)
        earlier = self.observations(servers=[server], address=address, chain=chain_key)
        # A last sighting in the future was recorded while the wall clock ran ahead: it is older than this one in
        # real time, so this one counts (and pulls last_seen back), or no sighting would count until then.
        if earlier and timedelta(0) <= now - earlier[0].last_seen < min_spacing:
            return earlier[0]
        with self._errors("recording an observation"), self._transaction():
            self._put_certificates([*chain, *path])
            self._db.execute(
                "INSERT INTO observations (server, address, chain, path, verified, error, first_seen,"
                " last_seen, times_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (server, address, chain) DO UPDATE SET path = excluded.path,"
                " verified = excluded.verified, error = excluded.error, last_seen = excluded.last_seen,"
                " times_seen = observations.times_seen + 1",
                (server, address, chain_key, path_key, int(verified), self._scrub(error), _iso(now),
                 _iso(now)),
            )
        found = self.observations(servers=[server], address=address, chain=chain_key)
        return found[0]

    def observations(self, *, servers: Collection[str] | None = None, since: datetime | None = None,
                     address: str | None = None, chain: str | None = None) -> list[SeenChain]:
        """Stored observations, oldest first; filtered by server names, last sighting, address, chain key."""
        query = ("SELECT server, address, chain, path, verified, error, first_seen, last_seen, times_seen "
                 "FROM observations WHERE 1=1")
        params: list[object] = []
        if servers is not None:
            query += f" AND server IN ({','.join('?' * len(servers))})"
            params.extend(servers)
        if since is not None:
            query += " AND last_seen >= ?"
            params.append(_iso(since))
        if address is not None:
            query += " AND address = ?"
            params.append(address)
        if chain is not None:
            query += " AND chain = ?"
            params.append(chain)
        query += " ORDER BY first_seen, id"
        with self._errors("reading observations"):
            rows = self._db.execute(query, params).fetchall()
            shas = {s for row in rows for s in (*_keys(row[2]), *_keys(row[3]))}
            certs = self._certificates(shas)
        out: list[SeenChain] = []
        for server, addr, chain_key, path_key, verified, error, first, last, times in rows:
            out.append(SeenChain(
                server=server, address=addr,
                chain=tuple(certs[s] for s in _keys(chain_key) if s in certs),
                verified=bool(verified), path=tuple(certs[s] for s in _keys(path_key) if s in certs),
                error=error, first_seen=_when(first), last_seen=_when(last), times_seen=int(times),
            ))
        return out

    def last_verified(self, *, server: str, address: str) -> SeenChain | None:
        """The verified chain this address presented most recently (None before any verified sighting)."""
        with self._errors("reading observations"):
            row = self._db.execute(
                "SELECT chain FROM observations WHERE server = ? AND address = ? AND verified = 1"
                " ORDER BY last_seen DESC, id DESC LIMIT 1",
                (server, address),
            ).fetchone()
        if row is None:
            return None
        found = self.observations(servers=[server], address=address, chain=row[0])
        return found[0] if found else None

    # --- router state ------------------------------------------------------------------------------

    def unneeded_since(self, router: str) -> dict[str, datetime]:
        with self._errors("reading unneeded certificates"):
            rows = self._db.execute("SELECT sha256, since FROM unneeded WHERE router = ?",
                                    (router,)).fetchall()
        return {sha: _when(since) for sha, since in rows}

    def set_unneeded(self, router: str, unneeded: Mapping[str, datetime]) -> None:
        """Replace the router's "unneeded since" rows: certificates desired again drop out."""
        with self._errors("writing unneeded certificates"), self._transaction():
            self._db.execute("DELETE FROM unneeded WHERE router = ?", (router,))
            self._db.executemany("INSERT INTO unneeded (router, sha256, since) VALUES (?, ?, ?)",
                                 [(router, sha, _iso(since)) for sha, since in unneeded.items()])

    def record_outcome(self, router: str, *, at: datetime, ok: bool, summary: str, error: str | None) -> None:
        with self._errors("recording a router outcome"), self._transaction():
            self._db.execute(
                "INSERT INTO router_outcomes (router, at, ok, summary, error) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (router) DO UPDATE SET at = excluded.at, ok = excluded.ok,"
                " summary = excluded.summary, error = excluded.error",
                (router, _iso(at), int(ok), self._scrub(summary), self._scrub(error)),
            )

    # --- proofs --------------------------------------------------------------------------------------

    def record_proof(self, router: str, *, at: datetime, ok: bool, evidence: str, trust: Collection[str]) -> None:
        """Record a test-fire's verdict and its evidence (scrubbed), with the managed trust it ran with; the
        test-fire is no longer under way."""
        with self._errors("recording a test-fire proof"), self._transaction():
            self._db.execute(
                "INSERT INTO proofs (router, at, ok, evidence, trust) VALUES (?, ?, ?, ?, ?)",
                (router, _iso(at), int(ok), self._scrub(evidence) or "", ",".join(sorted(set(trust)))),
            )
            self._db.execute("DELETE FROM test_fires WHERE router = ?", (router,))

    def begin_test_fire(self, router: str, *, at: datetime) -> None:
        """A test-fire starts: until its verdict is recorded (record_proof), its job may run on the router. A
        session cut meanwhile leaves the row: the next one waits the job out (test_fire_under_way)."""
        with self._errors("recording a test-fire under way"), self._transaction():
            self._db.execute("INSERT OR REPLACE INTO test_fires (router, started_at) VALUES (?, ?)",
                             (router, _iso(at)))

    def test_fire_under_way(self, router: str) -> datetime | None:
        """When a test-fire on ``router`` started whose verdict was never recorded (None: there is none)."""
        with self._errors("reading test-fires under way"):
            row = self._db.execute("SELECT started_at FROM test_fires WHERE router = ?", (router,)).fetchone()
        return None if row is None else _when(row[0])

    def last_proof(self, router: str, *, ok_only: bool = False) -> Proof | None:
        """The router's latest test-fire verdict (only successful ones with ``ok_only``); None before any."""
        query = "SELECT router, at, ok, evidence, trust FROM proofs WHERE router = ?"
        if ok_only:
            query += " AND ok = 1"
        with self._errors("reading test-fire proofs"):
            row = self._db.execute(query + " ORDER BY at DESC, id DESC LIMIT 1", (router,)).fetchone()
        if row is None:
            return None
        name, at, ok, evidence, trust = row
        return Proof(name, _when(at), bool(ok), evidence, frozenset(_keys(trust)))

    # --- alert state ---------------------------------------------------------------------------------

    def alert_states(self, *, subjects: Collection[str] | None = None) -> dict[tuple[str, str], AlertState]:
        """Every stored alert state (of ``subjects`` only, when given), keyed by (subject, event); resolved ones
        stay until they fire again. The daemon alerts after every router job: reading every router's states
        each time made a fleet pass quadratic (BENCHMARKS.md, "Over a WAN")."""
        query = "SELECT subject, event, opened_at, last_sent_at, resolved_at, summary FROM alert_states"
        with self._errors("reading alert states"):
            if subjects is None or len(subjects) > _MAX_SUBJECTS:
                rows = self._db.execute(query).fetchall()
            else:
                wanted = sorted(set(subjects))
                rows = self._db.execute(f"{query} WHERE subject IN ({', '.join('?' * len(wanted))})",
                                        wanted).fetchall() if wanted else []
        return {(subject, event): AlertState(subject, event, _when(opened), _when(sent),
                                             None if resolved is None else _when(resolved), summary)
                for subject, event, opened, sent, resolved, summary in rows}

    def save_alert_state(self, state: AlertState) -> None:
        """Insert or replace the state of (subject, event); the summary is scrubbed of secrets."""
        with self._errors("saving an alert state"), self._transaction():
            self._db.execute(
                "INSERT INTO alert_states (subject, event, opened_at, last_sent_at, resolved_at, summary)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subject, event) DO UPDATE SET"
                " opened_at = excluded.opened_at, last_sent_at = excluded.last_sent_at,"
                " resolved_at = excluded.resolved_at, summary = excluded.summary",
                (state.subject, state.event, _iso(state.opened_at), _iso(state.last_sent_at),
                 None if state.resolved_at is None else _iso(state.resolved_at), self._scrub(state.summary) or ""),
            )

    # --- audit -------------------------------------------------------------------------------------

    def append_audit(self, entry: AuditEntry) -> int:
        """Append one entry as the next link of the hash chain; returns its id.

        Triggers refuse UPDATE, DELETE and any insert that does not extend the chain; the head table and the
        sidecar file record the new head (see ``store_audit``). Free text is scrubbed before it is hashed.
        """
        row = store_audit.scrubbed(self._scrub, {
            "at": _iso(entry.at), "router": entry.router, "action": entry.action, "trustpoint": entry.trustpoint,
            "sha256_before": entry.sha256_before, "sha256_after": entry.sha256_after,
            "test_fire": entry.test_fire, "reason": entry.reason, "evidence": entry.evidence,
        })
        with self._errors("appending to the audit log"):
            with self._transaction():
                new_id, head = store_audit.append_row(self._db, row)
            if self._head_file_deferred:
                self._head_file_pending = head
            else:
                self._head_file_pending = None
                store_audit.update_sidecar(self._db, self.audit_head_path, head)
        return new_id

    @contextlib.contextmanager
    def audit_batch(self) -> Iterator[None]:
        """Within the block, audit rows are committed one by one as always, but the audit head file (written
        and fsync'ed, see ``store_audit``) is brought up to the newest head once, when the block ends: a
        router job writes up to ~6 rows, and the file's fsync per row was ~9 % of an apply (BENCHMARKS.md).
        Blocks may overlap (jobs run in parallel); each one's end writes the newest head. Should the process
        die inside a block, the file lags behind the log by that block's rows: `audit --verify` accepts a head
        file that names a row of the chain, and the head table (same transaction as each row) counts them all.
        Code that reaches the store through its worker thread calls begin_audit_batch / end_audit_batch there.
        """
        self.begin_audit_batch()
        try:
            yield
        finally:
            self.end_audit_batch()

    def begin_audit_batch(self) -> None:
        self._head_file_deferred += 1

    def end_audit_batch(self) -> None:
        """The end of an audit_batch block: the head file brought up to the newest head once."""
        self._head_file_deferred -= 1
        head, self._head_file_pending = self._head_file_pending, None
        if head is not None:
            with self._errors("writing the audit head file"):
                store_audit.update_sidecar(self._db, self.audit_head_path, head)

    def audit(self, *, router: str | None = None) -> list[AuditEntry]:
        query = ("SELECT id, at, router, action, trustpoint, sha256_before, sha256_after, test_fire, reason, "
                 "evidence, hash FROM audit")
        params: tuple[str, ...] = ()
        if router is not None:
            query += " WHERE router = ?"
            params = (router,)
        with self._errors("reading the audit log"):
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [AuditEntry(id=i, at=_when(at), router=r, action=a, trustpoint=tp, sha256_before=b,
                           sha256_after=af, test_fire=tf, reason=reason, evidence=ev, hash=h)
                for i, at, r, a, tp, b, af, tf, reason, ev, h in rows]

    def verify_audit(self) -> AuditVerdict:
        """Check the audit log's hash chain, its head table, the sidecar file and the append-only triggers."""
        with self._errors("verifying the audit log"):
            return store_audit.verify(self._db, self.audit_head_path)


def _keys(text: str) -> list[str]:
    return [s for s in text.split(",") if s]
