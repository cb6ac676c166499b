"""The shared retry loop, driven through httpx's mock transport with a fake sleep and clock:
answers and failures reach the client's rules, Retry-After sets the wait, the cap on a
server's wait, the attempt deadline, and no httpx exception behind a client's error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from auto_review.outbound.exchange import HttpClient
from auto_review.outbound.policy import RetryPolicy
from auto_review.outbound.rules import Failure, FailureKind, Retry

NOW = 1_700_000_000.0
POLICY = RetryPolicy(attempts=3, initial_backoff=1.0, max_backoff=4.0, jitter=0.0)
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Refused(Exception):
    pass


@dataclass
class Rules:
    """Test rules: 200 -> the body, 5xx/429 -> retry, other statuses -> Refused; every
    failure is retried. Records what the loop told it."""

    failures: list[Failure] = field(default_factory=list)
    retries: list[tuple[str, int, int, float]] = field(default_factory=list)

    async def answer(self, response: httpx.Response) -> bytes | Retry:
        if response.status_code == 200:
            return await response.aread()
        if response.status_code >= 500 or response.status_code == 429:
            return Retry(f"HTTP {response.status_code}", "status", response.status_code)
        raise Refused(f"HTTP {response.status_code}")

    def failure(self, failure: Failure, attempt: int) -> Retry:
        self.failures.append(failure)
        return Retry(f"{failure.kind.value} ({failure.error})", failure.kind.value)

    def give_up(self, retry: Retry, attempts: int) -> Exception:
        return Refused(f"{retry.detail} after {attempts}")

    def too_long(self, retry: Retry, wait: float, limit: float) -> Exception:
        return Refused(f"{retry.detail}: asks {wait:g} s, over {limit:g} s")

    def retrying(self, retry: Retry, attempt: int, attempts: int, delay: float) -> None:
        self.retries.append((retry.detail, attempt, attempts, delay))


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def script(*replies: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A mock handler answering with ``replies`` in order (an exception is raised)."""
    seen: list[httpx.Request] = []
    queue = list(replies)

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return handler, seen


def run(
    handler: Handler,
    rules: Rules,
    *,
    sleeps: Sleeps | None = None,
    policy: RetryPolicy = POLICY,
    deadline: float = 5.0,
    **request: Any,
) -> bytes:
    async def go() -> bytes:
        client = HttpClient(
            "http://llm.test/v1/",
            what="test URL",
            timeout=5.0,
            user_agent="test-agent",
            retry=policy,
            transport=httpx.MockTransport(handler),
            sleep=sleeps or Sleeps(),
            clock=lambda: NOW,
        )
        try:
            return await client.call(rules, "get", "models", deadline=deadline, **request)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_success_joins_the_base_url_and_sends_per_request_headers() -> None:
    handler, seen = script(httpx.Response(200, content=b"ok"))
    assert run(handler, Rules(), headers={"Authorization": "Bearer k"}, params={"n": 2}) == b"ok"
    [request] = seen
    assert str(request.url) == "http://llm.test/v1/models?n=2"
    assert request.method == "GET"
    assert request.headers["user-agent"] == "test-agent"
    assert request.headers["authorization"] == "Bearer k"


def test_retried_answers_back_off_exponentially_then_succeed() -> None:
    handler, seen = script(httpx.Response(503), httpx.Response(502), httpx.Response(200))
    rules, sleeps = Rules(), Sleeps()
    assert run(handler, rules, sleeps=sleeps) == b""
    assert sleeps.waits == [1.0, 2.0]
    assert rules.retries == [("HTTP 503", 1, 3, 1.0), ("HTTP 502", 2, 3, 2.0)]
    assert len(seen) == 3


