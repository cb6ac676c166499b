"""Forgejo / Gitea client (v1 REST API, ``Authorization: token <token>``).

Calls (paths relative to ``<base>/api/v1``):

- ``GET /repos/{owner}/{repo}/pulls/{index}``: head/base SHA, author, draft, state, title.
- ``GET /repos/{owner}/{repo}/issues/comments?since=&page=&limit=``: conversation comments of a
  repository updated at or after ``since``; the chat poller's source. A comment belongs to a
  pull request when its ``pull_request_url`` is set (Gitea leaves ``issue_url`` empty then);
  the PR number is that URL's last path segment.
- ``GET /user``: ``ping``. Unlike ``/version`` (anonymous on most instances) it proves both
  that the forge answers and that the token is accepted; it needs the ``read:user`` scope.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from auto_review.hosts.base import (
    HostResponseError,
    PullRequestInfo,
    Secret,
    comment_event,
    format_since,
    parse_pull_request,
    repo_path,
)
from auto_review.hosts.comment_pages import collect_comment_pages
from auto_review.hosts.events import CommentEvent, HostKind, RepoRef
from auto_review.hosts.forgejo_webhooks import WIP_TITLE_PREFIXES
from auto_review.hosts.http import ForgeHttp, RetryPolicy, check_base_url, json_body

log = logging.getLogger(__name__)

USER_AGENT = "auto-review (forgejo client)"
API_PREFIX = "/api/v1"


def api_root(base_url: str) -> str:
    """``https://forge.example`` or ``https://forge.example/api/v1`` -> the API root."""
    base = check_base_url(base_url, "AR_FORGEJO_URL")
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        )
        self._token = Secret(token)
        self.page_size = page_size
        self.max_pages = max_pages

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
