"""The job model the worker pool and the store share: dedup keys, validation, backoff."""

from __future__ import annotations

import asyncio

import pytest

from auto_review.core.jobs import (
    Job,
    JobKind,
    JobOutcome,
    JobRequest,
    JobRetryPolicy,
    RecordingRunner,
)
from auto_review.core.refs import HostKind, RepoRef

REPO = RepoRef(HostKind.GITHUB, "octo", "hello.world")


def make(**changes: object) -> JobRequest:
    fields: dict[str, object] = {
        "kind": JobKind.REVIEW,
        "repo": REPO,
        "pr_number": 12,
        "head_sha": "f" * 40,
        "comment_id": None,
        "argument": "",
        "requested_by": "mona",
        "source": "webhook",
    }
    fields.update(changes)
    return JobRequest(**fields)  # type: ignore[arg-type]


def test_review_jobs_are_keyed_by_host_repo_pr_head_and_kind() -> None:
    assert make().dedup_key == f"github|octo/hello.world|12|{'f' * 40}|review"
    assert make(kind=JobKind.RE_REVIEW).dedup_key.endswith("|re-review")


def test_chat_jobs_are_keyed_by_their_comment() -> None:
    chat = make(kind=JobKind.CHAT_HELP, head_sha="", comment_id=991)
    assert chat.dedup_key == "github|octo/hello.world|12|comment:991|chat-help"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pr_number": 0}, "positive"),
        ({"pr_number": True}, "integer"),
        ({"source": "cron"}, "source"),
        ({"head_sha": "", "comment_id": None}, "head_sha or a comment_id"),
        ({"kind": "review"}, "JobKind"),
    ],
)
def test_malformed_requests_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**changes)


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = JobRetryPolicy(base_delay_seconds=5, max_delay_seconds=30, jitter=0.0)
    assert [policy.delay_after(n) for n in range(1, 6)] == [5, 10, 20, 30, 30]
    assert policy.delay_after(10_000) == 30  # no overflow however long the outage


def test_the_recording_runner_records_and_answers_its_outcome() -> None:
    runner = RecordingRunner(outcome=JobOutcome.SKIPPED)
    job = Job(id=7, request=make(), attempts=1, enqueued_at=0.0)
    assert asyncio.run(runner.run(job)) is JobOutcome.SKIPPED
    assert runner.jobs == [job]
