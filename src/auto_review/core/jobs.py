"""Jobs: what the gateway queues, and the interface that runs them.

A job is born from a verified pull-request event, a chat command, the poller or the CI
trigger. It is deduplicated by `JobRequest.dedup_key` and executed by a `ReviewRunner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from auto_review.core.refs import RepoRef


class JobKind(StrEnum):
    REVIEW = "review"
    RE_REVIEW = "re-review"
    CHAT_HELP = "chat-help"
    CHAT_REMEMBER = "chat-remember"
    CHAT_FORGET = "chat-forget"
    CHAT_QUESTION = "chat-question"


class JobOutcome(StrEnum):
    """What a runner reports for a job it ran to the end."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a deliberate, final failure (e.g. the PR vanished); never retried
    SKIPPED = "skipped"  # nothing to do (e.g. draft PR, head moved on)


JOB_SOURCES = frozenset({"webhook", "poller", "ci"})

# What intake stores instead of a chat argument that holds a configured secret: the text
# itself never reaches the queue, the state files or the logs. The handler answers that
# nothing was used.
WITHHELD_ARGUMENT = "\x00withheld: the text held a value that looks like a configured secret"


@dataclass(frozen=True, slots=True)
class JobRequest:
    kind: JobKind
    repo: RepoRef
    pr_number: int
    head_sha: str  # "" for chat jobs, which are keyed by their comment instead
    comment_id: int | None
    argument: str
    requested_by: str
    source: str  # "webhook" | "poller" | "ci"

    def __post_init__(self) -> None:
        if not isinstance(self.kind, JobKind):
            raise ValueError(f"job kind must be a JobKind, got {type(self.kind).__name__}")
        if isinstance(self.pr_number, bool) or not isinstance(self.pr_number, int):
            raise ValueError("pr_number must be an integer")
        if self.pr_number <= 0:
            raise ValueError("pr_number must be positive")
        if self.source not in JOB_SOURCES:
            raise ValueError(f"job source must be one of {sorted(JOB_SOURCES)}")
        if not self.head_sha and self.comment_id is None:
            # Without either the dedup key would collapse unrelated requests into one.
            raise ValueError("a job needs a head_sha or a comment_id")

    @property
    def dedup_key(self) -> str:
        anchor = self.head_sha or f"comment:{self.comment_id}"
        return (
            f"{self.repo.host}|{self.repo.owner}/{self.repo.name}|{self.pr_number}"
            f"|{anchor}|{self.kind}"
        )


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    request: JobRequest
    attempts: int  # attempts started so far, this one included
    enqueued_at: float  # unix seconds


class ReviewRunner(Protocol):
    """Executes one job. Raising means "try again later" (bounded by the retry policy)."""

    async def run(self, job: Job) -> JobOutcome: ...


@dataclass(frozen=True, slots=True)
class JobRetryPolicy:
    """Bounded retries for jobs whose runner raised (or that a crash interrupted)."""

    max_attempts: int = 3
    base_delay_seconds: float = 5.0
    max_delay_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValueError("retry delays must not be negative")

    def may_retry(self, attempts: int) -> bool:
        return attempts < self.max_attempts

    def delay_after(self, attempts: int) -> float:
        """Exponential backoff: base, 2*base, 4*base, ... capped."""
        exponent = max(attempts - 1, 0)
        delay: float = self.base_delay_seconds * 2.0**exponent
        return min(delay, self.max_delay_seconds)


@dataclass(slots=True)
class RecordingRunner:
    """A runner that records every job it is asked to run and answers a fixed outcome.

    The gateway uses it until the review pipeline is wired in, and tests use it to see
    exactly what the queue handed out.
    """

    outcome: JobOutcome = JobOutcome.SUCCEEDED
    jobs: list[Job] = field(default_factory=list)

    async def run(self, job: Job) -> JobOutcome:
        self.jobs.append(job)
        return self.outcome
