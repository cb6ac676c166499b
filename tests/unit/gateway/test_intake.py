"""Intake decisions: reviewed actions, drafts, the bot's own comments, chat commands."""

from __future__ import annotations

import pytest

from auto_review.core.jobs import WITHHELD_ARGUMENT, JobKind
from auto_review.core.redaction import Redactor
from auto_review.core.refs import HostKind, RepoRef
from auto_review.gateway.intake import IntakePolicy, plan_jobs
from auto_review.hosts.events import CommentEvent, IgnoredEvent, PullRequestEvent

REPO = RepoRef(HostKind.FORGEJO, "acme", "widgets")
HEAD = "a" * 40
BASE = "b" * 40


def pr_event(action: str = "opened", *, draft: bool = False, author: str = "alice"):
    return PullRequestEvent(
        repo=REPO,
        number=7,
        action=action,
        head_sha=HEAD,
        base_sha=BASE,
        author=author,
        draft=draft,
        title="Add widgets",
    )


def comment(body: str, *, author: str = "bob", on_pr: bool = True, comment_id: int = 99):
    return CommentEvent(
        repo=REPO,
        pr_number=7,
        comment_id=comment_id,
        author=author,
        body=body,
        is_pull_request=on_pr,
    )


POLICY = IntakePolicy(bot_login="review-bot")


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened", "ready_for_review"])
def test_reviewable_actions_become_one_review_job(action: str) -> None:
    decision = plan_jobs(pr_event(action), POLICY)
    assert decision.ignored_reason is None
    [job] = decision.jobs
    assert job.kind is JobKind.REVIEW
    assert (job.repo, job.pr_number, job.head_sha) == (REPO, 7, HEAD)
    assert job.requested_by == "alice" and job.source == "webhook"
    assert job.comment_id is None


def test_drafts_wait_unless_the_policy_reviews_them() -> None:
    assert plan_jobs(pr_event(draft=True), POLICY).ignored_reason == "draft"
    eager = IntakePolicy(bot_login="review-bot", review_drafts=True)
    assert len(plan_jobs(pr_event(draft=True), eager).jobs) == 1


def test_ignored_events_stay_ignored() -> None:
    decision = plan_jobs(IgnoredEvent("github event 'ping' is not handled"), POLICY)
    assert decision.jobs == () and decision.ignored_reason == "unsupported-event"
    assert decision.detail == "github event 'ping' is not handled"


def test_source_is_carried_into_the_job() -> None:
    [job] = plan_jobs(pr_event(), POLICY, source="poller").jobs
    assert job.source == "poller"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("@review-bot help", JobKind.CHAT_HELP),
        ("@review-bot re-review", JobKind.RE_REVIEW),
        ("@review-bot remember we use tabs in Makefiles", JobKind.CHAT_REMEMBER),
        ("@review-bot what does this function return on error?", JobKind.CHAT_QUESTION),
    ],
)
def test_commands_become_chat_jobs_keyed_by_their_comment(body: str, kind: JobKind) -> None:
    [job] = plan_jobs(comment(body), POLICY).jobs
    assert job.kind is kind
    assert job.comment_id == 99 and job.head_sha == ""
    assert job.requested_by == "bob"
    assert "comment:99" in job.dedup_key


def test_forget_with_an_id_is_a_forget_job() -> None:
    [job] = plan_jobs(comment("@review-bot forget 12"), POLICY).jobs
    assert job.kind is JobKind.CHAT_FORGET
    assert "12" in job.argument


def test_the_bots_own_comments_never_become_jobs() -> None:
    for author in ("review-bot", "Review-Bot"):
        decision = plan_jobs(comment("@review-bot help", author=author), POLICY)
        assert decision.jobs == () and decision.ignored_reason == "own-comment"


def test_plain_comments_and_issue_comments_are_ignored() -> None:
    assert plan_jobs(comment("looks good to me"), POLICY).ignored_reason == "no-command"
    decision = plan_jobs(comment("@review-bot help", on_pr=False), POLICY)
    assert decision.ignored_reason == "not-a-pull-request"


def test_mention_follows_the_bot_login_and_defaults_to_auto_review() -> None:
    assert plan_jobs(comment("@auto-review help"), POLICY).ignored_reason == "no-command"
    [job] = plan_jobs(comment("@auto-review help"), IntakePolicy()).jobs
    assert job.kind is JobKind.CHAT_HELP


def test_github_app_bot_is_mentioned_without_its_suffix_and_never_answers_itself() -> None:
    policy = IntakePolicy(bot_login="auto-review[bot]")
    assert policy.mention == "@auto-review"
    [job] = plan_jobs(comment("@auto-review help"), policy).jobs
    assert job.kind is JobKind.CHAT_HELP
    own = plan_jobs(comment("@auto-review help", author="auto-review[bot]"), policy)
    assert own.ignored_reason == "own-comment"


SECRET_CANARY = "canary-forge-token-7Qm2Lp9Xv4Rt8Wz1"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (f"@review-bot remember the deploy token is {SECRET_CANARY}", JobKind.CHAT_REMEMBER),
        (f"@review-bot does {SECRET_CANARY} still work?", JobKind.CHAT_QUESTION),
        (
            "@review-bot remember clone from https://bot:hunter22@forge.example/x",
            JobKind.CHAT_REMEMBER,
        ),
    ],
)
def test_a_chat_argument_holding_a_secret_is_withheld_before_it_is_queued(
    body: str, kind: JobKind
) -> None:
    policy = IntakePolicy(bot_login="review-bot", redactor=Redactor([SECRET_CANARY]))
    [job] = plan_jobs(comment(body), policy).jobs
    assert job.kind is kind
    assert job.argument == WITHHELD_ARGUMENT
    assert SECRET_CANARY not in repr(job) and "hunter22" not in repr(job)


def test_a_chat_argument_without_a_secret_is_kept_as_written() -> None:
    policy = IntakePolicy(bot_login="review-bot", redactor=Redactor([SECRET_CANARY]))
    [job] = plan_jobs(comment("@review-bot remember we vendor third_party/"), policy).jobs
    assert job.argument == "we vendor third_party/"
