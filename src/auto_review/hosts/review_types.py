"""Provider-neutral types of the review boundary: what the pipeline reads from and posts to
a forge. Each client (:mod:`auto_review.hosts.forgejo`, :mod:`auto_review.hosts.github`) maps
them to its own API shapes; nothing above ``hosts/`` sees a forge's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class CommitState(StrEnum):
    """Commit status states common to Gitea and GitHub."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class LineSide(StrEnum):
    """Which version of the file an inline comment's line number refers to."""

    NEW = "new"  # Gitea new_position / GitHub side RIGHT
    OLD = "old"  # Gitea old_position / GitHub side LEFT


class FileChange(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"
    COPIED = "copied"
    CHANGED = "changed"  # mode or type change without content change


@dataclass(frozen=True, slots=True)
class PullRequestDetails:
    """Everything the pipeline reads about a PR besides its diff.

    ``clone_url`` is the https URL of the base repository (the PR head is fetched from it as
    ``head_ref``), without credentials. ``body`` is untrusted text written by the PR author.
    """

    number: int
    head_sha: str
    base_sha: str
    head_ref: str  # e.g. "refs/pull/7/head": fetchable from clone_url on both forges
    base_branch: str
    author: str
    draft: bool
    state: str  # "open" | "closed" | "merged"
    title: str
    body: str
    labels: tuple[str, ...]
    clone_url: str


@dataclass(frozen=True, slots=True)
class ChangedFile:
    path: str
    change: FileChange
    previous_path: str | None  # set for renames and copies
    additions: int
    deletions: int


@dataclass(frozen=True, slots=True)
class InlineComment:
    path: str
    line: int  # 1-based, in the version of the file named by side
    side: LineSide
    body: str


@dataclass(frozen=True, slots=True)
class ReviewDraft:
    """One review: a summary body plus inline comments, pinned to the reviewed commit.

    Always posted as a plain comment review (never approve / request changes): the bot
    informs, people decide.
    """

    commit_sha: str
    body: str
    comments: tuple[InlineComment, ...] = ()


@dataclass(frozen=True, slots=True)
class PostedReview:
    id: int
    author: str
    commit_sha: str | None
    body: str
    submitted_at: datetime | None


@dataclass(frozen=True, slots=True)
class PostedReviewComment:
    """An inline comment already on the PR (ours or anyone's)."""

    id: int
    author: str
    path: str
    line: int | None  # None when the forge has it outdated / unanchored
    body: str


@dataclass(frozen=True, slots=True)
class IssueComment:
    """A conversation comment on the PR."""

    id: int
    author: str
    body: str
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class CommitStatus:
    state: CommitState
    description: str  # forges cap it (GitHub 140 chars); clients truncate
    context: str = "auto-review"
    target_url: str | None = None


@dataclass(frozen=True, slots=True)
class GitAccess:
    """How to fetch from the forge with git: basic-auth user and token for the clone host.

    The token goes to git only through the credential helper of
    :mod:`auto_review.review.workspace.gitenv`, never on argv or in a URL. ``token`` is
    hidden from repr.
    """

    username: str
    token: str = field(repr=False)
