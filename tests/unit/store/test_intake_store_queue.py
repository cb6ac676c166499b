"""Job life cycle in the store: claim, finish, retry, release, requeue after a crash."""

from __future__ import annotations

import asyncio

import pytest

from auto_review.core.jobs import JobOutcome
from auto_review.store.base import DeliveryRef, JobStatus, RequeueResult, StoreError


def _enqueue(store, requests) -> None:
    asyncio.run(store.accept(None, list(requests)))


def test_claim_hands_out_oldest_first_and_counts_the_attempt(open_store, make_request) -> None:
    store = open_store()
    _enqueue(store, [make_request(pr=n) for n in (5, 6, 7)])

    async def scenario():
        return [await store.claim("w") for _ in range(4)]

    first, second, third, none = asyncio.run(scenario())
    assert [j.request.pr_number for j in (first, second, third)] == [5, 6, 7]
    assert first.attempts == 1
    assert first.request == make_request(pr=5)
    assert none is None
    assert store.counts()[JobStatus.RUNNING] == 3
    assert store.queue_depth() == 0


def test_concurrent_claims_never_share_a_job(open_store, make_request) -> None:
    store = open_store()
    _enqueue(store, [make_request(pr=n) for n in range(1, 51)])

    async def scenario():
        return await asyncio.gather(*(store.claim(f"w{n}") for n in range(80)))

    jobs = [job for job in asyncio.run(scenario()) if job is not None]
    assert len(jobs) == 50
    assert len({job.id for job in jobs}) == 50


def test_finish_records_the_outcome_once(open_store, make_request) -> None:
    store = open_store()
    _enqueue(store, [make_request(pr=1), make_request(pr=2), make_request(pr=3)])

    async def scenario():
        done, failed, skipped = [await store.claim("w") for _ in range(3)]
        return (
            await store.finish(done.id, JobOutcome.SUCCEEDED),
            await store.finish(failed.id, JobOutcome.FAILED, "pull request is gone"),
            await store.finish(skipped.id, JobOutcome.SKIPPED, "draft"),
            await store.finish(1, JobOutcome.SUCCEEDED),  # already finished
        )

    assert asyncio.run(scenario()) == (True, True, True, False)
    assert store.job_status(1) == (JobStatus.DONE, "succeeded", "", 1)
    assert store.job_status(2) == (JobStatus.FAILED, "failed", "pull request is gone", 1)
    assert store.job_status(3) == (JobStatus.DONE, "skipped", "draft", 1)
    assert store.counts() == {
        JobStatus.PENDING: 0,
        JobStatus.RUNNING: 0,
        JobStatus.DONE: 2,
        JobStatus.FAILED: 1,
    }


def test_retry_later_waits_for_its_delay(open_store, make_request) -> None:
    now = [5_000.0]
    store = open_store(clock=lambda: now[0])
    _enqueue(store, [make_request(pr=1)])

    async def scenario():
        job = await store.claim("w")
        assert await store.retry_later(job.id, 30.0, "RuntimeError on attempt 1 of 3")
        too_early = await store.claim("w")
        now[0] += 31
        due = await store.claim("w")
        return too_early, due

    too_early, due = asyncio.run(scenario())
    assert too_early is None
    assert due is not None
    assert due.attempts == 2
    assert store.job_status(due.id)[2] == "RuntimeError on attempt 1 of 3"


def test_give_up_fails_the_job(open_store, make_request) -> None:
    store = open_store()
    _enqueue(store, [make_request(pr=1)])

    async def scenario():
        job = await store.claim("w")
        return await store.give_up(job.id, "ConnectError on attempt 3 of 3")

    assert asyncio.run(scenario())
    assert store.job_status(1) == (JobStatus.FAILED, "error", "ConnectError on attempt 3 of 3", 1)


def test_release_gives_the_attempt_back(open_store, make_request) -> None:
    store = open_store()
    _enqueue(store, [make_request(pr=1)])

    async def scenario():
        job = await store.claim("w")
        assert await store.release(job.id)
        return await store.claim("w")

    again = asyncio.run(scenario())
    assert again.attempts == 1


