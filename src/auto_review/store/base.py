"""Store interfaces: what the gateway needs from durable state, independent of the backend.

Two backends implement each protocol: SQLite in the state directory (`sqlite_intake`,
`sqlite_review`), the embedded default, and PostgreSQL (`pg_intake`, `pg_review`) for several
gateway replicas sharing one database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from auto_review.core.jobs import Job, JobOutcome, JobRequest
from auto_review.core.refs import RepoRef

DELIVERY_SOURCES = frozenset({"forgejo", "github"})
MAX_DELIVERY_ID_CHARS = 200


class StoreError(Exception):
    """The store could not do what was asked; the message never contains request data."""


class StoreBusy(StoreError):
    """The submission queue is full; the caller should answer 503 and let the sender retry."""


class StoreClosed(StoreError):
    """The store was closed (or its writer stopped); nothing more can be written."""


class SchemaTooNew(StoreError):
    """The database was written by a newer version of auto-review."""


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobListing:
    """One job as ``auto-review history jobs`` shows it."""

    id: int
    kind: str
    repo: str  # host:owner/name
    pr_number: int
    head_sha: str
    state: str  # one of JOB_STATES
    attempts: int
    enqueued_at: float
    not_before: float
    detail: str  # the last error or outcome note; never a secret (see the worker)
    superseded_by: int | None = None  # the newer job that replaced this one, if any


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    """One webhook delivery, identified per source (forge delivery ids are per forge)."""

    source: str  # "forgejo" | "github"
    delivery_id: str

    def __post_init__(self) -> None:
        if self.source not in DELIVERY_SOURCES:
            raise ValueError(f"delivery source must be one of {sorted(DELIVERY_SOURCES)}")
        if not self.delivery_id or len(self.delivery_id) > MAX_DELIVERY_ID_CHARS:
            raise ValueError(f"delivery id must be 1..{MAX_DELIVERY_ID_CHARS} characters")


@dataclass(frozen=True, slots=True)
class AcceptResult:
    duplicate_delivery: bool
    new_jobs: int
    duplicate_jobs: int
    superseded_jobs: int = 0  # queued reviews of older heads this accept replaced


# superseded: a queued review replaced by a newer head's job (status 'done' in the table).
JOB_STATES = ("queued", "running", "waiting-retry", "done", "failed", "superseded")
# The queue's two lanes: chat commands (re-review included: someone is waiting for the
# answer) are claimed before reviews of pushed heads.
JOB_LANES = ("chat", "review")
QUEUE_STATES = ("queued", "waiting-retry", "running")


def job_lane(kind: str) -> str:
    return "review" if kind == "review" else "chat"


@dataclass(frozen=True, slots=True)
class JobOverview:
    """The queue at one moment, for /metrics and operators."""

    by_state: dict[str, int]  # JOB_STATES -> count; waiting-retry: pending, due later
    oldest_waiting_seconds: float  # age of the oldest pending job (0 when none waits)
    # JOB_LANES -> QUEUE_STATES -> count: what waits or runs, by lane
    queue_by_lane: dict[str, dict[str, int]] = field(default_factory=dict)
    # JOB_LANES -> age of the lane's oldest pending job (0 when none waits)
    oldest_waiting_by_lane: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The overview as /info shows it."""
        return {
            "by_state": dict(self.by_state),
            "oldest_waiting_seconds": round(self.oldest_waiting_seconds, 1),
            "queue_by_lane": {lane: dict(states) for lane, states in self.queue_by_lane.items()},
            "oldest_waiting_by_lane": {
                lane: round(age, 1) for lane, age in self.oldest_waiting_by_lane.items()
            },
        }


@dataclass(frozen=True, slots=True)
class RequeueResult:
    requeued: int  # interrupted jobs put back to pending
    gave_up: int  # interrupted jobs that had used all their attempts, now failed
    superseded: int = 0  # interrupted reviews a newer head's job had replaced meanwhile


class IntakeStore(Protocol):
    """Durable intake: delivery dedup plus job enqueue, committed before returning."""

    async def accept(
        self, delivery: DeliveryRef | None, jobs: list[JobRequest]
    ) -> AcceptResult: ...

    def seen_comment(self, repo: RepoRef, comment_id: int) -> bool: ...

    def queue_depth(self) -> int: ...

    def counts(self) -> dict[JobStatus, int]: ...

    def job_overview(self) -> JobOverview: ...


class JobQueue(Protocol):
    """The worker side: claim, finish, retry, and recovery after a crash."""

    async def claim(self, worker: str) -> Job | None: ...

    async def finish(self, job_id: int, outcome: JobOutcome, detail: str = "") -> bool: ...

    async def retry_later(self, job_id: int, delay_seconds: float, detail: str) -> bool: ...

    async def give_up(self, job_id: int, detail: str) -> bool: ...

    async def release(self, job_id: int) -> bool: ...

    def requeue_interrupted(self, max_interruptions: int = ...) -> RequeueResult: ...

    def add_new_jobs_listener(self, listener: NewJobsListener) -> None: ...


class NewJobsListener(Protocol):
    """Called right after a commit that made jobs claimable, on the committing thread."""

    def __call__(self) -> None: ...


# ---- review history and learnings ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Learning:
    id: int
    text: str
    author: str
    created_at: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class PurgeResult:
    pull_requests: int  # pull requests whose history was forgotten
    reviews: int


class LearningLimitReached(StoreError):
    """The repository already has the most learnings it may keep; forget some first."""


class ReviewHistoryStore(Protocol):
    """Review history (last reviewed head per pull request, the findings posted) and
    learnings, keyed by ``host|owner/name``; every method blocks (async callers use a
    thread). Implemented by `sqlite_review.ReviewStore` and `pg_review.PostgresReviewStore`.
    """

    def last_reviewed_sha(self, repo_key: str, pr: int) -> str | None: ...

    def record_review(
        self, repo_key: str, pr: int, head_sha: str, fingerprints: Iterable[str]
    ) -> None: ...

    def posted_fingerprints(self, repo_key: str, pr: int) -> set[str]: ...

    def claim_fingerprints(self, repo_key: str, pr: int, fingerprints: Iterable[str]) -> set[str]:
        """Record the fingerprints as posted; return those this call recorded (the others
        were already there). Two callers racing on one fingerprint: exactly one gets it."""
        ...

    def release_fingerprints(
        self, repo_key: str, pr: int, fingerprints: Iterable[str]
    ) -> int:
        """Undo a claim whose comments could not be posted; how many were released."""
        ...

    def reset_pr(self, repo_key: str, pr: int) -> int: ...

    def purge(self, older_than_seconds: float) -> PurgeResult: ...

    def add_learning(self, repo_key: str, text: str, author: str) -> int: ...

    def learnings(self, repo_key: str) -> list[Learning]: ...

    def forget_learning(self, repo_key: str, learning_id: int) -> bool: ...

    def close(self) -> None: ...
