"""Review history and learnings in their own SQLite (WAL) file, ``review.sqlite3``.

History, per pull request (``repo_key`` = ``"host|owner/name"``): each review's head SHA and
time (the last one is where an incremental review starts), and the fingerprints of every
finding posted (so a finding is never posted twice). The fingerprints are also hidden in
each posted comment (``review.mapping``), so losing this file costs a full re-review, never
a repeated comment.

Learnings: short notes people gave the bot (``remember ...``), scoped per repository, used
in later prompts. They are user data: ``purge`` never touches them; only ``forget`` does.

Concurrency: one connection behind a lock, so a store may be shared by threads. Every
method blocks: reads are sub-millisecond, writes commit with ``synchronous=FULL`` (an fsync).
Async callers run the writes through ``asyncio.to_thread`` and may call reads directly.
Errors are :class:`StoreError` without any stored data in the message; arguments that break
the rules (bad key, SHA, fingerprint, empty learning) raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from auto_review.store.base import (
    Learning,
    LearningLimitReached,
    PurgeResult,
    SchemaTooNew,
    StoreError,
)
from auto_review.store.review_rules import (
    MAX_LEARNINGS_PER_REPO,
    check_fingerprints,
    check_head_sha,
    check_learning_id,
    check_pr,
    check_repo_key,
    clean_learning,
)
from auto_review.store.schema import Migration

REVIEW_FILE_NAME: Final = "review.sqlite3"

MIGRATIONS: Final = (
    Migration(
        version=1,
        name="review history and learnings",
        statements=(
            """
            CREATE TABLE reviews (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                repo_key TEXT NOT NULL,
                pr INTEGER NOT NULL,
                head_sha TEXT NOT NULL,
                reviewed_at REAL NOT NULL
            )
            """,
            "CREATE INDEX reviews_by_pr ON reviews (repo_key, pr, id)",
            """
            CREATE TABLE posted_findings (
                repo_key TEXT NOT NULL,
                pr INTEGER NOT NULL,
                fingerprint TEXT NOT NULL,
                posted_at REAL NOT NULL,
                PRIMARY KEY (repo_key, pr, fingerprint)
            ) WITHOUT ROWID
            """,
            # AUTOINCREMENT: a forgotten learning's id is never given to another one.
            """
            CREATE TABLE learnings (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                repo_key TEXT NOT NULL,
                text TEXT NOT NULL,
                author TEXT NOT NULL,
                created_at REAL NOT NULL
            )
            """,
            "CREATE INDEX learnings_by_repo ON learnings (repo_key, id)",
        ),
    ),
)
LATEST_VERSION: Final = MIGRATIONS[-1].version


class ReviewStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        _create_private_file(path)
        try:
            connection = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error:
            raise StoreError(f"cannot open the review database {path}") from None
        try:
            connection.execute("PRAGMA busy_timeout = 5000")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"the review database could not switch to WAL mode (got {mode}); put the "
                    "state directory on a local filesystem"
                )
            connection.execute("PRAGMA synchronous = FULL")
            _migrate(connection)
        except sqlite3.Error:
            connection.close()
            raise StoreError(f"the review database {path} cannot be used") from None
        except BaseException:
            connection.close()
            raise
        self._db = connection
        self._closed = False

    @classmethod
    def open(cls, path: Path, **options: Any) -> ReviewStore:
        """Open (creating if needed) the database: ``path`` itself when its name ends in
        ``.sqlite3``, else ``path`` is the state directory and the database is
        ``path/review.sqlite3``. A directory created here is 0700."""
        path = Path(path)
        if path.suffix == ".sqlite3":
            directory = path.parent
        else:
            directory, path = path, path / REVIEW_FILE_NAME
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory {directory} ({exc.strerror})") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(f"the directory {directory} is not writable")
        return cls(path, **options)

    @property
    def path(self) -> Path:
        return self._path

    # ---- history --------------------------------------------------------------------------

    def last_reviewed_sha(self, repo_key: str, pr: int) -> str | None:
        key, number = check_repo_key(repo_key), check_pr(pr)
        with self._locked() as db:
            row = db.execute(
                "SELECT head_sha FROM reviews WHERE repo_key = ? AND pr = ? ORDER BY id DESC"
                " LIMIT 1",
                (key, number),
            ).fetchone()
        return None if row is None else str(row[0])

    def record_review(
        self, repo_key: str, pr: int, head_sha: str, fingerprints: Iterable[str]
    ) -> None:
        """One review of ``head_sha`` done, with the fingerprints it posted (maybe none)."""
        key, number = check_repo_key(repo_key), check_pr(pr)
        sha = check_head_sha(head_sha)
        prints = check_fingerprints(fingerprints)
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO reviews (repo_key, pr, head_sha, reviewed_at) VALUES (?, ?, ?, ?)",
                (key, number, sha, now),
            )
            db.executemany(
                "INSERT OR IGNORE INTO posted_findings (repo_key, pr, fingerprint, posted_at)"
                " VALUES (?, ?, ?, ?)",
                [(key, number, fingerprint, now) for fingerprint in prints],
            )

    def posted_fingerprints(self, repo_key: str, pr: int) -> set[str]:
        key, number = check_repo_key(repo_key), check_pr(pr)
        with self._locked() as db:
            rows = db.execute(
                "SELECT fingerprint FROM posted_findings WHERE repo_key = ? AND pr = ?",
                (key, number),
            ).fetchall()
        return {str(row[0]) for row in rows}

    def claim_fingerprints(self, repo_key: str, pr: int, fingerprints: Iterable[str]) -> set[str]:
        """Record the fingerprints as posted; the ones this call recorded (see the protocol,
        `base.ReviewHistoryStore`)."""
        key, number = check_repo_key(repo_key), check_pr(pr)
        prints = check_fingerprints(fingerprints)
        now = self._clock()
        claimed: set[str] = set()
        with self._transaction() as db:
            for fingerprint in prints:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO posted_findings (repo_key, pr, fingerprint, posted_at)"
                    " VALUES (?, ?, ?, ?)",
                    (key, number, fingerprint, now),
                )
                if cursor.rowcount == 1:
                    claimed.add(fingerprint)
        return claimed

    def release_fingerprints(
        self, repo_key: str, pr: int, fingerprints: Iterable[str]
    ) -> int:
        """Undo a claim whose comments could not be posted; how many were released."""
        key, number = check_repo_key(repo_key), check_pr(pr)
        prints = check_fingerprints(fingerprints)
        with self._transaction() as db:
            removed = sum(
                db.execute(
                    "DELETE FROM posted_findings"
                    " WHERE repo_key = ? AND pr = ? AND fingerprint = ?",
                    (key, number, fingerprint),
                ).rowcount
                for fingerprint in prints
            )
        return int(removed)

    def reset_pr(self, repo_key: str, pr: int) -> int:
        """Forget a pull request's history (the next review is a full one); returns how
        many reviews were forgotten."""
        key, number = check_repo_key(repo_key), check_pr(pr)
        with self._transaction() as db:
            removed = db.execute(
                "DELETE FROM reviews WHERE repo_key = ? AND pr = ?", (key, number)
            ).rowcount
            db.execute("DELETE FROM posted_findings WHERE repo_key = ? AND pr = ?", (key, number))
        return int(removed)

    def purge(self, older_than_seconds: float) -> PurgeResult:
        """Forget every pull request whose latest review is older than the given age.

        Whole pull requests go, never part of one, so a PR still under review keeps its
        complete history. Learnings are not touched.
        """
        if not older_than_seconds >= 0:
            raise ValueError("older_than_seconds must be zero or more")
        cutoff = self._clock() - older_than_seconds
        with self._transaction() as db:
            stale = db.execute(
                "SELECT repo_key, pr FROM reviews GROUP BY repo_key, pr"
                " HAVING MAX(reviewed_at) < ?",
                (cutoff,),
            ).fetchall()
            reviews = 0
            for key, number in stale:
                reviews += db.execute(
                    "DELETE FROM reviews WHERE repo_key = ? AND pr = ?", (key, number)
                ).rowcount
                db.execute(
                    "DELETE FROM posted_findings WHERE repo_key = ? AND pr = ?", (key, number)
                )
        return PurgeResult(pull_requests=len(stale), reviews=reviews)

    # ---- learnings ------------------------------------------------------------------------

    def add_learning(self, repo_key: str, text: str, author: str) -> int:
        """Store a learning (whitespace-trimmed, capped at MAX_LEARNING_CHARS); its id."""
        key = check_repo_key(repo_key)
        clean, who = clean_learning(text, author)
        with self._transaction() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM learnings WHERE repo_key = ?", (key,)
            ).fetchone()
            if count >= MAX_LEARNINGS_PER_REPO:
                raise LearningLimitReached(
                    f"the repository already has {MAX_LEARNINGS_PER_REPO} learnings; "
                    "forget some first"
                )
            cursor = db.execute(
                "INSERT INTO learnings (repo_key, text, author, created_at) VALUES (?, ?, ?, ?)",
                (key, clean, who, self._clock()),
            )
            learning_id = cursor.lastrowid
        assert learning_id is not None
        return int(learning_id)

    def learnings(self, repo_key: str) -> list[Learning]:
        """The repository's learnings, oldest first."""
        key = check_repo_key(repo_key)
        with self._locked() as db:
            rows = db.execute(
                "SELECT id, text, author, created_at FROM learnings WHERE repo_key = ? ORDER BY id",
                (key,),
            ).fetchall()
        return [Learning(int(i), str(t), str(a), float(c)) for i, t, a, c in rows]

    def forget_learning(self, repo_key: str, learning_id: int) -> bool:
        """Delete one learning of this repository; False when it has no such learning."""
        key = check_repo_key(repo_key)
        if not check_learning_id(learning_id):  # no such id (and SQLite would overflow)
            return False
        with self._transaction() as db:
            removed = db.execute(
                "DELETE FROM learnings WHERE repo_key = ? AND id = ?", (key, learning_id)
            ).rowcount
        return removed == 1

    # ---- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- internals ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise StoreError("the review store is closed")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(
                    f"the review database refused the operation ({_code(exc)})"
                ) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        version = int(row.fetchone()[0])
        if version > LATEST_VERSION:
            raise SchemaTooNew(
                f"review database has schema version {version}, this auto-review knows up to "
                f"{LATEST_VERSION}; run a newer auto-review or restore a matching state directory"
            )
        for migration in MIGRATIONS:
            if migration.version > version:
                for statement in migration.statements:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _create_private_file(path: Path) -> None:
    # SQLite gives the -wal and -shm files the database file's mode, so 0600 here covers all.
    try:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot create the review database {path} ({exc.strerror})") from None


def _code(exc: sqlite3.Error) -> str:
    return getattr(exc, "sqlite_errorname", None) or type(exc).__name__
