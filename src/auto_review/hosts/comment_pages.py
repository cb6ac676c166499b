"""Paging through a repository's comment listing, the same way on every forge.

Forgejo/Gitea and GitHub both page ``/issues/comments`` with a ``page`` number and a
``Link: rel="next"`` header; only the query and the comment shape differ, so the caller
supplies how to fetch one page and how to read one comment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from auto_review.hosts.base import HostResponseError
from auto_review.hosts.events import CommentEvent, RepoRef
from auto_review.hosts.http import has_next_page, json_body


async def collect_comment_pages(
    operation: str,
    repo: RepoRef,
    *,
    max_pages: int,
    fetch_page: Callable[[int], Awaitable[httpx.Response]],
    parse_comment: Callable[[RepoRef, Any], CommentEvent | None],
    log: logging.Logger,
) -> list[CommentEvent]:
    """PR comments from pages 1.. until the forge says there is no next page.

    Past ``max_pages`` the listing stops with what it has and logs a warning on ``log``
    (the client's own logger), so a runaway repository cannot stall the poller.
    """
    events: list[CommentEvent] = []
    for page in range(1, max_pages + 1):
        response = await fetch_page(page)
        items = json_body(operation, response)
        if not isinstance(items, list):
            raise HostResponseError(operation, "expected a JSON array", response.status_code)
        events.extend(e for e in (parse_comment(repo, item) for item in items) if e)
        if not items or not has_next_page(response):
            return events
    log.warning(
        "comment listing truncated at the page cap",
        extra={"operation": operation, "repo": repo.full_name, "max_pages": max_pages},
    )
    return events
