"""The shared intake store: delivery dedup and the job queue in PostgreSQL.

The same protocols (`IntakeStore`, `JobQueue`) and the same job life cycle as
`sqlite_intake`, for several processes sharing one database:

- **accept** is one transaction per call: the delivery id by `INSERT ... ON CONFLICT DO
  NOTHING` (its unique key decides a duplicate), each job the same way on its dedup key,
  then the coalescing of each pull request's reviews with its `pull_requests` row locked
  (`FOR UPDATE`), so two replicas accepting heads of one pull request at once still leave
  only the newest queued. A deadlock or serialization failure between replicas is retried.
- **claim** takes the next job with `SELECT ... FOR UPDATE SKIP LOCKED` (two workers never
  get one job, and never wait for each other) in the SQLite store's order (chat first, the
  repository served least recently, the job due first), and gives it a lease:
  `locked_until`. A maintenance thread of the claiming store renews the leases of all its
  running jobs every third of the lease. A job whose lease expired (its process died or
  lost the database for longer than the lease) goes back to the queue, counted as an
  interruption (three in a row: it fails), at the next claim of any replica or at
  `requeue_interrupted`.
- **wake-ups**: a commit that makes jobs claimable sends a NOTIFY (`pg_notify`): the other
  stores' new-jobs listeners run at once, the workers' polling is the fallback.
- **finish, retry_later, give_up, release** change a job only while this store holds its
  claim (`claimed_by` starts with this store's token): a worker whose lease expired and
  whose job was claimed elsewhere changes nothing (the call returns False).

Every statement is parameterised; connections come from a bounded pool (`pg_connect`),
each with a statement timeout. The protocol's methods are async for the event loop and
run their transaction on one of the store's own threads, as many as the pool has
connections: psycopg's blocking connections, one pool, usable from any event loop.

Times are the application's clock (Unix seconds), as in SQLite: replicas' clocks must be
kept in step (NTP), since one replica's lease is checked against another's clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, LiteralString, TypeVar

import psycopg
import psycopg.errors

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
    StoreClosed,
    StoreError,
)
from auto_review.store.pg_coalesce import NewReview, coalesce, supersede_if_behind
from auto_review.store.pg_connect import PgConnection, run_transaction
from auto_review.store.pg_leases import expire_leases
from auto_review.store.pg_notify import NOTIFY, JobsListener
from auto_review.store.pg_schema import migrate
from auto_review.store.rows import clip_detail, job_from_row
from auto_review.store.sqlite_accept import AcceptItem
from auto_review.store.sqlite_coalesce import REVIEW_KIND

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[Any]

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600.0
MAX_HOUSEKEEPING_INTERVAL_SECONDS = 3600.0
PRUNE_BATCH_ROWS = 2000
DEFAULT_MAX_INTERRUPTIONS = JobRetryPolicy().max_interruptions
_CLOSE_WAIT_SECONDS = 30.0
_DUPLICATE_DELIVERY = AcceptResult(duplicate_delivery=True, new_jobs=0, duplicate_jobs=0)


class PostgresIntakeStore:
    def __init__(
        self,
        connection: PgConnection,
        *,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        housekeeping: bool = True,
        housekeeping_interval_seconds: float | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        lease_check_interval_seconds: float | None = None,
        max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Migrate the schema (under its advisory lock), open the pool, start the thread
        that renews this store's leases (and, with `housekeeping`, deletes finished jobs
        and delivery ids older than the retention)."""
        if retention_seconds <= 0:
            raise ValueError("the retention must be positive")
        if lease_seconds <= 0:
            raise ValueError("the lease must be positive")
        if housekeeping_interval_seconds is None:
            housekeeping_interval_seconds = min(
                retention_seconds / 4, MAX_HOUSEKEEPING_INTERVAL_SECONDS
            )
        self._connection = connection
        self._clock = clock
        self._retention = retention_seconds
        self._lease = lease_seconds
        self._lease_check_interval = (
            lease_seconds / 4
            if lease_check_interval_seconds is None
            else lease_check_interval_seconds
        )
        self._max_interruptions = max_interruptions
        self._last_lease_check = -float("inf")
        self._listeners: list[NewJobsListener] = []
        # Unique per open store: its claims are the rows whose claimed_by starts with it.
        self._token = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}/"
        self._pruned_jobs = 0
        self._pruned_deliveries = 0
        self._closed = False
        self._in_flight = 0
        self._idle = threading.Condition()
        with contextlib.closing(connection.connect()) as first:
            try:
                migrate(first)
            except psycopg.Error as exc:
                raise connection.failure("cannot migrate the schema of", exc) from None
        self._pool = connection.pool()
        # One thread per pooled connection: the transactions in flight are bounded by the
        # pool, not by asyncio's default executor (a handful of threads on a small machine).
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=connection.pool_size, thread_name_prefix="pg-store"
        )
        self._stop = threading.Event()
        self._housekeeping_interval = housekeeping_interval_seconds if housekeeping else None
        self._thread = threading.Thread(
            target=self._maintenance, name="pg-store-maintenance", daemon=True
        )
        self._thread.start()
        self._jobs_listener = JobsListener(
            lambda: connection.connect("listen"), self._notify_listeners, own_payload=self._token
        )
        self._jobs_listener.start()

    @property
    def connection(self) -> PgConnection:
        return self._connection

    # ---- intake -------------------------------------------------------------------------

    async def accept(self, delivery: DeliveryRef | None, jobs: list[JobRequest]) -> AcceptResult:
        """Record the delivery and enqueue its jobs in one committed transaction.

        A delivery seen before enqueues nothing. Raises StoreBusy when no connection is
        free in time, StoreClosed after close(), StoreError when the database refused.
        """
        item = AcceptItem.build(delivery, jobs, self._clock())
        result = await self._run_async(lambda connection: self._accept(connection, item))
        if result.new_jobs:
            self._notify_listeners()
        return result

    def seen_delivery(self, delivery: DeliveryRef) -> bool:
        return (
            self._read_one(
                "SELECT 1 FROM deliveries WHERE source = %s AND delivery_id = %s",
                (delivery.source, delivery.delivery_id),
            )
            is not None
        )

    def seen_comment(self, repo: RepoRef, comment_id: int) -> bool:
        """Whether any job was ever queued for this comment (webhook or poller)."""
        return (
            self._read_one(
                "SELECT 1 FROM jobs WHERE host = %s AND owner = %s AND name = %s"
                " AND comment_id = %s LIMIT 1",
                (str(repo.host), repo.owner, repo.name, comment_id),
            )
            is not None
        )

    def queue_depth(self) -> int:
        row = self._read_one("SELECT COUNT(*) FROM jobs WHERE status = 'pending'", ())
        return int(row[0]) if row else 0

    def counts(self) -> dict[JobStatus, int]:
        rows = self._read_all("SELECT status, COUNT(*) FROM jobs GROUP BY status", ())
        found = {JobStatus(status): int(count) for status, count in rows}
        return {status: found.get(status, 0) for status in JobStatus}

    def job_overview(self) -> JobOverview:
        now = self._clock()
        rows = self._read_all(
            "SELECT " + _STATE_VIEW + ","  # noqa: S608
            " CASE WHEN kind = 'review' THEN 'review' ELSE 'chat' END,"
            " COUNT(*), MIN(CASE WHEN status = 'pending' THEN enqueued_at END)"
            " FROM jobs GROUP BY 1, 2",
            (now,),
        )
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

    # ---- worker side --------------------------------------------------------------------

    async def claim(self, worker: str) -> Job | None:
        """Take the next due pending job with a lease; None when nothing is due.

        Jobs whose lease expired go back to the queue first (at most every quarter of the
        lease per store), so a dead replica's work is picked up by the living.
        """
        now = self._clock()
        check_leases = time.monotonic() - self._last_lease_check >= self._lease_check_interval
        if check_leases:
            self._last_lease_check = time.monotonic()

        def operation(connection: Connection) -> Job | None:
            if check_leases:
                expire_leases(connection, now, self._max_interruptions)
            row = connection.execute(
                _CLAIM,
                {"by": self._token + worker, "now": now, "until": now + self._lease},
            ).fetchone()
            if row is None:
                return None
            job = job_from_row(tuple(row))
            repo = job.request.repo
            connection.execute(_SERVED, (str(repo.host), repo.owner, repo.name))
            return job

        return await self._run_async(operation)

    async def finish(self, job_id: int, outcome: JobOutcome, detail: str = "") -> bool:
        """Close a job this store holds. FAILED ends in 'failed', others in 'done'."""
        status = JobStatus.FAILED if outcome is JobOutcome.FAILED else JobStatus.DONE
        return await self._update_held(
            job_id,
            "status = %s, outcome = %s, detail = %s, finished_at = %s",
            (str(status), str(outcome), clip_detail(detail), self._clock()),
        )

    async def retry_later(self, job_id: int, delay_seconds: float, detail: str) -> bool:
        """Back to pending, due after `delay_seconds` (superseded instead when a newer head
        of its pull request was accepted meanwhile)."""
        due = self._clock() + max(delay_seconds, 0.0)
        return await self._update_held(
            job_id,
            "status = 'pending', not_before = %s, detail = %s, interruptions = 0",
            (due, clip_detail(detail)),
            work_available=delay_seconds <= 0,
            unless_superseded=True,
        )

    async def give_up(self, job_id: int, detail: str) -> bool:
        return await self._update_held(
            job_id,
            "status = 'failed', outcome = 'error', detail = %s, finished_at = %s",
            (clip_detail(detail), self._clock()),
        )

    async def release(self, job_id: int) -> bool:
        """Give a held job back without counting its attempt (superseded instead when a
        newer head of its pull request was accepted meanwhile)."""
        return await self._update_held(
            job_id,
            "status = 'pending', attempts = GREATEST(attempts - 1, 0)",
            (),
            work_available=True,
            unless_superseded=True,
        )

    def requeue_interrupted(
        self, max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    ) -> RequeueResult:
        """Jobs whose lease expired go back to pending (or fail after `max_interruptions`
        in a row). Unlike SQLite, 'running' rows with a live lease belong to live workers
        of any replica and are left alone, so this may run at any time."""
        now = self._clock()

        def operation(connection: Connection) -> RequeueResult:
            result = expire_leases(connection, now, max_interruptions)
            if result.requeued:
                connection.execute(NOTIFY, (self._token,))
            return result

        result = self._run(operation)
        if result.requeued:
            self._notify_listeners()
        return result

    def add_new_jobs_listener(self, listener: NewJobsListener) -> None:
        """`listener()` runs after a commit of this store that made jobs claimable, on the
        thread that committed, and when another store's commit did (its NOTIFY, on the
        listening thread): keep it quick and thread-safe."""
        self._listeners.append(listener)

    # ---- operators and tests ------------------------------------------------------------

    def job_status(self, job_id: int) -> tuple[JobStatus, str | None, str, int] | None:
        row = self._read_one(
            "SELECT status, outcome, detail, attempts FROM jobs WHERE id = %s", (job_id,)
        )
        if row is None:
            return None
        return JobStatus(row[0]), row[1], row[2], int(row[3])

    def list_jobs(self, state: str | None = None, limit: int = 50) -> list[JobListing]:
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"state must be one of {', '.join(JOB_STATES)}")
        now = self._clock()
        columns: LiteralString = (
            "id, kind, host, owner, name, pr_number, head_sha, " + _STATE_VIEW + " AS state,"
            " attempts, enqueued_at, not_before, detail, superseded_by"
        )
        base: LiteralString = "SELECT " + columns + " FROM jobs"  # noqa: S608 (fixed text)
        if state is None:
            rows = self._read_all(base + " ORDER BY id DESC LIMIT %s", (now, limit))
        else:
            rows = self._read_all(
                base + " WHERE " + _STATE_VIEW + " = %s ORDER BY id DESC LIMIT %s",
                (now, now, state, limit),
            )
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
        """As `SqliteIntakeStore.requeue_job`: a failed or waiting job back in the queue."""
        now = self._clock()

        def operation(connection: Connection) -> JobStatus | None:
            row = connection.execute(
                "SELECT status FROM jobs WHERE id = %s FOR UPDATE", (job_id,)
            ).fetchone()
            if row is None:
                return None
            status = JobStatus(row[0])
            if status in (JobStatus.FAILED, JobStatus.PENDING):
                connection.execute(
                    "UPDATE jobs SET status = 'pending', not_before = %s, enqueued_at = %s,"
                    " attempts = 0, interruptions = 0, outcome = NULL, finished_at = NULL,"
                    " claimed_by = NULL, locked_until = NULL,"
                    " detail = 'requeued by an operator' WHERE id = %s",
                    (now, now, job_id),
                )
                connection.execute(NOTIFY, (self._token,))
            return status

        status = self._run(operation)
        if status in (JobStatus.FAILED, JobStatus.PENDING):
            self._notify_listeners()
        return status

    def prune_step(self, connection: Connection) -> bool:
        """One housekeeping transaction's work (see `SqliteIntakeStore.prune_step`)."""
        cutoff = self._clock() - self._retention
        jobs = connection.execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at < %s"
            " AND status IN ('done', 'failed') LIMIT %s)",
            (cutoff, PRUNE_BATCH_ROWS),
        ).rowcount
        deliveries = connection.execute(
            "DELETE FROM deliveries WHERE (source, delivery_id) IN (SELECT source, delivery_id"
            " FROM deliveries WHERE received_at < %s LIMIT %s)",
            (cutoff, PRUNE_BATCH_ROWS),
        ).rowcount
        if jobs:
            connection.execute(
                "DELETE FROM pull_requests p WHERE NOT EXISTS"
                " (SELECT 1 FROM jobs WHERE jobs.id = p.latest_job_id)"
            )
            connection.execute(
                "DELETE FROM repo_turns t WHERE NOT EXISTS (SELECT 1 FROM pull_requests p"
                " WHERE p.host = t.host AND p.owner = t.owner AND p.name = t.name)"
            )
        self._pruned_jobs += jobs
        self._pruned_deliveries += deliveries
        return jobs >= PRUNE_BATCH_ROWS or deliveries >= PRUNE_BATCH_ROWS

    @property
    def pruned(self) -> tuple[int, int]:
        return self._pruned_jobs, self._pruned_deliveries

    def prune_now(self) -> tuple[int, int]:
        before = self.pruned
        while self._run(self.prune_step):
            pass
        after = self.pruned
        return after[0] - before[0], after[1] - before[1]

    def schema_version(self) -> int:
        row = self._read_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", ())
        return int(row[0]) if row else 0

    # ---- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new work, let calls already made finish, stop the maintenance thread and
        close the pool. Running jobs keep their rows; their leases expire. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=_CLOSE_WAIT_SECONDS)
        self._stop.set()
        self._jobs_listener.stop()
        self._thread.join(timeout=_CLOSE_WAIT_SECONDS)
        self._executor.shutdown(wait=True)
        self._pool.close()

    # ---- internals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self._idle:
            if self._closed:
                raise StoreClosed("the state store is closed")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    async def _run_async(self, operation: Callable[[Connection], T]) -> T:
        with self._call():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._transaction, operation)

    def _run(self, operation: Callable[[Connection], T]) -> T:
        with self._call():
            return self._transaction(operation)

    def _transaction(self, operation: Callable[[Connection], T]) -> T:
        return run_transaction(self._pool, self._connection, operation, "state")

    def _read_one(self, sql: LiteralString, parameters: tuple[object, ...]) -> Any:
        return self._run(lambda connection: connection.execute(sql, parameters).fetchone())

    def _read_all(self, sql: LiteralString, parameters: tuple[object, ...]) -> list[Any]:
        return self._run(lambda connection: connection.execute(sql, parameters).fetchall())

    async def _update_held(
        self,
        job_id: int,
        assignments: LiteralString,
        parameters: tuple[object, ...],
        *,
        work_available: bool = False,
        unless_superseded: bool = False,
    ) -> bool:
        now = self._clock()
        token = self._token

        def operation(connection: Connection) -> bool:
            held = "j.id = %s AND j.status = 'running' AND starts_with(j.claimed_by, %s)"
            if unless_superseded and supersede_if_behind(connection, held, (now, job_id, token)):
                return True
            changed = connection.execute(
                "UPDATE jobs j SET " + assignments + ", claimed_by = NULL, locked_until = NULL"  # noqa: S608
                " WHERE " + held,
                (*parameters, job_id, token),
            ).rowcount
            if changed and work_available:
                connection.execute(NOTIFY, (token,))
            return changed == 1

        changed = await self._run_async(operation)
        if changed and work_available:
            self._notify_listeners()
        return changed

    def _accept(self, connection: Connection, item: AcceptItem) -> AcceptResult:
        if item.delivery is not None:
            inserted = connection.execute(
                "INSERT INTO deliveries (source, delivery_id, received_at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (item.delivery.source, item.delivery.delivery_id, item.received_at),
            ).fetchone()
            if inserted is None:
                return _DUPLICATE_DELIVERY
        if item.redo_keys:
            connection.execute(
                "UPDATE jobs SET dedup_key = dedup_key || '|redone-by-reopen:' || id"
                " WHERE dedup_key = ANY(%s) AND (status = 'failed' OR (status = 'done'"
                " AND COALESCE(outcome, '') <> 'succeeded'))",
                (sorted(item.redo_keys),),
            )
        added = 0
        reviews: list[NewReview] = []
        for row in item.rows:
            returned = connection.execute(_JOB_INSERT, row).fetchone()
            if returned is None:
                continue
            added += 1
            job_id, kind, host, owner, name, number, head = returned
            if kind == REVIEW_KIND:
                reviews.append(
                    NewReview(int(job_id), (str(host), str(owner), str(name), int(number)), head)
                )
        superseded = coalesce(connection, reviews, item.received_at) if reviews else 0
        if added:
            connection.execute(NOTIFY, (self._token,))
        return AcceptResult(
            duplicate_delivery=False,
            new_jobs=added,
            duplicate_jobs=len(item.rows) - added,
            superseded_jobs=superseded,
        )

    def _notify_listeners(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("state store new-jobs listener failed")

    def _maintenance(self) -> None:
        """Renew this store's leases every third of the lease; housekeeping on its own
        interval. A failure is logged and tried again at the next turn."""
        renew_every = self._lease / 3
        next_housekeeping = time.monotonic()

        def wait() -> float:
            if self._housekeeping_interval is None:
                return renew_every
            return min(renew_every, max(next_housekeeping - time.monotonic(), 0.0))

        while not self._stop.wait(wait()):
            try:
                self._run(self._renew_leases)
                if (
                    self._housekeeping_interval is not None
                    and time.monotonic() >= next_housekeeping
                ):
                    while self._run(self.prune_step) and not self._stop.is_set():
                        pass
                    next_housekeeping = time.monotonic() + self._housekeeping_interval
            except StoreClosed:
                return
            except StoreError as exc:
                log.warning("state store maintenance failed: %s", exc)

    def _renew_leases(self, connection: Connection) -> int:
        return connection.execute(
            "UPDATE jobs SET locked_until = %s WHERE status = 'running'"
            " AND starts_with(claimed_by, %s)",
            (self._clock() + self._lease, self._token),
        ).rowcount


# ---- statements -----------------------------------------------------------------------

# The state an operator sees; its one parameter is the current time.
_STATE_VIEW: LiteralString = (
    "CASE WHEN status = 'pending' AND not_before > %s THEN 'waiting-retry'"
    " WHEN status = 'pending' THEN 'queued'"
    " WHEN status = 'done' AND outcome = 'superseded' THEN 'superseded' ELSE status END"
)

_JOB_INSERT: LiteralString = (
    "INSERT INTO jobs (dedup_key, kind, host, owner, name, pr_number, head_sha, comment_id,"
    " argument, requested_by, source, status, attempts, enqueued_at, not_before)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', 0, %s, %s)"
    " ON CONFLICT (dedup_key) DO NOTHING"
    " RETURNING id, kind, host, owner, name, pr_number, head_sha"
)

# Chat first (false sorts before true), then the repository served least recently (never:
# first), then the job due first. SKIP LOCKED: a job another worker is claiming right now
# is passed over, never waited for.
_CLAIM: LiteralString = (
    "WITH next AS (SELECT j.id FROM jobs j LEFT JOIN repo_turns t"
    " ON t.host = j.host AND t.owner = j.owner AND t.name = j.name"
    " WHERE j.status = 'pending' AND j.not_before <= %(now)s"
    " ORDER BY j.kind = 'review', COALESCE(t.served, 0), j.not_before, j.id"
    " LIMIT 1 FOR UPDATE OF j SKIP LOCKED)"
    " UPDATE jobs SET status = 'running', attempts = attempts + 1, claimed_by = %(by)s,"
    " claimed_at = %(now)s, locked_until = %(until)s FROM next WHERE jobs.id = next.id"
    " RETURNING jobs.id, kind, host, owner, name, pr_number, head_sha, comment_id,"
    " argument, requested_by, source, attempts, enqueued_at"
)
_SERVED: LiteralString = (
    "INSERT INTO repo_turns (host, owner, name, served)"
    " VALUES (%s, %s, %s, nextval('repo_turn_numbers'))"
    " ON CONFLICT (host, owner, name) DO UPDATE SET served = excluded.served"
)
