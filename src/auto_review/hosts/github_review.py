"""GitHub JSON shapes of the review pipeline: reading listings, building request bodies.

Pure functions; :mod:`auto_review.hosts.github` does the HTTP. Field meanings follow GitHub's
REST description (``diff-entry``, ``pull-request-review``, ``pull-request-review-comment``,
``issue-comment``, ``content-file``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from auto_review.hosts.base import (
    HostResponseError,
    HostResponseTooLarge,
    integer,
    login_of,
    optional_sha,
    optional_text,
    optional_time,
    text,
)
from auto_review.hosts.forgejo_review import truncate
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

STATUS_DESCRIPTION_LIMIT = 140  # GitHub refuses longer descriptions (422)

_FILE_STATUSES = {
    "added": FileChange.ADDED,
    "removed": FileChange.DELETED,
    "modified": FileChange.MODIFIED,
    "renamed": FileChange.RENAMED,
    "copied": FileChange.COPIED,
    "changed": FileChange.CHANGED,  # mode or type change
    "unchanged": FileChange.CHANGED,
}

_SIDES = {LineSide.NEW: "RIGHT", LineSide.OLD: "LEFT"}


def parse_changed_file(operation: str, item: Any) -> ChangedFile:
    status = text(operation, item, "status")
    change = _FILE_STATUSES.get(status)
    if change is None:
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


def parse_review(operation: str, item: Any) -> PostedReview:
    return PostedReview(
        id=integer(operation, item, "id"),
        author=login_of(item),
        commit_sha=optional_sha(operation, item, "commit_id"),
        body=optional_text(operation, item, "body"),
        submitted_at=optional_time(operation, item, "submitted_at"),
    )


def parse_review_comment(operation: str, item: Any) -> PostedReviewComment:
    line = item.get("line") if isinstance(item, dict) else None
    return PostedReviewComment(
        id=integer(operation, item, "id"),
        author=login_of(item),
        path=text(operation, item, "path"),
        line=line if type(line) is int and line > 0 else None,  # null once outdated
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
    """``pulls/create-review``: a COMMENT review with line/side comments."""
    return {
        "commit_id": draft.commit_sha,
        "body": draft.body,
        "event": "COMMENT",
        "comments": [
            {"path": c.path, "line": c.line, "side": _SIDES[c.side], "body": c.body}
            for c in draft.comments
        ],
    }


def status_payload(status: CommitStatus) -> dict[str, Any]:
    """``repos/create-commit-status``; the description is cut to GitHub's limit."""
    payload: dict[str, Any] = {
        "state": status.state.value,
        "context": status.context,
        "description": truncate(status.description, STATUS_DESCRIPTION_LIMIT),
    }
    if status.target_url:
        payload["target_url"] = status.target_url
    return payload


def file_content(operation: str, item: Any, max_bytes: int) -> bytes | None:
    """Bytes of a ``content-file`` object; None when the path is no regular file (a
    directory listing, a submodule, a symlink pointing outside the repository). Raises
    :class:`NeedsRawDownload` for files GitHub sends without content (1 MB to 100 MB)."""
    if not isinstance(item, dict) or item.get("type") != "file":
        return None
    size = integer(operation, item, "size")
    if size > max_bytes:
        raise HostResponseTooLarge(operation, max_bytes, 200)
    encoding = optional_text(operation, item, "encoding")
    if encoding == "none":
        raise NeedsRawDownload()
    if encoding != "base64":
        raise HostResponseError(operation, "file content has an unknown encoding", 200)
    try:
        data = base64.b64decode(text(operation, item, "content"), validate=False)
    except (binascii.Error, ValueError):
        raise HostResponseError(operation, "file content is not valid base64", 200) from None
    if len(data) != size:
        raise HostResponseError(operation, "file content does not match its size", 200)
    return data


class NeedsRawDownload(Exception):
    """The contents API left the content out; fetch it with the raw media type."""
