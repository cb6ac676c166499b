"""The worker pool against a real SQLite intake store."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from auto_review.core.errors import TransientError
from auto_review.core.jobs import (
    Job,
    JobKind,
    JobOutcome,
    JobRequest,
    JobRetryPolicy,
    RecordingRunner,
)
from auto_review.core.refs import HostKind, RepoRef
from auto_review.gateway.worker import RunResult, WorkerPool
from auto_review.store.base import JobStatus, RequeueResult
from auto_review.store.sqlite_intake import SqliteIntakeStore

NO_DELAY = JobRetryPolicy(base_delay_seconds=0.0)


class ForgeDown(TransientError):
    pass


def request(pr: int, kind: JobKind = JobKind.REVIEW) -> JobRequest:
    return JobRequest(
        kind=kind,
        repo=RepoRef(HostKind.FORGEJO, "acme", "widget"),
        pr_number=pr,
        head_sha="d" * 40,
        comment_id=None,
        argument="",
        requested_by="alice",
        source="webhook",
    )


@dataclass
class Observed:
    events: list[tuple[JobKind, RunResult, float]] = field(default_factory=list)

    def on_job_finished(self, kind: JobKind, outcome: RunResult, seconds: float) -> None:
        self.events.append((kind, outcome, seconds))

    @property
    def outcomes(self) -> list[RunResult]:
        return [outcome for _, outcome, _ in self.events]


@dataclass
class ScriptedRunner:
    """Runs `script(job)`; records every call."""

    script: Callable[[Job], Awaitable[JobOutcome]]
    calls: list[Job] = field(default_factory=list)

    concluded: list[tuple[Job, str]] = field(default_factory=list)
    conclude_error: Exception | None = None

    async def run(self, job: Job) -> JobOutcome:
        self.calls.append(job)
        return await self.script(job)

    async def conclude(self, job: Job, reason: str) -> None:
        self.concluded.append((job, reason))
        if self.conclude_error is not None:
            raise self.conclude_error


@pytest.fixture
def store(tmp_path: Path):
    opened = SqliteIntakeStore.open(tmp_path / "state")
    yield opened
    opened.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_every_job_runs_once_and_is_marked_done(store) -> None:
    runner = RecordingRunner()
    observer = Observed()

    async def scenario() -> None:
        await store.accept(None, [request(n) for n in range(1, 21)])
        pool = WorkerPool(store, runner, concurrency=4, observer=observer)
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.DONE] == 20)
        await pool.stop()

    asyncio.run(scenario())
    assert sorted(job.request.pr_number for job in runner.jobs) == list(range(1, 21))
    assert observer.outcomes == [RunResult.SUCCEEDED] * 20
    assert all(kind is JobKind.REVIEW and seconds >= 0 for kind, _, seconds in observer.events)


def test_no_more_jobs_run_at_once_than_the_concurrency(store) -> None:
    gate = asyncio.Event()
    running = 0
    peak = 0

    async def hold(job: Job) -> JobOutcome:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return JobOutcome.SUCCEEDED

    runner = ScriptedRunner(hold)

    async def scenario() -> tuple[int, int]:
        await store.accept(None, [request(n) for n in range(1, 11)])
        pool = WorkerPool(store, runner, concurrency=3)
        await pool.start()
        await eventually(lambda: running == 3)
        await asyncio.sleep(0.2)  # room for a fourth job to start, if the bound were broken
        seen = (running, pool.in_flight)
        gate.set()
        await eventually(lambda: store.counts()[JobStatus.DONE] == 10)
        await pool.stop()
        return seen

    assert asyncio.run(scenario()) == (3, 3)
    assert peak == 3
    assert len(runner.calls) == 10


def test_an_unexpected_exception_fails_the_job_at_once_without_leaking_the_message(
    store,
) -> None:
    async def explode(job: Job) -> JobOutcome:
        raise RuntimeError("POST https://bot:hunter2-token@forge.example/api failed")

    runner = ScriptedRunner(explode)
    observer = Observed()

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(store, runner, concurrency=2, retry=NO_DELAY, observer=observer)
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.FAILED] == 1)
        await pool.stop()

    asyncio.run(scenario())
    status, outcome, detail, attempts = store.job_status(1)
    assert (status, outcome, attempts) == (JobStatus.FAILED, "error", 1)
    assert detail == "RuntimeError on attempt 1: not retried"
    assert "hunter2" not in detail
    assert [job.attempts for job in runner.calls] == [1]
    assert observer.outcomes == [RunResult.ERROR]


def due_time(store: SqliteIntakeStore) -> float:
    with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as connection:
        row = connection.execute("SELECT status, not_before FROM jobs WHERE id = 1").fetchone()
    assert row[0] == "pending"
    return float(row[1])


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_transient_failures_retry_until_the_horizon_then_give_up(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    store = SqliteIntakeStore.open(tmp_path / "state", clock=clock)
    policy = JobRetryPolicy(horizon_seconds=100.0, base_delay_seconds=10.0, jitter=0.0)
    finals: list[bool] = []

    async def down(job: Job) -> JobOutcome:
        finals.append(job.final_attempt)
        clock.now += 1.0  # each attempt takes a second
        raise ForgeDown("forge down")

    runner = ScriptedRunner(down)
    observer = Observed()

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(
            store,
            runner,
            concurrency=1,
            retry=policy,
            observer=observer,
            wall_clock=clock,
            idle_poll_seconds=0.01,
        )
        await pool.start()
        seen = 0
        while True:
            await eventually(lambda n=seen: len(runner.calls) > n and pool.in_flight == 0)
            seen = len(runner.calls)
            if store.job_status(1)[0] is JobStatus.FAILED:
                break
            clock.now = due_time(store)  # time passes until the stored next attempt
        await pool.stop()

    try:
        asyncio.run(scenario())
        status, outcome, detail, attempts = store.job_status(1)
    finally:
        store.close()
    assert (status, outcome) == (JobStatus.FAILED, "error")
    assert detail.startswith("ForgeDown on attempt")
    assert "still failing after" in detail
    assert finals[-1] is True and not any(finals[:-1])  # only the last one is final
    assert observer.outcomes[-1] is RunResult.GAVE_UP
    assert set(observer.outcomes[:-1]) == {RunResult.RETRYING}
    assert attempts == len(runner.calls) >= 4  # 10 s, 20 s, 40 s, then capped at the horizon


def test_backoff_has_jitter_and_never_passes_the_horizon() -> None:
    policy = JobRetryPolicy(horizon_seconds=100.0, base_delay_seconds=10.0, jitter=0.5)
    job = Job(id=1, request=request(1), attempts=3, enqueued_at=0.0)
    assert policy.next_delay(job, now=0.0, draw=1.0) == 40.0
    assert policy.next_delay(job, now=0.0, draw=0.0) == 20.0
    assert policy.next_delay(job, now=90.0, draw=1.0) == 10.0  # the final try at the horizon
    assert not policy.is_final(job, 99.9)
    assert policy.is_final(job, 100.0)


def test_a_runner_that_fails_once_succeeds_on_retry(store) -> None:
    async def flaky(job: Job) -> JobOutcome:
        if job.attempts == 1:
            raise ForgeDown("forge down")
        return JobOutcome.SUCCEEDED

    runner = ScriptedRunner(flaky)

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(store, runner, concurrency=1, retry=NO_DELAY)
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.DONE] == 1)
        await pool.stop()

    asyncio.run(scenario())
    assert store.job_status(1) == (
        JobStatus.DONE,
        "succeeded",
        "",
        2,
    )


def test_retries_wait_for_the_backoff(store) -> None:
    async def explode(job: Job) -> JobOutcome:
        raise ForgeDown("no route")

    runner = ScriptedRunner(explode)
    slow = JobRetryPolicy(base_delay_seconds=60.0)

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(store, runner, concurrency=2, retry=slow, idle_poll_seconds=0.05)
        await pool.start()
        await eventually(lambda: len(runner.calls) == 1)
        await asyncio.sleep(0.3)  # several idle polls; the job is not due for a minute
        await pool.stop()

    asyncio.run(scenario())
    assert len(runner.calls) == 1
    assert store.job_status(1)[0] is JobStatus.PENDING


def test_runner_verdicts_failed_and_skipped_are_final(store) -> None:
    async def verdict(job: Job) -> JobOutcome:
        return JobOutcome.FAILED if job.request.pr_number == 1 else JobOutcome.SKIPPED

    runner = ScriptedRunner(verdict)
    observer = Observed()

    async def scenario() -> None:
        await store.accept(None, [request(1), request(2)])
        pool = WorkerPool(store, runner, concurrency=2, retry=NO_DELAY, observer=observer)
        await pool.start()
        await eventually(lambda: store.queue_depth() == 0 and pool.in_flight == 0)
        await asyncio.sleep(0.1)
        await pool.stop()

    asyncio.run(scenario())
    assert len(runner.calls) == 2  # a FAILED verdict is not retried
    assert store.job_status(1)[:2] == (JobStatus.FAILED, "failed")
    assert store.job_status(2)[:2] == (JobStatus.DONE, "skipped")
    assert sorted(observer.outcomes) == sorted([RunResult.FAILED, RunResult.SKIPPED])


def test_a_runner_answering_nonsense_counts_as_an_error(store) -> None:
    async def nonsense(job: Job) -> JobOutcome:
        return "ok"  # type: ignore[return-value]

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(store, ScriptedRunner(nonsense), concurrency=1, retry=NO_DELAY)
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.FAILED] == 1)
        await pool.stop()

    asyncio.run(scenario())
    assert store.job_status(1)[2] == "TypeError on attempt 1: not retried"


def test_an_attempt_over_its_time_limit_is_retried(store) -> None:
    async def slow_once(job: Job) -> JobOutcome:
        if job.attempts == 1:
            await asyncio.Event().wait()  # hangs until cancelled
        return JobOutcome.SUCCEEDED

    runner = ScriptedRunner(slow_once)
    observer = Observed()

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(
            store, runner, concurrency=1, retry=NO_DELAY, observer=observer,
            job_timeout_seconds=0.1,
        )  # fmt: skip
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.DONE] == 1)
        await pool.stop()

    asyncio.run(scenario())
    assert [job.attempts for job in runner.calls] == [1, 2]
    assert observer.outcomes == [RunResult.RETRYING, RunResult.SUCCEEDED]
    assert runner.concluded == []


async def hang_forever(job: Job) -> JobOutcome:
    await asyncio.Event().wait()  # hangs until cancelled
    return JobOutcome.SUCCEEDED


def run_one_job_until_failed(store, runner: ScriptedRunner, **pool_options: Any) -> None:
    """Accept one job, run the pool until the job has failed, stop the pool."""

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(store, runner, concurrency=1, **pool_options)
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.FAILED] == 1)
        await pool.stop()

    asyncio.run(scenario())


def test_a_final_attempt_over_its_time_limit_is_concluded_by_the_runner(store) -> None:
    runner = ScriptedRunner(hang_forever)
    observer = Observed()
    run_one_job_until_failed(
        store, runner, observer=observer,
        retry=JobRetryPolicy(horizon_seconds=0.0), job_timeout_seconds=0.1,
    )  # fmt: skip
    [(job, reason)] = runner.concluded
    assert job.id == 1 and job.final_attempt
    assert reason == "it ran past the time limit of 0.1 s (AR_JOB_TIMEOUT_SECONDS)"
    assert observer.outcomes == [RunResult.GAVE_UP]
    assert store.job_status(1)[2].startswith("JobTimedOut on attempt 1: still failing")


def test_a_job_over_its_time_limit_on_its_third_attempt_ends_within_the_horizon(
    store, caplog
) -> None:
    runner = ScriptedRunner(hang_forever)
    observer = Observed()
    with caplog.at_level(logging.ERROR):
        run_one_job_until_failed(
            store, runner, retry=NO_DELAY, observer=observer, job_timeout_seconds=0.1
        )
    # The 24 h horizon is far away: the attempts over the limit end the job, not the horizon.
    assert [job.attempts for job in runner.calls] == [1, 2, 3]
    assert observer.outcomes == [RunResult.RETRYING, RunResult.RETRYING, RunResult.GAVE_UP]
    [(job, reason)] = runner.concluded
    assert job.attempts == 3 and not job.final_attempt
    assert reason == "it ran past the time limit of 0.1 s (AR_JOB_TIMEOUT_SECONDS)"
    assert store.job_status(1)[2] == (
        "JobTimedOut on attempt 3: over the time limit too often"
    )
    assert "job gave up after too many attempts over the time limit" in caplog.text


def test_other_transient_failures_before_a_timeout_count_as_attempts(store) -> None:
    async def down_then_slow(job: Job) -> JobOutcome:
        if job.attempts < 3:
            raise ForgeDown("the forge is down")
        await asyncio.Event().wait()  # hangs until cancelled
        return JobOutcome.SUCCEEDED

    runner = ScriptedRunner(down_then_slow)
    run_one_job_until_failed(
        store, runner, job_timeout_seconds=0.1,
        retry=JobRetryPolicy(base_delay_seconds=0.0, max_timed_out_attempts=4),
    )  # fmt: skip
    # Two outages, then attempts 3 and 4 over the limit: the fourth attempt ends it.
    assert [job.attempts for job in runner.calls] == [1, 2, 3, 4]
    assert len(runner.concluded) == 1


def test_a_conclusion_that_fails_still_ends_the_job(store, caplog) -> None:
    runner = ScriptedRunner(hang_forever, conclude_error=TransientError("the forge is down"))
    with caplog.at_level(logging.ERROR):
        run_one_job_until_failed(
            store, runner, retry=JobRetryPolicy(horizon_seconds=0.0), job_timeout_seconds=0.1
        )
    assert len(runner.concluded) == 1
    assert "the outcome of a timed-out job could not be posted" in caplog.text


def test_a_timeout_error_of_the_runner_itself_is_not_the_time_limit(store) -> None:
    async def own_timeout(job: Job) -> JobOutcome:
        raise TimeoutError("some library gave up")

    runner = ScriptedRunner(own_timeout)

    async def scenario() -> None:
        await store.accept(None, [request(1)])
        pool = WorkerPool(store, runner, concurrency=1, retry=NO_DELAY, job_timeout_seconds=60)
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.FAILED] == 1)
        await pool.stop()

    asyncio.run(scenario())
    assert store.job_status(1)[2] == "TimeoutError on attempt 1: not retried"
    assert runner.concluded == []


def test_graceful_stop_lets_running_jobs_finish_and_starts_no_new_ones(store) -> None:
    gate = asyncio.Event()

    async def hold(job: Job) -> JobOutcome:
        await gate.wait()
        return JobOutcome.SUCCEEDED

    runner = ScriptedRunner(hold)

    async def scenario() -> None:
        await store.accept(None, [request(1), request(2), request(3)])
        pool = WorkerPool(store, runner, concurrency=1)
        await pool.start()
        await eventually(lambda: len(runner.calls) == 1)
        stopping = asyncio.ensure_future(pool.stop(graceful=True, timeout=10))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waiting for the running job
        gate.set()
        await stopping

    asyncio.run(scenario())
    assert len(runner.calls) == 1
    assert store.job_status(1)[0] is JobStatus.DONE
    assert store.counts()[JobStatus.PENDING] == 2


def test_stop_cancels_what_outlives_the_grace_period_and_requeues_it(store) -> None:
    async def forever(job: Job) -> JobOutcome:
        await asyncio.Event().wait()  # hangs until cancelled
        return JobOutcome.SUCCEEDED

    observer = Observed()

    async def scenario() -> None:
        await store.accept(None, [request(1), request(2)])
        pool = WorkerPool(store, ScriptedRunner(forever), concurrency=2, observer=observer)
        await pool.start()
        await eventually(lambda: pool.in_flight == 2)
        await pool.stop(graceful=True, timeout=0.1)

    asyncio.run(scenario())
    assert store.counts()[JobStatus.PENDING] == 2
    assert store.job_status(1)[3] == 0  # the cancelled attempt was given back
    assert observer.outcomes == [RunResult.CANCELLED, RunResult.CANCELLED]


def test_immediate_stop_cancels_at_once(store) -> None:
    started = asyncio.Event()

    async def forever(job: Job) -> JobOutcome:
        started.set()
        await asyncio.Event().wait()  # hangs until cancelled
        return JobOutcome.SUCCEEDED

    async def scenario() -> float:
        await store.accept(None, [request(1)])
        pool = WorkerPool(store, ScriptedRunner(forever), concurrency=1)
        await pool.start()
        await started.wait()
        loop = asyncio.get_running_loop()
        begun = loop.time()
        await pool.stop(graceful=False)
        return loop.time() - begun

    assert asyncio.run(scenario()) < 5
    assert store.job_status(1)[:2] == (JobStatus.PENDING, None)


def test_new_jobs_wake_idle_workers(store) -> None:
    runner = RecordingRunner()

    async def scenario() -> None:
        # Idle polling every minute: only the store's new-jobs signal can start this job.
        pool = WorkerPool(store, runner, concurrency=2, idle_poll_seconds=60)
        await pool.start()
        await asyncio.sleep(0.1)
        await store.accept(None, [request(1)])
        await eventually(lambda: store.counts()[JobStatus.DONE] == 1, timeout=5)
        await pool.stop()

    asyncio.run(scenario())
    assert len(runner.jobs) == 1


def test_start_requeues_jobs_a_crash_left_running(tmp_path: Path) -> None:
    crashed = SqliteIntakeStore.open(tmp_path / "state")
    asyncio.run(crashed.accept(None, [request(1), request(2)]))
    asyncio.run(crashed.claim("old-worker"))
    crashed.close()

    restarted = SqliteIntakeStore.open(tmp_path / "state")
    runner = RecordingRunner()

    async def scenario() -> RequeueResult:
        pool = WorkerPool(restarted, runner, concurrency=2)
        result = await pool.start()
        await eventually(lambda: restarted.counts()[JobStatus.DONE] == 2)
        await pool.stop()
        return result

    try:
        assert asyncio.run(scenario()) == RequeueResult(requeued=1, gave_up=0)
    finally:
        restarted.close()
    assert sorted((job.id, job.attempts) for job in runner.jobs) == [(1, 2), (2, 1)]


def test_a_broken_observer_does_not_stop_the_pool(store) -> None:
    class Broken:
        def on_job_finished(self, kind: JobKind, outcome: RunResult, seconds: float) -> None:
            raise ValueError("observer bug")

    runner = RecordingRunner()

    async def scenario() -> None:
        await store.accept(None, [request(1), request(2)])
        pool = WorkerPool(store, runner, concurrency=1, observer=Broken())
        await pool.start()
        await eventually(lambda: store.counts()[JobStatus.DONE] == 2)
        await pool.stop()

    asyncio.run(scenario())
    assert len(runner.jobs) == 2


def test_pool_settings_are_validated(store) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        WorkerPool(store, RecordingRunner(), concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        WorkerPool(store, RecordingRunner(), concurrency=1, job_timeout_seconds=0)
    with pytest.raises(ValueError, match="max_interruptions"):
        JobRetryPolicy(max_interruptions=0)
    with pytest.raises(ValueError, match="max_timed_out_attempts"):
        JobRetryPolicy(max_timed_out_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        JobRetryPolicy(jitter=2.0)