def test_exhausted_attempts_raise_the_rules_error() -> None:
    handler, seen = script(*(httpx.Response(500) for _ in range(3)))
    sleeps = Sleeps()
    with pytest.raises(Refused, match=r"^HTTP 500 after 3$"):
        run(handler, Rules(), sleeps=sleeps)
    assert len(seen) == 3 and len(sleeps.waits) == 2


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": formatdate(NOW + 20, usegmt=True)}, 20.0),
        ({"retry-after-ms": "250", "Retry-After": "7"}, 0.25),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 11)}, 11.0),
    ],
)
def test_the_servers_wait_replaces_the_backoff(headers: dict[str, str], wait: float) -> None:
    handler, _ = script(httpx.Response(429, headers=headers), httpx.Response(200))
    sleeps = Sleeps()
    run(handler, Rules(), sleeps=sleeps)
    assert sleeps.waits == [pytest.approx(wait, abs=1)]


def test_a_wait_over_the_cap_fails_at_once() -> None:
    handler, seen = script(httpx.Response(429, headers={"Retry-After": "3600"}))
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, max_retry_after=60.0)
    with pytest.raises(Refused, match=r"^HTTP 429: asks 3600 s, over 60 s$"):
        run(handler, Rules(), sleeps=sleeps, policy=policy)
    assert len(seen) == 1 and sleeps.waits == []


def test_a_wait_at_the_cap_is_waited() -> None:
    handler, _ = script(httpx.Response(503, headers={"Retry-After": "60"}), httpx.Response(200))
    sleeps = Sleeps()
    run(handler, Rules(), sleeps=sleeps, policy=RetryPolicy(attempts=2, max_retry_after=60.0))
    assert sleeps.waits == [60.0]


def test_transport_failures_reach_the_rules_by_kind() -> None:
    handler, _ = script(
        httpx.ConnectError("refused to http://user:pw@llm.test"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
    )
    rules = Rules()
    with pytest.raises(Refused) as info:
        run(handler, rules)
    assert rules.failures == [
        Failure(FailureKind.CONNECT, "ConnectError"),
        Failure(FailureKind.TIMEOUT, "ReadTimeout"),
        Failure(FailureKind.TRANSPORT, "RemoteProtocolError"),
    ]
    # The client's error has no httpx exception (whose text may name the URL) behind it.
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert "pw" not in str(info.value)


def test_an_undecodable_body_is_a_failure_of_its_own() -> None:
    broken = httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
    )
    handler, _ = script(broken, httpx.Response(200, content=b"fine"))
    rules = Rules()
    assert run(handler, rules) == b"fine"
    assert rules.failures == [Failure(FailureKind.UNREADABLE, "DecodingError")]


def test_the_deadline_bounds_a_whole_attempt() -> None:
    """A server that never finishes its answer: the attempt ends at the deadline."""
    never = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await never.wait()  # never set: only the deadline ends this attempt
        return httpx.Response(200, content=b"second")

    rules = Rules()
    assert run(handler, rules, deadline=0.05) == b"second"
    assert rules.failures == [Failure(FailureKind.DEADLINE, "TimeoutError")]


def test_a_final_error_from_the_rules_is_not_retried() -> None:
    handler, seen = script(httpx.Response(401), httpx.Response(200))
    with pytest.raises(Refused, match="HTTP 401") as info:
        run(handler, Rules())
    assert len(seen) == 1
    assert info.value.__context__ is None


def test_redirects_are_handed_to_the_rules_not_followed() -> None:
    handler, seen = script(httpx.Response(302, headers={"Location": "http://evil.test/"}))
    with pytest.raises(Refused, match="HTTP 302"):
        run(handler, Rules())
    assert [str(r.url) for r in seen] == ["http://llm.test/v1/models"]


def test_the_client_checks_its_base_url_and_timeout() -> None:
    with pytest.raises(ValueError, match="test URL must not contain credentials"):
        HttpClient("http://u:p@h", what="test URL", timeout=1, user_agent="t", retry=POLICY)
    with pytest.raises(ValueError, match="timeout must be positive"):
        HttpClient("http://h", what="test URL", timeout=0, user_agent="t", retry=POLICY)
    client = HttpClient("http://h/x/", what="test URL", timeout=1, user_agent="t", retry=POLICY)
    assert repr(client) == "HttpClient(base_url='http://h/x')"
    asyncio.run(client.aclose())
