"""GitHub client, authenticated as a GitHub App installation.

Calls (relative to ``AR_GITHUB_API_URL``, default ``https://api.github.com``):

- ``GET /repos/{owner}/{repo}/pulls/{pull_number}`` (installation token).
- ``GET /repos/{owner}/{repo}/issues/comments?since=&sort=updated&direction=asc&per_page=&page=``
  (installation token): conversation comments of a repository updated at or after ``since``.
  GitHub serves pull-request conversation comments as issue comments; a comment is on a pull
  request when its ``html_url`` path is ``/{owner}/{repo}/pull/{number}``.
- ``GET /app`` (app JWT): ``ping``; proves reachability and that the app id and key match.
- Installation lookup and token exchange: see :mod:`auto_review.hosts.github_auth`.

Review pipeline (installation token; ``{repo}`` = ``/repos/{owner}/{repo}``):

- ``GET {repo}/pulls/{n}`` (details) and, with ``Accept: application/vnd.github.diff``, the
  unified diff (streamed and capped).
- ``GET {repo}/pulls/{n}/files``, ``/reviews``, ``/comments`` (review comments) and
  ``GET {repo}/issues/{n}/comments``, each ``?per_page=&page=``.
- ``GET {repo}/contents/{path}?ref=``: base64 JSON for files up to 1 MB; larger files come
  without content and are fetched again with ``Accept: application/vnd.github.raw+json``.
- ``POST {repo}/pulls/{n}/reviews`` (``event: COMMENT``, comments with ``line``/``side``),
  ``POST {repo}/statuses/{sha}``, ``POST {repo}/issues/{n}/comments``.

An API call answered 401 drops the cached installation token and is tried once more with a
fresh one (tokens can be revoked before their ``expires_at``; a 401 means the forge did not
act, so this holds for posts too).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from auto_review.core.refs import HostKind, RepoRef, check_sha
from auto_review.hosts import github_review as shapes
from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostResponseError,
    HostResponseTooLarge,
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
from auto_review.hosts.github_auth import GITHUB_HEADERS, GitHubAppAuth
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

log = logging.getLogger(__name__)
T = TypeVar("T")

DIFF_MEDIA_TYPE = "application/vnd.github.diff"
RAW_MEDIA_TYPE = "application/vnd.github.raw+json"

USER_AGENT = "auto-review (github app client)"
DEFAULT_API_URL = "https://api.github.com"


class GitHubClient:
    """:class:`~auto_review.hosts.base.ReviewHost` for GitHub (App installation auth)."""

    kind = HostKind.GITHUB

    def __init__(
        self,
        app_id: str,
        private_key_pem: str,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        page_size: int = 100,
        max_pages: int = 10,
        token_refresh_margin: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be between 1 and 100 (GitHub's maximum)")
        if max_pages < 1:
            raise ValueError("max_pages must be positive")
        self._http = ForgeHttp(
            api_url,
            timeout=timeout,
            user_agent=USER_AGENT,
            retry=retry,
            transport=transport,
            tls=tls,
        )
        self.auth = GitHubAppAuth(
            app_id, private_key_pem, self._http, refresh_margin=token_refresh_margin, clock=clock
        )
        self.page_size = page_size
        self.max_pages = max_pages

    def __repr__(self) -> str:
        return f"GitHubClient(api_root={self._http.api_root!r}, app_id={self.auth.app_id!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> GitHubClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _with_token(self, repo: RepoRef, call: Callable[[dict[str, str]], Awaitable[T]]) -> T:
        """Run ``call`` with installation-token headers; after a 401, once more with a fresh
        token (a 401 means GitHub did not act on the request)."""
        for fresh_token_tried in (False, True):
            token = await self.auth.installation_token(repo)
            headers = {**GITHUB_HEADERS, "Authorization": f"Bearer {token}"}
            try:
                return await call(headers)
            except HostAuthError as exc:
                if exc.status != 401 or fresh_token_tried:
                    raise
                self.auth.forget_token(repo, token)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _repo_get(
        self, operation: str, repo: RepoRef, path: str, params: dict[str, str | int] | None = None
    ) -> httpx.Response:
        return await self._with_token(
            repo,
            lambda headers: self._http.request(
                operation, "GET", repo_path(repo) + path, headers=headers, params=params
            ),
        )

    async def _repo_bytes(
        self,
        operation: str,
        repo: RepoRef,
        path: str,
        *,
        accept: str,
        max_bytes: int,
        params: Mapping[str, str | int] | None = None,
    ) -> bytes:
        async def call(headers: dict[str, str]) -> bytes:
            _, body = await self._http.request_bytes(
                operation,
                repo_path(repo) + path,
                max_bytes=max_bytes,
                headers={**headers, "Accept": accept},
                params=params,
            )
            return body

        return await self._with_token(repo, call)

    async def _repo_post(
        self,
        operation: str,
        repo: RepoRef,
        path: str,
        payload: dict[str, Any],
        *,
        idempotent: bool,
        status: int,
    ) -> Any:
        response = await self._with_token(
            repo,
            lambda headers: self._http.request(
                operation,
                "POST",
                repo_path(repo) + path,
                headers=headers,
                json=payload,
                idempotent=idempotent,
                expect=(status,),
            ),
        )
        return json_body(operation, response)

    async def _list(
        self, operation: str, repo: RepoRef, path: str, parse: Callable[[str, Any], T | None]
    ) -> list[T]:
        def fetch_page(page: int) -> Awaitable[httpx.Response]:
            return self._repo_get(operation, repo, path, {"per_page": self.page_size, "page": page})

        return await collect_all_pages(
            operation,
            max_pages=self.max_pages,
            fetch_page=fetch_page,
            parse_item=lambda item: parse(operation, item),
        )

    async def get_pull_request(self, repo: RepoRef, number: int) -> PullRequestInfo:
        operation = "github get pull request"
        response = await self._repo_get(operation, repo, f"/pulls/{int(number)}")
        return parse_pull_request(operation, repo, number, json_body(operation, response))

    async def list_recent_pr_comments(self, repo: RepoRef, since: datetime) -> list[CommentEvent]:
        operation = "github list comments"
        params: dict[str, str | int] = {
            "since": format_since(since),
            "sort": "updated",
            "direction": "asc",
            "per_page": self.page_size,
        }

        def fetch_page(page: int) -> Awaitable[httpx.Response]:
            return self._repo_get(operation, repo, "/issues/comments", {**params, "page": page})

        return await collect_comment_pages(
            operation,
            repo,
            max_pages=self.max_pages,
            fetch_page=fetch_page,
            parse_comment=parse_comment,
            log=log,
        )

    async def ping(self) -> None:
        await self.app_info()

    async def app_info(self) -> dict[str, Any]:
        """``GET /app`` with the App's JWT: its id, slug, name, events, permissions."""
        operation = "github ping"
        response = await self._http.request(
            operation, "GET", "/app", headers=self.auth.app_headers()
        )
        body = json_body(operation, response)
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise HostResponseError(operation, "app object without id", response.status_code)
        return body

    # --- review pipeline: read ---

    async def get_pull_request_details(self, repo: RepoRef, number: int) -> PullRequestDetails:
        operation = "github get pull request details"
        response = await self._repo_get(operation, repo, f"/pulls/{int(number)}")
        return parse_pull_request_details(operation, repo, number, json_body(operation, response))

    async def get_diff(self, repo: RepoRef, number: int, *, max_bytes: int) -> bytes:
        operation = "github get diff"
        try:
            return await self._repo_bytes(
                operation,
                repo,
                f"/pulls/{int(number)}",
                accept=DIFF_MEDIA_TYPE,
                max_bytes=max_bytes,
            )
        except HostError as exc:
            if exc.status != 406:
                raise
            # GitHub's answer when a diff is past its own limits (300 files, 20,000 lines)
            raise HostResponseTooLarge(
                operation, max_bytes, 406, "GitHub will not render a diff this large (HTTP 406)"
            ) from None

    async def list_changed_files(self, repo: RepoRef, number: int) -> list[ChangedFile]:
        return await self._list(
            "github list changed files",
            repo,
            f"/pulls/{int(number)}/files",
            shapes.parse_changed_file,
        )

    async def list_reviews(self, repo: RepoRef, number: int) -> list[PostedReview]:
        return await self._list(
            "github list reviews", repo, f"/pulls/{int(number)}/reviews", shapes.parse_review
        )

    async def list_review_comments(self, repo: RepoRef, number: int) -> list[PostedReviewComment]:
        return await self._list(
            "github list review comments",
            repo,
            f"/pulls/{int(number)}/comments",
            shapes.parse_review_comment,
        )

    async def list_issue_comments(self, repo: RepoRef, number: int) -> list[IssueComment]:
        return await self._list(
            "github list issue comments",
            repo,
            f"/issues/{int(number)}/comments",
            shapes.parse_issue_comment,
        )

    async def get_file(self, repo: RepoRef, path: str, ref: str, *, max_bytes: int) -> bytes | None:
        operation = "github get file"
        if not ref:
            raise ValueError("ref must not be empty")
        url_path = f"/contents/{file_path_in_url(path)}"
        try:
            response = await self._repo_get(operation, repo, url_path, {"ref": ref})
            try:
                return shapes.file_content(operation, json_body(operation, response), max_bytes)
            except shapes.NeedsRawDownload:
                return await self._repo_bytes(
                    operation,
                    repo,
                    url_path,
                    accept=RAW_MEDIA_TYPE,
                    max_bytes=max_bytes,
                    params={"ref": ref},
                )
        except HostNotFound as exc:
            if exc.operation != operation:
                raise  # the installation lookup: the repository itself is missing
            return None

    async def git_access(self, repo: RepoRef) -> GitAccess:
        # GitHub's documented form for installation tokens over https.
        return GitAccess("x-access-token", await self.auth.installation_token(repo))

    async def renew_git_access(self, repo: RepoRef, refused: GitAccess) -> GitAccess | None:
        # The token was revoked or expired early: the next one is minted, not cached
        # (unless another job has minted it already).
        self.auth.forget_token(repo, refused.token)
        return await self.git_access(repo)

    # --- review pipeline: write ---

    async def post_review(self, repo: RepoRef, number: int, draft: ReviewDraft) -> int:
        operation = "github post review"
        check_sha(draft.commit_sha, "commit_sha")
        body = await self._repo_post(
            operation,
            repo,
            f"/pulls/{int(number)}/reviews",
            shapes.review_payload(draft),
            idempotent=False,  # a repeat would post a second review
            status=200,
        )
        return integer(operation, body, "id")

    async def post_status(self, repo: RepoRef, sha: str, status: CommitStatus) -> None:
        await self._repo_post(
            "github post status",
            repo,
            f"/statuses/{check_sha(sha)}",
            shapes.status_payload(status),
            idempotent=True,  # the latest status per context wins: a repeat changes nothing
            status=201,
        )

    async def post_issue_comment(self, repo: RepoRef, number: int, body: str) -> int:
        operation = "github post issue comment"
        answer = await self._repo_post(
            operation,
            repo,
            f"/issues/{int(number)}/comments",
            {"body": body},
            idempotent=False,
            status=201,
        )
        return integer(operation, answer, "id")


def pr_number_from_html_url(url: str) -> int | None:
    """``https://github.com/o/r/pull/7#issuecomment-1`` -> 7; issue URLs -> None."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    if len(segments) >= 2 and segments[-2] == "pull" and segments[-1].isdigit():
        return int(segments[-1])
    return None


def parse_comment(repo: RepoRef, item: Any) -> CommentEvent | None:
    """A CommentEvent for a PR conversation comment; None for issue comments and for
    malformed entries (logged)."""
    if not isinstance(item, dict):
        log.warning("skipping a comment that is not an object", extra={"repo": repo.full_name})
        return None
    number = pr_number_from_html_url(str(item.get("html_url") or ""))
    if number is None:
        return None
    return comment_event(repo, number, item)
