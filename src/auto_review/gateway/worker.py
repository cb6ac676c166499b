"""The worker pool: a fixed number of asyncio workers take jobs from the queue and run them.

Each worker claims one job at a time, so at most `concurrency` jobs run at once. What a
runner raises decides the job's fate (`core.errors`): a transient failure (forge or LLM
unavailable, a git timeout) is retried with exponential backoff and jitter until the retry
horizon, the next attempt time stored with the job so it survives restarts; anything else
(a permanent failure the runner did not turn into an outcome, or a bug) fails the job at
once. An attempt past the time limit is stopped and counts as transient (`JobTimedOut`);
when that was the final attempt, the runner's `conclude` leaves the visible end (an
`error` status, a chat reply) before the job fails, so no head stays `pending`. Details
and logs name only the exception type (exception messages may carry URLs or tokens).
Stopping lets running jobs finish (graceful) or cancels them; a cancelled job is released
back to the queue without spending an attempt.

Outcomes and durations go to a `WorkerObserver` (the gateway's metrics adapter), so this
module does not depend on the metrics registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Protocol

from auto_review.core.errors import is_transient
from auto_review.core.jobs import (
    Job,
    JobKind,
    JobOutcome,
    JobRetryPolicy,
    JobTimedOut,
    ReviewRunner,
)
from auto_review.store.base import JobQueue, RequeueResult, StoreClosed, StoreError

log = logging.getLogger(__name__)

# How long the runner may take to leave a timed-out job's final status or reply.
CONCLUDE_TIMEOUT_SECONDS = 60.0


class RunResult(StrEnum):
    """How one run of a job ended (the `outcome` label of the jobs metric)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    RETRYING = "retrying"  # a transient failure; the job is queued again after a delay
    GAVE_UP = "gave-up"  # a transient failure past the retry horizon; the job failed
    ERROR = "error"  # the runner raised something not transient (a bug): failed, no retry
    CANCELLED = "cancelled"  # stop() cancelled the run; the job went back to the queue


class WorkerObserver(Protocol):
    def on_job_finished(self, kind: JobKind, outcome: RunResult, seconds: float) -> None: ...


