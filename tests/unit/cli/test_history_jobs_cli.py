"""`auto-review history jobs` and `history retry` as real subprocesses on a real queue."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer, postgres_server

from auto_review.core.jobs import JobKind, JobOutcome, JobRequest
from auto_review.core.refs import HostKind, RepoRef
from auto_review.store.base import JobStatus
from auto_review.store.pg_intake import PostgresIntakeStore
from auto_review.store.sqlite_intake import STATE_FILE_NAME, SqliteIntakeStore

__all__ = ["postgres_server"]

CANARY = "canary-history-jobs-token-5c1f9e2a7b"


def request(pr: int) -> JobRequest:
    return JobRequest(
        kind=JobKind.REVIEW,
        repo=RepoRef(HostKind.FORGEJO, "acme", "widget"),
        pr_number=pr,
        head_sha=f"{pr:x}".rjust(40, "a"),
        comment_id=None,
        argument="",
        requested_by="alice",
        source="webhook",
    )


def run_cli(
    state_dir: Path, *args: str, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AR_")}
    env["AR_STATE_DIR"] = str(state_dir)
    if database_url is not None:
        env["AR_DATABASE_URL"] = database_url
    env["AR_FORGEJO_TOKEN"] = CANARY  # a configured secret: redacted wherever it shows
    completed = subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "history", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert CANARY not in completed.stdout + completed.stderr
    return completed


def fill_queue(store: SqliteIntakeStore | PostgresIntakeStore) -> dict[str, int]:
    """One job in each state: failed, waiting-retry, done, queued; their ids by name."""

    async def fill() -> dict[str, int]:
        await store.accept(None, [request(pr) for pr in (1, 2, 3, 4)])
        ids: dict[str, int] = {}
        for name in ("failed", "waiting", "done"):
            job = await store.claim("test")
            assert job is not None
            ids[name] = job.id
        # A detail holding a secret must not come back out through the listing.
        await store.finish(ids["failed"], JobOutcome.FAILED, f"clone: refused with {CANARY}")
        await store.retry_later(ids["waiting"], 3600.0, "forge unavailable: HTTP 503")
        await store.finish(ids["done"], JobOutcome.SUCCEEDED)
        return ids

    ids = asyncio.run(fill())
    [queued] = [j.id for j in store.list_jobs("queued")]
    ids["queued"] = queued
    return ids


@pytest.fixture
def queue(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A SQLite queue with one job in each state."""
    state_dir = tmp_path / "state"
    store = SqliteIntakeStore.open(state_dir)
    try:
        ids = fill_queue(store)
    finally:
        store.close()
    return state_dir, ids


def test_jobs_lists_each_state_with_its_last_error(queue: tuple[Path, dict[str, int]]) -> None:
    state_dir, ids = queue
    completed = run_cli(state_dir, "jobs")
    assert completed.returncode == 0, completed.stderr
    lines = {int(line.split()[0]): line for line in completed.stdout.splitlines()}
    assert set(lines) == set(ids.values())
    assert " failed " in lines[ids["failed"]] and "clone: refused with [REDACTED]" in lines[
        ids["failed"]
    ]
    assert " waiting-retry " in lines[ids["waiting"]]
    assert "next attempt in" in lines[ids["waiting"]] and "HTTP 503" in lines[ids["waiting"]]
    assert " done " in lines[ids["done"]] and " queued " in lines[ids["queued"]]

    only_failed = run_cli(state_dir, "jobs", "--state", "failed")
    assert [int(line.split()[0]) for line in only_failed.stdout.splitlines()] == [ids["failed"]]
    waiting = run_cli(state_dir, "jobs", "--state", "waiting")
    assert [int(line.split()[0]) for line in waiting.stdout.splitlines()] == [ids["waiting"]]


