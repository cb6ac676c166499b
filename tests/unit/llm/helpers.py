"""Shared set-up for the LLM client tests: a client on a FakeLlm, recorded backoff waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.support.fake_llm import FakeLlm

from auto_review.llm.accounting import LlmMetrics
from auto_review.llm.api import ChatMessage, Role, Tier
from auto_review.llm.client import OpenAICompatibleClient

T = TypeVar("T")

REASONING_MODEL = "qwen3-coder:30b"
CHEAP_MODEL = "llama3.2:3b"
CANARY_KEY = "sk-canary-7f3c1e9a4b2d8e6f0a5c"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["supported", "reason"],
    "properties": {
        "supported": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": 200},
    },
}
GOOD = {"supported": True, "reason": "line 12 concatenates user input into SQL"}
MESSAGES = [
    ChatMessage(Role.SYSTEM, "You verify one code review finding."),
    ChatMessage(Role.USER, "Finding: SQL injection at app.py:12"),
]


class RecordedSleep:
    """Stands in for asyncio.sleep: records each backoff wait and yields once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def make_client(
    fake: FakeLlm,
    *,
    api_key: str | None = CANARY_KEY,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    metrics: LlmMetrics | None = None,
    **options: Any,
) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        fake.url,
        api_key,
        {Tier.REASONING: REASONING_MODEL, Tier.CHEAP: CHEAP_MODEL},
        sleep=sleep or RecordedSleep(),
        metrics=metrics,
        **options,
    )


def run(
    client: OpenAICompatibleClient, call: Callable[[OpenAICompatibleClient], Awaitable[T]]
) -> T:
    """Run one call on ``client`` in a fresh event loop, closing the HTTP pool after."""

    async def go() -> T:
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def ask_json(client: OpenAICompatibleClient, tier: Tier = Tier.CHEAP) -> Any:
    return run(
        client,
        lambda c: c.complete_json(tier, MESSAGES, schema=SCHEMA, schema_name="verdict"),
    )
