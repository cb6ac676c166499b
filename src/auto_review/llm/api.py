"""The LLM boundary as the review pipeline sees it: a JSON-answering chat model in two tiers.

:mod:`auto_review.llm.client` implements :class:`LanguageModel` for any OpenAI-compatible
chat-completions server. Errors carry no prompt text, no API key and no response body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from auto_review.core.errors import PermanentError, TransientError


class Tier(StrEnum):
    REASONING = "reasoning"  # finds problems; the expensive model
    CHEAP = "cheap"  # verifies single findings, answers small questions


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    """A model answer that parsed as JSON and validated against the requested schema."""

    data: Any
    model: str
    usage: Usage
    healed: bool  # True when the first answer was invalid and the self-heal round fixed it


@dataclass(frozen=True, slots=True)
class TextAnswer:
    text: str
    model: str
    usage: Usage


class LlmError(Exception):
    """An LLM call failed; the message names the tier and the failure, never content."""


class LlmUnavailable(LlmError, TransientError):
    """Transport failure, timeout, 429 or 5xx that outlasted the retries."""


class LlmRefused(LlmError, PermanentError):
    """The server refused the request (400/401/403/404): configuration, not load."""


class LlmInvalidAnswer(LlmError, PermanentError):
    """The answer was not valid JSON for the schema, even after the self-heal round."""


class LanguageModel(Protocol):
    async def complete_json(
        self,
        tier: Tier,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any],
        schema_name: str,
        accept: Mapping[str, Any] | None = None,
    ) -> JsonAnswer:
        """Ask for a JSON object matching ``schema`` (a JSON Schema draft 2020-12 object).

        ``accept``: a looser schema an answer must meet to be returned (default: ``schema``
        itself); the model is still asked for ``schema``. A caller that checks the parts of
        an answer one by one passes the outer structure here, so one bad part does not void
        the whole answer or cost a self-heal round."""
        ...

    async def complete_text(self, tier: Tier, messages: Sequence[ChatMessage]) -> TextAnswer:
        """A free-form answer (chat questions)."""
        ...

    async def ping(self) -> None:
        """Cheap reachability check (``GET /models``); raises LlmUnavailable / LlmRefused."""
        ...
