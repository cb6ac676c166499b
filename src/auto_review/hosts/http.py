"""Shared HTTP plumbing for forge clients: timeouts, bounded retries, error mapping.

One :class:`ForgeHttp` per forge wraps an ``httpx.AsyncClient``. Credentials are passed per
request by the caller and never stored on the client, so its repr, its errors and its log
lines cannot carry them. Errors name the operation (``"forgejo get pull request"``) and the
status or transport failure, nothing else: no URL, no header, no response body.

Retries: connection failures are always retried (the request never reached the forge);
timeouts, dropped connections and 5xx are retried for idempotent requests only. A request
that is not idempotent (posting a review or a comment) is repeated only after an answer that
says the forge did not act on it: 429, 503 or a rate-limit 403. Backoff is exponential with
jitter. ``Retry-After`` (seconds or HTTP date) and GitHub's ``x-ratelimit-reset`` are honoured
when they ask for no more than ``RetryPolicy.max_retry_after``; a longer wait fails at once
with :class:`HostUnavailable` rather than stalling the caller.

:meth:`ForgeHttp.request_bytes` streams a body (a diff, a raw file) and stops reading at a
byte cap, raising :class:`HostResponseTooLarge`; it asks for an uncompressed body so the cap
counts what is held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostResponseError,
    HostResponseTooLarge,
    HostUnavailable,
)

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers after which even a non-idempotent request may be sent again: the forge (or the
# proxy in front of it) says it did not process it. 500/502/504 may come after the forge
# acted (GitHub answers 502 when its own deadline passed while the work went on).
NOT_PROCESSED_STATUSES = frozenset({429, 503})
# A capped download gets this much extra time per byte allowed, on top of the deadline.
MIN_TRANSFER_BYTES_PER_SECOND = 256 * 1024

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts every try, the first included."""

    attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (1-based): exponential, half-jittered."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (retry_number - 1))
        return ceiling * random.uniform(0.5, 1.0)


