"""Coalescing review jobs per pull request: only the newest accepted head stays queued.

`pull_requests` holds, per pull request, the newest review job accepted for it. Accepting a
review job for a newer head supersedes the previous newest one if it is still queued (not
running: a running review checks the head itself and skips a head that moved on), in the
accept's own transaction. A job that comes back to the queue behind a newer one (a retry
after a transient failure, a restart that interrupted it, a shutdown that released it) is
superseded there and then instead of being queued again. "Newer" means accepted later:
job ids grow with acceptance.

A superseded job ends with status 'done', outcome 'superseded', `superseded_by` naming its
replacement, and a detail saying so; `history jobs` lists it in the state 'superseded'.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

REVIEW_KIND = "review"
SUPERSEDED = "superseded"

PrKey = tuple[str, str, str, int]  # host, owner, name, number


@dataclass(frozen=True, slots=True)
class NewReview:
    """A review job inserted by the current transaction."""

    job_id: int
    pr: PrKey
    head_sha: str
    dedup_key: str


def superseded_detail(job_id: int, head_sha: str) -> str:
    return f"superseded by job {job_id} (head {head_sha[:12]})"


_SUPERSEDE_PREVIOUS = (
    "UPDATE jobs SET status = 'done', outcome = 'superseded', superseded_by = ?,"
    " finished_at = ?, claimed_by = NULL, detail = ?"
    " WHERE id = (SELECT latest_job_id FROM pull_requests"
    "             WHERE host = ? AND owner = ? AND name = ? AND pr_number = ?)"
    " AND status = 'pending' AND id < ?"
)
_SUPERSEDE_ONE = (
    "UPDATE jobs SET status = 'done', outcome = 'superseded', superseded_by = ?,"
    " finished_at = ?, claimed_by = NULL, detail = ? WHERE id = ? AND status = 'pending'"
)
_RECORD_LATEST = (
    "INSERT INTO pull_requests (host, owner, name, pr_number, latest_job_id, latest_head)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (host, owner, name, pr_number) DO UPDATE SET"
    " latest_job_id = excluded.latest_job_id, latest_head = excluded.latest_head"
    " WHERE excluded.latest_job_id > latest_job_id"
)


def supersede_older_heads(
    connection: sqlite3.Connection, reviews: Sequence[NewReview], now: float
) -> dict[str, int]:
    """Record the newest of `reviews` per pull request and supersede the queued older ones.

    Returns, for the dedup key of each pull request's newest new job, how many jobs it
    superseded. A few statements per pull request touched, each a primary-key lookup.
    """
    newest: dict[PrKey, NewReview] = {}
    for review in reviews:
        current = newest.get(review.pr)
        if current is None or review.job_id > current.job_id:
            newest[review.pr] = review
    counts: dict[str, int] = {}
    for pr, latest in newest.items():
        detail = superseded_detail(latest.job_id, latest.head_sha)
        count = connection.execute(
            _SUPERSEDE_PREVIOUS, (latest.job_id, now, detail, *pr, latest.job_id)
        ).rowcount
        older = [
            (latest.job_id, now, detail, review.job_id)
            for review in reviews
            if review.pr == pr and review.job_id < latest.job_id
        ]
        if older:
            count += connection.executemany(_SUPERSEDE_ONE, older).rowcount
        counts[latest.dedup_key] = count
    connection.executemany(
        _RECORD_LATEST,
        [(*pr, latest.job_id, latest.head_sha) for pr, latest in newest.items()],
    )
    return counts


def _latest(column: str) -> str:
    return (
        f"(SELECT p.{column} FROM pull_requests p WHERE p.host = jobs.host"  # noqa: S608
        " AND p.owner = jobs.owner AND p.name = jobs.name AND p.pr_number = jobs.pr_number)"
    )


# `where` is fixed text from this package; the first parameter is the finish time.
def supersede_if_behind(
    connection: sqlite3.Connection, where: str, parameters: tuple[object, ...]
) -> int:
    """Supersede the review jobs matching `where` that a newer accepted job for the same
    pull request has replaced; returns how many."""
    latest_id, latest_head = _latest("latest_job_id"), _latest("latest_head")
    return connection.execute(
        "UPDATE jobs SET status = 'done', outcome = 'superseded', claimed_by = NULL,"  # noqa: S608
        f" finished_at = ?, superseded_by = {latest_id},"
        f" detail = 'superseded by job ' || {latest_id} || ' (head '"
        f" || substr({latest_head}, 1, 12) || ')'"
        f" WHERE ({where}) AND kind = 'review' AND id < COALESCE({latest_id}, 0)",
        parameters,
    ).rowcount
