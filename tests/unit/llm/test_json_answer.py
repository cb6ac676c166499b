"""Parsing and validating model text without a server: fences, think blocks, strict JSON,
and problem descriptions whose public half never carries the answer's content."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.llm.helpers import SCHEMA

from auto_review.llm.api import ChatMessage, Role
from auto_review.llm.json_answer import (
    AnswerProblem,
    SchemaCache,
    check_answer,
    heal_messages,
    parse_json_text,
    strip_wrapping,
)
from auto_review.llm.response_format import with_schema_instruction

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values, st.sampled_from(["", "json", "JSON"]), st.booleans())
def test_any_json_survives_a_fence(value: Any, tag: str, indent: bool) -> None:
    text = json.dumps(value, indent=2 if indent else None)
    assert parse_json_text(f"```{tag}\n{text}\n```").data == value
    assert parse_json_text(f"  {text}\n").data == value


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("", "empty answer"),
        ("```json\n```", "empty answer"),
        ("{'a': 1}", "not valid JSON (Expecting property name enclosed in double quotes"),
        ('{"a": Infinity}', "not valid JSON (NaN or Infinity)"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_bad_json_is_described_without_content(text: str, public: str) -> None:
    parsed = parse_json_text(text)
    assert parsed.problem is not None
    assert parsed.problem.public.startswith(public)


def test_think_block_and_fence_together() -> None:
    assert strip_wrapping('<think>plan</think>\n```json\n{"a": 1}\n```') == '{"a": 1}'


def test_schema_problems_public_half_comes_from_the_schema_only() -> None:
    validator = SchemaCache().validator(SCHEMA)
    marker = "MODEL-SAID-THIS"
    parsed = check_answer(json.dumps({"supported": marker, marker: 1}), validator)
    problem = parsed.problem
    assert problem is not None
    assert marker not in problem.public
    assert problem.public.startswith("3 schema violations, first at schema path")
    assert marker in problem.for_model  # the model is told exactly what is wrong


def test_many_problems_are_listed_up_to_a_limit() -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    parsed = check_answer(json.dumps(["x"] * 9), SchemaCache().validator(schema))
    assert parsed.problem is not None
    assert "... and 4 more" in parsed.problem.for_model


def test_schema_cache_reuses_and_bounds() -> None:
    cache = SchemaCache(limit=2)
    first = cache.validator({"type": "object"})
    assert cache.validator({"type": "object"}) is first
    cache.validator({"type": "array"})
    cache.validator({"type": "string"})
    assert cache.validator({"type": "object"}) is not first  # evicted, rebuilt


def test_heal_messages_echo_or_not() -> None:
    base = [ChatMessage(Role.USER, "q")]
    problem = AnswerProblem("public", "the answer is not valid JSON: x")
    echoed = heal_messages(base, "{bad", problem)
    assert [m.role for m in echoed] == [Role.USER, Role.ASSISTANT, Role.USER]
    assert echoed[1].content == "{bad"
    assert "not valid JSON: x" in echoed[2].content
    cut = heal_messages(base, None, problem)
    assert [m.role for m in cut] == [Role.USER, Role.USER]
    assert "cut off" in cut[1].content


def test_schema_instruction_joins_a_leading_system_message_or_leads() -> None:
    joined = with_schema_instruction(
        [ChatMessage(Role.SYSTEM, "rules"), ChatMessage(Role.USER, "q")], SCHEMA, "verdict"
    )
    assert len(joined) == 2 and joined[0].content.startswith("rules\n\n")
    led = with_schema_instruction([ChatMessage(Role.USER, "q")], SCHEMA, "verdict")
    assert [m.role for m in led] == [Role.SYSTEM, Role.USER]
    assert '"verdict"' in led[0].content
