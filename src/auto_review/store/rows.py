"""Row <-> object conversions both intake stores share."""

from __future__ import annotations

from typing import Any

from auto_review.core.jobs import Job, JobKind, JobRequest
from auto_review.core.refs import HostKind, RepoRef

MAX_DETAIL_CHARS = 500


def job_from_row(row: tuple[Any, ...]) -> Job:
    (
        job_id,
        kind,
        host,
        owner,
        name,
        pr_number,
        head_sha,
        comment_id,
        argument,
        requested_by,
        source,
        attempts,
        enqueued_at,
    ) = row
    request = JobRequest(
        kind=JobKind(kind),
        repo=RepoRef(host=HostKind(host), owner=str(owner), name=str(name)),
        pr_number=int(pr_number),
        head_sha=str(head_sha),
        comment_id=None if comment_id is None else int(comment_id),
        argument=str(argument),
        requested_by=str(requested_by),
        source=str(source),
    )
    return Job(
        id=int(job_id),
        request=request,
        attempts=int(attempts),
        enqueued_at=float(enqueued_at),
    )


def clip_detail(detail: str) -> str:
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 1] + "…"