def test_interrupted_jobs_are_requeued_after_a_restart(open_sqlite_store, make_request) -> None:
    crashed = open_sqlite_store()
    _enqueue(crashed, [make_request(pr=1), make_request(pr=2), make_request(pr=3)])

    async def take_two():
        return [await crashed.claim("w"), await crashed.claim("w")]

    running = asyncio.run(take_two())
    crashed.close()  # the rows stay 'running', as after a SIGKILL

    restarted = open_sqlite_store()
    assert restarted.counts()[JobStatus.RUNNING] == 2
    result = restarted.requeue_interrupted(max_interruptions=3)

    async def drain():
        jobs = []
        while (job := await restarted.claim("w")) is not None:
            jobs.append(job)
        return jobs

    assert result == RequeueResult(requeued=2, gave_up=0)
    jobs = asyncio.run(drain())
    assert sorted(j.id for j in jobs) == [1, 2, 3]
    attempts = {j.id: j.attempts for j in jobs}
    assert attempts == {running[0].id: 2, running[1].id: 2, 3: 1}


def test_a_job_that_keeps_dying_with_the_process_is_given_up(
    open_sqlite_store, make_request
) -> None:
    _enqueue(open_sqlite_store(), [make_request(pr=1)])
    for _ in range(2):
        store = open_sqlite_store()
        assert store.requeue_interrupted(max_interruptions=2).gave_up == 0
        assert asyncio.run(store.claim("w")) is not None
        store.close()  # dies while running

    last = open_sqlite_store()
    assert last.requeue_interrupted(max_interruptions=2) == RequeueResult(requeued=0, gave_up=1)
    status, outcome, detail, attempts = last.job_status(1)
    assert (status, outcome, attempts) == (JobStatus.FAILED, "error", 2)
    assert "interrupted" in detail


def test_requeue_is_refused_once_this_store_handed_out_jobs(
    open_sqlite_store, make_request
) -> None:
    store = open_sqlite_store()
    _enqueue(store, [make_request(pr=1)])
    asyncio.run(store.claim("w"))
    with pytest.raises(StoreError, match="before any job is claimed"):
        store.requeue_interrupted(max_interruptions=3)
    assert store.counts()[JobStatus.RUNNING] == 1


def test_finishing_an_unknown_or_pending_job_changes_nothing(open_store, make_request) -> None:
    store = open_store()
    asyncio.run(store.accept(DeliveryRef("forgejo", "x"), [make_request(pr=1)]))
    assert not asyncio.run(store.finish(1, JobOutcome.SUCCEEDED))
    assert not asyncio.run(store.finish(42, JobOutcome.SUCCEEDED))
    assert store.job_status(1)[0] is JobStatus.PENDING
    assert store.job_status(42) is None


def test_long_details_are_clipped(open_store, make_request) -> None:
    store = open_store()
    _enqueue(store, [make_request(pr=1)])

    async def scenario():
        job = await store.claim("w")
        await store.finish(job.id, JobOutcome.FAILED, "x" * 5000)

    asyncio.run(scenario())
    assert len(store.job_status(1)[2]) == 500


def test_job_overview_splits_pending_into_queued_and_waiting_retry(
    open_store, make_request
) -> None:
    from auto_review.store.base import JOB_STATES

    now = [1000.0]
    store = open_store(clock=lambda: now[0])
    empty = store.job_overview()
    assert empty.by_state == dict.fromkeys(JOB_STATES, 0)
    assert empty.oldest_waiting_seconds == 0.0

    async def scenario() -> None:
        await store.accept(None, [make_request(pr=1), make_request(pr=2)])
        now[0] = 1010.0
        first = await store.claim("w")
        assert first is not None
        await store.retry_later(first.id, 60.0, "HostUnavailable on attempt 1")

    asyncio.run(scenario())
    overview = store.job_overview()
    assert overview.by_state == {
        "queued": 1,
        "running": 0,
        "waiting-retry": 1,
        "done": 0,
        "failed": 0,
        "superseded": 0,
    }
    assert overview.oldest_waiting_seconds == 10.0
    assert overview.queue_by_lane["review"] == {"queued": 1, "waiting-retry": 1, "running": 0}
    assert overview.queue_by_lane["chat"] == {"queued": 0, "waiting-retry": 0, "running": 0}
    assert overview.oldest_waiting_by_lane == {"review": 10.0, "chat": 0.0}
