"""ReviewStore: history and learnings in a real SQLite file, across restarts."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from auto_review.store.base import SchemaTooNew, StoreError
from auto_review.store.sqlite_review import (
    MAX_LEARNING_CHARS,
    MAX_LEARNINGS_PER_REPO,
    REVIEW_FILE_NAME,
    LearningLimitReached,
    ReviewStore,
    check_repo_key,
    make_repo_key,
)

REPO = "forgejo|acme/widget"
OTHER = "github|acme/widget"
SHA1 = "a" * 40
SHA2 = "b" * 40
FP1 = "0123456789abcdef"
FP2 = "fedcba9876543210"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_history_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with ReviewStore.open(state) as store:
        assert store.path == state / REVIEW_FILE_NAME
        assert store.last_reviewed_sha(REPO, 7) is None
        assert store.posted_fingerprints(REPO, 7) == set()
        store.record_review(REPO, 7, SHA1, [FP1])
        store.record_review(REPO, 7, SHA2.upper(), [FP1, FP2])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / REVIEW_FILE_NAME).stat().st_mode) == 0o600
    with ReviewStore.open(state / REVIEW_FILE_NAME) as reopened:
        assert reopened.last_reviewed_sha(REPO, 7) == SHA2
        assert reopened.posted_fingerprints(REPO, 7) == {FP1, FP2}
        # scoped by repository (host included) and PR
        assert reopened.last_reviewed_sha(OTHER, 7) is None
        assert reopened.posted_fingerprints(REPO, 8) == set()
    journal = sqlite3.connect(state / REVIEW_FILE_NAME).execute("PRAGMA journal_mode")
    assert journal.fetchone()[0] == "wal"


def test_reset_pr_forgets_one_pull_request_only(tmp_path: Path) -> None:
    with ReviewStore.open(tmp_path) as store:
        store.record_review(REPO, 7, SHA1, [FP1])
        store.record_review(REPO, 7, SHA2, [])
        store.record_review(REPO, 8, SHA1, [FP2])
        assert store.reset_pr(REPO, 7) == 2
        assert store.last_reviewed_sha(REPO, 7) is None
        assert store.posted_fingerprints(REPO, 7) == set()
        assert store.posted_fingerprints(REPO, 8) == {FP2}
        assert store.reset_pr(REPO, 7) == 0


def test_purge_removes_whole_stale_pull_requests_and_keeps_learnings(tmp_path: Path) -> None:
    clock = Clock()
    with ReviewStore.open(tmp_path, clock=clock) as store:
        store.record_review(REPO, 1, SHA1, [FP1])  # stale
        store.record_review(REPO, 2, SHA1, [FP1])  # old review, but reviewed again recently
        learning = store.add_learning(REPO, "we use tabs", "alice")
        clock.now += 10 * 86400
        store.record_review(REPO, 2, SHA2, [FP2])
        result = store.purge(5 * 86400)
        assert (result.pull_requests, result.reviews) == (1, 1)
        assert store.last_reviewed_sha(REPO, 1) is None
        assert store.posted_fingerprints(REPO, 1) == set()
        assert store.last_reviewed_sha(REPO, 2) == SHA2
        assert store.posted_fingerprints(REPO, 2) == {FP1, FP2}
        assert [item.id for item in store.learnings(REPO)] == [learning]
        clock.now += 1
        assert store.purge(0).pull_requests == 1  # everything older than now
    with pytest.raises(ValueError):
        ReviewStore.open(tmp_path).purge(-1)


def test_learnings_are_scoped_capped_and_forgotten_per_repo(tmp_path: Path) -> None:
    clock = Clock()
    with ReviewStore.open(tmp_path, clock=clock) as store:
        first = store.add_learning(REPO, "  prefer pathlib  ", "alice")
        second = store.add_learning(REPO, "x" * (MAX_LEARNING_CHARS + 50), "bob")
        foreign = store.add_learning(OTHER, "other repo", "carol")
        items = store.learnings(REPO)
        assert [(i.id, i.text[:14], i.author) for i in items] == [
            (first, "prefer pathlib", "alice"),
            (second, "x" * 14, "bob"),
        ]
        assert len(items[1].text) == MAX_LEARNING_CHARS
        assert items[0].created_at == clock.now
        # another repository's id cannot be forgotten from here
        assert store.forget_learning(REPO, foreign) is False
        assert store.forget_learning(REPO, first) is True
        assert store.forget_learning(REPO, first) is False
        assert store.forget_learning(REPO, 10**30) is False
        assert store.forget_learning(REPO, -1) is False
    with ReviewStore.open(tmp_path) as reopened:
        assert [i.id for i in reopened.learnings(REPO)] == [second]
        assert [i.text for i in reopened.learnings(OTHER)] == ["other repo"]
        third = reopened.add_learning(REPO, "new", "dave")
        assert third > foreign  # ids are never reused


def test_learning_limit_per_repo(tmp_path: Path) -> None:
    with ReviewStore.open(tmp_path) as store:
        for n in range(MAX_LEARNINGS_PER_REPO):
            store.add_learning(REPO, f"note {n}", "alice")
        with pytest.raises(LearningLimitReached):
            store.add_learning(REPO, "one too many", "alice")
        assert len(store.learnings(REPO)) == MAX_LEARNINGS_PER_REPO
        store.add_learning(OTHER, "other repos are not affected", "alice")


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.record_review("acme/widget", 1, SHA1, []),
        lambda s: s.record_review("gitlab|acme/widget", 1, SHA1, []),
        lambda s: s.record_review("forgejo|../widget", 1, SHA1, []),
        lambda s: s.record_review(REPO, 0, SHA1, []),
        lambda s: s.record_review(REPO, True, SHA1, []),
        lambda s: s.record_review(REPO, 1, "main", []),
        lambda s: s.record_review(REPO, 1, SHA1, ["not-a-fingerprint"]),
        lambda s: s.add_learning(REPO, "   ", "alice"),
        lambda s: s.add_learning(REPO, "text", ""),
        lambda s: s.forget_learning(REPO, "1"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_written(tmp_path: Path, call: object) -> None:
    with ReviewStore.open(tmp_path) as store:
        with pytest.raises(ValueError):
            call(store)  # type: ignore[operator]
        assert store.last_reviewed_sha(REPO, 1) is None
        assert store.learnings(REPO) == []


def test_repo_keys() -> None:
    assert make_repo_key("github", "Acme", ".github") == "github|Acme/.github"
    assert check_repo_key("forgejo|acme/widget") == "forgejo|acme/widget"
    for bad in ("forgejo|acme", "forgejo|acme/wid/get", "x|a/b", "forgejo|-a/b", ""):
        with pytest.raises(ValueError):
            check_repo_key(bad)


def test_concurrent_writers_from_threads(tmp_path: Path) -> None:
    store = ReviewStore.open(tmp_path)
    errors: list[BaseException] = []

    def work(pr: int) -> None:
        try:
            for n in range(20):
                store.record_review(REPO, pr, SHA1, [f"{pr:08x}{n:08x}"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(pr,)) for pr in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(len(store.posted_fingerprints(REPO, pr)) == 20 for pr in range(1, 5))
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.learnings(REPO)


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    ReviewStore.open(tmp_path).close()
    path = tmp_path / REVIEW_FILE_NAME
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    with pytest.raises(SchemaTooNew):
        ReviewStore.open(path)


def test_an_unusable_file_is_a_store_error_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / REVIEW_FILE_NAME
    path.write_bytes(b"not a database, secret-ish content " * 200)
    with pytest.raises(StoreError) as caught:
        ReviewStore.open(path)
    assert "secret-ish" not in str(caught.value)
