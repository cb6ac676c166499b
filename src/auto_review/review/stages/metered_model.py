"""A LanguageModel wrapper that adds up the tokens one job used, per tier.

The client keeps process-wide totals for /metrics; a review report needs the figures of
its own job, including the verifier's calls made inside :mod:`auto_review.review.stages.verify`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from auto_review.llm.api import ChatMessage, JsonAnswer, LanguageModel, TextAnswer, Tier, Usage


class MeteredModel:
    def __init__(self, model: LanguageModel) -> None:
        self._model = model
        self.usage: dict[Tier, Usage] = {}

    def _add(self, tier: Tier, usage: Usage) -> None:
        before = self.usage.get(tier, Usage(0, 0))
        self.usage[tier] = Usage(
            before.prompt_tokens + usage.prompt_tokens,
            before.completion_tokens + usage.completion_tokens,
        )

    async def complete_json(
        self,
        tier: Tier,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any],
        schema_name: str,
        accept: Mapping[str, Any] | None = None,
    ) -> JsonAnswer:
        if accept is None:
            answer = await self._model.complete_json(
                tier, messages, schema=schema, schema_name=schema_name
            )
        else:
            answer = await self._model.complete_json(
                tier, messages, schema=schema, schema_name=schema_name, accept=accept
            )
        self._add(tier, answer.usage)
        return answer

    async def complete_text(self, tier: Tier, messages: Sequence[ChatMessage]) -> TextAnswer:
        answer = await self._model.complete_text(tier, messages)
        self._add(tier, answer.usage)
        return answer

    async def ping(self) -> None:
        await self._model.ping()
