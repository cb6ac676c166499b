"""PostgreSQL schema of the stores (job queue, review history, learnings, the chat poller's
watermarks), as numbered migrations applied once, in order.

Several replicas may start at the same moment: each migration run holds a transaction-level
advisory lock (`pg_advisory_xact_lock`), so exactly one of them applies the missing
migrations and the others, once the lock is theirs, find nothing left to do. PostgreSQL's
DDL is transactional: a run that fails leaves the schema as it was. A database whose
`schema_migrations` holds a version this code does not know was written by a newer
auto-review, and is refused (`SchemaTooNew`).

The tables mirror SQLite's (`schema.py`; `sqlite_review.py` for version 2): times are Unix
seconds (double precision) from the application's clock, ids come from an identity column
(never reused), and a running job carries a lease, `locked_until`, that its live worker
renews.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

from auto_review.store.base import SchemaTooNew

# "auto-review migrations" as a 64-bit key: the one advisory lock migrations take.
MIGRATION_LOCK_KEY = 0x6172_2D6D_6967_7261


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[LiteralString, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="deliveries, jobs with leases, pull requests, fair claims",
        statements=(
            """
            CREATE TABLE deliveries (
                source TEXT NOT NULL,
                delivery_id TEXT NOT NULL,
                received_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (source, delivery_id)
            )
            """,
            "CREATE INDEX deliveries_by_age ON deliveries (received_at)",
            """
            CREATE TABLE jobs (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                dedup_key TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                host TEXT NOT NULL,
                owner TEXT NOT NULL,
                name TEXT NOT NULL,
                pr_number BIGINT NOT NULL,
                head_sha TEXT NOT NULL,
                comment_id BIGINT,
                argument TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                source TEXT NOT NULL,
                status TEXT NOT NULL
                    CHECK (status IN ('pending', 'running', 'done', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                interruptions INTEGER NOT NULL DEFAULT 0,
                enqueued_at DOUBLE PRECISION NOT NULL,
                not_before DOUBLE PRECISION NOT NULL,
                claimed_by TEXT,
                claimed_at DOUBLE PRECISION,
                locked_until DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                outcome TEXT,
                detail TEXT NOT NULL DEFAULT '',
                superseded_by BIGINT
            )
            """,
            "CREATE INDEX jobs_waiting ON jobs (not_before, id) WHERE status = 'pending'",
            "CREATE INDEX jobs_leases ON jobs (locked_until) WHERE status = 'running'",
            "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL",
            """
            CREATE INDEX jobs_by_comment ON jobs (host, owner, name, comment_id)
                WHERE comment_id IS NOT NULL
            """,
            """
            CREATE TABLE pull_requests (
                host TEXT NOT NULL,
                owner TEXT NOT NULL,
                name TEXT NOT NULL,
                pr_number BIGINT NOT NULL,
                latest_job_id BIGINT NOT NULL,
                latest_head TEXT NOT NULL,
                PRIMARY KEY (host, owner, name, pr_number)
            )
            """,
            """
            CREATE TABLE repo_turns (
                host TEXT NOT NULL,
                owner TEXT NOT NULL,
                name TEXT NOT NULL,
                served BIGINT NOT NULL,
                PRIMARY KEY (host, owner, name)
            )
            """,
            # Fair claims: each claim takes the next turn number for its repository.
            "CREATE SEQUENCE repo_turn_numbers",
        ),
    ),
    Migration(
        version=2,
        name="review history and learnings",
        statements=(
            """
            CREATE TABLE reviews (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                repo_key TEXT NOT NULL,
                pr INTEGER NOT NULL,
                head_sha TEXT NOT NULL,
                reviewed_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX reviews_by_pr ON reviews (repo_key, pr, id)",
            # The primary key is what makes posting exactly-once across replicas: a
            # fingerprint is claimed by whichever INSERT ... ON CONFLICT DO NOTHING wins.
            """
            CREATE TABLE posted_findings (
                repo_key TEXT NOT NULL,
                pr INTEGER NOT NULL,
                fingerprint TEXT NOT NULL,
                posted_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (repo_key, pr, fingerprint)
            )
            """,
            """
            CREATE TABLE learnings (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                repo_key TEXT NOT NULL,
                text TEXT NOT NULL,
                author TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX learnings_by_repo ON learnings (repo_key, id)",
        ),
    ),
    Migration(
        version=3,
        name="chat poller watermarks",
        statements=(
            # value: the ISO 8601 time the file store writes too (the poller's own format).
            """
            CREATE TABLE poller_watermarks (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(connection: psycopg.Connection[Any]) -> int:
    """The schema version (0: no schema yet), read without taking the lock."""
    with connection.transaction():
        exists = connection.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return 0
        row = connection.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
        ).fetchone()
    return int(row[0]) if row else 0


def migrate(connection: psycopg.Connection[Any]) -> list[int]:
    """Apply the missing migrations under the advisory lock; return the versions applied.

    Raises SchemaTooNew for a database of a newer release. The connection must not be in a
    transaction.
    """
    applied: list[int] = []
    with connection.transaction():
        # Not the pool's short statement timeout: a migration of a large table, or the wait
        # for another replica's migration, may take minutes (but not forever).
        connection.execute("SET LOCAL statement_timeout = '10min'")
        connection.execute("SET LOCAL lock_timeout = '10min'")
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at DOUBLE PRECISION NOT NULL)"
        )
        row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        found = row.fetchone()
        version = int(found[0]) if found else 0
        if version > LATEST_VERSION:
            raise SchemaTooNew(
                f"the PostgreSQL database has schema version {version}, this auto-review "
                f"knows up to {LATEST_VERSION}; run a newer auto-review (or restore a "
                "matching backup)"
            )
        for migration in MIGRATIONS:
            if migration.version <= version:
                continue
            for statement in migration.statements:
                connection.execute(statement)  # fixed text of this module
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, time.time()),
            )
            applied.append(migration.version)
    return applied
