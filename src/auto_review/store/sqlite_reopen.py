"""A reopened pull request gets its head reviewed again unless that head was reviewed.

A review job is keyed by its head (`JobRequest.dedup_key`), so the `reopened` event of a
PR whose head had a job before would be a duplicate. That is right when the earlier job
posted its review, and wrong when it did not: it failed (an `error` status), or it was
skipped (the PR had been closed before the job ran, it was a draft, ...). For requests
marked `redo_unless_reviewed`, such an earlier finished job gives up its key (it keeps its
row, renamed `<key>|redone-by-reopen:<id>`), so the new request is queued as new. An
earlier job still pending or running, or one that succeeded, keeps the request a duplicate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

# Finished without a posted review: failed for good, or done without success.
_NOT_REVIEWED = "(status = 'failed' OR (status = 'done' AND COALESCE(outcome, '') <> 'succeeded'))"


def release_unreviewed_keys(connection: sqlite3.Connection, keys: Iterable[str]) -> set[str]:
    """Rename the finished, not reviewed jobs holding ``keys``; returns the keys freed."""
    freed: set[str] = set()
    for key in sorted(set(keys)):
        renamed = connection.execute(
            "UPDATE jobs SET dedup_key = dedup_key || '|redone-by-reopen:' || id"  # noqa: S608
            f" WHERE dedup_key = ? AND {_NOT_REVIEWED}",
            (key,),
        ).rowcount
        if renamed:
            freed.add(key)
    return freed
