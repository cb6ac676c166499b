"""Jobs: what the gateway queues, and the interface that runs them.

A job is born from a verified pull-request event, a chat command, the poller or the CI
trigger. It is deduplicated by `JobRequest.dedup_key` and executed by a `ReviewRunner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from auto_review.core.errors import TransientError
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


# "follow-up": queued by a review that found its PR at a newer head (wiring/runner.py).
JOB_SOURCES = frozenset({"webhook", "poller", "ci", "follow-up"})

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
    source: str  # "webhook" | "poller" | "ci" | "follow-up"
    # A reopened pull request: an earlier job for the same key that did not end in a posted
    # review (failed, or skipped, e.g. because the PR was closed) does not make this one a
    # duplicate. Not stored: it only matters at accept time.
    redo_unless_reviewed: bool = False

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
    final_attempt: bool = False  # set by the worker: a transient failure now ends the job


class ReviewRunner(Protocol):
    """Executes one job.

    Returning a :class:`JobOutcome` ends the job. Raising a
    :class:`~auto_review.core.errors.TransientError` (or an exception raised from one) means
    "try again later": the worker pool retries with backoff until the retry horizon.
    Raising anything else is a permanent failure (a bug, most likely): the job fails at
    once, never retried. ``job.final_attempt`` tells the runner that a transient failure
    now ends the job, so it should leave a final status behind.
    """

    async def run(self, job: Job) -> JobOutcome: ...

    async def conclude(self, job: Job, reason: str) -> None:
        """Leave the visible end of a job that :meth:`run` did not finish: the worker
        stopped its final attempt at the time limit. ``reason`` is one fixed line (no
        secret). For a review, an ``error`` status on its head; for a chat command, a reply.
        Raises when the forge cannot take it."""
        ...


class JobTimedOut(TransientError):
    """An attempt ran past the worker's time limit and was stopped. Transient: a slow forge,
    model or disk may be quicker next time; the final attempt concludes the job instead."""


DEFAULT_RETRY_HORIZON_SECONDS = 86400.0


@dataclass(frozen=True, slots=True)
class JobRetryPolicy:
    """How long and how often a job that met a transient failure is tried again.

    Retries go on, with exponential backoff and jitter, until ``horizon_seconds`` after the
    job was accepted; the attempt that starts past the horizon is the final one. A job
    interrupted by ``max_interruptions`` restarts in a row (one that kills the gateway each
    time) fails instead of crash-looping it. An attempt stopped at the job time limit when
    the job has had ``max_timed_out_attempts`` attempts ends it: each such attempt holds a
    worker for the whole limit, and one that always runs that long would otherwise hold one
    until the horizon.
    """

    horizon_seconds: float = DEFAULT_RETRY_HORIZON_SECONDS
    base_delay_seconds: float = 5.0
    max_delay_seconds: float = 600.0
    jitter: float = 0.5  # the share of each delay drawn at random: delay * [1 - jitter, 1]
    max_interruptions: int = 3
    max_timed_out_attempts: int = 3

    def __post_init__(self) -> None:
        if self.horizon_seconds < 0:
            raise ValueError("the retry horizon must not be negative")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValueError("retry delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("retry jitter must be between 0 and 1")
        if self.max_interruptions < 1:
            raise ValueError("max_interruptions must be at least 1")
        if self.max_timed_out_attempts < 1:
            raise ValueError("max_timed_out_attempts must be at least 1")

    def ends_after_timeout(self, job: Job) -> bool:
        """An attempt of ``job`` stopped at the time limit ends the job (no retry)."""
        return job.attempts >= self.max_timed_out_attempts

    def deadline(self, job: Job) -> float:
        """Unix time after which a transient failure ends the job."""
        return job.enqueued_at + self.horizon_seconds

    def is_final(self, job: Job, now: float) -> bool:
        return now >= self.deadline(job)

    def delay_after(self, attempts: int, draw: float = 1.0) -> float:
        """Exponential backoff: base, 2*base, 4*base, ... capped, then scaled by the jitter
        (``draw`` is a random number in [0, 1])."""
        exponent = min(max(attempts - 1, 0), 62)
        delay: float = min(self.base_delay_seconds * 2.0**exponent, self.max_delay_seconds)
        return delay * (1.0 - self.jitter * (1.0 - min(max(draw, 0.0), 1.0)))

    def next_delay(self, job: Job, now: float, draw: float = 1.0) -> float:
        """The wait before the next attempt, never past the deadline: the attempt that
        starts at the deadline is the final one."""
        return max(min(self.delay_after(job.attempts, draw), self.deadline(job) - now), 0.0)


@dataclass(slots=True)
class RecordingRunner:
    """A runner that records every job it is asked to run and answers a fixed outcome.

    The gateway uses it until the review pipeline is wired in, and tests use it to see
    exactly what the queue handed out.
    """

    outcome: JobOutcome = JobOutcome.SUCCEEDED
    jobs: list[Job] = field(default_factory=list)
    concluded: list[tuple[Job, str]] = field(default_factory=list)

    async def run(self, job: Job) -> JobOutcome:
        self.jobs.append(job)
        return self.outcome

    async def conclude(self, job: Job, reason: str) -> None:
        self.concluded.append((job, reason))