def check_base_url(url: str, what: str) -> str:
    """Validate a forge base URL and return it without a trailing slash.

    Credentials in the URL are refused: they would travel in every log line that names it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not contain credentials; configure the token separately")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a query or fragment")
    return url.rstrip("/")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), if valid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def rate_limit_wait(response: httpx.Response, now: float) -> float | None:
    """How long the forge asks us to wait, or None when the response is no rate limit.

    429 and any response with Retry-After count; so does GitHub's primary limit, a 403 with
    ``x-ratelimit-remaining: 0`` and an ``x-ratelimit-reset`` epoch.
    """
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    if retry_after is not None:
        return retry_after
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(0.0, int(reset) - now)
    return None  # no hint (a bare 429 included): plain backoff


def is_rate_limited(response: httpx.Response) -> bool:
    if response.status_code == 429:
        return True
    return response.status_code == 403 and (
        "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0"
    )


def error_for_status(operation: str, status: int) -> HostError:
    """The HostError for a final non-success status."""
    detail = f"HTTP {status}"
    if status in (401, 403):
        return HostAuthError(operation, f"{detail} (credentials refused)", status)
    if status == 404:
        return HostNotFound(operation, f"{detail} (not found)", status)
    if status >= 500 or status == 429:
        return HostUnavailable(operation, detail, status)
    return HostError(operation, detail, status)


class ForgeHttp:
    """An ``httpx.AsyncClient`` bound to one forge API root, with retries and error mapping."""

    def __init__(
        self,
        api_root: str,
        *,
        timeout: float,
        user_agent: str,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.api_root = check_base_url(api_root, "forge API URL")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        # No default auth headers: credentials are passed per request so they live in no
        # long-lived object. Redirects are not followed (a redirect must not carry a token).
        self._client = httpx.AsyncClient(
            # The composition root hands every client the process's one trust store.
            verify=tls if tls is not None else True,
            base_url=self.api_root,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent},
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"ForgeHttp(api_root={self.api_root!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """Send one logical request, retrying per the policy; return a response whose status
        is in ``expect`` (body read), or raise a HostError."""

        async def read_all(response: httpx.Response) -> httpx.Response:
            await response.aread()
            return response

        return await self._send(
            operation,
            method,
            path,
            headers=headers,
            params=params,
            json=json,
            idempotent=idempotent,
            expect=expect,
            deadline=self.timeout * 2,
            read=read_all,
        )

    async def request_bytes(
        self,
        operation: str,
        path: str,
        *,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes]:
        """GET ``path`` and return (status, body), reading at most ``max_bytes`` of body.

        A body over the cap raises HostResponseTooLarge (not retried: it would not shrink).
        The attempt deadline grows with the cap so a large allowed body can still arrive.
        """
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")

        async def read_capped(response: httpx.Response) -> tuple[int, bytes]:
            status = response.status_code
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise HostResponseTooLarge(operation, max_bytes, status)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise HostResponseTooLarge(operation, max_bytes, status)
                chunks.append(chunk)
            return status, b"".join(chunks)

        return await self._send(
            operation,
            "GET",
            path,
            # identity: a compressed body could expand far past the cap in one chunk
            headers={**dict(headers or {}), "Accept-Encoding": "identity"},
            params=params,
            json=None,
            idempotent=True,
            expect=expect,
            deadline=self.timeout * 2 + max_bytes / MIN_TRANSFER_BYTES_PER_SECOND,
            read=read_capped,
        )

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str | int] | None,
        json: Any,
        idempotent: bool | None,
        expect: tuple[int, ...],
        deadline: float,
        read: Callable[[httpx.Response], Awaitable[T]],
    ) -> T:
        method = method.upper()
        may_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                # Whole-attempt deadline: httpx's timeouts are per phase, and a server that
                # drips bytes could otherwise hold a request open indefinitely.
                async with asyncio.timeout(deadline):
                    request = self._client.build_request(
                        method, path, headers=dict(headers or {}), params=params, json=json
                    )
                    response = await self._client.send(request, stream=True)
                    try:
                        if response.status_code in expect:
                            return await read(response)
                    finally:
                        await response.aclose()
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the forge: safe to repeat any method.
                if last:
                    raise HostUnavailable(
                        operation, f"connection failed ({type(exc).__name__})"
                    ) from None
                await self._wait(operation, attempt, None, type(exc).__name__)
                continue
            except (httpx.TimeoutException, TimeoutError) as exc:
                if last or not may_repeat:
                    raise HostUnavailable(
                        operation, f"timed out after {attempt} attempt(s)"
                    ) from None
                await self._wait(operation, attempt, None, type(exc).__name__)
                continue
            except httpx.HTTPError as exc:
                if last or not may_repeat:
                    raise HostUnavailable(
                        operation, f"transport error ({type(exc).__name__})"
                    ) from None
                await self._wait(operation, attempt, None, type(exc).__name__)
                continue

            status = response.status_code
            rate_limited = is_rate_limited(response)
            retryable = status in RETRYABLE_STATUSES or rate_limited
            if not retryable:
                raise error_for_status(operation, status)
            if not may_repeat and status not in NOT_PROCESSED_STATUSES and not rate_limited:
                raise error_for_status(operation, status)
            hinted = rate_limit_wait(response, time.time())
            if hinted is not None and hinted > self.retry.max_retry_after:
                raise HostUnavailable(
                    operation, f"HTTP {status} rate limited for {hinted:.0f}s", status
                )
            if last:
                if rate_limited:
                    raise HostUnavailable(
                        operation, f"HTTP {status} rate limited after {attempt} attempt(s)", status
                    )
                raise HostUnavailable(
                    operation, f"HTTP {status} after {attempt} attempt(s)", status
                )
            await self._wait(operation, attempt, hinted, f"HTTP {status}")
        raise AssertionError("unreachable: the loop returns or raises")

    async def _wait(self, operation: str, attempt: int, hinted: float | None, cause: str) -> None:
        delay = hinted if hinted is not None else self.retry.backoff(attempt)
        log.warning(
            "forge call failed, retrying",
            extra={
                "operation": operation,
                "cause": cause,
                "attempt": attempt,
                "retry_in_seconds": round(delay, 3),
            },
        )
        await self._sleep(delay)


def json_body(operation: str, response: httpx.Response) -> Any:
    """The response's JSON, or HostResponseError (the body itself is never quoted)."""
    try:
        return response.json()
    except ValueError:
        raise HostResponseError(
            operation, "response is not valid JSON", response.status_code
        ) from None


def has_next_page(response: httpx.Response) -> bool:
    """True when the Link header (RFC 8288, as Gitea and GitHub send it) has rel="next"."""
    for link in response.headers.get_list("link", split_commas=True):
        _, _, params = link.partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return True
    return False
