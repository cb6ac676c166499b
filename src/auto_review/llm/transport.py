"""The LLM server on the shared outbound stack: its retry rules, error mapping, and a
tolerant reading of the chat-completion envelope.

:class:`LlmTransport` is the project's :class:`~auto_review.outbound.exchange.HttpClient`
bound to the server's API root: the retry loop, Retry-After handling (``retry-after-ms``,
``Retry-After`` in seconds or as an HTTP date), the whole-call deadline per attempt and the
size-cap reader are :mod:`auto_review.outbound`'s. The LLM's own rules are here.

Retried (up to ``max_retries`` more attempts, exponential backoff with up to 25 % jitter
off): connection failures, timeouts, 408, 409, 429, 5xx, a 200 whose body is no chat
completion (a proxy's page) or is over the size cap, and vLLM's ``finish_reason``
"abort"/"error". A server asking for more than ``max_retry_after`` seconds fails the call
at once with :class:`LlmUnavailable`, so a job is retried later instead of holding a
worker. Other 4xx fail at once with :class:`HttpRefused`.

Nothing from the server's error body reaches an exception or a log line: it is only
matched against fixed words (response_format, context length), and the message says which
fixed case it was. The API key lives in one private :class:`Secret` and is put on each
request; errors are raised outside ``except`` blocks so no httpx request (with its
headers) hangs off them as context.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from auto_review.core.secrets import Secret
from auto_review.llm.accounting import LlmMetrics, RetryReason
from auto_review.llm.api import LlmRefused, LlmUnavailable, Tier, Usage
from auto_review.llm.response_format import refuses_response_format
from auto_review.outbound.capped import IDENTITY_ENCODING, read_capped
from auto_review.outbound.exchange import HttpClient, Sleep
from auto_review.outbound.policy import RetryPolicy
from auto_review.outbound.rules import Failure, FailureKind, Retry

log = logging.getLogger("auto_review.llm")

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 409, 429})
# A chat completion is a few KiB; the cap only stops a broken server from filling memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
# Engine stop reasons (vLLM) that mean the server failed, not the model.
SERVER_FAILURE_FINISH = frozenset({"abort", "error"})
USER_AGENT = "auto-review-llm"
MAX_RETRIES = 10


def llm_retry(max_retries: int = 2, max_retry_after: float = 60.0) -> RetryPolicy:
    """The LLM's policy: ``max_retries`` retries after the first attempt, backoff from
    0.5 s to 8 s with up to 25 % jitter off, a server's wait up to ``max_retry_after``."""
    if not 0 <= max_retries <= MAX_RETRIES:
        raise ValueError(f"max_retries must be between 0 and {MAX_RETRIES}")
    return RetryPolicy(
        attempts=max_retries + 1,
        initial_backoff=0.5,
        max_backoff=8.0,
        max_retry_after=max_retry_after,
        jitter=0.25,
    )


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


@dataclass(frozen=True, slots=True)
class LlmRules(Generic[T]):
    """The LLM's retry rules for one call (see the module docstring). ``read`` turns a 2xx
    body into the result, or a Retry when the body is no usable answer."""

    what: str
    tier: Tier | None
    timeout: float
    metrics: LlmMetrics
    read: Callable[[bytes], T | Retry]

    async def answer(self, response: httpx.Response) -> T | Retry:
        status = response.status_code
        if 200 <= status < 300:
            body = await read_capped(response, MAX_RESPONSE_BYTES)
            if not body.complete:
                return Retry("response larger than the size cap", RetryReason.SERVER_ERROR)
            return self.read(body.data)
        if status == 429:
            return Retry("HTTP 429 (rate limited)", RetryReason.RATE_LIMITED, status)
        if status >= 500 or status in RETRYABLE_STATUSES:
            return Retry(f"HTTP {status}", RetryReason.SERVER_ERROR, status)
        # An error body is only matched against fixed words, never needed whole.
        error_body = await read_capped(response, MAX_ERROR_BODY_BYTES)
        text, param = _error_details(error_body.data)
        format_refused = refuses_response_format(status, text, param)
        raise HttpRefused(
            f"LLM {self.what}: HTTP {status}, {_refusal_reason(status, text, format_refused)}",
            status=status,
            format_refused=format_refused,
        )

    def failure(self, failure: Failure, attempt: int) -> Retry:
        kind, error = failure.kind, failure.error
        if kind is FailureKind.DEADLINE:
            return Retry(f"no answer within {self.timeout:g} s", RetryReason.TIMEOUT)
        if kind is FailureKind.TIMEOUT:
            return Retry(f"timed out ({error})", RetryReason.TIMEOUT)
        if kind is FailureKind.UNREADABLE:
            return Retry(f"unreadable response ({error})", RetryReason.SERVER_ERROR)
        return Retry(f"connection failed ({error})", RetryReason.CONNECT)

    def give_up(self, retry: Retry, attempts: int) -> LlmUnavailable:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        return LlmUnavailable(f"LLM {self.what}: {retry.detail} after {tries}")

    def too_long(self, retry: Retry, wait: float, limit: float) -> LlmUnavailable:
        return LlmUnavailable(
            f"LLM {self.what}: {retry.detail}; the server asks to wait {wait:.0f} s, "
            f"more than the {limit:.0f} s the client waits"
        )

    def retrying(self, retry: Retry, attempt: int, attempts: int, delay: float) -> None:
        if self.tier is not None:
            self.metrics.count_retry(self.tier, RetryReason(retry.reason))
        log.warning(
            "LLM %s: %s; retry %d of %d in %.2f s",
            self.what,
            retry.detail,
            attempt,
            attempts - 1,
            delay,
        )


