"""The embedded intake store: delivery dedup and the job queue in one SQLite (WAL) file.

Writes go through a `GroupCommitWriter` (one write connection, one transaction per batch of
callers, durable before any caller hears back); reads use a separate read-only connection.
Job life cycle:

    pending --claim--> running --finish--> done | failed
       ^  |               |
       |  +--accept of a newer head--> done (outcome 'superseded')
       +--retry_later-----+  (transient failure before the retry horizon; not before a
       |                  |   backoff delay, stored in not_before: survives restarts)
       +--release---------+  (shutdown cancelled the run; the attempt is given back)
       +--requeue_interrupted (startup: the previous process died while it ran)

A running review that would come back to pending behind a newer head is superseded
instead (`sqlite_coalesce`). Claims take chat commands first, then reviews, fairly across
repositories (the least recently served repository first). Housekeeping deletes finished
jobs and delivery ids older than the retention, in bounded batches.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from auto_review.core.jobs import Job, JobOutcome, JobRequest, JobRetryPolicy
from auto_review.core.refs import RepoRef
from auto_review.store.base import (
    JOB_LANES,
    JOB_STATES,
    QUEUE_STATES,
    AcceptResult,
    DeliveryRef,
    JobListing,
    JobOverview,
    JobStatus,
    NewJobsListener,
    RequeueResult,
    StoreError,
)
from auto_review.store.group_commit import GroupCommitWriter, Housekeeping
from auto_review.store.rows import clip_detail, job_from_row
from auto_review.store.schema import migrate
from auto_review.store.sqlite_accept import AcceptItem, write_accepts
from auto_review.store.sqlite_coalesce import supersede_if_behind

STATE_FILE_NAME = "state.sqlite3"
DEFAULT_MAX_PENDING = 4096
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600.0
MAX_HOUSEKEEPING_INTERVAL_SECONDS = 3600.0
PRUNE_BATCH_ROWS = 2000  # per table and transaction: each housekeeping step stays short
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_INTERRUPTIONS = JobRetryPolicy().max_interruptions
Synchronous = Literal["FULL", "NORMAL"]


class SqliteIntakeStore:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "FULL",
        max_pending: int = DEFAULT_MAX_PENDING,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        housekeeping: bool = True,
        housekeeping_interval_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`retention_seconds`: finished jobs and delivery ids older than this are deleted
        by housekeeping, every `housekeeping_interval_seconds` (default: a quarter of the
        retention, at most an hour). `housekeeping=False` (command-line tools that open
        the state directory next to a gateway) never deletes anything."""
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        if retention_seconds <= 0:
            raise ValueError("the retention must be positive")
        if housekeeping_interval_seconds is None:
            housekeeping_interval_seconds = min(
                retention_seconds / 4, MAX_HOUSEKEEPING_INTERVAL_SECONDS
            )
        self._path = path
        self._clock = clock
        self._retention = retention_seconds
        self._listeners: list[NewJobsListener] = []
        self._claims_handed_out = False
        self._pruned_jobs = 0
        self._pruned_deliveries = 0
        _create_private_file(path)
        write = _connect(path, synchronous)
        try:
            _enable_wal(write, synchronous)
            migrate(write)
        except BaseException:
            write.close()
            raise
        self._read = _connect(path)
        self._read.execute("PRAGMA query_only = ON")
        self._read_lock = threading.Lock()
        self._write = write
        self._writer = GroupCommitWriter(
            write,
            max_pending=max_pending,
            after_commit=self._notify_listeners,
            housekeeping=(
                Housekeeping(self.prune_step, interval_seconds=housekeeping_interval_seconds)
                if housekeeping
                else None
            ),
        )
        self._closed = False

    @classmethod
    def open(cls, state_dir: Path, **options: Any) -> SqliteIntakeStore:
        """Open (creating if needed) `state_dir/state.sqlite3`; the directory is made 0700."""
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the state directory {state_dir} ({exc.strerror})"
            ) from None
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise StoreError(f"the state directory {state_dir} is not writable")
        return cls(state_dir / STATE_FILE_NAME, **options)

    @property
    def path(self) -> Path:
        return self._path

    # ---- intake -------------------------------------------------------------------------

    async def accept(self, delivery: DeliveryRef | None, jobs: list[JobRequest]) -> AcceptResult:
        """Record the delivery and enqueue its jobs in one transaction, durable on return.

        A delivery seen before enqueues nothing. Raises StoreBusy when the write queue is
        full, StoreClosed after close(), StoreError when SQLite refused the write.
        """
        item = AcceptItem.build(delivery, jobs, self._clock())
        return await self._writer.submit_batched(self._write_accepts, item)

    def seen_delivery(self, delivery: DeliveryRef) -> bool:
        return (
            self._read_one(
                "SELECT 1 FROM deliveries WHERE source = ? AND delivery_id = ?",
                (delivery.source, delivery.delivery_id),
            )
            is not None
        )

    def seen_comment(self, repo: RepoRef, comment_id: int) -> bool:
        """Whether any job was ever queued for this comment (webhook or poller)."""
        return (
            self._read_one(
                "SELECT 1 FROM jobs WHERE host = ? AND owner = ? AND name = ? AND comment_id = ?"
                " LIMIT 1",
                (str(repo.host), repo.owner, repo.name, comment_id),
            )
            is not None
        )

    def queue_depth(self) -> int:
        """Jobs waiting to run (due now or later)."""
        row = self._read_one("SELECT COUNT(*) FROM jobs WHERE status = 'pending'", ())
        return int(row[0]) if row else 0

    def counts(self) -> dict[JobStatus, int]:
        with self._read_lock:
            rows = self._read.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            found = {JobStatus(status): int(count) for status, count in rows}
        return {status: found.get(status, 0) for status in JobStatus}

    def job_overview(self) -> JobOverview:
        """Jobs by state (pending split into queued, due now, and waiting-retry, due later;
        done split off superseded), the queue by lane, and the age of the oldest pending
        job, in one read."""
        now = self._clock()
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT {_STATE_VIEW},"  # noqa: S608
                " CASE WHEN kind = 'review' THEN 'review' ELSE 'chat' END,"
                " COUNT(*), MIN(CASE WHEN status = 'pending' THEN enqueued_at END)"
                " FROM jobs GROUP BY 1, 2",
                (now,),
            ).fetchall()
        by_state = dict.fromkeys(JOB_STATES, 0)
        queue = {lane: dict.fromkeys(QUEUE_STATES, 0) for lane in JOB_LANES}
        oldest: dict[str, float] = {}
        for state, lane, count, enqueued in rows:
            by_state[str(state)] += int(count)
            if state in QUEUE_STATES:
                queue[str(lane)][str(state)] += int(count)
            if enqueued is not None:
                oldest[lane] = min(oldest.get(lane, float(enqueued)), float(enqueued))
        ages = {lane: max(now - oldest[lane], 0.0) if lane in oldest else 0.0 for lane in JOB_LANES}
        return JobOverview(
            by_state=by_state,
            oldest_waiting_seconds=max(ages.values()),
            queue_by_lane=queue,
            oldest_waiting_by_lane=ages,
        )

    @property
    def write_queue_length(self) -> int:
        return self._writer.pending

    # ---- worker side --------------------------------------------------------------------

    async def claim(self, worker: str) -> Job | None:
        """Take the next due pending job: it becomes 'running' and its attempt is counted.

        Chat commands (re-review included) go first, then reviews; within each, the
        repository served least recently goes first (one repository's burst does not
        starve another), then the job due first. A job waiting for its next attempt is
        not due before its `not_before`.
        """
        now = self._clock()
        self._claims_handed_out = True

        def operation(connection: sqlite3.Connection) -> Job | None:
            rows = connection.execute(_CLAIM, (worker, now, now)).fetchall()
            # (read to the end, so the statement is finished before RELEASE)
            if not rows:
                return None
            job = job_from_row(rows[0])
            repo = job.request.repo
            connection.execute(_SERVED, (str(repo.host), repo.owner, repo.name))
            return job

        return await self._writer.submit(operation, bounded=False)

    async def finish(self, job_id: int, outcome: JobOutcome, detail: str = "") -> bool:
        """Close a running job. FAILED ends in 'failed', others in 'done'. False if not running."""
        status = JobStatus.FAILED if outcome is JobOutcome.FAILED else JobStatus.DONE
        return await self._update_running(
            job_id,
            "status = ?, outcome = ?, detail = ?, finished_at = ?, claimed_by = NULL",
            (str(status), str(outcome), clip_detail(detail), self._clock()),
        )

    async def retry_later(self, job_id: int, delay_seconds: float, detail: str) -> bool:
        """Put a running job back to pending, due after `delay_seconds` (a review that a
        newer head's job replaced meanwhile is superseded instead)."""
        due = self._clock() + max(delay_seconds, 0.0)
        return await self._update_running(
            job_id,
            "status = 'pending', not_before = ?, detail = ?, claimed_by = NULL, interruptions = 0",
            (due, clip_detail(detail)),
            work_available=delay_seconds <= 0,
            unless_superseded=True,
        )

    async def give_up(self, job_id: int, detail: str) -> bool:
        """A running job used all its attempts: it ends in 'failed' with outcome 'error'."""
        return await self._update_running(
            job_id,
            "status = 'failed', outcome = 'error', detail = ?, finished_at = ?, claimed_by = NULL",
            (clip_detail(detail), self._clock()),
        )

    async def release(self, job_id: int) -> bool:
        """Give a running job back (shutdown cancelled it); its attempt is not counted (a
        review that a newer head's job replaced meanwhile is superseded instead)."""
        return await self._update_running(
            job_id,
            "status = 'pending', attempts = MAX(attempts - 1, 0), claimed_by = NULL",
            (),
            work_available=True,
            unless_superseded=True,
        )

    def requeue_interrupted(
        self, max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    ) -> RequeueResult:
        """At startup: jobs left 'running' by a dead process go back to 'pending'.

        A job interrupted by `max_interruptions` restarts in a row fails instead, so a job
        that crashes the gateway cannot crash it forever. Refused once this store has
        handed out claims, because then 'running' jobs belong to live workers.
        """
        if self._claims_handed_out:
            raise StoreError("requeue_interrupted() must run before any job is claimed")
        now = self._clock()
        writer = self._writer

        def operation(connection: sqlite3.Connection) -> RequeueResult:
            superseded = supersede_if_behind(connection, "status = 'running'", (now,))
            gave_up = connection.execute(
                "UPDATE jobs SET status = 'failed', outcome = 'error', finished_at = ?,"
                " claimed_by = NULL,"
                " interruptions = interruptions + 1,"
                " detail = 'interrupted by a restart on each of '"
                "          || (interruptions + 1) || ' attempts'"
                " WHERE status = 'running' AND interruptions + 1 >= ?",
                (now, max_interruptions),
            ).rowcount
            requeued = connection.execute(
                "UPDATE jobs SET status = 'pending', not_before = ?, claimed_by = NULL,"
                " interruptions = interruptions + 1, detail = 'interrupted by a restart'"
                " WHERE status = 'running'",
                (now,),
            ).rowcount
            if requeued:
                writer.mark_work_available()
            return RequeueResult(requeued=requeued, gave_up=gave_up, superseded=superseded)

        return writer.call(operation)

    def durability(self) -> dict[str, str]:
        """The write connection's journal mode and synchronous level, as SQLite reports them."""

        def operation(connection: sqlite3.Connection) -> dict[str, str]:
            journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
            level = connection.execute("PRAGMA synchronous").fetchone()[0]
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            return {"journal_mode": str(journal), "synchronous": names.get(int(level), str(level))}

        return self._writer.call(operation)

    def add_new_jobs_listener(self, listener: NewJobsListener) -> None:
        """`listener()` runs right after a commit that made jobs claimable, on the thread
        that committed (the event loop, or a blocking caller's thread): keep it quick and
        thread-safe, e.g. `loop.call_soon_threadsafe(event.set)`."""
        self._listeners.append(listener)

    def job_status(self, job_id: int) -> tuple[JobStatus, str | None, str, int] | None:
        """(status, outcome, detail, attempts) of one job, for tests and `ops status`."""
        row = self._read_one(
            "SELECT status, outcome, detail, attempts FROM jobs WHERE id = ?", (job_id,)
        )
        if row is None:
            return None
        return JobStatus(row[0]), row[1], row[2], int(row[3])

    def list_jobs(self, state: str | None = None, limit: int = 50) -> list[JobListing]:
        """The newest ``limit`` jobs, optionally only those in ``state`` (JOB_STATES)."""
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"state must be one of {', '.join(JOB_STATES)}")
        now = self._clock()
        view = _STATE_VIEW
        sql = (
            f"SELECT id, kind, host, owner, name, pr_number, head_sha, {view} AS state,"  # noqa: S608
            " attempts, enqueued_at, not_before, detail, superseded_by FROM jobs"
            + (f" WHERE {view} = ?" if state is not None else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        parameters: tuple[object, ...] = (
            (now, now, state, limit) if state is not None else (now, limit)
        )
        with self._read_lock:
            rows = self._read.execute(sql, parameters).fetchall()
        return [
            JobListing(
                id=int(row[0]),
                kind=str(row[1]),
                repo=f"{row[2]}:{row[3]}/{row[4]}",
                pr_number=int(row[5]),
                head_sha=str(row[6]),
                state=str(row[7]),
                attempts=int(row[8]),
                enqueued_at=float(row[9]),
                not_before=float(row[10]),
                detail=str(row[11]),
                superseded_by=None if row[12] is None else int(row[12]),
            )
            for row in rows
        ]

    def requeue_job(self, job_id: int) -> JobStatus | None:
        """Put a failed job, or one waiting for its next attempt, back in the queue now,
        with a fresh retry horizon. Returns the status it had (None: no such job); a job
        that is running or done is left alone (its status is returned unchanged)."""
        now = self._clock()
        writer = self._writer

        def operation(connection: sqlite3.Connection) -> JobStatus | None:
            row = connection.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            status = JobStatus(row[0])
            if status in (JobStatus.FAILED, JobStatus.PENDING):
                connection.execute(
                    "UPDATE jobs SET status = 'pending', not_before = ?, enqueued_at = ?,"
                    " attempts = 0, interruptions = 0, outcome = NULL, finished_at = NULL,"
                    " claimed_by = NULL, detail = 'requeued by an operator' WHERE id = ?",
                    (now, now, job_id),
                )
                writer.mark_work_available()
            return status

        return writer.call(operation)

    # ---- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
        finally:
            with self._read_lock:
                self._read.close()
            self._write.close()

    # ---- internals ----------------------------------------------------------------------

    async def _update_running(
        self,
        job_id: int,
        assignments: str,
        parameters: tuple[object, ...],
        *,
        work_available: bool = False,
        unless_superseded: bool = False,
    ) -> bool:
        writer = self._writer
        now = self._clock()

        def operation(connection: sqlite3.Connection) -> bool:
            if unless_superseded and supersede_if_behind(
                connection, "id = ? AND status = 'running'", (now, job_id)
            ):
                return True
            changed = connection.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND status = 'running'",  # noqa: S608
                (*parameters, job_id),
            ).rowcount
            if changed and work_available:
                writer.mark_work_available()
            return changed == 1

        return await writer.submit(operation, bounded=False)

    def _write_accepts(
        self, connection: sqlite3.Connection, items: Sequence[AcceptItem]
    ) -> list[AcceptResult]:
        results = write_accepts(connection, items)
        if any(result.new_jobs for result in results):
            self._writer.mark_work_available()
        return results

    def _read_one(self, sql: str, parameters: tuple[object, ...]) -> tuple[Any, ...] | None:
        with self._read_lock:
            row: tuple[Any, ...] | None = self._read.execute(sql, parameters).fetchone()
            return row

    def _notify_listeners(self) -> None:
        for listener in self._listeners:
            listener()

    def prune_step(self, connection: sqlite3.Connection) -> bool:
        """One housekeeping transaction: delete up to PRUNE_BATCH_ROWS finished jobs and as
        many delivery ids older than the retention, and the per-PR and per-repository
        records nothing refers to any more. True when there is more to delete.

        A job key and a delivery id are kept at least the retention after the job finished
        and after the delivery arrived, so a repeat within the retention is still known.
        """
        cutoff = self._clock() - self._retention
        jobs = connection.execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at < ?"
            " AND status IN ('done', 'failed') LIMIT ?)",
            (cutoff, PRUNE_BATCH_ROWS),
        ).rowcount
        deliveries = connection.execute(
            "DELETE FROM deliveries WHERE (source, delivery_id) IN (SELECT source, delivery_id"
            " FROM deliveries WHERE received_at < ? LIMIT ?)",
            (cutoff, PRUNE_BATCH_ROWS),
        ).rowcount
        if jobs:
            connection.execute(
                "DELETE FROM pull_requests WHERE NOT EXISTS"
                " (SELECT 1 FROM jobs WHERE jobs.id = pull_requests.latest_job_id)"
            )
            # By the pull requests left (a primary-key prefix lookup, not a scan of jobs): a
            # repository that loses its turn record is simply served next as a new one.
            connection.execute(
                "DELETE FROM repo_turns WHERE NOT EXISTS (SELECT 1 FROM pull_requests p WHERE"
                " p.host = repo_turns.host AND p.owner = repo_turns.owner"
                " AND p.name = repo_turns.name)"
            )
        self._pruned_jobs += jobs
        self._pruned_deliveries += deliveries
        return jobs >= PRUNE_BATCH_ROWS or deliveries >= PRUNE_BATCH_ROWS

    @property
    def pruned(self) -> tuple[int, int]:
        """(jobs, delivery ids) deleted by housekeeping since this store was opened."""
        return self._pruned_jobs, self._pruned_deliveries

    def prune_now(self) -> tuple[int, int]:
        """Run housekeeping to the end now (tests, operators); returns what it deleted."""
        before = self.pruned
        while self._writer.call(self.prune_step):
            pass
        after = self.pruned
        return after[0] - before[0], after[1] - before[1]


