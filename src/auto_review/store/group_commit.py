"""Group commit: one thread owns the SQLite write connection and batches callers.

Callers (async or not) submit an operation, a function of the write connection. The writer
thread takes everything queued, runs it in ONE transaction (`BEGIN IMMEDIATE ... COMMIT`),
each operation inside its own savepoint so one failing operation is undone alone, and then
resolves every caller. A result is only handed back after the COMMIT returned, so with
`synchronous=FULL` each caller's write is on disk before it hears about it; the fsync cost is
shared by the whole batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from auto_review.store.base import StoreBusy, StoreClosed, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]


@dataclass(slots=True)
class _Submission:
    operation: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    loop: asyncio.AbstractEventLoop | None  # None for a concurrent (blocking) future


@dataclass(frozen=True, slots=True)
class Housekeeping:
    """A maintenance operation the writer runs in its own transaction every `interval`."""

    operation: Callable[[sqlite3.Connection], None]
    interval_seconds: float


class GroupCommitWriter:
    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        max_pending: int,
        after_commit: Callable[[], None] | None = None,
        housekeeping: Housekeeping | None = None,
        name: str = "sqlite-writer",
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._connection = connection
        self._max_pending = max_pending
        self._after_commit = after_commit
        self._housekeeping = housekeeping
        self._next_housekeeping = time.monotonic()
        self._pending: deque[_Submission] = deque()
        self._condition = threading.Condition()
        self._closing = False
        self._stopped = False
        self._work_available = False
        self._batches = 0
        self._operations = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ---- submitting ---------------------------------------------------------------------

    def submit(self, operation: Operation[T], *, bounded: bool = True) -> asyncio.Future[T]:
        """Queue `operation` from a running event loop; await the returned future.

        `bounded` submissions count against `max_pending` and fail fast with StoreBusy when
        the queue is full; worker bookkeeping passes bounded=False (it is bounded by the
        worker count, and refusing a finish would only leave a job stuck in 'running').
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Submission(operation, future, loop), bounded)
        return future

    def call(self, operation: Operation[T], timeout: float | None = 30.0) -> T:
        """Run `operation` through the writer from a thread that is not an event loop."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._enqueue(_Submission(operation, future, None), bounded=False)
        return future.result(timeout=timeout)

    def _enqueue(self, submission: _Submission, bounded: bool) -> None:
        with self._condition:
            if self._closing or self._stopped:
                raise StoreClosed("the state store is closed")
            if bounded and len(self._pending) >= self._max_pending:
                raise StoreBusy(
                    f"state store write queue is full ({self._max_pending} waiting); retry later"
                )
            self._pending.append(submission)
            self._condition.notify()

    def mark_work_available(self) -> None:
        """Called by an operation (on the writer thread) that made jobs claimable."""
        self._work_available = True

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def stats(self) -> tuple[int, int]:
        """(batches committed, operations committed) since start."""
        return self._batches, self._operations

    # ---- stopping -----------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking submissions, finish everything already queued, stop the thread."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StoreError("state store writer did not stop in time")

    # ---- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                if batch:
                    self._commit_batch(batch)
                self._maybe_housekeep()
        except BaseException:
            log.exception("state store writer stopped unexpectedly")
            raise
        finally:
            with self._condition:
                self._stopped = True
                leftovers = list(self._pending)
                self._pending.clear()
            stopped = StoreClosed("the state store writer stopped")
            self._resolve([(s, None, stopped) for s in leftovers])

    def _next_batch(self) -> list[_Submission] | None:
        with self._condition:
            while not self._pending and not self._closing:
                if self._housekeeping is None:
                    self._condition.wait()
                else:
                    wait = self._next_housekeeping - time.monotonic()
                    if wait <= 0:
                        return []
                    self._condition.wait(wait)
            if not self._pending:
                return None  # closing and drained
            batch = list(self._pending)
            self._pending.clear()
            return batch

    def _commit_batch(self, batch: list[_Submission]) -> None:
        connection = self._connection
        outcomes: list[tuple[_Submission, Any, BaseException | None]] = []
        self._work_available = False
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            failure = StoreError(f"could not start a state store transaction ({_kind(exc)})")
            self._resolve([(s, None, failure) for s in batch])
            return
        for submission in batch:
            connection.execute("SAVEPOINT operation")
            try:
                value = submission.operation(connection)
            except Exception as exc:  # undo this operation alone; the batch goes on
                if not self._undo_operation():
                    # SQLite rolled the whole transaction back (e.g. disk full): all fail.
                    failure = StoreError(f"state store transaction aborted ({type(exc).__name__})")
                    self._resolve([(s, None, failure) for s in batch])
                    return
                outcomes.append((submission, None, _as_store_error(exc)))
            else:
                connection.execute("RELEASE operation")
                outcomes.append((submission, value, None))
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            failure = StoreError(f"could not commit to the state store ({_kind(exc)})")
            self._resolve([(s, None, failure) for s in batch])
            return
        self._batches += 1
        self._operations += len(batch)
        self._resolve(outcomes)
        if self._work_available and self._after_commit is not None:
            try:
                self._after_commit()
            except Exception:
                log.exception("state store after-commit listener failed")

    def _undo_operation(self) -> bool:
        connection = self._connection
        try:
            connection.execute("ROLLBACK TO operation")
            connection.execute("RELEASE operation")
        except sqlite3.Error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return False
        return True

    def _maybe_housekeep(self) -> None:
        if self._housekeeping is None or time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + self._housekeeping.interval_seconds
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._housekeeping.operation(connection)
            connection.execute("COMMIT")
        except sqlite3.Error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            log.exception("state store housekeeping failed")

    @staticmethod
    def _resolve(outcomes: list[tuple[_Submission, Any, BaseException | None]]) -> None:
        # One wake-up per event loop per batch, not one per caller.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Submission, Any, Any]]] = {}
        for submission, value, error in outcomes:
            if submission.loop is None:
                _resolve_now(submission, value, error)
            else:
                by_loop.setdefault(submission.loop, []).append((submission, value, error))
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_all, items)


def _resolve_all(items: list[tuple[_Submission, Any, BaseException | None]]) -> None:
    for submission, value, error in items:
        _resolve_now(submission, value, error)


def _resolve_now(submission: _Submission, value: Any, error: BaseException | None) -> None:
    future = submission.future
    if future.done():  # the caller gave up (cancelled); the write itself stands
        return
    if submission.loop is not None and submission.loop.is_closed():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _kind(exc: sqlite3.Error) -> str:
    # SQLite's own messages name tables and constraints, never bound values.
    return f"{type(exc).__name__}: {exc}"


def _as_store_error(exc: Exception) -> BaseException:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"state store write failed ({_kind(exc)})")
        error.__cause__ = exc
        return error
    return exc
