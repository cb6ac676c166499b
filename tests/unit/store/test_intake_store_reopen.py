"""A reopened PR's review request is new unless its head's earlier job is queued, running or
reviewed; the earlier job keeps its row under a renamed key."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from auto_review.core.jobs import JobOutcome, JobRequest
from auto_review.store.base import AcceptResult, DeliveryRef
from auto_review.store.sqlite_intake import SqliteIntakeStore

NEW = AcceptResult(duplicate_delivery=False, new_jobs=1, duplicate_jobs=0)
DUPLICATE = AcceptResult(duplicate_delivery=False, new_jobs=0, duplicate_jobs=1)


def reopened(request: JobRequest) -> JobRequest:
    return dataclasses.replace(request, redo_unless_reviewed=True)


def finish_first(store: SqliteIntakeStore, how: str) -> None:
    async def go() -> None:
        job = await store.claim("w")
        assert job is not None
        if how == "running":
            return
        if how == "gave-up":
            await store.give_up(job.id, "LlmInvalidAnswer on attempt 1: not retried")
        else:
            await store.finish(job.id, JobOutcome(how))

    asyncio.run(go())


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        ("gave-up", NEW),  # an error status, no review
        ("failed", NEW),  # the runner's own FAILED outcome (after an error status)
        ("skipped", NEW),  # e.g. the PR was closed when the job ran
        ("succeeded", DUPLICATE),
        ("running", DUPLICATE),
        ("pending", DUPLICATE),
    ],
)
def test_a_reopen_is_new_only_when_the_head_was_not_reviewed(
    open_store, make_request, earlier: str, expected: AcceptResult
) -> None:
    store = open_store()
    request = make_request(pr=3, sha="d" * 40)
    asyncio.run(store.accept(DeliveryRef("forgejo", "opened"), [request]))
    if earlier != "pending":
        finish_first(store, earlier)
    result = asyncio.run(store.accept(DeliveryRef("forgejo", "reopened"), [reopened(request)]))
    assert result == expected
    jobs = store.list_jobs()
    assert len(jobs) == (2 if expected == NEW else 1)


def test_without_the_reopen_mark_a_failed_head_stays_a_duplicate(open_store, make_request) -> None:
    store = open_store()
    request = make_request(pr=3, sha="d" * 40)
    asyncio.run(store.accept(DeliveryRef("forgejo", "opened"), [request]))
    finish_first(store, "gave-up")
    again = asyncio.run(store.accept(DeliveryRef("forgejo", "synchronized"), [request]))
    assert again == DUPLICATE


def test_a_redelivered_reopen_does_not_release_the_new_job(open_store, make_request) -> None:
    store = open_store()
    request = make_request(pr=3, sha="d" * 40)
    asyncio.run(store.accept(DeliveryRef("forgejo", "opened"), [request]))
    finish_first(store, "gave-up")
    delivery = DeliveryRef("forgejo", "reopened")
    assert asyncio.run(store.accept(delivery, [reopened(request)])) == NEW
    finish_first(store, "gave-up")  # the second job failed too
    again = asyncio.run(store.accept(delivery, [reopened(request)]))  # the same delivery
    assert again.duplicate_delivery and again.new_jobs == 0
    assert asyncio.run(store.claim("w")) is None  # nothing was released or queued