class WorkerPool:
    def __init__(
        self,
        store: JobQueue,
        runner: ReviewRunner,
        *,
        concurrency: int,
        retry: JobRetryPolicy | None = None,
        observer: WorkerObserver | None = None,
        job_timeout_seconds: float | None = 900.0,
        idle_poll_seconds: float = 1.0,
        name: str = "worker",
        wall_clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if concurrency < 1:
            raise ValueError("worker concurrency must be at least 1")
        if job_timeout_seconds is not None and job_timeout_seconds <= 0:
            raise ValueError("job timeout must be positive (or None for no timeout)")
        self._store = store
        self._runner = runner
        self._concurrency = concurrency
        self._retry = retry or JobRetryPolicy()
        self._observer = observer
        self._job_timeout = job_timeout_seconds
        self._idle_poll = idle_poll_seconds
        self._name = name
        self._wall_clock = wall_clock  # the store's clock: job times are unix seconds
        self._draw = draw  # jitter
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeups: list[asyncio.Event] = []
        self._stopping = False
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Jobs being run right now (never more than the concurrency)."""
        return self._in_flight

    @property
    def concurrency(self) -> int:
        return self._concurrency

    async def start(self) -> RequeueResult:
        """Requeue jobs a previous process left running, then start the workers."""
        if self._tasks:
            raise RuntimeError("worker pool already started")
        requeued = await asyncio.to_thread(
            self._store.requeue_interrupted, self._retry.max_interruptions
        )
        if requeued.requeued or requeued.gave_up:
            log.warning(
                "jobs interrupted by the previous shutdown",
                extra={"requeued": requeued.requeued, "gave_up": requeued.gave_up},
            )
        loop = asyncio.get_running_loop()
        self._wakeups = [asyncio.Event() for _ in range(self._concurrency)]

        def wake_all() -> None:  # may run on another thread (a blocking store call)
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._wake_all)

        self._store.add_new_jobs_listener(wake_all)
        self._tasks = [
            asyncio.create_task(self._work(f"{self._name}-{index}", wakeup))
            for index, wakeup in enumerate(self._wakeups)
        ]
        return requeued

    async def stop(self, graceful: bool = True, timeout: float = 30.0) -> None:
        """Stop claiming. Graceful: running jobs get `timeout` seconds to finish, then they
        are cancelled (and released back to the queue)."""
        self._stopping = True
        self._wake_all()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        if graceful:
            _, still_running = await asyncio.wait(tasks, timeout=timeout)
        else:
            still_running = set(tasks)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _wake_all(self) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    async def _work(self, worker: str, wakeup: asyncio.Event) -> None:
        while not self._stopping:
            wakeup.clear()  # before claiming, so a commit during the claim is not missed
            try:
                job = await self._claim(worker)
            except StoreClosed:
                return
            except StoreError:
                log.exception("could not claim a job", extra={"worker": worker})
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._idle_poll)
                continue
            await self._run_one(job, worker)

    async def _claim(self, worker: str) -> Job | None:
        claim = asyncio.ensure_future(self._store.claim(worker))
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            # The claim may commit anyway: hand such a job straight back to the queue.
            with contextlib.suppress(Exception):
                job = await claim
                if job is not None:
                    await self._store.release(job.id)
            raise

    async def _run_one(self, job: Job, worker: str) -> None:
        started = time.monotonic()
        job = dataclasses.replace(
            job, final_attempt=self._retry.is_final(job, self._wall_clock())
        )
        fields = {
            "job_id": job.id,
            "kind": str(job.request.kind),
            "repo": job.request.repo.full_name,
            "pr": job.request.pr_number,
            "attempt": job.attempts,
            "worker": worker,
        }
        self._in_flight += 1
        try:
            try:
                outcome = await self._call_runner(job)
            except asyncio.CancelledError:
                await self._bookkeep(self._store.release(job.id), fields)
                self._observe(job, RunResult.CANCELLED, started)
                raise
            except Exception as exc:
                result = await self._after_error(job, exc, fields)
                self._observe(job, result, started)
                return
            await self._bookkeep(self._store.finish(job.id, outcome), fields)
            log.info("job finished", extra={**fields, "outcome": str(outcome)})
            self._observe(job, RunResult(str(outcome)), started)
        finally:
            self._in_flight -= 1

    async def _call_runner(self, job: Job) -> JobOutcome:
        if self._job_timeout is None:
            outcome = await self._runner.run(job)
        else:
            try:
                async with asyncio.timeout(self._job_timeout) as limit:
                    outcome = await self._runner.run(job)
            except TimeoutError:
                if not limit.expired():
                    raise  # the runner's own TimeoutError, not the job's limit
                raise JobTimedOut(self.time_limit_reason()) from None
        if not isinstance(outcome, JobOutcome):
            raise TypeError("the review runner returned something other than a JobOutcome")
        return outcome

    async def _after_error(self, job: Job, exc: Exception, fields: dict[str, object]) -> RunResult:
        # Only the type: exception messages from HTTP clients can contain URLs and tokens.
        error = type(exc).__name__
        if not is_transient(exc):
            detail = f"{error} on attempt {job.attempts}: not retried"
            await self._bookkeep(self._store.give_up(job.id, detail), fields)
            log.error(
                "job failed with a permanent error, not retried",
                extra={**fields, "error_type": error, "where": _where(exc)},
            )
            return RunResult.ERROR
        timed_out = isinstance(exc, JobTimedOut)
        too_slow = timed_out and self._retry.ends_after_timeout(job)
        if not job.final_attempt and not too_slow:
            delay = self._retry.next_delay(job, self._wall_clock(), self._draw())
            detail = f"{error} on attempt {job.attempts}: waiting to retry"
            await self._bookkeep(self._store.retry_later(job.id, delay, detail), fields)
            log.warning(
                "job met a transient failure, will retry",
                extra={**fields, "error_type": error, "delay": round(delay, 3)},
            )
            return RunResult.RETRYING
        if too_slow and not job.final_attempt:
            detail = f"{error} on attempt {job.attempts}: over the time limit too often"
            message = "job gave up after too many attempts over the time limit"
        else:
            hours = self._retry.horizon_seconds / 3600
            detail = f"{error} on attempt {job.attempts}: still failing after {hours:g} h"
            message = "job gave up at its retry horizon"
        if timed_out:
            await self._conclude(job, fields)
        await self._bookkeep(self._store.give_up(job.id, detail), fields)
        log.error(message, extra={**fields, "error_type": error})
        return RunResult.GAVE_UP

    def time_limit_reason(self) -> str:
        return f"it ran past the time limit of {self._job_timeout:g} s (AR_JOB_TIMEOUT_SECONDS)"

    async def _conclude(self, job: Job, fields: dict[str, object]) -> None:
        """The final attempt was stopped at its time limit: have the runner leave the
        outcome on the forge. If even that fails, the job still ends (logged)."""
        try:
            async with asyncio.timeout(CONCLUDE_TIMEOUT_SECONDS):
                await self._runner.conclude(job, self.time_limit_reason())
        except Exception as exc:
            log.error(
                "the outcome of a timed-out job could not be posted",
                extra={**fields, "error_type": type(exc).__name__},
            )

    async def _bookkeep(self, update: Awaitable[bool], fields: dict[str, object]) -> None:
        # Shielded: a cancelled worker must still record what happened to its job. If the
        # store refuses, the job stays 'running' and the next start requeues it.
        try:
            await asyncio.shield(update)
        except StoreError:
            log.exception("could not record a job state change", extra=fields)

    def _observe(self, job: Job, result: RunResult, started: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer.on_job_finished(job.request.kind, result, time.monotonic() - started)
        except Exception:
            log.exception("job observer failed", extra={"job_id": job.id})


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame that raised: where a bug is, without the
    message (which may quote a URL or a token)."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
