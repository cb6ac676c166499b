"""Delivery and job deduplication, restart survival, atomicity, back-pressure."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from auto_review.core.jobs import JobKind
from auto_review.core.refs import HostKind, RepoRef
from auto_review.store.base import (
    AcceptResult,
    DeliveryRef,
    JobStatus,
    StoreBusy,
    StoreClosed,
    StoreError,
)
from auto_review.store.sqlite_intake import STATE_FILE_NAME


def test_a_delivery_seen_twice_enqueues_once(open_store, make_request) -> None:
    store = open_store()
    delivery = DeliveryRef("forgejo", "d-1")
    jobs = [make_request(pr=1), make_request(pr=2)]

    first = asyncio.run(store.accept(delivery, jobs))
    again = asyncio.run(store.accept(delivery, jobs))

    assert first == AcceptResult(duplicate_delivery=False, new_jobs=2, duplicate_jobs=0)
    assert again == AcceptResult(duplicate_delivery=True, new_jobs=0, duplicate_jobs=0)
    assert store.queue_depth() == 2
    assert store.seen_delivery(delivery)


def test_delivery_ids_are_per_source(open_store, make_request) -> None:
    store = open_store()
    forgejo = asyncio.run(store.accept(DeliveryRef("forgejo", "same-id"), [make_request(pr=1)]))
    github = asyncio.run(
        store.accept(DeliveryRef("github", "same-id"), [make_request(pr=1, host=HostKind.GITHUB)])
    )
    assert not forgejo.duplicate_delivery
    assert not github.duplicate_delivery
    assert github.new_jobs == 1


def test_jobs_are_deduplicated_by_host_repo_pr_head_and_kind(open_store, make_request) -> None:
    store = open_store()

    async def scenario() -> list[AcceptResult]:
        base = make_request(pr=7, sha="b" * 40)
        return [
            await store.accept(DeliveryRef("forgejo", "1"), [base]),
            # a redelivery under a new id (e.g. an "edited" event) with the same head
            await store.accept(DeliveryRef("forgejo", "2"), [base]),
            await store.accept(DeliveryRef("forgejo", "3"), [make_request(pr=7, sha="c" * 40)]),
            await store.accept(
                DeliveryRef("forgejo", "4"),
                [make_request(pr=7, sha="b" * 40, kind=JobKind.RE_REVIEW)],
            ),
            await store.accept(
                DeliveryRef("github", "5"), [make_request(pr=7, sha="b" * 40, host=HostKind.GITHUB)]
            ),
            await store.accept(DeliveryRef("forgejo", "6"), [make_request(pr=8, sha="b" * 40)]),
            await store.accept(
                DeliveryRef("forgejo", "7"), [make_request(pr=7, sha="b" * 40, name="other")]
            ),
        ]

    results = asyncio.run(scenario())
    assert [r.new_jobs for r in results] == [1, 0, 1, 1, 1, 1, 1]
    assert [r.duplicate_jobs for r in results] == [0, 1, 0, 0, 0, 0, 0]
    # The new head c of PR 7 supersedes the queued review of head b (see the coalescing
    # tests); every other job is its own.
    assert [r.superseded_jobs for r in results] == [0, 0, 1, 0, 0, 0, 0]
    assert store.queue_depth() == 5


def test_chat_jobs_are_keyed_by_comment(open_store, make_request) -> None:
    store = open_store()
    repo = RepoRef(HostKind.FORGEJO, "acme", "widget")

    def chat(comment_id: int):
        return make_request(
            sha="", kind=JobKind.CHAT_QUESTION, comment_id=comment_id, argument="why?"
        )

    async def scenario() -> list[AcceptResult]:
        return [
            await store.accept(DeliveryRef("forgejo", "c-1"), [chat(100)]),
            await store.accept(None, [chat(100)]),  # the poller saw the same comment
            await store.accept(None, [chat(101)]),
        ]

    results = asyncio.run(scenario())
    assert [r.new_jobs for r in results] == [1, 0, 1]
    assert store.seen_comment(repo, 100)
    assert not store.seen_comment(repo, 999)
    assert not store.seen_comment(RepoRef(HostKind.GITHUB, "acme", "widget"), 100)


def test_dedup_and_pending_jobs_survive_a_restart(open_store, make_request) -> None:
    first = open_store()
    delivery = DeliveryRef("github", "restart-1")
    asyncio.run(first.accept(delivery, [make_request(pr=3, host=HostKind.GITHUB)]))
    first.close()

    second = open_store()
    again = asyncio.run(second.accept(delivery, [make_request(pr=3, host=HostKind.GITHUB)]))
    redelivered = asyncio.run(
        second.accept(
            DeliveryRef("github", "restart-2"), [make_request(pr=3, host=HostKind.GITHUB)]
        )
    )

    assert again.duplicate_delivery
    assert redelivered.duplicate_jobs == 1
    assert second.queue_depth() == 1
    assert second.counts()[JobStatus.PENDING] == 1


def test_delivery_and_jobs_commit_together_or_not_at_all(
    open_sqlite_store, make_request, state_dir: Path
) -> None:
    store = open_sqlite_store()
    # A real SQLite failure in the middle of an accept: inserting a job for "poison" aborts.
    outside = sqlite3.connect(state_dir / STATE_FILE_NAME)
    outside.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON jobs WHEN NEW.name = 'poison'"
        " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
    )
    outside.commit()
    delivery = DeliveryRef("forgejo", "atomic-1")
    jobs = [make_request(pr=1), make_request(pr=2, name="poison")]

    async def scenario() -> list[AcceptResult | BaseException]:
        # Neighbours in the same group-commit batch must not be affected.
        return await asyncio.gather(
            store.accept(DeliveryRef("forgejo", "neighbour-1"), [make_request(pr=10)]),
            store.accept(delivery, jobs),
            store.accept(DeliveryRef("forgejo", "neighbour-2"), [make_request(pr=11)]),
            return_exceptions=True,
        )

    before, failed, after = asyncio.run(scenario())
    assert isinstance(failed, StoreError)
    assert "poisoned" in str(failed)
    assert before == after == AcceptResult(False, 1, 0)
    assert not store.seen_delivery(delivery)  # the delivery row was rolled back with its jobs
    assert store.queue_depth() == 2

    outside.execute("DROP TRIGGER refuse_poison")
    outside.commit()
    outside.close()
    retried = asyncio.run(store.accept(delivery, jobs))
    assert retried == AcceptResult(duplicate_delivery=False, new_jobs=2, duplicate_jobs=0)


def test_concurrent_accepts_share_commits(open_sqlite_store, make_request) -> None:
    store = open_sqlite_store()

    async def scenario() -> list[AcceptResult]:
        return await asyncio.gather(
            *(
                store.accept(DeliveryRef("forgejo", f"burst-{n}"), [make_request(pr=n + 1)])
                for n in range(400)
            )
        )

    results = asyncio.run(scenario())
    batches, operations = store._writer.stats
    assert all(r.new_jobs == 1 for r in results)
    assert store.queue_depth() == 400
    assert operations == 400
    assert batches < operations  # group commit: several accepts per transaction


def test_a_full_write_queue_answers_busy_and_loses_nothing_it_accepted(
    open_sqlite_store, make_request, state_dir: Path
) -> None:
    store = open_sqlite_store(max_pending=8)
    # Another process holding the write lock stalls the writer, so submissions pile up.
    blocker = sqlite3.connect(state_dir / STATE_FILE_NAME, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def scenario() -> list[AcceptResult | BaseException]:
        tasks = [
            asyncio.ensure_future(
                store.accept(DeliveryRef("forgejo", f"busy-{n}"), [make_request(pr=n + 1)])
            )
            for n in range(40)
        ]
        await asyncio.sleep(0.3)
        blocker.execute("COMMIT")
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    blocker.close()
    busy = [n for n, r in enumerate(results) if isinstance(r, StoreBusy)]
    stored = [n for n, r in enumerate(results) if isinstance(r, AcceptResult)]
    assert busy, "a full queue must refuse work"
    assert len(stored) + len(busy) == 40
    assert "full" in str(results[busy[0]])
    for n in stored:
        assert store.seen_delivery(DeliveryRef("forgejo", f"busy-{n}"))
    for n in busy:
        assert not store.seen_delivery(DeliveryRef("forgejo", f"busy-{n}"))
    assert store.queue_depth() == len(stored)


def test_a_closed_store_refuses_writes(open_store, make_request) -> None:
    store = open_store()
    store.close()
    with pytest.raises(StoreClosed):
        asyncio.run(store.accept(DeliveryRef("forgejo", "late"), [make_request()]))


def test_close_finishes_writes_already_queued(open_store, make_request) -> None:
    store = open_store()

    async def scenario() -> list[AcceptResult]:
        tasks = [
            asyncio.ensure_future(
                store.accept(DeliveryRef("forgejo", f"q-{n}"), [make_request(pr=n + 1)])
            )
            for n in range(50)
        ]
        await asyncio.sleep(0)  # let every task submit
        await asyncio.to_thread(store.close)
        return await asyncio.gather(*tasks)

    results = asyncio.run(scenario())
    assert all(r.new_jobs == 1 for r in results)
    reopened = open_store()
    assert reopened.queue_depth() == 50


def test_old_deliveries_are_pruned_after_retention(open_store, make_request) -> None:
    now = [1_000_000.0]
    store = open_store(
        retention_seconds=60.0,
        housekeeping_interval_seconds=0.05,
        clock=lambda: now[0],
    )
    old = DeliveryRef("forgejo", "old")
    asyncio.run(store.accept(old, [make_request(pr=1)]))
    now[0] += 30
    recent = DeliveryRef("forgejo", "recent")
    asyncio.run(store.accept(recent, [make_request(pr=2)]))
    now[0] += 45  # old is 75 s old, recent 45 s

    async def wait_for_prune() -> None:
        for _ in range(100):
            if not store.seen_delivery(old):
                return
            await asyncio.sleep(0.02)

    asyncio.run(wait_for_prune())
    assert not store.seen_delivery(old)
    assert store.seen_delivery(recent)
    assert store.queue_depth() == 2  # jobs are history, never pruned with deliveries


def test_new_job_listeners_hear_only_about_new_work(open_store, make_request) -> None:
    store = open_store()
    calls: list[int] = []
    store.add_new_jobs_listener(lambda: calls.append(1))
    asyncio.run(store.accept(DeliveryRef("forgejo", "l-1"), [make_request(pr=1)]))
    asyncio.run(store.accept(DeliveryRef("forgejo", "l-1"), [make_request(pr=1)]))
    asyncio.run(store.accept(DeliveryRef("forgejo", "l-2"), [make_request(pr=1)]))
    assert calls == [1]


def test_delivery_refs_are_validated() -> None:
    with pytest.raises(ValueError, match="source"):
        DeliveryRef("gitlab", "x")
    with pytest.raises(ValueError, match="delivery id"):
        DeliveryRef("github", "")
    with pytest.raises(ValueError, match="delivery id"):
        DeliveryRef("github", "x" * 201)


def test_duplicates_inside_one_batch_are_decided_in_order(open_sqlite_store, make_request) -> None:
    store = open_sqlite_store()
    first, second = make_request(pr=1), make_request(pr=2)

    async def scenario() -> list[AcceptResult]:
        # One loop iteration: all of these land in the same transaction.
        return await asyncio.gather(
            store.accept(DeliveryRef("forgejo", "d1"), [first]),
            store.accept(DeliveryRef("forgejo", "d1"), [first]),  # same delivery again
            store.accept(DeliveryRef("forgejo", "d2"), [first]),  # same job, new delivery
            store.accept(DeliveryRef("forgejo", "d3"), [second, second]),  # twice in one accept
        )

    results = asyncio.run(scenario())
    assert results == [
        AcceptResult(False, 1, 0),
        AcceptResult(True, 0, 0),
        AcceptResult(False, 0, 1),
        AcceptResult(False, 1, 1),
    ]
    assert store._writer.stats == (1, 4)
    assert store.queue_depth() == 2


def test_large_batches_span_several_statements(open_store, make_request) -> None:
    store = open_store()
    asyncio.run(store.accept(None, [make_request(pr=n) for n in range(1, 301, 2)]))  # odd PRs

    async def scenario() -> list[AcceptResult]:
        return await asyncio.gather(
            *(
                store.accept(DeliveryRef("github", f"big-{n}"), [make_request(pr=n)])
                for n in range(1, 601)
            )
        )

    results = asyncio.run(scenario())
    assert [r.new_jobs for r in results[:300]] == [0, 1] * 150
    assert all(r.new_jobs == 1 for r in results[300:])
    assert store.queue_depth() == 600
    assert all(store.seen_delivery(DeliveryRef("github", f"big-{n}")) for n in (1, 250, 251, 600))
