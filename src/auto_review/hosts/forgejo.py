"""Forgejo / Gitea client (v1 REST API, ``Authorization: token <token>``).

Calls (paths relative to ``<base>/api/v1``):

- ``GET /repos/{owner}/{repo}/pulls/{index}``: head/base SHA, author, draft, state, title.
- ``GET /repos/{owner}/{repo}/issues/comments?since=&page=&limit=``: conversation comments of a
  repository updated at or after ``since``; the chat poller's source. A comment belongs to a
  pull request when its ``pull_request_url`` is set (Gitea leaves ``issue_url`` empty then);
  the PR number is that URL's last path segment.
- ``GET /user``: ``ping``. Unlike ``/version`` (anonymous on most instances) it proves both
  that the forge answers and that the token is accepted; it needs the ``read:user`` scope.
  ``git_access`` uses it once to learn the bot's login when none was configured.

Review pipeline (``{repo}`` = ``/repos/{owner}/{repo}``):

- ``GET {repo}/pulls/{index}``: details (labels, body, base branch, ``base.repo.clone_url``).
- ``GET {repo}/pulls/{index}.diff``: the unified diff, streamed and capped.
- ``GET {repo}/pulls/{index}/files?page=&limit=``: changed files.
- ``GET {repo}/pulls/{index}/reviews?page=&limit=``; review comments are listed per review,
  ``GET {repo}/pulls/{index}/reviews/{id}/comments`` (Gitea has no per-PR listing).
- ``GET {repo}/issues/{index}/comments``: conversation comments (not paged by Gitea).
- ``GET {repo}/raw/{filepath}?ref=``: a file's bytes at a ref, streamed and capped.
- ``POST {repo}/pulls/{index}/reviews``: one ``COMMENT`` review with inline comments.
- ``POST {repo}/statuses/{sha}``, ``POST {repo}/issues/{index}/comments``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from auto_review.core.refs import HostKind, RepoRef, check_sha
from auto_review.core.secrets import Secret
from auto_review.hosts import forgejo_review as shapes
from auto_review.hosts.base import (
    HostNotFound,
    HostResponseError,
    PullRequestInfo,
    comment_event,
    file_path_in_url,
    format_since,
    integer,
    parse_pull_request,
    parse_pull_request_details,
    repo_path,
)
from auto_review.hosts.comment_pages import collect_all_pages, collect_comment_pages
from auto_review.hosts.events import CommentEvent
from auto_review.hosts.forgejo_webhooks import WIP_TITLE_PREFIXES
from auto_review.hosts.http import ForgeHttp, json_body
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
from auto_review.outbound.policy import RetryPolicy
from auto_review.outbound.urls import check_base_url

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = "auto-review (forgejo client)"
API_PREFIX = "/api/v1"


def api_root(base_url: str) -> str:
    """``https://forge.example`` or ``https://forge.example/api/v1`` -> the API root."""
    base = check_base_url(
        base_url, "AR_FORGEJO_URL", credentials_hint="configure the token separately"
    )
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


