"""Review history and learnings: one contract, run against SQLite and a real PostgreSQL
(`open_review_store` is parametrised over both backends)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from auto_review.store.base import LearningLimitReached, StoreError
from auto_review.store.review_rules import MAX_LEARNING_CHARS, MAX_LEARNINGS_PER_REPO

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


def test_history_survives_a_restart(open_review_store) -> None:
    store = open_review_store()
    assert store.last_reviewed_sha(REPO, 7) is None
    assert store.posted_fingerprints(REPO, 7) == set()
    store.record_review(REPO, 7, SHA1, [FP1])
    store.record_review(REPO, 7, SHA2.upper(), [FP1, FP2])
    store.close()
    reopened = open_review_store()
    assert reopened.last_reviewed_sha(REPO, 7) == SHA2
    assert reopened.posted_fingerprints(REPO, 7) == {FP1, FP2}
    # scoped by repository (host included) and PR
    assert reopened.last_reviewed_sha(OTHER, 7) is None
    assert reopened.posted_fingerprints(REPO, 8) == set()


def test_reset_pr_forgets_one_pull_request_only(open_review_store) -> None:
    store = open_review_store()
    store.record_review(REPO, 7, SHA1, [FP1])
    store.record_review(REPO, 7, SHA2, [])
    store.record_review(REPO, 8, SHA1, [FP2])
    assert store.reset_pr(REPO, 7) == 2
    assert store.last_reviewed_sha(REPO, 7) is None
    assert store.posted_fingerprints(REPO, 7) == set()
    assert store.posted_fingerprints(REPO, 8) == {FP2}
    assert store.reset_pr(REPO, 7) == 0


def test_purge_removes_whole_stale_pull_requests_and_keeps_learnings(open_review_store) -> None:
    clock = Clock()
    store = open_review_store(clock=clock)
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
        store.purge(-1)


def test_learnings_are_scoped_capped_and_forgotten_per_repo(open_review_store) -> None:
    clock = Clock()
    store = open_review_store(clock=clock)
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
    store.close()
    reopened = open_review_store()
    assert [i.id for i in reopened.learnings(REPO)] == [second]
    assert [i.text for i in reopened.learnings(OTHER)] == ["other repo"]
    third = reopened.add_learning(REPO, "new", "dave")
    assert third > foreign  # ids are never reused


def test_learning_limit_per_repo(open_review_store) -> None:
    store = open_review_store()
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
        lambda s: s.record_review(REPO, 2**31, SHA1, []),
        lambda s: s.record_review(REPO, 1, "main", []),
        lambda s: s.record_review(REPO, 1, SHA1, ["not-a-fingerprint"]),
        lambda s: s.claim_fingerprints(REPO, 1, [FP1, "ABCDEF0123456789"]),
        lambda s: s.add_learning(REPO, "   ", "alice"),
        lambda s: s.add_learning(REPO, "text", ""),
        lambda s: s.forget_learning(REPO, "1"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_written(open_review_store, call: Any) -> None:
    store = open_review_store()
    with pytest.raises(ValueError):
        call(store)
    assert store.last_reviewed_sha(REPO, 1) is None
    assert store.posted_fingerprints(REPO, 1) == set()
    assert store.learnings(REPO) == []


def test_claiming_fingerprints_records_each_once(open_review_store) -> None:
    store = open_review_store()
    store.record_review(REPO, 3, SHA1, [FP1])
    assert store.claim_fingerprints(REPO, 3, [FP1, FP2, FP2]) == {FP2}
    assert store.claim_fingerprints(REPO, 3, [FP1, FP2]) == set()
    assert store.claim_fingerprints(REPO, 4, [FP1]) == {FP1}  # per pull request
    assert store.claim_fingerprints(REPO, 3, []) == set()
    assert store.posted_fingerprints(REPO, 3) == {FP1, FP2}
    assert store.last_reviewed_sha(REPO, 3) == SHA1  # claims are not reviews
    # a claim whose post failed is released, and can be claimed again
    assert store.release_fingerprints(REPO, 3, [FP2, "00000000000000aa"]) == 1
    assert store.posted_fingerprints(REPO, 3) == {FP1}
    assert store.claim_fingerprints(REPO, 3, [FP2]) == {FP2}
    assert store.release_fingerprints(REPO, 4, []) == 0


def test_two_replicas_racing_for_the_same_findings_claim_each_exactly_once(
    open_review_store,
) -> None:
    """Two stores (two connections: two replicas on PostgreSQL, two processes on one
    SQLite file) claim overlapping fingerprints at the same moment, again and again."""
    first, second = open_review_store(), open_review_store()
    rounds = 25
    prints = [f"{n:016x}" for n in range(8)]
    results: dict[tuple[int, int], set[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claim(index: int, store: Any) -> None:
        try:
            for pr in range(1, rounds + 1):
                start.wait(timeout=30)
                ordered = prints if index == 0 else list(reversed(prints))
                results[(index, pr)] = store.claim_fingerprints(REPO, pr, ordered)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=claim, args=(i, s)) for i, s in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for pr in range(1, rounds + 1):
        mine, theirs = results[(0, pr)], results[(1, pr)]
        assert mine.isdisjoint(theirs)
        assert mine | theirs == set(prints)
        assert first.posted_fingerprints(REPO, pr) == set(prints)


def test_concurrent_writers_from_threads(open_review_store) -> None:
    store = open_review_store()
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
