"""What only the PostgreSQL store has, on a real server: leases instead of restart requeue,
several stores (replicas) on one database, schema migrations under an advisory lock, a
bounded pool with statement timeouts, and errors that never show the password."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from tests.support.ports import closed_port
from tests.support.waiting import wait_until
from tests.unit.store.conftest import pg_connection

from auto_review.core.jobs import JobOutcome
from auto_review.core.secrets import Secret
from auto_review.store.base import (
    DeliveryRef,
    JobStatus,
    RequeueResult,
    SchemaTooNew,
    StoreBusy,
    StoreError,
)
from auto_review.store.pg_connect import DatabaseUnavailable
from auto_review.store.pg_intake import PostgresIntakeStore
from auto_review.store.pg_schema import LATEST_VERSION, MIGRATIONS

HEADS = [f"{n:x}" * 40 for n in range(1, 10)]


def _sql(server: Any, database: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.url(database), autocommit=True) as connection:
        return connection.execute(query, params).fetchall()  # type: ignore[arg-type]


def _claim_all(store: PostgresIntakeStore, worker: str = "w") -> list[Any]:
    async def scenario() -> list[Any]:
        claimed = []
        while (job := await store.claim(worker)) is not None:
            claimed.append(job)
        return claimed

    return asyncio.run(scenario())


# ---- leases --------------------------------------------------------------------------------


def test_a_dead_replicas_job_returns_to_the_queue_when_its_lease_expires(
    open_pg_store, make_request
) -> None:
    now = [10_000.0]
    dead = open_pg_store(clock=lambda: now[0], lease_seconds=60.0)
    living = open_pg_store(clock=lambda: now[0], lease_seconds=60.0)
    asyncio.run(dead.accept(None, [make_request(pr=1)]))
    [job] = _claim_all(dead)
    dead.close()  # no more renewals: as if the process had been killed
    now[0] += 59.0
    assert _claim_all(living) == []  # the lease still runs: nobody takes the job
    now[0] += 2.0
    [again] = _claim_all(living)
    assert again.id == job.id
    assert again.attempts == 2
    assert living.job_status(job.id)[2] == "interrupted: its worker stopped renewing the lease"
    assert asyncio.run(living.finish(again.id, JobOutcome.SUCCEEDED))
    assert living.job_status(job.id)[:2] == (JobStatus.DONE, "succeeded")


def test_a_live_worker_renews_its_lease(
    open_pg_store, make_request, postgres_server, pg_database
) -> None:
    holder = open_pg_store(lease_seconds=3.0)
    other = open_pg_store(lease_seconds=3.0)
    asyncio.run(holder.accept(None, [make_request(pr=1)]))
    [job] = _claim_all(holder)
    [(first_lease,)] = _sql(
        postgres_server, pg_database, "SELECT locked_until FROM jobs WHERE id = %s", job.id
    )
    # Renewed twice: the lease now ends well after the first one would have.
    wait_until(
        lambda: (
            _sql(
                postgres_server, pg_database, "SELECT locked_until FROM jobs WHERE id = %s", job.id
            )[0][0]
            > first_lease + 1.5
        ),
        timeout=30,
        what="the lease renewals",
    )
    assert _claim_all(other) == []
    assert holder.job_status(job.id)[0] is JobStatus.RUNNING
    assert asyncio.run(holder.finish(job.id, JobOutcome.SUCCEEDED))


def test_a_worker_that_lost_its_lease_changes_nothing(open_pg_store, make_request) -> None:
    now = [10_000.0]
    slow = open_pg_store(clock=lambda: now[0], lease_seconds=30.0)
    fast = open_pg_store(clock=lambda: now[0], lease_seconds=30.0)
    asyncio.run(slow.accept(None, [make_request(pr=1)]))
    [job] = _claim_all(slow)
    slow._stop.set()  # its renewals stop (the database was out of reach, say)
    slow._thread.join()
    now[0] += 31.0
    [taken] = _claim_all(fast)

    async def late() -> tuple[bool, bool, bool, bool]:
        return (
            await slow.finish(job.id, JobOutcome.SUCCEEDED),
            await slow.retry_later(job.id, 0.0, "late"),
            await slow.release(job.id),
            await slow.give_up(job.id, "late"),
        )

    assert asyncio.run(late()) == (False, False, False, False)
    assert fast.job_status(taken.id)[0] is JobStatus.RUNNING
    assert asyncio.run(fast.finish(taken.id, JobOutcome.SKIPPED, "moved on"))
    assert fast.job_status(job.id)[:3] == (JobStatus.DONE, "skipped", "moved on")


def test_a_job_whose_lease_keeps_expiring_is_given_up(open_pg_store, make_request) -> None:
    now = [10_000.0]
    asyncio.run(open_pg_store(clock=lambda: now[0]).accept(None, [make_request(pr=1)]))
    for _ in range(2):
        store = open_pg_store(clock=lambda: now[0], lease_seconds=10.0)
        assert len(_claim_all(store)) == 1
        store.close()
        now[0] += 11.0
    last = open_pg_store(clock=lambda: now[0])
    assert last.requeue_interrupted(max_interruptions=2) == RequeueResult(requeued=0, gave_up=1)
    status, outcome, detail, attempts = last.job_status(1)
    assert (status, outcome, attempts) == (JobStatus.FAILED, "error", 2)
    assert detail.startswith("interrupted")


def test_requeue_leaves_live_leases_alone_and_may_run_any_time(open_pg_store, make_request) -> None:
    now = [10_000.0]
    store = open_pg_store(clock=lambda: now[0], lease_seconds=60.0)
    asyncio.run(store.accept(None, [make_request(pr=1), make_request(pr=2)]))
    first, _ = _claim_all(store)
    other = open_pg_store(clock=lambda: now[0])
    assert other.requeue_interrupted() == RequeueResult(requeued=0, gave_up=0)
    assert store.counts()[JobStatus.RUNNING] == 2
    assert asyncio.run(store.finish(first.id, JobOutcome.SUCCEEDED))


def test_an_expired_review_behind_a_newer_head_is_superseded(open_pg_store, make_request) -> None:
    now = [10_000.0]
    store = open_pg_store(clock=lambda: now[0], lease_seconds=10.0)
    asyncio.run(store.accept(None, [make_request(pr=7, sha=HEADS[0])]))
    _claim_all(store)
    asyncio.run(store.accept(None, [make_request(pr=7, sha=HEADS[1])]))
    store.close()
    now[0] += 11.0
    other = open_pg_store(clock=lambda: now[0])
    assert other.requeue_interrupted().superseded == 1
    assert [j.request.head_sha for j in _claim_all(other)] == [HEADS[1]]


# ---- replicas on one database ------------------------------------------------------------


def test_two_replicas_never_claim_the_same_job(open_pg_store, make_request) -> None:
    first, second = open_pg_store(), open_pg_store()
    asyncio.run(first.accept(None, [make_request(pr=n) for n in range(1, 61)]))

    async def scenario() -> list[Any]:
        claims = [store.claim(f"w{n}") for n in range(40) for store in (first, second)]
        return [job for job in await asyncio.gather(*claims) if job is not None]

    jobs = asyncio.run(scenario())
    jobs += _claim_all(first) + _claim_all(second)
    assert sorted(job.id for job in jobs) == list(range(1, 61))


def test_duplicate_deliveries_sent_to_two_replicas_are_accepted_once(
    open_pg_store, make_request
) -> None:
    first, second = open_pg_store(), open_pg_store()

    async def scenario() -> list[Any]:
        calls = []
        for n in range(40):
            delivery, job = DeliveryRef("forgejo", f"d-{n}"), make_request(pr=n + 1)
            calls += [first.accept(delivery, [job]), second.accept(delivery, [job])]
        return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    assert sum(result.new_jobs for result in results) == 40
    assert sum(result.duplicate_delivery for result in results) == 40
    assert first.queue_depth() == 40


def test_heads_accepted_at_once_by_two_replicas_leave_one_queued(
    open_pg_store, make_request
) -> None:
    first, second = open_pg_store(), open_pg_store()

    async def scenario() -> None:
        await asyncio.gather(
            *(
                (first if n % 2 else second).accept(None, [make_request(pr=3, sha=head)])
                for n, head in enumerate(HEADS)
            )
        )

    asyncio.run(scenario())
    queued = first.list_jobs("queued")
    assert len(queued) == 1
    superseded = first.list_jobs("superseded")
    assert len(superseded) == len(HEADS) - 1
    newest = max(job.id for job in first.list_jobs())
    assert queued[0].id == newest
    assert {job.superseded_by for job in superseded} <= {job.id for job in first.list_jobs()}


# ---- schema ----------------------------------------------------------------------------


def test_migrations_run_once_even_when_replicas_start_together(
    postgres_server, pg_database
) -> None:
    stores: list[PostgresIntakeStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(PostgresIntakeStore(pg_connection(postgres_server, pg_database)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        rows = _sql(postgres_server, pg_database, "SELECT version, name FROM schema_migrations")
        assert rows == [(m.version, m.name) for m in MIGRATIONS]
        assert all(store.schema_version() == LATEST_VERSION for store in stores)
    finally:
        for store in stores:
            store.close()


def test_a_database_from_a_newer_release_is_refused(
    open_pg_store, postgres_server, pg_database
) -> None:
    open_pg_store().close()
    _sql(
        postgres_server,
        pg_database,
        "INSERT INTO schema_migrations VALUES (%s, 'future', 0) RETURNING version",
        LATEST_VERSION + 1,
    )
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST_VERSION + 1}"):
        open_pg_store()


# ---- connections ---------------------------------------------------------------------------


def test_the_pool_is_bounded_and_every_connection_has_a_statement_timeout(
    postgres_server, pg_database, make_request
) -> None:
    connection = pg_connection(
        postgres_server,
        pg_database,
        pool_size=2,
        statement_timeout_seconds=7.0,
        application_name="ar-pool-test",
    )
    store = PostgresIntakeStore(connection)
    try:

        async def burst() -> None:
            await asyncio.gather(
                *(
                    store.accept(DeliveryRef("github", f"p-{n}"), [make_request(pr=n + 1)])
                    for n in range(60)
                )
            )

        asyncio.run(burst())
        [(count,)] = _sql(
            postgres_server,
            pg_database,
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'ar-pool-test'",
        )
        # The pool opens connections as the burst needs them, up to its size: after 60
        # concurrent accepts one or two are open, never a third (an unbounded pool would
        # have opened one per waiting accept).
        assert count <= 2, f"{count} connections for a pool of 2"
        assert count >= 1
        with store._pool.connection() as pooled:
            assert pooled.execute("SHOW statement_timeout").fetchone() == ("7s",)
            assert pooled.execute("SHOW lock_timeout").fetchone() == ("7s",)
        assert store.queue_depth() == 60
    finally:
        store.close()


def test_an_exhausted_pool_answers_busy(postgres_server, pg_database, make_request) -> None:
    store = PostgresIntakeStore(
        pg_connection(postgres_server, pg_database, pool_size=2, pool_wait_seconds=0.2)
    )
    held = [store._pool.getconn(), store._pool.getconn()]
    try:
        with pytest.raises(StoreBusy, match="AR_DATABASE_POOL_SIZE"):
            asyncio.run(store.accept(DeliveryRef("forgejo", "busy"), [make_request()]))
    finally:
        for connection in held:
            store._pool.putconn(connection)
    assert not store.seen_delivery(DeliveryRef("forgejo", "busy"))
    store.close()


def test_a_long_statement_is_cancelled(postgres_server, pg_database) -> None:
    store = PostgresIntakeStore(
        pg_connection(postgres_server, pg_database, statement_timeout_seconds=1.0)
    )
    try:
        with pytest.raises(StoreError, match="QueryCanceled"):
            store._run(lambda connection: connection.execute("SELECT pg_sleep(20)"))
    finally:
        store.close()


CANARY = "canary-Pw-5f1d2e9c7b"


@pytest.mark.parametrize(
    "where",
    ["wrong password", "unreachable host"],
)
def test_connection_failures_are_clear_and_never_show_the_password(
    postgres_server, pg_database, where: str
) -> None:
    overrides: dict[str, Any] = {"password": Secret(CANARY)}
    if where == "unreachable host":
        overrides["port"] = closed_port()
    with pytest.raises(DatabaseUnavailable) as caught:
        PostgresIntakeStore(pg_connection(postgres_server, pg_database, **overrides))
    text = str(caught.value)
    assert CANARY not in text
    assert CANARY not in repr(caught.value)
    assert (caught.value.__cause__ is None and caught.value.__context__ is None) or (
        CANARY not in str(caught.value.__context__)
    )
    assert f"postgres@127.0.0.1:{overrides.get('port', postgres_server.port)}" in text
    expected = "password authentication failed" if where == "wrong password" else "refused"
    assert expected in text


def test_another_replicas_accept_wakes_this_ones_workers(open_pg_store, make_request) -> None:
    sender, receiver = open_pg_store(), open_pg_store()
    woken = threading.Event()
    receiver.add_new_jobs_listener(woken.set)
    assert receiver._jobs_listener.listening.wait(30)
    asyncio.run(sender.accept(DeliveryRef("forgejo", "wake"), [make_request(pr=1)]))
    assert woken.wait(30)  # the NOTIFY of the sender's commit, not the receiver's polling
    woken.clear()
    # A duplicate commits nothing new: no wake-up is sent for it; a new job is.
    asyncio.run(sender.accept(DeliveryRef("forgejo", "wake"), [make_request(pr=1)]))
    asyncio.run(sender.accept(DeliveryRef("forgejo", "wake-2"), [make_request(pr=2)]))
    assert woken.wait(30)
