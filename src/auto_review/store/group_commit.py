"""Group commit on one SQLite write connection, shaped for Python's GIL.

Async callers submit work and await a future. Everything submitted during one event-loop
iteration, plus everything submitted while the previous COMMIT was on its way to disk,
becomes ONE transaction: the loop thread runs `BEGIN IMMEDIATE` and the statements (tens to
hundreds of microseconds), then hands only `COMMIT` - the fsync - to the commit thread.
When COMMIT has returned, every caller of the batch is resolved. So with
`synchronous=FULL` a caller hears back only after its write is on disk, and the fsync cost
is shared by the whole batch.

Why the statements run on the loop thread: Python's sqlite3 releases the GIL around every
statement step, and a thread that wants the GIL back while the event loop is busy can wait
up to the interpreter's switch interval (5 ms) for each step. A writer thread running a
dozen statements per batch would queue behind the loop a dozen times; the commit thread
here takes the GIL back once per batch.

Two kinds of work:
- an *operation*, a function of the connection, run inside its own savepoint so a failing
  one is undone alone (claims, finishes: few, bounded by the worker count);
- a *batched item* for a `BatchHandler`, which gets every queued item of its kind at once
  and writes them with a few multi-row statements. If a handler raises, its group is rolled
  back and each item is retried alone in its own savepoint, so one bad item fails only its
  own caller.

Blocking callers on other threads (startup requeue, housekeeping, close) use `call()`,
which takes the connection lock and runs a transaction of its own; the lock is held from
BEGIN to the end of COMMIT, so the two paths never share a transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from auto_review.store.base import StoreBusy, StoreClosed, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
ItemT = TypeVar("ItemT", contravariant=True)
ResultT = TypeVar("ResultT", covariant=True)
Operation = Callable[[sqlite3.Connection], T]

_LOCK_RETRY_SECONDS = 0.002  # loop side: the connection is busy with a blocking call
_BUSY_RETRY_SECONDS = 0.005  # another process holds SQLite's write lock
# Between two housekeeping transactions of a backlog: room for the loop's batches.
_HOUSEKEEPING_PAUSE_SECONDS = 0.02


class BatchHandler(Protocol[ItemT, ResultT]):
    """Writes many items in a few statements; returns one result per item, in order.

    Raise on any failure (leaving the rollback to the writer); do not catch and go on.
    """

    def __call__(
        self, connection: sqlite3.Connection, items: Sequence[ItemT]
    ) -> Sequence[ResultT]: ...


@dataclass(slots=True)
class _Submission:
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    loop: asyncio.AbstractEventLoop | None  # None for a blocking call()
    operation: Callable[[sqlite3.Connection], Any] | None = None
    handler: BatchHandler[Any, Any] | None = None
    item: Any = None


@dataclass(slots=True)
class _Outcome:
    submission: _Submission
    value: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Commit:
    """A batch whose statements ran; the commit thread finishes it."""

    loop: asyncio.AbstractEventLoop
    outcomes: list[_Outcome]
    work_available: bool
    error: BaseException | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Housekeeping:
    """A maintenance operation run in its own transaction every `interval_seconds`.

    An operation that returns True did a bounded share of its work and has more: it runs
    again as soon as the commits queued meanwhile are done, so a large backlog is worked
    off in short transactions that never hold the connection for long.
    """

    operation: Callable[[sqlite3.Connection], bool | None]
    interval_seconds: float


class _TransactionLost(Exception):
    """SQLite rolled the whole transaction back (e.g. disk full): the batch is lost."""


class GroupCommitWriter:
    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        max_pending: int,
        after_commit: Callable[[], None] | None = None,
        housekeeping: Housekeeping | None = None,
        lock_wait_seconds: float = 5.0,
        name: str = "sqlite-commit",
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._connection = connection
        # Never block inside SQLite: the loop thread runs BEGIN, and it must not sleep there.
        connection.execute("PRAGMA busy_timeout = 0")
        self._max_pending = max_pending
        self._after_commit = after_commit
        self._housekeeping = housekeeping
        self._lock_wait = lock_wait_seconds
        self._connection_lock = threading.Lock()  # held from BEGIN to the end of COMMIT
        self._pending: list[_Submission] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._in_flight = False  # loop side: a batch is between BEGIN and its COMMIT's end
        self._busy_since: float | None = None
        self._closed = False
        self._work_available = False
        self._batches = 0
        self._operations = 0
        self._commits: queue.SimpleQueue[_Commit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._commit_thread, name=name, daemon=True)
        self._thread.start()

    # ---- submitting (event loop) --------------------------------------------------------

    def submit(self, operation: Operation[T], *, bounded: bool = True) -> asyncio.Future[T]:
        """Queue `operation` from the running event loop; await the returned future.

        `bounded` submissions count against `max_pending` and fail fast with StoreBusy when
        the queue is full; worker bookkeeping passes bounded=False (it is bounded by the
        worker count, and refusing a finish would only leave a job stuck in 'running').
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Submission(future, loop, operation=operation), bounded)
        return future

    def submit_batched(
        self, handler: BatchHandler[ItemT, T], item: ItemT, *, bounded: bool = True
    ) -> asyncio.Future[T]:
        """Queue one item for `handler`, which will see it with every other queued item."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Submission(future, loop, handler=handler, item=item), bounded)
        return future

    def _enqueue(self, submission: _Submission, bounded: bool) -> None:
        if self._closed:
            raise StoreClosed("the state store is closed")
        loop = submission.loop
        assert loop is not None
        if self._loop is not loop:
            if self._loop is not None and self._loop.is_closed():
                # Whatever the old loop left behind has nobody waiting for it.
                self._pending, self._in_flight, self._flush_scheduled = [], False, False
            if self._pending or self._in_flight:
                raise StoreError("the state store is in use by another event loop")
            self._loop = loop
            self._flush_scheduled = False
        if bounded and len(self._pending) >= self._max_pending:
            raise StoreBusy(
                f"state store write queue is full ({self._max_pending} waiting); retry later"
            )
        self._pending.append(submission)
        self._schedule_flush()

    def _schedule_flush(self, delay: float = 0.0) -> None:
        if self._flush_scheduled or self._in_flight or self._loop is None:
            return
        self._flush_scheduled = True
        if delay:
            self._loop.call_later(delay, self._flush)
        else:
            self._loop.call_soon(self._flush)

    # ---- blocking callers (any thread) --------------------------------------------------

    def call(self, operation: Operation[T], timeout: float | None = 30.0) -> T:
        """Run `operation` in a transaction of its own, from any thread; blocks until durable."""
        if self._closed:
            raise StoreClosed("the state store is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        submission = _Submission(future, None, operation=operation)
        if not self._connection_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise StoreError("the state store stayed busy; try again")
        try:
            self._run_blocking([submission])
        finally:
            self._connection_lock.release()
        return future.result(timeout=0)

    def _run_blocking(self, batch: list[_Submission]) -> None:
        """With the connection lock held: BEGIN, statements, COMMIT, resolve."""
        try:
            self._begin_waiting()
            outcomes, work_available = self._execute(batch)
            self._connection.execute("COMMIT")
        except (sqlite3.Error, _TransactionLost, StoreError) as exc:
            self._rollback()
            failure = exc if isinstance(exc, StoreError) else _batch_error(exc)
            _resolve_anywhere([_Outcome(s, error=failure) for s in batch])
            return
        self._count(batch)
        _resolve_anywhere(outcomes)
        if work_available:
            self._notify()

    def _begin_waiting(self) -> None:
        deadline = time.monotonic() + self._lock_wait
        while True:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise StoreError(_begin_failure(exc)) from None
            time.sleep(_BUSY_RETRY_SECONDS)

    # ---- the loop side of a batch -------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._in_flight or not self._pending:
            return
        if not self._connection_lock.acquire(blocking=False):
            self._schedule_flush(_LOCK_RETRY_SECONDS)  # a blocking call() has the connection
            return
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._connection_lock.release()
            self._begin_failed(exc)
            return
        self._busy_since = None
        batch, self._pending = self._pending, []
        try:
            outcomes, work_available = self._execute(batch)
        except _TransactionLost as exc:
            self._rollback()
            self._connection_lock.release()
            _resolve_here([_Outcome(s, error=_batch_error(exc)) for s in batch])
            self._schedule_flush()
            return
        self._in_flight = True
        assert self._loop is not None
        self._commits.put(_Commit(self._loop, outcomes, work_available))

    def _begin_failed(self, exc: sqlite3.Error) -> None:
        now = time.monotonic()
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            self._busy_since = self._busy_since or now
            if now - self._busy_since < self._lock_wait:
                self._schedule_flush(_BUSY_RETRY_SECONDS)
                return
        self._busy_since = None
        batch, self._pending = self._pending, []
        failure = StoreError(_begin_failure(exc))
        _resolve_here([_Outcome(s, error=failure) for s in batch])

    def _committed(self, commit: _Commit) -> None:
        self._in_flight = False
        if commit.error is not None:
            _resolve_here([_Outcome(o.submission, error=commit.error) for o in commit.outcomes])
        else:
            _resolve_here(commit.outcomes)
            if commit.work_available:
                self._notify()
        if self._pending:
            self._schedule_flush()

    # ---- the commit thread --------------------------------------------------------------

    def _commit_thread(self) -> None:
        next_housekeeping = time.monotonic()
        while True:
            wait = None
            if self._housekeeping is not None:
                wait = max(next_housekeeping - time.monotonic(), 0.0)
            try:
                commit = self._commits.get(timeout=wait)
            except queue.Empty:
                assert self._housekeeping is not None
                outcome = self._housekeep(self._housekeeping.operation)
                if outcome is None:  # the connection was taken: serve the queue, come back
                    delay = _LOCK_RETRY_SECONDS
                elif outcome:  # more to do: again after a pause for the loop's batches
                    delay = _HOUSEKEEPING_PAUSE_SECONDS
                else:
                    delay = self._housekeeping.interval_seconds
                next_housekeeping = time.monotonic() + delay
                continue
            if commit is None:
                return
            try:
                self._finish_commit(commit)
            except Exception:  # a bug here must not wedge the store: log it, go on
                log.exception("state store commit thread failed")

    def _finish_commit(self, commit: _Commit) -> None:
        try:
            self._connection.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            commit.error = StoreError(f"could not commit to the state store ({_describe(exc)})")
        except BaseException as exc:
            self._rollback()
            commit.error = StoreError(f"state store commit failed ({type(exc).__name__})")
            raise
        else:
            self._count([o.submission for o in commit.outcomes])
        finally:
            self._connection_lock.release()
            try:
                commit.loop.call_soon_threadsafe(self._committed, commit)
            except RuntimeError:
                self._in_flight = False  # the loop is closed: nobody waits for these results

    def _housekeep(self, operation: Callable[[sqlite3.Connection], bool | None]) -> bool | None:
        """Run ``operation`` in its own transaction; True when it has more to do, None (not
        run) while the connection is taken. A batch holds it until its COMMIT, which only
        this thread runs: waiting for the lock here would wait forever, so the caller serves
        the queue and comes back."""
        if not self._connection_lock.acquire(blocking=False):
            return None
        more: bool | None = False
        try:
            self._begin_waiting()
            more = operation(self._connection)
            self._connection.execute("COMMIT")
        except (sqlite3.Error, StoreError):
            self._rollback()
            log.exception("state store housekeeping failed")
            more = False
        finally:
            self._connection_lock.release()
        return bool(more)

    # ---- running statements -------------------------------------------------------------

    def _execute(self, batch: list[_Submission]) -> tuple[list[_Outcome], bool]:
        """Run a batch inside the open transaction; raises _TransactionLost if SQLite
        abandoned the transaction."""
        self._work_available = False
        outcomes = self._run_batched(batch)
        outcomes.extend(
            self._run_one(submission.operation, submission)
            for submission in batch
            if submission.operation is not None
        )
        return outcomes, self._work_available

    def _run_batched(self, batch: list[_Submission]) -> list[_Outcome]:
        groups: dict[Any, list[_Submission]] = {}
        for submission in batch:
            if submission.handler is not None:
                groups.setdefault(submission.handler, []).append(submission)
        outcomes: list[_Outcome] = []
        for handler, members in groups.items():
            items = [member.item for member in members]
            try:
                values = self._in_savepoint(functools.partial(handler, items=items))
            except _TransactionLost:
                raise
            except Exception as exc:
                if len(members) == 1:
                    outcomes.append(_Outcome(members[0], error=_as_store_error(exc)))
                    continue
                # Somebody's item is bad: find out whose, one item per savepoint.
                for member in members:
                    outcomes.append(self._run_one(_single(handler, member.item), member))
                continue
            outcomes.extend(_Outcome(m, value=v) for m, v in zip(members, values, strict=True))
        return outcomes

    def _run_one(
        self, operation: Callable[[sqlite3.Connection], Any], submission: _Submission
    ) -> _Outcome:
        try:
            return _Outcome(submission, value=self._in_savepoint(operation))
        except _TransactionLost:
            raise
        except Exception as exc:
            return _Outcome(submission, error=_as_store_error(exc))

    def _in_savepoint(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        connection.execute("SAVEPOINT work")
        try:
            value = operation(connection)
        except Exception as exc:
            try:
                connection.execute("ROLLBACK TO work")
                connection.execute("RELEASE work")
            except sqlite3.Error:
                raise _TransactionLost(type(exc).__name__) from exc
            raise
        connection.execute("RELEASE work")
        return value

    def _rollback(self) -> None:
        if self._connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("ROLLBACK")

    def _count(self, batch: Sequence[_Submission]) -> None:
        self._batches += 1
        self._operations += len(batch)

    def _notify(self) -> None:
        if self._after_commit is None:
            return
        try:
            self._after_commit()
        except Exception:
            log.exception("state store after-commit listener failed")

    # ---- state --------------------------------------------------------------------------

    def mark_work_available(self) -> None:
        """Called by an operation (inside a batch) that made jobs claimable."""
        self._work_available = True

    @property
    def pending(self) -> int:
        """Submissions waiting for the next batch."""
        return len(self._pending)

    @property
    def stats(self) -> tuple[int, int]:
        """(transactions committed, submissions committed) since start."""
        return self._batches, self._operations

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what was submitted, stop the commit thread."""
        self._closed = True
        deadline = time.monotonic() + timeout
        loop = self._loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            # The loop is alive and will flush what is queued: let it.
            while (self._pending or self._in_flight) and time.monotonic() < deadline:
                time.sleep(0.005)
        if not self._connection_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise StoreError("state store writer did not stop in time")
        try:
            leftovers, self._pending = self._pending, []
            if leftovers:
                self._run_blocking(leftovers)
        finally:
            self._connection_lock.release()
        self._commits.put(None)
        self._thread.join(max(deadline - time.monotonic(), 0.1))
        if self._thread.is_alive():
            raise StoreError("state store writer did not stop in time")


