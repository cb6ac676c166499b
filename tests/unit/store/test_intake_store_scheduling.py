"""Scheduling in the intake store, on real SQLite: coalescing per pull request at accept
time, chat before reviews, fair claims across repositories, retention."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from auto_review.core.jobs import JobKind, JobOutcome
from auto_review.store import sqlite_intake
from auto_review.store.base import DeliveryRef, JobStatus, StoreError
from auto_review.store.schema import MIGRATIONS
from auto_review.store.sqlite_intake import STATE_FILE_NAME, SqliteIntakeStore

HEADS = [f"{n:x}" * 40 for n in range(1, 6)]


def _accept(store: SqliteIntakeStore, *requests, delivery: DeliveryRef | None = None):
    return asyncio.run(store.accept(delivery, list(requests)))


def _claim_all(store: SqliteIntakeStore) -> list:
    async def scenario():
        claimed = []
        while (job := await store.claim("w")) is not None:
            claimed.append(job)
        return claimed

    return asyncio.run(scenario())


def _rows(store: SqliteIntakeStore) -> dict[str, tuple]:
    """head -> (status, outcome, superseded_by) of every job."""
    with sqlite3.connect(store.path) as connection:
        rows = connection.execute(
            "SELECT head_sha, status, outcome, superseded_by FROM jobs ORDER BY id"
        ).fetchall()
    return {head: (status, outcome, by) for head, status, outcome, by in rows}


# ---- coalescing --------------------------------------------------------------------------


def test_a_newer_head_supersedes_the_queued_review_of_an_older_one(
    open_store, make_request
) -> None:
    store = open_store()
    results = [_accept(store, make_request(pr=1, sha=head)) for head in HEADS[:3]]
    assert [r.superseded_jobs for r in results] == [0, 1, 1]
    assert store.queue_depth() == 1
    listed = {job.head_sha: job for job in store.list_jobs()}
    newest = listed[HEADS[2]]
    assert newest.state == "queued"
    for head, by in ((HEADS[0], listed[HEADS[1]]), (HEADS[1], newest)):
        # Each by the head that came after it.
        assert listed[head].state == "superseded"
        assert listed[head].superseded_by == by.id
        assert listed[head].detail == f"superseded by job {by.id} (head {by.head_sha[:12]})"
    assert [job.head_sha for job in store.list_jobs("superseded")] == [HEADS[1], HEADS[0]]
    assert store.job_overview().by_state["superseded"] == 2
    # Only the newest head is handed out.
    [claimed] = _claim_all(store)
    assert claimed.request.head_sha == HEADS[2]


def test_coalescing_keeps_pull_requests_repositories_and_chat_apart(
    open_store, make_request
) -> None:
    store = open_store()
    _accept(store, make_request(pr=1, sha=HEADS[0]))
    _accept(store, make_request(pr=2, sha=HEADS[0]))
    _accept(store, make_request(pr=1, sha=HEADS[0], name="other"))
    _accept(store, make_request(pr=1, sha="", comment_id=9, kind=JobKind.RE_REVIEW))
    _accept(store, make_request(pr=1, sha="", comment_id=10, kind=JobKind.CHAT_QUESTION))
    result = _accept(store, make_request(pr=1, sha=HEADS[1]))
    assert result.superseded_jobs == 1
    assert store.queue_depth() == 5  # PR 1's new head, PR 2, the other repo's PR 1, 2 chat
    assert {job.head_sha for job in store.list_jobs("superseded")} == {HEADS[0]}


def test_heads_accepted_in_one_batch_leave_only_the_last_queued(
    open_sqlite_store, make_request
) -> None:
    store = open_sqlite_store()
    _accept(store, make_request(pr=3, sha=HEADS[0]))

    async def burst():
        # Submitted in one event-loop iteration: one group-commit transaction.
        return await asyncio.gather(
            *(store.accept(None, [make_request(pr=3, sha=head)]) for head in HEADS[1:])
        )

    results = asyncio.run(burst())
    assert sum(r.superseded_jobs for r in results) == 4
    pending = store.list_jobs("queued")
    assert [job.head_sha for job in pending] == [HEADS[-1]]
    superseded = store.list_jobs("superseded")
    assert {job.superseded_by for job in superseded} == {pending[0].id}


def test_superseding_is_part_of_the_accepts_transaction(open_sqlite_store, make_request) -> None:
    store = open_sqlite_store()
    _accept(store, make_request(pr=4, sha=HEADS[0]))
    with sqlite3.connect(store.path) as connection:
        # Refuses the last step of the accept of HEADS[1] (recording the PR's newest job),
        # after its insert and its supersede ran: the whole accept must be undone.
        connection.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON pull_requests"
            f" WHEN NEW.latest_head = '{HEADS[1]}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(StoreError, match="refused"):
        _accept(store, make_request(pr=4, sha=HEADS[1]), delivery=DeliveryRef("forgejo", "d1"))
    assert _rows(store) == {HEADS[0]: ("pending", None, None)}
    assert not store.seen_delivery(DeliveryRef("forgejo", "d1"))


def test_a_running_review_is_left_to_finish_and_never_queued_again_behind_a_newer_head(
    open_store, make_request
) -> None:
    store = open_store()
    _accept(store, make_request(pr=5, sha=HEADS[0]), make_request(pr=6, sha=HEADS[0]))
    first, second = _claim_all(store)
    _accept(store, make_request(pr=5, sha=HEADS[1]), make_request(pr=6, sha=HEADS[1]))
    # Both older heads are running: neither is touched by the accept.
    assert store.job_status(first.id)[0] is JobStatus.RUNNING
    assert store.job_status(second.id)[0] is JobStatus.RUNNING

    async def back_to_the_queue():
        return (
            await store.retry_later(first.id, 0.0, "HostUnavailable on attempt 1"),
            await store.release(second.id),
        )

    assert asyncio.run(back_to_the_queue()) == (True, True)
    for job in (first, second):
        status, outcome, detail, _ = store.job_status(job.id)
        assert (status, outcome) == (JobStatus.DONE, "superseded")
        assert detail.startswith("superseded by job ")
    # Only the two newer heads are left to claim.
    assert {j.request.head_sha for j in _claim_all(store)} == {HEADS[1]}


def test_a_running_review_that_finishes_keeps_its_outcome(open_store, make_request) -> None:
    store = open_store()
    _accept(store, make_request(pr=5, sha=HEADS[0]))
    [running] = _claim_all(store)
    _accept(store, make_request(pr=5, sha=HEADS[1]))
    assert asyncio.run(store.finish(running.id, JobOutcome.SKIPPED, "moved on"))
    assert store.job_status(running.id)[:2] == (JobStatus.DONE, "skipped")


def test_a_restart_supersedes_an_interrupted_review_behind_a_newer_head(
    open_sqlite_store, make_request
) -> None:
    store = open_sqlite_store()
    _accept(store, make_request(pr=7, sha=HEADS[0]), make_request(pr=8, sha=HEADS[0]))
    interrupted = _claim_all(store)
    _accept(store, make_request(pr=7, sha=HEADS[1]))
    store.close()
    restarted = open_sqlite_store()
    result = restarted.requeue_interrupted()
    assert (result.superseded, result.requeued) == (1, 1)
    heads = {(j.request.pr_number, j.request.head_sha) for j in _claim_all(restarted)}
    assert heads == {(7, HEADS[1]), (8, HEADS[0])}
    assert len(interrupted) == 2


# ---- claiming order ----------------------------------------------------------------------


def test_chat_commands_go_ahead_of_reviews(open_store, make_request) -> None:
    store = open_store()
    _accept(store, *(make_request(pr=n, sha=HEADS[0]) for n in range(1, 4)))
    _accept(store, make_request(pr=1, sha="", comment_id=1, kind=JobKind.CHAT_QUESTION))
    _accept(store, make_request(pr=2, sha="", comment_id=2, kind=JobKind.RE_REVIEW))
    kinds = [job.request.kind for job in _claim_all(store)]
    assert kinds[:2] == [JobKind.CHAT_QUESTION, JobKind.RE_REVIEW]
    assert kinds[2:] == [JobKind.REVIEW] * 3


def test_claims_are_fair_across_repositories(open_store, make_request) -> None:
    store = open_store()
    # A burst of 6 PRs in "busy" accepted before one PR each in "quiet" and "late".
    _accept(store, *(make_request(pr=n, sha=HEADS[0], name="busy") for n in range(1, 7)))
    _accept(store, make_request(pr=1, sha=HEADS[0], name="quiet"))
    _accept(store, make_request(pr=1, sha=HEADS[0], name="late"))
    order = [job.request.repo.name for job in _claim_all(store)]
    assert order[:3] == ["busy", "quiet", "late"]  # each repository's turn comes at once
    assert order[3:] == ["busy"] * 5


def test_a_repository_served_recently_waits_for_the_others(open_store, make_request) -> None:
    store = open_store()
    _accept(store, make_request(pr=1, sha=HEADS[0], name="busy"))
    _claim_all(store)  # busy served
    _accept(store, *(make_request(pr=n, sha=HEADS[0], name="busy") for n in range(2, 5)))
    _accept(store, make_request(pr=1, sha=HEADS[0], name="quiet"))  # accepted last
    order = [job.request.repo.name for job in _claim_all(store)]
    assert order == ["quiet", "busy", "busy", "busy"]


def test_fair_claims_still_wait_for_a_retrys_next_attempt(open_store, make_request) -> None:
    now = [1000.0]
    store = open_store(clock=lambda: now[0])
    _accept(store, make_request(pr=1, sha="", comment_id=1, kind=JobKind.CHAT_QUESTION))
    [chat] = _claim_all(store)
    asyncio.run(store.retry_later(chat.id, 30.0, "LlmUnavailable on attempt 1"))
    _accept(store, make_request(pr=2, sha=HEADS[0], name="quiet"))
    assert [j.request.kind for j in _claim_all(store)] == [JobKind.REVIEW]
    now[0] += 29.0
    assert _claim_all(store) == []
    now[0] += 1.0
    assert [j.id for j in _claim_all(store)] == [chat.id]


# ---- retention ---------------------------------------------------------------------------


def test_finished_jobs_and_deliveries_are_pruned_after_the_retention(
    open_store, make_request
) -> None:
    now = [1_000_000.0]
    store = open_store(retention_seconds=100.0, housekeeping=False, clock=lambda: now[0])
    old = DeliveryRef("forgejo", "old")
    _accept(store, make_request(pr=1, sha=HEADS[0]), delivery=old)
    _accept(store, make_request(pr=2, sha=HEADS[0]))
    done, waiting = _claim_all(store)
    asyncio.run(store.finish(done.id, JobOutcome.SUCCEEDED))
    asyncio.run(store.retry_later(waiting.id, 1000.0, "HostUnavailable on attempt 1"))
    _accept(store, make_request(pr=3, sha=HEADS[0]))  # queued, never claimed
    now[0] += 99.0
    assert store.prune_now() == (0, 0)  # within the retention: everything stays
    # Within the retention a repeat is still recognised, by delivery id and by job key.
    assert _accept(store, make_request(pr=1, sha=HEADS[0]), delivery=old).duplicate_delivery
    assert _accept(store, make_request(pr=1, sha=HEADS[0])).duplicate_jobs == 1
    now[0] += 2.0
    assert store.prune_now() == (1, 1)
    assert store.job_status(done.id) is None
    assert not store.seen_delivery(old)
    # Jobs still waiting or queued are never pruned, however old.
    now[0] += 10_000.0
    store.prune_now()
    assert store.job_status(waiting.id)[0] is JobStatus.PENDING
    assert store.queue_depth() == 2


def test_pruning_works_in_bounded_batches(
    open_sqlite_store, make_request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_intake, "PRUNE_BATCH_ROWS", 10)
    now = [1_000_000.0]
    store = open_sqlite_store(retention_seconds=60.0, housekeeping=False, clock=lambda: now[0])
    for n in range(25):
        _accept(store, make_request(pr=n + 1, sha=HEADS[0]), delivery=DeliveryRef("github", str(n)))
    for job in _claim_all(store):
        asyncio.run(store.finish(job.id, JobOutcome.SUCCEEDED))
    now[0] += 61.0
    steps = []
    with sqlite3.connect(store.path) as connection:
        while True:
            more = store._writer.call(store.prune_step)
            steps.append(connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            if not more:
                break
    assert steps == [15, 5, 0]
    assert store.pruned == (25, 25)
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM pull_requests").fetchone()[0] == 0
        assert connection.execute("SELECT COUNT(*) FROM repo_turns").fetchone()[0] == 0


def test_housekeeping_prunes_on_its_own(open_store, make_request) -> None:
    now = [1_000_000.0]
    store = open_store(retention_seconds=60.0, clock=lambda: now[0])
    _accept(store, make_request(pr=1, sha=HEADS[0]), delivery=DeliveryRef("forgejo", "a"))
    [job] = _claim_all(store)
    asyncio.run(store.finish(job.id, JobOutcome.SUCCEEDED))
    now[0] += 61.0  # the retention's quarter is the interval: 15 s of the real clock
    reopened = open_store(
        retention_seconds=60.0, housekeeping_interval_seconds=0.05, clock=lambda: now[0]
    )
    from tests.support.waiting import wait_until

    wait_until(lambda: reopened.job_status(job.id) is None, timeout=10, what="the prune")
    assert not reopened.seen_delivery(DeliveryRef("forgejo", "a"))


def test_the_retention_must_be_positive(state_dir: Path) -> None:
    with pytest.raises(ValueError, match="retention"):
        SqliteIntakeStore.open(state_dir, retention_seconds=0)


# ---- migration ---------------------------------------------------------------------------


def _version_2_database(path: Path) -> None:
    """A state database as the release before scheduling left it: a backlog of heads."""
    path.parent.mkdir(mode=0o700, parents=True)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(
        "CREATE TABLE schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    for migration in MIGRATIONS[:2]:
        for statement in migration.statements:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, 0)", (migration.version, migration.name)
        )
    rows = [
        # (pr, head, status)
        (1, HEADS[0], "done"),
        (1, HEADS[1], "pending"),
        (1, HEADS[2], "running"),
        (1, HEADS[3], "pending"),
        (1, HEADS[4], "pending"),
        (2, HEADS[0], "pending"),
    ]
    for pr, head, status in rows:
        connection.execute(
            "INSERT INTO jobs (dedup_key, kind, host, owner, name, pr_number, head_sha,"
            " argument, requested_by, source, status, enqueued_at, not_before)"
            " VALUES (?, 'review', 'forgejo', 'acme', 'widget', ?, ?, '', 'alice', 'webhook',"
            " ?, 1, 1)",
            (f"forgejo|acme/widget|{pr}|{head}|review", pr, head, status),
        )
    connection.close()


def test_an_old_database_is_migrated_and_its_backlog_coalesced(
    state_dir: Path, open_sqlite_store, make_request
) -> None:
    _version_2_database(state_dir / STATE_FILE_NAME)
    store = open_sqlite_store()
    with sqlite3.connect(store.path) as connection:
        versions = [v for (v,) in connection.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in MIGRATIONS]
    listed = {(job.pr_number, job.head_sha): job for job in store.list_jobs()}
    newest = listed[(1, HEADS[4])]
    assert newest.state == "queued"
    assert [listed[(1, HEADS[n])].state for n in range(4)] == [
        "done",
        "superseded",
        "running",  # left to finish
        "superseded",
    ]
    assert listed[(1, HEADS[1])].superseded_by == newest.id
    assert listed[(1, HEADS[1])].detail == f"superseded by job {newest.id} (head {HEADS[4][:12]})"
    assert listed[(2, HEADS[0])].state == "queued"
    # The migrated database coalesces new heads like a new one.
    result = _accept(store, make_request(pr=1, sha="f" * 40))
    assert result.superseded_jobs == 1
    assert store.list_jobs("queued")[0].head_sha == "f" * 40
    # And the interrupted running job, behind newer heads, is superseded on restart.
    assert store.requeue_interrupted().superseded == 1
