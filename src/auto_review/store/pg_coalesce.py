"""Coalescing review jobs per pull request in PostgreSQL, safe between replicas.

As in SQLite (`sqlite_coalesce`): a pull request's newest accepted review job supersedes its
queued older ones, and a job that comes back to the queue behind a newer one is superseded
instead. Here several transactions may coalesce one pull request at once: each locks the
pull request's `pull_requests` row first (`FOR UPDATE`), so they take turns, and one that
finds a newer job already recorded (another replica's, committed first) supersedes its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

from auto_review.store.sqlite_coalesce import superseded_detail

Connection = psycopg.Connection[Any]
PrKey = tuple[str, str, str, int]


@dataclass(frozen=True, slots=True)
class NewReview:
    """A review job inserted by the current transaction."""

    job_id: int
    pr: PrKey
    head_sha: str


_SUPERSEDE: LiteralString = (
    "UPDATE jobs SET status = 'done', outcome = 'superseded', superseded_by = %s,"
    " finished_at = %s, claimed_by = NULL, locked_until = NULL, detail = %s"
    " WHERE id = ANY(%s) AND status = 'pending'"
)


def coalesce(connection: Connection, reviews: list[NewReview], now: float) -> int:
    """Each pull request's newest review replaces its queued older ones; returns how many
    jobs this accept's reviews superseded. The pull request's row is locked first, so two
    transactions coalescing one pull request take turns (in a fixed order: no deadlock
    between two accepts touching several pull requests)."""
    newest: dict[PrKey, NewReview] = {}
    older: dict[PrKey, list[int]] = {}
    for review in reviews:
        current = newest.get(review.pr)
        if current is None or review.job_id > current.job_id:
            if current is not None:
                older.setdefault(review.pr, []).append(current.job_id)
            newest[review.pr] = review
        else:
            older.setdefault(review.pr, []).append(review.job_id)
    superseded = 0
    for pr in sorted(newest):
        mine = newest[pr]
        replaced = older.get(pr, [])
        previous = _lock_pull_request(connection, pr, mine)
        winner_id, winner_head = mine.job_id, mine.head_sha
        if previous is not None:
            previous_id, previous_head = previous
            if previous_id > mine.job_id:
                # Another replica committed a newer head first: it replaces this one.
                winner_id, winner_head = previous_id, previous_head
                replaced.append(mine.job_id)
            else:
                replaced.append(previous_id)
                connection.execute(
                    "UPDATE pull_requests SET latest_job_id = %s, latest_head = %s"
                    " WHERE host = %s AND owner = %s AND name = %s AND pr_number = %s",
                    (mine.job_id, mine.head_sha, *pr),
                )
        if replaced:
            count = connection.execute(
                _SUPERSEDE,
                (winner_id, now, superseded_detail(winner_id, winner_head), replaced),
            ).rowcount
            if winner_id == mine.job_id:
                superseded += count
    return superseded


def _lock_pull_request(
    connection: Connection, pr: PrKey, mine: NewReview
) -> tuple[int, str] | None:
    """Lock the pull request's row and return its newest job before this accept (None:
    none, and the row now records `mine`)."""
    select: LiteralString = (
        "SELECT latest_job_id, latest_head FROM pull_requests WHERE host = %s AND owner = %s"
        " AND name = %s AND pr_number = %s FOR UPDATE"
    )
    row = connection.execute(select, pr).fetchone()
    if row is None:
        created = connection.execute(
            "INSERT INTO pull_requests (host, owner, name, pr_number, latest_job_id,"
            " latest_head) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (*pr, mine.job_id, mine.head_sha),
        ).fetchone()
        if created is not None:
            return None
        row = connection.execute(select, pr).fetchone()  # another transaction made it
        assert row is not None
    return int(row[0]), str(row[1])


def supersede_if_behind(
    connection: Connection, where: LiteralString, parameters: tuple[object, ...]
) -> int:
    """Supersede the review jobs `j` matching `where` that a newer accepted job of their
    pull request replaced; the first parameter is the finish time."""
    return connection.execute(
        "UPDATE jobs j SET status = 'done', outcome = 'superseded', claimed_by = NULL,"  # noqa: S608
        " locked_until = NULL, finished_at = %s, superseded_by = p.latest_job_id,"
        " detail = 'superseded by job ' || p.latest_job_id || ' (head '"
        " || substr(p.latest_head, 1, 12) || ')'"
        " FROM pull_requests p WHERE p.host = j.host AND p.owner = j.owner"
        " AND p.name = j.name AND p.pr_number = j.pr_number AND j.kind = 'review'"
        " AND j.id < p.latest_job_id AND " + where,
        parameters,
    ).rowcount
