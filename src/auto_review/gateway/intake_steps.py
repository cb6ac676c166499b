"""The steps both raw-ASGI intake routes (signed webhooks and the CI trigger) take alike.

Each step answers with a ready :class:`Reply` when it refuses, so a route reads as its
order of checks; that order is each route's security contract and stays in the route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from auto_review.core.jobs import JobRequest
from auto_review.gateway.limits import (
    BodyIncomplete,
    BodyTooLarge,
    RateLimiter,
    declared_length,
    read_body_capped,
)
from auto_review.gateway.metrics import GatewayMetrics
from auto_review.gateway.responses import (
    BODY_INCOMPLETE,
    SERVER_ERROR,
    TOO_LARGE,
    UNSUPPORTED_TYPE,
    Reply,
    error_reply,
    is_json_content_type,
    rate_limited,
    send_reply,
)
from auto_review.store.base import AcceptResult, DeliveryRef, IntakeStore, StoreBusy, StoreError


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def answer_and_count(
    send: Send,
    respond: Awaitable[Reply],
    *,
    route: str,
    metrics: GatewayMetrics,
    log: logging.Logger,
    failure_message: str,
    log_extra: Mapping[str, object] | None = None,
) -> None:
    """Send what ``respond`` answers and count it; a bug still answers 500, never with
    request data, and is logged with ``failure_message`` on the route's own logger."""
    try:
        answer = await respond
    except Exception:
        log.exception(failure_message, extra=log_extra)
        answer = SERVER_ERROR
    try:
        await send_reply(send, answer)
    finally:
        metrics.count_request(route, answer.status)


def refuse_before_body(
    scope: Scope,
    *,
    route: str,
    max_body_bytes: int,
    limiter: RateLimiter,
    metrics: GatewayMetrics,
) -> Reply | None:
    """413 for an announced size over the cap, then 429 for an empty token bucket; None
    when the request may go on. Both run before any byte of the body is read."""
    length = declared_length(scope["headers"])
    if length is not None and length > max_body_bytes:
        return TOO_LARGE
    address = client_address(scope)
    if not limiter.allow(address):
        metrics.rate_limited_total.labels(route=route).inc()
        return rate_limited(limiter.retry_after_seconds(address))
    return None


async def read_json_body(headers: Headers, receive: Receive, max_body_bytes: int) -> bytes | Reply:
    """The body of a JSON request, counted against the cap (chunked bodies too); a 415,
    413 or 400 reply instead when it is not JSON, too large or cut short."""
    if not is_json_content_type(headers.get("content-type")):
        return UNSUPPORTED_TYPE
    try:
        return await read_body_capped(receive, max_body_bytes)
    except BodyTooLarge:
        return TOO_LARGE
    except BodyIncomplete:
        return BODY_INCOMPLETE


async def store_jobs(
    store: IntakeStore,
    delivery: DeliveryRef | None,
    jobs: list[JobRequest],
    *,
    log: logging.Logger,
    failure_message: str,
    log_extra: Mapping[str, object],
) -> AcceptResult | Reply:
    """Commit the jobs before the route answers 2xx; a busy or failing store is a 503 with
    Retry-After, logged by error type only."""
    try:
        return await store.accept(delivery, jobs)
    except StoreBusy:
        return error_reply(503, "queue busy, retry later", 1)
    except StoreError as exc:
        log.error(failure_message, extra={**log_extra, "error_type": type(exc).__name__})
        return error_reply(503, "state store unavailable", 5)
