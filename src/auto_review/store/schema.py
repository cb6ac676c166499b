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
    Migration(
        version=3,
        name="scheduling: coalescing, fair claims, retention",
        statements=(
            # The job that replaced a queued review of an older head (outcome 'superseded').
            "ALTER TABLE jobs ADD COLUMN superseded_by INTEGER",
            # The newest review job accepted for each pull request: a queued review of an
            # older head is superseded by it at accept time, and a job that comes back to
            # the queue (retry, restart) behind it is superseded instead of run again.
            """
            CREATE TABLE pull_requests (
                host TEXT NOT NULL,
                owner TEXT NOT NULL,
                name TEXT NOT NULL,
                pr_number INTEGER NOT NULL,
                latest_job_id INTEGER NOT NULL,
                latest_head TEXT NOT NULL,
                PRIMARY KEY (host, owner, name, pr_number)
            ) WITHOUT ROWID
            """,
            # SQLite's bare-column rule: head_sha comes from the row holding MAX(id).
            """
            INSERT INTO pull_requests (host, owner, name, pr_number, latest_job_id, latest_head)
            SELECT host, owner, name, pr_number, MAX(id), head_sha FROM jobs
            WHERE kind = 'review' GROUP BY host, owner, name, pr_number
            """,
            # A backlog left by an older release drains at once: only the newest head of
            # each pull request stays queued.
            # (julianday('now') - 2440587.5) * 86400: unix seconds now.
            """
            UPDATE jobs SET status = 'done', outcome = 'superseded', claimed_by = NULL,
                finished_at = (julianday('now') - 2440587.5) * 86400.0,
                superseded_by = (SELECT p.latest_job_id FROM pull_requests p
                    WHERE p.host = jobs.host AND p.owner = jobs.owner AND p.name = jobs.name
                    AND p.pr_number = jobs.pr_number),
                detail = 'superseded by job ' || (SELECT p.latest_job_id || ' (head '
                    || substr(p.latest_head, 1, 12) || ')' FROM pull_requests p
                    WHERE p.host = jobs.host AND p.owner = jobs.owner AND p.name = jobs.name
                    AND p.pr_number = jobs.pr_number)
            WHERE status = 'pending' AND kind = 'review' AND id < (
                SELECT p.latest_job_id FROM pull_requests p
                WHERE p.host = jobs.host AND p.owner = jobs.owner AND p.name = jobs.name
                AND p.pr_number = jobs.pr_number)
            """,
            # Fair claims: when each repository last had a job claimed (a running count).
            """
            CREATE TABLE repo_turns (
                host TEXT NOT NULL,
                owner TEXT NOT NULL,
                name TEXT NOT NULL,
                served INTEGER NOT NULL,
                PRIMARY KEY (host, owner, name)
            ) WITHOUT ROWID
            """,
            # Retention: finished jobs by age.
            "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL",
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
