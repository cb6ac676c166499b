"""`auto-review ops migrate-state --from-sqlite DIR`: a state directory written by the
gateway's own SQLite stores, copied into a real PostgreSQL, once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tests.unit.store.conftest import build_request, pg_connection

from auto_review.core.jobs import JobKind
from auto_review.store.pg_intake import PostgresIntakeStore
from auto_review.store.pg_review import PostgresReviewStore
from auto_review.store.sqlite_intake import SqliteIntakeStore
from auto_review.store.sqlite_review import ReviewStore

REPO = "forgejo|acme/widget"
FP1, FP2 = "0123456789abcdef", "fedcba9876543210"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AR_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "ops", "migrate-state", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def make_state(state: Path) -> None:
    with ReviewStore.open(state) as history:
        history.record_review(REPO, 7, "a" * 40, [FP1])
        history.record_review(REPO, 7, "b" * 40, [FP2])
        history.add_learning(REPO, "we use tabs", "alice")
    queue = SqliteIntakeStore.open(state)
    try:

        async def fill() -> None:
            await queue.accept(None, [build_request(pr=1, sha="c" * 40)])
            await queue.accept(None, [build_request(pr=2, sha="d" * 40)])
            done = await queue.claim("w")
            assert done is not None
            from auto_review.core.jobs import JobOutcome

            await queue.finish(done.id, JobOutcome.SUCCEEDED)  # finished: not copied
            await queue.accept(
                None, [build_request(pr=3, kind=JobKind.CHAT_HELP, comment_id=55, argument="help")]
            )

        asyncio.run(fill())
    finally:
        queue.close()


def digest(state: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(state.iterdir())
        if p.suffix == ".sqlite3"
    }


def test_a_state_directory_is_copied_once(tmp_path: Path, postgres_server, pg_database) -> None:
    state = tmp_path / "state"
    make_state(state)
    before = digest(state)
    url = postgres_server.url(pg_database)

    missing_url = run_cli("--from-sqlite", str(state))
    assert missing_url.returncode == 2 and "AR_DATABASE_URL" in missing_url.stderr

    first = run_cli("--from-sqlite", str(state), AR_DATABASE_URL=url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        "copied 2 reviews, 2 posted findings, 1 learnings and 2 pending jobs"
    )
    again = run_cli("--from-sqlite", str(state), AR_DATABASE_URL=url)
    assert again.returncode == 1 and "--into-non-empty" in again.stderr
    forced = run_cli("--from-sqlite", str(state), "--into-non-empty", AR_DATABASE_URL=url)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == (
        "copied 0 reviews, 0 posted findings, 0 learnings and 0 pending jobs"
    )
    nowhere = run_cli("--from-sqlite", str(tmp_path / "empty"), AR_DATABASE_URL=url)
    assert nowhere.returncode == 1 and "no auto-review SQLite state" in nowhere.stderr
    for result in (missing_url, first, again, forced, nowhere):
        assert postgres_server.password not in result.stdout + result.stderr
    assert digest(state) == before  # the source is read only

    history = PostgresReviewStore(pg_connection(postgres_server, pg_database))
    try:
        assert history.last_reviewed_sha(REPO, 7) == "b" * 40
        assert history.posted_fingerprints(REPO, 7) == {FP1, FP2}
        assert [(n.text, n.author) for n in history.learnings(REPO)] == [("we use tabs", "alice")]
    finally:
        history.close()
    queue = PostgresIntakeStore(pg_connection(postgres_server, pg_database), housekeeping=False)
    try:

        async def claim_all() -> list[tuple[int, str]]:
            claimed = []
            while (job := await queue.claim("w")) is not None:
                claimed.append((job.request.pr_number, str(job.request.kind)))
            return claimed

        assert sorted(asyncio.run(claim_all())) == [(2, "review"), (3, str(JobKind.CHAT_HELP))]
    finally:
        queue.close()