class LlmTransport(HttpClient):
    """The outbound client bound to the server's API root, with the LLM's rules."""

    def __init__(
        self,
        base_url: str,
        api_key: str | Secret | None,
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
        super().__init__(
            base_url,
            what="LLM base URL",
            timeout=timeout,
            user_agent=USER_AGENT,
            retry=retry,
            connect_timeout=min(timeout, 10.0),
            credentials_hint="set the API key instead",
            transport=transport,
            tls=tls,
            sleep=sleep,
        )
        self._metrics = metrics
        key = api_key.reveal() if isinstance(api_key, Secret) else api_key
        self._api_key = Secret(key) if key else None

    def __repr__(self) -> str:
        return f"LlmTransport(base_url={self.base_url!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **IDENTITY_ENCODING}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return headers

    async def chat(self, tier: Tier, body: dict[str, Any]) -> ChatReply:
        """POST /chat/completions; the first choice of a 2xx answer."""
        model = str(body.get("model", ""))

        def read(response_body: bytes) -> ChatReply | Retry:
            try:
                reply = parse_chat_reply(response_body, model)
            except _Malformed as exc:
                return Retry(f"malformed response ({exc})", RetryReason.SERVER_ERROR)
            if reply.finish_reason in SERVER_FAILURE_FINISH:
                return Retry(
                    f"generation ended with {reply.finish_reason}", RetryReason.SERVER_ERROR
                )
            return reply

        return await self._exchange(
            f"{tier.value} tier", tier, "POST", "chat/completions", body, read
        )

    async def list_models(self) -> None:
        """GET /models: reachable and the key accepted."""

        def read(response_body: bytes) -> Retry | None:
            try:
                payload = json.loads(response_body)
            except (ValueError, RecursionError):
                payload = None
            if not isinstance(payload, dict):
                return Retry("malformed model list", RetryReason.SERVER_ERROR)
            return None

        await self._exchange("ping", None, "GET", "models", None, read)

    async def model_ids(self) -> list[str]:
        """GET /models: the ids of the models the server lists (``ops doctor``)."""

        def read(response_body: bytes) -> list[str] | Retry:
            try:
                payload = json.loads(response_body)
            except (ValueError, RecursionError):
                payload = None
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, list):
                return Retry("malformed model list", RetryReason.SERVER_ERROR)
            return [
                str(item["id"])
                for item in data
                if isinstance(item, dict) and isinstance(item.get("id"), str)
            ]

        return await self._exchange("models", None, "GET", "models", None, read)

    async def _exchange(
        self,
        what: str,
        tier: Tier | None,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        read: Callable[[bytes], T | Retry],
    ) -> T:
        rules = LlmRules(what, tier, self.timeout, self._metrics, read)
        return await self.call(
            rules, method, path, deadline=self.timeout, headers=self._headers(), json=body
        )


def models_probe(
    base_url: str,
    api_key: Secret | None,
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    tls: ssl.SSLContext | None = None,
) -> LlmTransport:
    """A transport for readiness checks: ``list_models`` once, no retry, within
    ``timeout``, its body under the same size cap as every LLM answer."""
    return LlmTransport(
        base_url,
        api_key,
        timeout=timeout,
        retry=llm_retry(0),
        metrics=LlmMetrics(),
        transport=transport,
        tls=tls,
    )
