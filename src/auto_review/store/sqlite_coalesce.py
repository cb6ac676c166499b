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
from collections.abc import Iterator, Sequence
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


# The previous newest review job of each given pull request, when it still waits.
# CROSS JOIN keeps the given list outermost: a primary-key search per pull request, never
# a scan of pull_requests.
_PENDING_PREVIOUS = (
    "WITH given (host, owner, name, pr_number) AS (VALUES {marks})"
    " SELECT p.host, p.owner, p.name, p.pr_number, p.latest_job_id FROM given g"
    " CROSS JOIN pull_requests p ON p.host = g.host AND p.owner = g.owner"
    " AND p.name = g.name AND p.pr_number = g.pr_number"
    " CROSS JOIN jobs j ON j.id = p.latest_job_id WHERE j.status = 'pending'"
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
    superseded. Three statements per batch whatever its size: one lookup of the previous
    newest jobs still pending, one update of the jobs superseded, one upsert of the newest.
    """
    newest: dict[PrKey, NewReview] = {}
    replaced: dict[PrKey, list[int]] = {}
    for review in reviews:
        current = newest.get(review.pr)
        if current is None:
            newest[review.pr] = review
            replaced[review.pr] = []
        elif review.job_id > current.job_id:
            newest[review.pr] = review
            replaced[review.pr].append(current.job_id)
        else:
            replaced[review.pr].append(review.job_id)
    for chunk in _chunks(list(newest)):
        rows = connection.execute(
            _PENDING_PREVIOUS.format(marks=", ".join(["(?, ?, ?, ?)"] * len(chunk))),
            [value for pr in chunk for value in pr],
        ).fetchall()
        for host, owner, name, number, job_id in rows:
            replaced[(str(host), str(owner), str(name), int(number))].append(int(job_id))
    updates = [
        (latest.job_id, now, superseded_detail(latest.job_id, latest.head_sha), job_id)
        for pr, latest in newest.items()
        for job_id in replaced[pr]
    ]
    if updates:
        connection.executemany(_SUPERSEDE_ONE, updates)
    connection.executemany(
        _RECORD_LATEST,
        [(*pr, latest.job_id, latest.head_sha) for pr, latest in newest.items()],
    )
    return {latest.dedup_key: len(replaced[pr]) for pr, latest in newest.items()}


_ROWS_PER_STATEMENT = 200  # 4 parameters each: far below SQLite's limit


def _chunks(values: list[PrKey]) -> Iterator[list[PrKey]]:
    for start in range(0, len(values), _ROWS_PER_STATEMENT):
        yield values[start : start + _ROWS_PER_STATEMENT]


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