# The state an operator sees: pending split by due time, done split off superseded. Its one
# parameter is the current time.
_STATE_VIEW = (
    "CASE WHEN status = 'pending' AND not_before > ? THEN 'waiting-retry'"
    " WHEN status = 'pending' THEN 'queued'"
    " WHEN status = 'done' AND outcome = 'superseded' THEN 'superseded' ELSE status END"
)

# Chat first ("kind = 'review'" sorts false before true), then the repository served least
# recently (a repository never served first), then the job due first.
_CLAIM = (
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, claimed_by = ?, claimed_at = ?"
    " WHERE id = (SELECT j.id FROM jobs j LEFT JOIN repo_turns t"
    "             ON t.host = j.host AND t.owner = j.owner AND t.name = j.name"
    "             WHERE j.status = 'pending' AND j.not_before <= ?"
    "             ORDER BY j.kind = 'review', COALESCE(t.served, 0), j.not_before, j.id"
    "             LIMIT 1)"
    " RETURNING id, kind, host, owner, name, pr_number, head_sha, comment_id,"
    " argument, requested_by, source, attempts, enqueued_at"
)
_SERVED = (
    "INSERT INTO repo_turns (host, owner, name, served)"
    " VALUES (?, ?, ?, (SELECT COALESCE(MAX(served), 0) + 1 FROM repo_turns))"
    " ON CONFLICT (host, owner, name) DO UPDATE SET served = excluded.served"
)


def _connect(path: Path, synchronous: Synchronous = "FULL") -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    connection.execute("PRAGMA busy_timeout = 5000")
    # Per connection: commits and checkpoints fsync according to this level.
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    return connection


def _enable_wal(connection: sqlite3.Connection, synchronous: Synchronous) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(
            f"the state database could not switch to WAL mode (got {mode}); put the state "
            "directory on a local filesystem"
        )
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    # After a checkpoint SQLite rewinds the WAL; this truncates a WAL a burst had grown.
    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")


def _create_private_file(path: Path) -> None:
    # SQLite gives the -wal and -shm files the database file's mode, so 0600 here covers all.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
