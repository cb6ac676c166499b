"""The outbound HTTP client and its one retry loop.

:class:`HttpClient` wraps an ``httpx.AsyncClient`` bound to one base URL. Every client of
the project (forges, the LLM, the readiness probe) sends through :meth:`HttpClient.call`:

- each attempt runs under a whole-attempt deadline (httpx's timeouts are per phase, and a
  server that drips bytes could otherwise hold a call open for ever);
- no httpx exception leaves the loop: it becomes a :class:`~.rules.Failure` value, and
  the client's :class:`~.rules.RetryRules` turn failures and answers into a result, a
  :class:`~.rules.Retry`, or the client's own error (raised outside any ``except`` block);
- a retried answer's Retry-After (and kin, :mod:`.retry_after`) sets the wait; a wait
  over the policy's cap fails at once; otherwise the policy's jittered backoff;
- redirects are never followed (a redirect must not carry a credential elsewhere), and no
  header is set for good on the client: credentials travel per request.

The transport seam (``transport=``) is how tests reach loopback servers; ``tls`` is the
process's one ``ssl.SSLContext`` from the composition root; ``sleep`` and ``clock`` are
injectable so tests need no real waits.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from auto_review.outbound.policy import RetryPolicy
from auto_review.outbound.retry_after import requested_wait
from auto_review.outbound.rules import Failure, FailureKind, Retry, RetryRules
from auto_review.outbound.urls import check_base_url

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
T = TypeVar("T")


class HttpClient:
    """One ``httpx.AsyncClient`` bound to a checked base URL, with the shared retry loop."""

    def __init__(
        self,
        base_url: str,
        *,
        what: str,
        timeout: float,
        user_agent: str,
        retry: RetryPolicy,
        connect_timeout: float | None = None,
        credentials_hint: str = "configure them separately",
        transport: httpx.AsyncBaseTransport | None = None,
        tls: ssl.SSLContext | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.base_url = check_base_url(base_url, what, credentials_hint=credentials_hint)
        self.timeout = float(timeout)
        self.retry = retry
        self._sleep = sleep
        self._clock = clock
        self._client = httpx.AsyncClient(
            # The composition root hands every client the process's one trust store.
            verify=tls if tls is not None else True,
            base_url=self.base_url + "/",
            timeout=httpx.Timeout(self.timeout, connect=connect_timeout),
            headers={"User-Agent": user_agent},
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpClient(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        rules: RetryRules[T],
        method: str,
        path: str,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
    ) -> T:
        """Send one logical request, repeating it as ``rules`` and the policy allow.

        ``path`` is relative to the base URL. ``deadline`` bounds each attempt, in seconds.
        Returns what ``rules.answer`` read, or raises the error ``rules`` chose.
        """
        if not deadline > 0:
            raise ValueError("deadline must be positive")
        policy = self.retry
        attempts = policy.attempts
        for attempt in range(1, attempts + 1):
            outcome = await self._attempt(
                rules, method, path, deadline, headers=headers, params=params, json=json
            )
            if isinstance(outcome, Failure):
                retry = rules.failure(outcome, attempt)
            elif isinstance(outcome, Retry):
                retry = outcome
            else:
                return outcome
            if retry.wait is not None and retry.wait > policy.max_retry_after:
                raise rules.too_long(retry, retry.wait, policy.max_retry_after)
            if attempt == attempts:
                raise rules.give_up(retry, attempts)
            delay = retry.wait if retry.wait is not None else policy.backoff(attempt)
            rules.retrying(retry, attempt, attempts, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _attempt(
        self,
        rules: RetryRules[T],
        method: str,
        path: str,
        deadline: float,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str | int] | None,
        json: Any,
    ) -> T | Retry | Failure:
        """One exchange under the deadline. httpx errors become a Failure value here, so
        nothing the caller raises later has one as its context."""
        kind: FailureKind
        try:
            async with asyncio.timeout(deadline):
                request = self._client.build_request(
                    method.upper(), path, headers=dict(headers or {}), params=params, json=json
                )
                response = await self._client.send(request, stream=True)
                try:
                    result = await rules.answer(response)
                    if isinstance(result, Retry) and result.wait is None:
                        asked = requested_wait(response.headers, self._clock())
                        result = replace(result, wait=asked)
                    return result
                finally:
                    await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            kind, error = FailureKind.CONNECT, type(exc).__name__
        except TimeoutError:
            kind, error = FailureKind.DEADLINE, "TimeoutError"
        except httpx.TimeoutException as exc:
            kind, error = FailureKind.TIMEOUT, type(exc).__name__
        except httpx.TransportError as exc:
            kind, error = FailureKind.TRANSPORT, type(exc).__name__
        except httpx.HTTPError as exc:  # e.g. a body that fails its Content-Encoding
            kind, error = FailureKind.UNREADABLE, type(exc).__name__
        return Failure(kind, error)
