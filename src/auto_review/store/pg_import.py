"""Copy an existing SQLite state directory into PostgreSQL (`ops migrate-state`).

What is copied: the review history (`reviews`, `posted_findings`), the learnings, and the
jobs still to run (pending, or running when the gateway stopped: they run again). Finished
jobs and delivery ids are not: their dedup window only matters for redeliveries, and a
review already done is recognised by the history. The SQLite files are opened read-only
and never changed.

Jobs go through the PostgreSQL store's own `accept` (dedup by key, coalescing), so they get
fresh attempts and are due at once. A target that already holds history, learnings or
jobs is refused unless the caller says so (`into_non_empty`); then, and on a second run,
nothing is copied twice: a review, a finding or a learning already there (same values) is
skipped, a job by its dedup key. One transaction for the history and learnings.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from auto_review.core.jobs import JobKind, JobRequest
from auto_review.core.refs import HostKind, RepoRef
from auto_review.store.base import StoreError
from auto_review.store.pg_connect import PgConnection
from auto_review.store.pg_schema import migrate

REVIEW_FILE = "review.sqlite3"
STATE_FILE = "state.sqlite3"


class TargetNotEmpty(StoreError):
    """The PostgreSQL database already holds state; copying into it needs an explicit yes."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    reviews: int  # rows copied (not already there)
    findings: int
    learnings: int
    jobs: int  # jobs queued (duplicates of queued jobs not counted)


def copy_sqlite_state(
    source: Path, target: PgConnection, *, into_non_empty: bool = False
) -> ImportReport:
    review_file, state_file = source / REVIEW_FILE, source / STATE_FILE
    if not review_file.is_file() and not state_file.is_file():
        raise StoreError(
            f"{source} holds no auto-review SQLite state ({REVIEW_FILE}, {STATE_FILE})"
        )
    history = _read(review_file, _HISTORY_QUERIES) if review_file.is_file() else _empty()
    jobs = _read(state_file, _JOB_QUERIES)["jobs"] if state_file.is_file() else []
    with contextlib.closing(target.connect("import")) as db:
        try:
            migrate(db)
            with db.transaction():
                if not into_non_empty:
                    _refuse_non_empty(db)
                counts = _copy_history(db, history)
        except psycopg.Error as exc:
            raise target.failure("could not copy into", exc) from None
    return ImportReport(*counts, jobs=_queue(target, jobs))


_HISTORY_QUERIES = {
    "reviews": "SELECT repo_key, pr, head_sha, reviewed_at FROM reviews ORDER BY id",
    "findings": "SELECT repo_key, pr, fingerprint, posted_at FROM posted_findings",
    "learnings": "SELECT repo_key, text, author, created_at FROM learnings ORDER BY id",
}
_JOB_QUERIES = {
    "jobs": "SELECT kind, host, owner, name, pr_number, head_sha, comment_id, argument,"
    " requested_by, source FROM jobs WHERE status IN ('pending', 'running') ORDER BY id",
}


def _empty() -> dict[str, list[tuple[Any, ...]]]:
    return {name: [] for name in _HISTORY_QUERIES}


def _read(path: Path, queries: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return {name: db.execute(sql).fetchall() for name, sql in queries.items()}
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path} ({type(exc).__name__})") from None


def _refuse_non_empty(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        "SELECT (SELECT COUNT(*) FROM reviews) + (SELECT COUNT(*) FROM learnings)"
        " + (SELECT COUNT(*) FROM jobs)"
    ).fetchone()
    if row is not None and int(row[0]) > 0:
        raise TargetNotEmpty(
            "the PostgreSQL database already holds reviews, learnings or jobs; copy into it "
            "anyway with --into-non-empty (nothing is copied twice)"
        )


def _copy_history(
    db: psycopg.Connection[Any], history: dict[str, list[tuple[Any, ...]]]
) -> tuple[int, int, int]:
    reviews = findings = learnings = 0
    for row in history["reviews"]:
        reviews += db.execute(
            "INSERT INTO reviews (repo_key, pr, head_sha, reviewed_at)"
            " SELECT %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM reviews WHERE"
            " repo_key = %s AND pr = %s AND head_sha = %s AND reviewed_at = %s)",
            (*row, *row),
        ).rowcount
    for row in history["findings"]:
        findings += db.execute(
            "INSERT INTO posted_findings (repo_key, pr, fingerprint, posted_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            row,
        ).rowcount
    for row in history["learnings"]:
        learnings += db.execute(
            "INSERT INTO learnings (repo_key, text, author, created_at)"
            " SELECT %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM learnings WHERE"
            " repo_key = %s AND text = %s AND author = %s AND created_at = %s)",
            (*row, *row),
        ).rowcount
    return reviews, findings, learnings


def _queue(target: PgConnection, rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    from auto_review.store.pg_intake import PostgresIntakeStore

    requests = [
        JobRequest(
            kind=JobKind(kind),
            repo=RepoRef(HostKind(host), owner, name),
            pr_number=int(pr),
            head_sha=str(sha),
            comment_id=None if comment is None else int(comment),
            argument=str(argument),
            requested_by=str(who),
            source=str(source),
        )
        for kind, host, owner, name, pr, sha, comment, argument, who, source in rows
    ]
    store = PostgresIntakeStore(target, housekeeping=False)
    try:
        result = asyncio.run(store.accept(None, requests))
    finally:
        store.close()
    return result.new_jobs
