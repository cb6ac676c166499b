"""How a JSON answer is asked for: the ``response_format`` ladder and the schema instruction.

Servers differ: OpenAI and vLLM enforce ``json_schema``; self-hosted Ollama enforces it,
Ollama Cloud accepts it without enforcing; some servers refuse it with a 400 and accept only
``json_object``; a few accept neither. :class:`FormatMode` names the rungs, strongest first.
In ``auto`` mode the client starts at ``json_schema`` and steps down one rung each time the
server refuses the field (:func:`refuses_response_format`). Every rung also states the schema
in the system message, so a server that ignores the field still tells the model what to
produce; the client validates the answer itself either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from auto_review.llm.api import ChatMessage, Role


class FormatMode(StrEnum):
    JSON_SCHEMA = "json_schema"  # response_format json_schema, strict
    JSON_OBJECT = "json_object"  # response_format json_object (JSON mode, no schema)
    PROMPT = "prompt"  # no response_format: the schema travels in the system message only


# The ladder ``auto`` walks down, strongest enforcement first.
FORMAT_LADDER: tuple[FormatMode, ...] = (
    FormatMode.JSON_SCHEMA,
    FormatMode.JSON_OBJECT,
    FormatMode.PROMPT,
)

AUTO = "auto"
SETTING_CHOICES = (AUTO, *(mode.value for mode in FORMAT_LADDER))


def first_mode(setting: str) -> FormatMode:
    """The rung a client starts on for a ``llm_response_format`` setting value."""
    if setting == AUTO:
        return FORMAT_LADDER[0]
    try:
        return FormatMode(setting)
    except ValueError:
        raise ValueError(f"response format must be one of {', '.join(SETTING_CHOICES)}") from None


def next_mode(mode: FormatMode) -> FormatMode | None:
    """The next weaker rung, or None at the bottom."""
    index = FORMAT_LADDER.index(mode)
    return FORMAT_LADDER[index + 1] if index + 1 < len(FORMAT_LADDER) else None


def response_format_field(
    mode: FormatMode, schema: Mapping[str, Any], schema_name: str
) -> dict[str, Any] | None:
    """The request's ``response_format`` value for ``mode`` (None: leave the field out)."""
    if mode is FormatMode.JSON_SCHEMA:
        return {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": dict(schema), "strict": True},
        }
    if mode is FormatMode.JSON_OBJECT:
        return {"type": "json_object"}
    return None


def schema_instruction(schema: Mapping[str, Any], schema_name: str) -> str:
    """The system-message text that names the expected answer shape.

    It contains the word JSON, which OpenAI requires in the messages for ``json_object``.
    """
    rendered = json.dumps(schema, separators=(",", ":"), sort_keys=True)
    return (
        f'Answer with exactly one JSON object named "{schema_name}" and nothing else: '
        "no prose, no code fences. It must validate against this JSON Schema "
        f"(draft 2020-12):\n{rendered}"
    )


def with_schema_instruction(
    messages: Sequence[ChatMessage], schema: Mapping[str, Any], schema_name: str
) -> list[ChatMessage]:
    """``messages`` with the schema instruction in the leading system message.

    Appended to an existing leading system message rather than added as a second one:
    several chat templates accept only one system message, and only in first place.
    """
    instruction = schema_instruction(schema, schema_name)
    result = list(messages)
    if result and result[0].role is Role.SYSTEM:
        result[0] = ChatMessage(Role.SYSTEM, f"{result[0].content}\n\n{instruction}")
    else:
        result.insert(0, ChatMessage(Role.SYSTEM, instruction))
    return result


# Words a 400 uses when the server objects to the response_format field itself.
_FORMAT_WORDS = (
    "response_format",
    "response format",
    "json_schema",
    "json_object",
    "structured output",
)


def refuses_response_format(status: int, error_text: str, error_param: str | None) -> bool:
    """Whether a refused request was refused for its ``response_format`` field.

    400 is what OpenAI, vLLM and llama.cpp answer; FastAPI-based servers answer 422.
    """
    if status not in (400, 422):
        return False
    if error_param is not None and "response_format" in error_param:
        return True
    lowered = error_text.lower()
    return any(word in lowered for word in _FORMAT_WORDS)
