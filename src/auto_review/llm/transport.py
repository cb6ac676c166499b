"""HTTP to an OpenAI-compatible server: timeouts, bounded retries, error mapping, and a
tolerant reading of the chat-completion envelope.

Retried (up to ``max_retries`` more attempts, exponential backoff with jitter): connection
failures, timeouts, 408, 409, 429, 5xx, a 200 whose body is no chat completion (a proxy's
page), and vLLM's ``finish_reason`` "abort"/"error". ``retry-after-ms`` and ``Retry-After``
(seconds or HTTP date) set the wait when given; a server asking for more than
``max_retry_after`` seconds fails the call at once with :class:`LlmUnavailable`, so a job
is retried later instead of holding a worker. Other 4xx fail at once with
:class:`HttpRefused`.

Nothing from the server's error body reaches an exception or a log line: it is only
matched against fixed words (response_format, context length), and the message says which
fixed case it was. The API key lives in one private attribute and is put on each request;
exceptions are raised outside ``except`` blocks so no httpx request (with its headers)
hangs off them as context.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from auto_review.core.secrets import Secret
from auto_review.llm.accounting import LlmMetrics, RetryReason
from auto_review.llm.api import LlmRefused, LlmUnavailable, Tier, Usage
from auto_review.llm.response_format import refuses_response_format

log = logging.getLogger("auto_review.llm")

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 409, 429})
# A chat completion is a few KiB; the cap only stops a broken server from filling memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
# Engine stop reasons (vLLM) that mean the server failed, not the model.
SERVER_FAILURE_FINISH = frozenset({"abort", "error"})
USER_AGENT = "auto-review-llm"


def check_base_url(url: str) -> str:
    """The server's API root without a trailing slash (e.g. ``http://host:11434/v1``).

    Credentials, queries and fragments are refused: a key in the URL would travel into every
    message that names the URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("LLM base URL must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("LLM base URL must not contain credentials; set the API key instead")
    if parts.query or parts.fragment:
        raise ValueError("LLM base URL must not have a query or fragment")
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.max_retries <= 10:
            raise ValueError("max_retries must be between 0 and 10")
        if min(self.initial_backoff, self.max_backoff, self.max_retry_after) < 0:
            raise ValueError("retry delays must not be negative")

    def backoff(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (from 1): exponential, up to 25 % jitter off."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (retry_number - 1))
        return ceiling * random.uniform(0.75, 1.0)


def retry_after_seconds(headers: httpx.Headers, now: float) -> float | None:
    """The wait a response asks for: ``retry-after-ms`` first, then ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0 and value == value:  # not negative, not nan
            return value / 1000.0
    text = headers.get("retry-after")
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


class HttpRefused(LlmRefused):
    """A 4xx the client does not retry. ``format_refused``: the server objected to the
    ``response_format`` field (the auto mode steps down on this)."""

    def __init__(self, message: str, *, status: int, format_refused: bool) -> None:
        super().__init__(message)
        self.status = status
        self.format_refused = format_refused


@dataclass(frozen=True, slots=True)
class ChatReply:
    """The first choice of a chat completion, read tolerantly (Ollama omits keys, vLLM
    sends nulls)."""

    content: str | None
    refusal: str | None
    finish_reason: str | None
    model: str
    usage: Usage


class _Malformed(Exception):
    """A 2xx body that is no chat completion."""


def _error_details(body: bytes) -> tuple[str, str | None]:
    """(message, param) from an error body: OpenAI's envelope, vLLM's flat older form, or
    anything else as text. Used only for matching fixed words, never shown."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace"), None
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, dict):
            message = inner.get("message")
            param = inner.get("param")
            text = message if isinstance(message, str) else json.dumps(inner)[:4096]
            return text, param if isinstance(param, str) else None
        if isinstance(inner, str):
            return inner, None
    return body.decode("utf-8", "replace"), None


_CONTEXT_WORDS = ("context length", "context_length", "maximum context", "too many tokens")


def _refusal_reason(status: int, text: str, format_refused: bool) -> str:
    if status in (401, 403):
        return "credentials refused (check the LLM API key)"
    if status == 404:
        return "not found (check the LLM base URL and the model name)"
    if format_refused:
        return "the server refused the response_format field"
    if any(word in text.lower() for word in _CONTEXT_WORDS):
        return "the request exceeds the model's context length"
    return "request refused"


