"""Gitea/Forgejo JSON shapes of the review pipeline: reading listings, building request bodies.

Pure functions; :mod:`auto_review.hosts.forgejo` does the HTTP. Field meanings follow Gitea's
``modules/structs`` (as described by its swagger):

- ``ChangedFile.status`` is ``added``, ``deleted``, ``renamed``, ``copied``, ``changed``
  (content modified) or ``unchanged`` (no line changed: a mode change).
- ``PullReviewComment.position`` is the line in the new file for comments on the new side,
  ``original_position`` the line in the old file for comments on the old side (the other
  one is 0).
- ``CreatePullReviewComment`` takes ``new_position`` or ``old_position`` ("or 0").
"""

from __future__ import annotations

import logging
from typing import Any

from auto_review.hosts.base import (
    integer,
    login_of,
    optional_sha,
    optional_text,
    optional_time,
    text,
)
from auto_review.hosts.review_types import (
    ChangedFile,
    CommitStatus,
    FileChange,
    IssueComment,
    LineSide,
    PostedReview,
    PostedReviewComment,
    ReviewDraft,
)

log = logging.getLogger(__name__)

STATUS_DESCRIPTION_LIMIT = 140  # same as GitHub's, so both forges show the same text

_FILE_STATUSES = {
    "added": FileChange.ADDED,
    "deleted": FileChange.DELETED,
    "removed": FileChange.DELETED,
    "renamed": FileChange.RENAMED,
    "copied": FileChange.COPIED,
    "changed": FileChange.MODIFIED,  # Gitea's word for a content change
    "modified": FileChange.MODIFIED,
    "unchanged": FileChange.CHANGED,  # listed without line changes: mode/type only
}


def parse_changed_file(operation: str, item: Any) -> ChangedFile:
    status = text(operation, item, "status")
    change = _FILE_STATUSES.get(status)
    if change is None:
        # A status a newer Gitea may add: still review the file, as a modification.
        log.warning("unknown changed-file status", extra={"operation": operation})
        change = FileChange.MODIFIED
    previous = optional_text(operation, item, "previous_filename")
    return ChangedFile(
        path=text(operation, item, "filename"),
        change=change,
        previous_path=previous or None,
        additions=integer(operation, item, "additions"),
        deletions=integer(operation, item, "deletions"),
    )


def parse_review(operation: str, item: Any) -> PostedReview | None:
    """A submitted review; None for review requests (``REQUEST_REVIEW``: nobody reviewed)."""
    if optional_text(operation, item, "state") == "REQUEST_REVIEW":
        return None
    return PostedReview(
        id=integer(operation, item, "id"),
        author=login_of(item),
        commit_sha=optional_sha(operation, item, "commit_id"),
        body=optional_text(operation, item, "body"),
        submitted_at=optional_time(operation, item, "submitted_at"),
    )


def parse_review_comment(operation: str, item: Any) -> PostedReviewComment:
    new_line = item.get("position") if isinstance(item, dict) else None
    old_line = item.get("original_position") if isinstance(item, dict) else None
    line = None
    for candidate in (new_line, old_line):
        if type(candidate) is int and candidate > 0:
            line = candidate
            break
    return PostedReviewComment(
        id=integer(operation, item, "id"),
        author=login_of(item),
        path=text(operation, item, "path"),
        line=line,
        body=optional_text(operation, item, "body"),
    )


def parse_issue_comment(operation: str, item: Any) -> IssueComment:
    return IssueComment(
        id=integer(operation, item, "id"),
        author=login_of(item),
        body=optional_text(operation, item, "body"),
        created_at=optional_time(operation, item, "created_at"),
    )


def review_payload(draft: ReviewDraft) -> dict[str, Any]:
    """``CreatePullReviewOptions``: always a COMMENT review pinned to the reviewed commit."""
    comments = []
    for comment in draft.comments:
        new_side = comment.side is LineSide.NEW
        comments.append(
            {
                "path": comment.path,
                "body": comment.body,
                "new_position": comment.line if new_side else 0,
                "old_position": 0 if new_side else comment.line,
            }
        )
    return {
        "event": "COMMENT",
        "commit_id": draft.commit_sha,
        "body": draft.body,
        "comments": comments,
    }


def status_payload(status: CommitStatus) -> dict[str, Any]:
    """``CreateStatusOption``; the description is cut to the shared limit."""
    payload: dict[str, Any] = {
        "state": status.state.value,
        "context": status.context,
        "description": truncate(status.description, STATUS_DESCRIPTION_LIMIT),
    }
    if status.target_url:
        payload["target_url"] = status.target_url
    return payload


def truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
