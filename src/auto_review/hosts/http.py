"""Forge calls on the shared outbound stack: the forge's retry rules and error mapping.

:class:`ForgeHttp` is the project's :class:`~auto_review.outbound.exchange.HttpClient`
bound to one forge API root; the retry loop, Retry-After handling, the attempt deadline
and the size-cap reader are :mod:`auto_review.outbound`'s. What is the forge's own is
here: which answers may be repeated, and the :class:`HostError` each failure becomes.

Credentials are passed per request by the caller and never stored on the client, so its
repr, its errors and its log lines cannot carry them. Errors name the operation
(``"forgejo get pull request"``) and the status or transport failure, nothing else: no
URL, no header, no response body.

Retry rules: connection failures are always retried (the request never reached the
forge); timeouts, dropped connections and 5xx are retried for idempotent requests only. A
request that is not idempotent (posting a review or a comment) is repeated only after an
answer that says the forge did not act on it: 429, 503 or a rate-limit 403. A server's
wait (Retry-After, GitHub's ``x-ratelimit-reset``) longer than
``RetryPolicy.max_retry_after`` fails at once with :class:`HostUnavailable` rather than
stalling the caller.

:meth:`ForgeHttp.request_bytes` streams a body (a diff, a raw file) and stops reading at a
byte cap, raising :class:`HostResponseTooLarge`; it asks for an uncompressed body so the
cap counts what is held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostResponseError,
    HostResponseTooLarge,
    HostUnavailable,
)
from auto_review.outbound.capped import IDENTITY_ENCODING, read_capped
from auto_review.outbound.exchange import HttpClient, Sleep
from auto_review.outbound.policy import RetryPolicy
from auto_review.outbound.rules import Failure, FailureKind, Retry

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers after which even a non-idempotent request may be sent again: the forge (or the
# proxy in front of it) says it did not process it. 500/502/504 may come after the forge
# acted (GitHub answers 502 when its own deadline passed while the work went on).
NOT_PROCESSED_STATUSES = frozenset({429, 503})
# An API answer (JSON: a PR, a page of comments) is a few KiB to a few hundred; the cap
# only stops a broken or hostile server from filling memory.
MAX_API_ANSWER_BYTES = 8 * 1024 * 1024
# A capped download gets this much extra time per byte allowed, on top of the deadline.
MIN_TRANSFER_BYTES_PER_SECOND = 256 * 1024
# Forge calls: four tries, half-jittered backoff from 0.5 s to 8 s, a server's wait up to 60 s.
FORGE_RETRY = RetryPolicy(attempts=4, initial_backoff=0.5, max_backoff=8.0, jitter=0.5)

T = TypeVar("T")

# Retry.reason words of the forge rules.
_CONNECT, _TIMEOUT, _TRANSPORT, _STATUS, _RATE_LIMITED = (
    "connect",
    "timeout",
    "transport",
    "status",
    "rate-limited",
)


def is_rate_limited(response: httpx.Response) -> bool:
    """429, or a 403 that is a rate limit (Retry-After, or GitHub's remaining count 0)."""
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


@dataclass(frozen=True, slots=True)
class ForgeRules(Generic[T]):
    """The forge's retry rules for one request (see the module docstring)."""

    operation: str
    may_repeat: bool
    expect: tuple[int, ...]
    read: Callable[[httpx.Response], Awaitable[T]]

    async def answer(self, response: httpx.Response) -> T | Retry:
        status = response.status_code
        if status in self.expect:
            return await self.read(response)
        rate_limited = is_rate_limited(response)
        if status not in RETRYABLE_STATUSES and not rate_limited:
            raise error_for_status(self.operation, status)
        if not self.may_repeat and status not in NOT_PROCESSED_STATUSES and not rate_limited:
            raise error_for_status(self.operation, status)
        if rate_limited:
            return Retry(f"HTTP {status} rate limited", _RATE_LIMITED, status)
        return Retry(f"HTTP {status}", _STATUS, status)

    def failure(self, failure: Failure, attempt: int) -> Retry:
        if failure.kind is FailureKind.CONNECT:
            # Nothing reached the forge: safe to repeat any method.
            return Retry(f"connection failed ({failure.error})", _CONNECT)
        if failure.kind in (FailureKind.TIMEOUT, FailureKind.DEADLINE):
            retry = Retry("timed out", _TIMEOUT)
        else:
            retry = Retry(f"transport error ({failure.error})", _TRANSPORT)
        if not self.may_repeat:
            raise self.give_up(retry, attempt)
        return retry

    def give_up(self, retry: Retry, attempts: int) -> HostError:
        if retry.reason in (_CONNECT, _TRANSPORT):
            return HostUnavailable(self.operation, retry.detail)
        return HostUnavailable(
            self.operation, f"{retry.detail} after {attempts} attempt(s)", retry.status
        )

    def too_long(self, retry: Retry, wait: float, limit: float) -> HostError:
        return HostUnavailable(
            self.operation, f"HTTP {retry.status} rate limited for {wait:.0f}s", retry.status
        )

    def retrying(self, retry: Retry, attempt: int, attempts: int, delay: float) -> None:
        log.warning(
            "forge call failed, retrying",
            extra={
                "operation": self.operation,
                "cause": retry.detail,
                "attempt": attempt,
                "retry_in_seconds": round(delay, 3),
            },
        )


class ForgeHttp(HttpClient):
    """The outbound client bound to one forge API root, with the forge's rules."""

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
        super().__init__(
            api_root,
            what="forge API URL",
            timeout=timeout,
            user_agent=user_agent,
            retry=retry or FORGE_RETRY,
            credentials_hint="configure the token separately",
            transport=transport,
            tls=tls,
            sleep=sleep,
        )

    @property
    def api_root(self) -> str:
        return self.base_url

    def __repr__(self) -> str:
        return f"ForgeHttp(api_root={self.api_root!r})"

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
        is in ``expect`` (body read, at most ``MAX_API_ANSWER_BYTES``: a larger one raises
        HostResponseTooLarge), or raise a HostError."""

        async def read_json_capped(response: httpx.Response) -> httpx.Response:
            body = await read_capped(response, MAX_API_ANSWER_BYTES)
            if not body.complete:
                raise HostResponseTooLarge(operation, MAX_API_ANSWER_BYTES, response.status_code)
            # The body as read (decoded, within the cap) with the answer's headers, which
            # pagination reads; the encoding headers no longer describe it.
            kept = {
                k: v
                for k, v in response.headers.items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            }
            return httpx.Response(
                response.status_code, headers=kept, content=body.data, request=response.request
            )

        method = method.upper()
        may_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        rules = ForgeRules(operation, may_repeat, expect, read_json_capped)
        return await self.call(
            rules,
            method,
            path,
            deadline=self.timeout * 2,
            headers={**dict(headers or {}), **IDENTITY_ENCODING},
            params=params,
            json=json,
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

        async def read_capped_body(response: httpx.Response) -> tuple[int, bytes]:
            body = await read_capped(response, max_bytes)
            if not body.complete:
                raise HostResponseTooLarge(operation, max_bytes, response.status_code)
            return response.status_code, body.data

        rules = ForgeRules(operation, True, expect, read_capped_body)
        return await self.call(
            rules,
            "GET",
            path,
            deadline=self.timeout * 2 + max_bytes / MIN_TRANSFER_BYTES_PER_SECOND,
            headers={**dict(headers or {}), **IDENTITY_ENCODING},
            params=params,
        )


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
