"""Leases of running jobs in PostgreSQL: what happens when one runs out.

A claim gives the job `locked_until` = now + the lease; the claiming store renews it while
its process lives (`pg_intake`). A job whose lease ran out belongs to nobody: its process
died, or lost the database for longer than the lease. It goes back to the queue, counted
as an interruption, or fails after too many in a row, or is superseded when a newer head of
its pull request was accepted meanwhile.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

from auto_review.store.base import RequeueResult
from auto_review.store.pg_coalesce import supersede_if_behind

Connection = psycopg.Connection[Any]


def expire_leases(connection: Connection, now: float, max_interruptions: int) -> RequeueResult:
    """Running jobs whose lease ran out: superseded (a newer head waits), failed (the
    `max_interruptions`-th interruption in a row), or back to pending, due now."""
    expired: LiteralString = "j.status = 'running' AND j.locked_until < %s"
    superseded = supersede_if_behind(connection, expired, (now, now))
    gave_up = connection.execute(
        "UPDATE jobs j SET status = 'failed', outcome = 'error', finished_at = %s,"  # noqa: S608
        " claimed_by = NULL, locked_until = NULL, interruptions = interruptions + 1,"
        " detail = 'interrupted (its worker stopped renewing the lease) on each of '"
        " || (interruptions + 1) || ' attempts'"
        " WHERE " + expired + " AND j.interruptions + 1 >= %s",
        (now, now, max_interruptions),
    ).rowcount
    requeued = connection.execute(
        "UPDATE jobs j SET status = 'pending', not_before = %s, claimed_by = NULL,"  # noqa: S608
        " locked_until = NULL, interruptions = interruptions + 1,"
        " detail = 'interrupted: its worker stopped renewing the lease'"
        " WHERE " + expired,
        (now, now),
    ).rowcount
    return RequeueResult(requeued=requeued, gave_up=gave_up, superseded=superseded)
