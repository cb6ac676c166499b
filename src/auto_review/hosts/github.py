"""GitHub client, authenticated as a GitHub App installation.

Calls (relative to ``AR_GITHUB_API_URL``, default ``https://api.github.com``):

- ``GET /repos/{owner}/{repo}/pulls/{pull_number}`` (installation token).
- ``GET /repos/{owner}/{repo}/issues/comments?since=&sort=updated&direction=asc&per_page=&page=``
  (installation token): conversation comments of a repository updated at or after ``since``.
  GitHub serves pull-request conversation comments as issue comments; a comment is on a pull
  request when its ``html_url`` path is ``/{owner}/{repo}/pull/{number}``.
- ``GET /app`` (app JWT): ``ping``; proves reachability and that the app id and key match.
- Installation lookup and token exchange: see :mod:`auto_review.hosts.github_auth`.

An API call answered 401 drops the cached installation token and is tried once more with a
fresh one (tokens can be revoked before their ``expires_at``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from auto_review.hosts.base import (
    HostAuthError,
    HostResponseError,
    PullRequestInfo,
    comment_event,
    format_since,
    parse_pull_request,
    repo_path,
)
from auto_review.hosts.comment_pages import collect_comment_pages
from auto_review.hosts.events import CommentEvent, HostKind, RepoRef
from auto_review.hosts.github_auth import GITHUB_HEADERS, GitHubAppAuth
from auto_review.hosts.http import ForgeHttp, RetryPolicy, json_body

log = logging.getLogger(__name__)

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
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be between 1 and 100 (GitHub's maximum)")
        if max_pages < 1:
            raise ValueError("max_pages must be positive")
        self._http = ForgeHttp(
            api_url, timeout=timeout, user_agent=USER_AGENT, retry=retry, transport=transport
        )
        self.auth = GitHubAppAuth(
            app_id, private_key_pem, self._http, refresh_margin=token_refresh_margin
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

    async def _repo_get(
        self, operation: str, repo: RepoRef, path: str, params: dict[str, str | int] | None = None
    ) -> httpx.Response:
        for fresh_token_tried in (False, True):
            token = await self.auth.installation_token(repo)
            headers = {**GITHUB_HEADERS, "Authorization": f"Bearer {token}"}
            try:
                return await self._http.request(
                    operation, "GET", repo_path(repo) + path, headers=headers, params=params
                )
            except HostAuthError as exc:
                if exc.status != 401 or fresh_token_tried:
                    raise
                self.auth.forget_token(repo)
        raise AssertionError("unreachable: the loop returns or raises")

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
        operation = "github ping"
        response = await self._http.request(
            operation, "GET", "/app", headers=self.auth.app_headers()
        )
        body = json_body(operation, response)
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise HostResponseError(operation, "app object without id", response.status_code)


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
