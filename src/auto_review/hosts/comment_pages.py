"""Paging through a forge listing, the same way on every forge.

Forgejo/Gitea and GitHub both page listings with a ``page`` number and a
``Link: rel="next"`` header; only the query and the item shape differ, so the caller
supplies how to fetch one page and how to read one item.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from auto_review.core.refs import RepoRef
from auto_review.hosts.base import HostResponseError
from auto_review.hosts.events import CommentEvent
from auto_review.hosts.http import has_next_page, json_body

T = TypeVar("T")


async def collect_pages(
    operation: str,
    *,
    max_pages: int,
    fetch_page: Callable[[int], Awaitable[httpx.Response]],
    parse_item: Callable[[Any], T | None],
) -> tuple[list[T], bool]:
    """Items from pages 1.. until the forge says there is no next page.

    Returns the items and whether the listing stopped at ``max_pages`` with more to read.
    ``parse_item`` returns None for entries to leave out.
    """
    items: list[T] = []
    for page in range(1, max_pages + 1):
        response = await fetch_page(page)
        entries = json_body(operation, response)
        if not isinstance(entries, list):
            raise HostResponseError(operation, "expected a JSON array", response.status_code)
        items.extend(item for item in map(parse_item, entries) if item is not None)
        if not entries or not has_next_page(response):
            return items, False
    return items, True


async def collect_all_pages(
    operation: str,
    *,
    max_pages: int,
    fetch_page: Callable[[int], Awaitable[httpx.Response]],
    parse_item: Callable[[Any], T | None],
) -> list[T]:
    """Like :func:`collect_pages`, but a listing longer than ``max_pages`` is an error.

    The review pipeline decides from these listings what it already posted; acting on a
    truncated one could post the same finding twice, so it fails instead.
    """
    items, truncated = await collect_pages(
        operation, max_pages=max_pages, fetch_page=fetch_page, parse_item=parse_item
    )
    if truncated:
        raise HostResponseError(operation, f"listing longer than {max_pages} pages")
    return items


async def collect_comment_pages(
    operation: str,
    repo: RepoRef,
    *,
    max_pages: int,
    fetch_page: Callable[[int], Awaitable[httpx.Response]],
    parse_comment: Callable[[RepoRef, Any], CommentEvent | None],
    log: logging.Logger,
) -> list[CommentEvent]:
    """PR comments of ``repo`` from pages 1.. until the forge says there is no next page.

    Past ``max_pages`` the listing stops with what it has and logs a warning on ``log``
    (the client's own logger), so a runaway repository cannot stall the poller.
    """
    events, truncated = await collect_pages(
        operation,
        max_pages=max_pages,
        fetch_page=fetch_page,
        parse_item=lambda item: parse_comment(repo, item),
    )
    if truncated:
        log.warning(
            "comment listing truncated at the page cap",
            extra={"operation": operation, "repo": repo.full_name, "max_pages": max_pages},
        )
    return events
