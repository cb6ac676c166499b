"""PipelineRunner: every job kind reaches the pipeline or a chat handler with the right
outcome; build_runner wires the real LLM client and review store from the settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.review.test_pipeline_fakes import (
    REPO,
    FakeHost,
    MemoryStore,
    Origin,
    ScriptedModel,
    finding,
    make_deps,
    make_origin,
    review,
)

from auto_review.config import Settings
from auto_review.core.jobs import Job, JobKind, JobOutcome, JobRequest
from auto_review.hosts.base import HostUnavailable
from auto_review.hosts.review_types import CommitState
from auto_review.llm.api import LlmRefused, LlmUnavailable, Tier
from auto_review.wiring.runner import PipelineRunner, build_runner, mention_for


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    origin = make_origin(tmp_path)
    origin.push({"app.py": "def total(items):\n    return sum(items) * 2\n"})
    return origin


def job(kind: JobKind, *, head_sha: str = "", argument: str = "", comment: int | None = 9) -> Job:
    request = JobRequest(
        kind=kind,
        repo=REPO,
        pr_number=1,
        head_sha=head_sha,
        comment_id=None if head_sha else comment,
        argument=argument,
        requested_by="alice",
        source="webhook",
    )
    return Job(id=1, request=request, attempts=1, enqueued_at=0.0)


def runner_for(
    tmp: Path, host: FakeHost, model: ScriptedModel, store: MemoryStore
) -> PipelineRunner:
    return PipelineRunner(make_deps(tmp, host, model, store), store, mention="@review-bot")


def test_review_job_posts_and_succeeds(tmp_path: Path, origin: Origin) -> None:
    host, store = FakeHost(origin), MemoryStore()
    runner = runner_for(tmp_path, host, ScriptedModel([review(finding(line=2))]), store)
    outcome = asyncio.run(runner.run(job(JobKind.REVIEW, head_sha=origin.head_sha)))
    assert outcome is JobOutcome.SUCCEEDED
    assert len(host.posted_reviews) == 1


def test_review_job_for_an_old_head_is_skipped(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    runner = runner_for(tmp_path, host, ScriptedModel(), MemoryStore())
    assert asyncio.run(runner.run(job(JobKind.REVIEW, head_sha="e" * 40))) is JobOutcome.SKIPPED
    assert host.issue_comments == []  # no chat reply for an automatic review


def test_re_review_is_full_and_answers_a_skip_in_the_conversation(
    tmp_path: Path, origin: Origin
) -> None:
    host, store = FakeHost(origin, draft=True), MemoryStore()
    runner = runner_for(tmp_path, host, ScriptedModel(), store)
    assert asyncio.run(runner.run(job(JobKind.RE_REVIEW))) is JobOutcome.SKIPPED
    [reply] = host.issue_comments
    assert reply.startswith("@alice Not reviewed: draft pull request")


def test_re_review_reviews_an_already_reviewed_head_again(tmp_path: Path, origin: Origin) -> None:
    host, store = FakeHost(origin), MemoryStore()
    store.record_review("forgejo|acme/shop", 1, origin.head_sha, [])
    model = ScriptedModel([review(finding(line=2))])
    runner = runner_for(tmp_path, host, model, store)
    assert asyncio.run(runner.run(job(JobKind.REVIEW, head_sha=origin.head_sha))) is (
        JobOutcome.SKIPPED
    )
    assert asyncio.run(runner.run(job(JobKind.RE_REVIEW))) is JobOutcome.SUCCEEDED
    assert len(host.posted_reviews) == 1
    [reply] = host.issue_comments
    assert reply == (
        f"@alice Reviewed again at `{origin.head_sha[:12]}`: 1 new finding, in the review above."
    )


def test_a_re_review_that_finds_nothing_new_still_answers(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    runner = runner_for(tmp_path, host, ScriptedModel([review()]), MemoryStore())
    assert asyncio.run(runner.run(job(JobKind.RE_REVIEW))) is JobOutcome.SUCCEEDED
    assert host.posted_reviews == []
    [reply] = host.issue_comments
    assert reply.startswith(f"@alice Reviewed again at `{origin.head_sha[:12]}`: nothing new")


def test_a_permanent_failure_is_failed_and_explained_to_a_re_review_requester(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(errors={Tier.REASONING: LlmRefused("reasoning tier: 401")})
    runner = runner_for(tmp_path, host, model, MemoryStore())
    assert asyncio.run(runner.run(job(JobKind.RE_REVIEW))) is JobOutcome.FAILED
    assert host.statuses[-1].state is CommitState.ERROR
    assert "could not be done" in host.issue_comments[0]


def test_unavailability_raises_so_the_worker_retries(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin, fail_with={"get_pull_request_details": HostUnavailable("x", "503")})
    runner = runner_for(tmp_path, host, ScriptedModel(), MemoryStore())
    with pytest.raises(HostUnavailable):
        asyncio.run(runner.run(job(JobKind.REVIEW, head_sha=origin.head_sha)))


@pytest.mark.parametrize(
    ("kind", "argument", "outcome", "reply"),
    [
        (JobKind.CHAT_HELP, "", JobOutcome.SUCCEEDED, "`@review-bot re-review`"),
        (JobKind.CHAT_REMEMBER, "use pathlib", JobOutcome.SUCCEEDED, "learning #1"),
        (JobKind.CHAT_FORGET, "5", JobOutcome.FAILED, "no learning #5"),
        (JobKind.CHAT_QUESTION, "why * 2?", JobOutcome.SUCCEEDED, "The change looks fine."),
    ],
)
def test_chat_kinds_reach_their_handler(
    tmp_path: Path,
    origin: Origin,
    kind: JobKind,
    argument: str,
    outcome: JobOutcome,
    reply: str,
) -> None:
    host = FakeHost(origin)
    runner = runner_for(tmp_path, host, ScriptedModel(), MemoryStore())
    assert asyncio.run(runner.run(job(kind, argument=argument))) is outcome
    [posted] = host.issue_comments
    assert reply in posted


def test_mention_follows_the_bot_login() -> None:
    assert mention_for(None) == "@auto-review"
    assert mention_for("reviewer[bot]") == "@reviewer"


def test_build_runner_needs_an_llm(tmp_path: Path) -> None:
    assert build_runner(Settings(state_dir=tmp_path), {}) is None


def test_build_runner_wires_the_client_the_store_and_the_git_policy(tmp_path: Path) -> None:
    stale = tmp_path / "work" / "ar-job-leftover"
    stale.mkdir(parents=True)
    settings = Settings(
        state_dir=tmp_path,
        llm_base_url="http://127.0.0.1:9/v1",
        llm_reasoning_model="big",
        review_max_clone_bytes=8 * 1024 * 1024,
        bot_login="review-bot",
    )
    runner = build_runner(
        settings, {}, environ={"HTTPS_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "localhost"}
    )
    assert runner is not None
    try:
        deps = runner.deps
        assert deps.workspace.policy.https_proxy == "http://127.0.0.1:3128"
        assert deps.workspace.policy.no_proxy == "localhost"
        assert deps.workspace.policy.allow_file_protocol is False
        assert deps.workspace.max_clone_bytes == 8 * 1024 * 1024
        assert deps.workspace.parent == tmp_path / "work"
        assert not stale.exists()  # a killed job's directory is cleaned up at start
        assert (tmp_path / "review.sqlite3").exists()
        assert runner.chat.mention == "@review-bot"
        assert runner.collectors  # the LLM client's metrics, for /metrics
    finally:
        asyncio.run(runner.aclose())


def test_the_last_attempt_ends_the_pending_status(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(errors={Tier.REASONING: LlmUnavailable("reasoning tier: timeout")})
    runner = runner_for(tmp_path, host, model, MemoryStore())
    first = job(JobKind.REVIEW, head_sha=origin.head_sha)
    with pytest.raises(LlmUnavailable):
        asyncio.run(runner.run(first))
    assert [s.state for s in host.statuses] == [CommitState.PENDING]  # a retry follows
    last = Job(id=1, request=first.request, attempts=7, enqueued_at=0.0, final_attempt=True)
    with pytest.raises(LlmUnavailable):
        asyncio.run(runner.run(last))
    assert host.statuses[-1].state is CommitState.ERROR
    assert host.statuses[-1].description == "review failed at llm: the LLM stayed unavailable"


def test_an_unexpected_exception_ends_in_one_error_status_and_no_retry(
    tmp_path: Path, origin: Origin
) -> None:
    from auto_review.gateway.worker import RunResult, WorkerPool
    from auto_review.store.base import JobStatus
    from auto_review.store.sqlite_intake import SqliteIntakeStore

    host = FakeHost(origin, fail_with={"list_reviews": RuntimeError("bug with a token abc")})
    model = ScriptedModel(reviews=[review(finding("src/app.py", 2, title="Bug"))])
    runner = runner_for(tmp_path, host, model, MemoryStore())
    store = SqliteIntakeStore.open(tmp_path / "state")
    outcomes: list[RunResult] = []

    async def scenario() -> None:
        finished = asyncio.Event()

        class Observer:
            def on_job_finished(
                self, kind: JobKind, outcome: RunResult, seconds: float
            ) -> None:
                outcomes.append(outcome)
                finished.set()

        await store.accept(None, [job(JobKind.REVIEW, head_sha=origin.head_sha).request])
        pool = WorkerPool(store, runner, concurrency=1, observer=Observer())
        await pool.start()
        await asyncio.wait_for(finished.wait(), timeout=30)
        await pool.stop()

    try:
        asyncio.run(scenario())
        row = store.job_status(1)
    finally:
        store.close()
    assert outcomes == [RunResult.FAILED]
    assert row is not None and (row[0], row[1], row[3]) == (JobStatus.FAILED, "failed", 1)
    errors = [s for s in host.statuses if s.state is CommitState.ERROR]
    assert [s.description for s in errors] == [
        "review failed at mapping: internal error (RuntimeError)"
    ]
    assert host.statuses[-1].state is CommitState.ERROR  # nothing after it, no retry


LIMIT = "it ran past the time limit of 900 s (AR_JOB_TIMEOUT_SECONDS)"


def test_conclude_leaves_an_error_status_on_the_queued_head(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    runner = runner_for(tmp_path, host, ScriptedModel(), MemoryStore())
    asyncio.run(runner.conclude(job(JobKind.REVIEW, head_sha="e" * 40), LIMIT))
    [(_, (sha, status))] = [c for c in host.calls if c[0] == "post_status"]
    assert sha == "e" * 40 and status.state is CommitState.ERROR
    assert status.description == f"review failed: {LIMIT}"
    assert host.issue_comments == []


def test_conclude_of_a_re_review_marks_the_current_head_and_replies(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    runner = runner_for(tmp_path, host, ScriptedModel(), MemoryStore())
    asyncio.run(runner.conclude(job(JobKind.RE_REVIEW), LIMIT))
    [(_, (sha, status))] = [c for c in host.calls if c[0] == "post_status"]
    assert sha == origin.head_sha and status.state is CommitState.ERROR
    assert host.issue_comments == [f"@alice The review could not be done: {LIMIT}."]


def test_conclude_of_a_chat_question_replies(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    runner = runner_for(tmp_path, host, ScriptedModel(), MemoryStore())
    asyncio.run(runner.conclude(job(JobKind.CHAT_QUESTION, argument="why?"), LIMIT))
    assert host.statuses == []
    assert host.issue_comments == [f"@alice Sorry, I could not answer: {LIMIT}."]
