"""Writing a batch of accepts (delivery + jobs each) with a few multi-row statements.

Per batch: one lookup of known deliveries per source, one lookup of known job keys, one
multi-row insert of new deliveries and one of new jobs (chunked for SQLite's parameter
limit), whatever the number of callers. Duplicates are decided in order, so within one batch
the first accept of a delivery or job key wins, exactly as if they had run one by one.
Any SQLite error propagates: the group-commit writer then rolls the batch back and retries
each accept alone, so the error reaches only the caller whose accept caused it.

New review jobs then coalesce (`sqlite_coalesce`): in the same transaction, each pull
request's newest new review supersedes its queued reviews of older heads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from auto_review.core.jobs import JobRequest
from auto_review.store.base import AcceptResult, DeliveryRef
from auto_review.store.sqlite_coalesce import REVIEW_KIND, NewReview, supersede_older_heads
from auto_review.store.sqlite_reopen import release_unreviewed_keys

T = TypeVar("T")

# SQLite >= 3.32 allows 32766 parameters per statement; stay far below.
_ROWS_PER_STATEMENT = 250

_DUPLICATE_DELIVERY = AcceptResult(duplicate_delivery=True, new_jobs=0, duplicate_jobs=0)


@dataclass(frozen=True, slots=True)
class AcceptItem:
    delivery: DeliveryRef | None
    keys: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]  # jobs columns, see _JOB_INSERT
    received_at: float
    redo_keys: frozenset[str] = frozenset()  # see sqlite_reopen

    @classmethod
    def build(
        cls, delivery: DeliveryRef | None, jobs: Sequence[JobRequest], now: float
    ) -> AcceptItem:
        return cls(
            delivery=delivery,
            keys=tuple(request.dedup_key for request in jobs),
            rows=tuple(_job_row(request, now) for request in jobs),
            received_at=now,
            redo_keys=frozenset(r.dedup_key for r in jobs if r.redo_unless_reviewed),
        )


_JOB_INSERT = (
    "INSERT INTO jobs (dedup_key, kind, host, owner, name, pr_number, head_sha, comment_id,"
    " argument, requested_by, source, status, attempts, enqueued_at, not_before) VALUES "
)
_JOB_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
_JOB_RETURNING = " RETURNING id, dedup_key, kind, host, owner, name, pr_number, head_sha"
_KIND = 1  # the kind's place in a job row
_DELIVERY_INSERT = "INSERT INTO deliveries (source, delivery_id, received_at) VALUES "
_DELIVERY_VALUES = "(?, ?, ?)"


def write_accepts(
    connection: sqlite3.Connection, items: Sequence[AcceptItem]
) -> list[AcceptResult]:
    seen_deliveries = _known_deliveries(connection, items)
    seen_keys = _known_job_keys(connection, items)
    seen_keys -= release_unreviewed_keys(
        connection,
        (
            key
            for item in items
            if item.delivery is None
            or (item.delivery.source, item.delivery.delivery_id) not in seen_deliveries
            for key in item.redo_keys
            if key in seen_keys
        ),
    )
    results: list[AcceptResult] = []
    new_deliveries: list[tuple[object, ...]] = []
    new_jobs: list[tuple[object, ...]] = []
    review_keys: list[list[str]] = []  # per result: the keys of its new review jobs
    for item in items:
        if item.delivery is not None:
            pair = (item.delivery.source, item.delivery.delivery_id)
            if pair in seen_deliveries:
                results.append(_DUPLICATE_DELIVERY)
                review_keys.append([])
                continue
            seen_deliveries.add(pair)
            new_deliveries.append((*pair, item.received_at))
        added = 0
        reviews: list[str] = []
        for key, row in zip(item.keys, item.rows, strict=True):
            if key in seen_keys:
                continue
            seen_keys.add(key)
            new_jobs.append(row)
            added += 1
            if row[_KIND] == REVIEW_KIND:
                reviews.append(key)
        review_keys.append(reviews)
        results.append(
            AcceptResult(
                duplicate_delivery=False, new_jobs=added, duplicate_jobs=len(item.rows) - added
            )
        )
    _insert_rows(connection, _DELIVERY_INSERT, _DELIVERY_VALUES, new_deliveries)
    if not any(review_keys):
        _insert_rows(connection, _JOB_INSERT, _JOB_VALUES, new_jobs)
        return results
    inserted = _insert_returning(connection, new_jobs)
    now = max(item.received_at for item in items)
    superseded = supersede_older_heads(connection, inserted, now)
    for index, keys in enumerate(review_keys):
        count = sum(superseded.get(key, 0) for key in keys)
        if count:
            results[index] = replace(results[index], superseded_jobs=count)
    return results


def _known_deliveries(
    connection: sqlite3.Connection, items: Sequence[AcceptItem]
) -> set[tuple[str, str]]:
    by_source: dict[str, set[str]] = {}
    for item in items:
        if item.delivery is not None:
            by_source.setdefault(item.delivery.source, set()).add(item.delivery.delivery_id)
    known: set[tuple[str, str]] = set()
    for source, ids in by_source.items():
        for chunk in _chunks(sorted(ids)):
            marks = ", ".join("?" * len(chunk))
            rows = connection.execute(
                f"SELECT delivery_id FROM deliveries WHERE source = ? AND delivery_id IN ({marks})",  # noqa: S608
                (source, *chunk),
            )
            known.update((source, delivery_id) for (delivery_id,) in rows)
    return known


def _known_job_keys(connection: sqlite3.Connection, items: Sequence[AcceptItem]) -> set[str]:
    keys = sorted({key for item in items for key in item.keys})
    known: set[str] = set()
    for chunk in _chunks(keys):
        marks = ", ".join("?" * len(chunk))
        rows = connection.execute(
            f"SELECT dedup_key FROM jobs WHERE dedup_key IN ({marks})",  # noqa: S608
            chunk,
        )
        known.update(key for (key,) in rows)
    return known


def _insert_rows(
    connection: sqlite3.Connection, head: str, values: str, rows: list[tuple[object, ...]]
) -> None:
    for chunk in _chunks(rows):
        parameters = [value for row in chunk for value in row]
        connection.execute(head + ", ".join([values] * len(chunk)), parameters)


def _insert_returning(
    connection: sqlite3.Connection, rows: list[tuple[object, ...]]
) -> list[NewReview]:
    """Insert job rows; return the review jobs among them with their new ids."""
    reviews: list[NewReview] = []
    for chunk in _chunks(rows):
        parameters = [value for row in chunk for value in row]
        returned = connection.execute(
            _JOB_INSERT + ", ".join([_JOB_VALUES] * len(chunk)) + _JOB_RETURNING, parameters
        ).fetchall()  # read to the end, so the statement is finished before RELEASE
        reviews.extend(
            NewReview(
                job_id=int(job_id),
                pr=(str(host), str(owner), str(name), int(number)),
                head_sha=str(head),
                dedup_key=str(key),
            )
            for job_id, key, kind, host, owner, name, number, head in returned
            if kind == REVIEW_KIND
        )
    return reviews


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), _ROWS_PER_STATEMENT):
        yield values[start : start + _ROWS_PER_STATEMENT]


def _job_row(request: JobRequest, now: float) -> tuple[object, ...]:
    return (
        request.dedup_key,
        str(request.kind),
        str(request.repo.host),
        request.repo.owner,
        request.repo.name,
        request.pr_number,
        request.head_sha,
        request.comment_id,
        request.argument,
        request.requested_by,
        request.source,
        now,
        now,
    )
