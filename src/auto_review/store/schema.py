"""SQLite schema of the intake store, as numbered migrations applied in order.

`schema_migrations` records which versions a database has. A database that has a version
this code does not know was written by a newer auto-review: refuse it rather than guess.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from auto_review.store.base import SchemaTooNew


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="deliveries and jobs",
        statements=(
            """
            CREATE TABLE deliveries (
                source TEXT NOT NULL,
                delivery_id TEXT NOT NULL,
                received_at REAL NOT NULL,
                PRIMARY KEY (source, delivery_id)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX deliveries_by_age ON deliveries (received_at)",
            # AUTOINCREMENT: ids are never reused, so a late finish() cannot hit another job.
            """
            CREATE TABLE jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                dedup_key TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                host TEXT NOT NULL,
                owner TEXT NOT NULL,
                name TEXT NOT NULL,
                pr_number INTEGER NOT NULL,
                head_sha TEXT NOT NULL,
                comment_id INTEGER,
                argument TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                source TEXT NOT NULL,
                status TEXT NOT NULL
                    CHECK (status IN ('pending', 'running', 'done', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                enqueued_at REAL NOT NULL,
                not_before REAL NOT NULL,
                claimed_by TEXT,
                claimed_at REAL,
                finished_at REAL,
                outcome TEXT,
                detail TEXT NOT NULL DEFAULT ''
            )
            """,
            "CREATE INDEX jobs_due ON jobs (status, not_before, id)",
            """
            CREATE INDEX jobs_by_comment ON jobs (host, owner, name, comment_id)
                WHERE comment_id IS NOT NULL
            """,
        ),
    ),
    Migration(
        version=2,
        name="failure classes: interruptions",
        statements=(
            # Restarts that interrupted a running job in a row: the crash-loop guard, now
            # that transient failures retry until a time horizon instead of an attempt cap.
            "ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0",
            # The worker's view of waiting jobs: pending rows by due time.
            "CREATE INDEX jobs_waiting ON jobs (status, not_before) WHERE status = 'pending'",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to LATEST_VERSION in one transaction; return the version.

    The connection must be in autocommit mode (isolation_level=None).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        version = current_version(conn)
        if version > LATEST_VERSION:
            raise SchemaTooNew(
                f"state database has schema version {version}, this auto-review knows up to "
                f"{LATEST_VERSION}; run a newer auto-review or restore a matching state directory"
            )
        for migration in MIGRATIONS:
            if migration.version <= version:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return LATEST_VERSION
