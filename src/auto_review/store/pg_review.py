"""Review history and learnings in PostgreSQL, shared by every replica.

The same behaviour as `sqlite_review.ReviewStore` (the contract tests run both), in the
tables of migration 2 (`pg_schema`):

- ``reviews``: one row per review done (the last one per pull request is where the next
  incremental review starts);
- ``posted_findings``: each finding's fingerprint once per pull request, its primary key
  deciding a race: `claim_fingerprints` is ``INSERT ... ON CONFLICT DO NOTHING RETURNING``,
  so of two replicas about to post one finding exactly one gets it;
- ``learnings``: ids from an identity column (never reused); the per-repository cap is
  checked under a transaction-level advisory lock on the repository, so two replicas adding
  at once cannot pass it together.

Every method blocks and runs one transaction on a pooled connection (bounded, each with the
statement timeout of `pg_connect`); every query is parameterised. Errors are StoreError
(DatabaseUnavailable when the database cannot be used, StoreBusy when no connection is free
in time) without any stored data or the password in the message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from auto_review.store.base import (
    Learning,
    LearningLimitReached,
    PurgeResult,
    StoreClosed,
)
from auto_review.store.pg_connect import PgConnection, run_transaction
from auto_review.store.pg_schema import migrate
from auto_review.store.review_rules import (
    MAX_LEARNINGS_PER_REPO,
    check_fingerprints,
    check_head_sha,
    check_learning_id,
    check_pr,
    check_repo_key,
    clean_learning,
)

T = TypeVar("T")
Connection = psycopg.Connection[Any]

# Reviews and learnings are a few queries per job: a small pool beside the queue's.
MAX_POOL_SIZE = 4
# First key of the two-key advisory lock that serialises one repository's learning inserts.
LEARNINGS_LOCK_CLASS = 0x6172_6C65  # "arle"


class PostgresReviewStore:
    def __init__(self, connection: PgConnection, *, clock: Callable[[], float] = time.time) -> None:
        """Migrate the schema (under its advisory lock) and open a bounded pool."""
        self._connection = connection
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        with contextlib.closing(connection.connect()) as first:
            try:
                migrate(first)
            except psycopg.Error as exc:
                raise connection.failure("cannot migrate the schema of", exc) from None
        pooled = dataclasses.replace(
            connection,
            pool_size=min(connection.pool_size, MAX_POOL_SIZE),
            application_name=f"{connection.application_name}-history",
        )
        self._pool = pooled.pool()

    @property
    def connection(self) -> PgConnection:
        return self._connection

    # ---- history --------------------------------------------------------------------------

    def last_reviewed_sha(self, repo_key: str, pr: int) -> str | None:
        key, number = check_repo_key(repo_key), check_pr(pr)
        row = self._run(
            lambda db: db.execute(
                "SELECT head_sha FROM reviews WHERE repo_key = %s AND pr = %s"
                " ORDER BY id DESC LIMIT 1",
                (key, number),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def record_review(
        self, repo_key: str, pr: int, head_sha: str, fingerprints: Iterable[str]
    ) -> None:
        """One review of ``head_sha`` done, with the fingerprints it posted (maybe none)."""
        key, number = check_repo_key(repo_key), check_pr(pr)
        sha = check_head_sha(head_sha)
        prints = check_fingerprints(fingerprints)
        now = self._clock()

        def write(db: Connection) -> None:
            db.execute(
                "INSERT INTO reviews (repo_key, pr, head_sha, reviewed_at) VALUES (%s, %s, %s, %s)",
                (key, number, sha, now),
            )
            _insert_fingerprints(db, key, number, prints, now)

        self._run(write)

    def posted_fingerprints(self, repo_key: str, pr: int) -> set[str]:
        key, number = check_repo_key(repo_key), check_pr(pr)
        rows = self._run(
            lambda db: db.execute(
                "SELECT fingerprint FROM posted_findings WHERE repo_key = %s AND pr = %s",
                (key, number),
            ).fetchall()
        )
        return {str(row[0]) for row in rows}

    def claim_fingerprints(self, repo_key: str, pr: int, fingerprints: Iterable[str]) -> set[str]:
        """Record the fingerprints as posted; the ones this call recorded. Sorted inserts:
        two replicas claiming overlapping sets lock the rows in one order (no deadlock)."""
        key, number = check_repo_key(repo_key), check_pr(pr)
        prints = check_fingerprints(fingerprints)
        now = self._clock()
        return self._run(lambda db: _insert_fingerprints(db, key, number, prints, now))

    def release_fingerprints(
        self, repo_key: str, pr: int, fingerprints: Iterable[str]
    ) -> int:
        """Undo a claim whose comments could not be posted; how many were released."""
        key, number = check_repo_key(repo_key), check_pr(pr)
        prints = check_fingerprints(fingerprints)
        removed = self._run(
            lambda db: db.execute(
                "DELETE FROM posted_findings WHERE repo_key = %s AND pr = %s"
                " AND fingerprint = ANY(%s)",
                (key, number, prints),
            ).rowcount
        )
        return int(removed)

    def reset_pr(self, repo_key: str, pr: int) -> int:
        """Forget a pull request's history; how many reviews were forgotten."""
        key, number = check_repo_key(repo_key), check_pr(pr)

        def delete(db: Connection) -> int:
            removed = db.execute(
                "DELETE FROM reviews WHERE repo_key = %s AND pr = %s", (key, number)
            ).rowcount
            db.execute("DELETE FROM posted_findings WHERE repo_key = %s AND pr = %s", (key, number))
            return int(removed)

        return self._run(delete)

    def purge(self, older_than_seconds: float) -> PurgeResult:
        """Forget every pull request whose latest review is older than the given age (whole
        pull requests, never part of one); learnings are not touched."""
        if not older_than_seconds >= 0:
            raise ValueError("older_than_seconds must be zero or more")
        cutoff = self._clock() - older_than_seconds

        def delete(db: Connection) -> PurgeResult:
            stale = db.execute(
                "SELECT repo_key, pr FROM reviews GROUP BY repo_key, pr"
                " HAVING MAX(reviewed_at) < %s",
                (cutoff,),
            ).fetchall()
            reviews = 0
            for key, number in stale:
                reviews += db.execute(
                    "DELETE FROM reviews WHERE repo_key = %s AND pr = %s", (key, number)
                ).rowcount
                db.execute(
                    "DELETE FROM posted_findings WHERE repo_key = %s AND pr = %s", (key, number)
                )
            return PurgeResult(pull_requests=len(stale), reviews=reviews)

        return self._run(delete)

    # ---- learnings ------------------------------------------------------------------------

    def add_learning(self, repo_key: str, text: str, author: str) -> int:
        """Store a learning (trimmed, capped); its id."""
        key = check_repo_key(repo_key)
        clean, who = clean_learning(text, author)
        now = self._clock()

        def insert(db: Connection) -> int:
            db.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LEARNINGS_LOCK_CLASS, key)
            )
            counted = db.execute(
                "SELECT COUNT(*) FROM learnings WHERE repo_key = %s", (key,)
            ).fetchone()
            if counted is not None and int(counted[0]) >= MAX_LEARNINGS_PER_REPO:
                raise LearningLimitReached(
                    f"the repository already has {MAX_LEARNINGS_PER_REPO} learnings; "
                    "forget some first"
                )
            row = db.execute(
                "INSERT INTO learnings (repo_key, text, author, created_at)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (key, clean, who, now),
            ).fetchone()
            assert row is not None
            return int(row[0])

        return self._run(insert)

    def learnings(self, repo_key: str) -> list[Learning]:
        """The repository's learnings, oldest first."""
        key = check_repo_key(repo_key)
        rows = self._run(
            lambda db: db.execute(
                "SELECT id, text, author, created_at FROM learnings WHERE repo_key = %s"
                " ORDER BY id",
                (key,),
            ).fetchall()
        )
        return [Learning(int(i), str(t), str(a), float(c)) for i, t, a, c in rows]

    def forget_learning(self, repo_key: str, learning_id: int) -> bool:
        """Delete one learning of this repository; False when it has no such learning."""
        key = check_repo_key(repo_key)
        if not check_learning_id(learning_id):
            return False
        removed = self._run(
            lambda db: (
                db.execute(
                    "DELETE FROM learnings WHERE repo_key = %s AND id = %s", (key, learning_id)
                ).rowcount
            )
        )
        return int(removed) == 1

    # ---- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    def __enter__(self) -> PostgresReviewStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- internals ------------------------------------------------------------------------

    def _run(self, operation: Callable[[Connection], T]) -> T:
        """`operation` in one transaction on a pooled connection; retried on a deadlock or
        serialization failure (another replica); driver errors as StoreError."""
        if self._closed:
            raise StoreClosed("the review store is closed")
        return run_transaction(self._pool, self._connection, operation, "review")


def _insert_fingerprints(
    db: Connection, key: str, number: int, prints: list[str], now: float
) -> set[str]:
    claimed: set[str] = set()
    for fingerprint in prints:
        row = db.execute(
            "INSERT INTO posted_findings (repo_key, pr, fingerprint, posted_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING fingerprint",
            (key, number, fingerprint, now),
        ).fetchone()
        if row is not None:
            claimed.add(str(row[0]))
    return claimed