def _single(handler: BatchHandler[Any, Any], item: Any) -> Callable[[sqlite3.Connection], Any]:
    def operation(connection: sqlite3.Connection) -> Any:
        return handler(connection, [item])[0]

    return operation


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _resolve_here(outcomes: list[_Outcome]) -> None:
    """Resolve futures; the caller runs on their event loop (or they are blocking calls)."""
    for outcome in outcomes:
        future = outcome.submission.future
        if future.done():  # the caller gave up (cancelled); the write itself stands
            continue
        if outcome.error is None:
            future.set_result(outcome.value)
        else:
            future.set_exception(outcome.error)


def _resolve_anywhere(outcomes: list[_Outcome]) -> None:
    """Resolve futures from any thread: each event loop gets one callback for its share."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        loop = outcome.submission.loop
        if loop is None or _on_loop(loop):
            _resolve_here([outcome])
        else:
            by_loop.setdefault(loop, []).append(outcome)
    for loop, share in by_loop.items():
        with contextlib.suppress(RuntimeError):  # closed loop: nobody is waiting
            loop.call_soon_threadsafe(_resolve_here, share)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _begin_failure(exc: sqlite3.Error) -> str:
    if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
        return "the state database is locked by another process; try again"
    return f"could not start a state store transaction ({_describe(exc)})"


def _batch_error(exc: BaseException) -> StoreError:
    return StoreError(f"state store transaction aborted ({type(exc).__name__}: {exc})")


def _describe(exc: sqlite3.Error) -> str:
    # SQLite's own messages name tables and constraints, never bound values.
    return f"{type(exc).__name__}: {exc}"


def _as_store_error(exc: Exception) -> BaseException:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"state store write failed ({_describe(exc)})")
        error.__cause__ = exc
        return error
    return exc
