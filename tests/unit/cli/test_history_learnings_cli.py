"""`auto-review history` and `auto-review learnings` as real subprocesses on a temp state dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer, postgres_server

from auto_review.store.sqlite_review import REVIEW_FILE_NAME, ReviewStore

__all__ = ["postgres_server"]

REPO = "forgejo|acme/widget"
GITHUB_REPO = "github|acme/widget"
SHA = "a" * 40
FP = "0123456789abcdef"


def run_cli(
    *args: str, state_dir: Path | None = None, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AR_")}
    if state_dir is not None:
        env["AR_STATE_DIR"] = str(state_dir)
    if database_url is not None:
        env["AR_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_reset_pr_forgets_only_that_pull_request(state_dir: Path) -> None:
    with ReviewStore.open(state_dir) as store:
        store.record_review(REPO, 7, SHA, [FP])
        store.record_review(REPO, 8, SHA, [FP])
        store.record_review(GITHUB_REPO, 7, SHA, [FP])
    result = run_cli(
        "history", "reset-pr", "--repo", "acme/widget", "--pr", "7", state_dir=state_dir
    )
    assert result.returncode == 0, result.stderr
    assert "forgot 1 review of forgejo|acme/widget PR 7" in result.stdout
    with ReviewStore.open(state_dir) as store:
        assert store.last_reviewed_sha(REPO, 7) is None
        assert store.posted_fingerprints(REPO, 8) == {FP}
        assert store.last_reviewed_sha(GITHUB_REPO, 7) == SHA
    explicit = run_cli(
        "history",
        "reset-pr",
        "--repo",
        "github:acme/widget",
        "--pr",
        "7",
        "--state-dir",
        str(state_dir),
    )
    assert explicit.returncode == 0, explicit.stderr
    with ReviewStore.open(state_dir) as store:
        assert store.last_reviewed_sha(GITHUB_REPO, 7) is None


def test_purge_by_age(state_dir: Path) -> None:
    clock_now = [1_000_000.0]
    with ReviewStore.open(state_dir, clock=lambda: clock_now[0]) as store:
        store.record_review(REPO, 1, SHA, [FP])  # reviewed in 1970: stale
    with ReviewStore.open(state_dir) as store:
        store.record_review(REPO, 2, SHA, [FP])  # reviewed now
    result = run_cli("history", "purge", "--older-than-days", "30", state_dir=state_dir)
    assert result.returncode == 0, result.stderr
    assert "forgot the history of 1 pull request (1 review)" in result.stdout
    with ReviewStore.open(state_dir) as store:
        assert store.last_reviewed_sha(REPO, 1) is None
        assert store.last_reviewed_sha(REPO, 2) == SHA


def test_learnings_list_and_forget(state_dir: Path) -> None:
    with ReviewStore.open(state_dir) as store:
        first = store.add_learning(REPO, "prefer pathlib \x1b[2J over os.path", "alice")
        second = store.add_learning(REPO, "tabs are fine here", "bob")
        other = store.add_learning(GITHUB_REPO, "other repository", "carol")
    listing = run_cli("learnings", "list", "--repo", "acme/widget", state_dir=state_dir)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == str(first) and "alice: prefer pathlib" in lines[0]
    assert "\x1b" not in listing.stdout and "\\u001b[2J" in listing.stdout
    assert "other repository" not in listing.stdout

    as_json = run_cli("learnings", "list", "--repo", "acme/widget", "--json", state_dir=state_dir)
    document = json.loads(as_json.stdout)
    assert [item["id"] for item in document["learnings"]] == [first, second]
    assert document["learnings"][1]["text"] == "tabs are fine here"

    # an id of another repository is not this repository's to forget
    refused = run_cli(
        "learnings", "forget", "--repo", "acme/widget", str(other), state_dir=state_dir
    )
    assert refused.returncode == 1
    assert "has no learning" in refused.stderr
    done = run_cli("learnings", "forget", "--repo", "acme/widget", str(first), state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    with ReviewStore.open(state_dir) as store:
        assert [item.id for item in store.learnings(REPO)] == [second]
        assert [item.id for item in store.learnings(GITHUB_REPO)] == [other]


def test_a_missing_database_is_not_created(state_dir: Path) -> None:
    state_dir.mkdir()
    listing = run_cli("learnings", "list", "--repo", "acme/widget", state_dir=state_dir)
    assert listing.returncode == 0, listing.stderr
    assert "no learnings stored for forgejo|acme/widget" in listing.stdout
    reset = run_cli(
        "history", "reset-pr", "--repo", "acme/widget", "--pr", "1", state_dir=state_dir
    )
    assert reset.returncode == 0
    assert reset.stdout == f"no review history in {state_dir} yet; nothing to forget\n"
    purge = run_cli("history", "purge", "--older-than-days", "1", state_dir=state_dir)
    assert purge.returncode == 0 and "nothing to forget" in purge.stdout
    forget = run_cli("learnings", "forget", "--repo", "acme/widget", "1", state_dir=state_dir)
    assert forget.returncode == 1
    assert not (state_dir / REVIEW_FILE_NAME).exists()


@pytest.mark.parametrize(
    "args",
    [
        ["history", "reset-pr", "--repo", "acme/widget", "--pr", "1"],
        ["history", "purge", "--older-than-days", "1"],
        ["learnings", "list", "--repo", "acme/widget"],
        ["learnings", "forget", "--repo", "acme/widget", "1"],
    ],
)
def test_a_state_directory_that_does_not_exist_is_an_error(
    state_dir: Path, args: list[str]
) -> None:
    result = run_cli(*args, state_dir=state_dir)
    assert result.returncode == 2
    assert f"state directory {state_dir} does not exist" in result.stderr
    assert "forgot" not in result.stdout and "Traceback" not in result.stderr
    assert not state_dir.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["history", "reset-pr", "--repo", "../etc", "--pr", "1"],
        ["history", "reset-pr", "--repo", "gitlab:acme/widget", "--pr", "1"],
        ["history", "reset-pr", "--repo", "acme/widget", "--pr", "0"],
        ["history", "purge", "--older-than-days", "-1"],
        ["learnings", "forget", "--repo", "acme/widget", "abc"],
        ["learnings", "list"],
    ],
)
def test_bad_usage_exits_2_and_changes_nothing(state_dir: Path, args: list[str]) -> None:
    with ReviewStore.open(state_dir) as store:
        store.record_review(REPO, 1, SHA, [FP])
    result = run_cli(*args, state_dir=state_dir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    with ReviewStore.open(state_dir) as store:
        assert store.last_reviewed_sha(REPO, 1) == SHA


def test_a_bad_setting_is_one_line_without_its_value(state_dir: Path) -> None:
    env_file = state_dir.parent / "bad.env"
    env_file.write_text("AR_LLM_TIMEOUT_SECONDS=not-a-number-hunter2\n")
    result = run_cli(
        "history",
        "purge",
        "--older-than-days",
        "1",
        "--env-file",
        str(env_file),
        state_dir=state_dir,
    )
    assert result.returncode == 2
    assert "AR_LLM_TIMEOUT_SECONDS" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unusable_database_is_a_clear_error(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / REVIEW_FILE_NAME).write_bytes(b"garbage " * 512)
    result = run_cli("learnings", "list", "--repo", "acme/widget", state_dir=state_dir)
    assert result.returncode == 2
    assert "cannot be used" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_a_database_url_the_commands_use_postgresql(
    state_dir: Path, postgres_server: PostgresServer
) -> None:
    """History and learnings are the shared database's, not the state directory's; the
    password appears nowhere in the output."""
    from tests.unit.store.conftest import pg_connection

    from auto_review.store.pg_review import PostgresReviewStore

    database = postgres_server.create_database("cli_review_store")
    url = postgres_server.url(database)
    try:
        store = PostgresReviewStore(pg_connection(postgres_server, database))
        try:
            store.record_review(REPO, 7, SHA, [FP])
            learning = store.add_learning(REPO, "shared note", "alice")
        finally:
            store.close()
        state_dir.mkdir()
        with ReviewStore.open(state_dir) as local:
            local.add_learning(REPO, "local note", "bob")
        listed = run_cli(
            "learnings",
            "list",
            "--repo",
            "acme/widget",
            "--json",
            state_dir=state_dir,
            database_url=url,
        )
        assert listed.returncode == 0, listed.stderr
        notes = json.loads(listed.stdout)["learnings"]
        assert [(n["id"], n["text"]) for n in notes] == [(learning, "shared note")]
        forgot = run_cli(
            "learnings",
            "forget",
            "--repo",
            "acme/widget",
            str(learning),
            state_dir=state_dir,
            database_url=url,
        )
        reset = run_cli(
            "history",
            "reset-pr",
            "--repo",
            "acme/widget",
            "--pr",
            "7",
            state_dir=state_dir,
            database_url=url,
        )
        assert (forgot.returncode, reset.returncode) == (0, 0), forgot.stderr + reset.stderr
        assert "forgot 1 review of forgejo|acme/widget PR 7" in reset.stdout
        store = PostgresReviewStore(pg_connection(postgres_server, database))
        try:
            assert store.learnings(REPO) == []
            assert store.last_reviewed_sha(REPO, 7) is None
        finally:
            store.close()
        with ReviewStore.open(state_dir) as local:
            assert [n.text for n in local.learnings(REPO)] == ["local note"]
        down = run_cli(
            "learnings",
            "list",
            "--repo",
            "acme/widget",
            state_dir=state_dir,
            database_url=url.replace(f":{postgres_server.port}/", ":1/"),
        )
        assert down.returncode == 2
        assert "PostgreSQL" in down.stderr
        for result in (listed, forgot, reset, down):
            assert postgres_server.password not in result.stdout + result.stderr
    finally:
        postgres_server.drop_database(database)
