"""The state store's schema, its migrations and what a SQLite error means for the person running eemwatchd."""

from __future__ import annotations

import sqlite3

# 1: the first release. 2: the audit log is hash-chained (prev_hash, hash, audit_head, the .audit-head
# sidecar) and gains ``evidence``; proofs and alert_states tables. 3: test_fires (a test-fire under way).
# Opening an older one migrates it once.
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    sha256 TEXT PRIMARY KEY,
    der BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    address TEXT NOT NULL,
    chain TEXT NOT NULL,            -- served chain: sha256 list, comma separated, leaf first
    path TEXT NOT NULL DEFAULT '',  -- verified path: sha256 list, '' when it did not verify
    verified INTEGER NOT NULL,
    error TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    times_seen INTEGER NOT NULL,
    UNIQUE (server, address, chain)
);
CREATE TABLE IF NOT EXISTS router_outcomes (
    router TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    summary TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS unneeded (
    router TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (router, sha256)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    router TEXT NOT NULL,
    action TEXT NOT NULL,
    trustpoint TEXT,
    sha256_before TEXT,
    sha256_after TEXT,
    test_fire TEXT,
    reason TEXT NOT NULL,
    evidence TEXT,
    prev_hash TEXT,
    hash TEXT
);
CREATE TABLE IF NOT EXISTS proofs (
    id INTEGER PRIMARY KEY,
    router TEXT NOT NULL,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    trust TEXT NOT NULL             -- sha256 of each managed certificate held at the test-fire, sorted
);
CREATE INDEX IF NOT EXISTS proofs_by_router ON proofs (router, at);
CREATE TABLE IF NOT EXISTS test_fires (
    router TEXT PRIMARY KEY,        -- a test-fire started and not yet judged: its job may still run on the router
    started_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_states (
    subject TEXT NOT NULL,
    event TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    last_sent_at TEXT NOT NULL,
    resolved_at TEXT,
    summary TEXT NOT NULL,
    PRIMARY KEY (subject, event)
);
"""

# Schema 2 -> 3: the one new table (a current store's missing tables and triggers are never re-created).
MIGRATE_2_TO_3 = (
    "CREATE TABLE IF NOT EXISTS test_fires (router TEXT PRIMARY KEY, started_at TEXT NOT NULL)",
)

# Schema 1 -> 2 before the tables above are created (those that exist are left as they are).
MIGRATE_1_TO_2 = (
    "ALTER TABLE audit ADD COLUMN evidence TEXT",
    "ALTER TABLE audit ADD COLUMN prev_hash TEXT",
    "ALTER TABLE audit ADD COLUMN hash TEXT",
)


def fix_for(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "another eemwatchd process holds the store; wait for it or stop it"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return ("move the file aside and run again (a new store is created; the old audit log stays in "
                "the moved file)")
    if "readonly" in text or "unable to open" in text or "permission" in text:
        return "make the file and its directory writable for this user, or set state_path to another place"
    if "disk" in text or "full" in text:
        return "free disk space on the file system of the store"
    return "check the file, or set state_path to another place"


def split_sql(script: str) -> list[str]:
    """Statements of the schema (triggers keep their inner ``;``)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines():
        stripped = line.split("--", 1)[0].rstrip()
        if not stripped:
            continue
        current += stripped + "\n"
        if stripped.endswith(";") and (not current.lstrip().upper().startswith("CREATE TRIGGER")
                                       or stripped.upper().endswith("END;")):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
