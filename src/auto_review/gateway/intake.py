"""From a verified forge event to the jobs it asks for.

Pure decisions, no I/O: which pull-request actions are reviewed, how drafts are treated,
which comments are commands, and that the bot never answers itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from auto_review.chat.commands import ChatCommand, parse_chat_command
from auto_review.core.jobs import WITHHELD_ARGUMENT, JobKind, JobRequest
from auto_review.core.redaction import Redactor
from auto_review.core.refs import is_from_bot
from auto_review.hosts.events import (
    CommentEvent,
    IgnoredEvent,
    PullRequestAction,
    PullRequestEvent,
    WebhookEvent,
)

REVIEWED_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})
DEFAULT_MENTION = "@auto-review"

COMMAND_KINDS: dict[str, JobKind] = {
    "help": JobKind.CHAT_HELP,
    "re-review": JobKind.RE_REVIEW,
    "remember": JobKind.CHAT_REMEMBER,
    "forget": JobKind.CHAT_FORGET,
    "question": JobKind.CHAT_QUESTION,
}


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    """What the operator decided about intake.

    ``bot_login``: the bot's account; its comments never become jobs (no loops).
    ``mention``: how a chat command starts, ``@<bot_login>`` when the login is known.
    ``review_drafts``: False (the default) leaves draft PRs alone until they are marked
    ready, which arrives as its own ``ready_for_review`` event.
    ``redactor``: knows the configured secrets; a chat argument it would change is stored
    as :data:`~auto_review.core.jobs.WITHHELD_ARGUMENT`, so no secret is kept at rest.
    """

    bot_login: str | None = None
    review_drafts: bool = False
    redactor: Redactor = field(default_factory=Redactor)

    @property
    def mention(self) -> str:
        # A GitHub App's account is "name[bot]" but people mention it as "@name".
        return f"@{self.bot_login.removesuffix('[bot]')}" if self.bot_login else DEFAULT_MENTION

    def is_bot(self, login: str) -> bool:
        return is_from_bot(login, self.bot_login)


@dataclass(frozen=True, slots=True)
class IntakeDecision:
    """The jobs an event asks for, or why it asks for none.

    ``ignored_reason`` is a fixed word (a metric label); ``detail`` is the parser's
    sentence for events it already ignored (built from fixed text, never raw payload).
    """

    jobs: tuple[JobRequest, ...] = ()
    ignored_reason: str | None = None
    detail: str | None = None


def ignored(reason: str, detail: str | None = None) -> IntakeDecision:
    return IntakeDecision(ignored_reason=reason, detail=detail)


def plan_jobs(event: WebhookEvent, policy: IntakePolicy, source: str = "webhook") -> IntakeDecision:
    """Map one parsed event to the jobs it requests."""
    if isinstance(event, PullRequestEvent):
        return _plan_pull_request(event, policy, source)
    if isinstance(event, CommentEvent):
        return _plan_comment(event, policy, source)
    if isinstance(event, IgnoredEvent):
        return ignored("unsupported-event", event.reason)
    return ignored("unsupported-event")


def _plan_pull_request(
    event: PullRequestEvent, policy: IntakePolicy, source: str
) -> IntakeDecision:
    if event.action not in REVIEWED_ACTIONS:
        return ignored("unsupported-action")
    if event.draft and not policy.review_drafts:
        return ignored("draft")
    request = JobRequest(
        kind=JobKind.REVIEW,
        repo=event.repo,
        pr_number=event.number,
        head_sha=event.head_sha,
        comment_id=None,
        argument="",
        requested_by=event.author,
        source=source,
        redo_unless_reviewed=event.action == PullRequestAction.REOPENED,
    )
    return IntakeDecision(jobs=(request,))


def _plan_comment(event: CommentEvent, policy: IntakePolicy, source: str) -> IntakeDecision:
    if not event.is_pull_request:
        return ignored("not-a-pull-request")
    if policy.is_bot(event.author):
        return ignored("own-comment")
    command = parse_chat_command(event.body, mention=policy.mention)
    if command is None:
        return ignored("no-command")
    job = command_job(event, command, source)
    if job.argument and policy.redactor(job.argument) != job.argument:
        job = replace(job, argument=WITHHELD_ARGUMENT)
    return IntakeDecision(jobs=(job,))


def command_job(event: CommentEvent, command: ChatCommand, source: str) -> JobRequest:
    """The job for one chat command; keyed by its comment, so each comment runs once."""
    return JobRequest(
        kind=COMMAND_KINDS[command.kind],
        repo=event.repo,
        pr_number=event.pr_number,
        head_sha="",
        comment_id=event.comment_id,
        argument=command.argument,
        requested_by=event.author,
        source=source,
    )