def _int_field(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts, as a few servers answer
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(t for t in texts if isinstance(t, str))
    raise _Malformed("message content has an unexpected type")


def parse_chat_reply(body: bytes, requested_model: str) -> ChatReply:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise _Malformed("body is not JSON") from None
    if not isinstance(payload, dict):
        raise _Malformed("body is not a JSON object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Malformed("no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _Malformed("choice without a message")
    finish = choices[0].get("finish_reason")
    refusal = message.get("refusal")
    usage = payload.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    model = payload.get("model")
    return ChatReply(
        content=_content_text(message.get("content")),
        refusal=refusal if isinstance(refusal, str) and refusal else None,
        finish_reason=finish if isinstance(finish, str) else None,
        model=model if isinstance(model, str) and model else requested_model,
        usage=Usage(
            _int_field(usage.get("prompt_tokens")), _int_field(usage.get("completion_tokens"))
        ),
    )


class _Retry(Exception):
    def __init__(self, reason: RetryReason, detail: str, wait: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.wait = wait


class LlmTransport:
    """One ``httpx.AsyncClient`` bound to the server's API root."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float,
        retry: RetryPolicy,
        metrics: LlmMetrics,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError("LLM timeout must be positive")
        self.base_url = check_base_url(base_url)
        self.timeout = float(timeout)
        self.retry = retry
        self._metrics = metrics
        self._sleep = sleep
        self._api_key = Secret(api_key) if api_key else None
        # Redirects are not followed: a redirect must not carry the key to another host.
        self._client = httpx.AsyncClient(
            # The composition root hands every client the process's one trust store.
            verify=tls if tls is not None else True,
            base_url=self.base_url + "/",
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"LlmTransport(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return headers

    async def chat(self, tier: Tier, body: dict[str, Any]) -> ChatReply:
        """POST /chat/completions; the first choice of a 2xx answer."""
        model = str(body.get("model", ""))

        def read(response_body: bytes) -> ChatReply:
            try:
                reply = parse_chat_reply(response_body, model)
            except _Malformed as exc:
                raise _Retry(RetryReason.SERVER_ERROR, f"malformed response ({exc})") from None
            if reply.finish_reason in SERVER_FAILURE_FINISH:
                raise _Retry(
                    RetryReason.SERVER_ERROR, f"generation ended with {reply.finish_reason}"
                )
            return reply

        return await self._call(f"{tier.value} tier", tier, "POST", "chat/completions", body, read)

    async def list_models(self) -> None:
        """GET /models: reachable and the key accepted."""

        def read(response_body: bytes) -> None:
            try:
                payload = json.loads(response_body)
            except (ValueError, RecursionError):
                payload = None
            if not isinstance(payload, dict):
                raise _Retry(RetryReason.SERVER_ERROR, "malformed model list")

        await self._call("ping", None, "GET", "models", None, read)

    async def _call(
        self,
        what: str,
        tier: Tier | None,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        read: Callable[[bytes], T],
    ) -> T:
        attempts = self.retry.max_retries + 1
        for attempt in range(1, attempts + 1):
            retry = await self._attempt(what, method, path, body)
            if isinstance(retry, bytes):
                try:
                    return read(retry)
                except _Retry as exc:
                    retry = exc
            if retry.wait is not None and retry.wait > self.retry.max_retry_after:
                raise LlmUnavailable(
                    f"LLM {what}: {retry.detail}; the server asks to wait {retry.wait:.0f} s, "
                    f"more than the {self.retry.max_retry_after:.0f} s the client waits"
                )
            if attempt == attempts:
                tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
                raise LlmUnavailable(f"LLM {what}: {retry.detail} after {tries}")
            wait = retry.wait if retry.wait is not None else self.retry.backoff(attempt)
            if tier is not None:
                self._metrics.count_retry(tier, retry.reason)
            log.warning(
                "LLM %s: %s; retry %d of %d in %.2f s",
                what,
                retry.detail,
                attempt,
                attempts - 1,
                wait,
            )
            await self._sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _attempt(
        self, what: str, method: str, path: str, body: dict[str, Any] | None
    ) -> bytes | _Retry:
        """One HTTP exchange: the 2xx body, or why to retry. Raises HttpRefused."""
        failure: _Retry | None = None
        status = 0
        data = b""
        headers = httpx.Headers()
        try:
            # Whole-attempt deadline: httpx's timeouts are per phase, and a server that
            # drips tokens could otherwise hold a call open for ever.
            async with asyncio.timeout(self.timeout):
                request = self._client.build_request(
                    method, path, json=body, headers=self._headers()
                )
                response = await self._client.send(request, stream=True)
                try:
                    status, headers = response.status_code, response.headers
                    limit = MAX_RESPONSE_BYTES if status < 300 else MAX_ERROR_BODY_BYTES
                    data = await _read_capped(response, limit)
                finally:
                    await response.aclose()
        except TimeoutError:
            failure = _Retry(RetryReason.TIMEOUT, f"no answer within {self.timeout:g} s")
        except httpx.TimeoutException as exc:
            failure = _Retry(RetryReason.TIMEOUT, f"timed out ({type(exc).__name__})")
        except _TooLarge:
            failure = _Retry(RetryReason.SERVER_ERROR, "response larger than the size cap")
        except httpx.TransportError as exc:
            failure = _Retry(RetryReason.CONNECT, f"connection failed ({type(exc).__name__})")
        except httpx.HTTPError as exc:  # e.g. a body that fails its Content-Encoding
            failure = _Retry(
                RetryReason.SERVER_ERROR, f"unreadable response ({type(exc).__name__})"
            )
        if failure is not None:
            return failure
        if 200 <= status < 300:
            return data
        if status == 429:
            wait = retry_after_seconds(headers, time.time())
            return _Retry(RetryReason.RATE_LIMITED, "HTTP 429 (rate limited)", wait)
        if status >= 500 or status in RETRYABLE_STATUSES:
            wait = retry_after_seconds(headers, time.time())
            return _Retry(RetryReason.SERVER_ERROR, f"HTTP {status}", wait)
        text, param = _error_details(data)
        format_refused = refuses_response_format(status, text, param)
        raise HttpRefused(
            f"LLM {what}: HTTP {status}, {_refusal_reason(status, text, format_refused)}",
            status=status,
            format_refused=format_refused,
        )


class _TooLarge(Exception):
    pass


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if limit == MAX_ERROR_BODY_BYTES:  # an error body is only matched, never needed whole
                break
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