def pr_number_from_url(url: str) -> int | None:
    """The trailing number of ``.../pulls/7`` (HTML or API URL), if there is one."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    if len(segments) >= 2 and segments[-2] in ("pulls", "pull") and segments[-1].isdigit():
        return int(segments[-1])
    return None


class ForgejoClient:
    """:class:`~auto_review.hosts.base.ReviewHost` for Forgejo and Gitea."""

    kind = HostKind.FORGEJO

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        page_size: int = 50,
        max_pages: int = 20,
        bot_login: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not token:
            raise ValueError("a Forgejo token is required")
        if page_size < 1 or max_pages < 1:
            raise ValueError("page_size and max_pages must be positive")
        self._http = ForgeHttp(
            api_root(base_url),
            timeout=timeout,
            user_agent=USER_AGENT,
            retry=retry,
            transport=transport,
            tls=tls,
        )
        self._token = Secret(token)
        self.page_size = page_size
        self.max_pages = max_pages
        self._bot_login = bot_login

    def __repr__(self) -> str:
        return f"ForgejoClient(api_root={self._http.api_root!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ForgejoClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self._token.reveal()}", "Accept": "application/json"}

    async def _get(
        self, operation: str, path: str, params: dict[str, str | int] | None = None
    ) -> httpx.Response:
        return await self._http.request(
            operation, "GET", path, headers=self._headers(), params=params
        )

    async def _post(
        self, operation: str, path: str, payload: dict[str, Any], *, idempotent: bool, status: int
    ) -> Any:
        response = await self._http.request(
            operation,
            "POST",
            path,
            headers=self._headers(),
            json=payload,
            idempotent=idempotent,
            expect=(status,),
        )
        return json_body(operation, response)

    async def _list(
        self, operation: str, path: str, parse: Callable[[str, Any], T | None]
    ) -> list[T]:
        def fetch_page(page: int) -> Awaitable[httpx.Response]:
            return self._get(operation, path, {"page": page, "limit": self.page_size})

        return await collect_all_pages(
            operation,
            max_pages=self.max_pages,
            fetch_page=fetch_page,
            parse_item=lambda item: parse(operation, item),
        )

    async def get_pull_request(self, repo: RepoRef, number: int) -> PullRequestInfo:
        operation = "forgejo get pull request"
        response = await self._get(operation, f"{repo_path(repo)}/pulls/{int(number)}")
        return parse_pull_request(
            operation,
            repo,
            number,
            json_body(operation, response),
            draft_title_prefixes=WIP_TITLE_PREFIXES,
        )

    async def list_recent_pr_comments(self, repo: RepoRef, since: datetime) -> list[CommentEvent]:
        operation = "forgejo list comments"
        since_text = format_since(since)

        def fetch_page(page: int) -> Awaitable[httpx.Response]:
            return self._get(
                operation,
                f"{repo_path(repo)}/issues/comments",
                {"since": since_text, "page": page, "limit": self.page_size},
            )

        return await collect_comment_pages(
            operation,
            repo,
            max_pages=self.max_pages,
            fetch_page=fetch_page,
            parse_comment=parse_comment,
            log=log,
        )

    async def ping(self) -> None:
        operation = "forgejo ping"
        response = await self._get(operation, "/user")
        body = json_body(operation, response)
        if not isinstance(body, dict) or not isinstance(body.get("login"), str):
            raise HostResponseError(operation, "user object without login", response.status_code)

    # --- review pipeline: read ---

    async def get_pull_request_details(self, repo: RepoRef, number: int) -> PullRequestDetails:
        operation = "forgejo get pull request details"
        response = await self._get(operation, f"{repo_path(repo)}/pulls/{int(number)}")
        return parse_pull_request_details(
            operation,
            repo,
            number,
            json_body(operation, response),
            draft_title_prefixes=WIP_TITLE_PREFIXES,
        )

    async def get_diff(self, repo: RepoRef, number: int, *, max_bytes: int) -> bytes:
        operation = "forgejo get diff"
        _, body = await self._http.request_bytes(
            operation,
            f"{repo_path(repo)}/pulls/{int(number)}.diff",
            max_bytes=max_bytes,
            headers={**self._headers(), "Accept": "text/plain"},
        )
        return body

    async def list_changed_files(self, repo: RepoRef, number: int) -> list[ChangedFile]:
        return await self._list(
            "forgejo list changed files",
            f"{repo_path(repo)}/pulls/{int(number)}/files",
            shapes.parse_changed_file,
        )

    async def list_reviews(self, repo: RepoRef, number: int) -> list[PostedReview]:
        return await self._list(
            "forgejo list reviews",
            f"{repo_path(repo)}/pulls/{int(number)}/reviews",
            shapes.parse_review,
        )

    async def list_review_comments(self, repo: RepoRef, number: int) -> list[PostedReviewComment]:
        operation = "forgejo list review comments"
        comments: list[PostedReviewComment] = []
        for review in await self.list_reviews(repo, number):
            path = f"{repo_path(repo)}/pulls/{int(number)}/reviews/{review.id}/comments"
            try:
                response = await self._get(operation, path)
            except HostNotFound:
                continue  # the review was deleted between the two calls
            items = json_body(operation, response)
            if not isinstance(items, list):
                raise HostResponseError(operation, "expected a JSON array", response.status_code)
            comments.extend(shapes.parse_review_comment(operation, item) for item in items)
        return comments

    async def list_issue_comments(self, repo: RepoRef, number: int) -> list[IssueComment]:
        operation = "forgejo list issue comments"
        # Gitea documents no paging here: it answers with every comment of the issue.
        response = await self._get(operation, f"{repo_path(repo)}/issues/{int(number)}/comments")
        items = json_body(operation, response)
        if not isinstance(items, list):
            raise HostResponseError(operation, "expected a JSON array", response.status_code)
        return [shapes.parse_issue_comment(operation, item) for item in items]

    async def get_file(self, repo: RepoRef, path: str, ref: str, *, max_bytes: int) -> bytes | None:
        operation = "forgejo get file"
        if not ref:
            raise ValueError("ref must not be empty")
        try:
            _, body = await self._http.request_bytes(
                operation,
                f"{repo_path(repo)}/raw/{file_path_in_url(path)}",
                max_bytes=max_bytes,
                headers=self._headers(),
                params={"ref": ref},
            )
        except HostNotFound:
            return None
        return body

    async def git_access(self, repo: RepoRef) -> GitAccess:
        # Gitea takes any user name with a token as the password; the bot's own login keeps
        # the forge's logs truthful.
        return GitAccess(username=await self.bot_login(), token=self._token.reveal())

    async def renew_git_access(self, repo: RepoRef, refused: GitAccess) -> GitAccess | None:
        return None  # the configured token is the only one: asking again changes nothing

    async def bot_login(self) -> str:
        """The token owner's login: the configured one, else ``GET /user`` (asked once)."""
        if self._bot_login is None:
            operation = "forgejo get bot login"
            response = await self._get(operation, "/user")
            body = json_body(operation, response)
            if not isinstance(body, dict) or not isinstance(body.get("login"), str):
                raise HostResponseError(operation, "user object without login", 200)
            self._bot_login = body["login"]
        return self._bot_login

    # --- review pipeline: write ---

    async def post_review(self, repo: RepoRef, number: int, draft: ReviewDraft) -> int:
        operation = "forgejo post review"
        check_sha(draft.commit_sha, "commit_sha")
        body = await self._post(
            operation,
            f"{repo_path(repo)}/pulls/{int(number)}/reviews",
            shapes.review_payload(draft),
            idempotent=False,  # a repeat would post a second review
            status=200,
        )
        return integer(operation, body, "id")

    async def post_status(self, repo: RepoRef, sha: str, status: CommitStatus) -> None:
        operation = "forgejo post status"
        await self._post(
            operation,
            f"{repo_path(repo)}/statuses/{check_sha(sha)}",
            shapes.status_payload(status),
            idempotent=True,  # the latest status per context wins: a repeat changes nothing
            status=201,
        )

    async def post_issue_comment(self, repo: RepoRef, number: int, body: str) -> int:
        operation = "forgejo post issue comment"
        answer = await self._post(
            operation,
            f"{repo_path(repo)}/issues/{int(number)}/comments",
            {"body": body},
            idempotent=False,
            status=201,
        )
        return integer(operation, answer, "id")


def parse_comment(repo: RepoRef, item: Any) -> CommentEvent | None:
    """A CommentEvent for a PR conversation comment; None for issue comments and for entries
    without the fields we need (logged: a forge that sends them is not following its API)."""
    if not isinstance(item, dict):
        log.warning("skipping a comment that is not an object", extra={"repo": repo.full_name})
        return None
    pr_url = str(item.get("pull_request_url") or "")
    issue_url = str(item.get("issue_url") or "")
    if pr_url:
        number = pr_number_from_url(pr_url)
    elif issue_url:
        return None  # a plain issue comment
    else:
        # Old Gitea (before 1.12) sends neither; its html_url still says /pulls/N for PRs.
        number = pr_number_from_url(str(item.get("html_url") or ""))
        if number is None:
            return None
    if number is None:
        log.warning("skipping a comment with an unreadable PR URL", extra={"repo": repo.full_name})
        return None
    return comment_event(repo, number, item)