def test_retry_requeues_failed_and_waiting_jobs_only(queue: tuple[Path, dict[str, int]]) -> None:
    state_dir, ids = queue
    for name in ("failed", "waiting"):
        completed = run_cli(state_dir, "retry", str(ids[name]))
        assert completed.returncode == 0, completed.stderr
        assert "queued again" in completed.stdout
    for name in ("done",):
        completed = run_cli(state_dir, "retry", str(ids[name]))
        assert completed.returncode == 1 and "left as it is" in completed.stderr
    missing = run_cli(state_dir, "retry", "999999")
    assert missing.returncode == 1 and "no job 999999" in missing.stderr

    store = SqliteIntakeStore.open(state_dir)
    try:
        for name in ("failed", "waiting"):
            status = store.job_status(ids[name])
            assert status is not None
            assert status[0] is JobStatus.PENDING and status[3] == 0  # attempts reset
            assert status[2] == "requeued by an operator"
        assert {j.id for j in store.list_jobs("queued")} == {
            ids["failed"], ids["waiting"], ids["queued"]
        }
    finally:
        store.close()


def test_a_missing_state_directory_is_an_error(tmp_path: Path) -> None:
    completed = run_cli(tmp_path / "nowhere", "jobs")
    assert completed.returncode == 2 and "does not exist" in completed.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(empty, "jobs").stdout.startswith("no job queue in")


def test_superseded_jobs_are_listed_with_the_job_that_replaced_them(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = SqliteIntakeStore.open(state_dir)
    older = request(7)
    newer = dataclasses.replace(older, head_sha="b" * 40)
    try:
        asyncio.run(store.accept(None, [older]))
        asyncio.run(store.accept(None, [newer]))
        [replacement] = store.list_jobs("queued")
    finally:
        store.close()
    completed = run_cli(state_dir, "jobs", "--state", "superseded")
    assert completed.returncode == 0, completed.stderr
    [line] = completed.stdout.splitlines()
    assert " superseded " in line and older.head_sha[:12] in line
    assert f"superseded by job {replacement.id} (head bbbbbbbbbbbb)" in line


def test_the_commands_never_prune_the_state(tmp_path: Path) -> None:
    # Deleting by age is the gateway's job, with its own retention: a command that opens
    # the state directory must not apply the default one.
    state_dir = tmp_path / "state"
    store = SqliteIntakeStore.open(state_dir)
    try:
        asyncio.run(store.accept(None, [request(1)]))
        job = asyncio.run(store.claim("test"))
        assert job is not None
        asyncio.run(store.finish(job.id, JobOutcome.SUCCEEDED))
    finally:
        store.close()
    with sqlite3.connect(state_dir / STATE_FILE_NAME) as connection:
        connection.execute("UPDATE jobs SET finished_at = finished_at - 400 * 86400")
    assert run_cli(state_dir, "jobs").returncode == 0
    assert run_cli(state_dir, "retry", str(job.id)).returncode == 1
    with sqlite3.connect(state_dir / STATE_FILE_NAME) as connection:
        assert connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1


def test_with_a_database_url_jobs_and_retry_use_the_shared_queue(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The queue is the PostgreSQL database's, not the state directory's (which stays
    without one); the password appears nowhere in the output."""
    from tests.unit.store.conftest import pg_connection

    database = postgres_server.create_database("cli_history_jobs")
    url = postgres_server.url(database)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    try:
        store = PostgresIntakeStore(pg_connection(postgres_server, database))
        try:
            ids = fill_queue(store)
        finally:
            store.close()
        listed = run_cli(state_dir, "jobs", database_url=url)
        assert listed.returncode == 0, listed.stderr
        lines = {int(line.split()[0]): line for line in listed.stdout.splitlines()}
        assert set(lines) == set(ids.values())
        assert "clone: refused with [REDACTED]" in lines[ids["failed"]]
        retried = run_cli(state_dir, "retry", str(ids["failed"]), database_url=url)
        assert retried.returncode == 0 and "queued again" in retried.stdout, retried.stderr
        done = run_cli(state_dir, "retry", str(ids["done"]), database_url=url)
        assert done.returncode == 1 and "left as it is" in done.stderr
        down = run_cli(
            state_dir, "jobs", database_url=url.replace(f":{postgres_server.port}/", ":1/")
        )
        assert down.returncode == 2 and "PostgreSQL" in down.stderr
        for result in (listed, retried, done, down):
            assert postgres_server.password not in result.stdout + result.stderr
            assert "Traceback" not in result.stderr
        store = PostgresIntakeStore(pg_connection(postgres_server, database))
        try:
            assert {j.id for j in store.list_jobs("queued")} == {ids["failed"], ids["queued"]}
        finally:
            store.close()
        assert not (state_dir / STATE_FILE_NAME).exists()
    finally:
        postgres_server.drop_database(database)
