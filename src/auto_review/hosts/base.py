"""The forge boundary: what the gateway and the review pipeline need from a forge.

Clients for Forgejo/Gitea (:mod:`auto_review.hosts.forgejo`) and GitHub
(:mod:`auto_review.hosts.github`) implement :class:`ReviewHost`. Every failure is one of the
:class:`HostError` subclasses; their messages name the operation and the HTTP status or
transport failure, never a URL, a header or a credential.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from auto_review.core.errors import PermanentError, TransientError
from auto_review.core.refs import HostKind, PayloadError, RepoRef, check_sha
from auto_review.hosts.events import CommentEvent, has_prefix
from auto_review.hosts.review_types import (
    ChangedFile,
    CommitStatus,
    GitAccess,
    IssueComment,
    PostedReview,
    PostedReviewComment,
    PullRequestDetails,
    ReviewDraft,
)

log = logging.getLogger(__name__)


class HostError(Exception):
    """A forge call failed. ``operation`` names the call, ``status`` is the HTTP status if any."""

    def __init__(self, operation: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.detail = detail
        self.status = status


class HostUnavailable(HostError, TransientError):
    """Network failure, timeout, 5xx or rate limiting that outlasted the retries."""


class HostAuthError(HostError, PermanentError):
    """The forge refused the credentials (401/403) or they could not be produced."""


class HostNotFound(HostError, PermanentError):
    """The repository, pull request or installation does not exist (or is hidden from us)."""


class HostResponseError(HostError, PermanentError):
    """The forge answered, but not with what its API documents (bad JSON, missing fields)."""


class HostResponseTooLarge(HostResponseError):
    """A body (diff, file) is larger than the caller's cap; reading stopped at the cap."""

    def __init__(
        self, operation: str, max_bytes: int, status: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(
            operation, detail or f"response larger than the cap of {max_bytes} bytes", status
        )
        self.max_bytes = max_bytes


@dataclass(frozen=True, slots=True)
class PullRequestInfo:
    """What the gateway needs to know about a pull request right now.

    ``state`` is ``"open"``, ``"closed"`` or ``"merged"`` (merged wins over closed).
    """

    repo: RepoRef
    number: int
    head_sha: str
    base_sha: str
    author: str
    draft: bool
    state: str
    title: str


class ForgeProbe(Protocol):
    """What ``/readyz`` needs of a forge."""

    kind: HostKind

    async def ping(self) -> None:
        """Cheap reachability and credential check; raises HostUnavailable or HostAuthError."""
        ...


class PullRequestSource(Protocol):
    """What the gateway's intake (CI trigger, chat poller) needs of a forge."""

    kind: HostKind

    async def get_pull_request(self, repo: RepoRef, number: int) -> PullRequestInfo:
        """The pull request's current head, base, author, draft flag, state and title."""
        ...

    async def list_recent_pr_comments(self, repo: RepoRef, since: datetime) -> list[CommentEvent]:
        """Conversation comments on pull requests of ``repo`` created or edited at or after
        ``since`` (timezone-aware), oldest first. Comments on plain issues are left out."""
        ...


class PipelineHost(Protocol):
    """What the review pipeline and the chat handlers need of a forge."""

    kind: HostKind

    # --- read ---

    async def get_pull_request_details(self, repo: RepoRef, number: int) -> PullRequestDetails:
        """Head/base SHA, head ref, author, draft, state, title, body, labels, clone URL."""
        ...

    async def list_reviews(self, repo: RepoRef, number: int) -> list[PostedReview]: ...

    async def list_review_comments(
        self, repo: RepoRef, number: int
    ) -> list[PostedReviewComment]: ...

    async def list_issue_comments(self, repo: RepoRef, number: int) -> list[IssueComment]: ...

    async def get_file(self, repo: RepoRef, path: str, ref: str, *, max_bytes: int) -> bytes | None:
        """A file's bytes at ``ref``; None when it does not exist there (404)."""
        ...

    async def git_access(self, repo: RepoRef) -> GitAccess:
        """Basic-auth user and token for fetching ``repo`` over https with git."""
        ...

    async def renew_git_access(self, repo: RepoRef, refused: GitAccess) -> GitAccess | None:
        """Git was refused (HTTP 401) ``refused``, given by :meth:`git_access`: drop it and
        mint a new one (or return one minted meanwhile); None when this forge's credential
        cannot change (a configured token)."""
        ...

    # --- write ---

    async def post_review(self, repo: RepoRef, number: int, draft: ReviewDraft) -> int:
        """Posts one comment review with inline comments; returns the review id."""
        ...

    async def post_status(self, repo: RepoRef, sha: str, status: CommitStatus) -> None: ...

    async def post_issue_comment(self, repo: RepoRef, number: int, body: str) -> int:
        """Posts a conversation comment on the PR; returns its id."""
        ...


class ReviewHost(ForgeProbe, PullRequestSource, PipelineHost, Protocol):
    """One forge client, whole: every part above, the forge's own diff and file list, and
    the connection pool it owns. The forge clients implement it; each user asks only for
    the part it needs, so a test double stands in for that part alone."""

    async def get_diff(self, repo: RepoRef, number: int, *, max_bytes: int) -> bytes:
        """The PR's unified diff as the forge renders it; HostResponseError above max_bytes."""
        ...

    async def list_changed_files(self, repo: RepoRef, number: int) -> list[ChangedFile]: ...

    async def aclose(self) -> None:
        """Close the client's connections."""
        ...


# --- JSON reading shared by the clients (both forges use the same shapes for these) ---


def repo_path(repo: RepoRef) -> str:
    """``/repos/{owner}/{repo}`` with both parts escaped; both forges' REST APIs use it."""
    return f"/repos/{quote(repo.owner, safe='')}/{quote(repo.name, safe='')}"


def format_since(since: datetime) -> str:
    """RFC 3339 UTC timestamp for ``since`` query parameters."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field(operation: str, data: Any, *keys: str) -> Any:
    value = data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise HostResponseError(operation, f"response lacks {'.'.join(keys)}")
        value = value[key]
    return value


def _text(operation: str, data: Any, *keys: str) -> str:
    value = _field(operation, data, *keys)
    if not isinstance(value, str):
        raise HostResponseError(operation, f"response field {'.'.join(keys)} is not a string")
    return value


def _sha(operation: str, data: Any, *keys: str) -> str:
    # SHAs become git refs and queue keys later: refuse anything that is not an object id.
    try:
        return check_sha(_text(operation, data, *keys))
    except PayloadError:
        raise HostResponseError(operation, f"response field {'.'.join(keys)} is no SHA") from None


def parse_pull_request(
    operation: str,
    repo: RepoRef,
    number: int,
    data: Any,
    *,
    draft_title_prefixes: tuple[str, ...] = (),
) -> PullRequestInfo:
    """PullRequestInfo from a Gitea/GitHub pull request object.

    ``draft_title_prefixes`` decide the draft flag when the forge sends no ``draft`` field
    (Gitea before 1.20 marked drafts only by a title prefix).
    """
    title = _text(operation, data, "title")
    state = _text(operation, data, "state")
    draft = data.get("draft")
    if draft is None:
        draft = has_prefix(title, draft_title_prefixes)
    elif not isinstance(draft, bool):
        raise HostResponseError(operation, "response field draft is not a boolean")
    return PullRequestInfo(
        repo=repo,
        number=number,
        head_sha=_sha(operation, data, "head", "sha"),
        base_sha=_sha(operation, data, "base", "sha"),
        author=_text(operation, data, "user", "login"),
        draft=draft,
        state="merged" if data.get("merged") is True else state,
        title=title,
    )


def parse_pull_request_details(
    operation: str,
    repo: RepoRef,
    number: int,
    data: Any,
    *,
    draft_title_prefixes: tuple[str, ...] = (),
) -> PullRequestDetails:
    """PullRequestDetails from a Gitea/GitHub pull request object (both use these fields).

    ``head_ref`` is ``refs/pull/{number}/head``, which both forges keep in the base
    repository, so the head of a PR from a fork is fetched from ``clone_url`` too.
    """
    info = parse_pull_request(
        operation, repo, number, data, draft_title_prefixes=draft_title_prefixes
    )
    body = data.get("body")
    if body is not None and not isinstance(body, str):
        raise HostResponseError(operation, "response field body is not a string")
    labels = data.get("labels") or []
    if not isinstance(labels, list):
        raise HostResponseError(operation, "response field labels is not a list")
    names = []
    for label in labels:
        if not isinstance(label, dict) or not isinstance(label.get("name"), str):
            raise HostResponseError(operation, "a label lacks its name")
        names.append(label["name"])
    return PullRequestDetails(
        number=number,
        head_sha=info.head_sha,
        base_sha=info.base_sha,
        head_ref=f"refs/pull/{int(number)}/head",
        base_branch=_text(operation, data, "base", "ref"),
        author=info.author,
        draft=info.draft,
        state=info.state,
        title=info.title,
        body=body or "",
        labels=tuple(names),
        clone_url=clone_url(operation, _text(operation, data, "base", "repo", "clone_url")),
    )


def clone_url(operation: str, url: str) -> str:
    """A forge's clone URL, refused unless it is http(s) without credentials or a query.

    Credentials reach git through a helper, never the URL; a URL that carries some would put
    them in git's argv and error messages.
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        raise HostResponseError(operation, "clone URL is not a URL") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise HostResponseError(operation, "clone URL is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise HostResponseError(operation, "clone URL carries credentials")
    if parts.query or parts.fragment:
        raise HostResponseError(operation, "clone URL has a query or fragment")
    return url


def integer(operation: str, data: Any, *keys: str) -> int:
    """A JSON integer field (booleans refused)."""
    value = _field(operation, data, *keys)
    if type(value) is not int:
        raise HostResponseError(operation, f"response field {'.'.join(keys)} is not an integer")
    return value


def text(operation: str, data: Any, *keys: str) -> str:
    """A JSON string field."""
    return _text(operation, data, *keys)


def optional_text(operation: str, data: Any, key: str) -> str:
    """A string field that forges may leave out or send as null; "" then."""
    value = data.get(key) if isinstance(data, dict) else None
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HostResponseError(operation, f"response field {key} is not a string")
    return value


def login_of(data: Any, key: str = "user") -> str:
    """``data[key].login``, or "" when the forge sends no user (ghost or team entries)."""
    user = data.get(key) if isinstance(data, dict) else None
    login = user.get("login") if isinstance(user, dict) else None
    return login if isinstance(login, str) else ""


def optional_time(operation: str, data: Any, key: str) -> datetime | None:
    """An RFC 3339 time field, None when absent, null or Go's zero time (year 1)."""
    value = data.get(key) if isinstance(data, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise HostResponseError(operation, f"response field {key} is not a time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HostResponseError(operation, f"response field {key} is not a time") from None
    if moment.tzinfo is None:
        raise HostResponseError(operation, f"response field {key} has no time zone")
    return None if moment.year <= 1 else moment


def optional_sha(operation: str, data: Any, key: str) -> str | None:
    """A commit SHA field that may be absent or empty; anything else must be an object id."""
    value = data.get(key) if isinstance(data, dict) else None
    if value is None or value == "":
        return None
    return _sha(operation, data, key)


def file_path_in_url(path: str) -> str:
    """A repository file path, each segment escaped, for an API URL.

    Refuses paths that a URL normaliser could turn into another endpoint: empty, absolute,
    ``.``/``..`` segments, backslashes and control characters.
    """
    if not path or path.startswith("/") or "\\" in path:
        raise ValueError("file path must be relative and use forward slashes")
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise ValueError("file path must not have empty, '.' or '..' segments")
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):
        raise ValueError("file path must not contain control characters")
    return "/".join(quote(s, safe="") for s in segments)


def comment_event(repo: RepoRef, pr_number: int, item: dict[str, Any]) -> CommentEvent | None:
    """CommentEvent from a comment object already known to be on PR ``pr_number``; None (and
    a warning naming the comment id) when its fields are missing or fail validation."""
    user = item.get("user")
    try:
        return CommentEvent(
            repo=repo,
            pr_number=pr_number,
            # Untyped JSON goes in as it came: CommentEvent checks each field's type and
            # value at run time, and the except below turns a wrong one into None.
            comment_id=item.get("id"),  # type: ignore[arg-type]
            author=user.get("login") if isinstance(user, dict) else None,  # type: ignore[arg-type]
            body=item.get("body"),  # type: ignore[arg-type]
            is_pull_request=True,
        )
    except PayloadError as exc:
        comment_id = item.get("id")
        log.warning(
            "skipping a malformed comment",
            extra={
                "repo": repo.full_name,
                "comment_id": comment_id if isinstance(comment_id, int) else None,
                "problem": str(exc),
            },
        )
        return None
