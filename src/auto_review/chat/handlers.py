"""What the bot does for each ``@auto-review`` chat command (parsed by :mod:`.commands`).

Who may run them: anyone who can comment on the pull request (the forge decides that);
the gateway never runs the bot's own comments (``AR_BOT_LOGIN``). Learnings are scoped to
the repository the command was given in: ``forget`` can only remove a learning of that
repository. A learning is model input, so it is framed as untrusted data in every prompt,
and text holding a configured secret is refused rather than stored.

Every reply is posted as a conversation comment. Text that did not come from this module
(the learning, the model's answer) is redacted with every configured secret and defused
(mentions, HTML, links) before it is posted, so a reply can never ping anyone, carry a
command for the bot, or leak a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from auto_review.core.errors import is_transient
from auto_review.core.jobs import WITHHELD_ARGUMENT, JobKind, JobOutcome, JobRequest
from auto_review.core.redaction import Redactor
from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostResponseError,
    HostUnavailable,
    PipelineHost,
)
from auto_review.llm.api import LlmError, LlmUnavailable, Tier
from auto_review.review.mapping import untrusted_text
from auto_review.review.pipeline import PipelineDeps, repo_key
from auto_review.review.stages.context import ContextBudgetError, build_question_messages
from auto_review.review.workspace.checkout import WorkspaceError
from auto_review.review.workspace.pull_request import pr_workspace, read_pr_diff, renewer
from auto_review.store.base import LearningLimitReached

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 20_000
QUESTION_TIER = Tier.REASONING  # questions about a PR need the model that reads code well


class LearningsStore(Protocol):
    """The learnings half of :class:`auto_review.store.sqlite_review.ReviewStore`."""

    def add_learning(self, repo_key: str, text: str, author: str) -> int: ...

    def learnings(self, repo_key: str) -> Sequence[object]: ...

    def forget_learning(self, repo_key: str, learning_id: int) -> bool: ...


def help_text(mention: str, problem: str = "") -> str:
    lines = []
    if problem:
        lines += [f"That command did not work: {problem}", ""]
    lines += [
        "**auto-review** commands (write them at the start of a line of a comment):",
        "",
        f"- `{mention} help`: this list.",
        f"- `{mention} re-review`: review the whole pull request again (findings already "
        "posted are not repeated).",
        f"- `{mention} remember <text>`: keep a note for later reviews of this repository, "
        'e.g. "we use pathlib, not os.path".',
        f"- `{mention} forget <id>`: drop the learning with that id (from this repository).",
        f"- `{mention} <question>`: ask about this pull request; the answer is based on the "
        "diff and the code of the pull request's head.",
    ]
    return "\n".join(lines)


WITHHELD_REPLY = (
    "That comment holds a value that looks like a configured secret; it was not used. "
    "Please delete the comment and rotate that secret."
)


@dataclass(frozen=True, slots=True)
class ChatHandlers:
    deps: PipelineDeps
    learnings: LearningsStore
    mention: str = "@auto-review"

    async def handle(self, request: JobRequest) -> JobOutcome:
        """Run one chat job and post its reply. HostUnavailable/LlmUnavailable propagate."""
        host = self.deps.host_for(request.repo)
        kind = request.kind
        if request.argument == WITHHELD_ARGUMENT and kind is not JobKind.CHAT_REMEMBER:
            reply, outcome = WITHHELD_REPLY, JobOutcome.FAILED
        elif kind is JobKind.CHAT_HELP:
            problem = _defused(request.argument, self._redactor())
            reply, outcome = help_text(self.mention, problem), JobOutcome.SUCCEEDED
        elif kind is JobKind.CHAT_REMEMBER:
            reply, outcome = await self._remember(request)
        elif kind is JobKind.CHAT_FORGET:
            reply, outcome = await self._forget(request)
        elif kind is JobKind.CHAT_QUESTION:
            reply, outcome = await self._answer(host, request)
        else:
            raise ValueError(f"not a chat job: {kind}")
        await self.post(host, request, reply)
        return outcome

    async def post(self, host: PipelineHost, request: JobRequest, reply: str) -> None:
        text = f"@{request.requested_by} {reply}" if request.requested_by else reply
        await host.post_issue_comment(request.repo, request.pr_number, self._redactor()(text))

    def _redactor(self) -> Redactor:
        return Redactor(self.deps.secrets)

    async def _remember(self, request: JobRequest) -> tuple[str, JobOutcome]:
        text = request.argument.strip()
        redactor = self._redactor()
        # Intake withholds such text before it is queued; the check here covers a job
        # queued by an older version or a secret configured since.
        if request.argument == WITHHELD_ARGUMENT or redactor(text) != text:
            return (
                "That text holds a value that looks like a configured secret; it was not stored.",
                JobOutcome.FAILED,
            )
        try:
            learning_id = await asyncio.to_thread(
                self.learnings.add_learning, repo_key(request.repo), text, request.requested_by
            )
        except LearningLimitReached:
            return (
                f"{request.repo.full_name} already has as many learnings as it may keep; "
                f"`{self.mention} forget ID` some first.",
                JobOutcome.FAILED,
            )
        except ValueError:
            return "There is nothing to remember: give the text after the command.", (
                JobOutcome.FAILED
            )
        return (
            f"Remembered as learning #{learning_id} for {request.repo.full_name} "
            f"(`{self.mention} forget {learning_id}` removes it):\n\n"
            f"> {_defused(text, redactor)}",
            JobOutcome.SUCCEEDED,
        )

    async def _forget(self, request: JobRequest) -> tuple[str, JobOutcome]:
        try:
            learning_id = int(request.argument)
        except ValueError:
            return help_text(self.mention, "`forget` needs a learning id"), JobOutcome.FAILED
        removed = await asyncio.to_thread(
            self.learnings.forget_learning, repo_key(request.repo), learning_id
        )
        if removed:
            return f"Forgot learning #{learning_id}.", JobOutcome.SUCCEEDED
        return (
            f"There is no learning #{learning_id} for {request.repo.full_name}.",
            JobOutcome.FAILED,
        )

    async def _answer(self, host: PipelineHost, request: JobRequest) -> tuple[str, JobOutcome]:
        deps = self.deps
        redactor = self._redactor()
        try:
            pr = await host.get_pull_request_details(request.repo, request.pr_number)
            access = await host.git_access(request.repo)
            redactor.add([access.token])
            renew = renewer(host, request.repo, redactor.add)
            async with pr_workspace(pr, access, deps.workspace, renew=renew) as workspace:
                diff = await asyncio.to_thread(
                    read_pr_diff, workspace, deps.workspace.max_diff_bytes
                )
                stored = await asyncio.to_thread(self.learnings.learnings, repo_key(request.repo))
                messages = build_question_messages(
                    question=request.argument,
                    title=pr.title,
                    files=diff.files,
                    tree=workspace.confined(),
                    learnings=[str(getattr(item, "text", item)) for item in stored],
                    budget_tokens=deps.context_tokens,
                )
                answer = await deps.llm.complete_text(QUESTION_TIER, messages)
        except (HostUnavailable, LlmUnavailable):
            raise
        except (HostError, LlmError, WorkspaceError, ContextBudgetError) as exc:
            if is_transient(exc):
                raise  # e.g. the forge's git endpoint unreachable: the job runs again
            log.warning(
                "chat question not answered",
                extra={"repo": request.repo.full_name, "error_type": type(exc).__name__},
            )
            return f"Sorry, I could not answer: {_question_failure(exc)}.", JobOutcome.FAILED
        text = answer.text.strip() or "(the model gave an empty answer)"
        return _defused(text, redactor), JobOutcome.SUCCEEDED


def _defused(text: str, redactor: Redactor) -> str:
    return untrusted_text(text, redactor, MAX_ANSWER_CHARS)


def _question_failure(exc: BaseException) -> str:
    if isinstance(exc, HostAuthError):
        return "the forge refused the bot's credentials"
    if isinstance(exc, HostNotFound):
        return "the forge did not find the pull request"
    if isinstance(exc, HostResponseError):
        return "the forge gave an unexpected answer"
    if isinstance(exc, WorkspaceError):
        return "the pull request could not be fetched"
    if isinstance(exc, LlmError):
        return "the model did not give a usable answer"
    if isinstance(exc, ContextBudgetError):
        return "the question and the diff do not fit the LLM context budget"
    return "an unexpected error"
